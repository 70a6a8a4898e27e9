//! Producer state snapshots as a restarted leader relies on them: a retry of a producer's
//! last batch is still a duplicate, its epoch still fenced and its open transaction still
//! holds the last stable offset — after a clean close, after a crash, and after retention
//! deleted every batch the producer wrote. A damaged snapshot costs a replay, never data.

use super::super::batch::test_util::{idempotent, simple, transactional};
use super::super::producer_snapshot::{self, SnapshotEntry};
use super::*;

const PID: i64 = 7;
const TXN_PID: i64 = 9;

fn snapshot_offsets(root: &Path) -> Vec<i64> {
    log_files(&part_dir(root), "snapshot")
        .iter()
        .map(|n| n.trim_end_matches(".snapshot").parse().unwrap())
        .collect()
}

/// A config whose retention keeps about two segments of 1 KiB.
fn retained_config() -> LogConfig {
    LogConfig {
        retention_bytes: 2048,
        ..small_config()
    }
}

/// Producer `PID` writes three batches (epoch 1) and `TXN_PID` opens a transaction; then
/// plain records fill segments until retention deleted all of those batches. Returns the
/// log and producer `PID`'s last batch with its offsets.
fn producers_then_retention(root: &Path) -> (PartitionLog, Vec<u8>, (i64, i64)) {
    let mut log = open(root, retained_config());
    for seq in [0, 2] {
        log.append(&idempotent(2, PID, 1, seq), 0, 0).unwrap();
    }
    let last = idempotent(2, PID, 1, 4);
    let info = log.append(&last, 0, 0).unwrap();
    let txn = log.append(&transactional(1, TXN_PID, 0, 0), 0, 0).unwrap();
    assert_eq!(txn.base_offset, 6);
    let now = segment::wall_clock_ms();
    while log.log_start_offset() <= 6 {
        for _ in 0..10 {
            log.append(&simple(3, now), 0, now).unwrap();
        }
        log.apply_retention(now).unwrap();
    }
    (log, last, (info.base_offset, info.last_offset))
}

/// What a restarted leader must still know about the producers of
/// [`producers_then_retention`].
fn assert_producer_state_kept(log: &mut PartitionLog, last: &[u8], offsets: (i64, i64)) {
    let size = log.size_bytes();
    let dup = log.append(last, 0, 0).unwrap();
    assert!(dup.duplicate, "a retry of the last batch is a duplicate");
    assert_eq!((dup.base_offset, dup.last_offset), offsets);
    assert_eq!(log.size_bytes(), size, "and is not written twice");
    let fenced = log.append(&idempotent(1, PID, 0, 6), 0, 0).unwrap_err();
    assert_eq!(fenced.kafka_code(), codes::INVALID_PRODUCER_EPOCH);
    let gap = log.append(&idempotent(1, PID, 1, 9), 0, 0).unwrap_err();
    assert_eq!(gap.kafka_code(), codes::OUT_OF_ORDER_SEQUENCE_NUMBER);
    let next = log.append(&idempotent(1, PID, 1, 6), 0, 0).unwrap();
    assert!(!next.duplicate);
    // The open transaction's first batch is gone, yet it still holds the last stable
    // offset at the log start (read_committed consumers wait for its marker).
    let txn = log
        .active_producers()
        .into_iter()
        .find(|p| p.producer_id == TXN_PID)
        .unwrap();
    assert_eq!(txn.current_txn_start_offset, 6);
    assert!(log.high_watermark() > log.log_start_offset());
    assert_eq!(log.last_stable_offset(), log.log_start_offset());
}

#[test]
fn state_of_producers_whose_batches_retention_deleted_survives() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, last, offsets) = producers_then_retention(root.path());
    // Kafka's snapshots go with their segments: none below the log start remains.
    let start = log.log_start_offset();
    assert!(snapshot_offsets(root.path()).iter().all(|&o| o >= start));
    assert!(snapshot_offsets(root.path()).contains(&start));
    assert_producer_state_kept(&mut log, &last, offsets);
}

#[test]
fn state_survives_a_clean_restart_after_retention() {
    let root = tempfile::tempdir().unwrap();
    let (mut log, last, offsets) = producers_then_retention(root.path());
    log.close().unwrap();
    let leo = log.log_end_offset();
    drop(log);
    assert!(
        snapshot_offsets(root.path()).contains(&leo),
        "a clean close snapshots at the log end offset"
    );
    std::fs::write(root.path().join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
    let mut log = open(root.path(), retained_config());
    let hw = log.log_end_offset();
    log.set_high_watermark(hw);
    assert_producer_state_kept(&mut log, &last, offsets);
}

#[test]
fn state_survives_a_crash_after_retention() {
    let root = tempfile::tempdir().unwrap();
    let (log, last, offsets) = producers_then_retention(root.path());
    // No close, no clean shutdown marker, no recovery point: every segment is recovered,
    // and the snapshot at the log start (taken when that segment was rolled) is loaded.
    drop(log);
    let mut log = open(root.path(), retained_config());
    let hw = log.log_end_offset();
    log.set_high_watermark(hw);
    assert_producer_state_kept(&mut log, &last, offsets);
}

#[test]
fn a_clean_restart_loads_the_snapshot_and_replays_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    for seq in 0..40 {
        log.append(&idempotent(1, PID, 0, seq), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 2);
    let rolled: Vec<i64> = log.segment_base_offsets()[1..].to_vec();
    assert_eq!(
        snapshot_offsets(root.path()),
        rolled,
        "one snapshot per roll"
    );
    log.close().unwrap();
    let leo = log.log_end_offset();
    drop(log);
    // A producer only the snapshot knows proves it was loaded instead of the log replayed.
    let path = producer_snapshot::snapshot_path(&part_dir(root.path()), leo);
    let mut entries = producer_snapshot::read(&path).unwrap().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].producer_id, entries[0].last_sequence),
        (PID, 39)
    );
    entries.push(SnapshotEntry {
        producer_id: 99,
        epoch: 4,
        last_sequence: 10,
        last_offset: 3,
        offset_delta: 0,
        timestamp: segment::wall_clock_ms(),
        coordinator_epoch: -1,
        current_txn_first_offset: -1,
    });
    producer_snapshot::write(&part_dir(root.path()), leo, &entries, true).unwrap();
    std::fs::write(root.path().join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
    let mut log = open(root.path(), small_config());
    let ids: Vec<(i64, i16, i32)> = log
        .active_producers()
        .iter()
        .map(|p| (p.producer_id, p.producer_epoch, p.last_sequence))
        .collect();
    assert_eq!(ids, vec![(PID, 0, 39), (99, 4, 10)]);
    assert!(
        log.append(&idempotent(1, PID, 0, 39), 0, 0)
            .unwrap()
            .duplicate
    );
}

#[test]
fn a_corrupt_snapshot_is_ignored_and_the_state_replayed() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    for seq in 0..40 {
        log.append(&idempotent(1, PID, 0, seq), 0, 0).unwrap();
    }
    log.append(&transactional(1, TXN_PID, 0, 0), 0, 0).unwrap();
    log.close().unwrap();
    let leo = log.log_end_offset();
    drop(log);
    let dir = part_dir(root.path());
    let snapshots = snapshot_offsets(root.path());
    assert!(snapshots.len() > 2);
    // The latest is damaged (a flipped bit), the one before torn (half written): both are
    // skipped, and the state comes from an older one plus the batches after it.
    let latest = producer_snapshot::snapshot_path(&dir, leo);
    let mut bytes = std::fs::read(&latest).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&latest, bytes).unwrap();
    let before = snapshots[snapshots.len() - 2];
    let torn = producer_snapshot::snapshot_path(&dir, before);
    let bytes = std::fs::read(&torn).unwrap();
    std::fs::write(&torn, &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(root.path().join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
    let mut log = open(root.path(), small_config());
    assert!(
        !latest.exists() && !torn.exists(),
        "corrupt snapshots are deleted"
    );
    let dup = log.append(&idempotent(1, PID, 0, 39), 0, 0).unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.base_offset, 39);
    log.set_high_watermark(leo);
    assert_eq!(
        log.last_stable_offset(),
        40,
        "the open transaction holds the LSO"
    );

    // Every snapshot damaged: the whole log is replayed.
    log.close().unwrap();
    drop(log);
    for o in snapshot_offsets(root.path()) {
        std::fs::write(producer_snapshot::snapshot_path(&dir, o), b"junk").unwrap();
    }
    let mut log = open(root.path(), small_config());
    assert!(snapshot_offsets(root.path()).is_empty());
    assert!(
        log.append(&idempotent(1, PID, 0, 39), 0, 0)
            .unwrap()
            .duplicate
    );
    log.set_high_watermark(leo);
    assert_eq!(log.last_stable_offset(), 40);
}

#[test]
fn truncation_drops_snapshots_beyond_the_new_log_end() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    for seq in 0..40 {
        log.append(&idempotent(1, PID, 0, seq), 0, 0).unwrap();
    }
    let bases = log.segment_base_offsets();
    let cut = bases[1] + 1;
    log.truncate_to(cut).unwrap();
    assert_eq!(snapshot_offsets(root.path()), vec![bases[1]]);
    // The state is the snapshot at bases[1] plus the one batch after it.
    assert_eq!(log.active_producers()[0].last_sequence, (cut - 1) as i32);
    let next = log
        .append(&idempotent(1, PID, 0, cut as i32), 0, 0)
        .unwrap();
    assert_eq!(next.base_offset, cut);
}

#[test]
fn producers_idle_past_producer_id_expiration_ms_are_not_loaded() {
    use super::super::batch::test_util::{batch, Spec};
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), small_config());
    let now = segment::wall_clock_ms();
    let idle = batch(&Spec {
        producer_id: 5,
        producer_epoch: 0,
        base_sequence: 0,
        timestamp: now - 60_000,
        ..Spec::default()
    });
    log.append(&idle, 0, 0).unwrap();
    log.append(&idempotent(1, PID, 0, 0), 0, 0).unwrap();
    log.close().unwrap();
    drop(log);
    std::fs::write(root.path().join(CLEAN_SHUTDOWN_FILE), b"").unwrap();
    let config = LogConfig {
        producer_id_expiration_ms: 30_000,
        ..small_config()
    };
    let log = open(root.path(), config);
    let ids: Vec<i64> = log
        .active_producers()
        .iter()
        .map(|p| p.producer_id)
        .collect();
    assert_eq!(
        ids,
        vec![PID],
        "producer 5 was idle for 60 s, past the 30 s setting"
    );
}
