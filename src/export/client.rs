//! `recall-frames export`: asks a running server for an export, shows its progress, and
//! downloads the result. A client of the server rather than a second exporter on DATA_DIR:
//! the server reads the folder or the bucket, runs exports within EXPORT_CONCURRENCY and
//! EXPORT_THREADS at a lower priority so that a shell cannot starve recording, and keeps
//! results, so asking twice costs one export.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use super::ExportSpec;

/// Exports `spec` of `recording` from the server at `server` into `out`; `token` is the
/// server's API_TOKEN when it has one. Returns the finished job.
pub async fn export(
    server: &str,
    token: Option<&str>,
    recording: &str,
    spec: &ExportSpec,
    out: &Path,
    show_progress: bool,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let server = server.trim_end_matches('/');
    let authorized = |request: reqwest::RequestBuilder| match token {
        Some(token) => request.bearer_auth(token),
        None => request,
    };
    let answer = |response: reqwest::Response| async move {
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let why = body["error"].as_str().unwrap_or("no message").to_owned();
            Err(anyhow::anyhow!("the server answered {status}: {why}"))
        }
    };
    let started = authorized(client.post(format!("{server}/api/recordings/{recording}/exports")))
        .json(spec)
        .send()
        .await
        .with_context(|| format!("cannot reach the server at {server}"))?;
    let mut job = answer(started).await?;
    let url = format!(
        "{server}{}",
        job["url"].as_str().context("the job has no url")?
    );
    let bar = ProgressBar::with_draw_target(
        Some(0),
        if show_progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} frames {percent}% · {msg}")
            .expect("a valid template"),
    );
    loop {
        let status = job["status"].as_str().unwrap_or_default().to_owned();
        bar.set_length(job["frames"].as_u64().unwrap_or(0));
        bar.set_position(job["frames_done"].as_u64().unwrap_or(0));
        bar.set_message(match job["eta_seconds"].as_f64() {
            Some(eta) => format!("{status}, {eta:.0} s left"),
            None => status.clone(),
        });
        match status.as_str() {
            "done" => break,
            "failed" | "cancelled" => {
                bar.abandon();
                anyhow::bail!(
                    "the export {status}: {}",
                    job["error"].as_str().unwrap_or("no reason given")
                );
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        job = answer(authorized(client.get(&url)).send().await?).await?;
    }
    bar.finish();
    let download = format!(
        "{server}{}",
        job["download_url"]
            .as_str()
            .context("a done job has a download_url")?
    );
    let mut response = authorized(client.get(&download)).send().await?;
    anyhow::ensure!(
        response.status().is_success(),
        "downloading {download}: {}",
        response.status()
    );
    // Written beside `out`, then renamed: a cut download never looks like a video.
    let part = out.with_extension("mp4.part");
    let mut file = tokio::fs::File::create(&part)
        .await
        .with_context(|| format!("cannot write {}", part.display()))?;
    while let Some(chunk) = response.chunk().await? {
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    drop(file);
    tokio::fs::rename(&part, out)
        .await
        .with_context(|| format!("cannot write {}", out.display()))?;
    Ok(job)
}
