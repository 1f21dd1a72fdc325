//! The file-descriptor budget: how the process's descriptor limit (RLIMIT_NOFILE) is shared between
//! the broker's own files, client connections and partitions' files, so that no configuration the
//! defaults produce can exhaust descriptors.
//!
//! ```text
//!  limit (soft RLIMIT_NOFILE, raised to the hard limit at start)
//!  ├── reserved:    max(256, limit / 10)  metadata, locks, io_uring rings, DMA probes, accept slack,
//!  │                and (half of it) the shards' pools of open inactive-segment files
//!  ├── connections: max.connections (default 2/5 of what is left)
//!  └── partitions:  the rest, DESCRIPTORS_PER_PARTITION each
//! ```
//! A partition costs its active segment's three files, however many segments it has: inactive
//! segments' `.log` files are opened on demand through each shard's bounded pool
//! (`storage::SegmentFilePool`, [`segment_files_per_shard`]) and their indexes are read into memory
//! and closed, so any data directory the broker once served can be opened again.
//! Topic creation and partition increases that would take the partition count past its share are
//! refused with INVALID_PARTITIONS, as Redpanda refuses them ("would exceed FD limit"): Kafka has no
//! code of its own for this, and INVALID_PARTITIONS is what clients already report for partition counts
//! the broker cannot take.

use crate::config::BrokerConfig;
use crate::metadata::ClusterMetadata;
use kafka_protocol::error::ResponseError;

/// Descriptors one open partition holds: its active segment's log, offset index and time index
/// (inactive segments' files come from the shards' pools, counted in the reserve).
pub const DESCRIPTORS_PER_PARTITION: u64 = 3;
/// Most inactive-segment files one shard keeps open (Kafka's readers rarely touch more than a few
/// old segments per partition at once; a miss costs one open).
pub const MAX_SEGMENT_FILES_PER_SHARD: u64 = storage::DEFAULT_OPEN_SEGMENT_FILES as u64;
/// Fewest descriptors kept for the broker's own files.
pub const MIN_RESERVED_DESCRIPTORS: u64 = 256;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// The soft RLIMIT_NOFILE.
    pub limit: u64,
    /// Kept for the broker's own files.
    pub reserved: u64,
    /// Client connections open at once (`max.connections`).
    pub connections: u64,
    /// Partitions whose files fit in what is left.
    pub partitions: u64,
}

/// Splits `limit` descriptors; `max_connections` is the configured `max.connections`, if any.
pub fn descriptor_budget(limit: u64, max_connections: Option<usize>) -> DescriptorBudget {
    let reserved = (limit / 10).max(MIN_RESERVED_DESCRIPTORS).min(limit);
    let available = limit - reserved;
    let connections = match max_connections {
        Some(configured) => configured as u64,
        None => (available * 2 / 5).max(1),
    };
    let partitions = available.saturating_sub(connections) / DESCRIPTORS_PER_PARTITION;
    DescriptorBudget {
        limit,
        reserved,
        connections,
        partitions,
    }
}

impl DescriptorBudget {
    /// The budget of this process under `config`.
    pub fn of(config: &BrokerConfig) -> DescriptorBudget {
        descriptor_budget(open_files_limit(), config.max_connections)
    }
}

/// The connection limits in effect: configured, else derived from the budget (here, so that the
/// configuration does not depend on the budget that depends on it).
impl BrokerConfig {
    /// `max.connections` as configured, else its share of the file-descriptor budget.
    pub fn effective_max_connections(&self) -> usize {
        self.max_connections
            .unwrap_or_else(|| DescriptorBudget::of(self).connections as usize)
    }

    /// `max.connections.per.ip` as configured, else `max.connections`.
    pub fn effective_max_connections_per_ip(&self) -> usize {
        self.max_connections_per_ip
            .unwrap_or_else(|| self.effective_max_connections())
    }
}

/// The capacity of each shard's pool of open inactive-segment files: half the reserve split between
/// the shards, at most [`MAX_SEGMENT_FILES_PER_SHARD`], at least 1 (so 256 per shard from a limit
/// of 5,120 descriptors per shard up; 64 per shard for 2 shards under a limit of 1,024).
pub fn segment_files_per_shard(budget: &DescriptorBudget, shards: usize) -> usize {
    (budget.reserved / 2 / shards.max(1) as u64).clamp(1, MAX_SEGMENT_FILES_PER_SHARD) as usize
}

/// The soft RLIMIT_NOFILE of this process (RLIM_INFINITY reads as u64::MAX).
pub fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct on the stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1024;
    }
    limit.rlim_cur
}

/// Raises the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) as they are afterwards.
pub fn raise_open_files_limit() -> (u64, u64) {
    shard::runtime::raise_soft_limit(shard::runtime::ResourceLimit::OpenFiles)
        .unwrap_or((1024, 1024))
}

/// Refuses `additional` partitions when the cluster's partitions would no longer fit the budget.
pub fn check_partition_budget(
    config: &BrokerConfig,
    metadata: &ClusterMetadata,
    additional: i32,
) -> Result<(), (ResponseError, String)> {
    let existing: u64 = metadata
        .topics
        .values()
        .map(|topic| topic.partition_count().max(0) as u64)
        .sum();
    partitions_fit(
        &DescriptorBudget::of(config),
        existing,
        additional.max(0) as u64,
    )
}

fn partitions_fit(
    budget: &DescriptorBudget,
    existing: u64,
    additional: u64,
) -> Result<(), (ResponseError, String)> {
    let total = existing.saturating_add(additional);
    if total <= budget.partitions {
        return Ok(());
    }
    Err((
        ResponseError::InvalidPartitions,
        format!(
            "refusing {additional} partitions: {total} partitions would exceed the {} that the \
             file-descriptor limit of {} allows ({DESCRIPTORS_PER_PARTITION} per partition, {} kept \
             for connections, {} for the broker); raise the limit or lower max_connections",
            budget.partitions, budget.limit, budget.connections, budget.reserved
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_split_never_exceeds_the_limit() {
        for limit in [300, 1024, 20_000, 1_048_576] {
            let budget = descriptor_budget(limit, None);
            let used = budget.reserved
                + budget.connections
                + budget.partitions * DESCRIPTORS_PER_PARTITION;
            assert!(used <= limit, "{budget:?}");
            assert!(
                budget.partitions > 0 && budget.connections > 0,
                "{budget:?}"
            );
        }
        let budget = descriptor_budget(20_000, None);
        assert_eq!(budget.reserved, 2_000);
        assert_eq!(budget.connections, 7_200);
        assert_eq!(budget.partitions, 3_600);
    }

    #[test]
    fn segment_file_pools_fit_in_half_the_reserve() {
        let budget = descriptor_budget(1_024, None);
        assert_eq!(segment_files_per_shard(&budget, 2), 64);
        assert_eq!(segment_files_per_shard(&budget, 1), 128);
        let large = descriptor_budget(1_048_576, None);
        assert_eq!(segment_files_per_shard(&large, 8), 256);
        for shards in [1, 2, 16, 64] {
            let pools = segment_files_per_shard(&budget, shards) as u64 * shards as u64;
            assert!(pools <= budget.reserved / 2, "{shards} shards: {pools}");
        }
    }

    #[test]
    fn configured_connections_leave_the_rest_to_partitions() {
        let budget = descriptor_budget(20_000, Some(1_000));
        assert_eq!(budget.partitions, (18_000 - 1_000) / 3);
        // More connections than there are descriptors: no partitions at all.
        assert_eq!(descriptor_budget(1_000, Some(5_000)).partitions, 0);
    }

    #[test]
    fn partitions_past_the_budget_are_refused_with_invalid_partitions() {
        let budget = descriptor_budget(20_000, None);
        assert!(partitions_fit(&budget, 3_000, 600).is_ok());
        let (error, message) = partitions_fit(&budget, 3_000, 601).unwrap_err();
        assert_eq!(error, ResponseError::InvalidPartitions);
        assert!(message.contains("3601 partitions"), "{message}");
    }
}
