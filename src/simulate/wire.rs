//! The messages a simulated bot sends, in exactly the shape of Recall's realtime events:
//! `video_separate_png.data` frames and the `participant_events.*` around them.
//!
//! A frame's base64 buffer is encoded once and kept as a raw JSON string, so that each
//! message costs one copy of it rather than an escape-checking pass.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::event::FRAME_EVENT;
use crate::frame::{ParticipantId, Resource, StreamKind};

/// A frame's PNG, and the same bytes as the JSON string (quoted base64) that carries them.
#[derive(Debug)]
pub struct EncodedPng {
    pub png: bytes::Bytes,
    pub buffer: Box<RawValue>,
}

impl EncodedPng {
    pub fn new(png: impl Into<bytes::Bytes>) -> Self {
        use base64::Engine as _;
        let png = png.into();
        let quoted = format!(
            "\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(&png)
        );
        // Quoted base64 is always a valid JSON string.
        let buffer = RawValue::from_string(quoted).expect("quoted base64 is a JSON string");
        EncodedPng { png, buffer }
    }
}

/// A participant as Recall describes one in every event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WireParticipant {
    pub id: ParticipantId,
    pub name: Option<String>,
    pub is_host: bool,
    pub platform: Option<String>,
    pub extra_data: serde_json::Value,
    /// Only sent by Recall with a calendar integration.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The resources every event of one bot names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BotResources {
    pub recording: Resource,
    pub bot: Resource,
    pub realtime_endpoint: Resource,
    pub video_separate: Resource,
    pub participant_events: Resource,
    pub audio_separate: Resource,
}

/// The participant events the simulator sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipantEvent {
    Join,
    WebcamOn,
    ScreenshareOn,
    SpeechOn,
    SpeechOff,
    Leave,
}

impl ParticipantEvent {
    pub fn name(self) -> &'static str {
        match self {
            ParticipantEvent::Join => "participant_events.join",
            ParticipantEvent::WebcamOn => "participant_events.webcam_on",
            ParticipantEvent::ScreenshareOn => "participant_events.screenshare_on",
            ParticipantEvent::SpeechOn => "participant_events.speech_on",
            ParticipantEvent::SpeechOff => "participant_events.speech_off",
            ParticipantEvent::Leave => "participant_events.leave",
        }
    }
}

#[derive(Serialize)]
struct Envelope<'a, D> {
    event: &'a str,
    data: D,
}

#[derive(Serialize)]
struct WireTimestamp {
    relative: f64,
    absolute: String,
}

impl WireTimestamp {
    fn new(meeting_start: Timestamp, relative_ms: u64) -> Self {
        let at = meeting_start + jiff::SignedDuration::from_millis(relative_ms as i64);
        WireTimestamp {
            relative: relative_ms as f64 / 1000.0,
            // Recall writes milliseconds: 2026-11-21T10:00:12.500Z.
            absolute: format!("{at:.3}"),
        }
    }
}

#[derive(Serialize)]
struct FrameEvent<'a> {
    data: FramePayload<'a>,
    realtime_endpoint: &'a Resource,
    video_separate: &'a Resource,
    recording: &'a Resource,
    bot: &'a Resource,
}

#[derive(Serialize)]
struct FramePayload<'a> {
    buffer: &'a RawValue,
    timestamp: WireTimestamp,
    #[serde(rename = "type")]
    kind: StreamKind,
    participant: &'a WireParticipant,
}

#[derive(Serialize)]
struct ParticipantEventData<'a> {
    data: ParticipantPayload<'a>,
    realtime_endpoint: &'a Resource,
    participant_events: &'a Resource,
    recording: &'a Resource,
    bot: &'a Resource,
}

#[derive(Serialize)]
struct ParticipantPayload<'a> {
    participant: &'a WireParticipant,
    timestamp: WireTimestamp,
    data: Option<()>,
}

/// One `video_separate_png.data` message.
pub fn frame_event(
    resources: &BotResources,
    participant: &WireParticipant,
    kind: StreamKind,
    meeting_start: Timestamp,
    relative_ms: u64,
    png: &EncodedPng,
) -> String {
    let event = Envelope {
        event: FRAME_EVENT,
        data: FrameEvent {
            data: FramePayload {
                buffer: &png.buffer,
                timestamp: WireTimestamp::new(meeting_start, relative_ms),
                kind,
                participant,
            },
            realtime_endpoint: &resources.realtime_endpoint,
            video_separate: &resources.video_separate,
            recording: &resources.recording,
            bot: &resources.bot,
        },
    };
    serde_json::to_string(&event).expect("events serialise to JSON")
}

#[derive(Serialize)]
struct AudioEvent<'a> {
    data: AudioPayload<'a>,
    realtime_endpoint: &'a Resource,
    audio_separate: &'a Resource,
    recording: &'a Resource,
    bot: &'a Resource,
}

#[derive(Serialize)]
struct AudioPayload<'a> {
    buffer: String,
    timestamp: WireTimestamp,
    participant: &'a WireParticipant,
}

/// One `audio_separate_raw.data` message: `samples` from timeline sample `start_sample` on
/// (a whole millisecond), as s16le base64.
pub fn audio_event(
    resources: &BotResources,
    participant: &WireParticipant,
    meeting_start: Timestamp,
    start_sample: u64,
    samples: &[i16],
) -> String {
    use base64::Engine as _;
    let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    let event = Envelope {
        event: crate::event::SEPARATE_AUDIO_EVENT,
        data: AudioEvent {
            data: AudioPayload {
                buffer: base64::engine::general_purpose::STANDARD.encode(pcm),
                timestamp: WireTimestamp::new(
                    meeting_start,
                    start_sample / crate::audio::SAMPLES_PER_MS,
                ),
                participant,
            },
            realtime_endpoint: &resources.realtime_endpoint,
            audio_separate: &resources.audio_separate,
            recording: &resources.recording,
            bot: &resources.bot,
        },
    };
    serde_json::to_string(&event).expect("events serialise to JSON")
}

/// One `participant_events.*` message.
pub fn participant_event(
    resources: &BotResources,
    participant: &WireParticipant,
    event: ParticipantEvent,
    meeting_start: Timestamp,
    relative_ms: u64,
) -> String {
    let event = Envelope {
        event: event.name(),
        data: ParticipantEventData {
            data: ParticipantPayload {
                participant,
                timestamp: WireTimestamp::new(meeting_start, relative_ms),
                data: None,
            },
            realtime_endpoint: &resources.realtime_endpoint,
            participant_events: &resources.participant_events,
            recording: &resources.recording,
            bot: &resources.bot,
        },
    };
    serde_json::to_string(&event).expect("events serialise to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn resource(id: &str) -> Resource {
        Resource {
            id: id.into(),
            metadata: json!({"simulated": true}),
        }
    }

    fn resources() -> BotResources {
        BotResources {
            recording: resource("rec"),
            bot: resource("bot"),
            realtime_endpoint: resource("re"),
            video_separate: resource("vs"),
            participant_events: resource("pe"),
            audio_separate: resource("as"),
        }
    }

    fn alice() -> WireParticipant {
        WireParticipant {
            id: ParticipantId(100),
            name: Some("Alice".into()),
            is_host: true,
            platform: Some("desktop".into()),
            extra_data: json!({}),
            email: None,
        }
    }

    #[test]
    fn frame_events_have_recalls_shape() {
        let start: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let png = EncodedPng::new(vec![1, 2, 3]);
        let text = frame_event(
            &resources(),
            &alice(),
            StreamKind::Screenshare,
            start,
            12_500,
            &png,
        );
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({
                "event": "video_separate_png.data",
                "data": {
                    "data": {
                        "buffer": "AQID",
                        "timestamp": {"relative": 12.5, "absolute": "2026-11-21T10:00:12.500Z"},
                        "type": "screenshare",
                        "participant": {"id": 100, "name": "Alice", "is_host": true,
                                        "platform": "desktop", "extra_data": {}}
                    },
                    "realtime_endpoint": {"id": "re", "metadata": {"simulated": true}},
                    "video_separate": {"id": "vs", "metadata": {"simulated": true}},
                    "recording": {"id": "rec", "metadata": {"simulated": true}},
                    "bot": {"id": "bot", "metadata": {"simulated": true}}
                }
            })
        );
    }

    #[test]
    fn the_server_decodes_frame_events_to_the_png_sent() {
        use crate::event::{Inbound, decode};
        let look = crate::simulate::picture::Look {
            name: "Alice".into(),
            kind: StreamKind::Webcam,
            width: 48,
            height: 32,
            seed: 3,
        };
        let png = crate::simulate::picture::render(&look, 1, "1");
        let start: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let text = frame_event(
            &resources(),
            &alice(),
            StreamKind::Webcam,
            start,
            500,
            &EncodedPng::new(png.clone()),
        );
        let Inbound::Frame(frame) = decode(&text, Timestamp::now(), std::time::Instant::now())
            .expect("the server accepts the event")
        else {
            panic!("a frame event decodes to a frame");
        };
        assert_eq!(frame.png.as_ref(), png.as_slice());
        assert_eq!(
            (frame.width, frame.height, frame.relative_ms),
            (48, 32, 500)
        );
        assert_eq!(frame.key.to_string(), "rec/100/webcam");
    }

    #[test]
    fn participant_events_have_recalls_shape() {
        let start: Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
        let text = participant_event(
            &resources(),
            &alice(),
            ParticipantEvent::Leave,
            start,
            61_000,
        );
        let value: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            json!({
                "event": "participant_events.leave",
                "data": {
                    "data": {
                        "participant": {"id": 100, "name": "Alice", "is_host": true,
                                        "platform": "desktop", "extra_data": {}},
                        "timestamp": {"relative": 61.0, "absolute": "2026-11-21T10:01:01.000Z"},
                        "data": null
                    },
                    "realtime_endpoint": {"id": "re", "metadata": {"simulated": true}},
                    "participant_events": {"id": "pe", "metadata": {"simulated": true}},
                    "recording": {"id": "rec", "metadata": {"simulated": true}},
                    "bot": {"id": "bot", "metadata": {"simulated": true}}
                }
            })
        );
    }
}
