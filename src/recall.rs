//! Recall's API, as this server uses it: creating a bot whose realtime endpoint is this
//! server's own websocket, reading a bot, and asking a bot to leave its call.
//!
//! [`Bots`] is what both `POST /api/bots` and `recall-frames bot create` call, so the two
//! build the same request the same way.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{HeaderValue, StatusCode, header};
use jiff::Timestamp;
use serde::Serialize;
use serde_json::Value;
use url::Url;

use crate::auth::Secret;
use crate::config::{Config, Region};

/// Longest wait for a connection to Recall's API (the request timeout caps it too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest answer read from Recall's API. A bot's JSON is a few kilobytes.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

// Recall's URLs for a region are Recall's business; the region itself is a setting.
impl Region {
    /// The region's API base, `https://<region>.recall.ai/`.
    pub fn api_base(self) -> Url {
        Url::parse(&format!("https://{}.recall.ai/", self.as_str()))
            .expect("a region name makes a valid host name")
    }
}

/// The websocket URL a bot is given: the server's public URL with `/ws?token=<WS_TOKEN>`.
/// `Display` and `Debug` show it with the token redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointUrl(Url);

impl EndpointUrl {
    /// `https://host/prefix` → `wss://host/prefix/ws?token=…`; `http://` → `ws://`.
    pub fn new(public_url: &Url, token: &Secret) -> Self {
        let mut url = public_url.clone();
        let scheme = if url.scheme() == "http" { "ws" } else { "wss" };
        // Both pairs are special schemes, between which `url` allows a change.
        let _ = url.set_scheme(scheme);
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().push("ws");
        }
        url.query_pairs_mut().append_pair("token", token.expose());
        EndpointUrl(url)
    }

    /// The URL with its token, for Recall.
    pub fn expose(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.clone();
        shown.set_query(None);
        write!(f, "{shown}?token=<redacted>")
    }
}

impl fmt::Debug for EndpointUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EndpointUrl({self})")
    }
}

/// The server's public URL: `PUBLIC_URL`, else `https://$FLY_APP_NAME.fly.dev/` on Fly.io.
pub fn public_url(config: &Config) -> Option<Url> {
    if let Some(url) = &config.public_url {
        return Some(url.clone());
    }
    let app = config.fly_app_name.as_deref()?;
    Url::parse(&format!("https://{app}.fly.dev/")).ok()
}

/// A bot to create, checked: what the route's JSON body and the command's flags both become.
#[derive(Debug, Clone, PartialEq)]
pub struct BotRequest {
    meeting_url: String,
    bot_name: Option<String>,
    join_at: Option<Timestamp>,
}

#[derive(Debug, thiserror::Error)]
pub enum InvalidBotRequest {
    #[error("meeting_url {0:?} is not a URL: {1}")]
    MeetingUrl(String, url::ParseError),
    #[error("meeting_url must be an http:// or https:// meeting link, not a {0}: URL")]
    MeetingUrlScheme(String),
    #[error("bot_name must not be empty")]
    EmptyBotName,
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
        })
    }

    /// The body of Recall's create-bot request: per-participant PNG frames and participant
    /// events, streamed to `endpoint`.
    pub fn body(&self, endpoint: &EndpointUrl) -> Value {
        let body = CreateBotBody {
            meeting_url: &self.meeting_url,
            bot_name: self.bot_name.as_deref(),
            join_at: self.join_at,
            recording_config: RecordingConfig {
                video_mixed_layout: "gallery_view_v2",
                video_separate_png: Empty {},
                realtime_endpoints: [RealtimeEndpoint {
                    kind: "websocket",
                    url: endpoint.expose(),
                    events: crate::event::recorded_events().collect(),
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
    recording_config: RecordingConfig<'a>,
}

#[derive(Serialize)]
struct RecordingConfig<'a> {
    video_mixed_layout: &'static str,
    video_separate_png: Empty,
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

/// A Recall bot id, checked before it goes into a URL path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotId(String);

impl BotId {
    pub fn parse(id: &str) -> Option<Self> {
        let ok = (1..=128).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'));
        ok.then(|| BotId(id.to_owned()))
    }
}

impl fmt::Display for BotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What went wrong talking to Recall. The messages are plain sentences fit for a user;
/// internals (transport errors, 5xx bodies) stay in the sources and fields, for the log.
#[derive(Debug, thiserror::Error)]
pub enum RecallError {
    #[error("Recall's API could not be reached")]
    Unreachable(#[source] reqwest::Error),
    #[error("the connection to Recall's API failed")]
    Connection(#[source] reqwest::Error),
    #[error("Recall's API did not answer within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("Recall refused the request ({status}): {message}{}", hint(*status, *retry_after))]
    Refused {
        status: StatusCode,
        message: String,
        /// Recall's answer, as JSON when it was JSON.
        body: Value,
        /// Recall's `Retry-After` in seconds (it sends one with 429), passed on to the caller.
        retry_after: Option<u64>,
    },
    #[error("Recall's API failed ({status}); the details are in this server's log")]
    Failed { status: StatusCode, body: String },
    #[error("Recall's API gave an answer this server does not understand")]
    BadAnswer { status: StatusCode, detail: String },
}

fn hint(status: StatusCode, retry_after: Option<u64>) -> String {
    match (status, retry_after) {
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
            " (check RECALL_API_KEY and RECALL_REGION: keys belong to one region)".into()
        }
        (_, Some(seconds)) => format!(" (try again in {seconds} s)"),
        _ => String::new(),
    }
}

/// A client for Recall's API, with its key and timeouts.
#[derive(Clone)]
pub struct RecallClient {
    http: reqwest::Client,
    base: Url,
    authorization: HeaderValue,
    timeout: Duration,
}

impl RecallClient {
    /// A client for the API at `base` (e.g. `https://us-east-1.recall.ai/`). `timeout` bounds
    /// each whole request, answer included.
    pub fn new(base: Url, key: &Secret, timeout: Duration) -> anyhow::Result<Self> {
        anyhow::ensure!(
            matches!(base.scheme(), "http" | "https") && !base.cannot_be_a_base(),
            "Recall's API base {base} is not an http(s) URL"
        );
        let mut authorization = HeaderValue::from_str(key.expose())
            .context("RECALL_API_KEY cannot be sent as an HTTP header")?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .timeout(timeout)
            // Recall's API does not redirect; a redirect would mean a wrong base URL.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("recall-frames/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client for Recall's API")?;
        Ok(RecallClient {
            http,
            base,
            authorization,
            timeout,
        })
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    /// `POST {base}/api/v1/bot/` with `body`.
    pub async fn create_bot(&self, body: &Value) -> Result<Value, RecallError> {
        let request = self.http.post(self.bot_url(&[])).json(body);
        self.send(request).await
    }

    /// `GET {base}/api/v1/bot/{id}/`.
    pub async fn get_bot(&self, id: &BotId) -> Result<Value, RecallError> {
        self.send(self.http.get(self.bot_url(&[&id.0]))).await
    }

    /// `POST {base}/api/v1/bot/{id}/leave_call/`.
    pub async fn leave_call(&self, id: &BotId) -> Result<Value, RecallError> {
        self.send(self.http.post(self.bot_url(&[&id.0, "leave_call"])))
            .await
    }

    /// `{base}/api/v1/bot/<segments>/`, keeping any path prefix of the base. Recall's paths
    /// end with a slash.
    fn bot_url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["api", "v1", "bot"])
                .extend(segments)
                .push("");
        }
        url
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, RecallError> {
        let mut response = request
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        // Delta-seconds, the form Recall uses; an HTTP date is not passed on.
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok()?.trim().parse().ok());
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(RecallError::BadAnswer {
                    status,
                    detail: format!("the answer is over {MAX_ANSWER_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let json = if body.iter().all(u8::is_ascii_whitespace) {
            Ok(Value::Null)
        } else {
            serde_json::from_slice::<Value>(&body)
        };
        if status.is_success() {
            return json.map_err(|error| RecallError::BadAnswer {
                status,
                detail: format!("not JSON ({error}): {}", excerpt(&body)),
            });
        }
        if status.is_client_error() {
            let body = json.unwrap_or_else(|_| Value::String(excerpt(&body)));
            return Err(RecallError::Refused {
                status,
                message: refusal_message(status, &body),
                body,
                retry_after,
            });
        }
        if status.is_server_error() {
            return Err(RecallError::Failed {
                status,
                body: excerpt(&body),
            });
        }
        Err(RecallError::BadAnswer {
            status,
            detail: format!("unexpected status: {}", excerpt(&body)),
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> RecallError {
        if error.is_timeout() {
            RecallError::TimedOut(self.timeout)
        } else if error.is_connect() {
            RecallError::Unreachable(error)
        } else {
            RecallError::Connection(error)
        }
    }
}

/// At most the first 500 characters of an answer, as text.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(500) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// Recall's own words from an error answer: `{"detail": "Invalid API key."}` or
/// `{"meeting_url": ["Invalid meeting URL."]}` become `Invalid API key.` and
/// `meeting_url: Invalid meeting URL.`
fn refusal_message(status: StatusCode, body: &Value) -> String {
    fn words(value: &Value) -> String {
        match value {
            Value::String(text) => text.clone(),
            Value::Array(items) => items.iter().map(words).collect::<Vec<_>>().join(" "),
            other => other.to_string(),
        }
    }
    let message = match body {
        Value::Object(fields) => match fields.get("detail") {
            Some(detail) if fields.len() == 1 => words(detail),
            _ => fields
                .iter()
                .map(|(field, value)| format!("{field}: {}", words(value)))
                .collect::<Vec<_>>()
                .join("; "),
        },
        Value::Null => String::new(),
        other => words(other),
    };
    if message.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    } else {
        message
    }
}

/// Creating and managing bots, as set up once at start-up: the Recall client (when
/// `RECALL_API_KEY` is set) and the websocket URL bots are given (when the public URL is
/// known).
#[derive(Clone, Default)]
pub struct Bots {
    client: Option<RecallClient>,
    endpoint: Option<EndpointUrl>,
}

#[derive(Debug, thiserror::Error)]
pub enum BotError {
    #[error("RECALL_API_KEY is not set: set it to a Recall API key to create and manage bots")]
    NoApiKey,
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
        let client = match &config.recall_api_key {
            Some(key) => {
                let base = config
                    .recall_api_base
                    .clone()
                    .unwrap_or_else(|| config.recall_region.api_base());
                Some(RecallClient::new(base, key, config.recall_timeout)?)
            }
            None => None,
        };
        let endpoint = public_url(config).map(|url| EndpointUrl::new(&url, ws_token));
        Ok(Bots { client, endpoint })
    }

    /// The websocket URL bots are given, if the public URL is known.
    pub fn endpoint(&self) -> Option<&EndpointUrl> {
        self.endpoint.as_ref()
    }

    fn client(&self) -> Result<&RecallClient, BotError> {
        self.client.as_ref().ok_or(BotError::NoApiKey)
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

    /// Says at start-up what creating bots will do.
    pub fn log_startup(&self) {
        match (&self.client, &self.endpoint) {
            (Some(client), Some(endpoint)) => tracing::info!(
                recall = %client.base(),
                "POST /api/bots creates bots that stream to {endpoint}"
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
    use super::*;
    use serde_json::json;

    fn token() -> Secret {
        Secret::parse_url_safe("test-ws-token-0123456789").unwrap()
    }

    fn endpoint(public: &str) -> String {
        EndpointUrl::new(&Url::parse(public).unwrap(), &token())
            .expose()
            .to_owned()
    }

    #[test]
    fn the_endpoint_is_the_public_url_with_ws_and_the_token() {
        assert_eq!(
            endpoint("https://frames.example.com"),
            "wss://frames.example.com/ws?token=test-ws-token-0123456789"
        );
        assert_eq!(
            endpoint("http://localhost:8080/"),
            "ws://localhost:8080/ws?token=test-ws-token-0123456789"
        );
        assert_eq!(
            endpoint("https://example.com/recall/frames/"),
            "wss://example.com/recall/frames/ws?token=test-ws-token-0123456789"
        );
        assert_eq!(
            endpoint("https://example.com/prefix"),
            "wss://example.com/prefix/ws?token=test-ws-token-0123456789"
        );
    }

    #[test]
    fn the_endpoint_never_prints_its_token() {
        let url = EndpointUrl::new(&Url::parse("https://x.example/p").unwrap(), &token());
        assert_eq!(url.to_string(), "wss://x.example/p/ws?token=<redacted>");
        assert!(!format!("{url:?}").contains("0123456789"));
    }

    #[test]
    fn region_bases() {
        assert_eq!(
            Region::UsEast1.api_base().as_str(),
            "https://us-east-1.recall.ai/"
        );
        assert_eq!(
            Region::ApNortheast1.api_base().as_str(),
            "https://ap-northeast-1.recall.ai/"
        );
    }

    #[test]
    fn bot_urls_keep_a_base_prefix_and_end_with_a_slash() {
        let key = Secret::parse_header_safe("k").unwrap();
        let client = |base: &str| {
            RecallClient::new(Url::parse(base).unwrap(), &key, Duration::from_secs(1)).unwrap()
        };
        let id = BotId::parse("6e2c1a7e-0b1d-4a55-9a1e-2f0e6c1d9b3a").unwrap();
        assert_eq!(
            client("https://us-east-1.recall.ai").bot_url(&[]).as_str(),
            "https://us-east-1.recall.ai/api/v1/bot/"
        );
        assert_eq!(
            client("http://127.0.0.1:9/proxy/")
                .bot_url(&[&id.0, "leave_call"])
                .as_str(),
            "http://127.0.0.1:9/proxy/api/v1/bot/6e2c1a7e-0b1d-4a55-9a1e-2f0e6c1d9b3a/leave_call/"
        );
    }

    #[test]
    fn bot_ids_are_checked_before_they_reach_a_path() {
        assert!(BotId::parse("6e2c1a7e-0b1d-4a55-9a1e-2f0e6c1d9b3a").is_some());
        for bad in ["", "..", "a/b", "a%2Fb", "a b", "a?b", &"x".repeat(129)] {
            assert!(BotId::parse(bad).is_none(), "{bad:?}");
        }
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
        // The whole body is checked against a stand-in for Recall in tests/bots.rs.
        let body = request.body(&url);
        assert_eq!(body["meeting_url"], "https://meet.google.com/abc-defg-hij");
        assert_eq!(body["bot_name"], "Recorder");
        assert_eq!(body["join_at"], "2026-11-21T09:00:00Z", "normalised to UTC");
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
    }

    #[test]
    fn recalls_error_bodies_become_sentences() {
        let bad = StatusCode::BAD_REQUEST;
        assert_eq!(
            refusal_message(bad, &json!({"detail": "Invalid API key."})),
            "Invalid API key."
        );
        assert_eq!(
            refusal_message(bad, &json!({"meeting_url": ["Invalid meeting URL."]})),
            "meeting_url: Invalid meeting URL."
        );
        let two = refusal_message(bad, &json!({"a": ["Too soon.", "Really."], "b": "No."}));
        assert!(
            two.contains("a: Too soon. Really.") && two.contains("; ") && two.contains("b: No.")
        );
        assert_eq!(refusal_message(bad, &json!("plain text")), "plain text");
        assert_eq!(refusal_message(bad, &Value::Null), "Bad Request");
    }
}
