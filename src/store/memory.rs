//! A store in memory, for unit tests of what is written above the store: a log is one
//! object appended to, as in a folder. `shared` makes it behave as a bucket does for the
//! recorder (claims, settling, batched logs), with listing times in whole seconds as S3
//! gives them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use parking_lot::Mutex;
use std::sync::Arc;

use super::{Created, Fetched, Key, Listed, LogWriter, Removed, Store, StoreError, Version};
use crate::files::IoContext as _;

#[derive(Clone, Default)]
pub struct MemoryStore {
    objects: Arc<Mutex<BTreeMap<Key, Object>>>,
    /// Some: behave as a shared store whose logs are written at this interval.
    shared: Option<Duration>,
}

#[derive(Clone)]
struct Object {
    bytes: Vec<u8>,
    version: u64,
    written: Timestamp,
}

impl MemoryStore {
    /// A store that several servers write, as a bucket: logs batched every `log_interval`.
    pub fn shared(log_interval: Duration) -> Self {
        MemoryStore {
            shared: Some(log_interval),
            ..MemoryStore::default()
        }
    }

    fn write(&self, key: &Key, bytes: Vec<u8>) -> Version {
        let mut objects = self.objects.lock();
        let version = objects.get(key).map_or(1, |object| object.version + 1);
        objects.insert(
            key.clone(),
            Object {
                bytes,
                version,
                written: Timestamp::now(),
            },
        );
        version_of(version)
    }

    /// Adds bytes to the end of an object, as a crash or another writer could leave them.
    pub fn append_raw(&self, key: &Key, bytes: &[u8]) {
        let mut all = self.bytes(key).unwrap_or_default();
        all.extend_from_slice(bytes);
        self.write(key, all);
    }

    /// Replaces an object's bytes.
    pub fn replace_raw(&self, key: &Key, bytes: &[u8]) {
        self.write(key, bytes.to_vec());
    }

    /// Sets when an object was written, as a listing reports it.
    pub fn set_written(&self, key: &Key, at: Timestamp) {
        if let Some(object) = self.objects.lock().get_mut(key) {
            object.written = at;
        }
    }

    pub fn bytes(&self, key: &Key) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .get(key)
            .map(|object| object.bytes.clone())
    }

    pub fn keys(&self) -> Vec<Key> {
        self.objects.lock().keys().cloned().collect()
    }

    fn listed(&self, key: &Key, object: &Object) -> Listed {
        let written_by = if self.shared.is_some() {
            // S3's LastModified: whole seconds, read as the end of the second.
            let ms = object.written.as_millisecond();
            super::bucket::written_by(ms - ms.rem_euclid(1000))
        } else {
            object.written
        };
        Listed {
            key: key.clone(),
            size: object.bytes.len() as u64,
            written_by,
        }
    }
}

fn version_of(version: u64) -> Version {
    Version {
        e_tag: Some(version.to_string()),
        version: None,
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn create(&self, key: &Key, bytes: Bytes) -> Result<Created, StoreError> {
        if self.objects.lock().contains_key(key) {
            return Ok(Created::Existed);
        }
        self.write(key, bytes.to_vec());
        Ok(Created::New)
    }

    async fn create_from_file(&self, key: &Key, file: &Path) -> Result<Created, StoreError> {
        let bytes = std::fs::read(file).at("read", file)?;
        self.create(key, bytes.into()).await
    }

    async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError> {
        self.write(key, bytes.to_vec());
        Ok(())
    }

    /// As a folder does; a shared store (a bucket's stand-in) refuses, as a bucket does.
    async fn write_at(&self, key: &Key, writes: Vec<(u64, Bytes)>) -> Result<(), StoreError> {
        if self.shared.is_some() {
            return Err(StoreError::Unexpected {
                key: key.clone(),
                why: "a shared store replaces objects whole".into(),
            });
        }
        let mut all = self.bytes(key).unwrap_or_default();
        for (offset, bytes) in writes {
            let (from, to) = (offset as usize, offset as usize + bytes.len());
            if all.len() < to {
                all.resize(to, 0);
            }
            all[from..to].copy_from_slice(&bytes);
        }
        self.write(key, all);
        Ok(())
    }

    fn writes_in_place(&self) -> bool {
        self.shared.is_none()
    }

    async fn swap(
        &self,
        key: &Key,
        bytes: Bytes,
        expected: Option<&Version>,
    ) -> Result<Option<Version>, StoreError> {
        let current = self
            .objects
            .lock()
            .get(key)
            .map(|object| version_of(object.version));
        if current.as_ref() != expected {
            return Ok(None);
        }
        Ok(Some(self.write(key, bytes.to_vec())))
    }

    async fn get(&self, key: &Key) -> Result<Option<Fetched>, StoreError> {
        Ok(self.objects.lock().get(key).map(|object| Fetched {
            bytes: Bytes::from(object.bytes.clone()),
            version: version_of(object.version),
        }))
    }

    async fn get_from(&self, key: &Key, offset: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self.objects.lock().get(key).map(|object| {
            let from = (offset as usize).min(object.bytes.len());
            Bytes::from(object.bytes[from..].to_vec())
        }))
    }

    async fn list(&self, prefix: &Key) -> Result<Vec<Listed>, StoreError> {
        let objects = self.objects.lock();
        Ok(objects
            .iter()
            .filter(|(key, _)| {
                key.strip_prefix(prefix)
                    .is_some_and(|rest| !rest.is_empty())
            })
            .map(|(key, object)| self.listed(key, object))
            .collect())
    }

    async fn list_folders(&self, prefix: &Key) -> Result<Vec<String>, StoreError> {
        let objects = self.objects.lock();
        let mut folders: Vec<String> = objects
            .keys()
            .filter_map(|key| {
                let rest = key.strip_prefix(prefix)?;
                (rest.len() > 1).then(|| rest[0].to_owned())
            })
            .collect();
        folders.dedup();
        Ok(folders)
    }

    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.objects.lock().remove(key);
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &Key) -> Result<Removed, StoreError> {
        let mut removed = Removed::default();
        self.objects.lock().retain(|key, object| {
            let under = key
                .strip_prefix(prefix)
                .is_some_and(|rest| !rest.is_empty());
            if under {
                removed.objects += 1;
                removed.bytes += object.bytes.len() as u64;
            }
            !under
        });
        Ok(removed)
    }

    fn log_writer(&self, log: &Key, _lines_per_part: usize) -> Box<dyn LogWriter> {
        Box::new(MemoryLog {
            store: self.clone(),
            log: log.clone(),
            pending: Vec::new(),
            opened: false,
        })
    }

    async fn log_parts(&self, log: &Key) -> Result<Vec<Listed>, StoreError> {
        let objects = self.objects.lock();
        Ok(objects
            .get(log)
            .map(|object| self.listed(log, object))
            .into_iter()
            .collect())
    }

    async fn local_file(&self, _key: &Key) -> Result<Option<PathBuf>, StoreError> {
        Ok(None)
    }

    fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    fn log_interval(&self) -> Option<Duration> {
        self.shared
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}

struct MemoryLog {
    store: MemoryStore,
    log: Key,
    pending: Vec<u8>,
    /// Whether the first flush has cut a torn last line, as a folder's log does.
    opened: bool,
}

#[async_trait]
impl LogWriter for MemoryLog {
    fn push(&mut self, line: Vec<u8>) {
        self.pending.extend_from_slice(&line);
    }

    fn is_full(&self) -> bool {
        false
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if !std::mem::replace(&mut self.opened, true)
            && let Some(mut bytes) = self.store.bytes(&self.log)
        {
            bytes.truncate(super::complete_lines_len(&bytes));
            self.store.replace_raw(&self.log, &bytes);
        }
        self.store
            .append_raw(&self.log, &std::mem::take(&mut self.pending));
        Ok(())
    }

    fn discard_pending(&mut self) {
        self.pending.clear();
    }

    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}
