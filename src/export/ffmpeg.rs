//! ffmpeg as a child process: found and checked at start-up, run at a lower priority with
//! a bounded number of threads, its progress read from `-progress pipe:1`, killed when its
//! export is cancelled.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// The Debian package that has ffmpeg, for the messages that say it is missing.
pub const PACKAGE: &str = "ffmpeg";

/// The sound's encoder: ffmpeg's own AAC (which every browser and player plays) at
/// `bitrate` and 48 kHz, with its `fast` coder. The default, `twoloop`, spent 47 CPU-seconds
/// on an hour of voice, on ffmpeg's main thread: more than decoding and encoding the hour's
/// pictures, and the one-hour export's bottleneck. `fast` spends a quarter of that.
pub fn aac(bitrate: &str) -> Vec<String> {
    strings([
        "-c:a",
        "aac",
        "-aac_coder",
        "fast",
        "-b:a",
        bitrate,
        "-ar",
        "48000",
    ])
}

/// Arguments as ffmpeg takes them.
pub fn strings<const N: usize>(args: [&str; N]) -> Vec<String> {
    args.map(str::to_owned).to_vec()
}

/// How to run ffmpeg, once it was found to work.
#[derive(Debug, Clone)]
pub struct Ffmpeg {
    pub program: PathBuf,
    /// Threads each run may use (`-threads`, `-filter_threads`).
    pub threads: usize,
    /// The niceness each run starts at.
    pub nice: i32,
    /// The x264 preset of encodes.
    pub preset: String,
    /// What `ffmpeg -version` said first.
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    #[error("cannot start {program}: {source}")]
    Start {
        program: String,
        source: std::io::Error,
    },
    #[error("ffmpeg failed ({status}): {tail}")]
    Failed { status: String, tail: String },
    #[error("cancelled")]
    Cancelled,
    #[error("reading ffmpeg's output: {0}")]
    Io(#[from] std::io::Error),
}

impl Ffmpeg {
    /// Runs `program -version`: the ffmpeg to use, or why there is none.
    pub async fn find(
        program: &Path,
        threads: usize,
        nice: i32,
        preset: &str,
    ) -> Result<Ffmpeg, FfmpegError> {
        let output = Command::new(program)
            .arg("-version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| FfmpegError::Start {
                program: program.display().to_string(),
                source,
            })?;
        if !output.status.success() {
            return Err(FfmpegError::Failed {
                status: output.status.to_string(),
                tail: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        let version = String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        Ok(Ffmpeg {
            program: program.to_owned(),
            threads,
            nice,
            preset: preset.to_owned(),
            version,
        })
    }

    /// Runs ffmpeg with `args` (after the options every run has), calling `progress` with
    /// the frames encoded so far, until it exits or `cancel` fires (then it is killed).
    pub async fn run(
        &self,
        args: &[String],
        cancel: &CancellationToken,
        progress: impl FnMut(u64) + Send,
    ) -> Result<(), FfmpegError> {
        self.run_with_input(args, cancel, progress, None).await
    }

    /// [`Ffmpeg::run`], writing what `input` gives to ffmpeg's standard input (`pipe:0`),
    /// then closing it.
    pub async fn run_with_input(
        &self,
        args: &[String],
        cancel: &CancellationToken,
        mut progress: impl FnMut(u64) + Send,
        input: Option<tokio::sync::mpsc::Receiver<Vec<u8>>>,
    ) -> Result<(), FfmpegError> {
        let mut command = Command::new(&self.program);
        command
            .args(["-hide_banner", "-nostdin", "-nostats", "-y"])
            .args(["-loglevel", "error", "-progress", "pipe:1"])
            .args(["-filter_threads", &self.threads.to_string()])
            .args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let nice = self.nice;
        // SAFETY: between fork and exec only `nice` runs, a system call without allocation
        // or locks.
        unsafe {
            command.pre_exec(move || {
                // A failure leaves the priority as it was: still an export, just not nicer.
                let _ = rustix::process::nice(nice);
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| FfmpegError::Start {
            program: self.program.display().to_string(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let errors = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        let feeding = match (input, child.stdin.take()) {
            (Some(mut input), Some(mut stdin)) => Some(tokio::spawn(async move {
                use tokio::io::AsyncWriteExt as _;
                while let Some(bytes) = input.recv().await {
                    stdin.write_all(&bytes).await?;
                }
                stdin.shutdown().await
            })),
            _ => None,
        };
        let mut lines = BufReader::new(stdout).lines();
        let read = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(frames) = line.strip_prefix("frame=")
                    && let Ok(frames) = frames.trim().parse()
                {
                    progress(frames);
                }
            }
            child.wait().await
        };
        let status = tokio::select! {
            status = read => status?,
            () = cancel.cancelled() => {
                let _ = child.kill().await;
                errors.abort();
                if let Some(feeding) = feeding {
                    feeding.abort();
                }
                return Err(FfmpegError::Cancelled);
            }
        };
        if let Some(feeding) = feeding {
            // A write failing because ffmpeg stopped reading shows as ffmpeg's own failure.
            let _ = feeding.await;
        }
        let errors = errors.await.unwrap_or_default();
        if status.success() {
            Ok(())
        } else {
            let tail: Vec<&str> = errors.lines().rev().take(8).collect();
            Err(FfmpegError::Failed {
                status: status.to_string(),
                tail: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            })
        }
    }
}
