//! Loading a coordinator partition: its records are replayed in log order from the start of the log (the
//! last record of a transactional id wins; a tombstone removes it), and only then are requests served.
//! Transactions found prepared (PrepareCommit, PrepareAbort: the coordinator stopped between writing the
//! decision and completing it) have their markers sent again and are completed, as Kafka does; ongoing
//! ones stay ongoing (their producer may still commit, else the timeout or a new producer aborts them).
//!
//! Replay is one pass reading a bounded amount at a time and holds one entry per live id.

use super::{CoordinatorPartition, LoadState};
use crate::txn::records::{self, TxnRecord};
use crate::txn::state::{TransactionMetadata, TransactionState, Transit, TxnPartition};
use std::collections::HashMap;
use std::rc::Rc;
use storage::types::Offset;

/// Bytes read per round while replaying a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

impl CoordinatorPartition {
    /// Replays the partition from its start, then serves it and completes prepared transactions.
    pub async fn load(self: Rc<Self>) {
        let started = shard::task::now();
        let log = &self.partition.log;
        // To the written end, not the high watermark (as Kafka; see the group coordinator's load).
        let end = log.durable_end_offset();
        let mut offset = log.log_start_offset();
        let mut stored: HashMap<String, Transit> = HashMap::new();
        let mut count = 0usize;
        // Bounded: every round moves `offset` past at least one batch, and stops at `end`.
        while offset < end {
            let joined = match log.read(offset, LOAD_READ_BYTES, end, true).await {
                Ok(joined) => joined,
                Err(error) => {
                    tracing::error!(partition = self.index(), %error, "cannot load transaction coordinator partition; it stays unavailable");
                    return;
                }
            };
            if joined.is_empty() {
                break;
            }
            let before = offset;
            for (position, header) in storage::batch::iter_batches(&joined) {
                offset = Offset(header.last_offset() + 1);
                let batch = joined.slice(position..position + header.total_size());
                match records::decode_batch(batch) {
                    Ok(decoded) => {
                        count += decoded.len();
                        for record in decoded {
                            apply_record(&mut stored, record);
                        }
                    }
                    Err(error) => {
                        tracing::error!(partition = self.index(), base_offset = header.base_offset, %error, "skipping an unreadable batch");
                    }
                }
            }
            if offset == before {
                tracing::error!(
                    partition = self.index(),
                    offset = offset.0,
                    "transaction coordinator load made no progress; it stays unavailable"
                );
                return;
            }
        }
        if self.load.get() == LoadState::Unloaded {
            return;
        }
        let mut prepared: Vec<(String, storage::TxnMarker, Vec<TxnPartition>)> = Vec::new();
        let transactions: HashMap<String, TransactionMetadata> = stored
            .into_iter()
            .map(|(transactional_id, transit)| {
                if matches!(
                    transit.state,
                    TransactionState::PrepareCommit | TransactionState::PrepareAbort
                ) {
                    prepared.push((
                        transactional_id.clone(),
                        storage::TxnMarker {
                            producer_id: transit.producer_id,
                            producer_epoch: transit.producer_epoch,
                            coordinator_epoch: self.coordinator_epoch,
                            commit: transit.state == TransactionState::PrepareCommit,
                        },
                        transit.partitions.iter().cloned().collect(),
                    ));
                }
                let metadata = TransactionMetadata::restored(transactional_id.clone(), transit);
                (transactional_id, metadata)
            })
            .collect();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        tracing::info!(
            partition = self.index(),
            transactional_ids = transactions.len(),
            prepared = prepared.len(),
            records = count,
            elapsed_ms,
            "transaction coordinator loaded"
        );
        *self.transactions.borrow_mut() = transactions;
        self.load.set(LoadState::Loaded);
        for (transactional_id, marker, partitions) in prepared {
            let coordinator = self.clone();
            shard::task::spawn(async move {
                coordinator
                    .complete_transaction(transactional_id, marker, partitions)
                    .await
            });
        }
    }
}

/// Replays one record into the ids being loaded.
fn apply_record(stored: &mut HashMap<String, Transit>, record: TxnRecord) {
    match record.value {
        Some(transit) => {
            stored.insert(record.transactional_id, transit);
        }
        None => {
            stored.remove(&record.transactional_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn replay_keeps_the_last_value_and_honours_tombstones() {
        let transit = |state: TransactionState, epoch: i16| Transit {
            producer_id: 1,
            last_producer_id: -1,
            producer_epoch: epoch,
            last_producer_epoch: -1,
            timeout_ms: 1000,
            state,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: 0,
        };
        let mut stored = HashMap::new();
        for record in [
            TxnRecord {
                transactional_id: "a".into(),
                value: Some(transit(TransactionState::Empty, 0)),
            },
            TxnRecord {
                transactional_id: "a".into(),
                value: Some(transit(TransactionState::Empty, 1)),
            },
            TxnRecord {
                transactional_id: "b".into(),
                value: Some(transit(TransactionState::Empty, 0)),
            },
            TxnRecord {
                transactional_id: "b".into(),
                value: None,
            },
        ] {
            apply_record(&mut stored, record);
        }
        assert_eq!(stored["a"].producer_epoch, 1);
        assert!(!stored.contains_key("b"));
    }
}
