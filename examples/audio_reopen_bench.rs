//! What reopening a long audio track costs: a track is let go after 10 minutes of quiet and
//! at a restart, and its next chunk waits while the whole `audio.jsonl` (about 50 lines per
//! second of audio) is read back. Records a track of `SECONDS` (default 3600) with the
//! simulator (20 ms chunks, the server in this process on 127.0.0.1), restarts the server,
//! then sends one chunk just past the track's end and one more: the first one's
//! receipt-to-saved time includes the reopening, the second's does not.
//!
//! ```sh
//! cargo run --release --example audio_reopen_bench [SECONDS]
//! ```

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::SinkExt as _;
use recall_frames::Config;
use recall_frames::simulate::{Output, SimulateArgs, Simulation};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "audio-reopen-bench-0123456789";

struct Server {
    port: u16,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Server {
    async fn start(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let config = Config::from_args([
            "--data-dir",
            &data_dir.display().to_string(),
            "--ws-token",
            TOKEN,
        ])?;
        let stop = CancellationToken::new();
        let shutdown = stop.clone().cancelled_owned();
        let task = tokio::spawn(recall_frames::run(config, listener, shutdown));
        Ok(Server { port, stop, task })
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws?token={TOKEN}", self.port)
    }

    /// The audio chunks saved so far, and the seconds their receipt-to-saved times sum to.
    async fn audio_saved(&self) -> anyhow::Result<(f64, f64)> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.port))
            .await?
            .text()
            .await?;
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok((
            value("recall_frames_audio_chunks_saved_total "),
            value("recall_frames_audio_save_seconds_sum "),
        ))
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}

/// Participant 100's (the simulator's first, Alice Smith) chunk of 320 samples at `sample`.
fn chunk(recording: &str, sample: u64) -> String {
    let pcm: Vec<u8> = (0..320i16).flat_map(|s| (s * 7).to_le_bytes()).collect();
    serde_json::json!({
        "event": "audio_separate_raw.data",
        "data": {
            "data": {
                "buffer": base64::engine::general_purpose::STANDARD.encode(pcm),
                "timestamp": {"relative": sample as f64 / 16_000.0, "absolute": null},
                "participant": {"id": 100, "name": "Alice Smith", "is_host": true,
                                "platform": "desktop", "extra_data": {}},
            },
            "realtime_endpoint": {"id": "re", "metadata": {}},
            "audio_separate": {"id": "as", "metadata": {}},
            "recording": {"id": recording, "metadata": {}},
            "bot": null,
        }
    })
    .to_string()
}

/// Sends one chunk at `sample` and returns its receipt-to-saved time.
async fn one_chunk(
    server: &Server,
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    recording: &str,
    sample: u64,
) -> anyhow::Result<Duration> {
    let (count, sum) = server.audio_saved().await?;
    ws.send(tokio_tungstenite::tungstenite::Message::text(chunk(
        recording, sample,
    )))
    .await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (now_count, now_sum) = server.audio_saved().await?;
        if now_count > count {
            return Ok(Duration::from_secs_f64(now_sum - sum));
        }
        anyhow::ensure!(Instant::now() < deadline, "the chunk was never saved");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(3600);
    let data = tempfile::tempdir()?;
    let server = Server::start(data.path()).await?;
    for (recording, length) in [("short", 10), ("long", seconds)] {
        let args = SimulateArgs::from_args([
            server.ws_url().as_str(),
            "--recording",
            recording,
            "--participants",
            "1",
            "--screenshare",
            "0",
            "--fps",
            "max",
            "--frames",
            &(length * 2).to_string(),
            "--size",
            "32x18",
            "--audio",
            "--audio-all",
        ])?;
        let report = Simulation::prepare(args)
            .await?
            .run(Output::Quiet, CancellationToken::new())
            .await?;
        anyhow::ensure!(report.refused() == 0, "refused: {report}");
    }
    server.stop().await?;
    let manifest = data.path().join("long/100-alice-smith/audio/audio.jsonl");
    let text = std::fs::read_to_string(&manifest)?;
    println!(
        "track of {seconds} s: audio.jsonl {} lines, {:.1} MB",
        text.lines().count(),
        text.len() as f64 / 1e6
    );

    let started = Instant::now();
    let server = Server::start(data.path()).await?;
    // Start-up looks over every track (repairing what a crash left); let it finish.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url()).await?;
    for (recording, length) in [("short", 10), ("long", seconds)] {
        let end = length * 16_000;
        let reopening = one_chunk(&server, &mut ws, recording, end).await?;
        let open = one_chunk(&server, &mut ws, recording, end + 320).await?;
        println!(
            "{recording} ({length} s): first chunk after the restart {:.1} ms (reopening), next {:.2} ms",
            reopening.as_secs_f64() * 1e3,
            open.as_secs_f64() * 1e3
        );
    }
    drop(ws);
    server.stop().await?;
    println!("(restart to end: {:.1} s)", started.elapsed().as_secs_f64());
    Ok(())
}
