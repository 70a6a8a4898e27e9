//! The objects a KafkaCluster should have, as a pure function of the resource: no API calls,
//! so every layout decision is unit-tested without a cluster.
//!
//! The layout is the one `e2e/k8s/manifests/broker-statefulset.yaml` proved on a real control
//! plane: node ids from the StatefulSet's pod-index label, voters named by their pods' DNS
//! names through a headless Service that publishes not-ready pods, `podManagementPolicy:
//! Parallel` (a node opens its client listener, which the readiness probe checks, only once the
//! quorum has formed, so pods started one at a time would wait for each other forever) and
//! `updateStrategy: OnDelete` (the operator, not the StatefulSet controller, decides which pod
//! restarts when).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
    StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, DownwardAPIVolumeFile,
    DownwardAPIVolumeSource, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::crd::{
    owned_key_reason, KafkaCluster, ListenerStatus, ListenerType, StorageType, CONTROLLER_PORT,
    METRICS_PORT,
};
use crate::{external, rack};

/// The pod annotation carrying a hash of everything a broker reads at start (its
/// `server.properties` and its pod template), so a change is visible on each pod: a pod whose
/// annotation differs from the StatefulSet's runs an old configuration.
pub const CONFIG_HASH_ANNOTATION: &str = "oxbow.dev/config-hash";

/// The label naming the KafkaCluster an object belongs to.
pub const CLUSTER_LABEL: &str = "oxbow.dev/cluster";

/// The recommended label for an object's part in the application.
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";

/// [`COMPONENT_LABEL`] of the per-broker Services, by which the operator finds those of
/// brokers scaled away.
pub const BROKER_SERVICE_COMPONENT: &str = "broker-service";

/// The label the StatefulSet controller gives each of its pods, with the pod's name.
const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";

/// `server.properties` keys that name the quorum's voters as the operator last chose them.
/// They are read only by a broker whose metadata log is empty (the voters live in the Raft
/// log after that), so a change of `spec.controllers` restarts no broker: they stay out of
/// the config hash, and the operator changes the voters of the running quorum itself
/// (AddRaftVoter/RemoveRaftVoter, [`crate::quorum`]).
pub const QUORUM_START_KEYS: &[&str] = &[
    "controller.quorum.bootstrap.servers",
    "oxbow.initial.controllers",
];

/// Broker keys a running broker takes as cluster-wide dynamic defaults (IncrementalAlterConfigs
/// on the broker resource `""`, as `kafka-configs.sh --entity-type brokers --entity-default`
/// does): Kafka 4.1's `cluster-wide` keys that oxbow-broker accepts at runtime, less passwords
/// (DescribeConfigs hides their values, so the operator could not tell whether one changed).
/// A change of only these keys reaches the brokers without a restart: they stay out of the
/// config hash. Every other key needs a restart and changes the hash. A test checks this list
/// against the broker's own table.
pub const CLUSTER_WIDE_DYNAMIC_KEYS: &[&str] = &[
    "background.threads",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.type",
    "compression.zstd.level",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.io.buffer.load.factor",
    "log.cleaner.io.buffer.size",
    "log.cleaner.io.max.bytes.per.second",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.threads",
    "log.cleanup.policy",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.local.retention.bytes",
    "log.local.retention.ms",
    "log.message.timestamp.after.max.ms",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.type",
    "log.preallocate",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.jitter.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "log.segment.delete.delay.ms",
    "max.connection.creation.rate",
    "max.connections",
    "max.connections.per.ip",
    "max.connections.per.ip.overrides",
    "message.max.bytes",
    "metric.reporters",
    "min.insync.replicas",
    "num.io.threads",
    "num.network.threads",
    "num.recovery.threads.per.data.dir",
    "num.replica.fetchers",
    "producer.id.expiration.ms",
    "transaction.partition.verification.enable",
    "unclean.leader.election.enable",
];

/// Whether a running broker takes `key` as a cluster-wide dynamic default (no restart).
pub fn is_cluster_wide_dynamic(key: &str) -> bool {
    CLUSTER_WIDE_DYNAMIC_KEYS.binary_search(&key).is_ok()
}

/// Where a broker's `log.dirs` is mounted.
const DATA_DIR: &str = "/var/lib/oxbow/data";
/// Where the ConfigMap's `server.properties` is mounted.
const CONFIG_DIR: &str = "/etc/oxbow";
/// The Kubernetes cluster's DNS domain, as in the pods' stable names.
const CLUSTER_DOMAIN: &str = "cluster.local";

/// Everything the operator applies for one KafkaCluster, plus what it derived on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// `<name>-config`: the brokers' shared `server.properties`.
    pub config_map: ConfigMap,
    /// `<name>-brokers`: per-broker DNS names, not-ready pods included.
    pub headless_service: Service,
    /// `<name>-<listener>-bootstrap`, one per listener: ready brokers only.
    pub bootstrap_services: Vec<Service>,
    /// `<name>-<id>`, one ClusterIP Service per broker, whose name each broker advertises on
    /// its client listeners ([`Desired::hold_brokers`] sizes them).
    pub broker_services: Vec<Service>,
    /// `<name>`: every broker, each `process.roles=broker,controller`; the first
    /// `controllers` ordinals are the KRaft voters, the others the quorum's observers.
    pub stateful_set: StatefulSet,
    /// `<name>`: at most one broker voluntarily down at a time.
    pub pod_disruption_budget: PodDisruptionBudget,
    /// How many brokers run: `spec.replicas`, unless a scale-down is held
    /// ([`Desired::hold_brokers`]).
    pub brokers: i32,
    /// How many of them should be KRaft voters (ordinals `0..controllers`).
    pub controllers: i32,
    /// Bootstrap addresses per listener, for the status.
    pub listeners: Vec<ListenerStatus>,
    /// `host:port` of every broker on the inter-broker listener, for the operator's own Kafka
    /// requests.
    pub broker_addresses: Vec<String>,
    /// Non-blocking problems with the spec, for the status' `Warning` conditions.
    pub warnings: Vec<Warning>,
    /// The cluster-wide dynamic broker defaults the brokers should have (the
    /// [`CLUSTER_WIDE_DYNAMIC_KEYS`] of `server.properties`): the operator makes the cluster's
    /// dynamic default entity equal to this, so they change without a restart.
    pub dynamic_config: BTreeMap<String, String>,
    /// Every broker, by node id.
    pub nodes: Vec<Node>,
    /// The config hash of the pod template ([`CONFIG_HASH_ANNOTATION`]).
    pub config_hash: String,
    /// The external listeners: name, type and port.
    pub external_listeners: Vec<(String, ListenerType, i32)>,
    /// The template of [`Desired::broker_services`] (all but name and selector).
    broker_service: Service,
    /// The KafkaCluster's name and namespace, and the port of the inter-broker listener.
    name: String,
    namespace: String,
    internal_port: i32,
}

/// One broker of the cluster as laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node id (its pod's index).
    pub id: i32,
    /// Its pod's name.
    pub pod: String,
    /// Whether it should be a KRaft voter (`id < controllers`).
    pub voter: bool,
    /// The config hash its pod should carry.
    pub config_hash: String,
}

/// A non-blocking problem: the cluster runs, but not entirely as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// CamelCase reason.
    pub reason: String,
    /// What the user needs to know.
    pub message: String,
}

/// A spec the operator cannot turn into objects; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidSpec {
    /// The offending field, e.g. `spec.config.node.id`.
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> InvalidSpec {
    InvalidSpec {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The objects `cluster` should have. `cluster` must carry the name, namespace and uid it was
/// read with (the uid goes into the owner references). Errors name the field at fault.
pub fn desired(cluster: &KafkaCluster) -> Result<Desired, InvalidSpec> {
    let name = cluster.name_any();
    let namespace = cluster
        .namespace()
        .ok_or_else(|| invalid("metadata.namespace", "a KafkaCluster is namespaced"))?;
    let owner = cluster
        .controller_owner_ref(&())
        .ok_or_else(|| invalid("metadata.uid", "missing: read the object from the API"))?;
    let spec = &cluster.spec;
    let warnings = Vec::new();

    if spec.replicas < 1 {
        return Err(invalid("spec.replicas", "must be at least 1"));
    }
    let controllers = spec.controllers();
    if controllers < 1 || controllers > spec.replicas {
        return Err(invalid(
            "spec.controllers",
            format!("must be between 1 and spec.replicas ({})", spec.replicas),
        ));
    }
    // Every broker is a combined node (process.roles=broker,controller, a CONTROLLER
    // listener), and which of them vote is a property of the running quorum, not of the pods:
    // the first `controllers` ordinals start it (`oxbow.initial.controllers`, read on an empty
    // metadata log only), the others join it as observers through
    // `controller.quorum.bootstrap.servers`, and the operator adds and removes voters at
    // runtime with AddRaftVoter/RemoveRaftVoter (KIP-853) to follow `spec.controllers`. So a
    // broker can become a voter without a restart, and one StatefulSet gives all pods the
    // same arguments. (Until this, brokers beyond the voters were a second StatefulSet of
    // broker-only pods, which could never become voters: another pod name, another volume.)
    let brokers = spec.replicas;

    let internal = spec
        .listeners
        .iter()
        .find(|l| l.kind == ListenerType::Internal)
        .ok_or_else(|| invalid("spec.listeners", "at least one listener must be internal"))?;
    for (i, l) in spec.listeners.iter().enumerate() {
        if l.port == CONTROLLER_PORT {
            return Err(invalid(
                format!("spec.listeners[{i}].port"),
                "9093 is the operator's CONTROLLER listener",
            ));
        }
        if l.port == METRICS_PORT {
            return Err(invalid(
                format!("spec.listeners[{i}].port"),
                "9404 is where every broker serves its metrics",
            ));
        }
        if spec.listeners[..i]
            .iter()
            .any(|m| m.name == l.name || m.port == l.port)
        {
            return Err(invalid(
                format!("spec.listeners[{i}]"),
                "listener names and ports must be unique",
            ));
        }
    }

    let headless = format!("{name}-brokers");
    let pod_dns = |id: i32| {
        format!(
            "{}.{headless}.{namespace}.svc.{CLUSTER_DOMAIN}",
            pod_name(&name, id)
        )
    };
    let voters = (0..controllers)
        .map(|i| format!("{i}@{}:{CONTROLLER_PORT}", pod_dns(i)))
        .collect::<Vec<_>>()
        .join(",");
    let bootstrap_servers = (0..controllers)
        .map(|i| format!("{}:{CONTROLLER_PORT}", pod_dns(i)))
        .collect::<Vec<_>>()
        .join(",");
    let listener_name = |l: &str| l.to_ascii_uppercase();
    let protocol_map = spec
        .listeners
        .iter()
        .map(|l| format!("{}:PLAINTEXT", listener_name(&l.name)))
        .chain(std::iter::once("CONTROLLER:PLAINTEXT".to_string()))
        .collect::<Vec<_>>()
        .join(",");

    // server.properties: the operator's keys, then defaults sized to the cluster, then the
    // user's keys (which may override the defaults, never the operator's keys).
    let mut owned: BTreeMap<String, String> = BTreeMap::new();
    owned.insert("process.roles".into(), "broker,controller".into());
    owned.insert(
        "controller.quorum.bootstrap.servers".into(),
        bootstrap_servers,
    );
    owned.insert("oxbow.initial.controllers".into(), voters);
    owned.insert("controller.listener.names".into(), "CONTROLLER".into());
    owned.insert("listener.security.protocol.map".into(), protocol_map);
    owned.insert(
        "inter.broker.listener.name".into(),
        listener_name(&internal.name),
    );
    owned.insert("log.dirs".into(), DATA_DIR.into());
    let external: Vec<(String, ListenerType, i32)> = spec
        .listeners
        .iter()
        .filter(|l| l.kind != ListenerType::Internal)
        .map(|l| (l.name.clone(), l.kind, l.port))
        .collect();
    // The pod's annotations as a downward-API file: the broker waits at start for the rack
    // and the external addresses the operator writes onto the pod (crate::rack and
    // crate::external say why it is done this way).
    let pod_info = spec.rack.is_some() || !external.is_empty();
    if spec.rack.is_some() {
        // This key also tells the broker to wait for a rack: only with spec.rack.
        owned.insert(
            rack::ANNOTATIONS_FILE_KEY.into(),
            rack::ANNOTATIONS_FILE.into(),
        );
        owned.insert(rack::ANNOTATION_KEY.into(), rack::RACK_ANNOTATION.into());
    }
    if !external.is_empty() {
        owned.insert(
            external::POD_ANNOTATIONS_FILE_KEY.into(),
            rack::ANNOTATIONS_FILE.into(),
        );
        owned.insert(
            external::ANNOTATION_KEY.into(),
            external::ADVERTISED_LISTENERS_ANNOTATION.into(),
        );
    }
    let rf = brokers.min(3);
    let min_isr = if rf >= 3 { 2 } else { 1 };
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    for (key, value) in [
        ("default.replication.factor", rf),
        ("offsets.topic.replication.factor", rf),
        ("transaction.state.log.replication.factor", rf),
        ("min.insync.replicas", min_isr),
        ("transaction.state.log.min.isr", min_isr),
    ] {
        settings.insert(key.to_string(), value.to_string());
    }
    for (key, value) in &spec.config {
        let field = format!("spec.config.{key}");
        if let Some(why) = owned_key_reason(key) {
            return Err(invalid(field, format!("owned by the operator: {why}")));
        }
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(invalid(
                field,
                "not a Kafka config key (letters, digits, '.', '_', '-')",
            ));
        }
        let text = value.to_string();
        if text.contains(['\n', '\r']) {
            return Err(invalid(field, "must be one line"));
        }
        settings.insert(key.clone(), text);
    }
    let mut properties = String::from(
        "# Written by oxbow-operator from the KafkaCluster; edit the KafkaCluster, not this.\n\
         # node.id, listeners and advertised.listeners are set per pod (--override).\n",
    );
    for (key, value) in owned.iter().chain(settings.iter()) {
        // Backslashes are escapes in Java properties files; the value is meant literally.
        let _ = writeln!(properties, "{key}={}", value.replace('\\', "\\\\"));
    }

    let selector = selector_labels(&name);
    let mut labels = selector.clone();
    labels.insert(
        "app.kubernetes.io/managed-by".into(),
        "oxbow-operator".into(),
    );
    labels.insert(COMPONENT_LABEL.into(), "broker".into());
    let meta = |object_name: String| ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.clone()),
        labels: Some(labels.clone()),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    };

    let config_map_name = format!("{name}-config");
    let config_map = ConfigMap {
        metadata: meta(config_map_name.clone()),
        data: Some(BTreeMap::from([(
            "server.properties".to_string(),
            properties.clone(),
        )])),
        ..ConfigMap::default()
    };

    let listener_ports = spec.listeners.iter().map(|l| ServicePort {
        name: Some(l.name.clone()),
        port: l.port,
        target_port: Some(IntOrString::Int(l.port)),
        ..ServicePort::default()
    });
    let client_ports: Vec<ServicePort> = listener_ports.clone().collect();
    let headless_service = Service {
        metadata: meta(headless.clone()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // Peers must resolve each other before any is ready (the quorum forms first).
            publish_not_ready_addresses: Some(true),
            selector: Some(selector.clone()),
            ports: Some(
                listener_ports
                    .clone()
                    .chain(std::iter::once(ServicePort {
                        name: Some("controller".into()),
                        port: CONTROLLER_PORT,
                        target_port: Some(IntOrString::Int(CONTROLLER_PORT)),
                        ..ServicePort::default()
                    }))
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };
    let mut bootstrap_services = Vec::new();
    let mut listeners = Vec::new();
    for (l, port) in spec.listeners.iter().zip(listener_ports) {
        let service = format!("{name}-{}-bootstrap", l.name);
        listeners.push(ListenerStatus {
            name: l.name.clone(),
            bootstrap_servers: format!("{service}.{namespace}.svc:{}", l.port),
        });
        bootstrap_services.push(Service {
            metadata: meta(service),
            spec: Some(ServiceSpec {
                type_: Some(service_type(l.kind).into()),
                selector: Some(selector.clone()),
                ports: Some(vec![port]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        });
    }

    let field_env = |env: &str, path: &str| EnvVar {
        name: env.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let bind = spec
        .listeners
        .iter()
        .map(|l| format!("{}://$(POD_IP):{}", listener_name(&l.name), l.port))
        .chain(std::iter::once(format!(
            "CONTROLLER://$(POD_IP):{CONTROLLER_PORT}"
        )))
        .collect::<Vec<_>>()
        .join(",");
    // Each broker advertises its own ClusterIP Service (named after its pod), not its pod's
    // DNS name: a Service's address outlives the pod, so a client that cached the name's
    // address (the JVM does for 30 s) reaches the restarted broker at once instead of retrying
    // the old pod IP until its cache expires, which stalled producers for ~20 s per restart
    // in a roll (README, the operator's figures).
    // External listeners' addresses come from the pod's annotation (crate::external).
    let advertise = spec
        .listeners
        .iter()
        .filter(|l| l.kind == ListenerType::Internal)
        .map(|l| {
            format!(
                "{}://$(POD_NAME).$(POD_NAMESPACE).svc.{CLUSTER_DOMAIN}:{}",
                listener_name(&l.name),
                l.port
            )
        })
        // The CONTROLLER listener at the pod's stable DNS name: a broker that joins the quorum
        // as an observer is dialled there by the leader, and must be after a restart too (its
        // pod IP changes).
        .chain(std::iter::once(format!(
            "CONTROLLER://$(POD_NAME).{headless}.$(POD_NAMESPACE).svc.{CLUSTER_DOMAIN}:{CONTROLLER_PORT}"
        )))
        .collect::<Vec<_>>()
        .join(",");
    let mut container = Container {
        name: "broker".into(),
        image: Some(spec.image().to_string()),
        image_pull_policy: Some("IfNotPresent".into()),
        env: Some(vec![
            field_env("NODE_ID", "metadata.labels['apps.kubernetes.io/pod-index']"),
            field_env("POD_NAME", "metadata.name"),
            field_env("POD_NAMESPACE", "metadata.namespace"),
            field_env("POD_IP", "status.podIP"),
            EnvVar {
                name: "RUST_LOG".into(),
                value: Some("info".into()),
                ..EnvVar::default()
            },
        ]),
        args: Some(vec![
            format!("{CONFIG_DIR}/server.properties"),
            "--override".into(),
            "node.id=$(NODE_ID)".into(),
            "--override".into(),
            format!("listeners={bind}"),
            "--override".into(),
            format!("advertised.listeners={advertise}"),
            "--override".into(),
            format!("oxbow.metrics.listener=$(POD_IP):{METRICS_PORT}"),
        ]),
        ports: Some(
            spec.listeners
                .iter()
                .map(|l| ContainerPort {
                    name: Some(l.name.clone()),
                    container_port: l.port,
                    ..ContainerPort::default()
                })
                .chain(std::iter::once(ContainerPort {
                    name: Some("controller".into()),
                    container_port: CONTROLLER_PORT,
                    ..ContainerPort::default()
                }))
                .chain(std::iter::once(ContainerPort {
                    name: Some("metrics".into()),
                    container_port: METRICS_PORT,
                    ..ContainerPort::default()
                }))
                .collect(),
        ),
        // The client listener opens once the node has joined the quorum and caught up.
        readiness_probe: Some(Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(internal.port),
                ..TCPSocketAction::default()
            }),
            period_seconds: Some(2),
            failure_threshold: Some(3),
            ..Probe::default()
        }),
        resources: spec.resources.clone(),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".into(),
                mount_path: DATA_DIR.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".into(),
                mount_path: CONFIG_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let mut volumes = vec![Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map_name,
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }];
    if pod_info {
        volumes.push(Volume {
            name: "podinfo".into(),
            downward_api: Some(DownwardAPIVolumeSource {
                items: Some(vec![DownwardAPIVolumeFile {
                    path: "annotations".into(),
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.annotations".into(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..DownwardAPIVolumeFile::default()
                }]),
                ..DownwardAPIVolumeSource::default()
            }),
            ..Volume::default()
        });
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(VolumeMount {
                name: "podinfo".into(),
                mount_path: rack::POD_INFO_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            });
    }
    let mut claims = None;
    let mut retention = None;
    match spec.storage.kind {
        StorageType::Ephemeral => volumes.push(Volume {
            name: "data".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        }),
        StorageType::PersistentClaim => {
            let size = spec
                .storage
                .size
                .clone()
                .ok_or_else(|| invalid("spec.storage.size", "persistent-claim needs a size"))?;
            claims = Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(selector.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: spec.storage.class.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([("storage".into(), Quantity(size))])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            }]);
            // Claims outlive a scale-down (the broker may come back); whether they outlive the
            // cluster is the user's `deleteClaim`.
            retention = Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_deleted: Some(
                    if spec.storage.delete_claim {
                        "Delete"
                    } else {
                        "Retain"
                    }
                    .into(),
                ),
                when_scaled: Some("Retain".into()),
            });
        }
    }

    let template = spec.template.clone().unwrap_or_default();
    let mut pod_labels = template.labels.clone();
    pod_labels.extend(labels.clone());
    let mut pod_spec = PodSpec {
        containers: vec![container],
        volumes: Some(volumes),
        termination_grace_period_seconds: Some(30),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65532),
            run_as_group: Some(65532),
            fs_group: Some(65532),
            ..PodSecurityContext::default()
        }),
        affinity: template.affinity.clone(),
        priority_class_name: template.priority_class_name.clone(),
        ..PodSpec::default()
    };
    if !template.tolerations.is_empty() {
        pod_spec.tolerations = Some(template.tolerations.clone());
    }
    // The hash covers what the broker reads at start and cannot change while it runs: its
    // properties but the cluster-wide dynamic ones (applied at runtime instead) and the
    // quorum's starting voters (read on an empty metadata log only), and its pod spec. The
    // ConfigMap keeps every key, so a restarted broker starts with them all.
    let dynamic_config: BTreeMap<String, String> = settings
        .iter()
        .filter(|(k, _)| is_cluster_wide_dynamic(k))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let config_hash = |pod_spec: &PodSpec| {
        let mut hasher = Sha256::new();
        for (key, value) in owned.iter().chain(settings.iter()) {
            if !is_cluster_wide_dynamic(key) && !QUORUM_START_KEYS.contains(&key.as_str()) {
                hasher.update(format!("{key}={value}\n").as_bytes());
            }
        }
        hasher.update(serde_json::to_vec(pod_spec).unwrap_or_default());
        // A broker takes its rack once, at start: another topology key needs a restart to
        // reach it, though nothing else the broker reads changes.
        if let Some(r) = &spec.rack {
            hasher.update(format!("rack.topologyKey={}\n", r.topology_key).as_bytes());
        }
        hasher
            .finalize()
            .iter()
            .take(8)
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    };
    let config_hash = config_hash(&pod_spec);
    let mut annotations = template.annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.into(), config_hash.clone());
    // The operator writes each pod's rack; a template value would be read as the rack by a
    // broker started before the operator replaced it.
    annotations.remove(rack::RACK_ANNOTATION);
    let stateful_set = StatefulSet {
        metadata: meta(name.clone()),
        spec: Some(StatefulSetSpec {
            replicas: Some(brokers),
            service_name: Some(headless.clone()),
            pod_management_policy: Some("Parallel".into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                ..StatefulSetUpdateStrategy::default()
            }),
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            volume_claim_templates: claims,
            persistent_volume_claim_retention_policy: retention,
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    };

    let pod_disruption_budget = PodDisruptionBudget {
        metadata: meta(name.clone()),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    };

    let mut service_labels = labels.clone();
    service_labels.insert(COMPONENT_LABEL.into(), BROKER_SERVICE_COMPONENT.into());
    let broker_service = Service {
        metadata: ObjectMeta {
            namespace: Some(namespace.clone()),
            labels: Some(service_labels),
            owner_references: Some(vec![owner.clone()]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            // As the pod DNS names this replaces: a broker is reached from the moment it
            // listens (a partition may be given to it before its readiness probe passes), and
            // each Service selects that one pod only.
            publish_not_ready_addresses: Some(true),
            ports: Some(client_ports),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    };

    let mut desired = Desired {
        config_map,
        headless_service,
        bootstrap_services,
        broker_services: Vec::new(),
        broker_service,
        external_listeners: external,
        stateful_set,
        pod_disruption_budget,
        brokers,
        controllers,
        listeners,
        broker_addresses: Vec::new(),
        nodes: Vec::new(),
        warnings,
        dynamic_config,
        config_hash,
        name,
        namespace,
        internal_port: internal.port,
    };
    desired.hold_brokers(brokers);
    Ok(desired)
}

/// The pod of node `id`: `<cluster>-<id>`.
pub fn pod_name(cluster: &str, id: i32) -> String {
    format!("{cluster}-{id}")
}

impl Desired {
    /// Runs `total` brokers instead of `spec.replicas` (never fewer than the voters): the
    /// operator holds a scale-down whose brokers still host replicas or votes. Sets the
    /// StatefulSet's replicas, [`Desired::brokers`], the nodes and their addresses.
    pub fn hold_brokers(&mut self, total: i32) {
        let total = total.max(self.controllers);
        self.brokers = total;
        if let Some(spec) = self.stateful_set.spec.as_mut() {
            spec.replicas = Some(total);
        }
        self.nodes = (0..total)
            .map(|id| Node {
                id,
                pod: pod_name(&self.name, id),
                voter: id < self.controllers,
                config_hash: self.config_hash.clone(),
            })
            .collect();
        let selector = |pod: &str| {
            BTreeMap::from([
                (CLUSTER_LABEL.to_string(), self.name.clone()),
                (POD_NAME_LABEL.to_string(), pod.to_string()),
            ])
        };
        self.broker_services = Vec::new();
        for n in &self.nodes {
            let mut service = self.broker_service.clone();
            service.metadata.name = Some(n.pod.clone());
            if let Some(spec) = service.spec.as_mut() {
                spec.selector = Some(selector(&n.pod));
            }
            self.broker_services.push(service);
            // One per external listener: the broker's own node port or load balancer.
            for (listener, kind, port) in &self.external_listeners {
                let mut service = self.broker_service.clone();
                service.metadata.name = Some(self.external_service_name(n.id, listener));
                service.spec = Some(ServiceSpec {
                    type_: Some(service_type(*kind).into()),
                    selector: Some(selector(&n.pod)),
                    ports: Some(vec![ServicePort {
                        name: Some(listener.clone()),
                        port: *port,
                        target_port: Some(IntOrString::Int(*port)),
                        ..ServicePort::default()
                    }]),
                    ..ServiceSpec::default()
                });
                self.broker_services.push(service);
            }
        }
        self.broker_addresses = self
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{}.{}-brokers.{}.svc.{CLUSTER_DOMAIN}:{}",
                    n.pod, self.name, self.namespace, self.internal_port
                )
            })
            .collect();
    }
}

impl Desired {
    /// The Service of broker `id` for external listener `listener`: `<pod>-<listener>`.
    pub fn external_service_name(&self, id: i32, listener: &str) -> String {
        format!("{}-{listener}", pod_name(&self.name, id))
    }

    /// Broker `id`'s `advertised.listeners` entries but the external ones, as its pod's
    /// arguments give them: its Service's DNS name on the internal listeners, its pod's on
    /// the CONTROLLER listener.
    pub fn internal_advertised(&self, id: i32, listeners: &[crate::crd::Listener]) -> Vec<String> {
        let (pod, ns) = (pod_name(&self.name, id), &self.namespace);
        listeners
            .iter()
            .filter(|l| l.kind == ListenerType::Internal)
            .map(|l| {
                format!(
                    "{}://{pod}.{ns}.svc.{CLUSTER_DOMAIN}:{}",
                    l.name.to_ascii_uppercase(),
                    l.port
                )
            })
            .chain(std::iter::once(format!(
                "CONTROLLER://{pod}.{}-brokers.{ns}.svc.{CLUSTER_DOMAIN}:{CONTROLLER_PORT}",
                self.name
            )))
            .collect()
    }

    /// Where node `id`'s CONTROLLER listener is reached: its pod's DNS name and the port.
    pub fn controller_address(&self, id: i32) -> (String, u16) {
        (
            format!(
                "{}.{}-brokers.{}.svc.{CLUSTER_DOMAIN}",
                pod_name(&self.name, id),
                self.name,
                self.namespace
            ),
            CONTROLLER_PORT_U16,
        )
    }
}

/// [`CONTROLLER_PORT`] as the protocol's port type.
const CONTROLLER_PORT_U16: u16 = 9093;
const _: () = assert!(CONTROLLER_PORT_U16 as i32 == CONTROLLER_PORT);

/// The Service type of a listener type.
fn service_type(kind: ListenerType) -> &'static str {
    match kind {
        ListenerType::Internal => "ClusterIP",
        ListenerType::Nodeport => "NodePort",
        ListenerType::Loadbalancer => "LoadBalancer",
    }
}

/// The labels that select a cluster's broker pods.
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "app.kubernetes.io/name".to_string(),
            "oxbow-broker".to_string(),
        ),
        (
            "app.kubernetes.io/instance".to_string(),
            cluster.to_string(),
        ),
        (CLUSTER_LABEL.to_string(), cluster.to_string()),
    ])
}

/// `server.properties` of a desired ConfigMap, parsed back into keys and values (tests and the
/// status use it).
pub fn properties(desired: &Desired) -> BTreeMap<String, String> {
    desired
        .config_map
        .data
        .as_ref()
        .and_then(|d| d.get("server.properties"))
        .map(|text| {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.replace("\\\\", "\\")))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::KafkaClusterSpec;

    /// A KafkaCluster as read from the API server (name, namespace, uid) from its YAML spec.
    fn cluster(spec_yaml: &str) -> KafkaCluster {
        let spec: KafkaClusterSpec = serde_yaml::from_str(spec_yaml).expect("test spec parses");
        let mut c = KafkaCluster::new("kc1", spec);
        c.metadata.namespace = Some("ns1".into());
        c.metadata.uid = Some("uid-1".into());
        c
    }

    fn ok(spec_yaml: &str) -> Desired {
        desired(&cluster(spec_yaml)).expect("valid spec")
    }

    fn sts_spec(d: &Desired) -> &StatefulSetSpec {
        d.stateful_set.spec.as_ref().expect("spec")
    }

    fn pod_spec(d: &Desired) -> &PodSpec {
        sts_spec(d).template.spec.as_ref().expect("pod spec")
    }

    fn hash(d: &Desired) -> String {
        sts_spec(d)
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .expect("annotations")[CONFIG_HASH_ANNOTATION]
            .clone()
    }

    #[test]
    fn three_brokers_form_one_quorum_of_three_voters_by_their_pod_dns_names() {
        let d = ok("replicas: 3");
        let p = properties(&d);
        assert_eq!(p["process.roles"], "broker,controller");
        assert_eq!(
            p["oxbow.initial.controllers"],
            "0@kc1-0.kc1-brokers.ns1.svc.cluster.local:9093,\
             1@kc1-1.kc1-brokers.ns1.svc.cluster.local:9093,\
             2@kc1-2.kc1-brokers.ns1.svc.cluster.local:9093"
        );
        assert_eq!(p["controller.listener.names"], "CONTROLLER");
        assert_eq!(p["inter.broker.listener.name"], "PLAIN");
        assert_eq!(
            p["listener.security.protocol.map"],
            "PLAIN:PLAINTEXT,CONTROLLER:PLAINTEXT"
        );
        assert_eq!(p["default.replication.factor"], "3");
        assert_eq!(p["min.insync.replicas"], "2");
        assert!(!p.contains_key("node.id"), "node.id is per pod, not shared");
        let s = sts_spec(&d);
        assert_eq!(s.replicas, Some(3));
        assert_eq!(s.service_name.as_deref(), Some("kc1-brokers"));
        assert_eq!(s.pod_management_policy.as_deref(), Some("Parallel"));
        assert_eq!(
            s.update_strategy.as_ref().and_then(|u| u.type_.as_deref()),
            Some("OnDelete")
        );
        let args = pod_spec(&d).containers[0].args.clone().expect("args");
        assert!(args.contains(&"node.id=$(NODE_ID)".to_string()), "{args:?}");
        assert!(
            args.contains(
                &"listeners=PLAIN://$(POD_IP):9092,CONTROLLER://$(POD_IP):9093".to_string()
            ),
            "{args:?}"
        );
        assert!(args.contains(
            &"advertised.listeners=PLAIN://$(POD_NAME).$(POD_NAMESPACE).svc.cluster.local:9092,\
              CONTROLLER://$(POD_NAME).kc1-brokers.$(POD_NAMESPACE).svc.cluster.local:9093"
                .to_string()
        ));
        let headless = d.headless_service.spec.as_ref().expect("spec");
        assert_eq!(headless.cluster_ip.as_deref(), Some("None"));
        assert_eq!(headless.publish_not_ready_addresses, Some(true));
        assert_eq!(d.brokers, 3);
        assert_eq!(d.controllers, 3);
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert_eq!(
            d.listeners,
            vec![ListenerStatus {
                name: "plain".into(),
                bootstrap_servers: "kc1-plain-bootstrap.ns1.svc:9092".into()
            }]
        );
        assert_eq!(
            d.broker_addresses[2],
            "kc1-2.kc1-brokers.ns1.svc.cluster.local:9092"
        );
        let budget = d.pod_disruption_budget.spec.as_ref().expect("spec");
        assert_eq!(budget.max_unavailable, Some(IntOrString::Int(1)));
    }

    #[test]
    fn every_object_is_owned_by_the_cluster_so_deleting_it_deletes_them() {
        let d = ok("replicas: 3");
        let metas = [
            &d.config_map.metadata,
            &d.headless_service.metadata,
            &d.bootstrap_services[0].metadata,
            &d.stateful_set.metadata,
            &d.pod_disruption_budget.metadata,
        ];
        for m in metas {
            let refs = m.owner_references.as_ref().expect("owner references");
            assert_eq!(refs.len(), 1);
            assert_eq!(refs[0].kind, "KafkaCluster");
            assert_eq!(refs[0].uid, "uid-1");
            assert_eq!(refs[0].controller, Some(true));
            assert_eq!(m.namespace.as_deref(), Some("ns1"));
        }
        let mut c = cluster("replicas: 3");
        c.metadata.uid = None;
        assert_eq!(desired(&c).unwrap_err().field, "metadata.uid");
    }

    #[test]
    fn a_single_broker_starts_a_quorum_of_one_with_replication_factor_one() {
        let d = ok("replicas: 1");
        let p = properties(&d);
        assert_eq!(d.controllers, 1);
        assert_eq!(
            p["oxbow.initial.controllers"],
            "0@kc1-0.kc1-brokers.ns1.svc.cluster.local:9093"
        );
        assert_eq!(
            p["controller.quorum.bootstrap.servers"],
            "kc1-0.kc1-brokers.ns1.svc.cluster.local:9093"
        );
        assert!(!p.contains_key("controller.quorum.voters"), "{p:?}");
        assert_eq!(p["default.replication.factor"], "1");
        assert_eq!(p["offsets.topic.replication.factor"], "1");
        assert_eq!(p["min.insync.replicas"], "1");
        let two = ok("replicas: 2");
        assert_eq!(two.controllers, 2);
        assert_eq!(properties(&two)["default.replication.factor"], "2");
        assert_eq!(properties(&two)["min.insync.replicas"], "1");
    }

    #[test]
    fn every_broker_is_a_combined_node_of_one_statefulset_and_the_first_ones_start_the_quorum() {
        let d = ok("replicas: 5\ncontrollers: 3");
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        assert_eq!(d.brokers, 5);
        assert_eq!(sts_spec(&d).replicas, Some(5));
        assert_eq!(sts_spec(&d).ordinals, None);
        let p = properties(&d);
        assert_eq!(p["process.roles"], "broker,controller");
        assert_eq!(
            p["oxbow.initial.controllers"],
            "0@kc1-0.kc1-brokers.ns1.svc.cluster.local:9093,\
             1@kc1-1.kc1-brokers.ns1.svc.cluster.local:9093,\
             2@kc1-2.kc1-brokers.ns1.svc.cluster.local:9093"
        );
        assert_eq!(
            p["controller.quorum.bootstrap.servers"],
            "kc1-0.kc1-brokers.ns1.svc.cluster.local:9093,\
             kc1-1.kc1-brokers.ns1.svc.cluster.local:9093,\
             kc1-2.kc1-brokers.ns1.svc.cluster.local:9093"
        );
        let args = pod_spec(&d).containers[0].args.clone().expect("args");
        assert!(
            args.contains(
                &"listeners=PLAIN://$(POD_IP):9092,CONTROLLER://$(POD_IP):9093".to_string()
            ),
            "every pod binds a CONTROLLER listener: {args:?}"
        );
        assert!(
            !args.iter().any(|a| a.starts_with("process.roles")),
            "{args:?}"
        );
        let pods: Vec<(&str, bool)> = d.nodes.iter().map(|n| (n.pod.as_str(), n.voter)).collect();
        assert_eq!(
            pods,
            [
                ("kc1-0", true),
                ("kc1-1", true),
                ("kc1-2", true),
                ("kc1-3", false),
                ("kc1-4", false)
            ]
        );
        assert!(d.nodes.iter().all(|n| n.config_hash == d.config_hash));
        assert_eq!(
            d.broker_addresses[4],
            "kc1-4.kc1-brokers.ns1.svc.cluster.local:9092"
        );
        assert_eq!(
            d.controller_address(4),
            ("kc1-4.kc1-brokers.ns1.svc.cluster.local".to_string(), 9093)
        );
    }

    #[test]
    fn each_broker_has_a_clusterip_service_named_after_its_pod_selecting_only_that_pod() {
        let mut d = ok("replicas: 3\nlisteners: [{name: plain, port: 9092, type: internal}, {name: tls, port: 9094, type: internal}]");
        let names: Vec<_> = d
            .broker_services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["kc1-0", "kc1-1", "kc1-2"]);
        let s = &d.broker_services[1];
        let spec = s.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        let selector = spec.selector.as_ref().expect("selector");
        assert_eq!(selector["statefulset.kubernetes.io/pod-name"], "kc1-1");
        assert_eq!(selector[CLUSTER_LABEL], "kc1");
        let ports: Vec<i32> = spec.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, [9092, 9094], "the client listeners, not CONTROLLER");
        let labels = s.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels[COMPONENT_LABEL], BROKER_SERVICE_COMPONENT);
        assert_eq!(
            s.metadata.owner_references.as_ref().map(Vec::len),
            Some(1),
            "deleted with the cluster"
        );
        // A held scale-down keeps the Services of the brokers that still run.
        d.hold_brokers(5);
        assert_eq!(d.broker_services.len(), 5);
        assert_eq!(d.broker_services[4].metadata.name.as_deref(), Some("kc1-4"));
    }

    #[test]
    fn another_controller_count_restarts_no_broker() {
        // The voters change on the running quorum (crate::quorum), not through the pods.
        let three = ok("replicas: 5\ncontrollers: 3");
        let five = ok("replicas: 5\ncontrollers: 5");
        assert_ne!(properties(&three), properties(&five));
        assert_eq!(three.config_hash, five.config_hash);
        assert_eq!(three.stateful_set, five.stateful_set);
        assert_eq!(five.nodes.iter().filter(|n| n.voter).count(), 5);
    }

    #[test]
    fn a_held_scale_down_keeps_the_brokers_that_would_go() {
        let mut d = ok("replicas: 3");
        d.hold_brokers(5);
        assert_eq!(d.brokers, 5);
        assert_eq!(sts_spec(&d).replicas, Some(5));
        assert_eq!(d.nodes[3].pod, "kc1-3");
        assert_eq!(d.broker_addresses.len(), 5);
        // Never fewer than the voters.
        d.hold_brokers(1);
        assert_eq!(d.brokers, 3);
        assert_eq!(d.nodes.len(), 3);
    }

    #[test]
    fn more_controllers_than_replicas_is_refused_naming_the_field() {
        let e = desired(&cluster("replicas: 2\ncontrollers: 3")).unwrap_err();
        assert_eq!(e.field, "spec.controllers");
        assert!(e.to_string().starts_with("spec.controllers: "), "{e}");
    }

    #[test]
    fn keys_the_operator_owns_are_refused_with_the_reason() {
        for key in [
            "node.id",
            "listeners",
            "controller.quorum.voters",
            "log.dirs",
            "process.roles",
        ] {
            let e = desired(&cluster(&format!("replicas: 3\nconfig:\n  {key}: x"))).unwrap_err();
            assert_eq!(e.field, format!("spec.config.{key}"));
            assert!(e.reason.starts_with("owned by the operator: "), "{e}");
        }
    }

    #[test]
    fn config_values_must_be_one_line_and_keys_kafka_keys() {
        let multi = desired(&cluster("replicas: 3\nconfig:\n  a.b: \"x\\ny=z\"")).unwrap_err();
        assert_eq!(multi.field, "spec.config.a.b");
        let key = desired(&cluster("replicas: 3\nconfig:\n  \"a=b\": x")).unwrap_err();
        assert_eq!(key.field, "spec.config.a=b");
    }

    #[test]
    fn user_config_is_written_as_text_and_overrides_the_defaults() {
        let d = ok("replicas: 3\nconfig:\n  min.insync.replicas: 1\n  auto.create.topics.enable: 'false'\n  \
                    log.cleaner.min.cleanable.ratio: '0.25'\n  compression.type: zstd\n  ssl.keystore.location: 'C:\\k'");
        let p = properties(&d);
        assert_eq!(p["min.insync.replicas"], "1");
        assert_eq!(p["auto.create.topics.enable"], "false");
        assert_eq!(p["log.cleaner.min.cleanable.ratio"], "0.25");
        assert_eq!(p["compression.type"], "zstd");
        assert_eq!(p["ssl.keystore.location"], "C:\\k");
        let text = &d.config_map.data.as_ref().expect("data")["server.properties"];
        assert!(
            text.contains("ssl.keystore.location=C:\\\\k\n"),
            "backslash escaped for Java: {text}"
        );
    }

    #[test]
    fn the_config_hash_follows_what_brokers_read_and_not_the_replica_count() {
        let base = hash(&ok("replicas: 3"));
        assert_eq!(base, hash(&ok("replicas: 3")), "deterministic");
        assert_ne!(
            base,
            hash(&ok("replicas: 3\nconfig:\n  num.partitions: 16"))
        );
        assert_ne!(base, hash(&ok("replicas: 3\nimage: oxbow-broker:other")));
        // Brokers beyond the voters change no broker's configuration.
        assert_eq!(base, hash(&ok("replicas: 4\ncontrollers: 3")));
    }

    #[test]
    fn cluster_wide_dynamic_configs_change_without_a_restart_and_others_roll() {
        let base = ok("replicas: 3");
        assert_eq!(
            base.dynamic_config,
            BTreeMap::from([("min.insync.replicas".to_string(), "2".to_string())])
        );
        assert_eq!(base.config_hash, hash(&base));
        let dynamic = ok("replicas: 3\nconfig:\n  log.retention.ms: 3600000\n  message.max.bytes: 2000000\n  min.insync.replicas: 1");
        assert_eq!(
            hash(&base),
            hash(&dynamic),
            "dynamic keys stay out of the hash"
        );
        assert_eq!(dynamic.dynamic_config["log.retention.ms"], "3600000");
        assert_eq!(dynamic.dynamic_config["message.max.bytes"], "2000000");
        assert_eq!(dynamic.dynamic_config["min.insync.replicas"], "1");
        // The file has them too: a restarted broker starts with them.
        assert_eq!(properties(&dynamic)["log.retention.ms"], "3600000");
        // Read-only (num.partitions), per-broker or unknown keys need a restart.
        for restart in [
            "num.partitions: 2",
            "log.retention.hours: 1",
            "ssl.keystore.type: PKCS12",
            "some.plugin.key: x",
        ] {
            let d = ok(&format!("replicas: 3\nconfig:\n  {restart}"));
            assert_ne!(hash(&base), hash(&d), "{restart} must roll");
            assert_eq!(d.dynamic_config, base.dynamic_config, "{restart}");
        }
    }

    /// The operator's list is what the broker takes at runtime as a cluster-wide default: a key
    /// the broker refuses dynamically would never be applied, and one missing here would roll
    /// for nothing.
    #[test]
    fn the_dynamic_keys_are_the_brokers_cluster_wide_keys_without_passwords() {
        use oxbow_broker::config::{broker_config_keys, ConfigType, UpdateMode};
        let broker: Vec<&str> = broker_config_keys()
            .iter()
            .filter(|k| k.update_mode == UpdateMode::ClusterWide)
            .filter(|k| k.config_type != ConfigType::Password)
            .map(|k| k.name)
            .collect();
        assert_eq!(CLUSTER_WIDE_DYNAMIC_KEYS, broker.as_slice());
        let mut sorted = CLUSTER_WIDE_DYNAMIC_KEYS.to_vec();
        sorted.sort_unstable();
        assert_eq!(
            sorted, CLUSTER_WIDE_DYNAMIC_KEYS,
            "sorted for binary_search"
        );
    }

    #[test]
    fn persistent_claims_are_kept_unless_delete_claim_and_ephemeral_is_an_empty_dir() {
        let d = ok("replicas: 3\nstorage: {type: persistent-claim, size: 10Gi, class: fast}");
        let s = sts_spec(&d);
        let claim = &s.volume_claim_templates.as_ref().expect("claims")[0];
        let cs = claim.spec.as_ref().expect("claim spec");
        assert_eq!(cs.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            cs.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .expect("requests")["storage"]
                .0,
            "10Gi"
        );
        let retention = s
            .persistent_volume_claim_retention_policy
            .as_ref()
            .expect("retention");
        assert_eq!(retention.when_deleted.as_deref(), Some("Retain"));
        assert_eq!(retention.when_scaled.as_deref(), Some("Retain"));
        let deleting =
            ok("replicas: 3\nstorage: {type: persistent-claim, size: 1Gi, deleteClaim: true}");
        assert_eq!(
            sts_spec(&deleting)
                .persistent_volume_claim_retention_policy
                .as_ref()
                .and_then(|r| r.when_deleted.as_deref()),
            Some("Delete")
        );
        let eph = ok("replicas: 3");
        assert!(sts_spec(&eph).volume_claim_templates.is_none());
        let volumes = pod_spec(&eph).volumes.as_ref().expect("volumes");
        assert!(volumes
            .iter()
            .any(|v| v.name == "data" && v.empty_dir.is_some()));
        let missing =
            desired(&cluster("replicas: 3\nstorage: {type: persistent-claim}")).unwrap_err();
        assert_eq!(missing.field, "spec.storage.size");
    }

    #[test]
    fn listeners_get_a_bootstrap_service_each_whose_port_is_its_target_port() {
        let d = ok("replicas: 3\nlisteners:\n- {name: plain, port: 9092}\n- {name: ext, port: 9094, type: nodeport}");
        assert_eq!(d.bootstrap_services.len(), 2);
        let ext = &d.bootstrap_services[1];
        assert_eq!(ext.metadata.name.as_deref(), Some("kc1-ext-bootstrap"));
        let spec = ext.spec.as_ref().expect("spec");
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        let port = &spec.ports.as_ref().expect("ports")[0];
        assert_eq!(
            (port.port, port.target_port.clone()),
            (9094, Some(IntOrString::Int(9094)))
        );
        assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        // Each broker: its own NodePort Service for the external listener, and the broker
        // waits for the addresses the operator writes onto its pod (crate::external).
        let names: Vec<_> = d
            .broker_services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "kc1-0",
                "kc1-0-ext",
                "kc1-1",
                "kc1-1-ext",
                "kc1-2",
                "kc1-2-ext"
            ]
        );
        let own = d.broker_services[3].spec.as_ref().expect("spec");
        assert_eq!(own.type_.as_deref(), Some("NodePort"));
        assert_eq!(
            own.selector.as_ref().expect("selector")["statefulset.kubernetes.io/pod-name"],
            "kc1-1"
        );
        assert_eq!(
            d.internal_advertised(1, &cluster("replicas: 3").spec.listeners),
            [
                "PLAIN://kc1-1.ns1.svc.cluster.local:9092",
                "CONTROLLER://kc1-1.kc1-brokers.ns1.svc.cluster.local:9093"
            ]
        );
        let args = pod_spec(&d).containers[0].args.clone().expect("args");
        assert!(
            args.iter()
                .any(|a| a.starts_with("advertised.listeners=PLAIN://") && !a.contains("EXT://")),
            "external addresses come from the annotation: {args:?}"
        );
        assert!(pod_spec(&d)
            .volumes
            .iter()
            .flatten()
            .any(|v| v.name == "podinfo"));
        let p = properties(&d);
        assert_eq!(
            p[external::ANNOTATION_KEY],
            external::ADVERTISED_LISTENERS_ANNOTATION
        );
        assert_eq!(
            p[external::POD_ANNOTATIONS_FILE_KEY],
            rack::ANNOTATIONS_FILE
        );
        assert!(
            !p.contains_key(rack::ANNOTATIONS_FILE_KEY),
            "that key makes the broker wait for a rack"
        );
        assert_eq!(
            p["listener.security.protocol.map"],
            "PLAIN:PLAINTEXT,EXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        );
        // The readiness probe and inter-broker traffic use the first internal listener.
        let ext_first = ok("replicas: 1\nlisteners:\n- {name: ext, port: 9094, type: loadbalancer}\n- {name: repl, port: 9095}");
        assert_eq!(properties(&ext_first)["inter.broker.listener.name"], "REPL");
        let probe = pod_spec(&ext_first).containers[0]
            .readiness_probe
            .as_ref()
            .and_then(|p| p.tcp_socket.as_ref())
            .expect("probe");
        assert_eq!(probe.port, IntOrString::Int(9095));
        assert_eq!(
            ext_first.broker_addresses,
            vec!["kc1-0.kc1-brokers.ns1.svc.cluster.local:9095"]
        );
    }

    #[test]
    fn listener_mistakes_are_refused_naming_the_listener() {
        let none_internal = desired(&cluster(
            "replicas: 1\nlisteners:\n- {name: ext, port: 9094, type: nodeport}",
        ))
        .unwrap_err();
        assert_eq!(none_internal.field, "spec.listeners");
        let controller = desired(&cluster(
            "replicas: 1\nlisteners:\n- {name: plain, port: 9093}",
        ))
        .unwrap_err();
        assert_eq!(controller.field, "spec.listeners[0].port");
        let dup = desired(&cluster(
            "replicas: 1\nlisteners:\n- {name: a, port: 9092}\n- {name: a, port: 9094}",
        ))
        .unwrap_err();
        assert_eq!(dup.field, "spec.listeners[1]");
    }

    #[test]
    fn template_additions_reach_the_pods_and_the_operators_labels_win() {
        let d = ok("replicas: 3\ntemplate:\n  labels: {team: data, app.kubernetes.io/instance: other}\n  \
                    annotations: {a: b}\n  priorityClassName: high\n  \
                    tolerations: [{key: dedicated, operator: Equal, value: kafka, effect: NoSchedule}]\n\
                    resources: {limits: {memory: 2Gi}}");
        let meta = sts_spec(&d).template.metadata.as_ref().expect("meta");
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["team"], "data");
        assert_eq!(labels["app.kubernetes.io/instance"], "kc1");
        assert_eq!(meta.annotations.as_ref().expect("annotations")["a"], "b");
        let pod = pod_spec(&d);
        assert_eq!(pod.priority_class_name.as_deref(), Some("high"));
        assert_eq!(
            pod.tolerations.as_ref().expect("tolerations")[0]
                .key
                .as_deref(),
            Some("dedicated")
        );
        let limits = pod.containers[0]
            .resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .expect("limits");
        assert_eq!(limits["memory"].0, "2Gi");
        // The selector is the operator's: a user label cannot take the pods out of it.
        assert_eq!(
            sts_spec(&d)
                .selector
                .match_labels
                .as_ref()
                .expect("selector")["app.kubernetes.io/instance"],
            "kc1"
        );
    }

    #[test]
    fn rack_awareness_mounts_the_pods_annotations_and_names_them_to_the_broker() {
        let d = ok(
            "replicas: 4\ncontrollers: 3\nrack: {topologyKey: topology.kubernetes.io/zone}\n\
                    template: {annotations: {oxbow.dev/rack: mine, a: b}}",
        );
        let p = properties(&d);
        assert_eq!(p["oxbow.rack.annotations.file"], "/etc/podinfo/annotations");
        assert_eq!(p["oxbow.rack.annotation"], "oxbow.dev/rack");
        assert!(
            !p.contains_key("broker.rack"),
            "each broker's rack is its own"
        );
        let set = &d.stateful_set;
        let template = &set.spec.as_ref().expect("spec").template;
        let pod = template.spec.as_ref().expect("pod");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "podinfo")
            .expect("a podinfo volume");
        let files = volume
            .downward_api
            .as_ref()
            .and_then(|d| d.items.as_ref())
            .expect("downward API items");
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].path, "annotations");
        assert_eq!(
            files[0].field_ref.as_ref().map(|f| f.field_path.as_str()),
            Some("metadata.annotations")
        );
        let mount = pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.name == "podinfo")
            .expect("mounted");
        assert_eq!(mount.mount_path, "/etc/podinfo");
        assert_eq!(mount.read_only, Some(true));
        // Only the operator says a pod's rack: a template value would be read first.
        let annotations = template
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.as_ref())
            .expect("annotations");
        assert!(
            !annotations.contains_key("oxbow.dev/rack"),
            "{annotations:?}"
        );
        assert_eq!(annotations["a"], "b");
        // Setting, changing or removing spec.rack changes what brokers read at start: they roll.
        let zone =
            ok("replicas: 4\ncontrollers: 3\nrack: {topologyKey: topology.kubernetes.io/zone}");
        let host = ok("replicas: 4\ncontrollers: 3\nrack: {topologyKey: kubernetes.io/hostname}");
        let none = ok("replicas: 4\ncontrollers: 3");
        assert_ne!(zone.config_hash, none.config_hash);
        // Another label gives the brokers other racks, which they take at start only.
        assert_ne!(zone.config_hash, host.config_hash);
    }

    #[test]
    fn without_spec_rack_there_is_no_rack_volume_or_key() {
        let d = ok("replicas: 3");
        let p = properties(&d);
        assert!(!p.keys().any(|k| k.starts_with("oxbow.rack.")), "{p:?}");
        let pod = pod_spec(&d);
        assert!(pod
            .volumes
            .iter()
            .flatten()
            .all(|v| v.downward_api.is_none()));
        assert!(pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .all(|m| m.mount_path != "/etc/podinfo"));
    }

    #[test]
    fn the_rack_keys_are_the_operators() {
        for key in [
            "broker.rack",
            "oxbow.rack.annotations.file",
            "oxbow.rack.annotation",
        ] {
            let e = desired(&cluster(&format!(
                "replicas: 3\nrack: {{topologyKey: zone}}\nconfig:\n  {key}: x"
            )))
            .unwrap_err();
            assert_eq!(e.field, format!("spec.config.{key}"));
            assert!(e.reason.contains("spec.rack"), "{e}");
        }
    }

    /// The examples the README points at are valid KafkaClusters the operator can lay out.
    #[test]
    fn the_examples_are_valid_clusters() {
        for (file, text) in [
            (
                "examples/kafka-cluster.yaml",
                include_str!("../../examples/kafka-cluster.yaml"),
            ),
            (
                "examples/kafka-cluster-production.yaml",
                include_str!("../../examples/kafka-cluster-production.yaml"),
            ),
        ] {
            let mut c: KafkaCluster =
                serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
            c.metadata.namespace = Some("ns1".into());
            c.metadata.uid = Some("uid-1".into());
            let d = desired(&c).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(d.brokers, 3, "{file}");
            assert!(d.warnings.is_empty(), "{file}: {:?}", d.warnings);
        }
    }
}
