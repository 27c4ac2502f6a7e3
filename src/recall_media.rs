//! After the call: what Recall's webhooks say, and each participant's media from Recall's
//! async API, kept with the realtime frames of the same recording.
//!
//! ```text
//! <recording_id>/recall/<video|audio>.json                        the fetch's status
//! <recording_id>/<participant folder>/recall/media.jsonl          one line per part fetched
//! <recording_id>/<participant folder>/recall/<webcam|screenshare>-<start_ms>.mp4
//! <recording_id>/<participant folder>/recall/audio-<start_ms>.<ext>
//! .recall/bots/<bot_id>/status.jsonl                               the bot's status changes
//! ```
//!
//! A bot's status webhooks name the bot, not a recording (there is none before it records),
//! so its history is kept by bot, and a recording shows its bot's.
//!
//! The fetching is a durable queue of jobs kept as files in DATA_DIR (`queue`): one per
//! recording and kind, or per bot to resolve into its recordings. Each job lists the media,
//! then streams each part not yet in its participant's manifest into a local file, checks
//! and hashes it, and creates it in the store, never replacing a file already there
//! (`fetch`).

mod fetch;
mod queue;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

use crate::frame::RecordingId;
use crate::layout;
use crate::metrics::{KindLabel, ReasonLabel};
use crate::recall::media::{MediaKind, PartTime};
use crate::recall::{BotId, RecallClient};
use crate::store::{Key, Store, StoreError, read_whole_log};

pub(crate) use self::fetch::participant_folder;
pub use self::fetch::{FetchError, FetchReport, Progress};

/// `recall-frames fetch-media`: fetches the media of `recordings` (or of every recording of
/// `bot`) in this process, straight into the store the configuration names, reporting to
/// `progress`. Parts already stored are skipped, so running it again adds nothing.
pub async fn fetch_by_hand(
    config: &crate::Config,
    store: Arc<dyn Store>,
    bot: Option<&BotId>,
    recordings: Vec<RecordingId>,
    progress: &dyn Progress,
) -> anyhow::Result<Vec<Result<FetchReport, (String, FetchError)>>> {
    let client = RecallClient::of(config)?.ok_or_else(|| {
        anyhow::Error::new(crate::recall::BotError::NoApiKey(
            crate::recall::FETCH_MEDIA,
        ))
    })?;
    let mut recordings = recordings;
    if let Some(bot) = bot {
        recordings.extend(client.bot_recordings(bot).await?);
    }
    // Its own download folder: a server on the same DATA_DIR clears its own at start-up.
    let downloads = config
        .data_dir
        .join(fetch::DOWNLOADS[0])
        .join(format!("fetch-media-{}", std::process::id()));
    tokio::fs::create_dir_all(&downloads).await?;
    let fetcher = fetch::Fetcher::new(
        store,
        Some(client),
        FetchSettings::of(config),
        downloads.clone(),
        Arc::new(crate::metrics::Metrics::default()),
    )?;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut reports = Vec::new();
    for recording in recordings {
        for kind in MediaKind::ALL {
            let bot = bot.map(ToString::to_string);
            let report = fetcher
                .fetch(&recording, kind, bot.as_deref(), progress, &stop)
                .await
                .map_err(|error| (format!("{recording} {}", kind.as_str()), error));
            reports.push(report);
        }
    }
    let _ = tokio::fs::remove_dir_all(&downloads).await;
    Ok(reports)
}
pub use self::queue::Target;

/// A participant's folder of Recall's files, and a recording's folder of fetch statuses.
pub const RECALL_FOLDER: &str = "recall";
/// The manifest of a participant's Recall files.
pub const MEDIA_MANIFEST: &str = "media.jsonl";
/// Top-level folder of what the server keeps by bot (a dot-folder: not a recording).
pub const BOTS_FOLDER: [&str; 2] = [".recall", "bots"];
/// A bot's status changes, one line per webhook.
pub const BOT_STATUS_LOG: &str = "status.jsonl";

/// Webhook ids remembered, so that a delivery retried by Svix is taken once.
const WEBHOOKS_REMEMBERED: usize = 4096;
/// Lines a part of a log holds where a store splits logs into parts.
const LINES_PER_PART: usize = 200;

/// The key of a participant's Recall folder.
pub fn participant_media_key(recording: &RecordingId, folder: &str) -> Key {
    layout::recording_key(recording)
        .join(folder)
        .join(RECALL_FOLDER)
}

/// The key of a recording's fetch status for `kind`.
pub fn status_key(recording: &RecordingId, kind: MediaKind) -> Key {
    layout::recording_key(recording)
        .join(RECALL_FOLDER)
        .join(&format!("{}.json", kind.as_str()))
}

/// The key of a bot's status log.
pub fn bot_status_key(bot: &BotId) -> Key {
    Key::of(BOTS_FOLDER)
        .join(&bot.to_string())
        .join(BOT_STATUS_LOG)
}

/// Whether `name` is a file name this server gives Recall's media: `webcam-12500.mp4`,
/// `audio-0.mp3`. Checked before a name from a URL becomes part of a key.
pub fn is_media_file_name(name: &str) -> bool {
    let Some((stem, ext)) = name.rsplit_once('.') else {
        return false;
    };
    let Some((kind, ms)) = stem.split_once('-') else {
        return false;
    };
    matches!(kind, "webcam" | "screenshare" | "audio")
        && (1..=12).contains(&ms.len())
        && ms.bytes().all(|b| b.is_ascii_digit())
        && is_extension(ext)
}

/// A file extension this server writes: 1 to 8 of a-z 0-9.
pub fn is_extension(ext: &str) -> bool {
    (1..=8).contains(&ext.len())
        && ext
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// One line of a participant's `recall/media.jsonl`: a part fetched whole and checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MediaRecord {
    /// Recall's id of the part.
    pub part_id: String,
    /// Recall's id of the media object (`video_separate`/`audio_separate`) it belongs to.
    pub media_id: String,
    /// `video_separate_mp4` or `audio_separate_raw`.
    pub source: String,
    /// `webcam`, `screenshare` or `audio`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The file's name in the folder.
    pub file: String,
    /// When the part starts: `relative` on the realtime frames' clock, and wall-clock time.
    pub start: PartTime,
    /// Seconds, as Recall gives it.
    pub duration: Option<f64>,
    pub bytes: u64,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub fetched_at: Timestamp,
}

/// Where a recording's fetch of one kind stands: `recall/<kind>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchStatus {
    pub state: FetchState,
    #[serde(default)]
    pub bot_id: Option<String>,
    /// Parts Recall lists for the recording, and how many of them are stored.
    pub parts: u64,
    pub fetched: u64,
    /// Bytes of the parts stored.
    pub bytes: u64,
    /// Media objects Recall has not finished yet (their parts come with their webhook).
    #[serde(default)]
    pub pending_at_recall: u64,
    /// Attempts made at the whole fetch.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last attempt failed, for people.
    #[serde(default)]
    pub error: Option<String>,
    pub updated_at: Timestamp,
}

impl FetchStatus {
    /// A fetch with nothing done yet, in `state`, as of now.
    pub fn new(state: FetchState) -> Self {
        FetchStatus {
            state,
            bot_id: None,
            parts: 0,
            fetched: 0,
            bytes: 0,
            pending_at_recall: 0,
            attempts: 0,
            error: None,
            updated_at: Timestamp::now(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchState {
    Queued,
    Fetching,
    /// Failed this attempt; tried again after a backoff.
    Retrying,
    Done,
    /// Gave up after RECALL_MEDIA_ATTEMPTS; `fetch-media` starts again.
    Failed,
}

/// One line of a bot's `status.jsonl`: a status webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BotStatusRecord {
    /// The webhook's event, e.g. `bot.in_call_recording`.
    pub event: String,
    /// Recall's status code, e.g. `in_call_recording`, `fatal`.
    pub code: Option<String>,
    pub sub_code: Option<String>,
    /// When the status changed, by Recall's clock.
    pub updated_at: Option<Timestamp>,
    /// Svix's message id: the same for every delivery of one webhook.
    pub webhook_id: String,
    pub received_at: Timestamp,
}

/// The counters of webhooks and media fetches, registered with the server's metrics.
#[derive(Default)]
pub struct MediaMetrics {
    pub webhooks: Family<ReasonLabel, Counter>,
    pub webhooks_refused: Family<ReasonLabel, Counter>,
    pub parts_fetched: Family<KindLabel, Counter>,
    pub bytes_fetched: Counter,
    pub part_attempts_failed: Family<ReasonLabel, Counter>,
    pub fetches_failed: Counter,
    pub jobs_queued: Gauge,
    pub bytes_in_flight: Gauge,
}

impl MediaMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "recall_webhooks",
            "Recall webhooks taken, by what they were (reason: bot_status, media, duplicate, ignored)",
            self.webhooks.clone(),
        );
        registry.register(
            "recall_webhooks_refused",
            "Recall webhooks refused (reason: signature, unconfigured, invalid, storage, timeout)",
            self.webhooks_refused.clone(),
        );
        registry.register(
            "recall_media_parts_fetched",
            "Parts of Recall's async media stored whole and checked, by kind (video, audio)",
            self.parts_fetched.clone(),
        );
        registry.register(
            "recall_media_bytes_fetched",
            "Bytes of Recall's async media stored",
            self.bytes_fetched.clone(),
        );
        registry.register(
            "recall_media_part_attempts_failed",
            "Attempts at a media part that failed and were tried again or given up (reason: expired, incomplete, http, connection, storage)",
            self.part_attempts_failed.clone(),
        );
        registry.register(
            "recall_media_fetches_failed",
            "Fetches of a recording's media given up after RECALL_MEDIA_ATTEMPTS",
            self.fetches_failed.clone(),
        );
        registry.register(
            "recall_media_jobs_queued",
            "Media fetches waiting or running",
            self.jobs_queued.clone(),
        );
        registry.register(
            "recall_media_bytes_in_flight",
            "Bytes of media parts being downloaded, received so far",
            self.bytes_in_flight.clone(),
        );
    }
}

/// The settings of fetching.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub concurrency: usize,
    pub attempts: u32,
    pub backoff: Duration,
    pub read_timeout: Duration,
}

impl FetchSettings {
    pub fn of(config: &crate::Config) -> Self {
        FetchSettings {
            concurrency: config.recall_media_concurrency,
            attempts: config.recall_media_attempts,
            backoff: config.recall_media_backoff,
            read_timeout: config.recall_media_read_timeout,
        }
    }

    /// The wait before attempt `attempt` (1 for the second): doubled each time, at most
    /// 5 minutes.
    pub fn backoff_before(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.backoff
            .saturating_mul(factor)
            .min(Duration::from_secs(300))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the fetch queue in DATA_DIR is not usable")]
    Queue(#[source] std::io::Error),
}

/// Recall's webhooks and async media, as the server runs them.
#[derive(Clone)]
pub struct RecallMedia {
    store: Arc<dyn Store>,
    queue: queue::Queue,
    seen: Arc<Mutex<lru::LruCache<String, ()>>>,
}

impl RecallMedia {
    /// The service over `store`, with its queue in `data_dir`; its workers run until
    /// [`RecallMedia::stop`].
    pub async fn start(
        config: &crate::Config,
        store: Arc<dyn Store>,
        client: Option<RecallClient>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> anyhow::Result<Self> {
        let fetcher = fetch::Fetcher::new(
            store.clone(),
            client,
            FetchSettings::of(config),
            fetch::DOWNLOADS
                .iter()
                .fold(config.data_dir.clone(), |p, s| p.join(s)),
            metrics,
        )?;
        let queue = queue::Queue::start(fetcher, &config.data_dir).await?;
        Ok(RecallMedia {
            store,
            queue,
            seen: Arc::new(Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(WEBHOOKS_REMEMBERED).expect("non-zero"),
            ))),
        })
    }

    /// Queues a fetch; a fetch of the same target already queued or running is run once
    /// more after it (so that media Recall finished meanwhile is taken too).
    pub async fn enqueue(&self, target: Target) -> Result<(), MediaError> {
        if let Target::Recording {
            recording,
            kind,
            bot,
        } = &target
        {
            self.note_queued(recording, *kind, bot.as_deref()).await?;
        }
        self.queue.enqueue(target).await
    }

    async fn note_queued(
        &self,
        recording: &RecordingId,
        kind: MediaKind,
        bot: Option<&str>,
    ) -> Result<(), MediaError> {
        let key = status_key(recording, kind);
        let mut status = read_status(self.store.as_ref(), &key)
            .await?
            .unwrap_or_else(|| FetchStatus::new(FetchState::Queued));
        if status.state != FetchState::Fetching {
            status.state = FetchState::Queued;
        }
        if status.bot_id.is_none() {
            status.bot_id = bot.map(str::to_owned);
        }
        status.updated_at = Timestamp::now();
        // Listed as soon as its folder exists: a recording only Recall's media will fill
        // shows its fetch's status, rather than a folder no page lists.
        fetch::ensure_recording(self.store.as_ref(), recording, status.bot_id.as_deref()).await?;
        write_status(self.store.as_ref(), &key, &status).await?;
        Ok(())
    }

    /// Whether webhook `id` was taken before (by this server, since it started); marks it
    /// taken.
    pub fn seen_before(&self, id: &str) -> bool {
        self.seen.lock().put(id.to_owned(), ()).is_some()
    }

    /// Forgets webhook `id`, whose handling failed: Svix delivers it again.
    pub fn forget(&self, id: &str) {
        self.seen.lock().pop(id);
    }

    /// Appends a bot's status change to its log.
    pub async fn record_bot_status(
        &self,
        bot: &BotId,
        record: &BotStatusRecord,
    ) -> Result<(), MediaError> {
        append_line(self.store.as_ref(), &bot_status_key(bot), record).await?;
        Ok(())
    }

    /// A bot's status changes in Recall's order (by `updated_at`), each webhook once.
    pub async fn bot_status(&self, bot: &BotId) -> Result<Vec<BotStatusRecord>, MediaError> {
        bot_status(self.store.as_ref(), bot).await
    }

    /// What a recording has of Recall's media: the fetch statuses and every participant's
    /// parts.
    pub async fn recording_media(
        &self,
        recording: &RecordingId,
    ) -> Result<RecordingMedia, MediaError> {
        recording_media(self.store.as_ref(), recording).await
    }

    /// The store that holds the media, for serving a file that [`RecallMedia::media_key`]
    /// found.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// The key of a participant's media file `file` (a name as the API lists it); `None`
    /// when the name is not one or the participant has no folder. Whether an object is
    /// there is for the read to tell.
    pub async fn media_key(
        &self,
        recording: &RecordingId,
        participant: crate::frame::ParticipantId,
        file: &str,
    ) -> Result<Option<Key>, MediaError> {
        if !is_media_file_name(file) {
            return Ok(None);
        }
        let folders = crate::recorder::participant_folders(
            self.store.as_ref(),
            &layout::recording_key(recording),
        )
        .await?;
        Ok(folders
            .get(&participant)
            .map(|folder| participant_media_key(recording, folder).join(file)))
    }

    /// Stops the workers: downloads under way are cut (their jobs stay queued for the next
    /// start), within `timeout`.
    pub async fn stop(&self, timeout: Duration) -> bool {
        self.queue.stop(timeout).await
    }
}

/// A recording's Recall media.
#[derive(Debug, Clone, Serialize)]
pub struct RecordingMedia {
    pub video: Option<FetchStatus>,
    pub audio: Option<FetchStatus>,
    pub participants: Vec<ParticipantMedia>,
}

impl RecordingMedia {
    /// The bot named by a fetch status, when one is.
    pub fn bot_id(&self) -> Option<&str> {
        [&self.video, &self.audio]
            .into_iter()
            .flatten()
            .find_map(|status| status.bot_id.as_deref())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ParticipantMedia {
    pub participant_id: u64,
    pub folder: String,
    pub parts: Vec<MediaRecord>,
}

pub async fn recording_media(
    store: &dyn Store,
    recording: &RecordingId,
) -> Result<RecordingMedia, MediaError> {
    let video = read_status(store, &status_key(recording, MediaKind::Video)).await?;
    let audio = read_status(store, &status_key(recording, MediaKind::Audio)).await?;
    let folders =
        crate::recorder::participant_folders(store, &layout::recording_key(recording)).await?;
    let mut participants = Vec::new();
    for (id, folder) in folders {
        let parts = media_records(store, recording, &folder).await?;
        if !parts.is_empty() {
            participants.push(ParticipantMedia {
                participant_id: id.0,
                folder,
                parts,
            });
        }
    }
    participants.sort_by_key(|p| p.participant_id);
    Ok(RecordingMedia {
        video,
        audio,
        participants,
    })
}

/// A participant's manifest, each part once (the first line wins), in timeline order.
pub async fn media_records(
    store: &dyn Store,
    recording: &RecordingId,
    folder: &str,
) -> Result<Vec<MediaRecord>, StoreError> {
    Ok(media_manifest(store, recording, folder).await?.0)
}

/// [`media_records`], with the manifest's text as it was read (every line, each ending in
/// a newline; empty when there is no manifest): what goes with exactly those parts.
pub async fn media_manifest(
    store: &dyn Store,
    recording: &RecordingId,
    folder: &str,
) -> Result<(Vec<MediaRecord>, Bytes), StoreError> {
    let log = participant_media_key(recording, folder).join(MEDIA_MANIFEST);
    let mut seen = std::collections::HashSet::new();
    let mut records = Vec::new();
    let mut text = Vec::new();
    for line in read_whole_log(store, &log).await? {
        text.extend_from_slice(&line);
        text.push(b'\n');
        match serde_json::from_slice::<MediaRecord>(&line) {
            Ok(record) => {
                if seen.insert(record.part_id.clone()) {
                    records.push(record);
                }
            }
            Err(error) => tracing::warn!(%log, %error, "skipping a media manifest line"),
        }
    }
    records.sort_by(|a, b| {
        a.start
            .relative
            .total_cmp(&b.start.relative)
            .then_with(|| a.file.cmp(&b.file))
    });
    Ok((records, text.into()))
}

pub(crate) async fn bot_status(
    store: &dyn Store,
    bot: &BotId,
) -> Result<Vec<BotStatusRecord>, MediaError> {
    let log = bot_status_key(bot);
    let mut seen = std::collections::HashSet::new();
    let mut records = Vec::new();
    for line in read_whole_log(store, &log).await? {
        match serde_json::from_slice::<BotStatusRecord>(&line) {
            Ok(record) => {
                if seen.insert(record.webhook_id.clone()) {
                    records.push(record);
                }
            }
            Err(error) => tracing::warn!(%log, %error, "skipping a bot status line"),
        }
    }
    // Deliveries come out of order: Recall's own time orders them, arrival where it is
    // missing.
    records.sort_by_key(|record| record.updated_at.unwrap_or(record.received_at));
    Ok(records)
}

/// Adds one line to a log (a manifest, a bot's status log), as its only writer for this
/// line.
pub(crate) async fn append_line(
    store: &dyn Store,
    log: &Key,
    record: &impl Serialize,
) -> Result<(), StoreError> {
    let mut writer = store.log_writer(log, LINES_PER_PART);
    let mut line = serde_json::to_vec(record).expect("plain JSON");
    line.push(b'\n');
    writer.push(line);
    writer.flush().await
}

pub(crate) async fn read_status(
    store: &dyn Store,
    key: &Key,
) -> Result<Option<FetchStatus>, StoreError> {
    Ok(store
        .get(key)
        .await?
        .and_then(|found| serde_json::from_slice(&found.bytes).ok()))
}

pub(crate) async fn write_status(
    store: &dyn Store,
    key: &Key,
    status: &FetchStatus,
) -> Result<(), StoreError> {
    let mut body = serde_json::to_vec_pretty(status).expect("a status is plain JSON");
    body.push(b'\n');
    store.put(key, Bytes::from(body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manifest_gives_each_part_once_in_time_order_and_its_text_as_read() {
        let store = crate::store::memory::MemoryStore::default();
        let recording = RecordingId::parse("rec").unwrap();
        let line = |part: &str, relative: f64| {
            let record = serde_json::json!({
                "part_id": part, "media_id": "vs_1", "source": "video_separate_mp4",
                "type": "webcam", "file": format!("webcam-{}.mp4", relative * 1000.0),
                "start": {"relative": relative}, "duration": 1.5, "bytes": 10,
                "sha256": "00", "fetched_at": "2026-12-02T10:00:00Z",
            });
            format!("{record}\n")
        };
        let text = [
            line("p_2", 9.0),
            line("p_1", 2.0),
            line("p_2", 5.0),
            "{broken\n".into(),
        ];
        let log = participant_media_key(&recording, "100").join(MEDIA_MANIFEST);
        store.append_raw(&log, text.concat().as_bytes());
        let (records, read) = media_manifest(&store, &recording, "100").await.unwrap();
        let parts: Vec<_> = records
            .iter()
            .map(|r| (r.part_id.as_str(), r.start.relative))
            .collect();
        assert_eq!(
            parts,
            [("p_1", 2.0), ("p_2", 9.0)],
            "the first line of a part wins"
        );
        assert_eq!(read, text.concat().as_bytes(), "every line, as it was read");
        assert_eq!(
            media_records(&store, &recording, "100").await.unwrap(),
            records
        );

        let (none, empty) = media_manifest(&store, &recording, "200").await.unwrap();
        assert!(none.is_empty() && empty.is_empty());
    }

    #[test]
    fn media_file_names_are_checked() {
        for good in ["webcam-12500.mp4", "screenshare-0.mp4", "audio-750.mp3"] {
            assert!(is_media_file_name(good), "{good}");
        }
        for bad in [
            "webcam-12500",
            "../webcam-1.mp4",
            "webcam-1.MP4",
            "audio-.mp3",
            "frames-1.mp4",
            "audio-1.mp3/x",
            "audio-1.toolongext",
        ] {
            assert!(!is_media_file_name(bad), "{bad}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let settings = FetchSettings {
            concurrency: 1,
            attempts: 5,
            backoff: Duration::from_secs(2),
            read_timeout: Duration::from_secs(1),
        };
        assert_eq!(settings.backoff_before(1), Duration::from_secs(2));
        assert_eq!(settings.backoff_before(3), Duration::from_secs(8));
        assert_eq!(settings.backoff_before(30), Duration::from_secs(300));
    }
}
