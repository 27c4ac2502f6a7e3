//! Disk faults and crashes: a slow disk makes senders wait within the memory budget, a low
//! disk refuses new frames and recovers by itself, write errors cost one frame and nothing
//! else, and `kill -9` mid-stream loses nothing saved and corrupts nothing.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use async_trait::async_trait;
use recall_frames::frame::{Frame, ParticipantEvent};
use recall_frames::sink::{FrameSink, SinkError, StreamWriter, WriteOutcome};
use serde_json::json;

const ALICE_WEBCAM: &str = "rec_9f1c2a/100-alice-smith/webcam";
const MIB: usize = 1024 * 1024;

/// A disk that takes `delay` for every frame, in front of the real recorder.
struct SlowSink {
    inner: recall_frames::recorder::Recorder,
    delay: Duration,
}

struct SlowWriter {
    inner: Box<dyn StreamWriter>,
    delay: Duration,
}

#[async_trait]
impl FrameSink for SlowSink {
    async fn open_stream(&self, first: &Frame) -> Result<Box<dyn StreamWriter>, SinkError> {
        Ok(Box::new(SlowWriter {
            inner: self.inner.open_stream(first).await?,
            delay: self.delay,
        }))
    }

    async fn record_event(&self, event: &ParticipantEvent) -> Result<(), SinkError> {
        tokio::time::sleep(self.delay).await;
        self.inner.record_event(event).await
    }

    async fn flush(&self) -> Result<(), SinkError> {
        self.inner.flush().await
    }
}

#[async_trait]
impl StreamWriter for SlowWriter {
    async fn write(&mut self, frame: &Frame) -> Result<WriteOutcome, SinkError> {
        tokio::time::sleep(self.delay).await;
        self.inner.write(frame).await
    }

    async fn close(self: Box<Self>) -> Result<(), SinkError> {
        self.inner.close().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_disk_makes_senders_wait_within_the_memory_budget() {
    let data = tempfile::tempdir().unwrap();
    let budget = MIB;
    let queue = 4;
    let mut server = TestServer::start_with_sink(
        data.path(),
        &[
            "--buffer-bytes",
            &budget.to_string(),
            "--stream-queue-frames",
            &queue.to_string(),
        ],
        |fs| {
            Arc::new(SlowSink {
                inner: fs,
                delay: Duration::from_millis(15),
            })
        },
    )
    .await;
    // Three bots, two streams each, pushing noisy (incompressible) 300x200 frames of about
    // 180 KB as fast as the server reads them: far more than the budget.
    let frames: Vec<Vec<TestFrame>> = (0..3u64)
        .map(|b| {
            (0..30u32)
                .map(|i| {
                    noise_frame(
                        b + 1,
                        if i % 2 == 0 { "webcam" } else { "screenshare" },
                        f64::from(i) * 0.5,
                        (300, 200),
                        b as u32 * 1000 + i,
                    )
                })
                .collect()
        })
        .collect();
    let total: usize = frames.iter().flatten().map(|f| f.png.len()).sum();
    assert!(total > 10 * budget, "the bots push {total} bytes");

    let url = server.ws_url(WS_TOKEN);
    let senders = frames.clone().into_iter().map(|frames| {
        let url = url.clone();
        tokio::spawn(async move {
            let mut bot = Bot::connect(&url).await;
            for frame in &frames {
                bot.send_frame(frame).await;
            }
            bot.close().await;
        })
    });
    let senders: Vec<_> = senders.collect();

    // Watch /metrics while they push.
    let (mut peak_bytes, mut peak_frames, mut samples) = (0.0f64, 0.0f64, 0);
    while !senders.iter().all(|s| s.is_finished()) && samples < 2000 {
        let metrics = server.metrics().await;
        peak_bytes = peak_bytes.max(metric_value(&metrics, "recall_frames_buffered_bytes"));
        peak_frames = peak_frames.max(metric_value(&metrics, "recall_frames_frames_queued"));
        samples += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for sender in senders {
        sender.await.unwrap();
    }
    eventually("the budget is all given back", || async {
        server.metric("recall_frames_buffered_bytes").await == 0.0
    })
    .await;
    server.stop().await.unwrap();

    eprintln!(
        "peak {peak_bytes} bytes and {peak_frames} frames queued over {samples} samples, \
         budget {budget}, {total} bytes pushed"
    );
    assert!(
        peak_bytes <= budget as f64,
        "queued {peak_bytes} bytes, over the {budget} budget"
    );
    // Near the budget: the queues were full and the senders waited on the disk.
    assert!(
        peak_bytes >= budget as f64 / 2.0,
        "the budget never filled (peak {peak_bytes} bytes in {samples} samples)"
    );
    assert!(
        peak_frames <= (6 * queue) as f64,
        "{peak_frames} frames queued"
    );
    // Every frame landed, byte for byte.
    for (b, frames) in frames.iter().enumerate() {
        for frame in frames {
            server.assert_saved(&(b + 1).to_string(), frame);
        }
    }
}

/// A frame of participant `participant` (no name) whose PNG is noise.
fn noise_frame(
    participant: u64,
    kind: &'static str,
    relative: f64,
    (width, height): (u32, u32),
    seed: u32,
) -> TestFrame {
    TestFrame {
        participant,
        name: None,
        kind,
        relative,
        png: noise_png(width, height, seed),
        ..TestFrame::new(relative)
    }
}

/// A PNG of noise: its size does not shrink with compression. Cut from one buffer of
/// pseudo-random bytes made once, at an offset that depends on `seed`.
fn noise_png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    static NOISE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let noise = NOISE.get_or_init(|| {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..1 << 20)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    });
    let len = (width * height * 3) as usize;
    let start = (seed as usize).wrapping_mul(7919) % (noise.len() - len);
    let image = image::RgbImage::from_raw(width, height, noise[start..start + len].to_vec())
        .expect("enough bytes");
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

async fn health(server: &TestServer) -> (u16, serde_json::Value) {
    let response = reqwest::get(server.url("/healthz")).await.unwrap();
    (
        response.status().as_u16(),
        response.json().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn below_the_watermark_frames_are_refused_and_health_says_degraded() {
    let data = tempfile::tempdir().unwrap();
    // Saved before the disk ran low.
    let mut server = TestServer::start_in(data.path(), &[]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    bot.close().await;
    server.stop().await.unwrap();
    let before = tree(data.path());
    let saved = std::fs::read(data.path().join(ALICE_WEBCAM).join("000001000.png")).unwrap();

    // A watermark above the real free space: the disk is "low" from the start.
    let server =
        TestServer::start_in(data.path(), &["--min-free-bytes", &u64::MAX.to_string()]).await;
    let (status, body) = health(&server).await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "degraded");
    assert!(body["reason"].as_str().unwrap().contains("MIN_FREE_BYTES"));
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(2.0)).await;
    let reply = bot.next_json().await;
    assert_eq!(reply["error"]["reason"], "storage_low");
    assert_eq!(
        server
            .metric("recall_frames_messages_refused_total{reason=\"storage_low\"}")
            .await,
        1.0
    );
    assert_eq!(server.metric("recall_frames_disk_low").await, 1.0);
    assert!(server.metric("recall_frames_disk_free_bytes").await > 0.0);
    assert_eq!(tree(data.path()), before, "nothing saved is touched");
    assert_eq!(
        std::fs::read(data.path().join(ALICE_WEBCAM).join("000001000.png")).unwrap(),
        saved
    );
}

/// Runs `test` on a current-thread runtime in a thread that has mounted a small tmpfs of
/// its own (see [`SmallDisk`]); skips it, visibly, where this process may not mount one.
fn on_small_disk<F, Fut>(bytes: u64, test: F)
where
    F: FnOnce(SmallDisk) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let disk = match SmallDisk::mount(bytes) {
        Ok(disk) => disk,
        Err(why) => {
            skip_unless_ci(&why, "CI runs the tests as root");
            return;
        }
    };
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(test(disk));
}

#[test]
fn recording_stops_below_the_watermark_and_resumes_by_itself() {
    on_small_disk(8 * MIB as u64, |disk| async move {
        let data = disk.path.join("frames");
        let args = [
            "--min-free-bytes",
            "4194304",
            "--disk-check-interval",
            "50ms",
        ];
        let mut server = TestServer::start_in(&data, &args).await;
        let mut bot = server.connect().await;
        bot.send_frame(&TestFrame::new(1.0)).await;
        wait_for_file(&data.join(ALICE_WEBCAM).join("000001000.png")).await;

        let ballast = disk.fill(3 * MIB as u64);
        eventually("health reports degraded", || async {
            health(&server).await.0 == 503
        })
        .await;
        assert_eq!(health(&server).await.1["status"], "degraded");
        bot.send_frame(&TestFrame::new(2.0)).await;
        assert_eq!(bot.next_json().await["error"]["reason"], "storage_low");

        std::fs::remove_file(&ballast).unwrap();
        eventually("health recovers", || async {
            health(&server).await.0 == 200
        })
        .await;
        // The same connection records again.
        bot.send_frame(&TestFrame::new(3.0)).await;
        bot.close().await;
        server.stop().await.unwrap();
        assert_eq!(
            listed_files(&data.join(ALICE_WEBCAM)),
            ["000001000.png", "000003000.png"]
        );
    });
}

/// Temporary files anywhere below `root`.
fn temp_files(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.to_string_lossy().ends_with(".tmp") {
                found.push(path);
            }
        }
    }
    found
}

#[test]
fn a_full_disk_costs_the_frames_it_refuses_and_nothing_else() {
    on_small_disk(4 * MIB as u64, |disk| async move {
        let data = disk.path.join("frames");
        // The watermark off: the writes themselves hit ENOSPC.
        let mut server = TestServer::start_in(&data, &["--min-free-bytes", "0"]).await;
        let mut bot = server.connect().await;
        let big = |t: f64| TestFrame::new(t).png(noise_png(300, 200, (t * 10.0) as u32));
        bot.send_frame(&big(1.0)).await;
        wait_for_file(&data.join(ALICE_WEBCAM).join("000001000.png")).await;

        let ballast = disk.fill(16 * 1024);
        for t in [2.0, 3.0, 4.0] {
            bot.send_frame(&big(t)).await;
        }
        eventually("the three failed writes are counted", || async {
            server.metric("recall_frames_sink_errors_total").await == 3.0
        })
        .await;
        assert_eq!(
            temp_files(&data),
            Vec::<PathBuf>::new(),
            "no temporary file left"
        );
        assert_eq!(server.metric("recall_frames_connections_open").await, 1.0);

        std::fs::remove_file(&ballast).unwrap();
        bot.send_frame(&big(5.0)).await;
        bot.send_frame(&TestFrame::new(6.0).participant(200, None))
            .await;
        bot.close().await;
        server.stop().await.unwrap();

        let dir = data.join(ALICE_WEBCAM);
        assert_eq!(
            std::fs::read(dir.join("000001000.png")).unwrap(),
            big(1.0).png
        );
        assert_eq!(
            std::fs::read(dir.join("000005000.png")).unwrap(),
            big(5.0).png
        );
        for t in ["000002000.png", "000003000.png", "000004000.png"] {
            assert!(!dir.join(t).exists(), "{t} was refused by the disk");
        }
        assert_eq!(listed_files(&dir), ["000001000.png", "000005000.png"]);
        assert!(
            server
                .stream_dir(RECORDING, "200", "webcam")
                .join("000006000.png")
                .exists()
        );
        assert_eq!(temp_files(&data), Vec::<PathBuf>::new());
    });
}

#[tokio::test]
async fn a_write_error_is_logged_with_its_path_and_the_stream_goes_on_once_cleared() {
    let logs = LogCapture::start();
    let mut server = TestServer::start().await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    let dir = server.data_dir.join(ALICE_WEBCAM);
    wait_for_file(&dir.join("000001000.png")).await;

    // The stream's folder is moved away and a regular file put in its place: root cannot
    // write through that (ENOTDIR).
    let aside = server.data_dir.join("webcam-aside");
    std::fs::rename(&dir, &aside).unwrap();
    std::fs::write(&dir, b"not a folder").unwrap();
    bot.send_frame(&TestFrame::new(2.0)).await;
    bot.send_frame(&TestFrame::new(3.0)).await;
    eventually("both failures are counted", || async {
        server.metric("recall_frames_sink_errors_total").await >= 2.0
    })
    .await;
    let text = logs.text();
    assert!(
        text.contains("frame not saved") && text.contains(&dir.display().to_string()),
        "the error names the path:\n{text}"
    );

    // Cleared: the folder is back, and the same stream on the same connection goes on.
    std::fs::remove_file(&dir).unwrap();
    std::fs::rename(&aside, &dir).unwrap();
    bot.send_frame(&TestFrame::new(4.0)).await;
    wait_for_file(&dir.join("000004000.png")).await;
    bot.close().await;
    server.stop().await.unwrap();
    assert_eq!(listed_files(&dir), ["000001000.png", "000004000.png"]);
    assert_eq!(temp_files(&server.data_dir), Vec::<PathBuf>::new());
}

#[tokio::test]
async fn a_torn_manifest_line_and_leftover_temporary_files_are_repaired_on_open() {
    let data = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(data.path(), &[]).await;
    let mut bot = server.connect().await;
    for t in [1.0, 2.0] {
        bot.send_frame(&TestFrame::new(t)).await;
    }
    bot.close().await;
    server.stop().await.unwrap();

    // What a crash can leave: a torn last line, a frame without its line, and temporary
    // files of atomic writes in the stream, participant and recording folders.
    let dir = data.path().join(ALICE_WEBCAM);
    let manifest = dir.join("frames.jsonl");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(r#"{"file":"000002500.png","relative":2.5,"abso"#);
    std::fs::write(&manifest, text).unwrap();
    std::fs::write(dir.join("000002500.png"), &TestFrame::new(2.5).png).unwrap();
    let leftovers = [
        dir.join(".1a2b3c4d-Xy12.tmp"),
        data.path().join("rec_9f1c2a/100-alice-smith/.Ab34cd.tmp"),
        data.path().join("rec_9f1c2a/.Zz99yy.tmp"),
    ];
    for leftover in &leftovers {
        std::fs::write(leftover, b"\x89PNG half a fr").unwrap();
    }

    let mut server = TestServer::start_in(data.path(), &[]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(3.0)).await;
    bot.close().await;
    server.stop().await.unwrap();

    for leftover in &leftovers {
        assert!(!leftover.exists(), "{} removed", leftover.display());
    }
    let lines = read_jsonl(&manifest); // every line parses
    let files: Vec<_> = lines.iter().map(|l| l["file"].clone()).collect();
    assert_eq!(
        files,
        [
            json!("000001000.png"),
            json!("000002000.png"),
            json!("000002500.png"),
            json!("000003000.png")
        ]
    );
    assert_eq!(lines[2]["recovered"], true);
    assert_eq!(lines[2]["absolute"], json!(null));
}

/// Every check a crash must pass: each PNG decodes whole, each manifest line is JSON and
/// names an existing file once, each frame file has a line, no temporary file is left, and
/// each saved frame holds the first bytes ever sent for its time.
fn check_recording(root: &Path, sent: &HashMap<(u64, &'static str, u64), Vec<u8>>) -> usize {
    assert_eq!(
        temp_files(root),
        Vec::<PathBuf>::new(),
        "temporary files left"
    );
    let mut frames = 0;
    for participant in [1u64, 2] {
        for kind in ["webcam", "screenshare"] {
            let dir = root
                .join(RECORDING)
                .join(participant.to_string())
                .join(kind);
            if !dir.exists() {
                continue;
            }
            let listed = listed_files(&dir);
            let unique: HashSet<_> = listed.iter().collect();
            assert_eq!(
                unique.len(),
                listed.len(),
                "a frame listed twice in {}",
                dir.display()
            );
            let mut on_disk = HashSet::new();
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                if let Some(ms) = name.strip_suffix(".png") {
                    let bytes = std::fs::read(dir.join(&name)).unwrap();
                    image::load_from_memory(&bytes)
                        .unwrap_or_else(|e| panic!("{name} does not decode: {e}"));
                    let ms: u64 = ms.parse().unwrap();
                    assert_eq!(
                        Some(&bytes),
                        sent.get(&(participant, kind, ms)),
                        "{} holds what was first sent",
                        dir.join(&name).display()
                    );
                    on_disk.insert(name);
                }
            }
            assert_eq!(
                on_disk,
                listed.iter().cloned().collect::<HashSet<_>>(),
                "manifest and files agree in {}",
                dir.display()
            );
            frames += on_disk.len();
        }
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_restart_loses_and_corrupts_nothing() {
    let data = tempfile::tempdir().unwrap();
    let env = [("WS_TOKEN", WS_TOKEN), ("RUST_LOG", "info")];
    let mut binary = BinaryServer::spawn(data.path(), &env, &[]);
    let frame = |participant: u64, kind: &'static str, i: u32| {
        let seed = participant as u32 * 100_000 + i * 2 + u32::from(kind == "webcam");
        noise_frame(participant, kind, f64::from(i) * 0.5, (160, 90), seed)
    };
    const PER_STREAM: u32 = 120;
    let streams = [(1u64, "webcam"), (1, "screenshare"), (2, "webcam")];
    let mut sent = HashMap::new();
    let mut events: Vec<Vec<String>> = Vec::new();
    for (p, k) in streams {
        let frames: Vec<TestFrame> = (0..PER_STREAM).map(|i| frame(p, k, i)).collect();
        for (i, f) in frames.iter().enumerate() {
            sent.insert((p, k, i as u64 * 500), f.png.clone());
        }
        events.push(frames.iter().map(TestFrame::event).collect());
    }
    // Bots push as fast as the server reads until the process dies under them.
    let url = binary.ws_url(WS_TOKEN);
    let pushers: Vec<_> = events
        .into_iter()
        .map(|events| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut bot = Bot::connect(&url).await;
                for event in events {
                    let message = tokio_tungstenite::tungstenite::Message::text(event);
                    let sent = tokio::time::timeout(
                        PATIENCE,
                        futures_util::SinkExt::send(&mut bot.ws, message),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
            })
        })
        .collect();
    let pngs = |root: &Path| tree(root).iter().filter(|p| p.ends_with(".png")).count();
    let stream_dir = |p: u64, k: &str| data.path().join(RECORDING).join(p.to_string()).join(k);
    eventually("every stream is saving frames", || async {
        streams.iter().all(|&(p, k)| {
            std::fs::read_dir(stream_dir(p, k)).is_ok_and(|entries| entries.count() > 20)
        })
    })
    .await;
    binary.kill9();
    for pusher in pushers {
        pusher.await.unwrap();
    }
    let saved_at_kill = pngs(data.path());
    eprintln!(
        "{saved_at_kill} of {} frames saved at the kill",
        3 * PER_STREAM
    );
    assert!(
        saved_at_kill < 3 * PER_STREAM as usize,
        "the kill came mid-stream"
    );
    eprintln!(
        "{:?}",
        tree(data.path())
            .iter()
            .filter(|p| !p.ends_with(".png"))
            .collect::<Vec<_>>()
    );

    // Restart on the same DATA_DIR and carry on every stream, with one repeat each (other
    // bytes, same time) that must not overwrite.
    let mut binary = BinaryServer::spawn(data.path(), &env, &[]);
    let mut bot = Bot::connect(&binary.ws_url(WS_TOKEN)).await;
    for (p, k) in streams {
        let dir = data.path().join(RECORDING).join(p.to_string()).join(k);
        let saved = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| {
                e.unwrap()
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_suffix(".png")?
                    .parse::<u32>()
                    .ok()
            })
            .min()
            .expect("each stream saved frames before the kill");
        let repeat = frame(p, k, saved / 500).png(noise_png(160, 90, 7));
        bot.send_frame(&repeat).await;
        let next = frame(p, k, 1000);
        sent.insert((p, k, 500_000), next.png.clone());
        bot.send_frame(&next).await;
    }
    bot.close().await;
    assert!(binary.terminate(), "clean shutdown after the restart");
    let output = binary.output();

    let frames = check_recording(data.path(), &sent);

    assert!(
        frames >= saved_at_kill + 3,
        "{frames} frames after, {saved_at_kill} at the kill"
    );
    for (p, k) in streams {
        let dir = data.path().join(RECORDING).join(p.to_string()).join(k);
        assert!(
            dir.join("000500000.png").exists(),
            "{} continues",
            dir.display()
        );
    }
    assert!(!output.contains("panicked"), "{output}");
}
