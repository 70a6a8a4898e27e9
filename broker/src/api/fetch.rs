//! Fetch (key 1): return stored batches byte-for-byte, from the batch holding the requested
//! offset, within `partition_max_bytes` and `max_bytes`, waiting up to `max_wait_ms` for
//! `min_bytes` to accumulate, in incremental fetch sessions (KIP-227) when the client asks.
//!
//! Reading only locates the batches (index lookups and a few header reads under the
//! partition's own lock); the response is encoded as parts — protocol bytes, then each
//! partition's file regions — so the connection sends the batches from the page cache with
//! `sendfile`. A waiting fetch is woken only by its partitions: a consumer's by their high
//! watermark advances, a follower's by appends.
//!
//! A follower's fetch (replica id >= 0, in `replica_state` from v15) is served by the
//! partition leader as Kafka's: its fetch offset is the follower's log end offset, which
//! moves the high watermark and may add the follower to the ISR; it reads up to the log end
//! offset. Consumers (replica id -1) read only below the high watermark, and with
//! isolation level READ_COMMITTED (1) only below the last stable offset, receiving the
//! aborted transactions that overlap what they read (from the segments' `.txnindex`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProducerId, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::ResponseError;
use tokio::sync::Notify;

use super::current_leader::NodeEndpoints;
use super::{str_bytes, ApiError, Ctx, Part, Reply};
use crate::log::{AbortedTxn, FileRegion, LogSlice, MoreData};
use crate::metadata::PartitionState;
use crate::replica::fetch_session::{
    FetchContext, PartitionOutcome, PartitionRequest, SessionPartitionKey, TopicKey,
    INVALID_SESSION_ID,
};
use crate::replica::quota::{
    is_throttled_replica, throttle_rate, ReplicationQuota, LEADER_THROTTLED_RATE,
    LEADER_THROTTLED_REPLICAS,
};
use crate::replica::{FetchWaitKind, FetchWatch, Partition, ReplicaManager};
use crate::time::now_ms;

/// Kafka's isolation level READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

type Resolved = Result<(Arc<Partition>, PartitionState), ApiError>;
/// A partition's read and, for a read_committed consumer, the aborted transactions in it.
type PartitionResult = Result<(LogSlice, Vec<AbortedTxn>), ApiError>;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: FetchRequest) -> anyhow::Result<Reply> {
    let broker = ctx.broker;
    let (partitions, forgotten) = requested_partitions(ctx, &request);
    let context = broker.fetch_sessions().new_context(
        ctx.version,
        request.session_id,
        request.session_epoch,
        partitions,
        &forgotten,
        now_ms(),
    );
    let wanted = match &context {
        FetchContext::Error(e) => {
            let response = FetchResponse::default()
                .with_error_code(e.code())
                .with_session_id(INVALID_SESSION_ID);
            return encode(ctx, SplitResponse::new(response));
        }
        FetchContext::Sessionless(p) | FetchContext::Full(p) => p,
        FetchContext::Incremental { partitions, .. } => partitions,
    };
    let resolved: Vec<Resolved> = wanted.iter().map(|w| resolve(ctx, w)).collect();

    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    // Kafka's KafkaApis: the response carries at most min(request max_bytes,
    // fetch.max.bytes), followers' fetches included, and waits for no more than that.
    let max_bytes = request
        .max_bytes
        .min(broker.config().fetch_max_bytes)
        .max(0) as usize;
    let min_bytes = (request.min_bytes.max(0) as usize).min(max_bytes);
    let read_committed = request.isolation_level == READ_COMMITTED;
    let reader = Reader::of(ctx.version, &request);
    let throttle = LeaderThrottle::of(ctx, reader, wanted);
    let waker = Arc::new(Notify::new());
    let mut watches: Vec<FetchWatch> = Vec::new();
    let results = loop {
        let (results, available, any_error) = read_all(
            broker.replica_manager(),
            reader,
            wanted,
            &resolved,
            max_bytes,
            throttle.as_ref(),
        );
        let timed_out = tokio::time::Instant::now() >= deadline;
        if available >= min_bytes || any_error || timed_out || wanted.is_empty() {
            break results;
        }
        if watches.is_empty() {
            // Register with the partitions read, then read again: an append between the
            // read above and the registration would otherwise go unnoticed until the
            // deadline.
            watches = resolved
                .iter()
                .flatten()
                .map(|(p, _)| p.watch(reader.wait_kind(), &waker))
                .collect();
            continue;
        }
        let _ = tokio::time::timeout_at(deadline, waker.notified()).await;
    };
    drop(watches);
    if let Some(throttle) = &throttle {
        throttle.record(&results);
    }

    let outcomes: Vec<PartitionOutcome> = results.iter().map(outcome).collect();
    let follower = request.replica_id.0 >= 0 || request.replica_state.replica_id.0 >= 0;
    let sent: usize = outcomes.iter().map(|o| o.records_size).sum();
    crate::metrics::metrics().fetched(sent as u64, follower);
    let (session_id, carried) = match &context {
        FetchContext::Sessionless(_) | FetchContext::Error(_) => (INVALID_SESSION_ID, None),
        FetchContext::Full(partitions) => {
            let privileged = request.replica_id.0 >= 0 || request.replica_state.replica_id.0 >= 0;
            let id = broker.fetch_sessions().create_session(
                ctx.version,
                privileged,
                partitions,
                &outcomes,
                now_ms(),
            );
            (id, None)
        }
        FetchContext::Incremental { session_id, .. } => {
            let carried = broker
                .fetch_sessions()
                .complete_incremental(*session_id, &outcomes);
            (*session_id, Some(carried))
        }
    };
    let mut split = SplitResponse::new(FetchResponse::default().with_session_id(session_id));
    let mut node_endpoints = NodeEndpoints::default();
    for (i, (w, result)) in wanted.iter().zip(results).enumerate() {
        if carried
            .as_ref()
            .is_some_and(|c| !c.get(i).copied().unwrap_or(true))
        {
            continue;
        }
        let (mut data, regions) = partition_response(ctx, w, &resolved[i], result, read_committed);
        let moved = data.error_code == ResponseError::NotLeaderOrFollower.code()
            || data.error_code == ResponseError::FencedLeaderEpoch.code();
        if ctx.version >= 16 && moved {
            // KIP-951: name the current leader so the client goes there without a
            // metadata refresh.
            let leader = node_endpoints.leader_of(
                ctx,
                &broker.image(),
                w.topic.as_deref().unwrap_or_default(),
                w.partition,
            );
            data.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(leader.leader_id))
                .with_leader_epoch(leader.leader_epoch);
        }
        split.push(ctx.version, w, data, regions);
    }
    split.top.node_endpoints = node_endpoints
        .into_entries()
        .map(|(id, e)| {
            NodeEndpoint::default()
                .with_node_id(BrokerId(id))
                .with_host(str_bytes(e.host))
                .with_port(e.port)
                .with_rack(e.rack.map(str_bytes))
        })
        .collect();
    encode(ctx, split)
}

/// The request's partitions (in request order) and forgotten partitions, with v13+ topic
/// ids resolved to names where this broker knows them.
fn requested_partitions(
    ctx: &Ctx<'_>,
    request: &FetchRequest,
) -> (Vec<PartitionRequest>, Vec<SessionPartitionKey>) {
    let image = ctx.broker.image();
    let mut partitions = Vec::new();
    for topic in &request.topics {
        let name = if ctx.version >= 13 {
            image.topic_by_id(&topic.topic_id).map(|t| t.name.clone())
        } else {
            Some(topic.topic.0.as_str().to_string())
        };
        for p in &topic.partitions {
            partitions.push(PartitionRequest {
                topic: name.clone(),
                topic_id: topic.topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes,
                current_leader_epoch: p.current_leader_epoch,
                log_start_offset: p.log_start_offset,
                last_fetched_epoch: p.last_fetched_epoch,
            });
        }
    }
    let mut forgotten = Vec::new();
    for topic in &request.forgotten_topics_data {
        let key = if ctx.version >= 13 {
            TopicKey::Id(topic.topic_id)
        } else {
            TopicKey::Name(topic.topic.0.as_str().to_string())
        };
        forgotten.extend(topic.partitions.iter().map(|&p| (key.clone(), p)));
    }
    (partitions, forgotten)
}

/// Looks the partition up once per request: later reads of a long poll reuse the handle.
fn resolve(ctx: &Ctx<'_>, w: &PartitionRequest) -> Resolved {
    let Some(topic) = &w.topic else {
        return Err(ApiError::code(ResponseError::UnknownTopicId));
    };
    ctx.broker.leader_partition(topic, w.partition)
}

/// Who sends the fetch: a consumer (reading committed data only with isolation level
/// READ_COMMITTED), or a follower replica with its broker epoch.
#[derive(Debug, Clone, Copy)]
enum Reader {
    Consumer { read_committed: bool },
    Follower { replica_id: i32, broker_epoch: i64 },
}

impl Reader {
    /// The request's replica id: `replica_id` up to v14, `replica_state` from v15.
    fn of(version: i16, request: &FetchRequest) -> Self {
        let (replica_id, broker_epoch) = if version >= 15 {
            (
                request.replica_state.replica_id.0,
                request.replica_state.replica_epoch,
            )
        } else {
            (request.replica_id.0, -1)
        };
        if replica_id >= 0 {
            Reader::Follower {
                replica_id,
                broker_epoch,
            }
        } else {
            Reader::Consumer {
                read_committed: request.isolation_level == READ_COMMITTED,
            }
        }
    }

    fn wait_kind(self) -> FetchWaitKind {
        match self {
            Reader::Consumer { .. } => FetchWaitKind::Consumer,
            Reader::Follower { .. } => FetchWaitKind::Follower,
        }
    }
}

/// Reads every partition within `max_bytes` in all (a partition's first batch whole while
/// nothing was read before it). Returns the results, the bytes available to the fetch as
/// Kafka's `DelayedFetch` counts them (what was read, but the whole partition limit for a
/// partition cut short by a limit, everything when a read stopped at a segment older than
/// its bound's) and whether any partition failed.
fn read_all(
    replicas: &ReplicaManager,
    reader: Reader,
    wanted: &[PartitionRequest],
    resolved: &[Resolved],
    max_bytes: usize,
    throttle: Option<&LeaderThrottle<'_>>,
) -> (Vec<PartitionResult>, usize, bool) {
    let mut total = 0usize;
    let mut available = 0usize;
    let mut any_error = false;
    let mut results = Vec::with_capacity(wanted.len());
    for (i, (w, r)) in wanted.iter().zip(resolved).enumerate() {
        let result = read_one(
            replicas,
            reader,
            w,
            r,
            max_bytes.saturating_sub(total),
            total == 0,
            throttle.filter(|t| t.throttled[i]),
        );
        match &result {
            Ok((slice, _)) => {
                total += slice.size;
                available = available.saturating_add(match slice.more {
                    MoreData::None => slice.size,
                    MoreData::InSegment => slice.size.max(w.max_bytes.max(0) as usize),
                    MoreData::LaterSegment => usize::MAX,
                });
            }
            Err(_) => any_error = true,
        }
        results.push(result);
    }
    (results, available, any_error)
}

fn read_one(
    replicas: &ReplicaManager,
    reader: Reader,
    w: &PartitionRequest,
    resolved: &Resolved,
    remaining: usize,
    first: bool,
    throttle: Option<&LeaderThrottle<'_>>,
) -> PartitionResult {
    let (partition, state) = resolved.as_ref().map_err(Clone::clone)?;
    let limit = (w.max_bytes.max(0) as usize).min(remaining);
    if let Reader::Follower {
        replica_id,
        broker_epoch,
    } = reader
    {
        let fetched = partition.fetch_for_follower(
            replica_id,
            broker_epoch,
            w.fetch_offset,
            w.log_start_offset,
            w.current_leader_epoch,
            limit,
            first,
            now_ms(),
        )?;
        if let Some(request) = fetched.alter_partition {
            replicas.send_alter_partition(partition, request);
        }
        // Kafka's shouldLeaderThrottle: a follower outside the ISR of a throttled partition
        // gets no records while the quota is exceeded (its fetch offset still counted above).
        let mut slice = fetched.slice;
        if throttle.is_some_and(|t| !state.isr.contains(&replica_id) && t.exceeded()) {
            slice.regions.clear();
            slice.size = 0;
            slice.more = MoreData::None;
        }
        return Ok((slice, Vec::new()));
    }
    if w.current_leader_epoch >= 0 {
        if w.current_leader_epoch > state.leader_epoch {
            return Err(ApiError::code(ResponseError::UnknownLeaderEpoch));
        }
        if w.current_leader_epoch < state.leader_epoch {
            return Err(ApiError::code(ResponseError::FencedLeaderEpoch));
        }
    }
    let read_committed = matches!(
        reader,
        Reader::Consumer {
            read_committed: true
        }
    );
    let log = partition.log().lock().unwrap_or_else(|p| p.into_inner());
    // Kafka's FetchIsolation: a read_committed consumer reads below the last stable offset.
    let bound = if read_committed {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    };
    // KIP-74: the first partition with data returns at least one whole batch so a batch
    // larger than the limits never blocks a consumer.
    let slice = log.read_regions(w.fetch_offset, limit, bound, first)?;
    let aborted = match slice.fetch_upper_bound_offset {
        Some(upper) if read_committed => log.collect_aborted_transactions(w.fetch_offset, upper),
        _ => Vec::new(),
    };
    Ok((slice, aborted))
}

/// The leader's replication throttle for one follower fetch: which of its partitions this
/// broker throttles (`leader.replication.throttled.replicas` names `partition:<this broker>`)
/// and the bound (`leader.replication.throttled.rate`), see [`crate::replica::quota`].
struct LeaderThrottle<'a> {
    quota: &'a ReplicationQuota,
    bound: u64,
    /// By index of the request's partitions.
    throttled: Vec<bool>,
}

impl<'a> LeaderThrottle<'a> {
    /// `None` for consumers, without a rate, or when no requested partition is throttled.
    fn of(ctx: &Ctx<'a>, reader: Reader, wanted: &[PartitionRequest]) -> Option<Self> {
        if !matches!(reader, Reader::Follower { .. }) {
            return None;
        }
        let broker = ctx.broker;
        let image = broker.image();
        let bound = throttle_rate(&image, broker.node_id(), LEADER_THROTTLED_RATE)?;
        let throttled: Vec<bool> = wanted
            .iter()
            .map(|w| {
                w.topic
                    .as_deref()
                    .and_then(|t| image.topic(t))
                    .and_then(|t| t.configs.get(LEADER_THROTTLED_REPLICAS))
                    .is_some_and(|list| is_throttled_replica(list, w.partition, broker.node_id()))
            })
            .collect();
        throttled.contains(&true).then_some(LeaderThrottle {
            quota: broker.replica_manager().leader_quota(),
            bound,
            throttled,
        })
    }

    fn exceeded(&self) -> bool {
        self.quota.is_exceeded(self.bound, now_ms())
    }

    /// Records what the response carries for throttled partitions, as Kafka's KafkaApis
    /// records `sizeOfThrottledPartitions`.
    fn record(&self, results: &[PartitionResult]) {
        let bytes: usize = results
            .iter()
            .zip(&self.throttled)
            .filter(|(_, throttled)| **throttled)
            .filter_map(|(r, _)| r.as_ref().ok().map(|(s, _)| s.size))
            .sum();
        self.quota.record(bytes as u64, now_ms());
    }
}

fn outcome(result: &PartitionResult) -> PartitionOutcome {
    match result {
        Ok((slice, _)) => PartitionOutcome {
            records_size: slice.size,
            high_watermark: slice.high_watermark,
            log_start_offset: slice.log_start_offset,
            error_code: 0,
        },
        Err(e) => PartitionOutcome {
            records_size: 0,
            high_watermark: -1,
            log_start_offset: -1,
            error_code: e.code,
        },
    }
}

/// The partition's response fields (records left out) and the file regions of its records.
fn partition_response(
    ctx: &Ctx<'_>,
    w: &PartitionRequest,
    resolved: &Resolved,
    result: PartitionResult,
    read_committed: bool,
) -> (PartitionData, Vec<FileRegion>) {
    let mut p = PartitionData::default()
        .with_partition_index(w.partition)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_aborted_transactions(if read_committed { Some(vec![]) } else { None })
        .with_records(None);
    match result {
        Ok((slice, aborted)) => {
            p.high_watermark = slice.high_watermark;
            p.last_stable_offset = slice.last_stable_offset;
            if ctx.version >= 5 {
                p.log_start_offset = slice.log_start_offset;
            }
            if read_committed {
                p.aborted_transactions = Some(
                    aborted
                        .iter()
                        .map(|a| {
                            AbortedTransaction::default()
                                .with_producer_id(ProducerId(a.producer_id))
                                .with_first_offset(a.first_offset)
                        })
                        .collect(),
                );
            }
            (p, slice.regions)
        }
        Err(e) => {
            p.error_code = e.code;
            if e.code == ResponseError::OffsetOutOfRange.code() {
                if let Ok((partition, _)) = resolved {
                    let log = partition.log().lock().unwrap_or_else(|p| p.into_inner());
                    p.high_watermark = log.high_watermark();
                    p.last_stable_offset = log.last_stable_offset();
                    if ctx.version >= 5 {
                        p.log_start_offset = log.log_start_offset();
                    }
                }
            }
            (p, Vec::new())
        }
    }
}

/// A FetchResponse whose records live in files: the top-level fields (with no topics), then
/// per topic its fields (with no partitions), then per partition its fields (records unset)
/// and the file regions holding its records.
struct SplitResponse {
    top: FetchResponse,
    topics: Vec<SplitTopic>,
}

/// A partition's fields (records unset) and the file regions of its records.
type PartitionParts = (PartitionData, Vec<FileRegion>);

struct SplitTopic {
    topic: FetchableTopicResponse,
    partitions: Vec<PartitionParts>,
}

impl SplitResponse {
    fn new(top: FetchResponse) -> Self {
        SplitResponse {
            top,
            topics: Vec::new(),
        }
    }

    /// Appends a partition, starting a new topic entry unless the previous partition was of
    /// the same topic (Kafka groups consecutive partitions of a topic the same way).
    fn push(
        &mut self,
        version: i16,
        w: &PartitionRequest,
        data: PartitionData,
        regions: Vec<FileRegion>,
    ) {
        let name = w.topic.clone().unwrap_or_default();
        let same = |t: &FetchableTopicResponse| {
            if version >= 13 {
                t.topic_id == w.topic_id
            } else {
                t.topic.0.as_str() == name
            }
        };
        match self.topics.last_mut() {
            Some(t) if same(&t.topic) => t.partitions.push((data, regions)),
            _ => {
                let topic = if version >= 13 {
                    FetchableTopicResponse::default().with_topic_id(w.topic_id)
                } else {
                    FetchableTopicResponse::default().with_topic(TopicName(str_bytes(name)))
                };
                self.topics.push(SplitTopic {
                    topic,
                    partitions: vec![(data, regions)],
                });
            }
        }
    }
}

fn encode(ctx: &Ctx<'_>, split: SplitResponse) -> anyhow::Result<Reply> {
    let header = ResponseHeader::default().with_correlation_id(ctx.header.correlation_id);
    let header_version = ApiKey::Fetch.response_header_version(ctx.version);
    let mut w = PartsWriter::default();
    header.encode(&mut w.buf, header_version)?;
    encode_split(&mut w, &split, ctx.version)?;
    Ok(w.finish())
}

/// Collects encoded bytes and file regions in wire order.
#[derive(Default)]
struct PartsWriter {
    parts: Vec<Part>,
    buf: BytesMut,
}

impl PartsWriter {
    fn file(&mut self, region: FileRegion) {
        if region.len == 0 {
            return;
        }
        if !self.buf.is_empty() {
            self.parts.push(Part::Bytes(self.buf.split().freeze()));
        }
        self.parts.push(Part::File(region));
    }

    fn finish(mut self) -> Reply {
        if !self.buf.is_empty() {
            self.parts.push(Part::Bytes(self.buf.split().freeze()));
        }
        Reply { parts: self.parts }
    }
}

/// Writes an array or bytes length: INT32 before flexible versions, UNSIGNED_VARINT of
/// length + 1 (compact) from them.
fn put_length(buf: &mut BytesMut, len: usize, flexible: bool) -> anyhow::Result<()> {
    if flexible {
        let mut v = u32::try_from(len + 1)?;
        while v >= 0x80 {
            buf.put_u8((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        buf.put_u8(v as u8);
    } else {
        buf.put_i32(i32::try_from(len)?);
    }
    Ok(())
}

fn encoded<T: Encodable>(value: &T, version: i16) -> anyhow::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(value.compute_size(version)?);
    value.encode(&mut buf, version)?;
    Ok(buf.freeze())
}

/// Encodes `split` exactly as kafka-protocol encodes the whole FetchResponse, with each
/// partition's records written as the length then the file regions. Every field is encoded
/// by kafka-protocol; only the lengths of the arrays and records that were left empty are
/// written here, in the place kafka-protocol put the empty ones:
/// - top level: throttle (4), error code and session id (6, v7+), then `responses`;
/// - topic: its fields, then `partitions`, then (flexible) its tagged fields, none;
/// - partition: its fields, then `records` (null: INT32 -1, or compact 0), then (flexible)
///   the tagged fields, whose size is the difference to the same partition without them.
fn encode_split(w: &mut PartsWriter, split: &SplitResponse, version: i16) -> anyhow::Result<()> {
    let flexible = version >= 12;
    let empty_array = if flexible { 1 } else { 4 };
    let top = encoded(&split.top, version)?;
    let at = 4 + if version >= 7 { 6 } else { 0 };
    w.buf.extend_from_slice(&top[..at]);
    put_length(&mut w.buf, split.topics.len(), flexible)?;
    for t in &split.topics {
        anyhow::ensure!(t.topic.partitions.is_empty() && t.topic.unknown_tagged_fields.is_empty());
        let topic = encoded(&t.topic, version)?;
        let tags = if flexible { 1 } else { 0 };
        let at = topic.len() - empty_array - tags;
        w.buf.extend_from_slice(&topic[..at]);
        put_length(&mut w.buf, t.partitions.len(), flexible)?;
        for (p, regions) in &t.partitions {
            // Encoded with null records, whose encoding is replaced below.
            let unset;
            let p = if p.records.is_some() {
                unset = p.clone().with_records(None);
                &unset
            } else {
                p
            };
            let bytes = encoded(p, version)?;
            let (head, tail) = if flexible {
                let mut untagged = p.clone();
                untagged.diverging_epoch = Default::default();
                untagged.current_leader = Default::default();
                untagged.snapshot_id = Default::default();
                untagged.unknown_tagged_fields = Default::default();
                // Without tagged fields the encoding ends with records (1 byte) and a zero
                // tag count (1 byte).
                let records_at = untagged.compute_size(version)? - 2;
                (&bytes[..records_at], &bytes[records_at + 1..])
            } else {
                (&bytes[..bytes.len() - 4], &bytes[bytes.len()..])
            };
            w.buf.extend_from_slice(head);
            let len: usize = regions.iter().map(|r| r.len).sum();
            put_length(&mut w.buf, len, flexible)?;
            for r in regions {
                w.file(r.clone());
            }
            w.buf.extend_from_slice(tail);
        }
        w.buf.extend_from_slice(&topic[topic.len() - tags..]);
    }
    w.buf.extend_from_slice(&top[at + empty_array..]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use kafka_protocol::messages::fetch_response::{AbortedTransaction, NodeEndpoint};
    use kafka_protocol::messages::ProducerId;
    use uuid::Uuid;

    use super::*;

    /// A file holding `chunks` back to back, and a region for each.
    fn regions(chunks: &[&[u8]]) -> (tempfile::NamedTempFile, Vec<FileRegion>) {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        let mut regions = Vec::new();
        let mut pos = 0u64;
        for c in chunks {
            f.write_all(c).expect("write");
            regions.push((pos, c.len()));
            pos += c.len() as u64;
        }
        let file = Arc::new(f.reopen().expect("reopen"));
        let regions = regions
            .into_iter()
            .map(|(position, len)| FileRegion {
                file: file.clone(),
                position,
                len,
            })
            .collect();
        (f, regions)
    }

    fn partition(index: i32, version: i16, error: bool) -> PartitionData {
        let mut p = PartitionData::default()
            .with_partition_index(index)
            .with_high_watermark(1000 + i64::from(index))
            .with_last_stable_offset(900)
            .with_log_start_offset(if version >= 5 { 7 } else { -1 })
            .with_preferred_read_replica(BrokerId(-1))
            .with_aborted_transactions(if index % 2 == 0 {
                Some(vec![AbortedTransaction::default()
                    .with_producer_id(ProducerId(42))
                    .with_first_offset(3)])
            } else {
                None
            });
        if error && version >= 12 {
            p.error_code = ResponseError::NotLeaderOrFollower.code();
            p.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(2))
                .with_leader_epoch(5);
        }
        p
    }

    #[test]
    fn split_encoding_equals_kafka_protocols_whole_response_for_every_version() {
        // Records of 0, 1, 200 and 300 (two regions: a read across segments) bytes.
        let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let (_file, files) = regions(&[b"x", &big[..200], &big[..100], &big[100..300]]);
        for version in 4..=18i16 {
            let mut top = FetchResponse::default().with_throttle_time_ms(17);
            if version >= 7 {
                top = top.with_error_code(0).with_session_id(1234);
            }
            if version >= 16 {
                top.node_endpoints = vec![NodeEndpoint::default()
                    .with_node_id(BrokerId(2))
                    .with_host(str_bytes("h"))
                    .with_port(9092)];
            }
            let topic = |name: &str, id: u128| {
                if version >= 13 {
                    FetchableTopicResponse::default().with_topic_id(Uuid::from_u128(id))
                } else {
                    FetchableTopicResponse::default().with_topic(TopicName(str_bytes(name)))
                }
            };
            let layout: Vec<(FetchableTopicResponse, Vec<PartitionParts>)> = vec![
                (
                    topic("a", 1),
                    vec![
                        (partition(0, version, false), vec![]),
                        (partition(1, version, false), vec![files[0].clone()]),
                        (partition(2, version, true), vec![]),
                    ],
                ),
                (
                    topic("b", 2),
                    vec![(partition(0, version, false), vec![files[1].clone()])],
                ),
                (
                    topic("c", 3),
                    vec![(
                        partition(3, version, false),
                        vec![files[2].clone(), files[3].clone()],
                    )],
                ),
            ];
            let mut whole = top.clone();
            let mut split = SplitResponse::new(top.clone());
            for (t, parts) in &layout {
                let mut wt = t.clone();
                for (p, rs) in parts {
                    let mut bytes = Vec::new();
                    for r in rs {
                        r.read_to(&mut bytes).expect("read");
                    }
                    wt.partitions
                        .push(p.clone().with_records(Some(Bytes::from(bytes))));
                }
                whole.responses.push(wt);
                split.topics.push(SplitTopic {
                    topic: t.clone(),
                    partitions: parts.clone(),
                });
            }
            let expected = encoded(&whole, version).expect("kafka-protocol encodes");
            let mut w = PartsWriter::default();
            encode_split(&mut w, &split, version).expect("split encodes");
            let reply = w.finish();
            assert!(
                reply.parts.iter().any(|p| matches!(p, Part::File(_))),
                "records stay in files"
            );
            assert_eq!(reply.len(), expected.len(), "v{version} length");
            assert_eq!(
                reply.to_vec().expect("read"),
                expected.to_vec(),
                "v{version}"
            );
        }
    }
}
