//! The guard in front of every HTTP route but the websocket and `/healthz`: `API_TOKEN` as a
//! Bearer token or as the HTTP Basic password; with no `API_TOKEN`, this machine only.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use headers::authorization::{Basic, Bearer};
use headers::{Authorization, HeaderMapExt as _};

use crate::error::ApiError;
use crate::state::AppState;

pub async fn require_api_access(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    match &state.config.api_token {
        Some(token) => {
            let presented = presented_token(request.headers());
            if !presented.is_some_and(|candidate| token.matches(&candidate)) {
                return Err(ApiError::Unauthorized);
            }
        }
        // A tunnel or proxy on this machine connects from loopback on behalf of anyone: it
        // says so in forwarding headers, and such requests are not taken as local.
        None if !peer.ip().is_loopback() || is_forwarded(request.headers()) => {
            return Err(ApiError::LoopbackOnly);
        }
        None => {}
    }
    Ok(next.run(request).await)
}

fn presented_token(headers: &HeaderMap) -> Option<String> {
    if let Some(Authorization(bearer)) = headers.typed_get::<Authorization<Bearer>>() {
        return Some(bearer.token().to_owned());
    }
    headers
        .typed_get::<Authorization<Basic>>()
        .map(|Authorization(basic)| basic.password().to_owned())
}

fn is_forwarded(headers: &HeaderMap) -> bool {
    [
        "forwarded",
        "x-forwarded-for",
        "x-real-ip",
        "fly-client-ip",
        "cf-connecting-ip",
    ]
    .iter()
    .any(|name| headers.contains_key(*name))
}
