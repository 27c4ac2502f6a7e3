//! Keeping stored recordings within their bounds: how much is stored (for `MAX_STORED_BYTES`,
//! the UI's sizes and `/metrics`), and how old it is (for `RETENTION`).
//!
//! A background task measures the store every `STORAGE_CHECK_INTERVAL` (and at start, and
//! right after a deletion): one listing of every object, summed per recording. The same
//! pass reads the tombstones again and finishes deletions a crash cut short
//! ([`crate::deletion`]), and, with `RETENTION` set, deletes the recordings whose last
//! write is older than it.
//!
//! At the cap nothing is deleted: new recordings are refused (`quota_reached`) and
//! `/healthz` says degraded, until a deletion (or a higher cap) makes room. Recordings
//! already stored carry on, so that no meeting in progress is cut: the cap can be passed by
//! what they add.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::TryStreamExt as _;
use jiff::Timestamp;
use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::deletion::{DeletedBy, Deletions, Target};
use crate::frame::RecordingId;
use crate::store::{Key, Store, StoreError};

/// How soon a check that failed (a bucket that does not answer) is made again.
const RETRY_FAILED_CHECK: Duration = Duration::from_secs(5);

/// What storage counts: deletions, the bytes they freed, what is stored, and the cap.
#[derive(Default)]
pub struct StorageMetrics {
    pub deletions: Family<ByLabel, Counter>,
    pub deleted_bytes: Family<ByLabel, Counter>,
    pub stored_bytes: Gauge,
    pub stored_recordings: Gauge,
    pub max_stored_bytes: Gauge,
    pub quota_reached: Gauge,
    pub retention_seconds: Gauge,
}

/// Who deleted: `api`, `cli` or `retention`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ByLabel {
    pub by: &'static str,
}

impl StorageMetrics {
    pub fn register(&self, r: &mut Registry) {
        for by in DeletedBy::ALL {
            let label = ByLabel { by: by.as_str() };
            let _ = self.deletions.get_or_create(&label);
            let _ = self.deleted_bytes.get_or_create(&label);
        }
        r.register(
            "deletions",
            "Recordings and participants deleted, by who asked (api, cli, retention)",
            self.deletions.clone(),
        );
        r.register(
            "deleted_bytes",
            "Bytes freed by deletions, by who asked",
            self.deleted_bytes.clone(),
        );
        r.register(
            "stored_bytes",
            "Bytes stored in DATA_DIR or the bucket, as last measured (STORAGE_CHECK_INTERVAL)",
            self.stored_bytes.clone(),
        );
        r.register(
            "stored_recordings",
            "Recordings stored, as last measured",
            self.stored_recordings.clone(),
        );
        r.register(
            "max_stored_bytes",
            "MAX_STORED_BYTES, the cap on stored bytes (0: none)",
            self.max_stored_bytes.clone(),
        );
        r.register(
            "quota_reached",
            "1 while stored bytes are at MAX_STORED_BYTES and new recordings are refused",
            self.quota_reached.clone(),
        );
        r.register(
            "retention_seconds",
            "RETENTION: recordings whose last write is older are deleted (0: kept for good)",
            self.retention_seconds.clone(),
        );
    }

    pub fn deleted(&self, by: DeletedBy, bytes: u64) {
        let label = ByLabel { by: by.as_str() };
        self.deletions.get_or_create(&label).inc();
        self.deleted_bytes.get_or_create(&label).inc_by(bytes);
    }
}

/// One recording's share of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingUsage {
    pub bytes: u64,
    pub objects: u64,
    /// When its newest object was written: its last activity.
    pub last_written: Timestamp,
}

/// A recording's last activity: when a bot last sent it something (a frame, audio, an
/// event). The server's own rewrites do not count: deleting a participant rewrites the
/// recording's event log without its lines, which must neither restart the retention clock
/// nor look like a bot still streaming. So the event log counts by the time its newest
/// line was received, read only when the log is the recording's newest object.
#[derive(Debug, Default, Clone, Copy)]
pub struct Activity {
    /// The newest object other than the event log.
    others: Option<Timestamp>,
    /// The event log's newest part, as the listing dates it.
    events: Option<Timestamp>,
}

impl Activity {
    /// Counts one listed object of the recording.
    pub fn add(&mut self, object: &crate::store::Listed) {
        let slot = match is_event_log(&object.key) {
            true => &mut self.events,
            false => &mut self.others,
        };
        *slot = (*slot).max(Some(object.written_by));
    }

    /// The last activity of `recording`, or `None` when it has no object.
    pub async fn last(
        &self,
        store: &dyn Store,
        recording: &RecordingId,
    ) -> Result<Option<Timestamp>, StoreError> {
        let Some(events) = self.events.filter(|events| Some(*events) > self.others) else {
            return Ok(self.others);
        };
        let received = last_event_received(store, recording).await?;
        Ok(match (self.others, received) {
            (None, None) => Some(events),
            (others, received) => others.max(received),
        })
    }
}

/// Whether `key` is (a part of) a recording's event log: `<recording>/events.jsonl` in a
/// folder, `<recording>/events/<part>` in a bucket.
fn is_event_log(key: &Key) -> bool {
    let stem = crate::layout::EVENTS_LOG.trim_end_matches(".jsonl");
    let mut segments = key.segments().skip(1);
    match (segments.next(), segments.next(), segments.next()) {
        (Some(name), None, None) => name == crate::layout::EVENTS_LOG,
        (Some(name), Some(_), None) => name == stem,
        _ => false,
    }
}

/// When the newest line of `recording`'s event log was received.
async fn last_event_received(
    store: &dyn Store,
    recording: &RecordingId,
) -> Result<Option<Timestamp>, StoreError> {
    let log = crate::layout::recording_key(recording).join(crate::layout::EVENTS_LOG);
    for part in store.log_parts(&log).await?.iter().rev() {
        let Some(found) = store.get(&part.key).await? else {
            continue;
        };
        let newest = crate::store::complete_lines(&found.bytes)
            .filter_map(|line| serde_json::from_slice::<crate::layout::EventRecord>(line).ok())
            .map(|event| event.received_at)
            .max();
        if newest.is_some() {
            return Ok(newest);
        }
    }
    Ok(None)
}

/// What the store held when last measured.
#[derive(Debug, Clone, Default)]
pub struct Usage {
    /// Every object's bytes, the server's own (tombstones, the audit log) included.
    pub total_bytes: u64,
    pub recordings: HashMap<RecordingId, RecordingUsage>,
}

impl Usage {
    /// Measures `store` with one listing, summed as it streams in ([`Store::list_stream`]):
    /// what is held grows with the recordings, not with the objects. Deleted recordings are
    /// not counted as recordings (their bytes, if any are left, are).
    pub async fn measure(store: &dyn Store, deletions: &Deletions) -> Result<Usage, StoreError> {
        let mut usage = Usage::default();
        let mut activity: HashMap<RecordingId, Activity> = HashMap::new();
        let mut listing = store.list_stream(&Key::root()).await?;
        while let Some(object) = listing.try_next().await? {
            usage.total_bytes += object.size;
            let Some(recording) = object
                .key
                .segments()
                .next()
                .and_then(RecordingId::parse)
                .filter(|id| !deletions.is_deleted(id, None))
            else {
                continue;
            };
            activity.entry(recording.clone()).or_default().add(&object);
            let entry = usage.recordings.entry(recording).or_insert(RecordingUsage {
                bytes: 0,
                objects: 0,
                last_written: object.written_by,
            });
            entry.bytes += object.size;
            entry.objects += 1;
        }
        for (recording, activity) in activity {
            let last = activity.last(store, &recording).await?;
            if let (Some(entry), Some(last)) = (usage.recordings.get_mut(&recording), last) {
                entry.last_written = last;
            }
        }
        Ok(usage)
    }

    /// The recordings whose last write is older than `retention` at `now`, oldest first.
    pub fn expired(
        &self,
        now: Timestamp,
        retention: Duration,
    ) -> Vec<(RecordingId, RecordingUsage)> {
        let retention =
            jiff::SignedDuration::try_from(retention).unwrap_or(jiff::SignedDuration::MAX);
        let mut expired: Vec<(RecordingId, RecordingUsage)> = self
            .recordings
            .iter()
            .filter(|(_, usage)| now.duration_since(usage.last_written) > retention)
            .map(|(id, usage)| (id.clone(), *usage))
            .collect();
        expired.sort_by(|a, b| a.1.last_written.cmp(&b.1.last_written).then(a.0.cmp(&b.0)));
        expired
    }
}

/// The settings of the keeper.
#[derive(Debug, Clone, Copy)]
pub struct KeeperConfig {
    pub max_stored_bytes: Option<u64>,
    pub retention: Option<Duration>,
    pub check_interval: Duration,
    /// A recording written this recently is being recorded: retention leaves it.
    pub active_for: Duration,
}

impl KeeperConfig {
    pub fn of(config: &crate::Config) -> Self {
        KeeperConfig {
            max_stored_bytes: config.max_stored_bytes,
            retention: config.retention,
            check_interval: config.storage_check_interval,
            active_for: config.stream_idle_timeout,
        }
    }
}

/// Measures the store, keeps the quota's verdict, and applies retention.
pub struct Keeper {
    store: Arc<dyn Store>,
    deletions: Arc<Deletions>,
    config: KeeperConfig,
    usage: RwLock<Option<Arc<Usage>>>,
    full: AtomicBool,
    recheck: Notify,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Keeper {
    pub fn new(
        store: Arc<dyn Store>,
        deletions: Arc<Deletions>,
        config: KeeperConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        let storage = &metrics.storage;
        storage
            .max_stored_bytes
            .set(config.max_stored_bytes.map_or(0, clamp));
        storage
            .retention_seconds
            .set(config.retention.map_or(0, |r| clamp(r.as_secs())));
        if let Some(retention) = config.retention {
            tracing::info!(
                "RETENTION {}: recordings with no activity for that long are deleted",
                crate::config::format_period(retention)
            );
        }
        Arc::new(Keeper {
            store,
            deletions,
            config,
            usage: RwLock::default(),
            full: AtomicBool::new(false),
            recheck: Notify::new(),
            metrics,
        })
    }

    pub fn deletions(&self) -> &Arc<Deletions> {
        &self.deletions
    }

    /// What the store held when last measured; `None` before the first measurement.
    pub fn usage(&self) -> Option<Arc<Usage>> {
        self.usage.read().clone()
    }

    pub fn max_stored_bytes(&self) -> Option<u64> {
        self.config.max_stored_bytes
    }

    /// Whether a message for `recording` is refused for the quota: stored bytes are at
    /// MAX_STORED_BYTES and the recording is not one already stored.
    pub fn refuses(&self, recording: &RecordingId) -> bool {
        self.full.load(Ordering::Relaxed)
            && self
                .usage()
                .is_none_or(|usage| !usage.recordings.contains_key(recording))
    }

    /// Why the server is degraded, for `/healthz`: sizes stay in `/metrics`.
    pub fn degraded_reason(&self) -> Option<&'static str> {
        self.full.load(Ordering::Relaxed).then_some(
            "stored bytes are at MAX_STORED_BYTES; new recordings are refused until recordings are deleted",
        )
    }

    /// Measures again soon (after a deletion).
    pub fn recheck(&self) {
        self.recheck.notify_one();
    }

    /// Measures, finishes pending deletions and applies retention now, then every
    /// `check_interval` (or sooner when asked), until `stop`. `is_active` says whether a
    /// recording is being streamed into on this server: retention leaves it.
    pub async fn run(
        self: Arc<Self>,
        stop: CancellationToken,
        is_active: impl Fn(&RecordingId) -> bool + Send + Sync + 'static,
    ) {
        loop {
            let done = self.check(&is_active).await;
            // A store that failed is tried again soon, not at the next interval.
            let wait = match done {
                true => self.config.check_interval,
                false => self.config.check_interval.min(RETRY_FAILED_CHECK),
            };
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.recheck.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One check; false when the store failed.
    async fn check(&self, is_active: &(impl Fn(&RecordingId) -> bool + Send + Sync)) -> bool {
        match self.deletions.refresh().await {
            Ok(pending) => {
                for deleted in self.deletions.finish_pending(pending).await {
                    self.metrics.storage.deleted(deleted.by, deleted.bytes);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the tombstones; trying again soon");
                return false;
            }
        }
        let Some(usage) = self.measure().await else {
            return false;
        };
        let Some(retention) = self.config.retention else {
            return true;
        };
        let mut deleted_any = false;
        for (recording, usage) in usage.expired(Timestamp::now(), retention) {
            let active_for = jiff::SignedDuration::try_from(self.config.active_for)
                .unwrap_or(jiff::SignedDuration::MAX);
            if is_active(&recording)
                || Timestamp::now().duration_since(usage.last_written) < active_for
            {
                continue;
            }
            let target = Target::Recording(recording.clone());
            match self
                .deletions
                .delete(&target, DeletedBy::Retention, None)
                .await
            {
                Ok(deleted) => {
                    self.metrics.storage.deleted(deleted.by, deleted.bytes);
                    deleted_any = true;
                }
                Err(error) => {
                    tracing::warn!(%error, %recording, "retention could not delete a recording; trying again at the next check");
                }
            }
        }
        if deleted_any {
            self.measure().await;
        }
        true
    }

    /// Measures the store and updates the quota's verdict and the metrics.
    async fn measure(&self) -> Option<Arc<Usage>> {
        let usage = match Usage::measure(self.store.as_ref(), &self.deletions).await {
            Ok(usage) => Arc::new(usage),
            Err(error) => {
                // The last verdict stands: a failed listing is no reason to refuse or admit.
                tracing::warn!(%error, "cannot measure the stored bytes; trying again later");
                return None;
            }
        };
        let storage = &self.metrics.storage;
        storage.stored_bytes.set(clamp(usage.total_bytes));
        storage
            .stored_recordings
            .set(clamp(usage.recordings.len() as u64));
        let full = self
            .config
            .max_stored_bytes
            .is_some_and(|max| usage.total_bytes >= max);
        storage.quota_reached.set(i64::from(full));
        *self.usage.write() = Some(usage.clone());
        let was_full = self.full.swap(full, Ordering::Relaxed);
        let max = self.config.max_stored_bytes.unwrap_or(0);
        match (was_full, full) {
            (false, true) => tracing::error!(
                stored_bytes = usage.total_bytes,
                max_stored_bytes = max,
                "stored bytes reached MAX_STORED_BYTES: refusing new recordings until recordings are deleted; nothing is deleted to make room"
            ),
            (true, false) => tracing::info!(
                stored_bytes = usage.total_bytes,
                max_stored_bytes = max,
                "stored bytes are below MAX_STORED_BYTES again: new recordings are taken"
            ),
            _ => {}
        }
        Some(usage)
    }
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;
    use bytes::Bytes;

    fn id(text: &str) -> RecordingId {
        RecordingId::parse(text).unwrap()
    }

    /// The clock is injected: objects are written "40 days ago" and "1 day ago", and
    /// retention is judged at a given now. A bucket's whole seconds included.
    #[tokio::test]
    async fn old_recordings_expire_and_recent_ones_stay() {
        for store in [
            MemoryStore::default(),
            MemoryStore::shared(Duration::from_secs(1)),
        ] {
            let now: Timestamp = "2026-12-01T12:00:00Z".parse().unwrap();
            let day = jiff::SignedDuration::from_hours(24);
            for (key, age_days) in [
                ("old/100/webcam/000000500.png", 40),
                ("old/recording.json", 31),
                ("recent/100/webcam/000000500.png", 40),
                ("recent/recording.json", 1),
                (".deletions/audit.jsonl", 400),
            ] {
                let key = Key::parse(key).unwrap();
                store
                    .put(&key, Bytes::from_static(b"0123456789"))
                    .await
                    .unwrap();
                store.set_written(&key, now - day * age_days);
            }
            let deletions = Deletions::load(Arc::new(store.clone())).await.unwrap();
            let usage = Usage::measure(&store, &deletions).await.unwrap();
            assert_eq!(usage.total_bytes, 50);
            assert_eq!(
                usage.recordings.len(),
                2,
                "the server's own folder is no recording"
            );
            let thirty_days = Duration::from_secs(30 * 24 * 3600);
            let expired = usage.expired(now, thirty_days);
            assert_eq!(expired.len(), 1);
            assert_eq!(expired[0].0, id("old"));
            assert_eq!(expired[0].1.bytes, 20);
            assert!(usage.expired(now, thirty_days * 2).is_empty());
        }
    }
}
