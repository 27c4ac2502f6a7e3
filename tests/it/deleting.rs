//! Deleting recordings and participants, retention and the quota, in a folder and in a
//! bucket, with real bots: a deleted recording vanishes at once from every listing and URL,
//! its bytes go, what a bot sends for it afterwards is refused and never saved, a deletion
//! cut short by `kill -9` is finished by the restart, and every deletion is in the audit log.
//! Also the fixes that came with it: recording ids starting with a dot are refused, a
//! malformed frame name is a 400, and a recording removed by hand is a 404 everywhere.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::common::recall_api::{RECALL_API_KEY, RecallStandIn};
use crate::common::s3::S3Server;
use crate::common::*;
use serde_json::Value;

const KEPT: &str = "rec_kept";
const ALICE_WEBCAM: &str = "/api/recordings/rec_9f1c2a/100/webcam";
const BOB_WEBCAM: &str = "/api/recordings/rec_9f1c2a/200/webcam";
const KEPT_WEBCAM: &str = "/api/recordings/rec_kept/100/webcam";

/// `DELETE path`, with the status and the JSON body.
async fn delete(base: &str, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .delete(format!("{base}{path}"))
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn kept_frame(relative: f64) -> TestFrame {
    let mut frame = TestFrame::new(relative);
    frame.recording = KEPT.into();
    frame
}

/// Records [`RECORDING`] (Alice's three webcam frames and a chat message, Bob's frame and
/// chat message) and [`KEPT`] (one frame), and waits until they are listed. Returns the
/// bot, still connected.
async fn record(base: &str, ws: &str) -> Bot {
    let mut bot = Bot::connect(ws).await;
    for relative in [0.5, 1.0, 1.5] {
        bot.send_frame(&TestFrame::new(relative)).await;
    }
    bot.send_frame(&TestFrame::new(0.5).participant(200, Some("Bob")))
        .await;
    bot.send_text(
        TestEvent::new("chat_message", 1.2)
            .data(serde_json::json!({"text": "Alice here"}))
            .event(),
    )
    .await;
    bot.send_text(
        TestEvent::new("chat_message", 1.3)
            .participant(200, Some("Bob"))
            .data(serde_json::json!({"text": "Bob here"}))
            .event(),
    )
    .await;
    bot.send_frame(&kept_frame(0.5)).await;
    wait_for_frames_at(&format!("{base}{ALICE_WEBCAM}"), 3).await;
    wait_for_frames_at(&format!("{base}{BOB_WEBCAM}"), 1).await;
    wait_for_frames_at(&format!("{base}{KEPT_WEBCAM}"), 1).await;
    eventually("both chat messages are listed", || async {
        let recording: Value = reqwest::get(format!("{base}/api/recordings/{RECORDING}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        recording["events"].as_array().is_some_and(|e| e.len() == 2)
    })
    .await;
    bot
}

async fn status_of(base: &str, path: &str) -> u16 {
    reqwest::get(format!("{base}{path}"))
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

/// Every URL of a deleted recording answers 404, and the list names only the kept one.
async fn assert_gone_from_the_api(base: &str) {
    for path in [
        "/api/recordings/rec_9f1c2a".to_owned(),
        format!("{ALICE_WEBCAM}/frames"),
        format!("{ALICE_WEBCAM}/000000500.png"),
        format!("{ALICE_WEBCAM}.zip"),
        "/api/recordings/rec_9f1c2a/zip".to_owned(),
        "/recordings/rec_9f1c2a".to_owned(),
    ] {
        assert_eq!(status_of(base, &path).await, 404, "{path}");
    }
    let list: Value = reqwest::get(format!("{base}/api/recordings"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [KEPT]);
}

/// A frame for the deleted recording is refused as `deleted`, and one for the kept recording
/// is still saved.
async fn assert_later_frames_refused(bot: &mut Bot, base: &str) {
    bot.send_frame(&TestFrame::new(2.0)).await;
    let reply = bot.next_json().await;
    assert_eq!(reply["error"]["reason"], "deleted", "{reply}");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("was deleted"),
        "{reply}"
    );
    bot.send_text(
        TestAudio::new(2.0, vec![1000; 320])
            .participant(100)
            .event(),
    )
    .await;
    assert_eq!(
        bot.next_json().await["error"]["reason"],
        "deleted",
        "audio too"
    );
    bot.send_text(TestEvent::new("speech_on", 2.0).event())
        .await;
    assert_eq!(
        bot.next_json().await["error"]["reason"],
        "deleted",
        "events too"
    );
    bot.send_frame(&kept_frame(1.0)).await;
    wait_for_frames_at(&format!("{base}{KEPT_WEBCAM}"), 2).await;
}

/// The data of the first `deleted` event on a live stream.
async fn next_deleted_event(live: reqwest::Response) -> Value {
    use futures_util::StreamExt as _;
    let mut body = live.bytes_stream();
    let mut text = String::new();
    loop {
        if let Some(at) = text.find("event: deleted\n") {
            let rest = &text[at..];
            if let Some(end) = rest.find("\n\n") {
                let data = rest[..end]
                    .lines()
                    .find_map(|line| line.strip_prefix("data: "))
                    .expect("the event's data");
                return serde_json::from_str(data).expect("JSON data");
            }
        }
        let chunk = tokio::time::timeout(PATIENCE, body.next())
            .await
            .expect("an event within the patience")
            .expect("the stream goes on")
            .expect("a chunk");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

fn audit_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("an audit line is JSON"))
        .collect()
}

#[tokio::test]
async fn a_recording_deleted_from_the_folder_goes_at_once_every_byte_and_for_good() {
    let mut server = TestServer::start().await;
    let base = server.url("");
    let mut bot = record(&base, &server.ws_url(WS_TOKEN)).await;

    // The bot is still streaming: refused, saying how to go on.
    let (status, body) = delete(&base, "/api/recordings/rec_9f1c2a").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("force=true"),
        "{body}"
    );
    assert!(server.data_dir.join(RECORDING).exists());

    let live = reqwest::get(format!("{base}/api/live?recording={RECORDING}"))
        .await
        .unwrap();
    let (status, deleted) = delete(&base, "/api/recordings/rec_9f1c2a?force=true").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["recording"], RECORDING);
    assert_eq!(deleted["by"], "api");
    assert_eq!(
        next_deleted_event(live).await,
        serde_json::json!({"type": "deleted", "recording": RECORDING}),
        "live pages are told"
    );
    let bytes = deleted["bytes"].as_u64().unwrap();
    assert!(bytes > 4 * 100, "four PNGs and their manifests: {deleted}");
    assert!(!server.data_dir.join(RECORDING).exists(), "every byte gone");
    assert!(server.data_dir.join(KEPT).join("100-alice-smith").exists());
    assert_gone_from_the_api(&base).await;
    assert_later_frames_refused(&mut bot, &base).await;
    assert!(!server.data_dir.join(RECORDING).exists(), "not made again");

    let (status, _) = delete(&base, "/api/recordings/rec_9f1c2a?force=true").await;
    assert_eq!(status, 404, "deleted once");
    assert_eq!(
        server
            .metric("recall_frames_deletions_total{by=\"api\"}")
            .await,
        1.0
    );
    assert_eq!(
        server
            .metric("recall_frames_deleted_bytes_total{by=\"api\"}")
            .await,
        bytes as f64
    );
    assert_eq!(refused(&server.metrics().await, "deleted"), 3.0);
    let audit = std::fs::read_to_string(server.data_dir.join(".deletions/audit.jsonl")).unwrap();
    let audit = audit_lines(&audit);
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (&audit[0]["recording"], &audit[0]["by"], &audit[0]["bytes"]),
        (&deleted["recording"], &deleted["by"], &deleted["bytes"])
    );
    bot.close().await;
    server.stop().await.unwrap();

    // For good: a server started again on the folder knows it.
    let server = TestServer::start_in(&server.data_dir.clone(), &[]).await;
    let base = server.url("");
    assert_gone_from_the_api(&base).await;
    let mut bot = server.connect().await;
    assert_later_frames_refused(&mut bot, &base).await;
}

async fn start_on_bucket(s3: &S3Server, extra: &[&str]) -> TestServer {
    let mut args = s3.flags(None);
    args.extend(
        [
            "--bucket-manifest-interval",
            "100ms",
            "--bucket-check-interval",
            "100ms",
        ]
        .map(str::to_owned),
    );
    args.extend(extra.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    TestServer::start_with(&args).await
}

#[tokio::test]
async fn a_recording_deleted_from_the_bucket_leaves_no_object_and_is_refused_after() {
    let s3 = S3Server::start().await;
    let mut server = start_on_bucket(&s3, &[]).await;
    let base = server.url("");
    let mut bot = record(&base, &server.ws_url(WS_TOKEN)).await;
    let of = |keys: &[String], recording: &str| -> usize {
        keys.iter()
            .filter(|k| k.starts_with(&format!("{recording}/")))
            .count()
    };
    let before = s3.keys().await;
    assert!(of(&before, RECORDING) >= 6, "{before:?}");

    let (status, deleted) = delete(&base, "/api/recordings/rec_9f1c2a?force=true").await;
    assert_eq!(status, 200, "{deleted}");
    let after = s3.keys().await;
    assert_eq!(of(&after, RECORDING), 0, "every object gone: {after:?}");
    assert_eq!(
        deleted["objects"].as_u64().unwrap() as usize,
        of(&before, RECORDING),
        "{deleted}"
    );
    assert!(of(&after, KEPT) >= 2, "{after:?}");
    assert!(
        after.contains(&".deletions/deleted/rec_9f1c2a/recording.json".to_owned()),
        "the tombstone stays: {after:?}"
    );
    assert_gone_from_the_api(&base).await;
    assert_later_frames_refused(&mut bot, &base).await;
    bot.close().await;
    server.stop().await.unwrap();
    let keys = s3.keys().await;
    assert_eq!(of(&keys, RECORDING), 0, "nothing made again: {keys:?}");
    let audit: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with(".deletions/audit/"))
        .collect();
    assert_eq!(audit.len(), 1, "{keys:?}");
    let text = s3.get(audit[0]).await.unwrap();
    let audit = audit_lines(std::str::from_utf8(&text).unwrap());
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["recording"], RECORDING);
    assert_eq!(audit[0]["bytes"], deleted["bytes"]);
}

/// Two servers on one bucket: a deletion through one is seen by the other at its next
/// storage check, which then hides the recording and refuses its frames too.
#[tokio::test]
async fn a_deletion_through_one_server_reaches_another_on_the_same_bucket() {
    let s3 = S3Server::start().await;
    let quick = ["--storage-check-interval", "100ms"];
    let one = start_on_bucket(&s3, &quick).await;
    let other = start_on_bucket(&s3, &quick).await;
    let bot = record(&one.url(""), &one.ws_url(WS_TOKEN)).await;
    bot.close().await;
    other.wait_for_frames(ALICE_WEBCAM, 3).await;

    let (status, _) = delete(&one.url(""), "/api/recordings/rec_9f1c2a?force=true").await;
    assert_eq!(status, 200);
    // The other server learns of the tombstone at its next storage check; until then it may
    // still list a stream whose objects are being deleted.
    eventually("the other server hides the recording", || async {
        other.get("/api/recordings/rec_9f1c2a").await.status() == 404
            && status_of(&other.url(""), &format!("{ALICE_WEBCAM}/frames")).await == 404
    })
    .await;
    assert_gone_from_the_api(&other.url("")).await;
    let mut bot = other.connect().await;
    assert_later_frames_refused(&mut bot, &other.url("")).await;
    let keys = s3.keys().await;
    assert!(
        !keys.iter().any(|k| k.starts_with("rec_9f1c2a/")),
        "{keys:?}"
    );
}

/// A recording deleted on the volume is not copied into the bucket, and its tombstone
/// goes along: a server on the bucket refuses it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_to_bucket_leaves_a_deleted_recording_behind_and_keeps_refusing_it() {
    let mut server = TestServer::start().await;
    let bot = record(&server.url(""), &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    let (status, _) = delete(&server.url(""), "/api/recordings/rec_9f1c2a?force=true").await;
    assert_eq!(status, 200);
    server.stop().await.unwrap();

    let s3 = S3Server::start().await;
    let mut args = vec!["copy-to-bucket".to_owned(), "--data-dir".to_owned()];
    args.push(server.data_dir.to_str().unwrap().to_owned());
    args.extend(s3.flags(None));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let output = recall_frames(&[], &args).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let keys = s3.keys().await;
    assert!(
        !keys.iter().any(|k| k.starts_with("rec_9f1c2a/")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.starts_with("rec_kept/")), "{keys:?}");
    assert!(keys.contains(&".deletions/deleted/rec_9f1c2a/recording.json".to_owned()));

    let on_bucket = start_on_bucket(&s3, &[]).await;
    assert_gone_from_the_api(&on_bucket.url("")).await;
    let mut bot = on_bucket.connect().await;
    assert_later_frames_refused(&mut bot, &on_bucket.url("")).await;
}

#[tokio::test]
async fn a_participant_is_deleted_with_their_events_and_the_others_stay() {
    let server = TestServer::start().await;
    let base = server.url("");
    let mut bot = record(&base, &server.ws_url(WS_TOKEN)).await;
    let (status, body) = delete(&base, "/api/recordings/rec_9f1c2a/100").await;
    assert_eq!(status, 409, "{body}");
    let (status, deleted) = delete(&base, "/api/recordings/rec_9f1c2a/100?force=true").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["participant"], 100);

    let recording_dir = server.data_dir.join(RECORDING);
    assert!(!recording_dir.join("100-alice-smith").exists());
    assert!(recording_dir.join("200-bob/webcam/000000500.png").exists());
    let events = std::fs::read_to_string(recording_dir.join("events.jsonl")).unwrap();
    assert!(!events.contains("Alice"), "{events}");
    assert!(events.contains("Bob here"), "{events}");

    let recording = server.get_json("/api/recordings/rec_9f1c2a").await;
    let ids: Vec<&Value> = recording["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["id"])
        .collect();
    assert_eq!(ids, [&Value::from(200)]);
    assert_eq!(recording["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        server.get(&format!("{ALICE_WEBCAM}/frames")).await.status(),
        404
    );
    assert_eq!(
        server
            .get(&format!("{ALICE_WEBCAM}/000000500.png"))
            .await
            .status(),
        404
    );

    // Alice's frames and events are refused from now on; Bob's are saved.
    bot.send_frame(&TestFrame::new(2.0)).await;
    assert_eq!(bot.next_json().await["error"]["reason"], "deleted");
    bot.send_text(TestEvent::new("chat_message", 2.1).event())
        .await;
    assert_eq!(bot.next_json().await["error"]["reason"], "deleted");
    bot.send_frame(&TestFrame::new(2.0).participant(200, Some("Bob")))
        .await;
    server.wait_for_frames(BOB_WEBCAM, 2).await;
    assert!(
        !recording_dir.join("100-alice-smith").exists(),
        "not made again"
    );
    let (status, _) = delete(&base, "/api/recordings/rec_9f1c2a/100?force=true").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_participant_deleted_from_the_bucket_leaves_no_object_of_theirs() {
    let s3 = S3Server::start().await;
    let server = start_on_bucket(&s3, &[]).await;
    let base = server.url("");
    let mut bot = record(&base, &server.ws_url(WS_TOKEN)).await;
    let (status, deleted) = delete(&base, "/api/recordings/rec_9f1c2a/100?force=true").await;
    assert_eq!(status, 200, "{deleted}");
    let keys = s3.keys().await;
    let alice: Vec<&String> = keys
        .iter()
        .filter(|k| {
            k.starts_with("rec_9f1c2a/100") || k.as_str() == "rec_9f1c2a/participants/100.json"
        })
        .collect();
    assert!(alice.is_empty(), "{alice:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("rec_9f1c2a/200-bob/webcam/")),
        "{keys:?}"
    );
    let mut events = String::new();
    for key in keys.iter().filter(|k| k.starts_with("rec_9f1c2a/events/")) {
        events.push_str(std::str::from_utf8(&s3.get(key).await.unwrap()).unwrap());
    }
    assert!(!events.contains("Alice"), "{events}");
    assert!(events.contains("Bob here"), "{events}");
    let recording = server.get_json("/api/recordings/rec_9f1c2a").await;
    assert_eq!(recording["participants"].as_array().unwrap().len(), 1);
    assert_eq!(recording["participants"][0]["id"], 200);
    bot.send_frame(&TestFrame::new(2.0)).await;
    assert_eq!(bot.next_json().await["error"]["reason"], "deleted");
}

/// `kill -9` while the bucket holds the deletion back: the recording is hidden from the
/// moment it was asked for, and the restart removes what was left and says so. Several
/// threads: the bucket answers while the test waits for the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_cut_short_by_kill_9_is_finished_by_the_restart() {
    let s3 = S3Server::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut flags = s3.flags(None);
    flags.extend(
        [
            "--bucket-manifest-interval",
            "100ms",
            "--bucket-retry-timeout",
            "60s",
            "--ws-token",
            WS_TOKEN,
        ]
        .map(str::to_owned),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut binary = BinaryServer::spawn(data.path(), &[], &flags);
    let base = binary.url("");
    let bot = record(&base, &binary.ws_url(WS_TOKEN)).await;
    bot.close().await;

    s3.hold_deletes(true);
    let request = tokio::spawn({
        let base = base.clone();
        async move { delete(&base, "/api/recordings/rec_9f1c2a?force=true").await }
    });
    eventually("the deletion is pending", || async {
        s3.get(".deletions/pending/rec_9f1c2a/recording.json")
            .await
            .is_some()
    })
    .await;
    eventually("the recording is hidden", || async {
        status_of(&base, "/api/recordings/rec_9f1c2a").await == 404
    })
    .await;
    binary.kill9();
    let _ = request.await;
    let left = s3.keys().await;
    assert!(
        left.iter().any(|k| k.starts_with("rec_9f1c2a/")),
        "the kill came before the bytes went: {left:?}"
    );

    s3.hold_deletes(false);
    let binary = BinaryServer::spawn(data.path(), &[], &flags);
    let base = binary.url("");
    assert_gone_from_the_api(&base).await;
    eventually("the restart finishes the deletion", || async {
        let keys = s3.keys().await;
        !keys.iter().any(|k| k.starts_with("rec_9f1c2a/"))
            && !keys.iter().any(|k| k.starts_with(".deletions/pending/"))
    })
    .await;
    let keys = s3.keys().await;
    assert!(keys.contains(&".deletions/deleted/rec_9f1c2a/recording.json".to_owned()));
    eventually("the audit log says the restart finished it", || async {
        let mut lines = Vec::new();
        for key in s3.keys().await {
            if key.starts_with(".deletions/audit/") {
                let text = s3.get(&key).await.unwrap();
                lines.extend(audit_lines(std::str::from_utf8(&text).unwrap()));
            }
        }
        lines.len() == 1 && lines[0]["finished_later"] == true && lines[0]["by"] == "api"
    })
    .await;
    let mut bot = Bot::connect(&binary.ws_url(WS_TOKEN)).await;
    assert_later_frames_refused(&mut bot, &base).await;
}

/// Sets the modification time of every file under `dir` to `at`: a recording last written
/// then, as retention reads it.
fn age(dir: &Path, at: SystemTime) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            age(&path, at);
        } else {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(at)
                .unwrap();
        }
    }
}

/// The clock is injected as the files' own times: [`RECORDING`] was last written 40 days
/// ago, [`KEPT`] now.
#[tokio::test]
async fn retention_deletes_the_old_keeps_the_recent_and_its_dry_run_deletes_nothing() {
    let mut server = TestServer::start().await;
    let bot = record(&server.url(""), &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    server.stop().await.unwrap();
    let data_dir = server.data_dir.clone();
    let forty_days_ago = SystemTime::now() - Duration::from_secs(40 * 24 * 3600);
    age(&data_dir.join(RECORDING), forty_days_ago);

    let dir = data_dir.to_str().unwrap();
    let dry = recall_frames(
        &[],
        &[
            "delete",
            "--data-dir",
            dir,
            "--older-than",
            "30d",
            "--dry-run",
        ],
    )
    .await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    let would = report["would_delete"].as_array().unwrap();
    assert_eq!(would.len(), 1, "{report}");
    assert_eq!(would[0]["recording"], RECORDING);
    assert!(
        data_dir.join(RECORDING).join("recording.json").exists(),
        "a dry run"
    );

    let server = TestServer::start_in(&data_dir, &["--retention", "30d"]).await;
    eventually("retention deletes the old recording", || async {
        !data_dir.join(RECORDING).exists()
    })
    .await;
    assert!(
        data_dir
            .join(KEPT)
            .join("100-alice-smith/webcam/000000500.png")
            .exists()
    );
    let list = server.get_json("/api/recordings").await;
    assert_eq!(list["recordings"].as_array().unwrap().len(), 1, "{list}");
    eventually("the metrics count it", || async {
        server
            .metric("recall_frames_deletions_total{by=\"retention\"}")
            .await
            == 1.0
    })
    .await;
    assert!(
        server
            .metric("recall_frames_deleted_bytes_total{by=\"retention\"}")
            .await
            > 0.0
    );
    let audit = std::fs::read_to_string(data_dir.join(".deletions/audit.jsonl")).unwrap();
    let audit = audit_lines(&audit);
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["by"], "retention");
    assert_eq!(audit[0]["recording"], RECORDING);
}

#[tokio::test]
async fn the_command_line_deletes_what_it_is_told_only_when_no_bot_may_be_streaming() {
    let mut server = TestServer::start().await;
    let bot = record(&server.url(""), &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    server.stop().await.unwrap();
    let dir = server.data_dir.to_str().unwrap().to_owned();

    let refused = recall_frames(&[], &["delete", RECORDING, "--data-dir", &dir]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("--force"), "{stderr}");
    assert!(server.data_dir.join(RECORDING).exists());

    let unknown = recall_frames(&[], &["delete", "rec_none", "--data-dir", &dir, "--force"]).await;
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no recording rec_none"));

    let done = recall_frames(&[], &["delete", RECORDING, "--data-dir", &dir, "--force"]).await;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let report: Value = serde_json::from_slice(&done.stdout).unwrap();
    assert_eq!(report["deleted"][0]["by"], "cli", "{report}");
    assert!(!server.data_dir.join(RECORDING).exists());
    let audit = std::fs::read_to_string(server.data_dir.join(".deletions/audit.jsonl")).unwrap();
    assert_eq!(audit_lines(&audit)[0]["by"], "cli");

    let server = TestServer::start_in(&server.data_dir.clone(), &[]).await;
    assert_gone_from_the_api(&server.url("")).await;
}

/// The total stored at the cap: new recordings are refused, the one already stored carries
/// on, and a deletion makes room.
#[tokio::test]
async fn the_quota_refuses_new_recordings_until_a_deletion_makes_room() {
    let mut server = TestServer::start().await;
    let bot = record(&server.url(""), &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    server.stop().await.unwrap();
    let data_dir = server.data_dir.clone();
    let stored = folder_bytes(&data_dir);
    let cap = stored.to_string();
    let server = TestServer::start_in(
        &data_dir,
        &[
            "--max-stored-bytes",
            &cap,
            "--storage-check-interval",
            "100ms",
        ],
    )
    .await;
    eventually("/healthz says the quota is reached", || async {
        server.get("/healthz").await.status() == 503
    })
    .await;
    let health: Value = server.get("/healthz").await.json().await.unwrap();
    assert!(
        health["reason"]
            .as_str()
            .unwrap()
            .contains("MAX_STORED_BYTES"),
        "{health}"
    );
    assert_eq!(server.metric("recall_frames_quota_reached").await, 1.0);
    assert_eq!(
        server.metric("recall_frames_max_stored_bytes").await,
        stored as f64
    );
    assert!(server.metric("recall_frames_stored_bytes").await >= stored as f64);

    let mut bot = server.connect().await;
    let mut new = TestFrame::new(0.5);
    new.recording = "rec_new".into();
    bot.send_frame(&new).await;
    assert_eq!(bot.next_json().await["error"]["reason"], "quota_reached");
    assert!(!data_dir.join("rec_new").exists());
    // A recording already stored carries on.
    bot.send_frame(&kept_frame(1.0)).await;
    server.wait_for_frames(KEPT_WEBCAM, 2).await;

    let (status, _) = delete(&server.url(""), "/api/recordings/rec_9f1c2a").await;
    assert_eq!(status, 200);
    eventually("the deletion makes room", || async {
        server.get("/healthz").await.status() == 200
    })
    .await;
    assert_eq!(server.metric("recall_frames_quota_reached").await, 0.0);
    bot.send_frame(&new).await;
    server
        .wait_for_frames("/api/recordings/rec_new/100/webcam", 1)
        .await;
}

fn folder_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folder_bytes(&path)
            } else {
                std::fs::metadata(&path).unwrap().len()
            }
        })
        .sum()
}

#[tokio::test]
async fn recalls_copy_is_deleted_too_when_asked_and_its_answer_reported() {
    let recall = RecallStandIn::start().await;
    recall.knows_bot("bot_1");
    let recall_url = recall.url();
    let server = TestServer::start_with(&[
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &recall_url,
    ])
    .await;
    let base = server.url("");
    let bot = record(&base, &server.ws_url(WS_TOKEN)).await;
    bot.close().await;

    let (status, deleted) =
        delete(&base, "/api/recordings/rec_9f1c2a?force=true&recall=true").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["recall"]["deleted"], true, "{deleted}");
    assert_eq!(deleted["recall"]["bot"], "bot_1");
    let asked: Vec<_> = recall
        .received()
        .into_iter()
        .filter(|r| r.path.ends_with("/delete_media/"))
        .collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].method, "POST");
    assert_eq!(asked[0].path, "/api/v1/bot/bot_1/delete_media/");
    assert_eq!(asked[0].authorization.as_deref(), Some(RECALL_API_KEY));
    assert_eq!(
        recall.bot("bot_1").unwrap()["recordings"][0]["status"]["code"],
        "deleted"
    );
    let audit = std::fs::read_to_string(server.data_dir.join(".deletions/audit.jsonl")).unwrap();
    assert_eq!(audit_lines(&audit)[0]["recall"]["deleted"], true);

    // Recall refuses (a bot it does not know): said so, and the local deletion is done.
    let (status, deleted) = delete(&base, "/api/recordings/rec_kept?force=true&recall=true").await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(
        deleted["recall"]["deleted"], true,
        "same bot, asked again: {deleted}"
    );
    let server2 = TestServer::start_with(&[
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &recall_url,
    ])
    .await;
    let bot = record(&server2.url(""), &server2.ws_url(WS_TOKEN)).await;
    bot.close().await;
    recall.answer_everything_with(
        axum::http::StatusCode::NOT_FOUND,
        r#"{"detail": "Not found."}"#,
    );
    let (status, deleted) = delete(
        &server2.url(""),
        "/api/recordings/rec_9f1c2a?force=true&recall=true",
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["recall"]["deleted"], false, "{deleted}");
    assert_eq!(deleted["recall"]["status"], 404);
    assert_eq!(deleted["recall"]["answer"]["detail"], "Not found.");
    assert!(!server2.data_dir.join(RECORDING).exists());
}

#[tokio::test]
async fn recording_ids_starting_with_a_dot_are_refused_and_nothing_is_written() {
    let server = TestServer::start_with(&["--generated-token"]).await;
    let token = std::fs::read_to_string(server.data_dir.join(".ws-token")).unwrap();
    let mut bot = Bot::connect(&server.ws_url(token.trim())).await;
    for id in [".x", "...", ".ws-token", ".deletions"] {
        let mut frame = TestFrame::new(0.5);
        frame.recording = id.into();
        bot.send_frame(&frame).await;
        let reply = bot.next_json().await;
        assert_eq!(reply["error"]["reason"], "unsafe_id", "{id}: {reply}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not starting with a dot"),
            "{reply}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(server.data_dir.join(".ws-token")).unwrap(),
        token,
        "the token file is untouched"
    );
    assert!(!server.data_dir.join(".x").exists());
    assert_eq!(server.get("/api/recordings/.x").await.status(), 400);
}

#[tokio::test]
async fn a_malformed_frame_name_is_a_400_and_a_folder_removed_by_hand_a_404_everywhere() {
    let server = TestServer::start().await;
    let base = server.url("");
    let bot = record(&base, &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    for name in ["12.png", "000000500.jpg", "x"] {
        let response = server.get(&format!("{ALICE_WEBCAM}/{name}")).await;
        assert_eq!(response.status(), 400, "{name}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("nine digits"),
            "{body}"
        );
    }
    // Read once, so that the catalog holds the stream's index, then removed by hand.
    server.wait_for_frames(ALICE_WEBCAM, 3).await;
    std::fs::remove_dir_all(server.data_dir.join(RECORDING)).unwrap();
    for path in [
        "/api/recordings/rec_9f1c2a".to_owned(),
        format!("{ALICE_WEBCAM}/frames"),
        format!("{ALICE_WEBCAM}/000000500.png"),
        format!("{ALICE_WEBCAM}.zip"),
        format!("{BOB_WEBCAM}.zip"),
        "/api/recordings/rec_9f1c2a/zip".to_owned(),
        "/api/recordings/rec_9f1c2a/100/audio".to_owned(),
        "/recordings/rec_9f1c2a".to_owned(),
        "/recordings/rec_9f1c2a/100/webcam".to_owned(),
    ] {
        assert_eq!(status_of(&base, &path).await, 404, "{path}");
    }
}

/// The storage check on a bucket: every object the bucket lists (its listing paged
/// through, not held whole) is counted, in the total and in its recording.
#[tokio::test]
async fn a_bucket_is_measured_object_by_object() {
    use futures_util::TryStreamExt as _;
    let s3 = S3Server::start().await;
    let server = start_on_bucket(&s3, &["--storage-check-interval", "100ms"]).await;
    let bot = record(&server.url(""), &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    let objects = || async {
        let listed: Vec<object_store::ObjectMeta> =
            s3.client().list(None).try_collect().await.unwrap();
        listed
    };
    eventually("the API gives what the bucket holds", || async {
        let listed = objects().await;
        let recording: Vec<_> = listed
            .iter()
            .filter(|o| o.location.as_ref().starts_with(&format!("{RECORDING}/")))
            .collect();
        let storage = server.get_json("/api/storage").await;
        let Some(entry) = storage["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == RECORDING)
            .cloned()
        else {
            return false;
        };
        !recording.is_empty()
            && storage["stored_bytes"] == listed.iter().map(|o| o.size).sum::<u64>()
            && entry["objects"] == recording.len()
            && entry["bytes"] == recording.iter().map(|o| o.size).sum::<u64>()
    })
    .await;
}

#[tokio::test]
async fn sizes_and_the_total_are_shown_and_the_recording_page_offers_deleting() {
    let server = TestServer::start_with(&[
        "--storage-check-interval",
        "100ms",
        "--max-stored-bytes",
        "1000000000",
    ])
    .await;
    let bot = record(&server.url(""), &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    let recording_dir = server.data_dir.join(RECORDING);
    let entry = |storage: &Value| {
        storage["recordings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == RECORDING)
            .cloned()
    };
    eventually(
        "the API gives the recording's size and the total",
        || async {
            let storage = server.get_json("/api/storage").await;
            entry(&storage).is_some_and(|listed| listed["bytes"] == folder_bytes(&recording_dir))
                && storage["stored_bytes"] == folder_bytes(&server.data_dir)
        },
    )
    .await;
    let storage = server.get_json("/api/storage").await;
    assert_eq!(storage["max_stored_bytes"], 1_000_000_000);
    assert_eq!(storage["quota_reached"], false);
    let bytes = entry(&storage).unwrap()["bytes"].as_u64().unwrap();
    let total = storage["stored_bytes"].as_u64().unwrap();
    let text = |n: u64| bytesize::ByteSize::b(n).display().si().to_string();

    let index = server.get("/").await.text().await.unwrap();
    assert!(index.contains(&text(bytes)), "{index}");
    assert!(
        index.contains(&format!(
            "{} stored of {}",
            text(total),
            text(1_000_000_000)
        )),
        "{index}"
    );
    let page = server
        .get("/recordings/rec_9f1c2a")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains(&text(bytes)), "{page}");
    assert!(
        page.contains(r#"data-delete-url="/api/recordings/rec_9f1c2a""#),
        "{page}"
    );
    assert!(
        page.contains(r#"data-delete-url="/api/recordings/rec_9f1c2a/200""#),
        "{page}"
    );
}

/// In Chromium: the list lets go of a recording deleted elsewhere at once, and the
/// recording page's button asks first, asks again while a bot streams, then deletes.
#[tokio::test]
async fn the_pages_ask_before_deleting_and_follow_deletions_live_in_chromium() {
    use futures_util::FutureExt as _;
    use thirtyfour::prelude::*;
    let Some((chromium, chromedriver)) = crate::browser::browser_binaries() else {
        return;
    };
    let server = TestServer::start().await;
    let base = server.url("");
    let bot = record(&base, &server.ws_url(WS_TOKEN)).await;
    let browser = crate::browser::Chromium::start(&chromium, &chromedriver).await;
    let driver = &browser.session;
    let cards = |selector: &'static str| async move {
        driver.find_all(By::Css(selector)).await.unwrap().len()
    };
    let alert_saying = |words: &'static str| async move {
        eventually(&format!("a dialog saying {words:?}"), || async {
            driver
                .get_alert_text()
                .await
                .is_ok_and(|text| text.contains(words))
        })
        .await;
        driver.accept_alert().await.unwrap();
    };
    let outcome = std::panic::AssertUnwindSafe(async {
        driver.goto(server.url("/")).await.unwrap();
        assert_eq!(cards(".recording-card").await, 2);
        eventually("the page follows live events", || async {
            driver
                .find(By::Id("live-status"))
                .await
                .unwrap()
                .text()
                .await
                .is_ok_and(|text| text == "Live")
        })
        .await;
        let (status, _) = delete(&base, "/api/recordings/rec_kept?force=true").await;
        assert_eq!(status, 200);
        eventually("the list lets go of the deleted recording", || async {
            cards(r#"[data-recording="rec_kept"]"#).await == 0
        })
        .await;

        driver
            .goto(server.url("/recordings/rec_9f1c2a"))
            .await
            .unwrap();
        driver
            .find(By::Id("delete-recording"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        alert_saying("Delete recording rec_9f1c2a?").await;
        alert_saying("so it may still be streaming").await;
        eventually("the page goes back to the list", || async {
            driver
                .current_url()
                .await
                .is_ok_and(|url| url.path() == "/")
        })
        .await;
        assert!(!server.data_dir.join(RECORDING).exists());
        eventually("the list is empty", || async {
            cards(".recording-card").await == 0
        })
        .await;
    })
    .catch_unwind()
    .await;
    browser.stop().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    bot.close().await;
}

/// Without RECALL_API_KEY, `recall=true` and `--recall` are refused before anything is
/// deleted (dry run included), with a message that names the key and what it was for: once
/// the local copy is gone, Recall's could no longer be found.
#[tokio::test]
async fn deleting_recalls_copy_without_the_key_is_refused_before_anything_is_deleted() {
    let mut server = TestServer::start().await;
    let base = server.url("");
    let bot = record(&base, &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    let (status, refused) =
        delete(&base, "/api/recordings/rec_9f1c2a?force=true&recall=true").await;
    assert_eq!(status, 503, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("RECALL_API_KEY is not set"), "{error}");
    assert!(error.contains("delete Recall's copy"), "{error}");
    assert_eq!(status_of(&base, "/api/recordings/rec_9f1c2a").await, 200);
    server.stop().await.unwrap();

    let dir = server.data_dir.to_str().unwrap().to_owned();
    for dry_run in [true, false] {
        let mut args = vec![
            "delete",
            RECORDING,
            "--data-dir",
            &dir,
            "--force",
            "--recall",
        ];
        if dry_run {
            args.push("--dry-run");
        }
        let refused = recall_frames(&[], &args).await;
        assert!(!refused.status.success(), "dry run: {dry_run}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("RECALL_API_KEY is not set"), "{stderr}");
        assert!(stderr.contains("delete Recall's copy"), "{stderr}");
        assert!(
            server
                .data_dir
                .join(RECORDING)
                .join("recording.json")
                .exists(),
            "nothing deleted"
        );
    }
    assert!(!server.data_dir.join(".deletions/audit.jsonl").exists());
}

/// `m` is minutes: a retention shorter than an hour is refused, saying so, before
/// anything is deleted; the period is echoed as it is written (`30d`).
#[tokio::test]
async fn a_retention_shorter_than_an_hour_is_refused_as_minutes_not_months() {
    let mut server = TestServer::start().await;
    let bot = record(&server.url(""), &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    server.stop().await.unwrap();
    let dir = server.data_dir.to_str().unwrap().to_owned();
    let three_minutes_ago = SystemTime::now() - Duration::from_secs(180);
    age(&server.data_dir.join(RECORDING), three_minutes_ago);

    for (env, args) in [
        (
            vec![],
            vec!["delete", "--data-dir", &dir, "--older-than", "1m"],
        ),
        (
            vec![("RETENTION", "1m")],
            vec!["delete", "--data-dir", &dir],
        ),
        (vec![("RETENTION", "1m")], vec!["serve", "--data-dir", &dir]),
    ] {
        let refused = recall_frames(&env, &args).await;
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("`m` is minutes"), "{stderr}");
        assert!(stderr.contains("30d"), "{stderr}");
    }
    assert!(
        server
            .data_dir
            .join(RECORDING)
            .join("recording.json")
            .exists()
    );

    let dry = recall_frames(
        &[("RETENTION", "30d")],
        &["delete", "--data-dir", &dir, "--dry-run"],
    )
    .await;
    assert!(
        dry.status.success(),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let report: Value = serde_json::from_slice(&dry.stdout).unwrap();
    assert_eq!(report["older_than"], "30d", "{report}");
    assert_eq!(report["would_delete"], serde_json::json!([]));
}

/// Rewrites `events.jsonl` as if every line had been received at `at`, and dates the file
/// then: the recording's events, as retention reads their time.
fn age_events(recording: &Path, at: SystemTime) {
    let path = recording.join("events.jsonl");
    let received = jiff::Timestamp::try_from(at).unwrap().to_string();
    let aged: String = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|line| {
            let mut event: Value = serde_json::from_str(line).unwrap();
            event["received_at"] = received.clone().into();
            format!("{event}\n")
        })
        .collect();
    std::fs::write(&path, aged).unwrap();
    age(recording, at);
}

/// Deleting a participant rewrites the recording's event log, but no bot sent anything:
/// the recording's last activity stays what the bots sent, so neither the retention clock
/// restarts nor the command line takes it for a recording still being streamed into.
#[tokio::test]
async fn deleting_a_participant_is_not_activity_of_the_recording() {
    let mut server = TestServer::start().await;
    let bot = record(&server.url(""), &server.ws_url(WS_TOKEN)).await;
    bot.close().await;
    server.stop().await.unwrap();
    let data_dir = server.data_dir.clone();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(2 * 3600);
    age_events(&data_dir.join(RECORDING), two_hours_ago);

    let mut server = TestServer::start_in(&data_dir, &[]).await;
    let base = server.url("");
    let stored = || async {
        let storage = server.get_json("/api/storage").await;
        storage["stored_bytes"].as_u64()
    };
    eventually("the store is measured", || async {
        stored().await.is_some()
    })
    .await;
    let before = stored().await.unwrap();
    let (status, deleted) = delete(&base, "/api/recordings/rec_9f1c2a/200").await;
    assert_eq!(status, 200, "{deleted}");
    let events = std::fs::read_to_string(data_dir.join(RECORDING).join("events.jsonl")).unwrap();
    assert_eq!(events.lines().count(), 1, "Bob's line went: {events}");
    eventually("the store is measured again", || async {
        stored().await.is_some_and(|now| now < before)
    })
    .await;
    let storage = server.get_json("/api/storage").await;
    let last_written: jiff::Timestamp = storage["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == RECORDING)
        .unwrap()["last_written"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let age = jiff::Timestamp::now().duration_since(last_written);
    assert!(
        age > jiff::SignedDuration::from_secs(3600),
        "last_written {last_written} is the deletion's time: {storage}"
    );
    server.stop().await.unwrap();

    let dir = data_dir.to_str().unwrap();
    let done = recall_frames(&[], &["delete", RECORDING, "--data-dir", dir]).await;
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(!data_dir.join(RECORDING).exists());
}

#[tokio::test]
async fn deleting_from_the_wrong_store_says_where_it_looked() {
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_str().unwrap();
    let refused = recall_frames(&[], &["delete", RECORDING, "--data-dir", dir]).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(&format!(
            "there is no recording {RECORDING} in DATA_DIR {dir}"
        )),
        "{stderr}"
    );
}
