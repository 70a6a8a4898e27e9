//! Wall-clock time as Kafka timestamps it, for every layer that stamps records or measures
//! sessions and retention.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, the clock Kafka timestamps use; 0 if the system clock
/// is set before 1970 (a timestamp then is meaningless anyway, and must not panic).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
