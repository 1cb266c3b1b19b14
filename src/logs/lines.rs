//! The lines a follower serves, stored compactly: the text in a few large chunks and
//! 8 bytes a line to find it, whether the log still grows or is complete. A line is
//! never moved once written (chunks are allocated at their final size), so appending
//! costs no copy of what is held, and a complete log is [`Lines::shrink`]ed to the text
//! plus its 8 bytes a line.

use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The first chunk's size; each next one doubles, up to [`MAX_CHUNK`]. Small logs waste
/// little, big ones allocate rarely.
const MIN_CHUNK: usize = 1 << 10;
/// The largest chunk (a longer line gets a chunk of its own size).
const MAX_CHUNK: usize = 1 << 16;

/// Served lines, in served order; appendable.
#[derive(Debug, Clone, Default)]
pub struct Lines {
    /// Text chunks; only the last one is appended to.
    chunks: Vec<String>,
    /// Per line: which chunk, and where in it the line ends. It starts where the
    /// previous line ends if that is in the same chunk, at 0 otherwise.
    locs: Vec<Loc>,
}

#[derive(Debug, Clone, Copy)]
struct Loc {
    chunk: u32,
    end: u32,
}

impl Lines {
    /// Number of lines.
    pub fn len(&self) -> usize {
        self.locs.len()
    }

    /// True when there is no line.
    pub fn is_empty(&self) -> bool {
        self.locs.is_empty()
    }

    /// Line `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn get(&self, i: usize) -> &str {
        let loc = self.locs[i];
        let start = match i.checked_sub(1).map(|p| self.locs[p]) {
            Some(prev) if prev.chunk == loc.chunk => prev.end as usize,
            _ => 0,
        };
        &self.chunks[loc.chunk as usize][start..loc.end as usize]
    }

    /// Lines `range` (clamped to the lines held).
    pub fn slice(&self, range: Range<usize>) -> LineSlice<'_> {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        LineSlice { lines: self, range: start..end }
    }

    /// Every line.
    pub fn all(&self) -> LineSlice<'_> {
        self.slice(0..self.len())
    }

    /// Bytes of text held.
    pub fn text_bytes(&self) -> u64 {
        self.locs.last().map_or(0, |_| self.chunks.iter().map(|c| c.len() as u64).sum())
    }

    /// Bytes allocated, text and bookkeeping.
    pub fn allocated_bytes(&self) -> u64 {
        let text: usize = self.chunks.iter().map(String::capacity).sum();
        (text + self.locs.capacity() * std::mem::size_of::<Loc>() + self.chunks.capacity() * 24) as u64
    }

    /// Appends a line.
    pub fn push(&mut self, line: &str) {
        let fits = self.chunks.last().is_some_and(|c| c.capacity() - c.len() >= line.len());
        if !fits {
            let next = self.chunks.last().map_or(MIN_CHUNK, |c| (c.capacity() * 2).min(MAX_CHUNK));
            self.chunks.push(String::with_capacity(next.max(line.len())));
        }
        let chunk = self.chunks.len() - 1;
        let text = &mut self.chunks[chunk];
        text.push_str(line);
        // A chunk holds at most max(MAX_CHUNK, one line) bytes; a line of 4 GiB cannot
        // come from PowerJob (pages are 100 lines in one JSON answer).
        let end = u32::try_from(text.len()).expect("a log line under 4 GiB");
        self.locs.push(Loc { chunk: chunk as u32, end });
    }

    /// Frees the room kept for appends (a complete log never grows again): the text moves
    /// into one buffer of its exact size. One large allocation rather than many chunks:
    /// when the log is evicted it goes back to the system whole instead of leaving holes
    /// in the heap. Logs of 4 GiB or more keep their chunks.
    pub fn shrink(&mut self) {
        let total: usize = self.chunks.iter().map(String::len).sum();
        if self.chunks.len() > 1 && u32::try_from(total).is_ok() {
            let mut text = String::with_capacity(total);
            let mut base = Vec::with_capacity(self.chunks.len());
            for c in &self.chunks {
                base.push(text.len() as u32);
                text.push_str(c);
            }
            for loc in &mut self.locs {
                loc.end += base[loc.chunk as usize];
                loc.chunk = 0;
            }
            self.chunks = vec![text];
        }
        if let Some(last) = self.chunks.last_mut() {
            last.shrink_to_fit();
        }
        self.chunks.shrink_to_fit();
        self.locs.shrink_to_fit();
    }
}

/// A borrowed run of lines.
#[derive(Debug, Clone)]
pub struct LineSlice<'a> {
    lines: &'a Lines,
    range: Range<usize>,
}

impl<'a> LineSlice<'a> {
    /// Number of lines.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// True when there is no line.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// The lines, in order.
    pub fn iter(&self) -> Iter<'a> {
        Iter { lines: self.lines, range: self.range.clone() }
    }

    /// The lines as one `Arc<str>` each (copied).
    pub fn to_vec(&self) -> Vec<Arc<str>> {
        self.iter().map(Arc::from).collect()
    }
}

/// Iterator over a [`LineSlice`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    lines: &'a Lines,
    range: Range<usize>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        self.range.next().map(|i| self.lines.get(i))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.range.len(), Some(self.range.len()))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.range.next_back().map(|i| self.lines.get(i))
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl Serialize for Lines {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.all().iter())
    }
}

impl<'de> Deserialize<'de> for Lines {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut lines = Lines::default();
        for line in Vec::<String>::deserialize(d)? {
            lines.push(&line);
        }
        Ok(lines)
    }
}

impl<'a> FromIterator<&'a str> for Lines {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut lines = Lines::default();
        for l in iter {
            lines.push(l);
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_read_as_they_were_written_across_chunks() {
        let long = "x".repeat(MAX_CHUNK + 5);
        let mut src: Vec<String> = vec!["first".into(), String::new(), "ünïcödé ✓".into(), "a \"quoted\" line".into()];
        src.extend((0..2000).map(|i| format!("line {i} {}", "y".repeat(i % 300))));
        src.push(long.clone());
        src.push(String::new());
        src.push("after the long one".into());
        let mut lines: Lines = src.iter().map(String::as_str).collect();
        assert!(lines.chunks.len() > 3, "spans several chunks");
        let check = |lines: &Lines, src: &[String]| {
            assert_eq!(lines.len(), src.len());
            assert_eq!(lines.text_bytes(), src.iter().map(|l| l.len() as u64).sum::<u64>());
            assert_eq!(lines.all().iter().collect::<Vec<_>>(), src);
            assert_eq!(lines.slice(1..3).iter().collect::<Vec<_>>(), &src[1..3]);
            assert_eq!(lines.slice(3..6).iter().rev().collect::<Vec<_>>(), [&*src[5], &*src[4], &*src[3]]);
            assert_eq!(lines.slice(src.len() + 1..src.len() + 9).len(), 0);
        };
        check(&lines, &src);
        lines.shrink();
        assert_eq!(lines.chunks.len(), 1, "one buffer once shrunk");
        check(&lines, &src);
        // Appending after a shrink works (a retried instance grows again).
        lines.push("more");
        src.push("more".into());
        check(&lines, &src);
        let json = serde_json::to_string(&lines).unwrap();
        assert_eq!(json, serde_json::to_string(&src).unwrap());
        let again: Lines = serde_json::from_str(&json).unwrap();
        assert_eq!(again.all().iter().collect::<Vec<_>>(), src);
    }

    #[test]
    fn memory_is_the_text_plus_a_few_bytes_a_line() {
        let line = "2026-11-25 10:00:01.120 [10.0.0.5:27777] INFO ".to_string() + &"z".repeat(100);
        let mut lines = Lines::default();
        for _ in 0..10_000 {
            lines.push(&line);
        }
        let per_line = (lines.allocated_bytes() - lines.text_bytes()) as f64 / 10_000.0;
        assert!(per_line < 24.0, "{per_line} bytes a line while growing");
        lines.shrink();
        let per_line = (lines.allocated_bytes() - lines.text_bytes()) as f64 / 10_000.0;
        assert!(per_line < 10.0, "{per_line} bytes a line once shrunk");
    }

    #[test]
    fn an_empty_log_slices() {
        let mut lines = Lines::default();
        lines.shrink();
        assert!(lines.is_empty());
        assert!(lines.slice(0..10).is_empty());
        assert_eq!(lines.all().iter().next(), None);
        assert_eq!(lines.text_bytes(), 0);
    }
}
