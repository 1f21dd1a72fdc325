//! Replica fetchers (Kafka's `ReplicaFetcherThread`, per shard): a follower copies its leader's log by
//! fetching from it with the Kafka Fetch API, like a consumer, naming itself as a replica.
//!
//! Each shard runs one fetcher per leader broker for the partitions it owns that follow that broker,
//! over one connection (so the connections are per shard and broker pair, shared by the shard's
//! partitions). A fetcher sends one Fetch at a time (v12: replica id, each partition's log end as
//! the fetch offset, the leader epoch it knows and the epoch of its last batch; waits up to
//! `FETCH_MAX_WAIT` for data) and applies the answer partition by partition:
//! - records are appended as the leader wrote them (offsets and bytes kept), and the leader's high
//!   watermark, capped by the follower's log end, becomes the follower's;
//! - a diverging epoch truncates the log first (`partition::replica_reads`);
//! - OFFSET_OUT_OF_RANGE with the leader's log start past this log's end (retention or DeleteRecords
//!   removed what the follower misses) empties the log and restarts it at that start (Kafka's
//!   `truncateFullyAndStartAt`), fetched from at once;
//! - an error (another leader, an unknown epoch: the follower's metadata is behind or ahead) puts the
//!   partition aside for `PARTITION_BACKOFF`, until the metadata catches up.
//!
//! A connection that fails is dropped and opened again after `CONNECTION_BACKOFF`.
//!
//! The set of fetchers follows the metadata: `replication_duties` reconciles it with the shard's
//! followers whenever a new metadata version has been adopted (the partition manager's generation), and asks the controller for the ISR changes
//! the shard's leaders find due (`Partition::isr_change_due`) every `ISR_CHECK_INTERVAL`.

use crate::control::requests::{ControlRequest, ControlResponse};
use crate::inter_broker::Connection;
use crate::partition::{Partition, TopicPartition};
use crate::replication_quota::{throttles, ReplicationQuota, FOLLOWER_THROTTLED_REPLICAS};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::types::{LeaderEpoch, Offset};

/// The Fetch version followers send: the first with `last_fetched_epoch` and diverging epochs
/// (KIP-595), and with topic names (no topic ids to resolve).
const FETCH_VERSION: i16 = 12;
/// How long the leader may hold a fetch without new data (Kafka's `replica.fetch.wait.max.ms`).
const FETCH_MAX_WAIT: Duration = Duration::from_millis(500);
/// Bytes per fetch (`replica.fetch.response.max.bytes`) and per partition (`replica.fetch.max.bytes`).
const FETCH_MAX_BYTES: i32 = 10 << 20;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// How long past `FETCH_MAX_WAIT` an answer may take before the connection is given up.
const ANSWER_MARGIN: Duration = Duration::from_secs(10);
const CONNECTION_BACKOFF: Duration = Duration::from_millis(500);
const PARTITION_BACKOFF: Duration = Duration::from_millis(200);
const IDLE_POLL: Duration = Duration::from_millis(50);
const DUTY_INTERVAL: Duration = Duration::from_millis(100);
const ISR_CHECK_INTERVAL_MS: i64 = 1_000;

/// A partition a fetcher copies, and until when it is put aside.
struct Target {
    partition: Rc<Partition>,
    /// Named by its topic's `follower.replication.throttled.replicas` for this broker: fetched only
    /// while the shard's `ReplicationQuota` allows.
    throttled: Cell<bool>,
    paused_until: Cell<Option<Instant>>,
    /// The leader epoch the last fetch named: an answer is applied only while it still holds.
    sent_epoch: Cell<i32>,
}

/// The fetcher of one leader broker on this shard.
struct Fetcher {
    leader: i32,
    quota: Rc<ReplicationQuota>,
    targets: RefCell<BTreeMap<TopicPartition, Rc<Target>>>,
    stopped: Cell<bool>,
}

/// This shard's fetchers, by leader broker, and the meter of their throttled bytes.
struct ReplicaFetchers {
    by_leader: RefCell<BTreeMap<i32, Rc<Fetcher>>>,
    quota: Rc<ReplicationQuota>,
}

impl ReplicaFetchers {
    /// Gives each fetcher the partitions that follow its leader now; starts fetchers for new leaders
    /// and stops those left without partitions.
    fn reconcile(&self, state: &Rc<ShardState>, followers: Vec<(i32, Rc<Partition>)>) {
        let metadata = state.metadata();
        let rate = state
            .config
            .with_dynamic(metadata.dynamic_configs())
            .follower_replication_throttled_rate;
        let shards = state.config.shards.max(1) as u64;
        // Each shard meters its share (at least a byte a second, so a small rate still moves).
        let share = if rate >= i64::MAX as u64 {
            rate
        } else {
            (rate / shards).max(1)
        };
        self.quota.set_rate(share, Instant::now());
        // As Kafka: only a replica out of sync is throttled (an in-sync follower held back would
        // stall the high watermark, then leave the ISR).
        let throttled = |partition: &Partition| {
            let Some(topic) = metadata.topics.get(&partition.topic) else {
                return false;
            };
            let in_sync = topic
                .partition_state(partition.index, metadata.node_id)
                .is_some_and(|state| state.isr.contains(&metadata.node_id));
            !in_sync
                && topic
                    .configs
                    .get(FOLLOWER_THROTTLED_REPLICAS)
                    .is_some_and(|value| throttles(value, partition.index, metadata.node_id))
        };
        let mut wanted: BTreeMap<i32, Vec<Rc<Partition>>> = BTreeMap::new();
        for (leader, partition) in followers {
            wanted.entry(leader).or_default().push(partition);
        }
        let mut by_leader = self.by_leader.borrow_mut();
        by_leader.retain(|leader, fetcher| {
            let keep = wanted.contains_key(leader);
            if !keep {
                fetcher.stopped.set(true);
            }
            keep
        });
        for (leader, partitions) in wanted {
            let fetcher = by_leader.entry(leader).or_insert_with(|| {
                let fetcher = Rc::new(Fetcher {
                    leader,
                    quota: self.quota.clone(),
                    targets: RefCell::default(),
                    stopped: Cell::new(false),
                });
                shard::task::spawn(run(state.clone(), fetcher.clone()));
                tracing::debug!(leader, "replica fetcher started");
                fetcher
            });
            tracing::debug!(
                leader,
                partitions = partitions.len(),
                "replica fetcher partitions"
            );
            let mut targets = fetcher.targets.borrow_mut();
            let before = std::mem::take(&mut *targets);
            for partition in partitions {
                let key = partition.key().clone();
                let target = match before.get(&key) {
                    Some(target) if Rc::ptr_eq(&target.partition, &partition) => target.clone(),
                    _ => Rc::new(Target {
                        throttled: Cell::new(false),
                        partition,
                        paused_until: Cell::new(None),
                        sent_epoch: Cell::new(-1),
                    }),
                };
                target.throttled.set(throttled(&target.partition));
                targets.insert(key, target);
            }
        }
    }

    fn stop_all(&self) {
        for fetcher in self.by_leader.borrow().values() {
            fetcher.stopped.set(true);
        }
    }
}

/// The shard's replication duties until `shutdown`: fetchers that follow the metadata, and the ISR
/// changes its leaders ask of the controller.
pub async fn replication_duties(state: Rc<ShardState>, shutdown: Arc<AtomicBool>) {
    let fetchers = ReplicaFetchers {
        by_leader: RefCell::default(),
        quota: Rc::new(ReplicationQuota::new(Instant::now())),
    };
    let mut seen: Option<u64> = None;
    let mut last_isr_check = 0i64;
    while !shutdown.load(Ordering::SeqCst) && !state.shutting_down.get() {
        // Once a metadata version is fully adopted (its partitions opened and their roles set, which
        // may take several of these rounds), not as soon as it is published.
        let generation = state.partitions.generation();
        if seen != Some(generation) {
            fetchers.reconcile(&state, state.partitions.followers());
            seen = Some(generation);
        }
        let now_ms = shard::task::wall_clock_ms();
        if now_ms - last_isr_check >= ISR_CHECK_INTERVAL_MS {
            last_isr_check = now_ms;
            let lag_ms = state.config.replica_lag_time_max.as_millis() as i64;
            let metadata = state.metadata();
            let is_live = |id: i32| metadata.broker(id).is_some();
            for (partition, change) in state.partitions.isr_changes_due(now_ms, lag_ms, is_live) {
                let state = state.clone();
                shard::task::spawn(async move {
                    tracing::info!(topic = %partition.topic, partition = partition.index, isr = ?change.isr, "asking the controller to change the ISR");
                    let request = ControlRequest::AlterPartition {
                        topic: partition.topic.clone(),
                        partition: partition.index,
                        change,
                    };
                    let accepted = matches!(
                        crate::control::control(&state, request).await,
                        ControlResponse::Topics(outcomes) if outcomes.iter().all(Result::is_ok)
                    );
                    if !accepted {
                        partition.isr_change_failed(shard::task::wall_clock_ms());
                    }
                });
            }
        }
        shard::task::sleep(DUTY_INTERVAL).await;
    }
    fetchers.stop_all();
}

async fn run(state: Rc<ShardState>, fetcher: Rc<Fetcher>) {
    let mut connection: Option<Connection> = None;
    while !fetcher.stopped.get() && !state.shutting_down.get() {
        let now = Instant::now();
        let over_quota = fetcher.quota.is_exceeded(now);
        let ready: Vec<Rc<Target>> = fetcher
            .targets
            .borrow()
            .values()
            .filter(|target| target.paused_until.get().is_none_or(|until| until <= now))
            .filter(|target| !(over_quota && target.throttled.get()))
            .cloned()
            .collect();
        if ready.is_empty() {
            shard::task::sleep(IDLE_POLL).await;
            continue;
        }
        if connection.is_none() {
            let endpoint = state.metadata().broker(fetcher.leader).cloned();
            let Some(endpoint) = endpoint else {
                shard::task::sleep(CONNECTION_BACKOFF).await;
                continue;
            };
            // An answer holds at most FETCH_MAX_BYTES, but its first batch may be as large as a
            // produce request may be.
            let limit = FETCH_MAX_BYTES as usize + state.config.socket_request_max_bytes;
            match Connection::open(&endpoint, limit).await {
                Ok(opened) => connection = Some(opened),
                Err(error) => {
                    crate::warn_limited!(FETCH_FAILED, leader = fetcher.leader, %error, "replica fetcher cannot connect");
                    shard::task::sleep(CONNECTION_BACKOFF).await;
                    continue;
                }
            }
        }
        let request = fetch_request(state.config.node_id, &ready);
        let answer = connection
            .as_mut()
            .expect("connected above")
            .call::<FetchRequest, FetchResponse>(
                ApiKey::Fetch,
                FETCH_VERSION,
                &request,
                FETCH_MAX_WAIT + ANSWER_MARGIN,
            )
            .await;
        match answer {
            Ok(response) if response.error_code == 0 => {
                tracing::trace!(
                    leader = fetcher.leader,
                    asked = ready.len(),
                    answered = response
                        .responses
                        .iter()
                        .map(|topic| topic.partitions.len())
                        .sum::<usize>(),
                    "replica fetch answered"
                );
                fetcher
                    .quota
                    .record(throttled_bytes(&ready, &response), Instant::now());
                let appended = apply(&fetcher, &ready, response).await;
                if state.config.replica_fsync_before_ack {
                    flush_appended(&appended).await;
                }
            }
            Ok(response) => {
                crate::warn_limited!(
                    FETCH_FAILED,
                    leader = fetcher.leader,
                    code = response.error_code,
                    "replica fetch refused"
                );
                shard::task::sleep(CONNECTION_BACKOFF).await;
            }
            Err(error) => {
                crate::warn_limited!(FETCH_FAILED, leader = fetcher.leader, %error, "replica fetch failed");
                connection = None;
                shard::task::sleep(CONNECTION_BACKOFF).await;
            }
        }
    }
    tracing::debug!(leader = fetcher.leader, "replica fetcher stopped");
}

/// The record bytes `response` carries for throttled partitions.
fn throttled_bytes(ready: &[Rc<Target>], response: &FetchResponse) -> usize {
    if !ready.iter().any(|target| target.throttled.get()) {
        return 0;
    }
    let mut bytes = 0;
    for topic in &response.responses {
        for data in &topic.partitions {
            let throttled = ready.iter().any(|target| {
                target.throttled.get()
                    && target.partition.index == data.partition_index
                    && target.partition.topic.as_str() == topic.topic.as_str()
            });
            if throttled {
                bytes += data.records.as_ref().map_or(0, |records| records.len());
            }
        }
    }
    bytes
}

/// A Fetch from each ready partition's log end.
fn fetch_request(node_id: i32, ready: &[Rc<Target>]) -> FetchRequest {
    let mut request = FetchRequest::default();
    request.replica_id = BrokerId(node_id);
    request.max_wait_ms = FETCH_MAX_WAIT.as_millis() as i32;
    request.min_bytes = 1;
    request.max_bytes = FETCH_MAX_BYTES;
    request.isolation_level = 0;
    request.session_id = 0;
    request.session_epoch = -1;
    for target in ready {
        let partition = &target.partition;
        let mut wanted = FetchPartition::default();
        wanted.partition = partition.index;
        wanted.current_leader_epoch = partition.leader_epoch().0;
        target.sent_epoch.set(wanted.current_leader_epoch);
        wanted.fetch_offset = partition.log_end_offset().0;
        wanted.last_fetched_epoch = partition.log.latest_epoch().map_or(-1, |epoch| epoch.0);
        wanted.log_start_offset = partition.log_start_offset().0;
        wanted.partition_max_bytes = PARTITION_MAX_BYTES;
        // Ready targets come in key order: partitions of one topic are adjacent.
        match request.topics.last_mut() {
            Some(topic) if topic.topic.as_str() == partition.topic.as_str() => {
                topic.partitions.push(wanted)
            }
            _ => {
                let mut topic = FetchTopic::default();
                topic.topic = TopicName(StrBytes::from_string(partition.topic.clone()));
                topic.partitions.push(wanted);
                request.topics.push(topic);
            }
        }
    }
    request
}

/// `replica.fsync.before.ack`: fsyncs the logs an answer appended to, one after another, before
/// the next fetch tells the leader their new log ends (so that the leader counts toward the high
/// watermark, and acknowledges acks=all produces with, only records on this follower's disk). A log
/// that cannot be fsynced is offline (`storage::Log::flush_to`): the next append to it fails and
/// backs off.
async fn flush_appended(appended: &[Rc<Partition>]) {
    for partition in appended {
        if let Err(error) = partition.log.flush_to(partition.log_end_offset()).await {
            crate::warn_limited!(FETCH_FAILED, topic = %partition.topic, partition = partition.index, %error, "cannot fsync the leader's records");
        }
    }
}

/// Applies the leader's answer to the partitions it names that this fetcher still copies. Returns
/// the partitions it appended records to.
async fn apply(
    fetcher: &Fetcher,
    ready: &[Rc<Target>],
    response: FetchResponse,
) -> Vec<Rc<Partition>> {
    let mut appended_to = Vec::new();
    for topic in response.responses {
        for data in topic.partitions {
            let Some(target) = ready.iter().find(|target| {
                target.partition.index == data.partition_index
                    && target.partition.topic.as_str() == topic.topic.as_str()
            }) else {
                continue;
            };
            let partition = &target.partition;
            // Under the partition's replica lock, checked again after waiting for it: a fetcher
            // stopped or no longer given the partition, or a partition that became leader, takes
            // nothing from this answer.
            let _applying = partition.replica_lock.lock().await;
            let still_ours = fetcher
                .targets
                .borrow()
                .get(partition.key())
                .is_some_and(|current| Rc::ptr_eq(current, target));
            // Also dropped: an answer from a leader the metadata has replaced meanwhile (the
            // fetcher learns of it only at its next reconciliation).
            let same_leader = partition.followed_leader() == Some(fetcher.leader)
                && partition.leader_epoch().0 == target.sent_epoch.get();
            if fetcher.stopped.get() || !still_ours || !same_leader {
                continue;
            }
            let error = ResponseError::try_from_code(data.error_code);
            let outcome = match error {
                None if data.diverging_epoch.epoch >= 0 || data.diverging_epoch.end_offset >= 0 => {
                    partition
                        .truncate_diverging(
                            LeaderEpoch(data.diverging_epoch.epoch),
                            Offset(data.diverging_epoch.end_offset),
                        )
                        .await
                        .map(|_| ())
                }
                None => {
                    let appended = partition
                        .append_from_leader(data.records.unwrap_or_default(), data.high_watermark)
                        .await;
                    match appended {
                        Ok(bytes) => {
                            if bytes > 0 {
                                appended_to.push(partition.clone());
                            }
                            partition.follow_log_start(data.log_start_offset).await
                        }
                        Err(error) => Err(error),
                    }
                }
                // Retention or DeleteRecords on the leader removed what this follower misses: it
                // restarts its log at the leader's log start (`replica_reads`' module doc).
                Some(ResponseError::OffsetOutOfRange)
                    if partition.log_end_offset().0 < data.log_start_offset =>
                {
                    partition
                        .truncate_fully_behind_leader(Offset(data.log_start_offset))
                        .await
                        .map(|_| ())
                }
                Some(error) => {
                    tracing::debug!(topic = %partition.topic, partition = partition.index, ?error, "replica fetch answered an error");
                    target
                        .paused_until
                        .set(Some(Instant::now() + PARTITION_BACKOFF));
                    continue;
                }
            };
            if let Err(error) = outcome {
                crate::warn_limited!(FETCH_FAILED, topic = %partition.topic, partition = partition.index, %error, "cannot apply the leader's records");
                target
                    .paused_until
                    .set(Some(Instant::now() + CONNECTION_BACKOFF));
            }
        }
    }
    appended_to
}

/// Fetch failures repeat while a leader is down: their log lines are rate-limited.
static FETCH_FAILED: crate::log_limit::LogLimiter =
    crate::log_limit::LogLimiter::new(Duration::from_secs(10), 5);
