//! Splitting a worker's byte stream into protocol lines, with the 4,096-byte limit.

/// The longest line a worker may send, without its `\n`.
pub const MAX_LINE: usize = 4096;

/// A line went past `MAX_LINE` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

/// Keeps the bytes of an unfinished line between reads.
#[derive(Debug, Default)]
pub struct LineReader {
    partial: Vec<u8>,
}

impl LineReader {
    /// Appends the complete lines in `bytes` (without `\n`) to `out`. An error means the stream
    /// broke the protocol; the reader should not be fed again.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), LineTooLong> {
        for chunk in bytes.split_inclusive(|&b| b == b'\n') {
            let (text, complete) = match chunk.strip_suffix(b"\n") {
                Some(text) => (text, true),
                None => (chunk, false),
            };
            if self.partial.len() + text.len() > MAX_LINE {
                return Err(LineTooLong);
            }
            self.partial.extend_from_slice(text);
            if complete {
                out.push(std::mem::take(&mut self.partial));
            }
        }
        Ok(())
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
}
