//! The state every handler shares: configuration, secrets, the pipeline and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Secret;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub ws_token: Secret,
    pub pipeline: Pipeline,
    pub metrics: Arc<Metrics>,
    /// Where the browse UI and the JSON API read saved recordings from.
    pub catalog: Arc<dyn Catalog>,
    /// Saved-frame events for live views.
    pub live: Live,
    /// Open websocket connections: shutdown waits for them to finish.
    pub connections: TaskTracker,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    connection_ids: Arc<AtomicU64>,
}

impl AppState {
    pub fn new(
        config: Config,
        ws_token: Secret,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        catalog: Arc<dyn Catalog>,
        live: Live,
    ) -> Self {
        AppState {
            config: Arc::new(config),
            ws_token,
            pipeline,
            metrics,
            catalog,
            live,
            connections: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            connection_ids: Arc::default(),
        }
    }

    /// A number that names one websocket connection in the logs.
    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}
