//! Recording into an S3 bucket: a real S3 server (s3s-fs, in-process on 127.0.0.1) and the
//! real server, one or several instances of it, with real bots. Frames land byte-identical
//! under the keys the disk layout names; two instances write one recording together with no
//! loss and no overwrite; any instance browses the bucket; an unreachable bucket is retried
//! and reported; a restart, even after kill -9, carries on.

use std::collections::{BTreeMap, BTreeSet};

use crate::after_call::{self, BOT, audio_part, noise, video_part, wait_for_fetch, webhook};
use crate::common::recall_api::RecallStandIn;
use crate::common::recall_api::media::{bot_status_webhook, media_webhook};
use crate::common::s3::{self, S3Server};
use crate::common::*;
use recall_frames::Config;
use serde_json::{Value, json};

const ALICE_WEBCAM: &str = "/api/recordings/rec_9f1c2a/100/webcam";
const ALICE_AUDIO: &str = "/api/recordings/rec_9f1c2a/100/audio";
const BOB_AUDIO: &str = "/api/recordings/rec_9f1c2a/200/audio";
const MIXED_AUDIO: &str = "/api/recordings/rec_9f1c2a/mixed/audio";

/// Short intervals, so that manifests, retries and checks happen within a test's patience.
const QUICK: [&str; 6] = [
    "--bucket-manifest-interval",
    "100ms",
    "--bucket-retry-timeout",
    "20s",
    "--bucket-check-interval",
    "100ms",
];

async fn start(s3: &S3Server, prefix: Option<&str>, extra: &[&str]) -> TestServer {
    let mut args = s3.flags(prefix);
    for pair in QUICK.chunks(2) {
        if !extra.contains(&pair[0]) {
            args.extend(pair.iter().map(|a| a.to_string()));
        }
    }
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_with(&args).await
}

/// The lines of every manifest or event chunk under `dir/`, from the bucket itself.
async fn chunk_lines(s3: &S3Server, dir: &str) -> Vec<Value> {
    let mut lines = Vec::new();
    for key in s3.keys().await {
        if key.starts_with(&format!("{dir}/")) && key.ends_with(".jsonl") {
            let text = s3.get(&key).await.expect("a listed chunk");
            for line in String::from_utf8(text.to_vec()).unwrap().lines() {
                lines.push(serde_json::from_str(line).expect("a JSON line"));
            }
        }
    }
    lines
}

/// A bucket key with its chunk file names replaced by the file they stand for on disk, and
/// participant claims (which have no file on disk) left out.
fn as_disk_path(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    match parts.as_slice() {
        [_, "participants", _] => None,
        [rec, "events", _] => Some(format!("{rec}/events.jsonl")),
        [rec, who, kind, "frames", _] => Some(format!("{rec}/{who}/{kind}/frames.jsonl")),
        [rec, "audio", "audio", _] => Some(format!("{rec}/audio/audio.jsonl")),
        [rec, who, "audio", "audio", _] => Some(format!("{rec}/{who}/audio/audio.jsonl")),
        _ => Some(key.to_owned()),
    }
}

#[tokio::test]
async fn participant_json_in_the_bucket_follows_the_newest_description_by_meeting_time() {
    let s3 = S3Server::start().await;
    let mut server = start(&s3, None, &[]).await;
    let key = "rec_9f1c2a/200-bob/participant.json";
    let participant_json =
        || async { serde_json::from_slice(&s3.get(key).await.expect("participant.json")).unwrap() };
    renames_follow_meeting_time(&server, participant_json).await;
    server.stop().await.unwrap();
    assert_eq!(participant_json().await["name"], "Robert");
}

/// Where a command's settings are typed: `recall-frames --data-dir D copy-to-bucket` or
/// `recall-frames copy-to-bucket --data-dir D`.
#[derive(Clone, Copy)]
enum Settings {
    BeforeTheSubcommand,
    AfterTheSubcommand,
}

/// Runs `recall-frames copy-to-bucket` from `data_dir` into `s3`; returns whether it
/// succeeded and its JSON report.
async fn copy_to_bucket(
    s3: &S3Server,
    data_dir: &std::path::Path,
    settings: Settings,
) -> (bool, Value) {
    let mut args = vec![
        "--data-dir".to_owned(),
        data_dir.to_str().unwrap().to_owned(),
    ];
    args.extend(s3.flags(None));
    match settings {
        Settings::BeforeTheSubcommand => args.push("copy-to-bucket".to_owned()),
        Settings::AfterTheSubcommand => args.insert(0, "copy-to-bucket".to_owned()),
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = recall_frames(&[], &args).await;
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|_| {
        panic!(
            "a JSON report; stderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report)
}

/// Audio that makes every decision a track's timeline takes: Alice's chunks in sending
/// order (an overlap, a short gap filled late, a run of chunks with short gaps that crosses
/// into a second piece, a new segment after a long silence, a chunk resent whole), Bob's
/// one chunk and the mixed track's. Returns them and Alice's track as it should sound.
fn audio_for_the_copy() -> (Vec<TestAudio>, Vec<i16>) {
    let first = TestAudio::at_sample(16_000, 320, 100);
    // Its first 160 samples were received before: the first chunk's stand.
    let overlapping = TestAudio::at_sample(16_160, 320, 1000);
    let after_gap = TestAudio::at_sample(24_000, 320, 2000);
    let late = TestAudio::at_sample(20_000, 160, 3000);
    // Every 1.5 s up to the piece boundary at sample 176,000, and one across it.
    let run: Vec<TestAudio> = (0..6)
        .map(|i| TestAudio::at_sample(40_000 + i * 24_000, 320, 4000 + i as i16 * 100))
        .collect();
    let across_pieces = TestAudio::at_sample(175_900, 320, 5000);
    let new_segment = TestAudio::at_sample(400_000, 320, 6000);
    let mut alice = vec![
        overlapping.clone(),
        first.clone(),
        after_gap.clone(),
        late.clone(),
    ];
    alice.extend(run.iter().cloned());
    alice.extend([across_pieces.clone(), new_segment.clone()]);
    // The timeline writes later chunks over earlier ones: the overlapping chunk goes first.
    let expected = timeline(&alice.iter().collect::<Vec<_>>());
    let mut sent = vec![first.clone(), overlapping, after_gap, late];
    sent.extend(run);
    sent.extend([
        across_pieces,
        new_segment,
        first,
        TestAudio::at_sample(8_000, 160, 7000).participant(200),
        TestAudio::at_sample(0, 320, 8000).mixed(),
    ]);
    (sent, expected)
}

#[tokio::test]
async fn recordings_on_a_volume_are_copied_into_the_bucket_once() {
    let s3 = S3Server::start().await;
    let mut on_disk = TestServer::start().await;
    let (mut frames, events) = frames_with_events();
    // Participant 200 gets a name after his folder was named "200": the copy keeps the
    // folder's name, and participant.json's.
    frames.push(TestFrame::new(1.0).participant(200, Some("Bob")));
    send_all(&on_disk, &frames, &events).await;
    on_disk.wait_for_frames(ALICE_WEBCAM, 4).await;
    on_disk
        .wait_for_frames("/api/recordings/rec_9f1c2a/200/webcam", 2)
        .await;
    let (audio, alice_expected) = audio_for_the_copy();
    let mut bot = on_disk.connect().await;
    for chunk in &audio {
        bot.send_text(chunk.event()).await;
    }
    // The resent chunk is neither written nor listed.
    wait_for_chunks(&on_disk, ALICE_AUDIO, 12).await;
    wait_for_chunks(&on_disk, BOB_AUDIO, 1).await;
    wait_for_chunks(&on_disk, MIXED_AUDIO, 1).await;
    assert_eq!(track_wav(&on_disk, ALICE_AUDIO).await, alice_expected);
    on_disk.stop().await.unwrap();
    let data_dir = on_disk.data_dir.clone();
    assert_eq!(
        read_json(&data_dir.join("rec_9f1c2a/200/participant.json"))["name"],
        "Bob"
    );

    let (succeeded, report) = copy_to_bucket(&s3, &data_dir, Settings::AfterTheSubcommand).await;
    assert!(succeeded, "{report}");
    assert_eq!(
        report,
        json!({"recordings": [{
            "id": "rec_9f1c2a", "frames": 7, "frames_already_there": 0,
            "events": 2, "events_already_there": 0,
            "audio_chunks": 14, "audio_chunks_already_there": 0,
            "recall_parts": 0, "recall_bytes": 0, "recall_parts_already_there": 0,
            "skipped": [],
        }], "bot_statuses": 0})
    );

    // The bucket holds the disk's layout, with the same folder names and the same bytes.
    let disk_files: BTreeSet<String> = tree(&data_dir).into_iter().collect();
    let keys = s3.keys().await;
    let in_bucket: BTreeSet<String> = keys.iter().filter_map(|k| as_disk_path(k)).collect();
    assert_eq!(in_bucket, disk_files);
    for file in disk_files
        .iter()
        .filter(|f| f.ends_with(".png") || f.ends_with(".wav"))
    {
        let copied = s3.get(file).await.unwrap();
        assert_eq!(
            copied,
            std::fs::read(data_dir.join(file)).unwrap(),
            "{file}"
        );
    }
    // Manifest lines and events as on disk, receipt times included.
    assert_eq!(
        chunk_lines(&s3, "rec_9f1c2a/100-alice-smith/webcam/frames").await,
        read_jsonl(&data_dir.join("rec_9f1c2a/100-alice-smith/webcam/frames.jsonl"))
    );
    assert_eq!(
        chunk_lines(&s3, "rec_9f1c2a/events").await,
        read_jsonl(&data_dir.join("rec_9f1c2a/events.jsonl"))
    );
    assert_eq!(
        chunk_lines(&s3, "rec_9f1c2a/100-alice-smith/audio/audio").await,
        read_jsonl(&data_dir.join("rec_9f1c2a/100-alice-smith/audio/audio.jsonl"))
    );
    let participant = s3.get("rec_9f1c2a/200/participant.json").await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&participant).unwrap(),
        read_json(&data_dir.join("rec_9f1c2a/200/participant.json"))
    );

    // Both storages answer the API alike.
    let mut from_disk = TestServer::start_in(&data_dir, &[]).await;
    let mut from_bucket = start(&s3, None, &[]).await;
    for path in [
        "/api/recordings",
        "/api/recordings/rec_9f1c2a",
        "/api/recordings/rec_9f1c2a/100/webcam/frames",
        "/api/recordings/rec_9f1c2a/100/screenshare/frames",
        "/api/recordings/rec_9f1c2a/200/webcam/frames",
        ALICE_AUDIO,
        BOB_AUDIO,
        MIXED_AUDIO,
    ] {
        assert_eq!(
            from_bucket.get_json(path).await,
            from_disk.get_json(path).await,
            "{path}"
        );
    }
    // Every track sample-exact at the same places, as the API serves it.
    assert_eq!(track_wav(&from_bucket, ALICE_AUDIO).await, alice_expected);
    for track in [BOB_AUDIO, MIXED_AUDIO] {
        assert_eq!(
            track_wav(&from_bucket, track).await,
            track_wav(&from_disk, track).await,
            "{track}"
        );
    }
    // The ZIP of the recording too: the folder's layout and bytes from either storage,
    // the manifests and events a bucket keeps in chunks each as one file.
    let zip_of = |server: &TestServer| {
        let url = server.url("/api/recordings/rec_9f1c2a/zip");
        async move { reqwest::get(url).await.unwrap().bytes().await.unwrap() }
    };
    let (zip_from_bucket, zip_from_disk) = (zip_of(&from_bucket).await, zip_of(&from_disk).await);
    let (zip_from_bucket, zip_from_disk) = (
        Unzipped::new(&zip_from_bucket),
        Unzipped::new(&zip_from_disk),
    );
    let mut names = zip_from_bucket.names();
    names.sort_unstable();
    assert_eq!(
        names,
        disk_files.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for name in names {
        assert_eq!(
            zip_from_bucket.file(name).bytes,
            zip_from_disk.file(name).bytes,
            "{name}"
        );
    }
    from_bucket.stop().await.unwrap();
    from_disk.stop().await.unwrap();

    // Again, with a frame damaged on disk since: nothing is added twice or replaced, and
    // the damaged frame is reported.
    let damaged = data_dir.join("rec_9f1c2a/100-alice-smith/webcam/000001000.png");
    std::fs::write(&damaged, b"not the PNG the manifest describes").unwrap();
    let (succeeded, report) = copy_to_bucket(&s3, &data_dir, Settings::BeforeTheSubcommand).await;
    assert!(!succeeded, "a frame was skipped: {report}");
    let recording = &report["recordings"][0];
    assert_eq!(
        (
            &recording["frames"],
            &recording["frames_already_there"],
            &recording["events"],
            &recording["events_already_there"]
        ),
        (&json!(0), &json!(6), &json!(0), &json!(2))
    );
    assert_eq!(
        (
            &recording["audio_chunks"],
            &recording["audio_chunks_already_there"]
        ),
        (&json!(0), &json!(14))
    );
    let skipped = recording["skipped"][0].as_str().unwrap();
    assert!(skipped.contains("000001000.png"), "{skipped}");
    assert_eq!(chunk_lines(&s3, "rec_9f1c2a/events").await.len(), 2);
    assert_eq!(
        s3.get("rec_9f1c2a/100-alice-smith/webcam/000001000.png")
            .await
            .unwrap(),
        frames[2].png
    );
}

#[tokio::test]
async fn recalls_media_on_a_volume_is_copied_into_the_bucket_once() {
    let recall = RecallStandIn::start().await;
    let s3 = S3Server::start().await;
    let (alice_video, bob_audio) = (noise(300_000, 21), noise(9_000, 22));
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 100, "Alice Smith", 0.5, &alice_video)],
    );
    // Bob streams no frame: his folder holds only Recall's audio.
    recall.add_media(
        RECORDING,
        "audio_separate",
        "as_1",
        true,
        vec![audio_part("p_a", 200, "Bob", 2.0, &bob_audio)],
    );
    let mut on_disk = after_call::start(&recall, &[]).await;
    let base = on_disk.url("");
    let mut bot = on_disk.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    on_disk.wait_for_frames(ALICE_WEBCAM, 1).await;
    for (id, code, at) in [
        ("m1", "joining_call", "2026-11-21T10:00:00Z"),
        ("m2", "in_call_recording", "2026-11-21T10:01:00Z"),
    ] {
        let body = bot_status_webhook(BOT, code, None, at);
        assert_eq!(webhook(&base, id, &body).await, 200);
    }
    let body = media_webhook("recording.done", RECORDING, BOT, "rec");
    assert_eq!(webhook(&base, "m3", &body).await, 200);
    wait_for_fetch(&base, "video", "done").await;
    wait_for_fetch(&base, "audio", "done").await;
    let media_path = format!("/api/recordings/{RECORDING}/recall");
    let on_disk_media = on_disk.get_json(&media_path).await;
    on_disk.stop().await.unwrap();
    let data_dir = on_disk.data_dir.clone();

    let (succeeded, report) = copy_to_bucket(&s3, &data_dir, Settings::AfterTheSubcommand).await;
    assert!(succeeded, "{report}");
    let recall_counts = |report: &Value| {
        let recording = &report["recordings"][0];
        (
            recording["recall_parts"].clone(),
            recording["recall_bytes"].clone(),
            recording["recall_parts_already_there"].clone(),
            report["bot_statuses"].clone(),
        )
    };
    let bytes = alice_video.len() + bob_audio.len();
    assert_eq!(
        recall_counts(&report),
        (json!(2), json!(bytes), json!(0), json!(2)),
        "{report}"
    );

    // A server on the bucket lists and serves them as the folder's did, bot history too.
    let mut from_bucket = start(&s3, None, &[]).await;
    let media = from_bucket.get_json(&media_path).await;
    assert_eq!(media, on_disk_media);
    assert_eq!(
        media["bot_status"].as_array().unwrap().len(),
        2,
        "{media:#}"
    );
    let files: Vec<&Value> = media["participants"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["parts"].as_array().unwrap())
        .collect();
    assert_eq!(files.len(), 2, "{media:#}");
    for (file, sent) in files.into_iter().zip([&alice_video, &bob_audio]) {
        let url = file["url"].as_str().unwrap();
        let served = from_bucket.get(url).await;
        assert_eq!(served.status(), 200, "{url}");
        assert_eq!(
            served.bytes().await.unwrap().as_ref(),
            sent.as_slice(),
            "{url}"
        );
    }
    assert_eq!(
        from_bucket
            .get_json(&format!("/api/recordings/{RECORDING}"))
            .await["participants"]
            .as_array()
            .map(Vec::len),
        Some(2),
        "Bob, who only has Recall's audio, is a participant"
    );
    from_bucket.stop().await.unwrap();

    // The logs hold the folder's lines, unchanged; a second copy adds none but those
    // missing.
    let logs = [
        (
            "rec_9f1c2a/100-alice-smith/recall/media",
            "rec_9f1c2a/100-alice-smith/recall/media.jsonl",
        ),
        (
            "rec_9f1c2a/200-bob/recall/media",
            "rec_9f1c2a/200-bob/recall/media.jsonl",
        ),
        (
            ".recall/bots/bot_1/status",
            ".recall/bots/bot_1/status.jsonl",
        ),
    ];
    for (in_bucket, on_disk) in logs {
        assert_eq!(
            chunk_lines(&s3, in_bucket).await,
            read_jsonl(&data_dir.join(on_disk)),
            "{in_bucket}"
        );
    }
    // As if the first copy had stopped between Bob's file and its line: the file stays as it
    // is, and gets its line.
    for key in s3.keys().await {
        if key.starts_with("rec_9f1c2a/200-bob/recall/media/") {
            object_store::ObjectStoreExt::delete(&*s3.client(), &key.as_str().into())
                .await
                .unwrap();
        }
    }
    assert!(chunk_lines(&s3, logs[1].0).await.is_empty());
    let (succeeded, report) = copy_to_bucket(&s3, &data_dir, Settings::AfterTheSubcommand).await;
    assert!(succeeded, "{report}");
    assert_eq!(
        recall_counts(&report),
        (json!(0), json!(0), json!(2), json!(0)),
        "{report}"
    );
    for (in_bucket, on_disk) in logs {
        assert_eq!(
            chunk_lines(&s3, in_bucket).await,
            read_jsonl(&data_dir.join(on_disk)),
            "{in_bucket}"
        );
    }
}

#[tokio::test]
async fn copy_to_bucket_without_a_bucket_says_what_is_missing() {
    let data = tempfile::tempdir().unwrap();
    let output = recall_frames(
        &[],
        &[
            "--data-dir",
            data.path().to_str().unwrap(),
            "copy-to-bucket",
        ],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("copy-to-bucket needs BUCKET_NAME"),
        "{stderr}"
    );
}

fn frames_with_events() -> (Vec<TestFrame>, Vec<TestEvent>) {
    let frames = vec![
        TestFrame::new(0.5),
        TestFrame::new(12.5),
        TestFrame::new(1.0),
        TestFrame::new(0.75), // out of order
        TestFrame::new(1.0).kind("screenshare"),
        TestFrame::new(0.5).participant(200, None),
    ];
    let events = vec![
        TestEvent::new("join", 0.2),
        TestEvent::new("chat_message", 3.0).data(json!({"text": "hello", "to": "everyone"})),
    ];
    (frames, events)
}

async fn send_all(server: &TestServer, frames: &[TestFrame], events: &[TestEvent]) {
    let mut bot = server.connect().await;
    for event in events {
        bot.send_text(event.event()).await;
    }
    for frame in frames {
        bot.send_frame(frame).await;
    }
    bot.close().await;
}

#[tokio::test]
async fn frames_land_byte_identical_under_the_keys_of_the_disk_layout() {
    let s3 = S3Server::start().await;
    let mut server = start(&s3, Some("team/prod"), &[]).await;
    let (frames, events) = frames_with_events();
    let mut duplicate = TestFrame::new(1.0);
    duplicate.png = png(64, 36, 999_999);
    let mut all = frames.clone();
    all.push(duplicate.clone());
    send_all(&server, &all, &events).await;
    server.wait_for_frames(ALICE_WEBCAM, 4).await;
    assert_eq!(
        server.metric("recall_frames_frames_duplicate_total").await,
        1.0
    );
    assert_eq!(
        server
            .metric("recall_frames_sink_write_seconds_count{backend=\"bucket\"}")
            .await,
        7.0,
        "every frame written, the duplicate included, is timed"
    );
    assert_eq!(server.metric("recall_frames_bucket_up").await, 1.0);
    assert!(
        server
            .metric("recall_frames_bucket_last_success_timestamp_seconds")
            .await
            > 1.7e9
    );
    server.stop().await.expect("a clean shutdown");

    // The same frames and events through the file-system sink: the bucket holds the same
    // layout, with chunks where the disk has the files they stand for.
    let mut on_disk = TestServer::start().await;
    send_all(&on_disk, &all, &events).await;
    on_disk.wait_for_frames(ALICE_WEBCAM, 4).await;
    on_disk.stop().await.unwrap();
    let disk_files: BTreeSet<String> = tree(&on_disk.data_dir).into_iter().collect();

    let keys = s3.keys().await;
    let in_bucket: BTreeSet<String> = keys
        .iter()
        .map(|key| {
            key.strip_prefix("team/prod/")
                .unwrap_or_else(|| panic!("{key} is under the prefix"))
        })
        .filter_map(as_disk_path)
        .collect();
    assert_eq!(in_bucket, disk_files);
    for claim in [
        "rec_9f1c2a/participants/100.json",
        "rec_9f1c2a/participants/200.json",
    ] {
        assert!(keys.contains(&format!("team/prod/{claim}")), "{claim}");
    }
    assert_eq!(
        s3.get("team/prod/rec_9f1c2a/participants/100.json")
            .await
            .unwrap(),
        br#"{"folder":"100-alice-smith"}"#.as_slice()
    );

    // Byte-identical PNGs; the duplicate did not replace the first frame of its millisecond.
    for frame in &frames {
        let folder = if frame.participant == 100 {
            "100-alice-smith"
        } else {
            "200"
        };
        let key = format!(
            "team/prod/rec_9f1c2a/{folder}/{}/{}",
            frame.kind,
            frame.file_name()
        );
        assert_eq!(s3.get(&key).await.expect("saved"), frame.png, "{key}");
    }

    // The manifest chunks list each frame once, as frames.jsonl lines do.
    let manifest = chunk_lines(&s3, "team/prod/rec_9f1c2a/100-alice-smith/webcam/frames").await;
    let listed: BTreeMap<String, &Value> = manifest
        .iter()
        .map(|line| (line["file"].as_str().unwrap().to_owned(), line))
        .collect();
    assert_eq!(manifest.len(), 4);
    assert_eq!(
        listed.keys().cloned().collect::<Vec<_>>(),
        [
            "000000500.png",
            "000000750.png",
            "000001000.png",
            "000012500.png"
        ]
    );
    let line = listed["000012500.png"];
    assert_eq!(
        (
            &line["relative"],
            &line["absolute"],
            &line["width"],
            &line["height"],
            &line["bytes"]
        ),
        (
            &json!(12.5),
            &json!("2026-11-21T10:00:12.5Z"),
            &json!(64),
            &json!(36),
            &json!(frames[1].png.len())
        )
    );
    assert!(line.get("recovered").is_none());

    let participant: Value = serde_json::from_slice(
        &s3.get("team/prod/rec_9f1c2a/100-alice-smith/participant.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(participant, TestEvent::new("join", 0.0).participant_value());
    let summary: Value =
        serde_json::from_slice(&s3.get("team/prod/rec_9f1c2a/recording.json").await.unwrap())
            .unwrap();
    assert_eq!(
        summary["recording"]["metadata"],
        json!({"team": "research"})
    );
    assert_eq!(summary["bot"]["id"], "bot_1");
    assert_eq!(summary["first_frame"]["relative"], 0.5);
    assert_eq!(summary["last_frame"]["relative"], 12.5);

    let recorded = chunk_lines(&s3, "team/prod/rec_9f1c2a/events").await;
    let kinds: Vec<&str> = recorded
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["participant_events.join", "participant_events.chat_message"]
    );
    assert_eq!(
        recorded[1]["data"],
        json!({"text": "hello", "to": "everyone"})
    );
}

/// The issue's reproduction: two servers on one bucket, manifests every 500 ms. Server A saves
/// frame 5.0 of a new stream about 0.8 s into a second; server B opens the same stream with
/// frame 5.1 a quarter of a second later. The bucket's listing says frame 5.0 was written at
/// the start of its second, a second before B looks, which is the settling time: read at its
/// word, B would rebuild a line for a frame A is about to list, and readers other than this
/// server would see the frame twice.
#[tokio::test]
async fn a_second_server_leaves_a_live_writers_frame_alone() {
    let s3 = S3Server::start().await;
    let interval = ["--bucket-manifest-interval", "500ms"];
    let mut a = start(&s3, None, &interval).await;
    let mut b = start(&s3, None, &interval).await;
    let mut bot_a = a.connect().await;
    let mut bot_b = b.connect().await;
    let into_second = jiff::Timestamp::now().as_millisecond().rem_euclid(1000) as u64;
    tokio::time::sleep(std::time::Duration::from_millis(
        (1800 - into_second) % 1000,
    ))
    .await;
    let sent = std::time::Instant::now();
    bot_a.send_frame(&TestFrame::new(5.0)).await;
    eventually("server A saves frame 5.0", || async {
        a.metric("recall_frames_frames_saved_total{kind=\"webcam\"}")
            .await
            >= 1.0
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(250).saturating_sub(sent.elapsed())).await;
    bot_b.send_frame(&TestFrame::new(5.1)).await;
    eventually("server B saves frame 5.1", || async {
        b.metric("recall_frames_frames_saved_total{kind=\"webcam\"}")
            .await
            >= 1.0
    })
    .await;
    // Past B's second look at the frames it found without a line (two intervals after its
    // stream opened), then both flush what they hold.
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    bot_a.close().await;
    bot_b.close().await;
    a.stop().await.unwrap();
    b.stop().await.unwrap();

    let lines = chunk_lines(&s3, "rec_9f1c2a/100-alice-smith/webcam/frames").await;
    let files: Vec<&str> = lines.iter().map(|l| l["file"].as_str().unwrap()).collect();
    assert_eq!(
        files.iter().collect::<BTreeSet<_>>(),
        BTreeSet::from([&"000005000.png", &"000005100.png"])
    );
    assert_eq!(files.len(), 2, "each frame listed once: {lines:?}");
    assert!(
        lines.iter().all(|l| l.get("recovered").is_none()),
        "no line rebuilt: {lines:?}"
    );
}

#[tokio::test]
async fn two_instances_record_one_meeting_together_without_loss_or_overwrite() {
    let s3 = S3Server::start().await;
    let mut one = start(&s3, None, &[]).await;
    let mut two = start(&s3, None, &[]).await;

    // Both see participant 100 for the first time at once, under different names: both must
    // pick one folder.
    let mut bot_one = one.connect().await;
    let mut bot_two = two.connect().await;
    let first_one = TestFrame::new(0.5);
    let first_two = TestFrame::new(1.0).participant(100, Some("Alice S."));
    tokio::join!(
        bot_one.send_frame(&first_one),
        bot_two.send_frame(&first_two)
    );

    // The rest of the meeting, split between the instances, as a bot that reconnected to
    // another machine would. Frames 20.0 to 22.0 reach both at once (a resend racing the
    // original): each is saved once, by one of them, and a duplicate for the other.
    let seed =
        |relative: f64, instance: u32| png(64, 36, (relative * 1000.0) as u32 * 10 + instance);
    let mut sent: BTreeMap<u64, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    for i in 3..50u32 {
        let relative = f64::from(i) * 0.5;
        let mut frame = TestFrame::new(relative);
        if (40..=44).contains(&i) {
            let (a, b) = (seed(relative, 1), seed(relative, 2));
            frame.png = a.clone();
            let mut other = frame.clone();
            other.png = b.clone();
            tokio::join!(bot_one.send_frame(&frame), bot_two.send_frame(&other));
            sent.insert((relative * 1000.0) as u64, (a, b));
        } else {
            frame.png = seed(relative, 0);
            let bot = if i % 2 == 0 {
                &mut bot_one
            } else {
                &mut bot_two
            };
            bot.send_frame(&frame).await;
            sent.insert((relative * 1000.0) as u64, (frame.png.clone(), frame.png));
        }
    }
    // Arrival order across machines is the order the machines received events in.
    bot_one.send_text(TestEvent::new("join", 0.2).event()).await;
    eventually("the join is recorded", || async {
        one.metric("recall_frames_participant_events_recorded_total")
            .await
            == 1.0
    })
    .await;
    bot_two
        .send_text(TestEvent::new("speech_on", 4.0).event())
        .await;
    bot_one.close().await;
    bot_two.close().await;
    let unique = sent.len() + 2; // and the two first frames
    one.wait_for_frames(ALICE_WEBCAM, unique as u64).await;
    two.wait_for_frames(ALICE_WEBCAM, unique as u64).await;

    let saved =
        |text: &str| metric_value(text, "recall_frames_frames_saved_total{kind=\"webcam\"}");
    let duplicates = |text: &str| metric_value(text, "recall_frames_frames_duplicate_total");
    let (m1, m2) = (one.metrics().await, two.metrics().await);
    assert_eq!(
        saved(&m1) + saved(&m2),
        unique as f64,
        "each frame saved once"
    );
    assert_eq!(
        duplicates(&m1) + duplicates(&m2),
        5.0,
        "the racing copies are duplicates"
    );
    assert_eq!(metric_value(&m1, "recall_frames_sink_errors_total"), 0.0);
    assert_eq!(metric_value(&m2, "recall_frames_sink_errors_total"), 0.0);

    // One participant folder, named by whichever instance claimed it first.
    let keys = s3.keys().await;
    let folders: BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("rec_9f1c2a/")?.split('/').next())
        .filter(|f| f.starts_with("100"))
        .collect();
    assert_eq!(folders.len(), 1, "{folders:?}");
    let folder = *folders.iter().next().unwrap();
    assert!(["100-alice-smith", "100-alice-s"].contains(&folder));

    // Every frame is in the bucket once, as one instance sent it, and listed once.
    let stream = format!("rec_9f1c2a/{folder}/webcam");
    for (ms, (a, b)) in &sent {
        let stored = s3
            .get(&format!("{stream}/{ms:09}.png"))
            .await
            .expect("saved");
        assert!(
            stored == *a || stored == *b,
            "{ms} is one of the copies sent"
        );
    }
    for instance in [&one, &two] {
        let page = instance
            .get_json(&format!("{ALICE_WEBCAM}/frames?limit=1000"))
            .await;
        assert_eq!(page["total"], unique);
        let listed: Vec<u64> = page["frames"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["relative_ms"].as_u64().unwrap())
            .collect();
        let expected: Vec<u64> = [500, 1000]
            .into_iter()
            .chain(sent.keys().copied())
            .collect();
        assert_eq!(listed, expected);
        for frame in page["frames"].as_array().unwrap() {
            let ms = frame["relative_ms"].as_u64().unwrap();
            let stored = s3.get(&format!("{stream}/{ms:09}.png")).await.unwrap();
            assert_eq!(
                frame["bytes"],
                stored.len(),
                "{ms}: the line of the copy kept"
            );
        }
        // Both instances' participant events, in arrival order.
        let recording = instance.get_json("/api/recordings/rec_9f1c2a").await;
        let events: Vec<&str> = recording["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            events,
            ["participant_events.join", "participant_events.speech_on"]
        );
    }

    one.stop().await.unwrap();
    two.stop().await.unwrap();
    // recording.json covers both instances' frames, whichever wrote it last.
    let summary: Value =
        serde_json::from_slice(&s3.get("rec_9f1c2a/recording.json").await.unwrap()).unwrap();
    assert_eq!(summary["first_frame"]["relative"], 0.5);
    assert_eq!(summary["last_frame"]["relative"], 24.5);
}

#[tokio::test]
async fn any_instance_browses_the_bucket_index_recording_frames_and_zip() {
    let s3 = S3Server::start().await;
    let mut writer = start(&s3, None, &[]).await;
    let (frames, events) = frames_with_events();
    send_all(&writer, &frames, &events).await;
    writer.wait_for_frames(ALICE_WEBCAM, 4).await;
    writer.stop().await.unwrap();

    // A fresh instance that never saw these frames.
    let reader = start(&s3, None, &[]).await;
    let index = reader.get_json("/api/recordings").await;
    assert_eq!(index, json!({"recordings": [recording_entry(6)]}));

    let recording = reader.get_json("/api/recordings/rec_9f1c2a").await;
    assert_eq!(recording["metadata"], json!({"team": "research"}));
    let alice = &recording["participants"][0];
    assert_eq!(
        (&alice["name"], &alice["folder"], &alice["is_host"]),
        (
            &json!("Alice Smith"),
            &json!("100-alice-smith"),
            &json!(true)
        )
    );
    assert_eq!(alice["streams"][0]["frames"], 4);
    assert_eq!(alice["streams"][1]["type"], "screenshare");
    assert_eq!(recording["participants"][1]["folder"], "200");
    assert_eq!(recording["events"][1]["data"]["text"], "hello");

    let page = reader
        .get_json(&format!("{ALICE_WEBCAM}/frames?limit=2"))
        .await;
    assert_eq!(page["total"], 4);
    assert_eq!(page["frames"][1]["relative_ms"], 750);
    assert_eq!(
        page["next"],
        "/api/recordings/rec_9f1c2a/100/webcam/frames?after=750&limit=2"
    );
    let rest = reader.get_json(page["next"].as_str().unwrap()).await;
    assert_eq!(rest["frames"][1]["relative_ms"], 12500);
    assert_eq!(rest["next"], Value::Null);

    // A frame: the exact bytes, with the bucket's entity tag for caches.
    let client = reqwest::Client::new();
    let url = reader.url(&format!("{ALICE_WEBCAM}/000012500.png"));
    let response = client.get(&url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/png");
    let etag = response.headers()["etag"].clone();
    assert_eq!(response.bytes().await.unwrap(), frames[1].png);
    let again = client
        .get(&url)
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(
        reader
            .get(&format!("{ALICE_WEBCAM}/000099000.png"))
            .await
            .status(),
        404
    );
    assert_eq!(reader.get("/api/recordings/nothing").await.status(), 404);

    // The ZIP: each PNG as saved, and the manifest as frames.jsonl, in time order.
    let body = reader
        .get(&format!("{ALICE_WEBCAM}.zip"))
        .await
        .bytes()
        .await
        .unwrap();
    let archive = Unzipped::new(&body);
    assert_eq!(
        archive.names(),
        [
            "rec_9f1c2a-100-webcam/000000500.png",
            "rec_9f1c2a-100-webcam/000000750.png",
            "rec_9f1c2a-100-webcam/000001000.png",
            "rec_9f1c2a-100-webcam/000012500.png",
            "rec_9f1c2a-100-webcam/frames.jsonl",
        ]
    );
    for frame in frames
        .iter()
        .filter(|f| f.participant == 100 && f.kind == "webcam")
    {
        let name = format!("rec_9f1c2a-100-webcam/{}", frame.file_name());
        assert_eq!(archive.file(&name).bytes, frame.png, "{name}");
    }
    let manifest = &archive.file("rec_9f1c2a-100-webcam/frames.jsonl").bytes;
    let files: Vec<Value> = std::str::from_utf8(manifest)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["file"].clone())
        .collect();
    assert_eq!(
        files,
        [
            "000000500.png",
            "000000750.png",
            "000001000.png",
            "000012500.png"
        ]
    );

    // The pages, rendered from the bucket.
    for (path, text) in [
        ("/", "rec_9f1c2a"),
        ("/recordings/rec_9f1c2a", "Alice Smith"),
        ("/recordings/rec_9f1c2a/100/webcam", "000000500.png"),
    ] {
        let response = reader.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(response.text().await.unwrap().contains(text), "{path}");
    }
}

#[tokio::test]
async fn an_unreachable_bucket_is_retried_and_reported_then_recording_resumes() {
    let logs = LogCapture::start();
    let mut s3 = S3Server::start().await;
    let server = start(&s3, None, &[]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(0.5)).await;
    server.wait_for_frames(ALICE_WEBCAM, 1).await;

    s3.stop().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    bot.send_frame(&TestFrame::new(1.5)).await;
    eventually("the bucket is reported down", || async {
        let metrics = server.metrics().await;
        metric_value(&metrics, "recall_frames_bucket_up") == 0.0
            && metric_value(&metrics, "recall_frames_bucket_retries_total") >= 2.0
            && metric_value(
                &metrics,
                "recall_frames_bucket_requests_failed_total{kind=\"unreachable\"}",
            ) >= 2.0
    })
    .await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 503);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "degraded");
    assert!(
        health["reason"].as_str().unwrap().contains("bucket"),
        "{health}"
    );
    let text = logs.text();
    assert!(text.contains("the bucket is failing"), "{text}");
    assert!(text.contains("bucket request failed; retrying"), "{text}");

    s3.restart().await;
    for frame in [TestFrame::new(1.0), TestFrame::new(1.5)] {
        let key = format!("rec_9f1c2a/100-alice-smith/webcam/{}", frame.file_name());
        eventually(&format!("{key} is saved after the outage"), || async {
            s3.get(&key).await.is_some_and(|png| png == frame.png)
        })
        .await;
    }
    server.wait_for_frames(ALICE_WEBCAM, 3).await;
    assert_eq!(server.get("/healthz").await.status(), 200);
    assert_eq!(server.metric("recall_frames_bucket_up").await, 1.0);
    assert_eq!(server.metric("recall_frames_sink_errors_total").await, 0.0);
    assert!(logs.text().contains("the bucket answers again"));

    // Throttling: 503 Slow Down answers are retried too, and counted by kind.
    s3.slow_down(3);
    bot.send_frame(&TestFrame::new(2.0)).await;
    server.wait_for_frames(ALICE_WEBCAM, 4).await;
    assert!(
        server
            .metric("recall_frames_bucket_requests_failed_total{kind=\"throttled\"}")
            .await
            >= 3.0
    );
    assert_eq!(server.metric("recall_frames_sink_errors_total").await, 0.0);
    bot.close().await;
}

#[tokio::test]
async fn a_frame_retried_past_the_retry_timeout_is_given_up_and_counted() {
    let logs = LogCapture::start();
    let mut s3 = S3Server::start().await;
    let server = start(&s3, None, &["--bucket-retry-timeout", "300ms"]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(0.5)).await;
    server.wait_for_frames(ALICE_WEBCAM, 1).await;
    s3.stop().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    eventually("the frame is given up", || async {
        server.metric("recall_frames_sink_errors_total").await == 1.0
    })
    .await;
    assert_eq!(
        server
            .metric("recall_frames_storage_failures_total{backend=\"bucket\",kind=\"unreachable\"}")
            .await,
        1.0
    );
    assert!(logs.text().contains("frame not saved"));
    // The connection and the stream carry on once the bucket is back.
    s3.restart().await;
    bot.send_frame(&TestFrame::new(1.5)).await;
    server.wait_for_frames(ALICE_WEBCAM, 2).await;
    assert!(
        s3.get("rec_9f1c2a/100-alice-smith/webcam/000001000.png")
            .await
            .is_none()
    );
    bot.close().await;
}

#[tokio::test]
async fn start_up_degrades_on_an_unreachable_bucket_and_stops_on_wrong_settings() {
    // Unreachable: the server starts, degraded, and recovers when the bucket comes up.
    let mut s3 = S3Server::start().await;
    s3.stop().await;
    let server = start(&s3, None, &[]).await;
    let health = server.get("/healthz").await;
    assert_eq!(health.status(), 503);
    s3.restart().await;
    eventually("/healthz is ok once the bucket answers", || async {
        server.get("/healthz").await.status() == 200
    })
    .await;

    // Mistakes that never mend stop the start-up, saying what to fix.
    let run = |args: Vec<String>| async move {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec!["--data-dir".to_owned(), dir.path().display().to_string()];
        all.extend(args);
        let config = Config::from_args(all).expect("the flags parse");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let error = recall_frames::run(config, listener, std::future::pending())
            .await
            .expect_err("start-up fails");
        format!("{error:#}")
    };
    let mut wrong_secret = s3.flags(None);
    let at = wrong_secret
        .iter()
        .position(|f| f == "--bucket-secret-access-key")
        .unwrap();
    wrong_secret[at + 1] = "not-the-secret-key-000".into();
    let error = run(wrong_secret).await;
    assert!(error.contains("refused the credentials"), "{error}");
    assert!(error.contains("AWS_SECRET_ACCESS_KEY"), "{error}");

    let mut missing = s3.flags(None);
    missing[1] = "no-such-bucket".into();
    let error = run(missing).await;
    assert!(
        error.contains("bucket no-such-bucket does not exist"),
        "{error}"
    );

    let without_keys = vec!["--bucket-name".to_owned(), "frames".to_owned()];
    let error = run(without_keys).await;
    assert!(
        error.contains("AWS_SECRET_ACCESS_KEY must both be set"),
        "{error}"
    );

    for (flag, value) in [
        ("--bucket-name", "Bad_Bucket"),
        ("--bucket-prefix", "a/../b"),
        ("--bucket-endpoint", "ftp://storage"),
        ("--bucket-region", "US East"),
    ] {
        let parsed = Config::from_args(["--bucket-name", "frames", flag, value]);
        assert!(parsed.is_err(), "{flag} {value}");
    }
}

// Multi-threaded: the S3 server runs in this process and must answer the binary while this
// thread waits for the binary's address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_carries_on_in_the_bucket_even_after_kill_9() {
    let s3 = S3Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let env = |manifest_interval: &str| -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = s3
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        env.push(("WS_TOKEN".into(), WS_TOKEN.into()));
        env.push(("BUCKET_MANIFEST_INTERVAL".into(), manifest_interval.into()));
        env
    };
    let spawn = |env: Vec<(String, String)>| {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        BinaryServer::spawn(data.path(), &env, &[])
    };
    let stream = "rec_9f1c2a/100-alice-smith/webcam";

    // The real binary, configured by the variables `fly storage create` sets, never adding
    // frames to its manifest before it is killed.
    let mut first = spawn(env("1h"));
    let mut bot = Bot::connect(&first.ws_url(WS_TOKEN)).await;
    let early = [
        TestFrame::new(0.5),
        TestFrame::new(1.0),
        TestFrame::new(1.5),
    ];
    for frame in &early {
        bot.send_frame(frame).await;
    }
    for frame in &early {
        let key = format!("{stream}/{}", frame.file_name());
        eventually(&format!("{key} is uploaded"), || async {
            s3.get(&key).await.is_some()
        })
        .await;
    }
    first.kill9();
    drop(bot);
    let killed = first.output();
    assert!(
        killed.contains("recordings go to bucket recall-frames-test"),
        "{killed}"
    );
    assert!(
        chunk_lines(&s3, &format!("{stream}/frames"))
            .await
            .is_empty()
    );

    // After the kill: the frames saved before it are listed again, and a resent frame is a
    // duplicate that does not replace the saved one.
    let mut second = spawn(env("100ms"));
    let mut bot = Bot::connect(&second.ws_url(WS_TOKEN)).await;
    let mut resent = TestFrame::new(1.0);
    resent.png = png(64, 36, 424_242);
    bot.send_frame(&resent).await;
    bot.send_frame(&TestFrame::new(2.0)).await;
    // Listed: the three frames saved before the kill and the one sent after it.
    second.wait_for_frames(ALICE_WEBCAM, 4).await;
    assert_eq!(
        s3.get(&format!("{stream}/000001000.png")).await.unwrap(),
        early[1].png
    );
    bot.close().await;
    assert!(second.terminate(), "a clean shutdown exits 0");
    let lines = chunk_lines(&s3, &format!("{stream}/frames")).await;
    let recovered: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l["recovered"] == true)
        .map(|l| l["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        recovered,
        BTreeSet::from(["000000500.png", "000001000.png", "000001500.png"])
    );
    let rebuilt = lines.iter().find(|l| l["file"] == "000000500.png").unwrap();
    assert_eq!(
        (&rebuilt["width"], &rebuilt["bytes"]),
        (&json!(64), &json!(early[0].png.len()))
    );

    // A clean restart goes on with nothing to rebuild; logging everything, it shows no
    // bucket credential.
    let mut logging_all = env("100ms");
    logging_all.push(("RUST_LOG".into(), "trace".into()));
    let mut third = spawn(logging_all);
    let mut bot = Bot::connect(&third.ws_url(WS_TOKEN)).await;
    bot.send_frame(&TestFrame::new(2.5)).await;
    // Listed: the frame sent after the restart, with the four before it.
    third.wait_for_frames(ALICE_WEBCAM, 5).await;
    bot.close().await;
    assert!(third.terminate());
    let lines = chunk_lines(&s3, &format!("{stream}/frames")).await;
    assert_eq!(lines.iter().filter(|l| l["recovered"] == true).count(), 3);
    let output = third.output();
    assert!(!output.contains("rebuilt manifest lines"), "{output}");
    assert!(
        output.contains("hyper_util::client"),
        "trace logs of the bucket's HTTP client"
    );
    assert!(
        !output.contains(s3::SECRET_KEY),
        "the secret key is never logged"
    );
    assert!(!output.contains("Signature="), "nor a request's signature");
    assert!(!output.contains(s3::ACCESS_KEY), "nor the access key id");
}

/// What the no-clobber guarantee rests on, checked against the test store itself: a second
/// create-only write of a key is refused (412), and so is a rewrite at a stale version.
#[tokio::test]
async fn the_test_store_refuses_a_second_create_and_a_stale_rewrite() {
    use object_store::{PutMode, PutOptions, UpdateVersion};
    let s3 = S3Server::start().await;
    let client = s3.client();
    let key = object_store::path::Path::from("rec/100/webcam/000000500.png");
    let first = client
        .put_opts(&key, b"first".to_vec().into(), PutMode::Create.into())
        .await
        .expect("the first create");
    let second = client
        .put_opts(&key, b"second".to_vec().into(), PutMode::Create.into())
        .await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "{second:?}"
    );
    assert_eq!(s3.get(key.as_ref()).await.unwrap(), b"first".as_slice());

    let version = UpdateVersion {
        e_tag: first.e_tag.clone(),
        version: None,
    };
    let mode = |version: &UpdateVersion| PutOptions::from(PutMode::Update(version.clone()));
    client
        .put_opts(&key, b"rewritten".to_vec().into(), mode(&version))
        .await
        .expect("a rewrite at the current version");
    let stale = client
        .put_opts(&key, b"stale".to_vec().into(), mode(&version))
        .await;
    assert!(
        matches!(stale, Err(object_store::Error::Precondition { .. })),
        "{stale:?}"
    );
    assert_eq!(s3.get(key.as_ref()).await.unwrap(), b"rewritten".as_slice());
}

#[tokio::test]
async fn audio_lands_in_the_bucket_in_bounded_pieces_and_reads_back_whole() {
    let s3 = S3Server::start().await;
    let mut server = start(&s3, None, &[]).await;
    let mut bot = server.connect().await;
    // 10.5 s in 100 ms chunks: more than one 10 s piece.
    let chunks: Vec<TestAudio> = (0..105)
        .map(|i| TestAudio::at_sample(16_000 + i * 1_600, 1_600, (i * 13) as i16))
        .collect();
    let mut expected = vec![0i16; 16_000];
    for chunk in &chunks {
        bot.send_text(chunk.event()).await;
        expected.extend_from_slice(&chunk.samples);
    }
    let api = "/api/recordings/rec_9f1c2a/100/audio";
    let url = server.url(api);
    // The bucket holds every chunk.
    wait_for_field(&url, "chunks", 105).await;
    assert_eq!(track_wav(&server, api).await, expected);
    bot.close().await;
    server.stop().await.expect("a clean shutdown");

    // In the bucket: complete WAV objects of at most 10 s, named by their first millisecond.
    let folder = "rec_9f1c2a/100-alice-smith/audio";
    let pieces: Vec<String> = s3
        .keys()
        .await
        .into_iter()
        .filter(|key| key.starts_with(folder) && key.ends_with(".wav"))
        .collect();
    assert_eq!(
        pieces,
        [
            format!("{folder}/000001000.wav"),
            format!("{folder}/000011000.wav")
        ]
    );
    let first = s3.get(&pieces[0]).await.unwrap();
    assert_eq!(first.len(), 44 + 2 * 160_000, "a full piece: 10 s");
    assert_eq!(wav_samples(&first), expected[16_000..176_000]);
    assert_eq!(
        wav_samples(&s3.get(&pieces[1]).await.unwrap()),
        expected[176_000..]
    );
    let lines = chunk_lines(&s3, &format!("{folder}/audio")).await;
    assert_eq!(lines.iter().filter(|l| l["kind"] == "chunk").count(), 105);

    // Another instance reads it back the same, and carries on without rewriting the past.
    let server = start(&s3, None, &[]).await;
    let mut bot = server.connect().await;
    bot.send_text(chunks[104].event()).await;
    let more = TestAudio::at_sample(16_000 + 105 * 1_600, 1_600, 77);
    bot.send_text(more.event()).await;
    expected.extend_from_slice(&more.samples);
    let url = server.url(api);
    // The next chunk is in the bucket.
    wait_for_field(&url, "chunks", 106).await;
    assert_eq!(track_wav(&server, api).await, expected);
    assert_eq!(
        server
            .metric("recall_frames_audio_chunks_duplicate_total")
            .await,
        1.0
    );
}

/// Large media (Recall's downloads, exports) is written from a file without being held in
/// memory: in the folder by a copy renamed into place, in the bucket in parts through a
/// staging object and a create-only copy. Either way the object is byte-identical, a second
/// write of the key changes nothing, and no staging object is left.
#[tokio::test]
async fn a_large_file_is_created_whole_and_once_in_the_folder_and_the_bucket() {
    use recall_frames::store::{Created, Key};
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Three upload parts and a bit: the multipart path, with a short last part.
    let first: Vec<u8> = (0..(8 << 20) * 3 + 12_345)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let (first_file, other_file) = (dir.path().join("first.mp4"), dir.path().join("other.mp4"));
    std::fs::write(&first_file, &first).unwrap();
    std::fs::write(&other_file, b"not the first").unwrap();
    let folder = Config::from_args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .expect("folder configuration");
    let bucket = Config::from_args(s3.flags(Some("large"))).expect("bucket configuration");
    let key = Key::of(["rec_large", "100", "recall", "webcam-000000000.mp4"]);
    for config in [folder, bucket] {
        let store = recall_frames::testing::open_store(&config).await.unwrap();
        let backend = store.backend();
        let created = store.create_from_file(&key, &first_file).await.unwrap();
        assert_eq!(created, Created::New, "{backend}");
        let again = store.create_from_file(&key, &other_file).await.unwrap();
        assert_eq!(again, Created::Existed, "{backend}");
        let stored = store.get(&key).await.unwrap().expect("the object");
        assert!(
            stored.bytes == first,
            "{backend}: the stored object differs"
        );
        let keys: Vec<String> = store
            .list(&Key::root())
            .await
            .unwrap()
            .into_iter()
            .map(|listed| listed.key.as_str().to_owned())
            .collect();
        assert_eq!(keys, [key.as_str()], "{backend}: only the object is left");
    }
}

/// The storage check's listing, streamed: the same objects as a listing from the folder
/// and from the bucket (paged through, 1,000 keys a page), and from the bucket a page that
/// fails ends the stream with the error, not retried, rather than passing for the whole.
#[tokio::test]
async fn a_streamed_listing_gives_what_a_listing_gives_and_ends_with_a_failed_page() {
    use futures_util::{StreamExt as _, TryStreamExt as _};
    use recall_frames::store::{Key, Listed};
    let s3 = S3Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let folder = Config::from_args(["--data-dir", dir.path().join("data").to_str().unwrap()])
        .expect("folder configuration");
    let bucket = Config::from_args(s3.flags(Some("paged"))).expect("bucket configuration");
    for config in [folder, bucket] {
        let store = recall_frames::testing::open_store(&config).await.unwrap();
        let backend = store.backend();
        futures_util::stream::iter(0..1_500)
            .for_each_concurrent(16, |i| {
                let store = store.clone();
                async move {
                    let key = Key::of(["rec_paged", "100", "webcam"])
                        .join(&format!("{:09}.png", i * 500));
                    store.put(&key, vec![0; i % 7].into()).await.unwrap();
                }
            })
            .await;
        let listed = store.list(&Key::root()).await.unwrap();
        assert!(listed.len() >= 1_500, "{backend}: {}", listed.len());
        let mut streamed: Vec<Listed> = store
            .list_stream(&Key::root())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        streamed.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(streamed, listed, "{backend}");
        if backend != "bucket" {
            continue;
        }
        // The first page read, the second refused once: the stream ends with that failure.
        let mut streamed = store.list_stream(&Key::root()).await.unwrap();
        assert!(streamed.next().await.unwrap().is_ok());
        s3.slow_down(1);
        let rest: Vec<_> = streamed.collect().await;
        let (failed, read): (Vec<_>, Vec<_>) = rest.into_iter().partition(Result::is_err);
        assert_eq!(read.len(), 999, "the rest of the first page");
        assert_eq!(failed.len(), 1, "then the failure, and nothing after it");
        let error = failed.into_iter().next().unwrap().unwrap_err();
        assert_eq!(error.kind(), "throttled", "{error}");
    }
}
