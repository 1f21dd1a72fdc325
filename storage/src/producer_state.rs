//! Idempotent-producer state of one partition (Kafka's `ProducerStateManager`).
//!
//! For each producer id: the current epoch and the metadata of its last 5 batches
//! (first/last sequence, first/last offset, max timestamp), enough to detect duplicates and
//! out-of-order sequences (see [`ProducerStateManager::check`] for the rules), and its transaction
//! state: the first offset of its open transaction and the coordinator epoch of its last marker.
//! The open and the not yet replicated completed transactions, which bound the last stable
//! offset, are tracked in `producer_txn.rs`.
//!
//! # Snapshot file `<20-digit offset>.snapshot`
//! The state after applying every batch with an offset below the file's offset. Big-endian:
//!
//! ```text
//! version     i16   (1)
//! crc         u32   CRC32C of everything after this field
//! count       i32   number of producer entries
//! entries     count times:
//!   producer_id               i64
//!   epoch                     i16
//!   coordinator_epoch         i32
//!   current_txn_first_offset  i64   (-1: none)
//!   last_timestamp            i64
//!   batch_count               u8    (<= 5)
//!   batches     batch_count times, oldest first:
//!     first_seq i32, last_seq i32, first_offset i64, last_offset i64, max_timestamp i64
//! ```
//!
//! Snapshots are written when a segment rolls and on close; the two newest are kept. On open the
//! newest snapshot at or below the log end offset is loaded and the batches after it are replayed
//! (with no usable snapshot, the whole log is replayed). Version 1 already holds the transaction
//! state (`current_txn_first_offset`, `coordinator_epoch`); the index of open transactions is
//! rebuilt from the entries when a snapshot is read. A producer known only from a marker has no
//! batches (`batch_count` 0).

use crate::batch::BatchHeader;
use crate::error::StorageError;
use std::collections::{BTreeMap, HashMap, VecDeque};

#[path = "producer_txn.rs"]
mod transactions;
pub use transactions::CompletedTxn;
#[cfg(test)]
#[path = "producer_txn_tests.rs"]
mod transaction_tests;

/// How many batches per producer are remembered for duplicate detection (Kafka's value).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
const SNAPSHOT_VERSION: i16 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerEntry {
    pub producer_id: i64,
    pub epoch: i16,
    /// The last (up to 5) batches, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    pub last_timestamp: i64,
    /// Coordinator epoch of the last transaction marker (-1: none yet).
    pub coordinator_epoch: i32,
    /// First offset of the producer's open transaction in this partition, -1 if none.
    pub current_txn_first_offset: i64,
}

impl ProducerEntry {
    fn new(producer_id: i64, epoch: i16) -> Self {
        ProducerEntry {
            producer_id,
            epoch,
            batches: VecDeque::new(),
            last_timestamp: -1,
            coordinator_epoch: -1,
            current_txn_first_offset: -1,
        }
    }
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|batch| batch.last_seq)
    }
    fn push(&mut self, batch: BatchMetadata) {
        if self.batches.len() == NUM_BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        self.last_timestamp = batch.max_timestamp;
        self.batches.push_back(batch);
    }
}

/// The outcome of checking a batch against the producer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SequenceCheck {
    /// No producer id, or a valid next batch.
    Append,
    /// A retry of a batch that is already in the log, at these offsets.
    Duplicate { first_offset: i64, last_offset: i64 },
}

#[derive(Default, Clone, Debug)]
pub struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id (mirrors the entries'
    /// `current_txn_first_offset`).
    ongoing: BTreeMap<i64, i64>,
    /// Completed transactions whose marker is not yet below the high watermark: first offset ->
    /// transaction. They still hold the last stable offset back.
    unreplicated: BTreeMap<i64, CompletedTxn>,
}

fn next_seq(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStateManager {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn entries(&self) -> impl Iterator<Item = &ProducerEntry> {
        self.producers.values()
    }

    /// Checks a client batch (Kafka's `ProducerAppendInfo` rules):
    /// * producerId -1: no check;
    /// * epoch below the current one: `InvalidProducerEpoch`;
    /// * a higher epoch must start at sequence 0 (`OutOfOrderSequence`);
    /// * an unknown producer (none, or all its batches gone to retention or DeleteRecords) may start
    ///   at any sequence (KIP-360: Kafka no longer answers UNKNOWN_PRODUCER_ID here);
    /// * same epoch, same (first, last) sequence as one of the last 5 batches: duplicate;
    /// * otherwise the base sequence must follow the last one (wrapping to 0 after i32::MAX):
    ///   `OutOfOrderSequence`;
    /// * a non-transactional batch from a producer with an open transaction: `InvalidTxnState`.
    ///
    /// Control batches are not checked here (see [`ProducerStateManager::check_batch`]).
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, StorageError> {
        let outcome = self.check_sequence(header)?;
        if outcome == SequenceCheck::Append && !header.is_transactional() {
            if let Some(entry) = self.producers.get(&header.producer_id) {
                if header.has_producer_id() && entry.current_txn_first_offset >= 0 {
                    return Err(StorageError::InvalidTxnState(format!(
                        "producer {} wrote a non-transactional batch while its transaction from offset {} is open",
                        header.producer_id, entry.current_txn_first_offset
                    )));
                }
            }
        }
        Ok(outcome)
    }

    fn check_sequence(&self, header: &BatchHeader) -> Result<SequenceCheck, StorageError> {
        if !header.has_producer_id() || header.is_control() {
            return Ok(SequenceCheck::Append);
        }
        let producer_id = header.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(SequenceCheck::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch(format!(
                "producer {producer_id} epoch {} is older than the current epoch {}",
                header.producer_epoch, entry.epoch
            )));
        }
        if header.producer_epoch > entry.epoch || entry.batches.is_empty() {
            if header.base_sequence != 0 {
                return Err(StorageError::OutOfOrderSequence(format!(
                    "producer {producer_id} new epoch {} must start at sequence 0, got {}",
                    header.producer_epoch, header.base_sequence
                )));
            }
            return Ok(SequenceCheck::Append);
        }
        let last_seq = header.last_sequence();
        if let Some(batch) = entry
            .batches
            .iter()
            .find(|batch| batch.first_seq == header.base_sequence && batch.last_seq == last_seq)
        {
            return Ok(SequenceCheck::Duplicate {
                first_offset: batch.first_offset,
                last_offset: batch.last_offset,
            });
        }
        let expected = next_seq(entry.last_seq().unwrap());
        if header.base_sequence != expected {
            return Err(StorageError::OutOfOrderSequence(format!(
                "producer {producer_id} epoch {}: expected sequence {expected}, got {}",
                entry.epoch, header.base_sequence
            )));
        }
        Ok(SequenceCheck::Append)
    }

    /// Records an appended batch (with its assigned offsets). Also used to replay the log on
    /// recovery, where no check is made.
    pub fn update(&mut self, header: &BatchHeader) {
        if !header.has_producer_id() || header.is_control() {
            // Control batches (transaction markers) will end transactions here; not implemented.
            return;
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry::new(header.producer_id, header.producer_epoch));
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.push(BatchMetadata {
            first_seq: header.base_sequence,
            last_seq: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp: header.max_timestamp,
        });
        if header.is_transactional() && entry.current_txn_first_offset < 0 {
            entry.current_txn_first_offset = header.base_offset;
            self.ongoing.insert(header.base_offset, header.producer_id);
        }
    }

    /// Serializes the state (see the module doc for the format).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let mut body = Vec::new();
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort();
        body.extend_from_slice(&(ids.len() as i32).to_be_bytes());
        for id in ids {
            let entry = &self.producers[id];
            body.extend_from_slice(&entry.producer_id.to_be_bytes());
            body.extend_from_slice(&entry.epoch.to_be_bytes());
            body.extend_from_slice(&entry.coordinator_epoch.to_be_bytes());
            body.extend_from_slice(&entry.current_txn_first_offset.to_be_bytes());
            body.extend_from_slice(&entry.last_timestamp.to_be_bytes());
            body.push(entry.batches.len() as u8);
            for batch in &entry.batches {
                body.extend_from_slice(&batch.first_seq.to_be_bytes());
                body.extend_from_slice(&batch.last_seq.to_be_bytes());
                body.extend_from_slice(&batch.first_offset.to_be_bytes());
                body.extend_from_slice(&batch.last_offset.to_be_bytes());
                body.extend_from_slice(&batch.max_timestamp.to_be_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 6);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    /// Parses a snapshot; `None` if it is corrupt or of an unknown version.
    pub fn decode_snapshot(bytes: &[u8]) -> Option<ProducerStateManager> {
        struct Reader<'a>(&'a [u8]);
        impl Reader<'_> {
            fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
                if self.0.len() < N {
                    return None;
                }
                let (taken, rest) = self.0.split_at(N);
                self.0 = rest;
                Some(taken.try_into().unwrap())
            }
            fn i16(&mut self) -> Option<i16> {
                self.take::<2>().map(i16::from_be_bytes)
            }
            fn i32(&mut self) -> Option<i32> {
                self.take::<4>().map(i32::from_be_bytes)
            }
            fn i64(&mut self) -> Option<i64> {
                self.take::<8>().map(i64::from_be_bytes)
            }
        }
        let mut reader = Reader(bytes);
        if reader.i16()? != SNAPSHOT_VERSION {
            return None;
        }
        let crc = reader.take::<4>().map(u32::from_be_bytes)?;
        if crc32c::crc32c(reader.0) != crc {
            return None;
        }
        let count = reader.i32()?;
        let mut producers = HashMap::new();
        for _ in 0..count {
            let producer_id = reader.i64()?;
            let epoch = reader.i16()?;
            let coordinator_epoch = reader.i32()?;
            let current_txn_first_offset = reader.i64()?;
            let last_timestamp = reader.i64()?;
            let batch_count = reader.take::<1>()?[0] as usize;
            let mut batches = VecDeque::with_capacity(batch_count);
            for _ in 0..batch_count {
                batches.push_back(BatchMetadata {
                    first_seq: reader.i32()?,
                    last_seq: reader.i32()?,
                    first_offset: reader.i64()?,
                    last_offset: reader.i64()?,
                    max_timestamp: reader.i64()?,
                });
            }
            producers.insert(
                producer_id,
                ProducerEntry {
                    producer_id,
                    epoch,
                    batches,
                    last_timestamp,
                    coordinator_epoch,
                    current_txn_first_offset,
                },
            );
        }
        if !reader.0.is_empty() {
            return None;
        }
        let mut state = ProducerStateManager {
            producers,
            ..Default::default()
        };
        state.rebuild_ongoing();
        Some(state)
    }

    /// Forgets the producers whose last batch ends below `log_start` (their batches are all gone:
    /// Kafka's `truncateHead` when the log start moves), except those with an open transaction
    /// (its marker is still to come).
    pub fn remove_before(&mut self, log_start: i64) {
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset >= 0
                || entry
                    .batches
                    .back()
                    .is_some_and(|batch| batch.last_offset >= log_start)
        });
    }

    /// Forgets batches at or beyond `offset` (truncation); producers left without batches are
    /// dropped, open transactions starting at or beyond `offset` closed. Callers normally reload
    /// from a snapshot instead.
    pub fn truncate_from(&mut self, offset: i64) {
        for entry in self.producers.values_mut() {
            entry.batches.retain(|batch| batch.last_offset < offset);
            if entry.current_txn_first_offset >= offset {
                entry.current_txn_first_offset = -1;
            }
        }
        self.producers.retain(|_, entry| !entry.batches.is_empty());
        self.unreplicated.retain(|_, txn| txn.last_offset < offset);
        self.rebuild_ongoing();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::testing::{build_batch, BatchSpec};

    fn hdr(pid: i64, epoch: i16, seq: i32, n: usize, base: i64) -> BatchHeader {
        let mut b = build_batch(&BatchSpec {
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            timestamp_deltas: vec![0; n],
            ..Default::default()
        });
        crate::batch::set_base_offset(&mut b, base);
        BatchHeader::parse(&b)
    }

    #[test]
    fn rules_and_snapshot() {
        let mut m = ProducerStateManager::new();
        // An unknown producer may start anywhere (its earlier batches may have been deleted).
        assert_eq!(m.check(&hdr(7, 0, 3, 1, 0)).unwrap(), SequenceCheck::Append);
        let h = hdr(7, 0, 0, 2, 0);
        assert_eq!(m.check(&h).unwrap(), SequenceCheck::Append);
        m.update(&h);
        assert_eq!(
            m.check(&hdr(7, 0, 0, 2, 99)).unwrap(),
            SequenceCheck::Duplicate {
                first_offset: 0,
                last_offset: 1
            }
        );
        assert!(matches!(
            m.check(&hdr(7, 0, 5, 1, 2)),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        assert!(matches!(
            m.check(&hdr(7, 1, 2, 1, 2)),
            Err(StorageError::OutOfOrderSequence(_))
        ));
        let h = hdr(7, 1, 0, 1, 2);
        assert_eq!(m.check(&h).unwrap(), SequenceCheck::Append);
        m.update(&h);
        assert!(matches!(
            m.check(&hdr(7, 0, 2, 1, 3)),
            Err(StorageError::InvalidProducerEpoch(_))
        ));
        // only the last 5 batches are remembered
        for i in 1..=6 {
            let h = hdr(7, 1, i, 1, 2 + i as i64);
            assert_eq!(m.check(&h).unwrap(), SequenceCheck::Append);
            m.update(&h);
        }
        assert!(m.check(&hdr(7, 1, 1, 1, 0)).is_err());
        assert!(matches!(
            m.check(&hdr(7, 1, 2, 1, 0)).unwrap(),
            SequenceCheck::Duplicate { .. }
        ));
        // wrap-around
        let mut w = ProducerStateManager::new();
        w.update(&hdr(9, 0, i32::MAX - 1, 2, 0));
        assert_eq!(w.check(&hdr(9, 0, 0, 1, 2)).unwrap(), SequenceCheck::Append);

        let snap = m.encode_snapshot();
        let back = ProducerStateManager::decode_snapshot(&snap).unwrap();
        assert_eq!(back.get(7), m.get(7));
        let mut bad = snap.clone();
        let n = bad.len();
        bad[n - 1] ^= 1;
        assert!(ProducerStateManager::decode_snapshot(&bad).is_none());
    }
}
