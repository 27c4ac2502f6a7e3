//! The state every handler shares: configuration, secrets, the pipeline and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Secret;
use crate::config::Config;
use crate::disk::DiskWatch;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub ws_token: Secret,
    pub pipeline: Pipeline,
    pub metrics: Arc<Metrics>,
    /// Open websocket connections: shutdown waits for them to finish.
    pub connections: TaskTracker,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    connection_ids: Arc<AtomicU64>,
    /// One permit per websocket connection that may be open (`MAX_CONNECTIONS`).
    pub ws_slots: Arc<Semaphore>,
    /// Free space on DATA_DIR, measured in the background.
    pub disk: DiskWatch,
}

impl AppState {
    pub fn new(
        config: Config,
        ws_token: Secret,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        disk: DiskWatch,
        shutdown: CancellationToken,
    ) -> Self {
        AppState {
            ws_slots: Arc::new(Semaphore::new(config.max_connections)),
            disk,
            config: Arc::new(config),
            ws_token,
            pipeline,
            metrics,
            connections: TaskTracker::new(),
            shutdown,
            connection_ids: Arc::default(),
        }
    }

    /// A number that names one websocket connection in the logs.
    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}
