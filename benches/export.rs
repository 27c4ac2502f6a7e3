//! The export benchmark: `cargo bench --bench export`.
//!
//! Starts the server in this process (release build) on 127.0.0.1 with a temporary
//! DATA_DIR, records a one-hour webcam stream into it through the websocket as a bot would
//! (7,200 frames at 640x360, 2 fps, camera-like PNGs of about 330 KB from the simulator's
//! renderer, and the participant's voice the whole hour in 1 s chunks), then exports it
//! through the API and reports the time the job took and the CPU its ffmpegs used, checked
//! with ffprobe (frames and their times). `--minutes` shortens the stream; `--threads` is
//! EXPORT_THREADS.
//!
//! Then the gallery: `--people` participants (8) with their webcams on for the same hour
//! (the last one leaves halfway) and the first sharing a screen for the middle third,
//! written straight into the saved layout (docs/layout.md) with each frame a hard link to
//! one of a ring of camera-like PNGs, so that an hour of eight people (57,600 frames, 19 GB
//! as files) takes no room; exported as one gallery MP4 through the API and timed.

use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use clap::Parser;
use futures_util::SinkExt as _;
use recall_frames::Config;
use recall_frames::frame::{ParticipantId, Resource, StreamKind};
use recall_frames::simulate::picture::{Look, render};
use recall_frames::simulate::voice::voice;
use recall_frames::simulate::wire::{
    BotResources, EncodedPng, WireParticipant, audio_event, frame_event,
};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

#[derive(Parser)]
struct Options {
    /// Minutes of meeting the stream holds (2 frames a second).
    #[arg(long, default_value_t = 60)]
    minutes: u64,
    /// EXPORT_THREADS for the run.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Participants of the gallery (0: no gallery).
    #[arg(long, default_value_t = 8)]
    people: u64,
    /// Skip the single stream.
    #[arg(long)]
    no_stream: bool,
    /// Different frames rendered and sent in turn.
    #[arg(long, default_value_t = 24)]
    ring: u64,
    // `cargo bench` passes --bench.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    if options.people > 0 {
        eprintln!(
            "writing a {}-min gallery of {} people...",
            options.minutes, options.people
        );
        write_gallery(data.path(), &options)?;
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let threads = options.threads.to_string();
    let config = Config::from_args([
        "--data-dir",
        data.path().to_str().context("a UTF-8 temporary path")?,
        "--ws-token",
        "bench-token-0123456789",
        "--export-threads",
        &threads,
        "--log",
        "warn",
    ])?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(recall_frames::run(config, listener, async move {
        let _ = stopped.await;
    }));
    let base = format!("http://{addr}");
    let frames = options.minutes * 60 * 2;
    println!("| | |\n|---|---|");
    if !options.no_stream {
        stream(&options, addr, data.path()).await?;
    }
    if options.people > 0 {
        let client = reqwest::Client::new();
        let started = Instant::now();
        let job = export(&client, &base, "rec_gallery", json!({"gallery": true})).await?;
        let exported = started.elapsed();
        ensure!(job["status"] == "done", "the gallery export ended {job}");
        println!(
            "| gallery: {} people, {} min (EXPORT_THREADS={}) took | **{:.1} s** ({} pictures at 1280x720, {:.1} MB) |",
            options.people,
            options.minutes,
            options.threads,
            exported.as_secs_f64(),
            job["frames"],
            job["bytes"].as_f64().unwrap_or(0.0) / 1e6
        );
        ensure!(job["frames"].as_u64() == Some(frames), "{job}");
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// Starts an export and waits for its end: the job.
async fn export(
    client: &reqwest::Client,
    base: &str,
    recording: &str,
    spec: Value,
) -> anyhow::Result<Value> {
    let job: Value = client
        .post(format!("{base}/api/recordings/{recording}/exports"))
        .json(&spec)
        .send()
        .await?
        .json()
        .await?;
    let url = format!("{base}{}", job["url"].as_str().context("a job url")?);
    loop {
        let job: Value = client.get(&url).send().await?.json().await?;
        if job["status"] != "queued" && job["status"] != "running" {
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Writes the gallery recording `rec_gallery` as the recorder would, with hard links.
fn write_gallery(data: &std::path::Path, options: &Options) -> anyhow::Result<()> {
    let frames = options.minutes * 60 * 2;
    let ring_dir = data.join(".ring");
    std::fs::create_dir_all(&ring_dir)?;
    let recording = data.join("rec_gallery");
    let start = jiff::Timestamp::now();
    for person in 0..options.people {
        let id = 100 + person;
        let name = format!("Person {}", person + 1);
        let folder = recording.join(format!("{id}-person-{}", person + 1));
        std::fs::create_dir_all(&folder)?;
        let participant = json!({"id": id, "name": name, "is_host": person == 0, "platform": "desktop", "email": null, "extra_data": {}});
        std::fs::write(folder.join("participant.json"), participant.to_string())?;
        let mut kinds = vec![(
            StreamKind::Webcam,
            0,
            if person + 1 == options.people {
                frames / 2
            } else {
                frames
            },
        )];
        if person == 0 {
            kinds.push((StreamKind::Screenshare, frames / 3, frames * 2 / 3));
        }
        for (kind, first, end) in kinds {
            let look = Look {
                name: name.clone(),
                kind,
                width: 640,
                height: 360,
                seed: id,
            };
            let ring: Vec<(std::path::PathBuf, u64)> = (0..options.ring)
                .map(|n| {
                    let png = render(&look, n, &format!("{name} {n}"));
                    let path = ring_dir.join(format!("{id}-{kind}-{n}.png"));
                    std::fs::write(&path, &png)?;
                    Ok((path, png.len() as u64))
                })
                .collect::<anyhow::Result<_>>()?;
            let dir = folder.join(kind.as_str());
            std::fs::create_dir_all(&dir)?;
            let mut manifest = String::new();
            for n in first..end {
                let ms = n * 500;
                let (source, bytes) = &ring[(n % options.ring) as usize];
                let file = recall_frames::layout::frame_file_name(ms);
                std::fs::hard_link(source, dir.join(&file))?;
                let at = start + jiff::SignedDuration::from_millis(ms as i64);
                let line = json!({"file": file, "relative": ms as f64 / 1000.0, "absolute": at, "width": 640, "height": 360, "bytes": bytes, "received_at": at});
                manifest.push_str(&line.to_string());
                manifest.push('\n');
            }
            std::fs::write(dir.join("frames.jsonl"), manifest)?;
        }
    }
    Ok(())
}

/// The single stream: recorded through the websocket, exported, checked.
async fn stream(
    options: &Options,
    addr: std::net::SocketAddr,
    data: &std::path::Path,
) -> anyhow::Result<()> {
    let base = format!("http://{addr}");
    let frames = options.minutes * 60 * 2;

    // Record: frames and the voice, as a bot sends them.
    let started = Instant::now();
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/ws?token=bench-token-0123456789"))
            .await?;
    let resource = |id: &str| Resource {
        id: json!(id),
        metadata: json!({}),
    };
    let resources = BotResources {
        recording: resource("rec_bench"),
        bot: resource("bot_bench"),
        realtime_endpoint: resource("re_bench"),
        video_separate: resource("vs_bench"),
        participant_events: resource("pe_bench"),
        audio_separate: resource("as_bench"),
    };
    let alice = WireParticipant {
        id: ParticipantId(100),
        name: Some("Alice Smith".into()),
        is_host: true,
        platform: Some("desktop".into()),
        extra_data: json!({}),
        email: None,
    };
    let look = Look {
        name: "Alice Smith".into(),
        kind: StreamKind::Webcam,
        width: 640,
        height: 360,
        seed: 7,
    };
    let ring: Vec<EncodedPng> = (0..options.ring)
        .map(|n| EncodedPng::new(render(&look, n, &format!("frame {n}"))))
        .collect();
    let png_bytes: usize = ring.iter().map(|p| p.png.len()).sum::<usize>() / ring.len();
    let meeting_start = jiff::Timestamp::now();
    for n in 0..frames {
        let png = &ring[(n % options.ring) as usize];
        let event = frame_event(
            &resources,
            &alice,
            StreamKind::Webcam,
            meeting_start,
            n * 500,
            png,
        );
        socket.send(Message::text(event)).await?;
        if n % 2 == 0 {
            let second = n / 2;
            let samples = voice(0, second * 16_000, 16_000);
            let event = audio_event(&resources, &alice, meeting_start, second * 16_000, &samples);
            socket.send(Message::text(event)).await?;
        }
    }
    socket.close(None).await?;
    let client = reqwest::Client::new();
    let stream = format!("{base}/api/recordings/rec_bench/100/webcam");
    loop {
        let page: Value = client
            .get(format!("{stream}/frames?limit=1"))
            .send()
            .await?
            .json()
            .await?;
        if page["total"].as_u64() == Some(frames) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let recorded = started.elapsed();

    // Export.
    let started = Instant::now();
    let cpu = children_cpu()?;
    let job = export(&client, &base, "rec_bench", json!({"participant": 100})).await?;
    let exported = started.elapsed();
    let cpu = children_cpu()? - cpu;
    ensure!(job["status"] == "done", "the export ended {job}");
    let download = format!(
        "{base}{}",
        job["download_url"].as_str().context("a download url")?
    );
    let mp4 = client.get(&download).send().await?.bytes().await?;
    let file = data.join("bench.mp4");
    std::fs::write(&file, &mp4)?;
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()?;
    let times: Vec<f64> = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    let off = times
        .iter()
        .enumerate()
        .map(|(i, t)| (t * 1000.0 - i as f64 * 500.0).abs())
        .fold(0.0, f64::max);
    println!(
        "| stream | {} min, {frames} frames at 640x360 (PNG {} KB on average), voice all along |",
        options.minutes,
        png_bytes / 1000
    );
    println!(
        "| recorded through the websocket in | {:.1} s |",
        recorded.as_secs_f64()
    );
    println!(
        "| export (EXPORT_THREADS={}) took | **{:.1} s** ({:.0} frames/s; ffmpeg used {cpu:.1} CPU-s) |",
        options.threads,
        exported.as_secs_f64(),
        frames as f64 / exported.as_secs_f64()
    );
    println!(
        "| MP4 | {:.1} MB, {} frames, largest presentation-time error {off:.1} ms |",
        mp4.len() as f64 / 1e6,
        times.len()
    );
    ensure!(
        times.len() as u64 == frames,
        "ffprobe counted {} frames",
        times.len()
    );
    Ok(())
}

/// CPU seconds (user and system) of this process's children that have ended: the ffmpegs
/// the server ran, whatever else the shared machine was doing meanwhile.
fn children_cpu() -> anyhow::Result<f64> {
    let stat = procfs::process::Process::myself()?.stat()?;
    Ok((stat.cutime + stat.cstime) as f64 / procfs::ticks_per_second() as f64)
}
