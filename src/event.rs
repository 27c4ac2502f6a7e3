//! Recall's realtime events as they arrive on the wire, decoded at the edge into typed,
//! validated values. Nothing past this module sees JSON, base64 or an unchecked id.

use std::borrow::Cow;
use std::io::Cursor;
use std::time::Instant;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use image::ImageDecoder as _;
use image::codecs::png::PngDecoder;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::frame::{
    Frame, FrameTime, Participant, ParticipantEvent, ParticipantEventKind, ParticipantId,
    RecordingId, RecordingInfo, Resource, StreamKey, StreamKind,
};

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

/// Largest accepted width or height of a frame.
pub const MAX_SIDE: u32 = 4096;

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// An empty IEND chunk: length, type and CRC. Every complete PNG ends with it.
const PNG_IEND: &[u8] = b"\0\0\0\0IEND\xae\x42\x60\x82";

/// Standard base64, with or without the trailing `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What one text message turned out to be.
#[derive(Debug)]
pub enum Inbound {
    Frame(Box<Frame>),
    ParticipantEvent(Box<ParticipantEvent>),
    /// A well-formed event of a type this server does not record.
    Ignored,
}

/// Why a message was refused. Each variant maps to a stable [`RefusalReason`] for counting.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("message is not valid JSON: {0}")]
    InvalidJson(serde_json::Error),
    #[error("message is not a Recall event of the expected shape: {0}")]
    WrongShape(serde_json::Error),
    #[error("buffer is not valid base64: {0}")]
    InvalidBase64(base64::DecodeError),
    #[error("buffer is not a PNG image (no PNG signature)")]
    NotPng,
    #[error("PNG header is invalid: {0}")]
    InvalidPngHeader(image::ImageError),
    #[error("PNG is truncated: it does not end with an IEND chunk")]
    TruncatedPng,
    #[error("PNG is {width}x{height}; sides of 1 to {MAX_SIDE} px are accepted")]
    BadDimensions { width: u32, height: u32 },
    #[error("unknown stream type {0:?}: expected \"webcam\" or \"screenshare\"")]
    UnknownStreamType(String),
    #[error("relative timestamp {0} is not between 0 and {max} seconds", max = FrameTime::MAX_RELATIVE_MS / 1000)]
    BadRelativeTime(f64),
    #[error("absolute timestamp {0:?} is not an ISO-8601 time with an offset")]
    BadAbsoluteTime(String),
    #[error("recording id must be 1 to 128 characters of A-Z a-z 0-9 _ . - (and not . or ..)")]
    UnsafeRecordingId,
    #[error("participant id must be a non-negative integer")]
    BadParticipantId,
    /// Not a decoding fault: the connection is at `MAX_STREAMS_PER_CONNECTION`.
    #[error(
        "this connection already feeds {limit} streams (MAX_STREAMS_PER_CONNECTION); frames of another stream are refused"
    )]
    TooManyStreams { limit: usize },
    /// Not a decoding fault: DATA_DIR is below `MIN_FREE_BYTES`.
    #[error("the server is low on disk space; frames are refused until space is freed")]
    StorageLow,
}

/// The counted reason for a refusal: a small, fixed set of labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalReason {
    InvalidJson,
    WrongShape,
    InvalidBase64,
    InvalidPng,
    BadDimensions,
    UnknownStreamType,
    BadTimestamp,
    UnsafeId,
    /// Over `MAX_MESSAGE_BYTES`: refused by the socket before decoding, closing it.
    TooLarge,
    /// A frame of one stream more than `MAX_STREAMS_PER_CONNECTION`.
    TooManyStreams,
    /// A frame while DATA_DIR is below `MIN_FREE_BYTES`.
    StorageLow,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 11] = [
        RefusalReason::InvalidJson,
        RefusalReason::WrongShape,
        RefusalReason::InvalidBase64,
        RefusalReason::InvalidPng,
        RefusalReason::BadDimensions,
        RefusalReason::UnknownStreamType,
        RefusalReason::BadTimestamp,
        RefusalReason::UnsafeId,
        RefusalReason::TooLarge,
        RefusalReason::TooManyStreams,
        RefusalReason::StorageLow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::InvalidJson => "invalid_json",
            RefusalReason::WrongShape => "wrong_shape",
            RefusalReason::InvalidBase64 => "invalid_base64",
            RefusalReason::InvalidPng => "invalid_png",
            RefusalReason::BadDimensions => "bad_dimensions",
            RefusalReason::UnknownStreamType => "unknown_stream_type",
            RefusalReason::BadTimestamp => "bad_timestamp",
            RefusalReason::UnsafeId => "unsafe_id",
            RefusalReason::TooLarge => "too_large",
            RefusalReason::TooManyStreams => "too_many_streams",
            RefusalReason::StorageLow => "storage_low",
        }
    }
}

impl Refusal {
    pub fn reason(&self) -> RefusalReason {
        match self {
            Refusal::InvalidJson(_) => RefusalReason::InvalidJson,
            Refusal::WrongShape(_) => RefusalReason::WrongShape,
            Refusal::InvalidBase64(_) => RefusalReason::InvalidBase64,
            Refusal::NotPng | Refusal::InvalidPngHeader(_) | Refusal::TruncatedPng => {
                RefusalReason::InvalidPng
            }
            Refusal::BadDimensions { .. } => RefusalReason::BadDimensions,
            Refusal::UnknownStreamType(_) => RefusalReason::UnknownStreamType,
            Refusal::BadRelativeTime(_) | Refusal::BadAbsoluteTime(_) => {
                RefusalReason::BadTimestamp
            }
            Refusal::UnsafeRecordingId | Refusal::BadParticipantId => RefusalReason::UnsafeId,
            Refusal::TooManyStreams { .. } => RefusalReason::TooManyStreams,
            Refusal::StorageLow => RefusalReason::StorageLow,
        }
    }

    fn from_json(error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => Refusal::WrongShape(error),
            Category::Syntax | Category::Eof | Category::Io => Refusal::InvalidJson(error),
        }
    }
}

// ---- wire types: borrowed from the message text where they can be ----

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireFrameEvent<'a> {
    #[serde(borrow)]
    data: WireFrame<'a>,
    recording: Resource,
    #[serde(default)]
    bot: Option<Resource>,
    #[serde(default)]
    realtime_endpoint: Option<Resource>,
    #[serde(default)]
    video_separate: Option<Resource>,
}

#[derive(Deserialize)]
struct WireParticipantEvent<'a> {
    #[serde(borrow)]
    data: WireParticipantEventData<'a>,
    recording: Resource,
    #[serde(default)]
    bot: Option<Resource>,
    #[serde(default)]
    realtime_endpoint: Option<Resource>,
    #[serde(default)]
    participant_events: Option<Resource>,
}

#[derive(Deserialize)]
struct WireParticipantEventData<'a> {
    participant: WireParticipant,
    #[serde(borrow)]
    timestamp: WireTimestamp<'a>,
    /// The event's own data: a chat message's text, else null.
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
struct WireFrame<'a> {
    /// The base64 PNG: hundreds of kilobytes, borrowed unless JSON escapes force a copy.
    #[serde(borrow)]
    buffer: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: WireTimestamp<'a>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    participant: WireParticipant,
}

#[derive(Deserialize)]
struct WireTimestamp<'a> {
    relative: f64,
    #[serde(borrow, default)]
    absolute: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WireParticipant {
    id: serde_json::Value,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    is_host: Option<bool>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    extra_data: serde_json::Value,
}

/// Decodes one websocket text message. CPU-bound (a JSON pass and a base64 decode of a
/// few hundred kilobytes): callers on the async runtime run it in `spawn_blocking`.
pub fn decode(text: &str, received_at: Timestamp, received: Instant) -> Result<Inbound, Refusal> {
    // Scanning the base64 string is most of the JSON work, so a frame whose `event` comes
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
        Ok(OnePass::Ignored) => Ok(Inbound::Ignored),
        Ok(OnePass::DataFirst) | Err(_) => decode_in_two_passes(text, received_at, received),
    }
}

/// What a single pass over a message made of it.
enum OnePass<'a> {
    Frame(Box<WireFrameEvent<'a>>),
    ParticipantEvent(ParticipantEventKind, Box<WireParticipantEvent<'a>>),
    Ignored,
    /// `data` came before `event` (its type was not known when it was read), or is missing
    /// where it is required: the two passes decide.
    DataFirst,
}

impl<'de: 'a, 'a> Deserialize<'de> for OnePass<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Event,
            Data,
            #[serde(other)]
            Other,
        }

        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = OnePass<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event object")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                use serde::de::{Error as _, IgnoredAny};
                let mut event: Option<Cow<'de, str>> = None;
                let mut frame = None;
                let mut participant_event = None;
                let mut data_seen = false;
                let mut data_first = false;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Event if event.is_some() => {
                            return Err(M::Error::duplicate_field("event"));
                        }
                        Key::Event => event = Some(map.next_value::<Cow<'de, str>>()?),
                        Key::Data if data_seen => return Err(M::Error::duplicate_field("data")),
                        Key::Data => {
                            data_seen = true;
                            let kind = event
                                .as_deref()
                                .map(|e| (e, ParticipantEventKind::parse(e)));
                            match kind {
                                Some((FRAME_EVENT, _)) => {
                                    frame = Some(map.next_value::<WireFrameEvent<'de>>()?)
                                }
                                Some((_, Some(kind))) => {
                                    let wire = map.next_value::<WireParticipantEvent<'de>>()?;
                                    participant_event = Some((kind, wire));
                                }
                                Some(_) => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                                None => {
                                    data_first = true;
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                match (event.as_deref(), frame, participant_event) {
                    (None, _, _) => Err(M::Error::missing_field("event")),
                    (Some(_), _, _) if data_first => Ok(OnePass::DataFirst),
                    (Some(FRAME_EVENT), Some(frame), _) => Ok(OnePass::Frame(Box::new(frame))),
                    (Some(FRAME_EVENT), None, _) => Err(M::Error::missing_field("data")),
                    (Some(_), _, Some((kind, wire))) => {
                        Ok(OnePass::ParticipantEvent(kind, Box::new(wire)))
                    }
                    // A participant event without its data: the two passes refuse it.
                    (Some(name), _, None) if ParticipantEventKind::parse(name).is_some() => {
                        Ok(OnePass::DataFirst)
                    }
                    (Some(_), _, _) => Ok(OnePass::Ignored),
                }
            }
        }

        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// The reference decoding: the envelope first (which checks the whole message is JSON),
/// then the frame event from its `data`.
fn decode_in_two_passes(
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
    // Participant event types this server does not know (Recall may add some) are ignored
    // like any other event.
    if let Some(kind) = ParticipantEventKind::parse(&envelope.event) {
        let event: WireParticipantEvent = serde_json::from_str(data).map_err(Refusal::from_json)?;
        return decode_participant_event(kind, event, received_at)
            .map(|event| Inbound::ParticipantEvent(Box::new(event)));
    }
    Ok(Inbound::Ignored)
}

fn decode_participant_event(
    kind: ParticipantEventKind,
    event: WireParticipantEvent<'_>,
    received_at: Timestamp,
) -> Result<ParticipantEvent, Refusal> {
    let WireParticipantEvent {
        data,
        recording,
        bot,
        realtime_endpoint,
        participant_events,
    } = event;
    let recording_id = recording_id(&recording)?;
    let participant = data.participant.decode()?;
    let (time, _relative_ms) = data.timestamp.decode()?;
    Ok(ParticipantEvent {
        kind,
        participant,
        time,
        data: data.data,
        recording: RecordingInfo {
            id: recording_id,
            metadata: recording.metadata,
            bot,
            realtime_endpoint,
            video_separate: None,
            participant_events,
        },
        received_at,
    })
}

/// The recording id, checked to be safe as a folder name.
fn recording_id(recording: &Resource) -> Result<RecordingId, Refusal> {
    recording
        .id
        .as_str()
        .and_then(RecordingId::parse)
        .ok_or(Refusal::UnsafeRecordingId)
}

impl WireParticipant {
    fn decode(self) -> Result<Participant, Refusal> {
        let id = self
            .id
            .as_u64()
            .map(ParticipantId)
            .ok_or(Refusal::BadParticipantId)?;
        Ok(Participant {
            id,
            name: self.name,
            is_host: self.is_host.unwrap_or(false),
            platform: self.platform,
            email: self.email,
            extra_data: self.extra_data,
        })
    }
}

impl WireTimestamp<'_> {
    /// The time, and the relative part in whole milliseconds.
    fn decode(self) -> Result<(FrameTime, u64), Refusal> {
        let relative_ms =
            FrameTime::relative_ms(self.relative).ok_or(Refusal::BadRelativeTime(self.relative))?;
        let absolute = self
            .absolute
            .map(|text| {
                text.parse::<Timestamp>()
                    .map_err(|_| Refusal::BadAbsoluteTime(text.into()))
            })
            .transpose()?;
        let time = FrameTime {
            relative: self.relative,
            absolute,
        };
        Ok((time, relative_ms))
    }
}

fn decode_frame(
    event: WireFrameEvent<'_>,
    received_at: Timestamp,
    received: Instant,
) -> Result<Frame, Refusal> {
    let WireFrameEvent {
        data,
        recording,
        bot,
        realtime_endpoint,
        video_separate,
    } = event;

    let recording_id = recording_id(&recording)?;
    let participant = data.participant.decode()?;
    let kind = StreamKind::parse(&data.kind)
        .ok_or_else(|| Refusal::UnknownStreamType(data.kind.into()))?;
    let (time, relative_ms) = data.timestamp.decode()?;

    let png = decode_base64(&data.buffer).map_err(Refusal::InvalidBase64)?;
    let (width, height) = png_dimensions(&png)?;

    Ok(Frame {
        key: StreamKey {
            recording: recording_id.clone(),
            participant: participant.id,
            kind,
        },
        time,
        relative_ms,
        png: Bytes::from(png),
        width,
        height,
        participant,
        recording: RecordingInfo {
            id: recording_id,
            metadata: recording.metadata,
            bot,
            realtime_endpoint,
            video_separate,
            participant_events: None,
        },
        received_at,
        received,
    })
}

/// Decodes a frame's base64: the largest cost of decoding, so a SIMD decoder does it, about
/// four times faster. Whatever that decoder refuses is decoded again by [`BASE64`], which has
/// the last word and the precise error. The SIMD decoder is as strict (alphabet, padding,
/// trailing bits), so exactly the same buffers are accepted as with [`BASE64`] alone.
fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let simd = if text.len().is_multiple_of(4) {
        base64_simd::STANDARD
    } else {
        base64_simd::STANDARD_NO_PAD
    };
    match simd.decode_to_vec(text) {
        Ok(bytes) => Ok(bytes),
        Err(_) => BASE64.decode(text.as_bytes()),
    }
}

/// Checks that `png` is a whole PNG and reads its dimensions from the header, without
/// decoding any pixels.
pub fn png_dimensions(png: &[u8]) -> Result<(u32, u32), Refusal> {
    if !png.starts_with(PNG_SIGNATURE) {
        return Err(Refusal::NotPng);
    }
    let (width, height) = PngDecoder::new(Cursor::new(png))
        .map_err(Refusal::InvalidPngHeader)?
        .dimensions();
    if !png.ends_with(PNG_IEND) {
        return Err(Refusal::TruncatedPng);
    }
    if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
        return Err(Refusal::BadDimensions { width, height });
    }
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::new(width, height)
            .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    fn event(buffer: &str) -> serde_json::Value {
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

    fn participant_event(kind: &str) -> serde_json::Value {
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
    fn the_fast_base64_decoder_accepts_and_refuses_exactly_what_the_base64_crate_does() {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(5);
        let symbols: Vec<char> = ('A'..='Z')
            .chain('a'..='z')
            .chain('0'..='9')
            .chain("+/=-_ \n\u{e9}".chars())
            .collect();
        let mut inputs: Vec<String> = Vec::new();
        for _ in 0..20_000 {
            // Short random strings: every padding and length case.
            let len = (rng.next_u32() % 14) as usize;
            let text: String = (0..len)
                .map(|_| symbols[rng.next_u32() as usize % symbols.len()])
                .collect();
            inputs.push(text);
        }
        for len in 0..200 {
            // Valid encodings long enough for the SIMD loops, padded or not, then the same
            // with one character changed (often into an invalid one or bad trailing bits).
            let bytes: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
            let padded = BASE64.encode(&bytes);
            let unpadded = padded.trim_end_matches('=').to_string();
            for valid in [padded, unpadded] {
                inputs.push(valid.clone());
                if !valid.is_empty() {
                    let mut chars: Vec<char> = valid.chars().collect();
                    let at = rng.next_u32() as usize % chars.len();
                    chars[at] = symbols[rng.next_u32() as usize % symbols.len()];
                    inputs.push(chars.into_iter().collect());
                }
            }
        }
        for text in &inputs {
            let fast = decode_base64(text);
            let reference = BASE64.decode(text.as_bytes());
            assert_eq!(fast, reference, "{text:?}");
        }
    }

    #[test]
    fn one_pass_and_two_passes_decode_every_message_alike() {
        let good = event(&BASE64.encode(png(8, 8)));
        let data = good["data"].to_string();
        let frame = format!(r#""event":"{FRAME_EVENT}""#);
        let chat = participant_event("participant_events.chat_message");
        let chat_data = chat["data"].to_string();
        let chat_event = r#""event":"participant_events.chat_message""#;
        let mut messages = vec![
            // As Recall sends them: the event first. (Whether a `Value` prints its keys sorted
            // depends on serde_json's `preserve_order`, which a test dependency turns on; so
            // the orders that matter are spelled out.)
            format!(r#"{{{frame},"data":{data}}}"#),
            format!(r#"{{"data":{data},{frame}}}"#),
            format!(r#"{{{frame},"data":{data},"extra":[1,{{"a":null}}]}}"#),
            format!(r#"{{{frame},{frame},"data":{data}}}"#),
            format!(r#"{{{frame},"data":{data},"data":{data}}}"#),
            format!(r#"{{"ev\u0065nt":"video_separate_png\u002edata","data":{data}}}"#),
            format!(r#"["{FRAME_EVENT}",{data}]"#),
            format!(r#"{{{frame},"data":null}}"#),
            format!(r#"{{{frame}}}"#),
            format!(r#"{{{frame},"data":{data}}} trailing"#),
            format!(r#"{{{frame},"data":{data},"x":}}"#),
            format!(r#"{{{frame},"data":{{"data":{{}}}},"x":tru}}"#),
            r#"{"event":"transcript.data","data":{"words":[1,2,{"w":"x"}]}}"#.into(),
            r#"{"data":{"w":1},"event":"transcript.data"}"#.into(),
            r#"{"event":"transcript.data","data":{"w":1},"data":2}"#.into(),
            r#"{"event":"transcript.data"}"#.into(),
            r#"{"event":5,"data":{}}"#.into(),
            r#"{"data":{}}"#.into(),
            r#"{"event":"transcript.data","data":{"unclosed":"#.into(),
            "[]".into(),
            "\"video_separate_png.data\"".into(),
            "".into(),
            // Participant events, both orders, and broken.
            format!(r#"{{{chat_event},"data":{chat_data}}}"#),
            format!(r#"{{"data":{chat_data},{chat_event}}}"#),
            format!(r#"{{{chat_event}}}"#),
            format!(r#"{{{chat_event},"data":null}}"#),
            format!(r#"{{{chat_event},"data":{{"data":{{}}}}}}"#),
        ];
        for pointer in [
            "/data/data/timestamp",
            "/data/recording/id",
            "/data/data/type",
        ] {
            let mut bad = good.clone();
            *bad.pointer_mut(pointer).unwrap() = json!(["not", "this"]);
            messages.push(bad.to_string());
        }
        // Recall's messages take the one pass.
        let chat_first = format!(r#"{{{chat_event},"data":{chat_data}}}"#);
        for message in [
            &messages[0],
            &messages[2],
            &messages[5],
            &messages[12],
            &chat_first,
        ] {
            assert!(
                matches!(
                    serde_json::from_str::<OnePass>(message),
                    Ok(OnePass::Frame(_) | OnePass::ParticipantEvent(..) | OnePass::Ignored)
                ),
                "{message:.200}"
            );
        }
        let (at, instant) = (Timestamp::now(), Instant::now());
        for message in &messages {
            let one = decode(message, at, instant);
            let two = decode_in_two_passes(message, at, instant);
            let show = |r: &Result<Inbound, Refusal>| match r {
                Ok(inbound) => format!("{inbound:?}"),
                Err(refusal) => format!("{:?}: {refusal}", refusal.reason()),
            };
            assert_eq!(show(&one), show(&two), "{message:.200}");
        }
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
