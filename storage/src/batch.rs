//! Kafka record batches (magic 2): parsing, validation and the in-place rewrites the broker does.
//!
//! # Record batch v2 header (61 bytes, all big-endian)
//!
//! | bytes  | field                 | notes                                                    |
//! |--------|-----------------------|----------------------------------------------------------|
//! | 0..8   | baseOffset i64        | written by the broker when the batch is appended         |
//! | 8..12  | batchLength i32       | number of bytes after this field                         |
//! | 12..16 | partitionLeaderEpoch  | set by the broker; not covered by the CRC                 |
//! | 16     | magic i8              | always 2                                                 |
//! | 17..21 | crc u32               | CRC32C over bytes 21..end                                |
//! | 21..23 | attributes i16        | bits 0-2 compression, 3 timestamp type, 4 transactional, 5 control |
//! | 23..27 | lastOffsetDelta i32   |                                                          |
//! | 27..35 | baseTimestamp i64     |                                                          |
//! | 35..43 | maxTimestamp i64      |                                                          |
//! | 43..51 | producerId i64        | -1: not idempotent                                       |
//! | 51..53 | producerEpoch i16     |                                                          |
//! | 53..57 | baseSequence i32      |                                                          |
//! | 57..61 | recordsCount i32      |                                                          |
//!
//! The records follow (possibly compressed). Storage never re-encodes records: batches are stored
//! exactly as received except for the base offset, the leader epoch, and (LogAppendTime topics) the
//! timestamp-type bit and maxTimestamp, after which the CRC is recomputed.

use crate::error::StorageError;

pub const HEADER_SIZE: usize = 61;
/// Bytes before (and including) the batchLength field.
pub const LOG_OVERHEAD: usize = 12;
pub const MAGIC: i8 = 2;

pub const ATTR_COMPRESSION_MASK: i16 = 0x07;
pub const ATTR_TIMESTAMP_TYPE: i16 = 0x08;
pub const ATTR_TRANSACTIONAL: i16 = 0x10;
pub const ATTR_CONTROL: i16 = 0x20;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORDS_COUNT: usize = 57;

fn be_i64(bytes: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(bytes[at..at + 8].try_into().unwrap())
}
fn be_i32(bytes: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(bytes[at..at + 4].try_into().unwrap())
}
fn be_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes(bytes[at..at + 2].try_into().unwrap())
}

/// A parsed view of a batch header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// The batchLength field (bytes after it).
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `bytes` (at least [`HEADER_SIZE`] bytes; not validated).
    pub fn parse(bytes: &[u8]) -> BatchHeader {
        BatchHeader {
            base_offset: be_i64(bytes, OFF_BASE_OFFSET),
            batch_length: be_i32(bytes, OFF_LENGTH),
            partition_leader_epoch: be_i32(bytes, OFF_LEADER_EPOCH),
            magic: bytes[OFF_MAGIC] as i8,
            crc: u32::from_be_bytes(bytes[OFF_CRC..OFF_CRC + 4].try_into().unwrap()),
            attributes: be_i16(bytes, OFF_ATTRIBUTES),
            last_offset_delta: be_i32(bytes, OFF_LAST_OFFSET_DELTA),
            base_timestamp: be_i64(bytes, OFF_BASE_TIMESTAMP),
            max_timestamp: be_i64(bytes, OFF_MAX_TIMESTAMP),
            producer_id: be_i64(bytes, OFF_PRODUCER_ID),
            producer_epoch: be_i16(bytes, OFF_PRODUCER_EPOCH),
            base_sequence: be_i32(bytes, OFF_BASE_SEQUENCE),
            records_count: be_i32(bytes, OFF_RECORDS_COUNT),
        }
    }
    /// Total size of the batch on disk / on the wire.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn compression(&self) -> i16 {
        self.attributes & ATTR_COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_TIMESTAMP_TYPE != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
    /// The sequence of the last record (wrapping past i32::MAX to 0, as Kafka does).
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = self.base_sequence as i64 + self.last_offset_delta as i64;
        if last > i32::MAX as i64 {
            (last - i32::MAX as i64 - 1) as i32
        } else {
            last as i32
        }
    }
}

/// CRC32C of the batch (bytes 21..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[OFF_ATTRIBUTES..])
}

/// What [`check_batch_at`] found at a position of a byte range.
#[derive(Debug)]
pub enum BatchCheck {
    /// A complete, valid batch.
    Valid(BatchHeader),
    /// Not enough bytes for a complete batch.
    Incomplete,
    /// Something that is not a valid batch.
    Invalid(StorageError),
}

/// Checks a batch header on its own (the first [`HEADER_SIZE`] bytes of a batch, the rest not at
/// hand): length sane, magic 2, record count consistent with lastOffsetDelta; no CRC. Read-ahead
/// uses it to size a batch that spans buffers.
pub fn check_header(bytes: &[u8; HEADER_SIZE]) -> Result<BatchHeader, StorageError> {
    let length = be_i32(bytes, OFF_LENGTH);
    if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return Err(StorageError::CorruptMessage(format!(
            "batch length {length} is smaller than the batch header"
        )));
    }
    let magic = bytes[OFF_MAGIC] as i8;
    if magic != MAGIC {
        return Err(StorageError::UnsupportedMagic(magic));
    }
    let header = BatchHeader::parse(bytes);
    if header.last_offset_delta < 0
        || header.records_count < 0
        || header.records_count as i64 > header.last_offset_delta as i64 + 1
    {
        return Err(StorageError::InvalidRecord(
            "record count inconsistent with lastOffsetDelta".into(),
        ));
    }
    Ok(header)
}

/// Checks the batch starting at `bytes[0]`: length sane, magic 2, CRC (when `check_crc`), record count
/// consistent with lastOffsetDelta. Used by produce validation and by recovery.
pub fn check_batch_at(bytes: &[u8], check_crc: bool) -> BatchCheck {
    if bytes.len() < LOG_OVERHEAD + 5 {
        return BatchCheck::Incomplete;
    }
    let length = be_i32(bytes, OFF_LENGTH);
    if length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
        return BatchCheck::Invalid(StorageError::CorruptMessage(format!(
            "batch length {length} is smaller than the batch header"
        )));
    }
    let magic = bytes[OFF_MAGIC] as i8;
    if magic != MAGIC {
        return BatchCheck::Invalid(StorageError::UnsupportedMagic(magic));
    }
    let total = LOG_OVERHEAD + length as usize;
    if bytes.len() < total {
        return BatchCheck::Incomplete;
    }
    let batch = &bytes[..total];
    let header = BatchHeader::parse(batch);
    if check_crc {
        let crc = compute_crc(batch);
        if crc != header.crc {
            return BatchCheck::Invalid(StorageError::CorruptMessage(format!(
                "batch CRC mismatch: stored {:#010x}, computed {crc:#010x}",
                header.crc
            )));
        }
    }
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return BatchCheck::Invalid(StorageError::InvalidRecord(
            "negative lastOffsetDelta or recordsCount".into(),
        ));
    }
    // A producer may not leave gaps; compacted batches (recordsCount < lastOffsetDelta+1) only
    // appear after compaction, never on produce, but recovery tolerates them.
    if header.records_count as i64 > header.last_offset_delta as i64 + 1 {
        return BatchCheck::Invalid(StorageError::InvalidRecord(format!(
            "recordsCount {} larger than lastOffsetDelta+1 ({})",
            header.records_count,
            header.last_offset_delta as i64 + 1
        )));
    }
    BatchCheck::Valid(header)
}

/// Validates a produce request's record set (one or more batches) and returns their headers, the
/// records included (see `records`). A returned CreateTime header carries the largest record
/// timestamp as its `max_timestamp`, which may differ from the one in the batch's bytes.
///
/// Errors: `UnsupportedMagic` (magic != 2), `CorruptMessage` (bad length, truncated, CRC),
/// `MessageTooLarge` (a batch larger than `max_message_bytes`), `InvalidRecord` (record count does
/// not match lastOffsetDelta+1 or the records present, a record that does not parse, empty batch,
/// control batch from a client, or empty record set).
pub fn validate_batches(
    records: &[u8],
    max_message_bytes: u32,
) -> Result<Vec<BatchHeader>, StorageError> {
    validate_batches_for(records, max_message_bytes, false)
}

/// As [`validate_batches`]; with `keys_required` (a compacted topic, `cleanup.policy` holding
/// `compact`) a record with a null key is refused with `InvalidRecord` (Kafka: "Compacted topic
/// cannot accept message without key").
pub fn validate_batches_for(
    records: &[u8],
    max_message_bytes: u32,
    keys_required: bool,
) -> Result<Vec<BatchHeader>, StorageError> {
    validate_batches_from(
        records,
        max_message_bytes,
        keys_required,
        AppendOrigin::Client,
    )
}

/// Who appends: a client's produce (control batches refused) or a coordinator writing transaction
/// markers (Kafka's `AppendOrigin.Coordinator`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOrigin {
    Client,
    Coordinator,
}

/// As [`validate_batches_for`]; control batches pass when `origin` is the coordinator.
pub fn validate_batches_from(
    records: &[u8],
    max_message_bytes: u32,
    keys_required: bool,
    origin: AppendOrigin,
) -> Result<Vec<BatchHeader>, StorageError> {
    let mut headers = Vec::new();
    let mut position = 0usize;
    if records.is_empty() {
        return Err(StorageError::InvalidRecord("empty record set".into()));
    }
    while position < records.len() {
        let rest = &records[position..];
        if rest.len() >= LOG_OVERHEAD {
            let length = be_i32(rest, OFF_LENGTH);
            if length >= 0 {
                let size = LOG_OVERHEAD + length as usize;
                if size > max_message_bytes as usize {
                    return Err(StorageError::MessageTooLarge {
                        size,
                        max: max_message_bytes as usize,
                    });
                }
            }
        }
        match check_batch_at(rest, true) {
            BatchCheck::Valid(header) => {
                if header.records_count as i64 != header.last_offset_delta as i64 + 1 {
                    return Err(StorageError::InvalidRecord(format!(
                        "recordsCount {} does not match lastOffsetDelta {}",
                        header.records_count, header.last_offset_delta
                    )));
                }
                if header.records_count == 0 {
                    return Err(StorageError::InvalidRecord("empty batch".into()));
                }
                if header.is_control() && origin == AppendOrigin::Client {
                    return Err(StorageError::InvalidRecord(
                        "clients may not produce control batches".into(),
                    ));
                }
                let summary =
                    crate::records::validate_records(&header, &rest[..header.total_size()])?;
                if keys_required && summary.has_null_key && !header.is_control() {
                    // The error path only: walk again to name every keyless record.
                    let mut record_indexes = Vec::new();
                    crate::records::for_each_record(
                        &header,
                        &rest[..header.total_size()],
                        |record| {
                            if record.key.is_none() {
                                record_indexes.push(record.offset_delta);
                            }
                        },
                    )?;
                    return Err(StorageError::RecordsWithoutKey { record_indexes });
                }
                let mut header = header;
                if !header.is_log_append_time() {
                    // The log rewrites a wrong maxTimestamp (see `set_max_timestamp`).
                    header.max_timestamp = summary.max_timestamp;
                }
                position += header.total_size();
                headers.push(header);
            }
            BatchCheck::Incomplete => {
                return Err(StorageError::CorruptMessage(
                    "record set ends with a truncated batch".into(),
                ))
            }
            BatchCheck::Invalid(error) => return Err(error),
        }
    }
    Ok(headers)
}

/// Writes the base offset (bytes 0..8; not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base: i64) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base.to_be_bytes());
}

/// Writes the partition leader epoch (bytes 12..16; not covered by the CRC).
pub fn set_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Writes a CreateTime batch's maxTimestamp (a producer's was wrong: Kafka corrects it too) and
/// recomputes the CRC; header and body as in [`set_log_append_time`].
pub fn set_max_timestamp(header: &mut [u8], body: &[u8], max_timestamp: i64) {
    assert_eq!(header.len(), HEADER_SIZE);
    header[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[OFF_ATTRIBUTES..]), body);
    header[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Marks a batch LogAppendTime with `now_ms` as its max timestamp and recomputes its CRC. The batch is
/// given as its header (the first [`HEADER_SIZE`] bytes, changed here) and its body (the records, read
/// only): the log keeps the two apart so that only the header is copied out of the request.
pub fn set_log_append_time(header: &mut [u8], body: &[u8], now_ms: i64) {
    assert_eq!(header.len(), HEADER_SIZE);
    let attributes = be_i16(header, OFF_ATTRIBUTES) | ATTR_TIMESTAMP_TYPE;
    header[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    header[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[OFF_ATTRIBUTES..]), body);
    header[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Iterates over the complete batches of a byte range (headers only, no CRC check), yielding
/// `(position, header)`. Stops at the first incomplete or invalid batch.
pub fn iter_batches(bytes: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut position = 0usize;
    std::iter::from_fn(move || match check_batch_at(&bytes[position..], false) {
        BatchCheck::Valid(header) => {
            let at = position;
            position += header.total_size();
            Some((at, header))
        }
        _ => None,
    })
}

/// Builders for tests (here and in other crates): uncompressed v2 batches.
pub mod testing {
    use super::*;

    /// Appends `value` as a zigzag varint (the record format's integers).
    pub fn varint(out: &mut Vec<u8>, value: i64) {
        let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
        loop {
            if zigzag < 0x80 {
                out.push(zigzag as u8);
                return;
            }
            out.push((zigzag as u8 & 0x7f) | 0x80);
            zigzag >>= 7;
        }
    }

    /// Parameters of a test batch.
    #[derive(Clone, Debug)]
    pub struct BatchSpec {
        pub producer_id: i64,
        pub producer_epoch: i16,
        pub base_sequence: i32,
        pub base_timestamp: i64,
        /// Per-record timestamp deltas (also sets the record count).
        pub timestamp_deltas: Vec<i64>,
        pub value_size: usize,
        pub transactional: bool,
    }

    impl Default for BatchSpec {
        fn default() -> Self {
            BatchSpec {
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                base_timestamp: 1_000,
                timestamp_deltas: vec![0],
                value_size: 10,
                transactional: false,
            }
        }
    }

    /// Encodes an uncompressed v2 batch with base offset 0 and a valid CRC. Record `index`'s value is
    /// `value_size` bytes of `index as u8`.
    pub fn build_batch(spec: &BatchSpec) -> Vec<u8> {
        let mut records = Vec::new();
        for (index, delta) in spec.timestamp_deltas.iter().enumerate() {
            let mut record = Vec::new();
            record.push(0u8); // attributes
            varint(&mut record, *delta);
            varint(&mut record, index as i64);
            varint(&mut record, -1); // null key
            varint(&mut record, spec.value_size as i64);
            record.extend(std::iter::repeat_n(index as u8, spec.value_size));
            varint(&mut record, 0); // no headers
            varint(&mut records, record.len() as i64);
            records.extend_from_slice(&record);
        }
        let count = spec.timestamp_deltas.len() as i32;
        let max_timestamp =
            spec.base_timestamp + spec.timestamp_deltas.iter().copied().max().unwrap_or(0);
        let mut batch = Vec::with_capacity(HEADER_SIZE + records.len());
        batch.extend_from_slice(&0i64.to_be_bytes());
        batch.extend_from_slice(
            &((HEADER_SIZE - LOG_OVERHEAD + records.len()) as i32).to_be_bytes(),
        );
        batch.extend_from_slice(&(-1i32).to_be_bytes());
        batch.push(MAGIC as u8);
        batch.extend_from_slice(&0u32.to_be_bytes());
        let attributes: i16 = if spec.transactional {
            ATTR_TRANSACTIONAL
        } else {
            0
        };
        batch.extend_from_slice(&attributes.to_be_bytes());
        batch.extend_from_slice(&(count - 1).to_be_bytes());
        batch.extend_from_slice(&spec.base_timestamp.to_be_bytes());
        batch.extend_from_slice(&max_timestamp.to_be_bytes());
        batch.extend_from_slice(&spec.producer_id.to_be_bytes());
        batch.extend_from_slice(&spec.producer_epoch.to_be_bytes());
        batch.extend_from_slice(&spec.base_sequence.to_be_bytes());
        batch.extend_from_slice(&count.to_be_bytes());
        batch.extend_from_slice(&records);
        let crc = compute_crc(&batch);
        batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    /// An idempotent batch of producer 7 (epoch 0): `records` records from sequence `sequence`.
    pub fn idempotent_batch(sequence: i32, records: usize) -> Vec<u8> {
        build_batch(&BatchSpec {
            producer_id: 7,
            producer_epoch: 0,
            base_sequence: sequence,
            timestamp_deltas: vec![0; records],
            ..Default::default()
        })
    }

    /// A batch of `n` records, `value_size` bytes each, all with timestamp `ts`.
    pub fn simple_batch(n: usize, value_size: usize, ts: i64) -> Vec<u8> {
        build_batch(&BatchSpec {
            base_timestamp: ts,
            timestamp_deltas: vec![0; n],
            value_size,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn roundtrip_and_validate() {
        let b = simple_batch(3, 5, 42);
        let hs = validate_batches(&b, 1 << 20).unwrap();
        assert_eq!(hs.len(), 1);
        assert_eq!(hs[0].records_count, 3);
        assert_eq!(hs[0].last_offset_delta, 2);
        assert_eq!(hs[0].max_timestamp, 42);
        // kafka-protocol can decode what we build
        let mut buf = bytes::Bytes::from(b.clone());
        let rs = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf).unwrap();
        assert_eq!(rs.records.len(), 3);
        assert_eq!(rs.records[2].value.as_ref().unwrap().len(), 5);
    }

    #[test]
    fn validation_errors() {
        let mut b = simple_batch(1, 5, 1);
        let n = b.len();
        b[n - 3] ^= 0xff;
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::CorruptMessage(_))
        ));
        let b = simple_batch(10, 100, 1);
        assert!(matches!(
            validate_batches(&b, 100),
            Err(StorageError::MessageTooLarge { .. })
        ));
        let mut b = simple_batch(1, 5, 1);
        b[16] = 1;
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::UnsupportedMagic(1))
        ));
        let b = simple_batch(1, 5, 1);
        assert!(matches!(
            validate_batches(&b[..b.len() - 1], 1 << 20),
            Err(StorageError::CorruptMessage(_))
        ));
        // recordsCount inconsistent with lastOffsetDelta
        let mut b = simple_batch(2, 5, 1);
        b[57..61].copy_from_slice(&1i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            validate_batches(&b, 1 << 20),
            Err(StorageError::InvalidRecord(_))
        ));
    }

    #[test]
    fn log_append_time_keeps_crc_valid() {
        let mut b = simple_batch(2, 5, 1);
        set_base_offset(&mut b, 77);
        set_leader_epoch(&mut b, 3);
        let (header, body) = b.split_at_mut(HEADER_SIZE);
        set_log_append_time(header, body, 999);
        let h = validate_batches(&b, 1 << 20).unwrap()[0];
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 999);
        assert_eq!(h.base_offset, 77);
        assert_eq!(h.partition_leader_epoch, 3);
    }

    #[test]
    fn sequence_wraps() {
        let mut b = build_batch(&BatchSpec {
            producer_id: 1,
            producer_epoch: 0,
            base_sequence: i32::MAX - 1,
            timestamp_deltas: vec![0; 4],
            ..Default::default()
        });
        let h = BatchHeader::parse(&b);
        assert_eq!(h.last_sequence(), 1);
        set_base_offset(&mut b, 1);
    }
}
