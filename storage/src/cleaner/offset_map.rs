//! The cleaner's offset map (Kafka's `SkimpyOffsetMap`): key hash -> the last offset seen for it,
//! in a fixed amount of memory.
//!
//! # Layout
//! An open-addressing table (linear probing) of `capacity` slots, each a 16-byte key hash (two
//! 64-bit halves) and an 8-byte offset: 24 bytes per slot, so a budget of `B` bytes holds `B / 24`
//! slots. An empty slot has offset -1 (offsets are never negative). The map counts as full at a
//! load factor of 0.9 (Kafka's `log.cleaner.io.buffer.load.factor` default): the cleaner then stops
//! indexing and cleans only up to the last offset indexed.
//!
//! # Hash and collisions
//! The key is hashed to 128 bits (two SipHash-2-4 runs with different fixed keys). Two different
//! keys with the same 128-bit hash are treated as one key, as Kafka treats an MD5 collision: the
//! older record of the two could be removed. With `n` keys the chance is about `n² / 2^129`
//! (negligible: 10^9 keys give ~10^-21). The hash is deterministic (no per-process seed), which is
//! fine because the map never outlives one cleaning pass and is not reachable from the network.

use std::hash::Hasher;

/// Bytes one slot takes (16-byte hash, 8-byte offset).
pub const SLOT_BYTES: usize = 24;
/// The share of slots the map fills before it counts as full.
pub const LOAD_FACTOR: f64 = 0.9;

pub struct OffsetMap {
    /// Most slots the memory budget allows.
    max_slots: usize,
    hashes: Vec<[u64; 2]>,
    offsets: Vec<i64>,
    /// Slots in use.
    entries: usize,
    /// Most entries before the map counts as full.
    max_entries: usize,
    /// The largest offset put (-1: none).
    latest_offset: i64,
}

fn hash_key(key: &[u8]) -> [u64; 2] {
    let half = |seed: u64| {
        #[allow(deprecated)]
        let mut hasher = std::hash::SipHasher::new_with_keys(seed, !seed);
        hasher.write(key);
        hasher.finish()
    };
    [half(0x6b61_666b_615f_6c6f), half(0x636c_6561_6e65_7221)]
}

impl OffsetMap {
    /// A map of at most about `memory_bytes` (at least 16 slots). Memory is taken by
    /// [`OffsetMap::prepare`], only as much as a pass may need.
    pub fn with_memory(memory_bytes: usize) -> OffsetMap {
        let mut map = OffsetMap {
            max_slots: (memory_bytes / SLOT_BYTES).max(16),
            hashes: Vec::new(),
            offsets: Vec::new(),
            entries: 0,
            max_entries: 0,
            latest_offset: -1,
        };
        map.prepare(0);
        map
    }

    /// Empties the map, sized for at most `expected_keys` (within the budget): a small log does
    /// not cost the whole budget, and a map much larger than needed is given back.
    pub fn prepare(&mut self, expected_keys: usize) {
        let wanted = ((expected_keys as f64 / LOAD_FACTOR) as usize)
            .saturating_add(16)
            .min(self.max_slots);
        let capacity = self.offsets.len();
        if capacity < wanted || capacity > wanted.saturating_mul(4) {
            self.hashes = vec![[0; 2]; wanted];
            self.offsets = vec![-1; wanted];
        }
        self.max_entries = ((self.offsets.len() as f64 * LOAD_FACTOR) as usize).max(1);
        self.clear();
    }

    /// Slots allocated now.
    pub fn capacity(&self) -> usize {
        self.offsets.len()
    }

    /// Empties the map (keeps its memory).
    pub fn clear(&mut self) {
        self.offsets.fill(-1);
        self.entries = 0;
        self.latest_offset = -1;
    }

    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// Entries the map accepts before it counts as full.
    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    /// Whether `count` more distinct keys may not fit.
    pub fn lacks_room_for(&self, count: usize) -> bool {
        self.entries + count > self.max_entries
    }

    /// The largest offset put since the last clear (-1: none).
    pub fn latest_offset(&self) -> i64 {
        self.latest_offset
    }

    fn slot_of(&self, hash: [u64; 2]) -> (usize, bool) {
        let capacity = self.offsets.len();
        let mut slot = (hash[0] as usize) % capacity;
        loop {
            if self.offsets[slot] < 0 {
                return (slot, false);
            }
            if self.hashes[slot] == hash {
                return (slot, true);
            }
            slot = (slot + 1) % capacity;
        }
    }

    /// Records `offset` as the last offset of `key` (a later put wins). Returns false when the map
    /// is full and `key` is new (nothing recorded).
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        debug_assert!(offset >= 0);
        let hash = hash_key(key);
        let (slot, present) = self.slot_of(hash);
        if !present {
            if self.entries >= self.max_entries {
                return false;
            }
            self.entries += 1;
            self.hashes[slot] = hash;
        }
        self.offsets[slot] = offset;
        self.latest_offset = self.latest_offset.max(offset);
        true
    }

    /// The last offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        let (slot, present) = self.slot_of(hash_key(key));
        present.then(|| self.offsets[slot])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_offsets_win_and_full_map_refuses_new_keys() {
        let mut map = OffsetMap::with_memory(20 * SLOT_BYTES);
        map.prepare(usize::MAX);
        assert_eq!(map.max_entries(), 18);
        for offset in 0..18 {
            assert!(map.put(format!("key-{offset}").as_bytes(), offset));
        }
        assert!(!map.put(b"one too many", 100));
        assert!(map.put(b"key-3", 50), "an existing key still updates");
        assert_eq!(map.get(b"key-3"), Some(50));
        assert_eq!(map.get(b"key-4"), Some(4));
        assert_eq!(map.get(b"absent"), None);
        assert_eq!(map.latest_offset(), 50);
        map.clear();
        assert!(map.is_empty());
        assert_eq!(map.get(b"key-3"), None);
        // Sized to what a pass needs, within the budget.
        let mut map = OffsetMap::with_memory(1 << 20);
        map.prepare(100);
        assert!(map.capacity() >= 111 && map.capacity() < 200);
        map.prepare(usize::MAX);
        assert_eq!(map.capacity(), (1 << 20) / SLOT_BYTES);
    }
}
