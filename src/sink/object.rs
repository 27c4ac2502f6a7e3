//! The object-storage sink: writes the layout of [`crate::layout`] as keys in a bucket, so
//! that several instances can record into one bucket at once.
//!
//! - A frame is created with `If-None-Match: *`: the first writer of a millisecond wins, and
//!   any later one, on this instance or another, is a duplicate. A frame counts as saved
//!   once the store has confirmed the write.
//! - S3 cannot append, so a stream's `frames.jsonl` and a recording's `events.jsonl` become
//!   chunks (see [`Chunk`]): each writer owns its chunk's key, creates it with
//!   `If-None-Match: *` and rewrites it, longer each time, only with `If-Match` on the
//!   version it wrote last. No writer can replace another's lines.
//! - A participant's folder is claimed once per recording with a create-only object naming
//!   it; every instance that sees the participant uses the folder in the claim.
//! - `participant.json` follows the newest description by meeting time, as on disk; between
//!   instances the last writer wins.
//! - `recording.json` is read, merged and written back with `If-Match`, so that first and
//!   last frame times cover every instance's frames.
//! - A stream opening finds frames whose manifest lines were lost (an instance killed before
//!   it flushed) and writes their lines, rebuilt from the PNG, into its own chunk.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use lru::LruCache;
use object_store::path::Path;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Described, FrameSink, Lease, Recordings, SinkError, StreamWriter, WriteOutcome};
use crate::bucket::{Bucket, BucketError, Created, Version};
use crate::frame::{Frame, Participant, ParticipantEvent, ParticipantId, RecordingId};
use crate::layout::{self, EventRecord, FrameRecord, ParticipantClaim, RecordingSummary};

/// How often, at most, a busy recording's `recording.json` is merged and rewritten.
const SUMMARY_EVERY: Duration = Duration::from_secs(2);
/// Lines a manifest chunk holds before its writer starts the next (about 160 bytes each).
const FRAMES_PER_CHUNK: usize = 500;
/// Lines an event chunk holds before its writer starts the next (a few hundred bytes each).
const EVENTS_PER_CHUNK: usize = 200;
/// How many times `recording.json` is read and merged again when another instance wrote it
/// in between; past that, the next flush tries again.
const SUMMARY_SWAPS: usize = 8;
/// Recordings whose participant folders are remembered (a claim never changes).
const REMEMBERED: NonZeroUsize = NonZeroUsize::new(1024).expect("non-zero");
/// Recordings whose open event chunk is kept between events (each up to a few tens of KB);
/// one dropped starts a new chunk at its next event.
const EVENT_CHUNKS_KEPT: NonZeroUsize = NonZeroUsize::new(64).expect("non-zero");

#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    #[error(transparent)]
    Bucket(#[from] BucketError),
    #[error("cannot encode {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("a stream's manifest task panicked: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl ObjectError {
    /// What kind of failure it was, for `storage_failures{backend="bucket",kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            ObjectError::Bucket(error) => error.kind(),
            ObjectError::Encode { .. } => "encode",
            ObjectError::Task(_) => "panic",
        }
    }
}

fn json(value: &impl Serialize, what: &'static str) -> Result<Vec<u8>, ObjectError> {
    serde_json::to_vec(value).map_err(|source| ObjectError::Encode { what, source })
}

/// A JSON file as the file-system sink writes it: pretty, with a final newline.
fn pretty_json(value: &impl Serialize, what: &'static str) -> Result<Bytes, ObjectError> {
    let mut body =
        serde_json::to_vec_pretty(value).map_err(|source| ObjectError::Encode { what, source })?;
    body.push(b'\n');
    Ok(body.into())
}

fn json_line(value: &impl Serialize, what: &'static str) -> Result<Vec<u8>, ObjectError> {
    let mut line = json(value, what)?;
    line.push(b'\n');
    Ok(line)
}

pub struct ObjectSink {
    shared: Arc<Shared>,
}

struct Shared {
    bucket: Bucket,
    /// This process's part of its chunks' names: 64 random bits, so that no two instances
    /// pick one name (and if they ever did, the create-only write would tell).
    instance: String,
    next_writer: AtomicU64,
    manifest_interval: Duration,
    recordings: Recordings<RecordingEntry>,
    /// Participant folders already claimed or read: a claim never changes.
    folders: Mutex<LruCache<(RecordingId, ParticipantId), String>>,
    /// Each recording's event chunk, kept between events.
    events: Mutex<LruCache<RecordingId, Arc<tokio::sync::Mutex<Chunk>>>>,
}

impl ObjectSink {
    /// A sink into `bucket` that adds saved frames to their manifests every
    /// `manifest_interval`.
    pub fn new(bucket: Bucket, manifest_interval: Duration) -> Self {
        ObjectSink {
            shared: Arc::new(Shared {
                bucket,
                instance: format!("{:016x}", rand::random::<u64>()),
                next_writer: AtomicU64::new(0),
                manifest_interval,
                recordings: Recordings::default(),
                folders: Mutex::new(LruCache::new(REMEMBERED)),
                events: Mutex::new(LruCache::new(EVENT_CHUNKS_KEPT)),
            }),
        }
    }
}

impl Shared {
    /// A name for a new chunk, unique to this writer.
    fn chunk_name(&self) -> String {
        let writer = self.next_writer.fetch_add(1, Ordering::Relaxed);
        layout::chunk_name(
            Timestamp::now().as_millisecond(),
            &format!("{}-{writer}", self.instance),
        )
    }

    fn recording(&self, id: &RecordingId) -> Lease<RecordingEntry> {
        self.recordings.lease(id, || RecordingEntry {
            id: id.clone(),
            key: self.bucket.recording_key(id),
            state: tokio::sync::Mutex::default(),
        })
    }

    /// The participant's folder: the one in its claim, claiming it first if nobody has.
    async fn participant_folder(
        &self,
        recording: &RecordingId,
        participant: &Participant,
    ) -> Result<String, ObjectError> {
        let cache_key = (recording.clone(), participant.id);
        if let Some(folder) = self.folders.lock().get(&cache_key) {
            return Ok(folder.clone());
        }
        let folder = claim_folder(
            &self.bucket,
            recording,
            participant.id,
            layout::participant_folder_name(participant),
        )
        .await?;
        self.folders.lock().put(cache_key, folder.clone());
        Ok(folder)
    }

    /// The recording's open event chunk.
    fn event_chunk(&self, recording: &RecordingEntry) -> Arc<tokio::sync::Mutex<Chunk>> {
        self.events
            .lock()
            .get_or_insert(recording.id.clone(), || {
                Arc::new(tokio::sync::Mutex::new(Chunk::new(
                    recording.key.clone().join(layout::EVENT_CHUNKS),
                    EVENTS_PER_CHUNK,
                )))
            })
            .clone()
    }

    /// What a stream's folder holds as it opens: the milliseconds that have a frame, and
    /// manifest lines rebuilt for frames that have none and are older than any writer's
    /// flush could still be (an instance killed before it flushed them).
    async fn survey_stream(&self, stream: &Path, settle: Duration) -> Result<Survey, ObjectError> {
        let objects = self.bucket.list(stream).await?;
        let mut frames = HashMap::new();
        let mut chunks = Vec::new();
        for object in objects {
            let parts: Vec<String> = match object.location.prefix_match(stream) {
                Some(parts) => parts.map(|part| part.as_ref().to_owned()).collect(),
                None => continue,
            };
            match parts.as_slice() {
                [name] => {
                    if let Some(ms) = layout::parse_frame_file_name(name) {
                        frames.insert(ms, object);
                    }
                }
                [dir, name] if dir == layout::MANIFEST_CHUNKS && layout::is_chunk_name(name) => {
                    chunks.push(object.location);
                }
                _ => {}
            }
        }
        let mut listed = HashSet::new();
        for text in self.bucket.get_each(chunks).await? {
            for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                if let Ok(record) = serde_json::from_slice::<FrameRecord>(line) {
                    listed.extend(layout::parse_frame_file_name(&record.file));
                }
            }
        }
        let now = Timestamp::now().as_millisecond();
        let mut recovered = Vec::new();
        let mut young = Vec::new();
        for (&ms, object) in &frames {
            if listed.contains(&ms) {
                continue;
            }
            let age_ms = now - object.last_modified.timestamp_millis();
            if age_ms < settle.as_millis() as i64 {
                young.push(ms);
                continue;
            }
            match self
                .recovered_record(
                    &object.location,
                    ms,
                    object.last_modified.timestamp_millis(),
                )
                .await
            {
                Ok(Some(record)) => recovered.push(record),
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(%error, key = %object.location, "frame without a manifest line is unreadable; left as it is")
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

    /// A live writer adds its frames to its manifest within an interval: a frame without a
    /// line for two has lost it. Rebuilding a line that a writer is about to add anyway only
    /// lists the frame twice, and readers keep the writer's.
    fn settle(&self) -> Duration {
        self.manifest_interval.saturating_mul(2)
    }

    /// Rebuilds the lines of `young` frames that still have none: those a stream found
    /// without a line as it opened, too recent then to tell lost from not yet written.
    async fn recover_late(
        &self,
        stream: &Path,
        young: &[u64],
        manifest: &tokio::sync::Mutex<Chunk>,
    ) -> Result<(), ObjectError> {
        let survey = self.survey_stream(stream, Duration::ZERO).await?;
        let mut manifest = manifest.lock().await;
        for record in survey.recovered {
            if layout::parse_frame_file_name(&record.file).is_some_and(|ms| young.contains(&ms)) {
                manifest.push(json_line(&record, "a manifest line")?);
            }
        }
        Ok(())
    }

    /// A manifest line rebuilt from a frame alone; the absolute time is lost.
    async fn recovered_record(
        &self,
        key: &Path,
        relative_ms: u64,
        modified_ms: i64,
    ) -> Result<Option<FrameRecord>, ObjectError> {
        let Some(found) = self.bucket.get(key).await? else {
            return Ok(None);
        };
        let (width, height) = crate::event::png_dimensions(&found.bytes).map_err(|refusal| {
            BucketError::Unexpected {
                key: key.to_string(),
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
            received_at: Timestamp::from_millisecond(modified_ms).unwrap_or(Timestamp::UNIX_EPOCH),
            recovered: true,
        }))
    }
}

/// Claims `proposed` as the folder of `participant` in `recording`, unless a claim names
/// one already; returns the folder the claim names.
pub async fn claim_folder(
    bucket: &Bucket,
    recording: &RecordingId,
    participant: ParticipantId,
    proposed: String,
) -> Result<String, ObjectError> {
    let key = bucket.key([
        recording.as_str(),
        layout::PARTICIPANT_CLAIMS,
        &layout::claim_name(participant),
    ]);
    let proposed = ParticipantClaim { folder: proposed };
    let body = Bytes::from(json(&proposed, "a participant claim")?);
    match bucket.create(&key, body).await? {
        Created::New(_) => Ok(proposed.folder),
        Created::Existed => {
            let found = bucket.get(&key).await?;
            let claim = found
                .and_then(|found| serde_json::from_slice::<ParticipantClaim>(&found.bytes).ok())
                .filter(|claim| claim.is_valid_for(participant))
                .ok_or_else(|| BucketError::Unexpected {
                    key: key.to_string(),
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

/// What [`Shared::survey_stream`] found.
struct Survey {
    known: HashSet<u64>,
    recovered: Vec<FrameRecord>,
    young: Vec<u64>,
}

#[async_trait]
impl FrameSink for ObjectSink {
    async fn open_stream(&self, first: &Frame) -> Result<Box<dyn StreamWriter>, SinkError> {
        let shared = &self.shared;
        let recording = shared.recording(&first.key.recording);
        let folder = recording.prepare(shared, first).await?;
        let stream = shared
            .bucket
            .stream_key(&first.key.recording, &folder, first.key.kind);
        let survey = shared.survey_stream(&stream, shared.settle()).await?;
        let mut manifest = Chunk::new(
            stream.clone().join(layout::MANIFEST_CHUNKS),
            FRAMES_PER_CHUNK,
        );
        for record in &survey.recovered {
            manifest.push(json_line(record, "a manifest line")?);
        }
        let manifest = Arc::new(tokio::sync::Mutex::new(manifest));
        let stop = CancellationToken::new();
        let flusher = tokio::spawn(
            flush_every(
                shared.clone(),
                stream.clone(),
                survey.young,
                manifest.clone(),
                stop.clone(),
            )
            .instrument(tracing::Span::current()),
        );
        Ok(Box::new(ObjectStreamWriter {
            shared: shared.clone(),
            recording,
            folder,
            stream,
            known: survey.known,
            manifest,
            flusher: Some((stop, flusher)),
        }))
    }

    async fn record_event(&self, event: &ParticipantEvent) -> Result<(), SinkError> {
        let recording = self.shared.recording(&event.recording.id);
        Ok(recording.record_event(&self.shared, event).await?)
    }

    async fn flush(&self) -> Result<(), SinkError> {
        for recording in self.shared.recordings.all() {
            recording
                .state
                .lock()
                .await
                .flush_summary(&self.shared, &recording.key)
                .await?;
        }
        Ok(())
    }

    fn backend(&self) -> &'static str {
        "bucket"
    }
}

/// Adds a stream's saved frames to its manifest every `manifest_interval` until `stop`;
/// once the frames found without a line at open (`young`) are old enough, rebuilds the
/// lines of those still without one. Returns those not yet looked at again.
async fn flush_every(
    shared: Arc<Shared>,
    stream: Path,
    mut young: Vec<u64>,
    manifest: Arc<tokio::sync::Mutex<Chunk>>,
    stop: CancellationToken,
) -> Vec<u64> {
    let mut ticks = tokio::time::interval(shared.manifest_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    let settled_at = Instant::now() + shared.settle();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {
                if !young.is_empty() && Instant::now() >= settled_at {
                    match shared.recover_late(&stream, &young, &manifest).await {
                        Ok(()) => young.clear(),
                        Err(error) => tracing::warn!(%error, "could not look again for frames without a manifest line"),
                    }
                }
                if let Err(error) = manifest.lock().await.flush(&shared).await {
                    // The lines stay pending: the next flush writes them.
                    tracing::warn!(%error, "could not add saved frames to the manifest; trying again later");
                }
            }
        }
    }
    young
}

/// One writer's chunk of a JSON-lines file in the bucket. The writer owns the chunk's key:
/// it creates it with `If-None-Match: *`, then rewrites it with every line so far plus the
/// new ones, with `If-Match` on its own last version, so that the chunk only ever grows and
/// readers may read just what was added. Should a write find the key taken or changed (a
/// write of ours that landed although it reported failure), the writer goes on in a new
/// chunk: lines may then be listed twice, and readers keep one of each.
struct Chunk {
    dir: Path,
    max_lines: usize,
    key: Option<Path>,
    version: Option<Version>,
    /// The chunk's lines as the bucket has them.
    written: Vec<u8>,
    written_lines: usize,
    pending: Vec<u8>,
    pending_lines: usize,
}

impl Chunk {
    fn new(dir: Path, max_lines: usize) -> Self {
        Chunk {
            dir,
            max_lines,
            key: None,
            version: None,
            written: Vec::new(),
            written_lines: 0,
            pending: Vec::new(),
            pending_lines: 0,
        }
    }

    fn push(&mut self, line: Vec<u8>) {
        self.pending.extend_from_slice(&line);
        self.pending_lines += 1;
    }

    fn is_full(&self) -> bool {
        self.written_lines + self.pending_lines >= self.max_lines
    }

    /// Drops the lines not yet written (an event whose write failed is not recorded).
    fn discard_pending(&mut self) {
        self.pending.clear();
        self.pending_lines = 0;
    }

    fn start_next(&mut self, shared: &Shared) {
        self.key = Some(self.dir.clone().join(shared.chunk_name()));
        self.version = None;
        self.written.clear();
        self.written_lines = 0;
    }

    /// Writes the pending lines; they are in the bucket when this returns `Ok`.
    async fn flush(&mut self, shared: &Shared) -> Result<(), ObjectError> {
        if self.pending_lines == 0 {
            return Ok(());
        }
        for _ in 0..3 {
            if self.key.is_none()
                || (self.written_lines > 0
                    && self.written_lines + self.pending_lines > self.max_lines)
            {
                self.start_next(shared);
            }
            let Some(key) = self.key.clone() else {
                continue;
            };
            let mut body = Vec::with_capacity(self.written.len() + self.pending.len());
            body.extend_from_slice(&self.written);
            body.extend_from_slice(&self.pending);
            let swapped = shared
                .bucket
                .swap(&key, Bytes::from(body.clone()), self.version.as_ref())
                .await?;
            match swapped {
                Some(version) => {
                    self.written = body;
                    self.written_lines += self.pending_lines;
                    // A store that gives no ETag cannot be asked to rewrite only this
                    // version: each write then goes to a chunk of its own.
                    let rewritable = version.e_tag.is_some();
                    self.version = Some(version);
                    self.discard_pending();
                    if self.written_lines >= self.max_lines || !rewritable {
                        self.key = None;
                    }
                    return Ok(());
                }
                None => {
                    tracing::warn!(%key, "a chunk is not as this writer left it; going on in a new one");
                    self.key = None;
                }
            }
        }
        Err(BucketError::Unexpected {
            key: self.dir.to_string(),
            why: "three new chunks in a row were taken".into(),
        }
        .into())
    }
}

/// A recording as this instance is writing it, shared by its open streams.
struct RecordingEntry {
    id: RecordingId,
    key: Path,
    state: tokio::sync::Mutex<RecordingState>,
}

#[derive(Default)]
struct RecordingState {
    /// What this run last wrote to each participant's `participant.json`.
    written: HashMap<ParticipantId, Described>,
    summary: Option<RecordingSummary>,
    /// The summary holds what `recording.json` may not.
    dirty: bool,
    written_at: Option<Instant>,
}

impl RecordingEntry {
    /// Readies the participant for a stream's first frame and returns its folder.
    async fn prepare(&self, shared: &Shared, first: &Frame) -> Result<String, ObjectError> {
        let participant = &first.participant;
        let folder = shared.participant_folder(&self.id, participant).await?;
        let mut state = self.state.lock().await;
        state
            .note_participant(shared, &self.key, &folder, participant, first.time.relative)
            .await?;
        Ok(folder)
    }

    async fn record_event(
        &self,
        shared: &Shared,
        event: &ParticipantEvent,
    ) -> Result<(), ObjectError> {
        let participant = &event.participant;
        let folder = shared.participant_folder(&self.id, participant).await?;
        let mut state = self.state.lock().await;
        // As on disk: join and update say who the participant now is; other events matter
        // only for a participant without a participant.json from this run.
        if event.kind.describes_participant() || !state.written.contains_key(&participant.id) {
            state
                .note_participant(shared, &self.key, &folder, participant, event.time.relative)
                .await?;
        }
        let line = json_line(&EventRecord::from(event), "a participant event")?;
        let chunk = shared.event_chunk(self);
        let mut chunk = chunk.lock().await;
        chunk.push(line);
        if let Err(error) = chunk.flush(shared).await {
            chunk.discard_pending();
            return Err(error);
        }
        drop(chunk);
        let (_, changed) = RecordingSummary::note(&mut state.summary, &event.recording);
        if changed {
            state.dirty = true;
            state.flush_summary(shared, &self.key).await?;
        }
        Ok(())
    }
}

impl RecordingState {
    /// Keeps `participant.json` what Recall last said of the participant, as a frame or
    /// event at meeting time `as_of` describes them.
    async fn note_participant(
        &mut self,
        shared: &Shared,
        recording: &Path,
        folder: &str,
        participant: &Participant,
        as_of: f64,
    ) -> Result<(), ObjectError> {
        if let Some(written) = self.written.get_mut(&participant.id)
            && !written.is_superseded_by(participant, as_of)
        {
            return Ok(());
        }
        let key = recording
            .clone()
            .join(folder)
            .clone()
            .join(layout::PARTICIPANT_FILE);
        let body = pretty_json(participant, "participant.json")?;
        shared.bucket.overwrite(&key, body).await?;
        self.written
            .insert(participant.id, Described::new(participant, as_of));
        Ok(())
    }

    /// Notes a saved frame: the participant, the recording's context and its frame times.
    /// Writes the summary when it is new, its context changed, or it was last written
    /// [`SUMMARY_EVERY`] ago.
    async fn note_frame(
        &mut self,
        shared: &Shared,
        recording: &Path,
        folder: &str,
        frame: &Frame,
    ) -> Result<(), ObjectError> {
        let never_written = self.written_at.is_none();
        let (summary, changed) = RecordingSummary::note(&mut self.summary, &frame.recording);
        summary.note_frame_time(frame.time);
        self.dirty = true;
        self.note_participant(
            shared,
            recording,
            folder,
            &frame.participant,
            frame.time.relative,
        )
        .await?;
        if never_written
            || changed
            || self
                .written_at
                .is_some_and(|at| at.elapsed() >= SUMMARY_EVERY)
        {
            self.flush_summary(shared, recording).await?;
        }
        Ok(())
    }

    /// Merges the summary into `recording.json`: read it, merge, write it back only if it
    /// is still the version read, and go again if another instance wrote it in between.
    async fn flush_summary(
        &mut self,
        shared: &Shared,
        recording: &Path,
    ) -> Result<(), ObjectError> {
        let (true, Some(mine)) = (self.dirty, &self.summary) else {
            return Ok(());
        };
        let key = recording.clone().join(layout::RECORDING_FILE);
        for _ in 0..SUMMARY_SWAPS {
            let found = shared.bucket.get(&key).await?;
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
            let body = pretty_json(&merged, "recording.json")?;
            if shared
                .bucket
                .swap(&key, body, expected.as_ref())
                .await?
                .is_some()
            {
                self.summary = Some(merged);
                self.dirty = false;
                self.written_at = Some(Instant::now());
                return Ok(());
            }
        }
        tracing::warn!(%key, "recording.json kept changing under this writer; merging again later");
        Ok(())
    }
}

struct ObjectStreamWriter {
    shared: Arc<Shared>,
    recording: Lease<RecordingEntry>,
    /// The participant's folder in the recording.
    folder: String,
    stream: Path,
    /// Milliseconds known to have a frame: no request is needed to call them duplicates.
    known: HashSet<u64>,
    manifest: Arc<tokio::sync::Mutex<Chunk>>,
    flusher: Option<(CancellationToken, JoinHandle<Vec<u64>>)>,
}

#[async_trait]
impl StreamWriter for ObjectStreamWriter {
    async fn write(&mut self, frame: &Frame) -> Result<WriteOutcome, SinkError> {
        let ms = frame.relative_ms;
        if self.known.contains(&ms) {
            return Ok(WriteOutcome::Duplicate);
        }
        let key = self.stream.clone().join(layout::frame_file_name(ms));
        let created = self
            .shared
            .bucket
            .create(&key, frame.png.clone())
            .await
            .map_err(ObjectError::from)?;
        self.known.insert(ms);
        if created == Created::Existed {
            return Ok(WriteOutcome::Duplicate);
        }
        let record = FrameRecord::of(frame);
        let line = json_line(&record, "a manifest line")?;
        {
            let mut manifest = self.manifest.lock().await;
            manifest.push(line);
            if manifest.is_full()
                && let Err(error) = manifest.flush(&self.shared).await
            {
                tracing::warn!(%error, "could not add saved frames to the manifest; trying again later");
            }
        }
        // The frame is saved: a summary that cannot be written now is written later, and
        // participant.json with the participant's next frame.
        let noted = self
            .recording
            .state
            .lock()
            .await
            .note_frame(&self.shared, &self.recording.key, &self.folder, frame)
            .await;
        if let Err(error) = noted {
            tracing::warn!(%error, "could not update participant.json or recording.json; trying again later");
        }
        Ok(WriteOutcome::Saved {
            bytes: frame.png.len() as u64,
        })
    }

    async fn close(mut self: Box<Self>) -> Result<(), SinkError> {
        let mut recovered = Ok(());
        if let Some((stop, flusher)) = self.flusher.take() {
            stop.cancel();
            let young = flusher.await.map_err(ObjectError::from)?;
            // Closing before they settled: look at them now rather than never.
            if !young.is_empty() {
                recovered = self
                    .shared
                    .recover_late(&self.stream, &young, &self.manifest)
                    .await;
            }
        }
        let flushed = self.manifest.lock().await.flush(&self.shared).await;
        let summarised = self
            .recording
            .state
            .lock()
            .await
            .flush_summary(&self.shared, &self.recording.key)
            .await;
        recovered?;
        flushed?;
        Ok(summarised?)
    }
}

impl Drop for ObjectStreamWriter {
    fn drop(&mut self) {
        // A writer dropped without `close` (a panic) stops flushing with it.
        if let Some((_, flusher)) = &self.flusher {
            flusher.abort();
        }
    }
}
