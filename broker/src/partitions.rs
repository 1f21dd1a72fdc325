//! Partition operations that run on the partition's owning shard.
//!
//! The handlers split a request by owning shard; each part ends up here, called directly when the
//! partition is local or from the mesh loop when it came from another shard.

use crate::config::TopicConfig;
use crate::group::OFFSETS_TOPIC;
use crate::metadata::{partition_dir, ClusterMetadata};
use crate::shard_state::{now_ms, ShardState};
use bytes::Bytes;
use event_listener::Event;
use futures_lite::future::poll_once;
use kafka_protocol::error::ResponseError;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;
use storage::types::{LeaderEpoch, Offset};
use storage::{AppendInfo, Log, StorageError};

pub type PartitionLog = Log<shard::dma::DmaFileSystem>;

pub struct Partition {
    pub topic: String,
    pub index: i32,
    pub log: PartitionLog,
    pub leader_epoch: LeaderEpoch,
    /// Notified whenever the high watermark advances (long-poll fetches wait on it).
    pub data_arrived: Event,
}

impl Partition {
    /// On a single node every written record is committed: the high watermark is the durable end.
    pub fn high_watermark(&self) -> Offset {
        self.log.durable_end_offset()
    }
}

pub struct ProduceItem {
    pub topic: String,
    pub partition: i32,
    pub records: Bytes,
}

pub type ProduceOutcome = Result<AppendInfo, (ResponseError, String)>;

pub struct FetchItem {
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: usize,
    pub read_committed: bool,
}

pub struct FetchOutcome {
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Whole batches, each in the buffer it lives in (batch cache or segment read): no copy.
    pub records: Vec<Bytes>,
}

impl FetchOutcome {
    pub fn failed(code: ResponseError) -> FetchOutcome {
        FetchOutcome {
            error: Some(code),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: Vec::new(),
        }
    }

    pub fn records_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

pub struct OffsetQuery {
    pub topic: String,
    pub partition: i32,
    pub timestamp: i64,
    pub read_committed: bool,
}

/// (error, offset, timestamp)
pub type OffsetOutcome = Result<(i64, i64), ResponseError>;

/// The Kafka error a client expects for a storage error (the mapping lives with the errors, in storage).
pub fn error_code(error: &StorageError) -> ResponseError {
    ResponseError::try_from_code(error.error_code()).unwrap_or(ResponseError::UnknownServerError)
}

type Pending<T> = Pin<Box<dyn Future<Output = T>>>;

/// Appends `records` (whole batches) to a partition of this shard and wakes the long polls waiting on
/// it. Offsets are assigned on the first poll, so appends are ordered as they are first polled.
///
/// Once that first poll has begun the write, the rest runs in a task of its own: a caller that goes away
/// (a client that disconnects mid-produce drops its request's future) must not cancel a segment write
/// half-way, which leaves the log's appender without the bytes it counted (a later write then fails an
/// assertion and takes the shard down; found by the wire fuzzer).
pub async fn append_records(partition: Rc<Partition>, records: Bytes) -> ProduceOutcome {
    let mut append = Box::pin(write_records(partition, records));
    if let Some(done) = poll_once(&mut append).await {
        return done;
    }
    let (sender, receiver) = futures_channel::oneshot::channel();
    shard::task::spawn(async move {
        let _ = sender.send(append.await);
    });
    receiver.await.unwrap_or_else(|_| {
        Err((
            ResponseError::UnknownServerError,
            "append task dropped".to_string(),
        ))
    })
}

async fn write_records(partition: Rc<Partition>, records: Bytes) -> ProduceOutcome {
    let result = partition
        .log
        .append(records, partition.leader_epoch, now_ms())
        .await;
    match result {
        Ok(info) => {
            partition.data_arrived.notify(usize::MAX);
            Ok(info)
        }
        Err(error) => {
            crate::warn_limited!(APPEND_REJECTED, topic = %partition.topic, partition = partition.index, %error, "append rejected");
            Err((error_code(&error), error.to_string()))
        }
    }
}

/// Refused appends are client-triggered (corrupt or invalid batches): their log lines are rate-limited.
static APPEND_REJECTED: crate::log_limit::LogLimiter =
    crate::log_limit::LogLimiter::new(std::time::Duration::from_secs(10), 5);

/// Dispatch stage of a produce on the owning shard: assigns offsets to every item's batches (in order),
/// and returns a future that completes once they are written.
pub async fn start_produce(
    state: &Rc<ShardState>,
    items: Vec<ProduceItem>,
) -> Pending<Vec<ProduceOutcome>> {
    let mut pending: Vec<Pending<ProduceOutcome>> = Vec::with_capacity(items.len());
    for item in items {
        let Some(partition) = state.partition(&item.topic, item.partition) else {
            pending.push(Box::pin(std::future::ready(Err((
                ResponseError::UnknownTopicOrPartition,
                String::new(),
            )))));
            continue;
        };
        let mut append: Pending<ProduceOutcome> = Box::pin(append_records(partition, item.records));
        // Run the append up to its first suspension: offsets are assigned now, in request order.
        match poll_once(&mut append).await {
            Some(done) => pending.push(Box::pin(std::future::ready(done))),
            None => pending.push(append),
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

/// Reads for a fetch on the owning shard. `max_bytes` is the request's remaining total budget (soft: the
/// first partition with data returns at least one whole batch, as KIP-74 asks).
pub async fn read(
    state: &Rc<ShardState>,
    items: Vec<FetchItem>,
    mut max_bytes: usize,
    mut min_one: bool,
) -> Vec<FetchOutcome> {
    let mut outcomes = Vec::with_capacity(items.len());
    for item in items {
        let Some(partition) = state.partition(&item.topic, item.partition) else {
            outcomes.push(FetchOutcome::failed(ResponseError::UnknownTopicOrPartition));
            continue;
        };
        let high_watermark = partition.high_watermark();
        let log_start = partition.log.log_start_offset();
        let limit = item.partition_max_bytes.min(max_bytes);
        let result = if limit == 0 && !min_one {
            Ok(Vec::new())
        } else {
            partition
                .log
                .read_batches(Offset(item.fetch_offset), limit, high_watermark, min_one)
                .await
        };
        let (error, records) = match result {
            Ok(records) => (None, records),
            Err(error) => {
                if !matches!(error, StorageError::OffsetOutOfRange { .. }) {
                    tracing::warn!(topic = %item.topic, partition = item.partition, %error, "fetch failed");
                }
                (Some(error_code(&error)), Vec::new())
            }
        };
        let outcome = FetchOutcome {
            error,
            high_watermark: high_watermark.0,
            last_stable_offset: high_watermark.0,
            log_start_offset: log_start.0,
            records,
        };
        if !outcome.records.is_empty() {
            min_one = false;
            max_bytes = max_bytes.saturating_sub(outcome.records_bytes());
        }
        outcomes.push(outcome);
    }
    outcomes
}

/// Waits until any listed partition's high watermark passes its offset, or `max_wait` passes.
pub async fn wait_for_data(
    state: &Rc<ShardState>,
    items: &[(String, i32, Offset)],
    max_wait: Duration,
) {
    let partitions: Vec<(Rc<Partition>, Offset)> = items
        .iter()
        .filter_map(|(topic, index, offset)| state.partition(topic, *index).map(|p| (p, *offset)))
        .collect();
    let deadline = std::time::Instant::now() + max_wait;
    // Bounded: each round either returns or waits for a notification / the deadline.
    loop {
        let listeners: Vec<_> = partitions
            .iter()
            .map(|(partition, _)| partition.data_arrived.listen())
            .collect();
        if partitions
            .iter()
            .any(|(partition, offset)| partition.high_watermark() > *offset)
        {
            return;
        }
        let remaining = deadline.saturating_duration_since(std::time::Instant::now());
        if remaining.is_zero() || partitions.is_empty() {
            if partitions.is_empty() {
                shard::task::sleep(remaining).await;
            }
            return;
        }
        let mut listeners = listeners;
        let first = std::future::poll_fn(move |cx| {
            for listener in listeners.iter_mut() {
                if Pin::new(listener).poll(cx).is_ready() {
                    return std::task::Poll::Ready(());
                }
            }
            std::task::Poll::Pending
        });
        if shard::task::timeout(remaining, first).await.is_none() {
            return;
        }
    }
}

/// ListOffsets on the owning shard.
pub async fn list_offsets(state: &Rc<ShardState>, items: Vec<OffsetQuery>) -> Vec<OffsetOutcome> {
    let mut outcomes = Vec::with_capacity(items.len());
    for query in items {
        let Some(partition) = state.partition(&query.topic, query.partition) else {
            outcomes.push(Err(ResponseError::UnknownTopicOrPartition));
            continue;
        };
        let high_watermark = partition.high_watermark().0;
        let outcome = match query.timestamp {
            // LATEST
            -1 => Ok((high_watermark, -1)),
            // EARLIEST, EARLIEST_LOCAL
            -2 | -4 => Ok((partition.log.log_start_offset().0, -1)),
            // MAX_TIMESTAMP
            -3 => match partition.log.max_timestamp().await {
                Ok(Some((offset, timestamp))) => Ok((offset.0, timestamp)),
                Ok(None) => Ok((-1, -1)),
                Err(error) => Err(error_code(&error)),
            },
            // LATEST_TIERED: nothing is tiered
            -5 => Ok((-1, -1)),
            timestamp if timestamp >= 0 => {
                match partition.log.offset_for_timestamp(timestamp).await {
                    Ok(Some((offset, found))) if offset.0 < high_watermark => Ok((offset.0, found)),
                    Ok(_) => Ok((-1, -1)),
                    Err(error) => Err(error_code(&error)),
                }
            }
            _ => Err(ResponseError::InvalidRequest),
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// Adopts a new metadata version: opens the partitions newly placed on this shard, closes and deletes
/// those whose topic is gone (or was re-created with another id).
pub async fn apply_metadata(
    state: &Rc<ShardState>,
    metadata: std::sync::Arc<ClusterMetadata>,
) -> Vec<crate::unopened_partitions::UnopenedPartition> {
    let mut unopened = Vec::new();
    let previous = state.metadata.replace(metadata.clone());
    // Close and delete partitions that no longer exist: each directory is renamed to its `-delete` name
    // (and the rename fsynced) here, then removed in the background; see `partition_dir`.
    let mut deleted_dirs = Vec::new();
    let owned: Vec<(String, i32)> = state.partitions.borrow().keys().cloned().collect();
    for (topic, index) in owned {
        let gone = match (metadata.topics.get(&topic), previous.topics.get(&topic)) {
            (Some(now), Some(before)) => now.id != before.id || index >= now.partition_count(),
            (Some(now), None) => index >= now.partition_count(),
            (None, _) => true,
        };
        if gone {
            let partition = state
                .partitions
                .borrow_mut()
                .remove(&(topic.clone(), index));
            if let Some(partition) = partition {
                if topic == OFFSETS_TOPIC {
                    state.groups.partition_closed(index);
                }
                if let Err(error) = partition.log.close().await {
                    tracing::warn!(%topic, partition = index, %error, "closing a deleted partition");
                }
                deleted_dirs.push(partition_dir(&state.config.data_dir, &topic, index));
                tracing::info!(%topic, partition = index, "partition deleted");
            }
        }
    }
    let marked = crate::partition_dir::mark_all_deleted(&state.config.data_dir, &deleted_dirs);
    crate::partition_dir::remove_in_background(marked);
    // Open partitions placed here that are not open yet.
    for (topic, topic_metadata) in &metadata.topics {
        for (index, &owner) in topic_metadata.shards.iter().enumerate() {
            let index = index as i32;
            if owner != state.id.0 || state.partition(topic, index).is_some() {
                continue;
            }
            if let Err(error) = open_partition(
                state,
                topic,
                index,
                topic_metadata.id,
                &topic_metadata.configs,
            )
            .await
            {
                tracing::error!(%topic, partition = index, %error, "cannot open partition");
                unopened.push((topic.clone(), index));
            }
        }
    }
    unopened
}

async fn open_partition(
    state: &Rc<ShardState>,
    topic: &str,
    index: i32,
    topic_id: uuid::Uuid,
    configs: &std::collections::BTreeMap<String, String>,
) -> Result<(), String> {
    let config = TopicConfig::resolve(&state.config.log_defaults, configs)?;
    let dir = partition_dir(&state.config.data_dir, topic, index);
    claim_partition_dir(&dir, topic_id)?;
    let log = Log::open_with_file_pool(
        state.fs,
        dir,
        config.log,
        state.cache.clone(),
        state.segment_files.clone(),
        state.clean_start,
    )
    .await
    .map_err(|error| error.to_string())?;
    tracing::debug!(%topic, partition = index, shard = state.id.0, log_end_offset = log.log_end_offset().0, "partition open");
    let partition = Rc::new(Partition {
        topic: topic.to_string(),
        index,
        log,
        leader_epoch: LeaderEpoch(0),
        data_arrived: Event::new(),
    });
    state
        .partitions
        .borrow_mut()
        .insert((topic.to_string(), index), partition.clone());
    if topic == OFFSETS_TOPIC {
        state.groups.partition_opened(state, partition);
    }
    Ok(())
}

/// Makes `dir` the directory of topic `topic_id`'s partition: creates it and records the id, or checks
/// the id an existing one records. A directory recording another id (left by a deleted topic of the same
/// name) is never adopted: it is marked deleted and a fresh one is made. Start-up has already reconciled
/// the data directory, so that happens only if something slipped past it.
fn claim_partition_dir(dir: &std::path::Path, topic_id: uuid::Uuid) -> Result<(), String> {
    let describe = |error: std::io::Error| format!("{}: {error}", dir.display());
    if dir.exists() {
        match crate::partition_dir::read_topic_id(dir) {
            Ok(Some(recorded)) if recorded == topic_id => return Ok(()),
            // Listed by the metadata and without an id: start-up records ids; a crash right after mkdir.
            Ok(None) => {
                return crate::partition_dir::write_topic_id(dir, topic_id).map_err(describe)
            }
            Ok(Some(recorded)) => {
                tracing::warn!(dir = %dir.display(), %recorded, %topic_id, "partition directory of another topic id; not adopting it");
                let marked = crate::partition_dir::mark_deleted(dir).map_err(describe)?;
                crate::partition_dir::remove_in_background(vec![marked]);
            }
            Err(error) => {
                tracing::warn!(%error, "unreadable partition.metadata; moving the directory aside");
                crate::partition_dir::mark_stray(dir).map_err(describe)?;
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(describe)?;
    crate::partition_dir::write_topic_id(dir, topic_id).map_err(describe)
}

/// Closes every partition of this shard (clean shutdown): flush, trim, snapshot.
pub async fn close_all(state: &Rc<ShardState>) {
    let partitions: Vec<Rc<Partition>> = state
        .partitions
        .borrow_mut()
        .drain()
        .map(|(_, partition)| partition)
        .collect();
    for coordinator in state.groups.all() {
        state.groups.partition_closed(coordinator.index());
    }
    for partition in partitions {
        if let Err(error) = partition.log.close().await {
            tracing::error!(topic = %partition.topic, partition = partition.index, %error, "closing partition");
        }
    }
}
