//! What the server counts: server-wide Prometheus metrics, and the per-connection tally
//! that becomes each connection's closing summary.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tracing::Span;

use crate::event::RefusalReason;
use crate::frame::StreamKind;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// Where frames are stored: `fs` (DATA_DIR) or `bucket` (object storage).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabel {
    pub backend: &'static str,
}

/// A storage failure: the backend and what kind of failure it was.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageFailureLabel {
    pub backend: &'static str,
    pub kind: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 1 ms .. ~65 s: a local write takes milliseconds, an upload retried through an outage a
/// minute.
fn write_latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// Server-wide metrics, served at `/metrics` in Prometheus text format.
pub struct Metrics {
    registry: Registry,
    pub frames_received: Counter,
    pub frames_saved: Family<KindLabel, Counter>,
    pub frames_duplicate: Counter,
    pub bytes_saved: Counter,
    pub messages_refused: Family<ReasonLabel, Counter>,
    pub events_ignored: Counter,
    pub participant_events_recorded: Counter,
    pub sink_errors: Counter,
    pub connections_open: Gauge,
    pub connections_total: Counter,
    pub streams_open: Gauge,
    pub frames_queued: Gauge,
    pub save_seconds: Histogram,
    // Hardening (issue 6): refusals at the caps, the memory budget, free space.
    pub ws_upgrades_refused: Family<ReasonLabel, Counter>,
    pub ws_closed_idle: Counter,
    pub http_refused: Family<ReasonLabel, Counter>,
    pub buffered_bytes: Gauge,
    pub disk_free_bytes: Gauge,
    pub disk_low: Gauge,
    // Scaling out (issue 7): write latency and failures per backend, the bucket's health.
    pub sink_write_seconds: HistogramFamily<BackendLabel>,
    pub storage_failures: Family<StorageFailureLabel, Counter>,
    pub bucket_up: Gauge,
    pub bucket_last_success: Gauge<f64, AtomicU64>,
    pub bucket_requests_failed: Family<KindLabel, Counter>,
    pub bucket_retries: Counter,
    // Audio (issue 12).
    pub audio_chunks_received: Counter,
    pub audio_chunks_saved: Counter,
    pub audio_seconds_saved: Counter<f64, AtomicU64>,
    pub audio_chunks_duplicate: Counter,
    pub audio_samples_overlapping: Counter,
    pub audio_save_seconds: Histogram,
    // ---- Deleting, retention and quotas (issue 16) ----
    pub storage: crate::retention::StorageMetrics,
    /// Recall's webhooks and async media fetches (issue 13).
    pub recall: crate::recall_media::MediaMetrics,
}

/// Why a websocket upgrade was refused (`ws_upgrades_refused{reason}`).
pub const UPGRADE_REFUSALS: [&str; 4] = ["token", "signature", "connection_limit", "shutting_down"];

/// Why an HTTP request was refused for its head or body (`http_refused{reason}`).
pub const HTTP_REFUSALS: [&str; 3] = ["header_timeout", "body_too_large", "body_timeout"];

/// The storage backends (`sink_write_seconds{backend}`, `storage_failures{backend}`).
pub const STORAGE_BACKENDS: [&str; 2] = ["fs", "bucket"];

impl Default for Metrics {
    fn default() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("recall_frames"),
            frames_received: Counter::default(),
            frames_saved: Family::default(),
            frames_duplicate: Counter::default(),
            bytes_saved: Counter::default(),
            messages_refused: Family::default(),
            events_ignored: Counter::default(),
            participant_events_recorded: Counter::default(),
            sink_errors: Counter::default(),
            connections_open: Gauge::default(),
            connections_total: Counter::default(),
            streams_open: Gauge::default(),
            frames_queued: Gauge::default(),
            // 0.5 ms .. ~16 s
            save_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            ws_upgrades_refused: Family::default(),
            ws_closed_idle: Counter::default(),
            http_refused: Family::default(),
            buffered_bytes: Gauge::default(),
            disk_free_bytes: Gauge::default(),
            disk_low: Gauge::default(),
            sink_write_seconds: Family::new_with_constructor(write_latency_histogram),
            storage_failures: Family::default(),
            bucket_up: Gauge::default(),
            bucket_last_success: Gauge::default(),
            bucket_requests_failed: Family::default(),
            bucket_retries: Counter::default(),
            audio_chunks_received: Counter::default(),
            audio_chunks_saved: Counter::default(),
            audio_seconds_saved: Counter::default(),
            audio_chunks_duplicate: Counter::default(),
            audio_samples_overlapping: Counter::default(),
            audio_save_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            storage: crate::retention::StorageMetrics::default(),
            recall: Default::default(),
        };
        // Every label value exists from the start, so a dashboard sees zeros, not gaps.
        for kind in StreamKind::ALL {
            let _ = metrics.frames_saved.get_or_create(&KindLabel {
                kind: kind.as_str(),
            });
        }
        for reason in RefusalReason::ALL {
            let _ = metrics.messages_refused.get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            });
        }
        for reason in UPGRADE_REFUSALS {
            let _ = metrics
                .ws_upgrades_refused
                .get_or_create(&ReasonLabel { reason });
        }
        for reason in HTTP_REFUSALS {
            let _ = metrics.http_refused.get_or_create(&ReasonLabel { reason });
        }
        for backend in STORAGE_BACKENDS {
            let _ = metrics
                .sink_write_seconds
                .get_or_create(&BackendLabel { backend });
        }
        let r = &mut metrics.registry;
        r.register(
            "frames_received",
            "Frames decoded and accepted for saving",
            metrics.frames_received.clone(),
        );
        r.register(
            "frames_saved",
            "Frames written to the sink",
            metrics.frames_saved.clone(),
        );
        r.register(
            "frames_duplicate",
            "Frames skipped because their stream already had that millisecond",
            metrics.frames_duplicate.clone(),
        );
        r.register(
            "bytes_saved",
            "PNG bytes written to the sink",
            metrics.bytes_saved.clone(),
        );
        r.register(
            "messages_refused",
            "Websocket messages refused, by reason",
            metrics.messages_refused.clone(),
        );
        r.register(
            "events_ignored",
            "Well-formed events of types this server does not record",
            metrics.events_ignored.clone(),
        );
        r.register(
            "participant_events_recorded",
            "Participant events (join, leave, speech, chat...) written to the sink",
            metrics.participant_events_recorded.clone(),
        );
        r.register(
            "sink_errors",
            "Frames and participant events the sink failed to save",
            metrics.sink_errors.clone(),
        );
        r.register(
            "connections_open",
            "Open websocket connections",
            metrics.connections_open.clone(),
        );
        r.register(
            "connections",
            "Websocket connections accepted",
            metrics.connections_total.clone(),
        );
        r.register(
            "streams_open",
            "Streams with an open channel and task",
            metrics.streams_open.clone(),
        );
        r.register(
            "frames_queued",
            "Frames waiting in stream channels",
            metrics.frames_queued.clone(),
        );
        r.register(
            "save_seconds",
            "Time from a message's receipt to its frame being saved",
            metrics.save_seconds.clone(),
        );
        r.register(
            "ws_upgrades_refused",
            "Websocket upgrades refused, by reason",
            metrics.ws_upgrades_refused.clone(),
        );
        r.register(
            "ws_closed_idle",
            "Websockets closed for sending nothing, not even a pong, for WS_IDLE_TIMEOUT",
            metrics.ws_closed_idle.clone(),
        );
        r.register(
            "http_refused",
            "HTTP requests refused at a cap before reaching a handler, by reason",
            metrics.http_refused.clone(),
        );
        r.register(
            "buffered_bytes",
            "PNG bytes held in stream channels, at most BUFFER_BYTES",
            metrics.buffered_bytes.clone(),
        );
        r.register(
            "disk_free_bytes",
            "Free space on DATA_DIR's file system, as last measured",
            metrics.disk_free_bytes.clone(),
        );
        r.register(
            "disk_low",
            "1 while free space on DATA_DIR is below MIN_FREE_BYTES and frames are refused",
            metrics.disk_low.clone(),
        );
        r.register(
            "sink_write_seconds",
            "Time the storage backend took to save one frame (an upload with its retries, for a bucket)",
            metrics.sink_write_seconds.clone(),
        );
        r.register(
            "storage_failures",
            "Frames, participant events and manifests the storage backend failed to save, by backend and kind of failure",
            metrics.storage_failures.clone(),
        );
        r.register(
            "bucket_up",
            "1 while the bucket's last answer was a success, 0 while its requests fail (object storage only)",
            metrics.bucket_up.clone(),
        );
        r.register(
            "bucket_last_success_timestamp_seconds",
            "Unix time of the bucket's last successful answer (object storage only)",
            metrics.bucket_last_success.clone(),
        );
        r.register(
            "bucket_requests_failed",
            "Bucket requests that failed, retried or not, by kind of failure",
            metrics.bucket_requests_failed.clone(),
        );
        r.register(
            "bucket_retries",
            "Bucket requests sent again after a failure",
            metrics.bucket_retries.clone(),
        );
        r.register(
            "audio_chunks_received",
            "Audio chunks decoded and accepted for saving",
            metrics.audio_chunks_received.clone(),
        );
        r.register(
            "audio_chunks_saved",
            "Audio chunks that added samples to their track",
            metrics.audio_chunks_saved.clone(),
        );
        r.register(
            "audio_seconds_saved",
            "Seconds of audio (16 kHz samples / 16,000) written to tracks",
            metrics.audio_seconds_saved.clone(),
        );
        r.register(
            "audio_chunks_duplicate",
            "Audio chunks skipped because every sample had been received before",
            metrics.audio_chunks_duplicate.clone(),
        );
        r.register(
            "audio_samples_overlapping",
            "Samples of saved chunks that overlapped samples received before (the first kept)",
            metrics.audio_samples_overlapping.clone(),
        );
        r.register(
            "audio_save_seconds",
            "Time from a message's receipt to its audio chunk being placed on its track, to be written within 0.2 s (a folder) or the bucket's manifest interval",
            metrics.audio_save_seconds.clone(),
        );
        metrics.storage.register(r);
        metrics.recall.register(r);
        metrics
    }
}

impl Metrics {
    pub fn refused(&self, reason: RefusalReason) {
        self.messages_refused
            .get_or_create(&ReasonLabel {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn refuse_upgrade(&self, reason: &'static str) {
        self.ws_upgrades_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn refuse_http(&self, reason: &'static str) {
        self.http_refused
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    pub fn saved(&self, kind: StreamKind, bytes: u64, latency: Duration) {
        self.frames_saved
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
        self.bytes_saved.inc_by(bytes);
        self.save_seconds.observe(latency.as_secs_f64());
    }

    /// What became of an audio chunk, `latency` after its receipt.
    pub fn audio_recorded(&self, outcome: crate::sink::AudioOutcome, latency: Duration) {
        match outcome {
            crate::sink::AudioOutcome::Saved { written, overlap } => {
                self.audio_chunks_saved.inc();
                self.audio_seconds_saved
                    .inc_by(written as f64 / f64::from(crate::audio::SAMPLE_RATE));
                self.audio_samples_overlapping.inc_by(overlap);
                self.audio_save_seconds.observe(latency.as_secs_f64());
            }
            crate::sink::AudioOutcome::Duplicate => {
                self.audio_chunks_duplicate.inc();
            }
        }
    }

    /// A frame written by `backend` in `took`.
    pub fn sink_wrote(&self, backend: &'static str, took: Duration) {
        self.sink_write_seconds
            .get_or_create(&BackendLabel { backend })
            .observe(took.as_secs_f64());
    }

    /// Something the sink failed to save: counted in `sink_errors` and, by kind, in
    /// `storage_failures`.
    pub fn sink_failed(&self, backend: &'static str, kind: &'static str) {
        self.sink_errors.inc();
        self.storage_failures
            .get_or_create(&StorageFailureLabel { backend, kind })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// What happened to one connection's messages. Frames hold a reference until they are
/// saved, so the summary logged on drop counts every frame's final outcome.
pub struct Tally {
    span: Span,
    pub accepted: AtomicU64,
    pub saved: AtomicU64,
    pub duplicates: AtomicU64,
    pub failed: AtomicU64,
    pub ignored: AtomicU64,
    /// Participant events recorded.
    pub events: AtomicU64,
    /// Audio chunks saved (duplicates count in `duplicates`).
    pub audio: AtomicU64,
    refused: [AtomicU64; RefusalReason::ALL.len()],
}

impl Tally {
    pub fn new(span: Span) -> Self {
        Tally {
            span,
            accepted: AtomicU64::new(0),
            saved: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            ignored: AtomicU64::new(0),
            events: AtomicU64::new(0),
            audio: AtomicU64::new(0),
            refused: Default::default(),
        }
    }

    /// Counts a refusal and returns how many of that reason this connection has had.
    pub fn refused(&self, reason: RefusalReason) -> u64 {
        self.refused[reason as usize].fetch_add(1, Ordering::Relaxed) + 1
    }

    fn refused_summary(&self) -> String {
        let mut summary = String::new();
        for reason in RefusalReason::ALL {
            let n = self.refused[reason as usize].load(Ordering::Relaxed);
            if n > 0 {
                let sep = if summary.is_empty() { "" } else { " " };
                let _ = write!(summary, "{sep}{}={n}", reason.as_str());
            }
        }
        if summary.is_empty() {
            "none".into()
        } else {
            summary
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        self.span.in_scope(|| {
            tracing::info!(
                accepted = load(&self.accepted),
                saved = load(&self.saved),
                duplicates = load(&self.duplicates),
                failed = load(&self.failed),
                ignored = load(&self.ignored),
                events = load(&self.events),
                audio = load(&self.audio),
                refused = %self.refused_summary(),
                "connection summary"
            );
        });
    }
}
