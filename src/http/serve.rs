//! The accept loop: one hyper connection per TCP connection, with a deadline on reading each
//! request's head (slow-loris), and graceful shutdown.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never fires there: a
//! client could hold a connection open forever by sending a request one byte a minute, or
//! nothing at all. Here every connection must send a complete request head (a websocket
//! handshake included) within `REQUEST_TIMEOUT` of connecting or of its previous response.
//! Once a websocket is upgraded, its hyper connection is done: the socket's own loop
//! (`http::ws`) and idle timeout take over, tracked apart from these connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::metrics::Metrics;

/// Serves `router` on `listener` until `stop` is cancelled; then stops accepting, lets each
/// connection finish the request it is in, and returns once every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(request_timeout);
    let connections = TaskTracker::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        connections.spawn(serve_connection(
            builder.clone(),
            stream,
            peer,
            router.clone(),
            metrics.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn serve_connection(
    builder: auto::Builder<TokioExecutor>,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        // Router's error type is Infallible: every failure is already a response.
        router.clone().oneshot(request)
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        if is_header_timeout(&*error) {
            metrics.refuse_http("header_timeout");
            tracing::info!(%peer, "closed a connection that sent no complete request within REQUEST_TIMEOUT");
        } else {
            tracing::debug!(%peer, %error, "HTTP connection ended with an error");
        }
    }
}

fn is_header_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout)
        {
            return true;
        }
        source = error.source();
    }
    false
}
