//! Record batch (magic v2) header parsing, client-batch validation and in-place patching.
//!
//! Batches are stored byte-for-byte as the producer sent them; the broker only patches the
//! fields that lie outside the CRC (base offset, partition leader epoch), plus the
//! timestamp type / max timestamp for `LogAppendTime` topics (which requires a new CRC).
//! Records themselves are never decoded on the append path.

use super::config::TimestampType;
use super::error::{Error, Result};

/// Bytes before the `batchLength` field's coverage starts (baseOffset + batchLength).
pub(crate) const LOG_OVERHEAD: usize = 12;
/// Size of a v2 batch header, i.e. of a batch with no records.
pub(crate) const HEADER_SIZE: usize = 61;

const BASE_OFFSET_POS: usize = 0;
const LENGTH_POS: usize = 8;
const LEADER_EPOCH_POS: usize = 12;
const MAGIC_POS: usize = 16;
const CRC_POS: usize = 17;
const ATTRIBUTES_POS: usize = 21;
const LAST_OFFSET_DELTA_POS: usize = 23;
const BASE_TIMESTAMP_POS: usize = 27;
const MAX_TIMESTAMP_POS: usize = 35;
const PRODUCER_ID_POS: usize = 43;
const PRODUCER_EPOCH_POS: usize = 51;
const BASE_SEQUENCE_POS: usize = 53;
const RECORDS_COUNT_POS: usize = 57;

pub(crate) const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
/// Attribute bit 6 (KIP-534): the base timestamp holds the batch's delete horizon.
pub(crate) const DELETE_HORIZON_BIT: i16 = 1 << 6;

/// Highest compression codec id Kafka defines (zstd).
const MAX_COMPRESSION_ID: i16 = 4;

/// The fixed-size header of a v2 record batch, decoded from big-endian bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) base_offset: i64,
    pub(crate) batch_length: i32,
    pub(crate) partition_leader_epoch: i32,
    pub(crate) magic: i8,
    pub(crate) crc: u32,
    pub(crate) attributes: i16,
    pub(crate) last_offset_delta: i32,
    pub(crate) base_timestamp: i64,
    pub(crate) max_timestamp: i64,
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
    pub(crate) base_sequence: i32,
    pub(crate) records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Decodes the header from the first [`HEADER_SIZE`] bytes of `b`; `None` if `b` is
    /// shorter. Performs no validation: callers decide what is acceptable.
    pub(crate) fn parse(b: &[u8]) -> Option<BatchHeader> {
        if b.len() < HEADER_SIZE {
            return None;
        }
        Some(BatchHeader {
            base_offset: be_i64(b, BASE_OFFSET_POS),
            batch_length: be_i32(b, LENGTH_POS),
            partition_leader_epoch: be_i32(b, LEADER_EPOCH_POS),
            magic: b[MAGIC_POS] as i8,
            crc: be_i32(b, CRC_POS) as u32,
            attributes: be_i16(b, ATTRIBUTES_POS),
            last_offset_delta: be_i32(b, LAST_OFFSET_DELTA_POS),
            base_timestamp: be_i64(b, BASE_TIMESTAMP_POS),
            max_timestamp: be_i64(b, MAX_TIMESTAMP_POS),
            producer_id: be_i64(b, PRODUCER_ID_POS),
            producer_epoch: be_i16(b, PRODUCER_EPOCH_POS),
            base_sequence: be_i32(b, BASE_SEQUENCE_POS),
            records_count: be_i32(b, RECORDS_COUNT_POS),
        })
    }

    /// Total size of the batch on disk, including baseOffset and batchLength.
    pub(crate) fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record in the batch.
    pub(crate) fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset one past the batch.
    pub(crate) fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Whether the batch carries `LogAppendTime` (attribute bit 3).
    pub(crate) fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// Whether the batch holds control records (attribute bit 5).
    pub(crate) fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether the batch belongs to a transaction (attribute bit 4).
    pub(crate) fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// Compression codec id (attribute bits 0-2).
    pub(crate) fn compression(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }

    /// The delete horizon set by the log cleaner (KIP-534): stored in the base timestamp
    /// when attribute bit 6 is set; tombstones in the batch may go once it has passed.
    pub(crate) fn delete_horizon(&self) -> Option<i64> {
        (self.attributes & DELETE_HORIZON_BIT != 0).then_some(self.base_timestamp)
    }

    /// Sequence number of the last record (sequence numbers wrap at `i32::MAX`).
    pub(crate) fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        if last > i64::from(i32::MAX) {
            (last - i64::from(i32::MAX) - 1) as i32
        } else {
            last as i32
        }
    }

    /// Whether the batch is from an idempotent/transactional producer.
    pub(crate) fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Serialises a v2 batch from `h` (batch length, magic and CRC are computed; the other
/// fields are written as given) followed by `payload` (the records, compressed as
/// `h.attributes` says).
pub(crate) fn encode_batch(h: &BatchHeader, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_SIZE + payload.len());
    b.extend_from_slice(&h.base_offset.to_be_bytes());
    let length = (HEADER_SIZE - LOG_OVERHEAD + payload.len()) as i32;
    b.extend_from_slice(&length.to_be_bytes());
    b.extend_from_slice(&h.partition_leader_epoch.to_be_bytes());
    b.push(2u8);
    b.extend_from_slice(&[0u8; 4]);
    b.extend_from_slice(&h.attributes.to_be_bytes());
    b.extend_from_slice(&h.last_offset_delta.to_be_bytes());
    b.extend_from_slice(&h.base_timestamp.to_be_bytes());
    b.extend_from_slice(&h.max_timestamp.to_be_bytes());
    b.extend_from_slice(&h.producer_id.to_be_bytes());
    b.extend_from_slice(&h.producer_epoch.to_be_bytes());
    b.extend_from_slice(&h.base_sequence.to_be_bytes());
    b.extend_from_slice(&h.records_count.to_be_bytes());
    debug_assert_eq!(b.len(), HEADER_SIZE);
    b.extend_from_slice(payload);
    let crc = compute_crc(&b);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// CRC-32C of a whole batch as Kafka defines it: from the attributes field to the end.
pub(crate) fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_POS..])
}

/// Checks the stored CRC of a complete batch (`batch.len()` equals its declared size).
pub(crate) fn crc_matches(header: &BatchHeader, batch: &[u8]) -> bool {
    batch.len() >= HEADER_SIZE && compute_crc(batch) == header.crc
}

/// A client batch that passed validation: where it sits in the request and its header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ValidBatch {
    /// Byte position of the batch in the request buffer.
    pub(crate) pos: usize,
    /// Decoded header (base offset as sent by the client, i.e. 0).
    pub(crate) header: BatchHeader,
}

/// Validates a produce request's records exactly as Kafka does for client appends, without
/// decoding any record: framing, magic, CRC, size limit, offset/count consistency, no
/// control batches and sane producer fields. Returns the batches in order. Nothing is
/// modified, so a rejection leaves no trace.
#[cfg(test)]
pub(crate) fn validate_client_records(
    records: &[u8],
    max_message_bytes: i32,
) -> Result<Vec<ValidBatch>> {
    validate_records(records, max_message_bytes, AppendOrigin::Client)
}

/// Where an append as leader comes from (Kafka's `AppendOrigin`): a client's produce, or a
/// coordinator of this broker writing its internal topic. A coordinator's transactional
/// batches (offsets committed in a transaction) carry a producer id and epoch but no
/// sequence, so their sequences are not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer's records: every check.
    Client,
    /// A coordinator's records: no sequence checks.
    Coordinator,
}

/// [`validate_client_records`] for records from `origin`.
pub(crate) fn validate_records(
    records: &[u8],
    max_message_bytes: i32,
    origin: AppendOrigin,
) -> Result<Vec<ValidBatch>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < records.len() {
        let rest = &records[pos..];
        if rest.len() < LOG_OVERHEAD + 5 {
            return Err(Error::CorruptMessage(format!(
                "{} trailing bytes at position {pos} do not form a record batch",
                rest.len()
            )));
        }
        let batch_length = be_i32(rest, LENGTH_POS);
        let magic = rest[MAGIC_POS] as i8;
        if magic != 2 {
            // Kafka rejects pre-v2 formats before looking further at the bytes.
            return Err(Error::UnsupportedMessageFormat(magic));
        }
        if batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
            return Err(Error::CorruptMessage(format!(
                "batch at position {pos} declares length {batch_length}, less than the v2 header"
            )));
        }
        let size = LOG_OVERHEAD + batch_length as usize;
        if size > rest.len() {
            return Err(Error::CorruptMessage(format!(
                "batch at position {pos} declares {size} bytes but only {} remain",
                rest.len()
            )));
        }
        if max_message_bytes >= 0 && size > max_message_bytes as usize {
            return Err(Error::MessageTooLarge {
                size,
                max: max_message_bytes,
            });
        }
        let bytes = &rest[..size];
        let header = BatchHeader::parse(bytes).ok_or_else(|| {
            Error::CorruptMessage(format!(
                "batch at position {pos} is shorter than its header"
            ))
        })?;
        if !crc_matches(&header, bytes) {
            return Err(Error::CorruptMessage(format!(
                "batch at position {pos} fails its CRC (stored {:#010x}, computed {:#010x})",
                header.crc,
                compute_crc(bytes)
            )));
        }
        let compression = header.attributes & COMPRESSION_MASK;
        if compression > MAX_COMPRESSION_ID {
            return Err(Error::CorruptMessage(format!(
                "batch at position {pos} uses unknown compression codec {compression}"
            )));
        }
        if header.base_offset != 0 {
            return Err(Error::InvalidRecord(format!(
                "the baseOffset of a client record batch should be 0, but it is {}",
                header.base_offset
            )));
        }
        if header.last_offset_delta < 0 {
            return Err(Error::InvalidRecord(format!(
                "batch has an invalid lastOffsetDelta {}",
                header.last_offset_delta
            )));
        }
        if header.records_count <= 0 {
            return Err(Error::InvalidRecord(format!(
                "invalid reported count for record batch: {}",
                header.records_count
            )));
        }
        if i64::from(header.records_count) != i64::from(header.last_offset_delta) + 1 {
            return Err(Error::InvalidRecord(format!(
                "inconsistent batch offset range: lastOffsetDelta {} but {} records",
                header.last_offset_delta, header.records_count
            )));
        }
        if header.is_control() {
            return Err(Error::InvalidRecord(
                "clients are not allowed to write control records".into(),
            ));
        }
        if origin == AppendOrigin::Client && header.has_producer_id() && header.base_sequence < 0 {
            return Err(Error::InvalidRecord(format!(
                "invalid sequence number {} in record batch with producerId {}",
                header.base_sequence, header.producer_id
            )));
        }
        out.push(ValidBatch { pos, header });
        pos += size;
    }
    Ok(out)
}

/// Stamps a validated batch (the slice is exactly one batch) with its log offset and leader
/// epoch and applies the topic's timestamp type. Offset and epoch lie before the CRC'd
/// region; the timestamp rewrite does not, so the CRC is recomputed only then.
/// Returns the batch's max timestamp as it will be stored.
pub(crate) fn patch_for_append(
    batch: &mut [u8],
    base_offset: i64,
    leader_epoch: i32,
    timestamp_type: TimestampType,
    now_ms: i64,
) -> i64 {
    batch[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_be_bytes());
    batch[LEADER_EPOCH_POS..LEADER_EPOCH_POS + 4].copy_from_slice(&leader_epoch.to_be_bytes());
    let attributes = be_i16(batch, ATTRIBUTES_POS);
    let max_ts = be_i64(batch, MAX_TIMESTAMP_POS);
    let (new_attributes, new_max_ts) = match timestamp_type {
        TimestampType::LogAppendTime => (attributes | TIMESTAMP_TYPE_BIT, now_ms),
        // A client may not claim LogAppendTime on a CreateTime topic; Kafka clears the bit.
        TimestampType::CreateTime => (attributes & !TIMESTAMP_TYPE_BIT, max_ts),
    };
    if new_attributes != attributes || new_max_ts != max_ts {
        batch[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&new_attributes.to_be_bytes());
        batch[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&new_max_ts.to_be_bytes());
        let crc = compute_crc(batch);
        batch[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    }
    new_max_ts
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Builders for real v2 batches via kafka-protocol's encoder.
    use super::{compute_crc, BatchHeader, BASE_SEQUENCE_POS, CRC_POS};
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// Options for a test batch.
    #[derive(Clone, Debug)]
    pub(crate) struct Spec {
        pub(crate) count: usize,
        pub(crate) value_size: usize,
        pub(crate) timestamp: i64,
        pub(crate) ts_step: i64,
        pub(crate) producer_id: i64,
        pub(crate) producer_epoch: i16,
        pub(crate) base_sequence: i32,
        pub(crate) compression: Compression,
        /// Sets attribute bit 4: the batch belongs to a transaction.
        pub(crate) transactional: bool,
    }

    impl Default for Spec {
        fn default() -> Self {
            Spec {
                count: 1,
                value_size: 10,
                timestamp: 1_000,
                ts_step: 1,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
                compression: Compression::None,
                transactional: false,
            }
        }
    }

    /// Encodes one batch as a client would send it (base offset 0).
    pub(crate) fn batch(spec: &Spec) -> Vec<u8> {
        let records: Vec<Record> = (0..spec.count)
            .map(|i| Record {
                transactional: spec.transactional,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: spec.producer_id,
                producer_epoch: spec.producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder splits batches where `offset - sequence` changes, so number
                // records even without a producer id and patch the header afterwards.
                sequence: spec.base_sequence.max(0).wrapping_add(i as i32),
                timestamp: spec.timestamp + spec.ts_step * i as i64,
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![b'v'; spec.value_size])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: spec.compression,
            },
        )
        .unwrap();
        let mut out = buf.to_vec();
        if spec.base_sequence < 0 {
            // Non-idempotent clients send baseSequence -1.
            out[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&(-1i32).to_be_bytes());
            let crc = compute_crc(&out);
            out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        }
        assert_eq!(
            BatchHeader::parse(&out).unwrap().size(),
            out.len(),
            "test batch must be a single batch"
        );
        out
    }

    /// A plain batch of `count` records with timestamps `ts, ts+1, ...`.
    pub(crate) fn simple(count: usize, ts: i64) -> Vec<u8> {
        batch(&Spec {
            count,
            timestamp: ts,
            ..Spec::default()
        })
    }

    /// A transactional batch (idempotent, attribute bit 4 set).
    pub(crate) fn transactional(count: usize, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
        batch(&Spec {
            count,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            timestamp: crate::log::segment::wall_clock_ms(),
            transactional: true,
            ..Spec::default()
        })
    }

    /// An idempotent batch.
    pub(crate) fn idempotent(count: usize, pid: i64, epoch: i16, seq: i32) -> Vec<u8> {
        batch(&Spec {
            count,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            // Recent, so producer-state expiration (by record time, as in Kafka) keeps it.
            timestamp: crate::log::segment::wall_clock_ms(),
            ..Spec::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn parses_encoder_output() {
        let b = simple(3, 500);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.size(), b.len());
        assert_eq!(h.magic, 2);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.records_count, 3);
        assert_eq!(h.base_timestamp, 500);
        assert_eq!(h.max_timestamp, 502);
        assert!(crc_matches(&h, &b));
        assert_eq!(validate_client_records(&b, 1_000_000).unwrap().len(), 1);
    }

    #[test]
    fn rejects_bad_batches_with_kafka_codes() {
        let good = simple(2, 1);
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 1] ^= 0xff;
        assert_eq!(
            validate_client_records(&bad_crc, 1 << 20)
                .unwrap_err()
                .kafka_code(),
            2
        );
        let mut old_magic = good.clone();
        old_magic[MAGIC_POS] = 1;
        assert_eq!(
            validate_client_records(&old_magic, 1 << 20)
                .unwrap_err()
                .kafka_code(),
            43
        );
        assert_eq!(
            validate_client_records(&good, 10).unwrap_err().kafka_code(),
            10
        );
        let torn = &good[..good.len() - 3];
        assert_eq!(
            validate_client_records(torn, 1 << 20)
                .unwrap_err()
                .kafka_code(),
            2
        );
        // Inconsistent count: patch recordsCount and fix the CRC so only the count is wrong.
        let mut bad_count = good.clone();
        bad_count[RECORDS_COUNT_POS..RECORDS_COUNT_POS + 4].copy_from_slice(&5i32.to_be_bytes());
        let crc = compute_crc(&bad_count);
        bad_count[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_client_records(&bad_count, 1 << 20)
                .unwrap_err()
                .kafka_code(),
            87
        );
        // Control batch from a client.
        let mut control = good.clone();
        let attrs = be_i16(&control, ATTRIBUTES_POS) | CONTROL_BIT;
        control[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attrs.to_be_bytes());
        let crc = compute_crc(&control);
        control[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            validate_client_records(&control, 1 << 20)
                .unwrap_err()
                .kafka_code(),
            87
        );
    }

    #[test]
    fn log_append_time_patch_keeps_crc_valid() {
        let mut b = simple(2, 1);
        let ts = patch_for_append(&mut b, 42, 7, TimestampType::LogAppendTime, 999);
        assert_eq!(ts, 999);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.partition_leader_epoch, 7);
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 999);
        assert!(crc_matches(&h, &b));
    }

    #[test]
    fn last_sequence_wraps() {
        let b = idempotent(3, 1, 0, i32::MAX - 1);
        let h = BatchHeader::parse(&b).unwrap();
        assert_eq!(h.last_sequence(), 0);
    }
}
