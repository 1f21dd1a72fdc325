//! Incremental fetch sessions (KIP-227), per shard.
//!
//! A client that sends a full fetch with session id 0 and epoch 0 gets a session: the broker remembers
//! the partitions it asked for (fetch offset, max bytes) and what it last told the client about each (high
//! watermark, last stable offset, log start offset). Later fetches (epoch 1, 2, …) list only partitions
//! whose position changed and the topics to forget; the response lists only partitions with news (records,
//! an error, or a moved high watermark / LSO / log start). A connection lives on one shard, so sessions do
//! too; a client that reconnects to another shard gets FETCH_SESSION_ID_NOT_FOUND and starts a new session.
//!
//! Request epochs: -1 = no session (close the named one, if any); 0 = full fetch opening a new session;
//! n > 0 = incremental fetch that must match the session's expected epoch (else INVALID_FETCH_SESSION_EPOCH).

use kafka_protocol::messages::TopicName;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Most sessions one shard keeps (Kafka: max.incremental.fetch.session.cache.slots = 1000).
pub const MAX_SESSIONS_PER_SHARD: usize = 1000;
/// Sessions unused for this long may be evicted when the cache is full.
pub const SESSION_IDLE_EVICTION: Duration = Duration::from_secs(120);
/// Most partitions one session tracks (a bound; larger fetches run sessionless).
pub const MAX_PARTITIONS_PER_SESSION: usize = 10_000;

/// One partition a session follows.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionPartition {
    pub topic: TopicName,
    pub topic_id: Uuid,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: i32,
    /// What the client was last told; `None` until the first response carries the partition.
    pub last_sent: Option<(i64, i64, i64)>,
}

pub struct FetchSession {
    /// The epoch the next incremental request must carry.
    pub next_epoch: i32,
    pub partitions: Vec<SessionPartition>,
    pub last_used: Instant,
}

#[derive(Default)]
pub struct FetchSessions {
    sessions: RefCell<HashMap<i32, FetchSession>>,
    next_id: Cell<i32>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SessionError {
    NotFound,
    InvalidEpoch,
}

impl FetchSessions {
    /// Creates a session for `partitions`; `None` when the cache is full of recently used sessions (the
    /// client then keeps sending full fetches, which KIP-227 allows).
    pub fn create(&self, partitions: Vec<SessionPartition>) -> Option<i32> {
        if partitions.len() > MAX_PARTITIONS_PER_SESSION {
            return None;
        }
        let mut sessions = self.sessions.borrow_mut();
        if sessions.len() >= MAX_SESSIONS_PER_SHARD {
            let now = shard::task::now();
            let idle = sessions
                .iter()
                .filter(|(_, s)| now.duration_since(s.last_used) > SESSION_IDLE_EVICTION)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(&id, _)| id);
            sessions.remove(&idle?);
        }
        let id = loop {
            let id = self.next_id.get().wrapping_add(1).max(1);
            self.next_id.set(id);
            if !sessions.contains_key(&id) {
                break id;
            }
        };
        sessions.insert(
            id,
            FetchSession {
                next_epoch: 1,
                partitions,
                last_used: shard::task::now(),
            },
        );
        Some(id)
    }

    pub fn remove(&self, id: i32) {
        self.sessions.borrow_mut().remove(&id);
    }

    /// Applies an incremental request to session `id` and returns the partitions to read.
    pub fn update(
        &self,
        id: i32,
        epoch: i32,
        changed: Vec<SessionPartition>,
        forgotten: &[(TopicName, Uuid, Vec<i32>)],
        by_id: bool,
    ) -> Result<Vec<SessionPartition>, SessionError> {
        let mut sessions = self.sessions.borrow_mut();
        let session = sessions.get_mut(&id).ok_or(SessionError::NotFound)?;
        if session.next_epoch != epoch {
            return Err(SessionError::InvalidEpoch);
        }
        let same_topic = |a: &SessionPartition, name: &TopicName, topic_id: Uuid| {
            if by_id {
                a.topic_id == topic_id
            } else {
                &a.topic == name
            }
        };
        for (name, topic_id, partitions) in forgotten {
            session
                .partitions
                .retain(|p| !(same_topic(p, name, *topic_id) && partitions.contains(&p.partition)));
        }
        for update in changed {
            let tracked = session.partitions.len();
            match session.partitions.iter_mut().find(|p| {
                same_topic(p, &update.topic, update.topic_id) && p.partition == update.partition
            }) {
                Some(existing) => {
                    existing.fetch_offset = update.fetch_offset;
                    existing.partition_max_bytes = update.partition_max_bytes;
                }
                None if tracked < MAX_PARTITIONS_PER_SESSION => session.partitions.push(update),
                None => {}
            }
        }
        session.next_epoch = if epoch == i32::MAX { 1 } else { epoch + 1 };
        session.last_used = shard::task::now();
        Ok(session.partitions.clone())
    }

    /// Records what a response told the client, so the next incremental response can leave out
    /// partitions without news.
    pub fn record_sent(&self, id: i32, sent: &[(usize, (i64, i64, i64))]) {
        if let Some(session) = self.sessions.borrow_mut().get_mut(&id) {
            for &(position, state) in sent {
                if let Some(partition) = session.partitions.get_mut(position) {
                    partition.last_sent = Some(state);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;

    fn partition(topic: &str, index: i32, offset: i64) -> SessionPartition {
        SessionPartition {
            topic: TopicName(StrBytes::from_string(topic.into())),
            topic_id: Uuid::nil(),
            partition: index,
            fetch_offset: offset,
            partition_max_bytes: 1024,
            last_sent: None,
        }
    }

    #[test]
    fn incremental_updates_follow_epochs() {
        let sessions = FetchSessions::default();
        let id = sessions
            .create(vec![partition("a", 0, 0), partition("a", 1, 0)])
            .unwrap();
        assert_eq!(
            sessions.update(id, 2, vec![], &[], false),
            Err(SessionError::InvalidEpoch)
        );
        let forgotten = vec![(
            TopicName(StrBytes::from_static_str("a")),
            Uuid::nil(),
            vec![1],
        )];
        let now = sessions
            .update(
                id,
                1,
                vec![partition("a", 0, 5), partition("b", 0, 0)],
                &forgotten,
                false,
            )
            .unwrap();
        let summary: Vec<(String, i32, i64)> = now
            .iter()
            .map(|p| (p.topic.to_string(), p.partition, p.fetch_offset))
            .collect();
        assert_eq!(summary, vec![("a".into(), 0, 5), ("b".into(), 0, 0)]);
        assert!(sessions.update(id, 2, vec![], &[], false).is_ok());
        sessions.remove(id);
        assert_eq!(
            sessions.update(id, 3, vec![], &[], false),
            Err(SessionError::NotFound)
        );
        assert_eq!(
            sessions.update(12345, 1, vec![], &[], false),
            Err(SessionError::NotFound)
        );
    }
}
