//! Recall's events as they are on the wire, borrowed from the message text where they can
//! be, and their checking into the typed values the rest of the server sees.

use std::borrow::Cow;
use std::time::Instant;

use bytes::Bytes;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::Refusal;
use super::buffer::decode_base64;
use super::png::png_dimensions;
use crate::frame::{
    Frame, FrameTime, Participant, ParticipantEvent, ParticipantEventKind, ParticipantId,
    RecordingId, RecordingInfo, Resource, StreamKey, StreamKind,
};

#[derive(Deserialize)]
pub(super) struct Envelope<'a> {
    #[serde(borrow)]
    pub(super) event: Cow<'a, str>,
    #[serde(borrow, default)]
    pub(super) data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(super) struct WireFrameEvent<'a> {
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

impl<'a> WireFrameEvent<'a> {
    /// The base64 PNG, for the lifted path to put back.
    pub(super) fn buffer_mut(&mut self) -> &mut Cow<'a, str> {
        &mut self.data.buffer
    }
}

#[derive(Deserialize)]
pub(super) struct WireParticipantEvent<'a> {
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
pub(super) struct WireParticipantEventData<'a> {
    participant: WireParticipant,
    #[serde(borrow)]
    timestamp: WireTimestamp<'a>,
    /// The event's own data: a chat message's text, else null.
    #[serde(default)]
    data: serde_json::Value,
}

#[derive(Deserialize)]
pub(super) struct WireFrame<'a> {
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
pub(super) struct WireTimestamp<'a> {
    relative: f64,
    #[serde(borrow, default)]
    absolute: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(super) struct WireParticipant {
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

pub(super) fn decode_participant_event(
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
            audio_separate: None,
        },
        received_at,
    })
}

/// The recording id, checked to be safe as a folder name.
pub(super) fn recording_id(recording: &Resource) -> Result<RecordingId, Refusal> {
    recording
        .id
        .as_str()
        .and_then(RecordingId::parse)
        .ok_or(Refusal::UnsafeRecordingId)
}

impl WireParticipant {
    pub(super) fn decode(self) -> Result<Participant, Refusal> {
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
    pub(super) fn decode(self) -> Result<(FrameTime, u64), Refusal> {
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

pub(super) fn decode_frame(
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
            audio_separate: None,
        },
        received_at,
        received,
    })
}
