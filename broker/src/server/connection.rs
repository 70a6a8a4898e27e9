//! One client connection: read size-prefixed frames, route each to its API handler and write
//! the responses in request order.
//!
//! Requests on a connection are handled one at a time, as Apache Kafka does (it mutes a
//! channel while a request is in flight), so pipelined requests are answered in the order
//! they were sent. A Rust `Err` from routing means the frame cannot be understood; the
//! connection is closed and nothing else is affected.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::api::{self, Outcome};
use crate::broker::Broker;
use crate::server::ListenerContext;

/// Serves `stream`, accepted on `listener`, until the client closes it, sends something unintelligible, or the
/// broker shuts down (checked between requests).
pub async fn serve_connection(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<ListenerContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let (mut reader, writer) = stream.into_split();
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let max_request = broker.config().socket_request_max_bytes.max(0) as usize;
    let mut buf = BytesMut::with_capacity(8 * 1024);
    // A negative connections.max.idle.ms disables idle expiry, as in Kafka's Selector.
    let max_idle = broker
        .config()
        .value("connections.max.idle.ms")
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(600_000);
    let max_idle = u64::try_from(max_idle)
        .ok()
        .map(std::time::Duration::from_millis);
    loop {
        // Read the next complete frame; "incomplete" means read more.
        let frame = loop {
            if buf.len() >= 4 {
                let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                if size < 0 || size as usize > max_request {
                    warn!(%peer, size, max = max_request, "closing connection: request size is invalid or larger than socket.request.max.bytes");
                    return;
                }
                let size = size as usize;
                if buf.len() >= 4 + size {
                    buf.advance(4);
                    break buf.split_to(size).freeze();
                }
                buf.reserve(4 + size - buf.len());
            }
            let read = tokio::select! {
                r = reader.read_buf(&mut buf) => r,
                _ = shutdown.wait_for(|stop| *stop) => return,
                // connections.max.idle.ms: nothing arrived for that long (an idle client or
                // one stalled mid-frame); Kafka's selector closes such connections.
                _ = idle_for(max_idle) => {
                    debug!(%peer, "closing idle connection (connections.max.idle.ms)");
                    return;
                }
            };
            match read {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => {
                    debug!(%peer, error = %e, "connection read failed");
                    return;
                }
            }
        };
        match api::handle_request(&broker, peer, &listener, frame).await {
            Ok(Outcome::Respond(response)) => {
                // Large responses bypass BufWriter's buffer, so fetched batches are not
                // copied once more here.
                let size = (response.len() as u32).to_be_bytes();
                if writer.write_all(&size).await.is_err()
                    || writer.write_all(&response).await.is_err()
                {
                    return;
                }
                // Flush only when no further request is already buffered: pipelined requests
                // get their responses written together.
                if !has_complete_frame(&buf) && writer.flush().await.is_err() {
                    return;
                }
            }
            Ok(Outcome::NoResponse) => {
                if !has_complete_frame(&buf) && writer.flush().await.is_err() {
                    return;
                }
            }
            Ok(Outcome::Close) => {
                let _ = writer.flush().await;
                return;
            }
            Err(e) => {
                warn!(%peer, error = format!("{e:#}"), "closing connection: malformed request");
                let _ = writer.flush().await;
                return;
            }
        }
    }
}

/// Resolves after `max_idle`, never if there is no limit.
async fn idle_for(max_idle: Option<std::time::Duration>) {
    match max_idle {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// True if `buf` already holds a whole size-prefixed frame (so the response may wait in the
/// write buffer for the next one).
fn has_complete_frame(buf: &[u8]) -> bool {
    if buf.len() < 4 {
        return false;
    }
    let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    size >= 0 && buf.len() >= 4 + size as usize
}
