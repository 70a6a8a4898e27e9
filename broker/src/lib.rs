//! oxbow-broker: a broker that speaks the Apache Kafka wire protocol.
//!
//! Modules by concern:
//! - [`config`]: `server.properties` parsing, Kafka's defaults, topic configs and how
//!   DescribeConfigs reports them.
//! - [`log`]: durable segmented partition logs (segments, indexes, recovery, retention).
//! - [`group`]: the group coordinator (membership, rebalances, committed offsets).
//! - [`txn`]: the transaction coordinator's record formats and state machine.
//! - [`controller`]: the controller's decisions (placement, elections, fencing, ISR changes,
//!   reassignment) as pure functions, and the active-controller service.
//! - [`metadata`]: cluster metadata (topics, partitions, configs) behind one interface.
//! - [`reaction`]: how this node reacts to committed metadata (pure diff of two images).
//! - [`replica`]: hosted partitions, the fetches waiting on them, fetch sessions.
//! - [`server`]: listener, connections, framing and routing of requests.
//! - [`api`]: one handler per Kafka API.
//! - [`error`], [`time`]: what several layers share (Kafka-level errors, the clock), kept
//!   below them so that imports only point down.

pub mod api;
pub mod broker;
pub mod codec;
pub mod config;
pub mod controller;
pub mod controller_node;
pub mod error;
pub mod fd_budget;
pub mod group;
pub mod lifecycle;
pub mod log;
pub mod metadata;
pub mod metrics;
pub mod reaction;
pub mod replica;
pub mod server;
pub mod time;
pub mod txn;
