//! The reconcile loop: a `kube::runtime::Controller` over KafkaCluster that owns the objects
//! of [`crate::desired`], applies them with server-side apply (field manager
//! `oxbow-operator`), and writes what it observed into the status.
//!
//! A pass: paused? → status only. Invalid spec? → `Ready=False` with the field named, nothing
//! applied. Otherwise apply every desired object, then observe the StatefulSet, the pods and
//! the brokers themselves (Metadata, DescribeQuorum); with `spec.rack`, copy each bound broker
//! pod's node label onto the pod ([`crate::rack`]); make the cluster-wide dynamic broker
//! defaults what the spec asks (IncrementalAlterConfigs, no restart); take one step of a
//! rolling restart when pods run an old configuration or are marked for a manual one
//! ([`crate::roll`] decides, this deletes at most one pod); when `spec.replicas` names another
//! set of brokers than the replicas are spread over, take one step of a rebalance
//! ([`crate::rebalance`] plans, this starts the next batch of reassignments), holding a
//! scale-down until the brokers that go host nothing; and write `Ready`, `Warning`s,
//! bootstrap addresses, cluster id, active controller, per-broker state and the progress of
//! the roll and the rebalance. Errors requeue with exponential backoff per cluster; a cluster that is not Ready
//! yet, or is rolling, is looked at again within seconds, since the brokers' own state (the
//! quorum forming, a restarted broker rejoining the ISRs) is not something the API server
//! tells us about.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::crd::{
    BrokerStatus, Condition, KafkaCluster, KafkaClusterStatus, RebalanceStatus,
    RollingUpdateStatus, MANUAL_ROLLING_UPDATE_ANNOTATION, PAUSE_ANNOTATION,
};
use crate::desired::{
    desired, Desired, BROKER_SERVICE_COMPONENT, CLUSTER_LABEL, COMPONENT_LABEL,
    CONFIG_HASH_ANNOTATION,
};
use crate::external::{self, Endpoint, ADVERTISED_LISTENERS_ANNOTATION};
use crate::probe::{config_changes, ClusterView, ConfigChange, Probe};
use crate::quorum::{self, VoterStep};
use crate::rack::{self, RackAnnotation, RACK_ANNOTATION};
use crate::rebalance;
use crate::reconcile::{key, kube_err, Backoff, KubeError};
use crate::roll::{self, PodObservation, RollDecision};

/// The field manager of every server-side apply, and the Events' reporting controller.
pub const FIELD_MANAGER: &str = "oxbow-operator";

/// How soon a cluster that is not Ready yet is looked at again.
const NOT_READY_REQUEUE: Duration = Duration::from_secs(5);
/// How often a Ready cluster's status is refreshed (controller moves, a broker gone).
const READY_REQUEUE: Duration = Duration::from_secs(60);
/// How soon a rolling cluster is looked at again: each step waits on the brokers (a pod ready,
/// a broker back in the ISRs), which no watch reports.
const ROLLING_REQUEUE: Duration = Duration::from_secs(2);
/// The longest wait after failed passes.
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a reconcile pass failed; the pass is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// The object lacks a namespace (a KafkaCluster always has one).
    #[error("KafkaCluster {0} has no namespace")]
    NoNamespace(String),
}

/// What every reconcile pass shares.
pub struct Context {
    client: Client,
    recorder: Recorder,
    /// Consecutive failed passes per `namespace/name`.
    backoff: Backoff,
    /// The roll in progress per `namespace/name` as the last pass left it. The status says the
    /// same, but the KafkaCluster a pass reads comes from the watch cache, which may not show
    /// the previous pass's status yet; the status is the fallback after an operator restart.
    rolls: Mutex<HashMap<String, RollingUpdateStatus>>,
    /// The brokers last balanced over and the rebalance in progress per cluster (as `rolls`,
    /// ahead of the watch cache's status).
    rebalances: Mutex<HashMap<String, Balance>>,
}

/// `status.balancedBrokers` and `status.rebalance`.
type Balance = (Option<Vec<i32>>, Option<RebalanceStatus>);

impl Context {
    /// A context for the operator instance `instance` (its pod name, for the Events).
    pub fn new(client: Client, instance: Option<String>) -> Context {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            backoff: Backoff::new(BACKOFF_MAX),
            rolls: Mutex::new(HashMap::new()),
            rebalances: Mutex::new(HashMap::new()),
        }
    }
}

/// Runs the controller until the process is signalled: KafkaClusters in `namespace`, or in
/// every namespace when `None`.
pub async fn run(client: Client, namespace: Option<String>, instance: Option<String>) {
    let (clusters, statefulsets, services, config_maps, budgets) = match &namespace {
        Some(ns) => (
            Api::<KafkaCluster>::namespaced(client.clone(), ns),
            Api::<StatefulSet>::namespaced(client.clone(), ns),
            Api::<Service>::namespaced(client.clone(), ns),
            Api::<ConfigMap>::namespaced(client.clone(), ns),
            Api::<PodDisruptionBudget>::namespaced(client.clone(), ns),
        ),
        None => (
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
            Api::all(client.clone()),
        ),
    };
    // Only our own objects are watched, not every Service and ConfigMap of the cluster.
    let ours = watcher::Config::default().labels("app.kubernetes.io/managed-by=oxbow-operator");
    // Broker pods belong to the StatefulSet, not to the KafkaCluster: they are mapped back by
    // their cluster label, so a pod turning ready (a roll's next step) or annotated for a
    // manual rolling update starts a pass at once.
    let pods = match &namespace {
        Some(ns) => Api::<Pod>::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let cluster_of = |pod: Pod| {
        let cluster = pod.labels().get(CLUSTER_LABEL).cloned();
        let ns = pod.namespace();
        cluster
            .map(|c| ObjectRef::<KafkaCluster>::new(&c).within(ns.as_deref().unwrap_or_default()))
    };
    let context = Arc::new(Context::new(client, instance));
    Controller::new(clusters, watcher::Config::default())
        .watches(pods, ours.clone(), cluster_of)
        .owns(statefulsets, ours.clone())
        .owns(services, ours.clone())
        .owns(config_maps, ours.clone())
        .owns(budgets, ours)
        .shutdown_on_signal()
        .run(
            |cluster, ctx| {
                let ns = cluster.namespace();
                crate::metrics::metered("KafkaCluster", ns, reconcile(cluster, ctx))
            },
            error_policy,
            context,
        )
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

/// Requeues a failed pass after 2 s, doubling per consecutive failure up to 5 minutes.
fn error_policy(cluster: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let wait = ctx.backoff.failed(&key(cluster.as_ref()));
    warn!(cluster = %key(cluster.as_ref()), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// One reconcile pass of `cluster`.
pub async fn reconcile(cluster: Arc<KafkaCluster>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = cluster
        .namespace()
        .ok_or_else(|| Error::NoNamespace(cluster.name_any()))?;
    let name = cluster.name_any();
    let api: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), &ns);
    let old = cluster.status.clone().unwrap_or_default();
    let mut status = KafkaClusterStatus {
        observed_generation: cluster.metadata.generation,
        ..old.clone()
    };

    if cluster
        .annotations()
        .get(PAUSE_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        let already = condition_is(&old, "ReconciliationPaused", "True");
        status
            .conditions
            .retain(|c| c.kind != "ReconciliationPaused");
        status.conditions.push(condition(
            &old,
            "ReconciliationPaused",
            "True",
            "ReconciliationPaused",
            &format!("{PAUSE_ANNOTATION}=true: nothing is applied until it is removed"),
        ));
        write_status(&api, &name, &status).await?;
        if !already {
            event(
                &ctx,
                &cluster,
                EventType::Normal,
                "ReconciliationPaused",
                "Pause",
                None,
            )
            .await;
        }
        ctx.backoff.succeeded(&key(cluster.as_ref()));
        return Ok(Action::await_change());
    }
    status
        .conditions
        .retain(|c| c.kind != "ReconciliationPaused");

    let mut desired = match desired(&cluster) {
        Ok(d) => d,
        Err(invalid) => {
            let message = invalid.to_string();
            let was = old.conditions.iter().any(|c| {
                c.reason.as_deref() == Some("InvalidSpec") && c.message.as_deref() == Some(&message)
            });
            status.conditions = vec![condition(&old, "Ready", "False", "InvalidSpec", &message)];
            write_status(&api, &name, &status).await?;
            if !was {
                event(
                    &ctx,
                    &cluster,
                    EventType::Warning,
                    "InvalidSpec",
                    "Validate",
                    Some(message),
                )
                .await;
            }
            // Only a new spec can fix it.
            return Ok(Action::await_change());
        }
    };

    let scale_down_held = hold_scale_down(&ctx.client, &ns, &name, &mut desired).await?;
    let changed = apply_all(&ctx.client, &ns, &desired).await?;
    if !changed.is_empty() {
        let note = changed.join(", ");
        info!(cluster = %key(cluster.as_ref()), applied = %note, "objects created or updated");
        event(
            &ctx,
            &cluster,
            EventType::Normal,
            "Applied",
            "Apply",
            Some(note),
        )
        .await;
    }

    let probe = Probe::new(&desired.broker_addresses);
    let mut observed = observe(&ctx.client, &ns, &name, &desired, &probe).await?;
    let mut pod_warnings = match &cluster.spec.rack {
        Some(r) => annotate_racks(&ctx, &cluster, &r.topology_key, &observed).await?,
        None => Vec::new(),
    };
    let mut listeners = desired.listeners.clone();
    if !desired.external_listeners.is_empty() {
        let (warnings, bootstrap) = annotate_external(&ctx, &cluster, &desired, &observed).await?;
        pod_warnings.extend(warnings);
        for l in &mut listeners {
            if let Some(addresses) = bootstrap.get(&l.name) {
                l.bootstrap_servers = addresses.clone();
            }
        }
    }

    if cluster
        .annotations()
        .get(MANUAL_ROLLING_UPDATE_ANNOTATION)
        .map(String::as_str)
        == Some("true")
    {
        let marked = mark_for_manual_roll(&ctx.client, &ns, &mut observed).await?;
        api.patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "annotations": { MANUAL_ROLLING_UPDATE_ANNOTATION: null } } }),
            ),
        )
        .await
        .map_err(kube_err(format!(
            "remove {MANUAL_ROLLING_UPDATE_ANNOTATION} from KafkaCluster/{name}"
        )))?;
        event(
            &ctx,
            &cluster,
            EventType::Normal,
            "ManualRollingUpdate",
            "Roll",
            Some(format!(
                "{MANUAL_ROLLING_UPDATE_ANNOTATION}=true: marked pods {}",
                marked.join(", ")
            )),
        )
        .await;
    }

    let mut dynamic_config_error = None;
    if observed.view.is_some() {
        match sync_dynamic_config(&probe, &desired).await {
            Ok(changes) if !changes.is_empty() => {
                let note = changes
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                info!(cluster = %key(cluster.as_ref()), changes = %note, "cluster-wide dynamic broker configs updated");
                event(
                    &ctx,
                    &cluster,
                    EventType::Normal,
                    "DynamicConfigUpdated",
                    "Configure",
                    Some(note),
                )
                .await;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(cluster = %key(cluster.as_ref()), error = %e, "cannot update the dynamic broker configs");
                dynamic_config_error = Some(e.to_string());
            }
        }
    }

    // By uid too: a KafkaCluster deleted and created again under its name starts afresh.
    let roll_key = format!(
        "{}/{}",
        key(cluster.as_ref()),
        cluster.uid().unwrap_or_default()
    );
    let previous_roll = ctx
        .rolls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&roll_key)
        .cloned()
        .or_else(|| old.rolling_update.clone());
    status.rolling_update =
        roll_step(&ctx, &cluster, &desired, &observed, &probe, previous_roll).await?;
    {
        let mut rolls = ctx.rolls.lock().unwrap_or_else(|p| p.into_inner());
        match &status.rolling_update {
            Some(r) => rolls.insert(roll_key.clone(), r.clone()),
            None => rolls.remove(&roll_key),
        };
    }

    status.quorum_change = if status.rolling_update.is_some() {
        // A pod of the roll is down or catching up: no voter changes meanwhile.
        old.quorum_change.clone()
    } else {
        voter_step(&ctx, &cluster, &desired, &observed, &probe).await
    };
    status.voters = observed
        .view
        .as_ref()
        .and_then(|v| v.quorum.as_ref())
        .map(quorum::QuorumView::voter_ids);

    let ready = observed.ready_reason(&desired);
    let (previous_balanced, previous_rebalance) = ctx
        .rebalances
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&roll_key)
        .cloned()
        .unwrap_or_else(|| (old.balanced_brokers.clone(), old.rebalance.clone()));
    let (rebalance, balanced) = rebalance_step(
        &ctx,
        &cluster,
        &probe,
        ready.is_ok(),
        status.rolling_update.is_some(),
        previous_balanced,
        previous_rebalance,
    )
    .await?;
    status.rebalance = rebalance;
    status.balanced_brokers = balanced;
    ctx.rebalances
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            roll_key,
            (status.balanced_brokers.clone(), status.rebalance.clone()),
        );
    status.listeners = listeners;
    status.ready_brokers = observed.ready_pods;
    status.brokers = observed.brokers.clone();
    if let Some(view) = &observed.view {
        status.cluster_id = view.cluster_id.clone().or(status.cluster_id);
        status.controller_id = view.controller_id;
    }
    let mut conditions = vec![match &ready {
        Ok(()) => condition(
            &old,
            "Ready",
            "True",
            "ClusterReady",
            &format!("{} brokers answer as one cluster", desired.brokers),
        ),
        Err((reason, message)) => condition(&old, "Ready", "False", reason, message),
    }];
    for w in &desired.warnings {
        conditions.push(condition(&old, "Warning", "True", &w.reason, &w.message));
    }
    if let Some(message) = &scale_down_held {
        conditions.push(condition(
            &old,
            "Warning",
            "True",
            "ScaleDownBlocked",
            message,
        ));
    }
    for (reason, message) in &pod_warnings {
        conditions.push(condition(&old, "Warning", "True", reason, message));
    }
    if let Some(e) = &dynamic_config_error {
        conditions.push(condition(
            &old,
            "Warning",
            "True",
            "DynamicConfigNotApplied",
            &format!("the cluster-wide dynamic broker configs could not be updated: {e}"),
        ));
    }
    status.conditions = conditions;
    write_status(&api, &name, &status).await?;
    if ready.is_ok() && !condition_is(&old, "Ready", "True") {
        event(
            &ctx,
            &cluster,
            EventType::Normal,
            "ClusterReady",
            "Observe",
            None,
        )
        .await;
    }
    ctx.backoff.succeeded(&key(cluster.as_ref()));
    Ok(Action::requeue(
        if status.rolling_update.is_some()
            || status.rebalance.is_some()
            || status.quorum_change.is_some()
        {
            ROLLING_REQUEUE
        } else if ready.is_ok() {
            READY_REQUEUE
        } else {
            NOT_READY_REQUEUE
        },
    ))
}

/// Makes the cluster-wide dynamic broker defaults equal to `desired.dynamic_config`; returns
/// the changes made (none when they already were).
async fn sync_dynamic_config(
    probe: &Probe,
    desired: &Desired,
) -> Result<Vec<ConfigChange>, crate::probe::Error> {
    let current = probe.dynamic_defaults().await?;
    let changes = config_changes(&current, &desired.dynamic_config);
    if !changes.is_empty() {
        probe.alter_dynamic_defaults(&changes).await?;
    }
    Ok(changes)
}

/// Holds a scale-down while the brokers that would go still host replicas or are voters of
/// the metadata quorum (or while that cannot be told): `desired` keeps running them until the
/// rebalance ([`rebalance_step`]) has moved every replica off and [`voter_step`] has removed
/// their votes (the active controller's last, so it moves before its pod goes). Returns a
/// message for a `ScaleDownBlocked` Warning when the scale-down cannot be done safely (a topic
/// with more replicas than the brokers left) or its safety cannot be told.
async fn hold_scale_down(
    client: &Client,
    ns: &str,
    name: &str,
    desired: &mut Desired,
) -> Result<Option<String>, Error> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let current = statefulsets
        .get_opt(name)
        .await
        .map_err(kube_err(format!("get StatefulSet/{name}")))?;
    let Some(current) = current else {
        return Ok(None);
    };
    let total = current.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let wanted = desired.brokers;
    if wanted >= total {
        return Ok(None);
    }
    // Ask every broker still running, those that would go included.
    let mut all = desired.clone();
    all.hold_brokers(total);
    let leaving: Vec<i32> = (wanted..total).collect();
    let probe = Probe::new(&all.broker_addresses);
    let voting = match probe.cluster().await {
        Ok(view) => view.quorum.map(|q| {
            q.voter_ids()
                .into_iter()
                .filter(|id| leaving.contains(id))
                .collect::<Vec<_>>()
        }),
        Err(_) => None,
    };
    if voting.as_ref().is_none_or(|v| !v.is_empty()) {
        // Not a Warning: the voter step is taking their votes away (status.quorumChange).
        desired.hold_brokers(total);
        return Ok(None);
    }
    let (hold, warning) = match probe.partitions().await {
        Err(e) => (
            true,
            Some(format!(
                "spec.replicas is {wanted} but brokers {leaving:?} keep running: their replicas \
                 cannot be checked ({e})"
            )),
        ),
        Ok(partitions) => {
            let hosted = partitions
                .iter()
                .any(|p| p.replicas.iter().any(|r| leaving.contains(r)));
            let too_wide = partitions
                .iter()
                .find(|p| p.replicas.len() > usize::try_from(wanted).unwrap_or(0));
            match too_wide {
                Some(p) => (
                    true,
                    Some(format!(
                        "spec.replicas is {wanted} but brokers {leaving:?} keep running: {} has {} \
                         replicas, more than the {wanted} brokers that would remain",
                        p.name,
                        p.replicas.len()
                    )),
                ),
                // Still hosting: the rebalance is moving them off; status.rebalance says so.
                None => (hosted, None),
            }
        }
    };
    if hold {
        desired.hold_brokers(total);
    }
    Ok(warning)
}

/// One step of the metadata quorum following `spec.controllers` ([`quorum::next_step`]
/// decides): at most one AddRaftVoter or RemoveRaftVoter per pass, answered once the active
/// controller has committed it. Returns the change made or awaited, `None` when the voters are
/// the first `controllers` brokers (or no broker described the quorum: nothing to go on).
async fn voter_step(
    ctx: &Context,
    cluster: &KafkaCluster,
    desired: &Desired,
    observed: &Observed,
    probe: &Probe,
) -> Option<String> {
    let view = observed.view.as_ref()?;
    let q = view.quorum.as_ref()?;
    let ready: std::collections::BTreeSet<i32> = observed
        .brokers
        .iter()
        .filter(|b| b.ready)
        .map(|b| b.id)
        .collect();
    let want = desired.controllers;
    let voters = q.voter_ids();
    let (action, id, result) = match quorum::next_step(want, q, &ready) {
        VoterStep::Settled => return None,
        VoterStep::Wait(why) => {
            return Some(format!(
                "voters {voters:?}, spec.controllers {want}: waiting: {why}"
            ))
        }
        VoterStep::Add(id) => {
            let (host, port) = desired.controller_address(id);
            let result = probe
                .add_voter(view.cluster_id.as_deref(), id, &host, port)
                .await;
            ("VoterAdded", id, result)
        }
        VoterStep::Remove(id) => {
            let result = probe.remove_voter(view.cluster_id.as_deref(), id).await;
            ("VoterRemoved", id, result)
        }
    };
    let verb = if action == "VoterAdded" {
        "add"
    } else {
        "remove"
    };
    match result {
        Ok(()) => {
            let note =
                format!("voters were {voters:?}: {verb}ed node {id} (spec.controllers {want})");
            info!(cluster = %key(cluster), %note, "metadata quorum changed");
            event(
                ctx,
                cluster,
                EventType::Normal,
                action,
                "Quorum",
                Some(note.clone()),
            )
            .await;
            Some(note)
        }
        Err(e) => {
            warn!(cluster = %key(cluster), node = id, error = %e, "voter change failed; retried next pass");
            Some(format!(
                "voters {voters:?}, spec.controllers {want}: could not {verb} node {id}: {e}"
            ))
        }
    }
}

/// How many partitions one AlterPartitionReassignments of a rebalance moves: the next batch
/// starts once they have all finished, so at most this many partitions copy data at a time.
const REBALANCE_BATCH: usize = 10;

/// One step of the rebalance onto the brokers `spec.replicas` asks for (node ids
/// `0..spec.replicas`): when they differ from the set the replicas were last spread over, the
/// planner ([`rebalance::plan`]) gives new replica lists, and the operator starts the next
/// batch of them once no reassignment is in progress, until the plan is empty; then it elects
/// the preferred leaders and records the set as balanced. Returns the rebalance still in
/// progress and the set now balanced. A cluster seen for the first time is taken as balanced
/// over its brokers (Kafka placed its topics). Nothing moves while the cluster is not Ready
/// or rolling.
async fn rebalance_step(
    ctx: &Context,
    cluster: &KafkaCluster,
    probe: &Probe,
    ready: bool,
    rolling: bool,
    balanced: Option<Vec<i32>>,
    previous: Option<RebalanceStatus>,
) -> Result<(Option<RebalanceStatus>, Option<Vec<i32>>), Error> {
    let target: Vec<i32> = (0..cluster.spec.replicas).collect();
    let Some(balanced) = balanced else {
        return Ok((None, ready.then_some(target)));
    };
    if balanced == target && previous.is_none() {
        return Ok((None, Some(balanced)));
    }
    let mut r = match previous.filter(|r| r.brokers == target) {
        Some(r) => r,
        None => {
            let note =
                format!("spreading the replicas over brokers {target:?} (were {balanced:?})");
            info!(cluster = %key(cluster), "rebalance started: {note}");
            event(
                ctx,
                cluster,
                EventType::Normal,
                "RebalanceStarted",
                "Rebalance",
                Some(note),
            )
            .await;
            RebalanceStatus {
                brokers: target.clone(),
                started_at: Timestamp::now().to_string(),
                ..RebalanceStatus::default()
            }
        }
    };
    if !ready || rolling {
        r.waiting = Some(
            if rolling {
                "a rolling update is in progress"
            } else {
                "the cluster is not Ready"
            }
            .into(),
        );
        return Ok((Some(r), Some(balanced)));
    }
    let in_progress = match probe.reassignments_in_progress().await {
        Ok(n) => n,
        Err(e) => {
            r.waiting = Some(format!("reassignments in progress cannot be listed: {e}"));
            return Ok((Some(r), Some(balanced)));
        }
    };
    if in_progress > 0 {
        r.waiting = Some(format!("{in_progress} partition reassignments in progress"));
        return Ok((Some(r), Some(balanced)));
    }
    let (current, racks) = match probe.assignment().await {
        Ok(a) => a,
        Err(e) => {
            r.waiting = Some(format!("the replica assignment cannot be read: {e}"));
            return Ok((Some(r), Some(balanced)));
        }
    };
    let brokers: Vec<rebalance::Broker> = target
        .iter()
        .map(|&id| rebalance::Broker {
            id,
            rack: racks.get(&id).cloned().flatten(),
        })
        .collect();
    let assignments: Vec<rebalance::Assignment> = current.iter().map(|(a, _)| a.clone()).collect();
    let moves = match rebalance::plan(&brokers, &assignments) {
        Ok(m) => m,
        Err(e) => {
            r.waiting = Some(e.to_string());
            return Ok((Some(r), Some(balanced)));
        }
    };
    if !moves.is_empty() {
        let batch = &moves[..moves.len().min(REBALANCE_BATCH)];
        r.partitions_left = i32::try_from(moves.len()).unwrap_or(i32::MAX);
        if let Err(e) = probe.reassign(batch).await {
            r.waiting = Some(format!("AlterPartitionReassignments failed: {e}"));
            return Ok((Some(r), Some(balanced)));
        }
        r.partitions_reassigned += i32::try_from(batch.len()).unwrap_or(i32::MAX);
        r.waiting = None;
        info!(cluster = %key(cluster), batch = batch.len(), left = moves.len() - batch.len(), "rebalance: reassignments started");
        return Ok((Some(r), Some(balanced)));
    }
    // Every partition has its planned replicas, preferred leader first: move the leaders.
    let not_preferred: Vec<(String, i32)> = current
        .iter()
        .filter(|(a, leader)| a.replicas.first() != Some(leader))
        .map(|(a, _)| (a.topic.clone(), a.partition))
        .collect();
    if !not_preferred.is_empty() {
        // A preferred replica not in the ISR yet keeps its partition's leader; that is not a
        // reason to hold the rebalance (Kafka's auto leader rebalance elects it later).
        if let Err(e) = probe.elect_preferred_leaders(&not_preferred).await {
            warn!(cluster = %key(cluster), error = %e, "rebalance: preferred leader election");
        }
    }
    let note = format!(
        "replicas spread over brokers {target:?}: {} partitions reassigned, {} preferred leaders elected",
        r.partitions_reassigned,
        not_preferred.len()
    );
    info!(cluster = %key(cluster), "rebalance done: {note}");
    event(
        ctx,
        cluster,
        EventType::Normal,
        "RebalanceDone",
        "Rebalance",
        Some(note),
    )
    .await;
    Ok((None, Some(target)))
}

/// Copies the label `topology_key` of each broker pod's node onto the pod as
/// [`RACK_ANNOTATION`], where the broker waits for it at start ([`crate::rack`] says why, and
/// [`rack::rack_annotation`] decides). Pods not bound to a node yet, or terminating, are left
/// alone; each node is read once per pass. Returns `Warning` conditions (reason, message) for
/// nodes without the label (their brokers keep waiting) and nodes that cannot be read.
/// With external listeners: writes each bound broker pod's `advertised.listeners`
/// ([`external::advertised_listeners`] from its node's address and its own Services' node
/// ports or load balancer addresses) as [`ADVERTISED_LISTENERS_ANNOTATION`], which its broker
/// waits for at start. Returns `ExternalAddressPending` Warnings for the brokers whose
/// addresses are not known yet, and each external listener's bootstrap addresses for the
/// status (the brokers' node addresses with the bootstrap Service's node port, or its load
/// balancer).
async fn annotate_external(
    ctx: &Context,
    cluster: &KafkaCluster,
    desired: &Desired,
    observed: &Observed,
) -> Result<(Vec<(String, String)>, BTreeMap<String, String>), Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), &ns);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let endpoint = |service: Option<Service>, kind: crate::crd::ListenerType, port: i32| {
        let node_port = service
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .and_then(|p| p.node_port);
        let ingress = service
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .and_then(|i| i.first())
            .and_then(|i| i.ip.clone().or_else(|| i.hostname.clone()));
        match kind {
            crate::crd::ListenerType::Loadbalancer => Endpoint::LoadBalancer(ingress, port),
            _ => Endpoint::NodePort(node_port),
        }
    };
    let mut node_addresses: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut pending = Vec::new();
    let mut annotated = Vec::new();
    for (pod, id) in observed.pods.iter().zip(0..) {
        let Some(node) = &pod.node else { continue };
        if !pod.observation.exists || pod.observation.terminating {
            continue;
        }
        if !node_addresses.contains_key(node) {
            let address = nodes
                .get_opt(node)
                .await
                .map_err(kube_err(format!("get Node/{node}")))?
                .and_then(|n| n.status)
                .and_then(|s| s.addresses)
                .map(|a| {
                    let pairs: Vec<(String, String)> =
                        a.into_iter().map(|a| (a.type_, a.address)).collect();
                    external::node_address(&pairs)
                })
                .unwrap_or_default();
            node_addresses.insert(node.clone(), address);
        }
        let mut endpoints = Vec::new();
        for (listener, kind, port) in &desired.external_listeners {
            let service_name = desired.external_service_name(id, listener);
            let service = services
                .get_opt(&service_name)
                .await
                .map_err(kube_err(format!("get Service/{service_name}")))?;
            endpoints.push((
                listener.to_ascii_uppercase(),
                endpoint(service, *kind, *port),
            ));
        }
        let node_address = node_addresses.get(node).cloned().flatten();
        let internal = desired.internal_advertised(id, &cluster.spec.listeners);
        match external::advertised_listeners(&internal, node_address.as_deref(), &endpoints) {
            Ok(value) if pod.advertised.as_deref() != Some(value.as_str()) => {
                pods.patch(
                    &pod.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({ "metadata": { "annotations": {
                        ADVERTISED_LISTENERS_ANNOTATION: value } } })),
                )
                .await
                .map_err(kube_err(format!(
                    "annotate Pod/{} {ADVERTISED_LISTENERS_ANNOTATION}",
                    pod.name
                )))?;
                annotated.push(format!("{}: {value}", pod.name));
            }
            Ok(_) => {}
            Err(why) => pending.push(format!("{} (node {node}): {why}", pod.name)),
        }
    }
    if !annotated.is_empty() {
        let note = annotated.join("; ");
        info!(cluster = %key(cluster), "external addresses: {note}");
        event(
            ctx,
            cluster,
            EventType::Normal,
            "ExternalAddressAssigned",
            "Listen",
            Some(note),
        )
        .await;
    }
    let warnings = if pending.is_empty() {
        Vec::new()
    } else {
        vec![(
            "ExternalAddressPending".to_string(),
            format!(
                "brokers wait at start for their external addresses: {}",
                pending.join("; ")
            ),
        )]
    };
    let mut bootstrap = BTreeMap::new();
    for (listener, kind, port) in &desired.external_listeners {
        let service_name = format!("{name}-{listener}-bootstrap");
        let service = services
            .get_opt(&service_name)
            .await
            .map_err(kube_err(format!("get Service/{service_name}")))?;
        let addresses = match endpoint(service, *kind, *port) {
            Endpoint::NodePort(Some(node_port)) => {
                let hosts: std::collections::BTreeSet<String> =
                    node_addresses.values().flatten().cloned().collect();
                hosts
                    .iter()
                    .map(|h| format!("{h}:{node_port}"))
                    .collect::<Vec<_>>()
                    .join(",")
            }
            Endpoint::LoadBalancer(Some(host), port) => format!("{host}:{port}"),
            _ => String::new(),
        };
        if !addresses.is_empty() {
            bootstrap.insert(listener.clone(), addresses);
        }
    }
    Ok((warnings, bootstrap))
}

async fn annotate_racks(
    ctx: &Context,
    cluster: &KafkaCluster,
    topology_key: &str,
    observed: &Observed,
) -> Result<Vec<(String, String)>, Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    // Sorted: the Warnings come out in the same order every pass.
    let mut labels: BTreeMap<String, Result<BTreeMap<String, String>, String>> = BTreeMap::new();
    let mut unlabelled: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut annotated = Vec::new();
    for pod in &observed.pods {
        let Some(node) = &pod.node else { continue };
        if !pod.observation.exists || pod.observation.terminating {
            continue;
        }
        if !labels.contains_key(node) {
            let read = nodes
                .get(node)
                .await
                .map(|n| n.metadata.labels.unwrap_or_default())
                .map_err(|e| e.to_string());
            labels.insert(node.clone(), read);
        }
        let node_labels = match labels.get(node) {
            Some(Ok(l)) => l,
            // Reported below, once per node.
            _ => continue,
        };
        match rack::rack_annotation(topology_key, node_labels, pod.rack.as_deref()) {
            RackAnnotation::Keep => {}
            RackAnnotation::NodeUnlabelled => {
                unlabelled
                    .entry(node.clone())
                    .or_default()
                    .push(pod.name.clone());
            }
            RackAnnotation::Set(value) => {
                pods.patch(
                    &pod.name,
                    &PatchParams::default(),
                    &Patch::Merge(
                        json!({ "metadata": { "annotations": { RACK_ANNOTATION: value } } }),
                    ),
                )
                .await
                .map_err(kube_err(format!(
                    "annotate Pod/{} {RACK_ANNOTATION}={value}",
                    pod.name
                )))?;
                annotated.push(format!("{} (node {node}): {value}", pod.name));
            }
        }
    }
    if !annotated.is_empty() {
        let note = format!(
            "{RACK_ANNOTATION} from {topology_key}: {}",
            annotated.join(", ")
        );
        info!(cluster = %key(cluster), "broker racks: {note}");
        event(
            ctx,
            cluster,
            EventType::Normal,
            "RackAssigned",
            "Rack",
            Some(note),
        )
        .await;
    }
    let mut warnings: Vec<(String, String)> = unlabelled
        .into_iter()
        .map(|(node, pods)| {
            (
                "RackLabelMissing".to_string(),
                format!(
                    "node {node} has no label {topology_key} (spec.rack.topologyKey), or an \
                     empty one: broker pods {} wait at start until it has one",
                    pods.join(", ")
                ),
            )
        })
        .collect();
    for (node, read) in labels {
        if let Err(e) = read {
            warnings.push((
                "RackUnknown".to_string(),
                format!(
                    "node {node} cannot be read for its label {topology_key} (the operator \
                     needs get on nodes): {e}"
                ),
            ));
        }
    }
    Ok(warnings)
}

/// Moves the KafkaCluster's manual rolling update onto each existing broker pod (a pod
/// annotation survives an operator restart and goes with the pod it marks); returns the pods
/// marked.
async fn mark_for_manual_roll(
    client: &Client,
    ns: &str,
    observed: &mut Observed,
) -> Result<Vec<String>, Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut marked = Vec::new();
    for p in observed.pods.iter_mut() {
        if !p.observation.exists || p.observation.terminating || p.observation.manual {
            continue;
        }
        pods.patch(
            &p.name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "metadata": { "annotations": { MANUAL_ROLLING_UPDATE_ANNOTATION: "true" } } }),
            ),
        )
        .await
        .map_err(kube_err(format!(
            "annotate Pod/{} {MANUAL_ROLLING_UPDATE_ANNOTATION}=true",
            p.name
        )))?;
        p.observation.manual = true;
        marked.push(p.name.clone());
    }
    Ok(marked)
}

/// One step of a rolling restart, given the roll as the previous pass left it: the roll's
/// status after it, `None` when no roll is under way. Deletes at most one pod, as [`roll::plan`] decides; a roll ends once no pod is stale
/// and the last restarted broker is ready and back in every ISR.
async fn roll_step(
    ctx: &Context,
    cluster: &KafkaCluster,
    desired: &Desired,
    observed: &Observed,
    probe: &Probe,
    previous: Option<RollingUpdateStatus>,
) -> Result<Option<RollingUpdateStatus>, Error> {
    let states: Vec<roll::BrokerState> = observed
        .pods
        .iter()
        .zip(&desired.nodes)
        .map(|(p, node)| roll::broker_state(node.id, &p.observation, &node.config_hash))
        .collect();
    let stale: Vec<(&BrokerPod, String)> = observed
        .pods
        .iter()
        .zip(&desired.nodes)
        .filter_map(|(p, node)| {
            roll::stale_reason(&p.observation, &node.config_hash).map(|why| (p, why))
        })
        .collect();
    if stale.is_empty() && previous.is_none() {
        return Ok(None);
    }
    let mut rolling = previous.clone().unwrap_or_else(|| RollingUpdateStatus {
        started_at: Timestamp::now().to_string(),
        ..RollingUpdateStatus::default()
    });
    rolling.pods_left = stale.iter().map(|(p, _)| p.name.clone()).collect();
    rolling.waiting = None;
    if previous.is_none() {
        let note = stale
            .iter()
            .map(|(p, why)| format!("{}: {why}", p.name))
            .collect::<Vec<_>>()
            .join("; ");
        info!(cluster = %key(cluster), pods = %note, "rolling update started");
        event(
            ctx,
            cluster,
            EventType::Normal,
            "RollingUpdateStarted",
            "Roll",
            Some(note),
        )
        .await;
    }
    let partitions = probe.partitions().await.map_err(|e| e.to_string());
    if stale.is_empty() {
        // Every pod runs the current configuration: the roll is over once the last restarted
        // broker is back.
        let unsettled = match &partitions {
            Ok(parts) => roll::unsettled(&states, parts),
            Err(e) => Some(format!("the partitions are unknown: {e}")),
        };
        if let Some(why) = unsettled {
            rolling.waiting = Some(why);
            return Ok(Some(rolling));
        }
        let took = rolling
            .started_at
            .parse::<Timestamp>()
            .ok()
            .map(|t| Timestamp::now().duration_since(t).as_secs_f64())
            .map(|s| format!(" in {s:.1} s"))
            .unwrap_or_default();
        let note = format!("restarted {}{took}", rolling.restarted.join(", "));
        info!(cluster = %key(cluster), "rolling update done: {note}");
        event(
            ctx,
            cluster,
            EventType::Normal,
            "RollingUpdateDone",
            "Roll",
            Some(note),
        )
        .await;
        return Ok(None);
    }
    if !observed.statefulset_current {
        // A pod deleted now could be recreated from the previous template.
        rolling.waiting =
            Some("the StatefulSet controller has not seen the latest spec yet".to_string());
        return Ok(Some(rolling));
    }
    let controller = observed.view.as_ref().and_then(|v| v.controller_id);
    let decision = roll::plan(
        &states,
        partitions.as_deref().map_err(String::as_str),
        controller,
    );
    match decision {
        RollDecision::Done => {}
        RollDecision::Wait(why) => {
            tracing::debug!(cluster = %key(cluster), waiting = %why, "rolling update waits");
            rolling.waiting = Some(why);
        }
        RollDecision::Restart(id) => {
            let Some((pod, why)) = stale
                .iter()
                .find(|(p, _)| desired.nodes.iter().any(|n| n.id == id && n.pod == p.name))
            else {
                rolling.waiting = Some(format!("broker {id} has no pod to restart"));
                return Ok(Some(rolling));
            };
            let ns = cluster.namespace().unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            // The uid precondition: never delete a replacement that appeared meanwhile.
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: pod.uid.clone(),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            pods.delete(&pod.name, &params)
                .await
                .map_err(kube_err(format!("delete Pod/{}", pod.name)))?;
            let role = if controller == Some(id) {
                ", the active controller"
            } else {
                ""
            };
            let note = format!("restarting pod {} (broker {id}{role}): {why}", pod.name);
            info!(cluster = %key(cluster), "{note}");
            event(
                ctx,
                cluster,
                EventType::Normal,
                "RollingRestart",
                "Roll",
                Some(note),
            )
            .await;
            rolling.restarted.push(pod.name.clone());
            rolling.pods_left.retain(|p| *p != pod.name);
        }
    }
    Ok(Some(rolling))
}

/// Server-side applies every desired object; returns `Kind/name` of those created or changed
/// (or deleted: the per-broker Services of brokers scaled away).
async fn apply_all(client: &Client, ns: &str, desired: &Desired) -> Result<Vec<String>, Error> {
    let mut changed = Vec::new();
    changed.extend(apply(client, ns, &desired.config_map).await?);
    changed.extend(apply(client, ns, &desired.headless_service).await?);
    for s in &desired.bootstrap_services {
        changed.extend(apply(client, ns, s).await?);
    }
    for s in &desired.broker_services {
        changed.extend(apply(client, ns, s).await?);
    }
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let name = desired
        .stateful_set
        .metadata
        .name
        .clone()
        .unwrap_or_default();
    let listed = services
        .list(&ListParams::default().labels(&format!(
            "{CLUSTER_LABEL}={name},{COMPONENT_LABEL}={BROKER_SERVICE_COMPONENT}"
        )))
        .await
        .map_err(kube_err(format!("list the broker Services of {name}")))?;
    for stale in listed
        .items
        .iter()
        .filter_map(|s| s.metadata.name.as_ref())
        .filter(|n| {
            !desired
                .broker_services
                .iter()
                .any(|s| s.metadata.name.as_ref() == Some(n))
        })
    {
        services
            .delete(stale, &DeleteParams::default())
            .await
            .map_err(kube_err(format!("delete Service/{stale}")))?;
        changed.push(format!("Service/{stale} (deleted)"));
    }
    changed.extend(apply(client, ns, &desired.stateful_set).await?);
    changed.extend(apply(client, ns, &desired.pod_disruption_budget).await?);
    Ok(changed)
}

/// Applies `object`; `Some("Kind/name")` when that created it or changed what we own of it.
async fn apply<K>(client: &Client, ns: &str, object: &K) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let label = format!("{}/{name}", K::kind(&()));
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let before = api
        .get_opt(&name)
        .await
        .map_err(kube_err(format!("get {label}")))?
        .and_then(|o| o.meta().resource_version.clone());
    // force: the operator owns these fields; another manager's edit of them is undone.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let after = api
        .patch(&name, &params, &Patch::Apply(object))
        .await
        .map_err(kube_err(format!("apply {label}")))?;
    Ok((before != after.meta().resource_version).then_some(label))
}

/// A broker's pod as listed.
struct BrokerPod {
    /// `<cluster>-<ordinal>`.
    name: String,
    /// The uid of the pod listed, if one is.
    uid: Option<String>,
    observation: PodObservation,
    /// The node it is bound to (`spec.nodeName`), once it is.
    node: Option<String>,
    /// Its [`RACK_ANNOTATION`], if it has one.
    rack: Option<String>,
    /// Its [`ADVERTISED_LISTENERS_ANNOTATION`], if it has one.
    advertised: Option<String>,
}

/// The cluster as observed in the API server and from the brokers.
struct Observed {
    /// The StatefulSet's `readyReplicas`.
    ready_pods: i32,
    /// Whether the StatefulSet controller has seen the latest spec.
    statefulset_current: bool,
    brokers: Vec<BrokerStatus>,
    /// The pod of each broker, by node id (ordinal).
    pods: Vec<BrokerPod>,
    /// What a broker answered, or why none did.
    view: Option<ClusterView>,
    view_error: Option<String>,
}

impl Observed {
    /// `Ok` when Ready, else the reason and message of `Ready=False`.
    fn ready_reason(&self, desired: &Desired) -> Result<(), (&'static str, String)> {
        if !self.statefulset_current {
            return Err((
                "StatefulSetUpdating",
                "the StatefulSet controller has not seen the latest spec yet".into(),
            ));
        }
        if self.ready_pods < desired.brokers {
            return Err((
                "PodsNotReady",
                format!(
                    "{} of {} broker pods ready",
                    self.ready_pods, desired.brokers
                ),
            ));
        }
        let Some(view) = &self.view else {
            return Err((
                "BrokersUnreachable",
                format!(
                    "no broker answered Metadata: {}",
                    self.view_error.as_deref().unwrap_or("unknown")
                ),
            ));
        };
        let expected: Vec<i32> = (0..desired.brokers).collect();
        if view.brokers != expected || view.cluster_id.is_none() || view.controller_id.is_none() {
            return Err((
                "ClusterNotFormed",
                format!(
                    "brokers answer with nodes {:?} (expected {expected:?}), cluster id {:?}, controller {:?}",
                    view.brokers, view.cluster_id, view.controller_id
                ),
            ));
        }
        Ok(())
    }
}

async fn observe(
    client: &Client,
    ns: &str,
    name: &str,
    desired: &Desired,
    probe: &Probe,
) -> Result<Observed, Error> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let (ready_pods, statefulset_current) = match statefulsets
        .get_opt(name)
        .await
        .map_err(kube_err(format!("get StatefulSet/{name}")))?
    {
        Some(s) => {
            let st = s.status.clone().unwrap_or_default();
            (
                st.ready_replicas.unwrap_or(0),
                st.observed_generation.is_some() && st.observed_generation >= s.metadata.generation,
            )
        }
        None => (0, false),
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let listed = pods
        .list(&ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}")))
        .await
        .map_err(kube_err(format!("list pods of {name}")))?;
    let (view, view_error) = match probe.cluster().await {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let pods: Vec<BrokerPod> = desired
        .nodes
        .iter()
        .map(|node| {
            let pod_name = node.pod.clone();
            let pod = listed
                .items
                .iter()
                .find(|p| p.metadata.name.as_deref() == Some(pod_name.as_str()));
            BrokerPod {
                name: pod_name,
                uid: pod.and_then(|p| p.metadata.uid.clone()),
                observation: pod.map(pod_observation).unwrap_or_default(),
                node: pod
                    .and_then(|p| p.spec.as_ref())
                    .and_then(|s| s.node_name.clone()),
                rack: pod
                    .and_then(|p| p.metadata.annotations.as_ref())
                    .and_then(|a| a.get(RACK_ANNOTATION).cloned()),
                advertised: pod
                    .and_then(|p| p.metadata.annotations.as_ref())
                    .and_then(|a| a.get(ADVERTISED_LISTENERS_ANNOTATION).cloned()),
            }
        })
        .collect();
    let voters = view
        .as_ref()
        .and_then(|v| v.quorum.as_ref())
        .map(quorum::QuorumView::voter_ids);
    let brokers = pods
        .iter()
        .zip(0..)
        .map(|(pod, id)| {
            let ready = pod.observation.ready && !pod.observation.terminating;
            BrokerStatus {
                id,
                pod: pod.name.clone(),
                ready,
                registered: view.as_ref().is_some_and(|v| v.brokers.contains(&id)),
                roles: "broker,controller".into(),
                voter: voters.as_ref().map(|v| v.contains(&id)),
            }
        })
        .collect();
    Ok(Observed {
        ready_pods,
        statefulset_current,
        brokers,
        pods,
        view,
        view_error,
    })
}

/// What the roll planner needs of a listed pod.
fn pod_observation(pod: &Pod) -> PodObservation {
    let annotation = |key: &str| {
        pod.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    PodObservation {
        exists: true,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        ready: pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")),
        config_hash: annotation(CONFIG_HASH_ANNOTATION),
        manual: annotation(MANUAL_ROLLING_UPDATE_ANNOTATION).as_deref() == Some("true"),
    }
}

/// Whether `status` has condition `kind` with `value`.
fn condition_is(status: &KafkaClusterStatus, kind: &str, value: &str) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.kind == kind && c.status == value)
}

/// A condition; its transition time is kept from `old` when the same condition (type and
/// reason) had the same status there.
fn condition(
    old: &KafkaClusterStatus,
    kind: &str,
    value: &str,
    reason: &str,
    message: &str,
) -> Condition {
    Condition::observed(&old.conditions, kind, value, reason, message)
}

async fn write_status(
    api: &Api<KafkaCluster>,
    name: &str,
    status: &KafkaClusterStatus,
) -> Result<(), Error> {
    api.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": status })),
    )
    .await
    .map_err(kube_err(format!("patch status of KafkaCluster/{name}")))?;
    Ok(())
}

/// Publishes an Event on `cluster`; a failure is logged, never fails the pass (Events are for
/// humans, best effort as in Kubernetes' own controllers).
async fn event(
    ctx: &Context,
    cluster: &KafkaCluster,
    type_: EventType,
    reason: &str,
    action: &str,
    note: Option<String>,
) {
    let ev = Event {
        type_,
        reason: reason.to_string(),
        note,
        action: action.to_string(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&ev, &cluster.object_ref(&())).await {
        warn!(cluster = %key(cluster), error = %e, reason, "could not publish an Event");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_condition_keeps_its_transition_time_and_a_changed_one_gets_a_new_one() {
        let old = KafkaClusterStatus {
            conditions: vec![Condition {
                kind: "Ready".into(),
                status: "False".into(),
                reason: Some("PodsNotReady".into()),
                message: Some("1 of 3".into()),
                last_transition_time: Some("2026-01-01T00:00:00Z".into()),
            }],
            ..KafkaClusterStatus::default()
        };
        let same = condition(&old, "Ready", "False", "PodsNotReady", "2 of 3");
        assert_eq!(
            same.last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(same.message.as_deref(), Some("2 of 3"));
        let flipped = condition(&old, "Ready", "True", "ClusterReady", "ok");
        assert_ne!(
            flipped.last_transition_time.as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }
}
