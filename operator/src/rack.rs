//! Rack awareness (`spec.rack.topologyKey`): each broker's `broker.rack` is the value of that
//! label on the node its pod runs on, so the controller's rack-aware placement spreads replicas
//! over racks and rack-aware clients fetch from their own.
//!
//! Strimzi does it with an init container that asks the API server for its node's labels and
//! writes `broker.rack` into the config. Oxbow's broker image is distroless (no shell, no
//! kubectl) and its pods get no API access, so the work is split where the access already is:
//!
//! 1. the operator, which watches the broker pods anyway and may `get` Nodes (the chart's
//!    RBAC), copies the node's label onto every bound broker pod as [`RACK_ANNOTATION`]
//!    ([`rack_annotation`] decides, the reconcile loop patches);
//! 2. the pod template mounts the pod's annotations as a downward-API file
//!    ([`ANNOTATIONS_FILE`]) and names it to the broker (`oxbow.rack.annotations.file`);
//! 3. the broker waits at start until that file holds the annotation and takes its value as
//!    `broker.rack` (`oxbow_broker::config::rack`). The kubelet rewrites downward-API files when
//!    annotations change, so a container started before the operator annotated its pod sees it.
//!
//! A pod keeps the rack it started with: a node label changed later is copied onto the pod
//! (the annotation follows the node) but reaches the broker only when it restarts, as in
//! Strimzi, whose init container runs only at pod start.

use std::collections::BTreeMap;

/// The pod annotation holding the broker's rack, copied from its node's label.
pub const RACK_ANNOTATION: &str = "oxbow.dev/rack";

/// Where the downward-API volume with the pod's annotations is mounted. Not under
/// `/etc/oxbow`: that is the ConfigMap's read-only volume, in which a runtime cannot create
/// the mount point of another volume.
pub const POD_INFO_DIR: &str = "/etc/podinfo";

/// The file of that volume holding `metadata.annotations`.
pub const ANNOTATIONS_FILE: &str = "/etc/podinfo/annotations";

/// The broker key naming the annotations file (the broker's `RACK_ANNOTATIONS_FILE_KEY`).
pub const ANNOTATIONS_FILE_KEY: &str = "oxbow.rack.annotations.file";

/// The broker key naming the annotation (the broker's `RACK_ANNOTATION_KEY`).
pub const ANNOTATION_KEY: &str = "oxbow.rack.annotation";

/// What to do about one broker pod's [`RACK_ANNOTATION`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RackAnnotation {
    /// The pod already carries its node's rack.
    Keep,
    /// Set the annotation to this value (missing, or the node's label changed).
    Set(String),
    /// The node has no such label, or an empty one: there is no rack to give; the broker keeps
    /// waiting at start, and the cluster gets a Warning naming the node.
    NodeUnlabelled,
}

/// The annotation a broker pod bound to a node with `node_labels` should carry, given the one
/// it has (`current`) and the KafkaCluster's `topology_key`. Kafka takes any non-empty text
/// as a rack, so the label's value is used as it is.
pub fn rack_annotation(
    topology_key: &str,
    node_labels: &BTreeMap<String, String>,
    current: Option<&str>,
) -> RackAnnotation {
    match node_labels.get(topology_key).map(String::as_str) {
        None | Some("") => RackAnnotation::NodeUnlabelled,
        Some(rack) if current == Some(rack) => RackAnnotation::Keep,
        Some(rack) => RackAnnotation::Set(rack.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONE: &str = "topology.kubernetes.io/zone";

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_pod_gets_its_nodes_label_once() {
        let node = labels(&[(ZONE, "zone-a"), ("kubernetes.io/hostname", "n1")]);
        assert_eq!(
            rack_annotation(ZONE, &node, None),
            RackAnnotation::Set("zone-a".into())
        );
        assert_eq!(
            rack_annotation(ZONE, &node, Some("zone-a")),
            RackAnnotation::Keep,
            "nothing is written when it is there already"
        );
    }

    #[test]
    fn the_annotation_follows_a_changed_label() {
        let node = labels(&[(ZONE, "zone-b")]);
        assert_eq!(
            rack_annotation(ZONE, &node, Some("zone-a")),
            RackAnnotation::Set("zone-b".into())
        );
    }

    #[test]
    fn a_node_without_the_label_or_with_an_empty_one_gives_no_rack() {
        let other = labels(&[("kubernetes.io/hostname", "n1"), ("zone", "zone-a")]);
        assert_eq!(
            rack_annotation(ZONE, &other, None),
            RackAnnotation::NodeUnlabelled
        );
        let empty = labels(&[(ZONE, "")]);
        assert_eq!(
            rack_annotation(ZONE, &empty, Some("zone-a")),
            RackAnnotation::NodeUnlabelled,
            "an empty label does not overwrite a rack"
        );
    }

    /// The broker reads the keys and the annotation the operator writes.
    #[test]
    fn the_names_are_the_brokers() {
        use oxbow_broker::config::{
            broker_config_key, DEFAULT_RACK_ANNOTATION, RACK_ANNOTATIONS_FILE_KEY,
            RACK_ANNOTATION_KEY,
        };
        assert_eq!(ANNOTATIONS_FILE_KEY, RACK_ANNOTATIONS_FILE_KEY);
        assert_eq!(ANNOTATION_KEY, RACK_ANNOTATION_KEY);
        assert_eq!(RACK_ANNOTATION, DEFAULT_RACK_ANNOTATION);
        assert!(broker_config_key(ANNOTATIONS_FILE_KEY).is_some());
        assert!(ANNOTATIONS_FILE.starts_with(&format!("{POD_INFO_DIR}/")));
    }
}
