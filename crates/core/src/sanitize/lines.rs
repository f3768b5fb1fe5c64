//! Physical line counting over a byte stream cut into arbitrary pieces.

/// Counts line terminators (`\n`, `\r\n` and lone `\r` each count once), remembering a `\r`
/// at the end of one piece until the next piece says whether `\n` follows.
#[derive(Debug, Default)]
pub struct LineCounter {
    terminators: u64,
    pending_cr: bool,
    lf: u64,
    crlf: u64,
    cr: u64,
}

impl LineCounter {
    /// Counts the terminators in the next piece of the stream.
    pub fn count(&mut self, bytes: &[u8]) {
        let mut i = 0;
        if self.pending_cr && !bytes.is_empty() {
            self.pending_cr = false;
            self.terminators += 1;
            if bytes[0] == b'\n' {
                self.crlf += 1;
                i = 1;
            } else {
                self.cr += 1;
            }
        }
        while let Some(off) = memchr::memchr2(b'\r', b'\n', &bytes[i..]) {
            let p = i + off;
            if bytes[p] == b'\n' {
                self.lf += 1;
                self.terminators += 1;
                i = p + 1;
            } else if p + 1 == bytes.len() {
                self.pending_cr = true;
                i = p + 1;
            } else if bytes[p + 1] == b'\n' {
                self.crlf += 1;
                self.terminators += 1;
                i = p + 2;
            } else {
                self.cr += 1;
                self.terminators += 1;
                i = p + 1;
            }
        }
    }

    /// Counts `bytes` as the next piece of a record. If the record has not started yet
    /// (`start` is `None`), leading terminators belong to earlier lines, and the line of the
    /// first other byte is stored in `start`.
    pub fn count_record(&mut self, bytes: &[u8], start: &mut Option<u64>) {
        if start.is_some() {
            return self.count(bytes);
        }
        match bytes.iter().position(|&b| b != b'\r' && b != b'\n') {
            None => self.count(bytes),
            Some(k) => {
                self.count(&bytes[..k]);
                *start = Some(self.next_line());
                self.count(&bytes[k..]);
            }
        }
    }

    /// The 1-based line number of the next content byte.
    pub fn next_line(&self) -> u64 {
        self.terminators + 1 + u64::from(self.pending_cr)
    }

    /// Terminators seen so far (a pending `\r` included).
    pub fn terminators(&self) -> u64 {
        self.terminators + u64::from(self.pending_cr)
    }

    /// `lf`, `crlf`, `cr`, `mixed` or `none`.
    pub fn style(&self) -> &'static str {
        let cr = self.cr + u64::from(self.pending_cr);
        match (self.lf > 0, self.crlf > 0, cr > 0) {
            (false, false, false) => "none",
            (true, false, false) => "lf",
            (false, true, false) => "crlf",
            (false, false, true) => "cr",
            _ => "mixed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(text: &[u8], piece: usize, records: &[usize]) -> Vec<u64> {
        // `records` are the byte lengths of consecutive records as a parser consumes them.
        let mut counter = LineCounter::default();
        let mut out = Vec::new();
        let mut pos = 0;
        for &len in records {
            let mut start = None;
            for chunk in text[pos..pos + len].chunks(piece) {
                counter.count_record(chunk, &mut start);
            }
            out.push(start.unwrap());
            pos += len;
        }
        out
    }

    #[test]
    fn counts_lf_crlf_and_lone_cr_alike_across_piece_boundaries() {
        for piece in [1, 2, 3, 64] {
            assert_eq!(starts(b"a\nb\nc\n", piece, &[2, 2, 2]), [1, 2, 3]);
            assert_eq!(starts(b"a\r\nb\r\nc\r\n", piece, &[2, 3, 3]), [1, 2, 3]);
            assert_eq!(starts(b"a\rb\rc\r", piece, &[2, 2, 2]), [1, 2, 3]);
        }
    }

    #[test]
    fn blank_lines_before_a_record_move_its_start() {
        assert_eq!(starts(b"a\n\n\r\nb\n", 1, &[2, 5]), [1, 4]);
    }

    #[test]
    fn embedded_newlines_count_as_physical_lines() {
        assert_eq!(starts(b"\"x\ny\"\nz\n", 4, &[6, 2]), [1, 3]);
    }

    #[test]
    fn reports_the_line_ending_style() {
        let style = |b: &[u8]| {
            let mut c = LineCounter::default();
            c.count(b);
            c.style()
        };
        assert_eq!(style(b"a\nb\n"), "lf");
        assert_eq!(style(b"a\r\nb\r\n"), "crlf");
        assert_eq!(style(b"a\rb\r"), "cr");
        assert_eq!(style(b"a\r\nb\n"), "mixed");
        assert_eq!(style(b"ab"), "none");
    }
}
