//! Prometheus metrics over HTTP, shared by `oxbow-broker` and `oxbow-operator`.
//!
//! Each binary keeps its own [`prometheus_client::registry::Registry`]; this crate serves it
//! in Prometheus' text exposition format on `GET /metrics` (any other path is 404), so a
//! Prometheus scrape config or a `ServiceMonitor` finds it where it looks by default.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::CONTENT_TYPE;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info};

pub use prometheus_client;

/// The content type of Prometheus' text format as the scraper expects it.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a scrape reads: the registry, and a hook that refreshes the gauges computed from the
/// process' state (partition counts, controller role) just before they are encoded.
pub struct Exporter {
    registry: Registry,
    refresh: Box<dyn Fn() + Send + Sync>,
}

impl Exporter {
    /// An exporter of `registry`; `refresh` runs before every scrape.
    pub fn new(registry: Registry, refresh: impl Fn() + Send + Sync + 'static) -> Self {
        Exporter {
            registry,
            refresh: Box::new(refresh),
        }
    }

    /// The metrics in Prometheus' text format, after a refresh.
    pub fn render(&self) -> String {
        (self.refresh)();
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Serves `exporter` on `listener` until `shutdown` turns true: `GET /metrics` answers the
/// metrics, every other request 404 (or 405 for another method on `/metrics`). A connection
/// that fails is dropped on its own; the listener keeps accepting.
pub async fn serve(
    listener: TcpListener,
    exporter: Arc<Exporter>,
    mut shutdown: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "serving Prometheus metrics on /metrics");
    }
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                debug!(error = %e, "metrics listener: accept failed");
                continue;
            }
        };
        let exporter = exporter.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let exporter = exporter.clone();
                async move { Ok::<_, Infallible>(answer(&exporter, &req)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                debug!(%peer, error = %e, "metrics connection ended with an error");
            }
        });
    }
}

/// Binds `addr` and serves `exporter` there (see [`serve`]); returns the bound address (port
/// 0 picks a free one) and the serving task.
pub async fn bind_and_serve(
    addr: SocketAddr,
    exporter: Arc<Exporter>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    Ok((bound, tokio::spawn(serve(listener, exporter, shutdown))))
}

fn answer(exporter: &Exporter, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    let status = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") | (&Method::HEAD, "/metrics") => {
            let mut response = Response::new(Full::new(Bytes::from(exporter.render())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(CONTENT_TYPE_TEXT),
            );
            return response;
        }
        (_, "/metrics") => StatusCode::METHOD_NOT_ALLOWED,
        _ => StatusCode::NOT_FOUND,
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"")));
    *response.status_mut() = status;
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use std::sync::atomic::AtomicU64;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_registry_refreshed_on_each_scrape_and_404_elsewhere() {
        let mut registry = Registry::default();
        let scrapes = Counter::<u64, AtomicU64>::default();
        registry.register("oxbow_test_scrapes", "Scrapes seen", scrapes.clone());
        let seen = scrapes.clone();
        let exporter = Arc::new(Exporter::new(registry, move || {
            seen.inc();
        }));
        let (tx, rx) = watch::channel(false);
        let (addr, task) = bind_and_serve("127.0.0.1:0".parse().unwrap(), exporter, rx)
            .await
            .unwrap();

        let first = get(addr, "/metrics").await;
        assert!(first.starts_with("HTTP/1.1 200"), "{first}");
        assert!(first.contains(CONTENT_TYPE_TEXT), "{first}");
        assert!(first.contains("oxbow_test_scrapes_total 1"), "{first}");
        let second = get(addr, "/metrics").await;
        assert!(second.contains("oxbow_test_scrapes_total 2"), "{second}");
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
        assert_eq!(scrapes.get(), 2);

        tx.send(true).unwrap();
        task.await.unwrap();
    }
}
