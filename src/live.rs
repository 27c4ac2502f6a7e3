//! Live updates: small events the pipeline publishes as it saves frames, on a bounded
//! broadcast that browsers follow over server-sent events.
//!
//! Publishing never waits. A subscriber that falls more than the channel's capacity behind
//! loses the oldest events and is told how many it missed; ingestion is never slowed.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::catalog::FrameInfo;
use crate::frame::{Frame, Participant, ParticipantId, RecordingId, StreamKind};

/// Events each subscriber may fall behind by before it skips ahead.
pub const CAPACITY: usize = 1024;

/// How many recordings and participants are remembered as already announced.
const REMEMBERED: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// What a live subscriber is told.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum LiveEvent {
    /// A recording got its first frame since this server started.
    Recording { recording: RecordingId },
    /// A participant of a recording got its first frame since this server started.
    Participant {
        recording: RecordingId,
        participant: Participant,
    },
    /// A recording, or one participant of it, was deleted: pages showing it let it go.
    Deleted {
        recording: RecordingId,
        #[serde(skip_serializing_if = "Option::is_none")]
        participant: Option<ParticipantId>,
    },
    /// A frame was saved.
    Frame {
        recording: RecordingId,
        participant: ParticipantId,
        kind: StreamKind,
        #[serde(flatten)]
        frame: FrameInfo,
    },
}

impl LiveEvent {
    pub fn recording(&self) -> &RecordingId {
        match self {
            LiveEvent::Recording { recording }
            | LiveEvent::Participant { recording, .. }
            | LiveEvent::Deleted { recording, .. }
            | LiveEvent::Frame { recording, .. } => recording,
        }
    }

    /// The SSE event name: the `type` of the JSON.
    pub fn name(&self) -> &'static str {
        match self {
            LiveEvent::Recording { .. } => "recording",
            LiveEvent::Participant { .. } => "participant",
            LiveEvent::Deleted { .. } => "deleted",
            LiveEvent::Frame { .. } => "frame",
        }
    }
}

/// A recording (without a participant) or a participant of one.
type Announced = (RecordingId, Option<ParticipantId>);

/// The publishing end, shared by the pipeline and the SSE handler.
#[derive(Clone)]
pub struct Live {
    sender: broadcast::Sender<Arc<LiveEvent>>,
    /// Recordings (`None`) and participants already announced by this process.
    announced: Arc<Mutex<LruCache<Announced, ()>>>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new(CAPACITY)
    }
}

impl Live {
    pub fn new(capacity: usize) -> Self {
        Live {
            sender: broadcast::channel(capacity).0,
            announced: Arc::new(Mutex::new(LruCache::new(REMEMBERED))),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<LiveEvent>> {
        self.sender.subscribe()
    }

    /// Announces a saved frame, preceded by its recording and participant when this process
    /// has not announced them yet.
    pub fn frame_saved(&self, frame: &Frame) {
        let key = &frame.key;
        let (new_recording, new_participant) = {
            let mut announced = self.announced.lock();
            let mut first_time = |k| announced.put(k, ()).is_none();
            (
                first_time((key.recording.clone(), None)),
                first_time((key.recording.clone(), Some(key.participant))),
            )
        };
        if new_recording {
            self.publish(LiveEvent::Recording {
                recording: key.recording.clone(),
            });
        }
        if new_participant {
            self.publish(LiveEvent::Participant {
                recording: key.recording.clone(),
                participant: frame.participant.clone(),
            });
        }
        self.publish(LiveEvent::Frame {
            recording: key.recording.clone(),
            participant: key.participant,
            kind: key.kind,
            frame: FrameInfo {
                relative_ms: frame.relative_ms,
                relative: frame.time.relative,
                absolute: frame.time.absolute,
                width: frame.width,
                height: frame.height,
                bytes: frame.png.len() as u64,
            },
        });
    }

    pub(crate) fn publish(&self, event: LiveEvent) {
        // An error only means nobody is listening.
        let _ = self.sender.send(Arc::new(event));
    }
}
