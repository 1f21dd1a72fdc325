//! Record-level validation of a produced batch (what Kafka's LogValidator checks before an append).
//!
//! The batch header and CRC are checked in `batch`; here the records themselves are walked (after
//! decompression for compressed batches), so that a batch whose CRC is right but whose records
//! cannot be parsed, or whose header claims more records than it holds, is refused instead of being
//! stored (a consumer would stall at it; a false `lastOffsetDelta` would move the high watermark).
//!
//! # Record format (inside a v2 batch; varints are zigzag, as in protobuf)
//! ```text
//! length            varint   bytes after this field, up to the next record
//! attributes        int8     unused (0)
//! timestampDelta    varlong  relative to the batch's baseTimestamp
//! offsetDelta       varint   relative to the batch's baseOffset: the record's index
//! keyLength         varint   -1: null key
//! key               bytes
//! valueLength       varint   -1: null value
//! value             bytes
//! headerCount       varint   >= 0
//! headers           headerCount × (keyLength varint >= 0, key, valueLength varint (-1: null), value)
//! ```
//!
//! Checks: every length in bounds and non-negative where required; each record consumes exactly its
//! `length`; the `i`-th record's offsetDelta is `i`; the records fill the (decompressed) body exactly;
//! their number equals the header's recordsCount (and so lastOffsetDelta + 1, checked in `batch`).
//! The result carries the largest record timestamp, which the log writes into a CreateTime batch's
//! header when the producer got it wrong (as Kafka does) instead of refusing the batch.

use crate::batch::{BatchHeader, HEADER_SIZE};
use crate::error::StorageError;
use std::io::Read;

/// The smallest possible record: length, attributes, timestampDelta, offsetDelta, keyLength,
/// valueLength and headerCount, one byte each.
pub const MIN_RECORD_SIZE: usize = 7;

/// Largest decompressed record body accepted (a bound against decompression bombs: Kafka itself
/// bounds a batch only by its compressed size).
pub const MAX_DECOMPRESSED_BYTES: usize = 64 << 20;

const COMPRESSION_NONE: i16 = 0;
const COMPRESSION_GZIP: i16 = 1;
const COMPRESSION_SNAPPY: i16 = 2;
const COMPRESSION_LZ4: i16 = 3;
const COMPRESSION_ZSTD: i16 = 4;

thread_local! {
    static ZSTD_CONTEXT: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// What the walk over a batch's records found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordsSummary {
    /// baseTimestamp + the largest timestampDelta.
    pub max_timestamp: i64,
    /// Some record has a null key (refused by a compacted topic: the cleaner keys on it).
    pub has_null_key: bool,
}

/// One record of a batch, as [`for_each_record`] hands it out: slices of the (decompressed) body.
#[derive(Clone, Copy, Debug)]
pub struct RecordView<'a> {
    /// The whole record, its length prefix included (copy it verbatim to keep the record).
    pub bytes: &'a [u8],
    /// Relative to the batch's baseOffset.
    pub offset_delta: i32,
    /// Relative to the batch's baseTimestamp.
    pub timestamp_delta: i64,
    /// `None`: a null key.
    pub key: Option<&'a [u8]>,
    /// A null value: a tombstone.
    pub value_is_null: bool,
}

fn invalid(message: impl Into<String>) -> StorageError {
    StorageError::InvalidRecord(message.into())
}

/// Validates the records of one batch: `batch` is the whole batch (header and body).
pub fn validate_records(
    header: &BatchHeader,
    batch: &[u8],
) -> Result<RecordsSummary, StorageError> {
    walk_batch(header, batch, true, |_| {})
}

/// Walks (and validates, as [`validate_records`]) the records of one stored batch, decompressing
/// a compressed body, calling `visit` with each record in order. A batch the cleaner rewrote has
/// gaps between its records' offset deltas: here they need only increase, up to lastOffsetDelta.
pub fn for_each_record(
    header: &BatchHeader,
    batch: &[u8],
    visit: impl FnMut(RecordView<'_>),
) -> Result<RecordsSummary, StorageError> {
    walk_batch(header, batch, false, visit)
}

/// The walk of both: `contiguous` (a produced batch) demands that the i-th record's offset delta
/// is i.
fn walk_batch(
    header: &BatchHeader,
    batch: &[u8],
    contiguous: bool,
    visit: impl FnMut(RecordView<'_>),
) -> Result<RecordsSummary, StorageError> {
    let body = &batch[HEADER_SIZE..];
    let count = header.records_count as usize;
    match header.compression() {
        COMPRESSION_NONE => {
            if count > body.len() / MIN_RECORD_SIZE {
                return Err(invalid(format!(
                    "recordsCount {count} cannot fit in {} bytes of records",
                    body.len()
                )));
            }
            walk_records(header, body, contiguous, visit)
        }
        codec @ (COMPRESSION_GZIP | COMPRESSION_SNAPPY | COMPRESSION_LZ4 | COMPRESSION_ZSTD) => {
            let records = decompress(codec, body)?;
            if count > records.len() / MIN_RECORD_SIZE {
                return Err(invalid(format!(
                    "recordsCount {count} cannot fit in {} decompressed bytes of records",
                    records.len()
                )));
            }
            walk_records(header, &records, contiguous, visit)
        }
        codec => Err(invalid(format!("unknown compression codec {codec}"))),
    }
}

/// Decompresses a record body, refusing more than [`MAX_DECOMPRESSED_BYTES`].
pub(crate) fn decompress(codec: i16, body: &[u8]) -> Result<Vec<u8>, StorageError> {
    let corrupt = |error: std::io::Error| {
        StorageError::CorruptMessage(format!("cannot decompress the records: {error}"))
    };
    let limit = MAX_DECOMPRESSED_BYTES as u64 + 1;
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(1 << 20));
    match codec {
        COMPRESSION_GZIP => {
            flate2::read::GzDecoder::new(body)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(corrupt)?;
        }
        COMPRESSION_ZSTD => {
            // One decompression context per thread (a shard): creating one costs more than
            // decompressing a small batch.
            ZSTD_CONTEXT
                .with(|slot| {
                    let mut slot = slot.borrow_mut();
                    let context = slot.get_or_insert_with(zstd::zstd_safe::DCtx::create);
                    context
                        .reset(zstd::zstd_safe::ResetDirective::SessionOnly)
                        .map_err(|code| {
                            std::io::Error::other(zstd::zstd_safe::get_error_name(code))
                        })?;
                    let read = zstd::stream::read::Decoder::with_context(body, context)
                        .take(limit)
                        .read_to_end(&mut out);
                    read
                })
                .map_err(corrupt)?;
        }
        COMPRESSION_LZ4 => {
            lz4::Decoder::new(body)
                .map_err(corrupt)?
                .take(limit)
                .read_to_end(&mut out)
                .map_err(corrupt)?;
        }
        _ => decompress_snappy(body, &mut out)?,
    }
    if out.len() > MAX_DECOMPRESSED_BYTES {
        return Err(invalid(format!(
            "records decompress to more than {MAX_DECOMPRESSED_BYTES} bytes"
        )));
    }
    Ok(out)
}

/// Snappy as Kafka clients write it: xerial framing (a 16-byte magic header, then blocks each
/// preceded by its compressed length, u32 big-endian), or a single raw snappy block.
fn decompress_snappy(body: &[u8], out: &mut Vec<u8>) -> Result<(), StorageError> {
    const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER_SIZE: usize = 16;
    let block = |compressed: &[u8], out: &mut Vec<u8>| -> Result<(), StorageError> {
        let corrupt =
            |error: snap::Error| StorageError::CorruptMessage(format!("snappy records: {error}"));
        let length = snap::raw::decompress_len(compressed).map_err(corrupt)?;
        if out.len().saturating_add(length) > MAX_DECOMPRESSED_BYTES {
            return Err(invalid(format!(
                "records decompress to more than {MAX_DECOMPRESSED_BYTES} bytes"
            )));
        }
        let start = out.len();
        out.resize(start + length, 0);
        snap::raw::Decoder::new()
            .decompress(compressed, &mut out[start..])
            .map_err(corrupt)?;
        Ok(())
    };
    if body.len() < XERIAL_HEADER_SIZE || &body[..8] != XERIAL_MAGIC {
        return block(body, out);
    }
    let mut rest = &body[XERIAL_HEADER_SIZE..];
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(StorageError::CorruptMessage(
                "snappy records: truncated block length".into(),
            ));
        }
        let length = u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
        rest = &rest[4..];
        if length > rest.len() {
            return Err(StorageError::CorruptMessage(
                "snappy records: block longer than the batch".into(),
            ));
        }
        block(&rest[..length], out)?;
        rest = &rest[length..];
    }
    Ok(())
}

/// A cursor over untrusted record bytes: every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn byte(&mut self) -> Result<u8, StorageError> {
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or_else(|| invalid("record truncated"))?;
        self.position += 1;
        Ok(byte)
    }

    /// A zigzag varint of at most `max_bytes` bytes (5 for int32, 10 for int64).
    fn zigzag(&mut self, max_bytes: usize) -> Result<i64, StorageError> {
        let mut value = 0u64;
        for index in 0..max_bytes {
            let byte = self.byte()?;
            value |= ((byte & 0x7f) as u64) << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(invalid("varint longer than its type allows"))
    }

    fn varint(&mut self) -> Result<i32, StorageError> {
        let value = self.zigzag(5)?;
        i32::try_from(value).map_err(|_| invalid("varint out of the int32 range"))
    }

    fn varlong(&mut self) -> Result<i64, StorageError> {
        self.zigzag(10)
    }

    fn skip(&mut self, count: usize) -> Result<(), StorageError> {
        if count > self.remaining() {
            return Err(invalid("record field longer than the record"));
        }
        self.position += count;
        Ok(())
    }

    /// A length-prefixed byte field; `-1` (null, `None`) allowed when `nullable`.
    fn bytes_field(
        &mut self,
        what: &str,
        nullable: bool,
    ) -> Result<Option<&'a [u8]>, StorageError> {
        let length = self.varint()?;
        if length == -1 && nullable {
            return Ok(None);
        }
        if length < 0 {
            return Err(invalid(format!("invalid {what} length {length}")));
        }
        let start = self.position;
        self.skip(length as usize)?;
        let bytes: &'a [u8] = self.bytes;
        Ok(Some(&bytes[start..self.position]))
    }
}

/// Walks the uncompressed records of a batch (see the module doc for the checks).
fn walk_records(
    header: &BatchHeader,
    records: &[u8],
    contiguous: bool,
    mut visit: impl FnMut(RecordView<'_>),
) -> Result<RecordsSummary, StorageError> {
    let mut reader = Reader {
        bytes: records,
        position: 0,
    };
    let mut max_delta: Option<i64> = None;
    let mut count = 0i64;
    let mut has_null_key = false;
    let mut previous_delta = -1i64;
    while reader.remaining() > 0 {
        if count >= header.records_count as i64 {
            return Err(invalid(format!(
                "more records than the recordsCount {} of the batch",
                header.records_count
            )));
        }
        let record_start = reader.position;
        let length = reader.varint()?;
        if length < 0 || length as usize > reader.remaining() {
            return Err(invalid(format!(
                "record {count}: length {length} outside the batch"
            )));
        }
        let end = reader.position + length as usize;
        let mut record = Reader {
            bytes: &records[..end],
            position: reader.position,
        };
        record.byte()?; // attributes
        let timestamp_delta = record.varlong()?;
        let offset_delta = record.varint()?;
        let in_order = if contiguous {
            offset_delta as i64 == count
        } else {
            offset_delta as i64 > previous_delta && offset_delta <= header.last_offset_delta
        };
        previous_delta = offset_delta as i64;
        if !in_order {
            return Err(invalid(format!(
                "record {count} has offset delta {offset_delta}"
            )));
        }
        let key = record.bytes_field("key", true)?;
        let value_is_null = record.bytes_field("value", true)?.is_none();
        let header_count = record.varint()?;
        if header_count < 0 {
            return Err(invalid(format!(
                "record {count}: invalid header count {header_count}"
            )));
        }
        for _ in 0..header_count {
            record.bytes_field("header key", false)?;
            record.bytes_field("header value", true)?;
        }
        if record.position != end {
            return Err(invalid(format!(
                "record {count}: {} bytes left over after its last field",
                end - record.position
            )));
        }
        has_null_key |= key.is_none();
        visit(RecordView {
            bytes: &records[record_start..end],
            offset_delta,
            timestamp_delta,
            key,
            value_is_null,
        });
        reader.position = end;
        max_delta = Some(max_delta.map_or(timestamp_delta, |max| max.max(timestamp_delta)));
        count += 1;
    }
    if count != header.records_count as i64 {
        return Err(invalid(format!(
            "batch holds {count} records, its header claims {}",
            header.records_count
        )));
    }
    let max_timestamp = header
        .base_timestamp
        .checked_add(max_delta.unwrap_or(0))
        .ok_or_else(|| invalid("record timestamp overflows"))?;
    Ok(RecordsSummary {
        max_timestamp,
        has_null_key,
    })
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
