//! Polling until the server has done something, with one patience for every wait.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::{PATIENCE, TestServer};

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `path` exists.
pub async fn wait_for_file(path: &Path) {
    eventually(&format!("{} exists", path.display()), || async {
        path.exists()
    })
    .await;
}

/// Waits until the API lists `frames` frames in the stream at `stream_url`.
pub async fn wait_for_frames_at(stream_url: &str, frames: u64) {
    wait_for_field(&format!("{stream_url}/frames?limit=1"), "total", frames).await;
}

/// Waits until the JSON answered at `url` has `field` equal to `expected`.
pub async fn wait_for_field(url: &str, field: &str, expected: impl Into<Value>) {
    let expected = expected.into();
    eventually(&format!("{url} has {field} {expected}"), || async {
        match reqwest::get(url).await {
            Ok(r) if r.status() == 200 => r
                .json::<Value>()
                .await
                .is_ok_and(|json| json[field] == expected),
            _ => false,
        }
    })
    .await;
}

/// Waits until the track at `api` lists `chunks` chunks.
pub async fn wait_for_chunks(server: &TestServer, api: &str, chunks: u64) {
    wait_for_field(&server.url(api), "chunks", chunks).await;
}
