//! Shared set-up for the integration tests: the real server on 127.0.0.1:0 with a temporary
//! DATA_DIR, real PNGs made here, a real websocket client, and small polling helpers.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::future::Future;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use recall_frames::Config;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const WS_TOKEN: &str = "test-ws-token-0123456789";
pub const RECORDING: &str = "rec_9f1c2a";

/// How long any wait for the server may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub struct TestServer {
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    _temp: Option<TempDir>,
}

impl TestServer {
    /// The server with a fresh temporary DATA_DIR and the test token.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// As [`TestServer::start`], with extra server flags.
    pub async fn start_with(args: &[&str]) -> Self {
        let temp = tempfile::tempdir().expect("temporary folder");
        let mut server = Self::start_in(temp.path(), args).await;
        server._temp = Some(temp);
        server
    }

    /// The server on an existing DATA_DIR (for restarts), with the test token unless `args`
    /// set `--ws-token` themselves or ask for none with `--generated-token`.
    pub async fn start_in(data_dir: &Path, args: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::start_on(listener, data_dir, args).await
    }

    /// As [`TestServer::start_in`], on the address of an earlier server: a restart where
    /// bots expect to find it again.
    pub async fn restart_at(addr: SocketAddr, data_dir: &Path, args: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the earlier server's address");
        Self::start_on(listener, data_dir, args).await
    }

    async fn start_on(listener: tokio::net::TcpListener, data_dir: &Path, args: &[&str]) -> Self {
        let mut all: Vec<String> = vec!["--data-dir".into(), data_dir.display().to_string()];
        let generated = args.contains(&"--generated-token");
        if !generated && !args.contains(&"--ws-token") {
            all.extend(["--ws-token".into(), WS_TOKEN.into()]);
        }
        all.extend(
            args.iter()
                .filter(|a| **a != "--generated-token")
                .map(|a| a.to_string()),
        );
        let config = Config::from_args(all).expect("test configuration");
        Self::start_config_on(config, listener).await
    }

    pub async fn start_config(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::start_config_on(config, listener).await
    }

    async fn start_config_on(config: Config, listener: tokio::net::TcpListener) -> Self {
        // `TEST_LOG=debug cargo nextest run ...` shows the server's logs of failing tests.
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_test_writer()
                .try_init();
        }
        let addr = listener.local_addr().expect("address");
        let data_dir = config.data_dir.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(recall_frames::run(config, listener, async move {
            let _ = stopped.await;
        }));
        let server = TestServer {
            addr,
            data_dir,
            stop: Some(stop),
            task: Some(task),
            _temp: None,
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let url = self.url("/healthz");
        eventually("the server answers /healthz", || async {
            reqwest::get(&url).await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.addr)
    }

    /// A bot connected with the test token.
    pub async fn connect(&self) -> Bot {
        Bot::connect(&self.ws_url(WS_TOKEN)).await
    }

    /// Signals shutdown and returns what `run` returned. DATA_DIR stays until the
    /// `TestServer` is dropped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.begin_stop();
        self.finished().await
    }

    /// Signals shutdown without waiting for it.
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits for `run` to return after [`TestServer::begin_stop`].
    pub async fn finished(&mut self) -> anyhow::Result<()> {
        let task = self.task.take().expect("the server is running");
        tokio::time::timeout(Duration::from_secs(40), task)
            .await
            .expect("the server stops within 40 s")
            .expect("the server task did not panic")
    }

    /// The Prometheus text at /metrics (the test connects from loopback).
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// One sample from /metrics, e.g. `recall_frames_frames_duplicate_total`, or
    /// `recall_frames_messages_refused_total{reason="invalid_json"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric_value(&self.metrics().await, sample)
    }

    /// The folder of one stream, given the participant folder name.
    pub fn stream_dir(&self, recording: &str, participant_folder: &str, kind: &str) -> PathBuf {
        self.data_dir
            .join(recording)
            .join(participant_folder)
            .join(kind)
    }
}

pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(sample)?
                .strip_prefix(' ')?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// A bot's side of the websocket.
pub struct Bot {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Bot {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket connects");
        Bot { ws }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws
            .send(Message::text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send_frame(&mut self, frame: &TestFrame) {
        self.send_text(frame.event()).await;
    }

    /// The next text message from the server (skipping pings), as JSON.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message within the patience")
                .expect("the socket is open")
                .expect("a message");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Reads until the server's close frame and returns it.
    pub async fn next_close(
        &mut self,
    ) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame> {
        loop {
            let message = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a close within the patience");
            match message {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(error)) => panic!("socket error before close: {error}"),
                None => panic!("socket ended without a close frame"),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Read until the server's reply so that it has seen everything sent.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(PATIENCE, self.ws.next()).await {}
    }
}

/// A frame event as Recall sends it, with a real PNG.
#[derive(Clone)]
pub struct TestFrame {
    pub recording: String,
    pub participant: u64,
    pub name: Option<String>,
    pub kind: &'static str,
    pub relative: f64,
    pub png: Vec<u8>,
}

impl TestFrame {
    /// A webcam frame of participant 100 ("Alice Smith") in [`RECORDING`].
    pub fn new(relative: f64) -> Self {
        TestFrame {
            recording: RECORDING.into(),
            participant: 100,
            name: Some("Alice Smith".into()),
            kind: "webcam",
            relative,
            png: png(64, 36, (relative * 1000.0) as u32),
        }
    }

    pub fn participant(mut self, id: u64, name: Option<&str>) -> Self {
        self.participant = id;
        self.name = name.map(str::to_string);
        self.png = png(64, 36, id as u32 * 7919 + (self.relative * 1000.0) as u32);
        self
    }

    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self.png = png(80, 45, (self.relative * 1000.0) as u32 + 17);
        self
    }

    pub fn recording(mut self, recording: &str) -> Self {
        self.recording = recording.into();
        self
    }

    pub fn png(mut self, png: Vec<u8>) -> Self {
        self.png = png;
        self
    }

    pub fn event_value(&self) -> Value {
        json!({
            "event": "video_separate_png.data",
            "data": {
                "data": {
                    "buffer": base64::engine::general_purpose::STANDARD.encode(&self.png),
                    "timestamp": {"relative": self.relative, "absolute": absolute_time(self.relative)},
                    "type": self.kind,
                    "participant": {
                        "id": self.participant, "name": self.name, "is_host": self.participant == 100,
                        "platform": "desktop", "extra_data": {"zoom": {"user_guid": "g"}}
                    }
                },
                "realtime_endpoint": {"id": "re_1", "metadata": {}},
                "video_separate": {"id": "vs_1", "metadata": {}},
                "recording": {"id": self.recording, "metadata": {"team": "research"}},
                "bot": {"id": "bot_1", "metadata": {"purpose": "tests"}}
            }
        })
    }

    pub fn event(&self) -> String {
        self.event_value().to_string()
    }

    pub fn file_name(&self) -> String {
        format!("{:09}.png", (self.relative * 1000.0).round() as u64)
    }
}

/// The absolute time of a frame `relative` seconds into a meeting that began at a fixed time.
pub fn absolute_time(relative: f64) -> String {
    let start: jiff::Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
    let at = start + jiff::SignedDuration::from_millis((relative * 1000.0).round() as i64);
    at.to_string()
}

/// A real PNG whose pixels (and so bytes) depend on `seed`.
pub fn png(width: u32, height: u32, seed: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let v = seed
            .wrapping_mul(2_654_435_761)
            .wrapping_add(x * 31 + y * 17);
        image::Rgb([v as u8, (v >> 8) as u8, (v >> 16) as u8])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encode PNG");
    bytes
}

/// Polls `condition` until it holds, failing the test after [`PATIENCE`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `path` exists.
pub async fn wait_for_file(path: &Path) {
    eventually(&format!("{} exists", path.display()), || async {
        path.exists()
    })
    .await;
}

/// The lines of a JSON-lines file.
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// Every file below `root`, as sorted relative paths, leaving out dot-files at the top.
pub fn tree(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(path.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.retain(|p| !p.starts_with('.'));
    out.sort();
    out
}
