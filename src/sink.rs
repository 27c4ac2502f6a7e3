//! Where frames go: the traits the pipeline writes through, which the
//! recorder implements for every store (and tests wrap to put faults
//! in the way).
//!
//! The pipeline opens a [`StreamWriter`] per stream when the stream's first frame arrives,
//! writes every frame through it in order, and closes it when the stream goes quiet.
//! Participant events and audio chunks go to the sink directly, one at a time, in arrival
//! order.

use async_trait::async_trait;

use crate::audio::AudioChunk;
use crate::frame::{Frame, ParticipantEvent};
use crate::store::StoreError;

/// What became of a frame handed to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Saved {
        bytes: u64,
    },
    /// The stream already has a frame at that millisecond; nothing was written.
    Duplicate,
}

/// What became of an audio chunk handed to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioOutcome {
    /// `written` samples stored; `overlap` were received before and kept as they were.
    Saved { written: u64, overlap: u64 },
    /// Every sample was received before: nothing was written.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("this sink does not record audio")]
    NoAudio,
}

impl From<crate::files::FsError> for SinkError {
    fn from(error: crate::files::FsError) -> Self {
        SinkError::Store(error.into())
    }
}

impl SinkError {
    /// What kind of failure it was, for `storage_failures{kind}`: `no_space`,
    /// `unreachable`...
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Store(error) => error.kind(),
            SinkError::NoAudio => "unsupported",
        }
    }
}

#[async_trait]
pub trait FrameSink: Send + Sync + 'static {
    /// Prepares to write one stream, given the first frame it receives since it (re)opened.
    async fn open_stream(&self, first: &Frame) -> Result<Box<dyn StreamWriter>, SinkError>;

    /// Records one participant event in its recording, after the ones handed over before it,
    /// and keeps what the sink knows of the participant current.
    async fn record_event(&self, event: &ParticipantEvent) -> Result<(), SinkError>;

    /// Places one audio chunk on its track's timeline and stores what it adds, after the
    /// chunks handed over before it.
    async fn record_audio(&self, _chunk: &AudioChunk) -> Result<AudioOutcome, SinkError> {
        Err(SinkError::NoAudio)
    }

    /// Writes out whatever summaries are still held back; called once at shutdown.
    async fn flush(&self) -> Result<(), SinkError>;

    /// Where frames go, for the `backend` label of metrics: `fs` or `bucket`.
    fn backend(&self) -> &'static str {
        "fs"
    }
}

#[async_trait]
pub trait StreamWriter: Send {
    async fn write(&mut self, frame: &Frame) -> Result<WriteOutcome, SinkError>;

    /// Finishes the stream: manifests and summaries are complete when this returns.
    async fn close(self: Box<Self>) -> Result<(), SinkError>;
}
