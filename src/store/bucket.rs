//! The bucket store: keys are objects under the bucket's prefix, so that several servers
//! can record into one bucket at once. Requests and retries are the [`Bucket`] client's
//! (`bucket/client.rs`), what a failed request means is `bucket/failure.rs`'s, and the
//! bucket's health `bucket/health.rs`'s; this file maps the store's primitives onto them.
//!
//! S3 cannot append, so a log `X.jsonl` is the chunks under `X/` (see [`Chunk`]): each
//! writer owns its chunk's key, creates it with `If-None-Match: *` and rewrites it, longer
//! each time, only with `If-Match` on the version it wrote last. No writer can replace
//! another's lines.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};
use jiff::Timestamp;
use object_store::ObjectMeta;
use object_store::path::Path;

mod client;
mod failure;
mod health;

pub use client::{Bucket, StartupError};
pub use failure::{BucketError, FailureKind, classify};
pub use health::Health;

use super::{
    Created, Fetched, Key, Listed, LogWriter, Removed, Stat, Store, StoreError, Streamed, Version,
};
use crate::files::IoContext as _;

#[derive(Clone)]
pub struct BucketStore {
    inner: Arc<Inner>,
}

struct Inner {
    bucket: Bucket,
    /// This process's part of its chunks' names: 64 random bits, so that no two servers
    /// pick one name (and if they ever did, the create-only write would tell).
    instance: String,
    next_writer: AtomicU64,
    log_interval: Duration,
}

impl BucketStore {
    /// The store in `bucket`, whose logs are written every `log_interval`.
    pub fn new(bucket: Bucket, log_interval: Duration) -> Self {
        BucketStore {
            inner: Arc::new(Inner {
                bucket,
                instance: format!("{:016x}", rand::random::<u64>()),
                next_writer: AtomicU64::new(0),
                log_interval,
            }),
        }
    }

    pub fn bucket(&self) -> &Bucket {
        &self.inner.bucket
    }

    fn path(&self, key: &Key) -> Path {
        self.inner.bucket.key(key.segments())
    }

    /// The store's key of an object the bucket listed; `None` for one outside the prefix
    /// or with a name this server never writes.
    fn listed(&self, object: ObjectMeta) -> Option<Listed> {
        let parts = object.location.prefix_match(self.inner.bucket.root())?;
        let mut key = Key::root();
        for part in parts {
            let part = part.as_ref();
            if !super::is_segment(part) {
                return None;
            }
            key = key.join(part);
        }
        Some(Listed {
            key,
            size: object.size,
            written_by: written_by(object.last_modified.timestamp_millis()),
        })
    }
}

/// The latest time an object whose `LastModified` reads `modified_ms` can have been
/// written. S3 keeps whole seconds: an object written at 12:00:00.900 reads 12:00:00, and
/// taken at its word would look 0.9 s older than it is. A time on a whole second is
/// therefore taken as the end of that second.
pub fn written_by(modified_ms: i64) -> Timestamp {
    let end = if modified_ms.rem_euclid(1000) == 0 {
        modified_ms + 999
    } else {
        modified_ms
    };
    Timestamp::from_millisecond(end).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// A chunk's name: when its writer started it (Unix milliseconds, so that names sort in
/// creation order), then the writer's own id, unique to it.
pub fn chunk_name(started_unix_ms: i64, writer: &str) -> String {
    format!("{:013}-{writer}.jsonl", started_unix_ms.max(0))
}

/// Whether `name` is a chunk's name.
pub fn is_chunk_name(name: &str) -> bool {
    name.strip_suffix(".jsonl").is_some_and(|stem| {
        stem.len() > 14
            && stem.as_bytes()[13] == b'-'
            && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    })
}

/// The folder of a log's chunks: `frames.jsonl` → `frames/`.
fn chunk_dir(log: &Key) -> Key {
    let name = log.name().unwrap_or_default();
    let stem = name.strip_suffix(".jsonl").unwrap_or(name);
    let mut segments: Vec<&str> = log.segments().collect();
    segments.pop();
    Key::of(segments).join(stem)
}

#[async_trait]
impl Store for BucketStore {
    async fn create(&self, key: &Key, bytes: Bytes) -> Result<Created, StoreError> {
        Ok(
            match self.inner.bucket.create(&self.path(key), bytes).await? {
                Some(_) => Created::New,
                None => Created::Existed,
            },
        )
    }

    /// A file up to one upload part is written as bytes are; a larger one through a
    /// staging object under `.uploads/`, which the catalog never lists (a dot-folder).
    async fn create_from_file(
        &self,
        key: &Key,
        file: &std::path::Path,
    ) -> Result<Created, StoreError> {
        let size = tokio::fs::metadata(file).await.at("read", file)?.len();
        if size <= client::UPLOAD_PART as u64 {
            let bytes = tokio::fs::read(file).await.at("read", file)?;
            return self.create(key, bytes.into()).await;
        }
        let staging = self.path(&Key::of([
            ".uploads",
            &format!(
                "{}-{}",
                self.inner.instance,
                self.inner.next_writer.fetch_add(1, Ordering::Relaxed)
            ),
        ]));
        let created = self
            .inner
            .bucket
            .create_from_file(&self.path(key), file, size, &staging)
            .await?;
        Ok(match created {
            Some(()) => Created::New,
            None => Created::Existed,
        })
    }

    async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError> {
        Ok(self.inner.bucket.overwrite(&self.path(key), bytes).await?)
    }

    async fn swap(
        &self,
        key: &Key,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError> {
        Ok(self
            .inner
            .bucket
            .swap(&self.path(key), bytes, expected)
            .await?)
    }

    async fn get(&self, key: &Key) -> Result<Option<Fetched>, StoreError> {
        Ok(self.inner.bucket.get(&self.path(key)).await?)
    }

    async fn get_from(&self, key: &Key, offset: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self.inner.bucket.get_from(&self.path(key), offset).await?)
    }

    async fn stat(&self, key: &Key) -> Result<Option<Stat>, StoreError> {
        let found = self.inner.bucket.head(&self.path(key)).await?;
        Ok(found.as_ref().map(client::stat_of))
    }

    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<Streamed>, StoreError> {
        let found = self.inner.bucket.get_stream(&self.path(key), range).await?;
        Ok(found.map(|(meta, range, body)| Streamed {
            stat: client::stat_of(&meta),
            range,
            body: body.map_err(StoreError::from).boxed(),
        }))
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<Listed>, StoreError> {
        let objects = self.inner.bucket.list(&self.path(prefix)).await?;
        Ok(objects
            .into_iter()
            .filter_map(|object| self.listed(object))
            .collect())
    }

    async fn list_stream(
        &self,
        prefix: &Key,
    ) -> Result<BoxStream<'static, Result<Listed, StoreError>>, StoreError> {
        let store = self.clone();
        let objects = self.inner.bucket.list_stream(&self.path(prefix));
        Ok(objects
            .filter_map(move |object| {
                let listed = object
                    .map(|object| store.listed(object))
                    .map_err(StoreError::from)
                    .transpose();
                async move { listed }
            })
            .boxed())
    }

    async fn list_folders(&self, prefix: &Key) -> Result<Vec<String>, StoreError> {
        Ok(self.inner.bucket.list_folders(&self.path(prefix)).await?)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        Ok(self.inner.bucket.delete(&self.path(key)).await?)
    }

    async fn delete_prefix(&self, prefix: &Key) -> Result<Removed, StoreError> {
        if prefix.segments().next().is_none() {
            return Err(StoreError::Unexpected {
                key: prefix.clone(),
                why: "the store's root is never removed whole".into(),
            });
        }
        let objects = self.inner.bucket.list(&self.path(prefix)).await?;
        let removed = Removed {
            objects: objects.len() as u64,
            bytes: objects.iter().map(|object| object.size).sum(),
        };
        self.inner
            .bucket
            .delete_each(objects.into_iter().map(|object| object.location).collect())
            .await?;
        Ok(removed)
    }

    fn log_writer(&self, log: &Key, lines_per_part: usize) -> Box<dyn LogWriter> {
        Box::new(Chunk {
            store: self.clone(),
            dir: chunk_dir(log),
            max_lines: lines_per_part.max(1),
            key: None,
            version: None,
            written: Vec::new(),
            written_lines: 0,
            pending: Vec::new(),
            pending_lines: 0,
        })
    }

    async fn log_parts(&self, log: &Key) -> Result<Vec<Listed>, StoreError> {
        let dir = self.path(&chunk_dir(log));
        let chunks = self.inner.bucket.list_chunks(&dir).await?;
        Ok(chunks
            .into_iter()
            .filter_map(|object| self.listed(object))
            .collect())
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn log_interval(&self) -> Option<Duration> {
        Some(self.inner.log_interval)
    }

    fn backend(&self) -> &'static str {
        "bucket"
    }
}

/// One writer's chunk of a log. The writer owns the chunk's key: it creates it with
/// `If-None-Match: *`, then rewrites it with every line so far plus the new ones, with
/// `If-Match` on its own last version, so that the chunk only ever grows and readers may
/// read just what was added. Should a write find the key taken or changed (a write of ours
/// that landed although it reported failure), the writer goes on in a new chunk: lines may
/// then be listed twice, and readers keep one of each.
struct Chunk {
    store: BucketStore,
    dir: Key,
    max_lines: usize,
    key: Option<Key>,
    version: Option<Version>,
    /// The chunk's lines as the bucket has them.
    written: Vec<u8>,
    written_lines: usize,
    pending: Vec<u8>,
    pending_lines: usize,
}

impl Chunk {
    fn start_next(&mut self) {
        let inner = &self.store.inner;
        let writer = inner.next_writer.fetch_add(1, Ordering::Relaxed);
        let name = chunk_name(
            Timestamp::now().as_millisecond(),
            &format!("{}-{writer}", inner.instance),
        );
        self.key = Some(self.dir.join(&name));
        self.version = None;
        self.written.clear();
        self.written_lines = 0;
    }
}

#[async_trait]
impl LogWriter for Chunk {
    fn push(&mut self, line: Vec<u8>) {
        self.pending.extend_from_slice(&line);
        self.pending_lines += 1;
    }

    fn is_full(&self) -> bool {
        self.written_lines + self.pending_lines >= self.max_lines
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending_lines == 0 {
            return Ok(());
        }
        for _ in 0..3 {
            if self.key.is_none()
                || (self.written_lines > 0
                    && self.written_lines + self.pending_lines > self.max_lines)
            {
                self.start_next();
            }
            let Some(key) = self.key.clone() else {
                continue;
            };
            let mut body = Vec::with_capacity(self.written.len() + self.pending.len());
            body.extend_from_slice(&self.written);
            body.extend_from_slice(&self.pending);
            let swapped = self
                .store
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
        Err(StoreError::Unexpected {
            key: self.dir.clone(),
            why: "three new chunks in a row were taken".into(),
        })
    }

    fn discard_pending(&mut self) {
        self.pending.clear();
        self.pending_lines = 0;
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_second_is_taken_as_its_end() {
        let ms = |t: Timestamp| t.as_millisecond();
        assert_eq!(ms(written_by(1_795_000_000_000)), 1_795_000_000_999);
        assert_eq!(ms(written_by(1_795_000_000_450)), 1_795_000_000_450);
    }

    #[test]
    fn a_logs_chunks_sit_in_the_folder_of_its_stem() {
        assert_eq!(
            chunk_dir(&Key::of(["rec", "100", "webcam", "frames.jsonl"])),
            Key::of(["rec", "100", "webcam", "frames"])
        );
        assert_eq!(
            chunk_dir(&Key::of(["rec", "events.jsonl"])),
            Key::of(["rec", "events"])
        );
    }

    #[test]
    fn chunks_sort_by_their_start() {
        let early = chunk_name(1_795_000_000_000, "9f1c2a3b4c5d6e7f-1");
        let late = chunk_name(1_795_000_000_001, "0000000000000000-1");
        assert_eq!(early, "1795000000000-9f1c2a3b4c5d6e7f-1.jsonl");
        assert!(early < late);
        assert!(is_chunk_name(&early));
        for bad in [
            "frames.jsonl",
            "1795000000000.jsonl",
            "../x-y.jsonl",
            "000012500.png",
        ] {
            assert!(!is_chunk_name(bad), "{bad}");
        }
    }
}
