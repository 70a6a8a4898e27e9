//! The coordinator's marker sender on a replicated cluster, as Kafka's
//! `TransactionMarkerChannelManager`: the markers of one transaction are grouped by the
//! broker that leads each partition ([`route`]); the partitions this broker leads are
//! written locally, the others queued per destination broker and sent over the
//! inter-broker listener ([`MarkerChannels::write`]). As Kafka's channel drains a queue per
//! broker with one request in flight, each request to a broker carries the markers of every
//! transaction queued for it meanwhile ([`drain`], [`request_many`], [`results`]), so
//! transactions completing together share one WriteTxnMarkers request per broker.
//!
//! What is retried is the coordinator's decision ([`outcome`], used by
//! [`super::coordinator`]): a partition without a leader, a NOT_LEADER_OR_FOLLOWER, a lost
//! connection are tried again (with the leader the next metadata image names) until the
//! marker is written or the coordinator stops serving the transactional id at its epoch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ProducerId, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use oxbow_client::{Connection, ConnectionConfig};
use tokio::sync::oneshot;
use tracing::debug;

use super::state::TxnPartition;

/// Where the markers of one transaction go.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Routes {
    /// Partitions this broker leads: written through the local append path.
    pub local: Vec<TxnPartition>,
    /// Partitions led by other brokers, by broker id: one request per broker.
    pub remote: BTreeMap<i32, Vec<TxnPartition>>,
    /// Partitions whose topic or partition no longer exists: nothing left to mark.
    pub gone: Vec<TxnPartition>,
    /// Partitions with no leader now: retried with a later image.
    pub leaderless: Vec<TxnPartition>,
}

/// Groups `partitions` by destination. `leader_of` answers `None` for a partition that does
/// not exist, `Some(leader)` otherwise (`-1` when it has no leader).
pub fn route(
    partitions: &BTreeSet<TxnPartition>,
    node_id: i32,
    leader_of: impl Fn(&TxnPartition) -> Option<i32>,
) -> Routes {
    let mut routes = Routes::default();
    for tp in partitions {
        match leader_of(tp) {
            None => routes.gone.push(tp.clone()),
            Some(l) if l == node_id => routes.local.push(tp.clone()),
            Some(l) if l < 0 => routes.leaderless.push(tp.clone()),
            Some(l) => routes.remote.entry(l).or_default().push(tp.clone()),
        }
    }
    routes
}

/// One transaction's end marker for the partitions one broker leads, as it waits in that
/// broker's queue (Kafka's `TxnIdAndMarkerEntry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMarker {
    /// The transaction's producer id.
    pub producer_id: i64,
    /// Its producer epoch.
    pub producer_epoch: i16,
    /// COMMIT (`true`) or ABORT.
    pub commit: bool,
    /// The coordinator epoch stamped on the markers.
    pub coordinator_epoch: i32,
    /// The partitions to mark, all led by the destination broker.
    pub partitions: Vec<TxnPartition>,
}

/// Takes from `queue` what the next request to its broker carries: every queued
/// transaction in order, except a later one of a producer id already taken, which stays
/// queued for the request after (a response answers per producer id, as Kafka's
/// `errorsByProducerId` reads it, so one request holds one marker per producer id).
pub fn drain<T>(queue: &mut Vec<T>, producer_id: impl Fn(&T) -> i64) -> Vec<T> {
    let mut taken_ids = BTreeSet::new();
    let (taken, left): (Vec<T>, Vec<T>) = std::mem::take(queue)
        .into_iter()
        .partition(|entry| taken_ids.insert(producer_id(entry)));
    *queue = left;
    taken
}

/// The WriteTxnMarkers request that writes one transaction's marker to `partitions`.
pub fn request(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    partitions: &[TxnPartition],
) -> WriteTxnMarkersRequest {
    request_many(&[PendingMarker {
        producer_id,
        producer_epoch,
        commit,
        coordinator_epoch,
        partitions: partitions.to_vec(),
    }])
}

/// The WriteTxnMarkers request that writes the markers of every transaction of `markers`
/// (one `WritableTxnMarker` each, in order, its partitions grouped by topic).
pub fn request_many(markers: &[PendingMarker]) -> WriteTxnMarkersRequest {
    let markers = markers
        .iter()
        .map(|m| {
            let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (topic, index) in &m.partitions {
                by_topic.entry(topic.as_str()).or_default().push(*index);
            }
            let topics = by_topic
                .into_iter()
                .map(|(name, indexes)| {
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(name.to_string())))
                        .with_partition_indexes(indexes)
                })
                .collect();
            WritableTxnMarker::default()
                .with_producer_id(ProducerId(m.producer_id))
                .with_producer_epoch(m.producer_epoch)
                .with_transaction_result(m.commit)
                .with_coordinator_epoch(m.coordinator_epoch)
                .with_topics(topics)
        })
        .collect();
    WriteTxnMarkersRequest::default().with_markers(markers)
}

/// The error code of each of `partitions` in `response` (0 for written). A partition the
/// response does not name gets UNKNOWN_SERVER_ERROR, which is retried.
pub fn results(
    response: &WriteTxnMarkersResponse,
    producer_id: i64,
    partitions: &[TxnPartition],
) -> Vec<(TxnPartition, i16)> {
    let mut codes: HashMap<(&str, i32), i16> = HashMap::new();
    for marker in response
        .markers
        .iter()
        .filter(|m| m.producer_id.0 == producer_id)
    {
        for topic in &marker.topics {
            for p in &topic.partitions {
                codes.insert((topic.name.0.as_str(), p.partition_index), p.error_code);
            }
        }
    }
    partitions
        .iter()
        .map(|tp| {
            let code = codes
                .get(&(tp.0.as_str(), tp.1))
                .copied()
                .unwrap_or(ResponseError::UnknownServerError.code());
            (tp.clone(), code)
        })
        .collect()
}

/// What the coordinator does with a partition's marker after a write answered `code`, as
/// Kafka's `TransactionMarkerRequestCompletionHandler`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Written, or the partition cannot hold a marker (UNSUPPORTED_FOR_MESSAGE_FORMAT,
    /// UNSUPPORTED_VERSION: the producer could not have written there either): nothing left
    /// to do. A deleted partition is dropped by [`route`] instead.
    Done,
    /// This coordinator is fenced (TRANSACTION_COORDINATOR_FENCED, or INVALID_PRODUCER_EPOCH:
    /// a newer epoch wrote there): stop sending this transaction's markers; the newer
    /// coordinator completes it.
    Fenced,
    /// Any other error (UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER,
    /// NOT_ENOUGH_REPLICAS, REQUEST_TIMED_OUT, a lost connection…): sent again after a
    /// backoff, to the leader the metadata names then. (Kafka throws on the errors it calls
    /// fatal, CORRUPT_MESSAGE and the like; retrying them here keeps the transaction
    /// prepared, which `kafka-transactions.sh` shows.)
    Retry,
}

/// See [`Outcome`].
pub fn outcome(code: i16) -> Outcome {
    if code == 0
        || code == ResponseError::UnsupportedForMessageFormat.code()
        || code == ResponseError::UnsupportedVersion.code()
    {
        Outcome::Done
    } else if code == ResponseError::TransactionCoordinatorFenced.code()
        || code == ResponseError::InvalidProducerEpoch.code()
    {
        Outcome::Fenced
    } else {
        Outcome::Retry
    }
}

/// One broker's connection slot: its address and connection, reopened when closed.
type Slot = Arc<tokio::sync::Mutex<Option<(String, Arc<Connection>)>>>;

/// What a queued transaction's writer is told: the code of each of its partitions, or why
/// no response came.
type Answer = Result<Vec<(TxnPartition, i16)>, String>;

/// The markers waiting for one broker, and whether a sender drains them now.
#[derive(Default)]
struct Queue {
    /// The broker's inter-broker address, as the latest writer routed it.
    address: String,
    pending: Vec<(PendingMarker, oneshot::Sender<Answer>)>,
    draining: bool,
}

/// The connections of one coordinator to the other brokers' inter-broker listeners, one per
/// broker, opened on first use and reopened after a failure or an address change (Kafka's
/// marker channel keeps one `NetworkClient` for all destinations). Each broker has its own
/// slot, so a connect to a dead broker (up to the connect timeout) holds up no other.
pub struct MarkerChannels {
    config: ConnectionConfig,
    slots: std::sync::Mutex<HashMap<i32, Slot>>,
    queues: std::sync::Mutex<HashMap<i32, Queue>>,
}

impl MarkerChannels {
    /// Channels identifying as Kafka's do (`broker-<id>-txn-marker-sender`), with
    /// `request_timeout` per request.
    pub fn new(node_id: i32, request_timeout: Duration) -> Self {
        MarkerChannels {
            config: ConnectionConfig {
                client_id: Some(format!("broker-{node_id}-txn-marker-sender")),
                request_timeout,
                ..ConnectionConfig::default()
            },
            slots: std::sync::Mutex::new(HashMap::new()),
            queues: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Queue>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes `marker` at broker `broker` (at `address`): queued for that broker, and sent
    /// in the next request to it together with every other transaction's markers queued by
    /// then (one request in flight per broker, as Kafka's marker channel). Answers the code
    /// of each of its partitions ([`results`]), `Err` when no response came (the caller
    /// retries).
    pub async fn write(
        self: &Arc<Self>,
        broker: i32,
        address: String,
        marker: PendingMarker,
    ) -> Answer {
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut queues = self.queues();
            let q = queues.entry(broker).or_default();
            q.address = address;
            q.pending.push((marker, answer));
            !std::mem::replace(&mut q.draining, true)
        };
        if start {
            let this = self.clone();
            tokio::spawn(async move { this.drain_queue(broker).await });
        }
        answered
            .await
            .unwrap_or_else(|_| Err("the marker sender stopped".to_string()))
    }

    /// Sends what [`drain`] takes from `broker`'s queue, one request at a time, until the
    /// queue is empty.
    async fn drain_queue(&self, broker: i32) {
        loop {
            let (batch, address) = {
                let mut queues = self.queues();
                let Some(q) = queues.get_mut(&broker) else {
                    return;
                };
                let batch = drain(&mut q.pending, |(m, _)| m.producer_id);
                if batch.is_empty() {
                    q.draining = false;
                    return;
                }
                (batch, q.address.clone())
            };
            let markers: Vec<PendingMarker> = batch.iter().map(|(m, _)| m.clone()).collect();
            if markers.len() > 1 {
                debug!(
                    broker,
                    transactions = markers.len(),
                    "transaction markers merged into one request"
                );
            }
            let response = self.send(broker, &address, &request_many(&markers)).await;
            for (m, answer) in batch {
                let codes = match &response {
                    Ok(r) => Ok(results(r, m.producer_id, &m.partitions)),
                    Err(e) => Err(e.clone()),
                };
                // The writer may have given up (its completion was dropped): nothing to tell.
                let _ = answer.send(codes);
            }
        }
    }

    async fn connection(&self, broker: i32, address: &str) -> Result<Arc<Connection>, String> {
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(broker)
            .or_default()
            .clone();
        let mut slot = slot.lock().await;
        if let Some((a, c)) = slot.as_ref() {
            if a == address && !c.is_closed() {
                return Ok(c.clone());
            }
        }
        *slot = None;
        let c = Arc::new(
            Connection::connect(address, self.config.clone())
                .await
                .map_err(|e| e.to_string())?,
        );
        *slot = Some((address.to_string(), c.clone()));
        Ok(c)
    }

    /// Sends `request` to broker `broker` at `address` (`host:port`); `Err` when no response
    /// came (refused, lost, timed out), which the caller retries.
    pub async fn send(
        &self,
        broker: i32,
        address: &str,
        request: &WriteTxnMarkersRequest,
    ) -> Result<WriteTxnMarkersResponse, String> {
        let c = self.connection(broker, address).await?;
        c.send(request, None).await.map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::write_txn_markers_response::{
        WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
    };

    fn tp(t: &str, p: i32) -> TxnPartition {
        (t.to_string(), p)
    }

    #[test]
    fn routes_by_leader() {
        let parts: BTreeSet<TxnPartition> = [
            tp("a", 0),
            tp("a", 1),
            tp("a", 2),
            tp("b", 0),
            tp("gone", 0),
            tp("c", 0),
        ]
        .into_iter()
        .collect();
        let leaders: HashMap<TxnPartition, i32> = [
            (tp("a", 0), 1),
            (tp("a", 1), 2),
            (tp("a", 2), 3),
            (tp("b", 0), 2),
            (tp("c", 0), -1),
        ]
        .into_iter()
        .collect();
        let routes = route(&parts, 1, |p| leaders.get(p).copied());
        assert_eq!(routes.local, vec![tp("a", 0)]);
        assert_eq!(routes.remote.len(), 2);
        assert_eq!(routes.remote[&2], vec![tp("a", 1), tp("b", 0)]);
        assert_eq!(routes.remote[&3], vec![tp("a", 2)]);
        assert_eq!(routes.gone, vec![tp("gone", 0)]);
        assert_eq!(routes.leaderless, vec![tp("c", 0)]);
    }

    #[test]
    fn one_request_per_destination_and_its_results() {
        let parts = vec![tp("a", 1), tp("b", 0), tp("a", 4)];
        let req = request(7, 3, true, 5, &parts);
        assert_eq!(req.markers.len(), 1);
        let m = &req.markers[0];
        assert_eq!(
            (
                m.producer_id.0,
                m.producer_epoch,
                m.transaction_result,
                m.coordinator_epoch
            ),
            (7, 3, true, 5)
        );
        let topics: Vec<(String, Vec<i32>)> = m
            .topics
            .iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
            .collect();
        assert_eq!(
            topics,
            vec![("a".to_string(), vec![1, 4]), ("b".to_string(), vec![0])]
        );

        let not_leader = ResponseError::NotLeaderOrFollower.code();
        let response = WriteTxnMarkersResponse::default().with_markers(vec![
            WritableTxnMarkerResult::default()
                .with_producer_id(ProducerId(7))
                .with_topics(vec![WritableTxnMarkerTopicResult::default()
                    .with_name(TopicName(StrBytes::from_static_str("a")))
                    .with_partitions(vec![
                        WritableTxnMarkerPartitionResult::default().with_partition_index(1),
                        WritableTxnMarkerPartitionResult::default()
                            .with_partition_index(4)
                            .with_error_code(not_leader),
                    ])]),
        ]);
        let got = results(&response, 7, &parts);
        assert_eq!(
            got,
            vec![
                (tp("a", 1), 0),
                (tp("b", 0), ResponseError::UnknownServerError.code()),
                (tp("a", 4), not_leader),
            ]
        );
        // Another producer's answer is not this transaction's.
        assert!(results(&response, 8, &parts).iter().all(|(_, c)| *c != 0));
    }

    fn pending(producer_id: i64, partitions: &[TxnPartition]) -> PendingMarker {
        PendingMarker {
            producer_id,
            producer_epoch: 2,
            commit: producer_id % 2 == 0,
            coordinator_epoch: 9,
            partitions: partitions.to_vec(),
        }
    }

    #[test]
    fn queued_transactions_to_one_broker_share_a_request() {
        // Three transactions queued for one broker, the third a later one of producer 10.
        let mut queue = vec![
            pending(10, &[tp("a", 1), tp("b", 0)]),
            pending(11, &[tp("a", 1)]),
            pending(10, &[tp("c", 0)]),
            pending(12, &[tp("a", 3)]),
        ];
        let first = drain(&mut queue, |m| m.producer_id);
        let ids: Vec<i64> = first.iter().map(|m| m.producer_id).collect();
        assert_eq!(ids, vec![10, 11, 12], "one request for three transactions");
        assert_eq!(
            queue,
            vec![pending(10, &[tp("c", 0)])],
            "producer 10's second waits"
        );
        let second = drain(&mut queue, |m| m.producer_id);
        assert_eq!(second, vec![pending(10, &[tp("c", 0)])]);
        assert!(queue.is_empty());
        assert!(drain(&mut queue, |m| m.producer_id).is_empty());

        let req = request_many(&first);
        // (producer id, commit, [(topic, partitions)]) of each marker.
        type Marker = (i64, bool, Vec<(String, Vec<i32>)>);
        let markers: Vec<Marker> = req
            .markers
            .iter()
            .map(|m| {
                (
                    m.producer_id.0,
                    m.transaction_result,
                    m.topics
                        .iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes.clone()))
                        .collect(),
                )
            })
            .collect();
        assert_eq!(
            markers,
            vec![
                (10, true, vec![("a".into(), vec![1]), ("b".into(), vec![0])]),
                (11, false, vec![("a".into(), vec![1])]),
                (12, true, vec![("a".into(), vec![3])]),
            ]
        );
        assert!(req
            .markers
            .iter()
            .all(|m| (m.producer_epoch, m.coordinator_epoch) == (2, 9)));

        // One response answers each transaction its own partitions, by producer id.
        let fenced = ResponseError::InvalidProducerEpoch.code();
        let answer = |pid: i64, topic: &'static str, index: i32, code: i16| {
            WritableTxnMarkerResult::default()
                .with_producer_id(ProducerId(pid))
                .with_topics(vec![WritableTxnMarkerTopicResult::default()
                    .with_name(TopicName(StrBytes::from_static_str(topic)))
                    .with_partitions(vec![WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(code)])])
        };
        let response = WriteTxnMarkersResponse::default().with_markers(vec![
            answer(11, "a", 1, fenced),
            answer(10, "a", 1, 0),
            answer(12, "a", 3, 0),
        ]);
        assert_eq!(
            results(&response, 11, &first[1].partitions),
            vec![(tp("a", 1), fenced)]
        );
        assert_eq!(
            results(&response, 10, &first[0].partitions),
            vec![
                (tp("a", 1), 0),
                (tp("b", 0), ResponseError::UnknownServerError.code())
            ]
        );
        assert_eq!(
            results(&response, 12, &first[2].partitions),
            vec![(tp("a", 3), 0)]
        );
    }

    #[test]
    fn outcomes_as_kafka_completion_handler() {
        assert_eq!(outcome(0), Outcome::Done);
        assert_eq!(
            outcome(ResponseError::UnsupportedForMessageFormat.code()),
            Outcome::Done
        );
        assert_eq!(
            outcome(ResponseError::TransactionCoordinatorFenced.code()),
            Outcome::Fenced
        );
        assert_eq!(
            outcome(ResponseError::InvalidProducerEpoch.code()),
            Outcome::Fenced
        );
        for retried in [
            ResponseError::UnknownTopicOrPartition,
            ResponseError::NotLeaderOrFollower,
            ResponseError::NotEnoughReplicas,
            ResponseError::NotEnoughReplicasAfterAppend,
            ResponseError::RequestTimedOut,
            ResponseError::NetworkException,
        ] {
            assert_eq!(outcome(retried.code()), Outcome::Retry, "{retried:?}");
        }
    }
}
