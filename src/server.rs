//! The HTTP server loop: accepting connections, each served by hyper with
//! the client's address attached to its requests and a header-read timeout,
//! and a graceful shutdown.

use std::convert::Infallible;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use warp::Filter;
use warp::reply::Response;

use crate::ws::PeerAddr;

/// Serves `routes` on `listener` until `shutdown`, then waits for open HTTP
/// requests to finish (upgraded WebSockets close themselves on shutdown).
///
/// warp's own server loop cannot be given hyper's settings, so this is
/// that loop with two additions: every request carries the client's address
/// ([`PeerAddr`], for the per-IP cap), and a client must send a request's
/// headers within `header_read_timeout` (hyper's `header_read_timeout`, which
/// also bounds how long an idle keep-alive connection waits for the next
/// request's headers), so connections that trickle bytes are closed. Each
/// request runs in an `http.request` span (method and path).
pub async fn serve<F>(
    listener: TcpListener,
    routes: F,
    header_read_timeout: Duration,
    shutdown: CancellationToken,
) where
    F: Filter<Extract = (Response,), Error = Infallible> + Clone + Send + Sync + 'static,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let service = warp::service(routes);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: wait a little
                    // for connections to close rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Small frames (one change each) must not wait for Nagle's algorithm.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = TowerToHyperService::new(service.clone());
        let with_peer = hyper::service::service_fn(
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                // The path only: a query string may carry variables.
                let span = tracing::info_span!(
                    "http.request",
                    method = %request.method(),
                    path = request.uri().path(),
                );
                hyper::service::Service::call(&service, request).instrument(span)
            },
        );
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // HTTP/1 only: detecting HTTP/2 would first wait, without any
            // timeout, for the bytes of its preface.
            let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), with_peer);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
