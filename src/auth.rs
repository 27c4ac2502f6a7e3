//! Secrets and how they are checked: the websocket token bots present, and the API token.
//! Recall's upgrade signatures live in [`signature`].

pub mod signature;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use axum::http;
use base64::Engine as _;
use subtle::ConstantTimeEq as _;

/// A secret string: compared in constant time, never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    const MIN_LEN: usize = 16;

    /// Accepts secrets that can sit in a URL as they are: 16 or more unreserved characters.
    pub fn parse_url_safe(text: &str) -> Result<Self, String> {
        if text.len() < Self::MIN_LEN {
            return Err(format!(
                "must be at least {} characters long",
                Self::MIN_LEN
            ));
        }
        if let Some(bad) = text
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c)))
        {
            return Err(format!("may only hold A-Z a-z 0-9 - . _ ~ (found {bad:?})"));
        }
        Ok(Secret(text.into()))
    }

    /// Accepts any non-empty secret that can be sent as an HTTP header value. For secrets
    /// chosen by others (Recall API keys), whose alphabet is not ours to restrict.
    pub fn parse_header_safe(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("must not be empty".into());
        }
        if http::HeaderValue::from_str(text).is_err() {
            return Err(
                "must be printable ASCII: it is sent as an HTTP header (no line breaks)".into(),
            );
        }
        Ok(Secret(text.into()))
    }

    /// A new random secret: 256 bits, URL-safe base64.
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        Secret(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(bytes)
                .into(),
        )
    }

    pub fn matches(&self, candidate: &str) -> bool {
        bool::from(self.0.as_bytes().ct_eq(candidate.as_bytes()))
    }

    /// The secret itself, for the few places that must send it (a URL given to Recall).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Where the websocket token in use came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `WS_TOKEN` was set.
    Configured,
    /// Read from the dot-file an earlier start generated.
    Stored(PathBuf),
    /// Generated now and stored in the dot-file.
    Generated(PathBuf),
}

/// The file in `DATA_DIR` that keeps a generated websocket token across restarts.
pub const WS_TOKEN_FILE: &str = ".ws-token";

/// The websocket token: the configured one, else the one stored in `data_dir`, else a new
/// one that is stored there, so that bots created before a restart are still let in.
pub async fn ws_token(
    configured: Option<Secret>,
    data_dir: &Path,
) -> anyhow::Result<(Secret, TokenSource)> {
    if let Some(found) = existing_ws_token(configured, data_dir).await? {
        return Ok(found);
    }
    let path = data_dir.join(WS_TOKEN_FILE);
    let token = Secret::generate();
    let (file, contents) = (path.clone(), format!("{}\n", token.expose()));
    // A temporary file is created readable by its owner only; the rename keeps that.
    tokio::task::spawn_blocking(move || {
        crate::files::write_file_atomic(&file, contents.as_bytes())
    })
    .await?
    .with_context(|| format!("cannot store the websocket token in {}", path.display()))?;
    Ok((token, TokenSource::Generated(path)))
}

/// The websocket token the server uses, without generating one: the configured one, else the
/// one stored in `data_dir`, else `None`. What a command run beside the server reads.
pub async fn existing_ws_token(
    configured: Option<Secret>,
    data_dir: &Path,
) -> anyhow::Result<Option<(Secret, TokenSource)>> {
    if let Some(token) = configured {
        return Ok(Some((token, TokenSource::Configured)));
    }
    let path = data_dir.join(WS_TOKEN_FILE);
    match tokio::fs::read_to_string(&path).await {
        Ok(stored) => {
            let token = Secret::parse_url_safe(stored.trim()).map_err(|e| {
                anyhow::anyhow!(
                    "the token in {} {e}; fix or delete the file",
                    path.display()
                )
            })?;
            Ok(Some((token, TokenSource::Stored(path))))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_must_be_long_and_url_safe() {
        assert!(Secret::parse_url_safe("short").is_err());
        assert!(Secret::parse_url_safe("has space in it 123").is_err());
        assert!(Secret::parse_url_safe("a&b=c-0123456789abc").is_err());
        let secret = Secret::parse_url_safe("abcdefghijklmnop-_.~").unwrap();
        assert!(secret.matches("abcdefghijklmnop-_.~"));
        assert!(!secret.matches("abcdefghijklmnop-_."));
        assert_eq!(format!("{secret:?}"), "Secret(<redacted>)");
        assert!(Secret::parse_url_safe(Secret::generate().expose()).is_ok());
    }

    #[test]
    fn header_safe_secrets_refuse_only_empty_and_control_characters() {
        assert!(Secret::parse_header_safe("").is_err());
        assert!(Secret::parse_header_safe("key\nInjected: yes").is_err());
        let key = Secret::parse_header_safe("Token a+b/c=d 9").unwrap();
        assert_eq!(key.expose(), "Token a+b/c=d 9");
        assert_eq!(format!("{key:?}"), "Secret(<redacted>)");
    }

    #[tokio::test]
    async fn a_generated_token_is_stored_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = ws_token(None, dir.path()).await.unwrap();
        assert!(matches!(source, TokenSource::Generated(_)));
        let (again, source) = ws_token(None, dir.path()).await.unwrap();
        assert!(matches!(source, TokenSource::Stored(_)));
        assert_eq!(first, again);
    }

    #[tokio::test]
    async fn the_existing_token_is_read_but_never_generated() {
        let dir = tempfile::tempdir().unwrap();
        assert!(existing_ws_token(None, dir.path()).await.unwrap().is_none());
        assert!(!dir.path().join(WS_TOKEN_FILE).exists());
        let (generated, _) = ws_token(None, dir.path()).await.unwrap();
        let (read, source) = existing_ws_token(None, dir.path()).await.unwrap().unwrap();
        assert_eq!(
            (read, source),
            (
                generated,
                TokenSource::Stored(dir.path().join(WS_TOKEN_FILE))
            )
        );
    }
}
