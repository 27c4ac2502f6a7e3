//! The meeting replay: the page that plays a whole recording at once (`static/replay.js`),
//! and the two things it reads beyond the rest of the API: a compact timeline of the
//! recording (who was there, where each had camera, screen share, speech and audio, and
//! the joins, leaves and chat messages to jump to), and a stream's frames between two
//! times. Both are answered from the stream indexes the catalog keeps, so a long meeting
//! costs what the answer holds, not what the meeting holds.

use std::borrow::Cow;
use std::collections::BTreeMap;

use askama::Template;
use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::audio::{AudioTrackKey, SAMPLES_PER_MS, WAV_HEADER_BYTES};
use crate::catalog::{AudioPieces, CatalogError, RecordingDetail};
use crate::error::ApiError;
use crate::frame::{ParticipantId, RecordingId, StreamKey, StreamKind};
use crate::http::api::{CatalogResult as _, recording_id, stream_key, urls};
use crate::http::ui::{self, PageError};
use crate::layout::EventRecord;
use crate::state::AppState;

/// Frames further apart than this are two runs: the camera (or the share) was off between.
/// Recall sends about 2 frames a second.
pub const RUN_GAP_MS: u64 = 2500;
/// Frames one span lists when the client does not say.
pub const DEFAULT_SPAN_FRAMES: usize = 2000;
/// Most frames one span lists: ten minutes of a stream at Recall's rate, about 40 KB.
pub const MAX_SPAN_FRAMES: usize = 5000;

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/recordings/{recording}/replay", get(show_replay))
        .route("/api/recordings/{recording}/timeline", get(get_timeline))
        .route(
            "/api/recordings/{recording}/{participant}/{stream}/frames/span",
            get(list_frame_span),
        )
}

pub fn replay_page(id: &RecordingId) -> String {
    format!("/recordings/{id}/replay")
}

pub fn timeline_api(id: &RecordingId) -> String {
    format!("/api/recordings/{id}/timeline")
}

pub fn frame_span_api(key: &StreamKey) -> String {
    format!("{}/span", urls::frames(key))
}

// ---- the page ----

#[derive(Template)]
#[template(path = "replay.html")]
struct ReplayPage {
    assets: &'static str,
    recording_id: String,
    recording_title: String,
    recording_page: String,
    timeline_url: String,
}

#[derive(Deserialize)]
struct MomentParams {
    t: Option<String>,
}

async fn show_replay(
    State(state): State<AppState>,
    Path(recording): Path<String>,
    Query(params): Query<MomentParams>,
) -> Result<Response, PageError> {
    let id = recording_id(&recording)?;
    // A bad ?t= is refused here as on the stream page; the script reads it again.
    ui::moment(params.t.as_deref())?;
    let detail = state
        .catalog
        .recording(&id)
        .await
        .or_not_found("recording")?;
    ui::page(&ReplayPage {
        assets: ui::assets(),
        recording_id: id.to_string(),
        recording_title: detail.overview.title.text.clone(),
        recording_page: urls::recording_page(&id),
        timeline_url: timeline_api(&id),
    })
    .map_err(PageError::from)
}

// ---- the timeline ----

#[derive(Serialize)]
struct TimelineJson {
    recording: RecordingId,
    title: String,
    /// From the recording's start to its last frame, sample or event.
    duration_ms: u64,
    /// Whether the recording has speech events; without them, speaking is read from each
    /// participant's audio levels.
    speech_events: bool,
    participants: Vec<ParticipantTimeline>,
    /// Joins, leaves and chat messages, in time order.
    markers: Vec<MarkerJson>,
}

#[derive(Serialize)]
struct ParticipantTimeline {
    id: u64,
    name: Option<String>,
    is_host: bool,
    /// When they were in the meeting, as `[from, to]` ms; `to` is `null` while they stay.
    present: Vec<(u64, Option<u64>)>,
    webcam: Option<StreamTimeline>,
    screenshare: Option<StreamTimeline>,
    audio: Option<AudioTimeline>,
    /// When they spoke, from speech events, as `[from, to]` ms.
    speech: Vec<(u64, u64)>,
}

#[derive(Serialize)]
struct StreamTimeline {
    frames: usize,
    /// Runs of frames at most [`RUN_GAP_MS`] apart, as `[first, last]` ms.
    runs: Vec<(u64, u64)>,
    span_url: String,
}

#[derive(Serialize)]
struct AudioTimeline {
    wav_url: String,
    levels_url: String,
    sample_rate: u32,
    /// Bytes before the first sample of the WAV: sample `n` is at byte `header + 2n`.
    header_bytes: u64,
    /// Where the track has sound saved, as `[from, to)` ms; silence elsewhere.
    runs: Vec<(u64, u64)>,
    end_ms: u64,
}

#[derive(Serialize)]
struct MarkerJson {
    at_ms: u64,
    kind: &'static str,
    participant: u64,
    name: Option<String>,
    /// A chat message's text.
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

fn ms(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1000.0).round() as u64
}

/// Turns on and off events into spans: `on` opens one, `off` closes it; an `off` with none
/// open closes one from 0. A span still open at the end stays open (`None`).
fn spans(events: impl Iterator<Item = (u64, bool)>) -> Vec<(u64, Option<u64>)> {
    let mut spans = Vec::new();
    let mut open: Option<u64> = None;
    for (at, on) in events {
        match (on, open) {
            (true, None) => open = Some(at),
            (true, Some(_)) => {}
            (false, Some(from)) => {
                spans.push((from, Some(at)));
                open = None;
            }
            (false, None) if spans.is_empty() => spans.push((0, Some(at))),
            (false, None) => {}
        }
    }
    if let Some(from) = open {
        spans.push((from, None));
    }
    spans
}

/// Where a track has sound: its pieces, those that touch joined, in ms.
fn audio_runs(pieces: &AudioPieces) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (&first, &samples) in &pieces.pieces {
        let end = first + samples;
        match runs.last_mut() {
            Some((_, last)) if first <= *last => *last = (*last).max(end),
            _ => runs.push((first, end)),
        }
    }
    runs.into_iter()
        .map(|(from, to)| (from / SAMPLES_PER_MS, to.div_ceil(SAMPLES_PER_MS)))
        .collect()
}

async fn get_timeline(
    State(state): State<AppState>,
    Path(recording): Path<String>,
) -> Result<Json<impl Serialize>, ApiError> {
    let id = recording_id(&recording)?;
    let detail = state
        .catalog
        .recording(&id)
        .await
        .or_not_found("recording")?;
    let (mut events, audio) = futures_util::try_join!(
        state.catalog.events(&id),
        state.catalog.recording_audio(&detail),
    )
    .or_not_found("recording")?;
    events.sort_by(|a, b| a.timestamp.relative.total_cmp(&b.timestamp.relative));
    timeline(&state, &detail, &events, &audio.participants)
        .await
        .map(Json)
}

async fn timeline(
    state: &AppState,
    detail: &RecordingDetail,
    events: &[EventRecord],
    audio: &[Option<AudioPieces>],
) -> Result<TimelineJson, ApiError> {
    let id = &detail.overview.id;
    let mut by_participant: BTreeMap<ParticipantId, Vec<&EventRecord>> = BTreeMap::new();
    for event in events {
        by_participant
            .entry(event.participant.id)
            .or_default()
            .push(event);
    }
    let mut end_ms = events
        .iter()
        .map(|e| ms(e.timestamp.relative))
        .max()
        .unwrap_or(0);
    let mut participants = Vec::with_capacity(detail.participants.len());
    for (p, pieces) in detail.participants.iter().zip(audio) {
        let mut streams = [None, None];
        for (slot, kind) in streams.iter_mut().zip(StreamKind::ALL) {
            let Some(summary) = p.streams.iter().find(|s| s.key.kind == kind) else {
                continue;
            };
            let runs = state
                .catalog
                .frame_runs(&summary.key, RUN_GAP_MS)
                .await
                .or_not_found("stream")?;
            if let Some(&(_, last)) = runs.last() {
                end_ms = end_ms.max(last);
            }
            *slot = Some(StreamTimeline {
                frames: summary.frames,
                runs,
                span_url: frame_span_api(&summary.key),
            });
        }
        let [webcam, screenshare] = streams;
        let audio = pieces.as_ref().map(|pieces| {
            let track = AudioTrackKey {
                recording: id.clone(),
                participant: Some(p.participant.id),
            };
            let track_end = pieces.end().div_ceil(SAMPLES_PER_MS);
            end_ms = end_ms.max(track_end);
            AudioTimeline {
                wav_url: urls::audio_wav(&track),
                levels_url: urls::audio_levels(&track),
                sample_rate: crate::audio::SAMPLE_RATE,
                header_bytes: WAV_HEADER_BYTES,
                runs: audio_runs(pieces),
                end_ms: track_end,
            }
        });
        let own = by_participant
            .get(&p.participant.id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let switches = |on: &'static str, off: &'static str| {
            own.iter().filter_map(move |e| {
                let name = e.short_name();
                (name == on || name == off).then(|| (ms(e.timestamp.relative), name == on))
            })
        };
        let mut present = spans(switches("join", "leave"));
        if present.is_empty() {
            // No join or leave: there from their first frame or sound to the end.
            let first = [&webcam, &screenshare]
                .into_iter()
                .flatten()
                .filter_map(|s| s.runs.first().map(|r| r.0))
                .chain(audio.iter().filter_map(|a| a.runs.first().map(|r| r.0)))
                .chain(own.iter().map(|e| ms(e.timestamp.relative)))
                .min()
                .unwrap_or(0);
            present.push((first, None));
        }
        // Speech still on when they leave stops there; still on at the end, at the end
        // (once the end is known, below).
        let leaves_at = present.last().and_then(|&(_, to)| to);
        let speech = spans(switches("speech_on", "speech_off"))
            .into_iter()
            .map(|(from, to)| (from, to.or(leaves_at).unwrap_or(u64::MAX)))
            .collect();
        participants.push(ParticipantTimeline {
            id: p.participant.id.0,
            name: p.participant.name.clone(),
            is_host: p.participant.is_host,
            present,
            webcam,
            screenshare,
            audio,
            speech,
        });
    }
    for participant in &mut participants {
        for (_, to) in &mut participant.speech {
            *to = (*to).min(end_ms);
        }
    }
    let markers = events
        .iter()
        .filter_map(|event| {
            let kind = match event.short_name() {
                "join" => "join",
                "leave" => "leave",
                "chat_message" => "chat",
                _ => return None,
            };
            Some(MarkerJson {
                at_ms: ms(event.timestamp.relative),
                kind,
                participant: event.participant.id.0,
                name: event.participant.name.clone(),
                text: (kind == "chat").then(|| {
                    event
                        .data
                        .get("text")
                        .and_then(|text| text.as_str())
                        .unwrap_or_default()
                        .to_owned()
                }),
            })
        })
        .collect();
    Ok(TimelineJson {
        recording: id.clone(),
        title: detail.overview.title.text.clone(),
        duration_ms: end_ms,
        speech_events: events.iter().any(|e| e.short_name().starts_with("speech_")),
        participants,
        markers,
    })
}

// ---- a stream's frames between two times ----

#[derive(Deserialize)]
struct SpanParams {
    from: u64,
    to: u64,
    limit: Option<usize>,
}

#[derive(Serialize)]
struct FrameSpanJson {
    from: u64,
    to: u64,
    /// The last frame before `from`: what shows when the span starts.
    before: Option<u64>,
    /// Frames from `from` to `to`, by millisecond; each is `…/{ms:09}.png`.
    frames: Vec<u64>,
    /// Where to go on from when the limit cut the list short.
    next_from: Option<u64>,
}

async fn list_frame_span(
    State(state): State<AppState>,
    Path((recording, participant, kind)): Path<(String, String, String)>,
    params: Result<Query<SpanParams>, QueryRejection>,
) -> Result<Json<impl Serialize>, ApiError> {
    let key = stream_key(&recording, &participant, &kind)?;
    let bad = || {
        ApiError::BadRequest(Cow::Owned(format!(
            "from and to must be whole milliseconds with from <= to, and limit 1 to {MAX_SPAN_FRAMES}"
        )))
    };
    let Query(params) = params.map_err(|_| bad())?;
    let limit = params.limit.unwrap_or(DEFAULT_SPAN_FRAMES);
    if params.from > params.to || !(1..=MAX_SPAN_FRAMES).contains(&limit) {
        return Err(bad());
    }
    let span = match state
        .catalog
        .frame_span(&key, params.from, params.to, limit)
        .await
    {
        Err(CatalogError::NotFound) => return Err(ApiError::NotFound("stream")),
        other => other.or_not_found("stream")?,
    };
    Ok(Json(FrameSpanJson {
        from: params.from,
        to: params.to,
        before: span.before,
        frames: span.frames,
        next_from: span.next_from,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switches_make_spans() {
        let on_off = [(1000, true), (5000, false), (7000, true), (7500, true)];
        assert_eq!(
            spans(on_off.into_iter()),
            vec![(1000, Some(5000)), (7000, None)]
        );
        // Off first: on since the start. A second off is ignored.
        assert_eq!(
            spans([(2000, false), (3000, false)].into_iter()),
            vec![(0, Some(2000))]
        );
        assert_eq!(spans(std::iter::empty()), vec![]);
    }
}
