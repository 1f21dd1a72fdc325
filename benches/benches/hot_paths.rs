//! Criterion micro-benchmarks of the broker's hot paths (quick: small samples, ~2 s each).
//!
//! Layout: one group per hot path --
//! - `validate`: storage::validate_batches (header checks, CRC-32C, record walk) of a 16 KiB batch,
//!   and the record walk alone; `validate_small_records`: 1000 records of 16 bytes;
//!   `validate_compressed`: a batch of 16 × 1000-byte records per codec (decompressed, walked);
//! - `append`: storage::Log::append of a 16 KiB batch on StdFileSystem in a tempdir;
//! - `index`: storage::index::lookup_offset / lookup_time on a full 10 MiB-index-sized table;
//! - `protocol`: net::decode_header + kafka-protocol ProduceRequest v9 decode/encode carrying a
//!   16 KiB batch.

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_lite::future::block_on;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::Compression;
use std::rc::Rc;
use std::time::Duration;
use storage::batch::testing::simple_batch;
use storage::index::{lookup_offset, lookup_time, OffsetEntry, TimeEntry};
use storage::io::StdFileSystem;
use storage::types::LeaderEpoch;
use storage::{BatchCache, Log, LogConfig};

/// ~16 KiB: 16 records of 1000-byte values plus record/batch overhead.
fn batch_16k() -> Vec<u8> {
    simple_batch(16, 1000, 1_700_000_000_000)
}

fn quick<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    g
}

fn bench_validate(c: &mut Criterion) {
    let b = batch_16k();
    let mut g = quick(c, "validate");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("validate_batches_16k", |bench| {
        bench.iter(|| storage::validate_batches(black_box(&b), 1 << 20).unwrap())
    });
    // The record walk alone (part of validate_batches above): 16 records of 1000 bytes.
    let header = storage::BatchHeader::parse(&b);
    g.bench_function("records_walk_16x1k", |bench| {
        bench.iter(|| storage::records::validate_records(&header, black_box(&b)).unwrap())
    });
    g.finish();
    // Many small records: the walk's per-record cost dominates.
    let small = simple_batch(1000, 16, 1_700_000_000_000);
    let small_header = storage::BatchHeader::parse(&small);
    let mut g = quick(c, "validate_small_records");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("validate_batches_1000x16b", |bench| {
        bench.iter(|| storage::validate_batches(black_box(&small), 1 << 20).unwrap())
    });
    g.bench_function("records_walk_1000x16b", |bench| {
        bench.iter(|| storage::records::validate_records(&small_header, black_box(&small)).unwrap())
    });
    g.finish();
    // Compressed batches are decompressed to be walked: 16 records of 1000 bytes.
    let mut g = quick(c, "validate_compressed");
    g.throughput(Throughput::Elements(16));
    for (name, compression) in [
        ("zstd", Compression::Zstd),
        ("lz4", Compression::Lz4),
        ("gzip", Compression::Gzip),
        ("snappy", Compression::Snappy),
    ] {
        let compressed = compressed_batch_16k(compression);
        g.bench_function(format!("validate_batches_{name}_16x1k"), |bench| {
            bench.iter(|| storage::validate_batches(black_box(&compressed), 1 << 20).unwrap())
        });
    }
    g.finish();
}

/// 16 records of 1000 (compressible) bytes in one compressed batch.
fn compressed_batch_16k(compression: Compression) -> Vec<u8> {
    use kafka_protocol::records::{Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let records: Vec<Record> = (0..16)
        .map(|index| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index,
            sequence: index as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::from(
                (0..1000u32)
                    .map(|i| (i % 251) as u8 ^ index as u8)
                    .collect::<Vec<u8>>(),
            )),
            headers: Default::default(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    buffer.to_vec()
}

fn bench_append(c: &mut Criterion) {
    let b = Bytes::from(batch_16k());
    let dir = tempfile::tempdir().unwrap();
    let log = block_on(Log::open(
        StdFileSystem,
        dir.path().join("t-0"),
        LogConfig::default(),
        Rc::new(BatchCache::new(64 << 20)),
        false,
    ))
    .unwrap();
    let mut g = quick(c, "append");
    g.throughput(Throughput::Bytes(b.len() as u64));
    g.bench_function("log_append_16k_stdfs", |bench| {
        bench.iter(|| block_on(log.append(b.clone(), LeaderEpoch(0), 1_700_000_000_000)).unwrap())
    });
    g.finish();
    block_on(log.close()).unwrap();
}

fn bench_index(c: &mut Criterion) {
    // A full default-sized offset index (10 MiB / 8 B) and time index.
    let n = (10 << 20) / 8;
    let offsets: Vec<OffsetEntry> = (0..n as u32)
        .map(|i| OffsetEntry {
            relative_offset: i * 4,
            position: i * 4096,
        })
        .collect();
    let times: Vec<TimeEntry> = (0..n as u32)
        .map(|i| TimeEntry {
            timestamp: 1_700_000_000_000 + i as i64,
            relative_offset: i * 4,
        })
        .collect();
    let mut g = quick(c, "index");
    let mut x = 0u32;
    g.bench_function("lookup_offset_1.3M_entries", |bench| {
        bench.iter(|| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345) % (n as u32 * 4);
            lookup_offset(black_box(&offsets), x)
        })
    });
    g.bench_function("lookup_time_1.3M_entries", |bench| {
        bench.iter(|| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345) % n as u32;
            lookup_time(black_box(&times), 1_700_000_000_000 + x as i64)
        })
    });
    g.finish();
}

const PRODUCE_VERSION: i16 = 9;

fn produce_request() -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("bench-topic")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(Bytes::from(batch_16k())))])])
}

/// A whole request frame (without the 4-byte length prefix), as the broker's framing yields it.
fn produce_frame() -> Bytes {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(PRODUCE_VERSION)
        .with_correlation_id(42)
        .with_client_id(Some(StrBytes::from_static_str("kbench")));
    let mut buf = BytesMut::new();
    header
        .encode(
            &mut buf,
            ApiKey::Produce.request_header_version(PRODUCE_VERSION),
        )
        .unwrap();
    produce_request().encode(&mut buf, PRODUCE_VERSION).unwrap();
    buf.freeze()
}

fn bench_protocol(c: &mut Criterion) {
    let frame = produce_frame();
    let req = produce_request();
    let mut g = quick(c, "protocol");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    g.bench_function("decode_header_produce_v9", |bench| {
        bench.iter(|| net::decode_header(black_box(frame.clone())).unwrap())
    });
    g.bench_function("decode_header_and_produce_request_v9_16k", |bench| {
        bench.iter(|| {
            let h = net::decode_header(black_box(frame.clone())).unwrap();
            let mut body = h.body;
            ProduceRequest::decode(&mut body, h.api_version).unwrap()
        })
    });
    g.bench_function("encode_produce_request_v9_16k", |bench| {
        bench.iter_batched_ref(
            || BytesMut::with_capacity(frame.len() + 64),
            |buf| {
                black_box(&req).encode(buf, PRODUCE_VERSION).unwrap();
                buf.put_u8(0);
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_validate,
    bench_append,
    bench_index,
    bench_protocol
);
criterion_main!(benches);
