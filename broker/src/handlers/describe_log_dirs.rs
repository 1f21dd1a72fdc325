//! DescribeLogDirs (key 35), versions 1–4: the one data directory (its absolute path), the size in bytes
//! of every partition asked for (all when `topics` is null) gathered from the shards that own them,
//! offset lag 0 and `is_future_key` false (no replica moves between directories); from v4 the file
//! system's total and usable bytes (statvfs). Topics and partitions that do not exist are left out, as
//! Kafka does.

use super::simple;
use crate::messages::ShardMessage;
use crate::partition::TopicPartition;
use crate::scatter_gather::{scatter, LocalAnswer, ShardSplit};
use crate::shard_state::ShardState;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (1, 4);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DescribeLogDirsRequest, version| async move {
            describe_log_dirs(state, request, version).await
        },
    )
}

async fn describe_log_dirs(
    state: Rc<ShardState>,
    request: DescribeLogDirsRequest,
    version: i16,
) -> DescribeLogDirsResponse {
    let metadata = state.metadata();
    // The partitions asked for that exist, in (topic, partition) order.
    let mut asked: Vec<TopicPartition> = Vec::new();
    match &request.topics {
        None => {
            for (name, topic) in &metadata.topics {
                asked.extend((0..topic.partition_count()).map(|index| (name.clone(), index)));
            }
        }
        Some(topics) => {
            for wanted in topics {
                let name = wanted.topic.to_string();
                if let Some(topic) = metadata.topics.get(&name) {
                    asked.extend(
                        wanted
                            .partitions
                            .iter()
                            .filter(|&&index| index >= 0 && index < topic.partition_count())
                            .map(|&index| (name.clone(), index)),
                    );
                }
            }
            asked.sort();
            asked.dedup();
        }
    }
    let mut split = ShardSplit::new();
    for (topic, index) in &asked {
        match metadata.shard_of(topic, *index) {
            Some(shard) => split.push(shard, (topic.clone(), *index)),
            None => split.skip(),
        };
    }
    let local_state = state.clone();
    let sizes = scatter(
        &state,
        split,
        |items| async move { LocalAnswer::ready(local_state.partitions.sizes(&items)) },
        |items, reply| ShardMessage::PartitionSizes { items, reply },
    )
    .await
    .all(|_| None)
    .await;
    let mut topics: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((topic, index), size) in asked.into_iter().zip(sizes) {
        // A partition its shard has not opened (or could not answer for) is left out.
        let Some(Some(size)) = size else {
            continue;
        };
        let mut partition = DescribeLogDirsPartition::default();
        partition.partition_index = index;
        partition.partition_size = i64::try_from(size).unwrap_or(i64::MAX);
        partition.offset_lag = 0;
        partition.is_future_key = false;
        topics.entry(topic).or_default().push(partition);
    }
    let data_dir = &state.config.data_dir;
    let mut result = DescribeLogDirsResult::default();
    result.log_dir = super::str_bytes(absolute(data_dir));
    result.topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = DescribeLogDirsTopic::default();
            topic.name = super::topic_name(&name);
            topic.partitions = partitions;
            topic
        })
        .collect();
    if version >= 4 {
        let (total, usable) = file_system_bytes(data_dir).unwrap_or((-1, -1));
        result.total_bytes = total;
        result.usable_bytes = usable;
    }
    let mut response = DescribeLogDirsResponse::default();
    response.results = vec![result];
    response
}

fn absolute(path: &Path) -> String {
    std::fs::canonicalize(path)
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// (total, usable) bytes of the file system holding `path`, as statvfs reports them.
pub fn file_system_bytes(path: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let name = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `name` is NUL-terminated and `stats` is a valid, writable statvfs.
    let result = unsafe { libc::statvfs(name.as_ptr(), stats.as_mut_ptr()) };
    if result != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stats`.
    let stats = unsafe { stats.assume_init() };
    let fragment = stats.f_frsize as i64;
    Some((
        (stats.f_blocks as i64).saturating_mul(fragment),
        (stats.f_bavail as i64).saturating_mul(fragment),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_system_of_a_directory_has_sizes() {
        let directory = tempfile::tempdir().unwrap();
        let (total, usable) = file_system_bytes(directory.path()).unwrap();
        assert!(total > 0 && usable >= 0 && usable <= total);
        assert!(file_system_bytes(Path::new("/no/such/directory")).is_none());
        assert!(absolute(directory.path()).starts_with('/'));
    }
}
