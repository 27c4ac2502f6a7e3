//! `/api/bots`: creating a Recall bot that streams to this server, reading it, and asking it
//! to leave its call. Mounted behind the API guard.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::recall::{BotId, BotRequest};
use crate::state::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/bots", post(create_bot))
        .route("/api/bots/{id}", get(get_bot))
        .route("/api/bots/{id}/leave", post(leave_bot))
}

/// The body of `POST /api/bots`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBot {
    meeting_url: String,
    #[serde(default)]
    bot_name: Option<String>,
    /// ISO-8601; the bot joins now when absent.
    #[serde(default)]
    join_at: Option<String>,
    /// What to call the bot's recordings in the browse UI and the API.
    #[serde(default)]
    title: Option<String>,
    /// Stream each participant's audio too (`audio_separate_raw`); off by default.
    #[serde(default)]
    audio: bool,
    /// Recall's per-participant MP4s after the call (`video_separate_mp4`); off by default.
    #[serde(default)]
    async_video: bool,
    /// Recall's per-participant audio files after the call; off by default.
    #[serde(default)]
    async_audio: bool,
}

impl NewBot {
    /// Reads the body from JSON that must be an object (serde would also take the fields
    /// as an array, in order); errors name the field at fault.
    fn from_json(body: Value) -> Result<Self, ApiError> {
        if !body.is_object() {
            return Err(ApiError::InvalidRequest(format!(
                "the body must be a JSON object such as {{\"meeting_url\": \"https://...\"}}, not {}",
                json_type(&body)
            )));
        }
        serde_path_to_error::deserialize(body).map_err(|e| ApiError::InvalidRequest(e.to_string()))
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Creates a bot whose realtime endpoint is this server's websocket; answers 201 with
/// Recall's bot JSON.
pub async fn create_bot(
    State(state): State<AppState>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body?;
    let body = NewBot::from_json(body)?;
    let request = BotRequest::new(&body.meeting_url, body.bot_name, body.join_at.as_deref())?
        .with_title(body.title.as_deref())?
        .with_audio(body.audio)
        .with_async_media(body.async_video, body.async_audio);
    let bot = state.bots.create(&request).await?;
    Ok((StatusCode::CREATED, Json(bot)))
}

/// Recall's view of a bot: its status changes, recordings and so on.
pub async fn get_bot(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.bots.get(&bot_id(&id)?).await?))
}

/// Asks a bot to leave its call.
pub async fn leave_bot(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.bots.leave(&bot_id(&id)?).await?))
}

fn bot_id(id: &str) -> Result<BotId, ApiError> {
    BotId::parse(id).ok_or_else(|| {
        ApiError::InvalidRequest(format!(
            "{id:?} is not a Recall bot id: ids are 1 to 128 of A-Z a-z 0-9 - _"
        ))
    })
}
