//! Creating and managing bots: the checked request that both `POST /api/bots` and
//! `recall-frames bot create` build, the body Recall is sent for it, and [`Bots`], the
//! client and endpoint set up once at start-up.

use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use super::client::{BotId, RecallClient, RecallError};
use super::endpoint::{EndpointUrl, public_url};
use crate::auth::Secret;
use crate::config::Config;

/// A bot to create, checked: what the route's JSON body and the command's flags both become.
#[derive(Debug, Clone, PartialEq)]
pub struct BotRequest {
    meeting_url: String,
    bot_name: Option<String>,
    join_at: Option<Timestamp>,
    /// What to call its recordings: sent as the bot's metadata, which Recall returns with
    /// every event.
    title: Option<String>,
    /// Each participant's audio too (`audio_separate_raw`): off unless asked, since Recall
    /// charges more for it and may have to enable it for the workspace.
    audio: bool,
    /// Recall's per-participant MP4s after the call (`video_separate_mp4`): off unless asked,
    /// since they cost at Recall.
    async_video: bool,
    /// Recall's per-participant audio after the call (`audio_separate_raw`): off unless asked.
    async_audio: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidBotRequest {
    #[error("meeting_url {0:?} is not a URL: {1}")]
    MeetingUrl(String, url::ParseError),
    #[error("meeting_url must be an http:// or https:// meeting link, not a {0}: URL")]
    MeetingUrlScheme(String),
    #[error("bot_name must not be empty")]
    EmptyBotName,
    #[error("title must not be empty")]
    EmptyTitle,
    #[error("title must be at most {max} characters, not {0}", max = crate::title::MAX_TITLE_CHARS)]
    LongTitle(usize),
    #[error(
        "join_at {0:?} is not an ISO-8601 time with an offset (for example 2026-11-21T10:00:00Z)"
    )]
    JoinAt(String),
}

impl BotRequest {
    pub fn new(
        meeting_url: &str,
        bot_name: Option<String>,
        join_at: Option<&str>,
    ) -> Result<Self, InvalidBotRequest> {
        let meeting_url = meeting_url.trim();
        let parsed = Url::parse(meeting_url)
            .map_err(|e| InvalidBotRequest::MeetingUrl(meeting_url.to_owned(), e))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(InvalidBotRequest::MeetingUrlScheme(parsed.scheme().into()));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(InvalidBotRequest::MeetingUrl(
                meeting_url.to_owned(),
                url::ParseError::EmptyHost,
            ));
        }
        if bot_name
            .as_deref()
            .is_some_and(|name| name.trim().is_empty())
        {
            return Err(InvalidBotRequest::EmptyBotName);
        }
        let join_at = join_at
            .map(|text| {
                text.trim()
                    .parse::<Timestamp>()
                    .map_err(|_| InvalidBotRequest::JoinAt(text.to_owned()))
            })
            .transpose()?;
        Ok(BotRequest {
            // Sent as given: meeting links carry passwords and ids a rewrite could disturb.
            meeting_url: meeting_url.to_owned(),
            bot_name,
            join_at,
            title: None,
            audio: false,
            async_video: false,
            async_audio: false,
        })
    }

    /// The request, with a title for the bot's recordings (blank or over
    /// [`crate::title::MAX_TITLE_CHARS`] is refused).
    pub fn with_title(mut self, title: Option<&str>) -> Result<Self, InvalidBotRequest> {
        if let Some(title) = title {
            let length = title.trim().chars().count();
            if length > crate::title::MAX_TITLE_CHARS {
                return Err(InvalidBotRequest::LongTitle(length));
            }
            self.title =
                Some(crate::title::check_title(title).ok_or(InvalidBotRequest::EmptyTitle)?);
        }
        Ok(self)
    }

    /// The same bot, streaming each participant's audio as well when `audio`.
    pub fn with_audio(mut self, audio: bool) -> Self {
        self.audio = audio;
        self
    }

    /// The same bot, with Recall's per-participant media after the call: MP4s when
    /// `video`, audio files when `audio` (fetched when Recall says they are done; see
    /// `docs/after-the-call.md`).
    pub fn with_async_media(mut self, video: bool, audio: bool) -> Self {
        self.async_video = video;
        self.async_audio = audio;
        self
    }

    /// The body of Recall's create-bot request: per-participant PNG frames and participant
    /// events (and, when asked, per-participant audio), streamed to `endpoint`, and metadata
    /// that names its recordings.
    pub fn body(&self, endpoint: &EndpointUrl) -> Value {
        let mut events: Vec<&'static str> = crate::event::recorded_events().collect();
        if self.audio {
            events.push(crate::event::SEPARATE_AUDIO_EVENT);
        }
        let body = CreateBotBody {
            meeting_url: &self.meeting_url,
            bot_name: self.bot_name.as_deref(),
            join_at: self.join_at,
            metadata: crate::title::bot_metadata(
                self.title.as_deref(),
                self.bot_name.as_deref(),
                &self.meeting_url,
            ),
            recording_config: RecordingConfig {
                video_mixed_layout: "gallery_view_v2",
                video_separate_png: Empty {},
                audio_separate_raw: (self.audio || self.async_audio).then_some(Empty {}),
                video_separate_mp4: self.async_video.then_some(Empty {}),
                realtime_endpoints: [RealtimeEndpoint {
                    kind: "websocket",
                    url: endpoint.expose(),
                    events,
                }],
            },
        };
        serde_json::to_value(body).expect("the body is plain JSON")
    }
}

#[derive(Serialize)]
struct CreateBotBody<'a> {
    meeting_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    bot_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    join_at: Option<Timestamp>,
    metadata: serde_json::Map<String, Value>,
    recording_config: RecordingConfig<'a>,
}

#[derive(Serialize)]
struct RecordingConfig<'a> {
    video_mixed_layout: &'static str,
    video_separate_png: Empty,
    #[serde(skip_serializing_if = "Option::is_none")]
    audio_separate_raw: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    video_separate_mp4: Option<Empty>,
    realtime_endpoints: [RealtimeEndpoint<'a>; 1],
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RealtimeEndpoint<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    url: &'a str,
    events: Vec<&'static str>,
}

impl RecallClient {
    /// The client the configuration describes: `None` without RECALL_API_KEY.
    pub fn of(config: &Config) -> anyhow::Result<Option<Self>> {
        match &config.recall_api_key {
            Some(key) => {
                let base = config
                    .recall_api_base
                    .clone()
                    .unwrap_or_else(|| config.recall_region.api_base());
                Ok(Some(RecallClient::new(base, key, config.recall_timeout)?))
            }
            None => Ok(None),
        }
    }
}

/// What RECALL_API_KEY is needed for, as [`BotError::NoApiKey`] says it.
const BOTS: &str = "create and manage bots";
pub const DELETE_MEDIA: &str = "delete Recall's copy of a bot's media (recall=true, --recall)";
pub const FETCH_MEDIA: &str = "fetch Recall's media after the call";

/// Creating and managing bots, as set up once at start-up: the Recall client (when
/// `RECALL_API_KEY` is set) and the websocket URL bots are given (when the public URL is
/// known).
#[derive(Clone, Default)]
pub struct Bots {
    client: Option<RecallClient>,
    endpoint: Option<EndpointUrl>,
    /// The setting `endpoint` comes from, for the operator.
    endpoint_from: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    /// What was asked that needs the key, e.g. "create and manage bots".
    #[error("RECALL_API_KEY is not set: set it to a Recall API key to {0}")]
    NoApiKey(&'static str),
    #[error(
        "this server does not know its public URL, so it cannot tell a bot where to stream: \
         set PUBLIC_URL (for example https://frames.example.com)"
    )]
    NoPublicUrl,
    #[error("Recall's bot answer has no id")]
    NoBotId(Value),
    #[error(transparent)]
    Recall(#[from] RecallError),
}

impl Bots {
    pub fn new(config: &Config, ws_token: &Secret) -> anyhow::Result<Self> {
        let client = RecallClient::of(config)?;
        let endpoint = public_url(config).map(|url| EndpointUrl::new(&url, ws_token));
        let endpoint_from = if config.public_url.is_some() {
            "PUBLIC_URL"
        } else {
            "FLY_APP_NAME"
        };
        Ok(Bots {
            client,
            endpoint,
            endpoint_from,
        })
    }

    /// Bots for the calls that need only Recall's API, not this server's endpoint (deleting
    /// a bot's media from the command line).
    pub fn api_only(config: &Config) -> anyhow::Result<Self> {
        Ok(Bots {
            client: RecallClient::of(config)?,
            ..Bots::default()
        })
    }

    pub(crate) fn client(&self) -> Result<&RecallClient, BotError> {
        self.client_to(BOTS)
    }

    /// The client, or the error that says RECALL_API_KEY is needed to do `what`.
    pub(crate) fn client_to(&self, what: &'static str) -> Result<&RecallClient, BotError> {
        self.client.as_ref().ok_or(BotError::NoApiKey(what))
    }

    /// Creates a bot that streams to this server, and returns Recall's bot JSON (which has
    /// its `id`).
    pub async fn create(&self, request: &BotRequest) -> Result<Value, BotError> {
        let client = self.client()?;
        let endpoint = self.endpoint.as_ref().ok_or(BotError::NoPublicUrl)?;
        let bot = client.create_bot(&request.body(endpoint)).await?;
        match bot.get("id") {
            Some(Value::String(id)) => {
                tracing::info!(bot = id, endpoint = %endpoint, "bot created");
                Ok(bot)
            }
            _ => Err(BotError::NoBotId(bot)),
        }
    }

    /// Recall's bot JSON: its status, recordings and so on.
    pub async fn get(&self, id: &BotId) -> Result<Value, BotError> {
        Ok(self.client()?.get_bot(id).await?)
    }

    /// Asks the bot to leave its call; it stops recording, and its websocket closes.
    pub async fn leave(&self, id: &BotId) -> Result<Value, BotError> {
        let answer = self.client()?.leave_call(id).await?;
        tracing::info!(bot = %id, "bot asked to leave its call");
        Ok(answer)
    }

    /// Asks Recall to delete its copy of the bot's media, and returns Recall's answer.
    pub async fn delete_media(&self, id: &BotId) -> Result<Value, BotError> {
        let answer = self.client_to(DELETE_MEDIA)?.delete_media(id).await?;
        tracing::info!(bot = %id, "Recall asked to delete the bot's media");
        Ok(answer)
    }

    /// Says at start-up what creating bots will do.
    pub fn log_startup(&self) {
        match (&self.client, &self.endpoint) {
            // Not the address bots connect to locally, logged above: say where this one is from.
            (Some(client), Some(endpoint)) => tracing::info!(
                recall = %client.base(),
                "POST /api/bots: bots created here stream to {} ({}), with the same token",
                endpoint.without_token(),
                self.endpoint_from
            ),
            (Some(_), None) => tracing::info!(
                "PUBLIC_URL unset (and not on Fly.io): POST /api/bots answers 503 until it is set"
            ),
            (None, _) => {
                tracing::info!("RECALL_API_KEY unset: the /api/bots routes answer 503")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn token() -> Secret {
        Secret::parse_url_safe("test-ws-token-0123456789").unwrap()
    }

    #[test]
    fn a_request_becomes_recalls_create_bot_body() {
        let request = BotRequest::new(
            " https://meet.google.com/abc-defg-hij ",
            Some("Recorder".into()),
            Some("2026-11-21T10:00:00+01:00"),
        )
        .unwrap();
        let url = EndpointUrl::new(&Url::parse("https://f.example").unwrap(), &token());
        // The whole body is checked against a stand-in for Recall in tests/it/bots.rs.
        let body = request.body(&url);
        assert_eq!(body["meeting_url"], "https://meet.google.com/abc-defg-hij");
        assert_eq!(body["bot_name"], "Recorder");
        assert_eq!(body["join_at"], "2026-11-21T09:00:00Z", "normalised to UTC");
        assert_eq!(
            body["metadata"],
            json!({"bot_name": "Recorder", "meeting_host": "meet.google.com"})
        );
        let config = &body["recording_config"];
        assert_eq!(config["video_separate_png"], json!({}));
        let endpoint = &config["realtime_endpoints"][0];
        assert_eq!(
            endpoint["url"],
            "wss://f.example/ws?token=test-ws-token-0123456789"
        );
        let events = endpoint["events"].as_array().unwrap();
        assert_eq!(events[0], crate::event::FRAME_EVENT);
        assert_eq!(
            events.len(),
            1 + crate::frame::ParticipantEventKind::ALL.len()
        );
        let minimal = BotRequest::new("https://zoom.us/j/1", None, None).unwrap();
        let body = minimal.body(&url);
        assert!(body.get("bot_name").is_none() && body.get("join_at").is_none());
        let config = &body["recording_config"];
        assert!(
            config.get("video_separate_mp4").is_none()
                && config.get("audio_separate_raw").is_none(),
            "async media is off by default: it costs at Recall"
        );
        let media = minimal.with_async_media(true, true).body(&url);
        let config = &media["recording_config"];
        assert_eq!(config["video_separate_mp4"], json!({}));
        assert_eq!(config["audio_separate_raw"], json!({}));
        assert_eq!(config["video_mixed_layout"], "gallery_view_v2");
        let events = config["realtime_endpoints"][0]["events"]
            .as_array()
            .unwrap();
        assert!(
            !events
                .iter()
                .any(|e| e == crate::event::SEPARATE_AUDIO_EVENT),
            "async audio alone streams no realtime audio"
        );
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let error = |url: &str, name: Option<&str>, join_at: Option<&str>| {
            BotRequest::new(url, name.map(str::to_owned), join_at)
                .unwrap_err()
                .to_string()
        };
        assert!(error("meet.google.com/abc", None, None).contains("not a URL"));
        assert!(error("ftp://meet.example/abc", None, None).contains("http:// or https://"));
        assert!(error("https://zoom.us/j/1", Some("  "), None).contains("bot_name"));
        assert!(error("https://zoom.us/j/1", None, Some("tomorrow")).contains("join_at"));
        let titled = |title: &str| {
            BotRequest::new("https://zoom.us/j/1", None, None)
                .unwrap()
                .with_title(Some(title))
        };
        assert_eq!(
            titled(" \n ").unwrap_err().to_string(),
            "title must not be empty"
        );
        assert!(
            titled(&"x".repeat(201))
                .unwrap_err()
                .to_string()
                .contains("at most 200 characters, not 201")
        );
        let url = EndpointUrl::new(&Url::parse("https://f.example").unwrap(), &token());
        assert_eq!(
            titled(" Weekly sync ").unwrap().body(&url)["metadata"],
            json!({"title": "Weekly sync", "meeting_host": "zoom.us"})
        );
    }
}
