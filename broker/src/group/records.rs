//! The records the group coordinator keeps in `__consumer_offsets`, in Apache Kafka's own
//! formats (so `kafka-dump-log.sh --offsets-decoder` reads them):
//!
//! - offset commit: key v1 `(group, topic, partition)`, value v3 `(offset, leader epoch,
//!   metadata, commit timestamp)`;
//! - group metadata: key v2 `(group)`, value v3 `(protocol type, generation, protocol,
//!   leader, state timestamp, members)`;
//! - consumer groups of the KIP-848 protocol, one record type per key version (Kafka's
//!   `ConsumerGroup*Key`/`Value` schemas): the group epoch (3), its subscribed topics' metadata
//!   (4), each member's metadata (5), the target assignment's epoch (6) and each member's target
//!   (7), each member's current assignment (8), and what each subscribed regular expression
//!   resolved to (16). Their values are version 0 and "flexible" (compact strings and
//!   arrays, tagged fields; unknown tags are skipped on read).
//!
//! A null value is a tombstone: the offset, group or member is deleted (and compaction drops
//! it).

use bytes::{BufMut, Bytes, BytesMut};
use uuid::Uuid;

pub use crate::codec::DecodeError;
use crate::codec::{
    get_bytes, get_compact_array, get_compact_len, get_compact_nullable_str, get_compact_str,
    get_i16, get_i32, get_i64, get_i8, get_nullable_str, get_str, get_uuid, get_uvarint, put_bytes,
    put_compact_len, put_compact_str, put_empty_tagged_fields, put_nullable_str, put_str,
    put_uvarint, skip_tagged_fields,
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
    /// A consumer group's epoch (key v3, `ConsumerGroupMetadataKey`).
    ConsumerGroupMetadata {
        /// Group id.
        group: String,
    },
    /// The metadata of a consumer group's subscribed topics (key v4,
    /// `ConsumerGroupPartitionMetadataKey`).
    ConsumerGroupPartitionMetadata {
        /// Group id.
        group: String,
    },
    /// One consumer group member's metadata (key v5, `ConsumerGroupMemberMetadataKey`).
    ConsumerGroupMemberMetadata {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
    /// The epoch of a consumer group's target assignment (key v6,
    /// `ConsumerGroupTargetAssignmentMetadataKey`).
    ConsumerGroupTargetAssignmentMetadata {
        /// Group id.
        group: String,
    },
    /// One member's target assignment (key v7, `ConsumerGroupTargetAssignmentMemberKey`).
    ConsumerGroupTargetAssignmentMember {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
    /// One member's current assignment and epochs (key v8,
    /// `ConsumerGroupCurrentMemberAssignmentKey`).
    ConsumerGroupCurrentMemberAssignment {
        /// Group id.
        group: String,
        /// Member id.
        member: String,
    },
    /// The topics one regular expression of a consumer group resolved to (key v16,
    /// `ConsumerGroupRegularExpressionKey`, written since Kafka 4.0).
    ConsumerGroupRegularExpression {
        /// Group id.
        group: String,
        /// The regular expression, as the members sent it.
        regex: String,
    },
}

impl RecordKey {
    /// The group the record belongs to.
    pub fn group(&self) -> &str {
        match self {
            RecordKey::Offset { group, .. }
            | RecordKey::Group { group }
            | RecordKey::ConsumerGroupMetadata { group }
            | RecordKey::ConsumerGroupPartitionMetadata { group }
            | RecordKey::ConsumerGroupMemberMetadata { group, .. }
            | RecordKey::ConsumerGroupTargetAssignmentMetadata { group }
            | RecordKey::ConsumerGroupTargetAssignmentMember { group, .. }
            | RecordKey::ConsumerGroupCurrentMemberAssignment { group, .. }
            | RecordKey::ConsumerGroupRegularExpression { group, .. } => group,
        }
    }
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
            RecordKey::ConsumerGroupMetadata { group } => {
                buf.put_i16(3);
                put_str(&mut buf, group);
            }
            RecordKey::ConsumerGroupPartitionMetadata { group } => {
                buf.put_i16(4);
                put_str(&mut buf, group);
            }
            RecordKey::ConsumerGroupMemberMetadata { group, member } => {
                buf.put_i16(5);
                put_str(&mut buf, group);
                put_str(&mut buf, member);
            }
            RecordKey::ConsumerGroupTargetAssignmentMetadata { group } => {
                buf.put_i16(6);
                put_str(&mut buf, group);
            }
            RecordKey::ConsumerGroupTargetAssignmentMember { group, member } => {
                buf.put_i16(7);
                put_str(&mut buf, group);
                put_str(&mut buf, member);
            }
            RecordKey::ConsumerGroupCurrentMemberAssignment { group, member } => {
                buf.put_i16(8);
                put_str(&mut buf, group);
                put_str(&mut buf, member);
            }
            RecordKey::ConsumerGroupRegularExpression { group, regex } => {
                buf.put_i16(16);
                put_str(&mut buf, group);
                put_str(&mut buf, regex);
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
            3 => Ok(Some(RecordKey::ConsumerGroupMetadata {
                group: get_str(&mut buf)?,
            })),
            4 => Ok(Some(RecordKey::ConsumerGroupPartitionMetadata {
                group: get_str(&mut buf)?,
            })),
            5 => Ok(Some(RecordKey::ConsumerGroupMemberMetadata {
                group: get_str(&mut buf)?,
                member: get_str(&mut buf)?,
            })),
            6 => Ok(Some(RecordKey::ConsumerGroupTargetAssignmentMetadata {
                group: get_str(&mut buf)?,
            })),
            7 => Ok(Some(RecordKey::ConsumerGroupTargetAssignmentMember {
                group: get_str(&mut buf)?,
                member: get_str(&mut buf)?,
            })),
            8 => Ok(Some(RecordKey::ConsumerGroupCurrentMemberAssignment {
                group: get_str(&mut buf)?,
                member: get_str(&mut buf)?,
            })),
            16 => Ok(Some(RecordKey::ConsumerGroupRegularExpression {
                group: get_str(&mut buf)?,
                regex: get_str(&mut buf)?,
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

// ---------------------------------------------------------------------------------------
// Consumer groups (KIP-848): value version 0 of each record type, in Kafka's flexible
// encoding.
// ---------------------------------------------------------------------------------------

/// Partitions by topic id, as the assignment records store them.
pub type TopicPartitions = Vec<(Uuid, Vec<i32>)>;

/// `ConsumerGroupMetadataValue`: the group epoch. (Kafka 4.1 adds a tagged metadata hash;
/// this coordinator keeps the subscribed topics' metadata in its own record instead, see
/// [`ConsumerGroupPartitionMetadataValue`], and skips the tag when reading.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMetadataValue {
    /// The group epoch.
    pub epoch: i32,
}

/// One subscribed topic as `ConsumerGroupPartitionMetadataValue` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    /// Topic id.
    pub topic_id: Uuid,
    /// Topic name.
    pub topic_name: String,
    /// Its partition count when the group epoch last changed.
    pub num_partitions: i32,
}

/// `ConsumerGroupPartitionMetadataValue`: the subscribed topics that existed at the last
/// group epoch, so a loaded group notices only real topic changes. The per-partition rack
/// list is written empty (no rack-aware assignor here; Kafka 4.x stopped using it too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupPartitionMetadataValue {
    /// The topics.
    pub topics: Vec<TopicMetadata>,
}

/// `ConsumerGroupMemberMetadataValue`: what a member said about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupMemberMetadataValue {
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host (`/127.0.0.1`).
    pub client_host: String,
    /// Subscribed topic names.
    pub subscribed_topic_names: Vec<String>,
    /// Subscribed regular expression.
    pub subscribed_topic_regex: Option<String>,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// The server-side assignor it asked for.
    pub server_assignor: Option<String>,
    /// Set for a member that speaks the classic protocol (JoinGroup, SyncGroup, Heartbeat)
    /// in a consumer group (tagged field 0, Kafka's `ClassicMemberMetadata`).
    pub classic: Option<ClassicMemberMetadata>,
}

/// `ClassicMemberMetadata`: what a classic-protocol member of a consumer group said in its
/// last JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassicMemberMetadata {
    /// Its session timeout.
    pub session_timeout_ms: i32,
    /// Its protocols (assignor names) in preference order, with their metadata (the
    /// embedded consumer protocol's subscription).
    pub supported_protocols: Vec<(String, Bytes)>,
}

impl ClassicMemberMetadata {
    fn encode(&self, buf: &mut BytesMut) {
        buf.put_i32(self.session_timeout_ms);
        put_compact_len(buf, Some(self.supported_protocols.len()));
        for (name, metadata) in &self.supported_protocols {
            put_compact_str(buf, Some(name));
            put_compact_len(buf, Some(metadata.len()));
            buf.put_slice(metadata);
            put_empty_tagged_fields(buf);
        }
        put_empty_tagged_fields(buf);
    }

    fn decode(buf: &mut Bytes) -> Result<Self, DecodeError> {
        let session_timeout_ms = get_i32(buf)?;
        let supported_protocols = get_compact_array(buf, |buf| {
            let name = get_compact_str(buf)?;
            let len = get_compact_len(buf)?.ok_or(DecodeError("unexpected null bytes"))?;
            if buf.len() < len {
                return Err(DecodeError("truncated bytes"));
            }
            let metadata = buf.split_to(len);
            skip_tagged_fields(buf)?;
            Ok((name, metadata))
        })?;
        skip_tagged_fields(buf)?;
        Ok(ClassicMemberMetadata {
            session_timeout_ms,
            supported_protocols,
        })
    }
}

/// `ConsumerGroupTargetAssignmentMetadataValue`: the epoch of the target assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupTargetAssignmentMetadataValue {
    /// The assignment epoch.
    pub assignment_epoch: i32,
}

/// `ConsumerGroupTargetAssignmentMemberValue`: one member's target assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupTargetAssignmentMemberValue {
    /// Its partitions in the target.
    pub topic_partitions: TopicPartitions,
}

/// `ConsumerGroupCurrentMemberAssignmentValue`: where a member stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupCurrentMemberAssignmentValue {
    /// Its epoch.
    pub member_epoch: i32,
    /// Its epoch before the last change.
    pub previous_member_epoch: i32,
    /// Kafka's `MemberState` byte: 0 stable, 1 unrevoked, 2 unreleased partitions.
    pub state: i8,
    /// The partitions it has at its epoch.
    pub assigned_partitions: TopicPartitions,
    /// The partitions it must revoke.
    pub partitions_pending_revocation: TopicPartitions,
}

/// `ConsumerGroupRegularExpressionValue`: the topics a regular expression resolved to, the
/// metadata version it was resolved against and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroupRegularExpressionValue {
    /// The matching topics.
    pub topics: Vec<String>,
    /// The metadata version (offset of the metadata image) the topics were listed from.
    pub version: i64,
    /// When it was resolved (ms since the epoch).
    pub timestamp: i64,
}

/// Reads the value version, which must be 0 (the only one Kafka defines for these types).
fn get_version_zero(buf: &mut Bytes) -> Result<(), DecodeError> {
    match get_i16(buf)? {
        0 => Ok(()),
        _ => Err(DecodeError(
            "unsupported consumer group record value version",
        )),
    }
}

fn put_topic_partitions(buf: &mut BytesMut, tps: &TopicPartitions) {
    put_compact_len(buf, Some(tps.len()));
    for (topic, partitions) in tps {
        buf.put_slice(topic.as_bytes());
        put_compact_len(buf, Some(partitions.len()));
        for p in partitions {
            buf.put_i32(*p);
        }
        put_empty_tagged_fields(buf);
    }
}

fn get_topic_partitions(buf: &mut Bytes) -> Result<TopicPartitions, DecodeError> {
    get_compact_array(buf, |buf| {
        let topic = get_uuid(buf)?;
        let partitions = get_compact_array(buf, get_i32)?;
        skip_tagged_fields(buf)?;
        Ok((topic, partitions))
    })
}

impl ConsumerGroupMetadataValue {
    /// Value v0.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        buf.put_i32(self.epoch);
        put_empty_tagged_fields(&mut buf);
        buf.freeze()
    }

    /// Decodes value v0.
    pub fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        get_version_zero(&mut buf)?;
        let epoch = get_i32(&mut buf)?;
        skip_tagged_fields(&mut buf)?;
        Ok(ConsumerGroupMetadataValue { epoch })
    }
}

impl ConsumerGroupPartitionMetadataValue {
    /// Value v0.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        put_compact_len(&mut buf, Some(self.topics.len()));
        for t in &self.topics {
            buf.put_slice(t.topic_id.as_bytes());
            put_compact_str(&mut buf, Some(&t.topic_name));
            buf.put_i32(t.num_partitions);
            // PartitionMetadata (racks per partition): none.
            put_compact_len(&mut buf, Some(0));
            put_empty_tagged_fields(&mut buf);
        }
        put_empty_tagged_fields(&mut buf);
        buf.freeze()
    }

    /// Decodes value v0 (the racks per partition are read and dropped).
    pub fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        get_version_zero(&mut buf)?;
        let topics = get_compact_array(&mut buf, |buf| {
            let topic_id = get_uuid(buf)?;
            let topic_name = get_compact_str(buf)?;
            let num_partitions = get_i32(buf)?;
            get_compact_array(buf, |buf| {
                get_i32(buf)?;
                get_compact_array(buf, get_compact_str)?;
                skip_tagged_fields(buf)
            })?;
            skip_tagged_fields(buf)?;
            Ok(TopicMetadata {
                topic_id,
                topic_name,
                num_partitions,
            })
        })?;
        skip_tagged_fields(&mut buf)?;
        Ok(ConsumerGroupPartitionMetadataValue { topics })
    }
}

impl ConsumerGroupMemberMetadataValue {
    /// Value v0, with the classic-member metadata as tagged field 0 when set.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        put_compact_str(&mut buf, self.instance_id.as_deref());
        put_compact_str(&mut buf, self.rack_id.as_deref());
        put_compact_str(&mut buf, Some(&self.client_id));
        put_compact_str(&mut buf, Some(&self.client_host));
        put_compact_len(&mut buf, Some(self.subscribed_topic_names.len()));
        for name in &self.subscribed_topic_names {
            put_compact_str(&mut buf, Some(name));
        }
        put_compact_str(&mut buf, self.subscribed_topic_regex.as_deref());
        buf.put_i32(self.rebalance_timeout_ms);
        put_compact_str(&mut buf, self.server_assignor.as_deref());
        match &self.classic {
            None => put_empty_tagged_fields(&mut buf),
            Some(classic) => {
                let mut field = BytesMut::new();
                classic.encode(&mut field);
                put_uvarint(&mut buf, 1);
                put_uvarint(&mut buf, 0);
                put_uvarint(&mut buf, field.len() as u32);
                buf.put_slice(&field);
            }
        }
        buf.freeze()
    }

    /// Decodes value v0 (tagged field 0 is the classic-member metadata; others are skipped).
    pub fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        get_version_zero(&mut buf)?;
        let mut value = ConsumerGroupMemberMetadataValue {
            instance_id: get_compact_nullable_str(&mut buf)?,
            rack_id: get_compact_nullable_str(&mut buf)?,
            client_id: get_compact_str(&mut buf)?,
            client_host: get_compact_str(&mut buf)?,
            subscribed_topic_names: get_compact_array(&mut buf, get_compact_str)?,
            subscribed_topic_regex: get_compact_nullable_str(&mut buf)?,
            rebalance_timeout_ms: get_i32(&mut buf)?,
            server_assignor: get_compact_nullable_str(&mut buf)?,
            classic: None,
        };
        for _ in 0..get_uvarint(&mut buf)? {
            let tag = get_uvarint(&mut buf)?;
            let size = get_uvarint(&mut buf)? as usize;
            if buf.len() < size {
                return Err(DecodeError("truncated tagged field"));
            }
            let mut field = buf.split_to(size);
            if tag == 0 {
                // A nullable struct: Kafka writes the tag only when it is set.
                value.classic = Some(ClassicMemberMetadata::decode(&mut field)?);
            }
        }
        Ok(value)
    }
}

impl ConsumerGroupRegularExpressionValue {
    /// Value v0.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        put_compact_len(&mut buf, Some(self.topics.len()));
        for topic in &self.topics {
            put_compact_str(&mut buf, Some(topic));
        }
        buf.put_i64(self.version);
        buf.put_i64(self.timestamp);
        put_empty_tagged_fields(&mut buf);
        buf.freeze()
    }

    /// Decodes value v0.
    pub fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        get_version_zero(&mut buf)?;
        let value = ConsumerGroupRegularExpressionValue {
            topics: get_compact_array(&mut buf, get_compact_str)?,
            version: get_i64(&mut buf)?,
            timestamp: get_i64(&mut buf)?,
        };
        skip_tagged_fields(&mut buf)?;
        Ok(value)
    }
}

impl ConsumerGroupTargetAssignmentMetadataValue {
    /// Value v0.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        buf.put_i32(self.assignment_epoch);
        put_empty_tagged_fields(&mut buf);
        buf.freeze()
    }

    /// Decodes value v0.
    pub fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        get_version_zero(&mut buf)?;
        let assignment_epoch = get_i32(&mut buf)?;
        skip_tagged_fields(&mut buf)?;
        Ok(ConsumerGroupTargetAssignmentMetadataValue { assignment_epoch })
    }
}

impl ConsumerGroupTargetAssignmentMemberValue {
    /// Value v0.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        put_topic_partitions(&mut buf, &self.topic_partitions);
        put_empty_tagged_fields(&mut buf);
        buf.freeze()
    }

    /// Decodes value v0.
    pub fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        get_version_zero(&mut buf)?;
        let topic_partitions = get_topic_partitions(&mut buf)?;
        skip_tagged_fields(&mut buf)?;
        Ok(ConsumerGroupTargetAssignmentMemberValue { topic_partitions })
    }
}

impl ConsumerGroupCurrentMemberAssignmentValue {
    /// Value v0.
    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        buf.put_i32(self.member_epoch);
        buf.put_i32(self.previous_member_epoch);
        buf.put_i8(self.state);
        put_topic_partitions(&mut buf, &self.assigned_partitions);
        put_topic_partitions(&mut buf, &self.partitions_pending_revocation);
        put_empty_tagged_fields(&mut buf);
        buf.freeze()
    }

    /// Decodes value v0.
    pub fn decode(mut buf: Bytes) -> Result<Self, DecodeError> {
        get_version_zero(&mut buf)?;
        let value = ConsumerGroupCurrentMemberAssignmentValue {
            member_epoch: get_i32(&mut buf)?,
            previous_member_epoch: get_i32(&mut buf)?,
            state: get_i8(&mut buf)?,
            assigned_partitions: get_topic_partitions(&mut buf)?,
            partitions_pending_revocation: get_topic_partitions(&mut buf)?,
        };
        skip_tagged_fields(&mut buf)?;
        Ok(value)
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

    /// A consumer group key as Kafka lays it out: int16 version (the record type), then
    /// int16-length strings.
    #[test]
    fn consumer_group_keys_are_kafkas_bytes() {
        let key = RecordKey::ConsumerGroupMemberMetadata {
            group: "g".into(),
            member: "m1".into(),
        };
        let bytes: &[u8] = &[0, 5, 0, 1, b'g', 0, 2, b'm', b'1'];
        assert_eq!(&key.encode()[..], bytes);
        assert_eq!(
            RecordKey::decode(Bytes::from_static(bytes)).unwrap(),
            Some(key)
        );
        for (version, key) in [
            (3, RecordKey::ConsumerGroupMetadata { group: "g".into() }),
            (
                4,
                RecordKey::ConsumerGroupPartitionMetadata { group: "g".into() },
            ),
            (
                6,
                RecordKey::ConsumerGroupTargetAssignmentMetadata { group: "g".into() },
            ),
        ] {
            assert_eq!(&key.encode()[..], &[0, version, 0, 1, b'g']);
            assert_eq!(RecordKey::decode(key.encode()).unwrap(), Some(key));
        }
        for (version, key) in [
            (
                7,
                RecordKey::ConsumerGroupTargetAssignmentMember {
                    group: "g".into(),
                    member: "m".into(),
                },
            ),
            (
                8,
                RecordKey::ConsumerGroupCurrentMemberAssignment {
                    group: "g".into(),
                    member: "m".into(),
                },
            ),
        ] {
            assert_eq!(&key.encode()[..], &[0, version, 0, 1, b'g', 0, 1, b'm']);
            assert_eq!(RecordKey::decode(key.encode()).unwrap(), Some(key));
        }
        // Share and streams group records (other key versions) are skipped, not errors.
        assert_eq!(
            RecordKey::decode(Bytes::from_static(&[0, 9, 0, 1, b'g'])).unwrap(),
            None
        );
    }

    /// Kafka's `ConsumerGroupRegularExpressionKey` (type 16, non-flexible strings) and value
    /// v0 (compact array of compact strings, two int64, tagged fields), byte for byte.
    #[test]
    fn regular_expression_record_is_kafkas_layout() {
        let key = RecordKey::ConsumerGroupRegularExpression {
            group: "g".into(),
            regex: "a.*".into(),
        };
        let bytes: &[u8] = &[0, 16, 0, 1, b'g', 0, 3, b'a', b'.', b'*'];
        assert_eq!(&key.encode()[..], bytes);
        assert_eq!(
            RecordKey::decode(Bytes::from_static(bytes)).unwrap(),
            Some(key)
        );
        let value = ConsumerGroupRegularExpressionValue {
            topics: vec!["ab".into()],
            version: 7,
            timestamp: 258,
        };
        let bytes: &[u8] = &[
            0, 0, // version
            2, 3, b'a', b'b', // Topics
            0, 0, 0, 0, 0, 0, 0, 7, // Version
            0, 0, 0, 0, 0, 0, 1, 2, // Timestamp
            0, // tagged fields
        ];
        assert_eq!(&value.encode()[..], bytes);
        assert_eq!(
            ConsumerGroupRegularExpressionValue::decode(Bytes::from_static(bytes)).unwrap(),
            value
        );
    }

    #[test]
    fn consumer_group_epoch_value_reads_kafka_41s_tagged_hash() {
        let value = ConsumerGroupMetadataValue { epoch: 5 };
        assert_eq!(&value.encode()[..], &[0, 0, 0, 0, 0, 5, 0]);
        // Kafka 4.1 writes MetadataHash as tag 0 (int64): skipped.
        let with_hash: &[u8] = &[0, 0, 0, 0, 0, 5, 1, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8];
        assert_eq!(
            ConsumerGroupMetadataValue::decode(Bytes::from_static(with_hash)).unwrap(),
            value
        );
        assert!(
            ConsumerGroupMetadataValue::decode(Bytes::from_static(&[0, 1, 0, 0, 0, 5, 0])).is_err()
        );
        assert!(ConsumerGroupMetadataValue::decode(Bytes::from_static(&[0, 0, 0, 0])).is_err());
        let target = ConsumerGroupTargetAssignmentMetadataValue {
            assignment_epoch: 7,
        };
        assert_eq!(&target.encode()[..], &[0, 0, 0, 0, 0, 7, 0]);
        assert_eq!(
            ConsumerGroupTargetAssignmentMetadataValue::decode(target.encode()).unwrap(),
            target
        );
    }

    #[test]
    fn member_metadata_value_is_kafkas_flexible_layout() {
        let value = ConsumerGroupMemberMetadataValue {
            instance_id: None,
            rack_id: Some("r".into()),
            client_id: "c".into(),
            client_host: "/h".into(),
            subscribed_topic_names: vec!["t".into(), "u".into()],
            subscribed_topic_regex: None,
            rebalance_timeout_ms: 300_000,
            server_assignor: Some("uniform".into()),
            classic: None,
        };
        let mut want = vec![0u8, 0]; // version 0
        want.push(0); // InstanceId: null
        want.extend([2, b'r']); // RackId: compact string, length + 1
        want.extend([2, b'c']);
        want.extend([3, b'/', b'h']);
        want.extend([3, 2, b't', 2, b'u']); // two names
        want.push(0); // SubscribedTopicRegex: null
        want.extend(300_000i32.to_be_bytes());
        want.push(8);
        want.extend(b"uniform");
        want.push(0); // no tagged fields
        assert_eq!(value.encode().to_vec(), want);
        assert_eq!(
            ConsumerGroupMemberMetadataValue::decode(Bytes::from(want)).unwrap(),
            value
        );
    }

    #[test]
    fn classic_member_metadata_is_tagged_field_zero() {
        let value = ConsumerGroupMemberMetadataValue {
            instance_id: None,
            rack_id: None,
            client_id: "c".into(),
            client_host: "/h".into(),
            subscribed_topic_names: vec!["t".into()],
            subscribed_topic_regex: None,
            rebalance_timeout_ms: 5,
            server_assignor: None,
            classic: Some(ClassicMemberMetadata {
                session_timeout_ms: 45_000,
                supported_protocols: vec![("range".into(), Bytes::from_static(&[0, 3, 9]))],
            }),
        };
        let mut want = vec![0u8, 0, 0, 0, 2, b'c', 3, b'/', b'h', 2, 2, b't', 0];
        want.extend(5i32.to_be_bytes());
        want.push(0); // ServerAssignor: null
        let mut field = 45_000i32.to_be_bytes().to_vec();
        field.extend([2, 6]); // one protocol, its name
        field.extend(b"range");
        field.extend([4, 0, 3, 9, 0]); // compact bytes, the protocol's tagged fields
        field.push(0); // the struct's tagged fields
        want.extend([1, 0, field.len() as u8]); // one tagged field: tag 0, its size
        want.extend(field);
        assert_eq!(value.encode().to_vec(), want);
        assert_eq!(
            ConsumerGroupMemberMetadataValue::decode(Bytes::from(want)).unwrap(),
            value
        );
        // Another tag alone is skipped: a member of the consumer protocol.
        let plain = ConsumerGroupMemberMetadataValue {
            classic: None,
            ..value
        };
        let mut other = plain.encode().to_vec();
        other.pop();
        other.extend([1, 5, 1, 0xaa]);
        assert_eq!(
            ConsumerGroupMemberMetadataValue::decode(Bytes::from(other)).unwrap(),
            plain
        );
    }

    #[test]
    fn assignment_values_are_kafkas_flexible_layout() {
        let topic = Uuid::from_u128(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10);
        let value = ConsumerGroupCurrentMemberAssignmentValue {
            member_epoch: 4,
            previous_member_epoch: 3,
            state: 1,
            assigned_partitions: vec![(topic, vec![0, 2])],
            partitions_pending_revocation: vec![],
        };
        let mut want = vec![0u8, 0, 0, 0, 0, 4, 0, 0, 0, 3, 1];
        want.push(2); // one topic
        want.extend(1u8..=16); // its id, most significant byte first
        want.extend([3, 0, 0, 0, 0, 0, 0, 0, 2]); // partitions [0, 2]
        want.push(0); // the topic's tagged fields
        want.push(1); // no partitions pending revocation
        want.push(0); // the value's tagged fields
        assert_eq!(value.encode().to_vec(), want);
        assert_eq!(
            ConsumerGroupCurrentMemberAssignmentValue::decode(Bytes::from(want)).unwrap(),
            value
        );
        let target = ConsumerGroupTargetAssignmentMemberValue {
            topic_partitions: vec![(topic, vec![1])],
        };
        let mut want = vec![0u8, 0, 2];
        want.extend(1u8..=16);
        want.extend([2, 0, 0, 0, 1, 0, 0]);
        assert_eq!(target.encode().to_vec(), want);
        assert_eq!(
            ConsumerGroupTargetAssignmentMemberValue::decode(Bytes::from(want)).unwrap(),
            target
        );
        // A count larger than the record is refused without allocating.
        assert!(
            ConsumerGroupTargetAssignmentMemberValue::decode(Bytes::from_static(&[
                0, 0, 0xff, 0xff, 0xff, 0x7f
            ]))
            .is_err()
        );
    }

    #[test]
    fn partition_metadata_value_reads_racks() {
        let topic = Uuid::from_u128(7);
        let value = ConsumerGroupPartitionMetadataValue {
            topics: vec![TopicMetadata {
                topic_id: topic,
                topic_name: "t".into(),
                num_partitions: 3,
            }],
        };
        let mut want = vec![0u8, 0, 2];
        want.extend(topic.as_bytes());
        want.extend([2, b't', 0, 0, 0, 3, 1, 0, 0]);
        assert_eq!(value.encode().to_vec(), want);
        // As Kafka 3.x wrote it: one partition on rack "a".
        let mut racks = vec![0u8, 0, 2];
        racks.extend(topic.as_bytes());
        racks.extend([2, b't', 0, 0, 0, 3, 2, 0, 0, 0, 0, 2, 2, b'a', 0, 0, 0]);
        assert_eq!(
            ConsumerGroupPartitionMetadataValue::decode(Bytes::from(racks)).unwrap(),
            value
        );
    }

    #[test]
    fn partition_matches_java_hash_code() {
        // Java: "hello-group".hashCode() == -2143371836, abs % 50 == 36.
        assert_eq!(partition_for("hello-group", 50), 36);
        // Java: "test-group".hashCode() == 627841412, % 50 == 12.
        assert_eq!(partition_for("test-group", 50), 12);
    }
}
