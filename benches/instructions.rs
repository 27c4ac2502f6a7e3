//! The server's own work per message, counted in instructions: `cargo bench --bench
//! instructions`.
//!
//! Wall-clock ratios swing two-fold from run to run on a shared machine; instruction counts
//! do not. For each kind of message, the release server runs under `valgrind
//! --tool=callgrind` twice, receiving `few` and then `many` messages over two websocket
//! connections on 127.0.0.1; the difference in its user-space instructions, divided by
//! `many - few`, is the cost of one message, start-up and shutdown cancelled out. The
//! difference per function gives the profile's top entries. With `strace` present, the same
//! two runs under `strace -f -c` give the system calls per message.
//!
//! Messages: a frame as Recall sends one (a simulator-rendered 640x360 PNG, about 455 KB of
//! JSON), and an audio-sized one (a 20 ms chunk, 640 bytes of PCM in base64, about 1 KB of
//! JSON) as `audio_separate_raw.data`. Each connection's messages are all processed once its
//! close handshake is done, and every frame is saved once its file is in place, so the server
//! is stopped (SIGTERM) only then. Without valgrind the bench says so and does nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use clap::Parser;
use futures_util::{SinkExt as _, StreamExt as _};
use recall_frames::frame::StreamKind;
use recall_frames::simulate::{SimulateArgs, Simulation};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const WS_TOKEN: &str = "instructions-bench-token-0123456789";

#[derive(Debug, Parser)]
#[command(about = "Instructions and system calls per message of the recall-frames server")]
struct Options {
    /// Only these kinds of message (repeat the flag); all of them by default.
    #[arg(long, value_enum)]
    message: Vec<Kind>,
    /// Also count system calls with strace (when present).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    strace: bool,
    /// Keep callgrind's output files here (`callgrind.<kind>.<count>`), for
    /// `callgrind_annotate --tree=caller` and the like.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Run the server with glibc's `rep stosb`/`rep movsb` thresholds raised, so memset and
    /// memcpy use vector stores. Callgrind counts every byte of a `rep stosb` as one
    /// instruction (a 32 KiB memset: 32,768), where the CPU runs it as one instruction at
    /// cache-line speed; vector stores count about what they cost (1,800). This shows how
    /// much of a count is that artifact.
    #[arg(long)]
    vector_string_ops: bool,
    /// Profile entries shown per kind of message.
    #[arg(long, default_value_t = 8)]
    top: usize,
    /// What `cargo bench` passes to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
    /// A `cargo bench -- FILTER` for other benches: this one runs only if "instructions"
    /// matches.
    #[arg(hide = true)]
    filter: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// A 640x360 frame: about 455 KB of JSON.
    Frame,
    /// A 20 ms chunk of one participant's audio: about 1 KB of JSON.
    Audio,
}

impl Kind {
    /// Messages in the short run and in the long one, over two connections.
    fn counts(self) -> (usize, usize) {
        match self {
            Kind::Frame => (20, 120),
            Kind::Audio => (400, 2400),
        }
    }
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    if !options.filter.is_empty()
        && !options
            .filter
            .iter()
            .any(|f| "instructions".contains(f.as_str()))
    {
        return Ok(());
    }
    if !found("valgrind") {
        println!("instructions: valgrind is not installed; nothing measured");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_recall-frames"));
    let kinds = match options.message.is_empty() {
        true => vec![Kind::Frame, Kind::Audio],
        false => options.message.clone(),
    };
    let strace = options.strace && found("strace");
    let mut report = String::new();
    for kind in kinds {
        let messages = messages(kind).await?;
        let size = messages[0].len();
        let (few, many) = kind.counts();
        let per = (many - few) as f64;
        eprintln!("{kind:?}: {few} then {many} messages of {size} bytes under callgrind...");
        let keep = options.keep.as_deref();
        let env: &[(&str, &str)] = match options.vector_string_ops {
            true => &[(
                "GLIBC_TUNABLES",
                "glibc.cpu.x86_rep_stosb_threshold=0x7fffffff:glibc.cpu.x86_rep_movsb_threshold=0x7fffffff",
            )],
            false => &[],
        };
        let short = callgrind(&binary, &messages, kind, few, keep, env).await?;
        let long = callgrind(&binary, &messages, kind, many, keep, env).await?;
        let total = (long.total as f64 - short.total as f64) / per;
        report += &format!(
            "\n## {kind:?}: {size}-byte messages\n\n\
             user-space instructions per message: {total:.0}\n\n\
             | function | instructions per message | share |\n|---|---:|---:|\n"
        );
        let mut entries: Vec<(String, f64)> = long
            .functions
            .iter()
            .map(|(name, count)| {
                let before = short.functions.get(name).copied().unwrap_or(0);
                (name.clone(), (*count as f64 - before as f64) / per)
            })
            .collect();
        entries.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (name, count) in entries.iter().take(options.top) {
            report += &format!(
                "| `{name}` | {count:.0} | {:.0}% |\n",
                count / total * 100.0
            );
        }
        if strace {
            eprintln!("{kind:?}: {few} then {many} messages under strace...");
            let short = strace_counts(&binary, &messages, kind, few).await?;
            let long = strace_counts(&binary, &messages, kind, many).await?;
            let mut calls: Vec<(String, f64)> = long
                .iter()
                .map(|(name, count)| {
                    let before = short.get(name).copied().unwrap_or(0);
                    (name.clone(), (*count as f64 - before as f64) / per)
                })
                .filter(|(_, count)| *count >= 0.05)
                .collect();
            calls.sort_by(|a, b| b.1.total_cmp(&a.1));
            let all: f64 = calls.iter().map(|(_, count)| count).sum();
            let each: Vec<String> = calls
                .iter()
                .map(|(name, count)| format!("{count:.1} {name}"))
                .collect();
            let each = match each.is_empty() {
                true => "none at 0.05 or more".to_owned(),
                false => each.join(", "),
            };
            report += &format!("\nsystem calls per message: {all:.1} ({each})\n");
        }
    }
    println!("{report}");
    Ok(())
}

fn found(tool: &str) -> bool {
    std::process::Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Enough distinct messages of `kind` for the long run: each connection sends its own half.
async fn messages(kind: Kind) -> anyhow::Result<Vec<String>> {
    let (_, many) = kind.counts();
    let recording = |connection: usize| format!("instructions-{connection}");
    match kind {
        Kind::Frame => {
            let args = SimulateArgs::from_args([
                "ws://127.0.0.1:1/ws",
                "--participants",
                "2",
                "--screenshare",
                "0",
                "--fps",
                "max",
                "--ring",
                "20",
            ])?;
            let simulation = Simulation::prepare(args).await?;
            Ok((0..many)
                .map(|i| {
                    let (connection, tick) = (i % 2, (i / 2) as u64);
                    let png = simulation.png(connection, StreamKind::Webcam, tick);
                    let event = json!({
                        "event": "video_separate_png.data",
                        "data": {
                            "data": {
                                "buffer": base64::engine::general_purpose::STANDARD.encode(&png),
                                "timestamp": timestamp(tick, 500),
                                "type": "webcam",
                                "participant": participant(connection),
                            },
                            "realtime_endpoint": {"id": "re-1", "metadata": {}},
                            "video_separate": {"id": "vs-1", "metadata": {}},
                            "recording": {"id": recording(connection), "metadata": {}},
                            "bot": {"id": "bot-1", "metadata": {}},
                        }
                    });
                    event.to_string()
                })
                .collect())
        }
        Kind::Audio => Ok((0..many)
            .map(|i| {
                let (connection, tick) = (i % 2, (i / 2) as u64);
                // 20 ms of 16 kHz mono 16-bit PCM, each chunk right after the one before, as
                // Recall sends a voice.
                let pcm: Vec<u8> = (0..640).map(|b| (b * 7 + i) as u8).collect();
                let event = json!({
                    "event": "audio_separate_raw.data",
                    "data": {
                        "data": {
                            "buffer": base64::engine::general_purpose::STANDARD.encode(&pcm),
                            "timestamp": timestamp(tick, 20),
                            "participant": participant(connection),
                        },
                        "realtime_endpoint": {"id": "re-1", "metadata": {}},
                        "audio_separate": {"id": "as-1", "metadata": {}},
                        "recording": {"id": recording(connection), "metadata": {}},
                        "bot": {"id": "bot-1", "metadata": {}},
                    }
                });
                event.to_string()
            })
            .collect()),
    }
}

/// The time of the `tick`th message of a connection, one every `every_ms`.
fn timestamp(tick: u64, every_ms: u64) -> serde_json::Value {
    let relative = (tick * every_ms) as f64 / 1000.0;
    let absolute = jiff::Timestamp::from_second(1_795_000_000).unwrap()
        + jiff::SignedDuration::from_millis((tick * every_ms) as i64);
    json!({"relative": relative, "absolute": absolute.to_string()})
}

fn participant(connection: usize) -> serde_json::Value {
    json!({"id": 100 + connection, "name": format!("Participant {connection}"),
           "is_host": connection == 0, "platform": "desktop", "extra_data": {}})
}

/// What one callgrind run counted: the total, and each function's own instructions.
struct Counted {
    total: u64,
    functions: BTreeMap<String, u64>,
}

async fn callgrind(
    binary: &Path,
    messages: &[String],
    kind: Kind,
    count: usize,
    keep: Option<&Path>,
    env: &[(&str, &str)],
) -> anyhow::Result<Counted> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("callgrind.out");
    let tool = [
        "valgrind".to_owned(),
        "--tool=callgrind".to_owned(),
        format!("--callgrind-out-file={}", out.display()),
    ];
    drive(&tool, binary, messages, kind, count, env).await?;
    if let Some(keep) = keep {
        std::fs::create_dir_all(keep)?;
        std::fs::copy(&out, keep.join(format!("callgrind.{kind:?}.{count}")))?;
    }
    let annotated = std::process::Command::new("callgrind_annotate")
        .args(["--threshold=100", "--inclusive=no"])
        .arg(&out)
        .output()
        .context("cannot run callgrind_annotate")?;
    ensure!(annotated.status.success(), "callgrind_annotate failed");
    let text = String::from_utf8_lossy(&annotated.stdout);
    let mut total = None;
    let mut functions = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some((count, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let rest = rest.trim();
        if rest.starts_with("(100.0%)  PROGRAM TOTALS") || rest == "PROGRAM TOTALS" {
            total = Some(count);
        } else if let Some((_, name)) = rest.split_once(") ") {
            // `(12.34%)  file:function [object]`: the function, without file and object.
            let name = name.trim();
            let name = name.rsplit_once(" [").map_or(name, |(name, _)| name);
            let name = name.split_once(':').map_or(name, |(_, function)| function);
            *functions.entry(name.to_owned()).or_default() += count;
        }
    }
    let total = total.context("no PROGRAM TOTALS in callgrind_annotate's output")?;
    Ok(Counted { total, functions })
}

async fn strace_counts(
    binary: &Path,
    messages: &[String],
    kind: Kind,
    count: usize,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("strace.out");
    let tool = [
        "strace".to_owned(),
        "-f".to_owned(),
        "-c".to_owned(),
        "-o".to_owned(),
        out.display().to_string(),
        "--".to_owned(),
    ];
    drive(&tool, binary, messages, kind, count, &[]).await?;
    let text = std::fs::read_to_string(&out)?;
    // `% time     seconds  usecs/call     calls    errors syscall`: the calls column and the
    // name; the totals line is left out.
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(name) = fields.last() else { continue };
        if fields.len() < 5 || *name == "total" {
            continue;
        }
        if let Ok(count) = fields[3].parse::<u64>() {
            calls.insert((*name).to_owned(), count);
        }
    }
    Ok(calls)
}

/// Starts the server under `tool` with `env`, sends `count` messages over two connections,
/// waits until all of them are processed (and every frame saved), and stops it.
async fn drive(
    tool: &[String],
    binary: &Path,
    messages: &[String],
    kind: Kind,
    count: usize,
    env: &[(&str, &str)],
) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(data.path().join(".server.log"))?;
    let mut child = tokio::process::Command::new(&tool[0])
        .args(&tool[1..])
        .arg(binary)
        .args(["--port", &port.to_string()])
        .arg("--data-dir")
        .arg(data.path())
        .args(["--ws-token", WS_TOKEN])
        .env_clear()
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", tool[0]))?;
    let pid = child.id().context("the server has a pid")? as i32;
    let url = format!("ws://127.0.0.1:{port}/ws?token={WS_TOKEN}");
    // Under valgrind the server takes seconds to start: retry the connection (a refused TCP
    // connection costs the server nothing).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut sockets = Vec::new();
    while sockets.len() < 2 {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, _)) => sockets.push(socket),
            Err(error) => {
                ensure!(
                    Instant::now() < deadline,
                    "the server did not accept a websocket: {error}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let sends = sockets.into_iter().enumerate().map(|(connection, socket)| {
        let mine: Vec<String> = messages[..count]
            .iter()
            .skip(connection)
            .step_by(2)
            .cloned()
            .collect();
        async move {
            let (mut sender, mut receiver) = socket.split();
            let reading = async {
                // Anything the server answers with is a refusal: the bench's messages are good.
                while let Some(message) = receiver.next().await {
                    match message? {
                        Message::Text(text) => bail!("the server answered: {text}"),
                        Message::Close(_) => break,
                        _ => {}
                    }
                }
                anyhow::Ok(())
            };
            let sending = async {
                for message in mine {
                    sender.send(Message::Text(message.into())).await?;
                }
                sender.send(Message::Close(None)).await?;
                anyhow::Ok(())
            };
            let (read, sent) = tokio::join!(reading, sending);
            read.and(sent)
        }
    });
    for result in futures_util::future::join_all(sends).await {
        result?;
    }
    if kind == Kind::Frame {
        let deadline = Instant::now() + Duration::from_secs(600);
        while frames_saved(data.path())? < count {
            ensure!(Instant::now() < deadline, "frames were not all saved");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // valgrind runs the server in its own process; strace runs it as its child.
    let server = match tool[0].as_str() {
        "strace" => std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))?
            .split_whitespace()
            .next()
            .context("strace has no child")?
            .parse()?,
        _ => pid,
    };
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(server).context("a pid")?,
        rustix::process::Signal::TERM,
    )?;
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait()).await??;
    ensure!(status.success(), "the server exited with {status}");
    Ok(())
}

/// Frame files in place under `dir`.
fn frames_saved(dir: &Path) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut folders = vec![dir.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder)? {
            let entry = entry?;
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                folders.push(entry.path());
            } else if name.to_string_lossy().ends_with(".png")
                && !name.to_string_lossy().starts_with('.')
            {
                count += 1;
            }
        }
    }
    Ok(count)
}
