//! Polling until the server has done something, with one patience for every wait.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::PATIENCE;

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
    let url = format!("{stream_url}/frames?limit=1");
    eventually(&format!("{stream_url} lists {frames} frames"), || async {
        match reqwest::get(&url).await {
            Ok(r) if r.status() == 200 => {
                r.json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["total"].as_u64())
                    == Some(frames)
            }
            _ => false,
        }
    })
    .await;
}
