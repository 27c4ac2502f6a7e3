//! Recall's realtime events as they arrive on the wire, decoded at the edge into typed,
//! validated values. Nothing past this module sees JSON, base64 or an unchecked id.
//!
//! [`decode`] is the entry: the fastest path (`lifted`) for a frame or an audio chunk as
//! Recall sends it, the fast path (`one_pass`) where the message allows it, else the
//! reference decoding of the `wire` types; then the `buffer`'s base64 and the `png` checks.
//! A connection decodes through a [`Decoder`], which does the same and, for an audio chunk
//! of a track it has seen, reads only what changes from chunk to chunk (`decoder`).
//! Every way a message can fail is a [`Refusal`].

mod audio;
mod buffer;
mod decoder;
mod lifted;
mod one_pass;
mod png;
mod refusal;
mod wire;

use std::time::Instant;

use jiff::Timestamp;
use serde_json::value::RawValue;

pub use self::audio::SEPARATE_AUDIO_EVENT;
use self::audio::{AudioEvent, WireAudioEvent, decode_audio};
pub use self::decoder::Decoder;
use self::lifted::Lifted;
use self::one_pass::OnePass;
pub use self::png::{MAX_SIDE, png_dimensions};
pub use self::refusal::{Refusal, RefusalReason};
use self::wire::{
    Envelope, WireFrameEvent, WireParticipantEvent, decode_frame, decode_participant_event,
};
use crate::audio::AudioChunk;
use crate::frame::{Frame, ParticipantEvent, ParticipantEventKind};

/// The event type that carries one participant's video frame.
pub const FRAME_EVENT: &str = "video_separate_png.data";

/// Every event type this server records: what the realtime endpoint of a bot it creates
/// subscribes to.
pub fn recorded_events() -> impl Iterator<Item = &'static str> {
    std::iter::once(FRAME_EVENT).chain(
        ParticipantEventKind::ALL
            .into_iter()
            .map(ParticipantEventKind::as_str),
    )
}

/// What one text message turned out to be.
#[derive(Debug)]
pub enum Inbound {
    Frame(Box<Frame>),
    ParticipantEvent(Box<ParticipantEvent>),
    Audio(Box<AudioChunk>),
    /// A well-formed event of a type this server does not record.
    Ignored,
}

/// Decodes one websocket text message. CPU-bound (a base64 decode of a few hundred
/// kilobytes for a frame): callers on the async runtime run a large message in
/// `spawn_blocking`. A connection decodes its messages with a [`Decoder`], which does the
/// same faster for audio.
pub fn decode(text: &str, received_at: Timestamp, received: Instant) -> Result<Inbound, Refusal> {
    // A frame's or a chunk's base64 buffer is most of it: the JSON parser is spared reading
    // it.
    match Lifted::new(text).and_then(|lifted| lifted.decode(received_at, received)) {
        Some(inbound) => Ok(inbound),
        None => decode_unlifted(text, received_at, received),
    }
}

/// What the lifted path leaves.
fn decode_unlifted(
    text: &str,
    received_at: Timestamp,
    received: Instant,
) -> Result<Inbound, Refusal> {
    // Scanning the base64 string is most of the JSON work, so an event whose `event` comes
    // before its `data` (as Recall sends them) is read in one pass rather than two. Anything
    // else, and every error, goes through the two passes, which have the last word on what
    // is refused and why.
    match serde_json::from_str::<OnePass>(text) {
        Ok(OnePass::Frame(event)) => {
            decode_frame(*event, received_at, received).map(|frame| Inbound::Frame(Box::new(frame)))
        }
        Ok(OnePass::ParticipantEvent(kind, event)) => {
            decode_participant_event(kind, *event, received_at)
                .map(|event| Inbound::ParticipantEvent(Box::new(event)))
        }
        Ok(OnePass::Audio(kind, event)) => decode_audio(kind, *event, received_at, received)
            .map(|chunk| Inbound::Audio(Box::new(chunk))),
        Ok(OnePass::Ignored) => Ok(Inbound::Ignored),
        Ok(OnePass::DataFirst) | Err(_) => decode_in_two_passes(text, received_at, received),
    }
}

/// The reference decoding: the envelope first (which checks the whole message is JSON),
/// then the frame event from its `data`.
pub fn decode_in_two_passes(
    text: &str,
    received_at: Timestamp,
    received: Instant,
) -> Result<Inbound, Refusal> {
    let envelope: Envelope = serde_json::from_str(text).map_err(Refusal::from_json)?;
    let data = envelope.data.map_or("null", RawValue::get);
    if envelope.event == FRAME_EVENT {
        let event: WireFrameEvent = serde_json::from_str(data).map_err(Refusal::from_json)?;
        return decode_frame(event, received_at, received)
            .map(|frame| Inbound::Frame(Box::new(frame)));
    }
    if let Some(kind) = AudioEvent::parse(&envelope.event) {
        let event: WireAudioEvent = serde_json::from_str(data).map_err(Refusal::from_json)?;
        return decode_audio(kind, event, received_at, received)
            .map(|chunk| Inbound::Audio(Box::new(chunk)));
    }
    // Participant event types this server does not know (Recall may add some) are ignored
    // like any other event.
    if let Some(kind) = ParticipantEventKind::parse(&envelope.event) {
        let event: WireParticipantEvent = serde_json::from_str(data).map_err(Refusal::from_json)?;
        return decode_participant_event(kind, event, received_at)
            .map(|event| Inbound::ParticipantEvent(Box::new(event)));
    }
    Ok(Inbound::Ignored)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use base64::Engine as _;
    use serde_json::json;

    use super::buffer::BASE64;
    use super::*;
    use crate::frame::ParticipantId;

    pub(super) fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(width, height)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    pub(super) fn event(buffer: &str) -> serde_json::Value {
        json!({
            "event": FRAME_EVENT,
            "data": {
                "data": {
                    "buffer": buffer,
                    "timestamp": {"relative": 12.5, "absolute": "2026-11-21T10:00:12.500Z"},
                    "type": "webcam",
                    "participant": {"id": 100, "name": "Alice", "is_host": true,
                                    "platform": "desktop", "extra_data": {"k": 1}}
                },
                "realtime_endpoint": {"id": "re", "metadata": {}},
                "video_separate": {"id": "vs", "metadata": {}},
                "recording": {"id": "rec_1", "metadata": {"team": "a"}},
                "bot": null
            }
        })
    }

    fn decode_value(value: &serde_json::Value) -> Result<Inbound, Refusal> {
        decode(&value.to_string(), Timestamp::now(), Instant::now())
    }

    fn refusal(value: &serde_json::Value) -> RefusalReason {
        match decode_value(value) {
            Err(refusal) => refusal.reason(),
            Ok(other) => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn decodes_a_frame_with_exact_bytes() {
        let bytes = png(64, 36);
        let Inbound::Frame(frame) = decode_value(&event(&BASE64.encode(&bytes))).unwrap() else {
            panic!("not a frame");
        };
        assert_eq!(frame.png.as_ref(), bytes.as_slice());
        assert_eq!((frame.width, frame.height), (64, 36));
        assert_eq!(frame.relative_ms, 12_500);
        assert_eq!(frame.key.to_string(), "rec_1/100/webcam");
        assert_eq!(frame.participant.name.as_deref(), Some("Alice"));
        assert!(frame.participant.is_host);
        assert_eq!(frame.recording.metadata, json!({"team": "a"}));
        assert!(frame.recording.bot.is_none());
    }

    #[test]
    fn escaped_slashes_in_the_buffer_still_decode() {
        let bytes = png(8, 8);
        let text = event(&BASE64.encode(&bytes))
            .to_string()
            .replace('/', "\\/");
        let Inbound::Frame(frame) = decode(&text, Timestamp::now(), Instant::now()).unwrap() else {
            panic!("not a frame");
        };
        assert_eq!(frame.png.as_ref(), bytes.as_slice());
    }

    /// An audio chunk as Recall sends one, around `buffer`.
    pub(super) fn audio_event(buffer: &str) -> serde_json::Value {
        json!({
            "event": SEPARATE_AUDIO_EVENT,
            "data": {
                "data": {
                    "buffer": buffer,
                    "timestamp": {"relative": 12.5, "absolute": "2026-11-21T10:00:12.500Z"},
                    "participant": {"id": 100, "name": "Alice", "is_host": true,
                                    "platform": "desktop", "extra_data": {"k": 1}}
                },
                "realtime_endpoint": {"id": "re", "metadata": {}},
                "audio_separate": {"id": "as", "metadata": {}},
                "recording": {"id": "rec_1", "metadata": {"team": "a"}},
                "bot": null
            }
        })
    }

    pub(super) fn participant_event(kind: &str) -> serde_json::Value {
        json!({
            "event": kind,
            "data": {
                "data": {
                    "participant": {"id": 200, "name": "Bob", "is_host": false,
                                    "platform": "zoom", "extra_data": {}},
                    "timestamp": {"relative": 3.25, "absolute": "2026-11-21T10:00:03.250Z"},
                    "data": null
                },
                "realtime_endpoint": {"id": "re", "metadata": {}},
                "participant_events": {"id": "pe", "metadata": {"m": 1}},
                "recording": {"id": "rec_1", "metadata": {}},
                "bot": {"id": "bot", "metadata": {}}
            }
        })
    }

    #[test]
    fn decodes_every_participant_event_kind() {
        for kind in crate::frame::ParticipantEventKind::ALL {
            let Inbound::ParticipantEvent(event) =
                decode_value(&participant_event(kind.as_str())).unwrap()
            else {
                panic!("{kind} is not a participant event");
            };
            assert_eq!(event.kind, kind);
            assert_eq!(event.participant.id, ParticipantId(200));
            assert_eq!(event.participant.name.as_deref(), Some("Bob"));
            assert_eq!(event.time.relative, 3.25);
            assert!(event.time.absolute.is_some());
            assert_eq!(event.data, serde_json::Value::Null);
            assert_eq!(event.recording.id.as_str(), "rec_1");
            assert_eq!(
                event
                    .recording
                    .participant_events
                    .as_ref()
                    .unwrap()
                    .metadata,
                json!({"m": 1})
            );
            assert!(event.recording.video_separate.is_none());
        }
    }

    #[test]
    fn a_chat_message_keeps_its_data_and_missing_data_is_null() {
        let mut chat = participant_event("participant_events.chat_message");
        *chat.pointer_mut("/data/data/data").unwrap() = json!({"text": "hi", "to": "everyone"});
        let Inbound::ParticipantEvent(event) = decode_value(&chat).unwrap() else {
            panic!("not a participant event");
        };
        assert_eq!(event.data, json!({"text": "hi", "to": "everyone"}));

        let mut bare = participant_event("participant_events.leave");
        bare["data"]["data"].as_object_mut().unwrap().remove("data");
        let Inbound::ParticipantEvent(event) = decode_value(&bare).unwrap() else {
            panic!("not a participant event");
        };
        assert_eq!(event.data, serde_json::Value::Null);
    }

    #[test]
    fn bad_participant_events_are_refused_like_bad_frames() {
        let with = |pointer: &str, value: serde_json::Value| {
            let mut e = participant_event("participant_events.join");
            *e.pointer_mut(pointer).unwrap() = value;
            refusal(&e)
        };
        for id in ["..", "a/b", ""] {
            assert_eq!(
                with("/data/recording/id", json!(id)),
                RefusalReason::UnsafeId
            );
        }
        for id in [json!(-1), json!("200"), json!(null)] {
            assert_eq!(
                with("/data/data/participant/id", id),
                RefusalReason::UnsafeId
            );
        }
        assert_eq!(
            with("/data/data/timestamp/relative", json!(-0.5)),
            RefusalReason::BadTimestamp
        );
        assert_eq!(
            with("/data/data/timestamp/absolute", json!("noon")),
            RefusalReason::BadTimestamp
        );
        assert_eq!(
            with("/data/data/participant", json!("Bob")),
            RefusalReason::WrongShape
        );
        assert_eq!(
            refusal(&json!({"event": "participant_events.join", "data": null})),
            RefusalReason::WrongShape
        );
    }

    #[test]
    fn unknown_participant_event_kinds_are_ignored() {
        let future = participant_event("participant_events.raised_hand");
        assert!(matches!(decode_value(&future), Ok(Inbound::Ignored)));
    }

    #[test]
    fn other_events_are_ignored() {
        let other = json!({"event": "transcript.data", "data": {"whatever": 1}});
        assert!(matches!(decode_value(&other), Ok(Inbound::Ignored)));
        assert!(matches!(
            decode_value(&json!({"event": "x"})),
            Ok(Inbound::Ignored)
        ));
    }

    #[test]
    fn each_kind_of_bad_input_has_its_reason() {
        let good = BASE64.encode(png(8, 8));
        assert_eq!(
            decode("{not json", Timestamp::now(), Instant::now())
                .unwrap_err()
                .reason(),
            RefusalReason::InvalidJson
        );
        assert_eq!(refusal(&json!({"no_event": 1})), RefusalReason::WrongShape);
        assert_eq!(
            refusal(&json!({"event": FRAME_EVENT, "data": {"x": 1}})),
            RefusalReason::WrongShape
        );
        assert_eq!(refusal(&event("***")), RefusalReason::InvalidBase64);
        assert_eq!(
            refusal(&event(&BASE64.encode(b"GIF89a..."))),
            RefusalReason::InvalidPng
        );
        let mut truncated = png(8, 8);
        truncated.truncate(truncated.len() - 4);
        assert_eq!(
            refusal(&event(&BASE64.encode(&truncated))),
            RefusalReason::InvalidPng
        );
        assert_eq!(
            refusal(&event(&BASE64.encode(png(4097, 1)))),
            RefusalReason::BadDimensions
        );

        let with = |pointer: &str, value: serde_json::Value| {
            let mut e = event(&good);
            *e.pointer_mut(pointer).unwrap() = value;
            refusal(&e)
        };
        assert_eq!(
            with("/data/data/type", json!("audio")),
            RefusalReason::UnknownStreamType
        );
        assert_eq!(
            with("/data/data/timestamp/relative", json!(-1.0)),
            RefusalReason::BadTimestamp
        );
        assert_eq!(
            with("/data/data/timestamp/relative", json!(1e12)),
            RefusalReason::BadTimestamp
        );
        assert_eq!(
            with("/data/data/timestamp/absolute", json!("yesterday")),
            RefusalReason::BadTimestamp
        );
        for id in ["..", ".", "", "a/b", "a\\b", "a\0b", "rec 1"] {
            assert_eq!(
                with("/data/recording/id", json!(id)),
                RefusalReason::UnsafeId,
                "{id:?}"
            );
        }
        assert_eq!(
            with("/data/recording/id", json!("x".repeat(129))),
            RefusalReason::UnsafeId
        );
        assert_eq!(
            with("/data/recording/id", json!(5)),
            RefusalReason::UnsafeId
        );
        for id in [json!(-1), json!(1.5), json!("100"), json!(null)] {
            assert_eq!(
                with("/data/data/participant/id", id),
                RefusalReason::UnsafeId
            );
        }
    }
}
