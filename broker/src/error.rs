//! Errors shared by several layers: a Kafka-level failure ([`ApiError`]) that the group
//! coordinator, the broker's administration and the API handlers all produce, kept here,
//! below all of them, so no layer imports another's module to name its error.

use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

/// A Kafka-level failure: an error code for the response and an optional message for the
/// client (Kafka's `error_message` fields). Not a reason to close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// Kafka's error code (`ResponseError::code`).
    pub code: i16,
    /// A message for the client, where the response has a field for one.
    pub message: Option<String>,
}

impl ApiError {
    /// `error` with a message for the client.
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        ApiError {
            code: error.code(),
            message: Some(message.into()),
        }
    }

    /// `error` without a message.
    pub fn code(error: ResponseError) -> Self {
        ApiError {
            code: error.code(),
            message: None,
        }
    }

    /// The message as a protocol string, for a response's `error_message`.
    pub fn message_str(&self) -> Option<StrBytes> {
        self.message.clone().map(StrBytes::from_string)
    }
}

impl From<crate::log::Error> for ApiError {
    fn from(e: crate::log::Error) -> Self {
        ApiError {
            code: e.kafka_code(),
            message: Some(e.to_string()),
        }
    }
}

impl From<crate::controller::ControllerError> for ApiError {
    fn from(e: crate::controller::ControllerError) -> Self {
        ApiError {
            code: e.code,
            message: e.message,
        }
    }
}
