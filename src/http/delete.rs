//! `DELETE /api/recordings/{recording}` and `DELETE /api/recordings/{recording}/{participant}`:
//! deleting through [`crate::deletion`], with the checks only a running server can make (a
//! bot still streaming into the recording is a 409 unless `force=true`), and optionally
//! Recall's copy too (`recall=true`); and `GET /api/storage`, what is stored against the
//! quota. Mounted behind the API guard.

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::{delete, get};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::catalog;
use crate::deletion::{Deleted, DeletedBy, DeletionError, Target};
use crate::error::ApiError;
use crate::frame::RecordingId;
use crate::http::api::{CatalogResult as _, recording_id};
use crate::live::LiveEvent;
use crate::recall::{BotId, Bots};
use crate::state::AppState;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/storage", get(get_storage))
        .route("/api/recordings/{recording}", delete(delete_recording))
        .route(
            "/api/recordings/{recording}/{participant}",
            delete(delete_participant),
        )
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteParams {
    /// Delete even while a bot streams into the recording: what it sends next is refused.
    #[serde(default)]
    force: bool,
    /// Also ask Recall to delete its copy of the bot's media.
    #[serde(default)]
    recall: bool,
}

fn params(query: Result<Query<DeleteParams>, QueryRejection>) -> Result<DeleteParams, ApiError> {
    query.map(|Query(params)| params).map_err(|_| {
        ApiError::BadRequest(Cow::Borrowed(
            "the parameters are force=true|false and recall=true|false",
        ))
    })
}

async fn delete_recording(
    State(state): State<AppState>,
    Path(recording): Path<String>,
    query: Result<Query<DeleteParams>, QueryRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let id = recording_id(&recording)?;
    let params = params(query)?;
    if params.recall {
        // Before anything is deleted: once the local copy is gone, so is the bot id that
        // Recall's copy is found by.
        state
            .bots
            .client_to(crate::recall::DELETE_MEDIA)
            .map_err(ApiError::Bot)?;
    }
    let detail = state
        .catalog
        .recording(&id)
        .await
        .or_not_found("recording")?;
    refuse_while_streaming(&state, &id, params.force)?;
    let recall = match params.recall {
        true => Some(delete_at_recall(&state.bots, detail.overview.bot_id()).await),
        false => None,
    };
    deleted(&state, Target::Recording(id), recall).await
}

async fn delete_participant(
    State(state): State<AppState>,
    Path((recording, participant)): Path<(String, String)>,
    query: Result<Query<DeleteParams>, QueryRejection>,
) -> Result<Json<Deleted>, ApiError> {
    let id = recording_id(&recording)?;
    let participant = catalog::parse_participant_id(&participant).ok_or(ApiError::BadRequest(
        Cow::Borrowed("participant id must be a number"),
    ))?;
    let params = params(query)?;
    if params.recall {
        return Err(ApiError::BadRequest(Cow::Borrowed(
            "recall=true deletes a whole bot's media at Recall: it is for a recording, not a participant",
        )));
    }
    let detail = state
        .catalog
        .recording(&id)
        .await
        .or_not_found("recording")?;
    let folder = detail
        .participants
        .iter()
        .find(|p| p.participant.id == participant)
        .map(|p| p.folder.clone())
        .ok_or(ApiError::NotFound("participant"))?;
    refuse_while_streaming(&state, &id, params.force)?;
    let target = Target::Participant {
        recording: id,
        participant,
        folder,
    };
    deleted(&state, target, None).await
}

/// What is stored, as the storage check last measured it: every byte, the cap, and each
/// recording's share, largest first.
async fn get_storage(State(state): State<AppState>) -> Json<Value> {
    let keeper = &state.keeper;
    let usage = keeper.usage();
    let mut recordings: Vec<Value> = usage
        .iter()
        .flat_map(|usage| usage.recordings.iter())
        .map(|(id, usage)| {
            json!({"id": id, "bytes": usage.bytes, "objects": usage.objects,
                   "last_written": usage.last_written})
        })
        .collect();
    recordings.sort_by(|a, b| {
        b["bytes"]
            .as_u64()
            .cmp(&a["bytes"].as_u64())
            .then(a["id"].as_str().cmp(&b["id"].as_str()))
    });
    Json(json!({
        "measured": usage.is_some(),
        "stored_bytes": usage.as_ref().map(|usage| usage.total_bytes),
        "max_stored_bytes": keeper.max_stored_bytes(),
        "quota_reached": keeper.degraded_reason().is_some(),
        "retention_seconds": state.config.retention.map(|r| r.as_secs()),
        "retention": state.config.retention.map(crate::config::format_period),
        "recordings": recordings,
    }))
}

fn refuse_while_streaming(
    state: &AppState,
    recording: &RecordingId,
    force: bool,
) -> Result<(), ApiError> {
    if !force && state.pipeline.is_streaming(recording) {
        return Err(ApiError::Conflict(Cow::Owned(format!(
            "a bot sent something to recording {recording} within STREAM_IDLE_TIMEOUT ({}), \
             so it may still be streaming: delete it once the meeting is over, or with \
             force=true, after which what a bot sends to it is refused",
            humantime::format_duration(state.config.stream_idle_timeout)
        ))));
    }
    Ok(())
}

/// Deletes `target` and tells everyone who shows it.
async fn deleted(
    state: &AppState,
    target: Target,
    recall: Option<Value>,
) -> Result<Json<Deleted>, ApiError> {
    let deletions = state.keeper.deletions();
    let deleted = match deletions.delete(&target, DeletedBy::Api, recall).await {
        Ok(deleted) => deleted,
        Err(DeletionError::NotFound) => return Err(ApiError::NotFound("recording")),
        Err(DeletionError::Store(error)) => return Err(ApiError::Internal(error.into())),
    };
    state.catalog.forget(target.recording());
    state.metrics.storage.deleted(DeletedBy::Api, deleted.bytes);
    state.keeper.recheck();
    state.live.publish(LiveEvent::Deleted {
        recording: deleted.recording.clone(),
        participant: deleted.participant,
    });
    Ok(Json(deleted))
}

/// Asks Recall to delete the bot's media, and says how that went: Recall's answer, or why
/// it could not be asked. The local deletion goes ahead either way.
pub async fn delete_at_recall(bots: &Bots, bot: Option<String>) -> Value {
    let Some(bot) = bot else {
        return json!({"deleted": false, "error": "recording.json names no bot, so Recall cannot be asked"});
    };
    let Some(id) = BotId::parse(&bot) else {
        return json!({"bot": bot, "deleted": false, "error": "the bot id in recording.json is not one Recall gives"});
    };
    match bots.delete_media(&id).await {
        Ok(answer) => json!({"bot": bot, "deleted": true, "answer": answer}),
        Err(error) => {
            let error = ApiError::from(error);
            error.log();
            let mut report = json!({
                "bot": bot,
                "deleted": false,
                "status": error.status().as_u16(),
                "error": error.to_string(),
            });
            if let ApiError::Bot(crate::recall::BotError::Recall(
                crate::recall::RecallError::Refused { body, .. },
            )) = &error
            {
                report["answer"] = body.clone();
            }
            report
        }
    }
}
