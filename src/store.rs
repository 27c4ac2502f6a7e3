//! The byte store under every recording: a small set of primitives that the recorder and
//! the catalog are written against once, with one implementation per backend
//! (`store/fs.rs` for `DATA_DIR`, `store/bucket.rs` for an S3-compatible bucket, and
//! `store/memory.rs` for unit tests).
//!
//! A [`Key`] names an object by `/`-separated segments below the store's root, each made by
//! the caller from checked values; a store never takes a key from a client. A log (a
//! `frames.jsonl` or `events.jsonl`) is a sequence of whole lines that only grows: one file
//! appended to on disk, chunks owned each by one writer in a bucket. Its readers go through
//! [`read_log`], which reads only what each part gained since the last read.

pub mod bucket;
pub mod fs;
#[cfg(test)]
pub mod memory;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use futures_util::stream::BoxStream;
use jiff::Timestamp;

/// Parts of a log read at once by [`read_log`].
const PARALLEL_READS: usize = 8;

/// An object's name below the store's root: `/`-separated segments, none empty, `.` or
/// `..`, and none holding a `/`. Made only from checked values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    /// The store's root, under which recordings are listed.
    pub fn root() -> Key {
        Key::default()
    }

    /// This key with one more segment.
    ///
    /// # Panics
    /// When `segment` is not one path segment: callers build segments from checked ids,
    /// layout names and names the store listed itself, so this is a bug, not bad input.
    pub fn join(&self, segment: &str) -> Key {
        assert!(
            is_segment(segment),
            "{segment:?} is not a single key segment"
        );
        if self.0.is_empty() {
            Key(segment.to_owned())
        } else {
            Key(format!("{}/{segment}", self.0))
        }
    }

    /// The key of `segments` below the root.
    pub fn of<'a>(segments: impl IntoIterator<Item = &'a str>) -> Key {
        segments
            .into_iter()
            .fold(Key::root(), |key, segment| key.join(segment))
    }

    /// The key from a store's own listing; `None` when a segment is not one.
    pub fn parse(text: &str) -> Option<Key> {
        if text.is_empty() {
            return Some(Key::root());
        }
        text.split('/')
            .all(is_segment)
            .then(|| Key(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn segments(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.split('/').filter(|segment| !segment.is_empty())
    }

    /// The last segment.
    pub fn name(&self) -> Option<&str> {
        self.segments().next_back()
    }

    /// The segments of `self` after `prefix`, when `prefix` is one of its ancestors (or
    /// itself).
    pub fn strip_prefix(&self, prefix: &Key) -> Option<Vec<&str>> {
        let mut mine = self.segments();
        for segment in prefix.segments() {
            if mine.next() != Some(segment) {
                return None;
            }
        }
        Some(mine.collect())
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub(crate) fn is_segment(segment: &str) -> bool {
    !segment.is_empty() && segment != "." && segment != ".." && !segment.contains(['/', '\0'])
}

/// The version of an object, for compare-and-swap writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Version {
    pub e_tag: Option<String>,
    pub version: Option<String>,
}

/// What [`Store::delete_prefix`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Removed {
    pub objects: u64,
    pub bytes: u64,
}

/// What a create-only write found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object is the one sent, written by this request.
    New,
    /// Another object was there already; nothing was written.
    Existed,
}

/// An object's bytes with the version the store gave them.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Bytes,
    pub version: Version,
}

/// What a store knows of an object without reading its bytes.
#[derive(Debug, Clone)]
pub struct Stat {
    pub size: u64,
    pub version: Version,
}

/// A part of an object (or all of it) as its bytes arrive, for a download that should not
/// hold the object in memory: [`Store::get_stream`].
pub struct Streamed {
    pub stat: Stat,
    /// The bytes of the object that `body` holds.
    pub range: Range<u64>,
    /// Ends with an error when the read breaks part-way; it is not started again.
    pub body: BoxStream<'static, Result<Bytes, StoreError>>,
}

impl fmt::Debug for Streamed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Streamed")
            .field("stat", &self.stat)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

/// An object as a listing names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: Key,
    pub size: u64,
    /// The latest time the object can have been written. A store that keeps whole seconds
    /// (S3's `LastModified`) gives the end of that second, so an object never looks older
    /// than it is.
    pub written_by: Timestamp,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Fs(#[from] crate::files::FsError),
    #[error(transparent)]
    Bucket(#[from] crate::store::bucket::BucketError),
    #[error("{key} is not what this server writes there: {why}")]
    Unexpected { key: Key, why: String },
}

impl StoreError {
    /// What kind of failure it was, for `storage_failures{kind}`: `no_space`,
    /// `unreachable`...
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Fs(error) => error.kind(),
            StoreError::Bucket(error) => error.kind(),
            StoreError::Unexpected { .. } => "unexpected_object",
        }
    }
}

/// The byte-level primitives of a backend. Every method answers for the key it is given;
/// absence is an answer (`None`, an empty list), not an error.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Writes `bytes` at `key` only if nothing is there: the first writer wins.
    async fn create(&self, key: &Key, bytes: Bytes) -> Result<Created, StoreError>;

    /// Creates `key` from the local file `file` as [`Store::create`] does, reading the file
    /// in parts rather than whole into memory: for media too large to hold (Recall's
    /// downloads, exports). Readers see the whole object or none. `file` is left in place.
    async fn create_from_file(&self, key: &Key, file: &Path) -> Result<Created, StoreError>;

    /// Writes `bytes` at `key`, replacing whatever is there; readers see the old object or
    /// the new one, never a part.
    async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError>;

    /// Writes `bytes` at `key` if the object there is still at `expected`, or, with no
    /// `expected`, if there is none. `None` when another writer got there first.
    async fn swap(
        &self,
        key: &Key,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError>;

    /// Creates `key` as [`Store::create`] does and, when it was written, adds `line` to
    /// `log` and flushes it: a frame and its manifest line, in one step where the store can
    /// take one (a folder: one trip to the blocking pool).
    async fn create_logged(
        &self,
        key: &Key,
        bytes: Bytes,
        log: &mut dyn LogWriter,
        line: Vec<u8>,
    ) -> Result<Created, StoreError> {
        create_then_log(self, key, bytes, log, line).await
    }

    /// Writes each `(offset, bytes)` into the object at `key`, in order, creating it when
    /// absent; bytes between its end and an offset read as zeros. Only where objects are
    /// files changed in place ([`Store::writes_in_place`]): a reader may see the object
    /// between two of the writes. Elsewhere (a bucket) an error: objects there are only
    /// ever replaced whole.
    async fn write_at(&self, key: &Key, _writes: Vec<(u64, Bytes)>) -> Result<(), StoreError> {
        Err(StoreError::Unexpected {
            key: key.clone(),
            why: "this store replaces objects whole and cannot write into one".into(),
        })
    }

    /// Whether [`Store::write_at`] works here: a folder, not a bucket.
    fn writes_in_place(&self) -> bool {
        false
    }

    /// The object at `key`.
    async fn get(&self, key: &Key) -> Result<Option<Fetched>, StoreError>;

    /// The bytes of the object at `key` from `offset` on.
    async fn get_from(&self, key: &Key, offset: u64) -> Result<Option<Bytes>, StoreError>;

    /// The size and version of the object at `key`. This default reads the object whole:
    /// a store that can tell without reading (a folder, a bucket) says so itself.
    async fn stat(&self, key: &Key) -> Result<Option<Stat>, StoreError> {
        Ok(self.get(key).await?.map(|found| Stat {
            size: found.bytes.len() as u64,
            version: found.version,
        }))
    }

    /// The bytes `range` of the object at `key` (all of them with `None`) as a stream, so
    /// that a download holds a part at a time: what the HTTP routes serve from a store that
    /// has no [`Store::local_file`]. `range` lies within the object, as [`Store::stat`]
    /// gave its size. Only the request is retried where the store retries; a read that
    /// breaks part-way ends the stream with an error. This default reads the object whole
    /// into memory (fine for the memory store of the unit tests), then hands it out.
    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<Streamed>, StoreError> {
        let Some(found) = self.get(key).await? else {
            return Ok(None);
        };
        let size = found.bytes.len() as u64;
        let range = range.unwrap_or(0..size);
        let part = usize::try_from(range.start).unwrap_or(usize::MAX)
            ..usize::try_from(range.end).unwrap_or(usize::MAX);
        let Some(bytes) = found
            .bytes
            .get(part.clone())
            .map(|_| found.bytes.slice(part))
        else {
            return Err(StoreError::Unexpected {
                key: key.clone(),
                why: format!("bytes {range:?} were asked of an object of {size}"),
            });
        };
        Ok(Some(Streamed {
            stat: Stat {
                size,
                version: found.version,
            },
            range,
            body: futures_util::stream::once(async { Ok(bytes) }).boxed(),
        }))
    }

    /// Every object under `prefix`, at any depth, in key order. Parts of logs are listed
    /// like any object.
    async fn list(&self, prefix: &Key) -> Result<Vec<Listed>, StoreError>;

    /// Every object under `prefix`, at any depth, as [`Store::list`] gives them but as the
    /// listing goes and in no particular order: for a pass over the whole store (measuring
    /// it, [`crate::retention::Usage::measure`]) that must not hold millions of entries at
    /// once. Nothing is retried: a listing that breaks part-way ends the stream with the
    /// error. This default lists whole first (fine for the memory store of the unit tests).
    async fn list_stream(
        &self,
        prefix: &Key,
    ) -> Result<BoxStream<'static, Result<Listed, StoreError>>, StoreError> {
        let listed = self.list(prefix).await?;
        Ok(futures_util::stream::iter(listed.into_iter().map(Ok)).boxed())
    }

    /// The names of the folders right under `prefix`, sorted.
    async fn list_folders(&self, prefix: &Key) -> Result<Vec<String>, StoreError>;

    /// Removes the object at `key`; nothing there is not an error.
    async fn delete(&self, key: &Key) -> Result<(), StoreError>;

    /// Removes every object under `prefix`, at any depth (logs' parts included), and says
    /// how many and how many bytes. Nothing there is not an error, and a removal cut short
    /// is finished by calling it again. A folder goes whole; a bucket's objects are listed
    /// and removed in batches. Readers may see some objects gone and others not until it
    /// returns: what must vanish at once is hidden first, by a tombstone
    /// ([`crate::deletion`]).
    async fn delete_prefix(&self, prefix: &Key) -> Result<Removed, StoreError>;

    /// A new writer of the log `log` (a name ending in `.jsonl`), adding lines after every
    /// line already there, its own or another writer's. Where the store splits a log into
    /// parts, each holds up to `lines_per_part` lines.
    fn log_writer(&self, log: &Key, lines_per_part: usize) -> Box<dyn LogWriter>;

    /// The parts of the log `log` in the order their lines were written: empty when the log
    /// does not exist.
    async fn log_parts(&self, log: &Key) -> Result<Vec<Listed>, StoreError>;

    /// The file that holds `key` on this machine, when the store is a folder and it is a
    /// regular file there: served as a file (ETag, ranges) rather than read into memory.
    async fn local_file(&self, _key: &Key) -> Result<Option<PathBuf>, StoreError> {
        Ok(None)
    }

    /// Whether several servers may write the store at once. Then a participant's folder is
    /// claimed with a create-only object, and a frame found without a manifest line is
    /// rebuilt only once no live writer can still be about to add it.
    fn is_shared(&self) -> bool;

    /// How often a log's lines are written in a batch: `None` when each is written as it is
    /// pushed (a file), the interval otherwise (a bucket, where each write rewrites a chunk).
    fn log_interval(&self) -> Option<Duration>;

    /// The backend, for the `backend` label of metrics: `fs` or `bucket`.
    fn backend(&self) -> &'static str;
}

/// [`Store::create_logged`] in two steps, for any store.
pub(crate) async fn create_then_log(
    store: &(impl Store + ?Sized),
    key: &Key,
    bytes: Bytes,
    log: &mut dyn LogWriter,
    line: Vec<u8>,
) -> Result<Created, StoreError> {
    let created = store.create(key, bytes).await?;
    if created == Created::New {
        log.push(line);
        log.flush().await?;
    }
    Ok(created)
}

/// One writer's handle on a log. Lines pushed are stored once [`LogWriter::flush`] returns
/// `Ok`; on an error they stay pending for the next flush.
#[async_trait]
pub trait LogWriter: Send {
    /// Adds one whole line, its newline included.
    fn push(&mut self, line: Vec<u8>);

    /// Whether the writer holds as many lines as it should write at once.
    fn is_full(&self) -> bool;

    /// Writes the pending lines.
    async fn flush(&mut self) -> Result<(), StoreError>;

    /// Drops the lines not yet written (an event whose write failed is not recorded).
    fn discard_pending(&mut self);

    /// The writer itself, for a store that writes its own logs a faster way.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// How far a reader has read a log: bytes of each part up to the end of their last
/// complete line.
#[derive(Debug, Default)]
pub struct LogCursor {
    parts: BTreeMap<Key, u64>,
    /// Log bytes read over the cursor's life: what its reads cost.
    pub bytes_read: u64,
}

impl LogCursor {
    /// Whether any part of the log has been seen: the log exists.
    pub fn found_log(&self) -> bool {
        !self.parts.is_empty()
    }
}

/// What [`read_log`] brought: the complete lines added since the last read, in each part's
/// order, parts in the order they were written.
#[derive(Debug, Default)]
pub struct LogRead {
    pub lines: Vec<Bytes>,
    /// A part was shorter than what was read of it (crash repair cut a torn last line): the
    /// cursor started over, and `lines` are all the log's lines, to replace what the reader
    /// held.
    pub restarted: bool,
}

/// Reads what the log `log` gained since `cursor`: a line still being written (no newline
/// yet) is left for the next read.
pub async fn read_log(
    store: &dyn Store,
    log: &Key,
    cursor: &mut LogCursor,
) -> Result<LogRead, StoreError> {
    let parts = store.log_parts(log).await?;
    // A part shorter than what was read of it (crash repair cut a torn line), or gone (the
    // log was deleted, or removed by hand): start over from what there is now.
    let restarted = parts
        .iter()
        .any(|part| part.size < cursor.parts.get(&part.key).copied().unwrap_or(0))
        || cursor
            .parts
            .keys()
            .any(|read| !parts.iter().any(|part| &part.key == read));
    let mut grown = Vec::new();
    for part in parts {
        let read = match cursor.parts.get(&part.key) {
            Some(&read) if !restarted => read,
            _ => 0,
        };
        // A part not seen before is read even when empty, so that the cursor knows it.
        if part.size > read || restarted || !cursor.parts.contains_key(&part.key) {
            grown.push((part.key, read));
        }
    }
    type Part = (Key, u64, Option<Bytes>);
    let fetched: Vec<Result<Part, StoreError>> = futures_util::stream::iter(grown)
        .map(|(key, from)| async move {
            let bytes = store.get_from(&key, from).await?;
            Ok((key, from, bytes))
        })
        .buffered(PARALLEL_READS)
        .collect()
        .await;
    // Every part read, or the cursor stays where it was: no line is ever skipped.
    let fetched = fetched
        .into_iter()
        .collect::<Result<Vec<Part>, StoreError>>()?;
    if restarted {
        cursor.parts.clear();
    }
    let mut lines = Vec::new();
    for (key, from, bytes) in fetched {
        let Some(bytes) = bytes else { continue };
        cursor.bytes_read += bytes.len() as u64;
        let complete = complete_lines_len(&bytes);
        lines.extend(complete_lines(&bytes).map(|line| bytes.slice_ref(line)));
        cursor.parts.insert(key, from + complete as u64);
    }
    Ok(LogRead { lines, restarted })
}

/// Every complete line of the log `log`.
pub async fn read_whole_log(store: &dyn Store, log: &Key) -> Result<Vec<Bytes>, StoreError> {
    Ok(read_log(store, log, &mut LogCursor::default()).await?.lines)
}

/// The length of `text` up to the end of its last complete line: a last line without its
/// newline is still being written.
pub fn complete_lines_len(text: &[u8]) -> usize {
    text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// The non-empty complete lines of `text`.
pub fn complete_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text[..complete_lines_len(text)]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_segments() {
        let key = Key::of(["rec", "100-alice", "webcam"]);
        assert_eq!(key.as_str(), "rec/100-alice/webcam");
        assert_eq!(key.name(), Some("webcam"));
        assert_eq!(
            key.join("000000500.png")
                .strip_prefix(&Key::of(["rec"]))
                .unwrap(),
            vec!["100-alice", "webcam", "000000500.png"]
        );
        assert_eq!(key.strip_prefix(&Key::of(["other"])), None);
        assert_eq!(Key::parse("a/b"), Some(Key::of(["a", "b"])));
        for bad in ["a//b", "../a", "a/./b", "/a"] {
            assert_eq!(Key::parse(bad), None, "{bad}");
        }
        assert!(std::panic::catch_unwind(|| Key::root().join("a/b")).is_err());
        assert!(std::panic::catch_unwind(|| Key::root().join("..")).is_err());
    }

    #[tokio::test]
    async fn a_log_is_read_in_steps_and_again_after_a_cut() {
        let store = memory::MemoryStore::default();
        let log = Key::of(["rec", "events.jsonl"]);
        let mut cursor = LogCursor::default();
        assert!(
            read_log(&store, &log, &mut cursor)
                .await
                .unwrap()
                .lines
                .is_empty()
        );
        assert!(!cursor.found_log());
        store.append_raw(&log, b"{\"n\":1}\n{\"n\":");
        let read = read_log(&store, &log, &mut cursor).await.unwrap();
        assert_eq!(read.lines, vec![Bytes::from_static(b"{\"n\":1}")]);
        assert!(cursor.found_log());
        store.append_raw(&log, b"2}\n");
        let read = read_log(&store, &log, &mut cursor).await.unwrap();
        assert_eq!(read.lines, vec![Bytes::from_static(b"{\"n\":2}")]);
        assert!(!read.restarted);
        store.replace_raw(&log, b"{\"n\":3}\n");
        let read = read_log(&store, &log, &mut cursor).await.unwrap();
        assert!(read.restarted);
        assert_eq!(read.lines, vec![Bytes::from_static(b"{\"n\":3}")]);
    }
}
