//! Why a message is refused: the error each check gives, and the fixed set of reasons they
//! are counted under.

use super::MAX_SIDE;
use crate::frame::FrameTime;

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
    #[error(
        "audio buffer is {0} bytes: a whole number (one or more) of 16-bit samples is expected"
    )]
    BadAudioLength(usize),
    #[error("audio chunk of {0} samples is over the limit of {max} (10 s at 16 kHz)", max = crate::audio::MAX_CHUNK_SAMPLES)]
    AudioTooLong(u64),
    #[error("audio_separate_raw.data has no participant")]
    NoAudioParticipant,
    #[error("unknown stream type {0:?}: expected \"webcam\" or \"screenshare\"")]
    UnknownStreamType(String),
    #[error("relative timestamp {0} is not between 0 and {max} seconds", max = FrameTime::MAX_RELATIVE_MS / 1000)]
    BadRelativeTime(f64),
    #[error("absolute timestamp {0:?} is not an ISO-8601 time with an offset")]
    BadAbsoluteTime(String),
    #[error(
        "recording id must be 1 to 128 characters of A-Z a-z 0-9 _ . -, not starting with a dot"
    )]
    UnsafeRecordingId,
    #[error("participant id must be a non-negative integer")]
    BadParticipantId,
    /// Not a decoding fault: the connection is at `MAX_STREAMS_PER_CONNECTION`.
    #[error(
        "this connection already feeds {limit} streams (MAX_STREAMS_PER_CONNECTION); frames of another stream are refused"
    )]
    TooManyStreams { limit: usize },
    /// Not a decoding fault: DATA_DIR is below `MIN_FREE_BYTES`.
    #[error("the server is low on disk space; frames and audio are refused until space is freed")]
    StorageLow,
    /// Not a decoding fault: the recording, or this participant of it, was deleted.
    #[error("{what} was deleted; what is sent for it is refused, never saved again")]
    Deleted { what: &'static str },
    /// Not a decoding fault: stored bytes are at `MAX_STORED_BYTES`.
    #[error(
        "the server stores as much as MAX_STORED_BYTES allows; new recordings are refused until recordings are deleted"
    )]
    QuotaReached,
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
    /// Audio that is not a whole number of 16-bit samples, or no sample at all.
    BadAudioLength,
    /// An audio chunk longer than `MAX_CHUNK_SAMPLES`.
    AudioTooLong,
    /// A message for a recording, or a participant, that was deleted.
    Deleted,
    /// A message for a new recording while stored bytes are at `MAX_STORED_BYTES`.
    QuotaReached,
}

impl RefusalReason {
    pub const ALL: [RefusalReason; 15] = [
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
        RefusalReason::BadAudioLength,
        RefusalReason::AudioTooLong,
        RefusalReason::Deleted,
        RefusalReason::QuotaReached,
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
            RefusalReason::BadAudioLength => "bad_audio_length",
            RefusalReason::AudioTooLong => "audio_too_long",
            RefusalReason::Deleted => "deleted",
            RefusalReason::QuotaReached => "quota_reached",
        }
    }
}

impl Refusal {
    pub fn reason(&self) -> RefusalReason {
        match self {
            Refusal::InvalidJson(_) => RefusalReason::InvalidJson,
            Refusal::WrongShape(_) | Refusal::NoAudioParticipant => RefusalReason::WrongShape,
            Refusal::BadAudioLength(_) => RefusalReason::BadAudioLength,
            Refusal::AudioTooLong(_) => RefusalReason::AudioTooLong,
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
            Refusal::Deleted { .. } => RefusalReason::Deleted,
            Refusal::QuotaReached => RefusalReason::QuotaReached,
        }
    }

    pub(super) fn from_json(error: serde_json::Error) -> Self {
        use serde_json::error::Category;
        match error.classify() {
            Category::Data => Refusal::WrongShape(error),
            Category::Syntax | Category::Eof | Category::Io => Refusal::InvalidJson(error),
        }
    }
}
