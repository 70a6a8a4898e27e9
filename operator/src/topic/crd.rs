//! The `KafkaTopic` custom resource (`oxbow.dev/v1alpha1`, short name `kt`): a topic of the
//! KafkaCluster named by the resource's `oxbow.dev/cluster` label, managed from its manifest
//! (Kubernetes is the source of truth, as in Strimzi's unidirectional topic operator).

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};

use crate::crd::{Condition, ConfigValue};

/// While `"false"`, deleting the KafkaTopic leaves its topic in Kafka (Strimzi's
/// `strimzi.io/managed`, under our group).
pub const MANAGED_ANNOTATION: &str = "oxbow.dev/managed";

/// The finalizer that makes deleting a KafkaTopic delete its topic first.
pub const FINALIZER: &str = "oxbow.dev/topic";

/// The longest topic name Kafka accepts.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// A topic as the user asks for it. Unset fields take the cluster's defaults
/// (`num.partitions`, `default.replication.factor`) when the topic is created.
#[derive(CustomResource, schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "oxbow.dev",
    version = "v1alpha1",
    kind = "KafkaTopic",
    plural = "kafkatopics",
    shortname = "kt",
    namespaced,
    status = "KafkaTopicStatus",
    printcolumn = r#"{"name":"Cluster", "type":"string", "description":"the KafkaCluster (label oxbow.dev/cluster)", "jsonPath":".metadata.labels.oxbow\\.dev/cluster"}"#,
    printcolumn = r#"{"name":"Topic", "type":"string", "description":"the topic's name in Kafka", "jsonPath":".status.topicName"}"#,
    printcolumn = r#"{"name":"Partitions", "type":"integer", "jsonPath":".spec.partitions"}"#,
    printcolumn = r#"{"name":"Replicas", "type":"integer", "description":"replication factor", "jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready", "type":"string", "jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#
)]
#[schemars(extend("x-kubernetes-validations" = [{"rule": "has(oldSelf.topicName) == has(self.topicName)", "message": "spec.topicName cannot be added or removed: Kafka cannot rename a topic (create another KafkaTopic)", "fieldPath": ".topicName"}]))]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicSpec {
    /// The topic's name in Kafka. Default: the resource's name. Kafka names that are not valid
    /// Kubernetes names (`hello_kafka`, `Orders.V2`) go here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), pattern(r"^[a-zA-Z0-9._-]+$"))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self != '.' && self != '..'", "message": "'.' and '..' are not valid topic names"}, {"rule": "self == oldSelf", "message": "spec.topicName cannot be changed: Kafka cannot rename a topic (create another KafkaTopic)"}]))]
    pub topic_name: Option<String>,
    /// Number of partitions. It can be raised, never lowered (Kafka cannot remove partitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000000))]
    pub partitions: Option<i32>,
    /// Replication factor. Changing it reassigns the partitions (placement computed by the
    /// operator, spread over brokers and racks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32767))]
    pub replicas: Option<i32>,
    /// Topic configuration (`retention.ms`, `cleanup.policy`, ...). Keys set on the topic in
    /// Kafka but absent here are reset to the cluster's defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 256))]
    pub config: BTreeMap<String, ConfigValue>,
}

/// What the operator observed, in Strimzi's shape.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTopicStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The topic's name in Kafka.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// The topic's id (base64 of Kafka's UUID, as `kafka-topics.sh --describe` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// `Ready`, `ReconciliationPaused` and non-blocking `Warning`s, with reasons.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// A replication factor change in progress, absent when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_change: Option<ReplicasChange>,
}

/// A replication factor change carried out by a partition reassignment.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasChange {
    /// The replication factor asked for.
    pub target_replicas: i32,
    /// `ongoing` while Kafka is copying replicas.
    pub state: String,
    /// Partitions still being reassigned.
    pub partitions_left: i32,
}

impl KafkaTopic {
    /// The topic's name in Kafka: `spec.topicName`, else the resource's name.
    pub fn topic_name(&self) -> String {
        match &self.spec.topic_name {
            Some(name) => name.clone(),
            None => self.metadata.name.clone().unwrap_or_default(),
        }
    }
}

/// Why `name` is not a valid Kafka topic name, as Kafka's `Topic.validate` would refuse it.
/// The CRD's schema checks `spec.topicName`; this also covers names taken from
/// `metadata.name` (a Kubernetes name can be 253 characters long).
pub fn invalid_topic_name(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a topic name cannot be empty".to_string());
    }
    if name == "." || name == ".." {
        return Some(format!("'{name}' is not a valid topic name"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Some(format!(
            "the topic name is {} characters long, Kafka's limit is {MAX_TOPIC_NAME_LEN}: set \
             spec.topicName",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "'{name}' contains '{c}': topic names use ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn topic_name_defaults_to_the_resource_name() {
        let mut t = KafkaTopic::new(
            "orders",
            serde_yaml::from_str("partitions: 3").expect("spec"),
        );
        assert_eq!(t.topic_name(), "orders");
        t.spec.topic_name = Some("Orders.V2".into());
        assert_eq!(t.topic_name(), "Orders.V2");
    }

    #[test]
    fn invalid_names_are_refused_as_kafka_does() {
        assert_eq!(invalid_topic_name("hello_kafka"), None);
        assert_eq!(invalid_topic_name("Orders.V2"), None);
        assert!(invalid_topic_name("").is_some());
        assert!(invalid_topic_name(".").is_some());
        assert!(invalid_topic_name("..").is_some());
        assert!(invalid_topic_name("a b").is_some());
        assert!(invalid_topic_name(&"a".repeat(249)).is_none());
        let long = invalid_topic_name(&"a".repeat(250)).expect("too long");
        assert!(long.contains("249"), "{long}");
    }

    #[test]
    fn the_crd_has_its_short_name_columns_and_name_rules() {
        let crd = KafkaTopic::crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("kafkatopics.oxbow.dev"));
        assert_eq!(crd.spec.names.short_names, Some(vec!["kt".to_string()]));
        let version = &crd.spec.versions[0];
        let columns: Vec<String> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.clone())
            .collect();
        assert_eq!(
            columns,
            ["Cluster", "Topic", "Partitions", "Replicas", "Ready"]
        );
        let json = serde_json::to_string(&crd).expect("serialises");
        assert!(
            json.contains("^[a-zA-Z0-9._-]+$"),
            "topicName pattern missing"
        );
        assert!(
            json.contains("oldSelf"),
            "topicName immutability rule missing"
        );
    }
}
