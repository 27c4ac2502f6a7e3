//! `recall-frames copy-to-bucket`: copies the recordings saved in DATA_DIR into the bucket
//! that BUCKET_NAME names, for a server moving from a volume to a bucket.
//!
//! Every frame, event and audio chunk goes through the bucket's own sink, as if its bot were
//! streaming it again: the same keys, manifests and summaries, no frame ever replaced (one
//! already in the bucket is a duplicate), events already in the bucket not added twice, and
//! each audio chunk replayed from its manifest line with the samples the pieces hold at its
//! place (a chunk whose samples the bucket's track already has is a duplicate). What the
//! server fetched from Recall after the call is copied file by file (`recall`). A copy that
//! stops half-way is finished by running it again.

mod recall;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures_util::TryStreamExt as _;
use serde::Serialize;

use crate::Config;
use crate::audio::{
    AudioChunk, AudioSource, AudioTrackKey, BYTES_PER_SAMPLE, PIECE_SAMPLES, WAV_HEADER_BYTES,
};
use crate::catalog::{AudioTrackView, Catalog, CatalogError, ParticipantDetail, RecordingOverview};
use crate::frame::{Frame, FrameTime, ParticipantEvent, ParticipantEventKind, RecordingInfo};
use crate::layout::{self, AudioRecord, FrameRecord, ParticipantClaim};
use crate::recorder::claim_folder;
use crate::sink::{AudioOutcome, FrameSink, WriteOutcome};
use crate::store::fs::FsStore;
use crate::store::{Store, read_whole_log};

/// DATA_DIR, read as the catalog reads it, and as its raw logs where the copy must keep
/// every line as written.
struct Source {
    catalog: Catalog,
    store: Arc<dyn Store>,
}

/// What a copy did, recording by recording.
#[derive(Debug, Default, Serialize)]
pub struct CopyReport {
    pub recordings: Vec<RecordingCopied>,
    /// Bots' status webhooks added to the bucket's logs (every bot's, not only the copied
    /// recordings').
    pub bot_statuses: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct RecordingCopied {
    pub id: String,
    /// Frames written to the bucket.
    pub frames: u64,
    /// Frames the bucket already had at their millisecond (an earlier copy, or the bot).
    pub frames_already_there: u64,
    pub events: u64,
    pub events_already_there: u64,
    /// Audio chunks that added samples to the bucket's tracks.
    pub audio_chunks: u64,
    /// Audio chunks whose every sample the bucket's track already had.
    pub audio_chunks_already_there: u64,
    /// Recall's files (MP4s, audio) stored in the bucket, and their bytes.
    pub recall_parts: u64,
    pub recall_bytes: u64,
    /// Recall's files the bucket already had (an earlier copy, or a fetch into the bucket).
    pub recall_parts_already_there: u64,
    /// Manifest lines or events that could not be copied, each with the reason; these are
    /// also logged. The copy goes on without them.
    pub skipped: Vec<String>,
}

impl CopyReport {
    pub fn skipped(&self) -> usize {
        self.recordings.iter().map(|r| r.skipped.len()).sum()
    }
}

/// Copies every recording in `config.data_dir` into the configured bucket.
pub async fn copy_to_bucket(config: &Config) -> anyhow::Result<CopyReport> {
    if config.bucket_name.is_none() {
        bail!("copy-to-bucket needs BUCKET_NAME (and the bucket's AWS_* settings)");
    }
    config.check().map_err(anyhow::Error::msg)?;
    // Read only: a server may still be writing DATA_DIR.
    let disk: Arc<dyn Store> = Arc::new(FsStore::at(config.data_dir.clone()));
    // Deleted recordings (and those whose deletion a crash cut short) stay behind; their
    // tombstones go along, so that the bucket refuses them too.
    let deletions = crate::deletion::Deletions::load(disk.clone())
        .await
        .context("cannot read the tombstones of deleted recordings in DATA_DIR")?;
    let from = Source {
        catalog: Catalog::new(deletions.guarded(), config.catalog_cache_frames),
        store: deletions.guarded(),
    };
    let to = crate::Storage::open(config).await?;
    if !to.store.is_shared() {
        bail!("BUCKET_NAME is set, so the storage should be a bucket");
    }
    let mut report = CopyReport::default();
    let recordings = from
        .catalog
        .recordings()
        .await
        .with_context(|| format!("cannot list DATA_DIR {}", config.data_dir.display()))?;
    for overview in recordings {
        let copied = copy_recording(&from, to.store.as_ref(), &to.sink, &to.catalog, &overview)
            .await
            .with_context(|| format!("copying recording {}", overview.id))?;
        tracing::info!(
            recording = %copied.id,
            frames = copied.frames,
            frames_already_there = copied.frames_already_there,
            events = copied.events,
            events_already_there = copied.events_already_there,
            audio_chunks = copied.audio_chunks,
            audio_chunks_already_there = copied.audio_chunks_already_there,
            recall_parts = copied.recall_parts,
            recall_bytes = copied.recall_bytes,
            recall_parts_already_there = copied.recall_parts_already_there,
            skipped = copied.skipped.len(),
            "recording copied"
        );
        report.recordings.push(copied);
    }
    to.sink.flush().await?;
    report.bot_statuses = recall::copy_bot_logs(from.store.as_ref(), to.store.as_ref()).await?;
    let tombstones = crate::deletion::copy_tombstones(disk.as_ref(), to.store.as_ref()).await?;
    if tombstones > 0 {
        tracing::info!(tombstones, "tombstones of deleted recordings copied");
    }
    Ok(report)
}

/// Copies one recording: its participants' folder names first, so that the bucket names
/// them as DATA_DIR does (unless it knows them already); then its events, in order; then
/// its frames, each carrying `participant.json`, which they leave as it is on disk; then
/// its audio tracks, the mixed one first; then what was fetched from Recall.
async fn copy_recording(
    from: &Source,
    store: &dyn Store,
    sink: &Arc<dyn FrameSink>,
    catalog: &Catalog,
    overview: &RecordingOverview,
) -> anyhow::Result<RecordingCopied> {
    let id = &overview.id;
    let detail = from.catalog.recording(id).await?;
    let recording = recording_info(overview);
    let mut copied = RecordingCopied {
        id: id.to_string(),
        ..RecordingCopied::default()
    };
    for participant in &detail.participants {
        let folder = ParticipantClaim {
            folder: participant.folder.clone(),
        };
        if folder.is_valid_for(participant.participant.id) {
            claim_folder(store, id, participant.participant.id, folder.folder).await?;
        }
    }

    // Events are told apart by their whole line: the bucket's copy of an event is
    // identical, down to its receipt time.
    let existing: HashSet<String> = catalog
        .events(id)
        .await?
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<_, _>>()?;
    for record in from.catalog.events(id).await? {
        if existing.contains(&serde_json::to_string(&record)?) {
            copied.events_already_there += 1;
            continue;
        }
        let Some(kind) = ParticipantEventKind::parse(&record.event) else {
            copied.skip(format!(
                "event {:?} is not a participant event",
                record.event
            ));
            continue;
        };
        let event = ParticipantEvent {
            kind,
            participant: record.participant,
            time: record.timestamp,
            data: record.data,
            recording: recording.clone(),
            received_at: record.received_at,
        };
        sink.record_event(&event).await?;
        copied.events += 1;
    }

    for participant in &detail.participants {
        copy_streams(from, sink, participant, &recording, &mut copied).await?;
    }
    let tracks =
        std::iter::once((None, AudioSource::Mixed)).chain(detail.participants.iter().map(|p| {
            (
                Some(p.participant.id),
                AudioSource::Participant(Arc::new(p.participant.clone())),
            )
        }));
    for (participant, source) in tracks {
        let track = AudioTrackKey {
            recording: id.clone(),
            participant,
        };
        copy_audio(from, sink, &track, source, &recording, &mut copied).await?;
    }
    recall::copy_recall_media(from, store, &detail, &mut copied).await?;
    Ok(copied)
}

/// Replays one audio track chunk by chunk, in manifest order, each with the samples the
/// pieces hold at its place and the times its line gives. In that order the bucket's
/// timeline makes the same decisions DATA_DIR's did (the same segments, gaps, overlaps kept
/// as first written), so its pieces hold the same samples at the same places.
async fn copy_audio(
    from: &Source,
    sink: &Arc<dyn FrameSink>,
    track: &AudioTrackKey,
    source: AudioSource,
    recording: &RecordingInfo,
    copied: &mut RecordingCopied,
) -> anyhow::Result<()> {
    let view = match from.catalog.audio(track).await {
        Ok(view) => view,
        Err(CatalogError::NotFound) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let manifest = view.folder.join(layout::AUDIO_MANIFEST);
    let mut samples = TrackSamples::new(&from.catalog, &view);
    let recording = Arc::new(recording.clone());
    for line in read_whole_log(from.store.as_ref(), &manifest).await? {
        let record = match serde_json::from_slice::<AudioRecord>(&line) {
            Ok(record) => record,
            Err(error) => {
                copied.skip(format!("{track}: {error}"));
                continue;
            }
        };
        // Segments and gaps follow from the chunks: the bucket's timeline makes its own.
        let AudioRecord::Chunk {
            start_sample,
            start,
            absolute,
            samples: count,
            received_at,
            ..
        } = record
        else {
            continue;
        };
        let pcm = match samples.read(start_sample, count).await {
            Ok(pcm) => pcm,
            Err(why) => {
                copied.skip(format!(
                    "{track}: the chunk at sample {start_sample}: {why}"
                ));
                continue;
            }
        };
        let chunk = AudioChunk {
            source: source.clone(),
            time: FrameTime {
                relative: start,
                absolute,
            },
            start_sample,
            pcm,
            recording: recording.clone(),
            received_at,
            received: std::time::Instant::now(),
        };
        match sink.record_audio(&chunk).await? {
            AudioOutcome::Saved { .. } => copied.audio_chunks += 1,
            AudioOutcome::Duplicate => copied.audio_chunks_already_there += 1,
        }
    }
    Ok(())
}

/// A track's samples read a piece's length at a time: chunks come in about timeline order,
/// so each stretch of the track is read about once rather than once per chunk.
struct TrackSamples<'a> {
    catalog: &'a Catalog,
    view: &'a AudioTrackView,
    /// The samples from `first` on, as s16le bytes.
    first: u64,
    window: Bytes,
}

impl<'a> TrackSamples<'a> {
    fn new(catalog: &'a Catalog, view: &'a AudioTrackView) -> Self {
        TrackSamples {
            catalog,
            view,
            first: 0,
            window: Bytes::new(),
        }
    }

    /// The samples `[start, start + count)` as s16le bytes; an error when a piece does not
    /// hold them all (the track's silence is no chunk's samples).
    async fn read(&mut self, start: u64, count: u64) -> Result<Bytes, String> {
        let end = start + count;
        if !self.held(start, end) {
            return Err(format!(
                "samples {start} to {end} are not all in the track's pieces"
            ));
        }
        let in_window = self.window.len() as u64 / BYTES_PER_SAMPLE;
        if start < self.first || end > self.first + in_window {
            let to = (start + count.max(PIECE_SAMPLES)).min(self.view.stored.end());
            let byte = |sample: u64| WAV_HEADER_BYTES + sample * BYTES_PER_SAMPLE;
            let parts: Vec<Bytes> = self
                .catalog
                .wav_bytes(self.view, (byte(start), byte(to)))
                .try_collect()
                .await
                .map_err(|error| format!("cannot read its pieces: {error}"))?;
            self.first = start;
            self.window = parts.concat().into();
        }
        let at = |sample: u64| ((sample - self.first) * BYTES_PER_SAMPLE) as usize;
        Ok(self.window.slice(at(start)..at(end)))
    }

    /// Whether the pieces hold every sample of `[start, end)`.
    fn held(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        // Pieces never overlap: walk those from the one holding `start` on.
        let from = self.view.stored.pieces.range(..=start).next_back();
        let after = self.view.stored.pieces.range(start + 1..end);
        for (&first, &samples) in from.into_iter().chain(after) {
            if first > at {
                return false;
            }
            at = at.max(first + samples);
            if at >= end {
                return true;
            }
        }
        at >= end
    }
}

/// Copies each of a participant's streams, frame by frame in manifest order, with the
/// times, sizes and receipt times its manifest lines give.
async fn copy_streams(
    from: &Source,
    sink: &Arc<dyn FrameSink>,
    participant: &ParticipantDetail,
    recording: &RecordingInfo,
    copied: &mut RecordingCopied,
) -> anyhow::Result<()> {
    for stream in &participant.streams {
        let key = &stream.key;
        // Every line as written, so that the bucket's lines are the disk's, in their order.
        let manifest = layout::stream_key(&key.recording, &participant.folder, key.kind)
            .join(layout::FRAMES_MANIFEST);
        let mut writer = None;
        for line in read_whole_log(from.store.as_ref(), &manifest).await? {
            let (relative_ms, record) = match FrameRecord::parse_line(&line) {
                Ok(parsed) => parsed,
                Err(error) => {
                    copied.skip(format!("{key}: {error}"));
                    continue;
                }
            };
            let png = match from.catalog.frame_bytes(key, relative_ms).await {
                Ok(png) if png.len() as u64 == record.bytes => png,
                Ok(png) => {
                    copied.skip(format!(
                        "{key}/{}: {} bytes where the manifest says {}",
                        record.file,
                        png.len(),
                        record.bytes
                    ));
                    continue;
                }
                Err(error) => {
                    copied.skip(format!("{key}/{}: {error}", record.file));
                    continue;
                }
            };
            let frame = Frame {
                key: key.clone(),
                time: FrameTime {
                    relative: record.relative,
                    absolute: record.absolute,
                },
                relative_ms,
                png,
                width: record.width,
                height: record.height,
                participant: participant.participant.clone(),
                recording: recording.clone(),
                received_at: record.received_at,
                received: std::time::Instant::now(),
            };
            let writer = match &mut writer {
                Some(writer) => writer,
                None => writer.insert(sink.open_stream(&frame).await?),
            };
            match writer.write(&frame).await? {
                WriteOutcome::Saved { .. } => copied.frames += 1,
                WriteOutcome::Duplicate => copied.frames_already_there += 1,
            }
        }
        if let Some(writer) = writer {
            writer.close().await?;
        }
    }
    Ok(())
}

impl RecordingCopied {
    fn skip(&mut self, why: String) {
        tracing::warn!(recording = %self.id, "not copied: {why}");
        self.skipped.push(why);
    }
}

/// The recording's context as its `recording.json` has it (only its id without one).
fn recording_info(overview: &RecordingOverview) -> RecordingInfo {
    let summary = overview.summary.as_ref();
    RecordingInfo {
        id: overview.id.clone(),
        metadata: summary.map_or(serde_json::Value::Null, |s| s.recording.metadata.clone()),
        bot: summary.and_then(|s| s.bot.clone()),
        realtime_endpoint: summary.and_then(|s| s.realtime_endpoint.clone()),
        video_separate: summary.and_then(|s| s.video_separate.clone()),
        participant_events: summary.and_then(|s| s.participant_events.clone()),
        audio_separate: summary.and_then(|s| s.audio_separate.clone()),
    }
}
