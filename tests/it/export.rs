//! Exports (issue 14): a stream as an MP4 whose every frame is presented at its own
//! `relative_ms`, with the participant's sound on the same clock, checked with ffprobe; the
//! jobs (kept, redone after new frames, cancelled, interrupted by a restart), the bucket,
//! the 503 without ffmpeg, and the quick looks (the frame at a time, contact sheets, the
//! animated preview).

use serde_json::{Value, json};

use crate::common::s3::S3Server;
use crate::common::*;

const STREAM: &str = "/api/recordings/rec_9f1c2a/100/webcam";

/// Alice's webcam at uneven times, one frame at another resolution, as Recall sends them.
const TIMES: [f64; 6] = [0.5, 1.0, 1.733, 4.734, 4.934, 7.2];

async fn send_stream(server: &TestServer, times: &[f64]) {
    let mut bot = server.connect().await;
    for &t in times {
        let mut frame = TestFrame::new(t);
        if t == 4.734 {
            // A resolution change mid-stream: scaled and padded to the first frame's size.
            frame = frame.png(png(80, 60, 4734));
        }
        bot.send_frame(&frame).await;
    }
    bot.close().await;
}

/// A tone of `n` samples, loud enough to find after AAC.
fn tone(n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| ((i as f64 * 440.0 * std::f64::consts::TAU / 16_000.0).sin() * 12_000.0) as i16)
        .collect()
}

/// The first sample louder than a whisper, in ms.
fn onset_ms(samples: &[i16]) -> f64 {
    let at = samples
        .iter()
        .position(|s| s.unsigned_abs() > 2000)
        .expect("some sound");
    at as f64 / 16.0
}

fn assert_times(frames: &[ProbedFrame], expected_ms: &[f64]) {
    let got: Vec<f64> = frames.iter().map(|f| f.pts_ms).collect();
    assert_eq!(
        got.len(),
        expected_ms.len(),
        "frames {got:?}, expected {expected_ms:?}"
    );
    for (got, want) in got.iter().zip(expected_ms) {
        assert!(
            (got - want).abs() <= 1.0,
            "frame at {got} ms, expected {want} ms: {frames:?}"
        );
    }
}

#[tokio::test]
async fn a_stream_exports_with_every_frame_at_its_relative_ms_and_its_sound_on_the_same_clock() {
    if !need_ffmpeg() {
        return;
    }
    let server = TestServer::start().await;
    send_stream(&server, &TIMES).await;
    let mut bot = server.connect().await;
    // Alice speaks from 1.0 s for half a second, then from 3.0 s for a quarter.
    bot.send_text(TestAudio::new(1.0, tone(8000)).event()).await;
    bot.send_text(TestAudio::new(3.0, tone(4000)).event()).await;
    bot.close().await;
    server.wait_for_frames(STREAM, TIMES.len() as u64).await;
    wait_for_chunks(&server, "/api/recordings/rec_9f1c2a/100/audio", 2).await;

    let (status, job) = post_export(&server, RECORDING, json!({"participant": 100})).await;
    assert_eq!(status, 202, "{job}");
    let job = wait_for_export(&server, job["url"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["frames"], 6);
    assert_eq!(job["percent"], 100.0);
    let folder = tempfile::tempdir().unwrap();
    let video = download_export(&server, &job, folder.path()).await;

    let frames = video_frames(&video);
    assert_times(&frames, &TIMES.map(|t| t * 1000.0));
    assert!(
        frames.iter().all(|f| (f.width, f.height) == (64, 36)),
        "every frame at the first frame's size: {frames:?}"
    );
    let probed = streams(&video);
    let kinds: Vec<&str> = probed["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec_name"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["h264", "aac"]);
    assert_eq!(probed["streams"][0]["pix_fmt"], "yuv420p");
    let audio = &probed["streams"][1];
    let start: f64 = audio["start_time"].as_str().unwrap().parse().unwrap();
    let length: f64 = audio["duration"].as_str().unwrap().parse().unwrap();
    // The sound starts at the video's time 0, the recording's start, and runs to the
    // track's last sample (3.25 s); AAC works in frames of 1024 samples at 48 kHz (21 ms).
    assert!(start.abs() < 0.025, "audio starts at {start}");
    assert!((length - 3.25).abs() < 0.05, "audio lasts {length} s");
    let sound = decoded_audio(&video);
    let onset = onset_ms(&sound);
    assert!(
        (onset - 1000.0).abs() < 15.0,
        "Alice is heard from {onset} ms"
    );
    let second = onset_ms(&sound[(2000 * 16)..]) + 2000.0;
    assert!((second - 3000.0).abs() < 15.0, "and again from {second} ms");

    // The same request again is answered at once with the same result.
    let (status, again) = post_export(&server, RECORDING, json!({"participant": 100})).await;
    assert_eq!(status, 200);
    assert_eq!(
        (&again["id"], &again["status"], &again["file"]),
        (&job["id"], &job["status"], &job["file"])
    );

    // A new frame since: exported again, with it.
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(9.0)).await;
    bot.close().await;
    server.wait_for_frames(STREAM, 7).await;
    let (status, redone) = post_export(&server, RECORDING, json!({"participant": 100})).await;
    assert_eq!(status, 202, "{redone}");
    let redone = wait_for_export(&server, redone["url"].as_str().unwrap()).await;
    assert_eq!(redone["id"], job["id"]);
    assert_ne!(redone["file"], job["file"]);
    let video = download_export(&server, &redone, folder.path()).await;
    assert_eq!(video_frames(&video).len(), 7);
    let listed = server.get_json("/api/recordings/rec_9f1c2a/exports").await;
    assert_eq!(listed["exports"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
async fn a_range_and_shortened_pauses_move_frames_as_documented() {
    if !need_ffmpeg() {
        return;
    }
    let server = TestServer::start().await;
    let times = [1.0, 2.0, 12.0, 12.5, 30.0, 31.0];
    send_stream(&server, &times).await;
    server.wait_for_frames(STREAM, times.len() as u64).await;

    // From 1.5 s to 20 s: the frames at 2, 12 and 12.5 s, at their time less 1.5 s.
    let (_, job) = post_export(
        &server,
        RECORDING,
        json!({"participant": 100, "from": 1.5, "to": 20}),
    )
    .await;
    let job = wait_for_export(&server, job["url"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    let folder = tempfile::tempdir().unwrap();
    let video = download_export(&server, &job, folder.path()).await;
    assert_times(&video_frames(&video), &[500.0, 10_500.0, 11_000.0]);

    // Pauses over 3 s shown as 3 s: 2 → 12 s becomes 2 → 5 s, 12.5 → 30 s becomes
    // 5.5 → 8.5 s.
    let (_, job) = post_export(
        &server,
        RECORDING,
        json!({"participant": 100, "max_pause": 3, "burn_in": true}),
    )
    .await;
    let job = wait_for_export(&server, job["url"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    let video = download_export(&server, &job, folder.path()).await;
    assert_times(
        &video_frames(&video),
        &[1000.0, 2000.0, 5000.0, 5500.0, 8500.0, 9500.0],
    );

    // What cannot be exported says why.
    for (spec, status) in [
        (json!({"participant": 100, "from": 5, "to": 2}), 422),
        (json!({"participant": 100, "stream": "slides"}), 422),
        (json!({"participant": 100, "fps": 2}), 422),
        (json!({"participant": 999}), 404),
        (json!({"participant": 100, "from": 40, "to": 50}), 202),
    ] {
        let (got, body) = post_export(&server, RECORDING, spec.clone()).await;
        assert_eq!(got, status, "{spec}: {body}");
        if got == 202 {
            let job = wait_for_export(&server, body["url"].as_str().unwrap()).await;
            assert_eq!(job["status"], "failed");
            assert_eq!(job["error"], "the range holds no frame");
            assert_eq!(job["download_url"], Value::Null);
        }
    }
}

#[tokio::test]
async fn a_cancelled_job_leaves_nothing_served() {
    if !need_ffmpeg() {
        return;
    }
    let server = TestServer::start().await;
    let times: Vec<f64> = (0..120).map(|i| i as f64 * 0.5).collect();
    send_stream(&server, &times).await;
    server.wait_for_frames(STREAM, times.len() as u64).await;
    let (_, job) = post_export(&server, RECORDING, json!({"participant": 100})).await;
    let url = job["url"].as_str().unwrap().to_owned();
    let response = reqwest::Client::new()
        .delete(server.url(&url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_eq!(server.get(&format!("{url}/file")).await.status(), 404);
    // Whatever ffmpeg had written is gone, and nothing is stored later either.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(server.get_json(&url).await["status"], "cancelled");
    assert_eq!(server.get(&format!("{url}/file")).await.status(), 404);
    let exports = server.data_dir.join(RECORDING).join("exports");
    let mp4s: Vec<String> = std::fs::read_dir(&exports)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".mp4"))
        .collect();
    assert!(mp4s.is_empty(), "{mp4s:?}");

    // A finished export, cancelled, is removed as well.
    let (_, job) = post_export(&server, RECORDING, json!({"participant": 100, "to": 5})).await;
    let job = wait_for_export(&server, job["url"].as_str().unwrap()).await;
    let url = job["url"].as_str().unwrap();
    assert_eq!(
        server
            .get(job["download_url"].as_str().unwrap())
            .await
            .status(),
        200
    );
    reqwest::Client::new()
        .delete(server.url(url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        server
            .get(job["download_url"].as_str().unwrap())
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn a_job_interrupted_by_a_restart_is_reported_failed_and_runs_again_when_asked() {
    if !need_ffmpeg() {
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(data.path(), &["--export-concurrency", "1"]).await;
    let times: Vec<f64> = (0..60).map(|i| i as f64 * 0.5).collect();
    send_stream(&server, &times).await;
    server.wait_for_frames(STREAM, times.len() as u64).await;
    // Two jobs: the second waits for the first's slot, so it is surely not done when the
    // server stops.
    post_export(&server, RECORDING, json!({"participant": 100})).await;
    let (_, queued) = post_export(&server, RECORDING, json!({"participant": 100, "to": 20})).await;
    let url = queued["url"].as_str().unwrap().to_owned();
    server.stop().await.expect("a clean shutdown");

    let server = TestServer::start_in(data.path(), &[]).await;
    let job = server.get_json(&url).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"].as_str().unwrap().contains("interrupted"),
        "{job}"
    );
    assert_eq!(server.get(&format!("{url}/file")).await.status(), 404);
    let (status, job) =
        post_export(&server, RECORDING, json!({"participant": 100, "to": 20})).await;
    assert_eq!(status, 202);
    let job = wait_for_export(&server, job["url"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
}

#[tokio::test]
async fn exports_from_a_bucket_are_stored_beside_the_recording() {
    if !need_ffmpeg() {
        return;
    }
    let s3 = S3Server::start().await;
    let mut args = s3.flags(None);
    args.extend(["--bucket-manifest-interval".into(), "100ms".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start_with(&args).await;
    send_stream(&server, &TIMES).await;
    server.wait_for_frames(STREAM, TIMES.len() as u64).await;
    let (_, job) = post_export(&server, RECORDING, json!({"participant": 100})).await;
    let job = wait_for_export(&server, job["url"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    let folder = tempfile::tempdir().unwrap();
    let video = download_export(&server, &job, folder.path()).await;
    assert_times(&video_frames(&video), &TIMES.map(|t| t * 1000.0));
    let key = format!("{RECORDING}/exports/{}", job["file"].as_str().unwrap());
    assert_eq!(
        s3.get(&key).await.map(|b| b.to_vec()),
        Some(std::fs::read(&video).unwrap()),
        "the bucket holds the export at {key}"
    );
}

#[tokio::test]
async fn without_ffmpeg_exports_answer_503_naming_the_package_and_recording_goes_on() {
    let server = TestServer::start_with(&["--ffmpeg-path", "/nonexistent/ffmpeg"]).await;
    send_stream(&server, &TIMES[..2]).await;
    server.wait_for_frames(STREAM, 2).await;
    let (status, body) = post_export(&server, RECORDING, json!({"participant": 100})).await;
    assert_eq!(status, 503);
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("Debian package `ffmpeg`") && message.contains("FFMPEG_PATH"),
        "{message}"
    );
    assert_eq!(
        server.get(&format!("{STREAM}/preview.webp")).await.status(),
        503
    );
    // The rest works: the frames, the contact sheet, the frame at a time.
    assert_eq!(
        server.get(&format!("{STREAM}/contact.png")).await.status(),
        200
    );
    assert_eq!(
        server
            .get_json(STREAM.trim_end_matches("/100/webcam"))
            .await["frames"],
        2
    );
}

#[tokio::test]
async fn the_frame_at_a_time_is_the_last_at_or_before_it() {
    let server = TestServer::start().await;
    send_stream(&server, &TIMES).await;
    server.wait_for_frames(STREAM, TIMES.len() as u64).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for (t, frame) in [
        ("1.0", "000001000.png"),
        ("4.7", "000001733.png"),
        ("754.2", "000007200.png"),
    ] {
        let response = client
            .get(server.url(&format!("{STREAM}/at?t={t}")))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "t={t}: {}",
            response.status()
        );
        assert_eq!(
            response.headers()["location"],
            format!("{STREAM}/{frame}").as_str(),
            "t={t}"
        );
    }
    // Followed, it is the frame itself.
    let png = server
        .get(&format!("{STREAM}/at?t=1.2"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(png.to_vec(), TestFrame::new(1.0).png);
    assert_eq!(
        server.get(&format!("{STREAM}/at?t=0.2")).await.status(),
        404
    );
    assert_eq!(
        server.get(&format!("{STREAM}/at?t=soon")).await.status(),
        400
    );
}

#[tokio::test]
async fn contact_sheets_have_a_cell_per_frame_asked_for_and_a_preview_animates() {
    let server = TestServer::start().await;
    send_stream(&server, &TIMES).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(2.0).kind("screenshare"))
        .await;
    bot.close().await;
    server.wait_for_frames(STREAM, TIMES.len() as u64).await;
    server
        .wait_for_frames("/api/recordings/rec_9f1c2a/100/screenshare", 1)
        .await;

    let size = |bytes: &[u8]| {
        let image = image::load_from_memory(bytes).expect("a PNG");
        (image.width(), image.height())
    };
    // A stream's: rows of 4 cells of 240x135 with a 20 px strip for the time, 4 px apart.
    let sheet = server.get(&format!("{STREAM}/contact.png?n=6")).await;
    assert_eq!(sheet.headers()["content-type"], "image/png");
    assert_eq!(
        size(&sheet.bytes().await.unwrap()),
        (4 * 240 + 5 * 4, 2 * 155 + 3 * 4)
    );
    // The meeting's: a row per stream, a column per time.
    let sheet = server
        .get("/api/recordings/rec_9f1c2a/contact.png?n=5")
        .await;
    assert_eq!(
        size(&sheet.bytes().await.unwrap()),
        (5 * 240 + 6 * 4, 2 * 155 + 3 * 4)
    );
    assert_eq!(
        server
            .get(&format!("{STREAM}/contact.png?n=0"))
            .await
            .status(),
        400
    );
    assert_eq!(
        server
            .get("/api/recordings/rec_9f1c2a/9/webcam/contact.png")
            .await
            .status(),
        404
    );

    if !need_ffmpeg() {
        return;
    }
    let preview = server.get(&format!("{STREAM}/preview.webp")).await;
    assert_eq!(preview.status(), 200);
    assert_eq!(preview.headers()["content-type"], "image/webp");
    let bytes = preview.bytes().await.unwrap();
    assert_eq!((&bytes[..4], &bytes[8..12]), (&b"RIFF"[..], &b"WEBP"[..]));
    assert!(bytes.windows(4).any(|w| w == b"ANIM"), "an animated WebP");
    assert_eq!(
        bytes.windows(4).filter(|w| *w == b"ANMF").count(),
        TIMES.len(),
        "a frame per saved frame, up to 30"
    );
}

#[tokio::test]
async fn the_export_command_writes_the_mp4_a_running_server_made() {
    if !need_ffmpeg() {
        return;
    }
    let server = TestServer::start_with(&["--api-token", "export-token-0123456789"]).await;
    send_stream(&server, &TIMES).await;
    let frames = server.url(&format!("{STREAM}/frames?limit=1"));
    eventually("the frames are saved", || async {
        let client = reqwest::Client::new();
        let response = client
            .get(&frames)
            .bearer_auth("export-token-0123456789")
            .send()
            .await
            .unwrap();
        response
            .json::<Value>()
            .await
            .is_ok_and(|page| page["total"] == TIMES.len())
    })
    .await;
    let folder = tempfile::tempdir().unwrap();
    let out = folder.path().join("alice.mp4");
    let server_url = server.url("");
    let output = recall_frames(
        &[("API_TOKEN", "export-token-0123456789")],
        &[
            "export",
            RECORDING,
            "--participant",
            "100",
            "--from",
            "1",
            "-o",
            out.to_str().unwrap(),
            "--server",
            &server_url,
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("alice.mp4 written (5 frames)"), "{stderr}");
    assert_times(&video_frames(&out), &[0.0, 733.0, 3734.0, 3934.0, 6200.0]);

    // A recording that is not there: a clear error, no file.
    let missing = folder.path().join("none.mp4");
    let output = recall_frames(
        &[("API_TOKEN", "export-token-0123456789")],
        &[
            "export",
            "rec_none",
            "--participant",
            "1",
            "-o",
            missing.to_str().unwrap(),
            "--server",
            &server_url,
        ],
    )
    .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("404"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!missing.exists());
}

/// A frame of one colour, so that a tile is found by its pixels.
fn solid(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_pixel(width, height, image::Rgb(rgb));
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .unwrap();
    bytes
}

const RED: [u8; 3] = [220, 40, 40];
const BLUE: [u8; 3] = [40, 80, 220];
const MAGENTA: [u8; 3] = [200, 40, 200];
const YELLOW: [u8; 3] = [230, 220, 40];
/// The frame around the speaking participant's tile.
const SPEAKER: [u8; 3] = [46, 204, 113];

/// The gallery's picture `seconds` in, as RGB, decoded by ffmpeg.
fn gallery_frame(video: &std::path::Path, seconds: f64) -> Vec<u8> {
    let output = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &seconds.to_string(), "-i"])
        .arg(video)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(output.stdout.len(), 1280 * 720 * 3);
    output.stdout
}

/// The share of the picture's pixels near `colour`.
fn coverage(rgb: &[u8], colour: [u8; 3]) -> f64 {
    let pixels: Vec<&[u8]> = rgb.chunks_exact(3).step_by(7).collect();
    let near = pixels
        .iter()
        .filter(|p| p.iter().zip(colour).all(|(a, b)| a.abs_diff(b) < 30))
        .count();
    near as f64 / pixels.len() as f64
}

/// A participant's stream of one colour: id, name, type, colour, first and last second.
type CameraOn = (u64, &'static str, &'static str, [u8; 3], f64, f64);

#[tokio::test]
async fn the_gallery_shows_a_tile_per_camera_on_the_share_large_and_the_speaker_framed() {
    if !need_ffmpeg() {
        return;
    }
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    // Red's camera is on 0-10 s, blue's 2-10 s, magenta's 5-6 s; blue shares a yellow
    // screen 8-10 s; blue speaks 3-4.5 s; red's voice from 1 s.
    let streams: [CameraOn; 4] = [
        (100, "Red", "webcam", RED, 0.0, 10.0),
        (200, "Blue", "webcam", BLUE, 2.0, 10.0),
        (300, "Magenta", "webcam", MAGENTA, 5.0, 6.0),
        (200, "Blue", "screenshare", YELLOW, 8.0, 10.0),
    ];
    let mut sent = std::collections::BTreeMap::new();
    for (id, name, kind, colour, from, to) in streams {
        let mut t = from;
        while t <= to {
            let frame = TestFrame::new(t)
                .participant(id, Some(name))
                .kind(kind)
                .png(solid(320, 180, colour));
            bot.send_frame(&frame).await;
            *sent.entry((id, kind)).or_insert(0u64) += 1;
            t += 0.5;
        }
    }
    bot.send_text(
        TestEvent::new("speech_on", 3.0)
            .participant(200, Some("Blue"))
            .event(),
    )
    .await;
    bot.send_text(
        TestEvent::new("speech_off", 4.5)
            .participant(200, Some("Blue"))
            .event(),
    )
    .await;
    bot.send_text(TestAudio::new(1.0, tone(8000)).event()).await;
    bot.close().await;
    for ((id, kind), frames) in sent {
        server
            .wait_for_frames(&format!("/api/recordings/rec_9f1c2a/{id}/{kind}"), frames)
            .await;
    }
    wait_for_chunks(&server, "/api/recordings/rec_9f1c2a/100/audio", 1).await;

    let (status, job) = post_export(&server, RECORDING, json!({"gallery": true})).await;
    assert_eq!(status, 202, "{job}");
    let job = wait_for_export(&server, job["url"].as_str().unwrap()).await;
    assert_eq!(job["status"], "done", "{job}");
    // Two pictures a second from 0 to 10 s.
    assert_eq!(job["frames"], 21);
    let folder = tempfile::tempdir().unwrap();
    let video = download_export(&server, &job, folder.path()).await;
    let frames = video_frames(&video);
    assert_eq!(frames.len(), 21);
    assert!(frames.iter().all(|f| (f.width, f.height) == (1280, 720)));

    let shown = |rgb: &[u8]| -> Vec<&str> {
        [
            ("red", RED),
            ("blue", BLUE),
            ("magenta", MAGENTA),
            ("yellow", YELLOW),
        ]
        .into_iter()
        .filter(|(_, colour)| coverage(rgb, *colour) > 0.01)
        .map(|(name, _)| name)
        .collect()
    };
    let at = |t: f64| gallery_frame(&video, t + 0.1);
    assert_eq!(shown(&at(1.0)), ["red"]);
    let three = at(3.0);
    assert_eq!(shown(&three), ["red", "blue"]);
    assert!(
        coverage(&three, SPEAKER) > 0.001,
        "blue, speaking, is framed"
    );
    let six = at(6.0);
    assert_eq!(shown(&six), ["red", "blue", "magenta"]);
    assert!(coverage(&six, SPEAKER) < 0.0001, "nobody speaks at 6 s");
    // Magenta's camera is off 3 s after its last frame; the share takes most of the picture.
    let share = at(9.5);
    assert_eq!(shown(&share), ["red", "blue", "yellow"]);
    assert!(coverage(&share, YELLOW) > 0.4, "the share is large");
    assert!(
        coverage(&share, RED) < 0.1,
        "the cameras are small beside it"
    );

    let sound = decoded_audio(&video);
    let onset = onset_ms(&sound);
    assert!(
        (onset - 1000.0).abs() < 15.0,
        "red is heard from {onset} ms"
    );
}
