//! This node's place in the cluster: the route of its requests to the active controller,
//! and the broker's registration, heartbeats and controlled shutdown (Kafka's
//! `NodeToControllerChannelManager` and `BrokerLifecycleManager`).
//!
//! Every request a broker makes of the controller (topic administration on behalf of a
//! client, registration, heartbeats, ISR changes) goes through [`ControllerChannel::submit`]:
//! to this node's own [`Controller`] when it is the active controller, else forwarded to the
//! active controller over the control channel, retrying while there is none or it moves.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tracing::{info, warn};
use uuid::Uuid;

use crate::controller::brokers::{BrokerHeartbeat, HeartbeatReply};
use crate::controller::{Controller, ControllerError, ControllerReply, ControllerRequest};
use crate::metadata::{BoxFuture, BrokerEndpoint, MetadataStore};

/// The longest pause between two attempts of [`ControllerChannel::submit`] while the
/// active controller stays the same (or unknown).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Sends a controller request, as JSON, to the active controller `leader` (another node)
/// and answers its JSON reply: the control channel of the metadata quorum.
pub trait ControllerForwarder: Send + Sync {
    /// One request/reply exchange with node `leader`.
    fn forward(
        &self,
        leader: i32,
        request: serde_json::Value,
    ) -> BoxFuture<'_, Result<serde_json::Value, String>>;
}

/// The route from this node to the active controller.
pub struct ControllerChannel {
    node_id: i32,
    store: Arc<dyn MetadataStore>,
    /// This node's controller, if it is a voter.
    local: Option<Arc<Controller>>,
    /// How requests reach another node's controller; `None` on a single node.
    forwarder: Option<Arc<dyn ControllerForwarder>>,
    /// How long [`Self::submit`] keeps trying while no controller answers.
    timeout: Duration,
}

impl ControllerChannel {
    /// A channel for node `node_id`. `timeout` bounds each [`Self::submit`] (Kafka's
    /// `request.timeout.ms` for controller requests is 30 s).
    pub fn new(
        node_id: i32,
        store: Arc<dyn MetadataStore>,
        local: Option<Arc<Controller>>,
        forwarder: Option<Arc<dyn ControllerForwarder>>,
        timeout: Duration,
    ) -> Self {
        ControllerChannel {
            node_id,
            store,
            local,
            forwarder,
            timeout,
        }
    }

    /// Whether requests can reach other nodes' controllers (false on a single node).
    pub fn forwards(&self) -> bool {
        self.forwarder.is_some()
    }

    /// This node's controller, if it is a voter.
    pub fn local_controller(&self) -> Option<&Arc<Controller>> {
        self.local.as_ref()
    }

    /// Has the active controller decide and commit `request`, and answers its reply. While
    /// there is no active controller, or it changes under the request, tries again until the
    /// channel's timeout; then answers NOT_CONTROLLER, which clients retry. A retry goes out
    /// as soon as this node learns of another controller (an election during the request,
    /// e.g. after the controller was killed, is waited for rather than answered with an
    /// error that would make the client wait its backoff), else after a short pause. A
    /// refusal by the controller (any other error) is answered at once.
    pub async fn submit(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerReply, ControllerError> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            let asked = self.store.active_controller();
            let attempt = match asked {
                Some(id) if id == self.node_id => match &self.local {
                    Some(controller) => controller.handle(request.clone()).await,
                    None => Err(ControllerError::not_controller(None)),
                },
                Some(id) => self.forward(id, &request).await,
                None => Err(ControllerError::not_controller(None)),
            };
            match attempt {
                Err(e)
                    if e.is(ResponseError::NotController)
                        && tokio::time::Instant::now() < deadline => {}
                other => return other,
            }
            let _ = tokio::time::timeout(RETRY_PAUSE, self.store.active_controller_changed(asked))
                .await;
        }
    }

    async fn forward(
        &self,
        leader: i32,
        request: &ControllerRequest,
    ) -> Result<ControllerReply, ControllerError> {
        let Some(forwarder) = &self.forwarder else {
            return Err(ControllerError::not_controller(Some(leader)));
        };
        let body = serde_json::to_value(request).map_err(|e| {
            ControllerError::new(
                ResponseError::UnknownServerError,
                format!("cannot encode a controller request: {e}"),
            )
        })?;
        let reply = match forwarder.forward(leader, body).await {
            Ok(reply) => reply,
            // The node may have died or lost leadership: the caller retries.
            Err(e) => {
                let mut err = ControllerError::not_controller(None);
                err.message = Some(format!("cannot reach controller {leader}: {e}"));
                return Err(err);
            }
        };
        crate::controller::service::decode_response(reply)
    }
}

/// What this broker knows about its own registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LifecycleState {
    /// The broker epoch from the registration reply (-1 until registered).
    pub broker_epoch: i64,
    /// The last heartbeat reply said the broker is fenced.
    pub fenced: bool,
    /// The controller said the broker may exit (controlled shutdown finished).
    pub should_shut_down: bool,
}

/// The broker's registration and heartbeats.
pub struct BrokerLifecycle {
    node_id: i32,
    incarnation_id: Uuid,
    rack: Option<String>,
    endpoints: Vec<BrokerEndpoint>,
    heartbeat_interval: Duration,
    state: watch::Sender<LifecycleState>,
}

impl BrokerLifecycle {
    /// The lifecycle of node `node_id` advertising `endpoints`; a new incarnation id per
    /// process, so the controller tells a restart from a repeated registration.
    pub fn new(
        node_id: i32,
        rack: Option<String>,
        endpoints: Vec<BrokerEndpoint>,
        heartbeat_interval: Duration,
    ) -> Self {
        BrokerLifecycle {
            node_id,
            incarnation_id: Uuid::new_v4(),
            rack,
            endpoints,
            heartbeat_interval,
            state: watch::Sender::new(LifecycleState {
                broker_epoch: -1,
                fenced: true,
                should_shut_down: false,
            }),
        }
    }

    /// Records a registration made without the controller channel (a single node writing
    /// its own registration at start-up).
    pub fn set_registered(&self, broker_epoch: i64) {
        self.state.send_modify(|s| {
            s.broker_epoch = broker_epoch;
            s.fenced = false;
        });
    }

    /// This process's incarnation id.
    pub fn incarnation_id(&self) -> Uuid {
        self.incarnation_id
    }

    /// The current state.
    pub fn state(&self) -> LifecycleState {
        *self.state.borrow()
    }

    /// Changes of the state.
    pub fn subscribe(&self) -> watch::Receiver<LifecycleState> {
        self.state.subscribe()
    }

    /// Registers with the active controller, retrying until it answers (a broker is useless
    /// to the cluster unregistered). Answers the broker epoch.
    pub async fn register(&self, channel: &ControllerChannel, cluster_id: &str) -> i64 {
        loop {
            let request = ControllerRequest::RegisterBroker {
                id: self.node_id,
                cluster_id: cluster_id.to_string(),
                incarnation_id: self.incarnation_id,
                rack: self.rack.clone(),
                endpoints: self.endpoints.clone(),
            };
            match channel.submit(request).await {
                Ok(ControllerReply::Registered { broker_epoch }) => {
                    info!(broker_epoch, "registered with the controller");
                    self.state.send_modify(|s| s.broker_epoch = broker_epoch);
                    return broker_epoch;
                }
                Ok(other) => warn!(?other, "unexpected answer to a broker registration"),
                Err(e) => warn!(error = %e, "broker registration failed; retrying"),
            }
            tokio::time::sleep(self.heartbeat_interval).await;
        }
    }

    /// One heartbeat reporting `metadata_offset`; `want_shut_down` asks for a controlled
    /// shutdown. Updates [`Self::state`] from the reply.
    pub async fn heartbeat(
        &self,
        channel: &ControllerChannel,
        metadata_offset: i64,
        want_shut_down: bool,
    ) -> Result<HeartbeatReply, ControllerError> {
        let epoch = self.state().broker_epoch;
        let request = ControllerRequest::BrokerHeartbeat(BrokerHeartbeat {
            id: self.node_id,
            epoch,
            current_metadata_offset: metadata_offset,
            want_fence: false,
            want_shut_down,
        });
        match channel.submit(request).await? {
            ControllerReply::Heartbeat(reply) => {
                self.state.send_modify(|s| {
                    if s.fenced != reply.is_fenced {
                        info!(fenced = reply.is_fenced, "broker fencing changed");
                    }
                    s.fenced = reply.is_fenced;
                    s.should_shut_down = reply.should_shut_down;
                });
                Ok(reply)
            }
            other => Err(ControllerError::new(
                ResponseError::UnknownServerError,
                format!("unexpected answer to a heartbeat: {other:?}"),
            )),
        }
    }

    /// Heartbeats every `broker.heartbeat.interval.ms` until `shutdown`, re-registering when
    /// the controller no longer knows this incarnation (STALE_BROKER_EPOCH, or the broker was
    /// unregistered).
    pub async fn run(
        self: Arc<Self>,
        channel: Arc<ControllerChannel>,
        store: Arc<dyn MetadataStore>,
        cluster_id: String,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(self.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let offset = store.image().offset;
            match self.heartbeat(&channel, offset, false).await {
                Ok(_) => {}
                Err(e)
                    if e.is(ResponseError::StaleBrokerEpoch)
                        || e.is(ResponseError::BrokerIdNotRegistered) =>
                {
                    warn!(error = %e, "the controller does not know this broker; registering again");
                    self.register(&channel, &cluster_id).await;
                }
                Err(e) => warn!(error = %e, "broker heartbeat failed"),
            }
        }
    }

    /// Controlled shutdown (SIGTERM with `controlled.shutdown.enable`): heartbeats asking to
    /// shut down until the controller has moved this broker's leaderships away and says it
    /// may exit, or `timeout` passes (then the broker exits anyway, as Kafka's does after
    /// its retries).
    pub async fn controlled_shutdown(
        &self,
        channel: &ControllerChannel,
        store: &dyn MetadataStore,
        timeout: Duration,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.heartbeat(channel, store.image().offset, true).await {
                Ok(reply) if reply.should_shut_down => return true,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "controlled shutdown heartbeat failed"),
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
