//! The accept loop: one hyper connection per TCP connection, with a deadline on reading each
//! request's head (slow-loris), and graceful shutdown.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never fires there: a
//! client could hold a connection open forever by sending a request one byte a minute, or
//! nothing at all. Here every connection must send a complete request head (a websocket
//! handshake included) within `REQUEST_TIMEOUT` of connecting or of its previous response.
//! Once a websocket is upgraded, its hyper connection is done: the socket's own loop
//! (`http::ws`) and idle timeout take over, tracked apart from these connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
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
    // HTTP/1 only, as axum's default features are: hyper-util's auto builder would first
    // wait, with no deadline, for bytes to tell HTTP/1 from HTTP/2.
    let mut builder = http1::Builder::new();
    builder
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
    builder: http1::Builder,
    stream: TcpStream,
    peer: SocketAddr,
    router: Router,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    // Requests being served, their response bodies included.
    let busy = Arc::new(AtomicUsize::new(0));
    let in_service = busy.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let served = Busy::new(&in_service);
        let response = router.clone().oneshot(request);
        async move {
            // Router's error type is Infallible: every failure is already a response.
            let response = response.await?;
            // The guard lives as long as the body: a streamed response counts until done.
            Ok::<_, Infallible>(response.map(|body| {
                axum::body::Body::new(body.map_err(move |error| {
                    let _ = &served;
                    error
                }))
            }))
        }
    });
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stop.cancelled() => {
            // Finishes the request being served; between requests hyper closes at once.
            connection.as_mut().graceful_shutdown();
            // A client still sending its head has no request to finish: hyper would wait
            // for it (up to REQUEST_TIMEOUT), so such a connection is dropped instead.
            let mut check = tokio::time::interval(Duration::from_millis(50));
            loop {
                tokio::select! {
                    result = connection.as_mut() => break result,
                    _ = check.tick() => if busy.load(Ordering::Acquire) == 0 {
                        break Ok(());
                    },
                }
            }
        }
    };
    if let Err(error) = result {
        if is_header_timeout(&error) {
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

/// Counts one request as being served for as long as it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Busy(count.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
