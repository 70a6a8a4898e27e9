//! The active-controller service: decides one request at a time on the latest committed
//! image, proposes the records, and answers once they are committed. It also runs the
//! controller's timers: fencing brokers whose session expired, unclean elections where
//! enabled, and the automatic preferred-leader rebalance.
//!
//! One decision at a time (a mutex held from decide to commit) means every decision sees
//! the effects of the previous one, as Kafka's single-threaded controller event queue does.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tracing::{info, warn};

use super::partitions::MAX_ELECTIONS_PER_IMBALANCE;
use super::{
    brokers, decide, partitions, ControllerConfig, ControllerError, ControllerReply,
    ControllerRequest, ControllerState, Result,
};
use crate::metadata::{MetadataRecord, MetadataStore, ProposeError};
use crate::time::now_ms as wall_clock_ms;

/// How often the controller's timers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControllerTimers {
    /// How often expired broker sessions are looked for. Kafka checks continuously; a
    /// fraction of `broker.heartbeat.interval.ms` keeps the detection delay small.
    pub fence_check_every: Duration,
    /// `unclean.leader.election.interval.ms`: how often leaderless partitions of topics
    /// that allow unclean election get one.
    pub unclean_election_every: Duration,
    /// `leader.imbalance.check.interval.seconds` when `auto.leader.rebalance.enable`, else
    /// `None`.
    pub rebalance_every: Option<Duration>,
    /// A broker not heard from for this long (it missed a heartbeat) has its advertised
    /// listeners probed; if every one refuses the connection its process is gone and it is
    /// fenced before `broker.session.timeout.ms` (see [`Controller::fence_gone_brokers_at`]).
    /// `None`: fenced only when the session times out, as Kafka does.
    pub probe_overdue_after: Option<Duration>,
}

impl ControllerTimers {
    /// The timers a broker's configuration asks for.
    pub fn from_broker(config: &crate::config::BrokerConfig) -> Self {
        ControllerTimers {
            fence_check_every: Duration::from_millis(
                (config.broker_heartbeat_interval_ms / 4).max(50) as u64,
            ),
            unclean_election_every: Duration::from_millis(
                config.unclean_leader_election_interval_ms.max(1) as u64,
            ),
            rebalance_every: config.auto_leader_rebalance_enable.then(|| {
                Duration::from_secs(config.leader_imbalance_check_interval_seconds.max(1) as u64)
            }),
            // One and a half heartbeat intervals: a live broker's heartbeats, even late on
            // a loaded machine, keep it from being probed at all.
            probe_overdue_after: Some(Duration::from_millis(
                (config.broker_heartbeat_interval_ms.max(1) as u64).saturating_mul(3) / 2,
            )),
        }
    }
}

struct Inner {
    state: ControllerState,
    /// Whether this node was the active controller at the last decision: when it becomes
    /// active again its soft state is stale and is rebuilt (every broker gets a full
    /// session), as a newly elected Kafka controller does.
    was_active: bool,
}

/// The controller service of one node. Cheap to share (`Arc`); every method may be called
/// from any task.
pub struct Controller {
    node_id: i32,
    store: Arc<dyn MetadataStore>,
    inner: tokio::sync::Mutex<Inner>,
}

impl Controller {
    /// The controller of node `node_id`, deciding with `config` and committing to `store`.
    pub fn new(node_id: i32, store: Arc<dyn MetadataStore>, config: ControllerConfig) -> Self {
        Controller {
            node_id,
            store,
            inner: tokio::sync::Mutex::new(Inner {
                state: ControllerState::new(config),
                was_active: false,
            }),
        }
    }

    /// Decides `request` on the latest image with the wall clock and commits the records:
    /// see [`Controller::handle_at`].
    pub async fn handle(&self, request: ControllerRequest) -> Result<ControllerReply> {
        self.handle_at(request, wall_clock_ms()).await
    }

    /// Decides `request` at time `now_ms` and answers once its records are committed (and
    /// in this node's image). NOT_CONTROLLER (with the active controller's id, when known)
    /// if this node is not the active controller or loses that role before the records
    /// commit; UNKNOWN_SERVER_ERROR with the store's message if the store fails; otherwise
    /// the decision's own refusal or reply.
    pub async fn handle_at(
        &self,
        request: ControllerRequest,
        now_ms: i64,
    ) -> Result<ControllerReply> {
        // Read-only and not about the image: answered without waiting for a decision in
        // progress (a large CreateTopics may hold the lock for seconds).
        if let ControllerRequest::DescribeQuorum = request {
            let active = self.store.active_controller();
            return match active {
                Some(id) if id == self.node_id => {
                    Ok(ControllerReply::Quorum(self.store.quorum_info()))
                }
                _ => Err(ControllerError::not_controller(active)),
            };
        }
        // Voter changes are the store's (Raft membership), not records decided on the image;
        // the store itself answers NOT_CONTROLLER off the leader and runs one at a time.
        if let ControllerRequest::ChangeVoters(change) = request {
            return match self.store.change_voters(change).await {
                Ok(()) => Ok(ControllerReply::Done),
                Err(e) if e.code == ResponseError::NotController.code() => Err(
                    ControllerError::not_controller(self.store.active_controller()),
                ),
                Err(e) => Err(ControllerError {
                    code: e.code,
                    message: Some(e.message),
                    active_controller: None,
                }),
            };
        }
        let mut inner = self.inner.lock().await;
        self.check_active(&mut inner)?;
        let image = self.store.image();
        let (records, reply) = decide(&mut inner.state, &image, &request, now_ms)?;
        if records.is_empty() {
            return Ok(reply);
        }
        let offset = self.propose(&mut inner, records).await?;
        inner.state.committed(&request, &reply, offset);
        Ok(reply)
    }

    /// [`Controller::handle`] for the control channel: `request` is a JSON
    /// [`ControllerRequest`], the answer a JSON `Result<ControllerReply, ControllerError>`
    /// (decode it with [`decode_response`]). `Err` only when `request` is not a controller
    /// request at all (the channel reports it to the sender as a protocol error).
    pub async fn handle_json(
        &self,
        request: serde_json::Value,
    ) -> std::result::Result<serde_json::Value, String> {
        let request: ControllerRequest = serde_json::from_value(request)
            .map_err(|e| format!("not a controller request: {e}"))?;
        let response = self.handle(request).await;
        serde_json::to_value(&response).map_err(|e| format!("cannot encode the reply: {e}"))
    }

    /// Fences brokers whose session expired by `now_ms`. Answers how many records were
    /// committed; NOT_CONTROLLER on a node that is not the active controller.
    pub async fn check_sessions(&self, now_ms: i64) -> Result<usize> {
        let mut inner = self.inner.lock().await;
        self.check_active(&mut inner)?;
        let image = self.store.image();
        let config = inner.state.config.clone();
        let records = brokers::fence_expired(&mut inner.state.heartbeats, &config, &image, now_ms);
        for record in &records {
            if let MetadataRecord::BrokerChange {
                id,
                fenced: Some(true),
                ..
            } = record
            {
                info!(broker = id, "fencing broker: its session timed out");
            }
        }
        let count = records.len();
        if count > 0 {
            self.propose(&mut inner, records).await?;
        }
        Ok(count)
    }

    /// Fences, before their session expires, brokers whose process is gone: unfenced
    /// brokers not heard from for `overdue` whose every advertised listener refuses a TCP
    /// connection (nothing listens there: a process killed or crashed, its socket closed by
    /// the kernel). Kafka waits out `broker.session.timeout.ms` here; fencing earlier is
    /// safe because it is only done on this proof: a broker that is alive but slow, paused
    /// (SIGSTOP), or cut off by the network still has a listening socket, so its connect
    /// succeeds or times out and it keeps its session until the timeout, as in Kafka; one
    /// that heartbeats between the probe and the decision is not fenced either. Fencing
    /// itself is what a session timeout commits (leaderships move to other ISR members
    /// with a new leader epoch), and a restarted broker unfences as usual. Probes run
    /// without holding the decision lock. Answers how many records were committed.
    pub async fn fence_gone_brokers_at(
        &self,
        overdue: Duration,
        now_ms: impl Fn() -> i64,
    ) -> Result<usize> {
        let overdue_ms = overdue.as_millis().min(i64::MAX as u128) as i64;
        let candidates = {
            let mut inner = self.inner.lock().await;
            self.check_active(&mut inner)?;
            let image = self.store.image();
            brokers::overdue(&mut inner.state.heartbeats, &image, now_ms(), overdue_ms)
        };
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut probes = tokio::task::JoinSet::new();
        for (id, endpoints) in candidates {
            probes.spawn(async move { (id, listeners_refuse(&endpoints).await) });
        }
        let mut gone = Vec::new();
        while let Some(probe) = probes.join_next().await {
            if let Ok((id, true)) = probe {
                gone.push(id);
            }
        }
        if gone.is_empty() {
            return Ok(0);
        }
        let mut inner = self.inner.lock().await;
        self.check_active(&mut inner)?;
        let image = self.store.image();
        let config = inner.state.config.clone();
        let records = brokers::fence_gone(
            &mut inner.state.heartbeats,
            &config,
            &image,
            &gone,
            now_ms(),
            overdue_ms,
        );
        for record in &records {
            if let MetadataRecord::BrokerChange {
                id,
                fenced: Some(true),
                ..
            } = record
            {
                info!(
                    broker = id,
                    "fencing broker: it missed a heartbeat and its listeners refuse connections"
                );
            }
        }
        let count = records.len();
        if count > 0 {
            self.propose(&mut inner, records).await?;
        }
        Ok(count)
    }

    /// Elects unclean leaders for leaderless partitions of topics where unclean leader
    /// election is enabled. Answers how many partitions changed.
    pub async fn elect_unclean_leaders(&self) -> Result<usize> {
        let mut inner = self.inner.lock().await;
        self.check_active(&mut inner)?;
        let image = self.store.image();
        let records = partitions::elect_unclean_leaders(
            &inner.state.config,
            &image,
            MAX_ELECTIONS_PER_IMBALANCE,
        );
        let count = records.len();
        if count > 0 {
            warn!(
                partitions = count,
                "unclean leader election for offline partitions"
            );
            self.propose(&mut inner, records).await?;
        }
        Ok(count)
    }

    /// Moves leadership back to preferred replicas where they are in sync and live (the
    /// automatic leader rebalance). Answers how many partitions changed.
    pub async fn rebalance_leaders(&self) -> Result<usize> {
        let mut inner = self.inner.lock().await;
        self.check_active(&mut inner)?;
        let image = self.store.image();
        let records = partitions::rebalance_leaders(&image, MAX_ELECTIONS_PER_IMBALANCE);
        let count = records.len();
        if count > 0 {
            info!(partitions = count, "electing preferred leaders");
            self.propose(&mut inner, records).await?;
        }
        Ok(count)
    }

    /// Runs the timers until `shutdown` is set. On a node that is not the active controller
    /// the timers do nothing (and the soft state is dropped, to be rebuilt on activation).
    pub async fn run(
        self: Arc<Self>,
        timers: ControllerTimers,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut fence = tokio::time::interval(timers.fence_check_every);
        fence.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let rebalance_every = timers.rebalance_every.unwrap_or(Duration::MAX);
        let mut next_rebalance = tokio::time::Instant::now().checked_add(rebalance_every);
        let mut unclean = tokio::time::interval(timers.unclean_election_every);
        unclean.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = fence.tick() => {
                    match self.check_sessions(wall_clock_ms()).await {
                        Ok(_) => {}
                        Err(e) if e.is(ResponseError::NotController) => {}
                        Err(e) => warn!(error = %e, "checking broker sessions failed"),
                    }
                    if let Some(overdue) = timers.probe_overdue_after {
                        match self.fence_gone_brokers_at(overdue, wall_clock_ms).await {
                            Ok(_) => {}
                            Err(e) if e.is(ResponseError::NotController) => {}
                            Err(e) => warn!(error = %e, "probing overdue brokers failed"),
                        }
                    }
                }
                _ = unclean.tick() => {
                    match self.elect_unclean_leaders().await {
                        Ok(_) => {}
                        Err(e) if e.is(ResponseError::NotController) => {}
                        Err(e) => warn!(error = %e, "unclean leader election failed"),
                    }
                }
                _ = sleep_until_some(next_rebalance) => {
                    match self.rebalance_leaders().await {
                        Ok(_) => {}
                        Err(e) if e.is(ResponseError::NotController) => {}
                        Err(e) => warn!(error = %e, "leader rebalance failed"),
                    }
                    next_rebalance = tokio::time::Instant::now().checked_add(rebalance_every);
                }
                _ = stopped(&mut shutdown) => break,
            }
        }
    }

    fn check_active(&self, inner: &mut Inner) -> Result<()> {
        let active = self.store.active_controller();
        if active == Some(self.node_id) {
            if !inner.was_active {
                inner.state.heartbeats = Default::default();
                inner.was_active = true;
            }
            Ok(())
        } else {
            inner.was_active = false;
            Err(ControllerError::not_controller(active))
        }
    }

    async fn propose(&self, inner: &mut Inner, records: Vec<MetadataRecord>) -> Result<i64> {
        match self.store.propose(records).await {
            Ok(offset) => Ok(offset),
            Err(ProposeError::NotController { leader }) => {
                inner.was_active = false;
                Err(ControllerError::not_controller(leader))
            }
            Err(ProposeError::Store(e)) => Err(ControllerError::new(
                ResponseError::UnknownServerError,
                e.to_string(),
            )),
        }
    }
}

/// Decodes what [`Controller::handle_json`] answered: the reply, or the controller's
/// refusal (NOT_CONTROLLER carries the active controller's id). A body that is not such an
/// answer (a peer running other code) is UNKNOWN_SERVER_ERROR.
pub fn decode_response(response: serde_json::Value) -> Result<ControllerReply> {
    serde_json::from_value::<Result<ControllerReply>>(response).unwrap_or_else(|e| {
        Err(ControllerError::new(
            ResponseError::UnknownServerError,
            format!("unreadable controller response: {e}"),
        ))
    })
}

/// How long one liveness probe waits for a connection: a refusal on a reachable host comes
/// back at once; anything slower is not a refusal.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether every one of a broker's advertised `endpoints` refuses a TCP connection
/// (ECONNREFUSED: the host answered that nothing listens on that port). A connection that
/// opens, times out, or fails any other way (unresolvable name, unreachable host) is no
/// proof that the process is gone.
async fn listeners_refuse(endpoints: &[crate::metadata::BrokerEndpoint]) -> bool {
    if endpoints.is_empty() {
        return false;
    }
    for endpoint in endpoints {
        let connect = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port));
        match tokio::time::timeout(PROBE_CONNECT_TIMEOUT, connect).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            _ => return false,
        }
    }
    true
}

/// Resolves once the shutdown flag is set; the watch's guard is dropped before the select
/// awaits anything else, so the run loop stays `Send`.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{BrokerHeartbeat, NewTopic};
    use crate::metadata::{BoxFuture, LocalMetadataStore, MetadataImage, QuorumInfo};
    use uuid::Uuid;

    fn local(dir: &std::path::Path) -> Arc<dyn MetadataStore> {
        Arc::new(LocalMetadataStore::open(dir, 0, Some("c1")).unwrap())
    }

    fn register(id: i32) -> ControllerRequest {
        register_with(id, vec![])
    }

    fn register_with(
        id: i32,
        endpoints: Vec<crate::metadata::BrokerEndpoint>,
    ) -> ControllerRequest {
        ControllerRequest::RegisterBroker {
            id,
            cluster_id: "c1".into(),
            incarnation_id: Uuid::from_u128(id as u128 + 1),
            rack: None,
            endpoints,
        }
    }

    async fn join(
        controller: &Controller,
        store: &Arc<dyn MetadataStore>,
        id: i32,
        now: i64,
    ) -> i64 {
        join_with(controller, store, register(id), now).await
    }

    /// Registers broker `id` advertising `PLAINTEXT://127.0.0.1:port` and unfences it.
    async fn join_at_port(
        controller: &Controller,
        store: &Arc<dyn MetadataStore>,
        id: i32,
        port: u16,
        now: i64,
    ) -> i64 {
        let endpoint = crate::metadata::BrokerEndpoint {
            listener: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port,
            security_protocol: "PLAINTEXT".into(),
        };
        join_with(controller, store, register_with(id, vec![endpoint]), now).await
    }

    /// Creates topic "t" with one partition on `replicas` (the first is the preferred leader).
    async fn create_topic_t(controller: &Controller, replicas: Vec<i32>) {
        controller
            .handle(ControllerRequest::CreateTopic {
                topic: NewTopic {
                    name: "t".into(),
                    assignments: [(0, replicas)].into(),
                    ..NewTopic::default()
                },
                validate_only: false,
            })
            .await
            .unwrap();
    }

    async fn join_with(
        controller: &Controller,
        store: &Arc<dyn MetadataStore>,
        registration: ControllerRequest,
        now: i64,
    ) -> i64 {
        let ControllerRequest::RegisterBroker { id, .. } = registration else {
            panic!("not a registration: {registration:?}");
        };
        let epoch = match controller.handle_at(registration, now).await.unwrap() {
            ControllerReply::Registered { broker_epoch } => broker_epoch,
            other => panic!("{other:?}"),
        };
        let reply = controller
            .handle_at(
                ControllerRequest::BrokerHeartbeat(BrokerHeartbeat {
                    id,
                    epoch,
                    current_metadata_offset: store.image().offset,
                    want_fence: false,
                    want_shut_down: false,
                }),
                now,
            )
            .await
            .unwrap();
        assert!(matches!(reply, ControllerReply::Heartbeat(h) if !h.is_fenced));
        epoch
    }

    #[tokio::test]
    async fn brokers_join_topics_are_placed_and_a_silent_broker_is_fenced() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        let controller = Controller::new(0, store.clone(), ControllerConfig::default());
        for id in [0, 1, 2] {
            join(&controller, &store, id, 0).await;
        }
        assert!(store.image().brokers.values().all(|b| !b.fenced));
        let reply = controller
            .handle_at(
                ControllerRequest::CreateTopic {
                    topic: NewTopic {
                        name: "t".into(),
                        num_partitions: 3,
                        replication_factor: 3,
                        ..NewTopic::default()
                    },
                    validate_only: false,
                },
                1,
            )
            .await
            .unwrap();
        assert!(matches!(reply, ControllerReply::TopicCreated(_)));
        let image = store.image();
        let leaders: Vec<i32> = image
            .topic("t")
            .unwrap()
            .partitions
            .iter()
            .map(|p| p.leader)
            .collect();
        let mut sorted = leaders.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, vec![0, 1, 2]);
        // Nobody heartbeats; broker sessions (9 s) expire together at 9001 ms.
        assert_eq!(controller.check_sessions(5000).await.unwrap(), 0);
        assert!(controller.check_sessions(9001).await.unwrap() > 0);
        let image = store.image();
        assert!(image.brokers.values().all(|b| b.fenced));
        // The last ISR member of each partition stays in its ISR, without a leader.
        for p in &image.topic("t").unwrap().partitions {
            assert_eq!((p.leader, p.isr.len()), (-1, 1));
        }
    }

    #[tokio::test]
    async fn validate_only_and_refusals_commit_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        let controller = Controller::new(0, store.clone(), ControllerConfig::default());
        join(&controller, &store, 0, 0).await;
        let before = store.image().offset;
        let create = |rf, validate_only| ControllerRequest::CreateTopic {
            topic: NewTopic {
                name: "t".into(),
                num_partitions: 1,
                replication_factor: rf,
                ..NewTopic::default()
            },
            validate_only,
        };
        controller.handle_at(create(1, true), 1).await.unwrap();
        let err = controller.handle_at(create(3, false), 1).await.unwrap_err();
        assert!(err.is(ResponseError::InvalidReplicationFactor));
        assert_eq!(store.image().offset, before);
        assert!(store.image().topic("t").is_none());
    }

    #[tokio::test]
    async fn the_run_loop_fences_a_silent_broker_and_keeps_a_heartbeating_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        let config = ControllerConfig {
            broker_session_timeout_ms: 400,
            ..ControllerConfig::default()
        };
        let controller = Arc::new(Controller::new(0, store.clone(), config));
        let now = wall_clock_ms();
        join(&controller, &store, 0, now).await;
        let epoch1 = join(&controller, &store, 1, now).await;
        create_topic_t(&controller, vec![0, 1]).await;
        assert_eq!(store.image().topic("t").unwrap().partitions[0].leader, 0);
        let (stop, stopped) = watch::channel(false);
        let timers = ControllerTimers {
            fence_check_every: Duration::from_millis(20),
            unclean_election_every: Duration::from_secs(300),
            rebalance_every: None,
            probe_overdue_after: None,
        };
        let runner = tokio::spawn(controller.clone().run(timers, stopped));
        // Broker 1 heartbeats every 50 ms; broker 0 is silent and must be fenced, its
        // leadership moving to broker 1, within a few session timeouts.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            controller
                .handle(ControllerRequest::BrokerHeartbeat(BrokerHeartbeat {
                    id: 1,
                    epoch: epoch1,
                    current_metadata_offset: store.image().offset,
                    want_fence: false,
                    want_shut_down: false,
                }))
                .await
                .unwrap();
            if store.image().brokers[&0].fenced {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "broker 0 was never fenced"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let image = store.image();
        assert!(!image.brokers[&1].fenced);
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
        stop.send_replace(true);
        runner.await.unwrap();
    }

    /// A broker whose process is gone (nothing listens on its advertised port any more) is
    /// fenced as soon as it misses a heartbeat, long before its 60 s session expires, and
    /// its leadership moves; a silent broker whose listener still accepts connections
    /// (paused, or only its connection to the controller lost) keeps its session.
    #[tokio::test]
    async fn a_broker_whose_listener_refuses_connections_is_fenced_before_its_session_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        let config = ControllerConfig {
            broker_session_timeout_ms: 60_000,
            ..ControllerConfig::default()
        };
        let controller = Arc::new(Controller::new(0, store.clone(), config));
        // Broker 1 listens but never accepts nor heartbeats; broker 2's port is closed.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let now = wall_clock_ms();
        join_at_port(
            &controller,
            &store,
            1,
            silent.local_addr().unwrap().port(),
            now,
        )
        .await;
        join_at_port(&controller, &store, 2, closed_port, now).await;
        create_topic_t(&controller, vec![2, 1]).await;
        assert_eq!(store.image().topic("t").unwrap().partitions[0].leader, 2);
        let (stop, stopped) = watch::channel(false);
        let timers = ControllerTimers {
            fence_check_every: Duration::from_millis(20),
            unclean_election_every: Duration::from_secs(300),
            rebalance_every: None,
            probe_overdue_after: Some(Duration::from_millis(200)),
        };
        let runner = tokio::spawn(controller.clone().run(timers, stopped));
        let mut images = store.subscribe();
        let fenced = tokio::time::timeout(
            Duration::from_secs(10),
            images.wait_for(|i| i.brokers.get(&2).is_some_and(|b| b.fenced)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        assert!(fenced, "broker 2 was not fenced within 10 s");
        // Broker 1 was probed in the same round (as overdue as broker 2) and stays: its
        // listener accepts.
        let image = store.image();
        assert!(!image.brokers[&1].fenced);
        let p = &image.topic("t").unwrap().partitions[0];
        assert_eq!((p.leader, p.isr.clone()), (1, vec![1]));
        stop.send_replace(true);
        runner.await.unwrap();
    }

    #[test]
    fn the_rebalance_timer_follows_kafkas_settings() {
        let config = |overrides: &[(&str, &str)]| {
            let overrides: Vec<(String, String)> = overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            crate::config::BrokerConfig::default_single_node(&overrides)
                .unwrap()
                .0
        };
        // auto.leader.rebalance.enable=true, leader.imbalance.check.interval.seconds=300.
        assert_eq!(
            ControllerTimers::from_broker(&config(&[])).rebalance_every,
            Some(Duration::from_secs(300))
        );
        assert_eq!(
            ControllerTimers::from_broker(&config(&[(
                "leader.imbalance.check.interval.seconds",
                "7"
            )]))
            .rebalance_every,
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            ControllerTimers::from_broker(&config(&[("auto.leader.rebalance.enable", "false")]))
                .rebalance_every,
            None
        );
    }

    #[tokio::test]
    async fn the_run_loop_moves_leadership_to_preferred_replicas_on_the_imbalance_timer() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        let controller = Arc::new(Controller::new(
            0,
            store.clone(),
            ControllerConfig::default(),
        ));
        let now = wall_clock_ms();
        join(&controller, &store, 0, now).await;
        join(&controller, &store, 1, now).await;
        create_topic_t(&controller, vec![0, 1]).await;
        // Reordering the in-sync replicas completes at once and keeps the leader: broker 1
        // is now preferred but does not lead.
        controller
            .handle(ControllerRequest::AlterPartitionReassignments {
                targets: vec![crate::controller::ReassignmentTarget {
                    topic: "t".into(),
                    partition: 0,
                    replicas: Some(vec![1, 0]),
                }],
            })
            .await
            .unwrap();
        let p = store.image().topic("t").unwrap().partitions[0].clone();
        assert_eq!((p.replicas, p.leader), (vec![1, 0], 0));
        let (stop, stopped) = watch::channel(false);
        let timers = ControllerTimers {
            // No fencing during the test: nobody heartbeats.
            fence_check_every: Duration::from_secs(3600),
            unclean_election_every: Duration::from_secs(3600),
            rebalance_every: Some(Duration::from_millis(50)),
            probe_overdue_after: None,
        };
        let runner = tokio::spawn(controller.clone().run(timers, stopped));
        let mut images = store.subscribe();
        let moved = tokio::time::timeout(
            Duration::from_secs(10),
            images.wait_for(|i| i.topic("t").is_some_and(|t| t.partitions[0].leader == 1)),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        assert!(moved, "the rebalance timer never elected broker 1");
        stop.send_replace(true);
        runner.await.unwrap();
    }

    #[tokio::test]
    async fn json_requests_get_json_replies_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store = local(dir.path());
        let controller = Controller::new(0, store.clone(), ControllerConfig::default());
        let request = serde_json::to_value(register(0)).unwrap();
        let reply = decode_response(controller.handle_json(request).await.unwrap());
        assert!(matches!(reply, Ok(ControllerReply::Registered { .. })));
        let request = serde_json::to_value(ControllerRequest::DeleteTopic { name: "x".into() });
        let refusal = decode_response(controller.handle_json(request.unwrap()).await.unwrap());
        assert!(refusal
            .unwrap_err()
            .is(ResponseError::UnknownTopicOrPartition));
        assert!(controller
            .handle_json(serde_json::json!({"NoSuchRequest": 1}))
            .await
            .is_err());
        let garbage = decode_response(serde_json::json!([1, 2]));
        assert!(garbage.unwrap_err().is(ResponseError::UnknownServerError));
    }

    /// A store that lost leadership to node 2: what a follower voter answers.
    struct Follower(watch::Sender<Arc<MetadataImage>>);

    impl MetadataStore for Follower {
        fn image(&self) -> Arc<MetadataImage> {
            self.0.borrow().clone()
        }
        fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
            self.0.subscribe()
        }
        fn propose(&self, _: Vec<MetadataRecord>) -> BoxFuture<'_, Result<i64, ProposeError>> {
            Box::pin(async { Err(ProposeError::NotController { leader: Some(2) }) })
        }
        fn active_controller(&self) -> Option<i32> {
            Some(2)
        }
        fn quorum_info(&self) -> QuorumInfo {
            QuorumInfo::default()
        }
    }

    #[tokio::test]
    async fn not_controller_names_the_active_controller() {
        let (tx, _) = watch::channel(Arc::new(MetadataImage::new("c1".into())));
        let controller = Controller::new(0, Arc::new(Follower(tx)), ControllerConfig::default());
        let err = controller.handle_at(register(0), 0).await.unwrap_err();
        assert!(err.is(ResponseError::NotController));
        assert_eq!(err.active_controller, Some(2));
        // Round trip through the control channel's JSON.
        let json = serde_json::to_value(&err).unwrap();
        let back: ControllerError = serde_json::from_value(json).unwrap();
        assert_eq!(back, err);
    }
}
