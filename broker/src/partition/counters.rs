//! Per-shard counters of the partition layer: plain cells (one shard, one thread, no atomics), read as a
//! snapshot. They feed the metrics endpoint later; today a shard logs them when it stops.

use std::cell::Cell;

#[derive(Default)]
pub struct PartitionCounters {
    appends: Cell<u64>,
    bytes_appended: Cell<u64>,
    records_appended: Cell<u64>,
    appends_refused: Cell<u64>,
    reads: Cell<u64>,
    bytes_read: Cell<u64>,
    offset_lookups: Cell<u64>,
    delayed_fetches: Cell<u64>,
    delayed_fetches_expired: Cell<u64>,
    delayed_produces: Cell<u64>,
    delayed_produces_expired: Cell<u64>,
}

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub appends: u64,
    pub bytes_appended: u64,
    pub records_appended: u64,
    pub appends_refused: u64,
    pub reads: u64,
    pub bytes_read: u64,
    pub offset_lookups: u64,
    /// Fetches that waited in the purgatory, and how many of them ran out of time.
    pub delayed_fetches: u64,
    pub delayed_fetches_expired: u64,
    /// acks=all produces that waited for the in-sync replicas, and how many ran out of time.
    pub delayed_produces: u64,
    pub delayed_produces_expired: u64,
}

fn add(cell: &Cell<u64>, amount: u64) {
    cell.set(cell.get().wrapping_add(amount));
}

impl PartitionCounters {
    pub fn appended(&self, bytes: usize, records: u32) {
        add(&self.appends, 1);
        add(&self.bytes_appended, bytes as u64);
        add(&self.records_appended, u64::from(records));
    }

    pub fn append_refused(&self) {
        add(&self.appends_refused, 1);
    }

    pub fn read(&self, bytes: usize) {
        add(&self.reads, 1);
        add(&self.bytes_read, bytes as u64);
    }

    pub fn offset_lookup(&self) {
        add(&self.offset_lookups, 1);
    }

    pub fn delayed_fetch(&self, expired: bool) {
        add(&self.delayed_fetches, 1);
        add(&self.delayed_fetches_expired, u64::from(expired));
    }

    pub fn delayed_produce(&self, expired: bool) {
        add(&self.delayed_produces, 1);
        add(&self.delayed_produces_expired, u64::from(expired));
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        CountersSnapshot {
            appends: self.appends.get(),
            bytes_appended: self.bytes_appended.get(),
            records_appended: self.records_appended.get(),
            appends_refused: self.appends_refused.get(),
            reads: self.reads.get(),
            bytes_read: self.bytes_read.get(),
            offset_lookups: self.offset_lookups.get(),
            delayed_fetches: self.delayed_fetches.get(),
            delayed_fetches_expired: self.delayed_fetches_expired.get(),
            delayed_produces: self.delayed_produces.get(),
            delayed_produces_expired: self.delayed_produces_expired.get(),
        }
    }
}
