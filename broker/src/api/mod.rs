//! One handler per Kafka API, and the table that routes requests to them.
//!
//! Adding an API is one file with `pub(crate) async fn handle(ctx: &Ctx<'_>, request) ->
//! Response` and one line in [`apis!`]. The same table drives ApiVersions, so the broker
//! advertises exactly what it routes.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod add_raft_voter;
mod alter_configs;
mod alter_partition_reassignments;
mod api_versions;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_partitions;
mod create_topics;
mod current_leader;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_transactions;
mod elect_leaders;
mod end_txn;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod list_transactions;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod remove_raft_voter;
mod sync_group;
mod txn_offset_commit;
mod write_txn_markers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};

use anyhow::{anyhow, Context as _};
use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message};
use tracing::{debug, warn};

use crate::broker::Broker;
pub(crate) use crate::error::ApiError;
use crate::server::ListenerContext;

/// One piece of an encoded response: bytes, or a region of a segment file that the
/// connection sends straight from the file (zero-copy).
#[derive(Debug, Clone)]
pub enum Part {
    /// Encoded protocol bytes.
    Bytes(Bytes),
    /// Record batches stored in a segment file.
    File(crate::log::FileRegion),
}

impl Part {
    /// Length in bytes on the wire.
    pub fn len(&self) -> usize {
        match self {
            Part::Bytes(b) => b.len(),
            Part::File(r) => r.len,
        }
    }

    /// Whether the part is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An encoded response (header + body, without the size prefix) as the parts to send in
/// order.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    /// The parts, in wire order.
    pub parts: Vec<Part>,
}

impl Reply {
    /// Total length on the wire (what the size prefix says).
    pub fn len(&self) -> usize {
        self.parts.iter().map(Part::len).sum()
    }

    /// Whether the reply is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole reply as bytes, reading file regions (tests and diagnostics; the
    /// connection sends file regions without reading them).
    pub fn to_vec(&self) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(self.len());
        for part in &self.parts {
            match part {
                Part::Bytes(b) => out.extend_from_slice(b),
                Part::File(r) => r.read_to(&mut out)?,
            }
        }
        Ok(out)
    }
}

impl From<Bytes> for Reply {
    fn from(b: Bytes) -> Self {
        Reply {
            parts: vec![Part::Bytes(b)],
        }
    }
}

/// What the connection does after a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this encoded response (header + body, without the size prefix).
    Respond(Reply),
    /// Send nothing (produce with acks=0).
    NoResponse,
    /// Close the connection without responding (acks=0 produce that failed, as Kafka does,
    /// so the client notices).
    Close,
}

/// Per-request context handed to every handler.
pub(crate) struct Ctx<'a> {
    pub(crate) broker: &'a Broker,
    pub(crate) header: &'a RequestHeader,
    pub(crate) version: i16,
    /// The client's address (group membership reports it as the member's host).
    pub(crate) peer: SocketAddr,
    /// The listener the connection arrived on (answers carry its advertised address).
    pub(crate) listener: &'a ListenerContext,
    /// 0 = respond, [`NO_RESPONSE`] or [`CLOSE`]; set by handlers (atomic so `Ctx` is `Sync`).
    outcome: AtomicU8,
}

const NO_RESPONSE: u8 = 1;
const CLOSE: u8 = 2;

impl Ctx<'_> {
    /// The handled request must not be answered (acks=0).
    pub(crate) fn suppress_response(&self) {
        self.outcome.store(NO_RESPONSE, Ordering::Relaxed);
    }

    /// Close the connection instead of answering.
    pub(crate) fn close_connection(&self) {
        self.outcome.store(CLOSE, Ordering::Relaxed);
    }
}

macro_rules! apis {
    (
        parts { $( $pkey:ident => $prequest:ident, $pmodule:ident, $pmin:literal ..= $pmax:literal; )* }
        whole { $( $key:ident => $request:ident, $module:ident, $min:literal ..= $max:literal; )* }
    ) => {
        /// Every API this broker serves, with the version range it serves. ApiVersions
        /// advertises exactly this table.
        pub(crate) const SUPPORTED_APIS: &[(ApiKey, i16, i16)] = &[
            $( (ApiKey::$pkey, $pmin, $pmax), )*
            $( (ApiKey::$key, $min, $max), )*
        ];

        async fn dispatch(ctx: &Ctx<'_>, key: ApiKey, body: &mut Bytes) -> anyhow::Result<Reply> {
            match key {
                $(
                    ApiKey::$pkey => {
                        let request = $prequest::decode(body, ctx.version)
                            .with_context(|| format!("cannot decode {:?} v{}", key, ctx.version))?;
                        $pmodule::handle(ctx, request).await
                    }
                )*
                $(
                    ApiKey::$key => {
                        let request = $request::decode(body, ctx.version)
                            .with_context(|| format!("cannot decode {:?} v{}", key, ctx.version))?;
                        let response = $module::handle(ctx, request).await;
                        Ok(Reply::from(encode_response(ctx, key, &response)?.freeze()))
                    }
                )*
                other => Err(anyhow!("API {other:?} is not supported")),
            }
        }
    };
}

// Version ranges: what the handlers implement, within what kafka-protocol can decode.
// Produce is advertised from v0 like Apache Kafka 4.x does, because librdkafka disables
// compression when Produce v0 is missing; v0-2 requests themselves are refused.
// `parts` handlers encode their own response as parts (Fetch sends record batches straight
// from segment files); `whole` handlers return a response that is encoded here.
apis! {
    parts {
        Fetch => FetchRequest, fetch, 4..=17;
    }
    whole {
    Produce => ProduceRequest, produce, 0..=11;
    ListOffsets => ListOffsetsRequest, list_offsets, 1..=8;
    Metadata => MetadataRequest, metadata, 0..=12;
    ApiVersions => ApiVersionsRequest, api_versions, 0..=4;
    CreateTopics => CreateTopicsRequest, create_topics, 2..=7;
    DeleteTopics => DeleteTopicsRequest, delete_topics, 1..=6;
    DeleteRecords => DeleteRecordsRequest, delete_records, 0..=2;
    InitProducerId => InitProducerIdRequest, init_producer_id, 0..=5;
    OffsetForLeaderEpoch => OffsetForLeaderEpochRequest, offset_for_leader_epoch, 2..=4;
    DescribeConfigs => DescribeConfigsRequest, describe_configs, 1..=4;
    AlterConfigs => AlterConfigsRequest, alter_configs, 0..=2;
    DescribeLogDirs => DescribeLogDirsRequest, describe_log_dirs, 1..=4;
    CreatePartitions => CreatePartitionsRequest, create_partitions, 0..=3;
    IncrementalAlterConfigs => IncrementalAlterConfigsRequest, incremental_alter_configs, 0..=1;
    DescribeCluster => DescribeClusterRequest, describe_cluster, 0..=1;
    DescribeQuorum => DescribeQuorumRequest, describe_quorum, 0..=2;
    AddRaftVoter => AddRaftVoterRequest, add_raft_voter, 0..=0;
    RemoveRaftVoter => RemoveRaftVoterRequest, remove_raft_voter, 0..=0;
    ElectLeaders => ElectLeadersRequest, elect_leaders, 0..=2;
    AlterPartitionReassignments => AlterPartitionReassignmentsRequest, alter_partition_reassignments, 0..=0;
    ListPartitionReassignments => ListPartitionReassignmentsRequest, list_partition_reassignments, 0..=0;
    FindCoordinator => FindCoordinatorRequest, find_coordinator, 0..=4;
    JoinGroup => JoinGroupRequest, join_group, 0..=9;
    SyncGroup => SyncGroupRequest, sync_group, 0..=5;
    Heartbeat => HeartbeatRequest, heartbeat, 0..=4;
    LeaveGroup => LeaveGroupRequest, leave_group, 0..=5;
    OffsetCommit => OffsetCommitRequest, offset_commit, 2..=9;
    OffsetFetch => OffsetFetchRequest, offset_fetch, 1..=9;
    ListGroups => ListGroupsRequest, list_groups, 0..=5;
    DescribeGroups => DescribeGroupsRequest, describe_groups, 0..=6;
    DeleteGroups => DeleteGroupsRequest, delete_groups, 0..=2;
    OffsetDelete => OffsetDeleteRequest, offset_delete, 0..=0;
    ConsumerGroupHeartbeat => ConsumerGroupHeartbeatRequest, consumer_group_heartbeat, 0..=1;
    ConsumerGroupDescribe => ConsumerGroupDescribeRequest, consumer_group_describe, 0..=1;
    AddPartitionsToTxn => AddPartitionsToTxnRequest, add_partitions_to_txn, 0..=3;
    AddOffsetsToTxn => AddOffsetsToTxnRequest, add_offsets_to_txn, 0..=4;
    EndTxn => EndTxnRequest, end_txn, 0..=4;
    TxnOffsetCommit => TxnOffsetCommitRequest, txn_offset_commit, 0..=3;
    WriteTxnMarkers => WriteTxnMarkersRequest, write_txn_markers, 1..=1;
    DescribeProducers => DescribeProducersRequest, describe_producers, 0..=0;
    DescribeTransactions => DescribeTransactionsRequest, describe_transactions, 0..=0;
    ListTransactions => ListTransactionsRequest, list_transactions, 0..=2;
    }
}

/// Every served API with its version range `(key, min, max)`, as ApiVersions advertises them
/// (the fuzz targets in `broker/fuzz` pick requests from it).
pub fn served_apis() -> &'static [(ApiKey, i16, i16)] {
    SUPPORTED_APIS
}

/// The served version range of `key`, if it is served at all.
pub(crate) fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, min, max)| (*min, *max))
}

/// Decodes one request frame that arrived on `listener`, runs its handler and encodes the
/// response.
///
/// `Err` means the frame is not a request this broker can parse (unknown API key, version
/// out of range, malformed body); the caller closes the connection, as Kafka does.
pub async fn handle_request(
    broker: &Broker,
    peer: SocketAddr,
    listener: &ListenerContext,
    mut frame: Bytes,
) -> anyhow::Result<Outcome> {
    if frame.len() < 8 {
        return Err(anyhow!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        ));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(raw_key).map_err(|_| anyhow!("unknown API key {raw_key}"))?;

    let served = supported_versions(key);
    let in_range = matches!(served, Some((min, max)) if version >= min && version <= max);
    if !in_range {
        if key == ApiKey::ApiVersions {
            // KIP-511: answer an unknown ApiVersions version with a v0 response carrying
            // UNSUPPORTED_VERSION and our ranges, so the client can retry with one we serve.
            return Ok(Outcome::Respond(Reply::from(
                api_versions::unsupported_version_response(correlation_id)?,
            )));
        }
        warn!(%peer, api = ?key, version, "closing connection: unsupported API version");
        return Err(anyhow!("{key:?} v{version} is not supported"));
    }
    if key == ApiKey::Produce && version < 3 {
        warn!(%peer, version, "closing connection: Produce v0-2 (message format v0/v1) is not supported");
        return Err(anyhow!("Produce v{version} is not supported"));
    }

    let header_version = key.request_header_version(version);
    let header = RequestHeader::decode(&mut frame, header_version)
        .context("cannot decode request header")?;
    debug!(%peer, api = ?key, version, correlation_id, "request");
    let ctx = Ctx {
        broker,
        header: &header,
        version,
        peer,
        listener,
        outcome: AtomicU8::new(0),
    };
    let started = std::time::Instant::now();
    let body = dispatch(&ctx, key, &mut frame).await?;
    crate::metrics::metrics().observe_request(key, version, started.elapsed());
    Ok(match ctx.outcome.load(Ordering::Relaxed) {
        NO_RESPONSE => Outcome::NoResponse,
        CLOSE => Outcome::Close,
        _ => Outcome::Respond(body),
    })
}

fn encode_response<R: Encodable + HeaderVersion + Message>(
    ctx: &Ctx<'_>,
    key: ApiKey,
    response: &R,
) -> anyhow::Result<BytesMut> {
    let header = ResponseHeader::default().with_correlation_id(ctx.header.correlation_id);
    let header_version = key.response_header_version(ctx.version);
    let mut out = BytesMut::with_capacity(64 + response.compute_size(ctx.version)?);
    header.encode(&mut out, header_version)?;
    // A failure here is a bug in a handler (a field set that this version cannot carry).
    response
        .encode(&mut out, ctx.version)
        .with_context(|| format!("cannot encode {key:?} v{} response", ctx.version))?;
    Ok(out)
}

/// Shorthand for building protocol strings.
pub(crate) fn str_bytes(s: impl Into<String>) -> kafka_protocol::protocol::StrBytes {
    kafka_protocol::protocol::StrBytes::from_string(s.into())
}
