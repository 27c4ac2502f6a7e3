//! Media read back with the real tools (ffprobe, ffmpeg), not by eye: a video's frames and
//! their presentation times, its streams, and its sound decoded to samples; and the waits
//! for an export job.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::{PATIENCE, TestServer, skip_unless_ci};

/// Whether ffmpeg and ffprobe run here; skips the test (fails it under CI) when not.
pub fn need_ffmpeg() -> bool {
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if runs("ffmpeg") && runs("ffprobe") {
        return true;
    }
    skip_unless_ci(
        "ffmpeg or ffprobe is not installed",
        ".ci/run installs the Debian package ffmpeg",
    );
    false
}

fn ffprobe(path: &Path, args: &[&str]) -> Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe's JSON")
}

/// A video frame as ffprobe decodes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbedFrame {
    /// Presentation time in ms.
    pub pts_ms: f64,
    pub width: u64,
    pub height: u64,
}

/// Every decoded frame of the video stream, in presentation order.
pub fn video_frames(path: &Path) -> Vec<ProbedFrame> {
    let json = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time,width,height",
        ],
    );
    let mut frames: Vec<ProbedFrame> = json["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| ProbedFrame {
            pts_ms: f["pts_time"].as_str().unwrap().parse::<f64>().unwrap() * 1000.0,
            width: f["width"].as_u64().unwrap(),
            height: f["height"].as_u64().unwrap(),
        })
        .collect();
    frames.sort_by(|a, b| a.pts_ms.total_cmp(&b.pts_ms));
    frames
}

/// The container's streams and format, as ffprobe lists them.
pub fn streams(path: &Path) -> Value {
    ffprobe(path, &["-show_streams", "-show_format"])
}

/// The first audio stream's sound as 16 kHz mono samples from the file's time 0.
pub fn decoded_audio(path: &Path) -> Vec<i16> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args([
            "-map", "0:a:0", "-ac", "1", "-ar", "16000", "-f", "s16le", "-",
        ])
        .output()
        .expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Polls an export job until it is done (or failed or cancelled); returns its JSON.
pub async fn wait_for_export(server: &TestServer, url: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PATIENCE * 4;
    loop {
        let job = server.get_json(url).await;
        if ["done", "failed", "cancelled"].contains(&job["status"].as_str().unwrap_or("")) {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "export {url} did not end: {job}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// POSTs an export request; returns the status and the job.
pub async fn post_export(server: &TestServer, recording: &str, spec: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.url(&format!("/api/recordings/{recording}/exports")))
        .json(&spec)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("a JSON body"))
}

/// Downloads a finished job's MP4 into `folder`; returns its path.
pub async fn download_export(
    server: &TestServer,
    job: &Value,
    folder: &Path,
) -> std::path::PathBuf {
    let url = job["download_url"]
        .as_str()
        .expect("a done job has a download_url");
    let response = server.get(url).await;
    assert_eq!(response.status(), 200, "GET {url}");
    let path = folder.join(format!("{}.mp4", job["id"].as_str().unwrap()));
    std::fs::write(&path, response.bytes().await.unwrap()).unwrap();
    path
}
