//! The lines a follower serves: one shared allocation per line while the log grows (the
//! merge looks lines up by text), one buffer for the whole log once it is complete
//! (about half the memory per line, and nothing small left to fragment the heap when
//! the log is evicted).

use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Served lines, in served order.
#[derive(Debug, Clone)]
pub enum Lines {
    /// One `Arc<str>` per line: appendable.
    Each(Vec<Arc<str>>),
    /// All lines in one buffer: read-only.
    Packed(Packed),
}

/// Lines `text[ends[i - 1]..ends[i]]` (with `ends[-1] = 0`).
#[derive(Debug, Clone)]
pub struct Packed {
    text: Box<str>,
    ends: Box<[u32]>,
}

impl Default for Lines {
    fn default() -> Self {
        Lines::Each(Vec::new())
    }
}

impl Lines {
    /// Number of lines.
    pub fn len(&self) -> usize {
        match self {
            Lines::Each(v) => v.len(),
            Lines::Packed(p) => p.ends.len(),
        }
    }

    /// True when there is no line.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Line `i`.
    ///
    /// # Panics
    /// When `i >= self.len()`.
    pub fn get(&self, i: usize) -> &str {
        match self {
            Lines::Each(v) => &v[i],
            Lines::Packed(p) => p.line(i),
        }
    }

    /// Lines `range` (clamped to the lines held).
    pub fn slice(&self, range: Range<usize>) -> LineSlice<'_> {
        let end = range.end.min(self.len());
        let start = range.start.min(end);
        match self {
            Lines::Each(v) => LineSlice::Each(&v[start..end]),
            Lines::Packed(p) => LineSlice::Packed { packed: p, range: start..end },
        }
    }

    /// Every line.
    pub fn all(&self) -> LineSlice<'_> {
        self.slice(0..self.len())
    }

    /// Bytes of text held.
    pub fn text_bytes(&self) -> u64 {
        match self {
            Lines::Each(v) => v.iter().map(|l| l.len() as u64).sum(),
            Lines::Packed(p) => p.text.len() as u64,
        }
    }

    /// The lines as one `Arc<str>` each (shared, not copied, when they already are).
    pub fn into_each(self) -> Vec<Arc<str>> {
        match self {
            Lines::Each(v) => v,
            Lines::Packed(_) => self.all().to_vec(),
        }
    }

    /// Appends a line (unpacking first: only a growing log appends).
    pub fn push(&mut self, line: Arc<str>) {
        if let Lines::Packed(_) = self {
            *self = Lines::Each(std::mem::take(self).into_each());
        }
        if let Lines::Each(v) = self {
            v.push(line);
        }
    }

    /// Moves the lines into one buffer. Logs of 4 GiB or more stay as they are.
    pub fn pack(&mut self) {
        let Lines::Each(v) = self else { return };
        let total: usize = v.iter().map(|l| l.len()).sum();
        if u32::try_from(total).is_err() {
            v.shrink_to_fit();
            return;
        }
        let mut text = String::with_capacity(total);
        let mut ends = Vec::with_capacity(v.len());
        for line in v.iter() {
            text.push_str(line);
            ends.push(text.len() as u32);
        }
        *self = Lines::Packed(Packed { text: text.into_boxed_str(), ends: ends.into_boxed_slice() });
    }
}

impl Packed {
    fn line(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.text[start..self.ends[i] as usize]
    }
}

/// A borrowed run of lines.
#[derive(Debug, Clone)]
pub enum LineSlice<'a> {
    /// Of [`Lines::Each`].
    Each(&'a [Arc<str>]),
    /// Of [`Lines::Packed`].
    Packed {
        /// The buffer.
        packed: &'a Packed,
        /// Which lines.
        range: Range<usize>,
    },
}

impl<'a> LineSlice<'a> {
    /// Number of lines.
    pub fn len(&self) -> usize {
        match self {
            LineSlice::Each(s) => s.len(),
            LineSlice::Packed { range, .. } => range.len(),
        }
    }

    /// True when there is no line.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The lines, in order.
    pub fn iter(&self) -> Iter<'a> {
        match self {
            LineSlice::Each(s) => Iter { each: s.iter(), packed: None, range: 0..0 },
            LineSlice::Packed { packed, range } => Iter { each: [].iter(), packed: Some(packed), range: range.clone() },
        }
    }

    /// The lines as one `Arc<str>` each (shared when they already are, copied otherwise).
    pub fn to_vec(&self) -> Vec<Arc<str>> {
        match self {
            LineSlice::Each(s) => s.to_vec(),
            LineSlice::Packed { .. } => self.iter().map(Arc::from).collect(),
        }
    }
}

/// Iterator over a [`LineSlice`].
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    each: std::slice::Iter<'a, Arc<str>>,
    packed: Option<&'a Packed>,
    range: Range<usize>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self.packed {
            Some(p) => self.range.next().map(|i| p.line(i)),
            None => self.each.next().map(|l| &**l),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = if self.packed.is_some() { self.range.len() } else { self.each.len() };
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<Self::Item> {
        match self.packed {
            Some(p) => self.range.next_back().map(|i| p.line(i)),
            None => self.each.next_back().map(|l| &**l),
        }
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
        Ok(Lines::Each(Vec::<Arc<str>>::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn each(lines: &[&str]) -> Lines {
        Lines::Each(lines.iter().map(|l| Arc::from(*l)).collect())
    }

    #[test]
    fn packed_lines_read_as_the_lines_they_were() {
        let src = ["first", "", "ünïcödé ✓", "a \"quoted\" line", ""];
        let mut lines = each(&src);
        lines.pack();
        assert!(matches!(lines, Lines::Packed(_)));
        assert_eq!(lines.len(), 5);
        assert_eq!(lines.text_bytes(), src.iter().map(|l| l.len() as u64).sum::<u64>());
        assert_eq!(lines.all().iter().collect::<Vec<_>>(), src);
        assert_eq!((0..5).map(|i| lines.get(i)).collect::<Vec<_>>(), src);
        assert_eq!(lines.slice(1..3).iter().collect::<Vec<_>>(), &src[1..3]);
        assert_eq!(lines.slice(3..99).iter().rev().collect::<Vec<_>>(), ["", "a \"quoted\" line"]);
        assert_eq!(lines.slice(7..9).len(), 0);
        assert_eq!(lines.slice(2..4).iter().len(), 2);
        let back: Vec<String> = lines.clone().into_each().iter().map(|l| l.to_string()).collect();
        assert_eq!(back, src);
        let json = serde_json::to_string(&lines).unwrap();
        assert_eq!(json, serde_json::to_string(&src).unwrap());
        let again: Lines = serde_json::from_str(&json).unwrap();
        assert_eq!(again.all().iter().collect::<Vec<_>>(), src);
    }

    #[test]
    fn an_empty_log_packs_and_slices() {
        let mut lines = Lines::default();
        lines.pack();
        assert!(lines.is_empty());
        assert!(lines.slice(0..10).is_empty());
        assert_eq!(lines.all().iter().next(), None);
    }
}
