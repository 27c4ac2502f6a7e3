//! The state every handler shares: configuration, secrets, the pipeline and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Secret;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::recall::Bots;

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
    /// Creating and managing Recall bots: unconfigured until [`AppState::with_bots`].
    pub bots: Bots,
    connection_ids: Arc<AtomicU64>,
}

impl AppState {
    pub fn new(
        config: Config,
        ws_token: Secret,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
    ) -> Self {
        AppState {
            config: Arc::new(config),
            ws_token,
            pipeline,
            metrics,
            connections: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            bots: Bots::default(),
            connection_ids: Arc::default(),
        }
    }

    pub fn with_bots(self, bots: Bots) -> Self {
        AppState { bots, ..self }
    }

    /// A number that names one websocket connection in the logs.
    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}
