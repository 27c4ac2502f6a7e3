//! The domain: recordings, participants, streams and the frames that flow between them.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// A Recall recording id, checked to be safe as one path segment: `[A-Za-z0-9_.-]{1,128}`,
/// not starting with a dot. Dot-names at the top of the store are the server's own (the
/// websocket token, `.deletions`), hidden from listings: a recording named so would be
/// saved where nobody could see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordingId(Arc<str>);

impl RecordingId {
    pub const MAX_LEN: usize = 128;

    pub fn parse(id: &str) -> Option<Self> {
        let safe_chars = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        let ok = safe_chars && (1..=Self::MAX_LEN).contains(&id.len()) && !id.starts_with('.');
        ok.then(|| Self(id.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RecordingId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// Read back from this server's own records (the audit log), checked as any id is.
impl<'de> Deserialize<'de> for RecordingId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        RecordingId::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a recording id")))
    }
}

/// A participant's numeric id within a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Which of a participant's video streams a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamKind {
    Webcam,
    Screenshare,
}

impl StreamKind {
    pub const ALL: [StreamKind; 2] = [StreamKind::Webcam, StreamKind::Screenshare];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Webcam => "webcam",
            StreamKind::Screenshare => "screenshare",
        }
    }

    pub fn parse(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }
}

impl fmt::Display for StreamKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One participant's stream of one kind in one recording: the unit that gets its own channel,
/// its own task and its own folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub recording: RecordingId,
    pub participant: ParticipantId,
    pub kind: StreamKind,
}

impl fmt::Display for StreamKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.recording, self.participant, self.kind)
    }
}

/// What Recall tells us about a participant; written to `participant.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Participant {
    pub id: ParticipantId,
    pub name: Option<String>,
    pub is_host: bool,
    pub platform: Option<String>,
    pub email: Option<String>,
    pub extra_data: serde_json::Value,
}

impl Participant {
    /// A participant known only by id: what a saved folder says when its
    /// `participant.json` is missing or unreadable.
    pub fn unknown(id: ParticipantId) -> Self {
        Participant {
            id,
            name: None,
            is_host: false,
            platform: None,
            email: None,
            extra_data: serde_json::Value::Null,
        }
    }
}

/// A Recall object reference (`{"id": ..., "metadata": {...}}`) kept verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub id: serde_json::Value,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// The recording-level context every event carries; summarised in `recording.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingInfo {
    pub id: RecordingId,
    pub metadata: serde_json::Value,
    pub bot: Option<Resource>,
    pub realtime_endpoint: Option<Resource>,
    pub video_separate: Option<Resource>,
    /// Sent with participant events, in place of `video_separate`.
    pub participant_events: Option<Resource>,
    /// Sent with audio chunks, in place of `video_separate`.
    pub audio_separate: Option<Resource>,
}

/// When a frame was taken: seconds since the recording started, and wall-clock time if given.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameTime {
    pub relative: f64,
    pub absolute: Option<Timestamp>,
}

impl FrameTime {
    /// The largest relative time that fits the 9-digit file names: about 11.5 days.
    pub const MAX_RELATIVE_MS: u64 = 999_999_999;

    /// The relative time in whole milliseconds, or `None` when it is negative, not a number,
    /// or too large to be a meeting.
    pub fn relative_ms(relative: f64) -> Option<u64> {
        let ms = (relative * 1000.0).round();
        (ms.is_finite() && (0.0..=Self::MAX_RELATIVE_MS as f64).contains(&ms)).then_some(ms as u64)
    }
}

/// One decoded, validated video frame, ready for the sinks.
#[derive(Debug, Clone)]
pub struct Frame {
    pub key: StreamKey,
    pub time: FrameTime,
    /// `time.relative` in milliseconds: the frame's name within its stream.
    pub relative_ms: u64,
    /// The exact PNG bytes received.
    pub png: Bytes,
    pub width: u32,
    pub height: u32,
    pub participant: Participant,
    pub recording: RecordingInfo,
    pub received_at: Timestamp,
    /// When the message was read from the socket, for receipt-to-disk latency.
    pub received: Instant,
}

/// What a participant event says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ParticipantEventKind {
    Join,
    Leave,
    Update,
    WebcamOn,
    WebcamOff,
    ScreenshareOn,
    ScreenshareOff,
    SpeechOn,
    SpeechOff,
    ChatMessage,
}

impl ParticipantEventKind {
    pub const ALL: [ParticipantEventKind; 10] = [
        ParticipantEventKind::Join,
        ParticipantEventKind::Leave,
        ParticipantEventKind::Update,
        ParticipantEventKind::WebcamOn,
        ParticipantEventKind::WebcamOff,
        ParticipantEventKind::ScreenshareOn,
        ParticipantEventKind::ScreenshareOff,
        ParticipantEventKind::SpeechOn,
        ParticipantEventKind::SpeechOff,
        ParticipantEventKind::ChatMessage,
    ];

    /// The event type on the wire, e.g. `participant_events.join`.
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipantEventKind::Join => "participant_events.join",
            ParticipantEventKind::Leave => "participant_events.leave",
            ParticipantEventKind::Update => "participant_events.update",
            ParticipantEventKind::WebcamOn => "participant_events.webcam_on",
            ParticipantEventKind::WebcamOff => "participant_events.webcam_off",
            ParticipantEventKind::ScreenshareOn => "participant_events.screenshare_on",
            ParticipantEventKind::ScreenshareOff => "participant_events.screenshare_off",
            ParticipantEventKind::SpeechOn => "participant_events.speech_on",
            ParticipantEventKind::SpeechOff => "participant_events.speech_off",
            ParticipantEventKind::ChatMessage => "participant_events.chat_message",
        }
    }

    pub fn parse(event: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == event)
    }

    /// Whether the event says who the participant now is (their name, host status...), so
    /// that `participant.json` follows it.
    pub fn describes_participant(self) -> bool {
        matches!(
            self,
            ParticipantEventKind::Join | ParticipantEventKind::Update
        )
    }
}

impl fmt::Display for ParticipantEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One decoded, validated participant event: someone joined, left, spoke, shared a screen,
/// sent a chat message...
#[derive(Debug, Clone)]
pub struct ParticipantEvent {
    pub kind: ParticipantEventKind,
    pub participant: Participant,
    pub time: FrameTime,
    /// The event's own data (the text of a chat message), or null; kept as Recall sent it.
    pub data: serde_json::Value,
    pub recording: RecordingInfo,
    pub received_at: Timestamp,
}
