//! The HTTP surface: routes, the shared layers, and the small handlers that need no module.

pub mod api;
pub mod bots;
pub mod delete;
pub mod export;
pub mod guard;
pub mod live;
pub mod recall_media;
pub mod replay;
pub mod serve;
pub mod stored;
pub mod ui;
pub mod webhooks;
pub mod ws;
pub mod zip;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use serde_json::json;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::RequestBodyDeadlineLayer;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(get_metrics))
        .merge(api::routes())
        .merge(export::routes())
        .route("/api/live", get(live::follow_live))
        .merge(ui::routes())
        .merge(replay::routes())
        .merge(bots::routes())
        .merge(delete::routes())
        .merge(recall_media::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::require_api_access,
        ));
    Router::new()
        .route("/healthz", get(get_health))
        .route("/ws", any(ws::accept_ws))
        // Recall's servers call it: its signature, not the API guard, lets it in.
        .merge(webhooks::routes())
        .merge(guarded)
        // Caps on request bodies: MAX_BODY_BYTES (413, before any handler when the length
        // is declared) and REQUEST_TIMEOUT for the whole body to arrive.
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(RequestBodyDeadlineLayer::new(state.config.request_timeout))
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            count_body_refusals,
        ))
        .layer(
            // The path only: query strings carry the websocket token.
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::info_span!("http", method = %request.method(), path = request.uri().path())
            }),
        )
        .with_state(state)
}

async fn get_health(State(state): State<AppState>) -> impl IntoResponse {
    if state.shutdown.is_cancelled() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "shutting_down"})),
        )
    } else if let Some(reason) = state.disk.degraded_reason() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "degraded", "reason": reason})),
        )
    } else if let Some(reason) = state
        .bucket
        .as_ref()
        .and_then(|bucket| bucket.health().degraded_reason())
    {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "degraded", "reason": reason})),
        )
    } else if let Some(reason) = state.keeper.degraded_reason() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"status": "degraded", "reason": reason})),
        )
    } else {
        (StatusCode::OK, axum::Json(json!({"status": "ok"})))
    }
}

/// Counts and logs requests refused for their body: over MAX_BODY_BYTES, or not received
/// within REQUEST_TIMEOUT.
async fn count_body_refusals(
    State(state): State<AppState>,
    request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            state.metrics.refuse_http("body_too_large");
            tracing::warn!(path, "request body over MAX_BODY_BYTES refused (413)");
        }
        StatusCode::REQUEST_TIMEOUT => {
            state.metrics.refuse_http("body_timeout");
            tracing::warn!(
                path,
                "request body not received within REQUEST_TIMEOUT (408)"
            );
        }
        _ => {}
    }
    response
}

async fn get_metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}

/// Passes a body through until shutdown starts, then fails it, so the client sees a cut
/// transfer rather than a file that looks complete, and shutdown does not wait for it.
pub fn abort_on_shutdown(
    body: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    let state = (Box::pin(body), Box::pin(shutdown.cancelled_owned()), false);
    futures_util::stream::unfold(state, |(mut body, mut stop, stopped)| async move {
        if stopped {
            return None;
        }
        tokio::select! {
            item = futures_util::StreamExt::next(&mut body) => item.map(|item| (item, (body, stop, false))),
            () = &mut stop => {
                let error = std::io::Error::other("the server is shutting down");
                Some((Err(error), (body, stop, true)))
            }
        }
    })
}
