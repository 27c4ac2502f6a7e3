//! recall-frames: records the per-participant PNG frames that Recall.ai meeting bots stream
//! over a websocket, as timestamped PNG sequences grouped by recording, participant and
//! stream, and, when the bot sends it, each participant's audio (and the mixed audio) as
//! WAV pieces on the recording's timeline ([`audio`]). After the call, Recall's webhooks
//! and its per-participant MP4s and audio are kept with the same recording
//! (`recall_media`, `http/webhooks.rs`). What is saved can be exported as MP4 videos with
//! their true timing and sound, per stream or as a gallery of the whole meeting, by ffmpeg
//! in background jobs ([`export`]). Recordings and participants can be deleted, by hand or
//! by retention (`deletion`, `retention`).
//!
//! [`run`] is the whole server; `main.rs` only parses the configuration, binds and calls it,
//! and tests call it the same way with their own listener and shutdown future.

#![warn(clippy::unwrap_used)]

// What a user of the crate needs: the server (`run`), its configuration and command line,
// the domain types (frames in `frame`, audio chunks and their timeline in `audio`), the
// layout of saved recordings, the recorder and store to write them, the catalog to read them
// back, what recordings are called, the exports, and the simulator.
pub mod audio;
pub mod catalog;
pub mod cli;
pub mod export;
pub mod frame;
pub mod layout;
pub mod recorder;
pub mod simulate;
pub mod sink;
pub mod store;
pub mod title;

mod auth;
mod config;
mod copy;
mod deletion;
mod disk;
mod error;
mod event;
mod files;
mod http;
mod live;
mod metrics;
mod pipeline;
mod recall;
mod recall_media;
mod retention;
mod state;

/// Internals that the integration tests and benchmarks drive directly: the wire decoder,
/// the store as the server opens it, and Recall's upgrade signatures. Not a stable API.
#[doc(hidden)]
pub mod testing {
    /// The websocket message decoder.
    pub mod event {
        pub use crate::event::{
            Decoder, Inbound, MAX_SIDE, Refusal, decode, decode_in_two_passes, png_dimensions,
        };
    }
    /// The store the configuration names (a folder or a bucket), as the server opens it.
    pub async fn open_store(
        config: &crate::Config,
    ) -> anyhow::Result<std::sync::Arc<dyn crate::store::Store>> {
        Ok(crate::open_store(config, Default::default()).await?.0)
    }
    /// Recall's upgrade and webhook signatures.
    pub mod signature {
        pub use crate::auth::signature::{SigningSecret, sign, sign_payload};
    }
}

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::{Config, LogFormat};
pub use copy::{CopyReport, copy_to_bucket};
pub use deletion::command::{DeleteArgs, delete};

use crate::auth::TokenSource;
use crate::catalog::Catalog;
use crate::deletion::Deletions;
use crate::disk::DiskWatch;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineConfig};
use crate::recorder::Recorder;
use crate::retention::{Keeper, KeeperConfig};
use crate::sink::FrameSink;
use crate::state::AppState;
use crate::store::Store;
use crate::store::bucket::Bucket;
use crate::store::bucket::BucketStore;
use crate::store::fs::FsStore;

/// How long shutdown waits for the storage check (a retention deletion) to stop.
const KEEPER_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// The signals on which the server drains and exits: a container's stop signal must be one
/// of them.
pub const SHUTDOWN_SIGNALS: [(&str, SignalKind); 2] = [
    ("SIGTERM", SignalKind::terminate()),
    ("SIGINT", SignalKind::interrupt()),
];

/// A future that resolves when one of [`SHUTDOWN_SIGNALS`] arrives: the `shutdown` that
/// `main` gives [`run`].
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    let mut streams = Vec::new();
    for (name, kind) in SHUTDOWN_SIGNALS {
        streams.push((
            name,
            signal(kind).with_context(|| format!("cannot handle {name}"))?,
        ));
    }
    Ok(async move {
        let received = streams.iter_mut().map(|(name, stream)| {
            Box::pin(async move {
                stream.recv().await;
                *name
            })
        });
        let (name, _, _) = futures_util::future::select_all(received).await;
        tracing::info!("{name} received");
    })
}

/// Serves until `shutdown` resolves, then stops accepting, lets open websockets finish
/// their closing handshake, saves every queued frame and flushes the summaries, all within
/// `config.shutdown_timeout`. Returns an error if start-up fails or the drain timed out.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    config.check().map_err(anyhow::Error::msg)?;
    let storage = Storage::open(&config).await?;
    serve(config, listener, shutdown, storage).await
}

/// Where recordings are written and read: DATA_DIR, or a bucket.
pub(crate) struct Storage {
    pub(crate) sink: Arc<dyn FrameSink>,
    pub(crate) catalog: Arc<Catalog>,
    /// The byte store itself; the recorder and the catalog go through `deletions`' guard.
    pub(crate) store: Arc<dyn Store>,
    pub(crate) deletions: Arc<Deletions>,
    pub(crate) bucket: Option<Bucket>,
    metrics: Arc<Metrics>,
}

/// The byte store the configuration names: a bucket when BUCKET_NAME is set, DATA_DIR
/// otherwise.
pub(crate) async fn open_store(
    config: &Config,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<dyn Store>, Option<Bucket>)> {
    Ok(if config.bucket_name.is_none() {
        let store = FsStore::open(config.data_dir.clone())
            .await
            .with_context(|| format!("DATA_DIR {} is not usable", config.data_dir.display()))?;
        (Arc::new(store), None)
    } else {
        let bucket = Bucket::connect(config, metrics).await?;
        let store = BucketStore::new(bucket.clone(), config.bucket_manifest_interval);
        (Arc::new(store), Some(bucket))
    })
}

impl Storage {
    /// What the configuration names: a bucket when BUCKET_NAME is set, DATA_DIR otherwise.
    pub(crate) async fn open(config: &Config) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let (store, bucket) = open_store(config, metrics.clone()).await?;
        let deletions = Deletions::unread(store.clone());
        // Read before anything is served, so that nothing deleted is; a bucket that does
        // not answer is waited for no longer than its check, and the storage check reads
        // them as soon as it answers (the server is degraded meanwhile).
        let read = match &bucket {
            None => Ok(deletions.refresh().await),
            Some(_) => tokio::time::timeout(config.bucket_check_timeout, deletions.refresh()).await,
        };
        match read {
            Ok(Ok(_)) => {}
            Ok(Err(error)) if bucket.is_none() => {
                return Err(anyhow::Error::new(error)
                    .context("cannot read the tombstones of deleted recordings"));
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "cannot read the tombstones of deleted recordings yet");
            }
            Err(_) => tracing::warn!(
                "the bucket did not list the tombstones of deleted recordings in time; reading them later"
            ),
        }
        let sink = Arc::new(Recorder::new(deletions.guarded()));
        Ok(Storage::with_sink(
            config, store, deletions, sink, bucket, metrics,
        ))
    }

    fn with_sink(
        config: &Config,
        store: Arc<dyn Store>,
        deletions: Arc<Deletions>,
        sink: Arc<dyn FrameSink>,
        bucket: Option<Bucket>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Storage {
            sink,
            catalog: Arc::new(Catalog::new(
                deletions.guarded(),
                config.catalog_cache_frames,
            )),
            store,
            deletions,
            bucket,
            metrics,
        }
    }
}

/// [`run`], with frames going to `sink` rather than to a file-system sink on DATA_DIR.
/// DATA_DIR still holds the generated token and is still watched for free space. Tests use
/// it to put faults (a slow disk) between the pipeline and a real sink.
pub async fn run_with_sink(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    sink: Arc<dyn FrameSink>,
) -> anyhow::Result<()> {
    config.check().map_err(anyhow::Error::msg)?;
    // Read by the catalog only: `sink` writes DATA_DIR.
    let store: Arc<dyn Store> = Arc::new(FsStore::at(config.data_dir.clone()));
    let deletions = Deletions::load(store.clone())
        .await
        .context("cannot read the tombstones of deleted recordings")?;
    let storage = Storage::with_sink(
        &config,
        store,
        deletions,
        sink,
        None,
        Arc::new(Metrics::default()),
    );
    serve(config, listener, shutdown, storage).await
}

async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    storage: Storage,
) -> anyhow::Result<()> {
    let Storage {
        sink,
        catalog,
        store,
        deletions,
        bucket,
        metrics,
    } = storage;
    let local = listener
        .local_addr()
        .context("listener has no local address")?;
    tokio::fs::create_dir_all(&config.data_dir)
        .await
        .with_context(|| format!("cannot create DATA_DIR {}", config.data_dir.display()))?;
    let (ws_token, token_source) =
        auth::ws_token(config.ws_token.clone(), &config.data_dir).await?;
    let live = Live::default();
    let pipeline = Pipeline::new(
        PipelineConfig::of(&config),
        sink,
        metrics.clone(),
        live.clone(),
    );
    let stopping = CancellationToken::new();
    let (disk, disk_watch) = DiskWatch::start(
        config.data_dir.clone(),
        // With a bucket, DATA_DIR holds only the generated token: its free space is
        // measured, but frames are not refused for it.
        if bucket.is_some() {
            0
        } else {
            config.min_free_bytes
        },
        config.disk_check_interval,
        metrics.clone(),
        stopping.clone(),
    )
    .await;
    let bucket_watch = bucket
        .as_ref()
        .map(|bucket| bucket.watch(config.bucket_check_interval, stopping.clone()));
    let bots = recall::Bots::new(&config, &ws_token)?;
    // Through the deletions' guard, as the recorder writes: media fetched or exported for a
    // recording deleted meanwhile is not re-created.
    let recall_media = recall_media::RecallMedia::start(
        &config,
        deletions.guarded(),
        bots.client().ok().cloned(),
        metrics.clone(),
    )
    .await
    .context("cannot start fetching Recall's media")?;
    let exports = export::Exports::start(
        &config,
        catalog.clone(),
        deletions.guarded(),
        stopping.child_token(),
    )
    .await;
    let keeper = Keeper::new(store, deletions, KeeperConfig::of(&config), metrics.clone());
    let keeper_task = {
        let pipeline = pipeline.clone();
        tokio::spawn(
            keeper
                .clone()
                .run(stopping.clone(), move |id| pipeline.is_streaming(id)),
        )
    };
    let state = AppState {
        keeper,
        bots,
        ws_slots: Arc::new(Semaphore::new(config.max_connections)),
        config: Arc::new(config),
        ws_token,
        pipeline,
        metrics,
        catalog,
        live,
        connections: TaskTracker::new(),
        shutdown: stopping,
        connection_ids: Arc::default(),
        disk,
        bucket,
        recall_media,
        exports,
    };
    log_startup(&state, local, &token_source);
    state.bots.log_startup();

    let server = http::serve::serve(
        listener,
        http::router(state.clone()),
        state.config.request_timeout,
        state.metrics.clone(),
        state.shutdown.clone(),
    );
    let mut server = std::pin::pin!(server);
    tokio::select! {
        () = &mut server => anyhow::bail!("server stopped"),
        () = shutdown => {}
    }
    tracing::info!(
        "shutting down: no new connections; closing websockets, then saving queued frames"
    );
    state.shutdown.cancel();
    let drained = drain(&state, server).await;
    if let Err(error) = disk_watch.await {
        tracing::warn!(%error, "the free-space watch panicked");
    }
    // A deletion under way may take long in a bucket: it is cut, and the next start
    // finishes it (its pending marker says what is left).
    let mut keeper_task = keeper_task;
    match tokio::time::timeout(KEEPER_STOP_GRACE, &mut keeper_task).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::warn!(%error, "the storage check panicked"),
        Err(_) => {
            keeper_task.abort();
            tracing::warn!("a deletion was under way at shutdown; the next start finishes it");
        }
    }
    if let Some(watch) = bucket_watch
        && let Err(error) = watch.await
    {
        tracing::warn!(%error, "the bucket watch panicked");
    }
    drained
}

async fn drain(state: &AppState, server: impl Future<Output = ()>) -> anyhow::Result<()> {
    let deadline = Instant::now() + state.config.shutdown_timeout;
    let http_closed = tokio::time::timeout_at(deadline, server).await.is_ok();
    state.connections.close();
    let sockets_closed = tokio::time::timeout_at(deadline, state.connections.wait())
        .await
        .is_ok();
    // Media downloads under way are cut: their jobs stay queued for the next start.
    let media_stopped = state
        .recall_media
        .stop(deadline.saturating_duration_since(Instant::now()))
        .await;
    if !media_stopped {
        tracing::warn!("media downloads did not stop in time");
    }
    // Exports stop with the server (shutdown cancelled them) and record themselves failed.
    let left = deadline.saturating_duration_since(Instant::now());
    if !state.exports.close(left).await {
        tracing::warn!("exports still running at the shutdown deadline");
    }
    let left = deadline.saturating_duration_since(Instant::now());
    let drained = state.pipeline.close(left).await;
    let flushed = state.pipeline.flush_sink().await;
    if let Err(error) = &flushed {
        tracing::error!(%error, "could not flush recording summaries");
    }
    if http_closed && sockets_closed && drained && flushed.is_ok() {
        tracing::info!("shutdown complete: every received frame is saved");
        Ok(())
    } else {
        anyhow::bail!(
            "shutdown incomplete after {:?}: http closed {http_closed}, websockets closed {sockets_closed}, \
             frames drained {drained}, summaries flushed {}",
            state.config.shutdown_timeout,
            flushed.is_ok()
        )
    }
}

fn log_startup(state: &AppState, local: SocketAddr, token_source: &TokenSource) {
    let config = &state.config;
    tracing::info!(address = %local, data_dir = %config.data_dir.display(), "recall-frames listening");
    if let Some(bucket) = &state.bucket {
        tracing::info!(
            "recordings go to {}; the browse UI and API read them there",
            bucket.describe()
        );
        if !matches!(token_source, TokenSource::Configured) {
            tracing::warn!(
                "BUCKET_NAME is set but WS_TOKEN is not: the websocket token is this machine's \
                 own, in DATA_DIR. Set WS_TOKEN to the same value on every machine that shares \
                 the bucket, or bots created through one are refused by the others"
            );
        }
    }
    let host = if local.ip().is_unspecified() {
        format!("localhost:{}", local.port())
    } else {
        local.to_string()
    };
    match token_source {
        TokenSource::Configured => {
            tracing::info!(
                "bots connect to ws://{host}/ws?token=<WS_TOKEN> (or wss:// behind TLS)"
            );
        }
        TokenSource::Stored(path) | TokenSource::Generated(path) => {
            let verb = if matches!(token_source, TokenSource::Generated(_)) {
                "generated"
            } else {
                "read"
            };
            // The one place the token is ever logged: the operator needs it to create bots.
            tracing::info!(
                "bots connect to ws://{host}/ws?token={} (or wss:// behind TLS); token {verb} in {}",
                state.ws_token.expose(),
                path.display()
            );
        }
    }
    if config.recall_verification_secret.is_some() {
        tracing::info!(
            "RECALL_VERIFICATION_SECRET set: websocket upgrades also need a valid Recall signature"
        );
    }
    match (
        &config.recall_webhook_secret,
        &config.recall_verification_secret,
    ) {
        (Some(_), _) => tracing::info!(
            "POST /webhooks/recall takes Recall's webhooks signed with RECALL_WEBHOOK_SECRET"
        ),
        (None, Some(_)) => tracing::info!(
            "POST /webhooks/recall takes Recall's webhooks signed with RECALL_VERIFICATION_SECRET"
        ),
        (None, None) => tracing::info!(
            "RECALL_WEBHOOK_SECRET unset: POST /webhooks/recall answers 503 (see docs/after-the-call.md)"
        ),
    }
    let takes_webhooks =
        config.recall_webhook_secret.is_some() || config.recall_verification_secret.is_some();
    if takes_webhooks && config.recall_api_key.is_none() {
        tracing::warn!(
            "RECALL_API_KEY unset: Recall's media cannot be fetched without it, so media \
             webhooks (*.done) are answered 503 and Recall sends them again until it is set; \
             bot status webhooks are taken"
        );
    }
    if config.api_token.is_some() {
        tracing::info!("HTTP API guarded by API_TOKEN (Bearer token or Basic password)");
    } else {
        tracing::info!("API_TOKEN unset: the HTTP API answers requests from this machine only");
    }
}
