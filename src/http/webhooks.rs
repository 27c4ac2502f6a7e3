//! `POST /webhooks/recall`: Recall's webhooks, sent through Svix. The signature is checked
//! over the raw body before anything is read; then a bot's status change is added to its
//! log and a finished recording or media object queues a fetch. Both are small writes: the
//! fetching itself runs in the background, so Recall gets its 2xx well within 15 s. A
//! delivery Svix retries (same `webhook-id`) is taken once.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::frame::RecordingId;
use crate::metrics::ReasonLabel;
use crate::recall::BotId;
use crate::recall::media::MediaKind;
use crate::recall_media::{BotStatusRecord, Target};
use crate::state::AppState;

/// How long the handler's own writes may take before it answers 503 (Svix retries):
/// well inside Recall's 15 s.
const HANDLING_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new().route("/webhooks/recall", axum::routing::post(receive_webhook))
}

#[derive(Debug, Deserialize)]
struct Webhook {
    event: String,
    #[serde(default)]
    data: Value,
}

fn refuse(state: &AppState, reason: &'static str, status: StatusCode, message: &str) -> Response {
    state
        .metrics
        .recall
        .webhooks_refused
        .get_or_create(&ReasonLabel { reason })
        .inc();
    (status, Json(json!({"error": message}))).into_response()
}

fn taken(state: &AppState, reason: &'static str) -> Response {
    state
        .metrics
        .recall
        .webhooks
        .get_or_create(&ReasonLabel { reason })
        .inc();
    (StatusCode::OK, Json(json!({"status": reason}))).into_response()
}

/// Takes one webhook: 401 unless signed with RECALL_WEBHOOK_SECRET (or, unset,
/// RECALL_VERIFICATION_SECRET), 2xx once what it says is kept.
pub async fn receive_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = &state.config;
    let Some(secret) = config
        .recall_webhook_secret
        .as_ref()
        .or(config.recall_verification_secret.as_ref())
    else {
        tracing::warn!("a Recall webhook came, but RECALL_WEBHOOK_SECRET is not set");
        return refuse(
            &state,
            "unconfigured",
            StatusCode::SERVICE_UNAVAILABLE,
            "this server takes no webhooks until RECALL_WEBHOOK_SECRET is set",
        );
    };
    let id = match secret.verify_payload(&headers, Timestamp::now(), &body) {
        Ok(id) => id.to_owned(),
        Err(error) => {
            tracing::warn!(%error, "Recall webhook refused");
            return refuse(
                &state,
                "signature",
                StatusCode::UNAUTHORIZED,
                "the webhook needs a valid Recall signature (webhook-* or svix-* headers)",
            );
        }
    };
    let webhook: Webhook = match serde_json::from_slice(&body) {
        Ok(webhook) => webhook,
        Err(error) => {
            tracing::warn!(%error, webhook_id = id, "signed webhook is not JSON with an event");
            // Signed but unreadable: answering 4xx makes Svix retry it for a day; it will
            // not read better then.
            return refuse(
                &state,
                "invalid",
                StatusCode::BAD_REQUEST,
                "the body must be JSON with an event",
            );
        }
    };
    if media_kinds(&webhook.event).is_some()
        && let Err(error) = state.bots.client_to(crate::recall::FETCH_MEDIA)
    {
        // Taken, the fetch would fail at once and Recall would not send it again: a 5xx
        // makes Svix retry it (for about a day) until the key is set.
        tracing::warn!(
            webhook_id = id,
            event = webhook.event,
            "{error}: media webhook answered 503"
        );
        return refuse(
            &state,
            "no_api_key",
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{error}; Recall sends this webhook again"),
        );
    }
    let media = &state.recall_media;
    if media.seen_before(&id) {
        tracing::debug!(webhook_id = id, event = webhook.event, "duplicate delivery");
        return taken(&state, "duplicate");
    }
    let span = tracing::info_span!("webhook", webhook_id = %id, event = %webhook.event);
    let handled = tokio::time::timeout(
        HANDLING_DEADLINE,
        tracing::Instrument::instrument(handle(&state, &id, &webhook), span),
    )
    .await;
    match handled {
        Ok(Ok(reason)) => taken(&state, reason),
        Ok(Err(error)) => {
            media.forget(&id);
            tracing::error!(webhook_id = id, %error, "could not keep a webhook; Recall will send it again");
            refuse(
                &state,
                "storage",
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook could not be kept; send it again",
            )
        }
        Err(_) => {
            media.forget(&id);
            refuse(
                &state,
                "timeout",
                StatusCode::SERVICE_UNAVAILABLE,
                "the webhook could not be kept in time; send it again",
            )
        }
    }
}

/// What the webhook says, kept; returns what it was, for the metrics.
async fn handle(
    state: &AppState,
    id: &str,
    webhook: &Webhook,
) -> Result<&'static str, crate::recall_media::MediaError> {
    let media = &state.recall_media;
    let data = &webhook.data;
    let bot = data
        .pointer("/bot/id")
        .and_then(Value::as_str)
        .and_then(BotId::parse);
    let recording = data
        .pointer("/recording/id")
        .and_then(Value::as_str)
        .and_then(RecordingId::parse)
        .filter(|id| !id.as_str().starts_with('.'));
    let event = webhook.event.as_str();
    if let Some(status) = event.strip_prefix("bot.") {
        let Some(bot) = bot else {
            tracing::warn!("a bot webhook without a bot id; ignored");
            return Ok("ignored");
        };
        let text = |pointer: &str| {
            data.pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let record = BotStatusRecord {
            event: event.to_owned(),
            code: text("/data/code").or_else(|| Some(status.to_owned())),
            sub_code: text("/data/sub_code"),
            updated_at: text("/data/updated_at").and_then(|t| t.parse().ok()),
            webhook_id: id.to_owned(),
            received_at: Timestamp::now(),
        };
        media.record_bot_status(&bot, &record).await?;
        tracing::info!(bot = %bot, code = record.code, sub_code = record.sub_code, "bot status");
        if status == "done" && state.bots.client_to(crate::recall::FETCH_MEDIA).is_err() {
            tracing::warn!(bot = %bot, "RECALL_API_KEY unset: the bot's media is not fetched");
        } else if status == "done" {
            // The fallback for media whose own webhooks do not come: the bot's recordings.
            media
                .enqueue(Target::Bot {
                    bot: bot.to_string(),
                })
                .await?;
        }
        return Ok("bot_status");
    }
    let Some(kinds) = media_kinds(event) else {
        tracing::debug!("webhook not used here");
        return Ok("ignored");
    };
    let Some(recording) = recording else {
        tracing::warn!("a media webhook without a usable recording id; ignored");
        return Ok("ignored");
    };
    for &kind in kinds {
        media
            .enqueue(Target::Recording {
                recording: recording.clone(),
                kind,
                bot: bot.as_ref().map(ToString::to_string),
            })
            .await?;
    }
    tracing::info!(recording = %recording, "media fetch queued");
    Ok("media")
}

/// The media a webhook says is done, and would queue a fetch of; `None` for any other.
fn media_kinds(event: &str) -> Option<&'static [MediaKind]> {
    match event {
        "video_separate.done" => Some(&[MediaKind::Video]),
        "audio_separate.done" => Some(&[MediaKind::Audio]),
        "recording.done" => Some(&MediaKind::ALL),
        _ => None,
    }
}
