//! The store that the recorder writes and the catalog reads through: the byte store, with
//! whatever a tombstone names made invisible and unwritable.
//!
//! - Reads under a deleted recording or participant folder find nothing, so the catalog,
//!   the API, the ZIPs and the UI never serve a half-deleted recording, from the moment the
//!   tombstone is set.
//! - Writes there are dropped: the frames, audio and summaries that were already queued
//!   when a (forced) deletion began land nowhere, and nothing is re-created. New ones are
//!   refused before this, at the websocket, with `deleted`.
//! - Every write holds [`Hidden`]'s gate for reading; a deletion takes it for writing to set
//!   its tombstone, so that a write that passed the check has landed before the bytes are
//!   removed, and none can land after.

use std::any::Any;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{StreamExt as _, TryStreamExt as _};

use super::Hidden;
use crate::store::{
    Created, Fetched, Key, Listed, LogWriter, Removed, Stat, Store, StoreError, Streamed, Version,
};

pub struct GuardedStore {
    inner: Arc<dyn Store>,
    hidden: Arc<Hidden>,
}

impl GuardedStore {
    pub fn new(inner: Arc<dyn Store>, hidden: Arc<Hidden>) -> Self {
        GuardedStore { inner, hidden }
    }
}

#[async_trait]
impl Store for GuardedStore {
    async fn create(&self, key: &Key, bytes: Bytes) -> Result<Created, StoreError> {
        let _gate = self.hidden.gate.read().await;
        if self.hidden.covers(key) {
            return Ok(Created::New);
        }
        self.inner.create(key, bytes).await
    }

    /// A long upload does not hold the gate, which would hold every deletion (and, behind
    /// a waiting deletion, every write) for its length. It is checked before, and again
    /// after under the gate: an object that landed once its folder was deleted is removed.
    async fn create_from_file(
        &self,
        key: &Key,
        file: &std::path::Path,
    ) -> Result<Created, StoreError> {
        if self.hidden.covers(key) {
            return Ok(Created::New);
        }
        let created = self.inner.create_from_file(key, file).await?;
        let _gate = self.hidden.gate.read().await;
        if self.hidden.covers(key) {
            self.inner.delete(key).await?;
        }
        Ok(created)
    }

    async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError> {
        let _gate = self.hidden.gate.read().await;
        if self.hidden.covers(key) {
            return Ok(());
        }
        self.inner.put(key, bytes).await
    }

    async fn swap(
        &self,
        key: &Key,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError> {
        let _gate = self.hidden.gate.read().await;
        if self.hidden.covers(key) {
            return Ok(Some(Version::default()));
        }
        self.inner.swap(key, bytes, expected).await
    }

    async fn create_logged(
        &self,
        key: &Key,
        bytes: Bytes,
        log: &mut dyn LogWriter,
        line: Vec<u8>,
    ) -> Result<Created, StoreError> {
        if !self.inner.writes_in_place() {
            // A bucket creates the object, then flushes `log`: a `GuardedLog`, which takes
            // the gate itself. Holding the gate here too would take a fair lock's read side
            // twice, and a deletion queued between the two would wait for the first while
            // the second waits for it.
            return crate::store::create_then_log(self, key, bytes, log, line).await;
        }
        let _gate = self.hidden.gate.read().await;
        if self.hidden.covers(key) {
            return Ok(Created::New);
        }
        // `log` is a `GuardedLog`, which hands the store its own writer (`as_any_mut`), so
        // that a folder writes the frame and its line in one step, under the gate.
        self.inner.create_logged(key, bytes, log, line).await
    }

    async fn write_at(&self, key: &Key, writes: Vec<(u64, Bytes)>) -> Result<(), StoreError> {
        let _gate = self.hidden.gate.read().await;
        if self.hidden.covers(key) {
            return Ok(());
        }
        self.inner.write_at(key, writes).await
    }

    fn writes_in_place(&self) -> bool {
        self.inner.writes_in_place()
    }

    async fn get(&self, key: &Key) -> Result<Option<Fetched>, StoreError> {
        if self.hidden.covers(key) {
            return Ok(None);
        }
        self.inner.get(key).await
    }

    async fn get_from(&self, key: &Key, offset: u64) -> Result<Option<Bytes>, StoreError> {
        if self.hidden.covers(key) {
            return Ok(None);
        }
        self.inner.get_from(key, offset).await
    }

    async fn stat(&self, key: &Key) -> Result<Option<Stat>, StoreError> {
        if self.hidden.covers(key) {
            return Ok(None);
        }
        self.inner.stat(key).await
    }

    async fn get_stream(
        &self,
        key: &Key,
        range: Option<Range<u64>>,
    ) -> Result<Option<Streamed>, StoreError> {
        if self.hidden.covers(key) {
            return Ok(None);
        }
        self.inner.get_stream(key, range).await
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<Listed>, StoreError> {
        if self.hidden.covers(prefix) {
            return Ok(Vec::new());
        }
        let mut listed = self.inner.list(prefix).await?;
        listed.retain(|object| !self.hidden.covers(&object.key));
        Ok(listed)
    }

    async fn list_stream(
        &self,
        prefix: &Key,
    ) -> Result<BoxStream<'static, Result<Listed, StoreError>>, StoreError> {
        if self.hidden.covers(prefix) {
            return Ok(futures_util::stream::empty().boxed());
        }
        let hidden = self.hidden.clone();
        let listed = self.inner.list_stream(prefix).await?;
        Ok(listed
            .try_filter(move |object| std::future::ready(!hidden.covers(&object.key)))
            .boxed())
    }

    async fn list_folders(&self, prefix: &Key) -> Result<Vec<String>, StoreError> {
        if self.hidden.covers(prefix) {
            return Ok(Vec::new());
        }
        let mut names = self.inner.list_folders(prefix).await?;
        names.retain(|name| !self.hidden.covers(&prefix.join(name)));
        Ok(names)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }

    async fn delete_prefix(&self, prefix: &Key) -> Result<Removed, StoreError> {
        self.inner.delete_prefix(prefix).await
    }

    fn log_writer(&self, log: &Key, lines_per_part: usize) -> Box<dyn LogWriter> {
        Box::new(GuardedLog {
            inner: self.inner.log_writer(log, lines_per_part),
            log: log.clone(),
            hidden: self.hidden.clone(),
        })
    }

    async fn log_parts(&self, log: &Key) -> Result<Vec<Listed>, StoreError> {
        if self.hidden.covers(log) {
            return Ok(Vec::new());
        }
        self.inner.log_parts(log).await
    }

    async fn local_file(&self, key: &Key) -> Result<Option<PathBuf>, StoreError> {
        if self.hidden.covers(key) {
            return Ok(None);
        }
        self.inner.local_file(key).await
    }

    fn is_shared(&self) -> bool {
        self.inner.is_shared()
    }

    fn log_interval(&self) -> Option<Duration> {
        self.inner.log_interval()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
}

/// A log writer whose lines are dropped once its log is under a tombstone.
struct GuardedLog {
    inner: Box<dyn LogWriter>,
    log: Key,
    hidden: Arc<Hidden>,
}

#[async_trait]
impl LogWriter for GuardedLog {
    fn push(&mut self, line: Vec<u8>) {
        self.inner.push(line);
    }

    fn is_full(&self) -> bool {
        self.inner.is_full()
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        let _gate = self.hidden.gate.read().await;
        if self.hidden.covers(&self.log) {
            self.inner.discard_pending();
            return Ok(());
        }
        self.inner.flush().await
    }

    fn discard_pending(&mut self) {
        self.inner.discard_pending();
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self.inner.as_any_mut()
    }
}
