//! Compact tables keyed by request key, for jobs of millions of rows.
//!
//! A run needs to know, for every key of the job, whether it is done, sent,
//! and how it ended; holding the key strings (and 64-hex-digit hashes) for a
//! million rows costs hundreds of MiB. A [`KeyId`] is a 128-bit fingerprint
//! of the key instead (two independent SipHashes): within one process the
//! chance of two keys of even a billion-row job colliding is below 10^-20.
//!
//! The per-key tables of a run are [`KeyTable`]s, sorted arrays rather than
//! hash maps: a hash map of a million entries sits in a table of two
//! million slots (it doubles once past 7/8 full), a sorted array holds
//! exactly what it needs, and a radix index on the fingerprint's top bits
//! keeps a lookup to a few probes within one cache-friendly run.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::OnceLock;

/// The fingerprint of one request key (`<id>/<param set>`). Two words rather
/// than a u128: 8-byte alignment keeps a table entry with a word of value at
/// 24 bytes instead of 32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u64; 2]);

/// The two hashers of a [`KeyId`], seeded once per process.
fn seeds() -> &'static (RandomState, RandomState) {
    static SEEDS: OnceLock<(RandomState, RandomState)> = OnceLock::new();
    SEEDS.get_or_init(|| (RandomState::new(), RandomState::new()))
}

impl KeyId {
    pub fn of(key: &str) -> KeyId {
        let (a, b) = seeds();
        KeyId([a.hash_one(key), b.hash_one(key)])
    }

    /// The top `bits` bits of the fingerprint (a hash: evenly spread).
    fn top(self, bits: u32) -> usize {
        match bits {
            0 => 0,
            b => (self.0[0] >> (64 - b)) as usize,
        }
    }
}

/// A map by [`KeyId`]; the id is already a hash, so it is not hashed again.
pub type KeyMap<V> = HashMap<KeyId, V, BuildHasherDefault<IdHasher>>;

#[derive(Debug, Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only KeyId (two u64s) is ever hashed here; this keeps any other use correct.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        // The first word alone is a full hash; the second mixes in cheaply.
        self.0 = self.0.rotate_left(29) ^ n;
    }
}

/// The first 62 bits of a hex SHA-256: enough to tell an edited request
/// from an unchanged one (a chance of 2^-62 per edited request of missing
/// the edit), in 8 bytes instead of a 64-character string.
pub fn sha_prefix(hex: &str) -> Option<u64> {
    u64::from_str_radix(hex.get(..16)?, 16).ok().map(|n| n >> 2)
}

/// One line of a file in 16 bytes: 96 bits of its key's [`KeyId`] (two
/// keys of a million lines share them with a chance below 10^-17) and its
/// number. Sorted, a key's lines are side by side, in file order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct KeyLine([u64; 2]);

impl KeyLine {
    pub fn new(id: KeyId, line: u32) -> KeyLine {
        KeyLine([id.0[0], (id.0[1] & !u64::from(u32::MAX)) | u64::from(line)])
    }

    pub fn line(self) -> u32 {
        self.0[1] as u32
    }

    /// Whether the two lines are of one key.
    pub fn same_key(self, other: KeyLine) -> bool {
        self.0[0] == other.0[0] && self.0[1] >> 32 == other.0[1] >> 32
    }

    /// Its key's [`ShortId`].
    pub fn short(self) -> ShortId {
        ShortId(self.0[0])
    }
}

/// What a [`KeyTable`] is keyed by: a fingerprint, evenly spread.
pub trait Fingerprint: Copy + Ord + fmt::Debug {
    /// The top `bits` bits.
    fn top(self, bits: u32) -> usize;
}

impl Fingerprint for KeyId {
    fn top(self, bits: u32) -> usize {
        KeyId::top(self, bits)
    }
}

/// The first 64 bits of a [`KeyId`]: the key of the output's table, which
/// holds every key of a file next to the job's own table. Two keys of a
/// million-line output share one with a chance of 3 in 10^8, and the harm
/// is bounded: a key is only ever skipped when its request's hash matches
/// too, so a clash can cost a request sent again, never one left unsent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ShortId(u64);

impl ShortId {
    /// The first word of [`KeyId::of`], the only one hashed.
    pub fn of(key: &str) -> ShortId {
        ShortId(seeds().0.hash_one(key))
    }
}

impl From<KeyId> for ShortId {
    fn from(id: KeyId) -> ShortId {
        ShortId(id.0[0])
    }
}

impl Fingerprint for ShortId {
    fn top(self, bits: u32) -> usize {
        match bits {
            0 => 0,
            b => (self.0 >> (64 - b)) as usize,
        }
    }
}

/// Entries gathered one by one into one vector reserved up front from an
/// estimate of their number (the file's size over its lines' length, with
/// room to spare): pages of a reservation are only resident once written,
/// so a million entries never sit in a vector doubling its capacity (1.5
/// times the memory, and three times for a moment while it copies).
#[derive(Debug)]
pub struct Gather<T> {
    items: Vec<T>,
}

impl<T> Default for Gather<T> {
    fn default() -> Self {
        Gather { items: Vec::new() }
    }
}

impl<T> From<Vec<T>> for Gather<T> {
    fn from(items: Vec<T>) -> Gather<T> {
        Gather { items }
    }
}

impl<T> Gather<T> {
    /// Room for `n` entries in all, if the system grants it (else the vector grows as usual).
    pub fn expect(&mut self, n: usize) {
        let _ = self
            .items
            .try_reserve_exact(n.saturating_sub(self.items.len()));
    }

    pub fn push(&mut self, item: T) {
        self.items.push(item);
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Each entry, with its place in push order, made into another or left
    /// out, in the old ones' memory when no larger (std's in-place collect).
    pub fn filter_map<U>(self, mut f: impl FnMut(usize, T) -> Option<U>) -> Gather<U> {
        Gather {
            items: self
                .items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| f(i, item))
                .collect(),
        }
    }
}

/// The number of lines `path` holds, estimated from its size and the
/// length of the lines in its first 64 KiB, a quarter above (an estimate
/// for [`Gather::expect`]: too high costs address space, not memory).
pub fn estimate_lines(path: &std::path::Path) -> usize {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return 0;
    };
    let size = file.metadata().map_or(0, |m| m.len());
    let mut head = Vec::with_capacity(64 * 1024);
    if file.take(64 * 1024).read_to_end(&mut head).is_err() || head.is_empty() {
        return 0;
    }
    let lines = head.iter().filter(|b| **b == b'\n').count().max(1) as u64;
    let per_line = (head.len() as u64).div_ceil(lines).max(1);
    usize::try_from(size / per_line + size / per_line / 4 + 64).unwrap_or(usize::MAX)
}

/// Which entry of a key given twice a [`KeyTable`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The first pushed (a job's keys: a later row with the same key is the duplicate).
    First,
    /// The last pushed (an output: the latest line of a key wins).
    Last,
}

/// Small values by fingerprint, sorted; built once, then read and updated in place.
#[derive(Debug)]
pub struct KeyTable<V, K = KeyId> {
    entries: Vec<(K, V)>,
    /// `index[t]`: the first entry whose id's top `bits` bits are >= t.
    index: Vec<u32>,
    bits: u32,
}

impl<V, K> Default for KeyTable<V, K> {
    fn default() -> Self {
        KeyTable {
            entries: Vec::new(),
            index: vec![0, 0],
            bits: 0,
        }
    }
}

impl<V, K: Fingerprint> KeyTable<V, K> {
    /// The table of `gathered`; a key pushed twice keeps one entry by
    /// `keep`, and the others are returned. `order` is the order entries of
    /// one key were pushed in, when the values tell it (the request's
    /// number): then the sort is in place; without it, a stable sort
    /// borrows half the table's size for a moment. Keys pushed twice are
    /// weeded out in place.
    pub fn build(
        gathered: Gather<(K, V)>,
        keep: Keep,
        order: Option<fn(&V, &V) -> std::cmp::Ordering>,
    ) -> (KeyTable<V, K>, Vec<(K, V)>)
    where
        V: Copy,
    {
        let mut entries = gathered.items;
        match order {
            Some(order) => entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(order(&a.1, &b.1))),
            None => entries.sort_by_key(|(id, _)| *id),
        }
        let mut dropped = Vec::new();
        if entries.windows(2).any(|w| w[0].0 == w[1].0) {
            // In place: each key's kept entry moves down to where the kept
            // ones end, which never passes where the next key's entries start.
            let (mut kept, mut at) = (0, 0);
            while at < entries.len() {
                let id = entries[at].0;
                let end = at + entries[at..].iter().take_while(|e| e.0 == id).count();
                let chosen = match keep {
                    Keep::First => at,
                    Keep::Last => end - 1,
                };
                dropped.extend((at..end).filter(|i| *i != chosen).map(|i| entries[i]));
                entries[kept] = entries[chosen];
                kept += 1;
                at = end;
            }
            entries.truncate(kept);
        }
        // What the estimate reserved beyond the entries stays reserved:
        // never written, it is address space, not memory (shrinking could copy).
        (KeyTable::sorted(entries), dropped)
    }

    fn sorted(entries: Vec<(K, V)>) -> KeyTable<V, K> {
        // Two to four entries per index slot (an index of 1 to 2 bytes per
        // entry, next to the entry's 16 or 24): a lookup is one probe of the
        // index and one of a short run of entries, not a binary search.
        let bits = (usize::BITS - entries.len().leading_zeros()).saturating_sub(2);
        let slots = 1usize << bits;
        let mut index = Vec::with_capacity(slots + 1);
        let mut at = 0usize;
        for t in 0..slots {
            while at < entries.len() && entries[at].0.top(bits) < t {
                at += 1;
            }
            index.push(at as u32);
        }
        index.push(entries.len() as u32);
        KeyTable {
            entries,
            index,
            bits,
        }
    }

    fn find(&self, id: &K) -> Option<usize> {
        let t = id.top(self.bits);
        let (from, to) = (self.index[t] as usize, self.index[t + 1] as usize);
        let run = self.entries.get(from..to)?;
        run.iter()
            .position(|(probe, _)| probe == id)
            .map(|i| from + i)
    }

    pub fn get(&self, id: &K) -> Option<&V> {
        self.find(id).map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, id: &K) -> Option<&mut V> {
        self.find(id).map(|i| &mut self.entries[i].1)
    }

    pub fn contains_key(&self, id: &K) -> bool {
        self.find(id).is_some()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(id, _)| id)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_within_a_run_and_tell_keys_apart() {
        assert_eq!(KeyId::of("q1/precise"), KeyId::of("q1/precise"));
        let id = KeyId::of("q1/precise");
        assert_eq!(ShortId::of("q1/precise"), ShortId::from(id));
        assert_ne!(KeyId::of("q1/precise"), KeyId::of("q1/creative"));
        let mut map: KeyMap<u32> = KeyMap::default();
        for i in 0..10_000 {
            map.insert(KeyId::of(&format!("r{i}/default")), i);
        }
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.get(&KeyId::of("r1234/default")), Some(&1234));
    }

    #[test]
    fn sha_prefixes_parse_hex_and_reject_anything_else() {
        let hex = "3b9f".repeat(16);
        assert_eq!(sha_prefix(&hex), Some(0x3b9f_3b9f_3b9f_3b9f >> 2));
        assert_ne!(sha_prefix(&hex), sha_prefix(&"3b9e".repeat(16)));
        assert_eq!(sha_prefix("short"), None);
        assert_eq!(sha_prefix(&"zz".repeat(32)), None);
    }

    #[test]
    fn a_table_finds_every_key_it_holds_and_no_other() {
        for n in [0u32, 1, 2, 3, 100, 70_000, 200_000] {
            let mut gathered = Gather::default();
            for i in 0..n {
                gathered.push((KeyId::of(&format!("r{i}/default")), i));
            }
            assert_eq!(gathered.len(), n as usize);
            let (mut table, dropped) = KeyTable::build(gathered, Keep::First, None);
            assert!(dropped.is_empty());
            assert_eq!(table.len(), n as usize);
            for i in (0..n).step_by(7) {
                assert_eq!(table.get(&KeyId::of(&format!("r{i}/default"))), Some(&i));
            }
            assert!(!table.contains_key(&KeyId::of("absent/default")));
            if n > 0 {
                *table.get_mut(&KeyId::of("r0/default")).expect("held") = 99;
                assert!(table.values().any(|v| *v == 99));
            }
        }
        assert_eq!(KeyTable::<u8>::default().get(&KeyId::of("x")), None);
    }

    #[test]
    fn a_table_entry_is_an_id_and_one_word() {
        // What a million keys cost: 24 MB for the job's, 16 for the output's.
        assert_eq!(std::mem::size_of::<(KeyId, u64)>(), 24);
        assert_eq!(std::mem::size_of::<(ShortId, u64)>(), 16);
        let mut gathered = Gather::default();
        gathered.expect(10_000);
        for i in 0..1000u64 {
            gathered.push((ShortId::of(&format!("r{i}")), i));
        }
        let (table, _) = KeyTable::build(gathered, Keep::Last, None);
        assert_eq!(table.len(), 1000);
        assert_eq!(table.get(&ShortId::of("r999")), Some(&999));
        assert!(table.index.len() <= 1000 / 2);
    }

    #[test]
    fn entries_made_into_others_of_their_size_keep_their_memory() {
        let mut gathered = Gather::default();
        gathered.expect(1000);
        for i in 0..1000u64 {
            gathered.push((KeyId::of(&format!("r{i}")), i));
        }
        let at = gathered.items.as_ptr() as usize;
        let kept = gathered.filter_map(|i, (id, n)| (i % 3 != 0).then_some((id, [n as u32, 7])));
        assert_eq!(
            kept.items.as_ptr() as usize,
            at,
            "copied, not made in place"
        );
        assert_eq!(kept.len(), 666);
        assert_eq!(kept.items[0].1, [1, 7]);
    }

    #[test]
    fn key_lines_sort_a_key_s_lines_together_in_file_order() {
        assert_eq!(std::mem::size_of::<KeyLine>(), 16);
        let (a, b) = (KeyId::of("a/default"), KeyId::of("b/default"));
        let mut lines = [
            KeyLine::new(a, 9),
            KeyLine::new(b, 2),
            KeyLine::new(a, 1),
            KeyLine::new(b, u32::MAX),
            KeyLine::new(a, 4),
        ];
        lines.sort_unstable();
        let a_lines: Vec<u32> = lines
            .iter()
            .filter(|l| l.same_key(KeyLine::new(a, 0)))
            .map(|l| l.line())
            .collect();
        assert_eq!(a_lines, [1, 4, 9]);
        assert!(lines.windows(2).filter(|w| !w[0].same_key(w[1])).count() == 1);
        assert!([ShortId::from(a), ShortId::from(b)].contains(&lines[0].short()));
    }

    #[test]
    fn the_estimate_of_lines_is_above_their_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("rows.jsonl");
        let rows: String = (0..20_000).map(|i| format!("{{\"id\": {i}}}\n")).collect();
        std::fs::write(&path, rows).expect("write");
        let n = estimate_lines(&path);
        assert!((20_000..40_000).contains(&n), "{n}");
        assert_eq!(estimate_lines(&dir.path().join("none")), 0);
    }

    #[test]
    fn a_key_pushed_twice_keeps_its_first_or_last_entry() {
        let push = |keep, order: Option<fn(&usize, &usize) -> std::cmp::Ordering>| {
            let mut gathered = Gather::default();
            gathered.expect(2);
            for (i, key) in ["a", "b", "a", "c", "a"].into_iter().enumerate() {
                gathered.push((KeyId::of(key), i));
            }
            let at = gathered.items.as_ptr() as usize;
            let built = KeyTable::build(gathered, keep, order);
            assert_eq!(
                built.0.entries.as_ptr() as usize,
                at,
                "copied, not weeded in place"
            );
            built
        };
        // In place, ordered by the value.
        let (first, _) = push(Keep::First, Some(|a: &usize, b: &usize| a.cmp(b)));
        assert_eq!(first.get(&KeyId::of("a")), Some(&0));
        let (first, mut dropped) = push(Keep::First, None);
        assert_eq!(first.get(&KeyId::of("a")), Some(&0));
        dropped.sort_by_key(|(_, i)| *i);
        assert_eq!(dropped.iter().map(|(_, i)| *i).collect::<Vec<_>>(), [2, 4]);
        let (last, dropped) = push(Keep::Last, None);
        assert_eq!(last.get(&KeyId::of("a")), Some(&4));
        assert_eq!((last.len(), dropped.len()), (3, 2));
        assert_eq!(last.get(&KeyId::of("c")), Some(&3));
    }
}
