//! Records that go to the output exactly as they came, found without running csv-core.
//!
//! Most records of a real export need no change: every field bare or wholly quoted, no
//! doubled quote, no line break inside a field, nothing to clean. [`Rows`](super::rows::Rows)
//! copies such a record through byte for byte, so parsing it field by field only to learn
//! that is wasted work: csv-core walks the text a byte at a time. Here one vectorized pass
//! over a piece of text marks its structural bytes (`"`, `,`, CR, LF) and the bytes that may
//! need cleaning, 64 bytes to a bitmask, and [`plain_record`] walks from mark to mark. It only
//! ever says yes to a record that the csv-core path would have copied through unchanged;
//! anything else, it leaves to csv-core.

use std::ops::Range;

use super::lines::Tally;

const BLOCK: usize = 64;

/// Bitmasks of one 64-byte block of text: bit `k` is the block's byte `k`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Block {
    /// `"`, `,`, CR and LF.
    structural: u64,
    /// Bytes that may need cleaning: control characters (the ones the cleaner strips), the
    /// lead byte of the C1 controls, `<`, `=`, `&`, and a `:` right after a letter, a control,
    /// a quote or a comma (where a script scheme may end, once the fields are laid end to end).
    suspect: u64,
}

/// Where the structural and suspect bytes of one piece of text are, and its line breaks.
#[derive(Debug, Default)]
pub(super) struct PieceIndex {
    blocks: Vec<Block>,
    tally: Tally,
}

impl PieceIndex {
    /// Indexes `text`, replacing what was indexed before.
    pub fn build(&mut self, text: &[u8]) {
        self.blocks.clear();
        self.blocks.reserve(text.len().div_ceil(BLOCK));
        self.tally = Tally::default();
        let mut colon_may_follow = false;
        let mut cr_before = false;
        let mut blocks = text.chunks_exact(BLOCK);
        for block in &mut blocks {
            let Ok(bytes) = <&[u8; BLOCK]>::try_from(block) else {
                continue; // chunks_exact gives whole blocks
            };
            let masks = block_masks(bytes);
            self.blocks.push(masks.finish(colon_may_follow));
            colon_may_follow = masks.colon_may_follow >> (BLOCK - 1) != 0;
            cr_before = self.count_line_breaks(masks, cr_before);
        }
        let rest = blocks.remainder();
        if !rest.is_empty() {
            // The padding is a space: neither structural nor suspect.
            let mut last = [b' '; BLOCK];
            last[..rest.len()].copy_from_slice(rest);
            let masks = masks_portable(&last);
            self.blocks.push(masks.finish(colon_may_follow));
            self.count_line_breaks(masks, cr_before);
        }
    }

    /// The line breaks of the whole piece (as [`Tally::of`] counts them).
    pub fn tally(&self) -> Tally {
        self.tally
    }

    /// Adds a block's line breaks to the tally; `cr_before`: the block before ended with CR.
    /// Returns whether this one does.
    fn count_line_breaks(&mut self, masks: RawMasks, cr_before: bool) -> bool {
        let crlf = (masks.cr & (masks.lf >> 1)) | u64::from(cr_before && masks.lf & 1 != 0);
        self.tally.lf += u64::from(masks.lf.count_ones());
        self.tally.cr += u64::from(masks.cr.count_ones());
        self.tally.crlf += u64::from(crlf.count_ones());
        masks.cr >> (BLOCK - 1) != 0
    }

    /// Whether any byte in `range` is suspect.
    fn suspect_in(&self, range: Range<usize>) -> bool {
        if range.is_empty() {
            return false;
        }
        let (first, last) = (range.start / BLOCK, (range.end - 1) / BLOCK);
        (first..=last).any(|i| {
            let mut bits = self.blocks.get(i).map_or(0, |b| b.suspect);
            if i == first {
                bits &= !0u64 << (range.start % BLOCK);
            }
            if i == last {
                bits &= !0u64 >> (BLOCK - 1 - (range.end - 1) % BLOCK);
            }
            bits != 0
        })
    }
}

/// What a record must be to be copied through: as wide as the header, and no cell that
/// [`CellChecks`] would send to the cleaner.
#[derive(Debug, Clone, Copy)]
pub(super) struct Shape {
    pub columns: usize,
    pub cells: CellChecks,
    /// A record longer than this is left to csv-core, which may have to grow its buffer.
    pub max_bytes: usize,
}

/// The per-cell checks that decide between copying a cell and cleaning it, for records whose
/// bytes hold no control character, tag or handler attribute.
#[derive(Debug, Clone, Copy)]
pub(super) struct CellChecks {
    /// Whether a cell's first byte is checked against [`MAY_START_FORMULA`].
    pub formulas: bool,
    pub max_field: usize,
}

impl CellChecks {
    pub fn needs_work(self, cell: &[u8]) -> bool {
        cell.len() > self.max_field
            || (self.formulas
                && cell
                    .first()
                    .is_some_and(|&b| MAY_START_FORMULA[usize::from(b)]))
    }
}

/// A record [`plain_record`] found: its bytes without the line break, and where the next one
/// may start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plain {
    pub raw: Range<usize>,
    pub next: usize,
}

/// The record starting at `pos` in `text` (line breaks before it are blank lines, skipped as
/// csv-core skips them), when the csv-core path would copy it through unchanged: it ends with
/// a line break inside `text`, has `shape.columns` fields, each bare (no quote, no line
/// break) or wholly quoted (no quote or line break inside), none too long or formula-like, not
/// all of them blank, and no suspect byte. `None` means "ask csv-core", never "bad record".
pub(super) fn plain_record(
    text: &[u8],
    index: &PieceIndex,
    pos: usize,
    shape: Shape,
) -> Option<Plain> {
    let start = pos
        + text[pos.min(text.len())..]
            .iter()
            .position(|&b| b != b'\r' && b != b'\n')?;
    let mut marks = Marks::from(&index.blocks, start);
    let (mut fields, mut blank, mut field_start) = (0, true, start);
    loop {
        let (cell, sep) = if text.get(field_start) == Some(&b'"') {
            let _opening = marks.next()?;
            let close = loop {
                let at = marks.next()?;
                match text[at] {
                    b'"' => break at,
                    b',' => continue,
                    _ => return None,
                }
            };
            let sep = marks.next()?;
            if sep != close + 1 {
                return None;
            }
            (field_start + 1..close, sep)
        } else {
            let sep = marks.next()?;
            (field_start..sep, sep)
        };
        let cell = &text[cell];
        if shape.cells.needs_work(cell) {
            return None;
        }
        blank &= cell.first().is_none_or(u8::is_ascii_whitespace);
        fields += 1;
        let next = match text[sep] {
            b',' if fields < shape.columns => {
                field_start = sep + 1;
                continue;
            }
            b'\n' => sep + 1,
            b'\r' => match text.get(sep + 1) {
                Some(b'\n') => sep + 2,
                Some(_) => sep + 1,
                None => return None,
            },
            // A quote inside a bare field or right after a closing one, or a row too wide.
            _ => return None,
        };
        let raw = start..sep;
        let copyable = fields == shape.columns
            && !blank
            && raw.len() <= shape.max_bytes
            && !index.suspect_in(raw.clone());
        return copyable.then_some(Plain { raw, next });
    }
}

/// The structural bytes from a position on, in order.
struct Marks<'a> {
    blocks: &'a [Block],
    block: usize,
    bits: u64,
}

impl<'a> Marks<'a> {
    fn from(blocks: &'a [Block], pos: usize) -> Self {
        let block = pos / BLOCK;
        let bits = blocks
            .get(block)
            .map_or(0, |b| b.structural & (!0u64 << (pos % BLOCK)));
        Self {
            blocks,
            block,
            bits,
        }
    }

    fn next(&mut self) -> Option<usize> {
        while self.bits == 0 {
            self.block += 1;
            self.bits = self.blocks.get(self.block)?.structural;
        }
        let k = self.bits.trailing_zeros() as usize;
        self.bits &= self.bits - 1;
        Some(self.block * BLOCK + k)
    }
}

/// Bytes a formula-like cell may start with: the OWASP triggers, and controls that may hide
/// one. One lookup per cell.
static MAY_START_FORMULA: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    let formula: &[u8] = b"=+-@\x7f\xc2";
    let mut i = 0;
    while i < formula.len() {
        t[formula[i] as usize] = true;
        i += 1;
    }
    t
};

/// The masks of one block before the colon rule is applied across block boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RawMasks {
    structural: u64,
    /// Suspect bytes other than `:`.
    suspect: u64,
    colon: u64,
    /// Letters, controls, quotes and commas: a `:` after one of them is suspect.
    colon_may_follow: u64,
    cr: u64,
    lf: u64,
}

impl RawMasks {
    /// `carry`: whether the byte before this block is one a `:` is suspect after.
    fn finish(self, carry: bool) -> Block {
        let after = (self.colon_may_follow << 1) | u64::from(carry);
        Block {
            structural: self.structural,
            suspect: self.suspect | (self.colon & after),
        }
    }
}

fn block_masks(bytes: &[u8; BLOCK]) -> RawMasks {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { masks_avx2(bytes) };
    }
    #[cfg(target_arch = "aarch64")]
    return masks_neon(bytes);
    #[allow(unreachable_code)]
    masks_portable(bytes)
}

const STRUCTURAL: u8 = 1;
const SUSPECT: u8 = 2;
const COLON: u8 = 4;
const COLON_MAY_FOLLOW: u8 = 8;

/// A control character the cleaner strips (tab, CR and LF stay), or 0xC2, which leads the C1
/// controls in UTF-8. Without branches, so loops over it vectorize.
#[inline(always)]
pub(super) const fn is_stripped_control(b: u8) -> bool {
    let c0 = (b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r');
    c0 | (b == 0x7f) | (b == 0xc2)
}

/// Each byte's classes, for [`masks_portable`].
static CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        let control = byte < 0x20 || byte == 0x7f;
        let stripped = is_stripped_control(byte);
        let mut class = 0;
        if matches!(byte, b'"' | b',' | b'\r' | b'\n') {
            class |= STRUCTURAL;
        }
        if stripped || matches!(byte, b'<' | b'=' | b'&') {
            class |= SUSPECT;
        }
        if byte == b':' {
            class |= COLON;
        }
        if byte.is_ascii_alphabetic() || control || matches!(byte, b'"' | b',') {
            class |= COLON_MAY_FOLLOW;
        }
        t[b] = class;
        b += 1;
    }
    t
};

fn masks_portable(bytes: &[u8; BLOCK]) -> RawMasks {
    let mut masks = RawMasks {
        structural: 0,
        suspect: 0,
        colon: 0,
        colon_may_follow: 0,
        cr: 0,
        lf: 0,
    };
    for (k, &b) in bytes.iter().enumerate() {
        let class = CLASSES[usize::from(b)];
        let bit = |c: u8| u64::from(class & c != 0) << k;
        masks.structural |= bit(STRUCTURAL);
        masks.suspect |= bit(SUSPECT);
        masks.colon |= bit(COLON);
        masks.colon_may_follow |= bit(COLON_MAY_FOLLOW);
        masks.cr |= u64::from(b == b'\r') << k;
        masks.lf |= u64::from(b == b'\n') << k;
    }
    masks
}

/// [`masks_portable`] with AVX2, 32 bytes at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn masks_avx2(bytes: &[u8; BLOCK]) -> RawMasks {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2")]
    unsafe fn half(ptr: *const u8) -> [u32; 6] {
        let v = _mm256_loadu_si256(ptr.cast());
        let eq = |c: u8| _mm256_cmpeq_epi8(v, _mm256_set1_epi8(c as i8));
        let or = |a, b| _mm256_or_si256(a, b);
        let (quote, comma, cr, lf) = (eq(b'"'), eq(b','), eq(b'\r'), eq(b'\n'));
        let structural = or(or(quote, comma), or(cr, lf));
        // Unsigned `v <= 0x1f`: min(v, 0x1f) == v.
        let below_space = _mm256_cmpeq_epi8(_mm256_min_epu8(v, _mm256_set1_epi8(0x1f)), v);
        let control = or(below_space, eq(0x7f));
        let kept = or(eq(b'\t'), or(cr, lf));
        let stripped = or(_mm256_andnot_si256(kept, control), eq(0xc2));
        let suspect = or(stripped, or(eq(b'<'), or(eq(b'='), eq(b'&'))));
        // ASCII letters: (v | 0x20) - 'a' <= 25, unsigned.
        let folded = _mm256_sub_epi8(
            _mm256_or_si256(v, _mm256_set1_epi8(0x20)),
            _mm256_set1_epi8(b'a' as i8),
        );
        let letter = _mm256_cmpeq_epi8(_mm256_min_epu8(folded, _mm256_set1_epi8(25)), folded);
        let colon_may_follow = or(or(letter, control), or(quote, comma));
        let mask = |m| _mm256_movemask_epi8(m) as u32;
        [
            mask(structural),
            mask(suspect),
            mask(eq(b':')),
            mask(colon_may_follow),
            mask(cr),
            mask(lf),
        ]
    }

    let (lo, hi) = (half(bytes.as_ptr()), half(bytes.as_ptr().add(32)));
    let join = |i: usize| u64::from(lo[i]) | (u64::from(hi[i]) << 32);
    RawMasks {
        structural: join(0),
        suspect: join(1),
        colon: join(2),
        colon_may_follow: join(3),
        cr: join(4),
        lf: join(5),
    }
}

/// [`masks_portable`] with NEON (Graviton), 16 bytes at a time. NEON has no movemask: each
/// comparison keeps one weight bit per byte and three rounds of pairwise adds gather them.
#[cfg(target_arch = "aarch64")]
fn masks_neon(bytes: &[u8; BLOCK]) -> RawMasks {
    use std::arch::aarch64::*;

    const WEIGHTS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: NEON is part of the aarch64 baseline, and the loads read 16-byte runs inside
    // the 64-byte block and the 16-byte weights.
    unsafe {
        let classes = |v: uint8x16_t| {
            let eq = |c: u8| vceqq_u8(v, vdupq_n_u8(c));
            let (quote, comma, cr, lf) = (eq(b'"'), eq(b','), eq(b'\r'), eq(b'\n'));
            let structural = vorrq_u8(vorrq_u8(quote, comma), vorrq_u8(cr, lf));
            let control = vorrq_u8(vcltq_u8(v, vdupq_n_u8(0x20)), eq(0x7f));
            let kept = vorrq_u8(eq(b'\t'), vorrq_u8(cr, lf));
            let stripped = vorrq_u8(vbicq_u8(control, kept), eq(0xc2));
            let suspect = vorrq_u8(stripped, vorrq_u8(eq(b'<'), vorrq_u8(eq(b'='), eq(b'&'))));
            // ASCII letters: (v | 0x20) - 'a' <= 25, unsigned.
            let folded = vsubq_u8(vorrq_u8(v, vdupq_n_u8(0x20)), vdupq_n_u8(b'a'));
            let letter = vcleq_u8(folded, vdupq_n_u8(25));
            let colon_may_follow = vorrq_u8(vorrq_u8(letter, control), vorrq_u8(quote, comma));
            [structural, suspect, eq(b':'), colon_may_follow, cr, lf]
        };
        let ptr = bytes.as_ptr();
        let quarters = [0, 16, 32, 48].map(|at| classes(vld1q_u8(ptr.add(at))));
        let weights = vld1q_u8(WEIGHTS.as_ptr());
        let mask = |class: usize| {
            let weighed = |q: usize| vandq_u8(quarters[q][class], weights);
            let halves = vpaddq_u8(
                vpaddq_u8(weighed(0), weighed(1)),
                vpaddq_u8(weighed(2), weighed(3)),
            );
            vgetq_lane_u64::<0>(vreinterpretq_u64_u8(vpaddq_u8(halves, halves)))
        };
        RawMasks {
            structural: mask(0),
            suspect: mask(1),
            colon: mask(2),
            colon_may_follow: mask(3),
            cr: mask(4),
            lf: mask(5),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        columns: 3,
        cells: CellChecks {
            formulas: true,
            max_field: 100,
        },
        max_bytes: 1000,
    };

    fn find(text: &[u8], pos: usize) -> Option<Plain> {
        let mut index = PieceIndex::default();
        index.build(text);
        plain_record(text, &index, pos, SHAPE)
    }

    #[test]
    fn vector_and_portable_masks_agree_on_every_byte_in_every_lane() {
        let mut bytes = [0u8; BLOCK];
        for start in 0..=255u8 {
            for (k, b) in bytes.iter_mut().enumerate() {
                *b = start.wrapping_add((k as u8).wrapping_mul(37));
            }
            assert_eq!(block_masks(&bytes), masks_portable(&bytes), "{start}");
        }
    }

    #[test]
    fn tallies_line_breaks_as_the_line_counter_does_across_blocks() {
        let mut text = Vec::new();
        for i in 0..300u32 {
            text.extend_from_slice(b"ab,c");
            text.extend_from_slice(match i % 4 {
                0 => b"\r\n".as_slice(),
                1 => b"\n",
                2 => b"\r",
                _ => b"\"x\r\ny\"\r\r\n",
            });
            let mut index = PieceIndex::default();
            index.build(&text);
            assert_eq!(index.tally(), Tally::of(&text), "{i}");
        }
    }

    #[test]
    fn finds_bare_and_quoted_records_with_each_line_ending() {
        assert_eq!(find(b"a,b,c\nx", 0), Some(Plain { raw: 0..5, next: 6 }));
        assert_eq!(find(b"a,b,c\r\nx", 0), Some(Plain { raw: 0..5, next: 7 }));
        assert_eq!(find(b"a,b,c\rx", 0), Some(Plain { raw: 0..5, next: 6 }));
        let text = b"\r\n\n\"a,1\",\"\",c\r\n";
        assert_eq!(
            find(text, 0),
            Some(Plain {
                raw: 3..13,
                next: 15
            })
        );
    }

    #[test]
    fn leaves_every_record_that_needs_csv_core_to_it() {
        for text in [
            &b"a,b,c"[..],                // no line break yet
            b"a,b,c\r",                   // CR at the end: LF may follow
            b"a,b\n",                     // too narrow
            b"a,b,c,d\n",                 // too wide
            b"a,\"b\"\"x\",c\n",          // doubled quote
            b"a,\"b\"x,c\n",              // text after a closing quote
            b"a,b\"x,c\n",                // quote in a bare field
            b"a,\"b\nx\",c\n",            // line break in a quoted field
            b"a,=1+2,c\n",                // formula
            b"a,\"-3\",c\n",              // maybe a formula
            b"a,<b>,c\n",                 // markup
            b"a,javascript:x,c\n",        // script scheme
            b"a,\"javascript\",\":x\"\n", // a scheme across cells
            b"a,b\x07,c\n",               // control character
            b" , ,\n",                    // blank
            b"\n\n",                      // nothing but line breaks
        ] {
            assert_eq!(find(text, 0), None, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn a_colon_after_a_digit_or_space_is_not_suspect_but_after_a_letter_it_is() {
        assert!(find(b"12:30:00,a :b,x\n", 0).is_some());
        assert!(find(b"ab:c,1,2\n", 0).is_none());
        // Across a block boundary: the letter ends one block, the colon starts the next.
        let mut text = vec![b'x'; 63];
        text.extend_from_slice(b":y,1,2\n");
        assert!(find(&text, 0).is_none());
        text[62] = b'1';
        assert!(find(&text, 0).is_some());
    }

    #[test]
    fn suspect_bytes_count_only_inside_the_record() {
        let text = b"<,=,&\na,b,c\n<";
        assert_eq!(
            find(text, 6),
            Some(Plain {
                raw: 6..11,
                next: 12
            })
        );
    }
}
