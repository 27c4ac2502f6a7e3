//! Exports: a stream as an MP4 with its true timing and its participant's sound, made by
//! ffmpeg as a background job. Jobs run a few at a time at a lower priority, report their
//! progress, can be cancelled, and their results are stored beside the recording through
//! the [`Store`], so that the same request later is answered at once, until the recording
//! gets new frames or sound.
//!
//! A job's record is `<recording>/exports/<job>.json`, its result
//! `<recording>/exports/<job>-<source>.mp4`, written whole by [`Store::create_from_file`]
//! once ffmpeg has finished: a partial output is never where a download looks.

pub mod client;
pub mod ffmpeg;
pub mod gallery;
pub mod looks;
pub mod plan;
pub mod render;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use jiff::Timestamp;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::ffmpeg::Ffmpeg;
use self::gallery::GalleryRender;
use self::render::{RenderError, StreamRender};
use crate::audio::AudioTrackKey;
use crate::catalog::{Catalog, CatalogError};
use crate::frame::{ParticipantId, RecordingId, StreamKey, StreamKind};
use crate::layout;
use crate::store::{Key, Store, StoreError};

/// The folder of a recording that holds its exports.
pub const EXPORTS_FOLDER: &str = "exports";
/// How often a running job's record is written again: a record of a running job older than
/// three of these belongs to a server that stopped.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// What to export, as a client asks for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSpec {
    /// The participant whose stream is exported (not with `gallery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<u64>,
    /// The whole meeting as a gallery, in place of one participant's stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub gallery: bool,
    /// `webcam` (the default) or `screenshare`.
    #[serde(default = "webcam")]
    pub stream: StreamKind,
    /// Seconds into the recording where the video starts (its time 0); 0 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<f64>,
    /// Seconds into the recording where it ends; the stream's last frame when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<f64>,
    /// Pauses between frames longer than this many seconds are shown this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pause: Option<f64>,
    /// Writes the participant's name and the meeting time on the video.
    #[serde(default)]
    pub burn_in: bool,
}

fn webcam() -> StreamKind {
    StreamKind::Webcam
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Done,
    Failed,
    Cancelled,
}

/// A job as stored, and as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    pub recording: String,
    pub spec: ExportSpec,
    /// What the recording held when the job started (frames, last frame, sound): another
    /// source means the result is out of date.
    pub source: String,
    pub status: Status,
    pub frames: u64,
    pub frames_done: u64,
    /// The result's name in the exports folder, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
}

impl JobRecord {
    pub fn percent(&self) -> f64 {
        if self.status == Status::Done {
            100.0
        } else if self.frames == 0 {
            0.0
        } else {
            (self.frames_done as f64 * 100.0 / self.frames as f64).min(99.9)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "exports need ffmpeg, which this server cannot run ({0}): install the Debian package \
         `ffmpeg`, or set FFMPEG_PATH"
    )]
    Unavailable(String),
    #[error("{0}")]
    BadSpec(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The export jobs of this server.
#[derive(Clone)]
pub struct Exports {
    inner: Arc<Inner>,
}

struct Inner {
    ffmpeg: Result<Ffmpeg, String>,
    catalog: Arc<Catalog>,
    store: Arc<dyn Store>,
    slots: Semaphore,
    running: Mutex<HashMap<(RecordingId, String), Arc<Running>>>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

struct Running {
    cancel: CancellationToken,
    record: Mutex<JobRecord>,
    started: Mutex<Option<Instant>>,
}

impl Exports {
    /// The exports of a server with `catalog` over `store`: finds ffmpeg (`program`) and
    /// says once in the log when it cannot run it.
    pub async fn start(
        config: &crate::Config,
        catalog: Arc<Catalog>,
        store: Arc<dyn Store>,
        stop: CancellationToken,
    ) -> Exports {
        let ffmpeg = Ffmpeg::find(
            &config.ffmpeg_path,
            config.export_threads,
            config.export_nice,
            &config.export_preset,
        )
        .await
        .map_err(|error| error.to_string());
        match &ffmpeg {
            Ok(found) => tracing::info!(
                program = %found.program.display(), version = found.version,
                "exports run ffmpeg: {} at once, {} thread(s) each, nice {}",
                config.export_concurrency, config.export_threads, config.export_nice
            ),
            Err(error) => tracing::warn!(
                %error,
                "exports are off: ffmpeg cannot be run (install the Debian package `{}` or set \
                 FFMPEG_PATH); everything else works",
                ffmpeg::PACKAGE
            ),
        }
        Exports {
            inner: Arc::new(Inner {
                ffmpeg,
                catalog,
                store,
                slots: Semaphore::new(config.export_concurrency),
                running: Mutex::default(),
                tasks: TaskTracker::new(),
                stop,
            }),
        }
    }

    /// The ffmpeg exports run, or why there is none.
    pub fn ffmpeg(&self) -> Result<&Ffmpeg, ExportError> {
        self.inner
            .ffmpeg
            .as_ref()
            .map_err(|why| ExportError::Unavailable(why.clone()))
    }

    /// The store results are kept in.
    pub fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// Waits up to `within` for running jobs to stop after shutdown cancelled them (each
    /// records itself as failed); `false` when some did not.
    pub async fn close(&self, within: Duration) -> bool {
        self.inner.tasks.close();
        tokio::time::timeout(within, self.inner.tasks.wait())
            .await
            .is_ok()
    }

    /// Starts exporting `spec` of `recording`, or answers with the job that already has (or
    /// is making) the same result. `true` with a job just started.
    pub async fn start_job(
        &self,
        recording: &RecordingId,
        spec: ExportSpec,
    ) -> Result<(JobRecord, bool), ExportError> {
        self.ffmpeg()?;
        let render = self.checked(recording, &spec).await?;
        let source = self.source(&render).await?;
        let id = job_id(recording, &spec);
        if let Some(running) = self.running(recording, &id) {
            let record = running.record.lock().clone();
            if record.source == source {
                return Ok((self.live(&running), false));
            }
            // New frames since: this one is out of date before it ends.
            running.cancel.cancel();
        } else if let Some(record) = self.stored(recording, &id).await?
            && record.status == Status::Done
            && record.source == source
        {
            return Ok((record, false));
        }
        let now = Timestamp::now();
        let record = JobRecord {
            id: id.clone(),
            recording: recording.to_string(),
            spec,
            source,
            status: Status::Queued,
            frames: 0,
            frames_done: 0,
            file: None,
            bytes: None,
            error: None,
            created_at: now,
            updated_at: now,
            eta_seconds: None,
        };
        self.save(recording, &record).await?;
        let running = Arc::new(Running {
            cancel: self.inner.stop.child_token(),
            record: Mutex::new(record.clone()),
            started: Mutex::new(None),
        });
        self.inner
            .running
            .lock()
            .insert((recording.clone(), id.clone()), running.clone());
        let this = self.clone();
        let recording = recording.clone();
        self.inner.tasks.spawn(async move {
            this.run_job(&recording, &running, render).await;
            let mut jobs = this.inner.running.lock();
            if jobs
                .get(&(recording.clone(), id.clone()))
                .is_some_and(|current| Arc::ptr_eq(current, &running))
            {
                jobs.remove(&(recording, id));
            }
        });
        Ok((record, true))
    }

    /// A job as it stands: live from this server while it runs here; from its record
    /// otherwise, where a job left running by a server that stopped is failed.
    pub async fn job(&self, recording: &RecordingId, id: &str) -> Result<JobRecord, ExportError> {
        if let Some(running) = self.running(recording, id) {
            return Ok(self.live(&running));
        }
        let mut record = self
            .stored(recording, id)
            .await?
            .ok_or(ExportError::NotFound)?;
        let stale = Timestamp::now()
            .duration_since(record.updated_at)
            .unsigned_abs()
            > HEARTBEAT * 3;
        if matches!(record.status, Status::Queued | Status::Running) && stale {
            record.status = Status::Failed;
            record.error =
                Some("interrupted: the server running it stopped; start it again".into());
            record.updated_at = Timestamp::now();
            self.save(recording, &record).await?;
        }
        Ok(record)
    }

    /// Every job of a recording, newest first.
    pub async fn jobs(&self, recording: &RecordingId) -> Result<Vec<JobRecord>, ExportError> {
        let folder = exports_key(recording);
        let mut ids: Vec<String> = self
            .inner
            .store
            .list(&folder)
            .await?
            .into_iter()
            .filter_map(|listed| {
                let name = listed.key.name()?;
                let id = name.strip_suffix(".json")?;
                is_job_id(id).then(|| id.to_owned())
            })
            .collect();
        ids.dedup();
        let mut jobs = Vec::new();
        for id in ids {
            match self.job(recording, &id).await {
                Ok(job) => jobs.push(job),
                Err(ExportError::NotFound) => {}
                Err(error) => return Err(error),
            }
        }
        jobs.sort_by_key(|job| std::cmp::Reverse(job.created_at));
        Ok(jobs)
    }

    /// Cancels a job and removes its result: nothing of it is served afterwards.
    pub async fn cancel(
        &self,
        recording: &RecordingId,
        id: &str,
    ) -> Result<JobRecord, ExportError> {
        let running = self.running(recording, id);
        if let Some(running) = &running {
            running.cancel.cancel();
        }
        let mut record = match running {
            Some(running) => running.record.lock().clone(),
            None => self
                .stored(recording, id)
                .await?
                .ok_or(ExportError::NotFound)?,
        };
        if let Some(file) = record.file.take() {
            self.inner
                .store
                .delete(&exports_key(recording).join(&file))
                .await?;
        }
        record.status = Status::Cancelled;
        record.bytes = None;
        record.eta_seconds = None;
        record.updated_at = Timestamp::now();
        self.save(recording, &record).await?;
        Ok(record)
    }

    /// The stored result of a finished job: its key.
    pub async fn result(&self, recording: &RecordingId, id: &str) -> Result<Key, ExportError> {
        // A job running here is done once its file is stored, which may be a moment before
        // its record is saved and it leaves the running jobs; until then an older result
        // is never served in its place.
        let record = match self.running(recording, id) {
            Some(running) => running.record.lock().clone(),
            None => self
                .stored(recording, id)
                .await?
                .ok_or(ExportError::NotFound)?,
        };
        match (record.status, record.file) {
            (Status::Done, Some(file)) => Ok(exports_key(recording).join(&file)),
            _ => Err(ExportError::NotFound),
        }
    }

    fn running(&self, recording: &RecordingId, id: &str) -> Option<Arc<Running>> {
        self.inner
            .running
            .lock()
            .get(&(recording.clone(), id.to_owned()))
            .cloned()
    }

    /// A running job's record with its estimate of the time left.
    fn live(&self, running: &Running) -> JobRecord {
        let mut record = running.record.lock().clone();
        if let Some(started) = *running.started.lock()
            && record.frames_done > 0
        {
            let per_frame = started.elapsed().as_secs_f64() / record.frames_done as f64;
            record.eta_seconds =
                Some(per_frame * record.frames.saturating_sub(record.frames_done) as f64);
        }
        record
    }

    async fn stored(
        &self,
        recording: &RecordingId,
        id: &str,
    ) -> Result<Option<JobRecord>, ExportError> {
        let key = exports_key(recording).join(&format!("{id}.json"));
        let Some(found) = self.inner.store.get(&key).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&found.bytes) {
            Ok(record) => Ok(Some(record)),
            Err(error) => {
                tracing::warn!(%key, %error, "an export record that cannot be read is ignored");
                Ok(None)
            }
        }
    }

    async fn save(&self, recording: &RecordingId, record: &JobRecord) -> Result<(), ExportError> {
        let key = exports_key(recording).join(&format!("{}.json", record.id));
        let bytes = serde_json::to_vec(record).expect("a record serializes");
        self.inner.store.put(&key, Bytes::from(bytes)).await?;
        Ok(())
    }

    /// What to render for `spec`, checked against what is saved.
    async fn checked(
        &self,
        recording: &RecordingId,
        spec: &ExportSpec,
    ) -> Result<Render, ExportError> {
        let seconds = |name: &str, value: Option<f64>| -> Result<Option<u64>, ExportError> {
            match value {
                None => Ok(None),
                Some(s) if s.is_finite() && (0.0..=1e6).contains(&s) => {
                    Ok(Some((s * 1000.0).round() as u64))
                }
                Some(_) => Err(ExportError::BadSpec(format!(
                    "`{name}` must be seconds from 0 to 1000000"
                ))),
            }
        };
        let from_ms = seconds("from", spec.from)?.unwrap_or(0);
        let to_ms = seconds("to", spec.to)?;
        if to_ms.is_some_and(|to| to <= from_ms) {
            return Err(ExportError::BadSpec("`to` must be after `from`".into()));
        }
        let max_pause_ms = seconds("max_pause", spec.max_pause)?;
        if max_pause_ms == Some(0) {
            return Err(ExportError::BadSpec(
                "`max_pause` must be more than 0".into(),
            ));
        }
        let participant = match (spec.participant, spec.gallery) {
            (None, true) => {
                self.inner.catalog.recording(recording).await?;
                return Ok(Render::Gallery(GalleryRender {
                    recording: recording.clone(),
                    from_ms,
                    to_ms,
                }));
            }
            (Some(participant), false) => participant,
            _ => {
                return Err(ExportError::BadSpec(
                    "give either `participant` (a stream) or `\"gallery\": true` (the whole meeting)"
                        .into(),
                ));
            }
        };
        let stream = StreamKey {
            recording: recording.clone(),
            participant: ParticipantId(participant),
            kind: spec.stream,
        };
        let detail = self.inner.catalog.recording(recording).await?;
        let who = detail
            .participants
            .iter()
            .find(|p| p.participant.id == stream.participant)
            .ok_or(ExportError::NotFound)?;
        if !who.streams.iter().any(|s| s.key.kind == stream.kind) {
            return Err(ExportError::NotFound);
        }
        let burn_in = spec.burn_in.then(|| {
            who.participant
                .name
                .clone()
                .unwrap_or_else(|| format!("Participant {participant}"))
        });
        Ok(Render::Stream(StreamRender {
            stream,
            from_ms,
            to_ms,
            max_pause_ms,
            burn_in,
        }))
    }

    /// What the export is made of (the streams' frames, the sound, the events a gallery
    /// reads), in a few characters.
    async fn source(&self, render: &Render) -> Result<String, ExportError> {
        let catalog = &self.inner.catalog;
        let mut hash = sha2::Sha256::new();
        match render {
            Render::Stream(render) => self.source_of(&render.stream, &mut hash).await?,
            Render::Gallery(gallery) => {
                let detail = catalog.recording(&gallery.recording).await?;
                for participant in &detail.participants {
                    for stream in &participant.streams {
                        self.source_of(&stream.key, &mut hash).await?;
                    }
                }
                hash.update(
                    catalog
                        .events(&gallery.recording)
                        .await?
                        .len()
                        .to_le_bytes(),
                );
            }
        }
        Ok(hex(&hash.finalize())[..12].to_owned())
    }

    async fn source_of(
        &self,
        stream: &StreamKey,
        hash: &mut sha2::Sha256,
    ) -> Result<(), ExportError> {
        let catalog = &self.inner.catalog;
        let frames = render::all_frames(catalog, stream).await?;
        let track = AudioTrackKey {
            recording: stream.recording.clone(),
            participant: Some(stream.participant),
        };
        let audio = match catalog.audio_pieces(&track).await {
            Ok(pieces) => format!(
                "{:?}",
                pieces
                    .listed
                    .iter()
                    .map(|l| (&l.key, l.size))
                    .collect::<Vec<_>>()
            ),
            Err(CatalogError::NotFound) => String::new(),
            Err(error) => return Err(error.into()),
        };
        hash.update(stream.to_string().as_bytes());
        for frame in &frames {
            hash.update(frame.relative_ms.to_le_bytes());
        }
        hash.update(audio.as_bytes());
        Ok(())
    }

    async fn run_job(&self, recording: &RecordingId, running: &Running, render: Render) {
        let what = match &render {
            Render::Stream(render) => render.stream.to_string(),
            Render::Gallery(_) => "gallery".to_owned(),
        };
        let span = tracing::info_span!("export", recording = %recording, what, job = running.record.lock().id);
        let outcome =
            tracing::Instrument::instrument(self.work(recording, running, &render), span.clone())
                .await;
        let _entered = span.enter();
        let mut record = running.record.lock().clone();
        record.updated_at = Timestamp::now();
        record.eta_seconds = None;
        match outcome {
            Ok((file, bytes)) => {
                tracing::info!(file, bytes, "export done");
                record.status = Status::Done;
                record.frames_done = record.frames;
                record.file = Some(file);
                record.bytes = Some(bytes);
            }
            Err(JobEnd::Cancelled) if self.inner.stop.is_cancelled() => {
                tracing::warn!("export interrupted by shutdown");
                record.status = Status::Failed;
                record.error = Some("interrupted: the server shut down; start it again".into());
            }
            Err(JobEnd::Cancelled) => {
                tracing::info!("export cancelled");
                // The canceller records it; a replaced job's record is the new job's.
                return;
            }
            Err(JobEnd::Failed(error)) => {
                tracing::error!(error = format!("{error:#}"), "export failed");
                record.status = Status::Failed;
                record.error = Some(match error {
                    JobFailure::Render(RenderError::NoFrames) => "the range holds no frame".into(),
                    _ => "the export failed; the server's log says why".into(),
                });
            }
        }
        *running.record.lock() = record.clone();
        if let Err(error) = self.save(recording, &record).await {
            tracing::error!(%error, "could not record the export's end");
        }
    }

    /// Waits for a slot, renders into a temporary folder, stores the result: its name and
    /// size.
    async fn work(
        &self,
        recording: &RecordingId,
        running: &Running,
        render: &Render,
    ) -> Result<(String, u64), JobEnd> {
        let cancel = &running.cancel;
        let _slot = tokio::select! {
            slot = self.inner.slots.acquire() => slot.map_err(|_| JobEnd::Cancelled)?,
            () = cancel.cancelled() => return Err(JobEnd::Cancelled),
        };
        let ffmpeg = self
            .ffmpeg()
            .map_err(|e| JobEnd::Failed(JobFailure::Other(e.to_string())))?;
        {
            let mut record = running.record.lock();
            record.status = Status::Running;
            record.updated_at = Timestamp::now();
        }
        *running.started.lock() = Some(Instant::now());
        let snapshot = running.record.lock().clone();
        self.save(recording, &snapshot)
            .await
            .map_err(|e| JobEnd::Failed(JobFailure::Other(e.to_string())))?;
        let work =
            tempfile::tempdir().map_err(|e| JobEnd::Failed(JobFailure::Other(e.to_string())))?;
        let out: PathBuf = work.path().join("export.mp4");
        let heartbeat = async {
            let mut ticks = tokio::time::interval(HEARTBEAT);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let record = {
                    let mut record = running.record.lock();
                    record.updated_at = Timestamp::now();
                    record.clone()
                };
                if let Err(error) = self.save(recording, &record).await {
                    tracing::warn!(%error, "could not write the export's progress");
                }
            }
        };
        let progress = |done, total| {
            let mut record = running.record.lock();
            record.frames = total;
            record.frames_done = done;
        };
        let catalog = &self.inner.catalog;
        let rendered = async {
            match render {
                Render::Stream(render) => {
                    render::render_stream(
                        ffmpeg,
                        catalog,
                        render,
                        work.path(),
                        &out,
                        cancel,
                        progress,
                    )
                    .await
                }
                Render::Gallery(render) => {
                    gallery::render_gallery(
                        ffmpeg,
                        catalog,
                        render,
                        work.path(),
                        &out,
                        cancel,
                        progress,
                    )
                    .await
                }
            }
        };
        let rendered = tokio::select! {
            rendered = rendered => rendered,
            () = heartbeat => unreachable!("the heartbeat never ends"),
        };
        match rendered {
            Ok(_) => {}
            Err(RenderError::Ffmpeg(ffmpeg::FfmpegError::Cancelled)) => {
                return Err(JobEnd::Cancelled);
            }
            Err(error) => return Err(JobEnd::Failed(JobFailure::Render(error))),
        }
        if cancel.is_cancelled() {
            return Err(JobEnd::Cancelled);
        }
        let (id, source) = {
            let record = running.record.lock();
            (record.id.clone(), record.source.clone())
        };
        let file = format!("{id}-{source}.mp4");
        let key = exports_key(recording).join(&file);
        let bytes = tokio::fs::metadata(&out)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        self.inner
            .store
            .create_from_file(&key, &out)
            .await
            .map_err(|e| JobEnd::Failed(JobFailure::Other(e.to_string())))?;
        if cancel.is_cancelled() {
            // Cancelled while it was stored: the canceller may have looked before.
            let _ = self.inner.store.delete(&key).await;
            return Err(JobEnd::Cancelled);
        }
        Ok((file, bytes))
    }
}

/// What a job renders.
enum Render {
    Stream(StreamRender),
    Gallery(GalleryRender),
}

enum JobEnd {
    Cancelled,
    Failed(JobFailure),
}

#[derive(Debug, thiserror::Error)]
enum JobFailure {
    #[error(transparent)]
    Render(RenderError),
    #[error("{0}")]
    Other(String),
}

/// The folder of a recording's exports.
pub fn exports_key(recording: &RecordingId) -> Key {
    layout::recording_key(recording).join(EXPORTS_FOLDER)
}

/// A job's id: the same for the same request of the same recording.
fn job_id(recording: &RecordingId, spec: &ExportSpec) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(recording.as_str().as_bytes());
    hash.update(b"\n");
    hash.update(serde_json::to_vec(spec).expect("a spec serializes"));
    hex(&hash.finalize())[..16].to_owned()
}

/// Whether `text` is a job id as [`job_id`] makes them: what routes check first.
pub fn is_job_id(text: &str) -> bool {
    text.len() == 16
        && text
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
