//! The one error type HTTP handlers return, with its status and JSON body. Details of
//! server-side failures are logged, never sent.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::recall::{BotError, InvalidBotRequest, RecallError};

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
    /// The request clashes with what the server is doing; the message says how to go on.
    #[error("{0}")]
    Conflict(std::borrow::Cow<'static, str>),
    /// A request whose body or parameters are not what the route takes.
    #[error("{0}")]
    InvalidRequest(String),
    /// A body the route cannot read at all: not JSON by its content type, or too large.
    #[error("{message}")]
    UnreadableBody { status: StatusCode, message: String },
    #[error(transparent)]
    Bot(#[from] BotError),
    /// A part the route needs is missing here (ffmpeg for exports); the message says which.
    #[error("{0}")]
    Unavailable(String),
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
            ApiError::ShuttingDown | ApiError::TooManyConnections | ApiError::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::InvalidRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnreadableBody { status, .. } => *status,
            ApiError::Bot(BotError::NoApiKey(_) | BotError::NoPublicUrl) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Bot(BotError::Recall(RecallError::Refused { status, .. })) => *status,
            ApiError::Bot(BotError::Recall(RecallError::TimedOut(_))) => {
                StatusCode::GATEWAY_TIMEOUT
            }
            ApiError::Bot(BotError::Recall(_) | BotError::NoBotId(_)) => StatusCode::BAD_GATEWAY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut body = json!({ "error": self.to_string() });
        let mut retry_after = None;
        if let ApiError::Bot(BotError::Recall(RecallError::Refused {
            body: recall,
            retry_after: wait,
            ..
        })) = &self
        {
            // Recall's own answer and wait too, for clients that act on them.
            body["recall"] = recall.clone();
            retry_after = *wait;
        }
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, seconds.into());
        }
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

impl ApiError {
    /// Logs what a 5xx answer does not say.
    pub(crate) fn log(&self) {
        match self {
            ApiError::Internal(error) => {
                tracing::error!(error = format!("{error:#}"), "request failed");
            }
            ApiError::Bot(BotError::Recall(
                error @ (RecallError::Unreachable(source) | RecallError::Connection(source)),
            )) => {
                tracing::warn!(%error, cause = causes(source), "Recall's API call failed");
            }
            ApiError::Bot(BotError::Recall(RecallError::TimedOut(after))) => {
                tracing::warn!(?after, "Recall's API did not answer in time");
            }
            ApiError::Bot(BotError::Recall(RecallError::Failed { status, body })) => {
                tracing::error!(%status, body, "Recall's API failed");
            }
            ApiError::Bot(BotError::Recall(RecallError::BadAnswer { status, detail })) => {
                tracing::error!(%status, detail, "Recall's API answer not understood");
            }
            ApiError::Bot(BotError::NoBotId(answer)) => {
                tracing::error!(%answer, "Recall's create-bot answer has no id");
            }
            _ => {}
        }
    }
}

/// An error and its sources, as one line.
fn causes(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line
}

impl From<JsonRejection> for ApiError {
    /// axum's own rejections, in this API's JSON shape. A body that is JSON but not what the
    /// route takes (a syntax error, an unknown or missing field) is a 422.
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::JsonDataError(_) | JsonRejection::JsonSyntaxError(_) => {
                ApiError::InvalidRequest(rejection.body_text())
            }
            JsonRejection::BytesRejection(ref failed) if is_timeout(failed) => {
                ApiError::UnreadableBody {
                    status: StatusCode::REQUEST_TIMEOUT,
                    message: "the request body did not arrive within REQUEST_TIMEOUT".into(),
                }
            }
            other => ApiError::UnreadableBody {
                status: other.status(),
                message: other.body_text(),
            },
        }
    }
}

/// Whether `error` comes from the body deadline (REQUEST_TIMEOUT) running out.
fn is_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(error), |e| e.source())
        .any(|e| e.is::<tower_http::timeout::TimeoutError>())
}

impl From<InvalidBotRequest> for ApiError {
    fn from(error: InvalidBotRequest) -> Self {
        ApiError::InvalidRequest(error.to_string())
    }
}
