//! What recordings are called: the title and the participants' names in the list of
//! recordings, on a recording's page and in the JSON API, from the recording's or the bot's
//! metadata, from a bot this server created, or from the first frame's time.

use crate::common::recall_api::{RECALL_API_KEY, RecallStandIn};
use crate::common::s3::S3Server;
use crate::common::*;
use serde_json::{Value, json};

/// Streams frames of Alice (100) and Bob (200) into `recording`, made by `frame`, and waits
/// until both are listed.
async fn stream_two_people(
    server: &TestServer,
    recording: &str,
    frame: impl Fn(TestFrame) -> TestFrame,
) {
    let mut bot = server.connect().await;
    for frame_at in [
        TestFrame::new(0.5),
        TestFrame::new(1.0),
        TestFrame::new(0.5).participant(200, Some("Bob Okafor")),
    ] {
        bot.send_frame(&frame(frame_at.recording(recording))).await;
    }
    bot.close().await;
    server
        .wait_for_frames(&format!("/api/recordings/{recording}/100/webcam"), 2)
        .await;
    server
        .wait_for_frames(&format!("/api/recordings/{recording}/200/webcam"), 1)
        .await;
}

/// The list's entry for `recording`.
async fn listed(server: &TestServer, recording: &str) -> Value {
    let list = server.get_json("/api/recordings").await;
    list["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == recording)
        .unwrap_or_else(|| panic!("{recording} is not listed: {list}"))
        .clone()
}

async fn html(server: &TestServer, path: &str) -> String {
    let response = server.get(path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    response.text().await.unwrap()
}

/// The title and where it came from, as the list and the detail both say.
async fn title_of(server: &TestServer, recording: &str) -> (String, String) {
    let entry = listed(server, recording).await;
    let detail = server
        .get_json(&format!("/api/recordings/{recording}"))
        .await;
    assert_eq!(
        (&detail["title"], &detail["title_source"]),
        (&entry["title"], &entry["title_source"]),
        "the list and the detail agree"
    );
    (
        entry["title"].as_str().unwrap().to_owned(),
        entry["title_source"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn a_title_in_metadata_names_the_recording_with_its_people_everywhere() {
    let server = TestServer::start().await;
    let recording = "6f1d2a4e-1b7c-4e0b-9a51-3f1e7c2d9b80";
    stream_two_people(&server, recording, |frame| {
        frame.recording_metadata(json!({"title": "Weekly sync", "team": "research"}))
    })
    .await;

    let entry = listed(&server, recording).await;
    assert_eq!(entry["title"], "Weekly sync");
    assert_eq!(entry["title_source"], "metadata");
    assert_eq!(entry["participants"], 2, "the count stays");
    assert_eq!(
        entry["people"],
        json!([
            {"id": 100, "name": "Alice Smith", "is_host": true},
            {"id": 200, "name": "Bob Okafor", "is_host": false}
        ])
    );
    let detail = server
        .get_json(&format!("/api/recordings/{recording}"))
        .await;
    assert_eq!(
        (&detail["title"], &detail["title_source"]),
        (&json!("Weekly sync"), &json!("metadata"))
    );
    assert_eq!(detail["participants"][1]["name"], "Bob Okafor");

    // recording.json keeps the title, so the list reads it back without working it out.
    let summary: Value = serde_json::from_slice(
        &std::fs::read(server.data_dir.join(recording).join("recording.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        summary["title"],
        json!({"text": "Weekly sync", "source": "metadata"})
    );

    let index = html(&server, "/").await;
    assert!(
        index.contains(&format!(
            "<h2><a href=\"/recordings/{recording}\">Weekly sync</a></h2>"
        )),
        "the card's heading is the title: {index}"
    );
    assert!(
        index.contains(&format!("<code>{recording}</code>")),
        "the id is still shown, as secondary text"
    );
    assert!(
        index.contains("Alice Smith and Bob Okafor"),
        "the card names the people"
    );
    let page = html(&server, &format!("/recordings/{recording}")).await;
    assert!(page.contains("<h1>Weekly sync</h1>"), "{page}");
    assert!(page.contains("<title>Weekly sync · recall-frames</title>"));
    let player = html(&server, &format!("/recordings/{recording}/100/webcam")).await;
    assert!(
        player.contains(&format!(
            "<a href=\"/recordings/{recording}\">Weekly sync</a>"
        )),
        "the player's breadcrumb names the recording"
    );
}

#[tokio::test]
async fn the_bots_metadata_names_it_when_the_recordings_does_not() {
    let server = TestServer::start().await;
    stream_two_people(&server, "from_the_bot", |frame| {
        frame.bot_metadata(json!({"title": "Design review", "bot_name": "Recorder"}))
    })
    .await;
    assert_eq!(
        title_of(&server, "from_the_bot").await,
        ("Design review".into(), "metadata".into())
    );
}

#[tokio::test]
async fn without_any_context_the_first_frames_time_names_it_never_the_id() {
    let server = TestServer::start().await;
    let recording = "0b9e4c1a-5d2f-4a8e-b3c7-9e1f2d3c4b5a";
    stream_two_people(&server, recording, |frame| frame).await;
    assert_eq!(
        title_of(&server, recording).await,
        (
            "Recording of 21 Nov 2026, 10:00 UTC".into(),
            "start_time".into()
        )
    );
    let index = html(&server, "/").await;
    assert!(index.contains(&format!(
        "<h2><a href=\"/recordings/{recording}\">Recording of 21 Nov 2026, 10:00 UTC</a></h2>"
    )));
    assert!(
        !index.contains(&format!(">{recording}</a>")),
        "the id is never the title"
    );
}

#[tokio::test]
async fn a_bot_created_here_names_its_recordings_by_title_bot_name_or_meeting() {
    let recall = RecallStandIn::start().await;
    let base = recall.url();
    let server = TestServer::start_with(&[
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &base,
        "--public-url",
        "https://frames.example.com",
    ])
    .await;
    let meeting = "https://meet.google.com/abc-defg-hij";
    let cases = [
        (
            json!({"meeting_url": meeting, "bot_name": "Recorder", "title": "Quarterly planning"}),
            ("Quarterly planning", "metadata"),
        ),
        (
            json!({"meeting_url": meeting, "bot_name": "Standup notes"}),
            ("Standup notes", "bot_name"),
        ),
        (
            json!({"meeting_url": meeting}),
            ("Google Meet meeting on meet.google.com", "meeting"),
        ),
    ];
    for (i, (request, (title, source))) in cases.into_iter().enumerate() {
        let response = reqwest::Client::new()
            .post(server.url("/api/bots"))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{request}");
        let bot: Value = response.json().await.unwrap();
        // Recall sends the bot's metadata back with every event of its recording.
        let recording = format!("created_{i}");
        let metadata = bot["metadata"].clone();
        stream_two_people(&server, &recording, |frame| {
            frame.bot_metadata(metadata.clone())
        })
        .await;
        assert_eq!(
            title_of(&server, &recording).await,
            (title.to_owned(), source.to_owned()),
            "{request}"
        );
    }
}

#[tokio::test]
async fn in_a_bucket_the_title_is_kept_in_recording_json_and_read_back_by_any_instance() {
    let s3 = S3Server::start().await;
    let flags = s3.flags(None);
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    args.extend(["--bucket-manifest-interval", "100ms"]);
    let mut writer = TestServer::start_with(&args).await;
    stream_two_people(&writer, "in_a_bucket", |frame| {
        frame.bot_metadata(json!({"title": "Board meeting"}))
    })
    .await;
    writer.stop().await.unwrap();

    let summary: Value =
        serde_json::from_slice(&s3.get("in_a_bucket/recording.json").await.unwrap()).unwrap();
    assert_eq!(
        summary["title"],
        json!({"text": "Board meeting", "source": "metadata"})
    );
    // A fresh instance that never saw the frames.
    let reader = TestServer::start_with(&args).await;
    assert_eq!(
        title_of(&reader, "in_a_bucket").await,
        ("Board meeting".into(), "metadata".into())
    );
    let entry = listed(&reader, "in_a_bucket").await;
    let names: Vec<&Value> = entry["people"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert_eq!(names, [&json!("Alice Smith"), &json!("Bob Okafor")]);
}
