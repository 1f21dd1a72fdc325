//! The per-shard retention task (Kafka's `LogManager` cleanup loop, `kafka-log-retention`): every
//! `log.retention.check.interval.ms` (the value in force: a dynamic broker config changes it without
//! a restart) it walks the shard's partitions and applies retention
//! (`retention.ms`, `retention.bytes`, segments below the log start) with each partition's current
//! `LogConfig`; more often (every `min(interval, 1 s)`) it removes deleted segments' files whose
//! `file.delete.delay.ms` has passed; every `producer.id.expiration.check.interval.ms` it removes
//! the producer ids idle for `producer.id.expiration.ms` without an open transaction
//! (`Log::remove_expired_producers`, Kafka's `removeExpiredProducers` pass).
//!
//! # Bounded work
//! One storage call deletes at most `storage::RETENTION_SEGMENTS_PER_CALL` segments (renames, no
//! data copy); the task yields to the shard's executor after each call and between partitions, so
//! appends and fetches on the shard run in between. Time comes from `shard::task` (the simulation's
//! clock in in-process tests). The task ends when the shard shuts down or its state is dropped.

use crate::config::LifecycleConfig;
use crate::partition::Partition;
use std::rc::Rc;
use std::time::Duration;
use storage::StorageError;

/// The longest wait between two looks at the deleted files due for removal.
const FILE_REMOVAL_PERIOD: Duration = Duration::from_secs(1);

/// Runs retention over the partitions `shard()` lists (the shard's) every check interval its
/// settings give (`log.retention.check.interval.ms` in force: a dynamic broker config changes it
/// without a restart), and producer-id expiration every `producer.id.expiration.check.interval.ms`,
/// until it answers `None` (the shard is shutting down or gone).
pub async fn run(shard: impl Fn() -> Option<(LifecycleConfig, Vec<Rc<Partition>>)>) {
    let Some((lifecycle, _)) = shard() else {
        return;
    };
    let mut interval = Duration::from_millis(lifecycle.retention_check_interval_ms.max(1));
    let mut last_check = shard::task::now();
    let mut last_expiration_check = shard::task::now();
    loop {
        shard::task::sleep(interval.min(FILE_REMOVAL_PERIOD)).await;
        let Some((lifecycle, partitions)) = shard() else {
            return;
        };
        interval = Duration::from_millis(lifecycle.retention_check_interval_ms.max(1));
        let expiration_interval =
            Duration::from_millis(lifecycle.producer_id_expiration_check_interval_ms.max(1));
        if shard::task::now() >= last_expiration_check + expiration_interval {
            last_expiration_check = shard::task::now();
            remove_expired_producers(&partitions);
        }
        if shard::task::now() >= last_check + interval {
            last_check = shard::task::now();
            for partition in &partitions {
                apply_retention(partition).await;
                futures_lite::future::yield_now().await;
            }
        }
        let now_ms = shard::task::wall_clock_ms();
        for partition in &partitions {
            if let Err(error) = partition.log.remove_deleted_files(now_ms).await {
                tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "removing deleted segment files failed");
            }
        }
    }
}

/// Forgets the expired producer ids of every partition (in-memory work, a map walk per partition).
fn remove_expired_producers(partitions: &[Rc<Partition>]) {
    let now_ms = shard::task::wall_clock_ms();
    for partition in partitions {
        let removed = partition.log.remove_expired_producers(now_ms);
        if removed > 0 {
            tracing::debug!(topic = %partition.topic, partition = partition.index, removed, "expired producer ids removed");
        }
    }
}

/// Applies retention to one partition in bounded steps, yielding between them.
pub async fn apply_retention(partition: &Rc<Partition>) {
    loop {
        let now_ms = shard::task::wall_clock_ms();
        match partition.apply_retention(now_ms).await {
            Ok(outcome) => {
                if outcome.segments_deleted > 0 {
                    tracing::info!(
                        topic = %partition.topic,
                        partition = partition.index,
                        segments = outcome.segments_deleted,
                        bytes = outcome.bytes_deleted,
                        log_start_offset = outcome.new_log_start.0,
                        "retention deleted segments"
                    );
                }
                if !outcome.more {
                    return;
                }
            }
            // Closing (shutdown, deletion): nothing to do.
            Err(StorageError::Closed) => return,
            Err(error) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "retention failed");
                return;
            }
        }
        futures_lite::future::yield_now().await;
    }
}
