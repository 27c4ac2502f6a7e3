//! The HTTP surface: routes, the shared layers, and the small handlers that need no module.

pub mod bots;
pub mod guard;
pub mod ws;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use serde_json::json;
use tower_http::trace::TraceLayer;

use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(get_metrics))
        .merge(bots::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::require_api_access,
        ));
    Router::new()
        .route("/healthz", get(get_health))
        .route("/ws", any(ws::accept_ws))
        .merge(guarded)
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
    } else {
        (StatusCode::OK, axum::Json(json!({"status": "ok"})))
    }
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
