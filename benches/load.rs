//! The end-to-end load benchmark: `cargo bench --bench load`.
//!
//! Starts the release server (the bench profile's build of this package's binary) on
//! 127.0.0.1 with a temporary DATA_DIR, drives it with `recall-frames simulate` run in this
//! process, and prints a Markdown table:
//!
//! 1. the floor: the same PNG bytes written to new files by a one-thread loop, no network
//!    and no parsing (just before and just after phase 2);
//! 2. as fast as possible over many connections: sustained frames/s and MB/s reaching disk,
//!    receipt-to-file latency, peak RSS, CPU-seconds per 1,000 frames, and the ratio to the
//!    floor;
//! 3. the real rate, 2 fps on 250 streams: CPU, RSS, latency after a warm-up (and with it),
//!    and frames lost (checked against the files on disk);
//! 4. 2,000 idle websockets: the server's RSS;
//! 5. audio (issue 12): 16 bots of 16 participants each, 2 fps webcams and every participant's
//!    audio all the time in 20 ms chunks (256 streams of each), against the same run without
//!    audio: CPU per 1,000 frames with and without, receipt-to-disk latency of frames (from
//!    the files) and of audio (from the histogram), and frames and samples lost, checked on
//!    disk (every chunk listed whole in `audio.jsonl` and held by the WAV pieces; the first
//!    bot's tracks compared sample by sample with the voices sent).
//!
//! The simulator's own CPU is measured as this process's, and the other processes' CPU
//! during each phase says whether the run was disturbed. Every phase is bounded in time and
//! count; only 127.0.0.1 is ever connected to. `--help` lists the knobs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use clap::Parser;
use futures_util::StreamExt as _;
use procfs::Current as _;
use recall_frames::layout;
use recall_frames::simulate::{Output, Report, SimulateArgs, Simulation};
use tokio_util::sync::CancellationToken;

// The tests' Prometheus text parser, one copy for both.
#[path = "../tests/it/common/metrics.rs"]
mod metrics;
use metrics::metric_value;

const WS_TOKEN: &str = "load-bench-token-0123456789";

#[derive(Debug, Parser)]
#[command(about = "End-to-end load benchmark of recall-frames on 127.0.0.1")]
struct Options {
    /// Seconds of the as-fast-as-possible phase.
    #[arg(long, default_value_t = 20)]
    max_seconds: u64,
    /// Bots (connections) in the as-fast-as-possible phase, each with two webcam streams.
    #[arg(long, default_value_t = 8)]
    max_bots: usize,
    /// Seconds of the real-rate phase.
    #[arg(long, default_value_t = 60)]
    real_seconds: u64,
    /// Seconds at the start of the real-rate phase, while every stream opens at once, left
    /// out of its steady-state latency (and reported on their own).
    #[arg(long, default_value_t = 10)]
    warm_up_seconds: u64,
    /// Bots in the real-rate phase, each with five participants' webcams at 2 fps.
    #[arg(long, default_value_t = 50)]
    real_bots: usize,
    /// Seconds of each run of the audio phase (without audio, then with it): about 5 GB of
    /// PNGs each at 30 s.
    #[arg(long, default_value_t = 30)]
    audio_seconds: u64,
    /// Bots in the audio phase.
    #[arg(long, default_value_t = 16)]
    audio_bots: usize,
    /// Participants per bot in the audio phase, each with a webcam at 2 fps and audio.
    #[arg(long, default_value_t = 16)]
    audio_participants: usize,
    /// In the real-rate phase, keep exports of a recorded webcam stream of this many minutes
    /// running (one after another, EXPORT_THREADS=1) while the bots stream (issue 14).
    #[arg(long)]
    export_minutes: Option<u64>,
    /// Idle websockets held open in the idle phase.
    #[arg(long, default_value_t = 2000)]
    idle_connections: usize,
    /// Frames written by each floor loop at most.
    #[arg(long, default_value_t = 10_000)]
    floor_frames: u64,
    /// Seconds each floor loop runs at most.
    #[arg(long, default_value_t = 10)]
    floor_seconds: u64,
    /// Run only these phases (repeat the flag); all of them by default.
    #[arg(long, value_enum)]
    phase: Vec<PhaseName>,
    /// What `cargo bench` passes to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
    /// A `cargo bench -- FILTER` for other benches: this one runs only if "load" matches.
    #[arg(hide = true)]
    filter: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum PhaseName {
    Floor,
    Max,
    Real,
    Idle,
    Audio,
}

fn main() -> anyhow::Result<()> {
    let options = Options::parse();
    if !options.filter.is_empty() && !options.filter.iter().any(|f| "load".contains(f.as_str())) {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(options))
}

async fn run(options: Options) -> anyhow::Result<()> {
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_recall-frames"));
    // 2,000 client sockets in this process, and as many in the server.
    let open_files = rlimit::increase_nofile_limit(u64::MAX)?;
    ensure!(
        open_files as usize > options.idle_connections + 100,
        "the open files limit ({open_files}) is too low for {} connections",
        options.idle_connections
    );
    let machine = Machine::describe()?;
    eprintln!("{machine}");
    let runs = |phase| options.phase.is_empty() || options.phase.contains(&phase);
    let mut table = Table::default();
    // The floor moves with the kernel's page-cache state from minute to minute, so it is
    // measured just before and just after the as-fast-as-possible phase, and the server is
    // compared with their mean.
    let mut floors = Vec::new();
    if runs(PhaseName::Floor) || runs(PhaseName::Max) {
        floors.push(floor_phase(&options).await?);
    }
    let max = match runs(PhaseName::Max) {
        true => Some(max_phase(&options, &binary).await?),
        false => None,
    };
    if max.is_some() {
        floors.push(floor_phase(&options).await?);
    }
    let floor = floor_rows(&mut table, &floors);
    if let Some(max) = &max {
        max_rows(&options, &mut table, max, floor);
    }
    if runs(PhaseName::Real) {
        real_phase(&options, &binary, &mut table).await?;
    }
    if runs(PhaseName::Idle) {
        eprintln!("idle: {} open websockets...", options.idle_connections);
        let (none, all) = idle(&binary, options.idle_connections).await?;
        table.row(
            &format!("{} idle websockets", options.idle_connections),
            "server RSS (none open / all open)",
            format!("{} / {}", mb(none), mb(all)),
            "< 200 MB",
        );
    }
    if runs(PhaseName::Audio) {
        audio_phase(&options, &binary, &mut table).await?;
    }
    let after = procfs::LoadAverage::current()?;
    println!("\n{machine}");
    println!(
        "load average after: {:.2} {:.2} {:.2}\n",
        after.one, after.five, after.fifteen
    );
    println!("{table}");
    Ok(())
}

/// The simulator's arguments for the as-fast-as-possible phase (and the floor's PNGs).
fn max_args(options: &Options) -> Vec<String> {
    let args = [
        "--bots",
        &options.max_bots.to_string(),
        "--participants",
        "2",
        "--screenshare",
        "0",
        "--fps",
        "max",
        "--duration",
        &format!("{}s", options.max_seconds),
        "--ring",
        "20",
    ];
    args.map(String::from).to_vec()
}

async fn floor_phase(options: &Options) -> anyhow::Result<Floor> {
    eprintln!("floor: writing the same PNGs to new files in one thread...");
    let args = max_args(options);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    floor(
        &prepare("ws://127.0.0.1:1/ws", &args, "floor").await?,
        options.floor_frames,
        Duration::from_secs(options.floor_seconds),
    )
    .await
}

/// The floor's rows; returns the mean frames/s of its measurements.
fn floor_rows(table: &mut Table, floors: &[Floor]) -> Option<f64> {
    if floors.is_empty() {
        return None;
    }
    let each: Vec<String> = floors
        .iter()
        .map(|f| format!("{:.0}", f.frames_per_second))
        .collect();
    let count = floors.len() as f64;
    let mean = floors.iter().map(|f| f.frames_per_second).sum::<f64>() / count;
    let mb = floors.iter().map(|f| f.mb_per_second).sum::<f64>() / count;
    let measured = if floors.len() > 1 {
        format!(" (before / after: {} frames/s)", each.join(" / "))
    } else {
        String::new()
    };
    table.row(
        "floor: same PNGs, one thread, `write` to new files",
        "frames/s, MB/s",
        format!("{mean:.0} frames/s, {mb:.0} MB/s{measured}"),
        "",
    );
    let others: f64 = floors.iter().map(|f| f.others_cpu).sum();
    let wall: f64 = floors.iter().map(|f| f.wall).sum();
    others_row(table, others, wall);
    Some(mean)
}

async fn max_phase(options: &Options, binary: &Path) -> anyhow::Result<Phase> {
    eprintln!(
        "as fast as possible: {} bots x 2 streams for {} s...",
        options.max_bots, options.max_seconds
    );
    let args = max_args(options);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    phase(binary, &args, "load_max", Duration::ZERO, None).await
}

fn max_rows(options: &Options, table: &mut Table, max: &Phase, floor: Option<f64>) {
    let label = format!(
        "as fast as possible: {} connections x 2 webcams, {} s",
        options.max_bots, options.max_seconds
    );
    table.row(
        &label,
        "sustained to disk",
        format!(
            "{:.0} frames/s, {:.0} MB/s",
            max.frames_per_second(),
            max.mb_per_second()
        ),
        "",
    );
    if let Some(floor) = floor {
        let ratio = max.frames_per_second() / floor;
        table.row(
            "",
            "ratio to the floor",
            format!("{:.0}%", ratio * 100.0),
            "≥ 75%",
        );
    }
    latency_rows(table, max, None, "");
    table.row("", "peak RSS", mb(max.peak_rss), "");
    table.row(
        "",
        "server CPU per 1,000 frames",
        format!("{:.2} CPU-s", max.cpu_per_thousand()),
        "≤ 2 CPU-s",
    );
    table.row(
        "",
        "simulator CPU",
        format!(
            "{:.0}% of a core ({:.2} CPU-s per 1,000 frames)",
            max.generator_cpu / max.wall * 100.0,
            max.generator_cpu / max.saved as f64 * 1000.0
        ),
        "",
    );
    table.row(
        "",
        "frames lost (checked on disk)",
        format!("{} of {}", max.lost, max.report.frames),
        "0",
    );
    others_row(table, max.others_cpu, max.wall);
}

async fn real_phase(options: &Options, binary: &Path, table: &mut Table) -> anyhow::Result<()> {
    let streams = options.real_bots * 5;
    eprintln!(
        "real rate: {streams} streams ({} bots x 5) at 2 fps for {} s...",
        options.real_bots, options.real_seconds
    );
    let args = [
        "--bots",
        &options.real_bots.to_string(),
        "--participants",
        "5",
        "--screenshare",
        "0",
        "--fps",
        "2",
        "--duration",
        &format!("{}s", options.real_seconds),
        "--ring",
        "20",
    ];
    let warm_up = Duration::from_secs(options.warm_up_seconds);
    let real = phase(binary, &args, "load_real", warm_up, options.export_minutes).await?;
    let label = format!(
        "real rate: {streams} streams at 2 fps ({} connections x 5), {} s",
        options.real_bots, options.real_seconds
    );
    table.row(
        &label,
        "server CPU",
        format!(
            "{:.0}% of one core ({:.2} CPU-s per 1,000 frames)",
            real.server_cpu / real.wall * 100.0,
            real.cpu_per_thousand()
        ),
        "",
    );
    table.row(
        "",
        "RSS (peak / sampled max)",
        format!("{} / {}", mb(real.peak_rss), mb(real.sampled_rss)),
        "< 150 MB",
    );
    latency_rows(table, &real, Some(warm_up), "p99 < 100 ms");
    table.row(
        "",
        "frames lost (checked on disk)",
        format!("{} of {}", real.lost, real.report.frames),
        "0",
    );
    table.row(
        "",
        "simulator CPU",
        format!("{:.0}% of a core", real.generator_cpu / real.wall * 100.0),
        "",
    );
    others_row(table, real.others_cpu, real.wall);
    if let (Some(minutes), Some((runs, frames))) = (options.export_minutes, real.exports) {
        table.row(
            "",
            &format!("exports of a {minutes}-min stream meanwhile"),
            format!("{runs} finished, {frames} frames encoded during the phase"),
            "",
        );
    }
    Ok(())
}

async fn audio_phase(options: &Options, binary: &Path, table: &mut Table) -> anyhow::Result<()> {
    let (bots, participants) = (options.audio_bots, options.audio_participants);
    let streams = bots * participants;
    let frames_args = [
        "--bots".to_owned(),
        bots.to_string(),
        "--participants".into(),
        participants.to_string(),
        "--screenshare".into(),
        "0".into(),
        "--fps".into(),
        "2".into(),
        "--duration".into(),
        format!("{}s", options.audio_seconds),
        "--ring".into(),
        "20".into(),
    ];
    let mut audio_args = frames_args.to_vec();
    audio_args.extend(["--audio", "--audio-all", "--audio-chunk-ms", "20"].map(String::from));
    let warm_up = Duration::from_secs(options.warm_up_seconds);
    eprintln!(
        "audio: {streams} webcams at 2 fps ({bots} bots x {participants}) for {} s, without audio...",
        options.audio_seconds
    );
    let args: Vec<&str> = frames_args.iter().map(String::as_str).collect();
    let without = phase(binary, &args, "load_frames", warm_up, None).await?;
    eprintln!("audio: ...and with {streams} audio streams in 20 ms chunks");
    let args: Vec<&str> = audio_args.iter().map(String::as_str).collect();
    let with = phase(binary, &args, "load_audio", warm_up, None).await?;

    let label = format!(
        "audio: {streams} webcams at 2 fps and {streams} audio streams in 20 ms chunks ({bots} connections x {participants}), {} s",
        options.audio_seconds
    );
    let cpu = |p: &Phase| {
        format!(
            "{:.0}% of one core ({:.2} CPU-s per 1,000 frames)",
            p.server_cpu / p.wall * 100.0,
            p.cpu_per_thousand()
        )
    };
    table.row(&label, "server CPU without audio", cpu(&without), "");
    table.row("", "server CPU with audio", cpu(&with), "");
    table.row(
        "",
        "RSS with audio (peak / sampled max)",
        format!("{} / {}", mb(with.peak_rss), mb(with.sampled_rss)),
        "",
    );
    let files = |p: &Phase| ms(p.latency.files_steady.1);
    table.row(
        "",
        &format!(
            "frames: receipt to file in place, p99 (files, after the first {} s), without / with audio",
            warm_up.as_secs()
        ),
        format!("{} / {}", files(&without), files(&with)),
        "< 100 ms",
    );
    let audio = with
        .audio
        .as_ref()
        .context("the audio run checked its audio")?;
    table.row(
        "",
        &format!(
            "audio: receipt to placed on its track, p50 / p99 (histogram, after the first {} s)",
            warm_up.as_secs()
        ),
        format!(
            "{} / {}",
            ms(audio.saved_steady.0),
            ms(audio.saved_steady.1)
        ),
        "p99 < 100 ms",
    );
    table.row(
        "",
        "audio: p99 over the whole run, start-up included (histogram)",
        ms(audio.saved.1),
        "",
    );
    table.row(
        "",
        "frames lost (checked on disk), without / with audio",
        format!(
            "{} of {} / {} of {}",
            without.lost, without.report.frames, with.lost, with.report.frames
        ),
        "0",
    );
    table.row(
        "",
        "audio samples lost (checked on disk: lines and pieces)",
        format!(
            "{} of {} ({} chunks)",
            audio.lost_samples, with.report.audio_samples, with.report.audio_chunks
        ),
        "0",
    );
    table.row(
        "",
        "samples differing from the voice sent (first bot's tracks, sample by sample)",
        format!("{} of {}", audio.wrong_samples, audio.compared_samples),
        "0",
    );
    table.row(
        "",
        "simulator CPU, without / with audio",
        format!(
            "{:.0}% / {:.0}% of a core",
            without.generator_cpu / without.wall * 100.0,
            with.generator_cpu / with.wall * 100.0
        ),
        "",
    );
    let (cores_without, cores_with) = (
        without.others_cpu / without.wall,
        with.others_cpu / with.wall,
    );
    table.row(
        "",
        "other processes meanwhile, without / with audio",
        format!("{cores_without:.2} / {cores_with:.2} cores"),
        "",
    );
    Ok(())
}

/// How much other work shared the machine: what makes a run disturbed.
fn others_row(table: &mut Table, others_cpu: f64, wall: f64) {
    let cores = (others_cpu / wall).max(0.0);
    let verdict = if cores < 0.1 { "quiet" } else { "disturbed" };
    table.row(
        "",
        "other processes meanwhile",
        format!("{cores:.2} cores ({verdict})"),
        "",
    );
}

/// The latency rows: to the file in place (from the files) and to saved (histogram); with
/// `warm_up`, the steady state after it first, then the whole phase.
fn latency_rows(table: &mut Table, phase: &Phase, warm_up: Option<Duration>, target: &str) {
    // The files' p50 is left out: ctime comes from the kernel's 4 ms clock, too coarse for
    // a median of a few milliseconds (it can read below zero), fine for a p99.
    let pair = |(p50, p99): (f64, f64)| format!("{} / {}", ms(p50), ms(p99));
    let latency = &phase.latency;
    let (files, saved, label) = match warm_up {
        Some(warm_up) => (
            latency.files_steady,
            latency.saved_steady,
            format!(", after the first {} s", warm_up.as_secs()),
        ),
        None => (latency.files, latency.saved, String::new()),
    };
    table.row(
        "",
        &format!("receipt to file in place, p99 (files{label})"),
        ms(files.1),
        target,
    );
    table.row(
        "",
        &format!("receipt to saved, p50 / p99 (histogram{label})"),
        pair(saved),
        "",
    );
    if warm_up.is_some() {
        table.row(
            "",
            "p99 over the whole run, start-up included: to file / to saved",
            format!("{} / {}", ms(latency.files.1), ms(latency.saved.1)),
            "",
        );
    }
}

/// The simulation of `args`, its frames rendered, aimed at `url`.
async fn prepare(url: &str, args: &[&str], recording: &str) -> anyhow::Result<Simulation> {
    let mut all = vec![url, "--recording", recording];
    all.extend(args);
    let args = SimulateArgs::from_args(all)?;
    Ok(Simulation::prepare(args).await?)
}

// ---- the floor ----

struct Floor {
    frames_per_second: f64,
    mb_per_second: f64,
    /// CPU-seconds that other processes used meanwhile, and the loop's wall time.
    others_cpu: f64,
    wall: f64,
}

/// The same PNGs the simulator sends, written to new files one after the other: the most a
/// server could do with one core if it had nothing else to do.
async fn floor(sim: &Simulation, max_frames: u64, max_time: Duration) -> anyhow::Result<Floor> {
    let pngs: Vec<bytes::Bytes> = (0..20)
        .flat_map(|tick| {
            [0, 1].map(|slot| sim.png(slot, recall_frames::frame::StreamKind::Webcam, tick))
        })
        .collect();
    let floor = tokio::task::spawn_blocking(move || {
        let dir = tempfile::tempdir()?;
        let (busy_before, me_before) = (machine_busy()?, own_cpu()?);
        let started = Instant::now();
        let (mut frames, mut bytes) = (0u64, 0u64);
        while frames < max_frames && started.elapsed() < max_time {
            let png = &pngs[frames as usize % pngs.len()];
            std::fs::write(dir.path().join(format!("{frames:09}.png")), png)?;
            frames += 1;
            bytes += png.len() as u64;
        }
        let seconds = started.elapsed().as_secs_f64();
        let others_cpu = (machine_busy()? - busy_before) - (own_cpu()? - me_before);
        let floor = Floor {
            frames_per_second: frames as f64 / seconds,
            mb_per_second: bytes as f64 / 1e6 / seconds,
            others_cpu,
            wall: seconds,
        };
        anyhow::Ok((floor, dir))
    })
    .await??;
    let (floor, dir) = floor;
    forget_files(dir).await?;
    Ok(floor)
}

/// Deletes a phase's files, then waits until ext4 has forgotten them. For
/// `vm.dirty_expire_centisecs` (30 s, 35 while the inode table is dirty) after a deletion,
/// ext4 (without a journal, as here) will not reuse a freed inode,
/// and allocating a new one steps past each of them (`recently_deleted`): perf showed that
/// as 17% of the server's CPU when a phase started right after the previous one's files
/// were deleted. A server in service deletes nothing, so no phase should pay for that.
async fn forget_files(dir: tempfile::TempDir) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || dir.close()).await??;
    let centisecs: u64 = std::fs::read_to_string("/proc/sys/vm/dirty_expire_centisecs")?
        .trim()
        .parse()?;
    tokio::time::sleep(Duration::from_millis(centisecs * 10) + Duration::from_secs(8)).await;
    Ok(())
}

// ---- one phase against a fresh server ----

struct Phase {
    report: Report,
    /// Frames saved, from the server's metrics.
    saved: u64,
    bytes_saved: u64,
    /// From the start of sending to the last frame saved.
    wall: f64,
    server_cpu: f64,
    generator_cpu: f64,
    /// CPU-seconds that processes other than the server and this one used meanwhile.
    others_cpu: f64,
    peak_rss: u64,
    sampled_rss: u64,
    latency: Latency,
    lost: u64,
    /// With audio sent: its latency and what the check on disk found.
    audio: Option<AudioChecked>,
    /// With exports running meanwhile: exports finished, frames they encoded.
    exports: Option<(u64, u64)>,
}

/// p50 and p99 in seconds: to the file in place (from the files) and to saved (from the
/// histogram), over the whole phase and after its warm-up.
#[derive(Debug, Clone, Copy, Default)]
struct Latency {
    files: (f64, f64),
    files_steady: (f64, f64),
    saved: (f64, f64),
    saved_steady: (f64, f64),
}

impl Phase {
    fn frames_per_second(&self) -> f64 {
        self.saved as f64 / self.wall
    }

    fn mb_per_second(&self) -> f64 {
        self.bytes_saved as f64 / 1e6 / self.wall
    }

    fn cpu_per_thousand(&self) -> f64 {
        self.server_cpu / self.saved as f64 * 1000.0
    }
}

/// Starts a fresh server, runs the simulation of `args` against it (its frames rendered
/// before the clock starts), waits until every frame sent is saved, and measures.
///
/// Latencies are also taken after `warm_up`: frames received later (from the files), and
/// the histogram's growth since then.
async fn phase(
    binary: &Path,
    args: &[&str],
    recording: &str,
    warm_up: Duration,
    export_minutes: Option<u64>,
) -> anyhow::Result<Phase> {
    let server = Server::start(binary).await?;
    let exporting = match export_minutes {
        Some(minutes) => Some(Exporting::start(&server, minutes).await?),
        None => None,
    };
    let simulation = prepare(&server.ws_url(), args, recording).await?;
    let (server_before, me_before, busy_before) = (server.cpu()?, own_cpu()?, machine_busy()?);
    // Frames saved before the phase (the stream recorded to export) are not the phase's.
    let saved_before = saved_frames(&server.metrics().await?);
    let started = Instant::now();
    let steady_from = jiff::Timestamp::now() + jiff::SignedDuration::try_from(warm_up)?;
    let cancel = CancellationToken::new();
    let run = simulation.run(Output::Quiet, cancel.clone());
    let mut run = std::pin::pin!(run);
    let mut sampled_rss = 0;
    let mut at_warm_up = None;
    let mut audio_at_warm_up = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut exports = (0, 0);
    let report = loop {
        tokio::select! {
            report = &mut run => break report?,
            _ = ticker.tick() => {
                if let Some(exporting) = &exporting {
                    exports = exporting.keep_going(&server).await?;
                }
                sampled_rss = sampled_rss.max(server.rss()?);
                if at_warm_up.is_none() && started.elapsed() >= warm_up {
                    let metrics = server.metrics().await?;
                    at_warm_up = Some(histogram(&metrics, FRAMES_HISTOGRAM)?);
                    audio_at_warm_up = Some(histogram(&metrics, AUDIO_HISTOGRAM)?);
                }
            }
        }
    };
    let generator_cpu = own_cpu()? - me_before;
    ensure!(
        report.refused() == 0,
        "the server refused messages:\n{report}"
    );
    // Every frame sent is saved shortly after; wait for the last one (bounded).
    let deadline = Instant::now() + Duration::from_secs(120);
    let (saved, bytes_saved) = loop {
        let metrics = server.metrics().await?;
        let saved = saved_frames(&metrics) - saved_before;
        let audio_done = metric_value(&metrics, "recall_frames_audio_chunks_saved_total")
            + metric_value(&metrics, "recall_frames_audio_chunks_duplicate_total");
        let all_in = saved as u64 >= report.frames && audio_done as u64 >= report.audio_chunks;
        if all_in || Instant::now() > deadline {
            let bytes = metric_value(&metrics, "recall_frames_bytes_saved_total");
            break (saved as u64, bytes as u64);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    let server_cpu = server.cpu()? - server_before;
    let others_cpu = (machine_busy()? - busy_before) - server_cpu - (own_cpu()? - me_before);
    let peak_rss = server.peak_rss()?;
    let metrics = server.metrics().await?;
    let at_end = histogram(&metrics, FRAMES_HISTOGRAM)?;
    let steady = since(&at_end, at_warm_up.as_deref());
    let audio_at_end = histogram(&metrics, AUDIO_HISTOGRAM)?;
    let audio_steady = since(&audio_at_end, audio_at_warm_up.as_deref());
    let data_dir = server.data_dir().to_owned();
    let checked = tokio::task::spawn_blocking({
        let report = report.clone();
        move || check_on_disk(&data_dir, &report, steady_from)
    })
    .await??;
    let audio = match report.audio_chunks {
        0 => None,
        _ => {
            // A chunk is counted saved once placed on its track, and written within the
            // write-behind (a frame's check above usually takes longer).
            tokio::time::sleep(recall_frames::recorder::AUDIO_WRITE_BEHIND * 2).await;
            let data_dir = server.data_dir().to_owned();
            let report = report.clone();
            let checked =
                tokio::task::spawn_blocking(move || check_audio_on_disk(&data_dir, &report))
                    .await??;
            Some(AudioChecked {
                saved: histogram_quantiles(&audio_at_end),
                saved_steady: histogram_quantiles(&audio_steady),
                ..checked
            })
        }
    };
    let latency = Latency {
        files: checked.latency,
        files_steady: checked.latency_steady,
        saved: histogram_quantiles(&at_end),
        saved_steady: histogram_quantiles(&steady),
    };
    forget_files(server.stop().await?).await?;
    Ok(Phase {
        report,
        saved,
        bytes_saved,
        wall,
        server_cpu,
        generator_cpu,
        others_cpu,
        peak_rss,
        sampled_rss,
        latency,
        lost: checked.lost,
        audio,
        exports: exporting.map(|_| exports),
    })
}

/// Frames saved so far, of both kinds.
fn saved_frames(metrics: &str) -> f64 {
    metric_value(metrics, "recall_frames_frames_saved_total{kind=\"webcam\"}")
        + metric_value(
            metrics,
            "recall_frames_frames_saved_total{kind=\"screenshare\"}",
        )
}

/// Exports kept running through a phase: a recorded stream, exported again and again (each
/// time a different range, so that no kept result answers at once).
struct Exporting {
    participant: u64,
    job: tokio::sync::Mutex<(String, u64, u64)>,
}

impl Exporting {
    async fn start(server: &Server, minutes: u64) -> anyhow::Result<Exporting> {
        let frames = (minutes * 120).to_string();
        let args = [
            "--bots",
            "1",
            "--participants",
            "1",
            "--screenshare",
            "0",
            "--fps",
            "max",
            "--frames",
            &frames,
            "--ring",
            "20",
        ];
        eprintln!("recording a {minutes}-min stream to export during the phase...");
        let seed = prepare(&server.ws_url(), &args, "export_source").await?;
        seed.run(Output::Quiet, CancellationToken::new()).await?;
        let detail: serde_json::Value = loop {
            let detail: serde_json::Value = server
                .http
                .get(server.url("/api/recordings/export_source"))
                .send()
                .await?
                .json()
                .await?;
            if detail["frames"].as_u64() == Some(minutes * 120) {
                break detail;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let participant = detail["participants"][0]["id"]
            .as_u64()
            .context("a participant")?;
        let exporting = Exporting {
            participant,
            job: tokio::sync::Mutex::new((String::new(), 0, 0)),
        };
        exporting.next(server, 0).await?;
        Ok(exporting)
    }

    async fn next(&self, server: &Server, run: u64) -> anyhow::Result<()> {
        let job: serde_json::Value = server
            .http
            .post(server.url("/api/recordings/export_source/exports"))
            .json(&serde_json::json!({"participant": self.participant, "from": run as f64 * 0.001}))
            .send()
            .await?
            .json()
            .await?;
        let url = job["url"].as_str().context("an export job")?.to_owned();
        let mut current = self.job.lock().await;
        current.0 = url;
        Ok(())
    }

    /// Starts the next export when one is done: exports finished and frames encoded so far.
    async fn keep_going(&self, server: &Server) -> anyhow::Result<(u64, u64)> {
        let url = self.job.lock().await.0.clone();
        let job: serde_json::Value = server
            .http
            .get(server.url(&url))
            .send()
            .await?
            .json()
            .await?;
        let done = job["frames_done"].as_u64().unwrap_or(0);
        let (runs, before) = {
            let current = self.job.lock().await;
            (current.1, current.2)
        };
        if job["status"] == "done" {
            ensure!(
                job["frames"].as_u64() == Some(done),
                "an export ended short: {job}"
            );
            {
                let mut current = self.job.lock().await;
                current.1 += 1;
                current.2 += done;
            }
            self.next(server, runs + 1).await?;
            return Ok((runs + 1, before + done));
        }
        ensure!(job["status"] != "failed", "an export failed: {job}");
        Ok((runs, before + done))
    }
}

/// The growth of cumulative buckets since `before` (none without it).
fn since(at_end: &[(f64, f64)], before: Option<&[(f64, f64)]>) -> Vec<(f64, f64)> {
    match before {
        Some(before) => at_end
            .iter()
            .zip(before)
            .map(|(&(le, end), &(_, start))| (le, end - start))
            .collect(),
        None => Vec::new(),
    }
}

/// What the audio sent became, checked on disk, and its receipt-to-saved latency.
#[derive(Debug, Default)]
struct AudioChecked {
    /// Samples sent that are not in a chunk line listing them whole, or not held by the
    /// pieces.
    lost_samples: u64,
    /// Samples of the first bot's tracks compared with the voice sent, and how many differ.
    compared_samples: u64,
    wrong_samples: u64,
    /// p50 and p99, seconds, from the histogram: the whole run and after the warm-up.
    saved: (f64, f64),
    saved_steady: (f64, f64),
}

/// Checks every audio chunk sent against the participant's track on disk: a line in
/// `audio.jsonl` at its first sample with its samples, `written + overlap` of them, and WAV
/// pieces holding them all; the first bot's tracks are read back and compared with the
/// voices, sample by sample.
fn check_audio_on_disk(data_dir: &Path, report: &Report) -> anyhow::Result<AudioChecked> {
    use recall_frames::audio::{BYTES_PER_SAMPLE, SAMPLES_PER_MS, WAV_HEADER_BYTES};
    let mut checked = AudioChecked::default();
    let first_bot = report.recordings.first().map(|r| r.id.clone());
    for track in &report.audio {
        let dir = track.dir_in(data_dir);
        let manifest =
            std::fs::read_to_string(dir.join(layout::AUDIO_MANIFEST)).unwrap_or_default();
        // Each chunk line: first sample → samples, written + overlap.
        let mut listed: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
        for line in manifest.lines() {
            if let layout::AudioRecord::Chunk {
                start_sample,
                samples,
                written,
                overlap,
                ..
            } = serde_json::from_str(line)?
            {
                listed.insert(start_sample, (samples, written + overlap));
            }
        }
        // Each piece: first sample → its samples, as the file holds them.
        let mut pieces: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let entry = entry?;
            let name = entry.file_name();
            let Some(ms) = name
                .to_str()
                .and_then(recall_frames::audio::parse_piece_file_name)
            else {
                continue;
            };
            let mut bytes = std::fs::read(entry.path())?;
            bytes.drain(..(WAV_HEADER_BYTES as usize).min(bytes.len()));
            pieces.insert(ms * SAMPLES_PER_MS, bytes);
        }
        let sample_at = |at: u64| -> Option<i16> {
            let (&first, bytes) = pieces.range(..=at).next_back()?;
            let offset = ((at - first) * BYTES_PER_SAMPLE) as usize;
            let pair = bytes.get(offset..offset + 2)?;
            Some(i16::from_le_bytes([pair[0], pair[1]]))
        };
        let compare = first_bot.as_deref() == Some(track.recording.as_str());
        let mut seen = std::collections::HashSet::new();
        for &(start, samples) in &track.chunks {
            if !seen.insert(start) {
                continue; // sent again after a failed send
            }
            let whole = listed.get(&start) == Some(&(samples, samples));
            let held = (start..start + samples).all(|at| sample_at(at).is_some());
            if !(whole && held) {
                checked.lost_samples += samples;
                continue;
            }
            if compare {
                let voice =
                    recall_frames::simulate::voice::voice(track.slot, start, samples as usize);
                checked.compared_samples += samples;
                checked.wrong_samples += voice
                    .iter()
                    .zip(start..)
                    .filter(|&(&sent, at)| sample_at(at) != Some(sent))
                    .count() as u64;
            }
        }
    }
    Ok(checked)
}

struct Checked {
    lost: u64,
    /// p50 and p99 of (file changed − received_at), seconds: of every frame, and of the
    /// frames received after the warm-up.
    latency: (f64, f64),
    latency_steady: (f64, f64),
}

/// Counts the frames sent that are not on disk (file and manifest line), and measures each
/// saved frame's receipt-to-file time: from `received_at` in its manifest line to the time
/// the rename put the file in place (its ctime).
fn check_on_disk(
    data_dir: &Path,
    report: &Report,
    steady_from: jiff::Timestamp,
) -> anyhow::Result<Checked> {
    use std::os::unix::fs::MetadataExt as _;
    let mut lost = 0;
    let mut latencies = Vec::with_capacity(report.frames as usize);
    let mut steady = Vec::with_capacity(report.frames as usize);
    for stream in &report.streams {
        let dir = stream.dir_in(data_dir);
        let manifest =
            std::fs::read_to_string(dir.join(layout::FRAMES_MANIFEST)).unwrap_or_default();
        let mut received: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
        for line in manifest.lines() {
            let record: layout::FrameRecord = serde_json::from_str(line)?;
            received.insert(record.file, record.received_at);
        }
        for &ms in &stream.sent_ms {
            let file = layout::frame_file_name(ms);
            let (Some(at), Ok(meta)) = (received.get(&file), std::fs::metadata(dir.join(&file)))
            else {
                lost += 1;
                continue;
            };
            let placed = jiff::Timestamp::new(meta.ctime(), meta.ctime_nsec() as i32)?;
            let latency = placed.duration_since(*at).as_secs_f64();
            latencies.push(latency);
            if *at >= steady_from {
                steady.push(latency);
            }
        }
    }
    Ok(Checked {
        lost,
        latency: p50_p99(latencies),
        latency_steady: p50_p99(steady),
    })
}

fn p50_p99(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        values
            .get(((values.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    (quantile(0.5), quantile(0.99))
}

// ---- idle connections ----

/// The server's RSS with no websocket open, and with `count` open and idle.
async fn idle(binary: &Path, count: usize) -> anyhow::Result<(u64, u64)> {
    let server = Server::start(binary).await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss()?;
    let url = server.ws_url();
    let sockets: Vec<_> = futures_util::stream::iter(0..count)
        .map(|_| {
            let url = url.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(30),
                    tokio_tungstenite::connect_async(url),
                )
                .await
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let mut open = Vec::with_capacity(count);
    for socket in sockets {
        open.push(socket.context("connecting timed out")??.0);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.metrics().await?;
        if metric_value(&metrics, "recall_frames_connections_open") as usize >= count {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the server never saw {count} connections open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let with = server.rss()?;
    drop(open);
    forget_files(server.stop().await?).await?;
    Ok((before, with))
}

// ---- the server under test ----

struct Server {
    child: tokio::process::Child,
    pid: i32,
    port: u16,
    data: tempfile::TempDir,
    http: reqwest::Client,
}

impl Server {
    async fn start(binary: &Path) -> anyhow::Result<Self> {
        let data = tempfile::tempdir()?;
        // A free port on loopback; the server binds it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log = std::fs::File::create(data.path().join(".server.log"))?;
        let child = tokio::process::Command::new(binary)
            .args(["--port", &port.to_string()])
            .arg("--data-dir")
            .arg(data.path())
            .args(["--ws-token", WS_TOKEN])
            // The benchmark measures the server, not its cap on connections.
            .args(["--max-connections", "65536"])
            .env_clear()
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id().context("the server has a pid")? as i32;
        let server = Server {
            child,
            pid,
            port,
            data,
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = server
                .http
                .get(server.url("/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(server);
            }
            ensure!(Instant::now() < deadline, "the server did not become ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws?token={WS_TOKEN}", self.port)
    }

    fn data_dir(&self) -> &Path {
        self.data.path()
    }

    async fn metrics(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(self.url("/metrics"))
            .send()
            .await?
            .text()
            .await?)
    }

    fn process(&self) -> anyhow::Result<procfs::process::Process> {
        Ok(procfs::process::Process::new(self.pid)?)
    }

    /// CPU-seconds used so far, user and system.
    fn cpu(&self) -> anyhow::Result<f64> {
        let stat = self.process()?.stat()?;
        Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
    }

    fn rss(&self) -> anyhow::Result<u64> {
        Ok(self.process()?.status()?.vmrss.unwrap_or(0) * 1024)
    }

    fn peak_rss(&self) -> anyhow::Result<u64> {
        Ok(self.process()?.status()?.vmhwm.unwrap_or(0) * 1024)
    }

    /// A graceful stop, as a platform would: SIGTERM, then the exit status. Returns the
    /// data folder, for [`forget_files`].
    async fn stop(mut self) -> anyhow::Result<tempfile::TempDir> {
        let pid = rustix::process::Pid::from_raw(self.pid).context("a valid pid")?;
        rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
        let status = tokio::time::timeout(Duration::from_secs(40), self.child.wait())
            .await
            .context("the server did not stop within 40 s")??;
        if !status.success() {
            let log =
                std::fs::read_to_string(self.data.path().join(".server.log")).unwrap_or_default();
            bail!("the server exited with {status}:\n{log}");
        }
        Ok(self.data)
    }
}

/// CPU-seconds the whole machine has been busy (user, nice, system, interrupts).
fn machine_busy() -> anyhow::Result<f64> {
    use procfs::CurrentSI as _;
    let t = procfs::KernelStats::current()?.total;
    let ticks = t.user + t.nice + t.system + t.irq.unwrap_or(0) + t.softirq.unwrap_or(0);
    Ok(ticks as f64 / procfs::ticks_per_second() as f64)
}

fn own_cpu() -> anyhow::Result<f64> {
    let stat = procfs::process::Process::myself()?.stat()?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

// ---- metrics ----

/// Receipt to saved, of frames and of audio chunks.
const FRAMES_HISTOGRAM: &str = "recall_frames_save_seconds";
const AUDIO_HISTOGRAM: &str = "recall_frames_audio_save_seconds";

/// The cumulative buckets of the histogram `name`: (upper bound, count).
fn histogram(text: &str, name: &str) -> anyhow::Result<Vec<(f64, f64)>> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(prefix.as_str()) else {
            continue;
        };
        let (le, rest) = rest.split_once("\"}").context("a bucket line")?;
        let count: f64 = rest.trim().split(' ').next().context("a count")?.parse()?;
        let le = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse()?
        };
        buckets.push((le, count));
    }
    ensure!(!buckets.is_empty(), "no {name} histogram in the metrics");
    Ok(buckets)
}

/// p50 and p99 of cumulative buckets, interpolated within a bucket as Prometheus'
/// `histogram_quantile` does; NaN when there are none.
fn histogram_quantiles(buckets: &[(f64, f64)]) -> (f64, f64) {
    let total = buckets.last().map_or(0.0, |b| b.1);
    let quantile = |q: f64| {
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in buckets {
            if count >= rank && total > 0.0 {
                if le.is_infinite() {
                    return lower.0;
                }
                let within = (rank - lower.1) / (count - lower.1).max(1e-9);
                return lower.0 + (le - lower.0) * within;
            }
            lower = (le, count);
        }
        f64::NAN
    };
    (quantile(0.5), quantile(0.99))
}

// ---- the report ----

struct Machine {
    cores: usize,
    cpu: String,
    disk: String,
    kernel: String,
    load: procfs::LoadAverage,
}

impl Machine {
    fn describe() -> anyhow::Result<Self> {
        let cpuinfo = procfs::CpuInfo::current()?;
        let temp = std::env::temp_dir();
        let mounts = Vec::<procfs::MountEntry>::current()?;
        let mount = mounts
            .iter()
            .filter(|m| temp.starts_with(&m.fs_file))
            .max_by_key(|m| m.fs_file.len());
        Ok(Machine {
            cores: std::thread::available_parallelism()?.get(),
            cpu: cpuinfo.model_name(0).unwrap_or("unknown").to_string(),
            disk: mount.map_or("unknown".into(), |m| {
                format!("{} ({}) at {}", m.fs_spec, m.fs_vfstype, m.fs_file)
            }),
            kernel: procfs::sys::kernel::Version::current()
                .map(|v| format!("{}.{}.{}", v.major, v.minor, v.patch))
                .unwrap_or_default(),
            load: procfs::LoadAverage::current()?,
        })
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "machine: {} cores ({}), DATA_DIR on {}, Linux {}; load average before: {:.2} {:.2} {:.2}",
            self.cores,
            self.cpu,
            self.disk,
            self.kernel,
            self.load.one,
            self.load.five,
            self.load.fifteen
        )
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<[String; 4]>,
}

impl Table {
    fn row(&mut self, scenario: &str, measure: &str, result: String, target: &str) {
        self.rows
            .push([scenario.into(), measure.into(), result, target.into()]);
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text =
            String::from("| Scenario | Measure | Result | Target |\n|---|---|---|---|\n");
        for row in &self.rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        f.write_str(&text)
    }
}

fn ms(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1000.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}
