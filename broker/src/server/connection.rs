//! One client connection: read size-prefixed frames, route each to its API handler and write
//! the responses in request order.
//!
//! Fetch responses carry record batches as file regions: the encoded bytes before them go
//! through the write buffer, the batches go from the segment file into the socket with
//! `sendfile` (no copy through user space), so serving a fetch costs a few syscalls however
//! large it is.
//!
//! Requests on a connection are handled one at a time, as Apache Kafka does (it mutes a
//! channel while a request is in flight), so pipelined requests are answered in the order
//! they were sent. A Rust `Err` from routing means the frame cannot be understood; the
//! connection is closed and nothing else is affected.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter, Interest};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::api::{self, Outcome, Part, Reply};
use crate::broker::Broker;
use crate::log::FileRegion;
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
                if let Err(e) = write_reply(&mut writer, response).await {
                    debug!(%peer, error = %e, "connection write failed");
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

/// Writes the size prefix and the parts of `reply` in order: bytes through the buffer, file
/// regions with `sendfile` after flushing what precedes them.
async fn write_reply(writer: &mut BufWriter<OwnedWriteHalf>, reply: Reply) -> io::Result<()> {
    let size = u32::try_from(reply.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "response over 4 GiB"))?;
    writer.write_all(&size.to_be_bytes()).await?;
    for part in reply.parts {
        match part {
            // Large parts bypass BufWriter's buffer, so they are not copied once more.
            Part::Bytes(b) => writer.write_all(&b).await?,
            Part::File(region) => {
                writer.flush().await?;
                send_file(writer.get_ref().as_ref(), &region).await?;
            }
        }
    }
    Ok(())
}

/// Sends `region` from its file into the socket with `sendfile`, waiting for the socket to
/// become writable whenever the send buffer is full. The frame's size was already promised,
/// so a file that shrank under the region (a truncated log) is an error that closes the
/// connection, as in Kafka.
async fn send_file(stream: &TcpStream, region: &FileRegion) -> io::Result<()> {
    let mut offset = i64::try_from(region.position)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file position out of range"))?;
    let mut remaining = region.len;
    while remaining > 0 {
        stream.writable().await?;
        let sent = stream.try_io(Interest::WRITABLE, || {
            nix::sys::sendfile::sendfile(stream, &*region.file, Some(&mut offset), remaining)
                .map_err(io::Error::from)
        });
        match sent {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "segment file ended before the fetched region",
                ))
            }
            Ok(n) => remaining -= n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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
