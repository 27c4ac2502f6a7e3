//! The fixed layout of saved recordings: folder, file and manifest names, shared by every
//! sink and by whatever reads recordings back.
//!
//! ```text
//! <recording_id>/recording.json
//! <recording_id>/events.jsonl
//! <recording_id>/<participant_id>[-<name-slug>]/participant.json
//! <recording_id>/<participant_id>[-<name-slug>]/<webcam|screenshare>/frames.jsonl
//! <recording_id>/<participant_id>[-<name-slug>]/<webcam|screenshare>/<relative_ms:09>.png
//! <recording_id>/<participant_id>[-<name-slug>]/audio/audio.jsonl
//! <recording_id>/<participant_id>[-<name-slug>]/audio/<start_ms:09>.wav
//! <recording_id>/audio/audio.jsonl                 (the mixed track)
//! <recording_id>/audio/<start_ms:09>.wav
//! ```
//!
//! An audio folder's WAV files are pieces of at most 10 s, each named by the millisecond of
//! its first sample on the recording's timeline (see [`crate::audio`]).

use std::path::{Path, PathBuf};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::frame::{
    FrameTime, Participant, ParticipantEvent, ParticipantId, RecordingId, StreamKind,
};
use crate::store::Key;
use crate::title::Title;

pub const RECORDING_FILE: &str = "recording.json";
pub const PARTICIPANT_FILE: &str = "participant.json";
pub const FRAMES_MANIFEST: &str = "frames.jsonl";
pub const EVENTS_LOG: &str = "events.jsonl";
pub const AUDIO_FOLDER: &str = "audio";
pub const AUDIO_MANIFEST: &str = "audio.jsonl";

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

/// A recording's key in a store.
pub fn recording_key(recording: &RecordingId) -> Key {
    Key::of([recording.as_str()])
}

/// A stream's key in a store, from parts that are each one segment by construction, as for
/// [`stream_dir`].
pub fn stream_key(recording: &RecordingId, participant_folder: &str, kind: StreamKind) -> Key {
    recording_key(recording)
        .join(participant_folder)
        .join(kind.as_str())
}

/// The key of an audio track's folder: in the participant's folder, or the recording's for
/// the mixed track (`participant_folder` `None`).
pub fn audio_key(recording: &RecordingId, participant_folder: Option<&str>) -> Key {
    let recording = recording_key(recording);
    match participant_folder {
        Some(folder) => recording.join(folder).join(AUDIO_FOLDER),
        None => recording.join(AUDIO_FOLDER),
    }
}

/// One line of an audio track's `audio.jsonl`. Places are samples on the recording's
/// timeline (16 kHz from its start); `start` is the same in seconds, for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AudioRecord {
    /// A segment began: its first piece is `file`.
    Segment {
        file: String,
        start_sample: u64,
        start: f64,
    },
    /// A chunk received: `written` of its samples were stored (replacing silence or
    /// extending a segment), `overlap` were received before and kept as first written.
    Chunk {
        start_sample: u64,
        start: f64,
        absolute: Option<Timestamp>,
        samples: u64,
        bytes: u64,
        received_at: Timestamp,
        written: u64,
        overlap: u64,
        /// Set on lines rebuilt at start-up for samples stored before a crash took their
        /// line.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recovered: bool,
    },
    /// A short silence filled with zeros inside a segment, before the chunk that follows.
    Gap {
        start_sample: u64,
        samples: u64,
        start: f64,
    },
}

/// The key of a participant's claim on its folder (see [`ParticipantClaim`]).
pub fn claim_key(recording: &RecordingId, participant: ParticipantId) -> Key {
    recording_key(recording)
        .join(PARTICIPANT_CLAIMS)
        .join(&claim_name(participant))
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

/// Why a manifest line is not read. Every reader of a manifest skips such a line with a
/// warning (`copy-to-bucket` also reports it), and goes on with the next.
#[derive(Debug, thiserror::Error)]
pub enum BadLine {
    #[error("an unreadable manifest line ({0})")]
    Unreadable(#[from] serde_json::Error),
    #[error("{0:?} is not a frame file")]
    NoFrameFile(String),
}

impl FrameRecord {
    /// One line of a `frames.jsonl`, with the millisecond of the frame it lists: the one
    /// parser of manifest lines, for every reader and every backend.
    pub fn parse_line(line: &[u8]) -> Result<(u64, FrameRecord), BadLine> {
        let record: FrameRecord = serde_json::from_slice(line)?;
        match parse_frame_file_name(&record.file) {
            Some(ms) => Ok((ms, record)),
            None => Err(BadLine::NoFrameFile(record.file)),
        }
    }

    /// The manifest line of a frame the bot sent, as its writer saves it.
    pub fn of(frame: &crate::frame::Frame) -> Self {
        FrameRecord {
            file: frame_file_name(frame.relative_ms),
            relative: frame.time.relative,
            absolute: frame.time.absolute,
            width: frame.width,
            height: frame.height,
            bytes: frame.png.len() as u64,
            received_at: frame.received_at,
            recovered: false,
        }
    }
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
    /// The audio streams' resource, once audio was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_separate: Option<crate::frame::Resource>,
    pub first_frame: Option<FrameTime>,
    pub last_frame: Option<FrameTime>,
    /// What the recording's context (its metadata, its bot's) calls it, kept up to date
    /// as the context changes (see [`crate::title`]); absent when the context names
    /// nothing, and in summaries written before titles were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Title>,
}

impl RecordingSummary {
    /// The summary of `recording` with nothing else known yet.
    pub fn of(recording: crate::frame::Resource) -> Self {
        RecordingSummary {
            recording,
            bot: None,
            realtime_endpoint: None,
            video_separate: None,
            participant_events: None,
            audio_separate: None,
            first_frame: None,
            last_frame: None,
            title: None,
        }
    }

    /// Takes in the recording-level context an event carries (metadata, bot, endpoint...)
    /// into `summary`, starting one if there is none, and says whether it changed.
    pub fn note<'a>(
        summary: &'a mut Option<RecordingSummary>,
        info: &crate::frame::RecordingInfo,
    ) -> (&'a mut RecordingSummary, bool) {
        // Built only when it is new or changed: every frame, event and audio chunk comes here.
        let recording = || crate::frame::Resource {
            id: info.id.as_str().into(),
            metadata: info.metadata.clone(),
        };
        let mut changed = summary.is_none();
        let summary = summary.get_or_insert_with(|| RecordingSummary::of(recording()));
        let mut set = |field: &mut Option<crate::frame::Resource>,
                       value: &Option<crate::frame::Resource>| {
            if value.is_some() && field != value {
                field.clone_from(value);
                changed = true;
            }
        };
        set(&mut summary.bot, &info.bot);
        set(&mut summary.realtime_endpoint, &info.realtime_endpoint);
        set(&mut summary.video_separate, &info.video_separate);
        set(&mut summary.participant_events, &info.participant_events);
        set(&mut summary.audio_separate, &info.audio_separate);
        if summary.recording.id.as_str() != Some(info.id.as_str())
            || summary.recording.metadata != info.metadata
        {
            summary.recording = recording();
            changed = true;
        }
        if changed {
            summary.refresh_title();
        }
        (summary, changed)
    }

    /// Widens the first and last frame times to take in `time`.
    pub fn note_frame_time(&mut self, time: FrameTime) {
        if self.first_frame.is_none_or(|t| time.relative < t.relative) {
            self.first_frame = Some(time);
        }
        if self.last_frame.is_none_or(|t| time.relative > t.relative) {
            self.last_frame = Some(time);
        }
    }

    /// What two writers of one recording know together: first and last frame times across
    /// both, and `self`'s context (metadata, bot...) where it has some. How instances
    /// writing one bucket merge their `recording.json`.
    pub fn merged_with(mut self, other: RecordingSummary) -> RecordingSummary {
        let pick = |mine: &mut Option<crate::frame::Resource>, theirs| {
            if mine.is_none() {
                *mine = theirs;
            }
        };
        pick(&mut self.bot, other.bot);
        pick(&mut self.realtime_endpoint, other.realtime_endpoint);
        pick(&mut self.video_separate, other.video_separate);
        pick(&mut self.participant_events, other.participant_events);
        pick(&mut self.audio_separate, other.audio_separate);
        self.first_frame = [self.first_frame, other.first_frame]
            .into_iter()
            .flatten()
            .min_by(|a, b| a.relative.total_cmp(&b.relative));
        self.last_frame = [self.last_frame, other.last_frame]
            .into_iter()
            .flatten()
            .max_by(|a, b| a.relative.total_cmp(&b.relative));
        self.refresh_title();
        self
    }

    /// The title this context gives the recording, as `title` holds it once written; for
    /// summaries written before titles were, worked out from the context they hold.
    pub fn title(&self) -> Option<Title> {
        self.title.clone().or_else(|| self.context_title())
    }

    fn context_title(&self) -> Option<Title> {
        let bot = self.bot.as_ref().map(|bot| &bot.metadata);
        Title::from_context(&self.recording.metadata, bot)
    }

    fn refresh_title(&mut self) {
        self.title = self.context_title();
    }
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

// ---- Object storage (issue 7) ----
//
// A bucket holds the same keys as the folders above, under an optional prefix. S3 has no
// append, so what the file system appends to becomes chunks: objects that each belong to one
// writer (a unique name, created with `If-None-Match: *` and rewritten only with
// `If-Match: <its own last ETag>`), whose lines together are the file's lines.
//
// ```text
// <recording_id>/participants/<participant_id>.json             the participant's folder, claimed once
// <recording_id>/events/<chunk>.jsonl                            participant events
// <recording_id>/<participant folder>/<kind>/frames/<chunk>.jsonl  the stream's manifest
// ```

/// In a recording's folder: one [`ParticipantClaim`] per participant, created once by
/// whichever server saw the participant first, so that every server uses one folder (on a
/// shared store only).
pub const PARTICIPANT_CLAIMS: &str = "participants";

/// `100` → `100.json`: the name of a participant's claim.
pub fn claim_name(participant: ParticipantId) -> String {
    format!("{participant}.json")
}

/// What a participant's claim holds: the folder every instance uses for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantClaim {
    pub folder: String,
}

impl ParticipantClaim {
    /// Whether `folder` is a name [`participant_folder_name`] could have given `participant`:
    /// the id, then nothing or a dash and an ASCII slug. A claim read back from a bucket is
    /// checked before its folder becomes part of a key.
    pub fn is_valid_for(&self, participant: ParticipantId) -> bool {
        let folder = &self.folder;
        parse_participant_folder_name(folder) == Some(participant)
            && folder.len() <= 20 + 1 + MAX_SLUG_LEN
            && folder
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
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

    #[test]
    fn merged_summaries_span_both_writers_frames_and_keep_their_own_context() {
        let time = |relative| FrameTime {
            relative,
            absolute: None,
        };
        let resource = |id: &str| crate::frame::Resource {
            id: id.into(),
            metadata: serde_json::Value::Null,
        };
        let summary = |first: Option<f64>, last: Option<f64>, bot: Option<&str>| RecordingSummary {
            recording: resource("rec"),
            bot: bot.map(resource),
            realtime_endpoint: None,
            video_separate: Some(resource("vs")),
            participant_events: None,
            audio_separate: None,
            first_frame: first.map(time),
            last_frame: last.map(time),
            title: None,
        };
        let mine = summary(Some(5.0), Some(8.0), None);
        let theirs = summary(Some(0.5), Some(6.0), Some("bot_1"));
        let merged = mine.merged_with(theirs);
        assert_eq!(merged.first_frame, Some(time(0.5)));
        assert_eq!(merged.last_frame, Some(time(8.0)));
        assert_eq!(
            merged.bot,
            Some(resource("bot_1")),
            "theirs where mine has none"
        );
        let merged = summary(None, None, Some("bot_2")).merged_with(merged);
        assert_eq!(merged.bot, Some(resource("bot_2")), "mine where I have one");
        assert_eq!(merged.first_frame, Some(time(0.5)));
    }

    #[test]
    fn a_summary_keeps_its_contexts_title_and_older_ones_work_it_out() {
        let info = |metadata: serde_json::Value, bot: Option<serde_json::Value>| {
            crate::frame::RecordingInfo {
                id: RecordingId::parse("rec").unwrap(),
                metadata,
                bot: bot.map(|metadata| crate::frame::Resource {
                    id: "bot_1".into(),
                    metadata,
                }),
                realtime_endpoint: None,
                video_separate: None,
                participant_events: None,
                audio_separate: None,
            }
        };
        let mut summary = None;
        RecordingSummary::note(&mut summary, &info(serde_json::json!({}), None));
        assert_eq!(summary.as_ref().unwrap().title, None);
        let (_, changed) = RecordingSummary::note(
            &mut summary,
            &info(
                serde_json::json!({}),
                Some(serde_json::json!({"bot_name": "Recorder"})),
            ),
        );
        assert!(changed);
        let title = summary.as_ref().unwrap().title.clone().unwrap();
        assert_eq!(
            (title.text.as_str(), title.source),
            ("Recorder", crate::title::TitleSource::BotName)
        );
        let (_, changed) = RecordingSummary::note(
            &mut summary,
            &info(serde_json::json!({"title": "Weekly sync"}), None),
        );
        assert!(changed);
        assert_eq!(
            summary.as_ref().unwrap().title.as_ref().unwrap().text,
            "Weekly sync"
        );

        // A recording.json written before titles were: worked out from what it holds.
        let older: RecordingSummary = serde_json::from_value(serde_json::json!({
            "recording": {"id": "rec", "metadata": {}},
            "bot": {"id": "bot_1", "metadata": {"title": "Design review"}},
            "realtime_endpoint": null, "video_separate": null,
            "first_frame": null, "last_frame": null
        }))
        .unwrap();
        assert_eq!(older.title, None);
        assert_eq!(older.title().unwrap().text, "Design review");
        // Merged with a writer that knows the bot: the title of the merged context.
        let merged = summary.unwrap().merged_with(older);
        assert_eq!(
            merged.title.unwrap().text,
            "Weekly sync",
            "the recording's own first"
        );
    }

    #[test]
    fn claims_only_name_their_own_folders() {
        assert_eq!(claim_name(ParticipantId(100)), "100.json");
        let claim = |folder: &str| ParticipantClaim {
            folder: folder.into(),
        };
        let id = ParticipantId(100);
        assert!(claim("100-alice-smith").is_valid_for(id));
        assert!(claim("100").is_valid_for(id));
        for bad in ["200-bob", "100-../x", "100/x", "100-Alice", "", "-100"] {
            assert!(!claim(bad).is_valid_for(id), "{bad}");
        }
    }
}
