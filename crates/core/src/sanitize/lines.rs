//! Physical line counting over a byte stream cut into arbitrary pieces.

/// Counts line terminators (`\n`, `\r\n` and lone `\r` each count once), remembering a `\r`
/// at the end of one piece until the next piece says whether `\n` follows.
///
/// Counting is done in bulk over whole slices (memchr's vectorized count), so the record loop never
/// pays for it per record: it asks for a line number only when it reports one.
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
        self.count_tallied(bytes, Tally::of(bytes));
    }

    /// [`count`](Self::count), for a piece whose tally is already known.
    pub fn count_tallied(&mut self, bytes: &[u8], mut tally: Tally) {
        let Some((&first, _)) = bytes.split_first() else {
            return;
        };
        if self.pending_cr {
            self.pending_cr = false;
            self.terminators += 1;
            if first == b'\n' {
                self.crlf += 1;
                tally.lf -= 1;
            } else {
                self.cr += 1;
            }
        }
        let trailing_cr = bytes.last() == Some(&b'\r');
        let lone_cr = tally.cr - tally.crlf - u64::from(trailing_cr);
        self.lf += tally.lf - tally.crlf;
        self.crlf += tally.crlf;
        self.cr += lone_cr;
        self.terminators += tally.lf + lone_cr;
        self.pending_cr = trailing_cr;
    }

    /// The 1-based line number of the next byte, when that byte is not `\n`.
    pub fn next_line(&self) -> u64 {
        self.terminators + 1 + u64::from(self.pending_cr)
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

/// Counts of `\n`, `\r` and `\r\n` in a slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub lf: u64,
    pub cr: u64,
    pub crlf: u64,
}

impl Tally {
    /// Tallies a slice with memchr's vectorized search.
    pub fn of(bytes: &[u8]) -> Self {
        Self::with_lf(bytes, memchr::memchr_iter(b'\n', bytes).count() as u64)
    }

    /// Tallies a slice whose `\n` count is already known (csv-core counts them as it parses).
    pub fn with_lf(bytes: &[u8], lf: u64) -> Self {
        let (mut cr, mut crlf) = (0, 0);
        for i in memchr::memchr_iter(b'\r', bytes) {
            cr += 1;
            crlf += u64::from(bytes.get(i + 1) == Some(&b'\n'));
        }
        Self { lf, cr, crlf }
    }

    /// Line breaks in the slice, `\r\n` counted once.
    pub fn breaks(self) -> u64 {
        self.lf + self.cr - self.crlf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Line of the first byte after `prefix`, counting `prefix` in `piece`-byte pieces.
    fn line_after(prefix: &[u8], piece: usize) -> u64 {
        let mut counter = LineCounter::default();
        for chunk in prefix.chunks(piece) {
            counter.count(chunk);
        }
        counter.next_line()
    }

    #[test]
    fn counts_lf_crlf_and_lone_cr_alike_across_piece_boundaries() {
        for piece in [1, 2, 3, 64] {
            assert_eq!(line_after(b"a\nb\n", piece), 3);
            assert_eq!(line_after(b"a\r\nb\r\n", piece), 3);
            assert_eq!(line_after(b"a\rb\r", piece), 3);
            assert_eq!(line_after(b"a\r\n\r\rb\n\n", piece), 6);
        }
    }

    #[test]
    fn a_trailing_cr_counts_before_the_next_content_byte() {
        let mut counter = LineCounter::default();
        counter.count(b"a\r");
        assert_eq!(counter.next_line(), 2);
        counter.count(b"\nb");
        assert_eq!(counter.next_line(), 2);
    }

    #[test]
    fn counts_breaks_inside_a_cell() {
        assert_eq!(Tally::of(b"a\r\nb\nc\rd").breaks(), 3);
        assert_eq!(Tally::of(b"abc").breaks(), 0);
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
