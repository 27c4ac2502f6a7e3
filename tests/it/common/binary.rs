//! The real `recall-frames` binary as a child process: one command run to its end, or a
//! server to kill, signal and restart.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::{PATIENCE, wait_for_frames_at};

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
        let data_dir = data_dir.to_str().expect("a UTF-8 path");
        let mut all = vec![
            "--listen-address",
            "127.0.0.1",
            "--port",
            "0",
            "--data-dir",
            data_dir,
        ];
        all.extend(args);
        Self::spawn_args(env, &all)
    }

    /// Starts the binary with exactly `args` (which must make it listen on 127.0.0.1) and
    /// only `env` for environment (plus `NO_COLOR`), and waits for it to listen.
    pub fn spawn_args(env: &[(&str, &str)], args: &[&str]) -> Self {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let mut child = Command::new(env!("CARGO_BIN_EXE_recall-frames"))
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

    /// The child's process id (for /proc readings).
    pub fn pid(&self) -> u32 {
        self.child.id()
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
