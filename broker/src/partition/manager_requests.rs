//! The request side of a shard's [`PartitionManager`]: each data-plane request's items for this shard —
//! produce (with acks=all's wait for the in-sync replicas), read, long-poll wait, offset lookups,
//! DeleteRecords, transaction markers, DescribeProducers and log sizes. Called directly for the local
//! part of a request, from the mesh loop for a part another shard sent.

use super::delayed::{Completion, WatchedPartition};
use super::manager::PartitionManager;
use super::requests::{
    DeleteRecordsItem, DeleteRecordsOutcome, FetchItem, FetchOutcome, MarkerItem, MarkerOutcome,
    OffsetLookup, OffsetOutcome, OffsetQuery, ProduceItem, ProduceOutcome, ProducersOutcome,
    WaitItem,
};
use super::{Partition, TopicPartition};
use futures_lite::future::poll_once;
use kafka_protocol::error::ResponseError;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use storage::types::Offset;

type Pending<T> = Pin<Box<dyn Future<Output = T>>>;

impl PartitionManager {
    /// Dispatch stage of a produce: assigns offsets to every item's batches, in order, and returns a
    /// future that completes once they are written (and, for acks=-1, replicated).
    pub async fn start_produce(&self, items: Vec<ProduceItem>) -> Pending<Vec<ProduceOutcome>> {
        let mut pending: Vec<Pending<ProduceOutcome>> = Vec::with_capacity(items.len());
        for item in items {
            let Some(partition) = self.get(&item.topic, item.partition) else {
                pending.push(Box::pin(std::future::ready(Err((
                    ResponseError::UnknownTopicOrPartition,
                    String::new(),
                )
                    .into()))));
                continue;
            };
            if let Err(refusal) = check_in_sync(&partition, &item) {
                pending.push(Box::pin(std::future::ready(Err(refusal.into()))));
                continue;
            }
            let bytes = item.records.len();
            let counters = self.counters.clone();
            let append = partition.clone().append(item.records);
            let mut append: Pending<ProduceOutcome> = Box::pin(async move {
                let outcome = append.await;
                match &outcome {
                    Ok(info) => counters.appended(bytes, info.record_count),
                    Err(_) => counters.append_refused(),
                }
                outcome
            });
            // Run the append up to its first suspension: offsets are assigned now, in request order.
            let appended = match poll_once(&mut append).await {
                Some(done) => Box::pin(std::future::ready(done)),
                None => append,
            };
            if item.acks == -1 {
                let delayed = self.delayed.clone();
                let counters = self.counters.clone();
                let deadline = shard::task::now() + item.timeout;
                let min_insync_replicas = item.min_insync_replicas;
                // The epoch the records were written in: leadership lost and regained meanwhile
                // (they may have been truncated) must not acknowledge them.
                let epoch = partition.leader_epoch();
                let fsync_before_ack = self.resources.config.replica_fsync_before_ack;
                pending.push(Box::pin(async move {
                    let info = appended.await?;
                    let required = Offset(info.last_offset.0 + 1);
                    // `replica.fsync.before.ack`: on the leader's disk before the wait for the
                    // followers (who fsync before their next fetch reports their log end). Produces
                    // waiting together share an fsync (`Log::flush_to`).
                    if fsync_before_ack {
                        if let Err(error) = partition.log.flush_to(required).await {
                            return Err((super::error_code(&error), error.to_string()).into());
                        }
                    }
                    let completion = delayed
                        .wait_for_replicas(&partition, required, deadline)
                        .await;
                    counters.delayed_produce(completion == Completion::Expired);
                    match completion {
                        Completion::Satisfied
                            if !partition.is_leader() || partition.leader_epoch() != epoch =>
                        {
                            Err((
                                ResponseError::NotLeaderOrFollower,
                                "leadership moved before the in-sync replicas had the records"
                                    .to_string(),
                            )
                                .into())
                        }
                        Completion::Satisfied
                            if partition.in_sync_replicas() < min_insync_replicas =>
                        {
                            Err((
                                ResponseError::NotEnoughReplicasAfterAppend,
                                format!(
                                    "written, but only {} of min.insync.replicas {min_insync_replicas} replicas are in sync",
                                    partition.in_sync_replicas()
                                ),
                            )
                                .into())
                        }
                        Completion::Satisfied => Ok(info),
                        Completion::Expired => Err((
                            ResponseError::RequestTimedOut,
                            "the in-sync replicas did not get the records in time".to_string(),
                        )
                            .into()),
                    }
                }));
            } else {
                pending.push(appended);
            }
        }
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(pending.len());
            for append in pending {
                outcomes.push(append.await);
            }
            outcomes
        })
    }

    /// Reads for a fetch. `max_bytes` is the request's remaining total budget (soft: the first partition
    /// with data returns at least one whole batch, as KIP-74 asks). A consumer's item may be read on a
    /// follower (KIP-392, see `Partition::read`), or answered with a preferred read replica instead.
    pub async fn read(&self, items: Vec<FetchItem>, mut max_bytes: usize) -> Vec<FetchOutcome> {
        let mut min_one = true;
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let Some(partition) = self.get(&item.topic, item.partition) else {
                outcomes.push(FetchOutcome::failed(ResponseError::UnknownTopicOrPartition));
                continue;
            };
            let limit = item.partition_max_bytes.min(max_bytes);
            if let Err(error) = partition.check_leader_epoch(item.current_leader_epoch) {
                outcomes.push(FetchOutcome::failed(error));
                continue;
            }
            let outcome = match item.replica {
                Some(replica) => {
                    partition
                        .read_for_follower(
                            Offset(item.fetch_offset),
                            limit,
                            min_one,
                            replica,
                            shard::task::wall_clock_ms(),
                        )
                        .await
                }
                None => {
                    let fetch_offset = Offset(item.fetch_offset);
                    match partition.preferred_read_replica(&item.preferred_candidates, fetch_offset)
                    {
                        // KIP-392: the consumer is sent to a follower; no records, this leader's
                        // offsets as usual (Kafka skips the read).
                        Some(replica) => FetchOutcome {
                            preferred_read_replica: Some(replica),
                            ..partition.positions()
                        },
                        None => {
                            partition
                                .read(
                                    fetch_offset,
                                    limit,
                                    min_one,
                                    item.read_committed,
                                    item.leader_only,
                                )
                                .await
                        }
                    }
                }
            };
            self.counters.read(outcome.records_bytes());
            if !outcome.records.is_empty() {
                min_one = false;
                max_bytes = max_bytes.saturating_sub(outcome.records_bytes());
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Waits until any listed partition's high watermark (read_committed: last stable offset) passes the
    /// offset seen, or `max_wait` passes. Partitions not on this shard are left out; with none at all, it
    /// just waits out `max_wait`.
    pub async fn wait_for_data(&self, items: Vec<WaitItem>, max_wait: Duration) -> Completion {
        let deadline = shard::task::now() + max_wait;
        let partitions: Vec<_> = items
            .iter()
            .filter_map(|item| {
                let partition = self.get(&item.topic, item.partition)?;
                Some(WatchedPartition {
                    partition: Rc::downgrade(&partition),
                    key: partition.key().clone(),
                    seen: item.seen,
                    read_committed: item.read_committed,
                    replica: item.replica,
                    seen_high_watermark: item.seen_high_watermark,
                })
            })
            .collect();
        if partitions.is_empty() {
            shard::task::sleep_until(deadline).await;
            return Completion::Expired;
        }
        let completion = self.delayed.wait_for_data(partitions, deadline).await;
        self.counters
            .delayed_fetch(completion == Completion::Expired);
        completion
    }

    /// The log size in bytes of each partition (DescribeLogDirs); `None` where it is not open here.
    pub fn sizes(&self, items: &[TopicPartition]) -> Vec<Option<u64>> {
        let partitions = self.partitions.borrow();
        items
            .iter()
            .map(|key| {
                partitions
                    .get(key)
                    .map(|partition| partition.log.size_in_bytes())
            })
            .collect()
    }

    /// ListOffsets lookups.
    pub async fn list_offsets(&self, items: Vec<OffsetQuery>) -> Vec<OffsetOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for query in items {
            self.counters.offset_lookup();
            outcomes.push(match self.get(&query.topic, query.partition) {
                Some(partition) if !partition.is_leader() => {
                    Err(ResponseError::NotLeaderOrFollower)
                }
                Some(partition) => match partition.check_leader_epoch(query.current_leader_epoch) {
                    Err(error) => Err(error),
                    Ok(()) => match query.lookup {
                        OffsetLookup::Timestamp(timestamp) => {
                            partition.offset_for(timestamp, query.read_committed).await
                        }
                        OffsetLookup::EpochEnd(epoch) => Ok(partition.epoch_end_offset(epoch)),
                    },
                },
                None => Err(ResponseError::UnknownTopicOrPartition),
            });
        }
        outcomes
    }

    /// DeleteRecords items, in order.
    pub async fn delete_records(&self, items: Vec<DeleteRecordsItem>) -> Vec<DeleteRecordsOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(match self.get(&item.topic, item.partition) {
                Some(partition) if !partition.is_leader() => {
                    Err(ResponseError::NotLeaderOrFollower)
                }
                Some(partition) => partition.delete_records(item.offset).await,
                None => Err(ResponseError::UnknownTopicOrPartition),
            });
        }
        outcomes
    }

    /// Writes transaction markers, in order, and tells the listeners of each one written.
    pub async fn write_markers(&self, items: Vec<MarkerItem>) -> Vec<MarkerOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let Some(partition) = self.get(&item.topic, item.partition) else {
                outcomes.push(Err(ResponseError::UnknownTopicOrPartition));
                continue;
            };
            if !partition.is_leader() {
                outcomes.push(Err(ResponseError::NotLeaderOrFollower));
                continue;
            }
            let outcome = partition.clone().write_marker(item.marker).await;
            if let Ok(offset) = outcome {
                for listener in self.listeners() {
                    listener.marker_written(&partition, &item.marker, offset);
                }
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    /// The producers of each partition (DescribeProducers); NOT_LEADER_OR_FOLLOWER where the partition
    /// is not open here (Kafka's answer for a partition this broker does not lead).
    pub fn describe_producers(&self, items: &[TopicPartition]) -> Vec<ProducersOutcome> {
        items
            .iter()
            .map(|(topic, index)| match self.get(topic, *index) {
                Some(partition) => Ok(partition.active_producers()),
                None => Err(ResponseError::NotLeaderOrFollower),
            })
            .collect()
    }
}

/// Whether `partition` may take `item` now: it must lead, and for acks=-1 have at least
/// `min.insync.replicas` replicas in sync (Kafka checks before appending: NOT_ENOUGH_REPLICAS).
fn check_in_sync(partition: &Partition, item: &ProduceItem) -> Result<(), (ResponseError, String)> {
    if !partition.is_leader() {
        return Err((ResponseError::NotLeaderOrFollower, String::new()));
    }
    let in_sync = partition.in_sync_replicas();
    if item.acks == -1 && in_sync < item.min_insync_replicas {
        return Err((
            ResponseError::NotEnoughReplicas,
            format!(
                "{in_sync} replicas in sync, min.insync.replicas is {}",
                item.min_insync_replicas
            ),
        ));
    }
    Ok(())
}
