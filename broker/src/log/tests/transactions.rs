//! Behavioural tests of transactions on the log: the last stable offset, markers, the
//! aborted-transaction index on disk and its recovery, as a read_committed consumer and an
//! operator looking at the partition directory would notice them.

use std::path::Path;

use super::super::batch::test_util::{idempotent, simple, transactional};
use super::*;

const COMMIT: EndTxnMarker = EndTxnMarker {
    control_type: ControlRecordType::Commit,
    coordinator_epoch: 0,
};
const ABORT: EndTxnMarker = EndTxnMarker {
    control_type: ControlRecordType::Abort,
    coordinator_epoch: 0,
};

/// Appends a marker and moves the high watermark to the log end, as a single replica does.
fn mark(log: &mut PartitionLog, pid: i64, marker: EndTxnMarker) -> i64 {
    let info = log.append_txn_marker(pid, 0, marker, 0, 0).unwrap();
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    info.base_offset
}

/// What a read_committed consumer fetching from `offset` until it is caught up gets: the
/// offsets of the data records returned and the aborted transactions `(producer id, first
/// offset)` sent with them (each once). A fetch reads from one segment, so this fetches
/// again from where the previous fetch ended, as a consumer does.
fn read_committed(log: &PartitionLog, mut offset: i64) -> (Vec<i64>, Vec<(i64, i64)>) {
    let (mut offsets, mut aborted) = (Vec::new(), Vec::new());
    loop {
        let slice = log
            .read_regions(offset, usize::MAX, log.last_stable_offset(), true)
            .unwrap();
        let Some(upper) = slice.fetch_upper_bound_offset else {
            break;
        };
        let mut bytes = Vec::new();
        for r in &slice.regions {
            r.read_to(&mut bytes).unwrap();
        }
        let batches = headers(&bytes);
        offsets.extend(
            batches
                .iter()
                .filter(|h| !h.is_control())
                .flat_map(|h| h.base_offset..=h.last_offset()),
        );
        for a in log.collect_aborted_transactions(offset, upper) {
            if !aborted.contains(&(a.producer_id, a.first_offset)) {
                aborted.push((a.producer_id, a.first_offset));
            }
        }
        offset = batches.last().unwrap().next_offset();
    }
    (offsets, aborted)
}

fn txn_index_bytes(dir: &Path, base: i64) -> Option<Vec<u8>> {
    std::fs::read(dir.join(format!("{base:020}.txnindex"))).ok()
}

#[test]
fn the_last_stable_offset_waits_for_open_transactions_and_replicated_markers() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    log.append(&simple(2, 0), 0, 0).unwrap(); // 0..=1
    log.append(&transactional(3, 1, 0, 0), 0, 0).unwrap(); // 2..=4, producer 1
    log.append(&simple(1, 0), 0, 0).unwrap(); // 5
    assert_eq!(log.high_watermark(), 6);
    assert_eq!(
        log.last_stable_offset(),
        2,
        "producer 1's transaction is open"
    );
    log.append(&transactional(2, 2, 0, 0), 0, 0).unwrap(); // 6..=7, producer 2
    assert_eq!(read_committed(&log, 0), (vec![0, 1], vec![]));

    // Producer 1 commits (marker at 8). Until the high watermark passes the marker, the
    // transaction still counts as unstable.
    let marker = log
        .append_txn_marker(1, 0, COMMIT, 0, 0)
        .unwrap()
        .base_offset;
    assert_eq!(marker, 8);
    log.set_high_watermark(8);
    assert_eq!(log.last_stable_offset(), 2);
    log.set_high_watermark(9);
    assert_eq!(
        log.last_stable_offset(),
        6,
        "now producer 2's transaction holds it"
    );
    assert_eq!(read_committed(&log, 0), (vec![0, 1, 2, 3, 4, 5], vec![]));

    // Producer 2 aborts (marker at 9): everything is stable, and a read_committed fetch
    // is told which records to drop.
    assert_eq!(mark(&mut log, 2, ABORT), 9);
    assert_eq!(log.last_stable_offset(), 10);
    assert_eq!(
        read_committed(&log, 0),
        (vec![0, 1, 2, 3, 4, 5, 6, 7], vec![(2, 6)])
    );
    assert_eq!(
        log.aborted_transactions(),
        vec![AbortedTxn {
            producer_id: 2,
            first_offset: 6,
            last_offset: 9,
            last_stable_offset: 10,
        }]
    );
    // A fetch after the aborted transaction gets no entry for it.
    log.append(&simple(1, 0), 0, 0).unwrap();
    assert_eq!(read_committed(&log, 10), (vec![10], vec![]));
}

#[test]
fn an_abort_records_the_first_offset_of_the_next_open_transaction_as_its_last_stable_offset() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    log.append(&transactional(1, 1, 0, 0), 0, 0).unwrap(); // 0
    log.append(&transactional(1, 2, 0, 0), 0, 0).unwrap(); // 1
    mark(&mut log, 1, ABORT); // 2
    assert_eq!(log.aborted_transactions()[0].last_stable_offset, 1);
    assert_eq!(log.last_stable_offset(), 1);
    // The still-open transaction's fetch range overlaps the aborted one.
    assert_eq!(read_committed(&log, 0), (vec![0], vec![(1, 0)]));
}

#[test]
fn markers_are_checked_against_producer_and_coordinator_epochs() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    log.append(&transactional(1, 7, 3, 0), 0, 0).unwrap();
    let stale_producer = log
        .append_txn_marker(7, 2, COMMIT, 0, 0)
        .unwrap_err()
        .kafka_code();
    assert_eq!(stale_producer, codes::INVALID_PRODUCER_EPOCH);
    let newer = EndTxnMarker {
        control_type: ControlRecordType::Commit,
        coordinator_epoch: 5,
    };
    log.append_txn_marker(7, 3, newer, 0, 0).unwrap();
    let zombie_coordinator = EndTxnMarker {
        control_type: ControlRecordType::Abort,
        coordinator_epoch: 4,
    };
    assert_eq!(
        log.append_txn_marker(7, 3, zombie_coordinator, 0, 0)
            .unwrap_err()
            .kafka_code(),
        codes::TRANSACTION_COORDINATOR_FENCED
    );
    assert_eq!(log.log_end_offset(), 2, "refused markers are not written");
}

#[test]
fn a_producer_with_an_open_transaction_may_only_write_transactional_batches() {
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    log.append(&transactional(1, 7, 0, 0), 0, 0).unwrap();
    let err = log.append(&idempotent(1, 7, 0, 1), 0, 0).unwrap_err();
    assert_eq!(err.kafka_code(), codes::INVALID_TXN_STATE);
    assert_eq!(log.log_end_offset(), 1);
    // After its marker, the producer writes outside a transaction again.
    mark(&mut log, 7, COMMIT);
    log.append(&idempotent(1, 7, 0, 1), 0, 0).unwrap();
}

#[test]
fn the_txnindex_is_written_beside_the_marker_segment_and_rebuilt_after_a_crash() {
    let root = tempfile::tempdir().unwrap();
    let dir = part_dir(root.path());
    let mut log = open(root.path(), small_config());
    // Producer 1's transaction starts in the first segment and is aborted in a later one.
    log.append(&transactional(2, 1, 0, 0), 0, 0).unwrap();
    for i in 0..12 {
        log.append(&simple(3, i), 0, 0).unwrap();
    }
    assert!(log.segment_count() > 1);
    let abort1 = mark(&mut log, 1, ABORT);
    let marker_segment = *log.segment_base_offsets().last().unwrap();
    // Producer 2 starts a transaction that stays open.
    let open_first = log
        .append(&transactional(1, 2, 0, 0), 0, 0)
        .unwrap()
        .base_offset;
    log.set_high_watermark(log.log_end_offset());
    let entry = AbortedTxn {
        producer_id: 1,
        first_offset: 0,
        last_offset: abort1,
        last_stable_offset: abort1 + 1,
    };
    assert_eq!(log.aborted_transactions(), vec![entry]);
    assert_eq!(
        log_files(&dir, "txnindex"),
        vec![format!("{marker_segment:020}.txnindex")]
    );
    let on_disk = txn_index_bytes(&dir, marker_segment).unwrap();
    let mut expected = vec![0u8, 0];
    for v in [1i64, 0, abort1, abort1 + 1] {
        expected.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(on_disk, expected, "Kafka's AbortedTxn layout");
    assert_eq!(log.last_stable_offset(), open_first);
    drop(log);

    // A crash lost the index file and left a bogus one beside another segment.
    std::fs::remove_file(dir.join(format!("{marker_segment:020}.txnindex"))).unwrap();
    std::fs::write(dir.join(format!("{:020}.txnindex", 0)), [7u8; 34]).unwrap();
    let mut log = open(root.path(), small_config());
    assert_eq!(log.aborted_transactions(), vec![entry]);
    assert_eq!(txn_index_bytes(&dir, marker_segment), Some(expected));
    assert_eq!(txn_index_bytes(&dir, 0), None, "the bogus index is gone");
    // Producer 2's transaction is still open after the restart, and its marker ends it.
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), open_first);
    let abort2 = mark(&mut log, 2, ABORT);
    assert_eq!(log.last_stable_offset(), abort2 + 1);
    assert_eq!(log.aborted_transactions().len(), 2);
    let (offsets, aborted) = read_committed(&log, open_first);
    assert_eq!(offsets, vec![open_first]);
    assert_eq!(aborted, vec![(2, open_first)]);
}

#[test]
fn truncation_removes_aborted_transactions_past_the_new_end_and_reopens_them() {
    let root = tempfile::tempdir().unwrap();
    let dir = part_dir(root.path());
    let mut log = open(root.path(), LogConfig::default());
    log.append(&transactional(2, 1, 0, 0), 0, 0).unwrap(); // 0..=1
    let abort = mark(&mut log, 1, ABORT); // 2
    assert_eq!(log.aborted_transactions().len(), 1);
    log.truncate_to(abort).unwrap();
    assert!(log.aborted_transactions().is_empty());
    assert_eq!(txn_index_bytes(&dir, 0), None);
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(log.last_stable_offset(), 0, "the transaction is open again");
    // The new leader's marker ends it.
    mark(&mut log, 1, COMMIT);
    assert_eq!(log.last_stable_offset(), 3);
    assert!(log.aborted_transactions().is_empty());
}

#[test]
fn an_open_transaction_survives_a_reopen_and_producer_expiration() {
    let root = tempfile::tempdir().unwrap();
    // Retention deletes nothing here, so only producer expiration is exercised.
    let config = LogConfig {
        cleanup_delete: false,
        ..LogConfig::default()
    };
    let mut log = open(root.path(), config.clone());
    log.append(&simple(2, 0), 0, 0).unwrap();
    log.append(&transactional(2, 1, 0, 0), 0, 0).unwrap();
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (4, 2));
    log.close().unwrap();
    drop(log);
    let mut log = open(root.path(), config);
    log.set_high_watermark(log.log_end_offset());
    assert_eq!((log.high_watermark(), log.last_stable_offset()), (4, 2));
    // A producer with an open transaction does not expire however old its records are.
    assert_eq!(log.apply_retention(i64::MAX / 2).unwrap(), 0);
    assert_eq!(log.last_stable_offset(), 2);
}

#[test]
fn active_producers_report_epochs_sequences_timestamps_and_open_transactions() {
    use super::super::batch::test_util::{batch, Spec};
    let root = tempfile::tempdir().unwrap();
    let mut log = open(root.path(), LogConfig::default());
    // Recent, so producer expiration on load (by record time) keeps them.
    let ts = crate::log::segment::wall_clock_ms();
    let spec = |pid: i64, count: usize, transactional: bool| Spec {
        count,
        producer_id: pid,
        producer_epoch: 2,
        base_sequence: 0,
        timestamp: ts,
        transactional,
        ..Spec::default()
    };
    log.append(&simple(1, 0), 0, 0).unwrap(); // 0: no producer id, not reported
    log.append(&batch(&spec(8, 2, false)), 0, 0).unwrap(); // 1..=2, idempotent
    log.append(&batch(&spec(9, 3, true)), 0, 0).unwrap(); // 3..=5, open transaction
    let in_txn = ActiveProducer {
        producer_id: 9,
        producer_epoch: 2,
        last_sequence: 2,
        last_timestamp: ts + 2,
        coordinator_epoch: -1,
        current_txn_start_offset: 3,
    };
    let idempotent = ActiveProducer {
        producer_id: 8,
        producer_epoch: 2,
        last_sequence: 1,
        last_timestamp: ts + 1,
        coordinator_epoch: -1,
        current_txn_start_offset: -1,
    };
    assert_eq!(log.active_producers(), [idempotent, in_txn]);
    // The state is rebuilt from the log on open.
    log.close().unwrap();
    drop(log);
    let mut log = open(root.path(), LogConfig::default());
    assert_eq!(log.active_producers(), [idempotent, in_txn]);
    // A marker (coordinator epoch 4, written at `ts + 60 000`) ends the transaction.
    let marker = EndTxnMarker {
        control_type: ControlRecordType::Abort,
        coordinator_epoch: 4,
    };
    log.append_txn_marker(9, 2, marker, 0, ts + 60_000).unwrap();
    let ended = ActiveProducer {
        last_timestamp: ts + 60_000,
        coordinator_epoch: 4,
        current_txn_start_offset: -1,
        ..in_txn
    };
    assert_eq!(log.active_producers(), [idempotent, ended]);
}

#[test]
fn a_producer_is_idle_from_its_last_marker_not_its_last_batch() {
    use super::super::batch::test_util::{batch, Spec};
    const HOUR: i64 = 3_600_000;
    let root = tempfile::tempdir().unwrap();
    let config = LogConfig {
        cleanup_delete: false,
        ..LogConfig::default()
    };
    let mut log = open(root.path(), config);
    let written = batch(&Spec {
        producer_id: 5,
        producer_epoch: 0,
        base_sequence: 0,
        timestamp: 1_000,
        transactional: true,
        ..Spec::default()
    });
    log.append(&written, 0, 0).unwrap();
    // The marker comes 25 hours after the batch.
    log.append_txn_marker(5, 0, COMMIT, 0, 1_000 + 25 * HOUR)
        .unwrap();
    log.apply_retention(1_000 + 26 * HOUR).unwrap();
    assert_eq!(log.producer_count(), 1, "the marker is an hour old");
    log.apply_retention(1_000 + 50 * HOUR).unwrap();
    assert_eq!(log.producer_count(), 0, "a day after the marker");
}
