//! `recall-frames delete`: the same deletion as the API's, run on DATA_DIR or the bucket
//! directly (a server on the same store learns of it at its next storage check), and the
//! dry run of retention.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::{DeletedBy, DeletionError, Deletions, Target};
use crate::catalog::{Catalog, CatalogError};
use crate::config::{Config, format_period, parse_retention};
use crate::frame::{ParticipantId, RecordingId};
use crate::layout;
use crate::recall::Bots;
use crate::retention::Usage;
use crate::store::Store;

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The recording to delete. Without it, every recording whose last activity is older
    /// than --older-than (or RETENTION) is deleted.
    pub recording: Option<String>,
    /// Delete only this participant (their folder and their participant events).
    #[arg(long)]
    pub participant: Option<u64>,
    /// Delete the recordings whose last activity is older than this: `30d` (days), `12h`
    /// (hours), `8w` (weeks); at least one hour (`m` is minutes).
    #[arg(long, value_parser = parse_retention, conflicts_with_all = ["recording", "participant"])]
    pub older_than: Option<Duration>,
    /// Say what would be deleted, and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Delete even a recording a bot sent something to within STREAM_IDLE_TIMEOUT (it may
    /// still be streaming into it).
    #[arg(long)]
    pub force: bool,
    /// Also ask Recall to delete its copy of the bot's media (needs RECALL_API_KEY).
    #[arg(long, conflicts_with = "participant")]
    pub recall: bool,
}

/// Runs `recall-frames delete` and returns its JSON report.
pub async fn delete(config: &Config, args: &DeleteArgs) -> anyhow::Result<Value> {
    if args.recall && config.recall_api_key.is_none() {
        // Before anything is deleted, dry run or not: once the local copy is gone, so is
        // the bot id that Recall's copy is found by.
        return Err(crate::recall::BotError::NoApiKey(crate::recall::DELETE_MEDIA).into());
    }
    let metrics = Arc::new(crate::metrics::Metrics::default());
    let (store, _) = crate::open_store(config, metrics).await?;
    let deletions = Deletions::load(store.clone())
        .await
        .context("cannot read the tombstones of deleted recordings")?;
    // What a crash left half-done goes first, as a server's start does.
    let pending = deletions.refresh().await?;
    let finished = deletions.finish_pending(pending).await;
    let catalog = Catalog::new(deletions.guarded(), 1000);
    let report = match (&args.recording, args.older_than.or(config.retention)) {
        (Some(recording), _) => {
            one(
                config,
                args,
                store.as_ref(),
                &deletions,
                &catalog,
                recording,
            )
            .await?
        }
        (None, Some(older_than)) => expired(args, store, &deletions, older_than).await?,
        (None, None) => anyhow::bail!(
            "say what to delete: a RECORDING, or --older-than (e.g. 30d), or set RETENTION"
        ),
    };
    Ok(match finished.is_empty() {
        true => report,
        false => {
            let mut report = report;
            report["finished"] = serde_json::to_value(&finished)?;
            report
        }
    })
}

async fn one(
    config: &Config,
    args: &DeleteArgs,
    store: &dyn Store,
    deletions: &Deletions,
    catalog: &Catalog,
    recording: &str,
) -> anyhow::Result<Value> {
    let id = RecordingId::parse(recording).with_context(|| {
        format!("{recording:?} is not a recording id (1 to 128 of A-Z a-z 0-9 _ . -, not starting with a dot)")
    })?;
    let detail = match catalog.recording(&id).await {
        Err(CatalogError::NotFound) => anyhow::bail!(
            "there is no recording {id} in {} (set --data-dir, or BUCKET_NAME and its settings, \
             to the store the server uses)",
            config.store_place()
        ),
        found => found?,
    };
    let target = match args.participant {
        None => Target::Recording(id.clone()),
        Some(participant) => {
            let participant = ParticipantId(participant);
            let folder = detail
                .participants
                .iter()
                .find(|p| p.participant.id == participant)
                .map(|p| p.folder.clone())
                .with_context(|| format!("recording {id} has no participant {participant}"))?;
            Target::Participant {
                recording: id.clone(),
                participant,
                folder,
            }
        }
    };
    let listed = store.list(&target.prefix()).await?;
    let bytes: u64 = listed.iter().map(|object| object.size).sum();
    // What a bot last sent, not the server's own rewrites (a deleted participant's events).
    let mut activity = crate::retention::Activity::default();
    listed.iter().for_each(|object| activity.add(object));
    let last_written = activity.last(store, &id).await?;
    if args.dry_run {
        return Ok(json!({"dry_run": true, "would_delete": [{
            "recording": id, "participant": args.participant, "objects": listed.len(),
            "bytes": bytes, "last_written": last_written,
        }]}));
    }
    let idle = jiff::SignedDuration::try_from(config.stream_idle_timeout)
        .unwrap_or(jiff::SignedDuration::MAX);
    if !args.force && last_written.is_some_and(|at| Timestamp::now().duration_since(at) < idle) {
        anyhow::bail!(
            "a bot sent something to recording {id} within STREAM_IDLE_TIMEOUT ({}), so it may \
             still be streaming into it. Delete it once the meeting is over, or with --force",
            humantime::format_duration(config.stream_idle_timeout)
        );
    }
    let recall = match args.recall {
        true => {
            let bots = Bots::api_only(config)?;
            Some(crate::http::delete::delete_at_recall(&bots, detail.overview.bot_id()).await)
        }
        false => None,
    };
    let deleted = match deletions.delete(&target, DeletedBy::Cli, recall).await {
        Err(DeletionError::NotFound) => anyhow::bail!("recording {id} is deleted already"),
        done => done?,
    };
    Ok(json!({"deleted": [deleted]}))
}

async fn expired(
    args: &DeleteArgs,
    store: Arc<dyn Store>,
    deletions: &Deletions,
    older_than: Duration,
) -> anyhow::Result<Value> {
    let usage = Usage::measure(store.as_ref(), deletions).await?;
    let expired = usage.expired(Timestamp::now(), older_than);
    if args.dry_run {
        let would: Vec<Value> = expired
            .iter()
            .map(|(id, usage)| {
                json!({"recording": id, "objects": usage.objects, "bytes": usage.bytes,
                       "last_written": usage.last_written})
            })
            .collect();
        return Ok(
            json!({"dry_run": true, "older_than": format_period(older_than), "would_delete": would}),
        );
    }
    let mut deleted = Vec::new();
    for (id, _) in expired {
        let target = Target::Recording(id);
        match deletions.delete(&target, DeletedBy::Cli, None).await {
            Ok(done) => deleted.push(done),
            Err(DeletionError::NotFound) => {}
            Err(DeletionError::Store(error)) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "deleted {} recordings, then could not delete {}",
                    deleted.len(),
                    layout::recording_key(target.recording())
                )));
            }
        }
    }
    Ok(json!({"deleted": deleted}))
}
