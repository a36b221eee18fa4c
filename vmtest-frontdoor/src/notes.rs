//! How a download shows on stderr, the same from both front doors.

use vmtest_engine::Event;

/// What a front door writes to stderr, as is, for a download event: on a
/// `terminal`, progress rewritten in place, then a line once it is done;
/// elsewhere the line alone. `None` for other events.
pub fn download(event: &Event, terminal: bool) -> Option<String> {
    let megabytes = |bytes: u64| format!("{:.1} MB", bytes as f64 / f64::from(1 << 20));
    match event {
        Event::Downloading {
            url,
            received,
            total,
        } if terminal => {
            let of = total.map_or(String::new(), |total| format!(" of {}", megabytes(total)));
            Some(format!(
                "\rvmtest: fetching {url}: {}{of}\x1b[K",
                megabytes(*received)
            ))
        }
        Event::Downloaded { url, bytes, took } => Some(format!(
            "{}vmtest: fetched {url} ({} in {took:.1?})\n",
            if terminal { "\r\x1b[K" } else { "" },
            megabytes(*bytes)
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn progress_is_rewritten_in_place_on_a_terminal_only() {
        let progress = Event::Downloading {
            url: "http://h/k.deb".into(),
            received: 3 << 20,
            total: Some(10 << 20),
        };
        assert_eq!(
            download(&progress, true).unwrap(),
            "\rvmtest: fetching http://h/k.deb: 3.0 MB of 10.0 MB\x1b[K"
        );
        assert_eq!(download(&progress, false), None);
        let done = Event::Downloaded {
            url: "http://h/k.deb".into(),
            bytes: 10 << 20,
            took: Duration::from_millis(1500),
        };
        assert_eq!(
            download(&done, false).unwrap(),
            "vmtest: fetched http://h/k.deb (10.0 MB in 1.5s)\n"
        );
        assert!(download(&done, true).unwrap().starts_with("\r\x1b[K"));
    }
}
