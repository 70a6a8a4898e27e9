//! Leader and follower in one process: two [`Partition`]s with logs in temporary dirs, the
//! follower's [`ReplicaFetcher`] fetching through a [`LeaderConnection`] that calls the
//! leader partition directly, with logical time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    FetchRequest, FetchResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use uuid::Uuid;

use super::fetcher::{
    ConnectionError, FetchPhase, FetcherConfig, LeaderConnection, ReplicaFetcher,
};
use super::isr::UNKNOWN_OFFSET;
use super::{Partition, ReplicaError};
use crate::log::test_util::{simple, transactional};
use crate::log::{
    AbortedTxn, ControlRecordType, EndTxnMarker, LogConfig, PartitionLog, TopicPartition,
};
use crate::metadata::{BoxFuture, PartitionState};

const LAG: i64 = 30_000;
const LEADER: i32 = 1;
const FOLLOWER: i32 = 2;

fn tp() -> TopicPartition {
    TopicPartition::new("t", 0)
}

fn open(dir: &std::path::Path) -> Arc<Partition> {
    let log = PartitionLog::open(&dir.join("t-0"), tp(), LogConfig::default()).expect("open log");
    Arc::new(Partition::with_lag_time(Arc::new(Mutex::new(log)), LAG))
}

fn state(leader: i32, leader_epoch: i32, partition_epoch: i32, isr: &[i32]) -> PartitionState {
    PartitionState {
        replicas: vec![1, 2],
        isr: isr.to_vec(),
        leader,
        leader_epoch,
        partition_epoch,
        ..PartitionState::default()
    }
}

/// Everything in a partition's log, as stored.
fn log_bytes(p: &Partition) -> Vec<u8> {
    let log = p.log().lock().expect("log lock");
    log.read(0, usize::MAX, log.log_end_offset(), true)
        .expect("read log")
        .records
        .to_vec()
}

fn epochs(p: &Partition) -> Vec<(i32, i64)> {
    p.log().lock().expect("log lock").epoch_entries()
}

/// Serves a follower's requests from leader partitions in this process, at a logical time
/// the test sets.
#[derive(Default)]
struct InProcessLeader {
    partitions: Mutex<HashMap<String, Arc<Partition>>>,
    now_ms: Mutex<i64>,
}

impl InProcessLeader {
    fn new(partition: &Arc<Partition>) -> Arc<Self> {
        let leader = InProcessLeader::default();
        leader
            .partitions
            .lock()
            .expect("lock")
            .insert("t".into(), partition.clone());
        Arc::new(leader)
    }

    fn set_now(&self, now_ms: i64) {
        *self.now_ms.lock().expect("lock") = now_ms;
    }
}

impl LeaderConnection for InProcessLeader {
    fn fetch(
        &self,
        request: FetchRequest,
    ) -> BoxFuture<'_, Result<FetchResponse, ConnectionError>> {
        let now = *self.now_ms.lock().expect("lock");
        let mut responses = Vec::new();
        for topic in &request.topics {
            let partitions = self.partitions.lock().expect("lock");
            let mut out = Vec::new();
            for p in &topic.partitions {
                let mut data = PartitionData::default()
                    .with_partition_index(p.partition)
                    .with_high_watermark(-1);
                match partitions.get(topic.topic.0.as_str()) {
                    None => data.error_code = 3,
                    Some(leader) => match leader.fetch_for_follower(
                        request.replica_state.replica_id.0,
                        request.replica_state.replica_epoch,
                        p.fetch_offset,
                        p.log_start_offset,
                        p.current_leader_epoch,
                        p.partition_max_bytes as usize,
                        true,
                        now,
                    ) {
                        Ok(f) => {
                            let mut bytes = Vec::new();
                            for r in &f.slice.regions {
                                r.read_to(&mut bytes).expect("read region");
                            }
                            data.high_watermark = f.slice.high_watermark;
                            data.log_start_offset = f.slice.log_start_offset;
                            data.records = Some(bytes.into());
                        }
                        Err(e) => {
                            data.error_code = e.kafka_code();
                            data.log_start_offset =
                                leader.log().lock().expect("lock").log_start_offset();
                        }
                    },
                }
                out.push(data);
            }
            responses.push(
                FetchableTopicResponse::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(out),
            );
        }
        Box::pin(async move { Ok(FetchResponse::default().with_responses(responses)) })
    }

    fn offset_for_leader_epoch(
        &self,
        request: OffsetForLeaderEpochRequest,
    ) -> BoxFuture<'_, Result<OffsetForLeaderEpochResponse, ConnectionError>> {
        let partitions = self.partitions.lock().expect("lock");
        let topics = request
            .topics
            .iter()
            .map(|topic| {
                let answers = topic
                    .partitions
                    .iter()
                    .map(|p| {
                        let answer = EpochEndOffset::default()
                            .with_partition(p.partition)
                            .with_leader_epoch(-1)
                            .with_end_offset(-1);
                        let Some(leader) = partitions.get(topic.topic.0.as_str()) else {
                            return answer.with_error_code(3);
                        };
                        if let Err(e) = leader.check_current_leader_epoch(p.current_leader_epoch) {
                            return answer.with_error_code(e.kafka_code());
                        }
                        let (epoch, end) = leader
                            .log()
                            .lock()
                            .expect("lock")
                            .end_offset_for_epoch(p.leader_epoch);
                        answer.with_leader_epoch(epoch).with_end_offset(end)
                    })
                    .collect();
                OffsetForLeaderTopicResult::default()
                    .with_topic(topic.topic.clone())
                    .with_partitions(answers)
            })
            .collect();
        Box::pin(async move { Ok(OffsetForLeaderEpochResponse::default().with_topics(topics)) })
    }
}

struct Pair {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    leader: Arc<Partition>,
    follower: Arc<Partition>,
    connection: Arc<InProcessLeader>,
    fetcher: ReplicaFetcher,
}

/// A leader (1) and a follower (2) in leader epoch 0, both in the ISR, the follower's
/// fetcher added.
fn pair() -> Pair {
    let dirs = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let leader = open(dirs.0.path());
    let follower = open(dirs.1.path());
    let s = state(LEADER, 0, 0, &[1, 2]);
    leader.become_leader(&s, 0).expect("become leader");
    assert!(follower.become_follower(&s));
    let connection = InProcessLeader::new(&leader);
    let fetcher = ReplicaFetcher::new(
        LEADER,
        FetcherConfig::new(FOLLOWER, 7),
        connection.clone() as Arc<dyn LeaderConnection>,
    );
    fetcher.add_partition(tp(), follower.clone(), Uuid::nil(), 0);
    Pair {
        _dirs: dirs,
        leader,
        follower,
        connection,
        fetcher,
    }
}

impl Pair {
    async fn round(&self, now_ms: i64) -> super::fetcher::Round {
        self.connection.set_now(now_ms);
        self.fetcher.run_once(now_ms).await
    }
}

fn far() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(30)
}

#[tokio::test]
async fn records_replicate_byte_identical_and_acks_all_completes_only_when_the_follower_has_them() {
    let p = pair();
    let (info, epoch) = p
        .leader
        .append_records_to_leader(&simple(3, 1_000), -1, 2, 0)
        .expect("append");
    assert_eq!((info.base_offset, info.last_offset, epoch), (0, 2, 0));
    assert_eq!(
        p.leader.high_watermark(),
        0,
        "the follower has not fetched yet"
    );
    let leader = p.leader.clone();
    let acked = tokio::spawn(async move {
        leader
            .wait_for_acks_all(0, info.last_offset + 1, 2, far())
            .await
    });

    // First fetch (offset 0): the follower gets the records; the leader learns only that
    // the follower has nothing yet, so the high watermark stays.
    let round = p.round(10).await;
    assert!(round.appended_bytes > 0, "{round:?}");
    assert_eq!(p.follower.log_end_offset(), 3);
    assert_eq!(p.leader.high_watermark(), 0);
    assert_eq!(p.follower.high_watermark(), 0);
    tokio::task::yield_now().await;
    assert!(!acked.is_finished(), "acks=all must wait for the follower");

    // Second fetch (offset 3): the leader sees the follower caught up.
    p.round(20).await;
    assert_eq!(p.leader.high_watermark(), 3);
    assert_eq!(p.follower.high_watermark(), 3, "the follower learns the HW");
    let outcome = tokio::time::timeout(Duration::from_secs(5), acked)
        .await
        .expect("acks=all completes")
        .expect("task");
    assert!(outcome.is_ok(), "{outcome:?}");

    assert_eq!(
        log_bytes(&p.follower),
        log_bytes(&p.leader),
        "byte-identical, same offsets"
    );
    assert_eq!(epochs(&p.follower), vec![(0, 0)]);
    let view = p.leader.follower_state(FOLLOWER).expect("view");
    assert_eq!((view.log_end_offset, view.broker_epoch), (3, 7));
}

#[tokio::test]
async fn an_aborted_transaction_replicates_with_its_index_and_stays_unstable_until_its_marker_is_replicated(
) {
    let p = pair();
    p.leader
        .append_records_to_leader(&transactional(2, 9, 0, 0), 1, 1, 0)
        .expect("append transactional batch");
    let abort = EndTxnMarker {
        control_type: ControlRecordType::Abort,
        coordinator_epoch: 0,
    };
    let (info, _) = p
        .leader
        .append_txn_marker(9, 0, abort, 0)
        .expect("append marker");
    assert_eq!(info.base_offset, 2);
    let lso = |part: &Partition| part.log().lock().expect("lock").last_stable_offset();
    assert_eq!(lso(&p.leader), 0, "nothing replicated yet");
    p.round(1).await;
    assert_eq!(p.follower.log_end_offset(), 3);
    // The follower's next fetch moves the high watermark past the marker.
    p.round(2).await;
    assert_eq!(p.leader.high_watermark(), 3);
    assert_eq!(
        lso(&p.leader),
        3,
        "marker replicated: the transaction is stable"
    );
    let expected = vec![AbortedTxn {
        producer_id: 9,
        first_offset: 0,
        last_offset: 2,
        last_stable_offset: 3,
    }];
    for part in [&p.leader, &p.follower] {
        let log = part.log().lock().expect("lock");
        assert_eq!(log.aborted_transactions(), expected);
        let index = log.dir().join(format!("{:020}.txnindex", 0));
        assert_eq!(std::fs::metadata(&index).expect("txnindex").len(), 34);
    }
}

#[tokio::test]
async fn a_consumer_reads_only_below_the_high_watermark() {
    let p = pair();
    p.leader
        .append_records_to_leader(&simple(2, 1_000), 1, 1, 0)
        .expect("append");
    let consumer_view = |part: &Partition| {
        let log = part.log().lock().expect("lock");
        log.read_regions(0, usize::MAX, log.high_watermark(), true)
            .expect("read")
            .size
    };
    assert_eq!(
        consumer_view(&p.leader),
        0,
        "not replicated: invisible to consumers"
    );
    p.round(1).await;
    p.round(2).await;
    assert!(consumer_view(&p.leader) > 0);
}

#[tokio::test]
async fn a_follower_that_stops_fetching_leaves_the_isr_after_the_lag_time_and_rejoins() {
    let p = pair();
    p.leader
        .append_records_to_leader(&simple(1, 1_000), -1, 2, 1_000)
        .expect("append");
    p.round(1_000).await;
    p.round(1_000).await;
    assert_eq!(p.leader.high_watermark(), 1);

    // The follower goes silent while producers write on.
    let (info, _) = p
        .leader
        .append_records_to_leader(&simple(2, 2_000), -1, 2, 2_000)
        .expect("append");
    let leader = p.leader.clone();
    let acked = tokio::spawn(async move {
        leader
            .wait_for_acks_all(0, info.last_offset + 1, 2, far())
            .await
    });
    assert_eq!(
        p.leader.maybe_shrink_isr(1_000 + LAG),
        None,
        "within the lag time"
    );
    let shrink = p
        .leader
        .maybe_shrink_isr(1_000 + LAG + 1)
        .expect("the silent follower is dropped");
    assert_eq!(shrink.new_isr, vec![LEADER]);
    assert_eq!((shrink.leader_epoch, shrink.partition_epoch), (0, 0));
    assert_eq!(
        p.leader.high_watermark(),
        1,
        "while the shrink is in flight the HW still waits for the follower"
    );
    assert_eq!(
        p.leader.maybe_shrink_isr(1_000 + LAG + 2),
        None,
        "one change at a time"
    );

    // The controller commits the shrink: the HW moves on without the follower, and the
    // waiting acks=all (min.insync.replicas=2) fails after its append.
    p.leader
        .on_alter_partition_result(&shrink, Ok(state(LEADER, 0, 1, &[1])), 1_000 + LAG + 2);
    assert_eq!(p.leader.isr(), Some(vec![LEADER]));
    assert_eq!(p.leader.high_watermark(), 3);
    let outcome = tokio::time::timeout(Duration::from_secs(5), acked)
        .await
        .expect("answered")
        .expect("task");
    assert!(
        matches!(
            outcome,
            Err(ReplicaError::NotEnoughReplicasAfterAppend { .. })
        ),
        "{outcome:?}"
    );
    // A new acks=all write is refused before it is appended.
    let leo = p.leader.log_end_offset();
    let refused = p
        .leader
        .append_records_to_leader(&simple(1, 3_000), -1, 2, 40_000);
    assert!(
        matches!(refused, Err(ReplicaError::NotEnoughReplicas { .. })),
        "{refused:?}"
    );
    assert_eq!(p.leader.log_end_offset(), leo);

    // The follower comes back, catches up to the HW, and the leader proposes it back.
    p.round(40_000).await;
    let rejoin = {
        let leo = p.follower.log_end_offset();
        p.leader
            .fetch_for_follower(FOLLOWER, 7, leo, 0, 0, 1 << 20, true, 40_001)
            .expect("fetch")
            .alter_partition
            .expect("the caught-up follower is proposed back into the ISR")
    };
    assert_eq!(rejoin.new_isr, vec![LEADER, FOLLOWER]);
    assert_eq!(rejoin.partition_epoch, 1);
}

#[tokio::test]
async fn a_follower_with_a_divergent_tail_truncates_to_the_leaders_epoch_end_and_converges() {
    // Broker 1 leads epoch 0; offsets 0-2 reach broker 2, offsets 3-5 do not.
    let p = pair();
    p.leader
        .append_records_to_leader(&simple(3, 1_000), 1, 1, 0)
        .expect("append");
    p.round(1).await;
    p.round(2).await;
    let old_leader = p.leader.clone();
    let (tail, _) = old_leader
        .append_records_to_leader(&simple(3, 2_000), -1, 1, 3)
        .expect("append");
    assert_eq!(tail.last_offset, 5);
    let waiting = old_leader.clone();
    let acked = tokio::spawn(async move { waiting.wait_for_acks_all(0, 6, 1, far()).await });

    // Broker 2 becomes leader in epoch 1 and writes offsets 3-4 of its own.
    let new_leader = p.follower.clone();
    assert!(new_leader
        .become_leader(&state(FOLLOWER, 1, 1, &[2]), 10)
        .expect("become leader"));
    new_leader
        .append_records_to_leader(&simple(2, 9_000), 1, 1, 10)
        .expect("append");

    // Broker 1 learns it is a follower: its pending acks=all is never acknowledged.
    let new_state = state(FOLLOWER, 1, 1, &[2]);
    assert!(old_leader.become_follower(&new_state));
    let outcome = tokio::time::timeout(Duration::from_secs(5), acked)
        .await
        .expect("answered")
        .expect("task");
    assert!(
        matches!(outcome, Err(ReplicaError::NotLeaderOrFollower)),
        "{outcome:?}"
    );

    // Broker 1 follows broker 2: OffsetForLeaderEpoch(0) answers 3, so offsets 3-5 go.
    let connection = InProcessLeader::new(&new_leader);
    let fetcher = ReplicaFetcher::new(
        FOLLOWER,
        FetcherConfig::new(LEADER, 8),
        connection.clone() as Arc<dyn LeaderConnection>,
    );
    fetcher.add_partition(tp(), old_leader.clone(), Uuid::nil(), 1);
    connection.set_now(20);
    let round = fetcher.run_once(20).await;
    assert_eq!(round.truncated, vec![(tp(), 3)], "{round:?}");
    assert_eq!(fetcher.phase(&tp()), Some(FetchPhase::Fetching));
    connection.set_now(21);
    fetcher.run_once(21).await;
    assert_eq!(old_leader.log_end_offset(), 5);
    assert_eq!(
        log_bytes(&old_leader),
        log_bytes(&new_leader),
        "the tails converged"
    );
    assert_eq!(epochs(&old_leader), vec![(0, 0), (1, 3)]);
    assert_eq!(old_leader.high_watermark(), 5);
}

#[tokio::test]
async fn a_fetch_in_an_old_leader_epoch_is_fenced_and_stops_until_new_metadata() {
    let p = pair();
    // The leader moves to epoch 1 (say, after a controller election) without the follower
    // hearing of it.
    p.leader
        .become_leader(&state(LEADER, 1, 1, &[1, 2]), 5)
        .expect("become leader");
    let view = p.leader.follower_state(FOLLOWER).expect("view");
    assert_eq!(
        view.log_end_offset, UNKNOWN_OFFSET,
        "a new epoch resets the views"
    );
    p.round(10).await;
    assert_eq!(p.fetcher.phase(&tp()), Some(FetchPhase::Failed));
    assert_eq!(p.follower.log_end_offset(), 0);
    // New metadata re-adds it in epoch 1: it fetches again.
    p.follower.become_follower(&state(LEADER, 1, 1, &[1, 2]));
    p.fetcher
        .add_partition(tp(), p.follower.clone(), Uuid::nil(), 1);
    p.leader
        .append_records_to_leader(&simple(1, 1_000), 1, 1, 11)
        .expect("append");
    p.round(12).await;
    assert_eq!(p.follower.log_end_offset(), 1);
}

#[tokio::test]
async fn the_replica_manager_fetches_a_followed_partition_from_its_leader_until_it_leads_it() {
    use super::fetchers::FetcherManager;
    use super::ReplicaManager;

    let dirs = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let leader = open(dirs.0.path());
    let s = state(LEADER, 0, 0, &[1, 2]);
    leader.become_leader(&s, 0).expect("become leader");
    leader
        .append_records_to_leader(&simple(4, 1_000), 1, 1, 0)
        .expect("append");
    let connection = InProcessLeader::new(&leader);
    let manager = ReplicaManager::new(LAG);
    let connect = connection.clone();
    manager.set_fetcher_manager(Arc::new(FetcherManager::new(
        FetcherConfig::new(FOLLOWER, 7),
        Arc::new(move |id| (id == LEADER).then(|| connect.clone() as Arc<dyn LeaderConnection>)),
    )));
    let follower_log = PartitionLog::open(&dirs.1.path().join("t-0"), tp(), LogConfig::default())
        .expect("open log");
    let follower = manager
        .become_follower(&tp(), Uuid::nil(), &s, || {
            Some(Arc::new(Mutex::new(follower_log)))
        })
        .expect("become follower");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while leader.high_watermark() < 4 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the follower never caught up"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(log_bytes(&follower), log_bytes(&leader));

    // Leadership moves to this broker: it stops fetching and leads in the new epoch.
    let promoted = manager
        .become_leader(&tp(), &state(FOLLOWER, 1, 1, &[2]), || None, 10)
        .expect("become leader");
    assert!(promoted.is_leader());
    let (info, epoch) = promoted
        .append_records_to_leader(&simple(1, 2_000), -1, 1, 11)
        .expect("append as the new leader");
    assert_eq!((info.base_offset, epoch), (4, 1));
}
