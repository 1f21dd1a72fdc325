//! Rewriting one record batch during cleaning (Kafka's `MemoryRecords.filterTo` for magic 2).
//!
//! A batch keeps its header fields except those that describe the records left: its baseOffset,
//! lastOffsetDelta (so the producer's last sequence stays right), baseTimestamp, maxTimestamp,
//! producer id/epoch, baseSequence, leader epoch and attributes are kept; recordsCount and
//! batchLength are recomputed and the CRC with them. The records kept are copied byte for byte
//! (their offset and timestamp deltas stay relative to the unchanged base), re-compressed with the
//! batch's codec when it was compressed.
//!
//! Outcomes per batch ([`FilteredBatch`]): every record kept (the original bytes, untouched), some
//! kept (a rebuilt batch), none kept (dropped) — except the last batch of a producer that is still
//! in the producer state, which is kept as an empty batch (recordsCount 0, no compression) so that
//! producer state rebuilt from the log still knows the producer's last sequence, as Kafka does.
//! Control batches (transaction markers) are always kept untouched (removing a marker once its
//! transaction's data is gone is not done). The caller decides that an aborted transaction's
//! batch loses every record (`log_cleaning.rs`).

use crate::batch::{self, BatchHeader, ATTR_COMPRESSION_MASK, HEADER_SIZE, LOG_OVERHEAD};
use crate::error::StorageError;
use crate::records::{self, RecordView};
use std::io::Write;

const COMPRESSION_NONE: i16 = 0;
const COMPRESSION_GZIP: i16 = 1;
const COMPRESSION_SNAPPY: i16 = 2;
const COMPRESSION_LZ4: i16 = 3;
const COMPRESSION_ZSTD: i16 = 4;

/// What happens to one batch.
#[derive(Debug)]
pub enum FilteredBatch {
    /// Every record stays: write the original bytes.
    Unchanged,
    /// Some records were removed: write these bytes instead.
    Rewritten(Vec<u8>),
    /// Nothing stays.
    Dropped,
}

/// What the cleaner decides about one record.
pub struct RecordDecision<'a> {
    pub offset: i64,
    pub key: Option<&'a [u8]>,
    pub value_is_null: bool,
}

/// Filters `batch` (a whole stored batch) with `keep`; `retain_empty` keeps a batch that loses
/// every record as an empty batch (the producer's last batch).
pub fn filter_batch(
    header: &BatchHeader,
    batch: &[u8],
    retain_empty: bool,
    mut keep: impl FnMut(&RecordDecision<'_>) -> bool,
) -> Result<FilteredBatch, StorageError> {
    if header.is_control() {
        return Ok(FilteredBatch::Unchanged);
    }
    let mut kept: Vec<u8> = Vec::new();
    let mut kept_count = 0i32;
    let mut total = 0i32;
    records::for_each_record(header, batch, |record: RecordView<'_>| {
        total += 1;
        let decision = RecordDecision {
            offset: header.base_offset + record.offset_delta as i64,
            key: record.key,
            value_is_null: record.value_is_null,
        };
        if keep(&decision) {
            kept_count += 1;
            kept.extend_from_slice(record.bytes);
        }
    })?;
    if kept_count == total {
        return Ok(FilteredBatch::Unchanged);
    }
    if kept_count == 0 && !retain_empty {
        return Ok(FilteredBatch::Dropped);
    }
    let mut attributes = header.attributes;
    let body = if kept_count == 0 {
        attributes &= !ATTR_COMPRESSION_MASK;
        Vec::new()
    } else {
        compress(header.compression(), kept)?
    };
    Ok(FilteredBatch::Rewritten(build(
        header, batch, attributes, kept_count, &body,
    )))
}

/// The original header with the new attributes, record count and length, then `body`, CRC'd.
fn build(
    header: &BatchHeader,
    original: &[u8],
    attributes: i16,
    records_count: i32,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + body.len());
    out.extend_from_slice(&original[..HEADER_SIZE]);
    out.extend_from_slice(body);
    let batch_length = (out.len() - LOG_OVERHEAD) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    out[21..23].copy_from_slice(&attributes.to_be_bytes());
    out[57..61].copy_from_slice(&records_count.to_be_bytes());
    let crc = batch::compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    debug_assert_eq!(BatchHeader::parse(&out).last_offset(), header.last_offset());
    out
}

/// Compresses records with a batch codec (what Kafka's clients read: gzip, xerial-framed snappy,
/// the LZ4 frame format, zstd).
pub fn compress(codec: i16, records: Vec<u8>) -> Result<Vec<u8>, StorageError> {
    let failed = |error: std::io::Error| {
        StorageError::Io(std::io::Error::other(format!(
            "cannot compress cleaned records: {error}"
        )))
    };
    match codec {
        COMPRESSION_NONE => Ok(records),
        COMPRESSION_GZIP => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(&records).map_err(failed)?;
            encoder.finish().map_err(failed)
        }
        COMPRESSION_SNAPPY => Ok(snappy_xerial(&records)),
        COMPRESSION_LZ4 => {
            let mut encoder = lz4::EncoderBuilder::new()
                .build(Vec::new())
                .map_err(failed)?;
            encoder.write_all(&records).map_err(failed)?;
            let (out, result) = encoder.finish();
            result.map_err(failed)?;
            Ok(out)
        }
        COMPRESSION_ZSTD => zstd::encode_all(&records[..], 3).map_err(failed),
        codec => Err(StorageError::CorruptMessage(format!(
            "stored batch has unknown compression codec {codec}"
        ))),
    }
}

/// Snappy with the xerial framing the Java client writes: a 16-byte header, then blocks of at
/// most 32 KiB, each preceded by its compressed length (u32 big-endian).
fn snappy_xerial(records: &[u8]) -> Vec<u8> {
    const BLOCK: usize = 32 << 10;
    let mut out = Vec::with_capacity(records.len() / 2 + 32);
    out.extend_from_slice(b"\x82SNAPPY\x00");
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    for block in records.chunks(BLOCK) {
        let compressed = encoder
            .compress_vec(block)
            .expect("snappy compresses any block under 4 GiB");
        out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
        out.extend_from_slice(&compressed);
    }
    out
}
