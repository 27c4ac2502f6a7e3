//! The one error type HTTP handlers return, with its status and JSON body. Details of
//! server-side failures are logged, never sent.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the websocket needs ?token=<WS_TOKEN>; the token is missing or wrong")]
    WsTokenRejected,
    #[error("this route needs API_TOKEN, as a Bearer token or as the HTTP Basic password")]
    Unauthorized,
    #[error("only requests from this machine are served while API_TOKEN is unset")]
    LoopbackOnly,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("the websocket upgrade needs a valid Recall signature (webhook-* or svix-* headers)")]
    WsSignatureRejected,
    #[error("too many websocket connections are open (MAX_CONNECTIONS); try again later")]
    TooManyConnections,
    /// A request this server cannot take as it is; the message says what is wrong.
    #[error("{0}")]
    BadRequest(std::borrow::Cow<'static, str>),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("internal server error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::WsTokenRejected
            | ApiError::WsSignatureRejected
            | ApiError::Unauthorized
            | ApiError::LoopbackOnly => StatusCode::UNAUTHORIZED,
            ApiError::ShuttingDown | ApiError::TooManyConnections => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(error) = &self {
            tracing::error!(error = format!("{error:#}"), "request failed");
        }
        let body = Json(json!({ "error": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        if let ApiError::Unauthorized = self {
            // Lets a browser ask for the token as a password.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(r#"Basic realm="recall-frames", charset="UTF-8""#),
            );
        }
        response
    }
}
