//! The API of Recall's async media: a recording's parts, fetch statuses and its bot's status
//! history as JSON; the files themselves; and fetches asked for by hand, by recording or by
//! bot. Mounted behind the API guard.

use std::borrow::Cow;

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use crate::error::ApiError;
use crate::frame::RecordingId;
use crate::http::api::{CatalogResult as _, recording_id};
use crate::http::stored::serve_stored;
use crate::recall::BotId;
use crate::recall::media::MediaKind;
use crate::recall_media::{BotStatusRecord, FetchStatus, MediaError, MediaRecord, Target};
use crate::state::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(
            "/api/recordings/{recording}/recall",
            get(get_recording_media),
        )
        .route(
            "/api/recordings/{recording}/fetch-media",
            post(fetch_recording_media),
        )
        .route("/api/bots/{id}/fetch-media", post(fetch_bot_media))
        .route(
            "/api/recordings/{recording}/{participant}/recall/{file}",
            get(get_media_file),
        )
}

fn api_error(error: MediaError) -> ApiError {
    ApiError::Internal(error.into())
}

/// Refuses a fetch that could never run: without RECALL_API_KEY it would only fail later.
fn require_api_key(state: &AppState) -> Result<(), ApiError> {
    state
        .bots
        .client_to(crate::recall::FETCH_MEDIA)
        .map(|_| ())
        .map_err(ApiError::Bot)
}

#[derive(Serialize)]
struct RecordingMediaJson {
    recording: RecordingId,
    bot_id: Option<String>,
    /// Where each kind's fetch stands; null when none was ever asked for.
    fetch: FetchJson,
    /// The bot's status changes, in Recall's order.
    bot_status: Vec<BotStatusRecord>,
    participants: Vec<ParticipantMediaJson>,
}

#[derive(Serialize)]
struct FetchJson {
    video: Option<FetchStatus>,
    audio: Option<FetchStatus>,
}

#[derive(Serialize)]
struct ParticipantMediaJson {
    participant_id: u64,
    folder: String,
    parts: Vec<PartJson>,
}

#[derive(Serialize)]
struct PartJson {
    #[serde(flatten)]
    record: MediaRecord,
    url: String,
}

/// `GET /api/recordings/{id}/recall`.
async fn get_recording_media(
    State(state): State<AppState>,
    Path(recording): Path<String>,
) -> Result<Json<RecordingMediaJson>, ApiError> {
    let id = recording_id(&recording)?;
    // A recording is listed as soon as anything of Recall's is kept for it: one the list
    // does not name has nothing here either.
    let detail = state
        .catalog
        .recording(&id)
        .await
        .or_not_found("recording")?;
    let media = state
        .recall_media
        .recording_media(&id)
        .await
        .map_err(api_error)?;
    // The bot the recording's frames named, else the one its fetch was asked for.
    let from_frames = detail.overview.bot_id();
    let bot_id = from_frames.or_else(|| media.bot_id().map(str::to_owned));
    let bot_status = match bot_id.as_deref().and_then(BotId::parse) {
        Some(bot) => state
            .recall_media
            .bot_status(&bot)
            .await
            .map_err(api_error)?,
        None => Vec::new(),
    };
    let participants = media
        .participants
        .into_iter()
        .map(|p| ParticipantMediaJson {
            participant_id: p.participant_id,
            parts: p
                .parts
                .into_iter()
                .map(|record| PartJson {
                    url: format!(
                        "/api/recordings/{id}/{}/recall/{}",
                        p.participant_id, record.file
                    ),
                    record,
                })
                .collect(),
            folder: p.folder,
        })
        .collect();
    Ok(Json(RecordingMediaJson {
        recording: id,
        bot_id,
        fetch: FetchJson {
            video: media.video,
            audio: media.audio,
        },
        bot_status,
        participants,
    }))
}

/// `POST /api/recordings/{id}/fetch-media`: queues both kinds; 202.
async fn fetch_recording_media(
    State(state): State<AppState>,
    Path(recording): Path<String>,
) -> Result<Response, ApiError> {
    require_api_key(&state)?;
    let id = recording_id(&recording)?;
    if id.as_str().starts_with('.') {
        return Err(ApiError::NotFound("recording"));
    }
    let bot = match state.catalog.recording(&id).await {
        Ok(detail) => detail.overview.bot_id(),
        Err(_) => None,
    };
    for kind in MediaKind::ALL {
        state
            .recall_media
            .enqueue(Target::Recording {
                recording: id.clone(),
                kind,
                bot: bot.clone(),
            })
            .await
            .map_err(api_error)?;
    }
    Ok(accepted(format!("/api/recordings/{id}/recall")))
}

/// `POST /api/bots/{id}/fetch-media`: queues the bot's recordings; 202.
async fn fetch_bot_media(
    State(state): State<AppState>,
    Path(bot): Path<String>,
) -> Result<Response, ApiError> {
    require_api_key(&state)?;
    let bot = BotId::parse(&bot).ok_or(ApiError::BadRequest(Cow::Borrowed(
        "a Recall bot id is 1 to 128 of A-Z a-z 0-9 - _",
    )))?;
    state
        .recall_media
        .enqueue(Target::Bot {
            bot: bot.to_string(),
        })
        .await
        .map_err(api_error)?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"status": "queued", "bot_id": bot.to_string()})),
    )
        .into_response())
}

fn accepted(status_url: String) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, status_url.clone())],
        Json(json!({"status": "queued", "status_url": status_url})),
    )
        .into_response()
}

/// `GET /api/recordings/{id}/{participant}/recall/{file}`: with byte ranges, so that players
/// can seek, from a folder or a bucket alike.
async fn get_media_file(
    State(state): State<AppState>,
    Path((recording, participant, file)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = recording_id(&recording)?;
    let participant = crate::catalog::parse_participant_id(&participant).ok_or(
        ApiError::BadRequest(Cow::Borrowed("participant id must be a number")),
    )?;
    let key = state
        .recall_media
        .media_key(&id, participant, &file)
        .await
        .map_err(api_error)?
        .ok_or(ApiError::NotFound("media file"))?;
    let mut response = serve_stored(
        state.recall_media.store(),
        &key,
        content_type(&file),
        request,
        &state.shutdown,
    )
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .ok_or(ApiError::NotFound("media file"))?;
    if response.status().is_success() {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static(crate::http::api::IMMUTABLE),
        );
    }
    Ok(response)
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("mp4") => "video/mp4",
        Some("mp3") => "audio/mpeg",
        Some("wav") => "audio/wav",
        Some("m4a") => "audio/mp4",
        Some("ogg") => "audio/ogg",
        Some("flac") => "audio/flac",
        Some("webm") => "audio/webm",
        _ => "application/octet-stream",
    }
}
