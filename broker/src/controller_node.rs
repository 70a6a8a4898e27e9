//! A controller-only node (`process.roles=controller`): a voter of the metadata quorum and,
//! while it leads, the active controller, as Kafka's separated controllers are. It binds only
//! its CONTROLLER listener: no client listener, no partition logs, no registration, so it is
//! never in Metadata's or DescribeCluster's broker list and never placed a replica.
//!
//! Its controller runs the same timers as a combined node's (session fencing, unclean and
//! preferred elections) and answers the brokers' requests forwarded over the control channel.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::sync::watch;
use tracing::info;

use crate::config::BrokerConfig;
use crate::controller::service::ControllerTimers;
use crate::controller::{Controller, ControllerConfig};
use crate::metadata::quorum::QuorumStore;
use crate::metadata::MetadataStore;

/// A running controller-only node.
pub struct ControllerNode {
    config: BrokerConfig,
    controller: Arc<Controller>,
    quorum: Arc<QuorumStore>,
}

impl ControllerNode {
    /// Resolves, with the reason, when this voter's Raft core stopped on its own
    /// ([`crate::metadata::quorum::QuorumStore::halted`]).
    pub async fn halted(&self) -> String {
        self.quorum.halted().await
    }

    /// Joins the metadata quorum as a voter, waits (up to `server.max.startup.time.ms`)
    /// until the log names the cluster, pins node and cluster id in the first log dir's
    /// `meta.properties`, and installs the controller that answers forwarded requests.
    pub async fn start(config: BrokerConfig) -> anyhow::Result<ControllerNode> {
        let (quorum, cluster_id) = join_quorum(&config).await?;
        if let Some(dir) = config.log_dirs.first() {
            let (dir, node_id, id) = (dir.clone(), config.node_id, cluster_id.clone());
            tokio::task::spawn_blocking(move || {
                crate::log::ensure_meta_properties(&dir, node_id, &id)
            })
            .await
            .context("start-up panicked")?
            .context("cannot write meta.properties")?;
        }
        info!(%cluster_id, node_id = config.node_id, "controller-only node joined the metadata quorum");
        let store: Arc<dyn MetadataStore> = quorum.clone();
        let controller = Arc::new(Controller::new(
            config.node_id,
            store,
            ControllerConfig::from_broker(&config),
        ));
        serve_forwarded(&quorum, controller.clone());
        Ok(ControllerNode {
            config,
            controller,
            quorum,
        })
    }

    /// The quorum store (for tests and DescribeQuorum-like checks).
    pub fn quorum(&self) -> &Arc<QuorumStore> {
        &self.quorum
    }

    /// Runs the controller's timers until `shutdown` is set.
    pub async fn run(&self, shutdown: watch::Receiver<bool>) {
        let timers = ControllerTimers::from_broker(&self.config);
        self.controller.clone().run(timers, shutdown).await;
    }

    /// Leaves the quorum (its files stay for a restart).
    pub async fn shutdown(&self) {
        self.quorum.shutdown().await;
    }
}

/// Joins the metadata quorum as a voter and waits until its log names the cluster: peers may
/// not be reachable yet, nor even resolvable (a Kubernetes pod's DNS name appears once the pod
/// runs), so it keeps trying for `server.max.startup.time.ms`, unlimited by default, as
/// Kafka's broker waits for the metadata log. Answers the quorum member and the cluster id.
pub(crate) async fn join_quorum(
    config: &BrokerConfig,
) -> anyhow::Result<(Arc<QuorumStore>, String)> {
    let quorum = QuorumStore::start(config, None)
        .await
        .context("cannot start the metadata quorum")?;
    let cluster_id = quorum
        .wait_for_cluster_id(config.server_max_startup_time())
        .await
        .context("cannot join the metadata quorum within server.max.startup.time.ms")?;
    Ok((quorum, cluster_id))
}

/// Makes `controller` answer the controller requests other nodes forward to this voter.
pub(crate) fn serve_forwarded(quorum: &QuorumStore, controller: Arc<Controller>) {
    quorum.set_controller_handler(Arc::new(move |request| {
        let controller = controller.clone();
        Box::pin(async move { controller.handle_json(request).await })
    }));
}
