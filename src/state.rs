//! The state every handler shares: configuration, secrets, the pipeline and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Secret;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::disk::DiskWatch;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::recall::Bots;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub ws_token: Secret,
    pub pipeline: Pipeline,
    pub metrics: Arc<Metrics>,
    /// Where the browse UI and the JSON API read saved recordings from.
    pub catalog: Arc<Catalog>,
    /// Saved-frame events for live views.
    pub live: Live,
    /// Open websocket connections: shutdown waits for them to finish.
    pub connections: TaskTracker,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    /// Creating and managing Recall bots: unconfigured until `RECALL_API_KEY` is set.
    pub bots: Bots,
    /// Source of the numbers that name connections in the logs.
    pub connection_ids: Arc<AtomicU64>,
    /// One permit per websocket connection that may be open (`MAX_CONNECTIONS`).
    pub ws_slots: Arc<Semaphore>,
    /// Free space on DATA_DIR, measured in the background.
    pub disk: DiskWatch,
    /// The bucket recordings go to, when BUCKET_NAME is set.
    pub bucket: Option<crate::store::bucket::Bucket>,
    /// Deletions, retention and the quota: what is stored, and what is deleted.
    pub keeper: Arc<crate::retention::Keeper>,
    /// Recall's webhooks and the queue that fetches its async media.
    pub recall_media: crate::recall_media::RecallMedia,
    /// Export jobs (ffmpeg), and whether ffmpeg is there to run them.
    pub exports: crate::export::Exports,
}

impl AppState {
    /// A number that names one websocket connection in the logs.
    pub fn next_connection_id(&self) -> u64 {
        self.connection_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}
