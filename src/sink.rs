//! Where frames go: the traits every storage backend implements.
//!
//! The pipeline opens a [`StreamWriter`] per stream when the stream's first frame arrives,
//! writes every frame through it in order, and closes it when the stream goes quiet.
//! Participant events go to the sink directly, one at a time, in arrival order.

pub mod fs;
pub mod object;

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::frame::{Frame, Participant, ParticipantEvent, RecordingId};

/// What became of a frame handed to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    Saved {
        bytes: u64,
    },
    /// The stream already has a frame at that millisecond; nothing was written.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Fs(#[from] crate::files::FsError),
    #[error(transparent)]
    Object(#[from] object::ObjectError),
}

impl SinkError {
    /// What kind of failure it was, for `storage_failures{kind}`: `no_space`,
    /// `unreachable`...
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Fs(error) => error.kind(),
            SinkError::Object(error) => error.kind(),
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

/// The recordings a sink is writing: state that a recording's open streams and its events
/// share, kept while any of them holds a [`Lease`] and forgotten once none does.
struct Recordings<R> {
    open: Arc<Mutex<HashMap<RecordingId, Open<R>>>>,
}

struct Open<R> {
    recording: Arc<R>,
    leases: usize,
}

impl<R> Default for Recordings<R> {
    fn default() -> Self {
        Recordings {
            open: Arc::default(),
        }
    }
}

impl<R> Recordings<R> {
    /// The recording's state, made by `start` if nothing holds it yet.
    fn lease(&self, id: &RecordingId, start: impl FnOnce() -> R) -> Lease<R> {
        let mut open = self.open.lock();
        let entry = open.entry(id.clone()).or_insert_with(|| Open {
            recording: Arc::new(start()),
            leases: 0,
        });
        entry.leases += 1;
        Lease {
            open: self.open.clone(),
            id: id.clone(),
            recording: entry.recording.clone(),
        }
    }

    /// Every recording held now.
    fn all(&self) -> Vec<Arc<R>> {
        let open = self.open.lock();
        open.values().map(|entry| entry.recording.clone()).collect()
    }
}

/// A hold on a recording's state; the last one dropped forgets it. Counts change only under
/// the map's lock, so nobody can pick up a state being forgotten.
struct Lease<R> {
    open: Arc<Mutex<HashMap<RecordingId, Open<R>>>>,
    id: RecordingId,
    recording: Arc<R>,
}

impl<R> Deref for Lease<R> {
    type Target = R;

    fn deref(&self) -> &R {
        &self.recording
    }
}

impl<R> Drop for Lease<R> {
    fn drop(&mut self) {
        let mut open = self.open.lock();
        if let Some(entry) = open.get_mut(&self.id) {
            entry.leases -= 1;
            if entry.leases == 0 {
                open.remove(&self.id);
            }
        }
    }
}

/// What a sink last wrote to a participant's `participant.json`, and the meeting time
/// (relative seconds) of the newest frame or event that described the participant so.
#[derive(Debug)]
struct Described {
    participant: Participant,
    as_of: f64,
}

impl Described {
    fn new(participant: &Participant, as_of: f64) -> Self {
        Described {
            participant: participant.clone(),
            as_of,
        }
    }

    /// Notes how a frame or event at meeting time `as_of` describes the participant, and
    /// says whether `participant.json` must be rewritten: when the description differs and
    /// is no older. A frame that waited in its stream's queue while a newer `update` event
    /// was recorded, or one Recall resent after a reconnect, describes the participant as
    /// they were, and must not bring that back.
    fn is_superseded_by(&mut self, participant: &Participant, as_of: f64) -> bool {
        if as_of < self.as_of {
            return false;
        }
        if self.participant == *participant {
            self.as_of = as_of;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_description_never_replaces_a_newer_one() {
        let named = |name: &str| Participant {
            name: Some(name.into()),
            ..Participant::unknown(crate::frame::ParticipantId(100))
        };
        let mut written = Described::new(&named("Alice"), 2.0);
        assert!(!written.is_superseded_by(&named("Alice"), 3.0), "the same");
        assert!(!written.is_superseded_by(&named("Al"), 1.0), "older");
        assert!(
            !written.is_superseded_by(&named("Al"), 2.5),
            "older than the same description seen at 3.0"
        );
        assert!(written.is_superseded_by(&named("Al"), 3.0));
        assert!(written.is_superseded_by(&named("Al"), 9.0));
    }

    #[test]
    fn a_recording_is_forgotten_when_its_last_lease_goes() {
        let recordings = Recordings::default();
        let id = RecordingId::parse("rec").unwrap();
        let first = recordings.lease(&id, || 1);
        let second = recordings.lease(&id, || 2);
        assert_eq!((*first, *second), (1, 1), "one state for the recording");
        drop(first);
        assert_eq!(recordings.all().len(), 1);
        drop(second);
        assert!(recordings.all().is_empty());
        assert_eq!(*recordings.lease(&id, || 3), 3, "started afresh");
    }
}
