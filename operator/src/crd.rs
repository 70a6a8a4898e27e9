//! The `KafkaCluster` custom resource (`oxbow.dev/v1alpha1`, short name `kc`): what the user
//! asks for (spec) and what the operator observed (status).
//!
//! The schema the API server validates against is generated from these types (`crdgen`), so a
//! bad spec is refused by `kubectl apply` with the field named, before the operator sees it.
//! Everything but `replicas` has a default.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// The annotation that stops reconciliation of a KafkaCluster while it is `"true"`
/// (Strimzi's `strimzi.io/pause-reconciliation`, under our group).
pub const PAUSE_ANNOTATION: &str = "oxbow.dev/pause-reconciliation";

/// The annotation that restarts pods on demand while it is `"true"` (Strimzi's
/// `strimzi.io/manual-rolling-update`, under our group): on the KafkaCluster every broker pod
/// (the operator moves it onto each pod and removes it from the KafkaCluster), on a pod that
/// pod. The replacement pod does not carry it, so it is gone once the pod has restarted.
pub const MANUAL_ROLLING_UPDATE_ANNOTATION: &str = "oxbow.dev/manual-rolling-update";

/// The broker image used when `spec.image` is not set: this release's broker.
pub const DEFAULT_IMAGE: &str = concat!("oxbow-broker:", env!("CARGO_PKG_VERSION"));

/// The port of the `CONTROLLER` listener every node binds for the KRaft quorum. Users' listeners
/// may not take it.
pub const CONTROLLER_PORT: i32 = 9093;
/// The port every broker serves Prometheus metrics on (`oxbow.metrics.listener`): 9404, where
/// Strimzi's brokers serve theirs, so scrape configs written for them find it.
pub const METRICS_PORT: i32 = 9404;

/// Broker config keys the operator sets itself, with the reason a user may not: they follow
/// from the pod's ordinal, from `spec.listeners`, `spec.controllers` or `spec.storage`, and a
/// user value would break the cluster's layout. The CRD's CEL rule on `spec.config` refuses
/// them at `kubectl apply`; [`crate::desired`] refuses them again for objects stored before.
pub const OWNED_CONFIG_KEYS: &[(&str, &str)] = &[
    ("node.id", "the node id is the pod's ordinal"),
    ("broker.id", "the node id is the pod's ordinal"),
    ("process.roles", "follows from spec.controllers"),
    ("controller.quorum.voters", "follows from spec.controllers"),
    (
        "controller.quorum.bootstrap.servers",
        "follows from spec.controllers",
    ),
    ("oxbow.initial.controllers", "follows from spec.controllers"),
    (
        "oxbow.advertised.listeners.annotation",
        "external listeners' addresses are written by the operator",
    ),
    (
        "oxbow.pod.annotations.file",
        "external listeners' addresses are written by the operator",
    ),
    (
        "controller.listener.names",
        "the operator's CONTROLLER listener",
    ),
    ("listeners", "follows from spec.listeners"),
    (
        "oxbow.metrics.listener",
        "every broker serves metrics on port 9404 of its pod",
    ),
    ("advertised.listeners", "follows from spec.listeners"),
    (
        "listener.security.protocol.map",
        "follows from spec.listeners",
    ),
    (
        "inter.broker.listener.name",
        "the first internal listener of spec.listeners",
    ),
    (
        "security.inter.broker.protocol",
        "the first internal listener of spec.listeners",
    ),
    (
        "broker.rack",
        "follows from spec.rack: the label spec.rack.topologyKey of each broker's node",
    ),
    (
        "oxbow.rack.annotations.file",
        "the operator's downward-API file of the pod's annotations, with spec.rack",
    ),
    (
        "oxbow.rack.annotation",
        "the operator's pod annotation oxbow.dev/rack, with spec.rack",
    ),
    ("log.dirs", "follows from spec.storage"),
    ("log.dir", "follows from spec.storage"),
    ("metadata.log.dir", "follows from spec.storage"),
];

/// The desired state of an Oxbow cluster: `replicas` brokers, the first `controllers` of which
/// are also KRaft voters.
#[derive(CustomResource, schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oxbow.dev",
    version = "v1alpha1",
    kind = "KafkaCluster",
    plural = "kafkaclusters",
    shortname = "kc",
    namespaced,
    status = "KafkaClusterStatus",
    printcolumn = r#"{"name":"Desired", "type":"integer", "description":"brokers asked for", "jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready-Brokers", "type":"integer", "description":"brokers whose pods are ready", "jsonPath":".status.readyBrokers"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Controller", "type":"integer", "description":"node id of the active controller", "jsonPath":".status.controllerId"}"#,
    printcolumn = r#"{"name":"Age", "type":"date", "jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "!has(self.controllers) || self.controllers <= self.replicas", "message": "spec.controllers must not exceed spec.replicas", "fieldPath": ".controllers"}]))]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterSpec {
    /// How many brokers (pods) the cluster has.
    #[schemars(range(min = 1, max = 1000))]
    pub replicas: i32,
    /// How many of the brokers (those with the lowest ordinals) are KRaft voters. Default: 3, or
    /// `replicas` when fewer. A change is carried out on the running quorum, one voter at a
    /// time and without a restart (KIP-853's AddRaftVoter and RemoveRaftVoter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 9))]
    pub controllers: Option<i32>,
    /// The broker image. Default: this operator release's `oxbow-broker`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,
    /// The client listeners. Default: one internal listener `plain` on port 9092. At least one
    /// must be `internal`: the first internal one carries replication between brokers.
    #[serde(default = "default_listeners")]
    #[schemars(length(min = 1, max = 8))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.all(l, self.exists_one(m, m.name == l.name))", "message": "listener names must be unique"}, {"rule": "self.all(l, self.exists_one(m, m.port == l.port))", "message": "listener ports must be unique"}, {"rule": "self.exists(l, l.type == 'internal')", "message": "at least one listener must be of type internal (replication between brokers uses the first)"}]))]
    pub listeners: Vec<Listener>,
    /// Where brokers keep their logs. Default: ephemeral (an emptyDir: data is lost with the pod).
    #[serde(default)]
    pub storage: Storage,
    /// Broker configuration (`server.properties` keys). Keys the operator owns are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self.all(k, !(k in ['node.id', 'broker.id', 'process.roles', 'controller.quorum.voters', 'controller.quorum.bootstrap.servers', 'oxbow.initial.controllers', 'controller.listener.names', 'listeners', 'advertised.listeners', 'listener.security.protocol.map', 'inter.broker.listener.name', 'security.inter.broker.protocol', 'log.dirs', 'log.dir', 'metadata.log.dir', 'oxbow.metrics.listener', 'broker.rack', 'oxbow.rack.annotations.file', 'oxbow.rack.annotation', 'oxbow.advertised.listeners.annotation', 'oxbow.pod.annotations.file']))", "message": "spec.config sets a key the operator owns (node.id, broker.id, process.roles, controller.*, oxbow.initial.controllers, listeners, advertised.listeners, listener.security.protocol.map, inter.broker.listener.name, security.inter.broker.protocol, log.dirs, log.dir, metadata.log.dir, oxbow.metrics.listener, broker.rack, oxbow.rack.*, oxbow.advertised.listeners.annotation, oxbow.pod.annotations.file): use spec.replicas, spec.controllers, spec.listeners, spec.storage or spec.rack instead"}]))]
    pub config: BTreeMap<String, ConfigValue>,
    /// CPU and memory of the broker container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Rack awareness: each broker's `broker.rack` is the value of a label of the node its pod
    /// runs on, so that replicas are spread over racks (zones) and rack-aware clients fetch
    /// from the nearest replica. Unset: brokers have no rack. Changing it restarts the brokers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<Rack>,
    /// What goes into the broker pods' template besides the operator's own fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplate>,
}

/// Where brokers' racks come from (Strimzi's `spec.kafka.rack`).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rack {
    /// The node label whose value is a broker's rack, e.g. `topology.kubernetes.io/zone`. A
    /// broker whose node lacks it waits at start until the label is there (a `Warning` says
    /// which node).
    #[schemars(
        length(min = 1, max = 317),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
        )
    )]
    pub topology_key: String,
}

/// A `spec.config` value: text or a whole number (`x-kubernetes-int-or-string`), written to
/// `server.properties` as its text. Booleans and fractions are written quoted (`"false"`,
/// `"0.5"`): the API server can check the config's keys with CEL only when its values have a
/// declared type, and int-or-string is the widest one a structural schema allows.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A whole number.
    Int(i64),
    /// Text, written as given.
    String(String),
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Int(i) => write!(f, "{i}"),
            ConfigValue::String(s) => f.write_str(s),
        }
    }
}

impl schemars::JsonSchema for ConfigValue {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ConfigValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "A string or a whole number, written to server.properties as text (quote booleans and fractions).",
        })
    }
}

/// A client listener of every broker.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.port != 9093", "message": "port 9093 is the operator's CONTROLLER listener", "fieldPath": ".port"}, {"rule": "self.port != 9404", "message": "port 9404 is where every broker serves its metrics", "fieldPath": ".port"}]))]
pub struct Listener {
    /// The listener's name; its Kafka listener name is the upper-case form (`plain` → `PLAIN`).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9]{0,24}$"), length(max = 25))]
    pub name: String,
    /// The port brokers listen on, and the port of its bootstrap Service.
    #[schemars(range(min = 1024, max = 65535))]
    pub port: i32,
    /// How clients reach it.
    #[serde(rename = "type", default)]
    pub kind: ListenerType,
}

/// How clients reach a listener.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum ListenerType {
    /// From inside the Kubernetes cluster, through the pods' DNS names.
    #[default]
    Internal,
    /// Through a NodePort Service (bootstrap only in this release: brokers advertise their
    /// internal names; a Warning says so).
    Nodeport,
    /// Through a LoadBalancer Service (bootstrap only in this release, as `nodeport`).
    Loadbalancer,
}

fn default_listeners() -> Vec<Listener> {
    vec![Listener {
        name: "plain".to_string(),
        port: 9092,
        kind: ListenerType::Internal,
    }]
}

/// Where brokers keep their logs.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "self.type != 'persistent-claim' || has(self.size)", "message": "storage of type persistent-claim needs a size", "fieldPath": ".size"}]))]
#[serde(rename_all = "camelCase")]
pub struct Storage {
    /// `ephemeral` (emptyDir) or `persistent-claim` (a PersistentVolumeClaim per broker).
    #[serde(rename = "type", default)]
    pub kind: StorageType,
    /// Size of each broker's claim, a Kubernetes quantity such as `10Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: Option<String>,
    /// StorageClass of the claims; the cluster's default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// Whether the claims are deleted with the KafkaCluster (default: kept).
    #[serde(default)]
    pub delete_claim: bool,
}

/// Kinds of storage.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
#[serde(rename_all = "kebab-case")]
pub enum StorageType {
    /// An emptyDir: the data goes with the pod.
    #[default]
    Ephemeral,
    /// A PersistentVolumeClaim per broker, kept across pod restarts.
    PersistentClaim,
}

/// Additions to the broker pods.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodTemplate {
    /// Extra pod labels (the operator's own `app.kubernetes.io/*` and `oxbow.dev/*` win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations (the operator's own `oxbow.dev/*` win).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Pod affinity rules, as in a pod spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// Pod tolerations, as in a pod spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// The pods' PriorityClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
}

/// What the operator observed, in Strimzi's shape (conditions with reasons).
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaClusterStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `ReconciliationPaused` and non-blocking `Warning`s.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Bootstrap addresses per listener.
    #[serde(default)]
    pub listeners: Vec<ListenerStatus>,
    /// The cluster id the brokers answer with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Node id of the active controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_id: Option<i32>,
    /// How many brokers' pods are ready.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Each broker's state.
    #[serde(default)]
    pub brokers: Vec<BrokerStatus>,
    /// The rolling restart in progress; `null` when every pod runs the current configuration.
    /// (Serialised even when `None`: the status is written as a merge patch, where only an
    /// explicit `null` removes a field.)
    #[serde(default)]
    pub rolling_update: Option<RollingUpdateStatus>,
    /// The node ids the replicas were last spread over. When `spec.replicas` names another
    /// set (a scale-up or a scale-down), the operator rebalances onto it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balanced_brokers: Option<Vec<i32>>,
    /// The rebalance in progress; `null` when the replicas are spread over `balancedBrokers`.
    /// (Serialised even when `None`, as `rollingUpdate`.)
    #[serde(default)]
    pub rebalance: Option<RebalanceStatus>,
    /// The metadata quorum's voters (node ids) as the active controller lists them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voters: Option<Vec<i32>>,
    /// While the voters are not the first `spec.controllers` brokers: the voter change just
    /// made, or what the next one waits for. `null` when they are. (Serialised even when
    /// `None`, as `rollingUpdate`.)
    #[serde(default)]
    pub quorum_change: Option<String>,
}

/// A rebalance in progress: the operator's planner ([`crate::rebalance`]) spreads every
/// topic's replicas and preferred leaders over `brokers`, and the operator moves them with
/// AlterPartitionReassignments, one batch at a time, then elects the preferred leaders.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceStatus {
    /// The node ids the replicas are being spread over.
    pub brokers: Vec<i32>,
    /// When the rebalance began (RFC 3339).
    pub started_at: String,
    /// Partitions whose reassignment the operator has started so far.
    #[serde(default)]
    pub partitions_reassigned: i32,
    /// Partitions the planner still moves or reorders, as of the last pass.
    #[serde(default)]
    pub partitions_left: i32,
    /// What the rebalance waits for (reassignments in progress, a broker not ready), or why it
    /// cannot go on. `null` when not waiting.
    #[serde(default)]
    pub waiting: Option<String>,
}

/// A rolling restart in progress: pods are restarted one at a time, the active controller
/// last, never one whose restart would take a partition below `min.insync.replicas`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RollingUpdateStatus {
    /// When the roll began (RFC 3339).
    pub started_at: String,
    /// Pods that still run an old configuration (or are marked for a manual restart).
    #[serde(default)]
    pub pods_left: Vec<String>,
    /// Pods restarted so far in this roll, in order.
    #[serde(default)]
    pub restarted: Vec<String>,
    /// Why no pod is restarted now, while the roll waits (a broker not ready, not back in an
    /// ISR yet, a partition at its `min.insync.replicas`). `null` when not waiting (written
    /// out: the merge patch of the status would keep an old reason otherwise).
    #[serde(default)]
    pub waiting: Option<String>,
}

/// A condition, as Kubernetes' `metav1.Condition`.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Warning` or `ReconciliationPaused`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What a human needs to know.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `status` last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

impl Condition {
    /// A condition as observed now, keeping `lastTransitionTime` from `old` when a condition
    /// of the same type already had this status and reason (it did not transition).
    pub fn observed(
        old: &[Condition],
        kind: &str,
        status: &str,
        reason: &str,
        message: &str,
    ) -> Condition {
        let since = old
            .iter()
            .find(|c| c.kind == kind && c.status == status && c.reason.as_deref() == Some(reason))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| k8s_openapi::jiff::Timestamp::now().to_string());
        Condition {
            kind: kind.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_transition_time: Some(since),
        }
    }
}

/// Where clients of one listener bootstrap.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener's name in the spec.
    pub name: String,
    /// `host:port` for `bootstrap.servers`.
    pub bootstrap_servers: String,
}

/// One broker as observed.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BrokerStatus {
    /// Node id (the pod's ordinal).
    pub id: i32,
    /// Pod name.
    pub pod: String,
    /// Whether the pod is ready (its client listener accepts connections).
    pub ready: bool,
    /// Whether the cluster's Metadata lists it.
    pub registered: bool,
    /// Its `process.roles`: `broker,controller` (every broker can be made a voter).
    pub roles: String,
    /// Whether it is a voter of the metadata quorum (else an observer); `null` when no
    /// broker answered DescribeQuorum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voter: Option<bool>,
}

impl KafkaClusterSpec {
    /// `spec.controllers` with its default: 3, or `replicas` when fewer.
    pub fn controllers(&self) -> i32 {
        self.controllers.unwrap_or(self.replicas.clamp(1, 3))
    }

    /// `spec.image` with its default.
    pub fn image(&self) -> &str {
        self.image.as_deref().unwrap_or(DEFAULT_IMAGE)
    }
}

/// Why the operator refuses a key of `spec.config`, if it owns it.
pub fn owned_key_reason(key: &str) -> Option<&'static str> {
    OWNED_CONFIG_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, why)| *why)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn defaults_fill_everything_but_replicas() {
        let spec: KafkaClusterSpec = serde_yaml::from_str("replicas: 3").expect("parses");
        assert_eq!(spec.controllers(), 3);
        assert_eq!(spec.image(), DEFAULT_IMAGE);
        assert_eq!(spec.listeners, default_listeners());
        assert_eq!(spec.storage.kind, StorageType::Ephemeral);
        assert!(!spec.storage.delete_claim);
        let one: KafkaClusterSpec = serde_yaml::from_str("replicas: 1").expect("parses");
        assert_eq!(one.controllers(), 1);
        let two: KafkaClusterSpec = serde_yaml::from_str("replicas: 2").expect("parses");
        assert_eq!(two.controllers(), 2);
        let five: KafkaClusterSpec = serde_yaml::from_str("replicas: 5").expect("parses");
        assert_eq!(five.controllers(), 3);
        assert!(
            serde_yaml::from_str::<KafkaClusterSpec>("controllers: 3").is_err(),
            "replicas is required"
        );
    }

    #[test]
    fn config_values_are_numbers_or_text() {
        let spec: KafkaClusterSpec =
            serde_yaml::from_str("replicas: 1\nconfig: {b: 3, d: x, e: 'false'}").expect("parses");
        assert_eq!(spec.config["b"], ConfigValue::Int(3));
        assert_eq!(spec.config["d"], ConfigValue::String("x".into()));
        assert_eq!(spec.config["e"].to_string(), "false");
    }

    /// The CEL rule in the CRD and the operator's own check refuse the same keys.
    #[test]
    fn the_crds_config_rule_lists_every_owned_key() {
        let crd = serde_json::to_string(&KafkaCluster::crd()).expect("serialises");
        for (key, _) in OWNED_CONFIG_KEYS {
            assert!(crd.contains(&format!("'{key}'")), "CEL rule misses {key}");
        }
        let rules = crd.matches("x-kubernetes-validations").count();
        assert!(
            rules >= 4,
            "expected the CEL rules in the schema, found {rules}"
        );
    }

    #[test]
    fn the_crd_has_its_short_name_status_subresource_and_printer_columns() {
        let crd = KafkaCluster::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("kafkaclusters.oxbow.dev")
        );
        assert_eq!(crd.spec.names.short_names, Some(vec!["kc".to_string()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some());
        let columns: Vec<String> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            columns,
            ["Desired", "Ready-Brokers", "Ready", "Controller", "Age"]
        );
    }
}
