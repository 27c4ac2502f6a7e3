//! The core receiver end to end: frames over a real websocket into the layout on disk.

use crate::common::*;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::json;
use tokio_tungstenite::tungstenite::{self, Message};

const ALICE_WEBCAM: &str = "rec_9f1c2a/100-alice-smith/webcam";

#[tokio::test]
async fn frames_land_byte_identical_in_the_documented_layout() {
    let mut server = TestServer::start().await;
    let mut bot = server.connect().await;
    let frames = vec![
        TestFrame::new(0.5),
        TestFrame::new(1.0),
        TestFrame::new(12.5),
        TestFrame::new(0.5).participant(200, None),
        TestFrame::new(1.0).participant(300, Some("Bob O'Brien")),
        // Same participant and timestamp as a webcam frame: a separate stream.
        TestFrame::new(1.0).kind("screenshare"),
    ];
    for frame in &frames {
        bot.send_frame(frame).await;
    }
    bot.close().await;
    server.stop().await.expect("clean shutdown");

    let root = &server.data_dir;
    let mut expected = vec![
        "rec_9f1c2a/100-alice-smith/participant.json",
        "rec_9f1c2a/100-alice-smith/screenshare/000001000.png",
        "rec_9f1c2a/100-alice-smith/screenshare/frames.jsonl",
        "rec_9f1c2a/100-alice-smith/webcam/000000500.png",
        "rec_9f1c2a/100-alice-smith/webcam/000001000.png",
        "rec_9f1c2a/100-alice-smith/webcam/000012500.png",
        "rec_9f1c2a/100-alice-smith/webcam/frames.jsonl",
        "rec_9f1c2a/200/participant.json",
        "rec_9f1c2a/200/webcam/000000500.png",
        "rec_9f1c2a/200/webcam/frames.jsonl",
        "rec_9f1c2a/300-bob-o-brien/participant.json",
        "rec_9f1c2a/300-bob-o-brien/webcam/000001000.png",
        "rec_9f1c2a/300-bob-o-brien/webcam/frames.jsonl",
        "rec_9f1c2a/recording.json",
    ];
    expected.sort();
    assert_eq!(tree(root), expected);

    // Nothing at the top but recording folders and dot-files.
    for entry in std::fs::read_dir(root).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        assert!(
            name.starts_with('.') || entry.path().is_dir(),
            "unexpected {name} at the top"
        );
    }

    let folder = |frame: &TestFrame| match frame.participant {
        100 => "100-alice-smith",
        200 => "200",
        _ => "300-bob-o-brien",
    };
    for frame in &frames {
        server.assert_saved(folder(frame), frame);
    }
    let screenshare =
        std::fs::read(root.join("rec_9f1c2a/100-alice-smith/screenshare/000001000.png")).unwrap();
    let webcam = std::fs::read(root.join(ALICE_WEBCAM).join("000001000.png")).unwrap();
    assert_ne!(
        screenshare, webcam,
        "equal timestamps on two streams keep both frames"
    );

    let manifest = read_jsonl(&root.join(ALICE_WEBCAM).join("frames.jsonl"));
    assert_eq!(manifest.len(), 3);
    let line = &manifest[2];
    assert_eq!(line["file"], "000012500.png");
    assert_eq!(line["relative"], 12.5);
    assert_eq!(line["absolute"], "2026-11-21T10:00:12.5Z");
    assert_eq!(
        (line["width"].as_u64(), line["height"].as_u64()),
        (Some(64), Some(36))
    );
    assert_eq!(line["bytes"].as_u64(), Some(frames[2].png.len() as u64));
    assert!(
        line["received_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );

    let participant = read_json(&root.join("rec_9f1c2a/100-alice-smith/participant.json"));
    assert_eq!(
        participant,
        json!({"id": 100, "name": "Alice Smith", "is_host": true, "platform": "desktop",
               "email": null, "extra_data": {"zoom": {"user_guid": "g"}}})
    );
    assert_eq!(
        read_json(&root.join("rec_9f1c2a/200/participant.json"))["name"],
        json!(null)
    );

    let recording = read_json(&root.join("rec_9f1c2a/recording.json"));
    assert_eq!(
        recording["recording"],
        json!({"id": "rec_9f1c2a", "metadata": {"team": "research"}})
    );
    assert_eq!(
        recording["bot"],
        json!({"id": "bot_1", "metadata": {"purpose": "tests"}})
    );
    assert_eq!(recording["realtime_endpoint"]["id"], "re_1");
    assert_eq!(recording["video_separate"]["id"], "vs_1");
    assert_eq!(
        recording["first_frame"],
        json!({"relative": 0.5, "absolute": "2026-11-21T10:00:00.5Z"})
    );
    assert_eq!(
        recording["last_frame"],
        json!({"relative": 12.5, "absolute": "2026-11-21T10:00:12.5Z"})
    );
}

#[tokio::test]
async fn two_bots_stream_at_once() {
    let mut server = TestServer::start().await;
    let send = |recording: &'static str, url: String| async move {
        let mut bot = Bot::connect(&url).await;
        for i in 0..20 {
            bot.send_frame(&TestFrame::new(i as f64 * 0.5).recording(recording))
                .await;
        }
        bot.close().await;
    };
    let url = server.ws_url(WS_TOKEN);
    tokio::join!(send("rec_a", url.clone()), send("rec_b", url));
    server.stop().await.unwrap();
    for recording in ["rec_a", "rec_b"] {
        let dir = server.stream_dir(recording, "100-alice-smith", "webcam");
        let pngs = std::fs::read_dir(&dir).unwrap().filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".png")
        });
        assert_eq!(pngs.count(), 20, "{recording}");
        assert_eq!(read_jsonl(&dir.join("frames.jsonl")).len(), 20);
    }
}

#[tokio::test]
async fn a_duplicate_is_skipped_counted_and_never_overwrites() {
    let mut server = TestServer::start().await;
    let mut bot = server.connect().await;
    let first = TestFrame::new(2.0);
    let again = TestFrame::new(2.0).png(png(64, 36, 999_999));
    assert_ne!(first.png, again.png);
    bot.send_frame(&first).await;
    bot.send_frame(&again).await;
    bot.send_frame(&first).await;
    eventually("both repeats are counted", || async {
        server.metric("recall_frames_frames_duplicate_total").await == 2.0
    })
    .await;
    bot.close().await;
    server.stop().await.unwrap();
    let dir = server.data_dir.join(ALICE_WEBCAM);
    assert_eq!(std::fs::read(dir.join("000002000.png")).unwrap(), first.png);
    assert_eq!(read_jsonl(&dir.join("frames.jsonl")).len(), 1);
}

#[tokio::test]
async fn out_of_order_frames_are_all_saved_and_named_in_time_order() {
    let mut server = TestServer::start().await;
    let mut bot = server.connect().await;
    for relative in [3.0, 1.0, 2.0, 0.25] {
        bot.send_frame(&TestFrame::new(relative)).await;
    }
    bot.close().await;
    server.stop().await.unwrap();
    let dir = server.data_dir.join(ALICE_WEBCAM);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "000000250.png",
            "000001000.png",
            "000002000.png",
            "000003000.png",
            "frames.jsonl"
        ]
    );
    let manifest: Vec<_> = read_jsonl(&dir.join("frames.jsonl"))
        .iter()
        .map(|l| l["relative"].clone())
        .collect();
    assert_eq!(
        manifest,
        [json!(3.0), json!(1.0), json!(2.0), json!(0.25)],
        "in arrival order"
    );
    let recording = read_json(&server.data_dir.join("rec_9f1c2a/recording.json"));
    assert_eq!(recording["first_frame"]["relative"], 0.25);
    assert_eq!(recording["last_frame"]["relative"], 3.0);
}

#[tokio::test]
async fn a_reconnect_continues_the_same_folders() {
    let mut server = TestServer::start().await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    bot.send_frame(&TestFrame::new(1.5)).await;
    // Both frames are saved before the network drops (no close handshake); otherwise the
    // resend below could reach the stream first and be the copy kept.
    let dir = server.data_dir.join(ALICE_WEBCAM);
    wait_for_file(&dir.join("000001500.png")).await;
    drop(bot);
    let mut bot = server.connect().await;
    // The participant was renamed meanwhile: the folder keeps its first name.
    let renamed = |t: f64| TestFrame::new(t).participant(100, Some("Alice (away)"));
    bot.send_frame(&renamed(1.5)).await; // Recall resends a frame it was unsure of
    bot.send_frame(&renamed(2.0)).await;
    bot.close().await;
    server.stop().await.unwrap();

    assert_eq!(
        std::fs::read(dir.join("000001500.png")).unwrap(),
        TestFrame::new(1.5).png,
        "not overwritten"
    );
    assert!(dir.join("000002000.png").exists());
    assert_eq!(read_jsonl(&dir.join("frames.jsonl")).len(), 3);
    assert_eq!(
        tree(&server.data_dir.join("rec_9f1c2a"))
            .iter()
            .filter(|p| p.ends_with("participant.json"))
            .count(),
        1
    );
    let participant = read_json(
        &server
            .data_dir
            .join("rec_9f1c2a/100-alice-smith/participant.json"),
    );
    assert_eq!(
        participant["name"], "Alice (away)",
        "participant.json is kept current"
    );
}

#[tokio::test]
async fn a_restart_continues_without_overwriting() {
    let data = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(data.path(), &[]).await;
    let mut bot = server.connect().await;
    for t in [5.0, 6.0] {
        bot.send_frame(&TestFrame::new(t)).await;
    }
    bot.close().await;
    server.stop().await.unwrap();

    let mut server = TestServer::start_in(data.path(), &[]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(6.0).png(png(64, 36, 123_456)))
        .await; // a repeat, different bytes
    bot.send_frame(&TestFrame::new(7.0).participant(100, Some("Someone Else")))
        .await;
    bot.close().await;
    server.stop().await.unwrap();

    let dir = data.path().join(ALICE_WEBCAM);
    assert_eq!(
        std::fs::read(dir.join("000006000.png")).unwrap(),
        TestFrame::new(6.0).png
    );
    assert!(dir.join("000007000.png").exists());
    assert_eq!(
        listed_files(&dir),
        ["000005000.png", "000006000.png", "000007000.png"]
    );
    let recording = read_json(&data.path().join("rec_9f1c2a/recording.json"));
    assert_eq!(
        recording["first_frame"]["relative"], 5.0,
        "kept across the restart"
    );
    assert_eq!(recording["last_frame"]["relative"], 7.0);
}

#[tokio::test]
async fn upgrades_without_the_right_token_get_401() {
    let server = TestServer::start().await;
    for url in [
        format!("ws://{}/ws", server.addr),
        server.ws_url("wrong-token-0123456789"),
        server.ws_url(&WS_TOKEN[..WS_TOKEN.len() - 1]),
        format!("ws://{}/ws?Token={WS_TOKEN}", server.addr),
    ] {
        match tokio_tungstenite::connect_async(&url).await {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401, "{url}"),
            other => panic!("{url}: expected 401, got {other:?}"),
        }
    }
    // A plain GET (not an upgrade) with no token is refused the same way, before anything else.
    let response = reqwest::get(format!("http://{}/ws", server.addr))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("token"));
}

#[tokio::test]
async fn a_token_is_generated_on_first_start_and_kept() {
    let data = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(data.path(), &["--generated-token"]).await;
    let token = std::fs::read_to_string(data.path().join(".ws-token"))
        .unwrap()
        .trim()
        .to_string();
    assert!(token.len() >= 40);
    Bot::connect(&server.ws_url(&token)).await.close().await;
    server.stop().await.unwrap();

    let server = TestServer::start_in(data.path(), &["--generated-token"]).await;
    let mut bot = Bot::connect(&server.ws_url(&token)).await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    wait_for_file(&data.path().join(ALICE_WEBCAM).join("000001000.png")).await;
}

#[tokio::test]
async fn bad_messages_are_refused_and_the_connection_goes_on() {
    let mut server = TestServer::start().await;
    let mut bot = server.connect().await;
    let good = TestFrame::new(1.0);
    let with = |pointer: &str, value: serde_json::Value| {
        let mut event = good.event_value();
        *event.pointer_mut(pointer).unwrap() = value;
        event.to_string()
    };
    let mut truncated = good.png.clone();
    truncated.truncate(truncated.len() / 2);
    let cases = [
        ("invalid_json", "{\"event\": ".to_string()),
        (
            "wrong_shape",
            json!({"event": "video_separate_png.data", "data": {"data": {}}}).to_string(),
        ),
        ("wrong_shape", with("/data/data/timestamp", json!("soon"))),
        (
            "invalid_base64",
            with("/data/data/buffer", json!("not base64!")),
        ),
        (
            "invalid_png",
            TestFrame::new(1.0)
                .png(b"GIF89a not a png".to_vec())
                .event(),
        ),
        ("invalid_png", TestFrame::new(1.0).png(truncated).event()),
        (
            "bad_dimensions",
            TestFrame::new(1.0).png(png(4097, 2, 1)).event(),
        ),
        (
            "unknown_stream_type",
            with("/data/data/type", json!("audio")),
        ),
        (
            "bad_timestamp",
            with("/data/data/timestamp/relative", json!(-3.0)),
        ),
        (
            "bad_timestamp",
            with("/data/data/timestamp/relative", json!(1.0e10)),
        ),
        (
            "bad_timestamp",
            with("/data/data/timestamp/absolute", json!("last tuesday")),
        ),
        ("unsafe_id", with("/data/recording/id", json!("../../etc"))),
        ("unsafe_id", with("/data/recording/id", json!(".."))),
        (
            "unsafe_id",
            with("/data/recording/id", json!("a".repeat(129))),
        ),
        ("unsafe_id", with("/data/data/participant/id", json!(-5))),
        ("unsafe_id", with("/data/data/participant/id", json!("100"))),
    ];
    for (reason, message) in &cases {
        bot.send_text(message.clone()).await;
        let reply = bot.next_json().await;
        assert_eq!(
            reply["error"]["reason"],
            *reason,
            "reply to {}",
            &message[..message.len().min(120)]
        );
        assert!(!reply["error"]["message"].as_str().unwrap().is_empty());
    }
    // Ignored without a reply: other event types and binary messages.
    bot.send_text(json!({"event": "transcript.data", "data": {}}).to_string())
        .await;
    bot.ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    // Then good frames on the same connection.
    bot.send_frame(&good).await;
    bot.send_frame(&TestFrame::new(2.0)).await;
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000002000.png")).await;

    let metrics = server.metrics().await;
    for reason in [
        "invalid_json",
        "invalid_base64",
        "bad_dimensions",
        "unknown_stream_type",
    ] {
        assert_eq!(refused(&metrics, reason), 1.0, "{reason}");
    }
    assert_eq!(refused(&metrics, "wrong_shape"), 2.0);
    assert_eq!(refused(&metrics, "invalid_png"), 2.0);
    assert_eq!(refused(&metrics, "bad_timestamp"), 3.0);
    assert_eq!(refused(&metrics, "unsafe_id"), 5.0);
    assert_eq!(
        metric_value(&metrics, "recall_frames_events_ignored_total"),
        2.0
    );
    bot.close().await;
    server.stop().await.unwrap();
    assert_eq!(
        tree(&server.data_dir)
            .iter()
            .filter(|p| p.ends_with(".png"))
            .count(),
        2,
        "only the good frames"
    );
    assert!(!server.data_dir.join("etc").exists());
}

#[tokio::test]
async fn an_oversized_message_closes_only_its_connection_with_1009() {
    let server = TestServer::start_with(&["--max-message-bytes", "65536"]).await;
    let mut other = server.connect().await;
    let mut bot = server.connect().await;
    let big = TestFrame::new(1.0).png(png(400, 300, 7)); // ~360 KB of PNG
    assert!(big.event().len() > 65536);
    bot.ws.send(Message::text(big.event())).await.unwrap();
    let close = bot.next_close().await.expect("a close frame with a code");
    assert_eq!(
        close.code,
        tungstenite::protocol::frame::coding::CloseCode::Size
    );
    assert!(close.reason.contains("65536"));

    only_the_closed_connections_frame_is_missing(&server, &mut other).await;
    assert_eq!(
        server
            .metric("recall_frames_messages_refused_total{reason=\"too_large\"}")
            .await,
        1.0
    );
}

/// After a connection was closed for its frame at 1 s: another connection's frame at 2 s
/// is still saved, and the closed one's is not.
async fn only_the_closed_connections_frame_is_missing(server: &TestServer, other: &mut Bot) {
    other.send_frame(&TestFrame::new(2.0)).await;
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000002000.png")).await;
    assert!(
        !server
            .data_dir
            .join(ALICE_WEBCAM)
            .join("000001000.png")
            .exists()
    );
}

/// A text message sent as three frames, as RFC 6455 allows, with a ping between them.
#[tokio::test]
async fn a_message_in_fragments_with_a_ping_between_them_is_saved_and_the_ping_answered() {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    let event = TestFrame::new(1.0).event().into_bytes();
    let third = event.len() / 3;
    let parts = [
        Frame::message(event[..third].to_vec(), OpCode::Data(Data::Text), false),
        Frame::ping(b"between".to_vec()),
        Frame::message(
            event[third..2 * third].to_vec(),
            OpCode::Data(Data::Continue),
            false,
        ),
        Frame::message(
            event[2 * third..].to_vec(),
            OpCode::Data(Data::Continue),
            true,
        ),
    ];
    for part in parts {
        bot.ws.send(Message::Frame(part)).await.unwrap();
    }
    let pong = tokio::time::timeout(PATIENCE, async {
        loop {
            match bot.ws.next().await {
                Some(Ok(Message::Pong(payload))) => return payload,
                Some(Ok(_)) => continue,
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    })
    .await
    .expect("a pong within the patience");
    assert_eq!(&pong[..], b"between");
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000001000.png")).await;
}

#[tokio::test]
async fn a_text_message_that_is_not_utf8_closes_only_its_connection_with_1007() {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start().await;
    let mut other = server.connect().await;
    let mut bot = server.connect().await;
    let mut event = TestFrame::new(1.0).event().into_bytes();
    // A byte that is never UTF-8, inside the first JSON string.
    let quote = event.iter().position(|&b| b == b'"').unwrap();
    event.insert(quote + 1, 0xff);
    let frame = Frame::message(event, OpCode::Data(Data::Text), true);
    bot.ws.send(Message::Frame(frame)).await.unwrap();
    let close = bot.next_close().await.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1007);
    only_the_closed_connections_frame_is_missing(&server, &mut other).await;
}

#[tokio::test]
async fn open_sockets_are_pinged() {
    let server = TestServer::start_with(&["--ping-interval", "100ms"]).await;
    let mut bot = server.connect().await;
    let message = tokio::time::timeout(PATIENCE, bot.ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(message, Message::Ping(_)), "got {message:?}");
}

#[tokio::test]
async fn a_quiet_stream_closes_and_reopens_on_its_next_frame() {
    let mut server = TestServer::start_with(&["--stream-idle-timeout", "200ms"]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    eventually("the stream opens", || async {
        server.metric("recall_frames_streams_open").await == 1.0
    })
    .await;
    eventually("the quiet stream closes", || async {
        server.metric("recall_frames_streams_open").await == 0.0
    })
    .await;
    bot.send_frame(&TestFrame::new(1.0)).await; // still a duplicate after reopening
    bot.send_frame(&TestFrame::new(2.0)).await;
    bot.close().await;
    server.stop().await.unwrap();
    let dir = server.data_dir.join(ALICE_WEBCAM);
    assert_eq!(listed_files(&dir), ["000001000.png", "000002000.png"]);
}

#[tokio::test]
async fn shutdown_with_frames_in_flight_loses_none() {
    // One-frame channels, so that frames wait in channels and sockets when the signal comes.
    let mut server = TestServer::start_with(&["--stream-queue-frames", "1"]).await;
    let mut bots = Vec::new();
    for _ in 0..3 {
        bots.push(server.connect().await);
    }
    let frames: Vec<Vec<TestFrame>> = (0..3)
        .map(|b| {
            (0..40)
                .map(|i| {
                    TestFrame::new(i as f64 * 0.5)
                        .participant(b + 1, None)
                        .kind(if i % 2 == 0 { "webcam" } else { "screenshare" })
                })
                .collect()
        })
        .collect();
    // Half of each bot's frames, then the signal, then the rest: sent before the bots
    // read the server's close frame, so the server must read and save them all.
    for (bot, frames) in bots.iter_mut().zip(&frames) {
        for frame in &frames[..20] {
            bot.send_frame(frame).await;
        }
    }
    server.begin_stop();
    for (bot, frames) in bots.iter_mut().zip(&frames) {
        for frame in &frames[20..] {
            bot.send_frame(frame).await;
        }
    }
    for bot in &mut bots {
        let close = bot.next_close().await.expect("a close frame");
        assert_eq!(
            close.code,
            tungstenite::protocol::frame::coding::CloseCode::Away
        );
    }
    drop(bots);
    server.finished().await.expect("shutdown completes in time");

    for (b, frames) in frames.iter().enumerate() {
        for frame in frames {
            server.assert_saved(&(b + 1).to_string(), frame);
        }
        for kind in ["webcam", "screenshare"] {
            let manifest = read_jsonl(
                &server
                    .stream_dir(RECORDING, &(b + 1).to_string(), kind)
                    .join("frames.jsonl"),
            );
            assert_eq!(manifest.len(), 20);
        }
    }
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let server = TestServer::start().await;
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains("recall_frames_frames_saved_total{kind=\"webcam\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("# EOF"));
}

#[tokio::test]
async fn with_an_api_token_metrics_need_it() {
    let token = "api-token-abcdefghijklmnop";
    let server = TestServer::start_with(&["--api-token", token]).await;
    let client = reqwest::Client::new();
    let url = server.url("/metrics");
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.unwrap().status().as_u16()
    };
    assert_eq!(status(client.get(&url)).await, 401);
    assert_eq!(
        status(client.get(&url).bearer_auth("wrong-token-abcdefghijk")).await,
        401
    );
    assert_eq!(status(client.get(&url).bearer_auth(token)).await, 200);
    assert_eq!(
        status(client.get(&url).basic_auth("anyone", Some(token))).await,
        200
    );
    let refused = client.get(&url).send().await.unwrap();
    assert!(
        refused.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    // /healthz stays open for load balancers.
    assert_eq!(status(client.get(server.url("/healthz"))).await, 200);
}

#[tokio::test]
async fn without_an_api_token_forwarded_requests_are_refused() {
    let server = TestServer::start().await;
    let response = reqwest::Client::new()
        .get(server.url("/metrics"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn slow_stream_capacity_waits_instead_of_dropping() {
    // A budget smaller than a few frames: senders must wait for the sink, and every frame
    // still arrives.
    let mut server =
        TestServer::start_with(&["--buffer-bytes", "1048576", "--stream-queue-frames", "1"]).await;
    let mut bot = server.connect().await;
    let frames: Vec<_> = (0..30)
        .map(|i| TestFrame::new(i as f64).png(png(300, 200, i)))
        .collect();
    for frame in &frames {
        bot.send_frame(frame).await;
    }
    bot.close().await;
    server.stop().await.unwrap();
    assert_eq!(
        read_jsonl(&server.data_dir.join(ALICE_WEBCAM).join("frames.jsonl")).len(),
        30
    );
}

/// recording.json is current within its 2 s interval after a bot's last frame, with the
/// bot gone and its streams still open (they close only at STREAM_IDLE_TIMEOUT).
#[tokio::test]
async fn recording_json_catches_up_with_the_last_frame_soon_after_the_bot_leaves() {
    let server = TestServer::start_with(&["--stream-idle-timeout", "10m"]).await;
    let mut bot = server.connect().await;
    // Quicker than the 2 s interval: all but the first wait for the next summary.
    let times = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5];
    for &relative in &times {
        bot.send_frame(&TestFrame::new(relative)).await;
    }
    server
        .wait_for_frames("/api/recordings/rec_9f1c2a/100/webcam", times.len() as u64)
        .await;
    bot.close().await;

    // Well under STREAM_IDLE_TIMEOUT: PATIENCE is 15 s.
    let summary = server.data_dir.join("rec_9f1c2a/recording.json");
    eventually("recording.json has the last frame's time", || async {
        summary.exists() && read_json(&summary)["last_frame"]["relative"] == json!(3.5)
    })
    .await;
    let recording = read_json(&summary);
    assert_eq!(recording["first_frame"]["relative"], json!(1.0));
    assert_eq!(
        recording["last_frame"],
        json!({"relative": 3.5, "absolute": "2026-11-21T10:00:03.5Z"})
    );
}
