//! Participant events (join, leave, update, speech, chat...) over a real websocket into
//! `<recording>/events.jsonl`, with `participant.json` kept current.

use std::io::Write as _;

use crate::common::*;
use serde_json::{Value, json};

const EVENTS: &str = "rec_9f1c2a/events.jsonl";

/// What a line of events.jsonl holds for `event`, apart from its `received_at`.
fn expected_line(event: &TestEvent) -> Value {
    json!({
        "event": event.kind,
        "participant": event.participant_value(),
        "timestamp": {"relative": event.relative, "absolute": absolute_time(event.relative)},
        "data": event.data,
    })
}

fn without_received_at(mut line: Value) -> Value {
    let received_at = line
        .as_object_mut()
        .unwrap()
        .remove("received_at")
        .expect("each line has received_at");
    assert!(
        received_at
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok()
    );
    line
}

#[tokio::test]
async fn events_are_recorded_in_order_and_keep_participant_json_current() {
    let mut server = TestServer::start().await;
    let mut bot = server.connect().await;
    let bob = |kind: &str, t: f64| TestEvent::new(kind, t).participant(200, Some("Bob"));
    let events = [
        // Bob is first seen through an event: his folder is named now, from this name.
        bob("join", 1.0),
        bob("webcam_on", 1.5),
        bob("update", 3.0).participant(200, Some("Bob Jones")),
        bob("chat_message", 4.25)
            .participant(200, Some("Bob Jones"))
            .data(json!({"text": "can you hear me?", "to": "everyone"})),
        // Carol's first sight is a speech event: she gets a folder and participant.json too.
        TestEvent::new("speech_on", 5.0).participant(300, Some("Carol")),
        TestEvent::new("speech_off", 6.0).participant(300, Some("Carol")),
        bob("leave", 9.0).participant(200, Some("Bob Jones")),
    ];
    bot.send_text(events[0].event()).await;
    bot.send_text(events[1].event()).await;
    // A frame after the join lands in the folder the event named.
    let frame = TestFrame::new(2.0).participant(200, Some("Bob"));
    bot.send_frame(&frame).await;
    // Frames are saved by their stream's task, events by the connection: let the frame
    // (which names Bob "Bob") be saved before the update renames him.
    eventually("the frame is saved", || async {
        server
            .metric("recall_frames_frames_saved_total{kind=\"webcam\"}")
            .await
            == 1.0
    })
    .await;
    for event in &events[2..] {
        bot.send_text(event.event()).await;
    }
    bot.close().await;
    server.stop().await.unwrap();

    let root = &server.data_dir;
    let lines: Vec<Value> = read_jsonl(&root.join(EVENTS))
        .into_iter()
        .map(without_received_at)
        .collect();
    let expected: Vec<Value> = events.iter().map(expected_line).collect();
    assert_eq!(lines, expected);

    assert_eq!(
        std::fs::read(
            root.join("rec_9f1c2a/200-bob/webcam")
                .join(frame.file_name())
        )
        .unwrap(),
        frame.png
    );
    // The update renamed Bob in participant.json, not on disk; the frame (sent before the
    // update) did not undo it, nor did the later chat and leave.
    assert_eq!(
        read_json(&root.join("rec_9f1c2a/200-bob/participant.json")),
        events[2].participant_value()
    );
    assert_eq!(
        read_json(&root.join("rec_9f1c2a/300-carol/participant.json")),
        events[4].participant_value()
    );
    let mut expected_tree = vec![
        "rec_9f1c2a/200-bob/participant.json",
        "rec_9f1c2a/200-bob/webcam/000002000.png",
        "rec_9f1c2a/200-bob/webcam/frames.jsonl",
        "rec_9f1c2a/300-carol/participant.json",
        "rec_9f1c2a/events.jsonl",
        "rec_9f1c2a/recording.json",
    ];
    expected_tree.sort();
    assert_eq!(tree(root), expected_tree);

    let recording = read_json(&root.join("rec_9f1c2a/recording.json"));
    assert_eq!(
        recording["participant_events"],
        json!({"id": "pe_1", "metadata": {"source": "tests"}})
    );
    assert_eq!(recording["video_separate"]["id"], "vs_1");
    assert_eq!(recording["bot"]["id"], "bot_1");
    assert_eq!(
        recording["first_frame"]["relative"], 2.0,
        "frame times come from frames only"
    );
    assert_eq!(recording["last_frame"]["relative"], 2.0);
}

#[tokio::test]
async fn participant_json_follows_the_newest_description_by_meeting_time() {
    let mut server = TestServer::start().await;
    let path = server.data_dir.join("rec_9f1c2a/200-bob/participant.json");
    renames_follow_meeting_time(&server, || async { read_json(&path) }).await;
    server.stop().await.unwrap();
    assert_eq!(read_json(&path)["name"], "Robert");
}

#[tokio::test]
async fn a_recording_with_events_only_still_has_its_summary() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    bot.send_text(TestEvent::new("join", 0.0).recording("rec_quiet").event())
        .await;
    let events = server.data_dir.join("rec_quiet/events.jsonl");
    wait_for_file(&events).await;
    eventually("the event is counted", || async {
        server
            .metric("recall_frames_participant_events_recorded_total")
            .await
            == 1.0
    })
    .await;
    let recording = read_json(&server.data_dir.join("rec_quiet/recording.json"));
    assert_eq!(recording["recording"]["id"], "rec_quiet");
    assert_eq!(recording["participant_events"]["id"], "pe_1");
    assert_eq!(recording["first_frame"], Value::Null);
    assert!(
        server
            .data_dir
            .join("rec_quiet/100-alice-smith/participant.json")
            .exists()
    );
}

#[tokio::test]
async fn bad_events_are_refused_and_the_connection_goes_on() {
    let mut server = TestServer::start().await;
    let mut bot = server.connect().await;
    let good = TestEvent::new("join", 1.0);
    let with = |pointer: &str, value: Value| {
        let mut event = good.event_value();
        *event.pointer_mut(pointer).unwrap() = value;
        event.to_string()
    };
    let cases = [
        ("unsafe_id", with("/data/recording/id", json!("../../etc"))),
        ("unsafe_id", with("/data/recording/id", json!(7))),
        ("unsafe_id", with("/data/data/participant/id", json!("100"))),
        ("unsafe_id", with("/data/data/participant/id", json!(-1))),
        (
            "bad_timestamp",
            with("/data/data/timestamp/relative", json!(-2.0)),
        ),
        (
            "bad_timestamp",
            with("/data/data/timestamp/absolute", json!("half past ten")),
        ),
        ("wrong_shape", with("/data/data/participant", json!(null))),
        ("wrong_shape", with("/data/data", json!("joined"))),
        (
            "invalid_json",
            "{\"event\": \"participant_events.join\", ".into(),
        ),
    ];
    for (reason, message) in &cases {
        bot.send_text(message.clone()).await;
        let reply = bot.next_json().await;
        assert_eq!(reply["error"]["reason"], *reason, "reply to {message}");
        assert!(!reply["error"]["message"].as_str().unwrap().is_empty());
    }
    // A participant event type Recall may add later is ignored, like any other event.
    bot.send_text(TestEvent::new("raised_hand", 1.5).event())
        .await;
    bot.send_text(good.event()).await;
    bot.send_text(TestEvent::new("leave", 2.0).event()).await;
    bot.close().await;

    let metrics = server.metrics().await;
    assert_eq!(refused(&metrics, "unsafe_id"), 4.0);
    assert_eq!(refused(&metrics, "bad_timestamp"), 2.0);
    assert_eq!(refused(&metrics, "wrong_shape"), 2.0);
    assert_eq!(refused(&metrics, "invalid_json"), 1.0);
    assert_eq!(
        metric_value(&metrics, "recall_frames_events_ignored_total"),
        1.0
    );
    assert_eq!(
        metric_value(&metrics, "recall_frames_participant_events_recorded_total"),
        2.0
    );
    server.stop().await.unwrap();
    let kinds: Vec<Value> = read_jsonl(&server.data_dir.join(EVENTS))
        .into_iter()
        .map(|line| line["event"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            json!("participant_events.join"),
            json!("participant_events.leave")
        ]
    );
    assert!(!server.data_dir.join("etc").exists());
    assert!(!server.data_dir.parent().unwrap().join("etc").exists());
}

#[tokio::test]
async fn a_torn_last_line_is_cut_and_earlier_lines_are_kept() {
    let data = tempfile::tempdir().unwrap();
    let mut server = TestServer::start_in(data.path(), &[]).await;
    let mut bot = server.connect().await;
    let first = [
        TestEvent::new("join", 1.0),
        TestEvent::new("webcam_on", 1.5),
    ];
    for event in &first {
        bot.send_text(event.event()).await;
    }
    bot.close().await;
    server.stop().await.unwrap();

    // A crash in the middle of an append left half a line.
    let log = data.path().join(EVENTS);
    let intact = std::fs::read(&log).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(br#"{"event":"participant_events.speech_on","partic"#)
        .unwrap();

    let mut server = TestServer::start_in(data.path(), &[]).await;
    let mut bot = server.connect().await;
    let after = TestEvent::new("speech_on", 2.0);
    bot.send_text(after.event()).await;
    bot.close().await;
    server.stop().await.unwrap();

    let text = std::fs::read(&log).unwrap();
    assert!(text.starts_with(&intact), "earlier lines are untouched");
    let lines: Vec<Value> = read_jsonl(&log)
        .into_iter()
        .map(without_received_at)
        .collect();
    let expected: Vec<Value> = first.iter().chain([&after]).map(expected_line).collect();
    assert_eq!(lines, expected);
}

#[tokio::test]
async fn recorded_events_are_served_by_the_api_and_shown_on_the_recording_page() {
    let server = TestServer::start().await;
    let mut bot = server.connect().await;
    let chat = TestEvent::new("chat_message", 4.25)
        .participant(200, Some("Bob"))
        .data(json!({"text": "can you hear me?", "to": "everyone"}));
    bot.send_text(
        TestEvent::new("join", 1.0)
            .participant(200, Some("Bob"))
            .event(),
    )
    .await;
    bot.send_frame(&TestFrame::new(2.0).participant(200, Some("Bob")))
        .await;
    bot.send_text(chat.event()).await;
    let url = server.url("/api/recordings/rec_9f1c2a");
    let detail = || async {
        reqwest::get(&url)
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap_or(Value::Null)
    };
    eventually("the API lists both events", || async {
        detail().await["events"]
            .as_array()
            .is_some_and(|events| events.len() == 2)
    })
    .await;
    let detail = detail().await;
    let events = detail["events"].as_array().unwrap();
    assert_eq!(events[0]["event"], "participant_events.join");
    assert_eq!(without_received_at(events[1].clone()), expected_line(&chat));

    let page = reqwest::get(server.url("/recordings/rec_9f1c2a"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("wrote in the chat"),
        "the timeline shows the chat message"
    );
    assert!(page.contains("can you hear me?"));
}
