//! The JSON API over saved recordings and the frames themselves (the ZIP downloads are in
//! [`super::zip`]).
//!
//! Every path segment a client sends is parsed into a checked domain value before the
//! catalog sees it: the catalog never receives a path.

use crate::layout::EventRecord;
use std::borrow::Cow;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use headers::HeaderMapExt as _;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::stored::serve_stored;
use crate::audio::{AudioTrackKey, SAMPLE_RATE, SAMPLES_PER_MS, Span, piece_file_name};
use crate::catalog::{
    self, AudioPieces, CatalogError, FrameInfo, ParticipantDetail, RecordingOverview, StreamSummary,
};
use crate::error::ApiError;
use crate::frame::{FrameTime, RecordingId, StreamKey, StreamKind};
use crate::layout;
use crate::state::AppState;
use crate::title::TitleSource;

/// Frames never change once saved: caches may keep them for good.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// Frames a page lists when the client does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Most frames one page lists.
pub const MAX_PAGE: usize = 1000;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/api/recordings", get(list_recordings))
        .route("/api/recordings/{recording}", get(get_recording))
        .route(
            "/api/recordings/{recording}/zip",
            get(super::zip::get_recording_zip),
        )
        .route(
            "/api/recordings/{recording}/{participant}/{stream}",
            get(super::zip::get_stream_zip),
        )
        // `audio` and `audio.wav` where a stream type goes: a fixed segment wins over
        // `{stream}`. `{participant}` is `mixed` for the mixed track.
        .route(
            "/api/recordings/{recording}/{participant}/audio",
            get(get_audio),
        )
        .route(
            "/api/recordings/{recording}/{participant}/audio.wav",
            get(get_audio_wav),
        )
        .route(
            "/api/recordings/{recording}/{participant}/audio/levels",
            get(get_audio_levels),
        )
        .route(
            "/api/recordings/{recording}/{participant}/{stream}/frames",
            get(list_frames),
        )
        .route(
            "/api/recordings/{recording}/{participant}/{stream}/{frame}",
            get(get_frame),
        )
}

// ---- parsing what the client sent ----

pub fn recording_id(text: &str) -> Result<RecordingId, ApiError> {
    RecordingId::parse(text).ok_or(ApiError::BadRequest(Cow::Borrowed(
        "recording id must be 1 to 128 characters of A-Z a-z 0-9 _ . -, not starting with a dot",
    )))
}

pub fn stream_key(recording: &str, participant: &str, kind: &str) -> Result<StreamKey, ApiError> {
    Ok(StreamKey {
        recording: recording_id(recording)?,
        participant: catalog::parse_participant_id(participant).ok_or(ApiError::BadRequest(
            Cow::Borrowed("participant id must be a number"),
        ))?,
        kind: StreamKind::parse(kind).ok_or(ApiError::BadRequest(Cow::Borrowed(
            "stream type must be webcam or screenshare",
        )))?,
    })
}

/// An audio track from the URL: a participant's id, or `mixed`.
pub fn audio_track(recording: &str, participant: &str) -> Result<AudioTrackKey, ApiError> {
    let participant = match participant {
        "mixed" => None,
        id => Some(
            catalog::parse_participant_id(id).ok_or(ApiError::BadRequest(Cow::Borrowed(
                "participant id must be a number, or mixed for the mixed audio",
            )))?,
        ),
    };
    Ok(AudioTrackKey {
        recording: recording_id(recording)?,
        participant,
    })
}

/// Turns a catalog's answer into the API's, naming what was not found.
pub trait CatalogResult<T> {
    fn or_not_found(self, what: &'static str) -> Result<T, ApiError>;
}

impl<T> CatalogResult<T> for Result<T, CatalogError> {
    fn or_not_found(self, what: &'static str) -> Result<T, ApiError> {
        self.map_err(|error| match error {
            CatalogError::NotFound => ApiError::NotFound(what),
            other => ApiError::Internal(other.into()),
        })
    }
}

// ---- URLs ----

pub mod urls {
    //! The addresses of everything the API and the UI serve.

    use crate::frame::{RecordingId, StreamKey};

    pub fn recording_api(id: &RecordingId) -> String {
        format!("/api/recordings/{id}")
    }

    pub fn recording_page(id: &RecordingId) -> String {
        format!("/recordings/{id}")
    }

    pub fn stream_api(key: &StreamKey) -> String {
        format!(
            "/api/recordings/{}/{}/{}",
            key.recording, key.participant, key.kind
        )
    }

    pub fn stream_page(key: &StreamKey) -> String {
        format!(
            "/recordings/{}/{}/{}",
            key.recording, key.participant, key.kind
        )
    }

    pub fn frames(key: &StreamKey) -> String {
        format!("{}/frames", stream_api(key))
    }

    pub fn frame(key: &StreamKey, relative_ms: u64) -> String {
        format!(
            "{}/{}",
            stream_api(key),
            crate::layout::frame_file_name(relative_ms)
        )
    }

    /// A participant's audio track (`mixed` for the mixed track): its segments and gaps.
    pub fn audio(track: &crate::audio::AudioTrackKey) -> String {
        match track.participant {
            Some(id) => format!("/api/recordings/{}/{id}/audio", track.recording),
            None => format!("/api/recordings/{}/mixed/audio", track.recording),
        }
    }

    /// The track as one WAV on the recording's timeline.
    pub fn audio_wav(track: &crate::audio::AudioTrackKey) -> String {
        format!("{}.wav", audio(track))
    }

    /// How loud the track is over time, without `?buckets=`.
    pub fn audio_levels(track: &crate::audio::AudioTrackKey) -> String {
        format!("{}/levels", audio(track))
    }

    pub fn zip(key: &StreamKey) -> String {
        format!("{}.zip", stream_api(key))
    }

    /// The ZIP of a whole recording.
    pub fn recording_zip(id: &RecordingId) -> String {
        format!("{}/zip", recording_api(id))
    }
}

// ---- JSON shapes ----

#[derive(Serialize)]
struct RecordingList {
    recordings: Vec<RecordingJson>,
}

/// What the list and the detail of a recording share.
#[derive(Serialize)]
struct RecordingHead {
    id: RecordingId,
    /// What people call the recording (see [`crate::title`]), never empty.
    title: String,
    title_source: TitleSource,
    bot_id: Option<String>,
    started_at: Option<Timestamp>,
    first_frame: Option<FrameTime>,
    last_frame: Option<FrameTime>,
    /// Seconds from the first frame to the last.
    duration: Option<f64>,
    frames: u64,
    url: String,
    page: String,
    zip_url: String,
}

#[derive(Serialize)]
struct RecordingJson {
    #[serde(flatten)]
    head: RecordingHead,
    participants: usize,
    /// Who took part, for a list that names them.
    people: Vec<PersonJson>,
    thumbnail: Option<String>,
}

#[derive(Serialize)]
struct PersonJson {
    id: u64,
    name: Option<String>,
    is_host: bool,
}

#[derive(Serialize)]
struct RecordingDetailJson {
    #[serde(flatten)]
    head: RecordingHead,
    metadata: serde_json::Value,
    participants: Vec<ParticipantJson>,
    /// The whole call's mixed audio, when the bot sent it.
    mixed_audio: Option<AudioLinkJson>,
    events: Vec<EventRecord>,
}

/// Where a track is, and how much of it there is, as a recording's JSON links it.
#[derive(Serialize)]
pub struct AudioLinkJson {
    /// Its segments and gaps.
    pub url: String,
    pub wav_url: String,
    /// How loud it is over time (add `?buckets=N`).
    pub levels_url: String,
    /// Seconds from the recording's start to its last sample.
    pub duration: f64,
    pub segments: usize,
}

impl AudioLinkJson {
    pub fn new(track: &AudioTrackKey, pieces: &AudioPieces) -> Self {
        AudioLinkJson {
            url: urls::audio(track),
            wav_url: urls::audio_wav(track),
            levels_url: urls::audio_levels(track),
            duration: pieces.duration(),
            segments: pieces.segments(),
        }
    }
}

#[derive(Serialize)]
struct ParticipantJson {
    id: u64,
    name: Option<String>,
    is_host: bool,
    email: Option<String>,
    platform: Option<String>,
    folder: String,
    streams: Vec<StreamJson>,
    /// Their own audio track, when the bot sent it.
    audio: Option<AudioLinkJson>,
}

#[derive(Serialize)]
struct StreamJson {
    #[serde(rename = "type")]
    kind: StreamKind,
    frames: usize,
    first: Option<FrameTime>,
    last: Option<FrameTime>,
    latest_frame: Option<String>,
    frames_url: String,
    zip_url: String,
    page: String,
}

#[derive(Serialize)]
struct FrameJson {
    url: String,
    #[serde(flatten)]
    frame: FrameInfo,
}

#[derive(Serialize)]
struct FramePageJson {
    frames: Vec<FrameJson>,
    total: usize,
    next_after: Option<u64>,
    /// The URL of the next page, when there is one.
    next: Option<String>,
}

fn frame_time(frame: &FrameInfo) -> FrameTime {
    FrameTime {
        relative: frame.relative,
        absolute: frame.absolute,
    }
}

impl RecordingHead {
    fn new(overview: &RecordingOverview) -> Self {
        RecordingHead {
            id: overview.id.clone(),
            title: overview.title.text.clone(),
            title_source: overview.title.source,
            bot_id: overview.bot_id(),
            started_at: overview.started_at,
            first_frame: overview.first_frame,
            last_frame: overview.last_frame,
            duration: overview.duration(),
            frames: overview.frames,
            url: urls::recording_api(&overview.id),
            page: urls::recording_page(&overview.id),
            zip_url: urls::recording_zip(&overview.id),
        }
    }
}

impl RecordingJson {
    fn new(overview: &RecordingOverview) -> Self {
        RecordingJson {
            head: RecordingHead::new(overview),
            participants: overview.participants,
            people: overview
                .people
                .iter()
                .map(|p| PersonJson {
                    id: p.id.0,
                    name: p.name.clone(),
                    is_host: p.is_host,
                })
                .collect(),
            thumbnail: overview
                .thumbnail
                .as_ref()
                .map(|(key, frame)| urls::frame(key, frame.relative_ms)),
        }
    }
}

impl StreamJson {
    fn new(stream: &StreamSummary) -> Self {
        StreamJson {
            kind: stream.key.kind,
            frames: stream.frames,
            first: stream.first.as_ref().map(frame_time),
            last: stream.last.as_ref().map(frame_time),
            latest_frame: stream
                .last
                .map(|frame| urls::frame(&stream.key, frame.relative_ms)),
            frames_url: urls::frames(&stream.key),
            zip_url: urls::zip(&stream.key),
            page: urls::stream_page(&stream.key),
        }
    }
}

impl ParticipantJson {
    fn new(
        recording: &RecordingId,
        detail: &ParticipantDetail,
        audio: Option<&AudioPieces>,
    ) -> Self {
        let p = &detail.participant;
        ParticipantJson {
            id: p.id.0,
            name: p.name.clone(),
            is_host: p.is_host,
            email: p.email.clone(),
            platform: p.platform.clone(),
            folder: detail.folder.clone(),
            streams: detail.streams.iter().map(StreamJson::new).collect(),
            audio: audio.map(|pieces| {
                let track = AudioTrackKey {
                    recording: recording.clone(),
                    participant: Some(p.id),
                };
                AudioLinkJson::new(&track, pieces)
            }),
        }
    }
}

// ---- handlers ----

async fn list_recordings(State(state): State<AppState>) -> Result<Json<impl Serialize>, ApiError> {
    let recordings = state.catalog.recordings().await.or_not_found("recording")?;
    Ok(Json(RecordingList {
        recordings: recordings.iter().map(RecordingJson::new).collect(),
    }))
}

async fn get_recording(
    State(state): State<AppState>,
    Path(recording): Path<String>,
) -> Result<Json<impl Serialize>, ApiError> {
    let id = recording_id(&recording)?;
    let detail = state
        .catalog
        .recording(&id)
        .await
        .or_not_found("recording")?;
    let (events, audio) = futures_util::try_join!(
        state.catalog.events(&id),
        state.catalog.recording_audio(&detail),
    )
    .or_not_found("recording")?;
    let metadata = detail
        .overview
        .summary
        .as_ref()
        .map(|s| s.recording.metadata.clone())
        .unwrap_or_default();
    Ok(Json(RecordingDetailJson {
        head: RecordingHead::new(&detail.overview),
        metadata,
        participants: detail
            .participants
            .iter()
            .zip(&audio.participants)
            .map(|(p, audio)| ParticipantJson::new(&id, p, audio.as_ref()))
            .collect(),
        mixed_audio: audio.mixed.as_ref().map(|pieces| {
            let track = AudioTrackKey {
                recording: id.clone(),
                participant: None,
            };
            AudioLinkJson::new(&track, pieces)
        }),
        events,
    }))
}

#[derive(Deserialize)]
struct PageParams {
    after: Option<u64>,
    limit: Option<usize>,
}

async fn list_frames(
    State(state): State<AppState>,
    Path((recording, participant, kind)): Path<(String, String, String)>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Json<impl Serialize>, ApiError> {
    let key = stream_key(&recording, &participant, &kind)?;
    let Query(params) = params.map_err(|_| {
        ApiError::BadRequest(Cow::Borrowed(
            "after must be a whole number of milliseconds, and limit a whole number",
        ))
    })?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::BadRequest(Cow::Owned(format!(
            "limit must be between 1 and {MAX_PAGE}"
        ))));
    }
    let page = state
        .catalog
        .frames(&key, params.after, limit)
        .await
        .or_not_found("stream")?;
    Ok(Json(FramePageJson {
        next: page
            .next_after
            .map(|after| format!("{}?after={after}&limit={limit}", urls::frames(&key))),
        frames: page
            .frames
            .into_iter()
            .map(|frame| FrameJson {
                url: urls::frame(&key, frame.relative_ms),
                frame,
            })
            .collect(),
        total: page.total,
        next_after: page.next_after,
    }))
}

async fn get_frame(
    State(state): State<AppState>,
    Path((recording, participant, kind, frame)): Path<(String, String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let key = stream_key(&recording, &participant, &kind)?;
    let relative_ms = layout::parse_frame_file_name(&frame).ok_or(ApiError::BadRequest(
        Cow::Borrowed("a frame is named by its millisecond in nine digits, e.g. 000012500.png"),
    ))?;
    let (store, key) = state
        .catalog
        .frame_object(&key, relative_ms)
        .await
        .or_not_found("frame")?;
    let mut response = serve_stored(store, &key, "image/png", request, &state.shutdown)
        .await
        .map_err(|e| ApiError::Internal(e.into()))?
        .ok_or(ApiError::NotFound("frame"))?;
    if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(IMMUTABLE));
    }
    Ok(response)
}

// ---- audio ----

#[derive(Serialize)]
struct AudioJson {
    recording: RecordingId,
    /// The participant's id; `null` for the mixed track.
    participant: Option<u64>,
    sample_rate: u32,
    channels: u16,
    sample_format: &'static str,
    /// Seconds from the recording's start to the track's last sample: the WAV's length.
    duration: f64,
    chunks: usize,
    segments: Vec<AudioSegmentJson>,
    /// Silences inside segments, filled with zeros: what no chunk covered.
    gaps: Vec<SpanJson>,
    wav_url: String,
}

#[derive(Serialize)]
struct SpanJson {
    start: f64,
    end: f64,
    start_sample: u64,
    end_sample: u64,
}

impl SpanJson {
    fn new((start, end): Span) -> Self {
        let seconds = |sample: u64| sample as f64 / f64::from(SAMPLE_RATE);
        SpanJson {
            start: seconds(start),
            end: seconds(end),
            start_sample: start,
            end_sample: end,
        }
    }
}

#[derive(Serialize)]
struct AudioSegmentJson {
    #[serde(flatten)]
    span: SpanJson,
    /// Its WAV pieces, in time order, each at most 10 s.
    files: Vec<String>,
}

async fn get_audio(
    State(state): State<AppState>,
    Path((recording, participant)): Path<(String, String)>,
) -> Result<Json<impl Serialize>, ApiError> {
    let track = audio_track(&recording, &participant)?;
    let view = state.catalog.audio(&track).await.or_not_found("audio")?;
    let stored = &view.stored;
    let segments = stored
        .timeline
        .segments
        .iter()
        .map(|(&start, &end)| {
            let next = stored
                .timeline
                .segments
                .range(start + 1..)
                .next()
                .map_or(u64::MAX, |(&s, _)| s);
            AudioSegmentJson {
                span: SpanJson::new((start, end)),
                files: stored
                    .pieces
                    .range(start..next)
                    .map(|(&piece, _)| piece_file_name(piece / SAMPLES_PER_MS))
                    .collect(),
            }
        })
        .collect();
    Ok(Json(AudioJson {
        recording: track.recording.clone(),
        participant: track.participant.map(|id| id.0),
        sample_rate: SAMPLE_RATE,
        channels: 1,
        sample_format: "s16le",
        duration: stored.end() as f64 / f64::from(SAMPLE_RATE),
        chunks: stored.chunks,
        segments,
        gaps: stored
            .timeline
            .gaps()
            .into_iter()
            .map(SpanJson::new)
            .collect(),
        wav_url: urls::audio_wav(&track),
    }))
}

/// Buckets a level summary has when the client does not say.
pub const DEFAULT_LEVEL_BUCKETS: usize = 200;
/// Most buckets a level summary has: a bar a few screens wide.
pub const MAX_LEVEL_BUCKETS: usize = 4000;

#[derive(Deserialize)]
struct LevelsParams {
    buckets: Option<usize>,
}

#[derive(Serialize)]
struct LevelsJson {
    recording: RecordingId,
    participant: Option<u64>,
    /// Seconds from the recording's start to the track's last sample: what the buckets span.
    duration: f64,
    buckets: usize,
    /// Seconds each bucket spans.
    bucket_seconds: f64,
    /// Each bucket's root mean square, as a fraction of full scale: 0 is silence.
    levels: Vec<f64>,
}

/// How loud a track is over time, for drawing where someone spoke: the RMS of its samples
/// in `buckets` equal spans from the recording's start to the track's last sample. Reads
/// every piece of the track once.
async fn get_audio_levels(
    State(state): State<AppState>,
    Path((recording, participant)): Path<(String, String)>,
    params: Result<Query<LevelsParams>, QueryRejection>,
) -> Result<Json<impl Serialize>, ApiError> {
    let track = audio_track(&recording, &participant)?;
    let out_of_range = || {
        ApiError::BadRequest(Cow::Owned(format!(
            "buckets must be a whole number from 1 to {MAX_LEVEL_BUCKETS}"
        )))
    };
    let Query(params) = params.map_err(|_| out_of_range())?;
    let buckets = params.buckets.unwrap_or(DEFAULT_LEVEL_BUCKETS);
    if !(1..=MAX_LEVEL_BUCKETS).contains(&buckets) {
        return Err(out_of_range());
    }
    let pieces = state
        .catalog
        .audio_pieces(&track)
        .await
        .or_not_found("audio")?;
    let levels = state
        .catalog
        .audio_levels(&track, &pieces, buckets)
        .await
        .or_not_found("audio")?;
    let duration = pieces.duration();
    Ok(Json(LevelsJson {
        recording: track.recording.clone(),
        participant: track.participant.map(|id| id.0),
        duration,
        buckets,
        bucket_seconds: duration / buckets as f64,
        // Four decimals are more than a bar can show, and keep the JSON small.
        levels: levels
            .into_iter()
            .map(|level| (level * 10_000.0).round() / 10_000.0)
            .collect(),
    }))
}

/// The whole track as one WAV from the recording's start, silence where nothing was sent,
/// streamed; one byte range of it when asked (a browser seeking).
async fn get_audio_wav(
    State(state): State<AppState>,
    Path((recording, participant)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let track = audio_track(&recording, &participant)?;
    let view = state.catalog.audio(&track).await.or_not_found("audio")?;
    let len = view.wav_len();
    let range = match headers.typed_get::<headers::Range>() {
        None => None,
        Some(range) => {
            use std::ops::Bound;
            let first = range.satisfiable_ranges(len).next().map(|(start, end)| {
                let start = match start {
                    Bound::Included(s) => s,
                    Bound::Excluded(s) => s + 1,
                    Bound::Unbounded => 0,
                };
                let end = match end {
                    Bound::Included(e) => e.saturating_add(1).min(len),
                    Bound::Excluded(e) => e.min(len),
                    Bound::Unbounded => len,
                };
                (start, end)
            });
            match first {
                Some((start, end)) if start < end => Some((start, end)),
                _ => {
                    return Ok((
                        StatusCode::RANGE_NOT_SATISFIABLE,
                        [(header::CONTENT_RANGE, format!("bytes */{len}"))],
                    )
                        .into_response());
                }
            }
        }
    };
    let (from, to) = range.unwrap_or((0, len));
    let body = super::abort_on_shutdown(
        state.catalog.wav_bytes(&view, (from, to)),
        state.shutdown.clone(),
    );
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // A track being recorded grows: always ask again.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(to - from));
    if range.is_some() {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let content_range = format!("bytes {from}-{}/{len}", to - 1);
        if let Ok(value) = HeaderValue::from_str(&content_range) {
            response.headers_mut().insert(header::CONTENT_RANGE, value);
        }
    }
    Ok(response)
}
