//! Units: how the follower recognises lines it already served.
//!
//! PowerJob stores a log as records (rows), each rendered as a timestamped line plus,
//! for a record whose content holds newlines (an exception), continuation lines without
//! a timestamp (the trace, then an empty line). A record is inserted, deleted and moved
//! whole, so the follower matches whole records, not lines: a unit is a timestamped line
//! with the continuation lines after it (or, at the very start of a file, the lines
//! before the first timestamp). Identical continuation lines of distinct records
//! (`\tat …` frames, the empty line) are then told apart by their record, and only
//! whole records with the very same text (same millisecond, worker, level and content)
//! are counted as copies of each other.
//!
//! [`UnitIndex`] is derived data: rebuilt from the served lines whenever a follower is
//! loaded, never stored.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::ops::Range;

use super::line::record_time;
use super::lines::Lines;

/// Splits `lines` into units: a new unit at index 0 and at every timestamped line.
pub fn segment<S: AsRef<str>>(lines: &[S]) -> Vec<Range<usize>> {
    let mut units = Vec::new();
    let mut start = 0;
    for (i, l) in lines.iter().enumerate().skip(1) {
        if record_time(l.as_ref()).is_some() {
            units.push(start..i);
            start = i;
        }
    }
    if start < lines.len() {
        units.push(start..lines.len());
    }
    units
}

/// The hash of a unit's text (its lines and their boundaries), with fixed keys: the
/// index is rebuilt in every process, so they need not be random, and the text is the
/// job's own log, not chosen against the table.
pub fn unit_hash<'a>(lines: impl Iterator<Item = &'a str>) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    for l in lines {
        h.write(l.as_bytes());
        h.write_u8(0xff); // never in UTF-8: a line boundary
    }
    h.finish()
}

/// The table's key: 32 bits of the unit hash (a key is confirmed by text, and distinct
/// texts that share one go to the `collided` table), used as its own hash.
fn short(hash: u64) -> u32 {
    (hash >> 32) as u32 ^ hash as u32
}

/// Hashes a key that already is a hash: as it is.
#[derive(Clone, Copy, Default)]
struct AsIs;

/// See [`AsIs`].
#[derive(Default)]
struct AsIsHasher(u64);

impl Hasher for AsIsHasher {
    fn finish(&self) -> u64 {
        // Spread the 32 bits over 64 (hashbrown takes its control bits from the top).
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0 << 8 | u64::from(b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n);
    }
}

impl BuildHasher for AsIs {
    type Hasher = AsIsHasher;
    fn build_hasher(&self) -> AsIsHasher {
        AsIsHasher(0)
    }
}

/// What is known of one distinct unit text.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// A served unit with this text.
    pub rep: u32,
    /// Served units with this text.
    pub served: u32,
    /// Units with this text in the model (the upstream file as last read).
    pub in_model: u32,
}

/// Distinct unit texts, looked up by hash and confirmed by text.
#[derive(Debug, Clone, Default)]
pub struct UnitIndex {
    keys: HashMap<u32, Key, AsIs>,
    /// Further distinct texts whose key equals one in `keys` (rare).
    collided: HashMap<u32, Vec<Key>, AsIs>,
}

/// Where a key lives, to update it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyRef {
    hash: u32,
    /// `None`: in `keys`; `Some(i)`: `collided[hash][i]`.
    slot: Option<u32>,
}

impl UnitIndex {
    /// The key of the unit whose lines are `text`, if such a unit was served.
    pub fn find<'a, S: AsRef<str> + 'a>(&self, served: &Served<'_>, text: &'a [S]) -> Option<KeyRef> {
        let hash = short(unit_hash(text.iter().map(AsRef::as_ref)));
        let same = |k: &Key| served.unit_eq(k.rep, text);
        match self.keys.get(&hash) {
            None => None,
            Some(k) if same(k) => Some(KeyRef { hash, slot: None }),
            Some(_) => self
                .collided
                .get(&hash)
                .and_then(|v| v.iter().position(same))
                .map(|i| KeyRef { hash, slot: Some(i as u32) }),
        }
    }

    /// Registers served unit `unit` (lines `text`) as one more copy of its text.
    pub fn add_served<S: AsRef<str>>(&mut self, served: &Served<'_>, unit: u32, text: &[S]) -> KeyRef {
        if let Some(r) = self.find(served, text) {
            self.get_mut(r).served += 1;
            return r;
        }
        let hash = short(unit_hash(text.iter().map(AsRef::as_ref)));
        let key = Key { rep: unit, served: 1, in_model: 0 };
        if let std::collections::hash_map::Entry::Vacant(e) = self.keys.entry(hash) {
            e.insert(key);
            return KeyRef { hash, slot: None };
        }
        let v = self.collided.entry(hash).or_default();
        v.push(key);
        KeyRef { hash, slot: Some(v.len() as u32 - 1) }
    }

    /// The key of served unit `unit` (which is registered).
    pub fn of_unit(&self, served: &Served<'_>, unit: u32) -> KeyRef {
        let lines = served.unit_lines(unit);
        let text: Vec<&str> = lines.collect();
        self.find(served, &text).expect("every served unit is indexed")
    }

    /// The key behind `r`.
    pub fn get(&self, r: KeyRef) -> Key {
        match r.slot {
            None => self.keys[&r.hash],
            Some(i) => self.collided[&r.hash][i as usize],
        }
    }

    /// The key behind `r`, to update.
    pub fn get_mut(&mut self, r: KeyRef) -> &mut Key {
        match r.slot {
            None => self.keys.get_mut(&r.hash).expect("a known key"),
            Some(i) => &mut self.collided.get_mut(&r.hash).expect("a known key")[i as usize],
        }
    }

    /// Bytes the tables take, approximately.
    pub fn allocated_bytes(&self) -> u64 {
        // hashbrown: the bucket plus one control byte per slot.
        let slot = std::mem::size_of::<(u32, Key)>() + 1;
        (self.keys.capacity() * slot + self.collided.capacity() * 64) as u64
    }
}

/// The served lines with their unit boundaries, borrowed.
#[derive(Clone, Copy)]
pub struct Served<'a> {
    /// Every served line.
    pub lines: &'a Lines,
    /// First line of each served unit.
    pub units: &'a [u32],
}

impl<'a> Served<'a> {
    /// The line range of served unit `unit`.
    pub fn unit_range(&self, unit: u32) -> Range<usize> {
        let u = unit as usize;
        let end = self.units.get(u + 1).map_or(self.lines.len(), |&e| e as usize);
        self.units[u] as usize..end
    }

    /// Number of lines of served unit `unit`.
    pub fn unit_len(&self, unit: u32) -> usize {
        self.unit_range(unit).len()
    }

    /// The lines of served unit `unit`.
    pub fn unit_lines(&self, unit: u32) -> impl Iterator<Item = &'a str> + 'a {
        let lines = self.lines;
        self.unit_range(unit).map(move |i| lines.get(i))
    }

    /// The record time of served unit `unit` (`None` for a unit without a timestamp).
    pub fn unit_time(&self, unit: u32) -> Option<i64> {
        record_time(self.lines.get(self.units[unit as usize] as usize))
    }

    /// True when served unit `unit` has exactly the lines `text`.
    pub fn unit_eq<S: AsRef<str>>(&self, unit: u32, text: &[S]) -> bool {
        let r = self.unit_range(unit);
        r.len() == text.len() && r.zip(text).all(|(i, t)| self.lines.get(i) == t.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_start_at_timestamps() {
        let lines = [
            "at the head",
            "2024-06-01 16:00:00.000 [w:1] ERROR boom",
            "\tat x",
            "",
            "2024-06-01 16:00:00.000 [w:1] INFO ok",
        ];
        assert_eq!(segment(&lines), [0..1, 1..4, 4..5]);
        assert_eq!(segment::<&str>(&[]), Vec::<Range<usize>>::new());
        assert_eq!(segment(&["\tat x"]), vec![0..1]);
    }

    #[test]
    fn the_hash_sees_line_boundaries() {
        assert_ne!(unit_hash(["ab", "c"].into_iter()), unit_hash(["a", "bc"].into_iter()));
        assert_ne!(unit_hash(["a", ""].into_iter()), unit_hash(["a"].into_iter()));
        assert_eq!(unit_hash(["a", "b"].into_iter()), unit_hash(["a", "b"].into_iter()));
    }

    #[test]
    fn distinct_texts_with_one_key_stay_distinct() {
        // Two texts whose 32-bit keys collide (found by a birthday search).
        let mut seen = std::collections::HashMap::new();
        let (a, b) = (0..1_000_000)
            .find_map(|i| {
                let text = format!("line {i}");
                let key = short(unit_hash([text.as_str()].into_iter()));
                seen.insert(key, text.clone()).map(|other| (other, text))
            })
            .expect("a collision among a million keys");
        let lines: Lines = [a.as_str(), b.as_str(), a.as_str()].into_iter().collect();
        let units = [0u32, 1, 2];
        let served = Served { lines: &lines, units: &units };
        let mut index = UnitIndex::default();
        let ra = index.add_served(&served, 0, &[a.as_str()]);
        let rb = index.add_served(&served, 1, &[b.as_str()]);
        assert_ne!(ra, rb);
        assert_eq!(index.add_served(&served, 2, &[a.as_str()]), ra);
        assert_eq!((index.get(ra).served, index.get(rb).served), (2, 1));
        assert_eq!(index.find(&served, &[b.as_str()]), Some(rb));
        assert_eq!(index.find(&served, &["neither"]), None);
    }
}
