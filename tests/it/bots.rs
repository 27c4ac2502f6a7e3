//! Creating Recall bots that stream to this server, through `/api/bots` and through
//! `recall-frames bot create`, against a local stand-in for Recall's API.

use crate::common::recall_api::{RECALL_API_KEY, RecallStandIn, SilentServer, closed_port_url};
use crate::common::*;
use serde_json::{Value, json};

const MEETING: &str = "https://meet.google.com/abc-defg-hij";
const API_TOKEN: &str = "api-token-abcdefghijklmnop";

/// Every event type the server records: what the bot's endpoint must subscribe to.
const EVENTS: [&str; 11] = [
    "video_separate_png.data",
    "participant_events.join",
    "participant_events.leave",
    "participant_events.update",
    "participant_events.webcam_on",
    "participant_events.webcam_off",
    "participant_events.screenshare_on",
    "participant_events.screenshare_off",
    "participant_events.speech_on",
    "participant_events.speech_off",
    "participant_events.chat_message",
];

/// The create-bot body Recall should receive for a bot that streams to `endpoint`.
fn expected_body(meeting_url: &str, extra: Value, endpoint: &str) -> Value {
    let mut body = json!({
        "meeting_url": meeting_url,
        "recording_config": {
            "video_mixed_layout": "gallery_view_v2",
            "video_separate_png": {},
            "realtime_endpoints": [
                {"type": "websocket", "url": endpoint, "events": EVENTS}
            ]
        }
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// The server, configured to create bots through `recall`, plus `args`.
async fn server_for(recall: &RecallStandIn, args: &[&str]) -> TestServer {
    let base = recall.url();
    let mut all = vec![
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &base,
    ];
    all.extend(args);
    TestServer::start_with(&all).await
}

/// Sends a request and returns its status and JSON body.
async fn call(request: reqwest::RequestBuilder) -> (u16, Value) {
    let response = request.send().await.expect("the server answers");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, body)
}

async fn create(server: &TestServer, body: Value) -> (u16, Value) {
    call(
        reqwest::Client::new()
            .post(server.url("/api/bots"))
            .json(&body),
    )
    .await
}

fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message in {body}"))
}

#[tokio::test]
async fn creating_a_bot_sends_recall_the_exact_request() {
    let recall = RecallStandIn::start().await;
    let server = server_for(
        &recall,
        &["--public-url", "https://frames.example.com/team-a"],
    )
    .await;

    let (status, bot) = create(
        &server,
        json!({"meeting_url": MEETING, "bot_name": "Recorder", "join_at": "2026-11-21T10:00:00Z"}),
    )
    .await;
    assert_eq!(status, 201, "{bot}");
    assert_eq!(bot["id"], "00000000-0000-4000-8000-000000000001");
    assert_eq!(bot["bot_name"], "Recorder");

    let received = recall.received();
    assert_eq!(received.len(), 1);
    let request = &received[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/api/v1/bot/");
    assert_eq!(request.authorization.as_deref(), Some(RECALL_API_KEY));
    assert_eq!(request.content_type.as_deref(), Some("application/json"));
    assert_eq!(
        request.body,
        expected_body(
            MEETING,
            json!({
                "bot_name": "Recorder", "join_at": "2026-11-21T10:00:00Z",
                "metadata": {"bot_name": "Recorder", "meeting_host": "meet.google.com"}
            }),
            &format!("wss://frames.example.com/team-a/ws?token={WS_TOKEN}")
        )
    );
    // The bot's JSON comes back as Recall sent it.
    assert_eq!(bot["recording_config"], request.body["recording_config"]);
}

#[tokio::test]
async fn the_registered_url_lets_the_bot_in() {
    // A public http:// URL that is this very server: the registered ws:// URL must work.
    let recall = RecallStandIn::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let data = tempfile::tempdir().unwrap();
    let base = recall.url();
    let config = recall_frames::Config::from_args([
        "--data-dir",
        data.path().to_str().unwrap(),
        "--ws-token",
        WS_TOKEN,
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &base,
        "--public-url",
        &public,
    ])
    .unwrap();
    let mut server = TestServer::start_on(listener, config).await;

    let (status, _) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 201);
    let endpoint = recall.received()[0].body["recording_config"]["realtime_endpoints"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        endpoint,
        format!("ws://{}/ws?token={WS_TOKEN}", server.addr)
    );

    // What Recall does once the bot records: connect to exactly that URL and stream.
    let mut bot = Bot::connect(&endpoint).await;
    bot.send_text(TestEvent::new("join", 0.5).event()).await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    bot.close().await;
    server.stop().await.unwrap();
    let recording = data.path().join(RECORDING);
    assert!(
        recording
            .join("100-alice-smith/webcam/000001000.png")
            .exists()
    );
    assert_eq!(read_jsonl(&recording.join("events.jsonl")).len(), 1);
}

#[tokio::test]
async fn on_fly_the_public_url_is_the_apps_fly_dev_host() {
    let recall = RecallStandIn::start().await;
    let server = server_for(&recall, &["--fly-app-name", "my-frames"]).await;
    let (status, _) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 201);
    assert_eq!(
        recall.received()[0].body,
        expected_body(
            MEETING,
            json!({"metadata": {"meeting_host": "meet.google.com"}}),
            &format!("wss://my-frames.fly.dev/ws?token={WS_TOKEN}")
        )
    );

    // PUBLIC_URL, when set, wins (a custom domain in front of the Fly app).
    let recall = RecallStandIn::start().await;
    let server = server_for(
        &recall,
        &[
            "--fly-app-name",
            "my-frames",
            "--public-url",
            "https://frames.example.com",
        ],
    )
    .await;
    create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(
        recall.received()[0].body["recording_config"]["realtime_endpoints"][0]["url"],
        format!("wss://frames.example.com/ws?token={WS_TOKEN}")
    );
}

#[tokio::test]
async fn without_a_public_url_creating_a_bot_answers_503() {
    let recall = RecallStandIn::start().await;
    let server = server_for(&recall, &[]).await;
    let (status, body) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 503);
    assert!(error_of(&body).contains("set PUBLIC_URL"), "{body}");
    assert!(recall.received().is_empty(), "Recall was not asked");

    // Reading a bot needs no public URL.
    let (status, _) = call(reqwest::Client::new().get(server.url("/api/bots/someid"))).await;
    assert_eq!(status, 404, "relayed from Recall");
    assert_eq!(recall.received().len(), 1);
}

#[tokio::test]
async fn without_an_api_key_the_bot_routes_answer_503() {
    let server = TestServer::start_with(&["--public-url", "https://frames.example.com"]).await;
    let client = reqwest::Client::new();
    for request in [
        client
            .post(server.url("/api/bots"))
            .json(&json!({"meeting_url": MEETING})),
        client.get(server.url("/api/bots/abc")),
        client.post(server.url("/api/bots/abc/leave")),
    ] {
        let (status, body) = call(request).await;
        assert_eq!(status, 503);
        assert!(error_of(&body).contains("RECALL_API_KEY"), "{body}");
    }
}

#[tokio::test]
async fn the_bot_routes_are_guarded_by_the_api_token() {
    let recall = RecallStandIn::start().await;
    let server = server_for(
        &recall,
        &[
            "--api-token",
            API_TOKEN,
            "--public-url",
            "https://f.example",
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let post = || {
        client
            .post(server.url("/api/bots"))
            .json(&json!({"meeting_url": MEETING}))
    };

    let (status, body) = call(post()).await;
    assert_eq!(status, 401);
    assert!(error_of(&body).contains("API_TOKEN"));
    let (status, _) = call(post().bearer_auth("wrong-token-abcdefghijk")).await;
    assert_eq!(status, 401);
    let (status, _) = call(client.get(server.url("/api/bots/x"))).await;
    assert_eq!(status, 401);
    assert!(recall.received().is_empty(), "nothing reached Recall");

    let (status, bot) = call(post().bearer_auth(API_TOKEN)).await;
    assert_eq!(status, 201);
    let (status, _) = call(post().basic_auth("anyone", Some(API_TOKEN))).await;
    assert_eq!(status, 201);
    let id = bot["id"].as_str().unwrap();
    let (status, _) = call(
        client
            .get(server.url(&format!("/api/bots/{id}")))
            .bearer_auth(API_TOKEN),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(recall.received().len(), 3);
}

#[tokio::test]
async fn bad_requests_get_a_clear_422_and_never_reach_recall() {
    let recall = RecallStandIn::start().await;
    let server = server_for(&recall, &["--public-url", "https://f.example"]).await;
    let cases = [
        (
            json!({"meeting_url": MEETING, "bot": "x"}),
            "unknown field `bot`",
        ),
        (
            json!({"bot_name": "Recorder"}),
            "missing field `meeting_url`",
        ),
        (json!({"meeting_url": 42}), "meeting_url"),
        (json!({"meeting_url": "meet.google.com/abc"}), "not a URL"),
        (
            json!({"meeting_url": "ftp://meet.google.com/abc"}),
            "http:// or https://",
        ),
        (
            json!({"meeting_url": MEETING, "join_at": "tomorrow at ten"}),
            "join_at",
        ),
        (
            json!({"meeting_url": MEETING, "bot_name": " "}),
            "bot_name must not be empty",
        ),
        (
            json!({"meeting_url": MEETING, "title": "  "}),
            "title must not be empty",
        ),
        (
            json!({"meeting_url": MEETING, "title": "t".repeat(201)}),
            "title must be at most 200 characters",
        ),
        (json!({"meeting_url": MEETING, "title": 7}), "title"),
        (json!([MEETING]), "must be a JSON object"),
    ];
    for (body, expected) in cases {
        let (status, answer) = create(&server, body.clone()).await;
        assert_eq!(status, 422, "{body} → {answer}");
        assert!(
            error_of(&answer).contains(expected),
            "{body} → {answer}, expected it to say {expected:?}"
        );
    }

    let client = reqwest::Client::new();
    let (status, answer) = call(
        client
            .post(server.url("/api/bots"))
            .header("content-type", "application/json")
            .body("{\"meeting_url\": "),
    )
    .await;
    assert_eq!(status, 422);
    assert!(error_of(&answer).contains("EOF"), "{answer}");

    let (status, answer) = call(client.post(server.url("/api/bots")).body(MEETING)).await;
    assert_eq!(status, 415);
    assert!(error_of(&answer).contains("application/json"), "{answer}");

    for path in ["/api/bots/not.an.id", "/api/bots/a%2F..%2Fb/leave"] {
        let request = if path.ends_with("leave") {
            client.post(server.url(path))
        } else {
            client.get(server.url(path))
        };
        let (status, answer) = call(request).await;
        assert_eq!(status, 422, "{path}");
        assert!(
            error_of(&answer).contains("not a Recall bot id"),
            "{answer}"
        );
    }
    assert!(recall.received().is_empty());
}

#[tokio::test]
async fn recalls_refusals_come_back_with_recalls_status_and_words() {
    let recall = RecallStandIn::start().await;
    let server = server_for(&recall, &["--public-url", "https://f.example"]).await;
    let (status, body) = create(
        &server,
        json!({"meeting_url": "https://example.com/not-a-meeting"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        error_of(&body),
        "Recall refused the request (400 Bad Request): meeting_url: Invalid meeting URL."
    );
    assert_eq!(
        body["recall"],
        json!({"meeting_url": ["Invalid meeting URL."]})
    );

    let (status, body) =
        call(reqwest::Client::new().get(server.url("/api/bots/unknown-bot"))).await;
    assert_eq!(status, 404);
    assert!(error_of(&body).ends_with("Not found."), "{body}");

    // A key Recall does not know (for instance one of another region).
    let base = recall.url();
    let server = TestServer::start_with(&[
        "--recall-api-key",
        "rk_other_region",
        "--recall-api-base",
        &base,
        "--public-url",
        "https://f.example",
    ])
    .await;
    let (status, body) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 401);
    let error = error_of(&body);
    assert!(error.contains("Invalid API key."), "{error}");
    assert!(error.contains("RECALL_REGION"), "{error}");
    assert!(
        body.get("recall").is_some() && !error.contains("rk_other_region"),
        "{body}"
    );
}

#[tokio::test]
async fn recalls_throttling_comes_back_as_a_429_with_its_retry_after() {
    let recall = RecallStandIn::start().await;
    let server = server_for(&recall, &["--public-url", "https://f.example"]).await;
    recall.throttle(12);
    let response = reqwest::Client::new()
        .post(server.url("/api/bots"))
        .json(&json!({"meeting_url": MEETING}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()[reqwest::header::RETRY_AFTER], "12");
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        error_of(&body),
        "Recall refused the request (429 Too Many Requests): Request was throttled. \
         Expected available in 12 seconds. (try again in 12 s)"
    );

    // Other refusals carry no Retry-After.
    recall.answer_everything_with(reqwest::StatusCode::BAD_REQUEST, "{}");
    let response = reqwest::Client::new()
        .get(server.url("/api/bots/some-bot"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .is_none()
    );
}

#[tokio::test]
async fn recall_failing_is_a_502_that_keeps_its_details_to_the_log() {
    let recall = RecallStandIn::start().await;
    let server = server_for(&recall, &["--public-url", "https://f.example"]).await;
    recall.answer_everything_with(
        reqwest::StatusCode::INTERNAL_SERVER_ERROR,
        "Traceback (most recent call last): secret internals",
    );
    let (status, body) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 502);
    assert_eq!(
        error_of(&body),
        "Recall's API failed (500 Internal Server Error); the details are in this server's log"
    );
    assert!(!body.to_string().contains("Traceback"));

    // A 2xx that is not JSON is no bot either.
    recall.answer_everything_with(reqwest::StatusCode::CREATED, "<html>hello</html>");
    let (status, body) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 502);
    assert!(!body.to_string().contains("html"));
}

#[tokio::test]
async fn an_unreachable_recall_is_a_502() {
    let closed = closed_port_url().await;
    let server = TestServer::start_with(&[
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &closed,
        "--public-url",
        "https://f.example",
    ])
    .await;
    let (status, body) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 502);
    assert_eq!(error_of(&body), "Recall's API could not be reached");
    // The server carries on.
    let (status, _) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 502);
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn a_recall_that_never_answers_is_a_504() {
    let silent = SilentServer::start().await;
    let base = silent.url();
    let server = TestServer::start_with(&[
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &base,
        "--public-url",
        "https://f.example",
        "--recall-timeout",
        "300ms",
    ])
    .await;
    let (status, body) = create(&server, json!({"meeting_url": MEETING})).await;
    assert_eq!(status, 504);
    assert_eq!(error_of(&body), "Recall's API did not answer within 300ms");
}

#[tokio::test]
async fn a_bot_can_be_read_and_asked_to_leave() {
    let recall = RecallStandIn::start().await;
    let server = server_for(&recall, &["--public-url", "https://f.example"]).await;
    let (_, created) = create(&server, json!({"meeting_url": MEETING})).await;
    let id = created["id"].as_str().unwrap();
    let client = reqwest::Client::new();

    let (status, bot) = call(client.get(server.url(&format!("/api/bots/{id}")))).await;
    assert_eq!(status, 200);
    assert_eq!(bot, created);

    let (status, left) = call(client.post(server.url(&format!("/api/bots/{id}/leave")))).await;
    assert_eq!(status, 200);
    assert_eq!(left["id"], id);
    assert_eq!(left["status_changes"][1]["code"], "call_ended");

    let received = recall.received();
    let calls: Vec<_> = received
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(
        calls,
        [
            ("POST", "/api/v1/bot/"),
            ("GET", &*format!("/api/v1/bot/{id}/")),
            ("POST", &*format!("/api/v1/bot/{id}/leave_call/")),
        ]
    );
    assert!(
        received
            .iter()
            .all(|r| r.authorization.as_deref() == Some(RECALL_API_KEY))
    );
}

#[tokio::test]
async fn the_command_line_creates_a_bot_as_the_route_does() {
    let recall = RecallStandIn::start().await;
    let data = tempfile::tempdir().unwrap();
    let base = recall.url();
    let output = recall_frames(
        &[
            ("RECALL_API_KEY", RECALL_API_KEY),
            ("PUBLIC_URL", "https://frames.example.com"),
            ("WS_TOKEN", WS_TOKEN),
        ],
        &[
            "--recall-api-base",
            &base,
            "--data-dir",
            data.path().to_str().unwrap(),
            "bot",
            "create",
            "--meeting-url",
            MEETING,
            "--bot-name",
            "Recorder",
            "--title",
            "Weekly sync",
        ],
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let bot: Value = serde_json::from_slice(&output.stdout).expect("the bot's JSON on stdout");
    assert_eq!(bot["id"], "00000000-0000-4000-8000-000000000001");

    let received = recall.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/api/v1/bot/");
    assert_eq!(received[0].authorization.as_deref(), Some(RECALL_API_KEY));
    assert_eq!(
        received[0].body,
        expected_body(
            MEETING,
            json!({
                "bot_name": "Recorder",
                "metadata": {"title": "Weekly sync", "bot_name": "Recorder", "meeting_host": "meet.google.com"}
            }),
            &format!("wss://frames.example.com/ws?token={WS_TOKEN}")
        )
    );
    assert!(!stderr.contains(WS_TOKEN) && !stderr.contains(RECALL_API_KEY));
}

#[tokio::test]
async fn the_command_line_uses_the_token_the_server_keeps_and_never_makes_one() {
    let recall = RecallStandIn::start().await;
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let base = recall.url();
    let env = [
        ("RECALL_API_KEY", RECALL_API_KEY),
        ("RECALL_API_BASE", base.as_str()),
        ("FLY_APP_NAME", "my-frames"),
        ("DATA_DIR", data_dir),
    ];
    let create = ["bot", "create", "--meeting-url", MEETING];

    // No WS_TOKEN and no server has run here: nothing a bot could connect with.
    let output = recall_frames(&env, &create).await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no websocket token"), "{stderr}");
    assert!(
        !data.path().join(".ws-token").exists(),
        "none was generated"
    );
    assert!(recall.received().is_empty());

    // Once the server has generated and stored its token, the command finds it.
    let mut server = TestServer::start_in(data.path(), &["--generated-token"]).await;
    server.stop().await.unwrap();
    let token = std::fs::read_to_string(data.path().join(".ws-token")).unwrap();
    let output = recall_frames(&env, &create).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        recall.received()[0].body["recording_config"]["realtime_endpoints"][0]["url"],
        format!("wss://my-frames.fly.dev/ws?token={}", token.trim())
    );

    // Recall's refusal is the command's error.
    let output = recall_frames(
        &env,
        &["bot", "create", "--meeting-url", "https://example.com/x"],
    )
    .await;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("Invalid meeting URL."), "{stderr}");
}

#[tokio::test]
async fn audio_is_asked_of_recall_only_when_requested_by_the_route_or_the_command() {
    let recall = RecallStandIn::start().await;
    let server = server_for(&recall, &["--public-url", "https://frames.example.com"]).await;
    let endpoint = format!("wss://frames.example.com/ws?token={WS_TOKEN}");
    // Every bot created here names its meeting's host in its metadata.
    let metadata = || json!({"metadata": {"meeting_host": "meet.google.com"}});
    let mut with_audio = expected_body(MEETING, metadata(), &endpoint);
    let config = &mut with_audio["recording_config"];
    config["audio_separate_raw"] = json!({});
    config["realtime_endpoints"][0]["events"]
        .as_array_mut()
        .unwrap()
        .push("audio_separate_raw.data".into());

    for (body, expected) in [
        (
            json!({"meeting_url": MEETING}),
            expected_body(MEETING, metadata(), &endpoint),
        ),
        (
            json!({"meeting_url": MEETING, "audio": false}),
            expected_body(MEETING, metadata(), &endpoint),
        ),
        (
            json!({"meeting_url": MEETING, "audio": true}),
            with_audio.clone(),
        ),
    ] {
        let (status, bot) = create(&server, body.clone()).await;
        assert_eq!(status, 201, "{bot}");
        assert_eq!(recall.received().last().unwrap().body, expected, "{body}");
    }
    let (status, body) = create(&server, json!({"meeting_url": MEETING, "audio": "yes"})).await;
    assert_eq!(status, 422);
    assert!(error_of(&body).contains("audio"), "{body}");

    let data = tempfile::tempdir().unwrap();
    let base = recall.url();
    let output = recall_frames(
        &[
            ("RECALL_API_KEY", RECALL_API_KEY),
            ("PUBLIC_URL", "https://frames.example.com"),
            ("WS_TOKEN", WS_TOKEN),
        ],
        &[
            "--recall-api-base",
            &base,
            "--data-dir",
            data.path().to_str().unwrap(),
            "bot",
            "create",
            "--meeting-url",
            MEETING,
            "--audio",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(recall.received().last().unwrap().body, with_audio);
}
