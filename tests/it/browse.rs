//! Browsing saved frames over HTTP: the JSON API, the frames themselves, the ZIP download,
//! traversal attempts, the guard, and live updates over server-sent events.

use crate::common::*;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ALICE_WEBCAM: &str = "/api/recordings/rec_9f1c2a/100/webcam";

/// Streams a few frames of two participants and waits until all are listed.
async fn server_with_frames() -> (TestServer, Vec<TestFrame>) {
    let server = TestServer::start().await;
    let frames = vec![
        TestFrame::new(0.5),
        TestFrame::new(1.0),
        TestFrame::new(12.5),
        TestFrame::new(1.0).kind("screenshare"),
        TestFrame::new(0.5).participant(200, None),
    ];
    let mut bot = server.connect().await;
    for frame in &frames {
        bot.send_frame(frame).await;
    }
    bot.close().await;
    server.wait_for_frames(ALICE_WEBCAM, 3).await;
    server
        .wait_for_frames("/api/recordings/rec_9f1c2a/100/screenshare", 1)
        .await;
    server
        .wait_for_frames("/api/recordings/rec_9f1c2a/200/webcam", 1)
        .await;
    (server, frames)
}

#[tokio::test]
async fn index_to_recording_to_stream_to_the_exact_png() {
    let (server, frames) = server_with_frames().await;

    let index = server.get_json("/api/recordings").await;
    assert_eq!(index, json!({"recordings": [recording_entry(5)]}));

    let recording = server.get_json("/api/recordings/rec_9f1c2a").await;
    assert_eq!(recording["metadata"], json!({"team": "research"}));
    assert_eq!(recording["events"], json!([]), "no events.jsonl, no events");
    let participants = recording["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 2);
    let alice = &participants[0];
    assert_eq!(
        (
            &alice["id"],
            &alice["name"],
            &alice["is_host"],
            &alice["email"]
        ),
        (
            &json!(100),
            &json!("Alice Smith"),
            &json!(true),
            &json!(null)
        )
    );
    assert_eq!(alice["folder"], "100-alice-smith");
    assert_eq!(
        alice["streams"][0],
        json!({
            "type": "webcam",
            "frames": 3,
            "first": {"relative": 0.5, "absolute": "2026-11-21T10:00:00.5Z"},
            "last": {"relative": 12.5, "absolute": "2026-11-21T10:00:12.5Z"},
            "latest_frame": "/api/recordings/rec_9f1c2a/100/webcam/000012500.png",
            "frames_url": "/api/recordings/rec_9f1c2a/100/webcam/frames",
            "zip_url": "/api/recordings/rec_9f1c2a/100/webcam.zip",
            "page": "/recordings/rec_9f1c2a/100/webcam"
        })
    );
    assert_eq!(alice["streams"][1]["type"], "screenshare");
    assert_eq!(alice["streams"][1]["frames"], 1);
    assert_eq!(participants[1]["name"], json!(null));
    assert_eq!(participants[1]["is_host"], json!(false));

    let page = server.get_json(&format!("{ALICE_WEBCAM}/frames")).await;
    assert_eq!(page["total"], 3);
    assert_eq!(page["next"], json!(null));
    assert_eq!(
        page["frames"][2],
        json!({
            "url": "/api/recordings/rec_9f1c2a/100/webcam/000012500.png",
            "relative_ms": 12500, "relative": 12.5, "absolute": "2026-11-21T10:00:12.5Z",
            "width": 64, "height": 36, "bytes": frames[2].png.len()
        })
    );

    let url = server.url(page["frames"][2]["url"].as_str().unwrap());
    let client = reqwest::Client::new();
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    assert!(headers.contains_key("last-modified"));
    let etag = headers["etag"].clone();
    assert_eq!(
        response.bytes().await.unwrap(),
        frames[2].png,
        "exact bytes"
    );

    let again = client
        .get(&url)
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    let range = client
        .get(&url)
        .header("range", "bytes=0-7")
        .send()
        .await
        .unwrap();
    assert_eq!(range.status(), 206);
    assert_eq!(
        range.headers()["content-range"],
        format!("bytes 0-7/{}", frames[2].png.len()).as_str()
    );
    assert_eq!(range.bytes().await.unwrap(), &frames[2].png[..8]);

    for missing in [
        "/api/recordings/rec_9f1c2a/100/webcam/000099000.png",
        "/api/recordings/rec_9f1c2a/999/webcam/000000500.png",
        "/api/recordings/rec_9f1c2a/200/screenshare/frames",
        "/api/recordings/no_such_recording",
    ] {
        let response = server.get(missing).await;
        assert_eq!(response.status(), 404, "{missing}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().ends_with("not found"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_stream_page_opens_at_the_frame_at_or_before_t() {
    let (server, _) = server_with_frames().await;
    let page = "/recordings/rec_9f1c2a/100/webcam";
    // Alice's webcam frames are at 0.5, 1.0 and 12.5 s.
    for (t, frame, at, position) in [
        ("", "000000500", "0:00.500", "1 of 3"),
        ("?t=0", "000000500", "0:00.500", "1 of 3"),
        ("?t=1", "000001000", "0:01.000", "2 of 3"),
        ("?t=12.499", "000001000", "0:01.000", "2 of 3"),
        ("?t=12.5", "000012500", "0:12.500", "3 of 3"),
        ("?t=99999", "000012500", "0:12.500", "3 of 3"),
    ] {
        let response = server.get(&format!("{page}{t}")).await;
        assert_eq!(response.status(), 200, "{t}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains(&format!(
                "src=\"/api/recordings/rec_9f1c2a/100/webcam/{frame}.png\""
            )),
            "{t}: shows {frame}"
        );
        assert!(
            html.contains(&format!("<dd id=\"relative\">{at}</dd>")),
            "{t}: at {at}"
        );
        assert!(
            html.contains(&format!("<dd id=\"position\">{position}</dd>")),
            "{t}: {position}"
        );
    }
    for bad in ["?t=-1", "?t=soon", "?t=NaN", "?t="] {
        let (status, html) = error_page(&server, &format!("{page}{bad}")).await;
        assert_eq!(status, 400, "{bad}");
        assert!(
            html.contains("t must be a number of seconds"),
            "{bad}: {html}"
        );
    }
}

/// An error answering a page: its status, and its body, checked to be a page of the UI (an
/// HTML page with a way back to the recordings) rather than the API's JSON.
async fn error_page(server: &TestServer, path: &str) -> (u16, String) {
    let response = server.get(path).await;
    let status = response.status().as_u16();
    assert_eq!(
        response.headers()["content-type"],
        "text/html; charset=utf-8",
        "{path}"
    );
    let html = response.text().await.unwrap();
    assert!(html.starts_with("<!doctype html>"), "{path}: {html}");
    assert!(
        html.contains("<a href=\"/\">Back to the recordings</a>"),
        "{path}: {html}"
    );
    (status, html)
}

/// A browser that follows a stale link or edits `?t=` by hand gets a page saying what is
/// wrong; the API answers the same mistakes in JSON.
#[tokio::test]
async fn page_errors_are_pages_and_api_errors_stay_json() {
    let (server, _) = server_with_frames().await;
    let (status, html) = error_page(&server, "/recordings/nope").await;
    assert_eq!(status, 404);
    assert!(
        html.contains("<title>404 Not Found · recall-frames</title>"),
        "{html}"
    );
    assert!(html.contains("<h1>404 Not Found</h1>"), "{html}");
    assert!(html.contains("recording not found"), "{html}");

    let (status, html) = error_page(&server, "/recordings/rec_9f1c2a/100/webcam?t=abc").await;
    assert_eq!(status, 400);
    assert!(html.contains("<h1>400 Bad Request</h1>"), "{html}");
    assert!(
        html.contains("t must be a number of seconds from the start of the recording"),
        "{html}"
    );

    let (status, html) = error_page(&server, "/recordings/rec_9f1c2a/999/webcam").await;
    assert_eq!(status, 404);
    assert!(html.contains("participant not found"), "{html}");

    let api = server.get("/api/recordings/nope").await;
    assert_eq!(api.status(), 404);
    assert_eq!(api.headers()["content-type"], "application/json");
    let body: Value = api.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"error": "recording not found"}));
}

#[tokio::test]
async fn pages_follow_after_and_limit() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    // Sent out of order: pages list time order.
    for relative in [3.0, 0.5, 1.0, 2.0, 1.5, 2.5, 0.0] {
        bot.send_frame(&TestFrame::new(relative)).await;
    }
    bot.close().await;
    server.wait_for_frames(ALICE_WEBCAM, 7).await;

    let times = |page: &Value| -> Vec<u64> {
        page["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["relative_ms"].as_u64().unwrap())
            .collect()
    };
    let first = server
        .get_json(&format!("{ALICE_WEBCAM}/frames?limit=3"))
        .await;
    assert_eq!(times(&first), vec![0, 500, 1000]);
    assert_eq!(first["next_after"], 1000);
    let next = first["next"].as_str().unwrap();
    assert_eq!(next, format!("{ALICE_WEBCAM}/frames?after=1000&limit=3"));
    let second = server.get_json(next).await;
    assert_eq!(times(&second), vec![1500, 2000, 2500]);
    let third = server.get_json(second["next"].as_str().unwrap()).await;
    assert_eq!(times(&third), vec![3000]);
    assert_eq!((&third["next"], &third["total"]), (&json!(null), &json!(7)));

    // `after` between frames, on the last, and past it; the limit's bounds.
    let page = |query: &str| {
        let path = format!("{ALICE_WEBCAM}/frames?{query}");
        let server = &server;
        async move { server.get_json(&path).await }
    };
    assert_eq!(times(&page("after=1200&limit=1").await), vec![1500]);
    assert_eq!(times(&page("after=3000").await), Vec::<u64>::new());
    assert_eq!(times(&page("after=999999999").await), Vec::<u64>::new());
    assert_eq!(times(&page("limit=1000").await).len(), 7);
    assert_eq!(times(&page("limit=1").await), vec![0]);

    for bad in [
        "limit=0",
        "limit=1001",
        "limit=ten",
        "limit=-1",
        "after=-1",
        "after=1.5",
    ] {
        let response = server.get(&format!("{ALICE_WEBCAM}/frames?{bad}")).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"].is_string(), "{bad}: {body}");
    }
}

#[tokio::test]
async fn the_zip_holds_the_streams_pngs_and_manifest() {
    let (server, frames) = server_with_frames().await;
    let response = server.get(&format!("{ALICE_WEBCAM}.zip")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"rec_9f1c2a-100-webcam.zip\""
    );
    assert!(
        !response.headers().contains_key("content-length"),
        "streamed, not built first"
    );
    let archive = Unzipped::new(&response.bytes().await.unwrap());
    assert_eq!(
        archive.names(),
        [
            "rec_9f1c2a-100-webcam/000000500.png",
            "rec_9f1c2a-100-webcam/000001000.png",
            "rec_9f1c2a-100-webcam/000012500.png",
            "rec_9f1c2a-100-webcam/frames.jsonl",
        ]
    );
    for frame in frames
        .iter()
        .filter(|f| f.participant == 100 && f.kind == "webcam")
    {
        let entry = archive.file(&format!("rec_9f1c2a-100-webcam/{}", frame.file_name()));
        assert_eq!(entry.compression, zip::CompressionMethod::Stored);
        assert_eq!(entry.bytes, frame.png, "{}", frame.file_name());
    }
    let on_disk = std::fs::read(
        server
            .stream_dir("rec_9f1c2a", "100-alice-smith", "webcam")
            .join("frames.jsonl"),
    )
    .unwrap();
    assert_eq!(
        archive.file("rec_9f1c2a-100-webcam/frames.jsonl").bytes,
        on_disk
    );

    for missing in [
        "/api/recordings/rec_9f1c2a/200/screenshare.zip",
        "/api/recordings/nothing/100/webcam.zip",
    ] {
        assert_eq!(server.get(missing).await.status(), 404, "{missing}");
    }
    assert_eq!(
        server
            .get("/api/recordings/rec_9f1c2a/100/audio.zip")
            .await
            .status(),
        400
    );
}

/// Two participants, each with webcam and screenshare, and their events, as a bot sends
/// them.
fn two_people_both_streams() -> (Vec<TestFrame>, Vec<TestEvent>) {
    let screen = |t: f64, id: u64, name: Option<&str>| {
        let frame = TestFrame::new(t).participant(id, name).kind("screenshare");
        let png = png(80, 45, id as u32 * 31 + (t * 1000.0) as u32);
        frame.png(png)
    };
    let frames = vec![
        TestFrame::new(0.5),
        TestFrame::new(1.0),
        screen(1.0, 100, Some("Alice Smith")),
        screen(1.5, 100, Some("Alice Smith")),
        TestFrame::new(0.5).participant(200, Some("Bob")),
        TestFrame::new(2.0).participant(200, Some("Bob")),
        screen(2.5, 200, Some("Bob")),
    ];
    let events = vec![
        TestEvent::new("join", 0.2),
        TestEvent::new("join", 0.3).participant(200, Some("Bob")),
        TestEvent::new("chat_message", 3.0).data(json!({"text": "hello", "to": "everyone"})),
    ];
    (frames, events)
}

/// The ZIP of a recording holds everything its folder does, at the same paths, byte for
/// byte: every PNG as the bot sent it, the manifests, the summaries and the events.
#[tokio::test]
async fn the_recording_zip_holds_its_whole_folder() {
    let server = TestServer::start().await;
    let (frames, events) = two_people_both_streams();
    let mut bot = server.connect().await;
    for event in &events {
        bot.send_text(event.event()).await;
    }
    for frame in &frames {
        bot.send_frame(frame).await;
    }
    // Alice's audio and the whole call's: each track's pieces and manifest go in too.
    for audio in [
        TestAudio::at_sample(16_000, 320, 100),
        TestAudio::at_sample(1_600, 320, 42).mixed(),
    ] {
        bot.send_text(audio.event()).await;
    }
    bot.close().await;
    for track in ["100", "mixed"] {
        let url = server.url(&format!("/api/recordings/rec_9f1c2a/{track}/audio"));
        wait_for_field(&url, "chunks", 1).await;
    }
    for (stream, count) in [
        ("100/webcam", 2),
        ("100/screenshare", 2),
        ("200/webcam", 2),
        ("200/screenshare", 1),
    ] {
        server
            .wait_for_frames(&format!("/api/recordings/rec_9f1c2a/{stream}"), count)
            .await;
    }
    let folder = server.data_dir.join("rec_9f1c2a");
    for file in [
        "recording.json",
        "events.jsonl",
        "audio/audio.jsonl",
        "100-alice-smith/audio/audio.jsonl",
        "100-alice-smith/participant.json",
        "200-bob/participant.json",
    ] {
        wait_for_file(&folder.join(file)).await;
    }
    let recording = server.get_json("/api/recordings/rec_9f1c2a").await;
    assert_eq!(recording["zip_url"], "/api/recordings/rec_9f1c2a/zip");
    eventually("the events are saved", || async {
        server.get_json("/api/recordings/rec_9f1c2a").await["events"]
            .as_array()
            .is_some_and(|saved| saved.len() == events.len())
    })
    .await;

    let response = server.get("/api/recordings/rec_9f1c2a/zip").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"rec_9f1c2a.zip\""
    );
    assert!(
        !response.headers().contains_key("content-length"),
        "streamed, not built first"
    );
    let archive = Unzipped::new(&response.bytes().await.unwrap());

    // The paths are the folder's, under the recording's id, and nothing is left out.
    let on_disk: Vec<String> = tree(&server.data_dir)
        .into_iter()
        .filter(|path| path.starts_with("rec_9f1c2a/"))
        .collect();
    let mut names: Vec<&str> = archive.names();
    names.sort_unstable();
    assert_eq!(names, on_disk);
    for path in &on_disk {
        let entry = archive.file(path);
        assert_eq!(entry.compression, zip::CompressionMethod::Stored, "{path}");
        assert_eq!(
            entry.bytes,
            std::fs::read(server.data_dir.join(path)).unwrap(),
            "{path}"
        );
    }
    // Every PNG as it was sent, and each stream's manifest lists exactly its PNGs.
    for frame in &frames {
        let folder = if frame.participant == 100 {
            "100-alice-smith"
        } else {
            "200-bob"
        };
        let path = format!("rec_9f1c2a/{folder}/{}/{}", frame.kind, frame.file_name());
        assert_eq!(archive.file(&path).bytes, frame.png, "{path}");
    }
    for stream in [
        "100-alice-smith/webcam",
        "100-alice-smith/screenshare",
        "200-bob/webcam",
        "200-bob/screenshare",
    ] {
        let manifest = archive.file(&format!("rec_9f1c2a/{stream}/frames.jsonl"));
        let listed: Vec<String> = String::from_utf8_lossy(&manifest.bytes)
            .lines()
            .map(|line| {
                let line: Value = serde_json::from_str(line).unwrap();
                format!("rec_9f1c2a/{stream}/{}", line["file"].as_str().unwrap())
            })
            .collect();
        let pngs: Vec<&str> = archive
            .names()
            .into_iter()
            .filter(|name| name.starts_with(&format!("rec_9f1c2a/{stream}/")))
            .filter(|name| name.ends_with(".png"))
            .collect();
        assert_eq!(listed, pngs, "{stream}");
    }
    let saved_events = &archive.file("rec_9f1c2a/events.jsonl").bytes;
    assert_eq!(String::from_utf8_lossy(saved_events).lines().count(), 3);

    // The recording page links it.
    let page = server
        .get("/recordings/rec_9f1c2a")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        page.contains(r#"href="/api/recordings/rec_9f1c2a/zip" download"#),
        "{page}"
    );

    let unknown = server.get("/api/recordings/rec_unknown/zip").await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(
        server.get("/api/recordings/..%2Fetc/zip").await.status(),
        400
    );
}

/// Sends `path` exactly as written, with no client-side normalisation of dots or escapes,
/// and returns the status and body.
async fn raw_get(server: &TestServer, path: &str) -> (u16, String) {
    let mut socket = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        server.addr
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut response))
        .await
        .expect("an answer")
        .unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

#[tokio::test]
async fn no_request_reaches_outside_the_data_folder() {
    let (server, _) = server_with_frames().await;
    // A secret outside DATA_DIR, and links inside DATA_DIR that point at it.
    let outside = tempfile::tempdir().unwrap();
    let secret = b"TOP-SECRET-OUTSIDE-DATA-DIR";
    let secret_png = outside.path().join("000000500.png");
    std::fs::write(&secret_png, secret).unwrap();
    std::fs::create_dir_all(outside.path().join("300-mallory/webcam")).unwrap();
    std::fs::write(
        outside.path().join("300-mallory/webcam/000000500.png"),
        secret,
    )
    .unwrap();
    std::fs::write(outside.path().join("frames.jsonl"), secret).unwrap();
    let root = &server.data_dir;
    let link = |target: &std::path::Path, at: &str| {
        std::os::unix::fs::symlink(target, root.join(at)).unwrap();
    };
    link(outside.path(), "linked_recording");
    link(
        &outside.path().join("300-mallory"),
        "rec_9f1c2a/300-mallory",
    );
    link(
        &secret_png,
        "rec_9f1c2a/100-alice-smith/webcam/000099000.png",
    );
    link(outside.path(), "rec_9f1c2a/200/screenshare");

    let attempts = [
        "/api/recordings/..",
        "/api/recordings/%2e%2e",
        "/api/recordings/%2E%2E/",
        "/api/recordings/.%2e/.%2e/etc/passwd",
        "/api/recordings/%2e%2e%2f%2e%2e%2fetc",
        "/api/recordings/%2fetc%2fpasswd",
        "/api/recordings//etc/passwd",
        "/api/recordings/rec_9f1c2a/100/webcam/..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/api/recordings/rec_9f1c2a/100/webcam/%2e%2e%2f000000500.png",
        "/api/recordings/rec_9f1c2a/..%2f100/webcam/000000500.png",
        "/api/recordings/rec_9f1c2a/100/webcam/..%5c..%5cfile.png",
        "/api/recordings/rec_9f1c2a/100/webcam/C:%5cWindows%5cwin.ini",
        "/api/recordings/rec_9f1c2a/100/%2e%2e/frames",
        "/api/recordings/rec_9f1c2a/100-alice-smith/webcam/000000500.png",
        "/api/recordings/rec_9f1c2a/100/webcam/000000500.png%00.txt",
        "/api/recordings/rec_9f1c2a/100/webcam/.000000500.png.tmp",
        // Links inside DATA_DIR that lead outside it.
        "/api/recordings/linked_recording",
        "/api/recordings/linked_recording/300/webcam/frames",
        "/api/recordings/rec_9f1c2a/300/webcam/000000500.png",
        "/api/recordings/rec_9f1c2a/300/webcam.zip",
        "/api/recordings/rec_9f1c2a/100/webcam/000099000.png",
        "/api/recordings/rec_9f1c2a/200/screenshare/000000500.png",
        "/api/recordings/rec_9f1c2a/200/screenshare.zip",
        "/api/recordings/linked_recording/zip",
        "/api/recordings/%2e%2e/zip",
        "/recordings/..%2f..%2fetc",
        "/recordings/rec_9f1c2a/300/webcam",
    ];
    for path in attempts {
        let (status, text) = raw_get(&server, path).await;
        assert!(
            status == 400 || status == 404,
            "{path} answered {status}: {text}"
        );
        assert!(!text.contains("TOP-SECRET"), "{path} leaked: {text}");
        assert!(!text.contains("root:"), "{path} leaked: {text}");
    }

    // Listings do not follow the links either.
    let index = server.get_json("/api/recordings").await;
    assert_eq!(index["recordings"].as_array().unwrap().len(), 1, "{index}");
    let recording = server.get_json("/api/recordings/rec_9f1c2a").await;
    let ids: Vec<&Value> = recording["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["id"])
        .collect();
    assert_eq!(ids, [&json!(100), &json!(200)]);
    assert_eq!(
        recording["participants"][1]["streams"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // The ZIP of a stream with a linked frame leaves the link out.
    let body = server
        .get(&format!("{ALICE_WEBCAM}.zip"))
        .await
        .bytes()
        .await
        .unwrap();
    assert!(!body.windows(secret.len()).any(|w| w == secret));
    // Nor does the recording's ZIP take in a linked folder, stream or frame.
    let body = server
        .get("/api/recordings/rec_9f1c2a/zip")
        .await
        .bytes()
        .await
        .unwrap();
    assert!(!body.windows(secret.len()).any(|w| w == secret));
    let names = Unzipped::new(&body).names().join("\n");
    assert!(!names.contains("300-mallory"), "{names}");
    assert!(!names.contains("000099000"), "{names}");
}

#[tokio::test]
async fn with_an_api_token_every_browse_route_needs_it() {
    let token = "api-token-abcdefghijklmnop";
    let server = TestServer::start_with(&["--api-token", token]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(0.5)).await;
    bot.close().await;
    let client = reqwest::Client::new();
    let frame = format!("{ALICE_WEBCAM}/000000500.png");
    eventually("the frame is saved", || async {
        client
            .get(server.url(&frame))
            .bearer_auth(token)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    for path in [
        "/",
        "/recordings/rec_9f1c2a",
        "/recordings/rec_9f1c2a/100/webcam",
        "/static/app.js",
        "/static/app.css",
        "/api/recordings",
        "/api/recordings/rec_9f1c2a",
        "/api/recordings/rec_9f1c2a/100/webcam/frames",
        frame.as_str(),
        "/api/recordings/rec_9f1c2a/100/webcam.zip",
        "/api/recordings/rec_9f1c2a/zip",
        "/api/live",
    ] {
        let url = server.url(path);
        let refused = client.get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 401, "{path} without a token");
        assert!(
            refused.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic"),
            "{path}: a browser is asked to log in"
        );
        let wrong = client
            .get(&url)
            .bearer_auth("wrong-token-abcdefghijk")
            .send()
            .await;
        assert_eq!(wrong.unwrap().status(), 401, "{path} with a wrong token");
        let bearer = client.get(&url).bearer_auth(token).send().await.unwrap();
        assert_eq!(bearer.status(), 200, "{path} with Bearer");
        let basic = client
            .get(&url)
            .basic_auth("any user name", Some(token))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), 200, "{path} with Basic");
    }
}

/// A server-sent events reader over a real HTTP response.
struct Sse {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buffer: String,
}

impl Sse {
    async fn open(server: &TestServer, path: &str) -> Sse {
        let response = reqwest::get(server.url(path)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut sse = Sse {
            body: response.bytes_stream().boxed(),
            buffer: String::new(),
        };
        let (name, _) = sse.next().await.expect("the ready event");
        assert_eq!(name, "ready");
        sse
    }

    /// The next event's name and JSON data, skipping keep-alive comments; `None` when the
    /// stream has ended.
    async fn next(&mut self) -> Option<(String, Value)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::from("message");
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(value) = line.strip_prefix("event:") {
                        name = value.trim().to_owned();
                    } else if let Some(value) = line.strip_prefix("data:") {
                        data.push_str(value.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a comment
                }
                return Some((name, serde_json::from_str(&data).expect("JSON data")));
            }
            let chunk = tokio::time::timeout(PATIENCE, self.body.next())
                .await
                .expect("an event or the end within the patience")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk.expect("body chunk")).unwrap());
        }
    }

    /// The next `frame` event.
    async fn next_frame(&mut self) -> Value {
        loop {
            let (name, data) = self.next().await.expect("the stream is open");
            if name == "frame" {
                return data;
            }
        }
    }
}

#[tokio::test]
async fn live_events_announce_frames_saved_after_subscribing() {
    let server = TestServer::start().await;
    let mut everything = Sse::open(&server, "/api/live").await;
    let mut only_b = Sse::open(&server, "/api/live?recording=rec_b").await;

    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.5).recording("rec_a"))
        .await;
    assert_eq!(
        everything.next().await.unwrap(),
        (
            "recording".to_owned(),
            json!({"type": "recording", "recording": "rec_a"})
        )
    );
    let (name, participant) = everything.next().await.unwrap();
    assert_eq!(name, "participant");
    assert_eq!(participant["participant"]["name"], "Alice Smith");
    assert_eq!(
        everything.next().await.unwrap().1,
        json!({"type": "frame", "recording": "rec_a", "participant": 100, "kind": "webcam",
               "relative_ms": 1500, "relative": 1.5, "absolute": "2026-11-21T10:00:01.5Z",
               "width": 64, "height": 36, "bytes": TestFrame::new(1.5).png.len()})
    );

    bot.send_frame(&TestFrame::new(2.0).recording("rec_b").kind("screenshare"))
        .await;
    let frame = only_b.next_frame().await;
    assert_eq!(
        (&frame["recording"], &frame["kind"], &frame["relative_ms"]),
        (&json!("rec_b"), &json!("screenshare"), &json!(2000)),
        "the filtered stream skips rec_a"
    );
    // Each recording and participant is announced once, before its first frame.
    let names = [
        everything.next().await.unwrap().0,
        everything.next().await.unwrap().0,
        everything.next().await.unwrap().0,
    ];
    assert_eq!(names, ["recording", "participant", "frame"]);
    bot.send_frame(&TestFrame::new(2.5).recording("rec_a"))
        .await;
    let (name, frame) = everything.next().await.unwrap();
    assert_eq!(
        (name.as_str(), &frame["relative_ms"]),
        ("frame", &json!(2500))
    );

    // The saved frame is there to fetch once announced.
    let png = server
        .get("/api/recordings/rec_b/100/screenshare/000002000.png")
        .await;
    assert_eq!(png.status(), 200);
    bot.close().await;

    let bad = server.get("/api/live?recording=..").await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn live_streams_end_when_shutdown_starts() {
    let mut server = TestServer::start_with(&["--shutdown-timeout", "10s"]).await;
    let mut first = Sse::open(&server, "/api/live").await;
    let mut second = Sse::open(&server, "/api/live?recording=rec_9f1c2a").await;
    // `stop` fails if the HTTP side has not closed within the shutdown timeout.
    server
        .stop()
        .await
        .expect("a clean shutdown, not a timed-out one");
    assert!(first.next().await.is_none(), "the stream ended");
    assert!(second.next().await.is_none(), "the stream ended");
}

#[tokio::test]
async fn a_download_in_progress_does_not_hold_up_shutdown() {
    let mut server = TestServer::start_with(&["--shutdown-timeout", "10s"]).await;
    let mut bot = server.connect().await;
    // About 36 MB of incompressible frames: far more than the pipe and the loopback
    // socket buffers hold, so the server is still writing when shutdown starts.
    let noise = png(400, 300, 7);
    for i in 0..100 {
        let frame = TestFrame::new(f64::from(i)).png(noise.clone());
        bot.send_frame(&frame).await;
    }
    bot.close().await;
    server.wait_for_frames(ALICE_WEBCAM, 100).await;

    let download = server.get(&format!("{ALICE_WEBCAM}.zip")).await;
    assert_eq!(download.status(), 200);
    let mut body = download.bytes_stream();
    assert!(body.next().await.unwrap().is_ok(), "the download has begun");
    // A slow reader: the server is still writing when it is asked to stop.
    let read_slowly = async move {
        loop {
            match body.next().await {
                Some(Ok(_)) => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
                Some(Err(_)) => return "cut",
                None => return "complete",
            }
        }
    };
    let (stopped, download) = tokio::join!(server.stop(), read_slowly);
    stopped.expect("shutdown finishes without waiting for the download");
    assert_eq!(
        download, "cut",
        "the client sees the transfer cut, not a whole ZIP"
    );
}
