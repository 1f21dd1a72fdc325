//! The cleaner throughput micro-benchmark (ignored by default; run it in release):
//! `cargo test --release -p storage cleaner_throughput -- --ignored --nocapture`.
//! Prints MB/s of log cleaned (dirty bytes indexed and rewritten per second of a pass) for an
//! uncompressed and an LZ4 log of 1,000 keys, 10 records of 100 bytes per batch.

use super::{compress, Cleaner, NoPause};
use crate::batch::{compute_crc, HEADER_SIZE, LOG_OVERHEAD, MAGIC};
use crate::cache::BatchCache;
use crate::config::CleanupPolicy;
use crate::io::StdFileSystem;
use crate::log::{Log, LogConfig};
use crate::types::LeaderEpoch;
use bytes::Bytes;
use futures_lite::future::block_on;
use std::rc::Rc;
use std::time::Instant;

fn varint(out: &mut Vec<u8>, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

/// A batch of 10 keyed records (keys `first_key..first_key+10` modulo 1000), 100-byte values.
fn batch(first_key: usize, codec: i16) -> Vec<u8> {
    let mut body = Vec::new();
    for index in 0..10 {
        let key = format!("key-{:04}", (first_key + index) % 1000);
        let mut record = vec![0u8];
        varint(&mut record, 0);
        varint(&mut record, index as i64);
        varint(&mut record, key.len() as i64);
        record.extend_from_slice(key.as_bytes());
        varint(&mut record, 100);
        record.extend(std::iter::repeat_n(b'v', 100));
        varint(&mut record, 0);
        varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let body = compress(codec, body).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&0i64.to_be_bytes());
    out.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    out.push(MAGIC as u8);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&codec.to_be_bytes());
    out.extend_from_slice(&9i32.to_be_bytes());
    out.extend_from_slice(&1_000i64.to_be_bytes());
    out.extend_from_slice(&1_000i64.to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    out.extend_from_slice(&10i32.to_be_bytes());
    out.extend_from_slice(&body);
    let crc = compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture in release"]
fn cleaner_throughput() {
    for (name, codec) in [("uncompressed", 0i16), ("lz4", 3)] {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 1 << 20,
            cleanup_policy: CleanupPolicy::COMPACT,
            ..Default::default()
        };
        let cache = Rc::new(BatchCache::new(0));
        let log = block_on(Log::open(
            StdFileSystem,
            dir.path().into(),
            config,
            cache,
            false,
        ))
        .unwrap();
        for number in 0..40_000usize {
            let batch = Bytes::from(batch(number * 10, codec));
            block_on(log.append(batch, LeaderEpoch(0), 1_000)).unwrap();
        }
        log.update_high_watermark(log.durable_end_offset());
        let size = log.size_in_bytes();
        let mut cleaner = Cleaner::new(128 << 20, f64::INFINITY);
        let started = Instant::now();
        let stats = block_on(log.clean(&mut cleaner, 2_000, &NoPause)).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        let megabytes = stats.bytes_read as f64 / 2.0 / (1 << 20) as f64;
        println!(
            "cleaner {name}: log {:.1} MiB, cleaned {megabytes:.1} MiB in {seconds:.3} s = {:.0} MiB/s \
             ({} records removed, {} segments rewritten, {:.1} MiB written)",
            size as f64 / (1 << 20) as f64,
            megabytes / seconds,
            stats.records_removed,
            stats.segments_rewritten,
            stats.bytes_written as f64 / (1 << 20) as f64,
        );
        assert!(stats.records_removed > 0);
    }
}
