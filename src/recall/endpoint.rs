//! Where a bot is told to stream: the server's public URL, and the websocket URL with the
//! token that is made from it.

use std::fmt;

use url::Url;

use crate::auth::Secret;
use crate::config::Config;

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

    /// The URL without its token, for the operator.
    pub fn without_token(&self) -> Url {
        let mut bare = self.0.clone();
        bare.set_query(None);
        bare
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
