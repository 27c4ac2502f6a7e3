//! The browse UI: server-rendered pages (askama templates in `templates/`) with a little
//! plain JavaScript and CSS from `static/`, all compiled into the binary.

use crate::layout::EventRecord;
use std::hash::{DefaultHasher, Hash as _, Hasher as _};
use std::sync::LazyLock;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde::Deserialize;

use crate::audio::AudioTrackKey;
use crate::catalog::{AudioPieces, CatalogError, RecordingDetail};
use crate::catalog::{ParticipantDetail, RecordingOverview, StreamSummary};
use crate::error::ApiError;
use crate::frame::{Participant, StreamKind};
use crate::http::api::{CatalogResult as _, recording_id, stream_key, urls};
use crate::state::AppState;

mod recall_media;

const APP_JS: &str = include_str!("../../static/app.js");
const AUDIO_JS: &str = include_str!("../../static/audio.js");
const RECALL_JS: &str = include_str!("../../static/recall.js");
const EXPORT_JS: &str = include_str!("../../static/export.js");
const APP_CSS: &str = include_str!("../../static/app.css");
const FAVICON: &str = include_str!("../../static/favicon.svg");
const REPLAY_JS: &str = include_str!("../../static/replay.js");
const REPLAY_CSS: &str = include_str!("../../static/replay.css");

/// Pages load nothing from anywhere else, and run no inline script.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self'; style-src 'self'; \
     script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

/// Changes whenever the assets do, so they can be cached for good under a versioned URL.
static ASSET_VERSION: LazyLock<String> = LazyLock::new(|| {
    let mut hasher = DefaultHasher::new();
    (APP_JS, APP_CSS, FAVICON).hash(&mut hasher);
    AUDIO_JS.hash(&mut hasher);
    (REPLAY_JS, REPLAY_CSS, RECALL_JS, EXPORT_JS).hash(&mut hasher);
    format!("{:016x}", hasher.finish())
});

/// The version the pages put in their assets' URLs.
pub fn assets() -> &'static str {
    &ASSET_VERSION
}

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(show_index))
        .route("/recordings/{recording}", get(show_recording))
        .route(
            "/recordings/{recording}/{participant}/{stream}",
            get(show_stream),
        )
        .route("/static/{asset}", get(get_asset))
}

// ---- formatting ----

/// `75.25` s → `1:15.250`; an hour or more → `1:01:15.250`.
pub fn clock(seconds: f64) -> String {
    let ms = (seconds.max(0.0) * 1000.0).round() as u64;
    let (h, m, s, ms) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{ms:03}")
    } else {
        format!("{m}:{s:02}.{ms:03}")
    }
}

/// A length of time for people: `42 s`, `12 min`, `1 h 05 min`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s / 60 % 60),
    }
}

/// `2026-11-21 10:00:12 UTC`.
pub fn wall_clock(time: Timestamp) -> String {
    time.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn kind_label(kind: StreamKind) -> &'static str {
    match kind {
        StreamKind::Webcam => "Webcam",
        StreamKind::Screenshare => "Screen share",
    }
}

fn display_name(detail: &ParticipantDetail) -> String {
    person_name(&detail.participant)
}

fn person_name(participant: &Participant) -> String {
    participant
        .name
        .clone()
        .filter(|name| !name.trim().is_empty())
        .unwrap_or_else(|| format!("Participant {}", participant.id))
}

/// Names a card lists before it counts the rest.
const NAMES_SHOWN: usize = 4;

/// `Alice Smith, Bob Okafor and Carmen Díaz`; past [`NAMES_SHOWN`], `... and 3 more`.
fn people_text(people: &[Participant]) -> String {
    let names: Vec<String> = people.iter().map(person_name).collect();
    match names.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        _ if names.len() > NAMES_SHOWN => format!(
            "{} and {} more",
            names[..NAMES_SHOWN].join(", "),
            names.len() - NAMES_SHOWN
        ),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

// ---- view models ----

struct RecordingCard {
    id: String,
    title: String,
    /// The names of who took part, as one line.
    people: String,
    page: String,
    started: String,
    duration: String,
    participants: String,
    frames: u64,
    frames_text: String,
    thumbnail: Option<String>,
    /// `<participant>/<kind>` of the thumbnail, so live frames of that stream replace it.
    thumbnail_stream: String,
    /// The ZIP of the whole recording.
    zip: String,
    /// The meeting replay.
    replay: String,
    /// What it takes in storage, as last measured ("–" before the first measurement).
    size: String,
}

impl RecordingCard {
    fn new(overview: &RecordingOverview) -> Self {
        RecordingCard {
            id: overview.id.to_string(),
            title: overview.title.text.clone(),
            people: people_text(&overview.people),
            page: urls::recording_page(&overview.id),
            zip: urls::recording_zip(&overview.id),
            replay: crate::http::replay::replay_page(&overview.id),
            size: String::from("–"),
            started: overview.started_at.map(wall_clock).unwrap_or_default(),
            duration: overview.duration().map(duration).unwrap_or_default(),
            participants: plural(overview.participants as u64, "participant", "participants"),
            frames: overview.frames,
            frames_text: plural(overview.frames, "frame", "frames"),
            thumbnail: overview
                .thumbnail
                .as_ref()
                .map(|(key, frame)| urls::frame(key, frame.relative_ms)),
            thumbnail_stream: overview
                .thumbnail
                .as_ref()
                .map(|(key, _)| format!("{}/{}", key.participant, key.kind))
                .unwrap_or_default(),
        }
    }
}

struct ParticipantCard {
    id: u64,
    name: String,
    is_host: bool,
    details: String,
    streams: Vec<StreamTile>,
    /// Their audio track, when the bot sent it.
    audio: Option<AudioTile>,
}

/// An audio track as a card and the player show it: where it is, how long it runs.
struct AudioTile {
    wav_url: String,
    levels_url: String,
    /// Seconds from the recording's start to its last sample.
    seconds: f64,
    /// The same, for people.
    duration: String,
}

impl AudioTile {
    fn new(track: &AudioTrackKey, pieces: &AudioPieces) -> Self {
        AudioTile {
            wav_url: urls::audio_wav(track),
            levels_url: urls::audio_levels(track),
            seconds: pieces.duration(),
            duration: duration(pieces.duration()),
        }
    }
}

struct StreamTile {
    /// `<participant>/<kind>`: how live events find this tile.
    stream: String,
    label: &'static str,
    frames: usize,
    frames_text: String,
    span: String,
    latest: Option<String>,
    page: String,
    zip: String,
}

impl StreamTile {
    fn new(stream: &StreamSummary) -> Self {
        let span = match (stream.first, stream.last) {
            (Some(first), Some(last)) => {
                format!("{} – {}", clock(first.relative), clock(last.relative))
            }
            _ => String::new(),
        };
        StreamTile {
            stream: format!("{}/{}", stream.key.participant, stream.key.kind),
            label: kind_label(stream.key.kind),
            frames: stream.frames,
            frames_text: plural(stream.frames as u64, "frame", "frames"),
            span,
            latest: stream.last.map(|f| urls::frame(&stream.key, f.relative_ms)),
            page: urls::stream_page(&stream.key),
            zip: urls::zip(&stream.key),
        }
    }
}

struct TimelineItem {
    at: String,
    absolute: String,
    who: String,
    what: String,
    detail: String,
    class: &'static str,
}

impl TimelineItem {
    fn new(event: &EventRecord) -> Self {
        let kind = event.short_name();
        let what = match kind {
            "join" => "joined",
            "leave" => "left",
            "update" => "was updated",
            "webcam_on" => "turned the camera on",
            "webcam_off" => "turned the camera off",
            "screenshare_on" => "started sharing the screen",
            "screenshare_off" => "stopped sharing the screen",
            "speech_on" => "started speaking",
            "speech_off" => "stopped speaking",
            "chat_message" => "wrote in the chat",
            other => other,
        };
        let detail = event
            .data
            .get("text")
            .and_then(|text| text.as_str())
            .unwrap_or_default()
            .to_owned();
        let class = match kind {
            "join" | "webcam_on" | "screenshare_on" => "on",
            "leave" | "webcam_off" | "screenshare_off" => "off",
            "chat_message" => "chat",
            _ => "other",
        };
        TimelineItem {
            at: clock(event.timestamp.relative),
            absolute: event.timestamp.absolute.map(wall_clock).unwrap_or_default(),
            who: event
                .participant
                .name
                .clone()
                .unwrap_or_else(|| format!("Participant {}", event.participant.id)),
            what: what.to_owned(),
            detail,
            class,
        }
    }
}

// ---- pages ----

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    assets: &'static str,
    recordings: Vec<RecordingCard>,
    /// All that is stored, and the cap, as one line ("12 MB stored of 10 GB").
    stored: String,
}

#[derive(Template)]
#[template(path = "recording.html")]
struct RecordingPage {
    assets: &'static str,
    recording: RecordingCard,
    bot_id: String,
    participants: Vec<ParticipantCard>,
    timeline: Vec<TimelineItem>,
    /// Recall's media and the bot's status history, once there are some.
    recall: Option<recall_media::RecallSection>,
}

#[derive(Template)]
#[template(path = "stream.html")]
struct StreamPage {
    assets: &'static str,
    recording_id: String,
    recording_title: String,
    recording_page: String,
    participant_id: u64,
    kind: &'static str,
    title: String,
    frames_url: String,
    zip: String,
    total: usize,
    shown: Option<ShownFrame>,
    /// The participant's audio, played in step with the frames.
    audio: Option<AudioTile>,
}

/// The frame a stream page opens at: the first, or the one at or before `?t=`.
struct ShownFrame {
    url: String,
    width: u32,
    height: u32,
    at: String,
    absolute: String,
    /// Its place in the stream, from 0.
    index: usize,
}

#[derive(Deserialize)]
struct MomentParams {
    /// Seconds since the recording started.
    t: Option<String>,
}

/// `?t=<seconds>` as the millisecond it names. Past the last frame is fine (the last frame
/// is shown); anything but a number of seconds from 0 up is refused.
pub fn moment(t: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(t) = t else { return Ok(None) };
    match t.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            // Saturates past u64::MAX: the last frame, as for any time past the end.
            Ok(Some((seconds * 1000.0).round() as u64))
        }
        _ => Err(ApiError::BadRequest(std::borrow::Cow::Borrowed(
            "t must be a number of seconds from the start of the recording, such as t=12.5",
        ))),
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    assets: &'static str,
    /// `404 Not Found`.
    status: String,
    message: String,
}

/// An error answering a page: the same status and message as the API's JSON, as a page a
/// browser shows, with a way back to the recordings.
pub struct PageError(ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        PageError(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let PageError(error) = self;
        let status = error.status();
        error.log();
        let shown = ErrorPage {
            assets: &ASSET_VERSION,
            status: format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error")
            ),
            message: error.to_string(),
        };
        match page(&shown) {
            Ok(response) => (status, response).into_response(),
            // A page that cannot be drawn: the API's answer still says what went wrong.
            Err(_) => error.into_response(),
        }
    }
}

pub fn page(template: &impl Template) -> Result<Response, ApiError> {
    let html = template
        .render()
        .map_err(|error| ApiError::Internal(error.into()))?;
    let mut response = Html(html).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

async fn show_index(State(state): State<AppState>) -> Result<Response, PageError> {
    let recordings = state.catalog.recordings().await.or_not_found("recording")?;
    let usage = state.keeper.usage();
    let stored = match (&usage, state.keeper.max_stored_bytes()) {
        (None, _) => String::new(),
        (Some(usage), None) => format!("{} stored", size_text(usage.total_bytes)),
        (Some(usage), Some(max)) => format!(
            "{} stored of {} (MAX_STORED_BYTES)",
            size_text(usage.total_bytes),
            size_text(max)
        ),
    };
    page(&IndexPage {
        assets: &ASSET_VERSION,
        recordings: recordings
            .iter()
            .map(|overview| RecordingCard::new(overview).sized(usage.as_deref()))
            .collect(),
        stored,
    })
    .map_err(PageError)
}

/// Bytes as people read them: `1.2 MB`.
pub fn size_text(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().si().to_string()
}

impl RecordingCard {
    /// With the recording's size, as the storage check last measured it.
    fn sized(mut self, usage: Option<&crate::retention::Usage>) -> Self {
        if let Some(measured) = usage.and_then(|usage| {
            crate::frame::RecordingId::parse(&self.id)
                .and_then(|id| usage.recordings.get(&id).copied())
        }) {
            self.size = size_text(measured.bytes);
        }
        self
    }
}

async fn show_recording(
    State(state): State<AppState>,
    Path(recording): Path<String>,
) -> Result<Response, PageError> {
    let id = recording_id(&recording)?;
    let detail = state
        .catalog
        .recording(&id)
        .await
        .or_not_found("recording")?;
    let events = state.catalog.events(&id).await.or_not_found("recording")?;
    let audio = audio_tiles(&state, &detail).await?;
    let bot_id = detail.overview.bot_id().unwrap_or_default();
    let recall = recall_section(&state, &detail, &bot_id).await?;
    let participants = detail
        .participants
        .iter()
        .zip(audio)
        .map(|(p, audio)| {
            let details = [
                p.participant.email.as_deref(),
                p.participant.platform.as_deref(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" · ");
            ParticipantCard {
                id: p.participant.id.0,
                name: display_name(p),
                is_host: p.participant.is_host,
                details,
                streams: p.streams.iter().map(StreamTile::new).collect(),
                audio,
            }
        })
        .collect();
    page(&RecordingPage {
        assets: &ASSET_VERSION,
        recording: RecordingCard::new(&detail.overview).sized(state.keeper.usage().as_deref()),
        bot_id,
        participants,
        timeline: events.iter().map(TimelineItem::new).collect(),
        recall,
    })
    .map_err(PageError)
}

async fn recall_section(
    state: &AppState,
    detail: &RecordingDetail,
    bot_id: &str,
) -> Result<Option<recall_media::RecallSection>, PageError> {
    let internal =
        |error: crate::recall_media::MediaError| PageError(ApiError::Internal(error.into()));
    let media = state
        .recall_media
        .recording_media(&detail.overview.id)
        .await
        .map_err(internal)?;
    let bot = if bot_id.is_empty() {
        media.bot_id().unwrap_or_default().to_owned()
    } else {
        bot_id.to_owned()
    };
    let bot_status = match crate::recall::BotId::parse(&bot) {
        Some(bot) => state
            .recall_media
            .bot_status(&bot)
            .await
            .map_err(internal)?,
        None => Vec::new(),
    };
    Ok(recall_media::RecallSection::new(
        detail,
        &media,
        &bot_status,
    ))
}

async fn show_stream(
    State(state): State<AppState>,
    Path((recording, participant, kind)): Path<(String, String, String)>,
    Query(params): Query<MomentParams>,
) -> Result<Response, PageError> {
    let key = stream_key(&recording, &participant, &kind)?;
    let moment = moment(params.t.as_deref())?;
    let detail = state
        .catalog
        .recording(&key.recording)
        .await
        .or_not_found("recording")?;
    let who = detail
        .participants
        .iter()
        .find(|p| p.participant.id == key.participant)
        .ok_or(ApiError::NotFound("participant"))?;
    let stream = who
        .streams
        .iter()
        .find(|s| s.key.kind == key.kind)
        .ok_or(ApiError::NotFound("stream"))?;
    let opening = match moment {
        Some(ms) => state
            .catalog
            .frame_at(&key, ms)
            .await
            .or_not_found("stream")?,
        None => stream.first.map(|f| (0, f)),
    };
    let shown = opening.map(|(index, f)| ShownFrame {
        url: urls::frame(&key, f.relative_ms),
        width: f.width,
        height: f.height,
        at: clock(f.relative),
        absolute: f.absolute.map(wall_clock).unwrap_or_default(),
        index,
    });
    let track = AudioTrackKey {
        recording: key.recording.clone(),
        participant: Some(key.participant),
    };
    let audio = match state.catalog.audio_pieces(&track).await {
        Err(CatalogError::NotFound) => None,
        found => Some(AudioTile::new(&track, &found.or_not_found("audio")?)),
    };
    page(&StreamPage {
        assets: &ASSET_VERSION,
        audio,
        recording_id: key.recording.to_string(),
        recording_title: detail.overview.title.text.clone(),
        recording_page: urls::recording_page(&key.recording),
        participant_id: key.participant.0,
        kind: key.kind.as_str(),
        title: format!("{} · {}", display_name(who), kind_label(key.kind)),
        frames_url: urls::frames(&key),
        zip: urls::zip(&key),
        total: stream.frames,
        shown,
    })
    .map_err(PageError)
}

/// Each participant's audio tile, in the recording's order; one listing per track.
async fn audio_tiles(
    state: &AppState,
    detail: &RecordingDetail,
) -> Result<Vec<Option<AudioTile>>, ApiError> {
    let audio = state
        .catalog
        .recording_audio(detail)
        .await
        .or_not_found("recording")?;
    Ok(detail
        .participants
        .iter()
        .zip(audio.participants)
        .map(|(p, pieces)| {
            let track = AudioTrackKey {
                recording: detail.overview.id.clone(),
                participant: Some(p.participant.id),
            };
            pieces.map(|pieces| AudioTile::new(&track, &pieces))
        })
        .collect())
}

#[derive(Deserialize)]
struct AssetParams {
    v: Option<String>,
}

async fn get_asset(
    Path(asset): Path<String>,
    Query(params): Query<AssetParams>,
) -> Result<Response, ApiError> {
    let (body, content_type) = match asset.as_str() {
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        "audio.js" => (AUDIO_JS, "text/javascript; charset=utf-8"),
        "recall.js" => (RECALL_JS, "text/javascript; charset=utf-8"),
        "export.js" => (EXPORT_JS, "text/javascript; charset=utf-8"),
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "replay.js" => (REPLAY_JS, "text/javascript; charset=utf-8"),
        "replay.css" => (REPLAY_CSS, "text/css; charset=utf-8"),
        "favicon.svg" => (FAVICON, "image/svg+xml"),
        _ => return Err(ApiError::NotFound("file")),
    };
    // A URL with the current version names these exact bytes for good.
    let cache = if params.v.as_deref() == Some(ASSET_VERSION.as_str()) {
        crate::http::api::IMMUTABLE
    } else {
        "no-cache"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_people_expect() {
        assert_eq!(clock(0.0), "0:00.000");
        assert_eq!(clock(12.5), "0:12.500");
        assert_eq!(clock(75.25), "1:15.250");
        assert_eq!(clock(3675.001), "1:01:15.001");
        assert_eq!(duration(12.0), "12 s");
        assert_eq!(duration(754.0), "12 min 34 s");
        assert_eq!(duration(3900.0), "1 h 05 min");
        let at: Timestamp = "2026-11-21T10:00:12.5Z".parse().unwrap();
        assert_eq!(wall_clock(at), "2026-11-21 10:00:12 UTC");
    }

    #[test]
    fn a_moment_is_seconds_from_the_start() {
        assert_eq!(moment(None).unwrap(), None);
        assert_eq!(moment(Some("12.5")).unwrap(), Some(12_500));
        assert_eq!(moment(Some("0")).unwrap(), Some(0));
        assert_eq!(moment(Some("1e30")).unwrap(), Some(u64::MAX));
        for bad in ["", "-1", "NaN", "inf", "12s", "1:00"] {
            assert!(moment(Some(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_card_names_the_first_few_people_and_counts_the_rest() {
        let person = |id: u64, name: Option<&str>| Participant {
            name: name.map(str::to_owned),
            ..Participant::unknown(crate::frame::ParticipantId(id))
        };
        let names = ["Alice", "Bob", "Carol", "Dan", "Eve", "Frank"];
        let people: Vec<Participant> = (0..6).map(|i| person(i, Some(names[i as usize]))).collect();
        assert_eq!(people_text(&[]), "");
        assert_eq!(people_text(&people[..1]), "Alice");
        assert_eq!(people_text(&people[..3]), "Alice, Bob and Carol");
        assert_eq!(people_text(&people[..4]), "Alice, Bob, Carol and Dan");
        assert_eq!(people_text(&people), "Alice, Bob, Carol, Dan and 2 more");
        assert_eq!(
            people_text(&[person(7, None), person(8, Some(" "))]),
            "Participant 7 and Participant 8"
        );
    }
}
