//! The per-shard log cleaner task (Kafka's `LogCleaner` thread): compacts this shard's logs whose
//! `cleanup.policy` holds `compact` (`__consumer_offsets` included), one pass at a time.
//!
//! # Loop
//! While the shard runs and `log.cleaner.enable` is set: ask every partition's log where it
//! stands (`Log::cleanable`, with the log's current config), take the one that must be cleaned
//! now (past `max.compaction.lag.ms`) or else has the highest dirty ratio at or above its
//! `min.cleanable.dirty.ratio` (Kafka's order), and run one pass on it (`Log::clean`); when no
//! log is cleanable, sleep `log.cleaner.backoff.ms`. A failed pass is logged and the task backs
//! off. Storage does the work; this task gives it the runtime: the pass yields between chunks and
//! sleeps for the `log.cleaner.io.max.bytes.per.second` throttle through [`ShardPacer`].
//!
//! Memory: one offset map per shard, at most `log.cleaner.dedupe.buffer.size` bytes, taken per
//! pass as the dirty section needs (see `storage::cleaner::OffsetMap::prepare`).

use crate::config::LifecycleConfig;
use crate::partition::Partition;
use std::rc::Rc;
use std::time::Duration;
use storage::cleaner::{Cleaner, CleanerPacer};

/// Waits and yields on the shard's runtime.
pub struct ShardPacer;

impl CleanerPacer for ShardPacer {
    async fn pause(&self, duration: Duration) {
        if duration.is_zero() {
            futures_lite::future::yield_now().await;
        } else {
            shard::task::sleep(duration).await;
        }
    }
}

/// Starts the shard's cleaner task when `log.cleaner.enable` is set (a static setting): it cleans
/// the logs of the partitions `partitions` lists, until `stopped` says the shard is shutting down.
/// `lifecycle` gives the settings in force (dynamic broker configs included), read before each
/// pass, so `log.cleaner.backoff.ms`, `log.cleaner.dedupe.buffer.size` and
/// `log.cleaner.io.max.bytes.per.second` change without a restart.
pub fn start(
    lifecycle: impl Fn() -> LifecycleConfig + 'static,
    stopped: impl Fn() -> bool + 'static,
    partitions: impl Fn() -> Vec<Rc<Partition>> + 'static,
) {
    if !lifecycle().cleaner_enable {
        return;
    }
    shard::task::spawn(run(lifecycle, stopped, partitions));
}

async fn run(
    lifecycle: impl Fn() -> LifecycleConfig,
    stopped: impl Fn() -> bool,
    partitions: impl Fn() -> Vec<Rc<Partition>>,
) {
    let mut settings = lifecycle();
    let mut cleaner = Cleaner::new(
        settings.cleaner_dedupe_buffer_size,
        settings.cleaner_io_max_bytes_per_second,
    );
    loop {
        if stopped() {
            return;
        }
        let current = lifecycle();
        if current.cleaner_dedupe_buffer_size != settings.cleaner_dedupe_buffer_size {
            cleaner = Cleaner::new(
                current.cleaner_dedupe_buffer_size,
                current.cleaner_io_max_bytes_per_second,
            );
        } else if current.cleaner_io_max_bytes_per_second
            != settings.cleaner_io_max_bytes_per_second
        {
            cleaner.set_io_max_bytes_per_second(current.cleaner_io_max_bytes_per_second);
        }
        settings = current;
        let backoff = Duration::from_millis(settings.cleaner_backoff_ms.max(1));
        let now_ms = shard::task::wall_clock_ms();
        let mut best: Option<(bool, f64, Rc<Partition>)> = None;
        for partition in partitions() {
            let Some(cleanable) = partition.log.cleanable(now_ms).await else {
                continue;
            };
            if !cleanable.should_clean {
                continue;
            }
            let rank = (cleanable.past_max_compaction_lag, cleanable.dirty_ratio);
            if best
                .as_ref()
                .is_none_or(|(lagging, ratio, _)| rank > (*lagging, *ratio))
            {
                best = Some((rank.0, rank.1, partition));
            }
        }
        let Some((_, _, partition)) = best else {
            shard::task::sleep(backoff).await;
            continue;
        };
        match partition.log.clean(&mut cleaner, now_ms, &ShardPacer).await {
            Ok(stats) => tracing::info!(
                topic = %partition.topic,
                partition = partition.index,
                cleaned_up_to = ?stats.cleaned_up_to.map(|offset| offset.0),
                segments = stats.segments_rewritten,
                bytes_read = stats.bytes_read,
                bytes_written = stats.bytes_written,
                records_removed = stats.records_removed,
                map_full = stats.map_full,
                "log cleaned"
            ),
            Err(error) => {
                tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "log cleaner pass failed");
                shard::task::sleep(backoff).await;
            }
        }
        futures_lite::future::yield_now().await;
    }
}
