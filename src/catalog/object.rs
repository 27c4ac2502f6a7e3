//! The catalog of a bucket: reads what the object sink writes, from any instance, with
//! nothing kept on this one but caches.
//!
//! Recordings and participant folders are listed with a delimiter, as a file system lists
//! folders. A stream's frames are paged from an index of its manifest chunks. Chunks only
//! grow, and a listing gives each one's size, so bringing an index up to date costs one
//! listing plus a ranged read of what each grown chunk gained: like the file-system
//! catalog's index of `frames.jsonl`, and never a read of every frame. A frame listed in
//! two chunks (a writer that went on in a new chunk) is indexed once; a line rebuilt after
//! a crash gives way to the writer's own.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use lru::LruCache;
use object_store::path::Path;
use parking_lot::Mutex;

use super::{
    Catalog, CatalogError, FrameIndex, FramePage, FrameSource, IndexCache, Indexed, PARALLEL,
    ParticipantDetail, RecordingDetail, RecordingOverview, complete_lines,
};
use crate::bucket::{Bucket, BucketError, Fetched};
use crate::frame::{Participant, ParticipantId, RecordingId, StreamKey, StreamKind};
use crate::layout::{self, EventRecord, FrameRecord, RecordingSummary};

/// Participant folders remembered: a folder's name never changes once claimed.
const REMEMBERED: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");

pub struct ObjectCatalog {
    bucket: Bucket,
    /// How long an index just brought up to date is used as it is: manifests change once
    /// per writer's interval, and a page of frames, a recording's streams and the list of
    /// recordings asked for at once need not list every chunk again.
    fresh_for: Duration,
    streams: Mutex<IndexCache<CachedStream>>,
    folders: Mutex<LruCache<(RecordingId, ParticipantId), String>>,
}

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

impl ObjectCatalog {
    /// A catalog of `bucket`, holding stream indexes of at most `frame_budget` frames in all,
    /// each listed again at most every `fresh_for` (at most a second).
    pub fn new(bucket: Bucket, frame_budget: usize, fresh_for: Duration) -> Self {
        ObjectCatalog {
            bucket,
            fresh_for: fresh_for.min(Duration::from_secs(1)),
            streams: Mutex::new(IndexCache::new(frame_budget)),
            folders: Mutex::new(LruCache::new(REMEMBERED)),
        }
    }

    /// The participant folders of a recording, by id (the first in name order should two
    /// carry one id, as on disk).
    async fn participant_folders(
        &self,
        recording: &RecordingId,
    ) -> Result<BTreeMap<ParticipantId, String>, CatalogError> {
        let names = self
            .bucket
            .list_folders(&self.bucket.recording_key(recording))
            .await?;
        let mut folders = BTreeMap::new();
        for name in names {
            if let Some(id) = layout::parse_participant_folder_name(&name) {
                folders.entry(id).or_insert(name);
            }
        }
        let mut cache = self.folders.lock();
        for (id, folder) in &folders {
            cache.put((recording.clone(), *id), folder.clone());
        }
        Ok(folders)
    }

    async fn folder(&self, stream: &StreamKey) -> Result<String, CatalogError> {
        let key = (stream.recording.clone(), stream.participant);
        if let Some(folder) = self.folders.lock().get(&key) {
            return Ok(folder.clone());
        }
        self.participant_folders(&stream.recording)
            .await?
            .remove(&stream.participant)
            .ok_or(CatalogError::NotFound)
    }

    async fn stream_path(&self, stream: &StreamKey) -> Result<Path, CatalogError> {
        let folder = self.folder(stream).await?;
        Ok(self
            .bucket
            .stream_key(&stream.recording, &folder, stream.kind))
    }

    /// Brings the stream's index up to date and reads from it.
    async fn read_index<T>(
        &self,
        key: &StreamKey,
        path: &Path,
        read: impl FnOnce(&StreamIndex) -> T,
    ) -> Result<T, CatalogError> {
        let cached = self.streams.lock().get_or_insert(key, || CachedStream {
            index: tokio::sync::Mutex::default(),
            frames: AtomicUsize::new(0),
        });
        let result = {
            let mut index = cached.index.lock().await;
            let refreshed = match index.refreshed_at {
                Some(at) if at.elapsed() < self.fresh_for => Ok(()),
                _ => index.refresh(&self.bucket, path).await,
            };
            cached.frames.store(index.frames.len(), Ordering::Relaxed);
            refreshed.map(|()| read(&index))
        };
        self.streams.lock().keep_within_budget(key);
        result
    }

    async fn participant_detail(
        &self,
        recording: &RecordingId,
        id: ParticipantId,
        folder: String,
    ) -> Result<ParticipantDetail, CatalogError> {
        let file = self
            .bucket
            .key([recording.as_str(), &folder, layout::PARTICIPANT_FILE]);
        let participant = read_json::<Participant>(&self.bucket, &file)
            .await?
            .filter(|p| p.id == id)
            .unwrap_or_else(|| Participant::unknown(id));
        let mut streams = Vec::new();
        for kind in StreamKind::ALL {
            let key = StreamKey {
                recording: recording.clone(),
                participant: id,
                kind,
            };
            let path = self.bucket.stream_key(recording, &folder, kind);
            let summary = self
                .read_index(&key, &path, |index| index.frames.summary(key.clone()))
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

    async fn load_recording(&self, id: &RecordingId) -> Result<RecordingDetail, CatalogError> {
        let summary_key = self.bucket.key([id.as_str(), layout::RECORDING_FILE]);
        let (summary, folders) = futures_util::try_join!(
            read_json::<RecordingSummary>(&self.bucket, &summary_key),
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

    /// One frame's object.
    async fn frame_object(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<Fetched, CatalogError> {
        let path = self.stream_path(stream).await?;
        self.bucket
            .get(&path.join(layout::frame_file_name(relative_ms)))
            .await?
            .ok_or(CatalogError::NotFound)
    }

    /// The complete lines of every chunk under `dir`, each chunk's in order, chunks in name
    /// (creation) order.
    async fn chunk_lines(&self, dir: &Path) -> Result<Vec<Bytes>, CatalogError> {
        let chunks: Vec<Path> = self
            .bucket
            .list_chunks(dir)
            .await?
            .into_iter()
            .map(|object| object.location)
            .collect();
        let mut lines = Vec::new();
        for text in self.bucket.get_each(chunks).await? {
            lines.extend(complete_lines(&text).map(|line| text.slice_ref(line)));
        }
        Ok(lines)
    }
}

#[async_trait]
impl Catalog for ObjectCatalog {
    async fn recordings(&self) -> Result<Vec<RecordingOverview>, CatalogError> {
        let ids: Vec<RecordingId> = self
            .bucket
            .list_folders(self.bucket.root())
            .await?
            .iter()
            .filter(|name| !name.starts_with('.'))
            .filter_map(|name| RecordingId::parse(name))
            .collect();
        super::newest_first(ids, |id| async move { self.load_recording(&id).await }).await
    }

    async fn recording(&self, id: &RecordingId) -> Result<RecordingDetail, CatalogError> {
        self.load_recording(id).await
    }

    async fn events(&self, id: &RecordingId) -> Result<Vec<EventRecord>, CatalogError> {
        let dir = self.bucket.key([id.as_str(), layout::EVENT_CHUNKS]);
        let lines = self.chunk_lines(&dir).await?;
        let mut events = super::parse_events(lines.iter().map(|line| &line[..]), &dir);
        // Chunks of several writers interleave in time: arrival order across them. The sort
        // is stable, so each writer's own order stands.
        events.sort_by_key(|event| event.received_at);
        Ok(events)
    }

    async fn frames(
        &self,
        stream: &StreamKey,
        after_ms: Option<u64>,
        limit: usize,
    ) -> Result<FramePage, CatalogError> {
        let path = self.stream_path(stream).await?;
        let (page, known) = self
            .read_index(stream, &path, |index| {
                (index.frames.page(after_ms, limit), !index.chunks.is_empty())
            })
            .await?;
        if !known {
            return Err(CatalogError::NotFound);
        }
        Ok(page)
    }

    async fn frame(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<FrameSource, CatalogError> {
        let found = self.frame_object(stream, relative_ms).await?;
        Ok(FrameSource::Bytes {
            bytes: found.bytes,
            etag: found.version.e_tag,
        })
    }

    async fn frame_bytes(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<Bytes, CatalogError> {
        Ok(self.frame_object(stream, relative_ms).await?.bytes)
    }

    async fn manifest(&self, stream: &StreamKey) -> Result<Bytes, CatalogError> {
        let path = self.stream_path(stream).await?;
        let mut records: BTreeMap<u64, (FrameRecord, Bytes)> = BTreeMap::new();
        for line in self
            .chunk_lines(&path.clone().join(layout::MANIFEST_CHUNKS))
            .await?
        {
            let Ok(record) = serde_json::from_slice::<FrameRecord>(&line) else {
                continue;
            };
            let Some(ms) = layout::parse_frame_file_name(&record.file) else {
                continue;
            };
            match records.get(&ms) {
                Some((kept, _)) if !super::supersedes(&record, kept.recovered) => {}
                _ => {
                    records.insert(ms, (record, line));
                }
            }
        }
        // As frames.jsonl on disk reads, one line per frame; here in time order.
        let mut text = Vec::new();
        for (_, line) in records.values() {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        Ok(text.into())
    }
}

/// A stream's frames, indexed from its manifest chunks and kept current by reading only
/// what each chunk gained since.
#[derive(Default)]
struct StreamIndex {
    /// Bytes of each chunk read so far, up to the end of its last complete line.
    chunks: HashMap<Path, u64>,
    frames: FrameIndex,
    refreshed_at: Option<Instant>,
}

impl StreamIndex {
    async fn refresh(&mut self, bucket: &Bucket, stream: &Path) -> Result<(), CatalogError> {
        let listed = bucket
            .list_chunks(&stream.clone().join(layout::MANIFEST_CHUNKS))
            .await?;
        let grown: Vec<(Path, u64)> = listed
            .into_iter()
            .filter_map(|object| {
                let read = self.chunks.get(&object.location).copied().unwrap_or(0);
                // A chunk only grows; a smaller one (never written so) is read again whole.
                let from = if object.size < read { 0 } else { read };
                (object.size > from || !self.chunks.contains_key(&object.location))
                    .then_some((object.location, from))
            })
            .collect();
        type Read = Result<(Path, u64, Option<Bytes>), BucketError>;
        let fetched: Vec<Read> = futures_util::stream::iter(grown)
            .map(|(key, from)| async move {
                let bytes = bucket.get_from(&key, from).await?;
                Ok((key, from, bytes))
            })
            .buffer_unordered(PARALLEL)
            .collect()
            .await;
        for chunk in fetched {
            let (key, from, bytes) = chunk?;
            let Some(bytes) = bytes else { continue };
            let complete = self.frames.add_lines(&bytes, &key);
            self.chunks.insert(key, from + complete as u64);
        }
        self.refreshed_at = Some(Instant::now());
        Ok(())
    }
}

/// A small JSON object, or `None` when there is none or it cannot be read (logged).
async fn read_json<T: serde::de::DeserializeOwned>(
    bucket: &Bucket,
    key: &Path,
) -> Result<Option<T>, CatalogError> {
    let Some(found) = bucket.get(key).await? else {
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
