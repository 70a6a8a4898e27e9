//! Producer state snapshots: `<20-digit offset>.snapshot` files in the partition directory,
//! each holding the producer state as it was just before that offset (Kafka's
//! `ProducerStateManager` snapshot files, byte-compatible with its `ProducerSnapshot`
//! version 1 so Kafka's tools read them and a Kafka broker loads ours).
//!
//! Layout (big endian):
//! ```text
//! Version               int16   (1)
//! Crc                   uint32  CRC32C of everything after this field
//! ProducerEntries       int32 count, then per producer:
//!   ProducerId          int64
//!   Epoch               int16
//!   LastSequence        int32   (-1 without a retained batch)
//!   LastOffset          int64   (-1 without a retained batch)
//!   OffsetDelta         int32   last minus first offset (and sequence) of the last batch
//!   Timestamp           int64   last batch or marker timestamp
//!   CoordinatorEpoch    int32
//!   CurrentTxnFirstOffset int64 (-1 without an open transaction)
//! ```
//! A snapshot keeps only the producer's last batch (as Kafka's does): after a load, a
//! retry of that batch is still a duplicate; older in-flight retries are out of order.
//!
//! Encoding and decoding are pure; the file helpers below only move bytes. Files are
//! written through a `.tmp` and a rename, so a crash leaves the old snapshot, the new one,
//! or none; a damaged one fails its CRC and the caller falls back to an older snapshot or
//! to replaying the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::checkpoint;
use super::error::{Error, IoContext, Result};
use super::segment::file_name;

/// Suffix of snapshot files (`00000000000000001234.snapshot`), Kafka's.
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";

/// The only version written and read (Kafka's `ProducerSnapshot` valid versions: 1).
const VERSION: i16 = 1;
const CRC_OFFSET: usize = 2;
const ENTRIES_OFFSET: usize = 6;
const ENTRY_SIZE: usize = 8 + 2 + 4 + 8 + 4 + 8 + 4 + 8;

/// One producer in a snapshot, with Kafka's field names and meanings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotEntry {
    pub(crate) producer_id: i64,
    pub(crate) epoch: i16,
    /// Last sequence of the last batch, -1 if no batch is retained.
    pub(crate) last_sequence: i32,
    /// Last offset of the last batch, -1 if no batch is retained.
    pub(crate) last_offset: i64,
    /// Last minus first offset of the last batch (0 without one).
    pub(crate) offset_delta: i32,
    /// Timestamp of the last batch or marker.
    pub(crate) timestamp: i64,
    pub(crate) coordinator_epoch: i32,
    /// First offset of the open transaction, -1 if none.
    pub(crate) current_txn_first_offset: i64,
}

/// Encodes a snapshot (entries in the given order).
pub(crate) fn encode(entries: &[SnapshotEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ENTRIES_OFFSET + 4 + entries.len() * ENTRY_SIZE);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    // A partition holds far fewer than 2^31 producers (each costs memory).
    out.extend_from_slice(&(entries.len() as i32).to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.producer_id.to_be_bytes());
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.last_sequence.to_be_bytes());
        out.extend_from_slice(&e.last_offset.to_be_bytes());
        out.extend_from_slice(&e.offset_delta.to_be_bytes());
        out.extend_from_slice(&e.timestamp.to_be_bytes());
        out.extend_from_slice(&e.coordinator_epoch.to_be_bytes());
        out.extend_from_slice(&e.current_txn_first_offset.to_be_bytes());
    }
    let crc = crc32c::crc32c(&out[ENTRIES_OFFSET..]);
    out[CRC_OFFSET..ENTRIES_OFFSET].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes a snapshot; `Err(reason)` if it is not a valid version 1 snapshot (unknown
/// version, CRC mismatch, wrong length, negative count): the caller ignores such a file.
pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Vec<SnapshotEntry>, String> {
    let be = |at: usize, n: usize| -> std::result::Result<&[u8], String> {
        bytes
            .get(at..at + n)
            .ok_or_else(|| format!("truncated at byte {at} of {}", bytes.len()))
    };
    let version = i16::from_be_bytes(fixed(be(0, 2)?));
    if version != VERSION {
        return Err(format!("unknown snapshot version {version}"));
    }
    let stored = u32::from_be_bytes(fixed(be(CRC_OFFSET, 4)?));
    let count = i32::from_be_bytes(fixed(be(ENTRIES_OFFSET, 4)?));
    let computed = crc32c::crc32c(&bytes[ENTRIES_OFFSET..]);
    if stored != computed {
        return Err(format!(
            "CRC mismatch (stored {stored:#010x}, computed {computed:#010x})"
        ));
    }
    let count = usize::try_from(count).map_err(|_| format!("negative entry count {count}"))?;
    let body = &bytes[ENTRIES_OFFSET + 4..];
    if count.checked_mul(ENTRY_SIZE) != Some(body.len()) {
        return Err(format!(
            "{count} entries need {} bytes, the file has {}",
            count.saturating_mul(ENTRY_SIZE),
            body.len()
        ));
    }
    Ok(body
        .chunks_exact(ENTRY_SIZE)
        .map(|c| SnapshotEntry {
            producer_id: i64::from_be_bytes(fixed(&c[0..8])),
            epoch: i16::from_be_bytes(fixed(&c[8..10])),
            last_sequence: i32::from_be_bytes(fixed(&c[10..14])),
            last_offset: i64::from_be_bytes(fixed(&c[14..22])),
            offset_delta: i32::from_be_bytes(fixed(&c[22..26])),
            timestamp: i64::from_be_bytes(fixed(&c[26..34])),
            coordinator_epoch: i32::from_be_bytes(fixed(&c[34..38])),
            current_txn_first_offset: i64::from_be_bytes(fixed(&c[38..46])),
        })
        .collect())
}

/// Copies a slice whose length the caller checked into an array.
fn fixed<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

/// Path of the snapshot taken at `offset`.
pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(file_name(offset, SNAPSHOT_SUFFIX))
}

/// Writes the snapshot at `offset` through a `.tmp` file and a rename. With `sync` the file
/// and the directory are fsynced (a clean close); without, the caller fsyncs it later (a
/// roll leaves it to the roll flush) or accepts losing it to a power failure, which only
/// costs a longer replay.
pub(crate) fn write(dir: &Path, offset: i64, entries: &[SnapshotEntry], sync: bool) -> Result<()> {
    let path = snapshot_path(dir, offset);
    let bytes = encode(entries);
    if sync {
        return checkpoint::write_atomic(&path, &bytes);
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, &bytes).ctx("writing", &tmp)?;
    std::fs::rename(&tmp, &path).ctx("renaming into place", &path)
}

/// Reads and decodes the snapshot at `path`: `Ok(Err(reason))` for a damaged file.
pub(crate) fn read(path: &Path) -> Result<std::result::Result<Vec<SnapshotEntry>, String>> {
    let bytes = std::fs::read(path).ctx("reading", path)?;
    Ok(decode(&bytes))
}

/// The snapshot files in `dir`, by offset.
pub(crate) fn list(dir: &Path) -> Result<BTreeMap<i64, PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).ctx("listing", dir)? {
        let entry = entry.ctx("listing", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some((offset, SNAPSHOT_SUFFIX)) = super::partition::parse_segment_name(name) {
            out.insert(offset, entry.path());
        }
    }
    Ok(out)
}

/// Deletes a snapshot file; a missing one is fine.
pub(crate) fn delete(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("deleting", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pid: i64) -> SnapshotEntry {
        SnapshotEntry {
            producer_id: pid,
            epoch: 3,
            last_sequence: 41,
            last_offset: 1_000 + pid,
            offset_delta: 9,
            timestamp: 1_700_000_000_000,
            coordinator_epoch: 2,
            current_txn_first_offset: if pid % 2 == 0 { 990 } else { -1 },
        }
    }

    #[test]
    fn round_trips_and_has_kafkas_layout() {
        let entries: Vec<_> = (1..=3).map(entry).collect();
        let bytes = encode(&entries);
        assert_eq!(bytes.len(), 2 + 4 + 4 + 3 * 46);
        assert_eq!(&bytes[0..2], &[0, 1], "version 1");
        assert_eq!(&bytes[6..10], &[0, 0, 0, 3], "entry count");
        assert_eq!(&bytes[10..18], &1i64.to_be_bytes(), "first producer id");
        assert_eq!(decode(&bytes).unwrap(), entries);
        assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    }

    /// A snapshot laid out field by field as Kafka's generated `ProducerSnapshot` v1 writer
    /// does (`MessageUtil.toVersionPrefixedByteBuffer`, then the CRC32C of the bytes from
    /// offset 6 written at offset 2) for one producer: id 1000, epoch 0, sequences 0..=4 at
    /// offsets 0..=4, no transaction. Reads as such, and encodes back to the same bytes.
    #[test]
    fn reads_a_snapshot_as_kafka_writes_it() {
        let e = SnapshotEntry {
            producer_id: 1000,
            epoch: 0,
            last_sequence: 4,
            last_offset: 4,
            offset_delta: 4,
            timestamp: 1_700_000_000_000,
            coordinator_epoch: -1,
            current_txn_first_offset: -1,
        };
        let mut kafka = vec![0u8, 1];
        let mut body = Vec::new();
        body.extend_from_slice(&1i32.to_be_bytes());
        body.extend_from_slice(&1000i64.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&4i64.to_be_bytes());
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&1_700_000_000_000i64.to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&(-1i64).to_be_bytes());
        kafka.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        kafka.extend_from_slice(&body);
        assert_eq!(decode(&kafka).unwrap(), vec![e]);
        assert_eq!(encode(&[e]), kafka);
    }

    #[test]
    fn rejects_damaged_files() {
        let good = encode(&[entry(1), entry(2)]);
        // A flipped bit anywhere after the CRC field fails the CRC.
        for at in [6, 20, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x10;
            assert!(decode(&bad).unwrap_err().contains("CRC"), "byte {at}");
        }
        // Torn writes: every strict prefix is rejected.
        for len in 0..good.len() {
            assert!(decode(&good[..len]).is_err(), "prefix of {len} bytes");
        }
        let mut v2 = good.clone();
        v2[1] = 2;
        assert!(decode(&v2).unwrap_err().contains("version"));
        // A CRC-valid file whose count disagrees with its length.
        let mut short = encode(&[entry(1)]);
        short[9] = 2;
        let crc = crc32c::crc32c(&short[6..]);
        short[2..6].copy_from_slice(&crc.to_be_bytes());
        assert!(decode(&short).unwrap_err().contains("entries"));
    }

    #[test]
    fn files_are_listed_by_offset_and_rewritten_atomically() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 200, &[entry(1)], false).unwrap();
        write(dir.path(), 7, &[entry(2)], true).unwrap();
        std::fs::write(dir.path().join("00000000000000000007.log"), b"").unwrap();
        let listed = list(dir.path()).unwrap();
        assert_eq!(listed.keys().copied().collect::<Vec<_>>(), vec![7, 200]);
        assert_eq!(
            listed[&200].file_name().unwrap(),
            "00000000000000000200.snapshot"
        );
        assert_eq!(read(&listed[&7]).unwrap().unwrap(), vec![entry(2)]);
        assert!(!dir
            .path()
            .join("00000000000000000200.snapshot.tmp")
            .exists());
        delete(&listed[&7]).unwrap();
        delete(&listed[&7]).unwrap();
        assert_eq!(list(dir.path()).unwrap().len(), 1);
    }
}
