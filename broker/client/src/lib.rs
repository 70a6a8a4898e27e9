//! oxbow-client: a small Kafka protocol client on the `kafka-protocol` codec, for the parts
//! of Oxbow that talk to brokers — followers fetching from leaders, brokers talking to the
//! controller, the operator administering topics, and tests.
//!
//! - [`Connection`]: one broker; ApiVersions handshake, version negotiation, pipelined
//!   requests, bounded responses, per-request timeouts.
//! - [`Client`]: a cluster from bootstrap addresses; Metadata and a cached connection per
//!   broker id.
//! - [`frame`]: Kafka's framing, for code that needs to write or read raw frames.
//!
//! It depends on the codec, tokio and nothing of the broker, so the operator can use it
//! without building a broker.

mod client;
mod connection;
mod error;
pub mod frame;

pub use client::Client;
pub use connection::{Connection, ConnectionConfig, DEFAULT_MAX_RESPONSE_BYTES};
pub use error::{Error, Result};
/// The codec this client speaks, re-exported so users name the same message types.
pub use kafka_protocol;
