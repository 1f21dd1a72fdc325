//! The follower's replication throttle (Kafka's `follower.replication.throttled.rate` with
//! `follower.replication.throttled.replicas`, as `kafka-reassign-partitions --throttle` sets them):
//! the bytes a shard's replica fetchers copy for throttled partitions are metered, and while the
//! meter is over its rate those partitions are left out of the next fetches (the others go on). The
//! rate is per broker, so each shard meters its share (`rate / shards`).
//!
//! The meter is a token bucket holding at most one second of the rate: copying takes tokens (it may
//! go below zero, by at most one answer's bytes), time gives them back at the rate, and throttled
//! partitions are fetched only while the bucket is not empty. Over any period the bytes copied are
//! at most the rate times the period, plus one second's burst and one answer.

use std::cell::Cell;
use std::time::Instant;

/// The topic config naming the throttled replicas on followers: `*`, or `partition:broker` pairs.
pub const FOLLOWER_THROTTLED_REPLICAS: &str = "follower.replication.throttled.replicas";

/// One shard's meter of throttled replication bytes.
pub struct ReplicationQuota {
    /// Bytes per second; `None`: not throttled.
    rate: Cell<Option<f64>>,
    tokens: Cell<f64>,
    refilled_at: Cell<Instant>,
}

impl ReplicationQuota {
    pub fn new(now: Instant) -> ReplicationQuota {
        ReplicationQuota {
            rate: Cell::new(None),
            tokens: Cell::new(0.0),
            refilled_at: Cell::new(now),
        }
    }

    /// Sets the rate (bytes per second; `i64::MAX` or more, Kafka's default: none). A new rate starts
    /// with a full bucket.
    pub fn set_rate(&self, bytes_per_second: u64, now: Instant) {
        let rate = (bytes_per_second < i64::MAX as u64).then_some(bytes_per_second as f64);
        if rate != self.rate.get() {
            self.rate.set(rate);
            self.tokens.set(rate.unwrap_or(0.0));
            self.refilled_at.set(now);
        }
    }

    /// Whether throttled partitions must wait: the bucket is empty.
    pub fn is_exceeded(&self, now: Instant) -> bool {
        self.refill(now);
        self.rate.get().is_some() && self.tokens.get() <= 0.0
    }

    /// Counts `bytes` copied for throttled partitions.
    pub fn record(&self, bytes: usize, now: Instant) {
        self.refill(now);
        if self.rate.get().is_some() {
            self.tokens.set(self.tokens.get() - bytes as f64);
        }
    }

    fn refill(&self, now: Instant) {
        let Some(rate) = self.rate.get() else {
            return;
        };
        let elapsed = now.saturating_duration_since(self.refilled_at.get());
        self.refilled_at.set(now);
        self.tokens
            .set((self.tokens.get() + rate * elapsed.as_secs_f64()).min(rate));
    }
}

/// Whether the topic config `follower.replication.throttled.replicas` (`value`) throttles partition
/// `partition` on broker `node_id`: `*`, or a `partition:broker` pair naming them (spaces ignored).
pub fn throttles(value: &str, partition: i32, node_id: i32) -> bool {
    value.split(',').map(str::trim).any(|entry| {
        entry == "*"
            || entry.split_once(':').is_some_and(|(p, b)| {
                p.trim().parse() == Ok(partition) && b.trim().parse() == Ok(node_id)
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_throttled_replicas_list_names_partitions_on_brokers_or_all() {
        assert!(throttles("*", 3, 7));
        assert!(throttles("0:1, 3:7", 3, 7));
        assert!(!throttles("0:1,3:8", 3, 7));
        assert!(!throttles("", 0, 0));
        assert!(!throttles("3", 3, 7));
    }

    #[test]
    fn the_meter_lets_through_its_rate_and_no_more() {
        let start = Instant::now();
        let quota = ReplicationQuota::new(start);
        assert!(!quota.is_exceeded(start), "not throttled by default");
        quota.record(1 << 30, start);
        assert!(!quota.is_exceeded(start));
        quota.set_rate(1000, start);
        // A full second's burst, then empty until time gives tokens back.
        quota.record(1500, start);
        assert!(quota.is_exceeded(start));
        assert!(quota.is_exceeded(start + Duration::from_millis(400)));
        assert!(!quota.is_exceeded(start + Duration::from_millis(600)));
        // The bucket never holds more than a second of the rate.
        let later = start + Duration::from_secs(60);
        quota.record(1001, later);
        assert!(quota.is_exceeded(later));
        quota.set_rate(i64::MAX as u64, later);
        assert!(!quota.is_exceeded(later));
    }
}
