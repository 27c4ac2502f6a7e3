//! The catalog of `DATA_DIR`: reads the layout the file-system sink writes.
//!
//! Paths are built only from checked values ([`RecordingId`], [`StreamKind`], frame
//! milliseconds) and from folder names this module listed itself. Symbolic links are never
//! followed: a link anywhere below `DATA_DIR` is treated as absent.
//!
//! Each stream's frames are listed from an in-memory index of its `frames.jsonl`. The
//! manifest is append-only, so its length says whether the index is current, and a refresh
//! reads only the bytes appended since the last one. Indexes are kept in a least recently
//! used cache bounded by the number of frames they hold.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;

use super::{
    Catalog, CatalogError, FrameIndex, FramePage, FrameSource, IndexCache, Indexed,
    ParticipantDetail, RecordingDetail, RecordingOverview, StreamSummary, complete_lines,
    complete_lines_len,
};
use crate::files::{FsError, IoContext as _, blocking};
use crate::frame::{Participant, ParticipantId, RecordingId, StreamKey, StreamKind};
use crate::layout::{self, EventRecord, RecordingSummary};

pub struct FsCatalog {
    root: PathBuf,
    cache: Mutex<IndexCache<CachedStream>>,
}

/// A stream whose folder has been found, with its index once built.
struct CachedStream {
    dir: PathBuf,
    index: Mutex<StreamIndex>,
    /// Frames in `index`, readable without its lock, for the cache budget.
    frames: AtomicUsize,
}

impl Indexed for CachedStream {
    fn frames(&self) -> usize {
        self.frames.load(Ordering::Relaxed)
    }
}

impl FsCatalog {
    /// A catalog of `root`, holding stream indexes of at most `frame_budget` frames in all.
    pub fn new(root: PathBuf, frame_budget: usize) -> Self {
        FsCatalog {
            root,
            cache: Mutex::new(IndexCache::new(frame_budget)),
        }
    }

    /// The cached entry for a stream, finding its folder if it is not cached.
    async fn stream(&self, key: &StreamKey) -> Result<Arc<CachedStream>, CatalogError> {
        if let Some(cached) = self.cache.lock().get(key) {
            return Ok(cached);
        }
        let (root, search) = (self.root.clone(), key.clone());
        let dir = blocking(move || find_stream_dir(&root, &search))
            .await?
            .ok_or(CatalogError::NotFound)?;
        Ok(self.cache_stream(key, dir))
    }

    fn cache_stream(&self, key: &StreamKey, dir: PathBuf) -> Arc<CachedStream> {
        self.cache.lock().get_or_insert(key, || CachedStream {
            dir,
            index: Mutex::new(StreamIndex::default()),
            frames: AtomicUsize::new(0),
        })
    }

    /// Brings a stream's index up to date and reads from it.
    async fn read_index<T: Send + 'static>(
        &self,
        key: &StreamKey,
        cached: Arc<CachedStream>,
        read: impl FnOnce(&StreamIndex) -> T + Send + 'static,
    ) -> Result<T, CatalogError> {
        let result = blocking(move || {
            let mut index = cached.index.lock();
            index.refresh(&cached.dir.join(layout::FRAMES_MANIFEST))?;
            cached.frames.store(index.frames.len(), Ordering::Relaxed);
            Ok(read(&index))
        })
        .await;
        self.cache.lock().keep_within_budget(key);
        Ok(result?)
    }

    async fn stream_summary(
        &self,
        key: StreamKey,
        dir: PathBuf,
    ) -> Result<StreamSummary, CatalogError> {
        let cached = self.cache_stream(&key, dir);
        let summary_key = key.clone();
        self.read_index(&key, cached, move |index| index.frames.summary(summary_key))
            .await
    }

    async fn load_recording(&self, id: &RecordingId) -> Result<RecordingDetail, CatalogError> {
        let (root, recording) = (self.root.clone(), id.clone());
        let found = blocking(move || {
            recording_dir(&root, &recording)?
                .map(|dir| read_recording_folder(&dir))
                .transpose()
        })
        .await?
        .ok_or(CatalogError::NotFound)?;
        let mut participants = Vec::with_capacity(found.participants.len());
        for (participant, folder, kinds) in found.participants {
            let mut streams = Vec::new();
            for (kind, dir) in kinds {
                let key = StreamKey {
                    recording: id.clone(),
                    participant: participant.id,
                    kind,
                };
                let summary = self.stream_summary(key, dir).await?;
                if summary.frames > 0 {
                    streams.push(summary);
                }
            }
            participants.push(ParticipantDetail {
                participant,
                folder,
                streams,
            });
        }
        let overview =
            RecordingOverview::from_participants(id.clone(), found.summary, &participants);
        Ok(RecordingDetail {
            overview,
            participants,
        })
    }
}

#[async_trait]
impl Catalog for FsCatalog {
    async fn recordings(&self) -> Result<Vec<RecordingOverview>, CatalogError> {
        let root = self.root.clone();
        let ids = blocking(move || list_recordings(&root)).await?;
        super::newest_first(ids, |id| async move { self.load_recording(&id).await }).await
    }

    async fn recording(&self, id: &RecordingId) -> Result<RecordingDetail, CatalogError> {
        self.load_recording(id).await
    }

    async fn events(&self, id: &RecordingId) -> Result<Vec<EventRecord>, CatalogError> {
        let (root, recording) = (self.root.clone(), id.clone());
        blocking(move || {
            recording_dir(&root, &recording)?
                .map(|dir| read_events(&dir.join(layout::EVENTS_LOG)))
                .transpose()
        })
        .await?
        .ok_or(CatalogError::NotFound)
    }

    async fn frames(
        &self,
        stream: &StreamKey,
        after_ms: Option<u64>,
        limit: usize,
    ) -> Result<FramePage, CatalogError> {
        let cached = self.stream(stream).await?;
        self.read_index(stream, cached, move |index| {
            index.frames.page(after_ms, limit)
        })
        .await
    }

    async fn frame(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<FrameSource, CatalogError> {
        let cached = self.stream(stream).await?;
        let path = cached.dir.join(layout::frame_file_name(relative_ms));
        blocking(move || Ok(is_regular_file(&path)?.then_some(FrameSource::File(path))))
            .await?
            .ok_or(CatalogError::NotFound)
    }

    async fn frame_bytes(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<Bytes, CatalogError> {
        let cached = self.stream(stream).await?;
        let path = cached.dir.join(layout::frame_file_name(relative_ms));
        let bytes = blocking(move || read_regular_file(&path)).await?;
        Ok(bytes.ok_or(CatalogError::NotFound)?.into())
    }

    async fn manifest(&self, stream: &StreamKey) -> Result<Bytes, CatalogError> {
        let cached = self.stream(stream).await?;
        let path = cached.dir.join(layout::FRAMES_MANIFEST);
        blocking(move || {
            let mut text = read_regular_file(&path)?.unwrap_or_default();
            // A line being appended right now is left for the next reader.
            text.truncate(complete_lines_len(&text));
            Ok(text.into())
        })
        .await
        .map_err(CatalogError::from)
    }
}

/// A stream's frames in time order, built from its manifest and kept current by reading
/// only what was appended since.
#[derive(Default)]
struct StreamIndex {
    /// Bytes of the manifest read so far, up to the end of its last complete line.
    consumed: u64,
    frames: FrameIndex,
    /// Manifest bytes read over the index's life: what a refresh costs.
    bytes_read: u64,
}

impl StreamIndex {
    fn refresh(&mut self, manifest: &Path) -> Result<(), FsError> {
        let len = match fs::symlink_metadata(manifest) {
            Ok(meta) if meta.is_file() => meta.len(),
            Ok(_) => 0,
            Err(error) if error.kind() == io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error).at("read the size of", manifest),
        };
        if len < self.consumed {
            // Manifests only grow, but crash repair cuts a torn last line: start over.
            *self = StreamIndex {
                bytes_read: self.bytes_read,
                ..StreamIndex::default()
            };
        }
        if len == self.consumed {
            return Ok(());
        }
        let mut file = File::open(manifest).at("open", manifest)?;
        file.seek(SeekFrom::Start(self.consumed))
            .at("seek in", manifest)?;
        let mut appended = Vec::with_capacity((len - self.consumed) as usize);
        file.take(len - self.consumed)
            .read_to_end(&mut appended)
            .at("read", manifest)?;
        self.bytes_read += appended.len() as u64;
        let complete = self.frames.add_lines(&appended, &manifest.display());
        self.consumed += complete as u64;
        Ok(())
    }
}

/// What `path` is, without following a link; `None` when there is nothing.
fn file_type(path: &Path) -> Result<Option<fs::FileType>, FsError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta.file_type())),
        Err(error) if is_absent(&error) => Ok(None),
        Err(error) => Err(error).at("read", path),
    }
}

/// Whether `path` is a directory itself, not a link to one.
fn is_real_dir(path: &Path) -> Result<bool, FsError> {
    Ok(file_type(path)?.is_some_and(|t| t.is_dir()))
}

/// Whether `path` is a regular file itself, not a link to one.
fn is_regular_file(path: &Path) -> Result<bool, FsError> {
    Ok(file_type(path)?.is_some_and(|t| t.is_file()))
}

fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// The contents of a regular file, or `None` when there is none (or only a link).
fn read_regular_file(path: &Path) -> Result<Option<Vec<u8>>, FsError> {
    if !is_regular_file(path)? {
        return Ok(None);
    }
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(error) if is_absent(&error) => Ok(None),
        Err(error) => Err(error).at("read", path),
    }
}

/// Reads a small JSON file, logging and ignoring one that cannot be parsed.
fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, FsError> {
    let Some(bytes) = read_regular_file(path)? else {
        return Ok(None);
    };
    match serde_json::from_slice(&bytes) {
        Ok(value) => Ok(Some(value)),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "unreadable JSON file; ignored");
            Ok(None)
        }
    }
}

fn recording_dir(root: &Path, id: &RecordingId) -> Result<Option<PathBuf>, FsError> {
    // Dot-folders at the top are the server's own (the websocket token, ...), not recordings.
    if id.as_str().starts_with('.') {
        return Ok(None);
    }
    let dir = root.join(id.as_str());
    Ok(is_real_dir(&dir)?.then_some(dir))
}

/// The names of the real folders (not links) in `dir`, sorted.
fn list_folders(dir: &Path) -> Result<Vec<String>, FsError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if is_absent(&error) => return Ok(Vec::new()),
        Err(error) => return Err(error).at("list", dir),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.at("list", dir)?;
        if entry.file_type().at("read", &entry.path())?.is_dir()
            && let Ok(name) = entry.file_name().into_string()
        {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn list_recordings(root: &Path) -> Result<Vec<RecordingId>, FsError> {
    Ok(list_folders(root)?
        .iter()
        .filter(|name| !name.starts_with('.'))
        .filter_map(|name| RecordingId::parse(name))
        .collect())
}

/// A recording's participant folders by participant id. Should two folders carry the same
/// id, the first in name order is the one, as for the sink.
fn participant_folders(recording_dir: &Path) -> Result<BTreeMap<ParticipantId, String>, FsError> {
    let mut folders = BTreeMap::new();
    for name in list_folders(recording_dir)? {
        if let Some(id) = layout::parse_participant_folder_name(&name) {
            folders.entry(id).or_insert(name);
        }
    }
    Ok(folders)
}

fn find_stream_dir(root: &Path, key: &StreamKey) -> Result<Option<PathBuf>, FsError> {
    let Some(recording) = recording_dir(root, &key.recording)? else {
        return Ok(None);
    };
    let Some(folder) = participant_folders(&recording)?.remove(&key.participant) else {
        return Ok(None);
    };
    let dir = recording.join(folder).join(key.kind.as_str());
    Ok(is_real_dir(&dir)?.then_some(dir))
}

/// A participant with its folder name and the folders of its streams.
type ParticipantFolder = (Participant, String, Vec<(StreamKind, PathBuf)>);

/// What a recording folder holds, apart from the frames themselves.
struct RecordingFolder {
    summary: Option<RecordingSummary>,
    participants: Vec<ParticipantFolder>,
}

fn read_recording_folder(dir: &Path) -> Result<RecordingFolder, FsError> {
    let summary = read_json(&dir.join(layout::RECORDING_FILE))?;
    let mut participants = Vec::new();
    for (id, folder) in participant_folders(dir)? {
        let path = dir.join(&folder);
        let participant = read_json::<Participant>(&path.join(layout::PARTICIPANT_FILE))?
            .filter(|p| p.id == id)
            .unwrap_or_else(|| Participant::unknown(id));
        let mut streams = Vec::new();
        for kind in StreamKind::ALL {
            let stream_dir = path.join(kind.as_str());
            if is_real_dir(&stream_dir)? {
                streams.push((kind, stream_dir));
            }
        }
        participants.push((participant, folder, streams));
    }
    Ok(RecordingFolder {
        summary,
        participants,
    })
}

/// The complete lines of `events.jsonl` that parse; absent means none.
fn read_events(path: &Path) -> Result<Vec<EventRecord>, FsError> {
    let Some(text) = read_regular_file(path)? else {
        return Ok(Vec::new());
    };
    Ok(super::parse_events(complete_lines(&text), &path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{self, tests::ms};
    use std::io::Write as _;

    fn record(ms: u64) -> String {
        let mut line = serde_json::to_string(&catalog::tests::record(ms, false)).unwrap();
        line.push('\n');
        line
    }

    fn append(path: &Path, text: &str) {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_refresh_reads_only_what_was_appended() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join(layout::FRAMES_MANIFEST);
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&record(i * 500));
        }
        append(&manifest, &text);
        let mut index = StreamIndex::default();
        index.refresh(&manifest).unwrap();
        assert_eq!(index.frames.len(), 20_000);
        assert_eq!(index.bytes_read, text.len() as u64);

        // Nothing new: nothing read.
        index.refresh(&manifest).unwrap();
        assert_eq!(index.bytes_read, text.len() as u64);

        // One more line, out of order, plus the start of another still being written.
        let late = record(250);
        let torn = record(99_999_000);
        let (head, tail) = torn.split_at(20);
        append(&manifest, &late);
        append(&manifest, head);
        index.refresh(&manifest).unwrap();
        assert_eq!(index.frames.len(), 20_001);
        assert_eq!(
            ms(&index.frames.page(None, 2)),
            vec![0, 250],
            "kept in time order"
        );
        let read = text.len() + late.len() + head.len();
        assert_eq!(index.bytes_read, read as u64);

        // The torn line completes: only it is read, from its start.
        append(&manifest, tail);
        index.refresh(&manifest).unwrap();
        assert_eq!(index.bytes_read, (read + torn.len()) as u64);
        assert_eq!(index.frames.len(), 20_002);
        assert_eq!(
            ms(&index.frames.page(Some(99_998_000), 10)),
            vec![99_999_000],
            "the last frame"
        );
        let page = index.frames.page(Some(5_000_000), 100);
        assert_eq!(page.frames.len(), 100);
        assert_eq!(page.frames[0].relative_ms, 5_000_500);
    }

    #[test]
    fn a_cut_manifest_is_read_again_and_repeats_are_listed_once() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join(layout::FRAMES_MANIFEST);
        append(
            &manifest,
            &[record(1000), record(1000), record(2000)].concat(),
        );
        let mut index = StreamIndex::default();
        index.refresh(&manifest).unwrap();
        assert_eq!(ms(&index.frames.page(None, 10)), vec![1000, 2000]);
        fs::write(&manifest, record(3000)).unwrap();
        index.refresh(&manifest).unwrap();
        assert_eq!(ms(&index.frames.page(None, 10)), vec![3000]);
    }
}
