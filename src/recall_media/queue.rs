//! The durable fetch queue: one JSON file per job in `DATA_DIR/.recall-media/jobs`, so that
//! a restart resumes what was queued or running. A dispatcher runs due jobs, at most
//! RECALL_MEDIA_CONCURRENCY at once; a job that fails waits out a backoff and runs again, up
//! to RECALL_MEDIA_ATTEMPTS, after which the recording's status says it failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::fetch::{Fetcher, Quiet};
use super::{FetchState, MediaError, read_status, status_key, write_status};
use crate::frame::RecordingId;
use crate::recall::BotId;
use crate::recall::media::MediaKind;

/// Where the jobs are kept, under DATA_DIR.
pub const JOBS: [&str; 2] = [".recall-media", "jobs"];
/// How often the dispatcher looks at the jobs folder when nothing nudges it.
const IDLE_LOOK: Duration = Duration::from_secs(30);

/// What a job fetches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum Target {
    /// One kind of a recording's media.
    Recording {
        #[serde(with = "recording_id")]
        recording: RecordingId,
        kind: MediaKind,
        #[serde(default)]
        bot: Option<String>,
    },
    /// Every recording of a bot, both kinds (a `bot.done` webhook, or a fetch asked by bot).
    Bot { bot: String },
}

mod recording_id {
    use serde::{Deserialize as _, Deserializer, Serializer};

    use crate::frame::RecordingId;

    pub fn serialize<S: Serializer>(id: &RecordingId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(id.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<RecordingId, D::Error> {
        let text = String::deserialize(d)?;
        RecordingId::parse(&text)
            .filter(|id| !id.as_str().starts_with('.'))
            .ok_or_else(|| serde::de::Error::custom("not a recording id"))
    }
}

impl Target {
    /// The job's file name: one job per target.
    fn file_name(&self) -> String {
        match self {
            Target::Recording {
                recording, kind, ..
            } => format!("recording~{recording}~{}.json", kind.as_str()),
            Target::Bot { bot } => format!("bot~{bot}.json"),
        }
    }
}

/// A job as its file holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    #[serde(flatten)]
    target: Target,
    /// When it was last asked for: a job asked for again while it runs runs once more.
    requested_at: Timestamp,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    not_before: Option<Timestamp>,
}

#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
    stop: CancellationToken,
    dispatcher: Arc<parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

struct Inner {
    fetcher: Fetcher,
    jobs: PathBuf,
    nudge: Notify,
    /// Held while a job's file is written, or checked then removed or rewritten: a request
    /// that comes while a job ends is never removed with it.
    files: tokio::sync::Mutex<()>,
}

impl Queue {
    /// The queue in `data_dir`, with its dispatcher running: jobs left by an earlier run
    /// start again.
    pub async fn start(fetcher: Fetcher, data_dir: &Path) -> anyhow::Result<Self> {
        let jobs = JOBS.iter().fold(data_dir.to_owned(), |p, s| p.join(s));
        tokio::fs::create_dir_all(&jobs).await?;
        fetcher.clear_downloads().await?;
        let inner = Arc::new(Inner {
            fetcher,
            jobs,
            nudge: Notify::new(),
            files: tokio::sync::Mutex::new(()),
        });
        let stop = CancellationToken::new();
        let dispatcher = tokio::spawn(dispatch(inner.clone(), stop.clone()));
        Ok(Queue {
            inner,
            stop,
            dispatcher: Arc::new(parking_lot::Mutex::new(Some(dispatcher))),
        })
    }

    /// Writes the job's file (a new request for a queued job resets its attempts) and
    /// wakes the dispatcher.
    pub async fn enqueue(&self, target: Target) -> Result<(), MediaError> {
        self.inner.enqueue(target).await
    }

    /// Stops the dispatcher and cuts running jobs, which stay queued for the next start.
    pub async fn stop(&self, timeout: Duration) -> bool {
        self.stop.cancel();
        let dispatcher = self.dispatcher.lock().take();
        match dispatcher {
            Some(task) => tokio::time::timeout(timeout, task).await.is_ok(),
            None => true,
        }
    }
}

impl Inner {
    async fn enqueue(&self, target: Target) -> Result<(), MediaError> {
        let job = Job {
            target,
            requested_at: Timestamp::now(),
            attempts: 0,
            not_before: None,
        };
        {
            let _files = self.files.lock().await;
            self.write(&job).await.map_err(MediaError::Queue)?;
        }
        self.nudge.notify_one();
        Ok(())
    }

    async fn write(&self, job: &Job) -> std::io::Result<()> {
        let path = self.jobs.join(job.target.file_name());
        let body = serde_json::to_vec_pretty(job).expect("a job is plain JSON");
        // Written whole or not at all: a crash never leaves half a job.
        tokio::task::spawn_blocking(move || crate::files::write_file_atomic(&path, &body))
            .await
            .map_err(std::io::Error::other)?
    }

    async fn read(&self, name: &str) -> Option<Job> {
        let bytes = tokio::fs::read(self.jobs.join(name)).await.ok()?;
        match serde_json::from_slice(&bytes) {
            Ok(job) => Some(job),
            Err(error) => {
                tracing::warn!(job = name, %error, "unreadable media job; removing it");
                let _ = tokio::fs::remove_file(self.jobs.join(name)).await;
                None
            }
        }
    }

    async fn list(&self) -> Vec<(String, Job)> {
        let mut jobs = Vec::new();
        let Ok(mut entries) = tokio::fs::read_dir(&self.jobs).await else {
            return jobs;
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".json") || name.starts_with('.') {
                continue;
            }
            if let Some(job) = self.read(&name).await {
                jobs.push((name, job));
            }
        }
        jobs.sort_by_key(|(_, job)| job.requested_at);
        jobs
    }

    /// Runs one job; afterwards its file is removed (done, or given up), or rewritten with
    /// a backoff.
    async fn run(&self, name: String, job: Job, stop: CancellationToken) {
        let fetcher = &self.fetcher;
        let result = match &job.target {
            Target::Recording {
                recording,
                kind,
                bot,
            } => fetcher
                .fetch(recording, *kind, bot.as_deref(), &Quiet, &stop)
                .await
                .map(|report| {
                    tracing::info!(
                        fetched = report.fetched,
                        already = report.already,
                        bytes = report.bytes_fetched,
                        pending_at_recall = report.pending_at_recall,
                        "media fetch done"
                    )
                }),
            Target::Bot { bot } => self.resolve_bot(bot).await,
        };
        match result {
            Ok(()) => self.finish(&name, &job).await,
            Err(super::FetchError::Stopped) => {}
            Err(error) => self.failed(name, job, error).await,
        }
    }

    /// Removes the job's file, unless it was asked for again while it ran: then it is left
    /// to run once more.
    async fn finish(&self, name: &str, job: &Job) {
        let _files = self.files.lock().await;
        if !self.asked_again(name, job).await {
            let _ = tokio::fs::remove_file(self.jobs.join(name)).await;
        }
    }

    /// Whether the job's file now holds a later request than `job` (called with `files`
    /// held).
    async fn asked_again(&self, name: &str, job: &Job) -> bool {
        self.read(name)
            .await
            .is_some_and(|now| now.requested_at != job.requested_at)
    }

    async fn resolve_bot(&self, bot: &str) -> Result<(), super::FetchError> {
        let Some(id) = BotId::parse(bot) else {
            tracing::warn!(bot, "a media job names no valid bot id; dropping it");
            return Ok(());
        };
        let recordings = self.fetcher.client()?.bot_recordings(&id).await?;
        tracing::info!(
            bot,
            recordings = recordings.len(),
            "bot's recordings listed"
        );
        for recording in recordings {
            for kind in MediaKind::ALL {
                let target = Target::Recording {
                    recording: recording.clone(),
                    kind,
                    bot: Some(bot.to_owned()),
                };
                if let Err(error) = self.enqueue(target).await {
                    tracing::warn!(%error, "cannot queue a recording's media");
                    return Err(super::FetchError::Local(std::io::Error::other(
                        error.to_string(),
                    )));
                }
            }
        }
        Ok(())
    }

    async fn failed(&self, name: String, mut job: Job, error: super::FetchError) {
        let metrics = &self.fetcher.metrics.recall;
        job.attempts += 1;
        // Without a key no attempt can ever succeed: say so at once.
        let hopeless = matches!(error, super::FetchError::NoApiKey);
        if hopeless || job.attempts >= self.fetcher.settings.attempts {
            metrics.fetches_failed.inc();
            tracing::error!(job = name, attempts = job.attempts, %error, "media fetch given up");
            if let Target::Recording {
                recording, kind, ..
            } = &job.target
            {
                let store = self.fetcher.store.as_ref();
                let key = status_key(recording, *kind);
                if let Ok(Some(mut status)) = read_status(store, &key).await {
                    status.state = FetchState::Failed;
                    status.error = Some(error.to_string());
                    status.updated_at = Timestamp::now();
                    if let Err(error) = write_status(store, &key, &status).await {
                        tracing::warn!(%error, "cannot mark the fetch failed");
                    }
                }
            }
            self.finish(&name, &job).await;
            return;
        }
        let wait = self.fetcher.settings.backoff_before(job.attempts);
        tracing::warn!(job = name, attempts = job.attempts, %error, "media fetch failed; trying again in {wait:?}");
        job.not_before = Timestamp::now()
            .checked_add(jiff::SignedDuration::try_from(wait).unwrap_or_default())
            .ok();
        // A request that came while it ran stays: it runs again with fresh attempts.
        let _files = self.files.lock().await;
        if self.asked_again(&name, &job).await {
            return;
        }
        if let Err(error) = self.write(&job).await {
            tracing::warn!(%error, "cannot reschedule a media job");
        }
    }
}

/// Runs due jobs, at most the concurrency at once, until `stop`; then waits for the running
/// ones to notice it.
async fn dispatch(inner: Arc<Inner>, stop: CancellationToken) {
    let concurrency = inner.fetcher.settings.concurrency;
    let mut running: JoinSet<()> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, String> = HashMap::new();
    loop {
        let jobs = inner.list().await;
        inner
            .fetcher
            .metrics
            .recall
            .jobs_queued
            .set(jobs.len() as i64);
        let now = Timestamp::now();
        let mut next_due: Option<Timestamp> = None;
        for (name, job) in jobs {
            if in_flight.values().any(|running| *running == name) {
                continue;
            }
            if let Some(at) = job.not_before
                && at > now
            {
                next_due = Some(next_due.map_or(at, |due| due.min(at)));
                continue;
            }
            if running.len() >= concurrency {
                break;
            }
            let (inner, stop, job_name) = (inner.clone(), stop.clone(), name.clone());
            let span = tracing::info_span!("media_job", job = %name);
            let task =
                running.spawn(async move { inner.run(job_name, job, stop).await }.instrument(span));
            in_flight.insert(task.id(), name);
        }
        let wait = next_due
            .map(|at| {
                Duration::try_from(at.duration_since(Timestamp::now())).unwrap_or(Duration::ZERO)
            })
            .unwrap_or(IDLE_LOOK)
            .min(IDLE_LOOK);
        tokio::select! {
            () = stop.cancelled() => break,
            () = inner.nudge.notified() => {}
            () = tokio::time::sleep(wait) => {}
            Some(done) = running.join_next_with_id(), if !running.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(error) => {
                        tracing::error!(%error, "a media job panicked; it runs again later");
                        error.id()
                    }
                };
                in_flight.remove(&id);
            }
        }
    }
    while let Some(done) = running.join_next().await {
        if let Err(error) = done {
            tracing::warn!(%error, "a media job panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_that_comes_as_its_job_ends_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let settings = super::super::FetchSettings {
            concurrency: 1,
            attempts: 1,
            backoff: Duration::from_millis(10),
            read_timeout: Duration::from_secs(1),
        };
        let fetcher = Fetcher::new(
            Arc::new(MemoryStore::default()),
            None,
            settings,
            dir.path().join("downloads"),
            Arc::new(crate::metrics::Metrics::default()),
        )
        .unwrap();
        let inner = Arc::new(Inner {
            fetcher,
            jobs: dir.path().join("jobs"),
            nudge: Notify::new(),
            files: tokio::sync::Mutex::new(()),
        });
        tokio::fs::create_dir_all(&inner.jobs).await.unwrap();
        let target = Target::Recording {
            recording: RecordingId::parse("rec_1").unwrap(),
            kind: MediaKind::Video,
            bot: None,
        };
        let name = target.file_name();
        for round in 0..200 {
            inner.enqueue(target.clone()).await.unwrap();
            let running = inner.read(&name).await.unwrap();
            // The job ends just as a webhook asks for the same media again: whichever comes
            // first, the new request stays queued.
            let ending = tokio::spawn({
                let (inner, name) = (inner.clone(), name.clone());
                async move { inner.finish(&name, &running).await }
            });
            let asking = tokio::spawn({
                let (inner, target) = (inner.clone(), target.clone());
                async move { inner.enqueue(target).await }
            });
            ending.await.unwrap();
            asking.await.unwrap().unwrap();
            assert!(
                inner.read(&name).await.is_some(),
                "round {round}: the later request was removed with the job that ended"
            );
        }
    }
}
