//! Recall's async media API, as the fetcher reads it: the paginated lists of a recording's
//! `video_separate` and `audio_separate` objects, each object's parts (one file per
//! participant and part, behind a download URL that expires), and the bot's recordings.

use jiff::Timestamp;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use url::Url;

use super::client::{BotId, RecallClient, RecallError};
use crate::frame::{Participant, ParticipantId, RecordingId};

/// Pages of one list followed at most: a recording has a handful of media objects.
const MAX_PAGES: usize = 100;

/// The two kinds of per-participant media Recall makes after the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    /// `video_separate_mp4`: an MP4 per participant per part (webcam or screen share).
    Video,
    /// `audio_separate_raw` after the call: an audio file per participant per part.
    Audio,
}

impl MediaKind {
    pub const ALL: [MediaKind; 2] = [MediaKind::Video, MediaKind::Audio];

    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
        }
    }

    /// The path of its list in Recall's API, and the name of the webhook that says one is
    /// done (`video_separate.done`).
    pub fn resource(self) -> &'static str {
        match self {
            MediaKind::Video => "video_separate",
            MediaKind::Audio => "audio_separate",
        }
    }

    /// What the manifest calls where the file came from.
    pub fn source(self) -> &'static str {
        match self {
            MediaKind::Video => "video_separate_mp4",
            MediaKind::Audio => "audio_separate_raw",
        }
    }
}

/// One media object of a list: done when its `status.code` is `done`.
#[derive(Debug, Clone, Deserialize)]
pub struct MediaObject {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    #[serde(default)]
    pub status: Option<MediaStatus>,
    #[serde(default)]
    pub data: Option<MediaData>,
    /// The file format (`mp4`, `mp3`, `raw`...), when Recall says.
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MediaStatus {
    pub code: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct MediaData {
    #[serde(default)]
    pub download_url: Option<String>,
}

impl MediaObject {
    pub fn is_done(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.code == "done")
    }

    pub fn parts_url(&self) -> Option<&str> {
        self.data.as_ref()?.download_url.as_deref()
    }
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    results: Vec<Value>,
}

/// One part of a media object: one participant's file.
#[derive(Debug, Clone, Deserialize)]
pub struct MediaPart {
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    pub participant: PartParticipant,
    pub start_timestamp: PartTime,
    #[serde(default)]
    pub duration: Option<f64>,
    /// `webcam` or `screenshare` (video only).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    pub download_url: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct PartParticipant {
    pub id: u64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub is_host: bool,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub extra_data: Value,
}

impl PartParticipant {
    pub fn to_participant(&self) -> Participant {
        Participant {
            id: ParticipantId(self.id),
            name: self.name.clone(),
            is_host: self.is_host,
            platform: self.platform.clone(),
            email: None,
            extra_data: self.extra_data.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize, PartialEq)]
pub struct PartTime {
    /// Seconds from the bot's `in_call_recording`: the clock of the realtime frames.
    pub relative: f64,
    #[serde(default)]
    pub absolute: Option<Timestamp>,
}

/// Ids are strings in Recall's answers; a number is taken as its text.
fn id_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(text) => Ok(text),
        Value::Number(number) => Ok(number.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "an id must be a string, not {other}"
        ))),
    }
}

fn bad_answer(detail: String) -> RecallError {
    RecallError::BadAnswer {
        status: axum::http::StatusCode::OK,
        detail,
    }
}

impl RecallClient {
    /// Every `video_separate` or `audio_separate` object of `recording`, following `next`.
    pub async fn list_media(
        &self,
        kind: MediaKind,
        recording: &RecordingId,
    ) -> Result<Vec<MediaObject>, RecallError> {
        let mut url = self.api_url(&[kind.resource()]);
        url.query_pairs_mut()
            .append_pair("recording_id", recording.as_str());
        let mut objects = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page = serde_json::from_value(self.get_json_at(&url).await?)
                .map_err(|error| bad_answer(format!("not a page of media objects: {error}")))?;
            for result in page.results {
                match serde_json::from_value::<MediaObject>(result) {
                    Ok(object) => objects.push(object),
                    Err(error) => {
                        tracing::warn!(%error, kind = kind.as_str(), "skipping a media object this server does not understand")
                    }
                }
            }
            match page.next.filter(|next| !next.is_empty()) {
                Some(next) => {
                    url = url
                        .join(&next)
                        .map_err(|error| bad_answer(format!("a next page {next:?}: {error}")))?
                }
                None => return Ok(objects),
            }
        }
        Err(bad_answer(format!("over {MAX_PAGES} pages of media")))
    }

    /// The parts behind a media object's `data.download_url`.
    pub async fn media_parts(&self, parts_url: &str) -> Result<Vec<MediaPart>, RecallError> {
        let url = Url::parse(parts_url)
            .map_err(|error| bad_answer(format!("a download_url {parts_url:?}: {error}")))?;
        let answer = self.get_json_at(&url).await?;
        serde_json::from_value(answer)
            .map_err(|error| bad_answer(format!("not a list of media parts: {error}")))
    }

    /// The ids of a bot's recordings, from `GET /api/v1/bot/{id}/`.
    pub async fn bot_recordings(&self, bot: &BotId) -> Result<Vec<RecordingId>, RecallError> {
        let bot = self.get_bot(bot).await?;
        let recordings = bot
            .get("recordings")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        Ok(recordings
            .iter()
            .filter_map(|recording| recording.get("id")?.as_str())
            .filter_map(|id| {
                let parsed = RecordingId::parse(id).filter(|id| !id.as_str().starts_with('.'));
                if parsed.is_none() {
                    tracing::warn!(id, "skipping a recording id that cannot name a folder");
                }
                parsed
            })
            .collect())
    }
}
