//! Maps keyed by a 64-bit hash of the real key, for the two indexes that hold one entry per
//! stream or per event: the stream table and the event-id table. Keying by hash keeps lookups
//! allocation-free (no owned key is built to probe) and entries small; the caller confirms a
//! hit against the real key, and collisions, which are rare but possible, are kept in a side
//! table rather than lost.
//!
//! [`HashedMap`] is a hash table for the stream table (one entry per stream, looked up on every
//! record). [`SortedRun`] is a sorted array plus a small hash table of recent inserts, for the
//! event-id table (one entry per event, looked up only when a record's stream already exists):
//! a sorted array is half the memory of a hash table and loads from a checkpoint at memory
//! speed, which is what keeps opening a store of ten million events fast.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for keys that are already xxh3 hashes: the identity.
#[derive(Default)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Prehashed = BuildHasherDefault<PrehashedHasher>;

/// The 64-bit hash of a key within a namespace (a topic id, a stream id).
pub(crate) fn hash_key(namespace: u32, key: &[u8]) -> u64 {
    // One-shot with the namespace as seed: the streaming hasher's setup costs more than
    // hashing a short key.
    xxhash_rust::xxh3::xxh3_64_with_seed(key, u64::from(namespace))
}

/// Hash -> values, tolerating collisions.
#[derive(Debug, Default, Clone)]
pub(crate) struct HashedMap {
    primary: HashMap<u64, u64, Prehashed>,
    overflow: HashMap<u64, Vec<u64>, Prehashed>,
}

impl HashedMap {
    /// Adds `value` under `hash` (keeping any value already there).
    pub fn insert(&mut self, hash: u64, value: u64) {
        match self.primary.entry(hash) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(value);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.overflow.entry(hash).or_default().push(value),
        }
    }

    /// Every value stored under `hash`.
    pub fn get(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let first = self.primary.get(&hash).copied();
        let more = first.and_then(|_| self.overflow.get(&hash)).into_iter().flatten().copied();
        first.into_iter().chain(more)
    }

    /// Keeps the values for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let mut promote = Vec::new();
        self.primary.retain(|h, v| {
            let k = keep(*v);
            if !k {
                promote.push(*h);
            }
            k
        });
        self.overflow.retain(|_, vs| {
            vs.retain(|v| keep(*v));
            !vs.is_empty()
        });
        // An overflow value whose primary was removed takes its place.
        for h in promote {
            if let Some(vs) = self.overflow.get_mut(&h) {
                if let Some(v) = vs.pop() {
                    self.primary.insert(h, v);
                }
                if vs.is_empty() {
                    self.overflow.remove(&h);
                }
            }
        }
    }

    /// Every (hash, value) pair.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.primary
            .iter()
            .map(|(h, v)| (*h, *v))
            .chain(self.overflow.iter().flat_map(|(h, vs)| vs.iter().map(move |v| (*h, *v))))
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.primary.len() + self.overflow.values().map(Vec::len).sum::<usize>()
    }

    /// Reserves room for `n` more values.
    pub fn reserve(&mut self, n: usize) {
        self.primary.reserve(n);
    }
}

/// A sorted array of (hash, value) pairs plus a hash table of pairs added since the last
/// [`SortedRun::compact`].
#[derive(Debug, Default, Clone)]
pub(crate) struct SortedRun {
    run: Vec<(u64, u64)>,
    recent: HashedMap,
}

impl SortedRun {
    /// A run from pairs sorted by hash (checked).
    pub fn from_sorted(run: Vec<(u64, u64)>) -> Option<Self> {
        run.windows(2).all(|w| w[0].0 <= w[1].0).then(|| Self { run, recent: HashedMap::default() })
    }

    /// Adds a pair.
    pub fn insert(&mut self, hash: u64, value: u64) {
        self.recent.insert(hash, value);
    }

    /// Every value stored under `hash`.
    pub fn get(&self, hash: u64) -> impl Iterator<Item = u64> + '_ {
        let start = self.run.partition_point(|(h, _)| *h < hash);
        let from_run = self.run[start..].iter().take_while(move |(h, _)| *h == hash).map(|(_, v)| *v);
        from_run.chain(self.recent.get(hash))
    }

    /// Merges the recent pairs into the sorted array.
    pub fn compact(&mut self) {
        if self.recent.len() == 0 {
            return;
        }
        let mut recent: Vec<(u64, u64)> = self.recent.iter().collect();
        recent.sort_unstable();
        let old = std::mem::take(&mut self.run);
        let mut merged = Vec::with_capacity(old.len() + recent.len());
        let (mut a, mut b) = (old.into_iter().peekable(), recent.into_iter().peekable());
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.0 <= y.0,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_a { a.next() } else { b.next() };
            merged.extend(next);
        }
        self.run = merged;
        self.recent = HashedMap::default();
    }

    /// The sorted pairs; call [`SortedRun::compact`] first to include recent ones.
    pub fn sorted(&self) -> &[(u64, u64)] {
        &self.run
    }

    /// Keeps the pairs whose value satisfies `keep`.
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.run.retain(|(_, v)| keep(*v));
        self.recent.retain(keep);
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.run.len() + self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashed_map_keeps_collisions_and_promotes_on_removal() {
        let mut m = HashedMap::default();
        m.insert(7, 1);
        m.insert(7, 2);
        m.insert(9, 3);
        assert_eq!(m.get(7).collect::<Vec<_>>(), [1, 2]);
        m.retain(|v| v != 1);
        assert_eq!(m.get(7).collect::<Vec<_>>(), [2]);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn sorted_run_finds_old_and_recent_values() {
        let mut r = SortedRun::from_sorted(vec![(1, 10), (5, 50), (5, 51)]).expect("sorted");
        r.insert(5, 52);
        r.insert(3, 30);
        assert_eq!(r.get(5).collect::<Vec<_>>(), [50, 51, 52]);
        r.compact();
        assert_eq!(r.sorted(), [(1, 10), (3, 30), (5, 50), (5, 51), (5, 52)]);
        assert_eq!(r.get(3).collect::<Vec<_>>(), [30]);
        assert!(SortedRun::from_sorted(vec![(2, 0), (1, 0)]).is_none());
    }
}
