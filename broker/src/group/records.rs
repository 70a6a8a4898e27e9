//! The records the group coordinator keeps in `__consumer_offsets`, in Apache Kafka's own
//! formats (so `kafka-dump-log.sh --offsets-decoder` reads them):
//!
//! - offset commit: key v1 `(group, topic, partition)`, value v3 `(offset, leader epoch,
//!   metadata, commit timestamp)`;
//! - group metadata: key v2 `(group)`, value v3 `(protocol type, generation, protocol,
//!   leader, state timestamp, members)`.
//!
//! A null value is a tombstone: the offset or group is deleted (and compaction drops it).

use bytes::{BufMut, Bytes, BytesMut};

pub use crate::codec::DecodeError;
use crate::codec::{
    get_bytes, get_i16, get_i32, get_i64, get_nullable_str, get_str, put_bytes, put_nullable_str,
    put_str,
};

/// What a `__consumer_offsets` record key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    /// A committed offset of one partition for one group.
    Offset {
        /// Group id.
        group: String,
        /// Topic name.
        topic: String,
        /// Partition index.
        partition: i32,
    },
    /// A group's membership metadata.
    Group {
        /// Group id.
        group: String,
    },
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetValue {
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// Free-form metadata from the client.
    pub metadata: String,
    /// When it was committed (ms since the epoch).
    pub commit_timestamp: i64,
}

/// One member as stored in group metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id (`group.instance.id`).
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host as Kafka prints it (`/127.0.0.1`).
    pub client_host: String,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Subscription (metadata of the selected protocol).
    pub subscription: Bytes,
    /// Assignment given by the leader.
    pub assignment: Bytes,
}

/// Group metadata as stored after each completed rebalance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupValue {
    /// Protocol type (`consumer`, `connect`, ...).
    pub protocol_type: String,
    /// Generation.
    pub generation: i32,
    /// Selected protocol (assignor), if any.
    pub protocol: Option<String>,
    /// Leader member id, if any.
    pub leader: Option<String>,
    /// When the group last changed state.
    pub state_timestamp: i64,
    /// Members at that generation.
    pub members: Vec<StoredMember>,
}

impl RecordKey {
    /// Kafka's key encoding (offset keys v1, group keys v2).
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        match self {
            RecordKey::Offset {
                group,
                topic,
                partition,
            } => {
                buf.put_i16(1);
                put_str(&mut buf, group);
                put_str(&mut buf, topic);
                buf.put_i32(*partition);
            }
            RecordKey::Group { group } => {
                buf.put_i16(2);
                put_str(&mut buf, group);
            }
        }
        buf.freeze()
    }

    /// Decodes a key; `Ok(None)` for key versions this coordinator does not use (for
    /// example transaction or share-group records), which are skipped.
    pub fn decode(mut buf: Bytes) -> Result<Option<RecordKey>, DecodeError> {
        match get_i16(&mut buf)? {
            0 | 1 => Ok(Some(RecordKey::Offset {
                group: get_str(&mut buf)?,
                topic: get_str(&mut buf)?,
                partition: get_i32(&mut buf)?,
            })),
            2 => Ok(Some(RecordKey::Group {
                group: get_str(&mut buf)?,
            })),
            _ => Ok(None),
        }
    }
}

impl OffsetValue {
    /// Value v3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        buf.put_i64(self.offset);
        buf.put_i32(self.leader_epoch);
        put_str(&mut buf, &self.metadata);
        buf.put_i64(self.commit_timestamp);
        buf.freeze()
    }

    /// Decodes value versions 0-3 (v1 carries an expire timestamp, ignored).
    pub fn decode(mut buf: Bytes) -> Result<OffsetValue, DecodeError> {
        let version = get_i16(&mut buf)?;
        let offset = get_i64(&mut buf)?;
        let leader_epoch = if version >= 3 { get_i32(&mut buf)? } else { -1 };
        let metadata = get_nullable_str(&mut buf)?.unwrap_or_default();
        let commit_timestamp = get_i64(&mut buf)?;
        Ok(OffsetValue {
            offset,
            leader_epoch,
            metadata,
            commit_timestamp,
        })
    }
}

impl GroupValue {
    /// Value v3.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        put_str(&mut buf, &self.protocol_type);
        buf.put_i32(self.generation);
        put_nullable_str(&mut buf, self.protocol.as_deref());
        put_nullable_str(&mut buf, self.leader.as_deref());
        buf.put_i64(self.state_timestamp);
        buf.put_i32(self.members.len() as i32);
        for m in &self.members {
            put_str(&mut buf, &m.member_id);
            put_nullable_str(&mut buf, m.group_instance_id.as_deref());
            put_str(&mut buf, &m.client_id);
            put_str(&mut buf, &m.client_host);
            buf.put_i32(m.rebalance_timeout_ms);
            buf.put_i32(m.session_timeout_ms);
            put_bytes(&mut buf, &m.subscription);
            put_bytes(&mut buf, &m.assignment);
        }
        buf.freeze()
    }

    /// Decodes value version 3 (the only one this coordinator writes; Kafka 2.3+).
    pub fn decode(mut buf: Bytes) -> Result<GroupValue, DecodeError> {
        let version = get_i16(&mut buf)?;
        if version != 3 {
            return Err(DecodeError("unsupported group metadata value version"));
        }
        let protocol_type = get_str(&mut buf)?;
        let generation = get_i32(&mut buf)?;
        let protocol = get_nullable_str(&mut buf)?;
        let leader = get_nullable_str(&mut buf)?;
        let state_timestamp = get_i64(&mut buf)?;
        let count = get_i32(&mut buf)?;
        let mut members = Vec::new();
        for _ in 0..count.max(0) {
            members.push(StoredMember {
                member_id: get_str(&mut buf)?,
                group_instance_id: get_nullable_str(&mut buf)?,
                client_id: get_str(&mut buf)?,
                client_host: get_str(&mut buf)?,
                rebalance_timeout_ms: get_i32(&mut buf)?,
                session_timeout_ms: get_i32(&mut buf)?,
                subscription: get_bytes(&mut buf)?,
                assignment: get_bytes(&mut buf)?,
            });
        }
        Ok(GroupValue {
            protocol_type,
            generation,
            protocol,
            leader,
            state_timestamp,
            members,
        })
    }
}

/// The `__consumer_offsets` partition that owns `group`: Java's `String.hashCode` of the
/// group id, made non-negative, modulo the partition count — the same partition Apache
/// Kafka picks, so tools that compute it agree.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let mut h: i32 = 0;
    for unit in group.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(i32::from(unit));
    }
    // Kafka's Utils.abs maps i32::MIN to 0 rather than overflowing.
    let h = if h == i32::MIN { 0 } else { h.abs() };
    h % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_records_round_trip() {
        let key = RecordKey::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
        };
        assert_eq!(RecordKey::decode(key.encode()).unwrap(), Some(key));
        let value = OffsetValue {
            offset: 42,
            leader_epoch: 1,
            metadata: "m".into(),
            commit_timestamp: 7,
        };
        assert_eq!(OffsetValue::decode(value.encode()).unwrap(), value);
    }

    #[test]
    fn group_records_round_trip() {
        let value = GroupValue {
            protocol_type: "consumer".into(),
            generation: 5,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            state_timestamp: 9,
            members: vec![StoredMember {
                member_id: "m1".into(),
                group_instance_id: None,
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300000,
                session_timeout_ms: 45000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        assert_eq!(GroupValue::decode(value.encode()).unwrap(), value);
        assert!(GroupValue::decode(Bytes::from_static(&[0, 3, 0])).is_err());
    }

    #[test]
    fn partition_matches_java_hash_code() {
        // Java: "hello-group".hashCode() == -2143371836, abs % 50 == 36.
        assert_eq!(partition_for("hello-group", 50), 36);
        // Java: "test-group".hashCode() == 627841412, % 50 == 12.
        assert_eq!(partition_for("test-group", 50), 12);
    }
}
