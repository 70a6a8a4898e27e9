//! The reconcile loop: a `kube::runtime::Controller` over KafkaCluster that owns the objects
//! of [`crate::desired`], applies them with server-side apply (field manager
//! `oxbow-operator`), and writes what it observed into the status.
//!
//! A pass: paused? → status only. Invalid spec? → `Ready=False` with the field named, nothing
//! applied. Otherwise apply every desired object, then observe the StatefulSet, the pods and
//! the brokers themselves (Metadata) and write `Ready`, `Warning`s, bootstrap addresses,
//! cluster id, active controller and per-broker state. Errors requeue with exponential backoff
//! per cluster; a cluster that is not Ready yet is looked at again within seconds, since the
//! brokers' own state (the quorum forming) is not something the API server tells us about.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use tracing::{info, warn};

use crate::crd::{BrokerStatus, Condition, KafkaCluster, KafkaClusterStatus, PAUSE_ANNOTATION};
use crate::desired::{desired, Desired, CLUSTER_LABEL};
use crate::probe::{describe_cluster, ClusterView};

/// The field manager of every server-side apply, and the Events' reporting controller.
pub const FIELD_MANAGER: &str = "oxbow-operator";

/// How soon a cluster that is not Ready yet is looked at again.
const NOT_READY_REQUEUE: Duration = Duration::from_secs(5);
/// How often a Ready cluster's status is refreshed (controller moves, a broker gone).
const READY_REQUEUE: Duration = Duration::from_secs(60);
/// First and longest wait after a failed pass.
const BACKOFF_MIN: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// Why a reconcile pass failed; the pass is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing.
        action: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The object lacks a namespace (a KafkaCluster always has one).
    #[error("KafkaCluster {0} has no namespace")]
    NoNamespace(String),
}

fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let action = action.into();
    move |source| Error::Kube { action, source }
}

/// What every reconcile pass shares.
pub struct Context {
    client: Client,
    recorder: Recorder,
    /// Consecutive failed passes per `namespace/name`, for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

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
            failures: Mutex::new(HashMap::new()),
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
    let context = Arc::new(Context::new(client, instance));
    Controller::new(clusters, watcher::Config::default())
        .owns(statefulsets, ours.clone())
        .owns(services, ours.clone())
        .owns(config_maps, ours.clone())
        .owns(budgets, ours)
        .shutdown_on_signal()
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(cluster = %object, "reconciled"),
                Err(e) => warn!(error = %e, "reconcile failed"),
            }
        })
        .await;
}

fn key(cluster: &KafkaCluster) -> String {
    format!(
        "{}/{}",
        cluster.namespace().unwrap_or_default(),
        cluster.name_any()
    )
}

/// Requeues a failed pass after 2 s, doubling per consecutive failure up to 5 minutes.
fn error_policy(cluster: Arc<KafkaCluster>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|p| p.into_inner());
    let n = failures.entry(key(&cluster)).or_insert(0);
    *n = n.saturating_add(1);
    let wait = backoff(*n);
    warn!(cluster = %key(&cluster), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// The wait after the `failures`-th consecutive failure.
fn backoff(failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    BACKOFF_MIN.saturating_mul(factor).min(BACKOFF_MAX)
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
        ctx.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key(&cluster));
        return Ok(Action::await_change());
    }
    status
        .conditions
        .retain(|c| c.kind != "ReconciliationPaused");

    let desired = match desired(&cluster) {
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

    let changed = apply_all(&ctx.client, &ns, &desired).await?;
    if !changed.is_empty() {
        let note = changed.join(", ");
        info!(cluster = %key(&cluster), applied = %note, "objects created or updated");
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

    let observed = observe(&ctx.client, &ns, &name, &desired).await?;
    let ready = observed.ready_reason(&desired);
    status.listeners = desired.listeners.clone();
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
    ctx.failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&key(&cluster));
    Ok(Action::requeue(if ready.is_ok() {
        READY_REQUEUE
    } else {
        NOT_READY_REQUEUE
    }))
}

/// Server-side applies every desired object; returns `Kind/name` of those created or changed.
async fn apply_all(client: &Client, ns: &str, desired: &Desired) -> Result<Vec<String>, Error> {
    let mut changed = Vec::new();
    changed.extend(apply(client, ns, &desired.config_map).await?);
    changed.extend(apply(client, ns, &desired.headless_service).await?);
    for s in &desired.bootstrap_services {
        changed.extend(apply(client, ns, s).await?);
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

/// The cluster as observed in the API server and from the brokers.
struct Observed {
    /// The StatefulSet's `readyReplicas`.
    ready_pods: i32,
    /// Whether the StatefulSet controller has seen the latest spec.
    statefulset_current: bool,
    brokers: Vec<BrokerStatus>,
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
) -> Result<Observed, Error> {
    let statefulsets: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let sts = statefulsets
        .get_opt(name)
        .await
        .map_err(kube_err(format!("get StatefulSet/{name}")))?;
    let (ready_pods, statefulset_current) = match &sts {
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
    let (view, view_error) = match describe_cluster(&desired.broker_addresses).await {
        Ok(v) => (Some(v), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let brokers = (0..desired.brokers)
        .map(|id| {
            let pod = format!("{name}-{id}");
            let ready = listed.items.iter().any(|p| {
                p.metadata.name.as_deref() == Some(pod.as_str())
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
            });
            BrokerStatus {
                id,
                pod,
                ready,
                registered: view.as_ref().is_some_and(|v| v.brokers.contains(&id)),
                roles: if id < desired.controllers {
                    "broker,controller".into()
                } else {
                    "broker".into()
                },
            }
        })
        .collect();
    Ok(Observed {
        ready_pods,
        statefulset_current,
        brokers,
        view,
        view_error,
    })
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
    fn backoff_doubles_from_two_seconds_up_to_five_minutes() {
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(5), Duration::from_secs(32));
        assert_eq!(backoff(9), Duration::from_secs(300));
        assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
    }

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
