//! The client for Recall's bot API: requests with the key and timeouts, and Recall's answers
//! turned into JSON or a [`RecallError`] a user can read.

use std::fmt;
use std::time::Duration;

use anyhow::Context as _;
use axum::http::{HeaderValue, StatusCode, header};
use serde_json::Value;
use url::Url;

use crate::auth::Secret;
use crate::config::Region;

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

    /// `POST {base}/api/v1/bot/{id}/delete_media/`: Recall deletes its copy of the bot's
    /// recordings (video, audio, transcripts).
    pub async fn delete_media(&self, id: &BotId) -> Result<Value, RecallError> {
        self.send(self.http.post(self.bot_url(&[&id.0, "delete_media"])))
            .await
    }

    /// `{base}/api/v1/bot/<segments>/`, keeping any path prefix of the base. Recall's paths
    /// end with a slash.
    fn bot_url(&self, segments: &[&str]) -> Url {
        let mut all = vec!["bot"];
        all.extend(segments);
        self.api_url(&all)
    }

    /// `{base}/api/v1/<segments>/`, as [`RecallClient::bot_url`].
    pub(crate) fn api_url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty()
                .extend(["api", "v1"])
                .extend(segments)
                .push("");
        }
        url
    }

    /// `GET url` as JSON: a page Recall's answers point to (a list's `next`, a media
    /// object's `download_url`). The API key goes only to Recall's own API: a download URL
    /// elsewhere (a presigned storage URL) carries its own authorisation.
    pub(crate) async fn get_json_at(&self, url: &Url) -> Result<Value, RecallError> {
        let request = self.http.get(url.clone());
        if url.origin() == self.base.origin() {
            self.send(request).await
        } else {
            self.send_as_is(request).await
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, RecallError> {
        self.send_as_is(request.header(header::AUTHORIZATION, self.authorization.clone()))
            .await
    }

    async fn send_as_is(&self, request: reqwest::RequestBuilder) -> Result<Value, RecallError> {
        let mut response = request
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
