//! The export routes: start, follow, cancel and download MP4 exports of a stream, and the
//! quick looks (the frame at a time, contact sheets, an animated preview).

use std::borrow::Cow;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use super::api::{CatalogResult as _, recording_id, stream_key, urls};
use super::stored::serve_stored;
use crate::error::ApiError;
use crate::export::render::RenderError;
use crate::export::{ExportError, ExportSpec, JobRecord, is_job_id, looks};
use crate::frame::RecordingId;
use crate::state::AppState;

/// Most frames a contact sheet holds.
const MAX_SHEET_FRAMES: usize = 60;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route(
            "/api/recordings/{recording}/exports",
            get(list_exports).post(start_export),
        )
        .route(
            "/api/recordings/{recording}/exports/{job}",
            get(get_export).delete(cancel_export),
        )
        .route(
            "/api/recordings/{recording}/exports/{job}/file",
            get(download_export),
        )
        .route(
            "/api/recordings/{recording}/contact.png",
            get(get_meeting_sheet),
        )
        .route(
            "/api/recordings/{recording}/{participant}/{stream}/at",
            get(get_frame_at),
        )
        .route(
            "/api/recordings/{recording}/{participant}/{stream}/contact.png",
            get(get_stream_sheet),
        )
        .route(
            "/api/recordings/{recording}/{participant}/{stream}/preview.webp",
            get(get_preview),
        )
}

impl From<ExportError> for ApiError {
    fn from(error: ExportError) -> Self {
        match error {
            ExportError::Unavailable(_) => ApiError::Unavailable(error.to_string()),
            ExportError::BadSpec(why) => ApiError::InvalidRequest(why),
            ExportError::NotFound
            | ExportError::Catalog(crate::catalog::CatalogError::NotFound) => {
                ApiError::NotFound("export")
            }
            other => ApiError::Internal(other.into()),
        }
    }
}

/// A job as the API shows it.
#[derive(Serialize)]
struct JobJson {
    #[serde(flatten)]
    record: JobRecord,
    percent: f64,
    url: String,
    /// Where the MP4 is, once done.
    download_url: Option<String>,
}

impl JobJson {
    fn new(recording: &RecordingId, record: JobRecord) -> Self {
        let url = format!("/api/recordings/{recording}/exports/{}", record.id);
        JobJson {
            percent: (record.percent() * 10.0).round() / 10.0,
            download_url: (record.status == crate::export::Status::Done)
                .then(|| format!("{url}/file")),
            url,
            record,
        }
    }
}

async fn start_export(
    State(state): State<AppState>,
    Path(recording): Path<String>,
    spec: Result<Json<ExportSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let id = recording_id(&recording)?;
    state.exports.ffmpeg()?;
    let Json(spec) = spec?;
    let (record, started) = state.exports.start_job(&id, spec).await?;
    let status = if started {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(JobJson::new(&id, record))).into_response())
}

async fn list_exports(
    State(state): State<AppState>,
    Path(recording): Path<String>,
) -> Result<Json<impl Serialize>, ApiError> {
    let id = recording_id(&recording)?;
    let jobs = state.exports.jobs(&id).await?;
    Ok(Json(serde_json::json!({
        "exports": jobs.into_iter().map(|job| JobJson::new(&id, job)).collect::<Vec<_>>()
    })))
}

fn job_id(text: &str) -> Result<&str, ApiError> {
    if is_job_id(text) {
        Ok(text)
    } else {
        Err(ApiError::NotFound("export"))
    }
}

async fn get_export(
    State(state): State<AppState>,
    Path((recording, job)): Path<(String, String)>,
) -> Result<Json<impl Serialize>, ApiError> {
    let id = recording_id(&recording)?;
    let record = state.exports.job(&id, job_id(&job)?).await?;
    Ok(Json(JobJson::new(&id, record)))
}

async fn cancel_export(
    State(state): State<AppState>,
    Path((recording, job)): Path<(String, String)>,
) -> Result<Json<impl Serialize>, ApiError> {
    let id = recording_id(&recording)?;
    let record = state.exports.cancel(&id, job_id(&job)?).await?;
    Ok(Json(JobJson::new(&id, record)))
}

async fn download_export(
    State(state): State<AppState>,
    Path((recording, job)): Path<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let id = recording_id(&recording)?;
    let job = job_id(&job)?;
    let key = state.exports.result(&id, job).await?;
    let mut response = serve_stored(
        state.exports.store(),
        &key,
        "video/mp4",
        request,
        &state.shutdown,
    )
    .await
    .map_err(|e| ApiError::Internal(e.into()))?
    .ok_or(ApiError::NotFound("export"))?;
    let name = format!("attachment; filename=\"{id}-{job}.mp4\"");
    if let Ok(value) = HeaderValue::from_str(&name) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

#[derive(Deserialize)]
struct AtParams {
    t: String,
}

/// The frame shown at `t` seconds: the last saved at or before it, as a redirect to the
/// frame's own (immutable) address. 404 before the stream's first frame.
async fn get_frame_at(
    State(state): State<AppState>,
    Path((recording, participant, kind)): Path<(String, String, String)>,
    params: Result<Query<AtParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = stream_key(&recording, &participant, &kind)?;
    let bad = || {
        ApiError::BadRequest(Cow::Borrowed(
            "t must be a number of seconds from the start of the recording, such as t=754.2",
        ))
    };
    let Query(params) = params.map_err(|_| bad())?;
    let seconds: f64 = params.t.trim().parse().map_err(|_| bad())?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(bad());
    }
    let ms = (seconds * 1000.0).round() as u64;
    match state
        .catalog
        .frame_at(&key, ms)
        .await
        .or_not_found("stream")?
    {
        Some((_, frame)) if frame.relative_ms <= ms => {
            Ok(Redirect::to(&urls::frame(&key, frame.relative_ms)).into_response())
        }
        _ => Err(ApiError::NotFound("frame at or before t")),
    }
}

#[derive(Deserialize)]
struct SheetParams {
    n: Option<usize>,
}

fn sheet_frames(
    params: Result<Query<SheetParams>, QueryRejection>,
    default: usize,
) -> Result<usize, ApiError> {
    let n = params.ok().and_then(|Query(p)| p.n).unwrap_or(default);
    if (1..=MAX_SHEET_FRAMES).contains(&n) {
        Ok(n)
    } else {
        Err(ApiError::BadRequest(Cow::Owned(format!(
            "n must be a whole number from 1 to {MAX_SHEET_FRAMES}"
        ))))
    }
}

fn png(bytes: Vec<u8>) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response()
}

async fn get_stream_sheet(
    State(state): State<AppState>,
    Path((recording, participant, kind)): Path<(String, String, String)>,
    params: Result<Query<SheetParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let key = stream_key(&recording, &participant, &kind)?;
    let n = sheet_frames(params, 12)?;
    let sheet = looks::stream_sheet(&state.catalog, &key, n)
        .await
        .or_not_found("stream")?;
    Ok(png(sheet))
}

async fn get_meeting_sheet(
    State(state): State<AppState>,
    Path(recording): Path<String>,
    params: Result<Query<SheetParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let id = recording_id(&recording)?;
    let n = sheet_frames(params, 8)?;
    let sheet = looks::meeting_sheet(&state.catalog, &id, n)
        .await
        .or_not_found("recording")?;
    Ok(png(sheet))
}

async fn get_preview(
    State(state): State<AppState>,
    Path((recording, participant, kind)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let key = stream_key(&recording, &participant, &kind)?;
    let ffmpeg = state.exports.ffmpeg()?;
    let cancel = state.shutdown.child_token();
    match looks::preview(ffmpeg, &state.catalog, &key, &cancel).await {
        Ok(webp) => Ok((
            [
                (header::CONTENT_TYPE, "image/webp"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            webp,
        )
            .into_response()),
        Err(
            RenderError::Catalog(crate::catalog::CatalogError::NotFound) | RenderError::NoFrames,
        ) => Err(ApiError::NotFound("stream")),
        Err(error) => Err(ApiError::Internal(error.into())),
    }
}
