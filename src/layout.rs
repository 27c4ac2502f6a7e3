//! The fixed layout of saved recordings: folder, file and manifest names, shared by every
//! sink and by whatever reads recordings back.
//!
//! ```text
//! <recording_id>/recording.json
//! <recording_id>/events.jsonl
//! <recording_id>/<participant_id>[-<name-slug>]/participant.json
//! <recording_id>/<participant_id>[-<name-slug>]/<webcam|screenshare>/frames.jsonl
//! <recording_id>/<participant_id>[-<name-slug>]/<webcam|screenshare>/<relative_ms:09>.png
//! ```

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::frame::{
    FrameTime, Participant, ParticipantEvent, ParticipantId, RecordingId, StreamKind,
};

pub const RECORDING_FILE: &str = "recording.json";
pub const PARTICIPANT_FILE: &str = "participant.json";
pub const FRAMES_MANIFEST: &str = "frames.jsonl";
pub const EVENTS_LOG: &str = "events.jsonl";

/// Longest name slug kept in a participant folder name.
const MAX_SLUG_LEN: usize = 48;

/// A recording's folder under the data root.
pub fn recording_dir(root: &Path, recording: &RecordingId) -> PathBuf {
    root.join(recording.as_str())
}

/// A stream's folder under the data root, from parts that are each one path segment by
/// construction: a checked [`RecordingId`], a [`participant_folder_name`], a [`StreamKind`].
pub fn stream_dir(
    root: &Path,
    recording: &RecordingId,
    participant_folder: &str,
    kind: StreamKind,
) -> PathBuf {
    recording_dir(root, recording)
        .join(participant_folder)
        .join(kind.as_str())
}

/// `12.5 s` → `000012500.png`: zero-padded so that names sort in time order.
pub fn frame_file_name(relative_ms: u64) -> String {
    format!("{relative_ms:09}.png")
}

/// The inverse of [`frame_file_name`]; `None` for any other name.
pub fn parse_frame_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".png")?;
    (digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The folder a participant's streams live in: the id, then a slug of the display name when
/// there is one (ASCII letters, digits and dashes only). Chosen once, at first sight.
pub fn participant_folder_name(participant: &Participant) -> String {
    let slug = participant
        .name
        .as_deref()
        .map(name_slug)
        .unwrap_or_default();
    if slug.is_empty() {
        participant.id.to_string()
    } else {
        format!("{}-{slug}", participant.id)
    }
}

/// The participant id a folder name starts with, if it is a participant folder.
pub fn parse_participant_folder_name(name: &str) -> Option<ParticipantId> {
    let id = name.split_once('-').map_or(name, |(id, _)| id);
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok().map(ParticipantId)
}

fn name_slug(name: &str) -> String {
    let slug = slug::slugify(name);
    let mut end = slug.len().min(MAX_SLUG_LEN);
    // slugify yields ASCII only, so every index is a char boundary.
    while end > 0 && slug.as_bytes()[end - 1] == b'-' {
        end -= 1;
    }
    slug[..end].to_string()
}

/// One line of a stream's `frames.jsonl`: a frame that is saved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrameRecord {
    pub file: String,
    pub relative: f64,
    pub absolute: Option<Timestamp>,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
    pub received_at: Timestamp,
    /// Set on lines rebuilt at start-up for frames whose line was lost in a crash.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recovered: bool,
}

/// The contents of `recording.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingSummary {
    pub recording: crate::frame::Resource,
    pub bot: Option<crate::frame::Resource>,
    pub realtime_endpoint: Option<crate::frame::Resource>,
    pub video_separate: Option<crate::frame::Resource>,
    #[serde(default)]
    pub participant_events: Option<crate::frame::Resource>,
    pub first_frame: Option<FrameTime>,
    pub last_frame: Option<FrameTime>,
}

/// One line of a recording's `events.jsonl`: a participant event, in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// The event type, e.g. `participant_events.join`.
    pub event: String,
    /// What the event said of the participant, with the fields of `participant.json`.
    pub participant: Participant,
    pub timestamp: FrameTime,
    /// The event's own data (a chat message's text), or null.
    pub data: serde_json::Value,
    pub received_at: Timestamp,
}

impl EventRecord {
    /// The part of the event name after `participant_events.`, e.g. `join`.
    pub fn short_name(&self) -> &str {
        self.event
            .strip_prefix("participant_events.")
            .unwrap_or(&self.event)
    }
}

impl From<&ParticipantEvent> for EventRecord {
    fn from(event: &ParticipantEvent) -> Self {
        EventRecord {
            event: event.kind.as_str().to_owned(),
            participant: event.participant.clone(),
            timestamp: event.time,
            data: event.data.clone(),
            received_at: event.received_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn participant(id: u64, name: Option<&str>) -> Participant {
        Participant {
            id: ParticipantId(id),
            name: name.map(str::to_string),
            is_host: false,
            platform: None,
            email: None,
            extra_data: serde_json::Value::Null,
        }
    }

    #[test]
    fn frame_names_are_zero_padded_milliseconds() {
        assert_eq!(frame_file_name(12_500), "000012500.png");
        assert_eq!(parse_frame_file_name("000012500.png"), Some(12_500));
        assert_eq!(parse_frame_file_name("12500.png"), None);
        assert_eq!(parse_frame_file_name("00001250a.png"), None);
        assert_eq!(parse_frame_file_name(".000012500.png.tmp"), None);
    }

    #[test]
    fn participant_folders_are_id_then_ascii_slug() {
        assert_eq!(
            participant_folder_name(&participant(100, Some("Alice Smith"))),
            "100-alice-smith"
        );
        assert_eq!(participant_folder_name(&participant(7, None)), "7");
        assert_eq!(participant_folder_name(&participant(7, Some("  "))), "7");
        assert_eq!(
            participant_folder_name(&participant(8, Some("../../etc"))),
            "8-etc"
        );
        let long = "x".repeat(300);
        assert_eq!(
            participant_folder_name(&participant(9, Some(&long))).len(),
            2 + MAX_SLUG_LEN
        );
        assert_eq!(
            parse_participant_folder_name("100-alice-smith"),
            Some(ParticipantId(100))
        );
        assert_eq!(parse_participant_folder_name("7"), Some(ParticipantId(7)));
        assert_eq!(parse_participant_folder_name("x-7"), None);
        assert_eq!(parse_participant_folder_name("-7"), None);
    }
}
