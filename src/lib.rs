//! recall-frames: records the per-participant PNG frames that Recall.ai meeting bots stream
//! over a websocket, as timestamped PNG sequences grouped by recording, participant and
//! stream.
//!
//! [`run`] is the whole server; `main.rs` only parses the configuration, binds and calls it,
//! and tests call it the same way with their own listener and shutdown future.

#![warn(clippy::unwrap_used)]

pub mod auth;
pub mod config;
pub mod error;
pub mod event;
pub mod frame;
pub mod http;
pub mod layout;
pub mod metrics;
pub mod pipeline;
pub mod simulate;
pub mod sink;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::time::Instant;

pub use config::Config;

use crate::auth::TokenSource;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::sink::fs::FsSink;
use crate::state::AppState;

/// Serves until `shutdown` resolves, then stops accepting, lets open websockets finish
/// their closing handshake, saves every queued frame and flushes the summaries, all within
/// `config.shutdown_timeout`. Returns an error if start-up fails or the drain timed out.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let local = listener
        .local_addr()
        .context("listener has no local address")?;
    let sink = FsSink::new(config.data_dir.clone())
        .await
        .with_context(|| format!("DATA_DIR {} is not usable", config.data_dir.display()))?;
    let (ws_token, token_source) =
        auth::ws_token(config.ws_token.clone(), &config.data_dir).await?;
    let metrics = Arc::new(Metrics::default());
    let pipeline = Pipeline::new(
        PipelineConfig {
            queue_frames: config.stream_queue_frames,
            buffer_bytes: config.buffer_bytes,
            idle_timeout: config.stream_idle_timeout,
        },
        Arc::new(sink),
        metrics.clone(),
    );
    let state = AppState::new(config, ws_token, pipeline, metrics);
    log_startup(&state, local, &token_source);

    let app = http::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    let stopping = state.shutdown.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(stopping.cancelled_owned());
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        result = &mut server => return result.context("server stopped"),
        () = shutdown => {}
    }
    tracing::info!(
        "shutting down: no new connections; closing websockets, then saving queued frames"
    );
    state.shutdown.cancel();
    drain(&state, server).await
}

async fn drain(
    state: &AppState,
    server: impl Future<Output = std::io::Result<()>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + state.config.shutdown_timeout;
    let http_closed = tokio::time::timeout_at(deadline, server).await.is_ok();
    state.connections.close();
    let sockets_closed = tokio::time::timeout_at(deadline, state.connections.wait())
        .await
        .is_ok();
    let left = deadline.saturating_duration_since(Instant::now());
    let drained = state.pipeline.close(left).await;
    let flushed = state.pipeline.flush_sink().await;
    if let Err(error) = &flushed {
        tracing::error!(%error, "could not flush recording summaries");
    }
    if http_closed && sockets_closed && drained && flushed.is_ok() {
        tracing::info!("shutdown complete: every received frame is saved");
        Ok(())
    } else {
        anyhow::bail!(
            "shutdown incomplete after {:?}: http closed {http_closed}, websockets closed {sockets_closed}, \
             frames drained {drained}, summaries flushed {}",
            state.config.shutdown_timeout,
            flushed.is_ok()
        )
    }
}

fn log_startup(state: &AppState, local: SocketAddr, token_source: &TokenSource) {
    let config = &state.config;
    tracing::info!(address = %local, data_dir = %config.data_dir.display(), "recall-frames listening");
    let host = if local.ip().is_unspecified() {
        format!("localhost:{}", local.port())
    } else {
        local.to_string()
    };
    match token_source {
        TokenSource::Configured => {
            tracing::info!(
                "bots connect to ws://{host}/ws?token=<WS_TOKEN> (or wss:// behind TLS)"
            );
        }
        TokenSource::Stored(path) | TokenSource::Generated(path) => {
            let verb = if matches!(token_source, TokenSource::Generated(_)) {
                "generated"
            } else {
                "read"
            };
            // The one place the token is ever logged: the operator needs it to create bots.
            tracing::info!(
                "bots connect to ws://{host}/ws?token={} (or wss:// behind TLS); token {verb} in {}",
                state.ws_token.expose(),
                path.display()
            );
        }
    }
    if config.api_token.is_some() {
        tracing::info!("HTTP API guarded by API_TOKEN (Bearer token or Basic password)");
    } else {
        tracing::info!("API_TOKEN unset: the HTTP API answers requests from this machine only");
    }
}
