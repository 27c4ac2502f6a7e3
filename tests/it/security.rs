//! Who gets in, and the caps that hold under abuse: Recall-signed upgrades, the connection,
//! stream, body, request-time and idle caps against the real server, and secrets kept out
//! of the real binary's logs.

use std::time::Duration;

use crate::common::recall_api::{RECALL_API_KEY, RecallStandIn};
use crate::common::*;
use futures_util::StreamExt as _;
use recall_frames::testing::signature::{SigningSecret, sign};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::{self, Message};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ALICE_WEBCAM: &str = "rec_9f1c2a/100-alice-smith/webcam";

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn signed(prefix: &str, id: &str, timestamp: i64, signature: String) -> Vec<(String, String)> {
    vec![
        (format!("{prefix}-id"), id.to_string()),
        (format!("{prefix}-timestamp"), timestamp.to_string()),
        (format!("{prefix}-signature"), signature),
    ]
}

async fn upgrade_status(url: &str, headers: &[(String, String)]) -> u16 {
    let headers: Vec<(&str, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.clone()))
        .collect();
    match Bot::try_connect_with(url, &headers).await {
        Ok(bot) => {
            bot.close().await;
            101
        }
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("{url}: unexpected error {other}"),
    }
}

#[tokio::test]
async fn signed_upgrades_are_checked_and_token_and_signature_both_must_pass() {
    let server = TestServer::start_with(&["--recall-verification-secret", SECRET]).await;
    let secret = SigningSecret::parse(SECRET).unwrap();
    let other = SigningSecret::parse("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=").unwrap();
    let url = server.ws_url(WS_TOKEN);
    let t = now();
    let good = sign(&secret, "msg_1", t);

    type Case = (&'static str, String, Vec<(String, String)>, u16);
    let cases: Vec<Case> = vec![
        (
            "webhook-*",
            url.clone(),
            signed("webhook", "msg_1", t, good.clone()),
            101,
        ),
        (
            "svix-*",
            url.clone(),
            signed("svix", "msg_1", t, good.clone()),
            101,
        ),
        (
            "several entries, one good",
            url.clone(),
            signed("webhook", "msg_1", t, format!("v1,bm9wZQ== v1a,xyz {good}")),
            101,
        ),
        ("unsigned", url.clone(), vec![], 401),
        (
            "forged with another secret",
            url.clone(),
            signed("webhook", "msg_1", t, sign(&other, "msg_1", t)),
            401,
        ),
        (
            "stale",
            url.clone(),
            signed("webhook", "msg_1", t - 400, sign(&secret, "msg_1", t - 400)),
            401,
        ),
        (
            "future",
            url.clone(),
            signed("webhook", "msg_1", t + 400, sign(&secret, "msg_1", t + 400)),
            401,
        ),
        (
            "tampered id",
            url.clone(),
            signed("webhook", "msg_2", t, good.clone()),
            401,
        ),
        (
            "tampered timestamp",
            url.clone(),
            signed("webhook", "msg_1", t - 1, good.clone()),
            401,
        ),
        (
            "good signature, wrong token",
            server.ws_url("wrong-token-0123456789"),
            signed("webhook", "msg_1", t, good.clone()),
            401,
        ),
    ];
    for (what, url, headers, expected) in &cases {
        assert_eq!(upgrade_status(url, headers).await, *expected, "{what}");
    }
    assert_eq!(
        server
            .metric("recall_frames_ws_upgrades_refused_total{reason=\"signature\"}")
            .await,
        6.0
    );
    assert_eq!(
        server
            .metric("recall_frames_ws_upgrades_refused_total{reason=\"token\"}")
            .await,
        1.0
    );

    // A signed bot's frames are saved as usual.
    let headers = [
        ("webhook-id", "msg_9".to_string()),
        ("webhook-timestamp", t.to_string()),
        ("webhook-signature", sign(&secret, "msg_9", t)),
    ];
    let mut bot = Bot::try_connect_with(&url, &headers).await.unwrap();
    bot.send_frame(&TestFrame::new(1.0)).await;
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000001000.png")).await;
}

#[test]
fn malformed_secrets_stop_start_up_with_a_clear_error_that_does_not_repeat_them() {
    for (flag, bad, says) in [
        (
            "--recall-verification-secret",
            "not-a-whsec-secret",
            "whsec_",
        ),
        (
            "--recall-verification-secret",
            "whsec_not*base64*at*all",
            "base64",
        ),
        (
            "--recall-verification-secret",
            "whsec_c2hvcnRrZXk=",
            "bytes",
        ),
        ("--ws-token", "almost-a-token!!0123456789", "may only hold"),
        ("--api-token", "short-one", "at least 16"),
    ] {
        let error = recall_frames::Config::from_args([flag, bad])
            .unwrap_err()
            .to_string();
        assert!(error.contains(says), "{bad}: {error}");
        assert!(error.contains(flag), "{bad}: {error}");
        assert!(
            !error.contains(bad),
            "the error repeats the secret: {error}"
        );
    }
}

#[tokio::test]
async fn connections_over_max_connections_get_503_and_the_rest_go_on() {
    let server = TestServer::start_with(&["--max-connections", "2"]).await;
    let mut first = server.connect().await;
    let second = server.connect().await;
    match tokio_tungstenite::connect_async(server.ws_url(WS_TOKEN)).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            let body = String::from_utf8(response.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("MAX_CONNECTIONS"), "{body}");
        }
        other => panic!("expected 503, got {other:?}"),
    }
    assert_eq!(
        server
            .metric("recall_frames_ws_upgrades_refused_total{reason=\"connection_limit\"}")
            .await,
        1.0
    );
    first.send_frame(&TestFrame::new(1.0)).await;
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000001000.png")).await;
    // A slot frees when a connection ends.
    second.close().await;
    eventually("a third bot gets in once one has left", || async {
        tokio_tungstenite::connect_async(server.ws_url(WS_TOKEN))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_stream_over_the_per_connection_cap_is_refused_and_the_connection_goes_on() {
    let server = TestServer::start_with(&["--max-streams-per-connection", "2"]).await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    bot.send_frame(&TestFrame::new(1.0).kind("screenshare"))
        .await;
    bot.send_frame(&TestFrame::new(1.0).participant(200, None))
        .await;
    let reply = bot.next_json().await;
    assert_eq!(reply["error"]["reason"], "too_many_streams");
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("MAX_STREAMS_PER_CONNECTION")
    );
    // The first two streams go on, on the same connection.
    bot.send_frame(&TestFrame::new(2.0)).await;
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000002000.png")).await;
    // Another connection has its own streams.
    let mut other = server.connect().await;
    other
        .send_frame(&TestFrame::new(3.0).participant(200, None))
        .await;
    wait_for_file(
        &server
            .stream_dir(RECORDING, "200", "webcam")
            .join("000003000.png"),
    )
    .await;
    assert!(
        !server
            .stream_dir(RECORDING, "200", "webcam")
            .join("000001000.png")
            .exists()
    );
    assert_eq!(
        server
            .metric("recall_frames_messages_refused_total{reason=\"too_many_streams\"}")
            .await,
        1.0
    );
}

#[tokio::test]
async fn a_quiet_stream_frees_its_place_under_the_stream_cap() {
    let server = TestServer::start_with(&[
        "--max-streams-per-connection",
        "1",
        "--stream-idle-timeout",
        "200ms",
    ])
    .await;
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000001000.png")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    bot.send_frame(&TestFrame::new(2.0).participant(200, None))
        .await;
    wait_for_file(
        &server
            .stream_dir(RECORDING, "200", "webcam")
            .join("000002000.png"),
    )
    .await;
}

#[tokio::test]
async fn a_body_over_max_body_bytes_gets_413_before_any_handler() {
    let server = TestServer::start_with(&["--max-body-bytes", "1024"]).await;
    let client = reqwest::Client::new();
    for path in ["/healthz", "/ws", "/metrics", "/nowhere"] {
        let response = client
            .post(server.url(path))
            .body(vec![b'x'; 4096])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{path}");
    }
    assert_eq!(
        server
            .metric("recall_frames_http_refused_total{reason=\"body_too_large\"}")
            .await,
        4.0
    );
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

/// Reads until the server closes the connection; returns what it sent.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut received))
        .await
        .expect("the server closes the connection")
        .ok();
    received
}

#[tokio::test]
async fn slow_and_silent_requests_are_cut_off_and_others_are_served() {
    let mut server = TestServer::start_with(&["--request-timeout", "300ms"]).await;
    // A request head that never finishes, a websocket handshake that never finishes, and a
    // connection that sends nothing at all.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut handshake = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    handshake
        .write_all(
            format!("GET /ws?token={WS_TOKEN} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();

    // Meanwhile the server serves everyone else.
    let health = reqwest::get(server.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let mut bot = server.connect().await;
    bot.send_frame(&TestFrame::new(1.0)).await;

    for (what, stream) in [
        ("slow", &mut slow),
        ("handshake", &mut handshake),
        ("silent", &mut silent),
    ] {
        let received = read_to_close(stream).await;
        assert!(
            !String::from_utf8_lossy(&received).contains("101 Switching"),
            "{what}: no upgrade"
        );
    }
    eventually("the three are counted", || async {
        server
            .metric("recall_frames_http_refused_total{reason=\"header_timeout\"}")
            .await
            >= 3.0
    })
    .await;
    // The websocket that did upgrade is not subject to the request timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    bot.send_frame(&TestFrame::new(2.0)).await;
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000002000.png")).await;
    bot.close().await;
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_body_that_does_not_arrive_within_the_request_timeout_is_cut_off() {
    let recall = RecallStandIn::start().await;
    let mut server = TestServer::start_with(&[
        "--request-timeout",
        "300ms",
        "--recall-api-key",
        RECALL_API_KEY,
        "--recall-api-base",
        &recall.url(),
        "--public-url",
        "https://f.example",
    ])
    .await;
    // The head in time, then half the promised body, then nothing.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(
        b"POST /api/bots HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 60\r\n\r\n{\"meeting_url\": ",
    )
    .await
    .unwrap();
    let answer = String::from_utf8_lossy(&read_to_close(&mut slow).await).into_owned();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.ends_with(r#"{"error":"the request body did not arrive within REQUEST_TIMEOUT"}"#),
        "{answer}"
    );
    assert!(recall.received().is_empty(), "nothing reached Recall");
    assert_eq!(
        server
            .metric("recall_frames_http_refused_total{reason=\"body_timeout\"}")
            .await,
        1.0
    );
    // A whole body in time still creates a bot.
    let created = reqwest::Client::new()
        .post(server.url("/api/bots"))
        .json(&serde_json::json!({"meeting_url": "https://meet.google.com/abc-defg-hij"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn shutdown_does_not_wait_on_a_half_sent_request() {
    let mut server = TestServer::start_with(&["--request-timeout", "60s"]).await;
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Let the server start reading it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await.expect("clean shutdown");
    read_to_close(&mut slow).await;
}

/// A websocket client that never answers anything: the handshake by hand over TCP, then
/// only reads. Returns the stream once upgraded.
async fn deaf_socket(server: &TestServer) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = format!(
        "GET /ws?token={WS_TOKEN} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n",
        server.addr
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "upgraded");
    stream
}

/// Reads server frames (unmasked, short) until a close frame; returns its code and reason.
async fn read_until_close(stream: &mut tokio::net::TcpStream) -> (u16, String) {
    let mut bytes = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut bytes))
        .await
        .expect("the server closes the socket")
        .ok();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let (opcode, len) = (bytes[at] & 0x0f, usize::from(bytes[at + 1] & 0x7f));
        assert!(len < 126, "only short control frames are expected");
        let payload = &bytes[at + 2..at + 2 + len];
        if opcode == 0x8 {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            return (code, String::from_utf8_lossy(&payload[2..]).into_owned());
        }
        assert_eq!(opcode, 0x9, "only pings before the close");
        at += 2 + len;
    }
    panic!("no close frame in {bytes:?}");
}

#[tokio::test]
async fn a_socket_that_answers_no_ping_is_closed_and_a_quiet_live_one_is_not() {
    let server =
        TestServer::start_with(&["--ping-interval", "100ms", "--ws-idle-timeout", "500ms"]).await;
    let mut deaf = deaf_socket(&server).await;
    let mut quiet = server.connect().await; // reads (so answers pings) but sends nothing
    let listen = tokio::time::timeout(Duration::from_millis(1500), async {
        while let Some(Ok(message)) = quiet.ws.next().await {
            assert!(
                matches!(message, Message::Ping(_)),
                "the quiet bot got {message:?}"
            );
        }
    });
    assert!(
        listen.await.is_err(),
        "the quiet bot stays connected past the idle timeout"
    );
    let (code, reason) = read_until_close(&mut deaf).await;
    assert_eq!(code, 1008);
    assert!(reason.contains("idle"), "{reason}");
    assert_eq!(
        server.metric("recall_frames_ws_closed_idle_total").await,
        1.0
    );
    quiet.send_frame(&TestFrame::new(1.0)).await;
    wait_for_file(&server.data_dir.join(ALICE_WEBCAM).join("000001000.png")).await;
}

#[tokio::test]
async fn an_idle_timeout_not_longer_than_the_ping_interval_is_refused_at_start_up() {
    let data = tempfile::tempdir().unwrap();
    let config = recall_frames::Config::from_args([
        "--data-dir",
        data.path().to_str().unwrap(),
        "--ping-interval",
        "20s",
        "--ws-idle-timeout",
        "20s",
    ])
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let error = recall_frames::run(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("WS_IDLE_TIMEOUT"), "{error}");
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let data = tempfile::tempdir().unwrap();
    let ws_token = "ws-token-SECRET-0123456789abcdef";
    let api_token = "api-token-SECRET-0123456789abcdef";
    let near_miss = "ws-token-SECRET-0123456789abcdeX";
    let mut binary = BinaryServer::spawn(
        data.path(),
        &[
            ("WS_TOKEN", ws_token),
            ("API_TOKEN", api_token),
            ("RECALL_VERIFICATION_SECRET", SECRET),
            ("RUST_LOG", "trace"),
        ],
        &["--ping-interval", "100ms", "--ws-idle-timeout", "1s"],
    );
    let secret = SigningSecret::parse(SECRET).unwrap();
    let t = now();
    let good = sign(&secret, "msg_1", t);
    let forged = sign(
        &SigningSecret::parse("whsec_dGhpcyBpcyBhbm90aGVyIHNlY3JldCBrZXk=").unwrap(),
        "msg_1",
        t,
    );
    let url = binary.ws_url(ws_token);
    // Accepted, with frames; refused for the token (in the query); refused for signatures.
    let mut bot = Bot::try_connect_with(
        &url,
        &[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", t.to_string()),
            ("webhook-signature", good.clone()),
        ],
    )
    .await
    .unwrap();
    for i in 0..5 {
        bot.send_frame(&TestFrame::new(i as f64)).await;
    }
    bot.send_text("{not json").await;
    bot.close().await;
    for (url, signature) in [
        (binary.ws_url(near_miss), good.clone()),
        (url.clone(), forged.clone()),
        (url.clone(), format!("v1,{}", &good[3..20])),
    ] {
        let status = upgrade_status(
            &url,
            &signed("webhook", "msg_1", t, signature)
                .into_iter()
                .collect::<Vec<_>>(),
        )
        .await;
        assert_eq!(status, 401);
    }
    let client = reqwest::Client::new();
    for token in [api_token, near_miss] {
        let _ = client
            .get(binary.url("/metrics"))
            .bearer_auth(format!("{token}x"))
            .send()
            .await
            .unwrap();
    }
    let metrics = client
        .get(binary.url("/metrics"))
        .bearer_auth(api_token)
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(binary.terminate(), "clean exit");
    let output = binary.output();
    assert!(
        output.contains("websocket refused"),
        "it logged the refusals"
    );
    assert!(
        output.contains("connection summary"),
        "it logged the connection"
    );
    let key = SECRET.trim_start_matches("whsec_");
    for secret in [
        ws_token,
        api_token,
        near_miss,
        key,
        &good[3..],
        &forged[3..],
        &good[3..20],
    ] {
        assert!(
            !output.contains(secret),
            "{secret} appears in the logs:\n{}",
            output
                .lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    // And never in the JSON the server wrote either.
    assert!(
        !std::fs::read_to_string(data.path().join(ALICE_WEBCAM).join("frames.jsonl"))
            .unwrap()
            .contains(ws_token)
    );
}
