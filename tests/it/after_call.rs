//! After the call (issue 13): Recall's webhooks, signed like Svix's, and each participant's
//! async media fetched from the Recall stand-in (paginated lists, parts JSON, real MP4 and
//! MP3 files made by ffmpeg, expiring download URLs) into the recording, on disk and in a
//! bucket, by webhook, by API and by command; and a restart in the middle of a download.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::common::recall_api::media::{
    Content, PartSpec, bot_status_webhook, deliver_webhook, media_webhook,
};
use crate::common::recall_api::{RECALL_API_KEY, RecallStandIn};
use crate::common::s3::S3Server;
use crate::common::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
/// The bot the test frames name, too.
pub(crate) const BOT: &str = "bot_1";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The server's flags for the stand-in: key, base, webhook secret, quick retries.
pub(crate) fn recall_flags(recall: &RecallStandIn) -> Vec<String> {
    [
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &recall.url(),
        "--recall-webhook-secret",
        SECRET,
        "--recall-media-backoff",
        "50ms",
        "--recall-media-attempts",
        "4",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The flags of a server on `s3`'s bucket, its manifests written every 100 ms; none (a
/// folder) without one.
pub(crate) fn store_flags(s3: Option<&S3Server>) -> Vec<String> {
    let Some(s3) = s3 else {
        return Vec::new();
    };
    let mut flags = s3.flags(None);
    flags.extend(["--bucket-manifest-interval".into(), "100ms".into()]);
    flags
}

pub(crate) async fn start(recall: &RecallStandIn, extra: &[String]) -> TestServer {
    let mut args: Vec<String> = recall_flags(recall)
        .chunks(2)
        .filter(|pair| !extra.contains(&pair[0]))
        .flatten()
        .cloned()
        .collect();
    args.extend(extra.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_with(&args).await
}

/// A small real MP4 (or MP3) made by ffmpeg from one of its test sources; `None` (and the
/// test skipped, outside CI) without ffmpeg.
pub(crate) fn ffmpeg(input: &str, out: &str) -> Option<Vec<u8>> {
    if !need_ffmpeg() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(out);
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-f", "lavfi", "-i", input, "-t", "1"])
        .args(if out.ends_with(".mp4") {
            &["-pix_fmt", "yuv420p"][..]
        } else {
            &["-c:a", "libmp3lame"][..]
        })
        .arg(&path)
        .status()
        .expect("ffmpeg runs");
    assert!(made.success(), "ffmpeg could not make {out} from {input}");
    Some(std::fs::read(&path).unwrap())
}

pub(crate) fn video_part(
    id: &str,
    participant: u64,
    name: &str,
    relative: f64,
    bytes: &[u8],
) -> PartSpec {
    PartSpec {
        id: id.into(),
        participant_id: participant,
        name: Some(name.into()),
        kind: Some("webcam"),
        relative,
        duration: 1.0,
        content: Content::bytes(bytes.to_vec()),
        content_type: "video/mp4",
    }
}

pub(crate) fn audio_part(
    id: &str,
    participant: u64,
    name: &str,
    relative: f64,
    bytes: &[u8],
) -> PartSpec {
    PartSpec {
        kind: None,
        content_type: "audio/mpeg",
        ..video_part(id, participant, name, relative, bytes)
    }
}

/// Random bytes that stand for a file where only its bytes matter.
pub(crate) fn noise(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
        .collect()
}

pub(crate) async fn webhook(server: &str, id: &str, body: &Value) -> u16 {
    deliver_webhook(
        &format!("{server}/webhooks/recall"),
        SECRET,
        id,
        now(),
        body,
        false,
    )
    .await
    .status()
    .as_u16()
}

/// Waits until the recording's fetch of `kind` is `state`, and returns the media JSON.
pub(crate) async fn wait_for_fetch(base: &str, kind: &str, state: &str) -> Value {
    let url = format!("{base}/api/recordings/{RECORDING}/recall");
    let mut last = Value::Null;
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    loop {
        if let Ok(response) = reqwest::get(&url).await
            && response.status() == 200
        {
            last = response.json().await.unwrap();
            if last["fetch"][kind]["state"] == state {
                return last;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the {kind} fetch never became {state}: {last:#}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn jobs_left(data_dir: &Path) -> Vec<PathBuf> {
    let mut left: Vec<PathBuf> = ["jobs", "downloads"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(data_dir.join(".recall-media").join(dir)).ok())
        .flatten()
        .map(|entry| entry.unwrap().path())
        .collect();
    left.sort();
    left
}

fn recall_dir(data_dir: &Path, folder: &str) -> PathBuf {
    data_dir.join(RECORDING).join(folder).join("recall")
}

#[tokio::test]
async fn a_signed_video_separate_done_stores_each_participants_mp4_byte_for_byte_with_its_manifest()
{
    let (Some(alice), Some(bob), Some(alice_later)) = (
        ffmpeg("testsrc=size=160x120:rate=10", "a.mp4"),
        ffmpeg("smptebars=size=160x120:rate=10", "b.mp4"),
        ffmpeg("testsrc2=size=160x120:rate=10", "c.mp4"),
    ) else {
        return;
    };
    let recall = RecallStandIn::start().await;
    // Two objects: the list has two pages. Bob never streams a frame.
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![
            video_part("p_a1", 100, "Alice Smith", 0.5, &alice),
            video_part("p_b1", 200, "Bob", 2.0, &bob),
        ],
    );
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_2",
        true,
        vec![video_part("p_a2", 100, "Alice Smith", 30.0, &alice_later)],
    );
    let server = start(&recall, &[]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    server
        .wait_for_frames(&format!("/api/recordings/{RECORDING}/100/webcam"), 1)
        .await;

    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    assert_eq!(webhook(&server.url(""), "msg_1", &body).await, 200);
    let media = wait_for_fetch(&server.url(""), "video", "done").await;

    let alice_dir = recall_dir(&server.data_dir, "100-alice-smith");
    let bob_dir = recall_dir(&server.data_dir, "200-bob");
    for (path, sent) in [
        (alice_dir.join("webcam-500.mp4"), &alice),
        (alice_dir.join("webcam-30000.mp4"), &alice_later),
        (bob_dir.join("webcam-2000.mp4"), &bob),
    ] {
        assert_eq!(
            std::fs::read(&path).ok().as_ref(),
            Some(sent),
            "{}",
            path.display()
        );
        assert_eq!(
            streams(&path)["streams"][0]["codec_name"],
            "h264",
            "{}",
            path.display()
        );
    }
    // Bob, who streamed nothing, has his folder and participant.json too.
    let bob_json = read_json(
        &server
            .data_dir
            .join(RECORDING)
            .join("200-bob/participant.json"),
    );
    assert_eq!(
        (bob_json["id"].clone(), bob_json["name"].clone()),
        (json!(200), json!("Bob"))
    );

    let manifest = read_jsonl(&alice_dir.join("media.jsonl"));
    assert_eq!(manifest.len(), 2, "{manifest:#?}");
    let first = manifest
        .iter()
        .find(|line| line["part_id"] == "p_a1")
        .unwrap();
    assert_eq!(first["media_id"], "vs_1");
    assert_eq!(first["type"], "webcam");
    assert_eq!(first["source"], "video_separate_mp4");
    assert_eq!(first["file"], "webcam-500.mp4");
    assert_eq!(first["start"]["relative"], 0.5);
    assert_eq!(first["start"]["absolute"], absolute_time(0.5));
    assert_eq!(first["duration"], 1.0);
    assert_eq!(first["bytes"], alice.len());
    assert_eq!(first["sha256"], Content::bytes(alice.clone()).sha256());

    // The same as JSON, with the files served where it says.
    assert_eq!(media["bot_id"], BOT);
    assert_eq!(media["fetch"]["video"]["parts"], 3);
    assert_eq!(media["fetch"]["video"]["fetched"], 3);
    assert_eq!(media["fetch"]["audio"], Value::Null);
    let participants = media["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 2);
    let url = participants[1]["parts"][0]["url"].as_str().unwrap();
    assert_eq!(
        url,
        format!("/api/recordings/{RECORDING}/200/recall/webcam-2000.mp4")
    );
    let served = server.get(url).await;
    assert_eq!(served.headers()["content-type"], "video/mp4");
    assert_eq!(served.bytes().await.unwrap().as_ref(), bob.as_slice());
    let ranged = reqwest::Client::new()
        .get(server.url(url))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206, "players can seek");
    assert_eq!(ranged.bytes().await.unwrap().as_ref(), &bob[..100]);
    assert_eq!(
        server
            .get(&format!(
                "/api/recordings/{RECORDING}/200/recall/..%2Fparticipant.json"
            ))
            .await
            .status(),
        404
    );

    assert_eq!(
        server
            .metric("recall_frames_recall_media_parts_fetched_total{kind=\"video\"}")
            .await,
        3.0
    );
    assert_eq!(
        server
            .metric("recall_frames_recall_webhooks_total{reason=\"media\"}")
            .await,
        1.0
    );
    assert!(
        jobs_left(&server.data_dir).is_empty(),
        "{:?}",
        jobs_left(&server.data_dir)
    );
}

#[tokio::test]
async fn forged_stale_and_unsigned_webhooks_get_401_and_change_nothing() {
    let recall = RecallStandIn::start().await;
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_a1", 100, "Alice Smith", 0.5, &noise(1000, 1))],
    );
    let server = start(&recall, &[]).await;
    let url = server.url("/webhooks/recall");
    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    let client = reqwest::Client::new();

    let unsigned = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(unsigned.status(), 401);
    let forged = deliver_webhook(&url, OTHER_SECRET, "msg_f", now(), &body, false).await;
    assert_eq!(forged.status(), 401);
    let stale = deliver_webhook(&url, SECRET, "msg_s", now() - 600, &body, false).await;
    assert_eq!(stale.status(), 401);
    // Signed, then changed on the way.
    let signature = recall_frames::testing::signature::sign_payload(
        &recall_frames::testing::signature::SigningSecret::parse(SECRET).unwrap(),
        "msg_t",
        &now().to_string(),
        body.to_string().as_bytes(),
    );
    let tampered = body.to_string().replace("vs_1", "vs_9");
    let tampered = client
        .post(&url)
        .header("webhook-id", "msg_t")
        .header("webhook-timestamp", now().to_string())
        .header("webhook-signature", signature)
        .body(tampered)
        .send()
        .await
        .unwrap();
    assert_eq!(tampered.status(), 401);

    // Nothing was queued, listed or written.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(jobs_left(&server.data_dir).is_empty());
    assert!(!server.data_dir.join(RECORDING).exists());
    assert!(recall.received().is_empty(), "{:?}", recall.received());
    assert_eq!(
        server
            .metric("recall_frames_recall_webhooks_refused_total{reason=\"signature\"}")
            .await,
        4.0
    );

    // The older svix-* headers, correctly signed, are taken.
    let svix = deliver_webhook(&url, SECRET, "msg_ok", now(), &body, true).await;
    assert_eq!(svix.status(), 200);
    wait_for_fetch(&server.url(""), "video", "done").await;

    // A server with no webhook secret takes none.
    let unconfigured = TestServer::start().await;
    let answer = deliver_webhook(
        &unconfigured.url("/webhooks/recall"),
        SECRET,
        "msg_u",
        now(),
        &body,
        false,
    )
    .await;
    assert_eq!(answer.status(), 503);
}

/// A server that takes webhooks but has no RECALL_API_KEY could not fetch the media they
/// announce: it answers them 503, naming the key, so that Recall sends them again until the
/// key is set, and says so once at start-up. Bot statuses are taken; nothing is created
/// for the media. An unsigned webhook's refusal is logged as a webhook's, not an upgrade's.
#[tokio::test]
async fn media_webhooks_wait_with_a_503_until_recall_api_key_is_set() {
    let logs = LogCapture::start();
    let mut keyless = TestServer::start_with(&["--recall-webhook-secret", SECRET]).await;
    let base = keyless.url("");
    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    let answer = deliver_webhook(
        &keyless.url("/webhooks/recall"),
        SECRET,
        "msg_k",
        now(),
        &body,
        false,
    )
    .await;
    assert_eq!(answer.status(), 503);
    let error: Value = answer.json().await.unwrap();
    let error = error["error"].as_str().unwrap();
    assert!(error.contains("RECALL_API_KEY is not set"), "{error}");
    assert!(error.contains("fetch Recall's media"), "{error}");
    let status = bot_status_webhook(BOT, "in_call_recording", None, "2026-11-21T10:01:00Z");
    assert_eq!(webhook(&base, "msg_b", &status).await, 200);
    let unsigned = reqwest::Client::new()
        .post(keyless.url("/webhooks/recall"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    keyless.stop().await.unwrap();
    assert!(!keyless.data_dir.join(RECORDING).exists());
    assert!(jobs_left(&keyless.data_dir).is_empty());
    let text = logs.text();
    assert_eq!(
        text.matches("Recall's media cannot be fetched without it")
            .count(),
        1,
        "{text}"
    );
    assert!(text.contains("the webhook is not signed"), "{text}");
    assert!(!text.contains("the upgrade is not signed"), "{text}");

    // With the key, Recall's next attempt at the same delivery is taken.
    let recall = RecallStandIn::start().await;
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_a1", 100, "Alice Smith", 0.5, &noise(1000, 1))],
    );
    let flags = recall_flags(&recall);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = TestServer::start_in(&keyless.data_dir, &flags).await;
    assert_eq!(webhook(&server.url(""), "msg_k", &body).await, 200);
    wait_for_fetch(&server.url(""), "video", "done").await;
}

/// A recording that only Recall's media fills is listed as soon as its fetch is queued,
/// and one that has nothing answers 404, its Recall media included.
#[tokio::test]
async fn a_recording_with_only_recalls_media_is_listed_and_an_unknown_one_is_404() {
    let recall = RecallStandIn::start().await;
    // Recall is still making it: queued, nothing stored yet.
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        false,
        vec![video_part("p_a1", 100, "Alice Smith", 0.5, &noise(1000, 1))],
    );
    let server = start(&recall, &[]).await;
    let base = server.url("");
    let unknown = reqwest::get(format!("{base}/api/recordings/rec_x/recall"))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    assert_eq!(webhook(&base, "msg_1", &body).await, 200);
    wait_for_fetch(&base, "video", "done").await;
    let list = server.get_json("/api/recordings").await;
    let ids: Vec<&str> = list["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, [RECORDING], "{list}");
}

#[tokio::test]
async fn duplicate_and_out_of_order_deliveries_keep_each_status_once_in_recalls_order() {
    let recall = RecallStandIn::start().await;
    let (video, audio) = (noise(5000, 2), noise(3000, 3));
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 100, "Alice Smith", 0.25, &video)],
    );
    // Recall is still making the audio when the bot is done.
    recall.add_media(
        RECORDING,
        "audio_separate",
        "as_1",
        false,
        vec![audio_part("p_a", 100, "Alice Smith", 0.0, &audio)],
    );
    recall.add_bot(BOT, &[RECORDING]);
    let server = start(&recall, &[]).await;
    let base = server.url("");
    let status = |code, sub, at| bot_status_webhook(BOT, code, sub, at);
    // Out of order, and some delivered twice (Svix retries keep the webhook id).
    let deliveries = [
        (
            "m2",
            status("in_call_recording", None, "2026-11-21T10:01:00Z"),
        ),
        ("m1", status("joining_call", None, "2026-11-21T10:00:00Z")),
        (
            "m2",
            status("in_call_recording", None, "2026-11-21T10:01:00Z"),
        ),
        ("m4", status("done", None, "2026-11-21T10:31:00Z")),
        (
            "m3",
            status(
                "fatal",
                Some("bot_kicked_from_call"),
                "2026-11-21T10:30:00Z",
            ),
        ),
        ("m4", status("done", None, "2026-11-21T10:31:00Z")),
    ];
    for (id, body) in &deliveries {
        assert_eq!(webhook(&base, id, body).await, 200);
    }
    // bot.done fetches the bot's recordings, both kinds; the media webhooks, delivered
    // twice and once more under another id, add nothing.
    let media = wait_for_fetch(&base, "audio", "done").await;
    assert_eq!(media["fetch"]["audio"]["pending_at_recall"], 1, "{media:#}");
    assert_eq!(media["fetch"]["audio"]["parts"], 0);
    wait_for_fetch(&base, "video", "done").await;
    recall.finish_media("as_1");
    let audio_done = media_webhook("audio_separate.done", RECORDING, BOT, "as_1");
    assert_eq!(webhook(&base, "m7", &audio_done).await, 200);
    eventually("the audio is stored", || async {
        recall_dir(&server.data_dir, "100-alice-smith")
            .join("audio-0.mp3")
            .exists()
    })
    .await;
    let video_done = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    for id in ["m5", "m5", "m6"] {
        assert_eq!(webhook(&base, id, &video_done).await, 200);
    }
    eventually("the queue is empty", || async {
        jobs_left(&server.data_dir).is_empty()
    })
    .await;
    let media_after = wait_for_fetch(&base, "video", "done").await;

    let codes: Vec<(Value, Value)> = media_after["bot_status"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["code"].clone(), s["sub_code"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (json!("joining_call"), Value::Null),
            (json!("in_call_recording"), Value::Null),
            (json!("fatal"), json!("bot_kicked_from_call")),
            (json!("done"), Value::Null),
        ]
    );
    assert_eq!(media["bot_id"], BOT);
    let folder = recall_dir(&server.data_dir, "100-alice-smith");
    assert_eq!(std::fs::read(folder.join("webcam-250.mp4")).unwrap(), video);
    assert_eq!(std::fs::read(folder.join("audio-0.mp3")).unwrap(), audio);
    let manifest = read_jsonl(&folder.join("media.jsonl"));
    assert_eq!(manifest.len(), 2, "each part listed once: {manifest:#?}");
    let downloads: Vec<_> = recall.downloads().into_iter().map(|d| d.part).collect();
    assert_eq!(
        downloads.len(),
        2,
        "each file downloaded once: {downloads:?}"
    );
    assert_eq!(
        server
            .metric("recall_frames_recall_webhooks_total{reason=\"duplicate\"}")
            .await,
        3.0
    );
}

#[tokio::test]
async fn a_download_cut_mid_way_is_fetched_again_with_a_fresh_url_and_stored_whole() {
    let recall = RecallStandIn::start().await;
    let video = noise(3 << 20, 4);
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 300, "Carmen", 12.0, &video)],
    );
    let server = start(&recall, &[]).await;
    // The first download dies after 1 MB, and its URL with it.
    recall.cut_next_download_after(1 << 20);
    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    assert_eq!(webhook(&server.url(""), "m1", &body).await, 200);
    wait_for_fetch(&server.url(""), "video", "done").await;

    let path = recall_dir(&server.data_dir, "300-carmen").join("webcam-12000.mp4");
    assert_eq!(std::fs::read(&path).unwrap(), video);
    let statuses: Vec<u16> = recall.downloads().iter().map(|d| d.status).collect();
    assert_eq!(
        statuses,
        vec![200, 200],
        "cut, then fetched again with a fresh URL"
    );
    assert!(
        server
            .metric("recall_frames_recall_media_part_attempts_failed_total{reason=\"incomplete\"}")
            .await
            + server
                .metric(
                    "recall_frames_recall_media_part_attempts_failed_total{reason=\"connection\"}"
                )
                .await
            >= 1.0
    );
    let manifest = read_jsonl(&path.with_file_name("media.jsonl"));
    assert_eq!(manifest.len(), 1);
    assert_eq!(manifest[0]["bytes"], video.len());

    // A URL that has expired before the download starts: a fresh listing, then the file.
    let audio = noise(2000, 5);
    recall.add_media(
        RECORDING,
        "audio_separate",
        "as_1",
        true,
        vec![audio_part("p_a", 300, "Carmen", 12.0, &audio)],
    );
    let status = reqwest::Client::new()
        .post(server.url(&format!("/api/recordings/{RECORDING}/fetch-media")))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
    wait_for_fetch(&server.url(""), "audio", "done").await;
    assert_eq!(
        std::fs::read(path.with_file_name("audio-12000.mp3")).unwrap(),
        audio
    );
}

#[tokio::test]
async fn a_part_that_never_downloads_marks_the_fetch_failed_and_keeps_nothing_half_written() {
    let recall = RecallStandIn::start().await;
    let video = noise(200_000, 6);
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 100, "Alice Smith", 1.0, &video)],
    );
    let server = start(&recall, &["--recall-media-attempts".into(), "2".into()]).await;
    // Every download is cut after 1 KB.
    recall.cut_every_download_after(1024);
    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    assert_eq!(webhook(&server.url(""), "m1", &body).await, 200);
    let media = wait_for_fetch(&server.url(""), "video", "failed").await;
    assert!(
        media["fetch"]["video"]["error"]
            .as_str()
            .unwrap()
            .contains("p_v"),
        "{media:#}"
    );
    assert!(
        !recall_dir(&server.data_dir, "100-alice-smith")
            .join("webcam-1000.mp4")
            .exists()
    );
    // The job's file goes just after the status says failed.
    eventually("given up: nothing left queued", || async {
        jobs_left(&server.data_dir).is_empty()
    })
    .await;
    assert_eq!(
        server
            .metric("recall_frames_recall_media_fetches_failed_total")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_restart_during_a_download_resumes_it_and_ends_with_whole_files_only() {
    let recall = RecallStandIn::start().await;
    let video = noise(6 << 20, 7);
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 100, "Alice Smith", 3.0, &video)],
    );
    recall.throttle_downloads(2 << 20);
    let data = tempfile::tempdir().unwrap();
    let flags = recall_flags(&recall);
    let mut args: Vec<&str> = vec!["--ws-token", WS_TOKEN];
    args.extend(flags.iter().map(String::as_str));
    let mut binary = BinaryServer::spawn(data.path(), &[], &args);
    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_1");
    assert_eq!(webhook(&binary.url(""), "m1", &body).await, 200);
    eventually("a megabyte has been downloaded", || async {
        recall.media_bytes_sent() > 1 << 20
    })
    .await;
    binary.kill9();

    let file = recall_dir(data.path(), "100-alice-smith").join("webcam-3000.mp4");
    assert!(
        !file.exists(),
        "no part of a file is stored before it is whole"
    );
    assert!(
        !recall_dir(data.path(), "100-alice-smith")
            .join("media.jsonl")
            .exists()
    );
    recall.throttle_downloads(200 << 20);
    let restarted = BinaryServer::spawn(data.path(), &[], &args);
    wait_for_fetch(&restarted.url(""), "video", "done").await;
    assert_eq!(std::fs::read(&file).unwrap(), video);
    assert_eq!(read_jsonl(&file.with_file_name("media.jsonl")).len(), 1);
    assert!(
        jobs_left(data.path()).is_empty(),
        "{:?}",
        jobs_left(data.path())
    );
    let stored: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        stored.len(),
        2,
        "the file and its manifest only: {stored:?}"
    );
}

#[tokio::test]
async fn in_a_bucket_the_parts_are_stored_byte_for_byte_under_their_participants() {
    let recall = RecallStandIn::start().await;
    let s3 = S3Server::start().await;
    let (video, audio) = (noise(40_000, 8), noise(9_000, 9));
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 200, "Bob", 4.5, &video)],
    );
    recall.add_media(
        RECORDING,
        "audio_separate",
        "as_1",
        true,
        vec![audio_part("p_a", 200, "Bob", 4.5, &audio)],
    );
    let server = start(&recall, &store_flags(Some(&s3))).await;
    let base = server.url("");
    let body = media_webhook("recording.done", RECORDING, BOT, "rec");
    assert_eq!(webhook(&base, "m1", &body).await, 200);
    wait_for_fetch(&base, "video", "done").await;
    let media = wait_for_fetch(&base, "audio", "done").await;

    let key = format!("{RECORDING}/200-bob/recall/webcam-4500.mp4");
    assert_eq!(s3.get(&key).await.as_deref(), Some(video.as_slice()));
    let key = format!("{RECORDING}/200-bob/recall/audio-4500.mp3");
    assert_eq!(s3.get(&key).await.as_deref(), Some(audio.as_slice()));
    let parts = media["participants"][0]["parts"].as_array().unwrap();
    assert_eq!(parts.len(), 2, "{media:#}");
    for part in parts {
        let served = server.get(part["url"].as_str().unwrap()).await;
        assert_eq!(served.status(), 200);
        let bytes = served.bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, part["bytes"].as_u64().unwrap());
    }
    assert!(
        s3.keys()
            .await
            .iter()
            .all(|key| !key.contains("staging") || !key.contains("recall")),
        "no staging objects left: {:?}",
        s3.keys().await
    );
}

/// The ZIP of a recording holds what was fetched from Recall after the call, each file
/// byte for byte at its path, with each participant's `media.jsonl` and the fetches'
/// statuses. A file that no manifest lists (a fetch that stopped before its line) is not
/// part of the recording yet and stays out.
async fn the_recording_zip_holds_recalls_files(s3: Option<&S3Server>) {
    let recall = RecallStandIn::start().await;
    let (alice_video, bob_video, alice_audio) =
        (noise(30_000, 12), noise(20_000, 13), noise(9_000, 14));
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![
            video_part("p_a", 100, "Alice Smith", 0.5, &alice_video),
            video_part("p_b", 200, "Bob", 2.0, &bob_video),
        ],
    );
    recall.add_media(
        RECORDING,
        "audio_separate",
        "as_1",
        true,
        vec![audio_part("p_aa", 100, "Alice Smith", 0.5, &alice_audio)],
    );
    let server = start(&recall, &store_flags(s3)).await;
    let base = server.url("");
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    server
        .wait_for_frames(&format!("/api/recordings/{RECORDING}/100/webcam"), 1)
        .await;
    let body = media_webhook("recording.done", RECORDING, BOT, "rec");
    assert_eq!(webhook(&base, "m1", &body).await, 200);
    wait_for_fetch(&base, "video", "done").await;
    let media = wait_for_fetch(&base, "audio", "done").await;

    let stray = format!("{RECORDING}/100-alice-smith/recall/webcam-9000.mp4");
    match s3 {
        Some(s3) => {
            let bytes = bytes::Bytes::from(noise(100, 15));
            use object_store::ObjectStoreExt as _;
            s3.client()
                .put(&stray.as_str().into(), bytes.into())
                .await
                .unwrap();
        }
        None => std::fs::write(server.data_dir.join(&stray), noise(100, 15)).unwrap(),
    }

    let response = server
        .get(&format!("/api/recordings/{RECORDING}/zip"))
        .await;
    assert_eq!(response.status(), 200);
    let archive = Unzipped::new(&response.bytes().await.unwrap());
    for (file, sent) in [
        ("100-alice-smith/recall/webcam-500.mp4", &alice_video),
        ("100-alice-smith/recall/audio-500.mp3", &alice_audio),
        ("200-bob/recall/webcam-2000.mp4", &bob_video),
    ] {
        let entry = archive.file(&format!("{RECORDING}/{file}"));
        assert_eq!(&entry.bytes, sent, "{file}");
        assert_eq!(entry.compression, zip::CompressionMethod::Stored, "{file}");
    }
    assert!(!archive.names().contains(&stray.as_str()), "{stray}");
    // Each manifest lists exactly the participant's files in the archive, as they are.
    for folder in ["100-alice-smith", "200-bob"] {
        let recall = format!("{RECORDING}/{folder}/recall/");
        let manifest = archive.file(&format!("{recall}media.jsonl"));
        let mut listed: Vec<String> = String::from_utf8_lossy(&manifest.bytes)
            .lines()
            .map(|line| {
                let line: Value = serde_json::from_str(line).unwrap();
                let path = format!("{recall}{}", line["file"].as_str().unwrap());
                let bytes = &archive.file(&path).bytes;
                assert_eq!(line["sha256"], Content::bytes(bytes.clone()).sha256());
                path
            })
            .collect();
        listed.sort();
        let mut files: Vec<&str> = archive
            .names()
            .into_iter()
            .filter(|name| name.starts_with(&recall) && !name.ends_with(".jsonl"))
            .collect();
        files.sort_unstable();
        assert_eq!(listed, files, "{folder}");
    }
    for kind in ["video", "audio"] {
        let status = &archive
            .file(&format!("{RECORDING}/recall/{kind}.json"))
            .bytes;
        let status: Value = serde_json::from_slice(status).unwrap();
        assert_eq!(status, media["fetch"][kind], "{kind}");
    }
    // Every file but the logs is the stored object itself (logs may be kept in parts).
    for name in archive.names() {
        if !name.ends_with(".jsonl") {
            let stored = match s3 {
                Some(s3) => s3.get(name).await.map(|bytes| bytes.to_vec()),
                None => std::fs::read(server.data_dir.join(name)).ok(),
            };
            assert_eq!(stored.as_ref(), Some(&archive.file(name).bytes), "{name}");
        }
    }
    if s3.is_none() {
        // Everything in the folder, but the file no manifest lists.
        let mut on_disk = tree(&server.data_dir);
        on_disk.retain(|path| path.starts_with(&format!("{RECORDING}/")) && *path != stray);
        let mut names = archive.names();
        names.sort_unstable();
        assert_eq!(names, on_disk);
    }
}

#[tokio::test]
async fn the_recording_zip_holds_recalls_files_from_a_folder() {
    the_recording_zip_holds_recalls_files(None).await;
}

#[tokio::test]
async fn the_recording_zip_holds_recalls_files_from_a_bucket() {
    let s3 = S3Server::start().await;
    the_recording_zip_holds_recalls_files(Some(&s3)).await;
}

#[tokio::test]
async fn fetch_media_by_command_twice_adds_nothing_the_second_time() {
    let recall = RecallStandIn::start().await;
    let (video, audio) = (noise(20_000, 10), noise(7_000, 11));
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_1",
        true,
        vec![video_part("p_v", 100, "Alice Smith", 0.0, &video)],
    );
    recall.add_media(
        RECORDING,
        "audio_separate",
        "as_1",
        true,
        vec![audio_part("p_a", 100, "Alice Smith", 0.0, &audio)],
    );
    recall.add_bot(BOT, &[RECORDING]);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let env = [
        ("RECALL_API_KEY", RECALL_API_KEY),
        ("RECALL_API_BASE", &recall.url()),
        ("DATA_DIR", data_dir),
    ];
    let run = || recall_frames(&env, &["fetch-media", "--bot", BOT]);
    let first = run().await;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report: Value = serde_json::from_slice(&first.stdout).unwrap();
    let fetched: Vec<(Value, Value)> = report["fetches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].clone(), f["fetched"].clone()))
        .collect();
    assert_eq!(
        fetched,
        vec![(json!("video"), json!(1)), (json!("audio"), json!(1))]
    );
    let folder = recall_dir(data.path(), "100-alice-smith");
    assert_eq!(std::fs::read(folder.join("webcam-0.mp4")).unwrap(), video);
    assert_eq!(std::fs::read(folder.join("audio-0.mp3")).unwrap(), audio);
    let manifest = std::fs::read(folder.join("media.jsonl")).unwrap();

    let second = run().await;
    assert!(second.status.success());
    let report: Value = serde_json::from_slice(&second.stdout).unwrap();
    for fetch in report["fetches"].as_array().unwrap() {
        assert_eq!(
            (fetch["fetched"].clone(), fetch["already"].clone()),
            (json!(0), json!(1))
        );
    }
    assert_eq!(std::fs::read(folder.join("media.jsonl")).unwrap(), manifest);
    assert_eq!(
        recall.downloads().len(),
        2,
        "nothing downloaded the second time"
    );
    assert!(jobs_left(data.path()).is_empty());

    let without_key =
        recall_frames(&[("DATA_DIR", data_dir)], &["fetch-media", "--bot", BOT]).await;
    assert!(!without_key.status.success());
    assert!(String::from_utf8_lossy(&without_key.stderr).contains("RECALL_API_KEY"));
}

#[tokio::test]
async fn bots_ask_recall_for_async_media_only_when_told() {
    let recall = RecallStandIn::start().await;
    let server = start(
        &recall,
        &["--public-url".into(), "https://frames.example.com".into()],
    )
    .await;
    let client = reqwest::Client::new();
    for (body, video, audio) in [
        (json!({"meeting_url": "https://zoom.us/j/1"}), false, false),
        (
            json!({"meeting_url": "https://zoom.us/j/2", "async_video": true, "async_audio": true}),
            true,
            true,
        ),
    ] {
        let answer = client
            .post(server.url("/api/bots"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201);
        let sent = recall.received().last().unwrap().body.clone();
        let config = &sent["recording_config"];
        assert_eq!(
            config.get("video_separate_mp4").is_some(),
            video,
            "{config}"
        );
        assert_eq!(
            config.get("audio_separate_raw").is_some(),
            audio,
            "{config}"
        );
    }
    let output = recall_frames(
        &[
            ("RECALL_API_KEY", RECALL_API_KEY),
            ("RECALL_API_BASE", &recall.url()),
            ("PUBLIC_URL", "https://frames.example.com"),
            ("WS_TOKEN", WS_TOKEN),
        ],
        &[
            "bot",
            "create",
            "--meeting-url",
            "https://zoom.us/j/3",
            "--async-video",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sent = recall.received().last().unwrap().body.clone();
    assert_eq!(sent["recording_config"]["video_separate_mp4"], json!({}));
    assert!(sent["recording_config"].get("audio_separate_raw").is_none());

    // Fetching by bot without a key is refused at once.
    let plain = TestServer::start().await;
    let answer = client
        .post(plain.url(&format!("/api/bots/{BOT}/fetch-media")))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 503);
}

/// Peak memory of the server while a 200 MB part downloads, into a folder, or into a
/// bucket with `RECALL_MEDIA_RSS=bucket`, and then while a client downloads it, and the
/// recording's ZIP, from the server: run with
/// `RECALL_MEDIA_RSS=fs cargo nextest run -E 'test(/peak_rss/)' --no-capture`. Two worker
/// threads: the in-process bucket must answer while the binary's start is waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_rss_while_a_200_mb_part_downloads() {
    let Ok(backend) = std::env::var("RECALL_MEDIA_RSS") else {
        return;
    };
    let size: u64 = 200 << 20;
    let recall = RecallStandIn::start().await;
    let content = Content::Generated {
        len: size,
        seed: 42,
    };
    recall.add_media(
        RECORDING,
        "video_separate",
        "vs_big",
        true,
        vec![PartSpec {
            content: content.clone(),
            ..video_part("p_big", 100, "Alice Smith", 0.0, &[])
        }],
    );
    let s3 = if backend == "bucket" {
        Some(S3Server::start().await)
    } else {
        None
    };
    let data = tempfile::tempdir().unwrap();
    let mut flags = recall_flags(&recall);
    if let Some(s3) = &s3 {
        flags.extend(s3.flags(None));
    }
    let mut args: Vec<&str> = vec!["--ws-token", WS_TOKEN];
    args.extend(flags.iter().map(String::as_str));
    let binary = BinaryServer::spawn(data.path(), &[], &args);
    let status = |field: &str| -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", binary.pid())).unwrap();
        text.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = status("VmHWM:");
    let started = std::time::Instant::now();
    let body = media_webhook("video_separate.done", RECORDING, BOT, "vs_big");
    assert_eq!(webhook(&binary.url(""), "m1", &body).await, 200);
    let url = format!("{}/api/recordings/{RECORDING}/recall", binary.url(""));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(900);
    let media = loop {
        let media: Value = reqwest::get(&url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap_or(Value::Null);
        if media["fetch"]["video"]["state"] == "done" {
            break media;
        }
        assert!(std::time::Instant::now() < deadline, "{media:#}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let took = started.elapsed();
    let peak = status("VmHWM:");
    let part = &media["participants"][0]["parts"][0];
    assert_eq!(part["bytes"], size);
    assert_eq!(part["sha256"], content.sha256());
    match &s3 {
        None => {
            let path = recall_dir(data.path(), "100-alice-smith").join("webcam-0.mp4");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
        }
        Some(s3) => {
            let key = format!("{RECORDING}/100-alice-smith/recall/webcam-0.mp4");
            assert_eq!(s3.get(&key).await.map(|b| b.len() as u64), Some(size));
        }
    }
    eprintln!(
        "200 MB part into {backend}: peak RSS {} MiB before the fetch, {} MiB after; {:.1} s",
        before / 1024,
        peak / 1024,
        took.as_secs_f64()
    );
    assert!(
        peak < before + 64 * 1024,
        "memory grew with the file: {before} -> {peak} KiB"
    );

    // Then downloaded whole, as a browser would, read a chunk at a time, with the peak reset
    // first (`5` to clear_refs) so that it is the download's own.
    let resting = status("VmRSS:");
    std::fs::write(format!("/proc/{}/clear_refs", binary.pid()), "5").unwrap();
    let started = std::time::Instant::now();
    let url = binary.url(part["url"].as_str().unwrap());
    let mut response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let (mut hasher, mut read) = (Sha256::new(), 0u64);
    while let Some(chunk) = response.chunk().await.unwrap() {
        read += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!((read, hex), (size, content.sha256()));
    let served = status("VmHWM:");
    eprintln!(
        "200 MB part downloaded from {backend}: RSS {} MiB before, peak {} MiB during; {:.1} s",
        resting / 1024,
        served / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(
        served < resting + 64 * 1024,
        "memory grew with the download: {resting} -> {served} KiB"
    );

    // And the recording's ZIP, which holds the part: copied in as it is read, too.
    let resting = status("VmRSS:");
    std::fs::write(format!("/proc/{}/clear_refs", binary.pid()), "5").unwrap();
    let started = std::time::Instant::now();
    let url = binary.url(&format!("/api/recordings/{RECORDING}/zip"));
    let mut response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut read = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        read += chunk.len() as u64;
    }
    assert!(read > size, "the ZIP holds the part: {read} bytes");
    let zipped = status("VmHWM:");
    eprintln!(
        "recording ZIP with the 200 MB part from {backend}: RSS {} MiB before, peak {} MiB \
         during; {:.1} s",
        resting / 1024,
        zipped / 1024,
        started.elapsed().as_secs_f64()
    );
    assert!(
        zipped < resting + 64 * 1024,
        "memory grew with the ZIP: {resting} -> {zipped} KiB"
    );
}
