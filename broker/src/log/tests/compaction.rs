//! Behavioural tests of log compaction: what a consumer of a compacted topic would notice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
    TimestampType as KTimestampType,
};

use crate::log::batch::{compute_crc, crc_matches, BatchHeader};
use crate::log::cleaner::set_crash_point;
use crate::log::*;

const NOW: i64 = 1_700_000_000_000;
const HOUR: i64 = 3_600_000;

fn tp() -> TopicPartition {
    TopicPartition::new("compacted", 0)
}

fn part_dir(root: &Path) -> PathBuf {
    root.join("compacted-0")
}

fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 16 * 1024,
        index_interval_bytes: 256,
        cleanup_compact: true,
        cleanup_delete: false,
        ..LogConfig::default()
    }
}

fn open(root: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(&part_dir(root), tp(), config).unwrap()
}

/// A client batch of `(key, value)` records (None value = tombstone, None key = keyless).
fn kv_batch_with(
    records: &[(Option<&str>, Option<&str>)],
    ts: i64,
    compression: Compression,
    producer: Option<(i64, i16, i32)>,
) -> Vec<u8> {
    let (pid, epoch, seq) = producer.unwrap_or((-1, -1, -1));
    let recs: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: KTimestampType::Creation,
            offset: i as i64,
            sequence: seq.max(0) + i as i32,
            timestamp: ts + i as i64,
            key: k.map(|k| Bytes::from(k.to_string())),
            value: v.map(|v| Bytes::from(v.to_string())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        recs.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .unwrap();
    let mut out = buf.to_vec();
    if seq < 0 {
        out[53..57].copy_from_slice(&(-1i32).to_be_bytes());
        let crc = compute_crc(&out);
        out[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    assert_eq!(BatchHeader::parse(&out).unwrap().size(), out.len());
    out
}

fn kv_batch(records: &[(&str, Option<&str>)], ts: i64) -> Vec<u8> {
    let r: Vec<(Option<&str>, Option<&str>)> =
        records.iter().map(|(k, v)| (Some(*k), *v)).collect();
    kv_batch_with(&r, ts, Compression::None, None)
}

/// One decoded record as a consumer sees it.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    offset: i64,
    key: String,
    value: Option<String>,
    timestamp: i64,
}

fn decode(bytes: &Bytes) -> Vec<Seen> {
    let mut rest: &[u8] = bytes;
    while !rest.is_empty() {
        let h = BatchHeader::parse(rest).unwrap();
        assert!(crc_matches(&h, &rest[..h.size()]), "stored batch CRC");
        rest = &rest[h.size()..];
    }
    let mut buf = bytes.clone();
    RecordBatchDecoder::decode_all(&mut buf)
        .unwrap()
        .into_iter()
        .flat_map(|s| s.records)
        .map(|r| Seen {
            offset: r.offset,
            key: String::from_utf8(r.key.unwrap().to_vec()).unwrap(),
            value: r.value.map(|v| String::from_utf8(v.to_vec()).unwrap()),
            timestamp: r.timestamp,
        })
        .collect()
}

fn read_all(log: &PartitionLog) -> Vec<Seen> {
    decode(
        &log.read(log.log_start_offset(), usize::MAX, i64::MAX, true)
            .unwrap()
            .records,
    )
}

/// Reads like a consumer with a small fetch size: from `from`, batch by batch, moving to the
/// offset after the last batch returned, until the log end.
fn consume(log: &PartitionLog, from: i64) -> Vec<Seen> {
    let mut out = Vec::new();
    let mut pos = from;
    let leo = log.log_end_offset();
    let mut rounds = 0;
    while pos < leo {
        rounds += 1;
        assert!(rounds < 100_000, "consumer makes no progress at {pos}");
        let data = log.read(pos, 1, i64::MAX, true).unwrap().records;
        assert!(
            !data.is_empty(),
            "empty fetch at {pos} below the log end {leo}"
        );
        let mut rest: &[u8] = &data;
        let mut next = pos;
        while !rest.is_empty() {
            let h = BatchHeader::parse(rest).unwrap();
            next = h.last_offset() + 1;
            rest = &rest[h.size()..];
        }
        out.extend(decode(&data).into_iter().filter(|r| r.offset >= pos));
        assert!(next > pos);
        pos = next;
    }
    out
}

fn latest_by_key(records: &[Seen]) -> BTreeMap<String, Seen> {
    let mut m = BTreeMap::new();
    for r in records {
        m.insert(r.key.clone(), r.clone());
    }
    m
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Writes `rounds` rounds of the same keys (one batch per round, value "r<round>") and
/// rolls, so that everything is in closed segments.
fn write_rounds(log: &mut PartitionLog, keys: usize, rounds: usize, ts: i64) -> Vec<Seen> {
    let mut written = Vec::new();
    for round in 0..rounds {
        let names: Vec<String> = (0..keys).map(|k| format!("k{k:03}")).collect();
        let values: Vec<String> = (0..keys).map(|k| format!("r{round}-v{k}")).collect();
        let recs: Vec<(&str, Option<&str>)> = names
            .iter()
            .zip(&values)
            .map(|(k, v)| (k.as_str(), Some(v.as_str())))
            .collect();
        let info = log.append(&kv_batch(&recs, ts), 0, ts).unwrap();
        for (i, (k, v)) in recs.iter().enumerate() {
            written.push(Seen {
                offset: info.base_offset + i as i64,
                key: k.to_string(),
                value: v.map(str::to_string),
                timestamp: ts + i as i64,
            });
        }
    }
    written
}

#[test]
fn compaction_keeps_latest_value_per_key_at_original_offsets() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(
        root.path(),
        LogConfig {
            segment_bytes: 1024,
            ..compact_config()
        },
    );
    let written = write_rounds(&mut log, 10, 20, NOW - HOUR);
    log.roll(NOW).unwrap();
    let leo = log.log_end_offset();
    let segments_before = log.segment_count();
    assert!(segments_before > 5, "test needs several closed segments");
    let expected = latest_by_key(&written);

    let stats = log.compact(NOW).unwrap();
    assert!(stats.cleaned, "{stats:?}");
    assert_eq!(stats.cleaned_up_to, leo);
    assert_eq!(stats.records_removed, 200 - 10);

    let after = read_all(&log);
    assert_eq!(after.len(), 10, "one record per key: {after:?}");
    assert_eq!(
        latest_by_key(&after),
        expected,
        "latest values at their original offsets"
    );
    // Offsets, high watermark and log end do not move; the log start stays put.
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.high_watermark(), leo);
    assert_eq!(log.log_start_offset(), 0);
    assert!(
        log.segment_count() < segments_before,
        "small cleaned segments are merged"
    );
    // A fetch at a compacted-away offset returns the next batch at or after it.
    let first = decode(&log.read(0, 1, i64::MAX, true).unwrap().records);
    assert_eq!(
        first[0].offset,
        expected.values().map(|s| s.offset).min().unwrap()
    );
    let mid = decode(&log.read(55, 1, i64::MAX, true).unwrap().records);
    assert!(mid.iter().any(|r| r.offset >= 55));
    // A consumer fetching batch by batch from 0 sees exactly the surviving records, in order.
    let consumed = consume(&log, 0);
    assert_eq!(consumed, after);
    // offset_for_timestamp still answers (with a surviving record).
    let (_, off) = log.offset_for_timestamp(0).unwrap().unwrap();
    assert_eq!(off, after[0].offset);

    // Everything survives a reopen, and a second pass with nothing dirty does nothing.
    drop(log);
    let mut log = open(root.path(), compact_config());
    assert_eq!(read_all(&log), after);
    assert_eq!(log.cleaner_offset(), Some(leo));
    assert!(!log.compact(NOW).unwrap().cleaned);
    // The cleaner checkpoint is in the log dir root, in Kafka's format.
    let text = std::fs::read_to_string(root.path().join(CLEANER_OFFSET_CHECKPOINT)).unwrap();
    assert_eq!(text, format!("0\n1\ncompacted 0 {leo}\n"));
}

#[test]
fn compressed_batches_are_compacted_and_keep_their_codec() {
    for compression in [
        Compression::Gzip,
        Compression::Lz4,
        Compression::Snappy,
        Compression::Zstd,
    ] {
        let root = tempfile::tempdir().unwrap();
        let mut log = open(root.path(), compact_config());
        let b1 = kv_batch_with(
            &[
                (Some("a"), Some("1")),
                (Some("b"), Some("1")),
                (Some("c"), Some("1")),
            ],
            NOW - HOUR,
            compression,
            None,
        );
        let b2 = kv_batch_with(&[(Some("a"), Some("2"))], NOW - HOUR, compression, None);
        log.append(&b1, 0, NOW).unwrap();
        log.append(&b2, 0, NOW).unwrap();
        log.roll(NOW).unwrap();
        assert!(log.compact(NOW).unwrap().cleaned);
        let data = log.read(0, usize::MAX, i64::MAX, true).unwrap().records;
        let h = BatchHeader::parse(&data).unwrap();
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.last_offset_delta, 2, "batch keeps its offset range");
        assert_eq!(h.records_count, 2);
        assert_eq!(h.compression(), compression as i16, "{compression:?}");
        let seen = decode(&data);
        let got: Vec<(i64, &str, Option<&str>)> = seen
            .iter()
            .map(|s| (s.offset, s.key.as_str(), s.value.as_deref()))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, "b", Some("1")),
                (2, "c", Some("1")),
                (3, "a", Some("2"))
            ]
        );
        assert_eq!(
            seen[0].timestamp,
            NOW - HOUR + 1,
            "record timestamps are preserved"
        );
    }
}

#[test]
fn active_segment_is_never_touched() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), compact_config());
    write_rounds(&mut log, 5, 3, NOW - HOUR);
    log.roll(NOW).unwrap();
    // Superseding values in the active segment do not remove anything from closed ones,
    // and the active segment's own duplicates stay.
    write_rounds(&mut log, 5, 3, NOW - HOUR);
    let active_base = *log.segment_base_offsets().last().unwrap();
    let active_file = part_dir(root.path()).join(format!("{active_base:020}.log"));
    let before = std::fs::read(&active_file).unwrap();
    let stats = log.compact(NOW).unwrap();
    assert!(stats.cleaned);
    assert_eq!(std::fs::read(&active_file).unwrap(), before);
    let all = read_all(&log);
    assert_eq!(all.iter().filter(|r| r.offset < active_base).count(), 5);
    assert_eq!(all.iter().filter(|r| r.offset >= active_base).count(), 15);
    // With only the active segment there is nothing to compact.
    let root2 = tempfile::tempdir().unwrap();
    let mut fresh = open(root2.path(), compact_config());
    write_rounds(&mut fresh, 5, 3, NOW - HOUR);
    assert!(!fresh.compact(NOW).unwrap().cleaned);
    assert_eq!(read_all(&fresh).len(), 15);
}

#[test]
fn tombstones_survive_until_the_delete_horizon() {
    let root = tempfile::tempdir().unwrap();
    let retention = 10 * HOUR;
    // Any dirty byte triggers a pass, so each step below is a real cleaning.
    let config = LogConfig {
        delete_retention_ms: retention,
        min_cleanable_dirty_ratio: 0.0,
        ..compact_config()
    };
    let mut log = open(root.path(), config.clone());
    log.append(
        &kv_batch(&[("a", Some("1")), ("b", Some("1"))], NOW - HOUR),
        0,
        NOW,
    )
    .unwrap();
    log.append(&kv_batch(&[("a", None)], NOW - HOUR), 0, NOW)
        .unwrap();
    log.roll(NOW).unwrap();

    // First cleaning: the old value of "a" goes, the tombstone stays and gets its horizon.
    let stats = log.compact(NOW).unwrap();
    assert!(stats.cleaned);
    assert_eq!(stats.next_delete_horizon, Some(NOW + retention));
    let seen = read_all(&log);
    let got: Vec<(&str, Option<&str>)> = seen
        .iter()
        .map(|s| (s.key.as_str(), s.value.as_deref()))
        .collect();
    assert_eq!(got, vec![("b", Some("1")), ("a", None)]);
    assert_eq!(seen[1].offset, 2);
    assert_eq!(
        seen[1].timestamp,
        NOW - HOUR,
        "record timestamp kept despite the horizon"
    );

    // Before the horizon the tombstone is still there, even across a reopen.
    assert!(!log.compact(NOW + retention - 1).unwrap().cleaned);
    drop(log);
    let mut log = open(root.path(), config);
    assert_eq!(read_all(&log).len(), 2);
    // More writes make the log dirty again; before the horizon the tombstone survives that
    // pass too (the horizon is remembered in the batch, not restarted).
    log.append(&kv_batch(&[("c", Some("1"))], NOW), 0, NOW)
        .unwrap();
    log.roll(NOW).unwrap();
    let stats = log.compact(NOW + retention - 1).unwrap();
    assert!(stats.cleaned);
    assert_eq!(stats.tombstones_removed, 0);
    assert!(read_all(&log)
        .iter()
        .any(|s| s.key == "a" && s.value.is_none()));
    // After the horizon the next pass removes it, even with nothing dirty.
    let stats = log.compact(NOW + retention).unwrap();
    assert!(stats.cleaned, "{stats:?}");
    assert_eq!(stats.tombstones_removed, 1);
    let keys: Vec<String> = read_all(&log).into_iter().map(|s| s.key).collect();
    assert_eq!(keys, vec!["b", "c"]);
    assert_eq!(log.log_end_offset(), 4);
}

/// Builds a log with closed segments full of duplicates; returns the latest values.
fn dirty_log(root: &Path) -> (PartitionLog, BTreeMap<String, Seen>, Vec<Seen>) {
    let mut log = open(
        root,
        LogConfig {
            segment_bytes: 1024,
            ..compact_config()
        },
    );
    let written = write_rounds(&mut log, 10, 12, NOW - HOUR);
    log.roll(NOW).unwrap();
    // Something in the active segment, which must come through untouched.
    let extra = write_rounds(&mut log, 2, 1, NOW);
    let mut all = written.clone();
    all.extend(extra);
    let latest = latest_by_key(&all);
    (log, latest, all)
}

/// What a recovered log must look like.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    /// Exactly the records written.
    Originals,
    /// Some group was compacted (the interrupted pass may have done only part).
    Compacted,
    /// Fully compacted: one record per key in closed segments plus the active segment.
    FullyCompacted,
}

fn assert_recovered(root: &Path, latest: &BTreeMap<String, Seen>, all: &[Seen], expect: Expect) {
    let dir = part_dir(root);
    let mut log = open(
        root,
        LogConfig {
            segment_bytes: 1024,
            ..compact_config()
        },
    );
    for suffix in [".cleaned", ".swap"] {
        assert!(
            files_with_suffix(&dir, suffix).is_empty(),
            "{suffix} left over"
        );
    }
    let seen = read_all(&log);
    assert_eq!(latest_by_key(&seen), *latest, "no latest value lost");
    match expect {
        Expect::Originals => assert_eq!(seen, all, "originals intact"),
        Expect::Compacted => assert!(seen.len() < all.len(), "{seen:?}"),
        // 10 keys in the closed segments, 2 records in the active one.
        Expect::FullyCompacted => assert_eq!(seen.len(), latest.len() + 2, "{seen:?}"),
    }
    assert_eq!(consume(&log, 0), seen);
    // Every remaining .log has both indexes, and the log works on.
    for f in files_with_suffix(&dir, ".log") {
        let stem = f.trim_end_matches(".log");
        assert!(dir.join(format!("{stem}.index")).exists(), "{stem}.index");
        assert!(
            dir.join(format!("{stem}.timeindex")).exists(),
            "{stem}.timeindex"
        );
    }
    let leo = log.log_end_offset();
    let info = log
        .append(&kv_batch(&[("k000", Some("after"))], NOW), 0, NOW)
        .unwrap();
    assert_eq!(info.base_offset, leo);
    log.roll(NOW).unwrap();
    log.set_config(LogConfig {
        min_cleanable_dirty_ratio: 0.0,
        ..log.config().clone()
    });
    assert!(log.compact(NOW).unwrap().cleaned);
    let again = latest_by_key(&read_all(&log));
    assert_eq!(again["k000"].value.as_deref(), Some("after"));
    assert_eq!(again.len(), latest.len());
}

#[test]
fn crash_before_swap_keeps_the_originals() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, latest, all) = dirty_log(root.path());
    set_crash_point(3);
    assert!(log.compact(NOW).is_err());
    set_crash_point(0);
    assert!(!files_with_suffix(&part_dir(root.path()), ".log.cleaned").is_empty());
    drop(log); // kill -9: no close, no clean shutdown marker
    assert_recovered(root.path(), &latest, &all, Expect::Originals);
}

#[test]
fn crash_after_swap_rename_completes_the_swap() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, latest, all) = dirty_log(root.path());
    set_crash_point(1);
    assert!(log.compact(NOW).is_err());
    set_crash_point(0);
    let dir = part_dir(root.path());
    assert!(!files_with_suffix(&dir, ".log.swap").is_empty());
    assert!(!files_with_suffix(&dir, ".index.swap").is_empty());
    drop(log);
    assert_recovered(root.path(), &latest, &all, Expect::Compacted);
}

#[test]
fn crash_while_deleting_originals_completes_the_swap() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, latest, all) = dirty_log(root.path());
    set_crash_point(2);
    assert!(log.compact(NOW).is_err());
    set_crash_point(0);
    // The handle is offline now: no more writes through it.
    assert_eq!(
        log.append(&kv_batch(&[("x", Some("1"))], NOW), 0, NOW)
            .unwrap_err()
            .kafka_code(),
        codes::KAFKA_STORAGE_ERROR
    );
    drop(log);
    assert_recovered(root.path(), &latest, &all, Expect::Compacted);
}

#[test]
fn crash_after_log_rename_before_index_rename_rebuilds_indexes() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, latest, all) = dirty_log(root.path());
    assert!(log.compact(NOW).unwrap().cleaned);
    let first = log.segment_base_offsets()[0];
    drop(log);
    // As if the process died after `<base>.log.swap` -> `.log` but before the index renames.
    let dir = part_dir(root.path());
    for ext in ["index", "timeindex"] {
        std::fs::rename(
            dir.join(format!("{first:020}.{ext}")),
            dir.join(format!("{first:020}.{ext}.swap")),
        )
        .unwrap();
    }
    assert_recovered(root.path(), &latest, &all, Expect::FullyCompacted);
}

#[test]
fn null_key_is_refused_on_compacted_topics_only() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), compact_config());
    log.append(&kv_batch(&[("a", Some("1"))], NOW), 0, NOW)
        .unwrap();
    for compression in [Compression::None, Compression::Gzip] {
        let keyless = kv_batch_with(
            &[(Some("b"), Some("1")), (None, Some("no key"))],
            NOW,
            compression,
            None,
        );
        let err = log.append(&keyless, 0, NOW).unwrap_err();
        assert_eq!(err.kafka_code(), codes::INVALID_RECORD);
        assert_eq!(
            err.to_string(),
            "Compacted topic cannot accept message without key in topic partition compacted-0."
        );
    }
    assert_eq!(
        log.log_end_offset(),
        1,
        "nothing of the refused batches was written"
    );
    // Tombstones (null value, with key) are fine.
    log.append(&kv_batch(&[("a", None)], NOW), 0, NOW).unwrap();

    // A normal topic takes keyless records.
    let root2 = tempfile::tempdir().unwrap();
    let mut normal = open(root2.path(), LogConfig::default());
    let keyless = kv_batch_with(&[(None, Some("v"))], NOW, Compression::None, None);
    assert_eq!(normal.append(&keyless, 0, NOW).unwrap().base_offset, 0);
    // ...and compaction is a no-op there.
    normal.roll(NOW).unwrap();
    assert!(!normal.compact(NOW).unwrap().cleaned);
}

#[test]
fn rewriting_the_same_keys_keeps_the_log_bounded() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(
        root.path(),
        LogConfig {
            segment_bytes: 8 * 1024,
            ..compact_config()
        },
    );
    let mut max_size = 0;
    let mut max_segments = 0;
    for round in 0..100 {
        write_rounds(&mut log, 100, 1, NOW - HOUR + round);
        log.compact(NOW).unwrap();
        max_size = max_size.max(log.size_bytes());
        max_segments = max_segments.max(log.segment_count());
    }
    let one_round = {
        let r2 = tempfile::tempdir().unwrap();
        let mut l = open(r2.path(), compact_config());
        write_rounds(&mut l, 100, 1, NOW);
        l.size_bytes()
    };
    // Uncompacted this would be 100 rounds; a handful of rounds' worth is the bound.
    assert!(
        max_size < 10 * one_round,
        "max {max_size} vs one round {one_round}"
    );
    assert!(max_segments <= 10, "segments {max_segments}");
    log.roll(NOW).unwrap();
    let stats = log.compact(NOW).unwrap();
    assert!(stats.cleaned);
    let seen = read_all(&log);
    assert_eq!(seen.len(), 100);
    assert!(seen
        .iter()
        .all(|s| s.value.as_deref().unwrap().starts_with("r0-")));
    assert_eq!(log.log_end_offset(), 100 * 100);
    assert_eq!(seen.iter().map(|s| s.offset).min(), Some(99 * 100));
}

#[test]
fn idempotent_producer_state_survives_compaction() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), compact_config());
    // Real time: producer state older than producer.id.expiration.ms is dropped on open.
    let now = crate::log::segment::wall_clock_ms();
    let pid = 42;
    let p0 = kv_batch_with(
        &[(Some("a"), Some("p0")), (Some("b"), Some("p0"))],
        now,
        Compression::None,
        Some((pid, 0, 0)),
    );
    log.append(&p0, 0, now).unwrap();
    // Someone else overwrites both keys: the producer's only (last) batch is all superseded.
    log.append(
        &kv_batch(&[("a", Some("x")), ("b", Some("x"))], now),
        0,
        now,
    )
    .unwrap();
    log.roll(now).unwrap();
    assert!(log.compact(now).unwrap().cleaned);
    let data = log.read(0, usize::MAX, i64::MAX, true).unwrap().records;
    let h = BatchHeader::parse(&data).unwrap();
    assert_eq!(
        (h.base_offset, h.last_offset_delta, h.records_count),
        (0, 1, 0),
        "empty batch kept"
    );
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (pid, 0, 0)
    );
    assert_eq!(read_all(&log).len(), 2);
    drop(log);
    let mut log = open(root.path(), compact_config());
    // The retry of seq 0 is still recognised as a duplicate; seq 2 follows on.
    assert!(log.append(&p0, 0, now).unwrap().duplicate);
    let p1 = kv_batch_with(
        &[(Some("c"), Some("p1"))],
        now,
        Compression::None,
        Some((pid, 0, 2)),
    );
    assert!(!log.append(&p1, 0, now).unwrap().duplicate);
    let gap = kv_batch_with(
        &[(Some("c"), Some("p1"))],
        now,
        Compression::None,
        Some((pid, 0, 9)),
    );
    assert_eq!(
        log.append(&gap, 0, now).unwrap_err().kafka_code(),
        codes::OUT_OF_ORDER_SEQUENCE_NUMBER
    );
}

#[test]
fn compaction_lags_and_dirty_ratio() {
    let root = tempfile::tempdir().unwrap();
    // min.compaction.lag.ms: records younger than the lag are not compacted.
    let mut log = open(
        root.path(),
        LogConfig {
            min_compaction_lag_ms: HOUR,
            ..compact_config()
        },
    );
    write_rounds(&mut log, 5, 4, NOW);
    log.roll(NOW).unwrap();
    assert!(!log.compact(NOW + HOUR / 2).unwrap().cleaned);
    assert_eq!(read_all(&log).len(), 20);
    assert!(log.compact(NOW + 2 * HOUR).unwrap().cleaned);
    assert_eq!(read_all(&log).len(), 5);

    // min.cleanable.dirty.ratio: a little new data on a big clean log waits...
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: 0.5,
        ..compact_config()
    };
    let mut log = open(root.path(), config.clone());
    write_rounds(&mut log, 50, 1, NOW - HOUR);
    log.roll(NOW).unwrap();
    assert!(log.compact(NOW).unwrap().cleaned);
    write_rounds(&mut log, 2, 1, NOW - HOUR);
    log.roll(NOW).unwrap();
    let stats = log.compact(NOW).unwrap();
    assert!(
        !stats.cleaned && stats.dirty_ratio > 0.0 && stats.dirty_ratio < 0.5,
        "{stats:?}"
    );
    // ...unless it is older than max.compaction.lag.ms.
    log.set_config(LogConfig {
        max_compaction_lag_ms: HOUR / 2,
        ..config
    });
    let stats = log.compact(NOW).unwrap();
    assert!(stats.cleaned && stats.forced_by_max_lag, "{stats:?}");
    assert_eq!(read_all(&log).len(), 50);
}

#[test]
fn compact_and_delete_apply_both() {
    let root = tempfile::tempdir().unwrap();
    let now = crate::log::segment::wall_clock_ms();
    let mut log = open(
        root.path(),
        LogConfig {
            cleanup_delete: true,
            retention_ms: 10 * HOUR,
            ..compact_config()
        },
    );
    let old: Vec<(&str, Option<&str>)> = vec![("old1", Some("v")), ("old2", Some("v"))];
    log.append(&kv_batch(&old, now - 20 * HOUR), 0, now)
        .unwrap();
    log.roll(now).unwrap();
    let recent = write_rounds(&mut log, 5, 3, now - HOUR);
    log.roll(now).unwrap();
    // Time retention deletes the old segment although its keys were never superseded...
    assert_eq!(log.apply_retention(now).unwrap(), 1);
    assert_eq!(log.log_start_offset(), 2);
    // ...and compaction dedupes the rest.
    assert!(log.compact(now).unwrap().cleaned);
    let seen = read_all(&log);
    assert_eq!(latest_by_key(&seen), latest_by_key(&recent));
    assert_eq!(seen.len(), 5);
    assert_eq!(log.log_start_offset(), 2);
}

#[test]
fn manager_runs_compaction_on_compacted_partitions_only() {
    let root = tempfile::tempdir().unwrap();
    let dirs = vec![root.path().to_path_buf()];
    let config_for = |topic: &str| {
        Some(if topic == "compacted" {
            compact_config()
        } else {
            LogConfig::default()
        })
    };
    let mgr = LogManager::open(&dirs, 1, "cluster", &config_for).unwrap();
    let c = mgr.create(&tp(), compact_config(), None).unwrap();
    let n = mgr
        .create(&TopicPartition::new("plain", 0), LogConfig::default(), None)
        .unwrap();
    for log in [&c, &n] {
        let mut l = log.lock().unwrap();
        write_rounds(&mut l, 3, 3, NOW - HOUR);
        l.roll(NOW).unwrap();
    }
    assert_eq!(mgr.run_compaction(NOW), 1);
    assert_eq!(read_all(&c.lock().unwrap()).len(), 3);
    assert_eq!(read_all(&n.lock().unwrap()).len(), 9);
    assert_eq!(mgr.run_compaction(NOW), 0, "nothing dirty any more");
    let text = std::fs::read_to_string(root.path().join(CLEANER_OFFSET_CHECKPOINT)).unwrap();
    assert_eq!(text, "0\n1\ncompacted 0 9\n");
    mgr.delete(&tp()).unwrap();
    let text = std::fs::read_to_string(root.path().join(CLEANER_OFFSET_CHECKPOINT)).unwrap();
    assert_eq!(text, "0\n0\n");
    mgr.shutdown().unwrap();
}

/// The broker cleans without holding the partition lock: appends that land while a pass
/// reads and rewrites are kept, and the pass still swaps its segments in.
#[test]
fn appends_during_an_unlocked_pass_are_kept() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, _, mut all) = dirty_log(root.path());
    let plan = log.plan_cleaning(NOW).unwrap().expect("a pass is due");
    // While the cleaner works without the lock: appends (and a roll) on the live log.
    let during = write_rounds(&mut log, 3, 40, NOW);
    all.extend(during);
    let leo = log.log_end_offset();
    let cleaned = plan.execute().unwrap();
    let stats = log.install_cleaned(cleaned).unwrap();
    assert!(stats.cleaned, "{stats:?}");
    let after = read_all(&log);
    assert_eq!(latest_by_key(&after), latest_by_key(&all));
    assert_eq!(log.log_end_offset(), leo);
    // Every record appended during the pass is still there, at its offset.
    let tail: Vec<&Seen> = all
        .iter()
        .filter(|s| s.offset >= stats.cleaned_up_to)
        .collect();
    let after_tail: Vec<&Seen> = after
        .iter()
        .filter(|s| s.offset >= stats.cleaned_up_to)
        .collect();
    assert_eq!(after_tail, tail);
    assert!(files_with_suffix(&part_dir(root.path()), ".cleaned").is_empty());
    drop(log);
    let log = open(root.path(), compact_config());
    assert_eq!(read_all(&log), after, "the result survives a reopen");
}

/// DeleteRecords (and retention) that remove the segments a pass has read make that pass
/// stop before its swap: nothing below the new log start comes back, and no `.cleaned`
/// file is left behind.
#[test]
fn segments_deleted_during_an_unlocked_pass_are_not_resurrected() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, _, all) = dirty_log(root.path());
    let plan = log.plan_cleaning(NOW).unwrap().expect("a pass is due");
    let bases = log.segment_base_offsets();
    let start = bases[2];
    assert_eq!(log.delete_records_before(start).unwrap(), start);
    let originals = plan.originals();
    // Rolled segments are read through handles opened on demand (one at a time), so the
    // pass cannot read the deleted ones; the broker then sees the log changed and abandons
    // it (`compact_shared`).
    assert!(plan.execute().is_err());
    assert!(!log.still_holds(&originals));
    assert_eq!(log.cleaner_offset(), None, "the checkpoint does not move");
    let after = read_all(&log);
    let expected: Vec<Seen> = all.iter().filter(|s| s.offset >= start).cloned().collect();
    assert_eq!(after, expected);
    assert!(files_with_suffix(&part_dir(root.path()), ".cleaned").is_empty());
    // The next pass cleans what is left.
    assert!(log.compact(NOW).unwrap().cleaned);
    assert_eq!(latest_by_key(&read_all(&log)), latest_by_key(&expected));
}

/// A truncation below the cleaned range during a pass (a follower catching up with a new
/// leader) makes the pass stop: truncated records never come back.
#[test]
fn truncation_during_an_unlocked_pass_wins() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, _, all) = dirty_log(root.path());
    let plan = log.plan_cleaning(NOW).unwrap().expect("a pass is due");
    let bases = log.segment_base_offsets();
    let cut = bases[1] + 1;
    log.truncate_to(cut).unwrap();
    let originals = plan.originals();
    // Reading the truncated segment fails; the broker then sees the log changed.
    assert!(plan.execute().is_err());
    assert!(!log.still_holds(&originals));
    assert_eq!(log.cleaner_offset(), None, "the checkpoint does not move");
    // The batch holding the cut goes whole: the log ends at the segment's base.
    assert_eq!(log.log_end_offset(), bases[1]);
    let after = read_all(&log);
    assert!(after.iter().all(|s| s.offset < bases[1]), "{after:?}");
    let expected: Vec<Seen> = all
        .iter()
        .filter(|s| s.offset < bases[1])
        .cloned()
        .collect();
    assert_eq!(after, expected);
    assert!(files_with_suffix(&part_dir(root.path()), ".cleaned").is_empty());
}

#[test]
fn an_aborted_transaction_moves_to_the_cleaned_segments_index() {
    let root = tempfile::tempdir().unwrap();
    let dir = part_dir(root.path());
    let mut log = open(root.path(), compact_config());
    // Producer 5's transaction starts in the first segment and is aborted in the second.
    log.append(&crate::log::test_util::transactional(1, 5, 0, 0), 0, NOW)
        .unwrap();
    log.append(
        &kv_batch(&[("a", Some("1")), ("a", Some("2"))], NOW - HOUR),
        0,
        NOW,
    )
    .unwrap();
    log.roll(NOW).unwrap();
    let abort = EndTxnMarker {
        control_type: ControlRecordType::Abort,
        coordinator_epoch: 0,
    };
    let marker = log
        .append_txn_marker(5, 0, abort, 0, NOW)
        .unwrap()
        .base_offset;
    log.append(&kv_batch(&[("a", Some("3"))], NOW - HOUR), 0, NOW)
        .unwrap();
    log.roll(NOW).unwrap();
    log.append(&kv_batch(&[("b", Some("1"))], NOW), 0, NOW)
        .unwrap();
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(
        files_with_suffix(&dir, ".txnindex"),
        vec![format!("{marker:020}.txnindex")]
    );
    let aborted = log.aborted_transactions();
    assert_eq!(aborted.len(), 1);

    let stats = log.compact(NOW).unwrap();
    assert!(stats.cleaned, "{stats:?}");
    assert!(
        !log.segment_base_offsets().contains(&marker),
        "the two closed segments were merged"
    );
    // The marker now lives in the cleaned segment at 0, and so does its index entry.
    assert_eq!(log.aborted_transactions(), aborted);
    assert_eq!(
        files_with_suffix(&dir, ".txnindex"),
        vec![format!("{:020}.txnindex", 0)]
    );
    drop(log);
    let log = open(root.path(), compact_config());
    assert_eq!(log.aborted_transactions(), aborted);
    assert_eq!(
        files_with_suffix(&dir, ".txnindex"),
        vec![format!("{:020}.txnindex", 0)]
    );
}
