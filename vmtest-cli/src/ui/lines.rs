//! Output cut into lines as it arrives, for the faces that show it line by
//! line: each byte is looked at once, and a line that never ends is cut
//! every [`MAX_LINE`] bytes, so memory stays bounded whatever a command
//! writes.

/// The longest line kept whole.
pub const MAX_LINE: usize = 64 << 10;

/// The line being written.
#[derive(Debug, Default)]
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    /// Takes `data`, calling `line` with each line it completes (with its
    /// newline, or without one where a long line was cut).
    pub fn push(&mut self, mut data: &[u8], mut line: impl FnMut(&[u8])) {
        while !data.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let scan = &data[..data.len().min(room)];
            match scan.iter().position(|&byte| byte == b'\n') {
                Some(end) => {
                    if self.partial.is_empty() {
                        line(&data[..=end]);
                    } else {
                        self.partial.extend_from_slice(&data[..=end]);
                        line(&self.partial);
                        self.partial.clear();
                    }
                    data = &data[end + 1..];
                }
                None => {
                    self.partial.extend_from_slice(scan);
                    data = &data[scan.len()..];
                    if self.partial.len() == MAX_LINE {
                        line(&self.partial);
                        self.partial.clear();
                    }
                }
            }
        }
    }

    /// The line being written, so far.
    pub fn partial(&self) -> &[u8] {
        &self.partial
    }

    /// The line being written, taken (at the end of the output).
    pub fn take_partial(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<u8>) {
        let mut lines = Lines::default();
        let mut got = Vec::new();
        for chunk in chunks {
            lines.push(chunk, |line| got.push(line.to_vec()));
        }
        (got, lines.take_partial())
    }

    #[test]
    fn lines_come_whole_however_the_output_is_cut() {
        let (got, rest) = lines_of(&[b"one\ntw", b"o\n", b"", b"three\nfour"]);
        assert_eq!(got, [&b"one\n"[..], b"two\n", b"three\n"]);
        assert_eq!(rest, b"four");
    }

    #[test]
    fn a_line_that_never_ends_is_cut_and_stays_bounded() {
        let endless = vec![b'x'; 3 * MAX_LINE + 5];
        let (got, rest) = lines_of(&[&endless[..10], &endless[10..], b"\nend\n"]);
        assert_eq!(got.len(), 5);
        assert!(got[..3].iter().all(|line| line.len() == MAX_LINE));
        assert_eq!(got[3], b"xxxxx\n");
        assert_eq!(got[4], b"end\n");
        assert!(rest.is_empty());
    }
}
