//! Fetch (key 1), versions 4–16, from consumers and from followers (a `replica_id` ≥ 0; v15+ in
//! `replica_state`).
//!
//! Reads each partition on its owning shard, up to the high watermark — with `isolation_level` 1
//! (read_committed), up to the last stable offset, each partition answering the aborted transactions
//! (producer id, first offset) among the batches it returns (null for read_uncommitted, as Kafka). When
//! fewer than `min_bytes` are available, the request long-polls: each owning shard parks a delayed fetch
//! in its purgatory, completed when one of its partitions' high watermark (read_committed: last stable
//! offset) moves past what the fetch saw; the fetch re-reads after the first completion or at
//! `max_wait_ms` — nothing spins, so an idle consumer costs (close to) no CPU.
//!
//! A partition this broker does not lead answers NOT_LEADER_OR_FOLLOWER with its current leader (v12+),
//! except that from v11 a consumer's fetch is served by a follower too (fetch from follower,
//! KIP-392): up to the follower's own high watermark (read_committed: last stable offset), nothing
//! between it and the log end, OFFSET_OUT_OF_RANGE past the log end (the consumer goes back to the
//! leader); its long polls wake when the leader's answers move that high watermark. A leader whose
//! `replica_selector` is rack-aware answers a v11+ consumer in another rack, for which an in-sync
//! follower in the consumer's rack has the fetch offset, with that follower as
//! `preferred_read_replica` and no records (see `crate::replica_selector`).
//! A `current_leader_epoch` other than the partition's answers FENCED_LEADER_EPOCH (older) or
//! UNKNOWN_LEADER_EPOCH (newer), KIP-320.
//!
//! A follower's fetch reads up to the leader's written end (not the high watermark), records the
//! follower's log end on the leader (which moves the high watermark and completes acks=all produces),
//! waits for new writes or a high watermark past the one it was last answered (so it can serve
//! consumers up to it, KIP-392), and may be answered a diverging epoch
//! instead of records (see `partition::replica_reads`).
//!
//! Incremental fetch sessions (KIP-227, v7+) are kept per shard: see [`crate::fetch_session`].

use super::{close, decode, respond_later_frame};
use crate::fetch_session::{SessionError, SessionPartition};
use crate::messages::ShardMessage;
use crate::metadata::NotServed;
use crate::partition::requests::{FetchItem, FetchOutcome, ReplicaFetch, WaitItem};
use crate::scatter_gather::{scatter, LocalAnswer, ShardSplit};
use crate::shard_state::ShardState;
use budget::apply_request_budget;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use net::{DecodedHeader, DispatchFuture};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;
use storage::types::Offset;
use storage::AbortedTxn;
use uuid::Uuid;

pub const VERSIONS: (i16, i16) = (4, 16);

/// Longest long-poll this broker honours (a bound on waiting work).
const MAX_WAIT: Duration = Duration::from_secs(60);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    let request: FetchRequest = match decode(&header) {
        Ok(request) => request,
        Err(_) => return close(),
    };
    respond_later_frame(async move {
        let (response, splices) = fetch(state, request, header.api_version).await;
        match net::encode_response_spliced(
            header.api_key,
            header.api_version,
            header.correlation_id,
            &response,
            splices,
        ) {
            Ok(frame) => Some(frame),
            Err(error) => {
                tracing::error!(version = header.api_version, %error, "cannot encode fetch response");
                None
            }
        }
    })
}

/// One requested partition and where it lives.
struct Wanted {
    topic_index: usize,
    name: Option<String>,
    partition: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    shard: Option<usize>,
    /// Led by another broker (its id and leader epoch; -1: none now).
    not_leader: Option<(i32, i32)>,
    /// The request's `current_leader_epoch` for the partition (-1: none, or carried by the session).
    current_leader_epoch: i32,
    /// A follower's fetch: its id and the epoch of its last batch.
    replica: Option<ReplicaFetch>,
    /// A consumer before v11: only a leader answers (from v11 a follower does, KIP-392).
    leader_only: bool,
    /// The followers the replica selector would send this consumer to (see `crate::replica_selector`).
    preferred_candidates: Vec<i32>,
}

/// What the request asks for once sessions are taken into account.
struct Plan {
    partitions: Vec<SessionPartition>,
    /// The session the response belongs to (0 = none).
    session_id: i32,
    /// Leave out partitions without news.
    incremental: bool,
}

/// Applies the request's session fields (v7+) and lists the partitions to read.
fn plan(state: &ShardState, request: &FetchRequest, version: i16) -> Result<Plan, ResponseError> {
    let requested: Vec<SessionPartition> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| SessionPartition {
                    topic: topic.topic.clone(),
                    topic_id: topic.topic_id,
                    partition: partition.partition,
                    fetch_offset: partition.fetch_offset,
                    partition_max_bytes: partition.partition_max_bytes,
                    last_sent: None,
                })
        })
        .collect();
    if version < 7 {
        return Ok(Plan {
            partitions: requested,
            session_id: 0,
            incremental: false,
        });
    }
    let sessions = &state.fetch_sessions;
    match (request.session_id, request.session_epoch) {
        (id, -1) => {
            if id != 0 {
                sessions.remove(id);
            }
            Ok(Plan {
                partitions: requested,
                session_id: 0,
                incremental: false,
            })
        }
        (id, 0) => {
            if id != 0 {
                sessions.remove(id);
            }
            let session_id = sessions.create(requested.clone()).unwrap_or(0);
            Ok(Plan {
                partitions: requested,
                session_id,
                incremental: false,
            })
        }
        (id, epoch) => {
            let forgotten: Vec<_> = request
                .forgotten_topics_data
                .iter()
                .map(|topic| {
                    (
                        topic.topic.clone(),
                        topic.topic_id,
                        topic.partitions.clone(),
                    )
                })
                .collect();
            match sessions.update(id, epoch, requested, &forgotten, version >= 13) {
                Ok(partitions) => Ok(Plan {
                    partitions,
                    session_id: id,
                    incremental: true,
                }),
                Err(SessionError::NotFound) => Err(ResponseError::FetchSessionIdNotFound),
                Err(SessionError::InvalidEpoch) => Err(ResponseError::InvalidFetchSessionEpoch),
            }
        }
    }
}

/// The response, with placeholders in its records fields, and the record buffers to splice in for them.
async fn fetch(
    state: Rc<ShardState>,
    request: FetchRequest,
    version: i16,
) -> (FetchResponse, VecDeque<Vec<Bytes>>) {
    let mut response = FetchResponse::default();
    let mut splices = VecDeque::new();
    let plan = match plan(&state, &request, version) {
        Ok(plan) => plan,
        Err(code) => {
            tracing::debug!(
                session = request.session_id,
                epoch = request.session_epoch,
                ?code,
                "fetch session refused"
            );
            response.error_code = code.code();
            return (response, splices);
        }
    };
    // A follower names itself (v15+ in `replica_state`); consumers send -1. A follower reads what is
    // written, not only what is committed.
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let read_committed = request.isolation_level == 1 && replica_id < 0;
    let epochs = requested_epochs(&request);
    let follower_reads = replica_id < 0 && version >= 11;
    let client_rack = request.rack_id.as_str();
    let metadata = state.metadata();
    // Partitions of the same topic that follow each other share one topic entry in the response.
    let mut topics: Vec<(TopicName, Uuid)> = Vec::new();
    let mut wanted = Vec::with_capacity(plan.partitions.len());
    for partition in &plan.partitions {
        let same_as_last = topics.last().is_some_and(|(name, id)| {
            if version >= 13 {
                *id == partition.topic_id
            } else {
                *name == partition.topic
            }
        });
        if !same_as_last {
            topics.push((partition.topic.clone(), partition.topic_id));
        }
        let name = if version >= 13 {
            metadata
                .topic_by_id(partition.topic_id)
                .map(|(name, _)| name.clone())
        } else {
            Some(partition.topic.to_string())
        };
        // From v11 a consumer may read from a follower (KIP-392): any replica here serves it.
        let route = name.as_deref().map(|name| {
            if follower_reads {
                metadata.route_replica(name, partition.partition)
            } else {
                metadata.route(name, partition.partition)
            }
        });
        let preferred_candidates = match (&name, &route) {
            (Some(name), Some(Ok(_))) if follower_reads => {
                crate::replica_selector::preferred_read_candidates(
                    &state.config,
                    &metadata,
                    name,
                    partition.partition,
                    client_rack,
                )
            }
            _ => Vec::new(),
        };
        let not_leader = match route {
            Some(Err(NotServed::NotLeader {
                leader,
                leader_epoch,
            })) => Some((leader, leader_epoch)),
            _ => None,
        };
        let (current_leader_epoch, last_fetched_epoch) = epochs
            .get(&(
                partition.topic.as_str(),
                partition.topic_id,
                partition.partition,
            ))
            .copied()
            .unwrap_or((-1, -1));
        wanted.push(Wanted {
            topic_index: topics.len() - 1,
            name,
            partition: partition.partition,
            fetch_offset: partition.fetch_offset,
            partition_max_bytes: partition.partition_max_bytes.max(0) as usize,
            shard: route.and_then(Result::ok),
            not_leader,
            current_leader_epoch,
            replica: (replica_id >= 0).then_some(ReplicaFetch {
                replica_id,
                last_fetched_epoch,
            }),
            leader_only: !follower_reads,
            preferred_candidates,
        });
    }
    let max_bytes = if request.max_bytes <= 0 {
        usize::MAX
    } else {
        request.max_bytes as usize
    };
    let min_bytes = request.min_bytes.max(0) as usize;
    let deadline =
        shard::task::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT);

    let mut outcomes = read_all(&state, &wanted, max_bytes, read_committed).await;
    let first_high_watermarks = high_watermarks(&outcomes);
    // Bounded: every round waits for new data or the deadline, and stops at the deadline.
    loop {
        let bytes: usize = outcomes
            .iter()
            .flatten()
            .map(FetchOutcome::records_bytes)
            .sum();
        // Any partition with an error (an unknown one has no outcome), a diverging epoch for a
        // follower or a preferred read replica for a consumer answers at once, as in Kafka.
        let failed = outcomes.iter().any(|outcome| {
            outcome.as_ref().is_none_or(|outcome| {
                outcome.error.is_some()
                    || outcome.diverging_epoch.is_some()
                    || outcome.preferred_read_replica.is_some()
            })
        });
        // A follower is answered as soon as a high watermark moved past its first read's, so it
        // learns it at once and serves its consumers up to it (KIP-392).
        let high_watermark_moved = replica_id >= 0
            && high_watermarks(&outcomes)
                .iter()
                .zip(&first_high_watermarks)
                .any(|(now, first)| now > first);
        let remaining = deadline.saturating_duration_since(shard::task::now());
        if bytes >= min_bytes
            || failed
            || high_watermark_moved
            || remaining.is_zero()
            || state.shutting_down.get()
        {
            break;
        }
        // Wait for data past what this read already saw, or a fetch below min_bytes would wake at once
        // and spin. A read_committed fetch reads up to the last stable offset, so that is what it saw.
        let seen: Vec<(i64, i64)> = wanted
            .iter()
            .zip(&outcomes)
            .map(|(item, outcome)| {
                let high_watermark = outcome
                    .as_ref()
                    .map_or(-1, |outcome| outcome.high_watermark);
                let end = outcome.as_ref().map_or(-1, |outcome| {
                    if read_committed {
                        outcome.last_stable_offset
                    } else {
                        outcome.high_watermark
                    }
                });
                // A follower waits for the written end past its own, which it fetches from, or for
                // the high watermark past the one it is told now.
                if item.replica.is_some() {
                    (item.fetch_offset, high_watermark)
                } else {
                    (item.fetch_offset.max(end), high_watermark)
                }
            })
            .collect();
        wait_for_any(&state, &wanted, &seen, read_committed, remaining).await;
        outcomes = read_all(&state, &wanted, max_bytes, read_committed).await;
    }

    // Each shard kept to `max_bytes` on its own; the request's budget spans them all.
    apply_request_budget(&mut outcomes, max_bytes);

    let mut by_topic: Vec<Vec<PartitionData>> = topics.iter().map(|_| Vec::new()).collect();
    let mut sent = Vec::with_capacity(wanted.len());
    for (position, (wanted, outcome)) in wanted.iter().zip(outcomes).enumerate() {
        let mut data = PartitionData::default();
        data.partition_index = wanted.partition;
        data.preferred_read_replica = BrokerId(-1);
        // A list for a read_committed read (empty when none), null otherwise and on errors, as Kafka.
        data.aborted_transactions = None;
        let mut records = Vec::new();
        match outcome {
            Some(outcome) => {
                if read_committed && outcome.error.is_none() {
                    data.aborted_transactions =
                        Some(aborted_transactions(&outcome.aborted_transactions));
                }
                data.error_code = outcome.error.map(|code| code.code()).unwrap_or(0);
                data.high_watermark = outcome.high_watermark;
                data.last_stable_offset = outcome.last_stable_offset;
                data.log_start_offset = outcome.log_start_offset;
                if let Some((epoch, end_offset)) = outcome.diverging_epoch {
                    // A tagged field from v12.
                    data.diverging_epoch.epoch = epoch.0;
                    data.diverging_epoch.end_offset = end_offset.0;
                }
                if let Some(replica) = outcome.preferred_read_replica {
                    // v11+ (only v11+ consumers are given one).
                    data.preferred_read_replica = BrokerId(replica);
                }
                records = outcome.records;
            }
            None if wanted.not_leader.is_some() => {
                let (leader, leader_epoch) = wanted.not_leader.expect("matched");
                data.error_code = ResponseError::NotLeaderOrFollower.code();
                data.high_watermark = -1;
                data.last_stable_offset = -1;
                data.log_start_offset = -1;
                // A tagged field from v12 (KIP-951 fills it for consumers too).
                data.current_leader.leader_id = BrokerId(leader);
                data.current_leader.leader_epoch = leader_epoch;
            }
            None => {
                let code = if wanted.name.is_none() && version >= 13 {
                    ResponseError::UnknownTopicId
                } else {
                    ResponseError::UnknownTopicOrPartition
                };
                data.error_code = code.code();
                data.high_watermark = -1;
                data.last_stable_offset = -1;
                data.log_start_offset = -1;
            }
        }
        let position_state = (
            data.high_watermark,
            data.last_stable_offset,
            data.log_start_offset,
        );
        let has_news = data.error_code != 0
            || !records.is_empty()
            || data.preferred_read_replica.0 >= 0
            || plan.partitions[position].last_sent != Some(position_state);
        if plan.incremental && !has_news {
            continue;
        }
        // Record data is spliced into the frame as it is (no copy); the field holds a placeholder.
        data.records = Some(net::records_field(records, &mut splices));
        sent.push((position, position_state));
        by_topic[wanted.topic_index].push(data);
    }
    if plan.session_id != 0 {
        state.fetch_sessions.record_sent(plan.session_id, &sent);
    }
    response.session_id = plan.session_id;
    response.responses = topics
        .into_iter()
        .zip(by_topic)
        .filter(|(_, partitions)| !partitions.is_empty())
        .map(|((name, id), partitions)| {
            let mut topic = FetchableTopicResponse::default();
            topic.topic = name;
            topic.topic_id = id;
            topic.partitions = partitions;
            topic
        })
        .collect();
    (response, splices)
}

/// Each outcome's high watermark (-1 where there is none).
fn high_watermarks(outcomes: &[Option<FetchOutcome>]) -> Vec<i64> {
    outcomes
        .iter()
        .map(|outcome| {
            outcome
                .as_ref()
                .map_or(-1, |outcome| outcome.high_watermark)
        })
        .collect()
}

/// Each requested partition's `current_leader_epoch` and `last_fetched_epoch` (v9+ and v12+; -1 before),
/// by topic name (v12-), topic id (v13+) and index.
fn requested_epochs(request: &FetchRequest) -> HashMap<(&str, Uuid, i32), (i32, i32)> {
    request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |partition| {
                (
                    (topic.topic.as_str(), topic.topic_id, partition.partition),
                    (partition.current_leader_epoch, partition.last_fetched_epoch),
                )
            })
        })
        .collect()
}

/// Reads every wanted partition on its shard; `None` for partitions that do not exist.
async fn read_all(
    state: &Rc<ShardState>,
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
) -> Vec<Option<FetchOutcome>> {
    let mut split = ShardSplit::new();
    for item in wanted {
        match (item.shard, &item.name) {
            (Some(shard), Some(name)) => split.push(
                shard,
                FetchItem {
                    topic: name.clone(),
                    partition: item.partition,
                    fetch_offset: item.fetch_offset,
                    partition_max_bytes: item.partition_max_bytes,
                    read_committed,
                    current_leader_epoch: item.current_leader_epoch,
                    replica: item.replica,
                    leader_only: item.leader_only,
                    preferred_candidates: item.preferred_candidates.clone(),
                },
            ),
            _ => split.skip(),
        };
    }
    let local_state = state.clone();
    scatter(
        state,
        split,
        |items| async move {
            LocalAnswer::ready(local_state.partitions.read(items, max_bytes).await)
        },
        |items, reply| ShardMessage::Fetch {
            items,
            max_bytes,
            reply,
        },
    )
    .await
    .all(FetchOutcome::failed)
    .await
}

/// The response's `aborted_transactions` entries.
fn aborted_transactions(aborted: &[AbortedTxn]) -> Vec<AbortedTransaction> {
    aborted
        .iter()
        .map(|transaction| {
            let mut entry = AbortedTransaction::default();
            entry.producer_id = ProducerId(transaction.producer_id);
            entry.first_offset = transaction.first_offset.0;
            entry
        })
        .collect()
}

/// Completes when any owning shard reports a high watermark (read_committed: a last stable offset) past
/// `seen` (parallel to `wanted`: the end seen, and the high watermark answered) for one of the
/// partitions — for a follower, a written end past its fetch offset or a high watermark past the
/// one answered — or after `max_wait`: each shard parks a delayed fetch in its purgatory.
async fn wait_for_any(
    state: &Rc<ShardState>,
    wanted: &[Wanted],
    seen: &[(i64, i64)],
    read_committed: bool,
    max_wait: Duration,
) {
    assert_eq!(wanted.len(), seen.len());
    let mut split = ShardSplit::new();
    for (item, &(seen, seen_high_watermark)) in wanted.iter().zip(seen) {
        if let (Some(shard), Some(name)) = (item.shard, &item.name) {
            split.push(
                shard,
                WaitItem {
                    topic: name.clone(),
                    partition: item.partition,
                    seen: Offset(seen),
                    read_committed,
                    replica: item.replica.is_some(),
                    seen_high_watermark: Offset(seen_high_watermark),
                },
            );
        }
    }
    let local_state = state.clone();
    let waits = scatter(
        state,
        split,
        |items| async move {
            LocalAnswer::later(async move {
                local_state.partitions.wait_for_data(items, max_wait).await
            })
        },
        |items, reply| ShardMessage::WaitForData {
            items,
            max_wait,
            reply,
        },
    )
    .await;
    // Dropping the other waits cancels them (remote shards see their reply channel close).
    futures_lite::future::or(
        async {
            let _ = waits.first().await;
        },
        shard::task::sleep(max_wait),
    )
    .await
}

#[path = "fetch_budget.rs"]
mod budget;

#[cfg(test)]
#[path = "fetch_tests.rs"]
mod tests;
