//! `KafkaTopic` (`oxbow.dev/v1alpha1`, short name `kt`): topics managed from manifests, with
//! Kubernetes as the source of truth.
//!
//! - [`crd`]: the resource's types (the CRD is generated from them).
//! - [`plan`]: what to change in Kafka, a pure function of the manifest and Kafka's state,
//!   with the replica placement for replication factor changes.
//! - [`admin`]: the Kafka admin calls (CreateTopics, CreatePartitions,
//!   IncrementalAlterConfigs, AlterPartitionReassignments, DeleteTopics, ...).
//!   Describe, create and delete calls of concurrent passes are coalesced by [`batch`] into
//!   one request for many topics.
//! - [`controller`]: the reconcile loop, with the finalizer that deletes the topic.

pub mod admin;
pub mod batch;
pub mod controller;
pub mod crd;
pub mod plan;

pub use crd::{KafkaTopic, KafkaTopicSpec, KafkaTopicStatus};
