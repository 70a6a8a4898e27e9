//! Reading a whole partition back through its records: how the coordinators rebuild their
//! state from `__consumer_offsets` and `__transaction_state` when they take over a partition.

use std::sync::Mutex;

use bytes::Buf;
use kafka_protocol::records::{Record, RecordBatchDecoder};
use tracing::warn;

use super::PartitionLog;

/// Reads `log` from its start offset to the end offset it has when called and hands every
/// record, in offset order, to `replay`; returns how many records were read. Blocking (disk
/// reads). The log's lock is held for one read of up to 1 MiB at a time, so appends go on
/// meanwhile. A read error or a batch that cannot be decoded ends the replay there (logged
/// with `topic` and `partition`), as nothing after it can be trusted to be in order.
pub fn replay_records(
    log: &Mutex<PartitionLog>,
    topic: &str,
    partition: i32,
    mut replay: impl FnMut(Record),
) -> usize {
    let mut records = 0usize;
    let (mut offset, end) = {
        let log = log.lock().unwrap_or_else(|p| p.into_inner());
        (log.log_start_offset(), log.log_end_offset())
    };
    while offset < end {
        let data = {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            log.read(offset, 1 << 20, end, true)
        };
        let data = match data {
            Ok(d) => d,
            Err(e) => {
                warn!(topic, partition, offset, error = %e, "cannot read the log to replay it");
                break;
            }
        };
        if data.records.is_empty() {
            break;
        }
        let mut buf = data.records.clone();
        let mut next = offset;
        while buf.has_remaining() {
            // A batch cut short by the read's size limit is read again from its start by
            // the next read; one that cannot be decoded at the start of a read ends it.
            let Ok(set) = RecordBatchDecoder::decode(&mut buf) else {
                break;
            };
            for r in set.records {
                next = next.max(r.offset + 1);
                records += 1;
                replay(r);
            }
        }
        if next <= offset {
            warn!(
                topic,
                partition, offset, "undecodable batch ends the replay"
            );
            break;
        }
        offset = next;
    }
    records
}
