//! `audio_separate_raw.data` and `audio_mixed_raw.data`: small messages (a few hundred
//! samples each, tens a second per participant), read like frames (lifted, in one pass, or
//! in the reference's two) and checked into an [`AudioChunk`] with the same refusals as
//! frames where the fault is the same.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use jiff::Timestamp;
use serde::Deserialize;

use super::Refusal;
use super::buffer::decode_base64;
use super::wire::{WireParticipant, WireTimestamp, recording_id};
use crate::audio::{AudioChunk, AudioSource, BYTES_PER_SAMPLE, MAX_CHUNK_SAMPLES};
use crate::frame::{RecordingInfo, Resource};

/// The event type that carries one participant's audio.
pub const SEPARATE_AUDIO_EVENT: &str = "audio_separate_raw.data";
/// The event type that carries the whole call's audio, mixed.
pub const MIXED_AUDIO_EVENT: &str = "audio_mixed_raw.data";

/// Which of the two audio events a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AudioEvent {
    Separate,
    Mixed,
}

impl AudioEvent {
    pub(super) fn parse(event: &str) -> Option<Self> {
        match event {
            SEPARATE_AUDIO_EVENT => Some(AudioEvent::Separate),
            MIXED_AUDIO_EVENT => Some(AudioEvent::Mixed),
            _ => None,
        }
    }
}

#[derive(Deserialize)]
pub(super) struct WireAudioEvent<'a> {
    #[serde(borrow)]
    data: WireAudio<'a>,
    recording: Resource,
    #[serde(default)]
    bot: Option<Resource>,
    #[serde(default)]
    realtime_endpoint: Option<Resource>,
    #[serde(default)]
    audio_separate: Option<Resource>,
    /// What the mixed event may carry in place of `audio_separate`.
    #[serde(default)]
    audio_mixed: Option<Resource>,
}

impl<'a> WireAudioEvent<'a> {
    /// The base64 PCM, for the lifted path to put back.
    pub(super) fn buffer_mut(&mut self) -> &mut Cow<'a, str> {
        &mut self.data.buffer
    }
}

#[derive(Deserialize)]
struct WireAudio<'a> {
    #[serde(borrow)]
    buffer: Cow<'a, str>,
    #[serde(borrow)]
    timestamp: WireTimestamp<'a>,
    /// Required for separate audio; the mixed track has none.
    #[serde(default)]
    participant: Option<WireParticipant>,
}

/// Checks an audio event of type `event`, read from the wire.
pub(super) fn decode_audio(
    event: AudioEvent,
    wire: WireAudioEvent<'_>,
    received_at: Timestamp,
    received: Instant,
) -> Result<AudioChunk, Refusal> {
    let WireAudioEvent {
        data,
        recording,
        bot,
        realtime_endpoint,
        audio_separate,
        audio_mixed,
    } = wire;
    let recording_id = recording_id(&recording)?;
    let source = match event {
        AudioEvent::Separate => {
            let participant = data.participant.ok_or(Refusal::NoAudioParticipant)?;
            AudioSource::Participant(Arc::new(participant.decode()?))
        }
        AudioEvent::Mixed => AudioSource::Mixed,
    };
    let context = AudioContext {
        source,
        recording: Arc::new(RecordingInfo {
            id: recording_id,
            metadata: recording.metadata,
            bot,
            realtime_endpoint,
            video_separate: None,
            participant_events: None,
            audio_separate: audio_separate.or(audio_mixed),
        }),
    };
    context.chunk(data.timestamp, &data.buffer, received_at, received)
}

/// What every chunk of a track carries alike: whose audio it is, and the recording's
/// context. Shared, so that a decoder that has seen it can reuse it.
#[derive(Clone)]
pub(super) struct AudioContext {
    pub(super) source: AudioSource,
    pub(super) recording: Arc<RecordingInfo>,
}

impl AudioContext {
    /// The chunk of this context at `timestamp`, with the samples of `buffer`: the checks
    /// of what changes from one chunk to the next.
    pub(super) fn chunk(
        &self,
        timestamp: WireTimestamp<'_>,
        buffer: &str,
        received_at: Timestamp,
        received: Instant,
    ) -> Result<AudioChunk, Refusal> {
        let (time, _) = timestamp.decode()?;
        let start_sample = AudioChunk::start_sample(time.relative)
            .ok_or(Refusal::BadRelativeTime(time.relative))?;
        let pcm = decode_base64(buffer).map_err(Refusal::InvalidBase64)?;
        if pcm.is_empty() || !(pcm.len() as u64).is_multiple_of(BYTES_PER_SAMPLE) {
            return Err(Refusal::BadAudioLength(pcm.len()));
        }
        if pcm.len() as u64 / BYTES_PER_SAMPLE > MAX_CHUNK_SAMPLES {
            return Err(Refusal::AudioTooLong(pcm.len() as u64 / BYTES_PER_SAMPLE));
        }
        Ok(AudioChunk {
            source: self.source.clone(),
            time,
            start_sample,
            pcm: Bytes::from(pcm),
            recording: self.recording.clone(),
            received_at,
            received,
        })
    }
}
