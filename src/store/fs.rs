//! The folder store, the embedded default: keys are paths under `DATA_DIR`.
//!
//! - Every write goes to a temporary file named with this process's prefix and is renamed
//!   into place: readers never see half an object. A create renames without replacing, so
//!   the first writer wins.
//! - A log is one file, appended to a whole line at a time; a line that fails half-way is
//!   cut off again, and a torn last line that a crash left is cut when the log is next
//!   opened for writing.
//! - Temporary files of earlier runs are removed from a folder the first time this process
//!   writes or lists there.
//! - Symbolic links are never followed when reading: a link anywhere below the root reads
//!   as absent.
//!
//! Files are not fsynced: a killed process loses nothing it has saved; a power cut may.

use std::any::Any;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::num::NonZeroUsize;
use std::ops::{ControlFlow, Range};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use jiff::Timestamp;
use lru::LruCache;
use parking_lot::Mutex;

use super::{
    Created, Fetched, Key, Listed, LogWriter, Removed, Stat, Store, StoreError, Streamed, Version,
};
use crate::files::{FsError, IoContext as _, blocking};

const TEMP_SUFFIX: &str = ".tmp";
/// Folders remembered as swept; one forgotten is swept again at its next write, which only
/// ever removes earlier runs' leftovers.
const SWEPT: NonZeroUsize = NonZeroUsize::new(4096).expect("non-zero");
/// Objects per batch of [`Store::list_stream`]: about 100 bytes each.
const LIST_BATCH: usize = 1000;
/// Batches of [`Store::list_stream`] walked ahead of the one being read.
const LIST_BATCHES_AHEAD: usize = 2;

#[derive(Clone)]
pub struct FsStore {
    inner: Arc<Inner>,
}

struct Inner {
    root: PathBuf,
    /// Prefix of this process's temporary files, so that leftovers of earlier runs (removed)
    /// are told from writes still in progress (kept).
    temp_prefix: String,
    /// Folders already cleared of earlier runs' temporary files.
    swept: Mutex<LruCache<PathBuf, ()>>,
    /// Held across a compare-and-swap's read and write: this process is the folder's only
    /// writer, so that makes the swap atomic.
    swaps: Mutex<()>,
}

impl FsStore {
    /// The store under `root` (created if missing), after checking that files can be made
    /// there.
    pub async fn open(root: PathBuf) -> Result<Self, FsError> {
        let probe_root = root.clone();
        blocking(move || {
            fs::create_dir_all(&probe_root).at("create data folder", &probe_root)?;
            tempfile::Builder::new()
                .prefix(".probe")
                .tempfile_in(&probe_root)
                .at("create a file in data folder", &probe_root)?;
            Ok(())
        })
        .await?;
        Ok(FsStore::at(root))
    }

    /// The store under `root`, as it is: for a reader of what a server saved there, which
    /// creates nothing (and so never sweeps anything away).
    pub fn at(root: PathBuf) -> Self {
        FsStore {
            inner: Arc::new(Inner {
                root,
                temp_prefix: format!(".{:08x}-", rand::random::<u32>()),
                swept: Mutex::new(LruCache::new(SWEPT)),
                swaps: Mutex::default(),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn path(&self, key: &Key) -> PathBuf {
        key.segments()
            .fold(self.inner.root.clone(), |path, segment| path.join(segment))
    }
}

/// The path of `key` below `root` for reading, when every folder on the way is a real
/// folder, not a link: `None` otherwise, so that a link planted below the root reads as
/// absent. With `folder`, `key` itself must be a real folder too.
fn real_path(root: &Path, key: &Key, folder: bool) -> Result<Option<PathBuf>, FsError> {
    let segments: Vec<&str> = key.segments().collect();
    let folders = if folder {
        segments.len()
    } else {
        segments.len().saturating_sub(1)
    };
    let mut path = root.to_owned();
    for (i, segment) in segments.iter().enumerate() {
        path.push(segment);
        if i < folders && !metadata(&path)?.is_some_and(|meta| meta.is_dir()) {
            return Ok(None);
        }
    }
    Ok(Some(path))
}

impl Inner {
    /// Removes the temporary files of earlier runs from `dir`, before this process first
    /// writes there. Only writers sweep: a reader beside a live server removes nothing.
    fn sweep(&self, dir: &Path) -> Result<(), FsError> {
        {
            // Looked up before it is owned: every frame passes here, and nearly always
            // finds its folder swept.
            let mut swept = self.swept.lock();
            if swept.get(dir).is_some() {
                return Ok(());
            }
            swept.put(dir.to_owned(), ());
        }
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) if is_absent(&error) => return Ok(()),
            Err(error) => return Err(error).at("list", dir),
        };
        for entry in entries {
            let entry = entry.at("list", dir)?;
            if let Some(name) = entry.file_name().to_str()
                && self.is_leftover(name)
            {
                let path = entry.path();
                fs::remove_file(&path).at("remove leftover temporary file", &path)?;
                tracing::info!(path = %path.display(), "removed a temporary file left by an earlier run");
            }
        }
        Ok(())
    }

    fn is_leftover(&self, name: &str) -> bool {
        is_temp(name) && !name.starts_with(&self.temp_prefix)
    }

    /// A temporary file in `path`'s folder (made, and swept, if need be).
    fn temp_file_for(&self, path: &Path) -> Result<tempfile::NamedTempFile, FsError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let make = || {
            tempfile::Builder::new()
                .prefix(&self.temp_prefix)
                .suffix(TEMP_SUFFIX)
                .tempfile_in(dir)
        };
        let temp = match make() {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).at("create folder", dir)?;
                make()
            }
            made => made,
        }
        .at("create a temporary file in", dir)?;
        self.sweep(dir)?;
        Ok(temp)
    }

    /// Writes `path` only if there is no file there: a temporary file renamed into place
    /// without replacing.
    fn create(&self, path: &Path, contents: &[u8]) -> Result<Created, FsError> {
        self.create_with(path, |temp| {
            temp.write_all(contents).at("write", temp.path())
        })
    }

    /// As [`Inner::create`], with the temporary file filled by `fill`.
    fn create_with(
        &self,
        path: &Path,
        fill: impl FnOnce(&mut tempfile::NamedTempFile) -> Result<(), FsError>,
    ) -> Result<Created, FsError> {
        let mut temp = self.temp_file_for(path)?;
        fill(&mut temp)?;
        // On failure the temporary file is dropped, which removes it.
        match temp.persist_noclobber(path) {
            Ok(_) => Ok(Created::New),
            Err(error) if error.error.kind() == io::ErrorKind::AlreadyExists => {
                Ok(Created::Existed)
            }
            Err(error) => Err(error.error).at("move into place", path),
        }
    }

    /// Writes into `path` in place, creating it (and its folder) if need be. A hole left
    /// past the end reads as zeros.
    fn write_at(&self, path: &Path, writes: &[(u64, Bytes)]) -> Result<(), FsError> {
        use std::os::unix::fs::FileExt as _;
        let open = || {
            OpenOptions::new()
                .create(true)
                .write(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(path)
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        let file = match open() {
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).at("create folder", dir)?;
                open()
            }
            opened => opened,
        }
        .at("open", path)?;
        self.sweep(dir)?;
        for (offset, bytes) in writes {
            file.write_all_at(bytes, *offset).at("write into", path)?;
        }
        Ok(())
    }

    /// Replaces `path` with `contents` atomically: readers see the old file or the new one.
    fn replace(&self, path: &Path, contents: &[u8]) -> Result<(), FsError> {
        let mut temp = self.temp_file_for(path)?;
        temp.write_all(contents).at("write", temp.path())?;
        temp.persist(path)
            .map_err(|error| error.error)
            .at("move into place", path)?;
        Ok(())
    }
}

fn is_temp(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

fn is_absent(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// What is at `path`, without following a link; `None` when there is nothing.
fn metadata(path: &Path) -> Result<Option<fs::Metadata>, FsError> {
    match fs::symlink_metadata(path) {
        Ok(meta) => Ok(Some(meta)),
        Err(error) if is_absent(&error) => Ok(None),
        Err(error) => Err(error).at("read", path),
    }
}

/// The metadata of a regular file itself (not a link to one), or `None`.
fn regular_file(path: &Path) -> Result<Option<fs::Metadata>, FsError> {
    Ok(metadata(path)?.filter(fs::Metadata::is_file))
}

fn version_of(meta: &fs::Metadata) -> Version {
    Version {
        e_tag: Some(format!(
            "{:x}-{:x}-{:x}",
            meta.ino(),
            meta.len(),
            meta.mtime_nsec() as u64 ^ ((meta.mtime() as u64) << 30)
        )),
        version: None,
    }
}

/// What [`Store::stat`] says of a file, from its metadata.
fn stat_of(meta: &fs::Metadata) -> Stat {
    Stat {
        size: meta.len(),
        version: version_of(meta),
    }
}

fn modified(meta: &fs::Metadata) -> Timestamp {
    meta.modified()
        .ok()
        .and_then(|time| Timestamp::try_from(time).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A regular file opened for reading, with its metadata; `None` when there is none (or
/// only a link: the file is opened without following one).
fn open_regular(path: &Path) -> Result<Option<(File, fs::Metadata)>, FsError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        // ELOOP: the name is a link.
        Err(error)
            if is_absent(&error)
                || error.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error).at("open", path),
    };
    let meta = file.metadata().at("read", path)?;
    Ok(meta.is_file().then_some((file, meta)))
}

/// The bytes of a regular file from `offset` on, with its metadata; `None` when there is
/// none (see [`open_regular`]).
fn read_from(path: &Path, offset: u64) -> Result<Option<(Vec<u8>, fs::Metadata)>, FsError> {
    let Some((mut file, meta)) = open_regular(path)? else {
        return Ok(None);
    };
    if offset > 0 {
        file.seek(SeekFrom::Start(offset)).at("seek in", path)?;
    }
    let mut bytes = Vec::with_capacity(meta.len().saturating_sub(offset) as usize);
    file.read_to_end(&mut bytes).at("read", path)?;
    Ok(Some((bytes, meta)))
}

#[async_trait]
impl Store for FsStore {
    async fn create(&self, key: &Key, bytes: Bytes) -> Result<Created, StoreError> {
        let (inner, path) = (self.inner.clone(), self.path(key));
        Ok(blocking(move || inner.create(&path, &bytes)).await?)
    }

    async fn create_logged(
        &self,
        key: &Key,
        bytes: Bytes,
        log: &mut dyn LogWriter,
        line: Vec<u8>,
    ) -> Result<Created, StoreError> {
        let Some(fs_log) = log.as_any_mut().downcast_mut::<FsLog>() else {
            return super::create_then_log(self, key, bytes, log, line).await;
        };
        // One trip to the blocking pool for the frame and its line.
        let (inner, path, file) = (self.inner.clone(), self.path(key), fs_log.file.clone());
        let earlier = std::mem::take(&mut fs_log.pending);
        let (created, unwritten) = tokio::task::spawn_blocking(move || {
            let created = match inner.create(&path, &bytes) {
                Ok(created) => created,
                Err(error) => return (Err(error), earlier),
            };
            let mut lines = earlier;
            if created == Created::New {
                lines.extend_from_slice(&line);
            }
            match file.append(&inner, &lines) {
                Ok(()) => (Ok(created), Vec::new()),
                Err(error) => (Err(error), lines),
            }
        })
        .await
        .map_err(FsError::from)?;
        // Lines not written stay pending, as the trait promises.
        fs_log.pending = unwritten;
        Ok(created?)
    }

    async fn create_from_file(&self, key: &Key, file: &Path) -> Result<Created, StoreError> {
        let (inner, path, file) = (self.inner.clone(), self.path(key), file.to_owned());
        Ok(blocking(move || {
            inner.create_with(&path, |temp| {
                let mut source = File::open(&file).at("open", &file)?;
                // A file-to-file copy: the kernel's copy_file_range where it can.
                io::copy(&mut source, temp.as_file_mut()).at("copy into", temp.path())?;
                Ok(())
            })
        })
        .await?)
    }

    async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError> {
        let (inner, path) = (self.inner.clone(), self.path(key));
        Ok(blocking(move || inner.replace(&path, &bytes)).await?)
    }

    async fn write_at(&self, key: &Key, writes: Vec<(u64, Bytes)>) -> Result<(), StoreError> {
        let (inner, path) = (self.inner.clone(), self.path(key));
        Ok(blocking(move || inner.write_at(&path, &writes)).await?)
    }

    fn writes_in_place(&self) -> bool {
        true
    }

    async fn swap(
        &self,
        key: &Key,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError> {
        let (inner, path, expected) = (self.inner.clone(), self.path(key), expected.cloned());
        let swapped = blocking(move || {
            let _swapping = inner.swaps.lock();
            let current = regular_file(&path)?.map(|meta| version_of(&meta));
            if current != expected {
                return Ok(None);
            }
            inner.replace(&path, &bytes)?;
            Ok(regular_file(&path)?.map(|meta| version_of(&meta)))
        })
        .await?;
        Ok(swapped)
    }

    async fn get(&self, key: &Key) -> Result<Option<Fetched>, StoreError> {
        let (root, key) = (self.inner.root.clone(), key.clone());
        let found = blocking(move || match real_path(&root, &key, false)? {
            Some(path) => read_from(&path, 0),
            None => Ok(None),
        })
        .await?;
        Ok(found.map(|(bytes, meta)| Fetched {
            bytes: bytes.into(),
            version: version_of(&meta),
        }))
    }

    async fn get_from(&self, key: &Key, offset: u64) -> Result<Option<Bytes>, StoreError> {
        let (root, key) = (self.inner.root.clone(), key.clone());
        let found = blocking(move || match real_path(&root, &key, false)? {
            Some(path) => read_from(&path, offset),
            None => Ok(None),
        })
        .await?;
        Ok(found.map(|(bytes, _)| bytes.into()))
    }

    async fn stat(&self, key: &Key) -> Result<Option<Stat>, StoreError> {
        let (root, key) = (self.inner.root.clone(), key.clone());
        let found = blocking(move || match real_path(&root, &key, false)? {
            Some(path) => regular_file(&path),
            None => Ok(None),
        })
        .await?;
        Ok(found.as_ref().map(stat_of))
    }

    /// The file read a buffer at a time (the HTTP routes serve a folder's files with
    /// `ServeFile` instead, from [`Store::local_file`]).
    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<Streamed>, StoreError> {
        use futures_util::TryStreamExt as _;
        use tokio::io::AsyncReadExt as _;
        let (root, key) = (self.inner.root.clone(), key.clone());
        let start = range.as_ref().map_or(0, |range| range.start);
        let opened = blocking(move || {
            let Some(path) = real_path(&root, &key, false)? else {
                return Ok(None);
            };
            let Some((mut file, meta)) = open_regular(&path)? else {
                return Ok(None);
            };
            file.seek(SeekFrom::Start(start)).at("seek in", &path)?;
            Ok(Some((file, meta, path)))
        })
        .await?;
        let Some((file, meta, path)) = opened else {
            return Ok(None);
        };
        let range = range.unwrap_or(0..meta.len());
        let reader = tokio::fs::File::from_std(file).take(range.end - range.start);
        let body = tokio_util::io::ReaderStream::new(reader).map_err(move |source| {
            StoreError::Fs(FsError::Io {
                action: "read",
                path: path.clone(),
                source,
            })
        });
        Ok(Some(Streamed {
            stat: stat_of(&meta),
            range,
            body: Box::pin(body),
        }))
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<Listed>, StoreError> {
        let (root, prefix) = (self.inner.root.clone(), prefix.clone());
        let mut listed = blocking(move || {
            let mut listed = Vec::new();
            walk(&root, &prefix, |object| {
                listed.push(object);
                ControlFlow::Continue(())
            })?;
            Ok(listed)
        })
        .await?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// The walk of [`Store::list`] in the blocking pool, handed over in batches of
    /// [`LIST_BATCH`] through a channel of a few: the walk waits while they are not taken,
    /// and stops when the stream is dropped.
    async fn list_stream(
        &self,
        prefix: &Key,
    ) -> Result<BoxStream<'static, Result<Listed, StoreError>>, StoreError> {
        use futures_util::{StreamExt as _, TryStreamExt as _, stream};
        let (root, prefix) = (self.inner.root.clone(), prefix.clone());
        let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<Listed>>(LIST_BATCHES_AHEAD);
        let walked = tokio::task::spawn_blocking(move || walk_in_batches(&root, &prefix, &sender));
        let batches = stream::unfold(receiver, |mut receiver| async move {
            let batch = receiver.recv().await?;
            Some((Ok(batch), receiver))
        });
        // Once the batches end, the walk's own end: an error (or a panic) after the last
        // batch sent ends the stream with it, rather than passing for a complete listing.
        let end = stream::once(async move {
            walked
                .await
                .unwrap_or_else(|panic| Err(FsError::from(panic)))
        })
        .filter_map(|walked| async move { walked.err().map(Err) });
        Ok(batches
            .chain(end)
            .map_ok(|batch| stream::iter(batch.into_iter().map(Ok::<_, FsError>)))
            .try_flatten()
            .map_err(StoreError::from)
            .boxed())
    }

    async fn list_folders(&self, prefix: &Key) -> Result<Vec<String>, StoreError> {
        let (root, prefix) = (self.inner.root.clone(), prefix.clone());
        let names = blocking(move || {
            let Some(dir) = real_path(&root, &prefix, true)? else {
                return Ok(Vec::new());
            };
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(error) if is_absent(&error) => return Ok(Vec::new()),
                Err(error) => return Err(error).at("list", &dir),
            };
            let mut names = Vec::new();
            for entry in entries {
                let entry = entry.at("list", &dir)?;
                if entry.file_type().at("read", &entry.path())?.is_dir()
                    && let Ok(name) = entry.file_name().into_string()
                    && is_segment_name(&name)
                {
                    names.push(name);
                }
            }
            names.sort();
            Ok(names)
        })
        .await?;
        Ok(names)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        let path = self.path(key);
        blocking(move || match fs::remove_file(&path) {
            Err(error) if !is_absent(&error) => Err(error).at("remove", &path),
            _ => Ok(()),
        })
        .await?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &Key) -> Result<Removed, StoreError> {
        // Counted first (the same walk a listing makes), then the folder goes whole. The
        // root itself is never removed: a prefix is always a recording or below.
        let listed = self.list(prefix).await?;
        let removed = Removed {
            objects: listed.len() as u64,
            bytes: listed.iter().map(|object| object.size).sum(),
        };
        if prefix.segments().next().is_none() {
            return Err(StoreError::Unexpected {
                key: prefix.clone(),
                why: "the store's root is never removed whole".into(),
            });
        }
        let path = self.path(prefix);
        blocking(move || match metadata(&path)? {
            None => Ok(()),
            // A link is removed as a link, never followed.
            Some(meta) if !meta.is_dir() => fs::remove_file(&path).at("remove", &path),
            Some(_) => match fs::remove_dir_all(&path) {
                Err(error) if !is_absent(&error) => Err(error).at("remove folder", &path),
                _ => Ok(()),
            },
        })
        .await?;
        Ok(removed)
    }

    fn log_writer(&self, log: &Key, _lines_per_part: usize) -> Box<dyn LogWriter> {
        Box::new(FsLog {
            inner: self.inner.clone(),
            file: LogFile {
                path: self.path(log),
                open: Arc::default(),
            },
            pending: Vec::new(),
        })
    }

    async fn log_parts(&self, log: &Key) -> Result<Vec<Listed>, StoreError> {
        let (root, key) = (self.inner.root.clone(), log.clone());
        let read = key.clone();
        let meta = blocking(move || match real_path(&root, &read, false)? {
            Some(path) => regular_file(&path),
            None => Ok(None),
        })
        .await?;
        Ok(meta
            .map(|meta| Listed {
                key,
                size: meta.len(),
                written_by: modified(&meta),
            })
            .into_iter()
            .collect())
    }

    async fn local_file(&self, key: &Key) -> Result<Option<PathBuf>, StoreError> {
        let (root, key) = (self.inner.root.clone(), key.clone());
        let found = blocking(move || match real_path(&root, &key, false)? {
            Some(path) => Ok(regular_file(&path)?.map(|_| path)),
            None => Ok(None),
        })
        .await?;
        Ok(found)
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn log_interval(&self) -> Option<Duration> {
        None
    }

    fn backend(&self) -> &'static str {
        "fs"
    }
}

/// Hands every regular file under `prefix` to `found`, at any depth and in no particular
/// order, until it breaks; temporary files, names this server never writes and links are
/// left out. The walk of both [`Store::list`] and [`Store::list_stream`].
fn walk(
    root: &Path,
    prefix: &Key,
    mut found: impl FnMut(Listed) -> ControlFlow<()>,
) -> Result<(), FsError> {
    let Some(dir) = real_path(root, prefix, true)? else {
        return Ok(());
    };
    let mut folders = vec![(dir, prefix.clone())];
    while let Some((dir, key)) = folders.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(error) if is_absent(&error) => continue,
            Err(error) => return Err(error).at("list", &dir),
        };
        for entry in entries {
            let entry = entry.at("list", &dir)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_temp(&name) || !is_segment_name(&name) {
                continue;
            }
            let file_type = entry.file_type().at("read", &entry.path())?;
            if file_type.is_dir() {
                folders.push((entry.path(), key.join(&name)));
            } else if file_type.is_file() {
                let meta = entry.metadata().at("read", &entry.path())?;
                let object = Listed {
                    key: key.join(&name),
                    size: meta.len(),
                    written_by: modified(&meta),
                };
                if found(object).is_break() {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

/// [`walk`] handed over in batches of [`LIST_BATCH`] through `sender`, waiting while its
/// channel is full; it stops once the receiver is gone.
fn walk_in_batches(
    root: &Path,
    prefix: &Key,
    sender: &tokio::sync::mpsc::Sender<Vec<Listed>>,
) -> Result<(), FsError> {
    let mut batch = Vec::with_capacity(LIST_BATCH);
    walk(root, prefix, |object| {
        batch.push(object);
        if batch.len() < LIST_BATCH {
            return ControlFlow::Continue(());
        }
        let full = std::mem::replace(&mut batch, Vec::with_capacity(LIST_BATCH));
        match sender.blocking_send(full) {
            Ok(()) => ControlFlow::Continue(()),
            Err(_) => ControlFlow::Break(()),
        }
    })?;
    if !batch.is_empty() {
        // A receiver gone has nothing left to miss.
        let _ = sender.blocking_send(batch);
    }
    Ok(())
}

/// Names this store writes: the segment rules of [`Key`].
fn is_segment_name(name: &str) -> bool {
    Key::parse(name).is_some_and(|key| key.segments().count() == 1)
}

/// A log file, opened (and repaired) at its first flush.
struct FsLog {
    inner: Arc<Inner>,
    file: LogFile,
    pending: Vec<u8>,
}

/// A log file, opened at its first append; cloned into blocking tasks.
#[derive(Clone)]
struct LogFile {
    path: PathBuf,
    open: Arc<Mutex<Option<OpenLog>>>,
}

impl LogFile {
    /// Appends whole lines (none is nothing to do), opening the log first if need be.
    fn append(&self, inner: &Inner, lines: &[u8]) -> Result<(), FsError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut open = self.open.lock();
        // A log removed by hand while open: the next line starts a new file, rather than
        // going to one nobody can read.
        if open.as_ref().is_some_and(OpenLog::is_unlinked) {
            *open = None;
        }
        match &mut *open {
            Some(log) => log.append(&self.path, lines),
            None => OpenLog::open(inner, &self.path)
                .and_then(|log| open.insert(log).append(&self.path, lines)),
        }
    }
}

struct OpenLog {
    file: File,
    /// Length of the log up to its last complete line.
    len: u64,
}

impl OpenLog {
    /// Opens the log for appending, first cutting off a torn last line that a crash may
    /// have left.
    fn open(inner: &Inner, path: &Path) -> Result<Self, FsError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).at("create folder", dir)?;
        inner.sweep(dir)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)
            .at("open", path)?;
        let size = file.metadata().at("read the size of", path)?.len();
        let len = complete_lines_len(&file, size).at("read", path)?;
        if len < size {
            file.set_len(len).at("cut the torn last line of", path)?;
            tracing::warn!(path = %path.display(), bytes = size - len, "cut a torn last line");
        }
        Ok(OpenLog { file, len })
    }

    fn is_unlinked(&self) -> bool {
        self.file.metadata().is_ok_and(|meta| meta.nlink() == 0)
    }

    /// Appends whole lines. On failure cuts off whatever part was written, so that the
    /// lines before stay intact and the next append starts on a line of its own.
    fn append(&mut self, path: &Path, lines: &[u8]) -> Result<(), FsError> {
        match self.file.write_all(lines) {
            Ok(()) => {
                self.len += lines.len() as u64;
                Ok(())
            }
            Err(error) => {
                if let Err(cut) = self.file.set_len(self.len) {
                    tracing::error!(path = %path.display(), error = %cut, "cannot cut a partly written line");
                }
                Err(error).at("append to", path)
            }
        }
    }
}

#[async_trait]
impl LogWriter for FsLog {
    fn push(&mut self, line: Vec<u8>) {
        self.pending.extend_from_slice(&line);
    }

    fn is_full(&self) -> bool {
        !self.pending.is_empty()
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let (inner, file) = (self.inner.clone(), self.file.clone());
        let lines = std::mem::take(&mut self.pending);
        let (appended, lines) = tokio::task::spawn_blocking(move || {
            let appended = file.append(&inner, &lines);
            (appended, lines)
        })
        .await
        .map_err(FsError::from)?;
        if appended.is_err() {
            // Kept for the next flush, as the trait promises.
            self.pending = lines;
        }
        Ok(appended?)
    }

    fn discard_pending(&mut self) {
        self.pending.clear();
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// The length of the first `size` bytes of `file` up to the end of their last complete line,
/// read backwards from the end: one small read when the file ends with a newline.
fn complete_lines_len(file: &File, size: u64) -> io::Result<u64> {
    use std::os::unix::fs::FileExt as _;
    let mut buffer = [0u8; 8192];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buffer.len() as u64);
        let chunk = &mut buffer[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(newline) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, FsStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path().to_owned()).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_stream_gives_the_range_asked_and_the_whole_size() {
        use futures_util::TryStreamExt as _;
        let (_dir, store) = store().await;
        let key = Key::of(["rec", "recall", "video.mp4"]);
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        store.create(&key, bytes.clone().into()).await.unwrap();
        assert_eq!(store.stat(&key).await.unwrap().unwrap().size, 10_000);
        for range in [None, Some(0..1), Some(100..9_000), Some(9_999..10_000)] {
            let streamed = store
                .get_stream(&key, range.clone())
                .await
                .unwrap()
                .unwrap();
            let want = range.unwrap_or(0..10_000);
            assert_eq!(
                (streamed.stat.size, streamed.range.clone()),
                (10_000, want.clone())
            );
            let parts: Vec<Bytes> = streamed.body.try_collect().await.unwrap();
            let want = &bytes[want.start as usize..want.end as usize];
            assert_eq!(parts.concat(), want);
        }
        let absent = Key::of(["rec", "recall", "none.mp4"]);
        assert!(store.stat(&absent).await.unwrap().is_none());
        assert!(store.get_stream(&absent, None).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn writes_in_place_create_the_file_and_leave_zeros_in_holes() {
        let (dir, store) = store().await;
        assert!(store.writes_in_place());
        let key = Key::of(["rec", "audio", "000000000.wav"]);
        let writes = vec![
            (4, Bytes::from_static(b"ef")),
            (0, Bytes::from_static(b"ab")),
        ];
        store.write_at(&key, writes).await.unwrap();
        let path = dir.path().join("rec/audio/000000000.wav");
        assert_eq!(fs::read(&path).unwrap(), b"ab\0\0ef");
        store
            .write_at(&key, vec![(2, Bytes::from_static(b"cd"))])
            .await
            .unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abcdef");
    }

    #[tokio::test]
    async fn the_first_create_wins_and_a_log_cuts_a_torn_line_then_appends() {
        let (dir, store) = store().await;
        let frame = Key::of(["rec", "100", "webcam", "000000500.png"]);
        assert!(matches!(
            store
                .create(&frame, Bytes::from_static(b"one"))
                .await
                .unwrap(),
            Created::New
        ));
        assert_eq!(
            store
                .create(&frame, Bytes::from_static(b"two"))
                .await
                .unwrap(),
            Created::Existed
        );
        assert_eq!(store.get(&frame).await.unwrap().unwrap().bytes, "one");

        let log = Key::of(["rec", "events.jsonl"]);
        let path = dir.path().join("rec/events.jsonl");
        fs::write(&path, b"{\"n\":1}\n{\"n\":").unwrap();
        let mut writer = store.log_writer(&log, 1);
        writer.push(b"{\"n\":2}\n".to_vec());
        writer.flush().await.unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"n\":1}\n{\"n\":2}\n");
    }

    #[tokio::test]
    async fn a_prefix_goes_whole_and_its_neighbours_stay() {
        let (dir, store) = store().await;
        for (key, bytes) in [
            (Key::of(["rec", "100", "webcam", "000000500.png"]), "png"),
            (Key::of(["rec", "recording.json"]), "{}"),
            (Key::of(["rec2", "recording.json"]), "{}"),
        ] {
            store
                .put(&key, Bytes::from_static(bytes.as_bytes()))
                .await
                .unwrap();
        }
        let removed = store.delete_prefix(&Key::of(["rec"])).await.unwrap();
        assert_eq!(
            removed,
            Removed {
                objects: 2,
                bytes: 5
            }
        );
        assert!(!dir.path().join("rec").exists());
        assert!(dir.path().join("rec2/recording.json").exists());
        let again = store.delete_prefix(&Key::of(["rec"])).await.unwrap();
        assert_eq!(again, Removed::default(), "nothing there is no error");
        assert!(store.delete_prefix(&Key::root()).await.is_err());
    }

    #[tokio::test]
    async fn a_log_removed_while_open_starts_again() {
        let (dir, store) = store().await;
        let log = Key::of(["rec", "events.jsonl"]);
        let path = dir.path().join("rec/events.jsonl");
        let mut writer = store.log_writer(&log, 1);
        writer.push(b"{\"n\":1}\n".to_vec());
        writer.flush().await.unwrap();
        fs::remove_file(&path).unwrap();
        writer.push(b"{\"n\":2}\n".to_vec());
        writer.flush().await.unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"{\"n\":2}\n");
    }

    #[tokio::test]
    async fn leftovers_go_at_the_first_write_and_a_reader_removes_nothing() {
        let (dir, store) = store().await;
        let stream = dir.path().join("rec/100/webcam");
        fs::create_dir_all(&stream).unwrap();
        let leftover = stream.join(".0badf00d-x.tmp");
        fs::write(&leftover, b"half").unwrap();
        let key = Key::of(["rec", "100", "webcam"]);

        let reader = FsStore::at(dir.path().to_owned());
        assert_eq!(reader.list(&key).await.unwrap(), vec![]);
        assert!(leftover.exists(), "listing is reading");
        store
            .create(&key.join("000000500.png"), Bytes::from_static(b"png"))
            .await
            .unwrap();
        assert!(!leftover.exists(), "swept before the first write");
        let listed = store.list(&key).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key.join("000000500.png"));
    }

    #[tokio::test]
    async fn a_streamed_listing_gives_what_a_listing_gives_and_stops_when_dropped() {
        use futures_util::{StreamExt as _, TryStreamExt as _};
        let (dir, store) = store().await;
        // Over three batches, in nested folders, with temporary files beside them.
        for i in 0..3_500 {
            let folder = dir.path().join(format!("rec{}/{}/webcam", i % 3, i % 7));
            fs::create_dir_all(&folder).unwrap();
            fs::write(folder.join(format!("{i:09}.png")), vec![0; i % 5]).unwrap();
            if i % 500 == 0 {
                fs::write(folder.join(".0badf00d-x.tmp"), b"half").unwrap();
            }
        }
        for prefix in [Key::root(), Key::of(["rec1"]), Key::of(["none"])] {
            let listed = store.list(&prefix).await.unwrap();
            let mut streamed: Vec<Listed> = store
                .list_stream(&prefix)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            streamed.sort_by(|a, b| a.key.cmp(&b.key));
            assert_eq!(streamed, listed, "{prefix}");
        }
        assert_eq!(store.list(&Key::root()).await.unwrap().len(), 3_500);

        let mut streamed = store.list_stream(&Key::root()).await.unwrap();
        assert!(streamed.next().await.unwrap().is_ok());
        drop(streamed);
        // The walk itself, to see it end once its receiver is gone.
        let (sender, mut receiver) = tokio::sync::mpsc::channel(1);
        let root = dir.path().to_owned();
        let walking =
            tokio::task::spawn_blocking(move || walk_in_batches(&root, &Key::root(), &sender));
        assert_eq!(receiver.recv().await.unwrap().len(), LIST_BATCH);
        drop(receiver);
        tokio::time::timeout(Duration::from_secs(10), walking)
            .await
            .expect("the walk stops when nobody reads it")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn a_link_below_the_root_reads_as_absent() {
        let (dir, store) = store().await;
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.png"), b"secret").unwrap();
        fs::create_dir_all(dir.path().join("rec")).unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("rec/linked")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.png"),
            dir.path().join("rec/file.png"),
        )
        .unwrap();
        for key in [
            Key::of(["rec", "linked", "secret.png"]),
            Key::of(["rec", "file.png"]),
        ] {
            assert!(store.get(&key).await.unwrap().is_none(), "{key}");
            assert!(store.local_file(&key).await.unwrap().is_none(), "{key}");
        }
        assert_eq!(
            store.list(&Key::of(["rec", "linked"])).await.unwrap(),
            vec![]
        );
        assert_eq!(
            store.list_folders(&Key::of(["rec"])).await.unwrap(),
            Vec::<String>::new()
        );
    }
}
