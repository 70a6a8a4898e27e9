//! Behavioural tests of the partition log and the log manager: what a user of the broker
//! would notice (data read back intact, offsets, files on disk, recovery, retention).

mod compaction;
mod snapshots;
mod transactions;

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};

use super::batch::test_util::{batch, idempotent, simple, Spec};
use super::batch::{crc_matches, patch_for_append, BatchHeader};
use super::*;

fn tp() -> TopicPartition {
    TopicPartition::new("orders", 0)
}

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn part_dir(root: &Path) -> PathBuf {
    root.join("orders-0")
}

fn open(root: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(&part_dir(root), tp(), config).unwrap()
}

/// Parses concatenated stored batches into headers.
fn headers(mut bytes: &[u8]) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let h = BatchHeader::parse(bytes).unwrap();
        assert!(crc_matches(&h, &bytes[..h.size()]), "stored batch CRC");
        out.push(h);
        bytes = &bytes[h.size()..];
    }
    out
}

fn read_all(log: &PartitionLog, from: i64) -> Bytes {
    log.read(from, usize::MAX, i64::MAX, true).unwrap().records
}

fn log_files(dir: &Path, ext: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(&format!(".{ext}")))
        .collect();
    v.sort();
    v
}

#[test]
fn appended_batches_read_back_byte_identical() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    let sent = [simple(3, 100), simple(1, 200), simple(5, 300)];
    let mut expected = Vec::new();
    let mut next = 0;
    for b in &sent {
        let info = log.append(b, 7, 1_000).unwrap();
        assert_eq!(info.base_offset, next);
        assert!(!info.duplicate);
        assert_eq!(info.log_append_time, -1);
        let mut stored = b.clone();
        patch_for_append(&mut stored, next, 7, TimestampType::CreateTime, 0);
        // Only the (un-CRC'd) offset and epoch fields differ from what was sent.
        assert_eq!(&stored[21..], &b[21..]);
        expected.extend_from_slice(&stored);
        next = info.last_offset + 1;
    }
    assert_eq!(log.log_end_offset(), 9);
    assert_eq!(log.high_watermark(), 9);
    let data = read_all(&log, 0);
    assert_eq!(&data[..], &expected[..]);
    // Records decode with contiguous offsets.
    let mut buf = data.clone();
    let sets = RecordBatchDecoder::decode_all(&mut buf).unwrap();
    let offsets: Vec<i64> = sets
        .iter()
        .flat_map(|s| s.records.iter().map(|r| r.offset))
        .collect();
    assert_eq!(offsets, (0..9).collect::<Vec<_>>());
    // Reading from inside a batch starts with the whole batch containing the offset.
    let hs = headers(&log.read(5, usize::MAX, i64::MAX, false).unwrap().records);
    assert_eq!(hs[0].base_offset, 4);
    assert_eq!(hs.len(), 1);
    assert_eq!(headers(&read_all(&log, 3)).len(), 2);
    // Files exist with Kafka names.
    let dir = part_dir(root.path());
    assert_eq!(log_files(&dir, "log"), vec!["00000000000000000000.log"]);
    assert!(dir.join("00000000000000000000.index").exists());
    assert!(dir.join("00000000000000000000.timeindex").exists());
}

#[test]
fn compressed_batches_are_stored_untouched() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    let b = batch(&Spec {
        count: 20,
        value_size: 100,
        compression: Compression::Gzip,
        ..Spec::default()
    });
    log.append(&simple(1, 1), 0, 0).unwrap();
    let info = log.append(&b, 0, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (1, 20));
    let data = log.read(1, usize::MAX, i64::MAX, true).unwrap().records;
    assert_eq!(&data[21..], &b[21..]);
    let mut buf = data.clone();
    let set = RecordBatchDecoder::decode(&mut buf).unwrap();
    assert_eq!(set.records.len(), 20);
    assert_eq!(set.records[19].offset, 20);
}

#[test]
fn read_limits_and_out_of_range() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    let b = simple(2, 1);
    let size = b.len();
    for _ in 0..5 {
        log.append(&b, 0, 0).unwrap();
    }
    assert_eq!(log.log_end_offset(), 10);
    // max_bytes fits two whole batches.
    let r = log.read(0, size * 2 + size / 2, i64::MAX, false).unwrap();
    assert_eq!(r.records.len(), size * 2);
    // Too small without min_one_batch: nothing; with it: the first batch whole.
    assert!(log.read(0, 10, i64::MAX, false).unwrap().records.is_empty());
    assert_eq!(log.read(0, 10, i64::MAX, true).unwrap().records.len(), size);
    // max_offset (high watermark) is exclusive and never splits a batch.
    let hs = headers(&log.read(0, usize::MAX, 5, true).unwrap().records);
    assert_eq!(hs.last().unwrap().last_offset(), 3);
    assert!(log.read(6, usize::MAX, 6, true).unwrap().records.is_empty());
    // Log end: empty. Beyond / below: OFFSET_OUT_OF_RANGE.
    let r = log.read(10, usize::MAX, i64::MAX, true).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(
        (r.high_watermark, r.log_start_offset, r.last_stable_offset),
        (10, 0, 10)
    );
    assert_eq!(
        log.read(11, 100, i64::MAX, true).unwrap_err().kafka_code(),
        1
    );
    log.delete_records_before(4).unwrap();
    assert_eq!(
        log.read(3, 100, i64::MAX, true).unwrap_err().kafka_code(),
        1
    );
    // Reading at the log start inside a batch returns that batch.
    assert_eq!(headers(&read_all(&log, 4))[0].base_offset, 4);
}

#[test]
fn rolls_by_size_and_keeps_offsets_contiguous() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    let mut expected_next = 0;
    for i in 0..60 {
        let info = log
            .append(&simple(1 + (i % 3), 1_000 + i as i64), 0, 0)
            .unwrap();
        assert_eq!(info.base_offset, expected_next);
        expected_next = info.last_offset + 1;
    }
    assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
    let dir = part_dir(root.path());
    let logs = log_files(&dir, "log");
    assert_eq!(logs.len(), log.segment_count());
    assert_eq!(log_files(&dir, "index").len(), logs.len());
    assert_eq!(log_files(&dir, "timeindex").len(), logs.len());
    let bases = log.segment_base_offsets();
    for (name, base) in logs.iter().zip(&bases) {
        assert_eq!(name, &format!("{base:020}.log"));
    }
    // Closed segments stay within segment.bytes (each holds whole batches).
    for name in &logs[..logs.len() - 1] {
        assert!(std::fs::metadata(dir.join(name)).unwrap().len() <= 1024);
    }
    // Reading everything across segments yields contiguous offsets.
    let hs = headers(&read_all(&log, 0));
    let mut next = 0;
    for h in &hs {
        assert_eq!(h.base_offset, next);
        next = h.next_offset();
    }
    assert_eq!(next, log.log_end_offset());
    // Every offset is readable and lands in the right batch.
    for off in 0..log.log_end_offset() {
        let h = headers(&log.read(off, 1, i64::MAX, true).unwrap().records)[0];
        assert!(
            h.base_offset <= off && off <= h.last_offset(),
            "offset {off}"
        );
    }
}

#[test]
fn rolls_by_age() {
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = open(root.path(), config);
    log.append(&simple(1, 10_000), 0, 10_000).unwrap();
    log.append(&simple(1, 10_500), 0, 10_500).unwrap();
    assert_eq!(log.segment_count(), 1);
    // A batch whose timestamp is more than segment.ms after the segment's first batch rolls.
    log.append(&simple(1, 11_001), 0, 11_001).unwrap();
    assert_eq!(log.segment_base_offsets(), vec![0, 2]);
    // Retention ticks roll an idle active segment too.
    assert_eq!(log.apply_retention(11_500).unwrap(), 0);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.apply_retention(12_002).unwrap(), 0);
    assert_eq!(log.segment_base_offsets(), vec![0, 2, 3]);
    // An empty active segment is never rolled.
    log.apply_retention(50_000).unwrap();
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn index_is_used_for_reads_in_a_big_log() {
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        ..LogConfig::default()
    };
    let mut log = open(root.path(), config);
    for i in 0..2_000 {
        log.append(&simple(2, i), 0, 0).unwrap();
    }
    let dir = part_dir(root.path());
    let idx = std::fs::metadata(dir.join("00000000000000000000.index"))
        .unwrap()
        .len();
    assert!(idx > 0 && idx.is_multiple_of(8), "index size {idx}");
    let tidx = std::fs::metadata(dir.join("00000000000000000000.timeindex"))
        .unwrap()
        .len();
    assert!(
        tidx > 0 && tidx.is_multiple_of(12),
        "time index size {tidx}"
    );
    // Index entries: relative offset then position, both increasing, positions at batch starts.
    let bytes = std::fs::read(dir.join("00000000000000000000.index")).unwrap();
    let seg = std::fs::read(dir.join("00000000000000000000.log")).unwrap();
    for e in bytes.chunks(8) {
        let rel = u32::from_be_bytes([e[0], e[1], e[2], e[3]]) as i64;
        let pos = u32::from_be_bytes([e[4], e[5], e[6], e[7]]) as usize;
        let h = BatchHeader::parse(&seg[pos..]).unwrap();
        assert_eq!(h.last_offset(), rel);
    }
    for off in [0, 1, 777, 1_999, 2_345, 3_999] {
        let h = headers(&log.read(off, 1, i64::MAX, true).unwrap().records)[0];
        assert!(
            h.base_offset <= off && off <= h.last_offset(),
            "offset {off}"
        );
    }
}

#[test]
fn reopen_after_clean_shutdown_via_manager() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("d1")];
    let cfg = |_: &str| Some(small_config());
    let m = LogManager::open(&dirs, 1, "c1", &cfg).unwrap();
    let log = m.create(&tp(), small_config(), None).unwrap();
    for i in 0..30 {
        log.lock().unwrap().append(&simple(2, i), 3, 0).unwrap();
    }
    let before = read_all(&log.lock().unwrap(), 0);
    m.shutdown().unwrap();
    assert!(dirs[0].join(CLEAN_SHUTDOWN_FILE).exists());
    // After shutdown the old handle refuses writes.
    assert_eq!(
        log.lock()
            .unwrap()
            .append(&simple(1, 0), 3, 0)
            .unwrap_err()
            .kafka_code(),
        codes::NOT_LEADER_OR_FOLLOWER
    );
    let rp = std::fs::read_to_string(dirs[0].join(RECOVERY_POINT_CHECKPOINT)).unwrap();
    assert_eq!(rp, "0\n1\norders 0 60\n");
    let hw = std::fs::read_to_string(dirs[0].join(REPLICATION_OFFSET_CHECKPOINT)).unwrap();
    assert_eq!(hw, "0\n1\norders 0 60\n");
    drop(m);

    let m = LogManager::open(&dirs, 1, "c1", &cfg).unwrap();
    assert!(!dirs[0].join(CLEAN_SHUTDOWN_FILE).exists());
    let log = m.get(&tp()).unwrap();
    let mut log = log.lock().unwrap();
    assert_eq!(log.log_end_offset(), 60);
    assert_eq!(read_all(&log, 0), before);
    assert_eq!(log.append(&simple(1, 0), 3, 0).unwrap().base_offset, 60);
}

/// A log opens with the high watermark of `replication-offset-checkpoint`, not its log end:
/// a follower restarted after a crash must not show consumers records the cluster had not
/// committed. The value is clamped to the log (a torn tail may end below it), a partition
/// missing from the file starts at its log start offset, and a checkpoint written while a
/// partition is not loaded keeps that partition's high watermark.
#[test]
fn high_watermark_is_read_from_its_checkpoint_at_open() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("d1")];
    let cfg = |t: &str| (t != "unloaded").then(small_config);
    let m = LogManager::open(&dirs, 1, "c1", &cfg).unwrap();
    let other = TopicPartition::new("other", 0);
    for tp in [tp(), other.clone()] {
        let log = m.create(&tp, small_config(), None).unwrap();
        for i in 0..30 {
            log.lock().unwrap().append(&simple(2, i), 3, 0).unwrap();
        }
    }
    std::fs::create_dir_all(dirs[0].join("unloaded-0")).unwrap();
    m.shutdown().unwrap();
    drop(m);
    let hw_file = dirs[0].join(REPLICATION_OFFSET_CHECKPOINT);
    // The leader had replicated 40 of its 60 records; "other" was never checkpointed.
    std::fs::write(&hw_file, "0\n2\norders 0 40\nunloaded 0 7\n").unwrap();

    let m = LogManager::open(&dirs, 1, "c1", &cfg).unwrap();
    let hw = |tp: &TopicPartition| m.get(tp).unwrap().lock().unwrap().high_watermark();
    assert_eq!(hw(&tp()), 40);
    assert_eq!(m.get(&tp()).unwrap().lock().unwrap().log_end_offset(), 60);
    assert_eq!(hw(&other), 0, "no checkpoint entry: the log start offset");
    m.checkpoint().unwrap();
    assert_eq!(
        std::fs::read_to_string(&hw_file).unwrap(),
        "0\n3\norders 0 40\nother 0 0\nunloaded 0 7\n"
    );
    m.shutdown().unwrap();
    drop(m);

    // A checkpoint above the log end (the tail was lost) is clamped to it.
    std::fs::write(&hw_file, "0\n1\norders 0 500\n").unwrap();
    let m = LogManager::open(&dirs, 1, "c1", &cfg).unwrap();
    assert_eq!(m.get(&tp()).unwrap().lock().unwrap().high_watermark(), 60);
}

/// Appends `n` batches then "crashes" (drops the log without a clean shutdown marker).
fn crash_with(root: &Path, n: usize) -> (i64, u64, Bytes) {
    let mut log = open(root, small_config());
    for i in 0..n {
        log.append(&simple(3, i as i64), 0, 0).unwrap();
    }
    let out = (log.log_end_offset(), log.size_bytes(), read_all(&log, 0));
    drop(log);
    out
}

fn last_log_file(root: &Path) -> PathBuf {
    let dir = part_dir(root);
    dir.join(log_files(&dir, "log").pop().unwrap())
}

#[test]
fn recovery_truncates_torn_tail() {
    let root = tempfile::tempdir().unwrap();
    let (leo, size, data) = crash_with(root.path(), 20);
    // A torn write: half of a batch at the end of the active segment.
    let half = {
        let mut b = simple(3, 99);
        patch_for_append(&mut b, leo, 0, TimestampType::CreateTime, 0);
        b.truncate(b.len() / 2);
        b
    };
    let last = last_log_file(root.path());
    let last_len = std::fs::metadata(&last).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, &half).unwrap();
    drop(f);

    let mut log = open(root.path(), small_config());
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), last_len);
    assert_eq!(read_all(&log, 0), data);
    assert_eq!(log.append(&simple(1, 0), 0, 0).unwrap().base_offset, leo);
}

#[test]
fn recovery_truncates_at_garbage_and_drops_later_segments() {
    let root = tempfile::tempdir().unwrap();
    let (leo, _, data) = crash_with(root.path(), 40);
    let dir = part_dir(root.path());
    let logs = log_files(&dir, "log");
    assert!(logs.len() >= 3);
    // Corrupt a byte in the middle of the second segment's second batch (CRC mismatch).
    let victim = dir.join(&logs[1]);
    let mut bytes = std::fs::read(&victim).unwrap();
    let first = BatchHeader::parse(&bytes).unwrap();
    let second_pos = first.size();
    let second = BatchHeader::parse(&bytes[second_pos..]).unwrap();
    bytes[second_pos + second.size() - 1] ^= 0x55;
    std::fs::write(&victim, &bytes).unwrap();

    let mut log = open(root.path(), small_config());
    assert_eq!(log.log_end_offset(), second.base_offset);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log_files(&dir, "log").len(), 2);
    assert_eq!(log_files(&dir, "index").len(), 2);
    // Everything before the corrupt batch is intact.
    let recovered = read_all(&log, 0);
    assert_eq!(&recovered[..], &data[..recovered.len()]);
    assert!(leo > log.log_end_offset());
    assert_eq!(
        log.append(&simple(1, 0), 0, 0).unwrap().base_offset,
        second.base_offset
    );
}

#[test]
fn garbage_tail_after_kill_is_dropped_and_index_rebuilt() {
    let root = tempfile::tempdir().unwrap();
    let (leo, _, data) = crash_with(root.path(), 10);
    let last = last_log_file(root.path());
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    std::io::Write::write_all(&mut f, &[0xAB; 100]).unwrap();
    drop(f);
    // Also damage the index: recovery must rebuild it.
    let idx = last.with_extension("index");
    std::fs::write(&idx, [1, 2, 3]).unwrap();
    let log = open(root.path(), small_config());
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(read_all(&log, 0), data);
    assert_eq!(std::fs::metadata(&idx).unwrap().len() % 8, 0);
}

#[test]
fn crc_mismatch_rejected_and_nothing_written() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    log.append(&simple(1, 0), 0, 0).unwrap();
    let size = log.size_bytes();
    let good = simple(2, 0);
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 2] ^= 1;
    // Good batch followed by a bad one: all or nothing.
    let mut both = good.clone();
    both.extend_from_slice(&bad);
    let err = log.append(&both, 0, 0).unwrap_err();
    assert_eq!(err.kafka_code(), codes::CORRUPT_MESSAGE);
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end_offset(), 1);
    let too_big = LogConfig {
        max_message_bytes: 50,
        ..LogConfig::default()
    };
    log.set_config(too_big);
    assert_eq!(
        log.append(&good, 0, 0).unwrap_err().kafka_code(),
        codes::MESSAGE_TOO_LARGE
    );
    assert_eq!(log.size_bytes(), size);
}

#[test]
fn failed_write_is_rolled_back_and_log_stays_usable() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    // Recent timestamps, so no time-based roll moves the append to a fresh segment.
    let now = segment::wall_clock_ms();
    for i in 0..3 {
        log.append(&simple(2, now + i), 0, 0).unwrap();
    }
    let path = last_log_file(root.path());
    let before = std::fs::read(&path).unwrap();
    let idx_before = std::fs::read(path.with_extension("index")).unwrap();
    log.active_segment_mut().fail_next_write_after = Some(17);
    let err = log.append(&simple(4, now + 9), 0, 0).unwrap_err();
    assert!(matches!(err, Error::Storage { .. }), "{err:?}");
    assert_eq!(err.kafka_code(), codes::KAFKA_STORAGE_ERROR);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(
        std::fs::read(path.with_extension("index")).unwrap(),
        idx_before
    );
    assert_eq!(log.log_end_offset(), 6);
    let info = log.append(&simple(1, now + 10), 0, 0).unwrap();
    assert_eq!(info.base_offset, 6);
    assert_eq!(headers(&read_all(&log, 0)).len(), 4);
    // The idempotent state was not updated by the failed append: a retry is not a duplicate.
    log.active_segment_mut().fail_next_write_after = Some(0);
    assert!(log.append(&idempotent(2, 5, 0, 0), 0, 0).is_err());
    let info = log.append(&idempotent(2, 5, 0, 0), 0, 0).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, 7);
}

#[test]
fn retention_by_time_deletes_only_closed_segments() {
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 10_000,
        segment_ms: i64::MAX / 2,
        ..small_config()
    };
    let mut log = open(root.path(), config);
    for i in 0..30 {
        log.append(&simple(3, 1_000 + i), 0, 0).unwrap();
    }
    let segs = log.segment_count();
    assert!(segs > 2);
    // Not yet expired.
    assert_eq!(log.apply_retention(5_000).unwrap(), 0);
    // Everything expired: all closed segments go, the active one stays.
    let deleted = log.apply_retention(1_000_000).unwrap();
    assert_eq!(deleted, segs - 1);
    assert_eq!(log.segment_count(), 1);
    let active_base = log.segment_base_offsets()[0];
    assert_eq!(log.log_start_offset(), active_base);
    assert_eq!(log_files(&part_dir(root.path()), "log").len(), 1);
    assert_eq!(log_files(&part_dir(root.path()), "index").len(), 1);
    assert_eq!(
        headers(&read_all(&log, active_base))[0].base_offset,
        active_base
    );
}

#[test]
fn retention_by_size() {
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_bytes: 2_500,
        retention_ms: -1,
        segment_ms: i64::MAX / 2,
        ..small_config()
    };
    let mut log = open(root.path(), config);
    for i in 0..40 {
        log.append(&simple(3, i), 0, 0).unwrap();
    }
    let before = log.size_bytes();
    assert!(before > 2_500);
    let deleted = log.apply_retention(0).unwrap();
    assert!(deleted > 0);
    assert!(
        log.size_bytes() <= 2_500 + 1024,
        "size {}",
        log.size_bytes()
    );
    // Deleting one more closed segment would not be allowed to go under the limit.
    assert!(log.size_bytes() > 2_500 - 1024);
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
}

#[test]
fn delete_records_persists_across_reopen() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    for i in 0..30 {
        log.append(&simple(3, i), 5, 0).unwrap();
    }
    let segs = log.segment_count();
    assert_eq!(
        log.delete_records_before(1_000).unwrap_err().kafka_code(),
        1
    );
    assert_eq!(log.delete_records_before(50).unwrap(), 50);
    assert!(log.segment_count() < segs);
    assert!(log.segment_base_offsets()[0] <= 50);
    // Moving backwards is a no-op.
    assert_eq!(log.delete_records_before(10).unwrap(), 50);
    assert_eq!(log.epoch_entries(), vec![(5, 50)]);
    drop(log);
    let text = std::fs::read_to_string(root.path().join(LOG_START_OFFSET_CHECKPOINT)).unwrap();
    assert_eq!(text, "0\n1\norders 0 50\n");
    let log = open(root.path(), small_config());
    assert_eq!(log.log_start_offset(), 50);
    assert_eq!(
        log.read(49, 100, i64::MAX, true).unwrap_err().kafka_code(),
        1
    );
    assert_eq!(headers(&read_all(&log, 50))[0].base_offset, 48);
}

#[test]
fn offset_for_timestamp_and_max_timestamp() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    assert_eq!(log.max_timestamp().unwrap(), None);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    // Batches of 4 records with timestamps 1000,1010,1020,1030 then 1100.. etc.
    for i in 0..30i64 {
        log.append(
            &batch(&Spec {
                count: 4,
                timestamp: 1_000 + i * 100,
                ts_step: 10,
                ..Spec::default()
            }),
            0,
            0,
        )
        .unwrap();
    }
    // Out-of-order timestamp in the middle (CreateTime allows it).
    log.append(&simple(1, 500), 0, 0).unwrap();
    assert!(log.segment_count() > 2);
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((1_000, 0)));
    assert_eq!(log.offset_for_timestamp(1_000).unwrap(), Some((1_000, 0)));
    assert_eq!(log.offset_for_timestamp(1_001).unwrap(), Some((1_010, 1)));
    assert_eq!(log.offset_for_timestamp(1_025).unwrap(), Some((1_030, 3)));
    assert_eq!(log.offset_for_timestamp(1_031).unwrap(), Some((1_100, 4)));
    assert_eq!(log.offset_for_timestamp(2_515).unwrap(), Some((2_520, 62)));
    assert_eq!(log.offset_for_timestamp(3_930).unwrap(), Some((3_930, 119)));
    assert_eq!(log.offset_for_timestamp(3_931).unwrap(), None);
    assert_eq!(log.max_timestamp().unwrap(), Some((3_930, 119)));
    // After DeleteRecords the answer never points below the log start.
    log.delete_records_before(63).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), Some((2_530, 63)));
}

#[test]
fn log_append_time_topic() {
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(root.path(), config);
    let info = log.append(&simple(3, 5), 0, 777_000).unwrap();
    assert_eq!(info.log_append_time, 777_000);
    let data = read_all(&log, 0);
    let h = headers(&data)[0];
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 777_000);
    assert_eq!(
        log.offset_for_timestamp(700_000).unwrap(),
        Some((777_000, 0))
    );
    assert_eq!(log.max_timestamp().unwrap(), Some((777_000, 0)));
    // The kafka-protocol decoder accepts the rewritten batch (CRC recomputed).
    let mut buf = data.clone();
    assert_eq!(
        RecordBatchDecoder::decode(&mut buf).unwrap().records.len(),
        3
    );
}

#[test]
fn idempotent_producer_duplicates_and_sequence_errors() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    log.append(&simple(1, 0), 0, 0).unwrap();
    let first = log.append(&idempotent(3, 42, 0, 0), 0, 0).unwrap();
    assert_eq!((first.base_offset, first.last_offset), (1, 3));
    let second = log.append(&idempotent(2, 42, 0, 3), 0, 0).unwrap();
    assert_eq!(second.base_offset, 4);
    let size = log.size_bytes();
    // Retry of the first batch: original offsets, nothing written.
    let dup = log.append(&idempotent(3, 42, 0, 0), 0, 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (1, 3));
    assert_eq!(log.size_bytes(), size);
    // Gap in sequence.
    let err = log.append(&idempotent(1, 42, 0, 9), 0, 0).unwrap_err();
    assert_eq!(err.kafka_code(), codes::OUT_OF_ORDER_SEQUENCE_NUMBER);
    // Fenced epoch.
    log.append(&idempotent(1, 42, 1, 0), 0, 0).unwrap();
    let err = log.append(&idempotent(1, 42, 0, 5), 0, 0).unwrap_err();
    assert_eq!(err.kafka_code(), codes::INVALID_PRODUCER_EPOCH);
    assert_eq!(
        log.size_bytes(),
        size + idempotent(1, 42, 1, 0).len() as u64
    );
    // Producer state is rebuilt from the log on reopen.
    drop(log);
    let mut log = open(root.path(), LogConfig::default());
    let dup = log.append(&idempotent(1, 42, 1, 0), 0, 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.base_offset, 6);
    assert_eq!(
        log.append(&idempotent(1, 42, 1, 5), 0, 0)
            .unwrap_err()
            .kafka_code(),
        codes::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
    assert_eq!(
        log.append(&idempotent(1, 42, 1, 1), 0, 0)
            .unwrap()
            .base_offset,
        7
    );
}

#[test]
fn leader_epoch_cache_and_checkpoint_file() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), (-1, -1));
    log.append(&simple(2, 0), 0, 0).unwrap();
    log.append(&simple(2, 0), 0, 0).unwrap();
    log.append(&simple(3, 0), 3, 0).unwrap();
    log.append(&simple(1, 0), 5, 0).unwrap();
    let file = part_dir(root.path()).join(LEADER_EPOCH_CHECKPOINT);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "0\n3\n0 0\n3 4\n5 7\n"
    );
    assert_eq!(log.latest_epoch(), Some(5));
    assert_eq!(log.end_offset_for_epoch(5), (5, 8));
    assert_eq!(log.end_offset_for_epoch(4), (3, 7));
    assert_eq!(log.end_offset_for_epoch(0), (0, 4));
    assert_eq!(log.end_offset_for_epoch(9), (-1, -1));
    // The stored batches carry the epoch.
    let hs = headers(&read_all(&log, 0));
    assert_eq!(
        hs.iter()
            .map(|h| h.partition_leader_epoch)
            .collect::<Vec<_>>(),
        vec![0, 0, 3, 5]
    );
    // Truncation drops epochs starting beyond the new end.
    log.truncate_to(4).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "0\n1\n0 0\n");
    // A lost checkpoint is rebuilt from batch headers during recovery.
    log.append(&simple(1, 0), 8, 0).unwrap();
    drop(log);
    std::fs::remove_file(&file).unwrap();
    let log = open(root.path(), LogConfig::default());
    assert_eq!(log.epoch_entries(), vec![(0, 0), (8, 4)]);
}

#[test]
fn truncate_to_mid_batch_removes_whole_batch() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    for i in 0..30 {
        log.append(&simple(3, i), 0, 0).unwrap();
    }
    log.truncate_to(31).unwrap();
    assert_eq!(log.log_end_offset(), 30);
    assert_eq!(log.append(&simple(1, 0), 0, 0).unwrap().base_offset, 30);
    let hs = headers(&read_all(&log, 0));
    assert_eq!(hs.last().unwrap().base_offset, 30);
    assert_eq!(
        log.segment_base_offsets().last().copied(),
        Some(log.segment_base_offsets()[log.segment_count() - 1])
    );
}

#[test]
fn topic_id_written_in_kafka_format() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
    log.set_topic_id(id).unwrap();
    // Recorded in memory; written by the background writer or before the first record.
    log.flush_partition_metadata().unwrap();
    let text = std::fs::read_to_string(part_dir(root.path()).join(PARTITION_METADATA)).unwrap();
    assert_eq!(text, "version: 0\ntopic_id: ASNFZ4mrze8BI0VniavN7w\n");
    assert_eq!(
        log.set_topic_id(uuid::Uuid::nil())
            .unwrap_err()
            .kafka_code(),
        codes::INCONSISTENT_TOPIC_ID
    );
    drop(log);
    assert_eq!(open(root.path(), LogConfig::default()).topic_id(), Some(id));
}

#[test]
fn manager_lock_prevents_second_open() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("a")];
    let cfg = |_: &str| Some(LogConfig::default());
    let m = LogManager::open(&dirs, 1, "c", &cfg).unwrap();
    let err = LogManager::open(&dirs, 1, "c", &cfg).unwrap_err();
    assert!(matches!(err, Error::DirLocked(_)), "{err:?}");
    assert!(err.to_string().contains(&dirs[0].display().to_string()));
    drop(m);
    LogManager::open(&dirs, 1, "c", &cfg).unwrap();
}

#[test]
fn manager_meta_properties_mismatch_names_file() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("a")];
    let cfg = |_: &str| Some(LogConfig::default());
    drop(LogManager::open(&dirs, 1, "c", &cfg).unwrap());
    let text = std::fs::read_to_string(dirs[0].join(META_PROPERTIES)).unwrap();
    assert!(text.contains("node.id=1") && text.contains("version=1"));
    let err = LogManager::open(&dirs, 2, "c", &cfg)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&dirs[0].join(META_PROPERTIES).display().to_string()),
        "{err}"
    );
    assert!(err.contains("node.id"), "{err}");
}

#[test]
fn manager_uncreatable_dir_is_named() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let bad = file.join("logs");
    let cfg = |_: &str| Some(LogConfig::default());
    let err = LogManager::open(std::slice::from_ref(&bad), 1, "c", &cfg).unwrap_err();
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
}

#[test]
fn manager_create_delete_and_describe() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("a"), root.path().join("b")];
    let cfg = |t: &str| (t != "ignored").then(LogConfig::default);
    let m = LogManager::open(&dirs, 1, "c", &cfg).unwrap();
    let t0 = TopicPartition::new("t", 0);
    let t1 = TopicPartition::new("t", 1);
    let id = random_kafka_uuid();
    let l0 = m.create(&t0, LogConfig::default(), Some(id)).unwrap();
    m.create(&t1, LogConfig::default(), Some(id)).unwrap();
    // Idempotent.
    let again = m.create(&t0, LogConfig::default(), Some(id)).unwrap();
    assert!(std::sync::Arc::ptr_eq(&l0, &again));
    // Spread over the dirs.
    assert!(dirs[0].join("t-0").is_dir());
    assert!(dirs[1].join("t-1").is_dir());
    assert_eq!(m.partitions(), vec![t0.clone(), t1.clone()]);
    l0.lock().unwrap().append(&simple(2, 0), 0, 0).unwrap();
    let desc = m.log_dirs_description();
    assert_eq!(desc.len(), 2);
    assert_eq!(desc[0].partitions[0].tp, t0);
    assert_eq!(desc[0].partitions[0].size_bytes, simple(2, 0).len() as u64);
    assert_eq!(desc[0].total_bytes, -1);
    // A dir of a topic the metadata doesn't know is left alone.
    std::fs::create_dir_all(dirs[1].join("ignored-0")).unwrap();
    // Delete: renamed at once, removed in the background.
    m.delete(&t0).unwrap();
    assert!(!dirs[0].join("t-0").exists());
    assert!(m.get(&t0).is_none());
    assert_eq!(
        l0.lock()
            .unwrap()
            .append(&simple(1, 0), 0, 0)
            .unwrap_err()
            .kafka_code(),
        codes::UNKNOWN_TOPIC_OR_PARTITION
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let left: Vec<_> = std::fs::read_dir(&dirs[0])
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with("-delete"))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delete dir not removed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    m.shutdown().unwrap();
    drop(m);
    let m = LogManager::open(&dirs, 1, "c", &cfg).unwrap();
    assert_eq!(m.partitions(), vec![t1.clone()]);
    assert!(dirs[1].join("ignored-0").is_dir());
    assert_eq!(m.get(&t1).unwrap().lock().unwrap().topic_id(), Some(id));
}

#[test]
fn manager_crash_recovers_and_keeps_delete_records() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("a")];
    let cfg = |_: &str| Some(small_config());
    let m = LogManager::open(&dirs, 1, "c", &cfg).unwrap();
    let log = m.create(&tp(), small_config(), None).unwrap();
    for i in 0..30 {
        log.lock().unwrap().append(&simple(2, i), 0, 0).unwrap();
    }
    log.lock().unwrap().delete_records_before(25).unwrap();
    m.checkpoint().unwrap();
    // More appends after the checkpoint, then a "kill -9": no shutdown.
    for i in 0..5 {
        log.lock().unwrap().append(&simple(2, i), 0, 0).unwrap();
    }
    let data = read_all(&log.lock().unwrap(), 25);
    drop(log);
    drop(m);
    let m = LogManager::open(&dirs, 1, "c", &cfg).unwrap();
    let log = m.get(&tp()).unwrap();
    let log = log.lock().unwrap();
    assert_eq!(log.log_start_offset(), 25);
    assert_eq!(log.log_end_offset(), 70);
    assert_eq!(read_all(&log, 25), data);
}

#[test]
fn truncate_fully_keeps_a_usable_log() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    for i in 0..30 {
        log.append(&simple(3, i), 1, 0).unwrap();
    }
    log.truncate_to(0).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (0, 0));
    assert_eq!(log.segment_base_offsets(), vec![0]);
    assert_eq!(log.size_bytes(), 0);
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.append(&simple(1, 0), 2, 0).unwrap().base_offset, 0);
    log.truncate_fully_and_start_at(100).unwrap();
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 100));
    assert_eq!(
        log_files(&part_dir(root.path()), "log"),
        vec![format!("{:020}.log", 100)]
    );
    assert_eq!(log.append(&simple(1, 0), 2, 0).unwrap().base_offset, 100);
    drop(log);
    let log = open(root.path(), small_config());
    assert_eq!((log.log_start_offset(), log.log_end_offset()), (100, 101));
}

#[test]
fn empty_records_and_unknown_offsets() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    let info = log.append(&[], 0, 0).unwrap();
    assert_eq!((info.base_offset, info.last_offset), (-1, -1));
    assert_eq!(log.log_end_offset(), 0);
    assert!(read_all(&log, 0).is_empty());
    // A client batch must start at offset 0 (Kafka rejects others with INVALID_RECORD).
    let mut b = simple(1, 0);
    b[..8].copy_from_slice(&5i64.to_be_bytes());
    assert_eq!(
        log.append(&b, 0, 0).unwrap_err().kafka_code(),
        codes::INVALID_RECORD
    );
}

#[test]
fn old_record_timestamps_do_not_roll_at_every_retention_tick() {
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = open(root.path(), config);
    // A replay of historical data: record time far behind the broker clock.
    log.append(&simple(1, 5), 0, 100_000).unwrap();
    log.apply_retention(100_500).unwrap();
    assert_eq!(log.segment_count(), 1);
    log.apply_retention(101_001).unwrap();
    assert_eq!(log.segment_count(), 2);
}

/// `flush.messages`: the log says a flush is due once that many messages are unflushed, and
/// a flush moves the recovery point (what survives a crash without recovery) to the end.
#[test]
fn flush_messages_counts_unflushed_messages() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(
        root.path(),
        LogConfig {
            flush_messages: 3,
            ..small_config()
        },
    );
    log.append(&simple(2, 0), 0, 0).unwrap();
    assert_eq!(log.unflushed_messages(), 2);
    assert!(!log.flush_due_by_messages());
    log.append(&simple(1, 0), 0, 0).unwrap();
    assert!(log.flush_due_by_messages());
    log.flush().unwrap();
    assert_eq!(log.recovery_point(), 3);
    assert_eq!(log.unflushed_messages(), 0);
    assert!(!log.flush_due_by_messages());
}

/// The log flusher (`flush.ms`, Kafka's `flushDirtyLogs`) flushes only the logs with
/// unflushed messages whose last flush is at least `flush.ms` old; the default leaves
/// flushing to the OS.
#[test]
fn log_flusher_flushes_logs_whose_flush_ms_passed() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("d1")];
    let cfg = |_: &str| Some(small_config());
    let m = LogManager::open(&dirs, 1, "c1", &cfg).unwrap();
    let timed = m
        .create(
            &TopicPartition::new("timed", 0),
            LogConfig {
                flush_ms: 1000,
                ..small_config()
            },
            None,
        )
        .unwrap();
    let default = m
        .create(&TopicPartition::new("default", 0), small_config(), None)
        .unwrap();
    timed.lock().unwrap().append(&simple(2, 0), 0, 0).unwrap();
    default.lock().unwrap().append(&simple(2, 0), 0, 0).unwrap();
    let opened = timed.lock().unwrap().last_flush_ms();

    assert_eq!(
        m.flush_dirty_logs(opened + 999),
        0,
        "flush.ms has not passed"
    );
    assert_eq!(timed.lock().unwrap().recovery_point(), 0);
    assert_eq!(m.flush_dirty_logs(opened + 1000), 1);
    assert_eq!(timed.lock().unwrap().recovery_point(), 2);
    assert_eq!(
        default.lock().unwrap().recovery_point(),
        0,
        "flush.ms defaults to never"
    );
    // Nothing new: nothing to flush, however late it is.
    assert_eq!(m.flush_dirty_logs(i64::MAX), 0);
}

/// A roll does not fsync in the append that causes it (Kafka flushes the rolled segment on
/// its scheduler): the recovery point stays until the log manager's flusher has fsynced
/// the rolled segments, which it does without holding the partition lock during the fsync.
#[test]
fn rolled_segments_are_fsynced_by_the_flusher_not_by_the_append() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("d1")];
    let cfg = |_: &str| Some(small_config());
    let m = LogManager::open(&dirs, 1, "c1", &cfg).unwrap();
    let log = m
        .create(&TopicPartition::new("rolling", 0), small_config(), None)
        .unwrap();
    assert!(!m.has_rolled_segments());
    {
        let mut l = log.lock().unwrap();
        while l.segment_count() < 3 {
            l.append(&simple(5, 0), 0, 0).unwrap();
        }
        assert_eq!(
            l.recovery_point(),
            0,
            "the appends that rolled did not fsync"
        );
    }
    assert!(m.has_rolled_segments());
    assert_eq!(m.flush_rolled_segments(), 1);
    let l = log.lock().unwrap();
    let bases = l.segment_base_offsets();
    assert_eq!(
        l.recovery_point(),
        bases[2],
        "recovery point at the last roll"
    );
    drop(l);
    assert!(!m.has_rolled_segments());
    assert_eq!(m.flush_rolled_segments(), 0);
    m.shutdown().unwrap();
}

/// Descriptors this process holds on files under `dir` (from `/proc/self/fd`), deleted
/// files included.
fn fds_under(dir: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.starts_with(dir))
        .count()
}

/// Issue 15: a partition with hundreds of rolled segments used to hold three descriptors
/// per segment. Now only the active segment keeps its files open and rolled segments share
/// the bounded cache of `segment_files`, before and after a restart, while every record
/// still reads back byte-identical from every segment, regions handed out stay readable
/// after their handle was evicted, and retention deletes closed segments without leaving
/// descriptors on deleted files.
#[test]
fn many_rolled_segments_keep_descriptors_bounded_and_read_back_intact() {
    let root = tempfile::tempdir().unwrap();
    let dir = part_dir(root.path());
    let slots = segment_files::segment_file_cache().capacity();
    // One batch per segment, more segments than the cache has slots.
    let config = LogConfig {
        segment_bytes: 1,
        segment_ms: i64::MAX / 2,
        retention_ms: -1,
        ..LogConfig::default()
    };
    let segments = slots + 200;
    let mut log = open(root.path(), config.clone());
    let mut stored = Vec::new();
    for i in 0..segments {
        let b = simple(1 + i % 3, 1_000 + i as i64);
        let info = log.append(&b, 0, 0).unwrap();
        let mut s = b.clone();
        patch_for_append(&mut s, info.base_offset, 0, TimestampType::CreateTime, 0);
        stored.push((info.base_offset, s));
    }
    assert_eq!(log.segment_count(), segments);
    assert_eq!(log_files(&dir, "log").len(), segments);
    let bound = slots + 3;
    let open_now = fds_under(&dir);
    assert!(
        open_now <= bound,
        "{open_now} descriptors open on {segments} segments (at most {bound} expected: the active segment's 3 and the cache's {slots})"
    );
    let holding: Vec<i64> = log
        .segments
        .values()
        .filter(|s| s.holds_open_files())
        .map(|s| s.base_offset())
        .collect();
    assert_eq!(holding, vec![log.active().base_offset()]);

    // A region of the first segment handed to a fetch, then every other segment read: the
    // first segment's handle is evicted from the cache but the region still reads.
    let first = log.read_regions(0, usize::MAX, 1, true).unwrap();
    assert_eq!(first.regions.len(), 1);
    // A fetch reads from one segment, as in Kafka: however large its budget, it holds one
    // segment file per partition until sent.
    let whole = log.read_regions(0, usize::MAX, i64::MAX, true).unwrap();
    assert_eq!(whole.regions.len(), 1);
    assert_eq!(whole.size, stored[0].1.len());
    drop(whole);
    let check_all = |log: &PartitionLog| {
        for (base, bytes) in stored.iter().rev() {
            let got = log.read(*base, 1, i64::MAX, true).unwrap().records;
            assert_eq!(&got[..], &bytes[..], "segment {base}");
        }
        let all: Vec<u8> = stored.iter().flat_map(|(_, b)| b.clone()).collect();
        let mut from = 0;
        let mut got = Vec::new();
        while from < log.log_end_offset() {
            let chunk = log.read(from, 64 * 1024, i64::MAX, true).unwrap().records;
            let hs = headers(&chunk);
            from = hs.last().unwrap().next_offset();
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, all);
    };
    check_all(&log);
    let mut out = Vec::new();
    first.regions[0].read_to(&mut out).unwrap();
    assert_eq!(out, stored[0].1);
    drop(first);
    let open_now = fds_under(&dir);
    assert!(
        open_now <= bound,
        "{open_now} descriptors open after reading every segment"
    );

    // Restart: loading scans every segment, and keeps no more open than before.
    log.close().unwrap();
    drop(log);
    assert_eq!(fds_under(&dir), 0, "a dropped log keeps no descriptor");
    let mut log = open(root.path(), config.clone());
    assert_eq!(log.segment_count(), segments);
    let open_now = fds_under(&dir);
    assert!(
        open_now <= bound,
        "{open_now} descriptors open after loading {segments} segments"
    );
    check_all(&log);
    let next = log.log_end_offset();
    log.append(&simple(1, 5), 0, 0).unwrap();
    assert_eq!(
        log.read(next, 1, i64::MAX, true).unwrap().records.len(),
        simple(1, 5).len()
    );

    // Retention deletes closed segments whatever their handles' state; none stays open.
    log.set_config(LogConfig {
        retention_bytes: 0,
        ..config
    });
    assert_eq!(log.apply_retention(0).unwrap(), segments);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log_files(&dir, "log").len(), 1);
    let open_now = fds_under(&dir);
    assert!(
        open_now <= 3,
        "{open_now} descriptors open on a one-segment log"
    );
}

/// `partition.metadata` of a new log is written after its creation (Kafka's deferred
/// `flush-metadata-file`), never after a record: an append writes it first, and a log whose
/// creation was cut short by a crash before the file was written comes back empty and
/// without an id, so it can take the id its partition has now and never names another topic.
#[test]
fn partition_metadata_precedes_every_record_and_a_crash_before_it_leaves_no_records() {
    let root = tempfile::tempdir().unwrap();
    let file = part_dir(root.path()).join(PARTITION_METADATA);
    let (first, second) = (random_kafka_uuid(), random_kafka_uuid());
    {
        let mut log = open(root.path(), small_config());
        log.set_topic_id(first).unwrap();
        // A crash now: nothing on disk names the topic, and nothing was appended.
    }
    let mut log = open(root.path(), small_config());
    assert_eq!(log.topic_id(), None);
    assert_eq!(log.log_end_offset(), 0);
    log.set_topic_id(second).unwrap();
    assert_eq!(
        log.set_topic_id(first).unwrap_err().kafka_code(),
        codes::INCONSISTENT_TOPIC_ID
    );
    log.append(&simple(2, 0), 0, 0).unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("topic_id: {}", uuid_to_kafka_string(second))),
        "{text}"
    );
    drop(log);
    let log = open(root.path(), small_config());
    assert_eq!((log.topic_id(), log.log_end_offset()), (Some(second), 2));
}

/// A follower's first replicated records also wait for the file.
#[test]
fn a_followers_first_append_writes_partition_metadata_first() {
    let root = tempfile::tempdir().unwrap();
    let id = random_kafka_uuid();
    let mut log = open(root.path(), small_config());
    log.set_topic_id(id).unwrap();
    let leader_root = tempfile::tempdir().unwrap();
    let mut leader = open(leader_root.path(), small_config());
    leader.append(&simple(3, 0), 0, 0).unwrap();
    log.append_as_follower(&read_all(&leader, 0), 0).unwrap();
    let text = std::fs::read_to_string(part_dir(root.path()).join(PARTITION_METADATA)).unwrap();
    assert!(
        text.contains(&format!("topic_id: {}", uuid_to_kafka_string(id))),
        "{text}"
    );
}

/// Creating many partitions returns before their `partition.metadata` files are written;
/// they are all written soon after, each naming the topic; a clean shutdown writes any still
/// pending.
#[test]
fn create_many_writes_every_partition_metadata_in_the_background() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().join("a")];
    let cfg = |_: &str| Some(LogConfig::default());
    let id = random_kafka_uuid();
    let tps: Vec<TopicPartition> = (0..300).map(|p| TopicPartition::new("wide", p)).collect();
    let named = |tp: &TopicPartition| {
        std::fs::read_to_string(dirs[0].join(tp.to_string()).join(PARTITION_METADATA))
            .is_ok_and(|t| t.contains(&format!("topic_id: {}", uuid_to_kafka_string(id))))
    };
    {
        let m = LogManager::open(&dirs, 1, "c", &cfg).unwrap();
        m.create_many(&tps, &LogConfig::default(), Some(id))
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !tps.iter().all(named) {
            assert!(
                std::time::Instant::now() < deadline,
                "partition.metadata not written"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        m.shutdown().unwrap();
    }
    let more: Vec<TopicPartition> = (300..310).map(|p| TopicPartition::new("wide", p)).collect();
    let m = LogManager::open(&dirs, 1, "c", &cfg).unwrap();
    m.create_many(&more, &LogConfig::default(), Some(id))
        .unwrap();
    m.shutdown().unwrap();
    assert!(
        more.iter().all(named),
        "a clean shutdown writes what is pending"
    );
}
