//! Record-batch append, read, timestamp lookups, compaction, truncation and reopening of a
//! partition log (plain, compacted, LogAppendTime; tiny segments so rolls and multi-segment
//! cleaning happen). Batch CRCs are recomputed so mutations get past the CRC check and reach
//! the record parsing. Checked: nothing panics or over-allocates, every batch a read returns
//! has a valid CRC, and a clean close and reopen keep the log end offset and every byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oxbow_broker::log::{LogConfig, PartitionLog, TimestampType, TopicPartition};

mod common;
use common::fix_crcs;

fn assert_valid_batches(records: &[u8]) {
    let mut pos = 0usize;
    while pos < records.len() {
        assert!(pos + 61 <= records.len(), "torn batch header in a read");
        let len = i32::from_be_bytes(records[pos + 8..pos + 12].try_into().unwrap()) as usize;
        let end = pos + 12 + len;
        assert!(end <= records.len(), "torn batch in a read");
        let stored = u32::from_be_bytes(records[pos + 17..pos + 21].try_into().unwrap());
        assert_eq!(
            stored,
            crc32c::crc32c(&records[pos + 21..end]),
            "bad CRC at {pos}"
        );
        pos = end;
    }
}

fn config(selector: u8) -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 128,
        cleanup_compact: selector & 1 == 1,
        cleanup_delete: selector & 2 == 2,
        timestamp_type: if selector & 4 == 4 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        min_cleanable_dirty_ratio: 0.0,
        min_compaction_lag_ms: 0,
        delete_retention_ms: 1_000,
        max_message_bytes: 1 << 20,
        ..LogConfig::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, mut rest)) = data.split_first() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fuzz-0");
    let tp = TopicPartition::new("fuzz", 0);
    let Ok(mut log) = PartitionLog::open(&path, tp.clone(), config(selector)) else {
        return;
    };
    let mut now = 1_700_000_000_000i64;
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        now += 500;
        let arg = |rest: &[u8]| -> i64 {
            let mut b = [0u8; 2];
            for (i, x) in rest.iter().take(2).enumerate() {
                b[i] = *x;
            }
            i64::from(u16::from_be_bytes(b))
        };
        match op % 10 {
            0..=3 => {
                // A records blob of the next `len` bytes, CRCs fixed.
                let len = (arg(rest) as usize).min(rest.len().saturating_sub(2));
                let mut records = rest.get(2..2 + len).unwrap_or_default().to_vec();
                rest = rest.get(2 + len..).unwrap_or_default();
                fix_crcs(&mut records);
                let _ = log.append(&records, i32::from(op % 3), now);
            }
            4 => {
                if let Ok(d) = log.read(
                    log.log_start_offset() + arg(rest),
                    1 << 16,
                    log.high_watermark(),
                    true,
                ) {
                    assert_valid_batches(&d.records);
                }
            }
            5 => {
                let _ = log.offset_for_timestamp(now - 100_000 + arg(rest) * 100);
                let _ = log.max_timestamp();
            }
            6 => {
                let _ = log.compact(now + arg(rest) * 10);
            }
            7 => {
                let _ = log.roll(now);
                let _ = log.apply_retention(now);
            }
            8 => {
                let target = log.log_end_offset() - arg(rest) % 8;
                if arg(rest) & 1 == 0 {
                    let _ = log.truncate_to(target);
                } else {
                    let _ = log.delete_records_before(target);
                }
            }
            _ => {
                let leo = log.log_end_offset();
                let before = log.read(log.log_start_offset(), usize::MAX, leo, true);
                if log.close().is_err() {
                    return;
                }
                drop(log);
                log = PartitionLog::open(&path, tp.clone(), config(selector))
                    .expect("a cleanly closed log reopens");
                assert_eq!(
                    log.log_end_offset(),
                    leo,
                    "log end offset survives a reopen"
                );
                if let Ok(before) = before {
                    let after = log
                        .read(log.log_start_offset(), usize::MAX, leo, true)
                        .expect("a reopened log reads");
                    assert_eq!(
                        before.records, after.records,
                        "every byte survives a reopen"
                    );
                }
            }
        }
        rest = rest.get(2..).unwrap_or_default();
    }
});
