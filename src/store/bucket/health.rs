//! The bucket's health as its requests and checks find it, for `/healthz` and the metrics.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;

use super::failure::FailureKind;
use crate::metrics::{KindLabel, Metrics};

/// The bucket's health as its requests found it: failing from a failed request until the
/// next success. Transitions are logged once each way.
pub struct Health {
    failing: Mutex<Option<Failing>>,
    metrics: Arc<Metrics>,
}

struct Failing {
    since: Instant,
    kind: FailureKind,
}

impl Health {
    pub(super) fn new(metrics: Arc<Metrics>) -> Self {
        for kind in FailureKind::ALL {
            let _ = metrics.bucket_requests_failed.get_or_create(&KindLabel {
                kind: kind.as_str(),
            });
        }
        Health {
            failing: Mutex::new(None),
            metrics,
        }
    }

    pub(super) fn succeeded(&self) {
        let now = jiff::Timestamp::now();
        self.metrics
            .bucket_last_success
            .set(now.as_millisecond() as f64 / 1000.0);
        self.metrics.bucket_up.set(1);
        if let Some(failing) = self.failing.lock().take() {
            tracing::info!(
                after = ?failing.since.elapsed(),
                "the bucket answers again: saving and listing recordings resume"
            );
        }
    }

    pub(super) fn failed(
        &self,
        kind: FailureKind,
        error: &dyn std::fmt::Display,
        action: &str,
        key: &str,
    ) {
        self.metrics
            .bucket_requests_failed
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
        self.metrics.bucket_up.set(0);
        let mut failing = self.failing.lock();
        match &mut *failing {
            Some(failing) => failing.kind = kind,
            None => {
                *failing = Some(Failing {
                    since: Instant::now(),
                    kind,
                });
                tracing::error!(
                    %kind, action, key, %error,
                    "the bucket is failing: frames wait and are retried; /healthz says degraded until it answers again"
                );
            }
        }
    }

    /// Why the server is degraded, for `/healthz`: `None` while the bucket answers.
    pub fn degraded_reason(&self) -> Option<String> {
        self.failing.lock().as_ref().map(|failing| {
            format!(
                "the bucket's requests are failing ({}): frames wait and are retried",
                failing.kind
            )
        })
    }
}
