//! Record-level validation: valid batches (all codecs) pass, garbage behind a valid CRC never does.

use super::*;
use crate::batch::testing::{build_batch, simple_batch, BatchSpec};
use crate::batch::{compute_crc, validate_batches};
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as ProtocolTimestampType,
};
use proptest::prelude::*;

/// Rewrites the CRC so that only the record-level checks can refuse the batch.
fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn set_i32(batch: &mut [u8], at: usize, value: i32) {
    batch[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

fn encoded(compression: Compression, count: usize) -> Vec<u8> {
    let records: Vec<Record> = (0..count)
        .map(|index| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: ProtocolTimestampType::Creation,
            offset: index as i64,
            sequence: index as i32,
            timestamp: 1_000 + index as i64,
            key: Some(Bytes::from(format!("key-{index}"))),
            value: Some(Bytes::from(vec![index as u8; 100])),
            headers: [(
                kafka_protocol::protocol::StrBytes::from_static_str("h"),
                Some(Bytes::from_static(b"header value")),
            )]
            .into_iter()
            .collect(),
            delete_horizon: false,
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

#[test]
fn valid_batches_of_every_codec_pass() {
    for compression in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let batch = encoded(compression, 20);
        let headers = validate_batches(&batch, 1 << 20)
            .unwrap_or_else(|error| panic!("{compression:?}: {error}"));
        assert_eq!(headers[0].records_count, 20, "{compression:?}");
        assert_eq!(headers[0].max_timestamp, 1_019, "{compression:?}");
    }
}

#[test]
fn one_record_claiming_i32_max_records_is_refused() {
    let mut batch = simple_batch(1, 10, 5);
    set_i32(&mut batch, 23, i32::MAX - 1); // lastOffsetDelta
    set_i32(&mut batch, 57, i32::MAX); // recordsCount
    fix_crc(&mut batch);
    assert!(matches!(
        validate_batches(&batch, 1 << 20),
        Err(StorageError::InvalidRecord(_))
    ));
    // The same lie in a compressed batch.
    let mut batch = encoded(Compression::Zstd, 1);
    set_i32(&mut batch, 23, i32::MAX - 1);
    set_i32(&mut batch, 57, i32::MAX);
    fix_crc(&mut batch);
    assert!(matches!(
        validate_batches(&batch, 1 << 20),
        Err(StorageError::InvalidRecord(_))
    ));
}

#[test]
fn fewer_or_more_records_than_claimed_are_refused() {
    for claimed in [1, 3, 4] {
        let mut batch = simple_batch(2, 10, 5);
        set_i32(&mut batch, 23, claimed - 1);
        set_i32(&mut batch, 57, claimed);
        fix_crc(&mut batch);
        assert!(
            matches!(
                validate_batches(&batch, 1 << 20),
                Err(StorageError::InvalidRecord(_))
            ),
            "claimed {claimed}"
        );
    }
}

#[test]
fn wrong_offset_delta_is_refused() {
    let mut batch = simple_batch(2, 10, 5);
    // Record 0 starts at 61: length varint (1 byte), attributes, timestampDelta (0), offsetDelta.
    assert_eq!(batch[64], 0);
    batch[64] = 2; // zigzag 1
    fix_crc(&mut batch);
    assert!(matches!(
        validate_batches(&batch, 1 << 20),
        Err(StorageError::InvalidRecord(_))
    ));
}

#[test]
fn corrupt_compressed_records_are_refused() {
    let mut batch = encoded(Compression::Gzip, 5);
    let length = batch.len();
    for byte in &mut batch[70..length - 10] {
        *byte ^= 0x5a;
    }
    fix_crc(&mut batch);
    assert!(validate_batches(&batch, 1 << 20).is_err());
}

#[test]
fn decompression_bomb_is_refused() {
    // 100 MiB of zeros compress to ~100 KiB: refused for its decompressed size, not decoded whole.
    let zeros = vec![0u8; MAX_DECOMPRESSED_BYTES + (4 << 20)];
    let compressed = zstd::stream::encode_all(&zeros[..], 3).unwrap();
    let mut batch = simple_batch(1, 0, 5);
    batch.truncate(HEADER_SIZE);
    batch.extend_from_slice(&compressed);
    let length = (batch.len() - 12) as i32;
    set_i32(&mut batch, 8, length);
    batch[22] |= 4; // zstd
    fix_crc(&mut batch);
    assert!(matches!(
        validate_batches(&batch, u32::MAX),
        Err(StorageError::InvalidRecord(_))
    ));
}

#[test]
fn wrong_max_timestamp_is_corrected_not_refused() {
    let mut batch = build_batch(&BatchSpec {
        base_timestamp: 1_000,
        timestamp_deltas: vec![5, -3, 40, 7],
        ..Default::default()
    });
    batch[35..43].copy_from_slice(&999i64.to_be_bytes());
    fix_crc(&mut batch);
    let headers = validate_batches(&batch, 1 << 20).unwrap();
    assert_eq!(headers[0].max_timestamp, 1_040);
    // All deltas negative: the maximum is below the base timestamp.
    let batch = build_batch(&BatchSpec {
        base_timestamp: 1_000,
        timestamp_deltas: vec![-5, -3],
        ..Default::default()
    });
    assert_eq!(
        validate_batches(&batch, 1 << 20).unwrap()[0].max_timestamp,
        997
    );
}

#[test]
fn log_stores_the_corrected_max_timestamp_with_a_valid_crc() {
    use crate::batch::{check_batch_at, BatchCheck};
    let dir = tempfile::tempdir().unwrap();
    futures_lite::future::block_on(async {
        let log = crate::Log::open(
            crate::io::StdFileSystem,
            dir.path().join("t-0"),
            crate::LogConfig::default(),
            std::rc::Rc::new(crate::BatchCache::new(0)),
            false,
        )
        .await
        .unwrap();
        let mut batch = build_batch(&BatchSpec {
            base_timestamp: 1_000,
            timestamp_deltas: vec![0, 50],
            ..Default::default()
        });
        batch[35..43].copy_from_slice(&7i64.to_be_bytes());
        fix_crc(&mut batch);
        log.append(Bytes::from(batch), crate::types::LeaderEpoch(0), 5)
            .await
            .unwrap();
        let stored = log
            .read(
                crate::types::Offset(0),
                1 << 20,
                crate::types::Offset(10),
                true,
            )
            .await
            .unwrap();
        match check_batch_at(&stored, true) {
            BatchCheck::Valid(header) => assert_eq!(header.max_timestamp, 1_050),
            other => panic!("stored batch invalid: {other:?}"),
        }
    });
}

/// A record set that parses: what kafka-protocol decodes from it has exactly `count` records at
/// offset deltas 0..count.
fn parses(batch: &[u8], count: i32) -> bool {
    let mut bytes = Bytes::copy_from_slice(batch);
    match RecordBatchDecoder::decode(&mut bytes) {
        Ok(set) => {
            set.records.len() == count as usize
                && set
                    .records
                    .iter()
                    .enumerate()
                    .all(|(index, record)| record.offset == index as i64)
        }
        Err(_) => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes as the records of a batch with a valid CRC: refused unless they parse.
    #[test]
    fn random_records_region_is_refused_unless_it_parses(
        records in proptest::collection::vec(any::<u8>(), 0..200),
        count in 1i32..6,
    ) {
        let mut batch = simple_batch(1, 0, 5);
        batch.truncate(HEADER_SIZE);
        batch.extend_from_slice(&records);
        let length = (batch.len() - 12) as i32;
        set_i32(&mut batch, 8, length);
        set_i32(&mut batch, 23, count - 1);
        set_i32(&mut batch, 57, count);
        fix_crc(&mut batch);
        if validate_batches(&batch, 1 << 20).is_ok() {
            prop_assert!(parses(&batch, count), "accepted records that do not parse: {records:?}");
        }
    }

    /// A valid batch with a few bytes of its records changed (CRC recomputed): refused unless the
    /// result still parses.
    #[test]
    fn mutated_records_are_refused_unless_they_parse(
        count in 1usize..5,
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut batch = build_batch(&BatchSpec {
            timestamp_deltas: vec![0; count],
            value_size: 3,
            ..Default::default()
        });
        let records = batch.len() - HEADER_SIZE;
        for (index, value) in changes {
            batch[HEADER_SIZE + index.index(records)] = value;
        }
        fix_crc(&mut batch);
        if validate_batches(&batch, 1 << 20).is_ok() {
            prop_assert!(parses(&batch, count as i32));
        }
    }
}
