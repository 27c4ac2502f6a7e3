//! The stand-in's async media (issue 13), as Recall serves it: paginated lists of a
//! recording's `video_separate` and `audio_separate` objects, each object's parts as JSON
//! behind a download URL, and each part's file behind its own. Download URLs carry a token
//! that expires when the test says (or when a download is cut), after which only a fresh
//! listing gives working ones. Also Recall's webhooks, signed like Svix's.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{RecallStandIn, Shared};

/// The path prefix of download URLs, which need no API key.
pub const DOWNLOADS: &str = "/media/";

/// What a part's file holds.
#[derive(Clone)]
pub enum Content {
    Bytes(Arc<Vec<u8>>),
    /// `len` pseudo-random bytes from `seed`, made as they are sent (for large parts).
    Generated {
        len: u64,
        seed: u64,
    },
}

impl Content {
    pub fn bytes(bytes: Vec<u8>) -> Self {
        Content::Bytes(Arc::new(bytes))
    }

    pub fn len(&self) -> u64 {
        match self {
            Content::Bytes(bytes) => bytes.len() as u64,
            Content::Generated { len, .. } => *len,
        }
    }

    /// The bytes from `from`, in chunks of at most `chunk`.
    fn chunk(&self, from: u64, chunk: u64) -> Vec<u8> {
        let to = (from + chunk).min(self.len());
        match self {
            Content::Bytes(bytes) => bytes[from as usize..to as usize].to_vec(),
            Content::Generated { seed, .. } => (from..to).map(|i| generated(*seed, i)).collect(),
        }
    }

    /// Hex SHA-256 of the whole content.
    pub fn sha256(&self) -> String {
        let mut hasher = Sha256::new();
        let mut at = 0;
        while at < self.len() {
            let chunk = self.chunk(at, 1 << 20);
            at += chunk.len() as u64;
            hasher.update(&chunk);
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn generated(seed: u64, i: u64) -> u8 {
    let mut x = seed ^ (i / 8).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x >> ((i % 8) * 8)) as u8
}

/// One participant's file in a media object.
#[derive(Clone)]
pub struct PartSpec {
    pub id: String,
    pub participant_id: u64,
    pub name: Option<String>,
    /// `webcam` or `screenshare` for video; `None` for audio.
    pub kind: Option<&'static str>,
    pub relative: f64,
    pub duration: f64,
    pub content: Content,
    pub content_type: &'static str,
}

struct MediaObject {
    id: String,
    recording: String,
    resource: &'static str,
    done: bool,
    format: &'static str,
    parts: Vec<PartSpec>,
}

/// One download request as the stand-in answered it.
#[derive(Debug, Clone)]
pub struct Download {
    pub part: String,
    pub status: u16,
}

#[derive(Default)]
pub(super) struct MediaState {
    pub(super) base: String,
    objects: Vec<MediaObject>,
    /// Download URLs carry the generation they were listed in; older ones are refused.
    generation: u64,
    cut_next_after: Option<u64>,
    cut_always_after: Option<u64>,
    bytes_per_second: Option<u64>,
    downloads: Vec<Download>,
    bytes_sent: u64,
}

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/api/v1/video_separate/", get(list_video))
        .route("/api/v1/audio_separate/", get(list_audio))
        .route("/media/parts/{object}", get(get_parts))
        .route("/media/files/{part}", get(get_file))
}

impl RecallStandIn {
    /// Adds a media object of `recording`: `video_separate` or `audio_separate`, done or
    /// still processing.
    pub fn add_media(
        &self,
        recording: &str,
        resource: &'static str,
        id: &str,
        done: bool,
        parts: Vec<PartSpec>,
    ) {
        let format = if resource == "video_separate" {
            "mp4"
        } else {
            "mp3"
        };
        self.shared
            .0
            .lock()
            .unwrap()
            .media
            .objects
            .push(MediaObject {
                id: id.to_owned(),
                recording: recording.to_owned(),
                resource,
                done,
                format,
                parts,
            });
    }

    /// Marks a media object done.
    pub fn finish_media(&self, id: &str) {
        let mut inner = self.shared.0.lock().unwrap();
        for object in &mut inner.media.objects {
            if object.id == id {
                object.done = true;
            }
        }
    }

    /// The next file download is cut after `bytes`, and its URL expires.
    pub fn cut_next_download_after(&self, bytes: u64) {
        self.shared.0.lock().unwrap().media.cut_next_after = Some(bytes);
    }

    /// Every file download from now on is cut after `bytes`, and its URL expires.
    pub fn cut_every_download_after(&self, bytes: u64) {
        self.shared.0.lock().unwrap().media.cut_always_after = Some(bytes);
    }

    /// Files are sent at about this rate from now on.
    pub fn throttle_downloads(&self, bytes_per_second: u64) {
        self.shared.0.lock().unwrap().media.bytes_per_second = Some(bytes_per_second);
    }

    /// Every file download asked for, in order.
    pub fn downloads(&self) -> Vec<Download> {
        self.shared.0.lock().unwrap().media.downloads.clone()
    }

    /// Bytes of files sent so far.
    pub fn media_bytes_sent(&self) -> u64 {
        self.shared.0.lock().unwrap().media.bytes_sent
    }

    /// A bot Recall knows, with these recordings (as `GET /api/v1/bot/{id}/` lists them).
    pub fn add_bot(&self, id: &str, recordings: &[&str]) {
        let recordings: Vec<Value> = recordings
            .iter()
            .map(|r| json!({"id": r, "status": {"code": "done"}, "expires_at": "2026-12-09T10:00:00Z"}))
            .collect();
        self.shared.0.lock().unwrap().bots.insert(
            id.to_owned(),
            json!({"id": id, "recordings": recordings, "metadata": {}, "status_changes": []}),
        );
    }
}

#[derive(Deserialize)]
struct ListQuery {
    recording_id: Option<String>,
    #[serde(default)]
    page: Option<usize>,
}

async fn list_video(state: State<Shared>, query: Query<ListQuery>) -> Response {
    list(state, query, "video_separate")
}

async fn list_audio(state: State<Shared>, query: Query<ListQuery>) -> Response {
    list(state, query, "audio_separate")
}

fn list(
    State(shared): State<Shared>,
    Query(query): Query<ListQuery>,
    resource: &'static str,
) -> Response {
    let inner = shared.0.lock().unwrap();
    let media = &inner.media;
    let Some(recording) = query.recording_id else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"recording_id": ["This field is required."]})),
        )
            .into_response();
    };
    let all: Vec<&MediaObject> = media
        .objects
        .iter()
        .filter(|o| o.recording == recording && o.resource == resource)
        .collect();
    // One object a page, so that every list with two has a next page to follow.
    let size = 1;
    let page = query.page.unwrap_or(1).max(1);
    let results: Vec<Value> = all
        .iter()
        .skip((page - 1) * size)
        .take(size)
        .map(|o| {
            let code = if o.done { "done" } else { "processing" };
            let url = o.done.then(|| {
                format!(
                    "{}/media/parts/{}?token={}",
                    media.base, o.id, media.generation
                )
            });
            json!({
                "id": o.id,
                "recording": {"id": o.recording, "metadata": {}},
                "created_at": "2026-11-21T11:00:00Z",
                "status": {"code": code, "sub_code": null, "updated_at": "2026-11-21T11:05:00Z"},
                "metadata": {},
                "data": {"download_url": url},
                "format": o.format,
            })
        })
        .collect();
    let next = (page * size < all.len()).then(|| {
        format!(
            "{}/api/v1/{resource}/?recording_id={recording}&page={}",
            media.base,
            page + 1
        )
    });
    let previous = (page > 1).then(|| {
        format!(
            "{}/api/v1/{resource}/?recording_id={recording}&page={}",
            media.base,
            page - 1
        )
    });
    axum::Json(json!({"next": next, "previous": previous, "results": results})).into_response()
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<u64>,
}

fn expired() -> Response {
    (
        StatusCode::FORBIDDEN,
        "<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>",
    )
        .into_response()
}

async fn get_parts(
    State(shared): State<Shared>,
    Path(object): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let inner = shared.0.lock().unwrap();
    let media = &inner.media;
    if query.token != Some(media.generation) {
        return expired();
    }
    let Some(object) = media.objects.iter().find(|o| o.id == object) else {
        return (StatusCode::NOT_FOUND, "no such object").into_response();
    };
    let parts: Vec<Value> = object
        .parts
        .iter()
        .map(|p| {
            let mut part = json!({
                "id": p.id,
                "participant": {"id": p.participant_id, "name": p.name, "is_host": p.participant_id == 100,
                                "platform": "desktop", "extra_data": {}},
                "start_timestamp": {"relative": p.relative,
                                    "absolute": super::super::absolute_time(p.relative)},
                "duration": p.duration,
                "download_url": format!("{}/media/files/{}?token={}", media.base, p.id, media.generation),
            });
            if let Some(kind) = p.kind {
                part["type"] = json!(kind);
            }
            part
        })
        .collect();
    axum::Json(parts).into_response()
}

async fn get_file(
    State(shared): State<Shared>,
    Path(part_id): Path<String>,
    Query(query): Query<TokenQuery>,
) -> Response {
    let (part, cut, rate) = {
        let mut inner = shared.0.lock().unwrap();
        let media = &mut inner.media;
        let part = media
            .objects
            .iter()
            .flat_map(|o| &o.parts)
            .find(|p| p.id == part_id)
            .cloned();
        let status = if query.token != Some(media.generation) {
            403
        } else if part.is_none() {
            404
        } else {
            200
        };
        media.downloads.push(Download {
            part: part_id.clone(),
            status,
        });
        if status == 403 {
            return expired();
        }
        let Some(part) = part else {
            return (StatusCode::NOT_FOUND, "no such part").into_response();
        };
        let cut = media.cut_next_after.take().or(media.cut_always_after);
        if cut.is_some() {
            // The URL dies with the cut connection.
            media.generation += 1;
        }
        (part, cut, media.bytes_per_second)
    };
    let len = part.content.len();
    const CHUNK: u64 = 64 * 1024;
    let body = futures_util::stream::unfold(0u64, move |at| {
        let (content, shared) = (part.content.clone(), shared.clone());
        async move {
            if at >= len {
                return None;
            }
            if let Some(cut) = cut
                && at >= cut
            {
                return Some((Err(std::io::Error::other("cut")), len));
            }
            let mut chunk = content.chunk(at, CHUNK);
            if let Some(cut) = cut {
                chunk.truncate((cut - at).min(chunk.len() as u64) as usize);
            }
            if let Some(rate) = rate {
                tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64)).await;
            }
            shared.0.lock().unwrap().media.bytes_sent += chunk.len() as u64;
            let next = at + chunk.len() as u64;
            Some((Ok(bytes::Bytes::from(chunk)), next))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, part.content_type)
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(body))
        .unwrap()
}

/// Posts `body` to `url` as Recall's webhook `id`, signed with `secret` at `timestamp`
/// (unix seconds), with the `webhook-*` headers (`svix-*` when `svix`).
pub async fn deliver_webhook(
    url: &str,
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &Value,
    svix: bool,
) -> reqwest::Response {
    use recall_frames::testing::signature::{SigningSecret, sign_payload};
    let body = body.to_string();
    let secret = SigningSecret::parse(secret).expect("a whsec_ secret");
    let signature = sign_payload(&secret, id, &timestamp.to_string(), body.as_bytes());
    let prefix = if svix { "svix" } else { "webhook" };
    reqwest::Client::new()
        .post(url)
        .header(format!("{prefix}-id"), id)
        .header(format!("{prefix}-timestamp"), timestamp.to_string())
        .header(format!("{prefix}-signature"), signature)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers")
}

/// The body of a bot status webhook.
pub fn bot_status_webhook(
    bot: &str,
    code: &str,
    sub_code: Option<&str>,
    updated_at: &str,
) -> Value {
    json!({
        "event": format!("bot.{code}"),
        "data": {
            "data": {"code": code, "sub_code": sub_code, "updated_at": updated_at},
            "bot": {"id": bot, "metadata": {}}
        }
    })
}

/// The body of a media webhook such as `video_separate.done`.
pub fn media_webhook(event: &str, recording: &str, bot: &str, object: &str) -> Value {
    let resource = event.split('.').next().unwrap_or_default();
    json!({
        "event": event,
        "data": {
            "data": {"code": "done", "sub_code": null, "updated_at": "2026-11-21T11:05:00Z"},
            resource: {"id": object, "metadata": {}},
            "recording": {"id": recording, "metadata": {}},
            "bot": {"id": bot, "metadata": {}}
        }
    })
}
