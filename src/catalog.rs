//! Reading saved recordings back, through the same [`Store`] the recorder writes, for every
//! backend: the [`Catalog`] that the browse UI and the JSON API read through, the index of a
//! stream's frames and the cache that holds those indexes.
//!
//! A catalog speaks in the domain's names ([`RecordingId`], [`StreamKey`], milliseconds)
//! and in the keys of [`crate::layout`]; it never takes a path or a key from a client.
//!
//! Each stream's frames are listed from an in-memory index of its manifest. A manifest only
//! grows, so bringing an index up to date reads only what each part gained since the last
//! read ([`read_log`]): never a read of every frame. Indexes are kept in a least recently
//! used cache bounded by the number of frames they hold. A frame listed twice (a writer
//! that went on in a new chunk) is indexed once; a line rebuilt after a crash gives way to
//! the writer's own.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt as _;
use jiff::Timestamp;
use lru::LruCache;
use parking_lot::Mutex;
use serde::Serialize;

use crate::frame::{FrameTime, Participant, ParticipantId, RecordingId, StreamKey, StreamKind};
use crate::layout::{self, EventRecord, FrameRecord, RecordingSummary};
use crate::recall::media::MediaKind;
use crate::recall_media;
use crate::store::{Key, LogCursor, Store, StoreError, Streamed, read_log, read_whole_log};
use crate::title::Title;

mod audio;
mod replay;

pub use self::audio::{AudioPieces, AudioTrackView, RecordingAudio};
pub use self::replay::FrameSpan;

/// Reads in flight at once while a listing fans out (recordings, participants).
const PARALLEL: usize = 8;
/// Participant folders remembered: a folder's name never changes once chosen.
const REMEMBERED: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

/// Reads saved recordings. Every method answers [`CatalogError::NotFound`] for a recording,
/// participant, stream or frame that is not saved.
pub struct Catalog {
    store: Arc<dyn Store>,
    /// How long an index just brought up to date is used as it is: with a store whose logs
    /// are written in batches, a page of frames, a recording's streams and the list of
    /// recordings asked for at once need not list every chunk again.
    fresh_for: Duration,
    streams: Mutex<IndexCache<CachedStream>>,
    folders: Mutex<LruCache<(RecordingId, ParticipantId), String>>,
    /// Level summaries lately computed, each with the pieces it was computed from.
    levels: Mutex<LruCache<(crate::audio::AudioTrackKey, usize), audio::CachedLevels>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Work handed to the blocking pool did not finish (it panicked).
    #[error("a blocking task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),
}

/// Where a frame's bytes are, for a reader that wants a file (the export's renderer).
#[derive(Debug)]
pub enum FrameSource {
    /// A file on this machine. The catalog has checked that it is a regular file inside
    /// the data folder.
    File(PathBuf),
    /// Bytes a remote store returned.
    Bytes(Bytes),
}

/// One saved frame, as a page of a stream lists it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameInfo {
    /// The frame's name within its stream: `relative` in whole milliseconds.
    pub relative_ms: u64,
    /// Seconds since the recording started, as Recall sent it.
    pub relative: f64,
    /// Wall-clock time, when Recall sent one (frames recovered after a crash have none).
    pub absolute: Option<Timestamp>,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

impl FrameInfo {
    /// A manifest line as a catalog lists it.
    pub fn from_record(relative_ms: u64, record: &FrameRecord) -> FrameInfo {
        FrameInfo {
            relative_ms,
            relative: record.relative,
            absolute: record.absolute,
            width: record.width,
            height: record.height,
            bytes: record.bytes,
        }
    }
}

/// A page of a stream's frames.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FramePage {
    pub frames: Vec<FrameInfo>,
    /// Frames the whole stream has.
    pub total: usize,
    /// The `after` that continues this listing, when frames remain past this page.
    pub next_after: Option<u64>,
}

/// One stream of a participant, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    pub key: StreamKey,
    pub frames: usize,
    pub first: Option<FrameInfo>,
    pub last: Option<FrameInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantDetail {
    /// What `participant.json` says; only the id when it is missing or unreadable.
    pub participant: Participant,
    /// The participant's folder (or key prefix) name within the recording.
    pub folder: String,
    /// The streams that have frames, webcam first.
    pub streams: Vec<StreamSummary>,
}

/// A recording as the list of recordings shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingOverview {
    pub id: RecordingId,
    /// What people call it: from `recording.json`'s context, else when it started.
    pub title: Title,
    /// `recording.json`, when saved and readable.
    pub summary: Option<RecordingSummary>,
    pub participants: usize,
    /// Who took part, as each `participant.json` says, in folder order.
    pub people: Vec<Participant>,
    pub frames: u64,
    /// The earliest and latest frames across all streams.
    pub first_frame: Option<FrameTime>,
    pub last_frame: Option<FrameTime>,
    /// Wall-clock time the recording started, worked out from a frame's absolute and
    /// relative times.
    pub started_at: Option<Timestamp>,
    /// The newest frame of the stream with the most frames: a thumbnail.
    pub thumbnail: Option<(StreamKey, FrameInfo)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordingDetail {
    pub overview: RecordingOverview,
    pub participants: Vec<ParticipantDetail>,
}

/// One file of a saved recording, or one stream folder, named by where the layout puts it:
/// what a download of a recording or a stream holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedFile {
    /// Its path in the layout, `/`-separated (`rec_1/100-alice/participant.json`); for a
    /// stream, the folder its frames and `frames.jsonl` go in.
    pub path: String,
    pub content: SavedContent,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SavedContent {
    /// A file read whole, such as a summary; left out when absent.
    Whole(Key),
    /// A log (a `.jsonl` a store may keep in parts) as one file; left out when absent.
    Log(Key),
    /// A file too large to hold in memory (Recall's MP4s and audio, hundreds of MB),
    /// copied as it is read ([`Catalog::file_stream`]); left out when absent.
    Large(Key),
    /// Bytes read when the list was made: a manifest that names exactly the files listed
    /// with it, however it has grown since.
    Read(Bytes),
    /// A stream's frames, then its `frames.jsonl` listing exactly those frames
    /// ([`Catalog::manifest`] as it stands when the stream is reached).
    Stream(StreamKey),
}

impl SavedFile {
    fn at(key: Key, content: impl FnOnce(Key) -> SavedContent) -> SavedFile {
        SavedFile {
            path: key.as_str().to_owned(),
            content: content(key),
        }
    }
}

impl StreamSummary {
    /// The earliest and latest frame times of a set of streams.
    fn span<'a>(
        streams: impl Iterator<Item = &'a StreamSummary> + Clone,
    ) -> (Option<FrameInfo>, Option<FrameInfo>) {
        let first = streams
            .clone()
            .filter_map(|s| s.first)
            .min_by_key(|f| f.relative_ms);
        let last = streams.filter_map(|s| s.last).max_by_key(|f| f.relative_ms);
        (first, last)
    }
}

impl RecordingOverview {
    /// Sums up a recording from its participants' streams.
    pub fn from_participants(
        id: RecordingId,
        summary: Option<RecordingSummary>,
        participants: &[ParticipantDetail],
    ) -> Self {
        let streams = participants.iter().flat_map(|p| p.streams.iter());
        let (first, last) = StreamSummary::span(streams.clone());
        let time = |f: FrameInfo| FrameTime {
            relative: f.relative,
            absolute: f.absolute,
        };
        let started_at = streams
            .clone()
            .filter_map(|s| s.first)
            .chain(streams.clone().filter_map(|s| s.last))
            .find_map(|f| {
                let offset = jiff::SignedDuration::from_millis(f.relative_ms as i64);
                f.absolute?.checked_sub(offset).ok()
            });
        let thumbnail = streams
            .clone()
            .filter(|s| s.last.is_some())
            .max_by_key(|s| s.frames)
            .and_then(|s| Some((s.key.clone(), s.last?)));
        let title = summary
            .as_ref()
            .and_then(RecordingSummary::title)
            .unwrap_or_else(|| Title::fallback(first.and_then(|f| f.absolute).or(started_at)));
        RecordingOverview {
            id,
            title,
            summary,
            participants: participants.len(),
            people: participants.iter().map(|p| p.participant.clone()).collect(),
            frames: streams.map(|s| s.frames as u64).sum(),
            first_frame: first.map(time),
            last_frame: last.map(time),
            started_at,
            thumbnail,
        }
    }

    /// The id of the bot that recorded it, as `recording.json` has it.
    pub fn bot_id(&self) -> Option<String> {
        let bot = self.summary.as_ref()?.bot.as_ref()?;
        Some(match &bot.id {
            serde_json::Value::String(id) => id.clone(),
            other => other.to_string(),
        })
    }

    /// Seconds from the first frame to the last.
    pub fn duration(&self) -> Option<f64> {
        Some(self.last_frame?.relative - self.first_frame?.relative)
    }
}

/// A stream whose index is cached.
struct CachedStream {
    index: tokio::sync::Mutex<StreamIndex>,
    /// Frames in `index`, readable without its lock, for the cache budget.
    frames: AtomicUsize,
}

impl Indexed for CachedStream {
    fn frames(&self) -> usize {
        self.frames.load(Ordering::Relaxed)
    }
}

/// A stream's frames, indexed from its manifest and kept current by reading only what the
/// manifest gained since.
#[derive(Default)]
struct StreamIndex {
    cursor: LogCursor,
    frames: FrameIndex,
    refreshed_at: Option<Instant>,
}

impl StreamIndex {
    async fn refresh(&mut self, store: &dyn Store, manifest: &Key) -> Result<(), StoreError> {
        let read = read_log(store, manifest, &mut self.cursor).await?;
        if read.restarted {
            // Manifests only grow, but crash repair cuts a torn last line: start over.
            self.frames = FrameIndex::default();
        }
        self.frames.add_lines(&read.lines, manifest);
        self.refreshed_at = Some(Instant::now());
        Ok(())
    }
}

impl Catalog {
    /// A catalog of `store`, holding stream indexes of at most `frame_budget` frames in all.
    pub fn new(store: Arc<dyn Store>, frame_budget: usize) -> Self {
        Catalog {
            // An index is read again at every request where each line is written as it
            // comes; where lines come in batches, at most once per batch (and per second).
            fresh_for: store.log_interval().map_or(Duration::ZERO, |interval| {
                interval.min(Duration::from_secs(1))
            }),
            store,
            streams: Mutex::new(IndexCache::new(frame_budget)),
            folders: Mutex::new(LruCache::new(REMEMBERED)),
            levels: Mutex::new(LruCache::new(audio::LEVELS_REMEMBERED)),
        }
    }

    /// Forgets what is cached of a recording, once it is deleted: its stream indexes and
    /// participant folders.
    pub fn forget(&self, recording: &RecordingId) {
        self.streams.lock().forget(recording);
        let mut folders = self.folders.lock();
        let gone: Vec<(RecordingId, ParticipantId)> = folders
            .iter()
            .filter(|((id, _), _)| id == recording)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            folders.pop(&key);
        }
    }

    /// Every recording, newest first.
    pub async fn recordings(&self) -> Result<Vec<RecordingOverview>, CatalogError> {
        let ids: Vec<RecordingId> = self
            .store
            .list_folders(&Key::root())
            .await?
            .iter()
            // Dot-folders at the top are the server's own (the websocket token...).
            .filter(|name| !name.starts_with('.'))
            .filter_map(|name| RecordingId::parse(name))
            .collect();
        newest_first(ids, |id| async move { self.recording(&id).await }).await
    }

    /// One recording: its participants and their streams.
    pub async fn recording(&self, id: &RecordingId) -> Result<RecordingDetail, CatalogError> {
        if id.as_str().starts_with('.') {
            return Err(CatalogError::NotFound);
        }
        let summary_key = layout::recording_key(id).join(layout::RECORDING_FILE);
        let (summary, folders) = futures_util::try_join!(
            self.read_json::<RecordingSummary>(&summary_key),
            self.participant_folders(id),
        )?;
        if summary.is_none() && folders.is_empty() {
            return Err(CatalogError::NotFound);
        }
        let participants: Vec<ParticipantDetail> = futures_util::stream::iter(folders)
            .map(|(participant, folder)| self.participant_detail(id, participant, folder))
            .buffered(PARALLEL)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let overview = RecordingOverview::from_participants(id.clone(), summary, &participants);
        Ok(RecordingDetail {
            overview,
            participants,
        })
    }

    /// Everything a recording's folder holds that the catalog reads, in the layout's order:
    /// `recording.json`, `events.jsonl`, the mixed audio track, the statuses of the fetches
    /// from Recall, then each participant's `participant.json`, stream folders, audio track
    /// and the files fetched from Recall after the call. A new kind of file is one more
    /// line here.
    pub async fn recording_files(&self, id: &RecordingId) -> Result<Vec<SavedFile>, CatalogError> {
        let detail = self.recording(id).await?;
        let recording = layout::recording_key(id);
        let mut files = vec![
            SavedFile::at(recording.join(layout::RECORDING_FILE), SavedContent::Whole),
            SavedFile::at(recording.join(layout::EVENTS_LOG), SavedContent::Log),
        ];
        files.extend(self.audio_files(layout::audio_key(id, None)).await?);
        let statuses = MediaKind::ALL.map(|kind| recall_media::status_key(id, kind));
        files.extend(statuses.map(|key| SavedFile::at(key, SavedContent::Whole)));
        for participant in &detail.participants {
            let folder = recording.join(&participant.folder);
            files.push(SavedFile::at(
                folder.join(layout::PARTICIPANT_FILE),
                SavedContent::Whole,
            ));
            for stream in &participant.streams {
                files.push(SavedFile::at(folder.join(stream.key.kind.as_str()), |_| {
                    SavedContent::Stream(stream.key.clone())
                }));
            }
            let audio = layout::audio_key(id, Some(&participant.folder));
            files.extend(self.audio_files(audio).await?);
            files.extend(self.recall_files(id, &participant.folder).await?);
        }
        Ok(files)
    }

    /// A participant's files fetched from Recall, then their manifest `recall/media.jsonl`
    /// as it was read: only the files it lists, since a file stored by a fetch that stopped
    /// before writing its line is not yet part of the recording, and only the lines read
    /// now, so that a part fetched while the ZIP is written is in neither.
    async fn recall_files(
        &self,
        id: &RecordingId,
        folder: &str,
    ) -> Result<Vec<SavedFile>, CatalogError> {
        let (records, text) = recall_media::media_manifest(self.store.as_ref(), id, folder).await?;
        let media = recall_media::participant_media_key(id, folder);
        let manifest = (!text.is_empty()).then(|| SavedFile {
            path: media.join(recall_media::MEDIA_MANIFEST).as_str().to_owned(),
            content: SavedContent::Read(text),
        });
        Ok(records
            .iter()
            // The names are the fetch's own; a line that names anything else is not
            // followed.
            .filter(|record| recall_media::is_media_file_name(&record.file))
            .map(|record| SavedFile::at(media.join(&record.file), SavedContent::Large))
            .chain(manifest)
            .collect())
    }

    /// A stream folder to download under `path`; [`CatalogError::NotFound`] when the stream
    /// is not saved.
    pub async fn stream_files(
        &self,
        stream: &StreamKey,
        path: String,
    ) -> Result<SavedFile, CatalogError> {
        // Listing one frame finds the stream, through the index the pages use.
        self.frames(stream, None, 1).await?;
        Ok(SavedFile {
            path,
            content: SavedContent::Stream(stream.clone()),
        })
    }

    /// The bytes of a file read whole ([`SavedContent::Whole`]); `None` when absent.
    pub async fn whole_file(&self, key: &Key) -> Result<Option<Bytes>, CatalogError> {
        Ok(self.store.get(key).await?.map(|found| found.bytes))
    }

    /// A large file's bytes as they are read ([`SavedContent::Large`]); `None` when absent.
    pub async fn file_stream(&self, key: &Key) -> Result<Option<Streamed>, CatalogError> {
        Ok(self.store.get_stream(key, None).await?)
    }

    /// A log's complete lines as one file ([`SavedContent::Log`]); `None` when absent.
    pub async fn whole_log(&self, log: &Key) -> Result<Option<Bytes>, CatalogError> {
        let mut cursor = LogCursor::default();
        let lines = read_log(self.store.as_ref(), log, &mut cursor).await?.lines;
        if !cursor.found_log() {
            return Ok(None);
        }
        let mut text = Vec::with_capacity(lines.iter().map(|line| line.len() + 1).sum());
        for line in lines {
            text.extend_from_slice(&line);
            text.push(b'\n');
        }
        Ok(Some(text.into()))
    }

    /// A recording's participant events (`events.jsonl`), in the order they were received;
    /// empty when it has none.
    pub async fn events(&self, id: &RecordingId) -> Result<Vec<EventRecord>, CatalogError> {
        let log = layout::recording_key(id).join(layout::EVENTS_LOG);
        let lines = read_whole_log(self.store.as_ref(), &log).await?;
        let mut events = parse_events(&lines, &log);
        // Several writers' lines interleave in time: arrival order across them. The sort is
        // stable, so each writer's own order stands.
        events.sort_by_key(|event| event.received_at);
        Ok(events)
    }

    /// Up to `limit` of a stream's frames in time order, starting after `after_ms` (from
    /// the first frame when `None`).
    pub async fn frames(
        &self,
        stream: &StreamKey,
        after_ms: Option<u64>,
        limit: usize,
    ) -> Result<FramePage, CatalogError> {
        let key = self.stream_key(stream).await?;
        let (page, found) = self
            .read_index(stream, &key, |index| {
                (index.frames.page(after_ms, limit), index.cursor.found_log())
            })
            .await?;
        if !found {
            return Err(CatalogError::NotFound);
        }
        Ok(page)
    }

    /// The stream's frame at or before `ms` (its first frame if `ms` is earlier still), with
    /// its place in the stream from 0: where a link to a moment opens. `None` for a stream
    /// with no frames.
    pub async fn frame_at(
        &self,
        stream: &StreamKey,
        ms: u64,
    ) -> Result<Option<(usize, FrameInfo)>, CatalogError> {
        let key = self.stream_key(stream).await?;
        let (found, listed) = self
            .read_index(stream, &key, |index| {
                (index.frames.at_or_before(ms), index.cursor.found_log())
            })
            .await?;
        if !listed {
            return Err(CatalogError::NotFound);
        }
        Ok(found)
    }

    /// One frame's PNG as a file or as bytes, for a reader that wants a file.
    pub async fn frame(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<FrameSource, CatalogError> {
        let key = self.frame_key(stream, relative_ms).await?;
        if let Some(path) = self.store.local_file(&key).await? {
            return Ok(FrameSource::File(path));
        }
        let found = self.store.get(&key).await?.ok_or(CatalogError::NotFound)?;
        Ok(FrameSource::Bytes(found.bytes))
    }

    /// Where one frame's PNG would be stored, for serving it with
    /// [`crate::http::stored::serve_stored`]: the store and the key (whether an object is
    /// there is for the read to tell).
    pub async fn frame_object(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<(&dyn Store, Key), CatalogError> {
        let key = self.frame_key(stream, relative_ms).await?;
        Ok((self.store.as_ref(), key))
    }

    /// One frame's PNG bytes, exactly as the bot sent them.
    pub async fn frame_bytes(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<Bytes, CatalogError> {
        let key = self.frame_key(stream, relative_ms).await?;
        let found = self.store.get(&key).await?.ok_or(CatalogError::NotFound)?;
        Ok(found.bytes)
    }

    /// The stream's manifest as `frames.jsonl` reads: one line per frame (the writer's own
    /// over one rebuilt after a crash), in time order, each as saved.
    pub async fn manifest(&self, stream: &StreamKey) -> Result<Bytes, CatalogError> {
        let key = self.stream_key(stream).await?;
        let manifest = key.join(layout::FRAMES_MANIFEST);
        let mut cursor = LogCursor::default();
        let lines = read_log(self.store.as_ref(), &manifest, &mut cursor)
            .await?
            .lines;
        if !cursor.found_log() {
            return Err(CatalogError::NotFound);
        }
        let mut records: BTreeMap<u64, (bool, Bytes)> = BTreeMap::new();
        for line in lines {
            match FrameRecord::parse_line(&line) {
                Ok((ms, record)) => match records.get(&ms) {
                    Some(&(rebuilt, _)) if !supersedes(&record, rebuilt) => {}
                    _ => {
                        records.insert(ms, (record.recovered, line));
                    }
                },
                Err(error) => tracing::warn!(%manifest, %error, "skipping a manifest line"),
            }
        }
        let mut text = Vec::new();
        for (_, line) in records.values() {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        Ok(text.into())
    }

    /// The participant folders of a recording, by id (the first in name order should two
    /// carry one id, as the recorder reads them).
    async fn participant_folders(
        &self,
        recording: &RecordingId,
    ) -> Result<BTreeMap<ParticipantId, String>, CatalogError> {
        let folders: HashMap<ParticipantId, String> = crate::recorder::participant_folders(
            self.store.as_ref(),
            &layout::recording_key(recording),
        )
        .await?;
        let mut cache = self.folders.lock();
        for (id, folder) in &folders {
            cache.put((recording.clone(), *id), folder.clone());
        }
        Ok(folders.into_iter().collect())
    }

    async fn stream_key(&self, stream: &StreamKey) -> Result<Key, CatalogError> {
        let folder = self
            .participant_folder(&stream.recording, stream.participant)
            .await?;
        Ok(layout::stream_key(&stream.recording, &folder, stream.kind))
    }

    /// The folder of a participant of a recording.
    async fn participant_folder(
        &self,
        recording: &RecordingId,
        participant: ParticipantId,
    ) -> Result<String, CatalogError> {
        let cached = (recording.clone(), participant);
        let known = self.folders.lock().get(&cached).cloned();
        match known {
            Some(folder) => Ok(folder),
            None => self
                .participant_folders(recording)
                .await?
                .remove(&participant)
                .ok_or(CatalogError::NotFound),
        }
    }

    async fn frame_key(&self, stream: &StreamKey, relative_ms: u64) -> Result<Key, CatalogError> {
        Ok(self
            .stream_key(stream)
            .await?
            .join(&layout::frame_file_name(relative_ms)))
    }

    /// Brings the stream's index up to date and reads from it.
    async fn read_index<T>(
        &self,
        stream: &StreamKey,
        key: &Key,
        read: impl FnOnce(&StreamIndex) -> T,
    ) -> Result<T, CatalogError> {
        let cached = self.streams.lock().get_or_insert(stream, || CachedStream {
            index: tokio::sync::Mutex::default(),
            frames: AtomicUsize::new(0),
        });
        let result = {
            let mut index = cached.index.lock().await;
            let refreshed = match index.refreshed_at {
                Some(at) if at.elapsed() < self.fresh_for => Ok(()),
                _ => {
                    index
                        .refresh(self.store.as_ref(), &key.join(layout::FRAMES_MANIFEST))
                        .await
                }
            };
            cached.frames.store(index.frames.len(), Ordering::Relaxed);
            refreshed.map(|()| read(&index))
        };
        self.streams.lock().keep_within_budget(stream);
        Ok(result?)
    }

    async fn participant_detail(
        &self,
        recording: &RecordingId,
        id: ParticipantId,
        folder: String,
    ) -> Result<ParticipantDetail, CatalogError> {
        let file = layout::recording_key(recording)
            .join(&folder)
            .join(layout::PARTICIPANT_FILE);
        let participant = self
            .read_json::<Participant>(&file)
            .await?
            .filter(|p| p.id == id)
            .unwrap_or_else(|| Participant::unknown(id));
        let mut streams = Vec::new();
        for kind in StreamKind::ALL {
            let stream = StreamKey {
                recording: recording.clone(),
                participant: id,
                kind,
            };
            let key = layout::stream_key(recording, &folder, kind);
            let summary = self
                .read_index(&stream, &key, |index| index.frames.summary(stream.clone()))
                .await?;
            if summary.frames > 0 {
                streams.push(summary);
            }
        }
        Ok(ParticipantDetail {
            participant,
            folder,
            streams,
        })
    }

    /// A small JSON object, or `None` when there is none or it cannot be read (logged).
    async fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        key: &Key,
    ) -> Result<Option<T>, CatalogError> {
        let Some(found) = self.store.get(key).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&found.bytes) {
            Ok(value) => Ok(Some(value)),
            Err(error) => {
                tracing::warn!(%key, %error, "unreadable JSON object; ignored");
                Ok(None)
            }
        }
    }
}

/// Loads the listed recordings, a few at a time, into the list of recordings: newest
/// first by start time, then by id for those without one. A recording gone (or turned into
/// something else) since it was listed is left out.
async fn newest_first<F>(
    ids: Vec<RecordingId>,
    load: impl FnMut(RecordingId) -> F,
) -> Result<Vec<RecordingOverview>, CatalogError>
where
    F: Future<Output = Result<RecordingDetail, CatalogError>>,
{
    let loaded: Vec<_> = futures_util::stream::iter(ids)
        .map(load)
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut recordings = Vec::with_capacity(loaded.len());
    for detail in loaded {
        match detail {
            Ok(detail) => recordings.push(detail.overview),
            Err(CatalogError::NotFound) => {}
            Err(error) => return Err(error),
        }
    }
    recordings.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(recordings)
}

/// A stream's frames in time order, one per millisecond, built from its manifest lines.
/// Should two lines name one frame (a writer that went on in a new chunk, a line rebuilt
/// after a crash), the first stands, unless it was rebuilt and the later one is the
/// writer's own.
#[derive(Default)]
struct FrameIndex {
    /// By millisecond, with whether the line was rebuilt after a crash.
    frames: BTreeMap<u64, (FrameInfo, bool)>,
}

impl FrameIndex {
    /// Indexes manifest lines; a bad line is skipped with a warning.
    fn add_lines(&mut self, lines: &[Bytes], manifest: &dyn fmt::Display) {
        for line in lines {
            match FrameRecord::parse_line(line) {
                Ok((ms, record)) => self.insert(ms, &record),
                Err(error) => tracing::warn!(%manifest, %error, "skipping a manifest line"),
            }
        }
    }

    fn insert(&mut self, ms: u64, record: &FrameRecord) {
        match self.frames.get(&ms) {
            Some(&(_, rebuilt)) if !supersedes(record, rebuilt) => {}
            _ => {
                self.frames
                    .insert(ms, (FrameInfo::from_record(ms, record), record.recovered));
            }
        }
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn page(&self, after_ms: Option<u64>, limit: usize) -> FramePage {
        let start = after_ms.map_or(Bound::Unbounded, Bound::Excluded);
        let mut rest = self.frames.range((start, Bound::Unbounded));
        let frames: Vec<FrameInfo> = rest.by_ref().take(limit).map(|(_, (f, _))| *f).collect();
        let next_after = rest
            .next()
            .is_some()
            .then(|| frames.last().map(|f| f.relative_ms))
            .flatten();
        FramePage {
            frames,
            total: self.frames.len(),
            next_after,
        }
    }

    /// The frame at or before `ms`, else the first, with its place from 0.
    fn at_or_before(&self, ms: u64) -> Option<(usize, FrameInfo)> {
        let before = self.frames.range(..=ms).count();
        let place = before.saturating_sub(1);
        let (frame, _) = self.frames.values().nth(place)?;
        Some((place, *frame))
    }

    fn summary(&self, key: StreamKey) -> StreamSummary {
        StreamSummary {
            key,
            frames: self.frames.len(),
            first: self.frames.values().next().map(|(f, _)| *f),
            last: self.frames.values().next_back().map(|(f, _)| *f),
        }
    }
}

/// Whether a manifest line takes the place of one already kept for the same frame: only
/// the writer's own line replaces one rebuilt after a crash.
fn supersedes(line: &FrameRecord, kept_was_rebuilt: bool) -> bool {
    kept_was_rebuilt && !line.recovered
}

/// The participant events of `events.jsonl` lines; lines that do not parse are counted in
/// a warning and skipped.
fn parse_events(lines: &[Bytes], log: &dyn fmt::Display) -> Vec<EventRecord> {
    let mut events = Vec::new();
    let mut unreadable = 0_usize;
    for line in lines {
        match serde_json::from_slice(line) {
            Ok(event) => events.push(event),
            Err(_) => unreadable += 1,
        }
    }
    if unreadable > 0 {
        tracing::warn!(%log, unreadable, "skipped unreadable participant event lines");
    }
    events
}

/// A cached stream index, for the cache's budget.
trait Indexed {
    /// Frames the index holds, readable without its lock.
    fn frames(&self) -> usize;
}

/// Stream indexes kept between requests, bounded by the frames they hold together. The
/// least recently used go first; the stream just used is always kept, however large.
struct IndexCache<S> {
    streams: LruCache<StreamKey, Arc<S>>,
    frame_budget: usize,
}

impl<S: Indexed> IndexCache<S> {
    fn new(frame_budget: usize) -> Self {
        IndexCache {
            streams: LruCache::unbounded(),
            frame_budget,
        }
    }

    fn get_or_insert(&mut self, key: &StreamKey, make: impl FnOnce() -> S) -> Arc<S> {
        self.streams
            .get_or_insert(key.clone(), || Arc::new(make()))
            .clone()
    }

    /// Drops the indexes of a recording's streams.
    fn forget(&mut self, recording: &RecordingId) {
        let gone: Vec<StreamKey> = self
            .streams
            .iter()
            .filter(|(key, _)| &key.recording == recording)
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            self.streams.pop(&key);
        }
    }

    /// Drops the least recently used indexes until the rest fit the budget, never the one
    /// in use.
    fn keep_within_budget(&mut self, in_use: &StreamKey) {
        let mut total: usize = self.streams.iter().map(|(_, s)| s.frames()).sum();
        while total > self.frame_budget && self.streams.len() > 1 {
            let Some((key, oldest)) = self.streams.pop_lru() else {
                break;
            };
            if &key == in_use {
                self.streams.push(key, oldest);
            } else {
                total -= oldest.frames();
            }
        }
    }
}

/// Parses a participant id as a client writes it in a URL: decimal digits only.
pub fn parse_participant_id(text: &str) -> Option<ParticipantId> {
    let digits = !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse().ok().map(ParticipantId))
        .flatten()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::frame::StreamKind;
    use crate::layout;
    use crate::store::memory::MemoryStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A manifest line for the frame at `ms`; a rebuilt one has no wall-clock time.
    pub(crate) fn record(ms: u64, recovered: bool) -> FrameRecord {
        FrameRecord {
            file: layout::frame_file_name(ms),
            relative: ms as f64 / 1000.0,
            absolute: (!recovered)
                .then(|| Timestamp::from_millisecond(1_795_000_000_000 + ms as i64).unwrap()),
            width: 640,
            height: 360,
            bytes: 1000 + ms,
            received_at: Timestamp::UNIX_EPOCH,
            recovered,
        }
    }

    pub(crate) fn ms(page: &FramePage) -> Vec<u64> {
        page.frames.iter().map(|f| f.relative_ms).collect()
    }

    fn key(participant: u64) -> StreamKey {
        StreamKey {
            recording: RecordingId::parse("rec").unwrap(),
            participant: ParticipantId(participant),
            kind: StreamKind::Webcam,
        }
    }

    #[test]
    fn pages_continue_after_a_time_and_a_writers_line_beats_a_rebuilt_one() {
        let mut index = FrameIndex::default();
        for at in [2500, 500, 1500, 1000, 2000] {
            index.insert(at, &record(at, at == 1500));
        }
        // Listed twice (two chunks), and rebuilt then written: one frame each.
        index.insert(500, &record(500, false));
        index.insert(1500, &record(1500, false));
        index.insert(1000, &record(1000, true));
        let first = index.page(None, 2);
        assert_eq!(
            (ms(&first), first.total, first.next_after),
            (vec![500, 1000], 5, Some(1000))
        );
        let second = index.page(first.next_after, 2);
        assert_eq!(
            (ms(&second), second.next_after),
            (vec![1500, 2000], Some(2000))
        );
        assert!(second.frames[0].absolute.is_some(), "the writer's own line");
        assert!(
            index.page(Some(500), 1).frames[0].absolute.is_some(),
            "a rebuilt line never replaces the writer's"
        );
        assert_eq!(
            index.at_or_before(1700).map(|(i, f)| (i, f.relative_ms)),
            Some((2, 1500))
        );
        assert_eq!(
            index.at_or_before(1500).map(|(i, f)| (i, f.relative_ms)),
            Some((2, 1500))
        );
        assert_eq!(
            index.at_or_before(0).map(|(i, f)| (i, f.relative_ms)),
            Some((0, 500)),
            "before the first: the first"
        );
        assert_eq!(index.at_or_before(u64::MAX).map(|(i, _)| i), Some(4));
        assert_eq!(FrameIndex::default().at_or_before(0), None);
        let last = index.page(second.next_after, 2);
        assert_eq!((ms(&last), last.next_after), (vec![2500], None));
        // `after` between frames, before all, at the end, past the end.
        assert_eq!(ms(&index.page(Some(1200), 1)), vec![1500]);
        assert_eq!(ms(&index.page(Some(0), 1)), vec![500]);
        assert_eq!(index.page(Some(2500), 10).frames, vec![]);
        assert_eq!(index.page(Some(u64::MAX), 10).next_after, None);
        assert_eq!(ms(&index.page(None, usize::MAX)).len(), 5);
        let summary = index.summary(key(1));
        assert_eq!(
            (
                summary.frames,
                summary.first.map(|f| f.relative_ms),
                summary.last.map(|f| f.relative_ms)
            ),
            (5, Some(500), Some(2500))
        );
    }

    fn line(ms: u64) -> String {
        format!("{}\n", serde_json::to_string(&record(ms, false)).unwrap())
    }

    #[test]
    fn bad_lines_are_skipped() {
        let mut index = FrameIndex::default();
        let lines: Vec<Bytes> = [
            line(500).trim_end().to_owned(),
            "not json".into(),
            r#"{"file":"x.png","relative":1,"absolute":null,"width":1,"height":1,"bytes":1,"received_at":"2026-01-01T00:00:00Z"}"#.into(),
            line(1000).trim_end().to_owned(),
        ]
        .into_iter()
        .map(Bytes::from)
        .collect();
        index.add_lines(&lines, &"test");
        assert_eq!(ms(&index.page(None, 10)), vec![500, 1000]);
    }

    #[tokio::test]
    async fn a_refresh_reads_only_what_was_appended() {
        let store = MemoryStore::default();
        let manifest = Key::of(["rec", "100", "webcam", layout::FRAMES_MANIFEST]);
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&line(i * 500));
        }
        store.append_raw(&manifest, text.as_bytes());
        let mut index = StreamIndex::default();
        index.refresh(&store, &manifest).await.unwrap();
        assert_eq!(index.frames.len(), 20_000);
        assert_eq!(index.cursor.bytes_read, text.len() as u64);

        // Nothing new: nothing read.
        index.refresh(&store, &manifest).await.unwrap();
        assert_eq!(index.cursor.bytes_read, text.len() as u64);

        // One more line, out of order, plus the start of another still being written.
        let late = line(250);
        let torn = line(99_999_000);
        let (head, tail) = torn.split_at(20);
        store.append_raw(&manifest, late.as_bytes());
        store.append_raw(&manifest, head.as_bytes());
        index.refresh(&store, &manifest).await.unwrap();
        assert_eq!(index.frames.len(), 20_001);
        assert_eq!(
            ms(&index.frames.page(None, 2)),
            vec![0, 250],
            "kept in time order"
        );
        let read = text.len() + late.len() + head.len();
        assert_eq!(index.cursor.bytes_read, read as u64);

        // The torn line completes: only it is read, from its start.
        store.append_raw(&manifest, tail.as_bytes());
        index.refresh(&store, &manifest).await.unwrap();
        assert_eq!(index.cursor.bytes_read, (read + torn.len()) as u64);
        assert_eq!(index.frames.len(), 20_002);
        assert_eq!(
            ms(&index.frames.page(Some(99_998_000), 10)),
            vec![99_999_000],
            "the last frame"
        );
    }

    #[tokio::test]
    async fn a_cut_manifest_is_read_again_and_repeats_are_listed_once() {
        let store = MemoryStore::default();
        let manifest = Key::of(["rec", "100", "webcam", layout::FRAMES_MANIFEST]);
        store.append_raw(
            &manifest,
            [line(1000), line(1000), line(2000)].concat().as_bytes(),
        );
        let mut index = StreamIndex::default();
        index.refresh(&store, &manifest).await.unwrap();
        assert_eq!(ms(&index.frames.page(None, 10)), vec![1000, 2000]);
        store.replace_raw(&manifest, line(3000).as_bytes());
        index.refresh(&store, &manifest).await.unwrap();
        assert_eq!(ms(&index.frames.page(None, 10)), vec![3000]);
    }

    struct Counted(AtomicUsize);

    impl Indexed for Counted {
        fn frames(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn the_index_cache_keeps_within_its_frame_budget() {
        let mut cache = IndexCache::new(10);
        for participant in 0..3 {
            cache.get_or_insert(&key(participant), || Counted(AtomicUsize::new(6)));
            cache.keep_within_budget(&key(participant));
        }
        let kept: Vec<_> = cache.streams.iter().map(|(k, _)| k.participant.0).collect();
        assert_eq!(kept, vec![2], "only the newest fits");
        // The stream in use stays even when it alone is over budget.
        cache.get_or_insert(&key(9), || Counted(AtomicUsize::new(50)));
        cache.keep_within_budget(&key(9));
        assert!(cache.streams.contains(&key(9)));
    }

    #[test]
    fn participant_ids_in_urls_are_plain_digits() {
        assert_eq!(parse_participant_id("100"), Some(ParticipantId(100)));
        assert_eq!(parse_participant_id("0"), Some(ParticipantId(0)));
        for bad in [
            "",
            "+1",
            "-1",
            "1.0",
            "100-alice",
            " 1",
            "..",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_participant_id(bad), None, "{bad:?}");
        }
    }
}
