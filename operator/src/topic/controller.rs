//! The KafkaTopic reconcile loop: a `kube::runtime::Controller` over KafkaTopics that makes
//! each topic in its KafkaCluster match the manifest ([`super::plan`]) through Kafka's admin
//! API ([`super::admin`]), with a finalizer so deleting the resource deletes the topic.
//!
//! A pass: paused? → status only. No `oxbow.dev/cluster` label, an invalid name, the cluster
//! missing or not Ready → `Ready=False` with the reason, nothing touched. Another, older
//! KafkaTopic names the same topic → `ResourceConflict`, nothing touched. Otherwise describe
//! the topic, plan, carry out what Kafka can do and report what it cannot. Every topic is
//! looked at again every two minutes (as Strimzi's full reconciliation), so a change made
//! directly in Kafka is brought back or reported; a reassignment in progress, every 5 s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{finalizer, Event as Finalizer};
use kube::runtime::reflector::Store;
use kube::runtime::{watcher, Controller};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use super::admin::{Admin, AdminError};
use super::crd::{
    invalid_topic_name, KafkaTopic, KafkaTopicStatus, ReplicasChange, FINALIZER, MANAGED_ANNOTATION,
};
use super::plan::{plan, Change, DesiredTopic, Refusal};
use crate::crd::{Condition, KafkaCluster, PAUSE_ANNOTATION};
use crate::desired::CLUSTER_LABEL;
use crate::reconcile::{key, kube_err, Backoff, KubeError};

/// The Events' reporting controller.
const REPORTER: &str = "oxbow-topic-operator";
/// How often a Ready topic is compared with Kafka again.
const RESYNC: Duration = Duration::from_secs(120);
/// How soon a topic waiting for its cluster, or for a reassignment, is looked at again.
const SOON: Duration = Duration::from_secs(5);
/// The longest wait after failed passes.
const BACKOFF_MAX: Duration = Duration::from_secs(120);

/// Why a pass failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error(transparent)]
    Kube(#[from] KubeError),
    /// Kafka could not be asked (the connection failed).
    #[error("KafkaTopic {topic}: {source}")]
    Admin {
        /// `namespace/name`.
        topic: String,
        /// The failure.
        #[source]
        source: AdminError,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    /// A KafkaTopic always has a namespace.
    #[error("KafkaTopic {0} has no namespace")]
    NoNamespace(String),
}

/// What every pass shares: one admin client per cluster (its connections reused by every
/// topic of that cluster), and the controller's cache of KafkaTopics (for conflicts, without
/// listing them from the API server on every pass).
pub struct Context {
    client: Client,
    recorder: Recorder,
    topics: Store<KafkaTopic>,
    admins: Mutex<HashMap<String, Arc<Admin>>>,
    /// Consecutive failed passes per `namespace/name`.
    backoff: Backoff,
}

impl Context {
    fn admin(&self, bootstrap: &str) -> Arc<Admin> {
        let mut admins = self.admins.lock().unwrap_or_else(|p| p.into_inner());
        admins
            .entry(bootstrap.to_string())
            .or_insert_with(|| {
                let addresses: Vec<String> =
                    bootstrap.split(',').map(|s| s.trim().to_string()).collect();
                Arc::new(Admin::new(&addresses))
            })
            .clone()
    }
}

/// Runs the controller until the process is signalled: KafkaTopics in `namespace`, or in
/// every namespace when `None`.
pub async fn run(client: Client, namespace: Option<String>, instance: Option<String>) {
    let topics: Api<KafkaTopic> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let controller = Controller::new(topics, watcher::Config::default());
    let reporter = Reporter {
        controller: REPORTER.to_string(),
        instance,
    };
    let context = Arc::new(Context {
        recorder: Recorder::new(client.clone(), reporter),
        client,
        topics: controller.store(),
        admins: Mutex::new(HashMap::new()),
        backoff: Backoff::new(BACKOFF_MAX),
    });
    controller
        .shutdown_on_signal()
        .run(
            |topic, ctx| {
                let ns = topic.namespace();
                crate::metrics::metered("KafkaTopic", ns, reconcile(topic, ctx))
            },
            error_policy,
            context,
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                warn!(error = %e, "topic reconcile failed");
            }
        })
        .await;
}

/// Requeues a failed pass after 2 s, doubling per consecutive failure up to 2 minutes.
fn error_policy(topic: Arc<KafkaTopic>, error: &Error, ctx: Arc<Context>) -> Action {
    let wait = ctx.backoff.failed(&key(topic.as_ref()));
    warn!(topic = %key(topic.as_ref()), error = %error, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

/// One pass over `topic`.
pub async fn reconcile(topic: Arc<KafkaTopic>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = topic
        .namespace()
        .ok_or_else(|| Error::NoNamespace(topic.name_any()))?;
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), &ns);
    let action = finalizer(&api, FINALIZER, topic, |event| async move {
        match event {
            Finalizer::Apply(t) => apply(&t, &ctx, &ns).await,
            Finalizer::Cleanup(t) => cleanup(&t, &ctx, &ns).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)))?;
    Ok(action)
}

fn annotated(topic: &KafkaTopic, annotation: &str, value: &str) -> bool {
    topic.annotations().get(annotation).map(String::as_str) == Some(value)
}

/// The KafkaTopic that owns `topic`'s name in its cluster: the oldest one naming it (by
/// creation time, then name), as Strimzi decides conflicts.
fn owner_of(topic: &KafkaTopic, all: &[Arc<KafkaTopic>]) -> Option<String> {
    let cluster = topic.labels().get(CLUSTER_LABEL)?;
    let name = topic.topic_name();
    all.iter()
        .filter(|t| t.namespace() == topic.namespace())
        .filter(|t| t.labels().get(CLUSTER_LABEL) == Some(cluster))
        .filter(|t| t.topic_name() == name)
        .min_by_key(|t| {
            (
                t.metadata.creation_timestamp.as_ref().map(|c| c.0),
                t.name_any(),
            )
        })
        .map(|t| t.name_any())
}

/// Where the topic's cluster takes admin requests, or why it cannot yet.
enum ClusterAccess {
    Bootstrap(String),
    /// Reason, message, whether the cluster is gone for good (deleted or being deleted).
    Unavailable(&'static str, String, bool),
}

async fn cluster_access(
    topic: &KafkaTopic,
    ctx: &Context,
    ns: &str,
) -> Result<ClusterAccess, Error> {
    let Some(cluster) = topic.labels().get(CLUSTER_LABEL) else {
        return Ok(ClusterAccess::Unavailable(
            "NoClusterLabel",
            format!("label the KafkaTopic with {CLUSTER_LABEL}=<KafkaCluster name>"),
            true,
        ));
    };
    let clusters: Api<KafkaCluster> = Api::namespaced(ctx.client.clone(), ns);
    let found = clusters
        .get_opt(cluster)
        .await
        .map_err(kube_err(format!("get KafkaCluster/{cluster}")))?;
    let Some(found) = found else {
        return Ok(ClusterAccess::Unavailable(
            "ClusterNotFound",
            format!("KafkaCluster {cluster} does not exist in namespace {ns}"),
            true,
        ));
    };
    if found.meta().deletion_timestamp.is_some() {
        return Ok(ClusterAccess::Unavailable(
            "ClusterNotFound",
            format!("KafkaCluster {cluster} is being deleted"),
            true,
        ));
    }
    let bootstrap = found
        .status
        .as_ref()
        .and_then(|s| s.listeners.first())
        .map(|l| l.bootstrap_servers.clone());
    match bootstrap {
        Some(b) => Ok(ClusterAccess::Bootstrap(b)),
        None => Ok(ClusterAccess::Unavailable(
            "ClusterNotReady",
            format!("KafkaCluster {cluster} has no bootstrap address in its status yet"),
            false,
        )),
    }
}

async fn apply(topic: &KafkaTopic, ctx: &Context, ns: &str) -> Result<Action, Error> {
    let old = topic.status.clone().unwrap_or_default();
    let name = topic.topic_name();
    let mut status = KafkaTopicStatus {
        observed_generation: topic.metadata.generation,
        topic_name: Some(name.clone()),
        topic_id: old.topic_id.clone(),
        conditions: Vec::new(),
        replicas_change: None,
    };
    if annotated(topic, PAUSE_ANNOTATION, "true") {
        status.replicas_change = old.replicas_change.clone();
        status.conditions.push(Condition::observed(
            &old.conditions,
            "ReconciliationPaused",
            "True",
            "ReconciliationPaused",
            &format!("{PAUSE_ANNOTATION}=true: Kafka is not touched until it is removed"),
        ));
        write_status(ctx, ns, topic, &status).await?;
        return Ok(Action::await_change());
    }
    let not_ready = |reason: &str, message: &str| {
        Condition::observed(&old.conditions, "Ready", "False", reason, message)
    };
    if let Some(why) = invalid_topic_name(&name) {
        status.conditions.push(not_ready("InvalidTopicName", &why));
        write_status(ctx, ns, topic, &status).await?;
        return Ok(Action::await_change());
    }
    // Kafka cannot rename a topic: the CRD refuses edits of spec.topicName, and this catches
    // what the schema cannot see (the name changed by adding or removing spec.topicName).
    if let (Some(before), Some(_)) = (&old.topic_name, &old.topic_id) {
        if *before != name {
            status.topic_name = Some(before.clone());
            let message = format!(
                "the topic is '{before}' but the manifest now names '{name}': Kafka cannot \
                 rename a topic (restore the name, or create another KafkaTopic)"
            );
            status
                .conditions
                .push(not_ready("TopicNameChangeNotSupported", &message));
            write_status(ctx, ns, topic, &status).await?;
            return Ok(Action::await_change());
        }
    }
    let bootstrap = match cluster_access(topic, ctx, ns).await? {
        ClusterAccess::Bootstrap(b) => b,
        ClusterAccess::Unavailable(reason, message, _) => {
            status.conditions.push(not_ready(reason, &message));
            write_status(ctx, ns, topic, &status).await?;
            return Ok(Action::requeue(SOON));
        }
    };
    let owner = owner_of(topic, &ctx.topics.state());
    if owner.as_deref().is_some_and(|o| o != topic.name_any()) {
        let message = format!(
            "topic '{name}' is managed by the older KafkaTopic {}: this one changes nothing",
            owner.unwrap_or_default()
        );
        status
            .conditions
            .push(not_ready("ResourceConflict", &message));
        write_status(ctx, ns, topic, &status).await?;
        return Ok(Action::requeue(RESYNC));
    }

    let admin = ctx.admin(&bootstrap);
    let admin_err = |source| Error::Admin {
        topic: key(topic),
        source,
    };
    let (brokers, observed) = match admin.describe(&name).await {
        Ok(found) => found,
        Err(AdminError::Kafka { reason, message }) => {
            status.conditions.push(not_ready(&reason, &message));
            write_status(ctx, ns, topic, &status).await?;
            return Ok(Action::requeue(SOON));
        }
        Err(e) => return Err(admin_err(e)),
    };
    let desired = DesiredTopic {
        partitions: topic.spec.partitions,
        replicas: topic.spec.replicas,
        configs: topic
            .spec
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    };
    let plan = plan(&desired, observed.as_ref(), &brokers);
    let mut refusals: Vec<Refusal> = plan.refusals.clone();
    let mut reassigning = observed.as_ref().map_or(0, |o| o.reassigning.len());
    if let Some(o) = &observed {
        status.topic_id = Some(o.topic_id.clone());
    }
    for change in &plan.changes {
        let (result, reason, note) = match change {
            Change::Create {
                partitions,
                replicas,
                configs,
            } => match admin.create(&name, *partitions, *replicas, configs).await {
                Ok(id) => {
                    status.topic_id = Some(id);
                    (Ok(()), "TopicCreated", format!("topic '{name}' created"))
                }
                Err(e) => (Err(e), "", String::new()),
            },
            Change::RaisePartitions { count } => (
                admin.raise_partitions(&name, *count).await,
                "PartitionsRaised",
                format!("partitions raised to {count}"),
            ),
            Change::AlterConfigs { set, delete } => (
                admin.alter_configs(&name, set, delete).await,
                "ConfigsChanged",
                format!(
                    "set {:?}, reset to default {delete:?}",
                    set.keys().collect::<Vec<_>>()
                ),
            ),
            Change::Reassign { assignments } => {
                let r = admin.reassign(&name, assignments).await;
                if r.is_ok() {
                    reassigning = assignments.len();
                }
                (
                    r,
                    "ReassignmentStarted",
                    format!("{} partition(s) to {assignments:?}", assignments.len()),
                )
            }
        };
        match result {
            Ok(()) => {
                info!(topic = %key(topic), %name, reason, %note, "applied");
                event(ctx, topic, EventType::Normal, reason, &note).await;
            }
            // Kafka refused this change (an invalid config value, ...): report it, keep going.
            Err(AdminError::Kafka { reason, message }) => {
                refusals.push(Refusal { reason, message })
            }
            Err(e) => return Err(admin_err(e)),
        }
    }
    if reassigning > 0 {
        status.replicas_change = Some(ReplicasChange {
            target_replicas: desired.replicas.unwrap_or_default(),
            state: "ongoing".to_string(),
            partitions_left: reassigning as i32,
        });
    }
    if let Some(first) = refusals.first() {
        let message = refusals
            .iter()
            .map(|r| r.message.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        status.conditions.push(not_ready(&first.reason, &message));
        for r in &refusals {
            event(ctx, topic, EventType::Warning, &r.reason, &r.message).await;
        }
    } else {
        status.conditions.push(Condition::observed(
            &old.conditions,
            "Ready",
            "True",
            "TopicReady",
            &format!("topic '{name}' matches the manifest"),
        ));
    }
    write_status(ctx, ns, topic, &status).await?;
    ctx.backoff.succeeded(&key(topic));
    Ok(
        if reassigning > 0
            || plan
                .changes
                .iter()
                .any(|c| matches!(c, Change::Create { .. }))
        {
            // Look again soon: a reassignment's progress, or the new topic's id and state.
            Action::requeue(SOON)
        } else {
            Action::requeue(RESYNC)
        },
    )
}

async fn cleanup(topic: &KafkaTopic, ctx: &Context, ns: &str) -> Result<Action, Error> {
    // The topic this KafkaTopic made, even if its manifest's name changed since (refused).
    let name = topic
        .status
        .as_ref()
        .filter(|s| s.topic_id.is_some())
        .and_then(|s| s.topic_name.clone())
        .unwrap_or_else(|| topic.topic_name());
    if annotated(topic, MANAGED_ANNOTATION, "false") || annotated(topic, PAUSE_ANNOTATION, "true") {
        info!(topic = %key(topic), %name, "KafkaTopic deleted; the topic stays (unmanaged or paused)");
        return Ok(Action::await_change());
    }
    let owner = owner_of(topic, &ctx.topics.state());
    if owner.as_deref().is_some_and(|o| o != topic.name_any()) {
        return Ok(Action::await_change()); // another KafkaTopic owns the topic
    }
    match cluster_access(topic, ctx, ns).await? {
        ClusterAccess::Bootstrap(bootstrap) => {
            ctx.admin(&bootstrap)
                .delete(&name)
                .await
                .map_err(|source| Error::Admin {
                    topic: key(topic),
                    source,
                })?;
            info!(topic = %key(topic), %name, "topic deleted");
            Ok(Action::await_change())
        }
        // The cluster is gone: there is no topic left to delete, so deletion must not hang.
        ClusterAccess::Unavailable(_, _, true) => Ok(Action::await_change()),
        ClusterAccess::Unavailable(reason, message, false) => Err(Error::Admin {
            topic: key(topic),
            source: AdminError::Kafka {
                reason: reason.to_string(),
                message,
            },
        }),
    }
}

async fn write_status(
    ctx: &Context,
    ns: &str,
    topic: &KafkaTopic,
    status: &KafkaTopicStatus,
) -> Result<(), Error> {
    if topic.status.as_ref() == Some(status) {
        return Ok(()); // nothing changed: spare the API server (hundreds of topics resync)
    }
    let api: Api<KafkaTopic> = Api::namespaced(ctx.client.clone(), ns);
    let mut body = json!({ "status": status });
    // A merge patch keeps fields it does not mention: a finished replicas change must be
    // removed with an explicit null.
    if status.replicas_change.is_none() {
        body["status"]["replicasChange"] = serde_json::Value::Null;
    }
    api.patch_status(
        &topic.name_any(),
        &PatchParams::default(),
        &Patch::Merge(body),
    )
    .await
    .map_err(kube_err(format!(
        "patch status of KafkaTopic/{}",
        topic.name_any()
    )))?;
    Ok(())
}

async fn event(ctx: &Context, topic: &KafkaTopic, kind: EventType, reason: &str, note: &str) {
    let e = Event {
        type_: kind,
        reason: reason.to_string(),
        note: Some(note.to_string()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    if let Err(err) = ctx.recorder.publish(&e, &topic.object_ref(&())).await {
        warn!(topic = %key(topic), error = %err, "could not publish an Event");
    }
}
