//! Per-participant and mixed audio (issue 12): chunks sent as Recall sends them land
//! sample-exact on the recording's timeline in WAV pieces that a real WAV reader plays, with
//! gaps, duplicates, overlaps and late chunks handled; a restart and a `kill -9` lose and
//! corrupt nothing; the API serves a track as one WAV with byte ranges; bad input is refused
//! with reasons and disturbs nothing.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::common::*;

const ALICE_AUDIO: &str = "/api/recordings/rec_9f1c2a/100/audio";
const ALICE_FOLDER: &str = "100-alice-smith";

fn audio_dir(data_dir: &Path, folder: &str) -> PathBuf {
    data_dir.join(RECORDING).join(folder).join("audio")
}

/// Every WAV piece of an audio folder, by name, as a WAV reader reads it.
fn pieces(dir: &Path) -> Vec<(String, Vec<i16>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".wav"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let samples = wav_samples(&std::fs::read(dir.join(&name)).unwrap());
            (name, samples)
        })
        .collect()
}

#[tokio::test]
async fn pcm_round_trips_sample_exact_onto_the_recordings_timeline() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    // Alice: two chunks back to back 1 s in, half a second of nothing (a gap), one more,
    // then three seconds of nothing (a new segment). Bob: one chunk of his own.
    let first = TestAudio::at_sample(16_000, 320, 100);
    let second = TestAudio::at_sample(16_320, 320, 1000);
    let after_gap = TestAudio::at_sample(24_640, 320, 2000);
    let new_segment = TestAudio::at_sample(72_968, 320, 3000);
    let bob = TestAudio::at_sample(8_000, 160, 4000).participant(200);
    for chunk in [&first, &second, &after_gap, &new_segment, &bob] {
        bot.send_text(chunk.event()).await;
    }
    wait_for_chunks(&server, ALICE_AUDIO, 4).await;
    wait_for_chunks(&server, "/api/recordings/rec_9f1c2a/200/audio", 1).await;

    let expected = timeline(&[&first, &second, &after_gap, &new_segment]);
    assert_eq!(track_wav(&server, ALICE_AUDIO).await, expected);
    assert_eq!(
        track_wav(&server, "/api/recordings/rec_9f1c2a/200/audio").await,
        timeline(&[&bob])
    );

    let listing = server.get_json(ALICE_AUDIO).await;
    assert_eq!(listing["sample_rate"], 16_000);
    let segments: Vec<(u64, u64, Value)> = listing["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["start_sample"].as_u64().unwrap(),
                s["end_sample"].as_u64().unwrap(),
                s["files"].clone(),
            )
        })
        .collect();
    assert_eq!(
        segments,
        [
            (16_000, 24_960, serde_json::json!(["000001000.wav"])),
            (72_960, 73_288, serde_json::json!(["000004560.wav"])),
        ],
        "a new segment after 3 s of silence, starting on its whole millisecond"
    );
    let gaps: Vec<(u64, u64)> = listing["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["start_sample"].as_u64().unwrap(),
                g["end_sample"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        gaps,
        [(16_640, 24_640)],
        "the half second inside the segment"
    );

    // On disk: pieces a WAV reader plays as they are, each at its named millisecond.
    let dir = audio_dir(&server.data_dir, ALICE_FOLDER);
    for (name, samples) in pieces(&dir) {
        let at = name.trim_end_matches(".wav").parse::<usize>().unwrap() * 16;
        assert_eq!(samples, expected[at..at + samples.len()], "{name}");
    }
    let kinds: Vec<String> = read_jsonl(&dir.join("audio.jsonl"))
        .iter()
        .map(|line| line["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "segment", "chunk", "chunk", "gap", "chunk", "segment", "chunk"
        ]
    );
    assert_eq!(
        pieces(&audio_dir(&server.data_dir, "200"))[0].0,
        "000000500.wav"
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(&metrics, "recall_frames_audio_chunks_saved_total"),
        5.0
    );
    assert_eq!(
        metric_value(&metrics, "recall_frames_audio_seconds_saved_total"),
        (4 * 320 + 160) as f64 / 16_000.0
    );
}

#[tokio::test]
async fn duplicates_overlaps_and_late_chunks_keep_what_was_written_first() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    let first = TestAudio::at_sample(0, 320, 100);
    let third = TestAudio::at_sample(640, 320, 300);
    for chunk in [&first, &third, &first] {
        bot.send_text(chunk.event()).await;
    }
    // Half over the first chunk (kept as it was), half into the silence after it.
    let overlapping = TestAudio::at_sample(160, 320, 5000);
    // Late into what is left of the silence, and over the start of the third chunk.
    let late = TestAudio::at_sample(480, 200, 7000);
    for chunk in [&overlapping, &late] {
        bot.send_text(chunk.event()).await;
    }
    wait_for_chunks(&server, ALICE_AUDIO, 4).await;

    let mut expected = timeline(&[&first, &third]);
    expected[320..480].copy_from_slice(&overlapping.samples[160..]);
    expected[480..640].copy_from_slice(&late.samples[..160]);
    assert_eq!(track_wav(&server, ALICE_AUDIO).await, expected);
    let listing = server.get_json(ALICE_AUDIO).await;
    assert_eq!(
        listing["gaps"],
        serde_json::json!([]),
        "the silence is filled"
    );
    let metrics = server.metrics().await;
    assert_eq!(
        metric_value(&metrics, "recall_frames_audio_chunks_duplicate_total"),
        1.0
    );
    assert_eq!(
        metric_value(&metrics, "recall_frames_audio_samples_overlapping_total"),
        (160 + 40) as f64
    );
}

#[tokio::test]
async fn a_restart_and_a_reconnect_carry_on_in_the_same_track() {
    let data = tempfile::tempdir().unwrap();
    let first = TestAudio::at_sample(0, 320, 100);
    let second = TestAudio::at_sample(320, 320, 1000);
    let third = TestAudio::at_sample(640, 320, 2000);
    {
        let mut server = TestServer::start_in(data.path(), &[]).await;
        let mut bot = server.connect().await;
        for chunk in [&first, &second] {
            bot.send_text(chunk.event()).await;
        }
        wait_for_chunks(&server, ALICE_AUDIO, 2).await;
        bot.close().await;
        server.stop().await.unwrap();
    }
    let server = TestServer::start_in(data.path(), &[]).await;
    let mut bot = server.connect().await;
    // Recall resends what it was sending when the connection dropped, then goes on.
    for chunk in [&second, &third] {
        bot.send_text(chunk.event()).await;
    }
    wait_for_chunks(&server, ALICE_AUDIO, 3).await;
    assert_eq!(
        track_wav(&server, ALICE_AUDIO).await,
        timeline(&[&first, &second, &third])
    );
    assert_eq!(
        server
            .metric("recall_frames_audio_chunks_duplicate_total")
            .await,
        1.0
    );
    let dir = audio_dir(&server.data_dir, ALICE_FOLDER);
    assert_eq!(pieces(&dir).len(), 1, "one segment, one piece");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_segment_then_restart_every_wav_plays_and_matches_its_manifest() {
    let data = tempfile::tempdir().unwrap();
    let env = [("WS_TOKEN", WS_TOKEN), ("RUST_LOG", "info")];
    let mut binary = BinaryServer::spawn(data.path(), &env, &[]);
    let chunks: Vec<TestAudio> = (0..200)
        .map(|i| TestAudio::at_sample(i * 320, 320, (i * 7) as i16))
        .collect();
    let mut bot = Bot::connect(&binary.ws_url(WS_TOKEN)).await;
    for chunk in &chunks[..150] {
        bot.send_text(chunk.event()).await;
    }
    let url = binary.url(ALICE_AUDIO);
    eventually("some chunks are saved", || async {
        reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    binary.kill9();
    drop(bot);

    let dir = audio_dir(data.path(), ALICE_FOLDER);
    let sent = timeline(&chunks.iter().collect::<Vec<_>>());
    // Right after the kill: every piece plays, and holds exactly what was sent there.
    for (name, samples) in pieces(&dir) {
        let at = name.trim_end_matches(".wav").parse::<usize>().unwrap() * 16;
        assert_eq!(samples, sent[at..at + samples.len()], "{name}");
    }
    // What a kill between a write and its header's update leaves: samples past the length
    // the header gives, and no manifest line for them.
    let piece = dir.join("000000000.wav");
    let before = (std::fs::metadata(&piece).unwrap().len() as usize - 44) / 2;
    let extra = &sent[before..before + 100];
    {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&piece)
            .unwrap();
        for sample in extra {
            file.write_all(&sample.to_le_bytes()).unwrap();
        }
    }
    assert!(
        wav_samples(&std::fs::read(&piece).unwrap()).len() <= before,
        "the header is stale: a reader still plays what it gives"
    );

    let mut binary = BinaryServer::spawn(data.path(), &env, &[]);
    // Repaired at start-up, before anyone speaks again: the header gives every sample, and
    // the samples without a line have one.
    // The header and the line are two writes: wait for both, reading whole lines only.
    let manifest = dir.join("audio.jsonl");
    eventually(
        "the stale header is repaired and its samples have a line",
        || async {
            let text = std::fs::read_to_string(&manifest).unwrap_or_default();
            let last_line_recovered = text.ends_with('\n')
                && text
                    .lines()
                    .last()
                    .and_then(|line| serde_json::from_str::<Value>(line).ok())
                    .is_some_and(|line| line["recovered"] == true);
            last_line_recovered
                && wav_samples(&std::fs::read(&piece).unwrap()).len() == before + 100
        },
    )
    .await;
    assert_eq!(
        wav_samples(&std::fs::read(&piece).unwrap()),
        sent[..before + 100]
    );
    let lines = read_jsonl(&manifest);
    let last = lines.last().unwrap();
    assert_eq!(
        last["start_sample"].as_u64().unwrap() + last["samples"].as_u64().unwrap(),
        (before + 100) as u64
    );
    let mut bot = Bot::connect(&binary.ws_url(WS_TOKEN)).await;
    // Recall resends everything from where it was; the server keeps what it has.
    for chunk in &chunks {
        bot.send_text(chunk.event()).await;
    }
    let url = binary.url(ALICE_AUDIO);
    // Every sample on the timeline.
    wait_for_field(&url, "duration", 200.0 * 320.0 / 16_000.0).await;
    bot.close().await;
    assert!(binary.terminate(), "a clean exit");

    // Every piece plays, whole, and what each manifest line lists is there, as sent.
    let mut all = Vec::new();
    for (name, samples) in pieces(&dir) {
        let at = name.trim_end_matches(".wav").parse::<usize>().unwrap() * 16;
        assert_eq!(at, all.len(), "pieces follow each other: {name}");
        all.extend(samples);
    }
    assert_eq!(all, sent);
    let lines = read_jsonl(&dir.join("audio.jsonl"));
    let mut listed = vec![false; sent.len()];
    for line in lines.iter().filter(|l| l["kind"] == "chunk") {
        let start = line["start_sample"].as_u64().unwrap() as usize;
        let samples = line["samples"].as_u64().unwrap() as usize;
        listed[start..start + samples].fill(true);
    }
    assert!(listed.iter().all(|&l| l), "every sample stored is listed");
    assert!(
        lines.iter().any(|l| l["recovered"] == true),
        "the samples without a line got one, marked recovered"
    );
}

#[tokio::test]
async fn the_mixed_track_is_saved_at_the_recording_level() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    let mixed = TestAudio::at_sample(1_600, 320, 42).mixed();
    bot.send_text(mixed.event()).await;
    let api = "/api/recordings/rec_9f1c2a/mixed/audio";
    wait_for_chunks(&server, api, 1).await;
    assert_eq!(track_wav(&server, api).await, timeline(&[&mixed]));
    let on_disk = pieces(&server.data_dir.join(RECORDING).join("audio"));
    assert_eq!(
        on_disk,
        [("000000100.wav".to_owned(), mixed.samples.clone())]
    );
    let summary = read_json(&server.data_dir.join(RECORDING).join("recording.json"));
    assert_eq!(summary["audio_separate"]["id"], "as_1");
}

#[tokio::test]
async fn a_browser_seeks_the_track_with_byte_ranges() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    let chunk = TestAudio::at_sample(16_000, 1_600, 9);
    bot.send_text(chunk.event()).await;
    wait_for_chunks(&server, ALICE_AUDIO, 1).await;
    let url = server.url(&format!("{ALICE_AUDIO}.wav"));
    let whole = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(whole.len(), 44 + 2 * 17_600);
    let client = reqwest::Client::new();
    for (range, from, to) in [
        ("bytes=0-99", 0, 100),
        ("bytes=31990-32100", 31_990, 32_101),
        ("bytes=35000-", 35_000, whole.len()),
        ("bytes=-44", whole.len() - 44, whole.len()),
    ] {
        let response = client
            .get(&url)
            .header("range", range)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206, "{range}");
        assert_eq!(response.headers()["accept-ranges"], "bytes");
        assert_eq!(
            response.headers()["content-range"],
            format!("bytes {from}-{}/{}", to - 1, whole.len()).as_str()
        );
        assert_eq!(response.bytes().await.unwrap(), whole[from..to], "{range}");
    }
    let past = client
        .get(&url)
        .header("range", "bytes=999999-")
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), 416);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{}", whole.len()).as_str()
    );
    assert_eq!(
        server
            .get("/api/recordings/rec_9f1c2a/300/audio.wav")
            .await
            .status(),
        404
    );
    assert_eq!(
        server
            .get("/api/recordings/rec_9f1c2a/bob/audio")
            .await
            .status(),
        400
    );
}

#[tokio::test]
async fn bad_audio_is_refused_with_reasons_and_saved_audio_is_undisturbed() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    let good = TestAudio::at_sample(0, 320, 100);
    bot.send_text(good.event()).await;
    wait_for_chunks(&server, ALICE_AUDIO, 1).await;
    let before =
        std::fs::read(audio_dir(&server.data_dir, ALICE_FOLDER).join("000000000.wav")).unwrap();

    let with = |pointer: &str, value: Value| {
        let mut event = TestAudio::at_sample(0, 320, 9999).event_value();
        *event.pointer_mut(pointer).unwrap() = value;
        event.to_string()
    };
    use base64::Engine as _;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let cases = [
        (
            with("/data/data/buffer", b64(&[1, 2, 3]).into()),
            "bad_audio_length",
        ),
        (with("/data/data/buffer", "".into()), "bad_audio_length"),
        (
            with("/data/data/buffer", "not base64!".into()),
            "invalid_base64",
        ),
        (
            with("/data/data/buffer", b64(&vec![0; 2 * 160_001]).into()),
            "audio_too_long",
        ),
        (
            with("/data/data/timestamp/relative", (-1.0).into()),
            "bad_timestamp",
        ),
        (
            with("/data/data/timestamp/relative", 1e12.into()),
            "bad_timestamp",
        ),
        (with("/data/data/participant", Value::Null), "wrong_shape"),
        (with("/data/data/participant/id", "abc".into()), "unsafe_id"),
        (with("/data/recording/id", "../x".into()), "unsafe_id"),
    ];
    for (event, reason) in &cases {
        bot.send_text(event.clone()).await;
        let reply = bot.next_json().await;
        assert_eq!(reply["error"]["reason"], *reason, "{reply}");
    }
    let metrics = server.metrics().await;
    assert_eq!(refused(&metrics, "bad_audio_length"), 2.0);
    assert_eq!(refused(&metrics, "audio_too_long"), 1.0);
    // The connection is still open and recording.
    let next = TestAudio::at_sample(320, 320, 500);
    bot.send_text(next.event()).await;
    wait_for_chunks(&server, ALICE_AUDIO, 2).await;
    let after =
        std::fs::read(audio_dir(&server.data_dir, ALICE_FOLDER).join("000000000.wav")).unwrap();
    assert_eq!(
        after[44..before.len()],
        before[44..],
        "the saved samples are untouched"
    );
    assert_eq!(
        track_wav(&server, ALICE_AUDIO).await,
        timeline(&[&good, &next])
    );
}

/// A second of a square wave at `amplitude`: its RMS is the amplitude.
fn square_second(amplitude: i16) -> Vec<i16> {
    (0..16_000)
        .map(|i| if i % 2 == 0 { amplitude } else { -amplitude })
        .collect()
}

#[tokio::test]
async fn levels_show_where_a_track_is_loud_and_where_it_is_silent() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    // Alice: a second of digital silence, a loud second, a second never sent (a gap filled
    // with zeros), then a quiet second: four seconds on the recording's timeline.
    let chunks = [
        TestAudio::new(0.0, vec![0; 16_000]),
        TestAudio::new(1.0, square_second(16_384)),
        TestAudio::new(3.0, square_second(3_277)),
    ];
    for chunk in &chunks {
        bot.send_text(chunk.event()).await;
    }
    wait_for_chunks(&server, ALICE_AUDIO, 3).await;

    let levels = server
        .get_json(&format!("{ALICE_AUDIO}/levels?buckets=4"))
        .await;
    assert_eq!(levels["duration"], 4.0);
    assert_eq!(levels["buckets"], 4);
    assert_eq!(levels["bucket_seconds"], 1.0);
    assert_eq!(levels["participant"], 100);
    let got: Vec<f64> = levels["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_f64().unwrap())
        .collect();
    assert_eq!(
        got,
        [0.0, 0.5, 0.0, 0.1],
        "RMS of each second, of full scale"
    );

    // Finer buckets split each second; the default is 200 buckets.
    let fine = server
        .get_json(&format!("{ALICE_AUDIO}/levels?buckets=8"))
        .await;
    assert_eq!(
        fine["levels"],
        serde_json::json!([0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.1, 0.1])
    );
    let default = server.get_json(&format!("{ALICE_AUDIO}/levels")).await;
    let default = default["levels"].as_array().unwrap();
    assert_eq!(default.len(), 200);
    assert_eq!(default[50], 0.5, "the loud second is buckets 50 to 99");
    assert_eq!(default[150], 0.1);
    assert_eq!(default[120], 0.0);

    // A chunk more, and the same question gets a new answer: the track is five seconds now.
    bot.send_text(TestAudio::new(4.0, square_second(16_384)).event())
        .await;
    wait_for_chunks(&server, ALICE_AUDIO, 4).await;
    let grown = server
        .get_json(&format!("{ALICE_AUDIO}/levels?buckets=4"))
        .await;
    assert_eq!(grown["duration"], 5.0);
    assert_eq!(grown["bucket_seconds"], 1.25);
    // The last bucket, 3.75 s to 5 s: a quarter second quiet, then a loud second.
    let expected = ((0.25 * 0.1f64.powi(2) + 1.0 * 0.5f64.powi(2)) / 1.25).sqrt();
    let last = grown["levels"][3].as_f64().unwrap();
    assert!(
        (last - expected).abs() < 1e-3,
        "{expected} at the end: {grown}"
    );
    let fifths = server
        .get_json(&format!("{ALICE_AUDIO}/levels?buckets=5"))
        .await;
    assert_eq!(
        fifths["levels"],
        serde_json::json!([0.0, 0.5, 0.0, 0.1, 0.5])
    );
    // A late chunk filling the silence at 2 s changes no piece's size: seen all the same.
    bot.send_text(TestAudio::new(2.0, square_second(16_384)).event())
        .await;
    wait_for_chunks(&server, ALICE_AUDIO, 5).await;
    let filled = server
        .get_json(&format!("{ALICE_AUDIO}/levels?buckets=5"))
        .await;
    assert_eq!(
        filled["levels"],
        serde_json::json!([0.0, 0.5, 0.5, 0.1, 0.5]),
        "{filled}"
    );

    for bad in ["0", "4001", "many", "-1"] {
        let response = server
            .get(&format!("{ALICE_AUDIO}/levels?buckets={bad}"))
            .await;
        assert_eq!(response.status(), 400, "buckets={bad}");
        let body = response.text().await.unwrap();
        assert!(
            body.contains("buckets must be a whole number from 1 to 4000"),
            "{body}"
        );
    }
    let none = server
        .get("/api/recordings/rec_9f1c2a/mixed/audio/levels")
        .await;
    assert_eq!(none.status(), 404, "no mixed audio was sent");
    let nobody = server
        .get("/api/recordings/rec_9f1c2a/555/audio/levels")
        .await;
    assert_eq!(nobody.status(), 404);
}

#[tokio::test]
async fn a_recordings_json_links_each_participants_audio_and_the_mixed_track() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    // Alice speaks in two segments (3 s of silence between); Bob only shows his webcam.
    bot.send_text(TestAudio::new(0.5, vec![1_000; 8_000]).event())
        .await;
    bot.send_text(TestAudio::new(4.0, vec![1_000; 16_000]).event())
        .await;
    bot.send_frame(&TestFrame::new(1.0).participant(200, Some("Bob Okafor")))
        .await;
    server
        .wait_for_frames("/api/recordings/rec_9f1c2a/200/webcam", 1)
        .await;
    wait_for_chunks(&server, ALICE_AUDIO, 2).await;

    let recording = server.get_json("/api/recordings/rec_9f1c2a").await;
    assert_eq!(recording["mixed_audio"], Value::Null, "no mixed audio yet");
    let participant = |id: u64| {
        recording["participants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == id)
            .unwrap_or_else(|| panic!("participant {id} in {recording:#}"))
            .clone()
    };
    assert_eq!(
        participant(100)["audio"],
        serde_json::json!({
            "url": ALICE_AUDIO,
            "wav_url": format!("{ALICE_AUDIO}.wav"),
            "levels_url": format!("{ALICE_AUDIO}/levels"),
            "duration": 5.0,
            "segments": 2,
        })
    );
    assert_eq!(participant(200)["audio"], Value::Null);
    // The links lead where they say, and agree with the track's own JSON.
    let track = server.get_json(ALICE_AUDIO).await;
    assert_eq!(track["duration"], 5.0);
    assert_eq!(track["segments"].as_array().unwrap().len(), 2);

    bot.send_text(TestAudio::at_sample(1_600, 320, 42).mixed().event())
        .await;
    wait_for_chunks(&server, "/api/recordings/rec_9f1c2a/mixed/audio", 1).await;
    let recording = server.get_json("/api/recordings/rec_9f1c2a").await;
    assert_eq!(
        recording["mixed_audio"],
        serde_json::json!({
            "url": "/api/recordings/rec_9f1c2a/mixed/audio",
            "wav_url": "/api/recordings/rec_9f1c2a/mixed/audio.wav",
            "levels_url": "/api/recordings/rec_9f1c2a/mixed/audio/levels",
            "duration": 0.12,
            "segments": 1,
        })
    );
}
