//! Splitting byte streams into lines, with the 4,096-byte limit: one splitter for a worker's
//! control channel (a longer line is an error), its captured output (a longer line is cut) and
//! the worker's own helpers (`worker_side.rs`, no limit).

/// The longest line a worker may send, without its `\n`.
pub const MAX_LINE: usize = 4096;

/// A line went past `MAX_LINE` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// What a splitter does with a line longer than its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overlong {
    /// The stream broke the protocol (a control channel): `feed` fails.
    Refuse,
    /// The line is cut at the limit and the rest of it dropped (captured output).
    Cut,
}

/// The one line splitter: keeps the bytes of an unfinished line between reads, and hands each
/// complete line (without its `\n`) to the caller.
#[derive(Debug)]
pub(crate) struct Splitter {
    partial: Vec<u8>,
    limit: usize,
    overlong: Overlong,
    /// The rest of a line that was cut is being dropped.
    skipping: bool,
}

impl Splitter {
    pub(crate) const fn new(limit: usize, overlong: Overlong) -> Splitter {
        Splitter {
            partial: Vec::new(),
            limit,
            overlong,
            skipping: false,
        }
    }

    /// Hands the complete lines in `bytes` to `line`. An error (only with `Overlong::Refuse`)
    /// means the stream broke the protocol; the splitter should not be fed again.
    pub(crate) fn feed(
        &mut self,
        mut bytes: &[u8],
        line: &mut impl FnMut(&[u8]),
    ) -> Result<(), LineTooLong> {
        while !bytes.is_empty() {
            let (piece, rest, complete) = match bytes.iter().position(|&b| b == b'\n') {
                Some(i) => (&bytes[..i], &bytes[i + 1..], true),
                None => (bytes, &[][..], false),
            };
            bytes = rest;
            if self.skipping {
                self.skipping = !complete;
                continue;
            }
            let room = self.limit - self.partial.len();
            match self.overlong {
                Overlong::Refuse if piece.len() > room => return Err(LineTooLong),
                // A line that fills the limit is cut now, unless it ends exactly there.
                Overlong::Cut if piece.len() >= room && !(complete && piece.len() == room) => {
                    self.partial.extend_from_slice(&piece[..room]);
                    line(&self.partial);
                    self.partial.clear();
                    self.skipping = !complete;
                    continue;
                }
                _ => {}
            }
            if complete && self.partial.is_empty() {
                line(piece);
            } else {
                self.partial.extend_from_slice(piece);
                if complete {
                    line(&self.partial);
                    self.partial.clear();
                }
            }
        }
        Ok(())
    }

    /// The bytes of the unfinished line, and whether the rest of a cut line is being dropped
    /// (what crosses a handover, `resume`).
    pub(crate) fn pending(&self) -> (&[u8], bool) {
        (&self.partial, self.skipping)
    }

    /// A splitter that goes on where one that had `pending` left off (the host's previous
    /// image): the unfinished line is neither lost nor cut in two.
    pub(crate) fn resume(
        limit: usize,
        overlong: Overlong,
        partial: Vec<u8>,
        skipping: bool,
    ) -> Splitter {
        let mut partial = partial;
        partial.truncate(limit);
        Splitter {
            partial,
            limit,
            overlong,
            skipping,
        }
    }

    /// The stream ended: an unfinished line counts as a line.
    pub(crate) fn finish(&mut self, line: &mut impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(&self.partial);
            self.partial.clear();
        }
    }
}

/// A control channel's lines: at most `MAX_LINE` bytes, a longer one breaks the protocol.
#[derive(Debug)]
pub struct LineReader(Splitter);

impl Default for LineReader {
    fn default() -> Self {
        LineReader(Splitter::new(MAX_LINE, Overlong::Refuse))
    }
}

impl LineReader {
    /// Appends the complete lines in `bytes` (without `\n`) to `out`. An error means the stream
    /// broke the protocol; the reader should not be fed again.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), LineTooLong> {
        self.0.feed(bytes, &mut |l| out.push(l.to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, LineTooLong> {
        let mut reader = LineReader::default();
        let mut out = Vec::new();
        for c in chunks {
            reader.feed(c, &mut out)?;
        }
        Ok(out)
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        assert_eq!(
            lines(&[b"REA", b"DY\nHEART", b"BEAT\n\npartial"]).unwrap(),
            [b"READY".to_vec(), b"HEARTBEAT".to_vec(), Vec::new()]
        );
    }

    #[test]
    fn the_limit_is_exactly_4096_bytes() {
        let ok = [vec![b'x'; MAX_LINE], b"\n".to_vec()].concat();
        assert_eq!(lines(&[&ok]).unwrap().len(), 1);
        let long = vec![b'x'; MAX_LINE + 1];
        assert_eq!(lines(&[&long]), Err(LineTooLong));
        assert_eq!(lines(&[&long[..10], &long[10..]]), Err(LineTooLong));
    }

    fn cut(chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut c = Splitter::new(MAX_LINE, Overlong::Cut);
        let mut out = Vec::new();
        for chunk in chunks {
            c.feed(chunk, &mut |l| out.push(l.to_vec())).unwrap();
        }
        c.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    #[test]
    fn lines_are_cut_at_the_limit_and_the_rest_of_a_long_line_is_dropped() {
        assert_eq!(
            cut(&[b"a\nb", b"c\n", b"d"]),
            vec![b"a".to_vec(), b"bc".to_vec(), b"d".to_vec()]
        );
        let long = vec![b'x'; MAX_LINE * 3];
        let lines = cut(&[&long[..5000], &long[5000..], b"\nnext\n"]);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(lines[1], b"next");
        let exact = vec![b'y'; MAX_LINE];
        let lines = cut(&[&exact, b"\nz\n"]);
        assert_eq!(lines, vec![exact.clone(), b"z".to_vec()]);
    }

    proptest::proptest! {
        #[test]
        fn cut_lines_are_short_and_whole_lines_come_through_unchanged(
            lines in proptest::collection::vec("[a-z]{0,5000}", 0..20),
            split in 1usize..9000,
        ) {
            let text: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
            let (a, b) = text.split_at(split.min(text.len()));
            let out = cut(&[a, b]);
            proptest::prop_assert_eq!(out.len(), lines.len());
            for (got, want) in out.iter().zip(&lines) {
                let n = want.len().min(MAX_LINE);
                proptest::prop_assert_eq!(&got[..], &want.as_bytes()[..n]);
            }
        }
    }

    proptest::proptest! {
    #[test]
    fn any_chunking_gives_the_lines_of_the_whole_stream(
        stream in proptest::collection::vec(proptest::prop_oneof![9 => proptest::arbitrary::any::<u8>(), 1 => proptest::strategy::Just(b'\n')], 0..12_000),
        cuts in proptest::collection::vec(0usize..12_000, 0..16),
    ) {
        // The reference: split the whole stream at once.
        let pieces: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
        let (complete, tail) = pieces.split_at(pieces.len() - 1);
        let too_long = complete.iter().chain(tail).any(|l| l.len() > MAX_LINE);
        // The reader, fed in random chunks.
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
        cuts.sort();
        let mut reader = LineReader::default();
        let mut out = Vec::new();
        let mut result = Ok(());
        let mut start = 0;
        for end in cuts.into_iter().chain([stream.len()]) {
            result = reader.feed(&stream[start..end], &mut out);
            if result.is_err() {
                break;
            }
            start = end;
        }
        if too_long {
            proptest::prop_assert_eq!(result, Err(LineTooLong));
        } else {
            proptest::prop_assert_eq!(result, Ok(()));
            proptest::prop_assert_eq!(out, complete.iter().map(|l| l.to_vec()).collect::<Vec<_>>());
        }
    }
    }
}
