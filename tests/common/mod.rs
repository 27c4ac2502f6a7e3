//! Shared set-up for the integration tests: the real server on 127.0.0.1:0 with a temporary
//! DATA_DIR, real PNGs made here, a real websocket client, and small polling helpers.
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod recall_api;

use std::future::Future;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt as _, StreamExt as _};
use recall_frames::Config;
use recall_frames::sink::FrameSink;
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
        Self::start_in_on(listener, data_dir, args).await
    }

    /// As [`TestServer::start_in`], on the address of an earlier server: a restart where
    /// bots expect to find it again.
    pub async fn restart_at(addr: SocketAddr, data_dir: &Path, args: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind the earlier server's address");
        Self::start_in_on(listener, data_dir, args).await
    }

    async fn start_in_on(
        listener: tokio::net::TcpListener,
        data_dir: &Path,
        args: &[&str],
    ) -> Self {
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
        Self::start_on(listener, config).await
    }

    pub async fn start_config(config: Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::start_on(listener, config).await
    }

    /// The server on a listener bound beforehand, for configurations that name its address
    /// (such as `--public-url`).
    pub async fn start_on(listener: tokio::net::TcpListener, config: Config) -> Self {
        Self::launch(listener, config, None).await
    }

    /// As [`TestServer::start_in`], with frames going to the sink `make_sink` builds around
    /// a real recorder into the DATA_DIR (to put a fault, such as a slow disk, between
    /// the pipeline and the disk).
    pub async fn start_with_sink(
        data_dir: &Path,
        args: &[&str],
        make_sink: impl FnOnce(recall_frames::recorder::Recorder) -> Arc<dyn FrameSink>,
    ) -> Self {
        let mut all: Vec<String> = vec![
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--ws-token".into(),
            WS_TOKEN.into(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let config = Config::from_args(all).expect("test configuration");
        let fs = recall_frames::recorder::Recorder::in_folder(data_dir.to_owned())
            .await
            .expect("a recorder into the data folder");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        Self::launch(listener, config, Some(make_sink(fs))).await
    }

    async fn launch(
        listener: tokio::net::TcpListener,
        config: Config,
        sink: Option<Arc<dyn FrameSink>>,
    ) -> Self {
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
        let stop_signal = async move {
            let _ = stopped.await;
        };
        let task = match sink {
            None => tokio::spawn(recall_frames::run(config, listener, stop_signal)),
            Some(sink) => tokio::spawn(recall_frames::run_with_sink(
                config,
                listener,
                stop_signal,
                sink,
            )),
        };
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
        // 503 too: a server started on a low disk is up, and says it is degraded.
        eventually("the server answers /healthz", || async {
            reqwest::get(&url)
                .await
                .is_ok_and(|r| r.status() == 200 || r.status() == 503)
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

    /// GETs a path from loopback and returns the response, whatever its status.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(self.url(path))
            .await
            .expect("the server answers")
    }

    /// GETs a path that must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.expect("a JSON body")
    }

    /// Waits until the API lists `frames` frames in the stream at `stream_path`
    /// (`/api/recordings/<recording>/<participant>/<type>`).
    pub async fn wait_for_frames(&self, stream_path: &str, frames: u64) {
        wait_for_frames_at(&self.url(stream_path), frames).await;
    }

    /// The folder of one stream, given the participant folder name.
    pub fn stream_dir(&self, recording: &str, participant_folder: &str, kind: &str) -> PathBuf {
        self.data_dir
            .join(recording)
            .join(participant_folder)
            .join(kind)
    }

    /// Asserts that `frame` is saved byte for byte in its stream under `participant_folder`
    /// (`100-alice-smith`, or the bare id of a participant with no name).
    pub fn assert_saved(&self, participant_folder: &str, frame: &TestFrame) {
        let path = self
            .stream_dir(&frame.recording, participant_folder, frame.kind)
            .join(frame.file_name());
        assert_eq!(
            std::fs::read(&path).ok().as_ref(),
            Some(&frame.png),
            "{} is the exact PNG sent",
            path.display()
        );
    }
}

/// Waits until the API lists `frames` frames in the stream at `stream_url`.
async fn wait_for_frames_at(stream_url: &str, frames: u64) {
    let url = format!("{stream_url}/frames?limit=1");
    eventually(&format!("{stream_url} lists {frames} frames"), || async {
        match reqwest::get(&url).await {
            Ok(r) if r.status() == 200 => {
                r.json::<Value>()
                    .await
                    .ok()
                    .and_then(|v| v["total"].as_u64())
                    == Some(frames)
            }
            _ => false,
        }
    })
    .await;
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

/// How many messages the Prometheus text `metrics` counts as refused for `reason`.
pub fn refused(metrics: &str, reason: &str) -> f64 {
    metric_value(
        metrics,
        &format!("recall_frames_messages_refused_total{{reason=\"{reason}\"}}"),
    )
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

    /// Connects with extra headers on the upgrade request (Recall's signature headers).
    pub async fn try_connect_with(
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                value.parse().expect("header value"),
            );
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Bot { ws })
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

/// A participant event as Recall sends it (`participant_events.<kind>`), by default a `join`
/// of participant 100 ("Alice Smith") in [`RECORDING`].
#[derive(Clone)]
pub struct TestEvent {
    pub kind: String,
    pub recording: String,
    pub participant: u64,
    pub name: Option<String>,
    pub relative: f64,
    pub data: Value,
}

impl TestEvent {
    /// `kind` is the part after `participant_events.`, e.g. `join` or `chat_message`.
    pub fn new(kind: &str, relative: f64) -> Self {
        TestEvent {
            kind: format!("participant_events.{kind}"),
            recording: RECORDING.into(),
            participant: 100,
            name: Some("Alice Smith".into()),
            relative,
            data: Value::Null,
        }
    }

    pub fn participant(mut self, id: u64, name: Option<&str>) -> Self {
        self.participant = id;
        self.name = name.map(str::to_string);
        self
    }

    pub fn recording(mut self, recording: &str) -> Self {
        self.recording = recording.into();
        self
    }

    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// The participant as the event describes it: what `participant.json` should then hold.
    pub fn participant_value(&self) -> Value {
        json!({
            "id": self.participant, "name": self.name, "is_host": self.participant == 100,
            "platform": "desktop", "email": null, "extra_data": {"zoom": {"user_guid": "g"}}
        })
    }

    pub fn event_value(&self) -> Value {
        let mut participant = self.participant_value();
        participant.as_object_mut().unwrap().remove("email");
        json!({
            "event": self.kind,
            "data": {
                "data": {
                    "participant": participant,
                    "timestamp": {"relative": self.relative, "absolute": absolute_time(self.relative)},
                    "data": self.data
                },
                "realtime_endpoint": {"id": "re_1", "metadata": {}},
                "participant_events": {"id": "pe_1", "metadata": {"source": "tests"}},
                "recording": {"id": self.recording, "metadata": {"team": "research"}},
                "bot": {"id": "bot_1", "metadata": {"purpose": "tests"}}
            }
        })
    }

    pub fn event(&self) -> String {
        self.event_value().to_string()
    }
}

/// The `/api/recordings` entry of [`RECORDING`] once it holds `frames` frames of two
/// participants, the first at 0.5 s and the last, Alice's webcam frame, at 12.5 s.
pub fn recording_entry(frames: u64) -> Value {
    json!({
        "id": "rec_9f1c2a",
        "bot_id": "bot_1",
        "started_at": "2026-11-21T10:00:00Z",
        "first_frame": {"relative": 0.5, "absolute": "2026-11-21T10:00:00.5Z"},
        "last_frame": {"relative": 12.5, "absolute": "2026-11-21T10:00:12.5Z"},
        "duration": 12.0,
        "frames": frames,
        "participants": 2,
        "thumbnail": "/api/recordings/rec_9f1c2a/100/webcam/000012500.png",
        "url": "/api/recordings/rec_9f1c2a",
        "page": "/recordings/rec_9f1c2a"
    })
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

/// Renames participant 200 ("Bob") by event and by frame, with a late frame that still
/// carries the old name in between, and checks after each step that `participant.json`
/// (read by `participant_json`, from whichever backend) follows the newest description.
pub async fn renames_follow_meeting_time<F, Fut>(server: &TestServer, participant_json: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    let mut bot = server.connect().await;
    let bob = |t: f64, name: &str| TestFrame::new(t).participant(200, Some(name));
    let saved = |frames: f64| async move {
        eventually(&format!("{frames} frames are saved"), || async {
            server
                .metric("recall_frames_frames_saved_total{kind=\"webcam\"}")
                .await
                == frames
        })
        .await;
    };
    let named = |name: &str| TestEvent::new("update", 0.0).participant(200, Some(name));

    bot.send_frame(&bob(1.0, "Bob")).await;
    saved(1.0).await;
    assert_eq!(participant_json().await, named("Bob").participant_value());

    let update = TestEvent::new("update", 3.0).participant(200, Some("Bob Jones"));
    bot.send_text(update.event()).await;
    eventually("the update is recorded", || async {
        server
            .metric("recall_frames_participant_events_recorded_total")
            .await
            == 1.0
    })
    .await;
    assert_eq!(participant_json().await, update.participant_value());

    // A frame from before the update, saved after it (it waited in its stream's queue, or
    // Recall resent it): its older name does not come back.
    bot.send_frame(&bob(2.5, "Bob")).await;
    saved(2.0).await;
    assert_eq!(participant_json().await, update.participant_value());

    // A later frame renames him on its own.
    bot.send_frame(&bob(4.0, "Robert")).await;
    saved(3.0).await;
    assert_eq!(
        participant_json().await,
        named("Robert").participant_value()
    );
    bot.close().await;
}

/// Runs the real `recall-frames` binary with only the given environment.
pub async fn recall_frames(env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_recall-frames"))
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(PATIENCE, run)
        .await
        .expect("the command finishes")
        .expect("the command runs")
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

/// The file names a stream's `frames.jsonl` lists, in its order.
pub fn listed_files(stream_dir: &Path) -> Vec<String> {
    read_jsonl(&stream_dir.join("frames.jsonl"))
        .iter()
        .map(|line| line["file"].as_str().expect("a file name").to_owned())
        .collect()
}

pub fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("JSON")
}

/// A ZIP archive read whole, to check what a download holds.
pub struct Unzipped(Vec<ZipFile>);

pub struct ZipFile {
    pub name: String,
    pub compression: zip::CompressionMethod,
    pub bytes: Vec<u8>,
}

impl Unzipped {
    pub fn new(body: &[u8]) -> Self {
        use std::io::Read as _;
        let mut archive = zip::ZipArchive::new(Cursor::new(body)).expect("a ZIP archive");
        let files = (0..archive.len())
            .map(|i| {
                let mut file = archive.by_index(i).expect("a file in the archive");
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).expect("the file reads whole");
                ZipFile {
                    name: file.name().expect("a file name").into_owned(),
                    compression: file.compression(),
                    bytes,
                }
            })
            .collect();
        Unzipped(files)
    }

    /// The names of its files, in the archive's order.
    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|file| file.name.as_str()).collect()
    }

    /// The file called `name`; fails the test if there is none.
    pub fn file(&self, name: &str) -> &ZipFile {
        self.0
            .iter()
            .find(|file| file.name == name)
            .unwrap_or_else(|| panic!("{name} is not in the archive"))
    }
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

/// The real `recall-frames` binary as a child process on 127.0.0.1 (a free port), with its
/// stdout and stderr collected. Killed on drop if still running.
pub struct BinaryServer {
    pub addr: SocketAddr,
    child: std::process::Child,
    output: Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl BinaryServer {
    /// Starts the binary with only `env` for environment (plus `NO_COLOR`), and waits for
    /// it to listen.
    pub fn spawn(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Self {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_recall-frames"))
            .args(["--listen-address", "127.0.0.1", "--port", "0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env_clear()
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the binary starts");
        let output = Arc::new(std::sync::Mutex::new(String::new()));
        // Unbounded on purpose: the readers must never stop draining the child's pipes (a
        // full pipe would stall its logging), and the output of a test run is small.
        let (lines, line) = std::sync::mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let mut readers = Vec::new();
        for stream in [
            Box::new(stdout) as Box<dyn std::io::Read + Send>,
            Box::new(stderr),
        ] {
            let (output, lines) = (output.clone(), lines.clone());
            readers.push(std::thread::spawn(move || {
                for text in std::io::BufReader::new(stream)
                    .lines()
                    .map_while(Result::ok)
                {
                    let mut all = output.lock().unwrap();
                    all.push_str(&text);
                    all.push('\n');
                    let _ = lines.send(text);
                }
            }));
        }
        let deadline = std::time::Instant::now() + PATIENCE;
        let addr = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let text = line.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "the binary did not report its address; output:\n{}",
                    output.lock().unwrap()
                )
            });
            if let Some(at) = text.find("address=")
                && text.contains("listening")
            {
                let addr = text[at + "address=".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or_default();
                break addr.parse().expect("a socket address");
            }
        };
        BinaryServer {
            addr,
            child,
            output,
            readers,
        }
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// As [`TestServer::wait_for_frames`].
    pub async fn wait_for_frames(&self, stream_path: &str, frames: u64) {
        wait_for_frames_at(&self.url(stream_path), frames).await;
    }

    /// `kill -9`: no chance to finish anything.
    pub fn kill9(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then waits for the exit; returns whether it exited 0.
    pub fn terminate(&mut self) -> bool {
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&self.child),
            rustix::process::Signal::TERM,
        )
        .expect("SIGTERM");
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status.success();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the binary did not stop"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything the binary printed, once it has exited.
    pub fn output(mut self) -> String {
        if self.child.try_wait().ok().flatten().is_none() {
            self.kill9();
        }
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        self.output.lock().unwrap().clone()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the server logs on the current thread (a current-thread test runtime runs the
/// server's tasks there), as plain text.
pub struct LogCapture {
    buffer: Arc<std::sync::Mutex<Vec<u8>>>,
    _guard: tracing::subscriber::DefaultGuard,
}

struct CaptureWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogCapture {
    pub fn start() -> Self {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("info")
            .with_ansi(false)
            .with_writer(move || CaptureWriter(writer.clone()))
            .finish();
        LogCapture {
            buffer,
            _guard: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap()).into_owned()
    }
}

/// A small tmpfs at a temporary folder, mounted in a mount namespace of the calling thread's
/// own: nothing outside the test sees it, and it vanishes with the test. Create it before
/// the test's runtime, whose threads then inherit the namespace. Needs root (CAP_SYS_ADMIN),
/// as CI and the development machines have.
pub struct SmallDisk {
    pub path: PathBuf,
    _dir: TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> Self {
        use rustix::mount::{MountFlags, MountPropagationFlags};
        let dir = tempfile::tempdir().expect("temporary folder");
        // SAFETY: NEWNS unshares the mount namespace (and the file-system attributes) of
        // this thread only; no file descriptor table is unshared.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }
            .expect("a private mount namespace (tests run as root)");
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .expect("mounts made private");
        let options = std::ffi::CString::new(format!("size={bytes}")).unwrap();
        rustix::mount::mount(
            "tmpfs",
            dir.path(),
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            options.as_c_str(),
        )
        .expect("a tmpfs mount");
        SmallDisk {
            path: dir.path().to_owned(),
            _dir: dir,
        }
    }

    /// Fills the file system with a ballast file until at most `left` bytes are free.
    pub fn fill(&self, left: u64) -> PathBuf {
        let stat = rustix::fs::statvfs(&self.path).unwrap();
        let free = stat.f_bavail * stat.f_frsize;
        let ballast = self.path.join("ballast");
        let size = free.saturating_sub(left);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&ballast)
            .unwrap();
        // tmpfs allocates pages as they are written, so write rather than set_len.
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut written = 0;
        let mut file = file;
        while written < size {
            let n = chunk.len().min((size - written) as usize);
            match std::io::Write::write(&mut file, &chunk[..n]) {
                Ok(n) => written += n as u64,
                Err(_) => break, // full already
            }
        }
        ballast
    }

    pub fn free(&self) -> u64 {
        let stat = rustix::fs::statvfs(&self.path).unwrap();
        stat.f_bavail * stat.f_frsize
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.path, rustix::mount::UnmountFlags::DETACH);
    }
}

/// A 16:9 frame that looks like someone on a webcam: a backdrop and shirt in the
/// participant's `hue` (0 to 360) and a head that sways a little with time `t` (seconds).
pub fn webcam_png(width: u32, height: u32, hue: f32, t: f32) -> Vec<u8> {
    let (w, h) = (width as f32, height as f32);
    let backdrop = hsl(hue, 0.28, 0.86);
    let backdrop_low = hsl(hue, 0.30, 0.72);
    let shirt = hsl(hue, 0.45, 0.42);
    let skin = [224.0, 182.0, 150.0];
    let hair = [70.0, 52.0, 44.0];
    let sway = (t * 1.7).sin() * w * 0.02;
    let head = (w * 0.5 + sway, h * 0.43, h * 0.16);
    paint(width, height, |x, y| {
        let mut colour = mix(backdrop, backdrop_low, y / h);
        // shoulders: the top of a wide ellipse below the frame
        let (sx, sy) = (
            (x - w * 0.5 - sway * 0.4) / (w * 0.27),
            (y - h * 1.02) / (h * 0.42),
        );
        colour = mix(colour, shirt, edge(1.0 - (sx * sx + sy * sy).sqrt(), 60.0));
        let (dx, dy) = (x - head.0, y - head.1);
        let d = (dx * dx + dy * dy).sqrt();
        colour = mix(colour, skin, edge(head.2 - d, 1.0));
        // hair on the top of the head
        let top = edge(head.2 * 1.04 - d, 1.0) * edge(head.1 - head.2 * 0.35 - y, 1.0);
        mix(colour, hair, top)
    })
}

/// A 16:9 frame that looks like a shared slide, different for each `page`.
pub fn slide_png(width: u32, height: u32, page: u32) -> Vec<u8> {
    let (w, h) = (width as f32, height as f32);
    let accent = hsl(220.0 + page as f32 * 25.0, 0.62, 0.48);
    paint(width, height, |x, y| {
        let (u, v) = (x / w, y / h);
        let inside = |x0: f32, y0: f32, x1: f32, y1: f32| u >= x0 && u < x1 && v >= y0 && v < y1;
        if inside(0.0, 0.0, 1.0, 0.16) {
            return accent;
        }
        if inside(0.07, 0.24, 0.55, 0.31) {
            return [40.0, 44.0, 52.0];
        }
        for (i, len) in [0.38, 0.32, 0.41, 0.26].iter().enumerate() {
            let top = 0.40 + i as f32 * 0.11;
            if inside(0.07, top, 0.07 + len, top + 0.035) {
                return [150.0, 156.0, 168.0];
            }
        }
        for bar in 0..4 {
            let left = 0.62 + bar as f32 * 0.08;
            let height = 0.15 + ((bar + page) % 4) as f32 * 0.12;
            if inside(left, 0.85 - height, left + 0.055, 0.85) {
                return mix(accent, [255.0; 3], bar as f32 * 0.18);
            }
        }
        [250.0, 250.0, 252.0]
    })
}

fn paint(width: u32, height: u32, colour: impl Fn(f32, f32) -> [f32; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        let [r, g, b] = colour(x as f32 + 0.5, y as f32 + 0.5);
        image::Rgb([r as u8, g as u8, b as u8])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("encode PNG");
    bytes
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    let t = t.clamp(0.0, 1.0);
    [0, 1, 2].map(|i| a[i] + (b[i] - a[i]) * t)
}

/// 0 outside, 1 inside, a soft step `softness` wide at the border.
fn edge(distance_inside: f32, softness: f32) -> f32 {
    (distance_inside * softness).clamp(0.0, 1.0)
}

fn hsl(hue: f32, saturation: f32, lightness: f32) -> [f32; 3] {
    let c = (1.0 - (2.0 * lightness - 1.0).abs()) * saturation;
    let h = (hue.rem_euclid(360.0)) / 60.0;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = lightness - c / 2.0;
    [r, g, b].map(|v| (v + m) * 255.0)
}
