//! The real server in-process, as `recall_frames::run` on 127.0.0.1:0 with a temporary
//! DATA_DIR, and what a test asks of it over HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use recall_frames::Config;
use recall_frames::sink::FrameSink;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{Bot, TestFrame, WS_TOKEN, eventually, metric_value, wait_for_frames_at};

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

/// How many messages the Prometheus text `metrics` counts as refused for `reason`.
pub fn refused(metrics: &str, reason: &str) -> f64 {
    metric_value(
        metrics,
        &format!("recall_frames_messages_refused_total{{reason=\"{reason}\"}}"),
    )
}
