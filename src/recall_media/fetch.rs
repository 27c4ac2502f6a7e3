//! Fetching one recording's media of one kind: list it at Recall, then each part not yet in
//! its participant's manifest is streamed into a local file (hashed as it comes, never held
//! in memory), checked against the length Recall's storage announced, and created in the
//! store without replacing anything, then listed in the manifest. A failed part is tried
//! again after a backoff with fresh download URLs (they expire).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::{
    FetchSettings, FetchState, FetchStatus, MEDIA_MANIFEST, MediaRecord, append_line, is_extension,
    media_records, participant_media_key, read_status, status_key, write_status,
};
use crate::frame::{Participant, RecordingId};
use crate::layout;
use crate::metrics::{KindLabel, Metrics, ReasonLabel};
use crate::recall::media::{MediaKind, MediaObject, MediaPart};
use crate::recall::{RecallClient, RecallError};
use crate::store::{Created, Store, StoreError};

/// Where a part's bytes go while they download: `DATA_DIR/.recall-media/downloads`.
pub const DOWNLOADS: [&str; 2] = [".recall-media", "downloads"];

/// What a fetch reports as it goes: the server counts, the command draws a progress bar.
pub trait Progress: Send + Sync {
    /// A part's download begins; `length` when the server announced it.
    fn part_started(&self, _file: &str, _length: Option<u64>) {}
    /// `bytes` more of the current part arrived.
    fn advanced(&self, _bytes: u64) {}
    /// The part is stored (or was already).
    fn part_finished(&self, _file: &str, _stored: bool) {}
}

/// No reporting.
pub struct Quiet;
impl Progress for Quiet {}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("RECALL_API_KEY is not set: set it to fetch media from Recall")]
    NoApiKey,
    #[error("listing the media at Recall failed: {0}")]
    Recall(#[from] RecallError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("part {part} could not be fetched after {attempts} attempts: {last}")]
    Part {
        part: String,
        attempts: u32,
        last: String,
    },
    #[error("the local download folder failed: {0}")]
    Local(#[source] std::io::Error),
    #[error("stopped: the server is shutting down")]
    Stopped,
}

/// What one fetch did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FetchReport {
    pub recording: String,
    pub kind: String,
    /// Parts Recall lists for finished media.
    pub parts: u64,
    /// Parts stored by this fetch.
    pub fetched: u64,
    /// Parts that were stored before.
    pub already: u64,
    pub bytes_fetched: u64,
    /// Media objects Recall has not finished.
    pub pending_at_recall: u64,
}

/// Why one attempt at a part failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error("the download URL was refused ({0}): expired")]
    Expired(u16),
    #[error("the download answered {0}")]
    Http(u16),
    #[error("the download failed: {0}")]
    Connection(String),
    #[error("nothing arrived for {0:?}")]
    Stalled(Duration),
    #[error("the download ended after {got} of {expected} bytes")]
    Incomplete { got: u64, expected: u64 },
    #[error("the download was empty")]
    Empty,
    #[error("the local file failed: {0}")]
    Local(#[from] std::io::Error),
    #[error("stopped")]
    Stopped,
}

impl AttemptError {
    fn reason(&self) -> &'static str {
        match self {
            AttemptError::Expired(_) => "expired",
            AttemptError::Http(_) => "http",
            AttemptError::Connection(_) | AttemptError::Stalled(_) => "connection",
            AttemptError::Incomplete { .. } | AttemptError::Empty => "incomplete",
            AttemptError::Local(_) => "local",
            AttemptError::Stopped => "stopped",
        }
    }
}

/// A participant's folder as a fetch goes: the parts its manifest lists, and their bytes.
struct FolderState {
    folder: String,
    listed: HashSet<String>,
    bytes: u64,
}

/// The media object a part belongs to.
struct MediaSource {
    id: String,
    format: Option<String>,
}

/// A part downloaded whole into a local file.
struct Downloaded {
    file: TempDownload,
    bytes: u64,
    sha256: String,
    content_type: Option<String>,
}

/// A download's local file, removed when dropped.
struct TempDownload(PathBuf);

impl Drop for TempDownload {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub struct Fetcher {
    pub(super) store: Arc<dyn Store>,
    client: Option<RecallClient>,
    pub(super) settings: FetchSettings,
    downloads: PathBuf,
    http: reqwest::Client,
    pub(super) metrics: Arc<Metrics>,
}

impl Fetcher {
    pub fn new(
        store: Arc<dyn Store>,
        client: Option<RecallClient>,
        settings: FetchSettings,
        downloads: PathBuf,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(settings.read_timeout)
            .user_agent(concat!("recall-frames/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Fetcher {
            store,
            client,
            settings,
            downloads,
            http,
            metrics,
        })
    }

    pub(super) fn client(&self) -> Result<&RecallClient, FetchError> {
        self.client.as_ref().ok_or(FetchError::NoApiKey)
    }

    /// Removes downloads left by a process that stopped mid-way (their jobs start over).
    pub async fn clear_downloads(&self) -> std::io::Result<()> {
        match tokio::fs::remove_dir_all(&self.downloads).await {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        tokio::fs::create_dir_all(&self.downloads).await
    }

    /// Fetches every finished part of `recording`'s `kind` media not yet stored, and keeps
    /// `recall/<kind>.json` up to date.
    pub async fn fetch(
        &self,
        recording: &RecordingId,
        kind: MediaKind,
        bot: Option<&str>,
        progress: &dyn Progress,
        stop: &CancellationToken,
    ) -> Result<FetchReport, FetchError> {
        let status_key = status_key(recording, kind);
        let mut status = read_status(self.store.as_ref(), &status_key)
            .await?
            .unwrap_or_else(|| FetchStatus::new(FetchState::Fetching));
        status.state = FetchState::Fetching;
        status.attempts += 1;
        if status.bot_id.is_none() {
            status.bot_id = bot.map(str::to_owned);
        }
        status.updated_at = Timestamp::now();
        write_status(self.store.as_ref(), &status_key, &status).await?;

        let result = self
            .fetch_parts(recording, kind, &mut status, progress, stop)
            .await;
        status.updated_at = Timestamp::now();
        match &result {
            Ok(_) => {
                status.state = FetchState::Done;
                status.error = None;
                status.attempts = 0;
            }
            Err(FetchError::Stopped) => status.state = FetchState::Queued,
            Err(error) => {
                status.state = FetchState::Retrying;
                status.error = Some(error.to_string());
            }
        }
        write_status(self.store.as_ref(), &status_key, &status).await?;
        result
    }

    async fn fetch_parts(
        &self,
        recording: &RecordingId,
        kind: MediaKind,
        status: &mut FetchStatus,
        progress: &dyn Progress,
        stop: &CancellationToken,
    ) -> Result<FetchReport, FetchError> {
        let client = self.client()?;
        let (objects, parts) = self.list(client, recording, kind).await?;
        let mut report = FetchReport {
            recording: recording.to_string(),
            kind: kind.as_str().to_owned(),
            parts: parts.len() as u64,
            pending_at_recall: objects.iter().filter(|o| !o.is_done()).count() as u64,
            ..FetchReport::default()
        };
        status.parts = report.parts;
        status.pending_at_recall = report.pending_at_recall;
        ensure_recording(self.store.as_ref(), recording, status.bot_id.as_deref()).await?;
        // Folders and what their manifests list, read once per participant.
        let mut folders: HashMap<u64, FolderState> = HashMap::new();
        for (source, part) in &parts {
            if stop.is_cancelled() {
                return Err(FetchError::Stopped);
            }
            let folder = match folders.entry(part.participant.id) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let participant = part.participant.to_participant();
                    let folder =
                        participant_folder(self.store.as_ref(), recording, &participant).await?;
                    let listed = media_records(self.store.as_ref(), recording, &folder).await?;
                    entry.insert(FolderState {
                        bytes: listed.iter().map(|r| r.bytes).sum(),
                        listed: listed.into_iter().map(|r| r.part_id).collect(),
                        folder,
                    })
                }
            };
            if folder.listed.contains(&part.id) {
                report.already += 1;
                continue;
            }
            let record = self
                .fetch_part(
                    recording,
                    kind,
                    source,
                    part,
                    &folder.folder,
                    progress,
                    stop,
                )
                .await?;
            folder.listed.insert(part.id.clone());
            folder.bytes += record.bytes;
            report.fetched += 1;
            report.bytes_fetched += record.bytes;
            status.fetched = report.fetched + report.already;
            status.bytes = folders.values().map(|f| f.bytes).sum();
            status.updated_at = Timestamp::now();
            write_status(self.store.as_ref(), &status_key(recording, kind), status).await?;
        }
        status.fetched = report.fetched + report.already;
        status.bytes = folders.values().map(|f| f.bytes).sum();
        Ok(report)
    }

    /// Every part of the finished media objects, with its object's id.
    async fn list(
        &self,
        client: &RecallClient,
        recording: &RecordingId,
        kind: MediaKind,
    ) -> Result<(Vec<MediaObject>, Vec<(MediaSource, MediaPart)>), RecallError> {
        let objects = client.list_media(kind, recording).await?;
        let mut parts = Vec::new();
        for object in objects.iter().filter(|o| o.is_done()) {
            let Some(url) = object.parts_url() else {
                continue;
            };
            for part in client.media_parts(url).await? {
                let source = MediaSource {
                    id: object.id.clone(),
                    format: object.format.clone(),
                };
                parts.push((source, part));
            }
        }
        Ok((objects, parts))
    }

    /// One part: downloaded (again with fresh URLs when an attempt fails), then stored and
    /// listed.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_part(
        &self,
        recording: &RecordingId,
        kind: MediaKind,
        source: &MediaSource,
        part: &MediaPart,
        folder: &str,
        progress: &dyn Progress,
        stop: &CancellationToken,
    ) -> Result<MediaRecord, FetchError> {
        let type_name = match kind {
            MediaKind::Video => match part.kind.as_deref() {
                Some("screenshare") => "screenshare",
                _ => "webcam",
            },
            MediaKind::Audio => "audio",
        };
        let start_ms = (part.start_timestamp.relative.max(0.0) * 1000.0).round() as u64;
        let mut url = part.download_url.clone();
        let mut last = String::new();
        let mut downloaded = None;
        for attempt in 0..self.settings.attempts {
            if attempt > 0 {
                tokio::select! {
                    () = stop.cancelled() => return Err(FetchError::Stopped),
                    () = tokio::time::sleep(self.settings.backoff_before(attempt)) => {}
                }
                // Download URLs expire: list again for a fresh one.
                match self.fresh_url(recording, kind, &source.id, &part.id).await {
                    Ok(Some(fresh)) => url = fresh,
                    Ok(None) => {
                        last = "Recall no longer lists the part".into();
                        break;
                    }
                    Err(error) => {
                        last = error.to_string();
                        continue;
                    }
                }
            }
            let name = format!("{type_name}-{start_ms}");
            match self.download(&url, &name, progress, stop).await {
                Ok(done) => {
                    downloaded = Some(done);
                    break;
                }
                Err(AttemptError::Stopped) => return Err(FetchError::Stopped),
                Err(error) => {
                    self.metrics
                        .recall
                        .part_attempts_failed
                        .get_or_create(&ReasonLabel {
                            reason: error.reason(),
                        })
                        .inc();
                    tracing::warn!(recording = %recording, part = %part.id, attempt = attempt + 1, %error, "media part attempt failed");
                    last = error.to_string();
                }
            }
        }
        let Some(downloaded) = downloaded else {
            return Err(FetchError::Part {
                part: part.id.clone(),
                attempts: self.settings.attempts,
                last,
            });
        };
        let ext = match kind {
            MediaKind::Video => "mp4".to_owned(),
            MediaKind::Audio => {
                audio_extension(downloaded.content_type.as_deref(), source.format.as_deref())
            }
        };
        let file = format!("{type_name}-{start_ms}.{ext}");
        let key = participant_media_key(recording, folder).join(&file);
        let created = self
            .store
            .create_from_file(&key, &downloaded.file.0)
            .await?;
        if created == Created::Existed {
            // Stored by an earlier run that stopped before its manifest line: kept as it is.
            tracing::info!(%key, "media file already stored; listing it");
        }
        let record = MediaRecord {
            part_id: part.id.clone(),
            media_id: source.id.clone(),
            source: kind.source().to_owned(),
            kind: type_name.to_owned(),
            file: file.clone(),
            start: part.start_timestamp,
            duration: part.duration,
            bytes: downloaded.bytes,
            sha256: downloaded.sha256,
            fetched_at: Timestamp::now(),
        };
        let manifest = participant_media_key(recording, folder).join(MEDIA_MANIFEST);
        append_line(self.store.as_ref(), &manifest, &record).await?;
        self.metrics
            .recall
            .parts_fetched
            .get_or_create(&KindLabel {
                kind: kind.as_str(),
            })
            .inc();
        self.metrics.recall.bytes_fetched.inc_by(record.bytes);
        progress.part_finished(&file, created == Created::New);
        tracing::info!(%key, bytes = record.bytes, "media part stored");
        Ok(record)
    }

    /// The part's download URL as Recall lists it now.
    async fn fresh_url(
        &self,
        recording: &RecordingId,
        kind: MediaKind,
        media_id: &str,
        part_id: &str,
    ) -> Result<Option<String>, FetchError> {
        let client = self.client()?;
        let objects = client.list_media(kind, recording).await?;
        let Some(url) = objects
            .iter()
            .find(|o| o.id == media_id)
            .and_then(|o| o.parts_url())
        else {
            return Ok(None);
        };
        Ok(client
            .media_parts(url)
            .await?
            .into_iter()
            .find(|p| p.id == part_id)
            .map(|p| p.download_url))
    }

    /// Streams `url` into a local file, hashing it, and checks its length.
    async fn download(
        &self,
        url: &str,
        name: &str,
        progress: &dyn Progress,
        stop: &CancellationToken,
    ) -> Result<Downloaded, AttemptError> {
        let response = tokio::select! {
            () = stop.cancelled() => return Err(AttemptError::Stopped),
            response = self.http.get(url).send() => response,
        }
        .map_err(|e| AttemptError::Connection(e.without_url().to_string()))?;
        let status = response.status();
        if matches!(status.as_u16(), 401 | 403 | 404 | 410) {
            return Err(AttemptError::Expired(status.as_u16()));
        }
        if !status.is_success() {
            return Err(AttemptError::Http(status.as_u16()));
        }
        let expected = response.content_length();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let path = self
            .downloads
            .join(format!("{name}-{:016x}.part", rand::random::<u64>()));
        let temp = TempDownload(path.clone());
        let mut file = tokio::fs::File::create(&path).await?;
        let mut hasher = Sha256::new();
        let mut bytes = 0u64;
        progress.part_started(name, expected);
        let in_flight = &self.metrics.recall.bytes_in_flight;
        let mut response = response;
        let result = loop {
            let chunk = tokio::select! {
                () = stop.cancelled() => break Err(AttemptError::Stopped),
                chunk = tokio::time::timeout(self.settings.read_timeout, response.chunk()) => chunk,
            };
            let chunk = match chunk {
                Err(_) => break Err(AttemptError::Stalled(self.settings.read_timeout)),
                Ok(Err(error)) => {
                    break Err(AttemptError::Connection(error.without_url().to_string()));
                }
                Ok(Ok(None)) => break Ok(()),
                Ok(Ok(Some(chunk))) => chunk,
            };
            hasher.update(&chunk);
            if let Err(error) = file.write_all(&chunk).await {
                break Err(error.into());
            }
            bytes += chunk.len() as u64;
            in_flight.inc_by(chunk.len() as i64);
            progress.advanced(chunk.len() as u64);
        };
        in_flight.dec_by(bytes as i64);
        result?;
        if let Some(expected) = expected
            && expected != bytes
        {
            return Err(AttemptError::Incomplete {
                got: bytes,
                expected,
            });
        }
        if bytes == 0 {
            return Err(AttemptError::Empty);
        }
        file.sync_all().await?;
        drop(file);
        Ok(Downloaded {
            file: temp,
            bytes,
            sha256: hex(&hasher.finalize()),
            content_type,
        })
    }
}

/// The participant's folder in `recording`, as the recorder chooses it, with a
/// `participant.json` when it has none (a participant who never streamed frames): where
/// Recall's files of the participant go, whether fetched or copied from a folder.
pub(crate) async fn participant_folder(
    store: &dyn Store,
    recording: &RecordingId,
    participant: &Participant,
) -> Result<String, StoreError> {
    let proposed = layout::participant_folder_name(participant);
    let folder = if store.is_shared() {
        crate::recorder::claim_folder(store, recording, participant.id, proposed).await?
    } else {
        crate::recorder::participant_folders(store, &layout::recording_key(recording))
            .await?
            .remove(&participant.id)
            .unwrap_or(proposed)
    };
    let key = layout::recording_key(recording)
        .join(&folder)
        .join(layout::PARTICIPANT_FILE);
    let mut body = serde_json::to_vec_pretty(participant).expect("plain JSON");
    body.push(b'\n');
    store.create(&key, Bytes::from(body)).await?;
    Ok(folder)
}

/// The extension of an audio file: by its content type when that names an audio format,
/// else the media object's `format`, else MP3.
fn audio_extension(content_type: Option<&str>, format: Option<&str>) -> String {
    let essence = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase());
    let ext = match essence.as_deref() {
        Some("audio/wav" | "audio/x-wav" | "audio/wave") => "wav",
        Some("audio/ogg" | "audio/opus") => "ogg",
        Some("audio/mp4" | "audio/aac" | "audio/x-m4a") => "m4a",
        Some("audio/flac" | "audio/x-flac") => "flac",
        Some("audio/webm") => "webm",
        Some("audio/mpeg" | "audio/mp3") => "mp3",
        Some("audio/l16") => "raw",
        _ => {
            return format
                .map(str::to_ascii_lowercase)
                .filter(|format| is_extension(format))
                .unwrap_or_else(|| "mp3".to_owned());
        }
    };
    ext.to_owned()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut text, b| {
        let _ = write!(text, "{b:02x}");
        text
    })
}

/// A `recording.json` for a recording that streamed nothing here, so that it is listed
/// with its bot as soon as anything of Recall's is kept for it (a queued fetch's status
/// too); one already there is left as it is.
pub(super) async fn ensure_recording(
    store: &dyn Store,
    recording: &RecordingId,
    bot: Option<&str>,
) -> Result<(), StoreError> {
    let key = layout::recording_key(recording).join(layout::RECORDING_FILE);
    let mut summary = layout::RecordingSummary::of(crate::frame::Resource {
        id: recording.as_str().into(),
        metadata: serde_json::json!({}),
    });
    summary.bot = bot.map(|bot| crate::frame::Resource {
        id: bot.into(),
        metadata: serde_json::json!({}),
    });
    let body = serde_json::to_vec_pretty(&summary).expect("plain JSON");
    // Create-only: the recorder's summary, when there is one, stays.
    store.swap(&key, Bytes::from(body), None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_files_are_named_by_their_content_type() {
        assert_eq!(audio_extension(Some("audio/wav"), Some("mp3")), "wav");
        assert_eq!(audio_extension(Some("audio/mpeg; charset=x"), None), "mp3");
        assert_eq!(audio_extension(None, None), "mp3");
        assert_eq!(
            audio_extension(Some("application/octet-stream"), Some("raw")),
            "raw"
        );
        assert_eq!(audio_extension(None, Some("../x")), "mp3");
    }

    #[test]
    fn hashes_are_lowercase_hex() {
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
    }
}
