//! The free-space watch on DATA_DIR. A background task measures the file system every
//! `DISK_CHECK_INTERVAL`; connections read the cached verdict (one atomic load per frame,
//! no syscall) and refuse new frames while free space is below `MIN_FREE_BYTES`. Frames
//! already queued are still written: the watermark is the room they land in. Recording
//! resumes by itself once space is freed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct DiskWatch {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    min_free: u64,
    low: AtomicBool,
    metrics: Arc<Metrics>,
}

impl DiskWatch {
    /// Measures once, so that a server started on a full disk is degraded from the start,
    /// then keeps measuring every `interval` until `stop` is cancelled.
    pub async fn start(
        dir: PathBuf,
        min_free: u64,
        interval: Duration,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) -> (Self, JoinHandle<()>) {
        let watch = DiskWatch {
            inner: Arc::new(Inner {
                dir,
                min_free,
                low: AtomicBool::new(false),
                metrics,
            }),
        };
        watch.check().await;
        let task = {
            let watch = watch.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticks.tick().await; // the first tick is immediate, and was done above
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break,
                        _ = ticks.tick() => watch.check().await,
                    }
                }
            })
        };
        (watch, task)
    }

    /// Whether free space is below the watermark, as last measured.
    pub fn is_low(&self) -> bool {
        self.inner.low.load(Ordering::Relaxed)
    }

    /// Why the server is degraded, for `/healthz`; `None` while there is room. Says nothing
    /// of sizes: `/healthz` is public, and the numbers are in `/metrics` and the logs.
    pub fn degraded_reason(&self) -> Option<&'static str> {
        self.is_low().then_some(
            "free space on DATA_DIR is below MIN_FREE_BYTES; new frames are refused until space is freed",
        )
    }

    async fn check(&self) {
        let dir = self.inner.dir.clone();
        let measured = tokio::task::spawn_blocking(move || available_bytes(&dir)).await;
        let inner = &self.inner;
        let free = match measured {
            Ok(Ok(free)) => free,
            // Keep the last verdict: a failed measurement is no reason to stop recording,
            // and a real fault shows in the writes themselves.
            Ok(Err(error)) => {
                tracing::warn!(dir = %inner.dir.display(), %error, "cannot measure free space");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "measuring free space panicked");
                return;
            }
        };
        inner
            .metrics
            .disk_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        let low = inner.min_free > 0 && free < inner.min_free;
        inner.metrics.disk_low.set(i64::from(low));
        let was_low = inner.low.swap(low, Ordering::Relaxed);
        match (was_low, low) {
            (false, true) => tracing::error!(
                dir = %inner.dir.display(),
                free_bytes = free,
                min_free_bytes = inner.min_free,
                "free space is below MIN_FREE_BYTES: refusing new frames until space is freed; saved frames are untouched"
            ),
            (true, false) => tracing::info!(
                dir = %inner.dir.display(),
                free_bytes = free,
                min_free_bytes = inner.min_free,
                "free space is back above MIN_FREE_BYTES: recording resumes"
            ),
            _ => {}
        }
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn available_bytes(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_watermark_above_the_free_space_is_low_and_zero_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let free = available_bytes(dir.path()).unwrap();
        assert!(free > 0);
        let start = |min_free| {
            DiskWatch::start(
                dir.path().to_owned(),
                min_free,
                Duration::from_secs(60),
                Arc::new(Metrics::default()),
                CancellationToken::new(),
            )
        };
        let (watch, task) = start(u64::MAX).await;
        assert!(watch.is_low());
        assert!(watch.degraded_reason().is_some());
        task.abort();
        let (watch, task) = start(0).await;
        assert!(!watch.is_low());
        assert_eq!(watch.degraded_reason(), None);
        task.abort();
    }
}
