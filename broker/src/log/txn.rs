//! Transactions on the log: control batches carrying end-transaction markers and the
//! aborted-transaction index (`<base offset>.txnindex`) kept beside each segment.
//!
//! A transaction coordinator ends a transaction by having each partition's leader append a
//! control batch: attributes bit 4 (transactional) and bit 5 (control), the producer's id and
//! epoch, no sequence, and one record whose key is `version: i16 = 0, type: i16` (0 = ABORT,
//! 1 = COMMIT, Kafka's `ControlRecordType`) and whose value is `version: i16 = 0,
//! coordinator_epoch: i32` (Kafka's `EndTransactionMarker`).
//!
//! Every aborted transaction is recorded in the index of the segment its ABORT marker lands
//! in, as Kafka's `TransactionIndex` does: 34-byte entries `version: i16 = 0, producer_id:
//! i64, first_offset: i64, last_offset: i64, last_stable_offset: i64`, in marker order. A
//! read_committed fetch returns the entries overlapping what it read, so the consumer can
//! drop the aborted records. The file is derived data: the log rebuilds it from the batches
//! whenever it reloads a segment, so it needs no fsync of its own. Like Kafka's, the file
//! exists only for segments that hold an abort marker.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::batch::{self, BatchHeader, HEADER_SIZE};
use super::error::{Error, IoContext, Result};
use super::segment::file_name;

/// File suffix of a segment's aborted-transaction index.
pub(crate) const TXN_INDEX_SUFFIX: &str = "txnindex";

/// Size of one index entry (Kafka's `AbortedTxn.TOTAL_SIZE`).
pub(crate) const ABORTED_TXN_SIZE: usize = 34;

/// Attribute bits of a control batch written for a transaction marker: transactional (4)
/// and control (5), uncompressed, CreateTime.
const MARKER_ATTRIBUTES: i16 = (1 << 4) | (1 << 5);

/// Which way a transaction ended (Kafka's `ControlRecordType` ABORT / COMMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlRecordType {
    /// The transaction's records are to be dropped by read_committed consumers.
    Abort,
    /// The transaction's records become visible to read_committed consumers.
    Commit,
}

impl ControlRecordType {
    fn code(self) -> i16 {
        match self {
            ControlRecordType::Abort => 0,
            ControlRecordType::Commit => 1,
        }
    }
}

/// An end-transaction marker: how the transaction ended and the epoch of the coordinator
/// that decided it (a marker from an older coordinator epoch is fenced).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    /// Commit or abort.
    pub control_type: ControlRecordType,
    /// Epoch of the `__transaction_state` partition leadership that wrote the marker.
    pub coordinator_epoch: i32,
}

/// A transaction the log saw end: from its first data offset to its marker's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CompletedTxn {
    pub(crate) producer_id: i64,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    pub(crate) aborted: bool,
}

/// One entry of the aborted-transaction index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of the ABORT marker.
    pub last_offset: i64,
    /// The last stable offset right after the marker: a fetch whose range ends at or below
    /// it needs no entry written later, so the search stops there.
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    fn encode(&self) -> [u8; ABORTED_TXN_SIZE] {
        let mut b = [0u8; ABORTED_TXN_SIZE];
        // Version 0 in the first two bytes (already zero).
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    fn decode(b: &[u8]) -> Option<AbortedTxn> {
        let long = |at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(b.get(at..at + 8)?.try_into().ok()?))
        };
        let version = i16::from_be_bytes(b.get(0..2)?.try_into().ok()?);
        if version != 0 {
            return None;
        }
        Some(AbortedTxn {
            producer_id: long(2)?,
            first_offset: long(10)?,
            last_offset: long(18)?,
            last_stable_offset: long(26)?,
        })
    }
}

/// Path of the aborted-transaction index of the segment based at `base_offset`.
pub(crate) fn txn_index_path(dir: &Path, base_offset: i64) -> PathBuf {
    dir.join(file_name(base_offset, TXN_INDEX_SUFFIX))
}

/// Reads a segment's index; a missing file is an empty index. `None` if the file is not a
/// valid index (wrong size, unknown version): the caller rewrites it from the log.
pub(crate) fn read_txn_index(path: &Path) -> Result<Option<Vec<AbortedTxn>>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Some(Vec::new())),
        Err(e) => return Err(Error::io("reading", path, e)),
    };
    if bytes.len() % ABORTED_TXN_SIZE != 0 {
        return Ok(None);
    }
    Ok(bytes
        .chunks_exact(ABORTED_TXN_SIZE)
        .map(AbortedTxn::decode)
        .collect())
}

/// Replaces a segment's index with `entries` (removes the file when there are none),
/// through a `.tmp` file and a rename so a crash leaves the old or the new index.
pub(crate) fn write_txn_index(path: &Path, entries: &[AbortedTxn]) -> Result<()> {
    if entries.is_empty() {
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("deleting", path, e)),
        };
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let bytes: Vec<u8> = entries.iter().flat_map(AbortedTxn::encode).collect();
    std::fs::write(&tmp, bytes).ctx("writing", &tmp)?;
    std::fs::rename(&tmp, path).ctx("renaming", &tmp)
}

/// Appends one entry to a segment's index (creating the file), as the ABORT marker is
/// appended to the segment.
pub(crate) fn append_txn_index(path: &Path, entry: &AbortedTxn) -> Result<()> {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .ctx("opening", path)?;
    f.write_all(&entry.encode()).ctx("writing", path)
}

/// Encodes the control batch of a marker as a leader appends it (base offset 0, patched
/// at append like any batch): one record at offset delta 0 with the marker's key and value.
pub(crate) fn encode_marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: EndTxnMarker,
    timestamp: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.control_type.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&marker.coordinator_epoch.to_be_bytes());
    let mut body = Vec::with_capacity(16);
    body.push(0u8); // record attributes
    put_varint(&mut body, 0); // timestamp delta
    put_varint(&mut body, 0); // offset delta
    put_varint(&mut body, key.len() as i64);
    body.extend_from_slice(&key);
    put_varint(&mut body, value.len() as i64);
    body.extend_from_slice(&value);
    put_varint(&mut body, 0); // no headers
    let mut record = Vec::with_capacity(body.len() + 2);
    put_varint(&mut record, body.len() as i64);
    record.extend_from_slice(&body);
    let header = BatchHeader {
        base_offset: 0,
        batch_length: 0,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: MARKER_ATTRIBUTES,
        last_offset_delta: 0,
        base_timestamp: timestamp,
        max_timestamp: timestamp,
        producer_id,
        producer_epoch,
        base_sequence: -1,
        records_count: 1,
    };
    batch::encode_batch(&header, &record)
}

/// Decodes the marker of a control batch (`bytes` is the whole batch). `Ok(None)` for a
/// control batch without records (the cleaner may empty one) or with a record type other
/// than COMMIT/ABORT, which complete no transaction; an error if the record is malformed.
pub(crate) fn parse_marker(bytes: &[u8], h: &BatchHeader) -> Result<Option<EndTxnMarker>> {
    let corrupt = || {
        Error::CorruptMessage(format!(
            "control batch at offset {} is malformed",
            h.base_offset
        ))
    };
    if h.records_count <= 0 {
        return Ok(None);
    }
    let mut r = Reader {
        b: bytes.get(HEADER_SIZE..).ok_or_else(corrupt)?,
    };
    r.varint().ok_or_else(corrupt)?; // record length
    r.take(1).ok_or_else(corrupt)?; // attributes
    r.varint().ok_or_else(corrupt)?; // timestamp delta
    r.varint().ok_or_else(corrupt)?; // offset delta
    let key_len = r.varint().ok_or_else(corrupt)?;
    if key_len < 4 {
        return Err(corrupt());
    }
    let key = r.take(key_len as usize).ok_or_else(corrupt)?;
    let control_type = match i16::from_be_bytes([key[2], key[3]]) {
        0 => ControlRecordType::Abort,
        1 => ControlRecordType::Commit,
        // Other control records (KRaft's) end no transaction.
        _ => return Ok(None),
    };
    let value_len = r.varint().ok_or_else(corrupt)?;
    if value_len < 6 {
        return Err(corrupt());
    }
    let value = r.take(value_len as usize).ok_or_else(corrupt)?;
    Ok(Some(EndTxnMarker {
        control_type,
        coordinator_epoch: i32::from_be_bytes([value[2], value[3], value[4], value[5]]),
    }))
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.b.get(..n)?, self.b.get(n..)?);
        self.b = tail;
        Some(head)
    }

    /// A zig-zag varint (Kafka's varint/varlong encoding), at most 10 bytes.
    fn varint(&mut self) -> Option<i64> {
        let mut z: u64 = 0;
        for i in 0..10 {
            let byte = *self.take(1)?.first()?;
            z |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Some((z >> 1) as i64 ^ -((z & 1) as i64));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_batches_round_trip_and_decode_with_kafka_protocol() {
        let marker = EndTxnMarker {
            control_type: ControlRecordType::Commit,
            coordinator_epoch: 7,
        };
        let b = encode_marker_batch(42, 3, marker, 1_000);
        let h = BatchHeader::parse(&b).unwrap();
        assert!(h.is_control() && h.is_transactional());
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (42, 3, -1)
        );
        assert!(batch::crc_matches(&h, &b));
        assert_eq!(parse_marker(&b, &h).unwrap(), Some(marker));
        // An independent decoder sees one control record with Kafka's key and value.
        let mut bytes = bytes::Bytes::from(b);
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).unwrap();
        let records = decoded.records;
        assert_eq!(records.len(), 1);
        assert!(records[0].control && records[0].transactional);
        assert_eq!(records[0].key.as_deref(), Some(&[0u8, 0, 0, 1][..]));
        assert_eq!(records[0].value.as_deref(), Some(&[0u8, 0, 0, 0, 0, 7][..]));
    }

    #[test]
    fn index_entries_use_kafkas_34_byte_layout() {
        let dir = tempfile::tempdir().unwrap();
        let path = txn_index_path(dir.path(), 100);
        assert_eq!(path.file_name().unwrap(), "00000000000000000100.txnindex");
        let a = AbortedTxn {
            producer_id: 5,
            first_offset: 100,
            last_offset: 110,
            last_stable_offset: 111,
        };
        append_txn_index(&path, &a).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw.len(), 34);
        assert_eq!(&raw[0..2], &[0, 0]);
        assert_eq!(&raw[2..10], &5i64.to_be_bytes());
        assert_eq!(&raw[26..34], &111i64.to_be_bytes());
        assert_eq!(read_txn_index(&path).unwrap(), Some(vec![a]));
        write_txn_index(&path, &[]).unwrap();
        assert!(!path.exists());
        std::fs::write(&path, [1u8; 5]).unwrap();
        assert_eq!(read_txn_index(&path).unwrap(), None);
    }
}
