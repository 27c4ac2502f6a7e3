//! A local stand-in for Recall's bot API: a real axum server on 127.0.0.1:0 that keeps every
//! request it receives and answers as Recall does (paths with a trailing slash, `Authorization:
//! <key>` with an optional `Token ` prefix, 201 with the bot's JSON, Recall-shaped 4xx bodies).
//! Also two broken upstreams: a closed port, and a server that accepts and never answers.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

pub mod media;

/// The key the stand-in accepts. Not URL-safe on purpose: Recall does not promise it is.
pub const RECALL_API_KEY: &str = "rk_test/0123+abc=";

/// Meeting hosts the stand-in takes; any other meeting URL gets Recall's 400.
const MEETING_HOSTS: [&str; 4] = [
    "meet.google.com",
    "zoom.us",
    "teams.microsoft.com",
    "teams.live.com",
];

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    /// The JSON body, or null when there was none.
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    received: Vec<Received>,
    bots: HashMap<String, Value>,
    /// When set, every request gets this answer instead.
    forced: Option<(StatusCode, HeaderMap, String)>,
    /// Recall's async media (issue 13): see `media` below.
    media: media::MediaState,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Inner>>);

pub struct RecallStandIn {
    pub addr: SocketAddr,
    shared: Shared,
    task: JoinHandle<()>,
}

impl RecallStandIn {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let app = Router::new()
            .route("/api/v1/bot/", post(create_bot))
            .route("/api/v1/bot/{id}/", get(get_bot))
            .route("/api/v1/bot/{id}/leave_call/", post(leave_call))
            .route("/api/v1/bot/{id}/delete_media/", post(delete_media))
            .merge(media::routes())
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"detail": "Not found."})),
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                receive,
            ))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the stand-in serves");
        });
        shared.0.lock().unwrap().media.base = format!("http://{addr}");
        RecallStandIn { addr, shared, task }
    }

    /// What to give as `--recall-api-base`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.0.lock().unwrap().received.clone()
    }

    /// Makes `id` a bot the stand-in knows, as if Recall had created it (the test events
    /// carry a fixed bot id).
    pub fn knows_bot(&self, id: &str) {
        let bot = json!({"id": id, "status_changes": [], "recordings": [{"id": "rec", "media_shortcuts": {}}]});
        self.shared
            .0
            .lock()
            .unwrap()
            .bots
            .insert(id.to_owned(), bot);
    }

    /// The bot as the stand-in holds it now.
    pub fn bot(&self, id: &str) -> Option<Value> {
        self.shared.0.lock().unwrap().bots.get(id).cloned()
    }

    /// From now on, answers every request with `status` and `body`.
    pub fn answer_everything_with(&self, status: StatusCode, body: &str) {
        self.force(status, HeaderMap::new(), body);
    }

    /// From now on, throttles every request as Recall does: 429 with `Retry-After`.
    pub fn throttle(&self, retry_after_secs: u32) {
        let headers = HeaderMap::from_iter([
            (header::RETRY_AFTER, HeaderValue::from(retry_after_secs)),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ]);
        let body = json!({
            "detail": format!("Request was throttled. Expected available in {retry_after_secs} seconds.")
        });
        self.force(StatusCode::TOO_MANY_REQUESTS, headers, &body.to_string());
    }

    fn force(&self, status: StatusCode, headers: HeaderMap, body: &str) {
        self.shared.0.lock().unwrap().forced = Some((status, headers, body.to_owned()));
    }
}

impl Drop for RecallStandIn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps every request, then checks the key as Recall does.
async fn receive(State(shared): State<Shared>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let text_header = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().expect("ASCII header").to_owned())
    };
    let authorization = text_header(header::AUTHORIZATION);
    let received = Received {
        method: parts.method.to_string(),
        path: parts.uri.to_string(),
        authorization: authorization.clone(),
        content_type: text_header(header::CONTENT_TYPE),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    };
    let forced = {
        let mut inner = shared.0.lock().unwrap();
        inner.received.push(received);
        inner.forced.clone()
    };
    if let Some((status, headers, body)) = forced {
        return (status, headers, body).into_response();
    }
    // Download URLs carry their own token, as presigned storage URLs do.
    if parts.uri.path().starts_with(media::DOWNLOADS) {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    let key = authorization
        .as_deref()
        .map(|a| a.strip_prefix("Token ").unwrap_or(a));
    if key != Some(RECALL_API_KEY) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"detail": "Invalid API key."})),
        )
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn create_bot(State(shared): State<Shared>, body: axum::Json<Value>) -> Response {
    let request = body.0;
    let meeting = request["meeting_url"]
        .as_str()
        .and_then(|u| url::Url::parse(u).ok());
    let Some(meeting) = meeting.filter(|u| MEETING_HOSTS.contains(&u.host_str().unwrap_or("")))
    else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"meeting_url": ["Invalid meeting URL."]})),
        )
            .into_response();
    };
    let mut inner = shared.0.lock().unwrap();
    let id = format!("00000000-0000-4000-8000-{:012}", inner.bots.len() + 1);
    let bot = json!({
        "id": id,
        "meeting_url": {"platform": meeting.host_str(), "meeting_id": meeting.path().trim_matches('/')},
        "bot_name": request.get("bot_name").cloned().unwrap_or(json!("Meeting Notetaker")),
        "join_at": request.get("join_at").cloned().unwrap_or(Value::Null),
        "recording_config": request["recording_config"],
        "status_changes": [{"code": "ready", "message": null, "created_at": "2026-11-21T10:00:00Z"}],
        "recordings": [],
        // Recall keeps the metadata a bot is created with, and sends it with every event.
        "metadata": request.get("metadata").cloned().unwrap_or(json!({}))
    });
    inner.bots.insert(id, bot.clone());
    (StatusCode::CREATED, axum::Json(bot)).into_response()
}

async fn get_bot(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    match shared.0.lock().unwrap().bots.get(&id) {
        Some(bot) => axum::Json(bot.clone()).into_response(),
        None => not_found(),
    }
}

async fn leave_call(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let mut inner = shared.0.lock().unwrap();
    let Some(bot) = inner.bots.get_mut(&id) else {
        return not_found();
    };
    bot["status_changes"].as_array_mut().unwrap().push(json!({
        "code": "call_ended", "sub_code": "bot_received_leave_call", "created_at": "2026-11-21T11:00:00Z"
    }));
    axum::Json(bot.clone()).into_response()
}

/// `POST /api/v1/bot/{id}/delete_media/`: the bot's recordings lose their media.
async fn delete_media(State(shared): State<Shared>, Path(id): Path<String>) -> Response {
    let mut inner = shared.0.lock().unwrap();
    let Some(bot) = inner.bots.get_mut(&id) else {
        return not_found();
    };
    for recording in bot["recordings"].as_array_mut().into_iter().flatten() {
        recording["media_shortcuts"] = json!({});
        recording["status"] = json!({"code": "deleted"});
    }
    axum::Json(bot.clone()).into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({"detail": "Not found."})),
    )
        .into_response()
}

/// A URL on 127.0.0.1 where nothing listens: connections are refused.
pub async fn closed_port_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    format!("http://{addr}")
}

/// A server on 127.0.0.1 that accepts connections and never answers on them.
pub struct SilentServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            // Ends when the test drops the server (the task is aborted).
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        SilentServer { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
