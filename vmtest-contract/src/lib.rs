//! What vmtest's host and guest agree on, and the vocabulary both sides of
//! every front door read: [`boot`] until the test server runs (compiled
//! into the guest init too), [`messages`] after, and [`units`], how sizes
//! and durations are written wherever vmtest reads them.
//!
//! This crate imports nothing of the others: it is the bottom layer.

pub mod boot;
pub mod messages;
pub mod units;

pub use boot::hex;

/// The text of [`boot`], for the guest init's build, which compiles it in
/// (the init is std-only: no crates).
pub const BOOT_SOURCE: &str = include_str!("boot.rs");

/// Which contract a build speaks: a digest of the source of [`boot`] and
/// [`messages`]. A host and a guest build of another architecture
/// (`vmtest --arch`) work together only if they carry the same.
pub const DIGEST: u64 = fnv1a(&[BOOT_SOURCE, include_str!("messages.rs")]);

/// 64-bit FNV-1a over `texts`, at compile time.
const fn fnv1a(texts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut text = 0;
    while text < texts.len() {
        let bytes = texts[text].as_bytes();
        let mut byte = 0;
        while byte < bytes.len() {
            hash ^= bytes[byte] as u64;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
            byte += 1;
        }
        text += 1;
    }
    hash
}

/// Given to every job in the guest: the host directory the guest may write
/// to, at the same path on both sides.
pub const SHARED_DIR_VAR: &str = "VMTEST_SHARED_DIR";

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    use std::path::PathBuf;

    use super::boot::*;
    use super::messages::*;

    #[test]
    fn the_digest_is_fnv1a() {
        // FNV-1a's published test vectors.
        assert_eq!(super::fnv1a(&[]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(super::fnv1a(&["a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(super::fnv1a(&["foo", "bar"]), super::fnv1a(&["foobar"]));
    }

    #[test]
    fn boot_params_survive_the_round_trip_whatever_their_bytes() {
        let params = BootParams {
            tmp_binds: vec![PathBuf::from("/tmp/a b"), PathBuf::from("/tmp/x,y")],
            shares: vec![
                Share {
                    tag: format!("{SHARE_TAG_PREFIX}0"),
                    guest_path: PathBuf::from("/home/u/target/vmtest/run 1/shared"),
                    writable: true,
                },
                Share {
                    tag: format!("{SHARE_TAG_PREFIX}1"),
                    guest_path: PathBuf::from("/mnt/vmtest"),
                    writable: false,
                },
            ],
            overlay: true,
            server: ServerCommand {
                program: PathBuf::from("/tmp/a b/target/debug/deps/kernels-0123"),
                args: vec![
                    OsString::from("--flag"),
                    OsString::from_vec(vec![0xff, b'\n']),
                ],
                env: vec![OsString::from("A=1 2"), OsString::from("EMPTY=")],
                cwd: PathBuf::from("/tmp/a b"),
            },
            clock_ns: 1_795_000_000_123_456_789,
            seed: vec![0, 0xff, b' ', b'='],
        };
        let line = params.encode();
        assert!(line.starts_with(BOOT));
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(BootParams::decode(&line), Ok(params));
    }

    #[test]
    fn bad_boot_lines_are_errors() {
        for line in [
            "hello",
            "vmtest-boot program=zz",
            "vmtest-boot program=2f61 unknown=00",
            "vmtest-boot cwd=2f",
            "vmtest-boot program=61",
            "vmtest-boot share-mode=7277 program=2f61",
        ] {
            assert!(BootParams::decode(line).is_err(), "{line}");
        }
    }

    #[test]
    fn init_failures_carry_their_reason() {
        let line = init_failed_line("mount 9p: No such device\nhint");
        assert_eq!(
            parse_init_failed(&line).as_deref(),
            Some("mount 9p: No such device\nhint")
        );
        assert_eq!(parse_init_failed(INIT_READY), None);
    }

    #[test]
    fn messages_are_one_json_object_per_line_with_bytes_in_base64() {
        let exec = Request::Exec(Exec {
            id: 7,
            program: Bytes(b"/bin/sh".to_vec()),
            args: vec![Bytes(b"-c".to_vec()), Bytes(vec![0xff, 0])],
            env: None,
            cwd: Some(Bytes(b"/".to_vec())),
            terminal: Some(WindowSize { rows: 24, cols: 80 }),
            stdin: false,
        });
        let done = Reply::Done {
            id: 7,
            status: ExitStatus::Signaled(9),
            verdict: Some(Verdict::Failed {
                message: "boom \"quoted\"\n".into(),
            }),
        };
        let line = to_line(&exec);
        assert_eq!(line.iter().filter(|&&byte| byte == b'\n').count(), 1);
        assert_eq!(serde_json::from_slice::<Request>(&line).unwrap(), exec);
        for reply in [done, Reply::Ready, Reply::Pong] {
            let line = to_line(&reply);
            assert_eq!(serde_json::from_slice::<Reply>(&line).unwrap(), reply);
        }
        assert_eq!(
            String::from_utf8(to_line(&Request::Ping)).unwrap(),
            "{\"request\":\"ping\"}\n"
        );
    }
}
