//! The recording page's "After the call" section: each participant's Recall MP4s and audio
//! in players, placed as bars on the recording's timeline beside the spans of their
//! realtime frames, with sizes, durations and the fetch's status; and the bot's status
//! history. Bars are placed by `static/recall.js` from their `data-left`/`data-width`
//! (the page's policy allows no inline styles).

use crate::catalog::RecordingDetail;
use crate::recall_media::{BotStatusRecord, FetchState, FetchStatus, RecordingMedia};

use super::{clock, duration, person_name, wall_clock};

pub struct RecallSection {
    pub video_status: String,
    pub audio_status: String,
    pub bot_status: Vec<BotStatusItem>,
    /// Whether the bot's statuses can be placed on the timeline (its start's wall-clock
    /// time is known).
    pub bot_on_timeline: bool,
    pub rows: Vec<MediaRow>,
    pub axis_end: String,
}

pub struct BotStatusItem {
    pub at: String,
    /// On the recording's timeline, when its start's wall-clock time is known.
    pub at_recording: String,
    pub marker: Option<Bar>,
    pub code: String,
    pub sub_code: String,
    pub class: &'static str,
}

pub struct MediaRow {
    pub name: String,
    pub participant_id: u64,
    pub frames: Vec<Bar>,
    pub parts: Vec<MediaItem>,
}

/// A span on the timeline, in percent of the axis.
pub struct Bar {
    pub label: String,
    pub left: String,
    pub width: String,
}

pub struct MediaItem {
    pub label: &'static str,
    pub is_video: bool,
    pub url: String,
    pub file: String,
    pub start: String,
    pub start_seconds: String,
    pub duration: String,
    pub size: String,
    pub bar: Bar,
}

/// `1536` → `1.5 KB`.
fn size(bytes: u64) -> String {
    let bytes = bytes as f64;
    match bytes {
        b if b < 1e3 => format!("{b} B"),
        b if b < 1e6 => format!("{:.1} KB", b / 1e3),
        b if b < 1e9 => format!("{:.1} MB", b / 1e6),
        b => format!("{:.2} GB", b / 1e9),
    }
}

fn status_text(status: Option<&FetchStatus>) -> String {
    let Some(status) = status else {
        return "not asked for".into();
    };
    let counts = format!(
        "{} of {} parts, {}",
        status.fetched,
        status.parts,
        size(status.bytes)
    );
    let pending = if status.pending_at_recall > 0 {
        format!("; {} still being made at Recall", status.pending_at_recall)
    } else {
        String::new()
    };
    match status.state {
        FetchState::Queued => "queued".into(),
        FetchState::Fetching => format!("fetching: {counts}"),
        FetchState::Retrying => format!(
            "retrying ({counts}): {}",
            status.error.as_deref().unwrap_or("failed")
        ),
        FetchState::Done => format!("fetched: {counts}{pending}"),
        FetchState::Failed => format!(
            "failed ({counts}): {}",
            status.error.as_deref().unwrap_or("unknown error")
        ),
    }
}

fn percent(value: f64, end: f64) -> String {
    format!("{:.3}", (value / end * 100.0).clamp(0.0, 100.0))
}

impl RecallSection {
    /// The section, or `None` when the recording has nothing from after the call.
    pub fn new(
        detail: &RecordingDetail,
        media: &RecordingMedia,
        bot_status: &[BotStatusRecord],
    ) -> Option<Self> {
        let nothing = media.video.is_none()
            && media.audio.is_none()
            && media.participants.is_empty()
            && bot_status.is_empty();
        if nothing {
            return None;
        }
        // The axis spans the realtime frames and every part.
        let frames_end = detail
            .participants
            .iter()
            .flat_map(|p| &p.streams)
            .filter_map(|s| s.last.as_ref().map(|f| f.relative))
            .fold(0.0, f64::max);
        let parts_end = media
            .participants
            .iter()
            .flat_map(|p| &p.parts)
            .map(|r| r.start.relative + r.duration.unwrap_or(0.0))
            .fold(0.0, f64::max);
        let end = frames_end.max(parts_end).max(1.0);
        let rows = media
            .participants
            .iter()
            .map(|p| {
                let who = detail
                    .participants
                    .iter()
                    .find(|d| d.participant.id.0 == p.participant_id);
                let name = who.map_or_else(
                    || format!("Participant {}", p.participant_id),
                    |d| person_name(&d.participant),
                );
                let frames = who
                    .map(|d| {
                        d.streams
                            .iter()
                            .filter_map(|s| {
                                let (first, last) = (s.first.as_ref()?, s.last.as_ref()?);
                                Some(Bar {
                                    label: format!("{} frames", s.key.kind.as_str()),
                                    left: percent(first.relative, end),
                                    width: percent(last.relative - first.relative, end),
                                })
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let parts = p
                    .parts
                    .iter()
                    .map(|r| {
                        let length = r.duration.unwrap_or(0.0);
                        MediaItem {
                            label: match r.kind.as_str() {
                                "screenshare" => "Screen share MP4",
                                "audio" => "Audio",
                                _ => "Webcam MP4",
                            },
                            is_video: r.kind != "audio",
                            url: format!(
                                "/api/recordings/{}/{}/recall/{}",
                                detail.overview.id, p.participant_id, r.file
                            ),
                            file: r.file.clone(),
                            start: clock(r.start.relative),
                            start_seconds: format!("{:.3}", r.start.relative),
                            duration: duration(length),
                            size: size(r.bytes),
                            bar: Bar {
                                label: r.file.clone(),
                                left: percent(r.start.relative, end),
                                width: percent(length, end),
                            },
                        }
                    })
                    .collect();
                MediaRow {
                    name,
                    participant_id: p.participant_id,
                    frames,
                    parts,
                }
            })
            .collect();
        // The wall-clock time of the timeline's 0, from a frame that has both clocks.
        let zero = detail
            .overview
            .summary
            .as_ref()
            .and_then(|summary| summary.first_frame)
            .and_then(|first| {
                let offset = jiff::SignedDuration::try_from_secs_f64(first.relative).ok()?;
                first.absolute?.checked_sub(offset).ok()
            });
        let bot_status: Vec<BotStatusItem> = bot_status
            .iter()
            .map(|s| {
                let relative = zero
                    .zip(s.updated_at)
                    .map(|(zero, at)| at.duration_since(zero).as_secs_f64());
                (s, relative)
            })
            .map(|(s, relative)| BotStatusItem {
                at_recording: relative
                    .map(|r| {
                        if r < 0.0 {
                            format!("-{}", clock(-r))
                        } else {
                            clock(r)
                        }
                    })
                    .unwrap_or_default(),
                marker: relative.map(|r| Bar {
                    label: s.code.clone().unwrap_or_else(|| s.event.clone()),
                    left: percent(r.clamp(0.0, end), end),
                    width: "0".into(),
                }),
                at: s
                    .updated_at
                    .map(wall_clock)
                    .unwrap_or_else(|| wall_clock(s.received_at)),
                code: s.code.clone().unwrap_or_else(|| s.event.clone()),
                sub_code: s.sub_code.clone().unwrap_or_default(),
                class: match s.code.as_deref() {
                    Some("fatal") => "fatal",
                    Some("done" | "call_ended") => "ended",
                    _ => "",
                },
            })
            .collect();
        let bot_on_timeline: bool = bot_status
            .iter()
            .any(|s: &BotStatusItem| s.marker.is_some());
        Some(RecallSection {
            bot_on_timeline,
            video_status: status_text(media.video.as_ref()),
            audio_status: status_text(media.audio.as_ref()),
            bot_status,
            rows,
            axis_end: clock(end),
        })
    }
}
