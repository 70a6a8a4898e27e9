//! The client's errors: every one names the peer and, where there is one, the API, so a log
//! line says which broker failed which request.

use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// `Result` with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a request got no usable response. Kafka-level failures (error codes inside a
/// response) are not errors here: they are in the decoded response for the caller to read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket failed: connecting, reading or writing.
    #[error("I/O error with {peer}{}: {source}", on_api(*api))]
    Io {
        /// The broker's address.
        peer: String,
        /// The request it happened on, if any.
        api: Option<ApiKey>,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// No response within the request timeout (`request.timeout.ms`), or no connection
    /// within the connection setup timeout. The connection is closed: a late response
    /// would arrive out of order with the next request's.
    #[error("{} to {peer} timed out after {} ms", api.map_or("connecting".to_string(), |a| format!("{a:?}")), timeout.as_millis())]
    Timeout {
        /// The broker's address.
        peer: String,
        /// The request that timed out; `None` while connecting.
        api: Option<ApiKey>,
        /// How long the client waited.
        timeout: Duration,
    },
    /// A request could not be encoded, or a response not decoded at the version it was
    /// sent with, or the peer broke the protocol (a response to no request, a correlation
    /// id out of order). The connection is closed in the last two cases.
    #[error("protocol error with {peer}{}: {message}", on_api(*api))]
    Protocol {
        /// The broker's address.
        peer: String,
        /// The request concerned, if known.
        api: Option<ApiKey>,
        /// What went wrong.
        message: String,
    },
    /// Neither side's version range covers the other's (or the asked-for version is outside
    /// them): the request was not sent.
    #[error("{peer} serves {api:?} versions {}, this client encodes {}..={}{}", broker_range(*broker), client.0, client.1, requested.map_or(String::new(), |v| format!("; v{v} was asked for")))]
    UnsupportedVersion {
        /// The broker's address.
        peer: String,
        /// The API.
        api: ApiKey,
        /// The broker's range from ApiVersions, `None` if it does not serve the API.
        broker: Option<(i16, i16)>,
        /// The range this client's codec can encode.
        client: (i16, i16),
        /// The version the caller asked for, if any.
        requested: Option<i16>,
    },
    /// The response's size prefix exceeds the configured maximum: nothing was allocated
    /// for it and the connection is closed.
    #[error("{api:?} response of {size} bytes from {peer} exceeds the limit of {max} bytes")]
    ResponseTooLarge {
        /// The broker's address.
        peer: String,
        /// The request whose response it was.
        api: ApiKey,
        /// The size the peer announced.
        size: i64,
        /// The configured maximum.
        max: usize,
    },
    /// The connection is closed (by the peer, or by this client after an earlier failure);
    /// the request may or may not have been processed.
    #[error("connection to {peer} is closed{}: {reason}", on_api(*api))]
    Disconnected {
        /// The broker's address.
        peer: String,
        /// The request that was in flight or about to be sent.
        api: Option<ApiKey>,
        /// Why it closed.
        reason: String,
    },
    /// The cluster's metadata lists no broker with this id.
    #[error("no broker with id {node_id} in the metadata from {peer}")]
    UnknownNode {
        /// The broker the metadata came from.
        peer: String,
        /// The id asked for.
        node_id: i32,
    },
}

impl Error {
    /// Whether the connection is gone after this error, so the next request needs a new one.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Error::Io { .. }
                | Error::Timeout { .. }
                | Error::Disconnected { .. }
                | Error::ResponseTooLarge { .. }
        )
    }
}

fn on_api(api: Option<ApiKey>) -> String {
    api.map_or(String::new(), |a| format!(" on {a:?}"))
}

fn broker_range(range: Option<(i16, i16)>) -> String {
    range.map_or("none".to_string(), |(min, max)| format!("{min}..={max}"))
}
