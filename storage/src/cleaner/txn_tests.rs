//! The cleaner and transactions: aborted data removed (and kept out of the offset map), markers
//! and committed data kept, the cleanable range bounded by the last stable offset.

use super::{Cleaner, NoPause};
use crate::cache::BatchCache;
use crate::config::CleanupPolicy;
use crate::io::StdFileSystem;
use crate::log::{Log, LogConfig};
use crate::txn::TxnMarker;
use crate::types::{LeaderEpoch, Offset};
use bytes::{Bytes, BytesMut};
use futures_lite::future::block_on;
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use std::path::Path;
use std::rc::Rc;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.01,
        ..Default::default()
    }
}

fn open(dir: &Path) -> Log<StdFileSystem> {
    let cache = Rc::new(BatchCache::new(1 << 20));
    block_on(Log::open(
        StdFileSystem,
        dir.to_path_buf(),
        config(),
        cache,
        false,
    ))
    .unwrap()
}

/// One keyed record of `producer_id` (-1: a plain record), transactional when it has a producer.
fn record_batch(producer_id: i64, sequence: i32, key: &str, value: &str) -> Bytes {
    let record = Record {
        transactional: producer_id >= 0,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch: if producer_id >= 0 { 0 } else { -1 },
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: if producer_id >= 0 { sequence } else { -1 },
        timestamp: 1_000,
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: IndexMap::new(),
    };
    let mut buffer = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buffer, std::iter::once(&record), &options).unwrap();
    buffer.freeze()
}

fn append(log: &Log<StdFileSystem>, batch: Bytes) -> i64 {
    let info = block_on(log.append(batch, LeaderEpoch(0), 1_000)).unwrap();
    log.update_high_watermark(log.durable_end_offset());
    info.base_offset.0
}

fn end_transaction(log: &Log<StdFileSystem>, producer_id: i64, commit: bool) -> i64 {
    let marker = TxnMarker {
        producer_id,
        producer_epoch: 0,
        coordinator_epoch: 0,
        commit,
    };
    let info = block_on(log.append_marker(marker, LeaderEpoch(0), 1_000)).unwrap();
    log.update_high_watermark(log.durable_end_offset());
    info.base_offset.0
}

/// Every record as (offset, key, value, control).
fn records(log: &Log<StdFileSystem>) -> Vec<(i64, String, String, bool)> {
    let bytes = block_on(log.read(
        log.log_start_offset(),
        usize::MAX >> 1,
        log.durable_end_offset(),
        true,
    ))
    .unwrap();
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let set = RecordBatchDecoder::decode(&mut rest).unwrap();
        for record in set.records {
            let text = |field: &Option<Bytes>| {
                field
                    .as_ref()
                    .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
                    .unwrap_or_default()
            };
            out.push((
                record.offset,
                text(&record.key),
                text(&record.value),
                record.control,
            ));
        }
    }
    out
}

#[test]
fn aborted_records_are_removed_and_do_not_hide_committed_values() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    // Producer 1 commits k=committed; producer 2 then writes k=aborted and aborts; producer 3
    // commits other keys interleaved with producer 2.
    append(&log, record_batch(1, 0, "k", "committed"));
    end_transaction(&log, 1, true);
    let aborted_first = append(&log, record_batch(2, 0, "k", "aborted"));
    append(&log, record_batch(3, 0, "x", "kept"));
    append(&log, record_batch(2, 1, "y", "aborted"));
    end_transaction(&log, 3, true);
    let abort_marker = end_transaction(&log, 2, false);
    // Enough plain records of other keys to close the segments holding the above.
    for index in 0..40 {
        append(
            &log,
            record_batch(-1, 0, &format!("filler-{}", index % 4), "v"),
        );
    }
    assert!(log.segment_count() > 3);
    let before = records(&log);
    assert!(before.iter().any(|record| record.2 == "aborted"));
    let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
    let stats = block_on(log.clean(&mut cleaner, 2_000, &NoPause)).unwrap();
    assert!(stats.segments_rewritten > 0, "{stats:?}");
    let after = records(&log);
    assert!(
        !after.iter().any(|record| record.2 == "aborted"),
        "aborted data removed: {after:?}"
    );
    let value_of = |key: &str| {
        after
            .iter()
            .filter(|record| record.1 == key && !record.3)
            .map(|record| record.2.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(value_of("k"), vec!["committed".to_string()]);
    assert_eq!(value_of("x"), vec!["kept".to_string()]);
    // Every marker is kept.
    let markers = after.iter().filter(|record| record.3).count();
    assert_eq!(markers, 3);
    // The aborted transaction is still reported to read_committed fetches.
    let aborted = block_on(log.aborted_transactions(Offset(0), log.high_watermark())).unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(aborted[0].first_offset, Offset(aborted_first));
    assert!(abort_marker > aborted_first);
}

#[test]
fn an_open_transaction_bounds_the_cleanable_range() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path());
    for index in 0..10 {
        append(&log, record_batch(-1, 0, &format!("a-{}", index % 2), "v"));
    }
    let open_first = append(&log, record_batch(5, 0, "k", "pending"));
    for index in 0..40 {
        append(&log, record_batch(-1, 0, &format!("b-{}", index % 2), "v"));
    }
    assert_eq!(log.last_stable_offset(), Offset(open_first));
    let cleanable = block_on(log.cleanable(2_000)).unwrap();
    assert!(
        cleanable.first_uncleanable_offset.0 <= open_first,
        "{cleanable:?}"
    );
    let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
    block_on(log.clean(&mut cleaner, 2_000, &NoPause)).unwrap();
    assert!(records(&log).iter().any(|record| record.2 == "pending"));
}
