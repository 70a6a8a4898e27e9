//! The records the transaction coordinator keeps in `__transaction_state`, in Apache Kafka's
//! own formats (`TransactionLogKey` v0, `TransactionLogValue` v0 and v1), so a log written by
//! one is read by the other and `kafka-dump-log.sh --transaction-log-decoder` prints it.
//!
//! - key v0: `(transactional id)`;
//! - value v0 (what a coordinator without `transaction.version` ≥ 1 writes, and Oxbow's
//!   choice, see [`crate::txn`]): producer id, epoch, timeout, state byte, partitions per
//!   topic (null when Empty), last update and start timestamps;
//! - value v1 (flexible: compact strings and arrays, tagged fields): the same fields plus the
//!   tagged previous producer id (tag 0), next producer id (tag 1) and client transaction
//!   version (tag 2). Decoded so a log written by Kafka 4.1 with `transaction.version` ≥ 1
//!   loads; encoded only by the tests.
//!
//! A null value is a tombstone: the transactional id expired (compaction drops it).

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::state::TxnState;
pub use crate::codec::DecodeError;
use crate::codec::{
    get_compact_str, get_i16, get_i32, get_i64, get_i8, get_str, get_uvarint, put_str, put_uvarint,
    skip_tagged_fields,
};

/// The internal topic holding transaction state.
pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";

/// A transactional id's state as stored in one `__transaction_state` record value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLogValue {
    /// Producer id in use by the transactional id.
    pub producer_id: i64,
    /// Producer id of the last committed transaction (v1 tag 0; -1 when absent).
    pub previous_producer_id: i64,
    /// Producer id handed out next (v1 tag 1, transaction protocol v2 only; -1 when absent).
    pub next_producer_id: i64,
    /// Epoch of the producer id.
    pub producer_epoch: i16,
    /// `transaction.timeout.ms` the producer asked for.
    pub timeout_ms: i32,
    /// The transaction's state.
    pub state: TxnState,
    /// Partitions in the transaction, by topic (ascending, as written).
    pub partitions: BTreeMap<String, Vec<i32>>,
    /// When the state last changed (ms since the epoch).
    pub last_update_timestamp_ms: i64,
    /// When the transaction started (ms since the epoch), -1 when none is open.
    pub start_timestamp_ms: i64,
    /// `transaction.version` the client used (v1 tag 2; 0 when absent).
    pub client_transaction_version: i16,
}

/// The key of a record: Kafka's `TransactionLogKey` v0.
pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(0);
    put_str(&mut buf, transactional_id);
    buf.freeze()
}

/// Decodes a key: `Ok(None)` for a key version Kafka does not know either (Kafka's
/// `UnknownKey`, which a loading coordinator skips).
pub fn decode_key(mut buf: Bytes) -> Result<Option<String>, DecodeError> {
    match get_i16(&mut buf)? {
        0 => get_str(&mut buf).map(Some),
        _ => Ok(None),
    }
}

impl TxnLogValue {
    /// Value v0, as a coordinator at `transaction.version` 0 writes it. An Empty state
    /// stores a null partition array, as Kafka's `valueToBytes` does.
    pub fn encode_v0(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i16(0);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(self.timeout_ms);
        buf.put_i8(self.state.id());
        if self.state == TxnState::Empty {
            buf.put_i32(-1);
        } else {
            buf.put_i32(self.partitions.len() as i32);
            for (topic, partitions) in &self.partitions {
                put_str(&mut buf, topic);
                buf.put_i32(partitions.len() as i32);
                for p in partitions {
                    buf.put_i32(*p);
                }
            }
        }
        buf.put_i64(self.last_update_timestamp_ms);
        buf.put_i64(self.start_timestamp_ms);
        buf.freeze()
    }

    /// Value v1 (flexible), as Kafka writes it at `transaction.version` ≥ 1: tagged fields
    /// only when they differ from their defaults.
    pub fn encode_v1(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(64);
        buf.put_i16(1);
        buf.put_i64(self.producer_id);
        buf.put_i16(self.producer_epoch);
        buf.put_i32(self.timeout_ms);
        buf.put_i8(self.state.id());
        if self.state == TxnState::Empty {
            put_uvarint(&mut buf, 0);
        } else {
            put_uvarint(&mut buf, self.partitions.len() as u32 + 1);
            for (topic, partitions) in &self.partitions {
                put_uvarint(&mut buf, topic.len() as u32 + 1);
                buf.put_slice(topic.as_bytes());
                put_uvarint(&mut buf, partitions.len() as u32 + 1);
                for p in partitions {
                    buf.put_i32(*p);
                }
                put_uvarint(&mut buf, 0);
            }
        }
        buf.put_i64(self.last_update_timestamp_ms);
        buf.put_i64(self.start_timestamp_ms);
        let mut tags: Vec<(u32, Vec<u8>)> = Vec::new();
        if self.previous_producer_id != -1 {
            tags.push((0, self.previous_producer_id.to_be_bytes().to_vec()));
        }
        if self.next_producer_id != -1 {
            tags.push((1, self.next_producer_id.to_be_bytes().to_vec()));
        }
        if self.client_transaction_version != 0 {
            tags.push((2, self.client_transaction_version.to_be_bytes().to_vec()));
        }
        put_uvarint(&mut buf, tags.len() as u32);
        for (tag, data) in tags {
            put_uvarint(&mut buf, tag);
            put_uvarint(&mut buf, data.len() as u32);
            buf.put_slice(&data);
        }
        buf.freeze()
    }

    /// Decodes a value of version 0 or 1. An unknown version or state byte is an error (Kafka
    /// fails the load on both); the partitions of an Empty state are ignored, as Kafka's
    /// `readTxnRecordValue` does.
    pub fn decode(mut buf: Bytes) -> Result<TxnLogValue, DecodeError> {
        let version = get_i16(&mut buf)?;
        if !(0..=1).contains(&version) {
            return Err(DecodeError("unknown value version"));
        }
        let flexible = version >= 1;
        let producer_id = get_i64(&mut buf)?;
        let producer_epoch = get_i16(&mut buf)?;
        let timeout_ms = get_i32(&mut buf)?;
        let state =
            TxnState::from_id(get_i8(&mut buf)?).ok_or(DecodeError("unknown transaction state"))?;
        let topics = if flexible {
            get_uvarint(&mut buf)?.checked_sub(1).map(|n| n as i64)
        } else {
            Some(i64::from(get_i32(&mut buf)?)).filter(|n| *n >= 0)
        };
        let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for _ in 0..topics.unwrap_or(0) {
            let topic = if flexible {
                get_compact_str(&mut buf)?
            } else {
                get_str(&mut buf)?
            };
            let count = if flexible {
                get_uvarint(&mut buf)?
                    .checked_sub(1)
                    .ok_or(DecodeError("null partition array"))? as i64
            } else {
                i64::from(get_i32(&mut buf)?)
            };
            // Each id is four bytes: a count beyond what is left is malformed, and is
            // refused before anything is reserved for it.
            if count < 0 || count as usize > buf.remaining() / 4 {
                return Err(DecodeError("bad partition count"));
            }
            let ids = partitions.entry(topic).or_default();
            for _ in 0..count {
                ids.push(get_i32(&mut buf)?);
            }
            if flexible {
                skip_tagged_fields(&mut buf)?;
            }
        }
        if state == TxnState::Empty {
            partitions.clear();
        }
        let last_update_timestamp_ms = get_i64(&mut buf)?;
        let start_timestamp_ms = get_i64(&mut buf)?;
        let mut value = TxnLogValue {
            producer_id,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch,
            timeout_ms,
            state,
            partitions,
            last_update_timestamp_ms,
            start_timestamp_ms,
            client_transaction_version: 0,
        };
        if flexible {
            let tags = get_uvarint(&mut buf)?;
            for _ in 0..tags {
                let tag = get_uvarint(&mut buf)?;
                let size = get_uvarint(&mut buf)? as usize;
                if buf.remaining() < size {
                    return Err(DecodeError("truncated tagged field"));
                }
                let mut data = buf.split_to(size);
                match tag {
                    0 => value.previous_producer_id = get_i64(&mut data)?,
                    1 => value.next_producer_id = get_i64(&mut data)?,
                    2 => value.client_transaction_version = get_i16(&mut data)?,
                    // Unknown tags are skipped: that is what tagged fields are for.
                    _ => {}
                }
            }
        }
        Ok(value)
    }
}

/// The `__transaction_state` partition that owns `transactional_id`: Java's
/// `String.hashCode`, made non-negative, modulo the partition count — Kafka's
/// `TransactionStateManager.partitionFor`, the same rule as for group ids.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::records::partition_for(transactional_id, partitions)
}

/// The topic configs `__transaction_state` is created with, as Kafka's
/// `TransactionStateManager.transactionTopicConfigs` sets them: compacted, uncompressed,
/// `transaction.state.log.segment.bytes`, `transaction.state.log.min.isr`, no unclean
/// leader election.
pub fn transaction_state_topic_configs(
    segment_bytes: i32,
    min_isr: i32,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("compression.type".to_string(), "uncompressed".to_string()),
        ("min.insync.replicas".to_string(), min_isr.to_string()),
        ("segment.bytes".to_string(), segment_bytes.to_string()),
        (
            "unclean.leader.election.enable".to_string(),
            "false".to_string(),
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ongoing() -> TxnLogValue {
        TxnLogValue {
            producer_id: 1000,
            previous_producer_id: -1,
            next_producer_id: -1,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: BTreeMap::from([("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]),
            last_update_timestamp_ms: 1_700_000_000_123,
            start_timestamp_ms: 1_700_000_000_100,
            client_transaction_version: 0,
        }
    }

    #[test]
    fn key_is_kafkas_v0_bytes() {
        // Version 0, then a string of int16 length.
        assert_eq!(encode_key("tx").as_ref(), &[0, 0, 0, 2, b't', b'x'][..]);
        assert_eq!(decode_key(encode_key("tx")), Ok(Some("tx".to_string())));
        assert_eq!(decode_key(Bytes::from_static(&[0, 9, 0, 0])), Ok(None));
        assert!(decode_key(Bytes::from_static(&[0, 0, 0, 5, b'a'])).is_err());
    }

    #[test]
    fn value_v0_is_kafkas_layout_and_round_trips() {
        let v = ongoing();
        let bytes = v.encode_v0();
        // Hand-built from TransactionLogValue.json at version 0.
        let mut want = BytesMut::new();
        want.put_i16(0);
        want.put_i64(1000);
        want.put_i16(3);
        want.put_i32(60_000);
        want.put_i8(1);
        want.put_i32(2);
        want.put_i16(1);
        want.put_slice(b"a");
        want.put_i32(2);
        want.put_i32(0);
        want.put_i32(2);
        want.put_i16(1);
        want.put_slice(b"b");
        want.put_i32(1);
        want.put_i32(1);
        want.put_i64(1_700_000_000_123);
        want.put_i64(1_700_000_000_100);
        assert_eq!(bytes.as_ref(), want.as_ref());
        assert_eq!(TxnLogValue::decode(bytes), Ok(v));
    }

    #[test]
    fn empty_state_stores_null_partitions() {
        let v = TxnLogValue {
            state: TxnState::Empty,
            partitions: BTreeMap::new(),
            start_timestamp_ms: -1,
            ..ongoing()
        };
        let bytes = v.encode_v0();
        // The partition array sits after version, id, epoch, timeout and state.
        assert_eq!(&bytes[2 + 8 + 2 + 4 + 1..2 + 8 + 2 + 4 + 1 + 4], &[0xff; 4]);
        assert_eq!(TxnLogValue::decode(bytes), Ok(v));
    }

    #[test]
    fn value_v1_with_tagged_fields_round_trips() {
        let v = TxnLogValue {
            previous_producer_id: 999,
            next_producer_id: 1001,
            client_transaction_version: 2,
            state: TxnState::PrepareCommit,
            ..ongoing()
        };
        assert_eq!(TxnLogValue::decode(v.encode_v1()), Ok(v));
        // Without tagged fields the last byte is the empty tag count.
        let plain = ongoing().encode_v1();
        assert_eq!(plain.last(), Some(&0));
        assert_eq!(TxnLogValue::decode(plain), Ok(ongoing()));
    }

    #[test]
    fn malformed_values_are_errors_not_panics() {
        let bytes = ongoing().encode_v0();
        for cut in 0..bytes.len() {
            assert!(
                TxnLogValue::decode(bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let bytes = ongoing().encode_v1();
        for cut in 0..bytes.len() {
            assert!(
                TxnLogValue::decode(bytes.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut bad_state = ongoing().encode_v0().to_vec();
        bad_state[16] = 9;
        assert_eq!(
            TxnLogValue::decode(Bytes::from(bad_state)),
            Err(DecodeError("unknown transaction state"))
        );
        let mut huge = BytesMut::new();
        huge.put_slice(&ongoing().encode_v0()[..17]);
        huge.put_i32(1);
        put_str(&mut huge, "a");
        huge.put_i32(i32::MAX);
        assert_eq!(
            TxnLogValue::decode(huge.freeze()),
            Err(DecodeError("bad partition count"))
        );
        assert!(TxnLogValue::decode(Bytes::from_static(&[0, 2])).is_err());
    }

    #[test]
    fn partition_matches_kafkas_partition_for() {
        // Java: "my-txn".hashCode() == -1061187895, abs % 50 == 45; "T".hashCode() == 84.
        assert_eq!(partition_for("my-txn", 50), 45);
        assert_eq!(partition_for("T", 50), 34);
    }
}
