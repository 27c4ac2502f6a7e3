//! The recorder: the rules of the layout of [`crate::layout`], written once above the byte
//! [`Store`] for every backend. It is the [`FrameSink`] the pipeline writes through.
//!
//! - A frame is created only if its millisecond has none: the first writer wins, and any
//!   later one, on this server or another, is a duplicate. Its manifest line follows: at
//!   once in a folder, in batches in a bucket.
//! - A participant's folder is chosen at first sight and kept: on a shared store it is
//!   claimed with a create-only object so that every server uses one folder; in a folder
//!   the one already there is used.
//! - `participant.json` follows the newest description by meeting time, and
//!   `recording.json` is read, merged and written back only if unchanged, so that first
//!   and last frame times cover every writer's frames.
//! - Both are written by [`Recorder::publish`], never while a recording's state is locked:
//!   a frame only marks them dirty and queues the recording for a background task, which
//!   writes them at most every [`SUMMARY_EVERY`] and at the latest that long after the last
//!   frame, whether or not more follow. A stream's opening, an event and a stream's closing
//!   write them at once.
//! - A stream opening finds frames whose manifest lines were lost (a crash between the
//!   frame and its line) and writes their lines, rebuilt from the PNG. On a shared store
//!   only frames older than any live writer's flush could be: the others are looked at
//!   again once they are.
//! - Audio tracks (`recorder/audio.rs`) go in the participant's folder, or the recording's
//!   for the mixed track, as WAV pieces on the recording's timeline with their manifest.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use lru::LruCache;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::frame::{Frame, Participant, ParticipantEvent, ParticipantId, RecordingId};
use crate::layout::{self, EventRecord, FrameRecord, ParticipantClaim, RecordingSummary};
use crate::sink::{FrameSink, SinkError, StreamWriter, WriteOutcome};
use crate::store::{Created, Key, LogWriter, Store, StoreError, read_whole_log};

/// How often, at most, a busy recording's `recording.json` is rewritten with new frame times.
const SUMMARY_EVERY: Duration = Duration::from_secs(2);
/// How many times `recording.json` is read and merged again when another server wrote it
/// in between; past that, the next publish tries again.
const SUMMARY_SWAPS: usize = 8;
/// Lines a part of a manifest holds, where a store splits logs into parts (a bucket's
/// chunks): about 160 bytes each.
const FRAMES_PER_PART: usize = 500;
/// Lines a part of an event log holds: a few hundred bytes each, and each event rewrites
/// its chunk.
const EVENTS_PER_PART: usize = 200;
/// Recordings whose event log writer is kept between events; one dropped starts a new
/// writer (in a bucket, a new chunk) at its next event.
const EVENT_LOGS_KEPT: NonZeroUsize = NonZeroUsize::new(64).expect("non-zero");

/// A log writer shared by the tasks that push to it and flush it.
type SharedLog = Arc<tokio::sync::Mutex<Box<dyn LogWriter>>>;

pub struct Recorder {
    inner: Arc<Inner>,
    stop: CancellationToken,
    publisher: Mutex<Option<JoinHandle<()>>>,
    /// Flushes audio tracks and lets go of quiet ones.
    audio_keeper: Mutex<Option<JoinHandle<()>>>,
    /// Makes audio folders whole at start-up, in a folder.
    audio_repair: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    store: Arc<dyn Store>,
    recordings: Recordings<Recording>,
    events: Mutex<LruCache<RecordingId, SharedLog>>,
    /// Recordings whose summaries wait for the publisher, with when they are due: each at
    /// most once, so at most the recordings being written. Each entry holds a lease, so
    /// that a recording waiting to be published is not forgotten and started afresh
    /// meanwhile (two states would each write theirs).
    queue: Mutex<Vec<(Lease<Recording>, Instant)>>,
    nudge: Notify,
    audio: audio::AudioTracks,
}

impl Recorder {
    /// A recorder into `store`, with its publisher running.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let inner = Arc::new(Inner {
            store,
            recordings: Recordings::default(),
            events: Mutex::new(LruCache::new(EVENT_LOGS_KEPT)),
            queue: Mutex::default(),
            nudge: Notify::new(),
            audio: audio::AudioTracks::default(),
        });
        let stop = CancellationToken::new();
        let publisher = tokio::spawn(publish_queued(inner.clone(), stop.clone()));
        let audio_keeper = tokio::spawn(audio::keep_tracks(inner.clone(), stop.clone()));
        let audio_repair = inner
            .store
            .writes_in_place()
            .then(|| tokio::spawn(audio::repair_all(inner.clone(), stop.clone())));
        Recorder {
            inner,
            stop,
            publisher: Mutex::new(Some(publisher)),
            audio_keeper: Mutex::new(Some(audio_keeper)),
            audio_repair: Mutex::new(audio_repair),
        }
    }

    /// A recorder into a folder store at `root`: the embedded default.
    pub async fn in_folder(root: std::path::PathBuf) -> Result<Self, crate::files::FsError> {
        let store = crate::store::fs::FsStore::open(root).await?;
        Ok(Recorder::new(Arc::new(store)))
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Writes the summaries of queued recordings as they fall due, until `stop`.
async fn publish_queued(inner: Arc<Inner>, stop: CancellationToken) {
    loop {
        let next = inner.queue.lock().iter().map(|(_, at)| *at).min();
        let wait = async {
            match next {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        // A nudge sent since `next` was read is kept by `Notify` until it is awaited here.
        tokio::select! {
            () = stop.cancelled() => break,
            () = inner.nudge.notified() => {}
            () = wait => {}
        }
        let now = Instant::now();
        let due: Vec<Lease<Recording>> = {
            let mut queue = inner.queue.lock();
            let (due, later) = std::mem::take(&mut *queue)
                .into_iter()
                .partition(|(_, at)| *at <= now);
            *queue = later;
            due.into_iter().map(|(recording, _)| recording).collect()
        };
        for recording in due {
            if let Err(error) = inner
                .publish(&recording)
                .instrument(tracing::info_span!("publish", recording = %recording.id))
                .await
            {
                tracing::warn!(%error, "could not update participant.json or recording.json; trying again later");
                // Later frames may never come to queue it again.
                inner.queue(&recording, Instant::now() + SUMMARY_EVERY);
            }
        }
    }
}

/// A recording as this server is writing it, shared by its open streams and its events.
struct Recording {
    id: RecordingId,
    key: Key,
    state: Mutex<RecordingState>,
    /// Held while summaries are written, so that one publish at a time writes them.
    publishing: tokio::sync::Mutex<()>,
    /// The participant folders the store held when the recording was first written here
    /// (read once, for a store this server alone writes).
    found: tokio::sync::OnceCell<HashMap<ParticipantId, String>>,
}

#[derive(Default)]
struct RecordingState {
    participants: HashMap<ParticipantId, ParticipantState>,
    summary: Option<RecordingSummary>,
    /// Changes made to `summary`, and how many of them `recording.json` holds.
    changes: u64,
    published_changes: u64,
    published_at: Option<Instant>,
    /// In the publisher's queue.
    queued: bool,
}

struct ParticipantState {
    folder: String,
    newest: Described,
    /// `participant.json` holds `newest`.
    written: bool,
}

impl RecordingState {
    /// Notes how a frame or event at meeting time `as_of` describes a participant whose
    /// folder is known, and says whether `participant.json` must be written.
    fn note_participant(&mut self, participant: &Participant, as_of: f64) -> bool {
        let Some(state) = self.participants.get_mut(&participant.id) else {
            return false;
        };
        if state.newest.is_superseded_by(participant, as_of) {
            state.newest = Described::new(participant, as_of);
            state.written = false;
        }
        !state.written
    }

    /// Takes in the recording-level context an event carries, and says whether it changed.
    fn note_recording(&mut self, info: &crate::frame::RecordingInfo) -> bool {
        let (_, changed) = RecordingSummary::note(&mut self.summary, info);
        if changed {
            self.changes += 1;
        }
        changed
    }

    fn is_dirty(&self) -> bool {
        self.changes != self.published_changes || self.participants.values().any(|p| !p.written)
    }
}

impl Inner {
    fn recording(&self, id: &RecordingId) -> Lease<Recording> {
        self.recordings.lease(id, || Recording {
            id: id.clone(),
            key: layout::recording_key(id),
            state: Mutex::default(),
            publishing: tokio::sync::Mutex::new(()),
            found: tokio::sync::OnceCell::new(),
        })
    }

    /// The participant's folder, chosen at first sight (a frame or an event at meeting time
    /// `as_of`) and kept from then on.
    async fn folder(
        &self,
        recording: &Recording,
        participant: &Participant,
        as_of: f64,
    ) -> Result<String, StoreError> {
        if let Some(state) = recording.state.lock().participants.get(&participant.id) {
            return Ok(state.folder.clone());
        }
        let proposed = layout::participant_folder_name(participant);
        let folder = if self.store.is_shared() {
            claim_folder(self.store.as_ref(), &recording.id, participant.id, proposed).await?
        } else {
            let found = recording
                .found
                .get_or_try_init(|| participant_folders(self.store.as_ref(), &recording.key))
                .await?;
            found.get(&participant.id).cloned().unwrap_or(proposed)
        };
        let mut state = recording.state.lock();
        let state = state
            .participants
            .entry(participant.id)
            .or_insert_with(|| ParticipantState {
                folder,
                newest: Described::new(participant, as_of),
                written: false,
            });
        Ok(state.folder.clone())
    }

    /// Writes what the recording's `participant.json` files and `recording.json` lack.
    async fn publish(&self, recording: &Recording) -> Result<(), StoreError> {
        let _publishing = recording.publishing.lock().await;
        let (participants, summary) = {
            let mut state = recording.state.lock();
            state.queued = false;
            let participants: Vec<(ParticipantId, String, Described)> = state
                .participants
                .iter()
                .filter(|(_, p)| !p.written)
                .map(|(id, p)| (*id, p.folder.clone(), p.newest.clone()))
                .collect();
            let summary = (state.changes != state.published_changes)
                .then(|| state.summary.clone().map(|s| (s, state.changes)))
                .flatten();
            (participants, summary)
        };
        for (id, folder, described) in participants {
            let key = recording.key.join(&folder).join(layout::PARTICIPANT_FILE);
            self.store
                .put(&key, pretty_json(&described.participant))
                .await?;
            let mut state = recording.state.lock();
            // Written, unless a newer description came meanwhile (a later time alone,
            // for the same description, changes nothing on disk).
            if let Some(p) = state.participants.get_mut(&id)
                && p.newest.participant == described.participant
            {
                p.written = true;
            }
        }
        if let Some((mine, changes)) = summary
            && let Some(merged) = self.merge_summary(&recording.key, mine).await?
        {
            let mut state = recording.state.lock();
            state.published_changes = state.published_changes.max(changes);
            state.published_at = Some(Instant::now());
            state.summary = Some(match state.summary.take() {
                Some(current) => current.merged_with(merged),
                None => merged,
            });
        }
        Ok(())
    }

    /// Merges `mine` into `recording.json`: read it, merge, write it back only if it is
    /// still the version read, and go again if another writer wrote it in between. `None`
    /// when it kept changing: the next publish tries again.
    async fn merge_summary(
        &self,
        recording: &Key,
        mine: RecordingSummary,
    ) -> Result<Option<RecordingSummary>, StoreError> {
        let key = recording.join(layout::RECORDING_FILE);
        for _ in 0..SUMMARY_SWAPS {
            let found = self.store.get(&key).await?;
            let (merged, expected) = match found {
                Some(found) => {
                    let theirs = serde_json::from_slice::<RecordingSummary>(&found.bytes)
                        .inspect_err(|error| tracing::warn!(%key, %error, "unreadable recording summary; replacing it"))
                        .ok();
                    let merged = match theirs {
                        Some(theirs) => mine.clone().merged_with(theirs),
                        None => mine.clone(),
                    };
                    (merged, Some(found.version))
                }
                None => (mine.clone(), None),
            };
            let body = pretty_json(&merged);
            if self
                .store
                .swap(&key, body, expected.as_ref())
                .await?
                .is_some()
            {
                return Ok(Some(merged));
            }
        }
        tracing::warn!(%key, "recording.json kept changing under this writer; merging again later");
        Ok(None)
    }

    /// Hands the recording to the publisher, to be published at `at`, or sooner if it is
    /// queued already for sooner.
    fn queue(&self, recording: &Lease<Recording>, at: Instant) {
        {
            let mut queue = self.queue.lock();
            match queue
                .iter_mut()
                .find(|(queued, _)| queued.id == recording.id)
            {
                Some((_, queued_at)) => *queued_at = (*queued_at).min(at),
                None => queue.push((recording.clone(), at)),
            }
        }
        self.nudge.notify_one();
    }

    /// A live writer adds its frames to its manifest within an interval: a frame without a
    /// line for two has lost it. Rebuilding a line that a writer is about to add anyway only
    /// lists the frame twice, and readers keep the writer's.
    fn settle(&self) -> Duration {
        self.store
            .log_interval()
            .filter(|_| self.store.is_shared())
            .map_or(Duration::ZERO, |interval| interval.saturating_mul(2))
    }

    /// What a stream's folder holds as it opens: the milliseconds that have a frame, and
    /// manifest lines rebuilt for frames that have none and were written at least `settle`
    /// ago (of those in `only`, if given); those younger are `young`.
    async fn survey(
        &self,
        stream: &Key,
        settle: Duration,
        only: Option<&[u64]>,
    ) -> Result<Survey, StoreError> {
        let objects = self.store.list(stream).await?;
        let mut frames = HashMap::new();
        for object in objects {
            if let Some([name]) = object.key.strip_prefix(stream).as_deref()
                && let Some(ms) = layout::parse_frame_file_name(name)
            {
                frames.insert(ms, object);
            }
        }
        let manifest = stream.join(layout::FRAMES_MANIFEST);
        let mut listed = HashSet::new();
        for line in read_whole_log(self.store.as_ref(), &manifest).await? {
            match FrameRecord::parse_line(&line) {
                Ok((ms, _)) => {
                    listed.insert(ms);
                }
                Err(error) => tracing::warn!(%manifest, %error, "skipping a manifest line"),
            }
        }
        let now = Timestamp::now();
        let mut recovered = Vec::new();
        let mut young = Vec::new();
        for (&ms, object) in &frames {
            if listed.contains(&ms) || only.is_some_and(|only| !only.contains(&ms)) {
                continue;
            }
            // With nothing to wait for (this server alone writes the store), every frame
            // without a line is rebuilt, whatever its clock says.
            let age = now.duration_since(object.written_by);
            if !settle.is_zero()
                && age < jiff::SignedDuration::try_from(settle).unwrap_or(jiff::SignedDuration::MAX)
            {
                young.push(ms);
                continue;
            }
            match self
                .recovered_record(&object.key, ms, object.written_by)
                .await
            {
                Ok(Some(record)) => recovered.push(record),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, key = %object.key, "frame without a manifest line is unreadable; left as it is")
                }
            }
        }
        if !recovered.is_empty() {
            recovered.sort_by(|a, b| a.file.cmp(&b.file));
            tracing::info!(%stream, frames = recovered.len(), "rebuilt manifest lines of frames saved before a crash");
        }
        Ok(Survey {
            known: frames.into_keys().collect(),
            recovered,
            young,
        })
    }

    /// A manifest line rebuilt from a frame alone; the absolute time is lost.
    async fn recovered_record(
        &self,
        key: &Key,
        relative_ms: u64,
        written_by: Timestamp,
    ) -> Result<Option<FrameRecord>, StoreError> {
        let Some(found) = self.store.get(key).await? else {
            return Ok(None);
        };
        let (width, height) = crate::event::png_dimensions(&found.bytes).map_err(|refusal| {
            StoreError::Unexpected {
                key: key.clone(),
                why: refusal.to_string(),
            }
        })?;
        Ok(Some(FrameRecord {
            file: layout::frame_file_name(relative_ms),
            relative: relative_ms as f64 / 1000.0,
            absolute: None,
            width,
            height,
            bytes: found.bytes.len() as u64,
            received_at: written_by,
            recovered: true,
        }))
    }

    /// Rebuilds the lines of `young` frames that still have none: those a stream found
    /// without a line as it opened, too recent then to tell lost from not yet written.
    async fn recover_late(
        &self,
        stream: &Key,
        young: &[u64],
        manifest: &tokio::sync::Mutex<Box<dyn LogWriter>>,
    ) -> Result<(), StoreError> {
        let survey = self.survey(stream, Duration::ZERO, Some(young)).await?;
        let mut manifest = manifest.lock().await;
        for record in survey.recovered {
            manifest.push(json_line(&record));
        }
        Ok(())
    }

    /// The recording's event log writer.
    fn event_log(&self, recording: &Recording) -> SharedLog {
        self.events
            .lock()
            .get_or_insert(recording.id.clone(), || {
                Arc::new(tokio::sync::Mutex::new(self.store.log_writer(
                    &recording.key.join(layout::EVENTS_LOG),
                    EVENTS_PER_PART,
                )))
            })
            .clone()
    }
}

/// The participant folders under a recording, by participant id: the first in name order
/// should two carry one id, as the catalog reads them.
pub async fn participant_folders(
    store: &dyn Store,
    recording: &Key,
) -> Result<HashMap<ParticipantId, String>, StoreError> {
    let mut folders = HashMap::new();
    for name in store.list_folders(recording).await? {
        if let Some(id) = layout::parse_participant_folder_name(&name) {
            folders.entry(id).or_insert(name);
        }
    }
    Ok(folders)
}

/// Claims `proposed` as the folder of `participant` in `recording`, unless a claim names
/// one already; returns the folder the claim names.
pub async fn claim_folder(
    store: &dyn Store,
    recording: &RecordingId,
    participant: ParticipantId,
    proposed: String,
) -> Result<String, StoreError> {
    let key = layout::claim_key(recording, participant);
    let proposed = ParticipantClaim { folder: proposed };
    let body = Bytes::from(serde_json::to_vec(&proposed).expect("a claim is plain JSON"));
    match store.create(&key, body).await? {
        Created::New => Ok(proposed.folder),
        Created::Existed => {
            let found = store.get(&key).await?;
            let claim = found
                .and_then(|found| serde_json::from_slice::<ParticipantClaim>(&found.bytes).ok())
                .filter(|claim| claim.is_valid_for(participant))
                .ok_or_else(|| StoreError::Unexpected {
                    key: key.clone(),
                    why: "not a claim naming a folder of this participant".into(),
                })?;
            if claim != proposed {
                tracing::debug!(
                    participant = participant.0,
                    folder = claim.folder,
                    "participant folder claimed by another writer"
                );
            }
            Ok(claim.folder)
        }
    }
}

/// What [`Inner::survey`] found.
struct Survey {
    known: HashSet<u64>,
    recovered: Vec<FrameRecord>,
    young: Vec<u64>,
}

/// `value` as one JSON line, newline included. The layout's records are plain structs with
/// string keys: encoding them cannot fail.
fn json_line(value: &impl Serialize) -> Vec<u8> {
    // Room for a frame's or an audio chunk's line (about 200 bytes) without growing.
    let mut line = Vec::with_capacity(256);
    serde_json::to_writer(&mut line, value).expect("a layout record encodes as JSON");
    line.push(b'\n');
    line
}

/// A JSON file as the recorder writes it: pretty, with a final newline.
fn pretty_json(value: &impl Serialize) -> Bytes {
    let mut body = serde_json::to_vec_pretty(value).expect("a layout record encodes as JSON");
    body.push(b'\n');
    body.into()
}

#[async_trait]
impl FrameSink for Recorder {
    async fn open_stream(&self, first: &Frame) -> Result<Box<dyn StreamWriter>, SinkError> {
        let inner = &self.inner;
        let recording = inner.recording(&first.key.recording);
        let folder = inner
            .folder(&recording, &first.participant, first.time.relative)
            .await?;
        let unwritten = recording
            .state
            .lock()
            .note_participant(&first.participant, first.time.relative);
        if unwritten {
            // A participant's folder has its participant.json before its first frame.
            inner.publish(&recording).await?;
        }
        let stream = layout::stream_key(&first.key.recording, &folder, first.key.kind);
        let survey = inner.survey(&stream, inner.settle(), None).await?;
        let mut manifest = inner
            .store
            .log_writer(&stream.join(layout::FRAMES_MANIFEST), FRAMES_PER_PART);
        if !survey.recovered.is_empty() {
            for record in &survey.recovered {
                manifest.push(json_line(record));
            }
            manifest.flush().await?;
        }
        let manifest = Arc::new(tokio::sync::Mutex::new(manifest));
        let flusher = inner.store.log_interval().map(|interval| {
            let stop = CancellationToken::new();
            let task = tokio::spawn(
                flush_every(
                    inner.clone(),
                    interval,
                    stream.clone(),
                    survey.young.clone(),
                    manifest.clone(),
                    stop.clone(),
                )
                .in_current_span(),
            );
            (stop, task)
        });
        Ok(Box::new(RecorderStream {
            inner: inner.clone(),
            recording,
            stream,
            known: survey.known,
            manifest,
            flusher,
        }))
    }

    async fn record_event(&self, event: &ParticipantEvent) -> Result<(), SinkError> {
        let inner = &self.inner;
        let recording = inner.recording(&event.recording.id);
        let participant = &event.participant;
        inner
            .folder(&recording, participant, event.time.relative)
            .await?;
        let unwritten = {
            let mut state = recording.state.lock();
            // Join and update events say who the participant now is. Other events matter
            // here only for a participant without a participant.json yet, so that no folder
            // lacks one.
            let unwritten = state
                .participants
                .get(&participant.id)
                .is_some_and(|p| !p.written);
            (event.kind.describes_participant() || unwritten)
                && state.note_participant(participant, event.time.relative)
        };
        if unwritten {
            inner.publish(&recording).await?;
        }
        let log = inner.event_log(&recording);
        {
            let mut log = log.lock().await;
            log.push(json_line(&EventRecord::from(event)));
            if let Err(error) = log.flush().await {
                log.discard_pending();
                return Err(error.into());
            }
        }
        if recording.state.lock().note_recording(&event.recording) {
            inner.publish(&recording).await?;
        }
        Ok(())
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.stop.cancel();
        let publisher = self.publisher.lock().take();
        if let Some(publisher) = publisher
            && let Err(error) = publisher.await
        {
            tracing::warn!(%error, "the summary publisher panicked");
        }
        let audio_tasks = [
            self.audio_keeper.lock().take(),
            self.audio_repair.lock().take(),
        ];
        for task in audio_tasks.into_iter().flatten() {
            if let Err(error) = task.await {
                tracing::warn!(%error, "an audio task panicked");
            }
        }
        let audio = self.inner.audio.sweep(Duration::ZERO).await;
        for recording in self.inner.recordings.all() {
            self.inner.publish(&recording).await?;
        }
        audio
    }

    async fn record_audio(
        &self,
        chunk: &crate::audio::AudioChunk,
    ) -> Result<crate::sink::AudioOutcome, SinkError> {
        self.inner.audio.record(&self.inner, chunk).await
    }

    fn backend(&self) -> &'static str {
        self.inner.store.backend()
    }
}

/// Writes a stream's pending manifest lines every `interval` until `stop`; once the frames
/// found without a line at open (`young`) are old enough, rebuilds the lines of those still
/// without one. Returns those not yet looked at again.
async fn flush_every(
    inner: Arc<Inner>,
    interval: Duration,
    stream: Key,
    mut young: Vec<u64>,
    manifest: SharedLog,
    stop: CancellationToken,
) -> Vec<u64> {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let settled_at = tokio::time::Instant::now() + inner.settle();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {
                if !young.is_empty() && tokio::time::Instant::now() >= settled_at {
                    match inner.recover_late(&stream, &young, &manifest).await {
                        Ok(()) => young.clear(),
                        Err(error) => tracing::warn!(%error, "could not look again for frames without a manifest line"),
                    }
                }
                if let Err(error) = manifest.lock().await.flush().await {
                    // The lines stay pending: the next flush writes them.
                    tracing::warn!(%error, "could not add saved frames to the manifest; trying again later");
                }
            }
        }
    }
    young
}

struct RecorderStream {
    inner: Arc<Inner>,
    recording: Lease<Recording>,
    stream: Key,
    /// Milliseconds known to have a frame: no request is needed to call them duplicates.
    known: HashSet<u64>,
    manifest: SharedLog,
    flusher: Option<(CancellationToken, JoinHandle<Vec<u64>>)>,
}

#[async_trait]
impl StreamWriter for RecorderStream {
    async fn write(&mut self, frame: &Frame) -> Result<WriteOutcome, SinkError> {
        let ms = frame.relative_ms;
        if self.known.contains(&ms) {
            return Ok(WriteOutcome::Duplicate);
        }
        let key = self.stream.join(&layout::frame_file_name(ms));
        let (png, line) = (frame.png.clone(), json_line(&FrameRecord::of(frame)));
        let store = &self.inner.store;
        let created = if self.flusher.is_none() {
            // Written line by line: the frame is saved once its line is.
            let mut manifest = self.manifest.lock().await;
            store
                .create_logged(&key, png, manifest.as_mut(), line)
                .await?
        } else {
            let created = store.create(&key, png).await?;
            if created == Created::New {
                let mut manifest = self.manifest.lock().await;
                manifest.push(line);
                if manifest.is_full()
                    && let Err(error) = manifest.flush().await
                {
                    tracing::warn!(%error, "could not add saved frames to the manifest; trying again later");
                }
            }
            created
        };
        self.known.insert(ms);
        if created == Created::Existed {
            return Ok(WriteOutcome::Duplicate);
        }
        let due = {
            let mut state = self.recording.state.lock();
            let context_changed = state.note_recording(&frame.recording);
            if let Some(summary) = &mut state.summary {
                summary.note_frame_time(frame.time);
            }
            state.changes += 1;
            let participant_changed =
                state.note_participant(&frame.participant, frame.time.relative);
            // New context or a new description goes out at once; frame times at most every
            // SUMMARY_EVERY, and never later than that after this frame, even if it is the
            // last (its stream may stay open until STREAM_IDLE_TIMEOUT).
            let now = Instant::now();
            let urgent = context_changed || participant_changed;
            let at = if urgent {
                now
            } else {
                state
                    .published_at
                    .map_or(now, |at| (at + SUMMARY_EVERY).max(now))
            };
            let queued = std::mem::replace(&mut state.queued, true);
            (!queued || urgent).then_some(at)
        };
        if let Some(at) = due {
            self.inner.queue(&self.recording, at);
        }
        Ok(WriteOutcome::Saved {
            bytes: frame.png.len() as u64,
        })
    }

    async fn close(mut self: Box<Self>) -> Result<(), SinkError> {
        let mut recovered = Ok(());
        if let Some((stop, flusher)) = self.flusher.take() {
            stop.cancel();
            let young = flusher.await.map_err(|error| StoreError::Unexpected {
                key: self.stream.clone(),
                why: format!("the manifest task failed: {error}"),
            })?;
            // Closing before they settled: look at them now rather than never.
            if !young.is_empty() {
                recovered = self
                    .inner
                    .recover_late(&self.stream, &young, &self.manifest)
                    .await;
            }
        }
        let flushed = self.manifest.lock().await.flush().await;
        let published = if self.recording.state.lock().is_dirty() {
            self.inner.publish(&self.recording).await
        } else {
            Ok(())
        };
        recovered?;
        flushed?;
        Ok(published?)
    }
}

impl Drop for RecorderStream {
    fn drop(&mut self) {
        // A writer dropped without `close` (a panic) stops flushing with it.
        if let Some((_, flusher)) = &self.flusher {
            flusher.abort();
        }
    }
}

/// The recordings being written: state that a recording's open streams and its events
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

impl<R> Clone for Lease<R> {
    fn clone(&self) -> Self {
        let mut open = self.open.lock();
        if let Some(entry) = open.get_mut(&self.id) {
            entry.leases += 1;
        }
        Lease {
            open: self.open.clone(),
            id: self.id.clone(),
            recording: self.recording.clone(),
        }
    }
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

/// How a participant was last described, and the meeting time (relative seconds) of the
/// newest frame or event that described them so.
#[derive(Debug, Clone)]
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
    /// says whether it replaces this description: when it differs and is no older. A frame
    /// that waited in its stream's queue while a newer `update` event was recorded, or one
    /// Recall resent after a reconnect, describes the participant as they were, and must
    /// not bring that back.
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

mod audio;

/// How long an audio chunk may wait in memory before it is written, in a folder: what a
/// `kill -9` can lose of each track.
pub use self::audio::WRITE_BEHIND as AUDIO_WRITE_BEHIND;
#[cfg(test)]
mod tests;
