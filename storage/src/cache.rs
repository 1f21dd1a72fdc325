//! Per-shard cache of recently appended batches, so that tailing consumers are served from memory.
//!
//! One `Rc<BatchCache>` is shared by all logs of a shard; each log registers for a unique id and
//! entries are keyed by `(log id, batch base offset)`. The cache is bounded by a byte budget and
//! evicts in FIFO order (oldest appended first), which for an append-only workload is also the
//! least likely to be read. Entries hold a batch as the log appended it: its header (owned, 61 bytes)
//! and its body (a slice of the producer's request buffer): no copy of record data.
//! A log invalidates all its entries on close and truncation.
//!
//! Memory: a cached body is a slice of the connection's receive buffer (allocated in chunks of at least
//! 64 KiB and shared by the requests read into it), so it keeps that chunk alive. The budget counts batch
//! bytes; since eviction is FIFO, the chunks are released in the order they were filled, and what the
//! budget does not count stays around one chunk per producing connection plus request headers.

use crate::batch::{BatchHeader, HEADER_SIZE};
use bytes::Bytes;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};

pub struct BatchCache {
    budget: usize,
    used: Cell<usize>,
    next_id: Cell<u64>,
    logs: RefCell<HashMap<u64, BTreeMap<i64, Entry>>>,
    /// Insertion order: (log id, base offset, generation) — stale tuples are skipped on eviction.
    fifo: RefCell<VecDeque<(u64, i64, u64)>>,
    generation: Cell<u64>,
}

struct Entry {
    last_offset: i64,
    generation: u64,
    header: Bytes,
    body: Bytes,
}

impl Entry {
    fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }
}

impl BatchCache {
    /// A cache holding at most `budget_bytes` of batches (0 disables it).
    pub fn new(budget_bytes: usize) -> Self {
        BatchCache {
            budget: budget_bytes,
            used: Cell::new(0),
            next_id: Cell::new(1),
            logs: RefCell::new(HashMap::new()),
            fifo: RefCell::new(VecDeque::new()),
            generation: Cell::new(0),
        }
    }

    /// A fresh id for a log.
    pub fn register(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    pub fn used_bytes(&self) -> usize {
        self.used.get()
    }

    /// Caches one batch, held as its header (which gives the offsets) and its body.
    pub fn insert(&self, log: u64, header: Bytes, body: Bytes) {
        let size = header.len() + body.len();
        if size > self.budget || header.len() < HEADER_SIZE {
            return;
        }
        let parsed = BatchHeader::parse(&header);
        debug_assert_eq!(parsed.total_size(), size);
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        let old = self.logs.borrow_mut().entry(log).or_default().insert(
            parsed.base_offset,
            Entry {
                last_offset: parsed.last_offset(),
                generation,
                header,
                body,
            },
        );
        if let Some(old) = old {
            self.used.set(self.used.get() - old.len());
        }
        self.used.set(self.used.get() + size);
        self.fifo
            .borrow_mut()
            .push_back((log, parsed.base_offset, generation));
        self.evict();
    }

    fn evict(&self) {
        let mut fifo = self.fifo.borrow_mut();
        let mut logs = self.logs.borrow_mut();
        while self.used.get() > self.budget {
            let Some((log, base, generation)) = fifo.pop_front() else {
                break;
            };
            if let Some(entries) = logs.get_mut(&log) {
                if entries
                    .get(&base)
                    .is_some_and(|entry| entry.generation == generation)
                {
                    let entry = entries.remove(&base).unwrap();
                    self.used.set(self.used.get() - entry.len());
                    if entries.is_empty() {
                        logs.remove(&log);
                    }
                }
            }
        }
        // Keep the queue from filling with stale tuples after many invalidations.
        let cached: usize = logs.values().map(|entries| entries.len()).sum();
        if fifo.len() > 1024 && fifo.len() > 4 * cached {
            fifo.retain(|(log, base, generation)| {
                logs.get(log)
                    .and_then(|entries| entries.get(base))
                    .is_some_and(|entry| entry.generation == *generation)
            });
        }
    }

    /// Drops every entry of `log`.
    pub fn invalidate(&self, log: u64) {
        if let Some(entries) = self.logs.borrow_mut().remove(&log) {
            let freed: usize = entries.values().map(Entry::len).sum();
            self.used.set(self.used.get() - freed);
        }
    }

    /// Drops the entries of `log` whose every offset is below `before` (the log start moved).
    pub fn invalidate_before(&self, log: u64, before: i64) {
        let mut logs = self.logs.borrow_mut();
        if let Some(entries) = logs.get_mut(&log) {
            let doomed: Vec<i64> = entries
                .iter()
                .take_while(|(_, entry)| entry.last_offset < before)
                .map(|(base, _)| *base)
                .collect();
            for base in doomed {
                let entry = entries.remove(&base).expect("listed above");
                self.used.set(self.used.get() - entry.len());
            }
        }
    }

    /// Drops the entries of `log` holding offsets >= `from` (truncation).
    pub fn invalidate_from(&self, log: u64, from: i64) {
        let mut logs = self.logs.borrow_mut();
        if let Some(entries) = logs.get_mut(&log) {
            let doomed: Vec<i64> = entries
                .iter()
                .filter(|(_, entry)| entry.last_offset >= from)
                .map(|(base, _)| *base)
                .collect();
            for base in doomed {
                let entry = entries.remove(&base).unwrap();
                self.used.set(self.used.get() - entry.len());
            }
        }
    }

    /// Serves a read entirely from the cache, as the cached buffers themselves (two per batch: header
    /// and body): whole batches starting with the one containing
    /// `from`, contiguous, below `upper`, up to `max_bytes` (at least one batch when
    /// `min_one_batch`). Returns `None` unless the cache holds the batch containing `from` and the
    /// run of cached batches reaches either `max_bytes` or `upper`, so the answer is the same as a
    /// read from the files would give.
    pub fn read(
        &self,
        log: u64,
        from: i64,
        max_bytes: usize,
        upper: i64,
        min_one_batch: bool,
    ) -> Option<Vec<Bytes>> {
        let logs = self.logs.borrow();
        let entries = logs.get(&log)?;
        let (&first_base, first) = entries.range(..=from).next_back()?;
        if first.last_offset < from {
            return None;
        }
        let mut parts: Vec<&Entry> = Vec::new();
        let mut total = 0usize;
        let mut next = None;
        let mut complete = false;
        for (&base, entry) in entries.range(first_base..) {
            if let Some(expected) = next {
                if base != expected {
                    break; // gap: the rest is not cached
                }
            }
            if entry.last_offset >= upper {
                complete = true;
                break;
            }
            if total + entry.len() > max_bytes {
                if parts.is_empty() && min_one_batch {
                    parts.push(entry);
                }
                complete = true;
                break;
            }
            total += entry.len();
            parts.push(entry);
            next = Some(entry.last_offset + 1);
            if entry.last_offset + 1 == upper {
                complete = true;
                break;
            }
        }
        if !complete {
            return None;
        }
        // The batches stay in the buffers they were cached in: no copy.
        Some(
            parts
                .into_iter()
                .flat_map(|entry| [entry.header.clone(), entry.body.clone()])
                .collect(),
        )
    }
}
