//! `recall-frames simulate`: a stand-in for Recall's bots, to try a deployment end to end
//! without a meeting and to load a server with realistic traffic.
//!
//! Each simulated bot is one websocket connection streaming one recording: its participants'
//! webcam (and some screenshare) frames as `video_separate_png.data` events, optionally
//! framed by `participant_events.*`, and with `--audio` each participant's voice as
//! `audio_separate_raw.data` chunks during their speech turns (all the time with
//! `--audio-all`). A bot reconnects as Recall's do and resumes where it was. [`Simulation::prepare`] checks the arguments and makes the frames;
//! [`Simulation::run`] streams them and returns a [`Report`].

mod bot;
pub mod picture;
mod progress;
pub mod source;
pub mod voice;
pub mod wire;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser};
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

pub use self::progress::Output;
use self::source::{FrameSource, StreamLook};
use self::wire::{BotResources, WireParticipant};
use crate::config::parse_duration;
use crate::event::Refusal;
use crate::frame::{Participant, ParticipantId, RecordingId, Resource, StreamKind};

/// Names given to participants when `--names` runs out.
const DEFAULT_NAMES: [&str; 8] = [
    "Alice Smith",
    "Bob Jones",
    "Carol Díaz",
    "Dan Okafor",
    "Eve Müller",
    "Frank Liu",
    "Grace Kim",
    "Hiro Tanaka",
];

/// Meeting titles the simulated bots carry when `--title` is not given, one per bot in
/// turn from a place the run's recording id picks, so that a demo's list of recordings
/// reads like a real one and successive runs differ.
const DEFAULT_TITLES: [&str; 8] = [
    "Weekly sync",
    "Design review",
    "Sprint planning",
    "Customer call: onboarding",
    "Product roadmap Q3",
    "Incident retrospective",
    "Hiring panel",
    "All hands",
];

/// Frames rendered per stream before a `--fps max` run when `--ring` is not given.
const DEFAULT_MAX_RING: usize = 20;

#[derive(Debug, Clone, Args)]
pub struct SimulateArgs {
    /// The websocket URL the server printed, e.g. ws://localhost:8080/ws?token=...
    /// (http:// and https:// are taken as ws:// and wss://). Without it,
    /// ws://localhost:PORT/ws, with --port (or PORT, 8080 by default).
    #[arg(value_name = "URL", default_value_t = String::new(), hide_default_value = true)]
    pub url: String,

    /// Token added to the URL as ?token= when the URL has none.
    #[arg(long, env = "WS_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Recall's `whsec_...` verification secret: every upgrade is then signed as Recall
    /// signs it (webhook-id, webhook-timestamp, webhook-signature), for servers that set
    /// RECALL_VERIFICATION_SECRET.
    #[arg(long, env = "RECALL_VERIFICATION_SECRET", hide_env_values = true,
          value_parser = crate::config::SecretParser(crate::auth::signature::SigningSecret::parse))]
    pub verification_secret: Option<crate::auth::signature::SigningSecret>,

    /// Bots, each its own websocket connection and recording, streaming at once.
    #[arg(long, default_value_t = 1,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub bots: usize,

    /// Participants in each bot's meeting; each sends a webcam stream.
    #[arg(long, default_value_t = 2,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1000))]
    pub participants: usize,

    /// Display names, comma-separated; participants past the list get names of their own.
    #[arg(long, value_delimiter = ',', value_name = "NAME,...")]
    pub names: Vec<String>,

    /// How many participants (the first ones) are hosts.
    #[arg(long, default_value_t = 1)]
    pub hosts: usize,

    /// How many participants (the first ones) also share their screen.
    #[arg(long, default_value_t = 1)]
    pub screenshare: usize,

    /// Frames per second of each stream, or `max` to send as fast as the server takes them
    /// (timestamps then still step as at 2 fps).
    #[arg(long, default_value = "2", value_parser = Rate::parse)]
    pub fps: Rate,

    /// Stop after this long, e.g. 30s or 5m [default: 30s unless --frames is given].
    #[arg(long, value_parser = parse_duration, conflicts_with = "frames")]
    pub duration: Option<Duration>,

    /// Stop after this many frames of each stream.
    #[arg(long, value_parser = RangedU64ValueParser::<u64>::new().range(1..=10_000_000))]
    pub frames: Option<u64>,

    /// Also send participant_events.join, .webcam_on and .screenshare_on before the frames
    /// and .leave after them; with --audio, .speech_off and .speech_on as the speaking turn
    /// passes.
    #[arg(long)]
    pub participant_events: bool,

    /// Also send each participant's audio as audio_separate_raw.data chunks (16 kHz mono
    /// PCM): a voice of their own while it is their turn to speak (4 s each, in turn),
    /// nothing while they are quiet.
    #[arg(long)]
    pub audio: bool,

    /// With --audio, every participant sends audio all the time rather than only in their
    /// speech turns: Recall's most concurrent audio streams per call (16 on Zoom and Meet),
    /// the worst a server has to take.
    #[arg(long, requires = "audio")]
    pub audio_all: bool,

    /// Length of each audio chunk, in milliseconds.
    #[arg(long, default_value_t = 20, value_name = "MS",
          value_parser = RangedU64ValueParser::<u64>::new().range(20..=100))]
    pub audio_chunk_ms: u64,

    /// Size of the generated frames, WIDTHxHEIGHT.
    #[arg(long, default_value = "640x360", value_parser = parse_size)]
    pub size: FrameSize,

    /// Send the PNG files of this folder (name order, at most 1000) instead of generated
    /// frames; every stream cycles through them from its own starting point.
    #[arg(long, value_name = "DIR", conflicts_with = "size")]
    pub pngs: Option<PathBuf>,

    /// Frames pre-rendered per participant stream and sent again in turn with new timestamps;
    /// 0 renders every frame as it is sent, with its true number and time on it
    /// [default: 0 at a steady --fps, 20 with --fps max].
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(0..=1000))]
    pub ring: Option<usize>,

    /// Recording id (with -1, -2, ... per bot when there are several)
    /// [default: sim-<UTC time>-<random>].
    #[arg(long)]
    pub recording: Option<String>,

    /// Meeting title, sent in each bot's metadata as a bot created with a title has it
    /// (with #2, #3, ... per bot when there are several) [default: a made-up title per bot,
    /// such as "Weekly sync", that varies from run to run].
    #[arg(long)]
    pub title: Option<String>,

    /// Wait between reconnection attempts (Recall waits 3 s).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub retry_delay: Duration,

    /// Reconnection attempts after a connection fails before a bot gives up (Recall makes 30).
    #[arg(long, default_value_t = 30,
          value_parser = RangedU64ValueParser::<u32>::new().range(1..=1000))]
    pub retries: u32,
}

impl SimulateArgs {
    /// Sets the URL to this machine's server on `port` when none was given.
    pub fn default_url_to_port(&mut self, port: u16) {
        if self.url.is_empty() {
            self.url = format!("ws://localhost:{port}/ws");
        }
    }

    /// Parses `simulate` arguments as the command line would, but with no environment
    /// variables: what tests and benchmarks use.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            args: SimulateArgs,
        }
        let program = std::iter::once(std::ffi::OsString::from("simulate"));
        let matches = Only::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(program.chain(args.into_iter().map(Into::into)))?;
        let mut args = Only::from_arg_matches(&matches)?.args;
        args.default_url_to_port(8080);
        Ok(args)
    }
}

/// How fast each stream sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSecond(f64),
    Max,
}

impl Rate {
    /// Timestamps of `--fps max` runs step as at Recall's usual rate.
    const MAX_CLOCK_FPS: f64 = 2.0;

    fn parse(text: &str) -> Result<Self, String> {
        if text.eq_ignore_ascii_case("max") {
            return Ok(Rate::Max);
        }
        match text.parse::<f64>() {
            Ok(fps) if (0.01..=1000.0).contains(&fps) => Ok(Rate::PerSecond(fps)),
            _ => Err("expected frames per second between 0.01 and 1000, or `max`".into()),
        }
    }

    /// The frame rate the timestamps follow.
    fn clock_fps(self) -> f64 {
        match self {
            Rate::PerSecond(fps) => fps,
            Rate::Max => Self::MAX_CLOCK_FPS,
        }
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::PerSecond(fps) => write!(f, "{fps} fps"),
            Rate::Max => f.write_str("as fast as possible"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSize {
    pub width: u32,
    pub height: u32,
}

fn parse_size(text: &str) -> Result<FrameSize, String> {
    let parsed = text
        .split_once(['x', 'X'])
        .and_then(|(w, h)| Some((w.trim().parse().ok()?, h.trim().parse().ok()?)));
    match parsed {
        Some((width, height))
            if (16..=crate::event::MAX_SIDE).contains(&width)
                && (16..=crate::event::MAX_SIDE).contains(&height) =>
        {
            Ok(FrameSize { width, height })
        }
        _ => Err(format!(
            "expected WIDTHxHEIGHT with sides of 16 to {} px, e.g. 640x360",
            crate::event::MAX_SIDE
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error("{0:?} is not a websocket URL: use ws://host/ws?token=... or wss://...")]
    BadUrl(String),
    #[error("--{what} {count} is more than --participants {participants}")]
    MoreThanParticipants {
        what: &'static str,
        count: usize,
        participants: usize,
    },
    #[error(
        "recording id {0:?} must be 1 to 128 characters of A-Z a-z 0-9 _ . -, not starting with a dot"
    )]
    BadRecordingId(String),
    #[error("cannot read {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no .png files in {0}")]
    EmptyFolder(PathBuf),
    #[error("{path} is not a PNG the server would accept: {refusal}")]
    BadPng { path: PathBuf, refusal: Refusal },
    #[error("the server refused the websocket upgrade: HTTP {status}{body}")]
    UpgradeRefused { status: u16, body: String },
    #[error(
        "no server is reachable at {url} (connection refused): start it with `{serve}`, or \
         pass the URL the running server printed"
    )]
    NotReachable { url: String, serve: String },
    #[error("cannot connect to {url}: {reason}")]
    CannotConnect { url: String, reason: String },
    #[error(
        "the server closed bot {bot}'s connection with code {code} ({reason}); a reconnect would not help"
    )]
    ClosedByServer {
        bot: usize,
        code: u16,
        reason: String,
    },
    #[error(
        "bot {bot} gave up after {attempts} reconnection attempts; the last failed with: {last}"
    )]
    GaveUp {
        bot: usize,
        attempts: u32,
        last: String,
    },
    #[error("a simulator task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A checked plan with its frames made, ready to run.
pub struct Simulation {
    plan: Arc<Plan>,
    frames: Arc<FrameSource>,
}

/// Everything the bots need to know, fixed before the first connection.
struct Plan {
    endpoint: bot::Endpoint,
    bots: Vec<BotPlan>,
    rate: Rate,
    stop: Stop,
    participant_events: bool,
    /// With `--audio`: the length of a chunk, in milliseconds.
    audio_chunk_ms: Option<u64>,
    /// With `--audio-all`: every participant sends audio all the time.
    audio_all: bool,
    retry_delay: Duration,
    retries: u32,
    meeting_start: Timestamp,
    /// What the summary says of the frames.
    frames_described: String,
}

#[derive(Debug, Clone, Copy)]
enum Stop {
    /// After this many frames of each stream.
    Frames(u64),
    /// `--fps max` for a duration: whole rounds of frames until the time is up.
    Deadline(Duration),
}

/// One bot: its recording, its cast, and their streams in sending order.
struct BotPlan {
    resources: BotResources,
    cast: Vec<CastMember>,
    streams: Vec<StreamPlan>,
}

impl BotPlan {
    /// The id of the recording this bot streams into.
    fn recording_id(&self) -> &str {
        self.resources.recording.id.as_str().unwrap_or_default()
    }
}

struct CastMember {
    participant: WireParticipant,
    screenshare: bool,
}

#[derive(Debug, Clone, Copy)]
struct StreamPlan {
    member: usize,
    kind: StreamKind,
}

impl StreamPlan {
    fn look(self) -> StreamLook {
        (self.member, self.kind)
    }
}

impl Simulation {
    /// Checks the arguments and makes the frames: renders the ring, or reads the folder.
    pub async fn prepare(args: SimulateArgs) -> Result<Self, SimulateError> {
        let endpoint = bot::Endpoint::parse(&args.url, args.token.as_deref())?
            .signed_with(args.verification_secret.clone());
        for (what, count) in [("hosts", args.hosts), ("screenshare", args.screenshare)] {
            if count > args.participants {
                return Err(SimulateError::MoreThanParticipants {
                    what,
                    count,
                    participants: args.participants,
                });
            }
        }
        let base_id = args.recording.clone().unwrap_or_else(default_recording_id);
        let cast: Vec<CastMember> = (0..args.participants)
            .map(|slot| CastMember {
                participant: WireParticipant {
                    id: ParticipantId(100 + slot as u64),
                    name: Some(participant_name(&args.names, slot)),
                    is_host: slot < args.hosts,
                    platform: Some("desktop".into()),
                    extra_data: serde_json::json!({"simulated": true}),
                    email: None,
                },
                screenshare: slot < args.screenshare,
            })
            .collect();
        let streams: Vec<StreamPlan> = cast
            .iter()
            .enumerate()
            .flat_map(|(member, m)| {
                let kinds: &[StreamKind] = if m.screenshare {
                    &StreamKind::ALL
                } else {
                    &[StreamKind::Webcam]
                };
                kinds.iter().map(move |&kind| StreamPlan { member, kind })
            })
            .collect();
        let mut bots = Vec::with_capacity(args.bots);
        for index in 0..args.bots {
            let id = if args.bots == 1 {
                base_id.clone()
            } else {
                format!("{base_id}-{}", index + 1)
            };
            if RecordingId::parse(&id).is_none() {
                return Err(SimulateError::BadRecordingId(id));
            }
            bots.push(BotPlan {
                resources: bot_resources(
                    &id,
                    &bot_title(args.title.as_deref(), &base_id, index, args.bots),
                ),
                cast: cast
                    .iter()
                    .map(|m| CastMember {
                        participant: m.participant.clone(),
                        screenshare: m.screenshare,
                    })
                    .collect(),
                streams: streams.clone(),
            });
        }

        let stop = match (args.frames, args.duration, args.fps) {
            (Some(frames), _, _) => Stop::Frames(frames),
            (None, duration, Rate::PerSecond(fps)) => {
                let seconds = duration.unwrap_or(Duration::from_secs(30)).as_secs_f64();
                Stop::Frames(((seconds * fps).ceil() as u64).max(1))
            }
            (None, duration, Rate::Max) => {
                Stop::Deadline(duration.unwrap_or(Duration::from_secs(30)))
            }
        };

        let (frames, frames_described) = match &args.pngs {
            Some(dir) => {
                let frames = FrameSource::folder(dir.clone()).await?;
                let described = format!("PNG files of {}", dir.display());
                (frames, described)
            }
            None => {
                let looks: HashMap<StreamLook, picture::Look> = streams
                    .iter()
                    .map(|stream| {
                        let look = picture::Look {
                            name: participant_name(&args.names, stream.member),
                            kind: stream.kind,
                            width: args.size.width,
                            height: args.size.height,
                            seed: stream.member as u64,
                        };
                        (stream.look(), look)
                    })
                    .collect();
                let ring = args.ring.unwrap_or(match args.fps {
                    Rate::Max => DEFAULT_MAX_RING,
                    Rate::PerSecond(_) => 0,
                });
                let size = format!("{}x{}", args.size.width, args.size.height);
                if ring == 0 {
                    let described = format!("{size} frames rendered as they are sent");
                    (FrameSource::Live(looks), described)
                } else {
                    let frames = FrameSource::ring(looks, ring).await?;
                    let described = format!("{size} frames from a ring of {ring} per stream");
                    (frames, described)
                }
            }
        };
        let sizes = frames.stored_sizes();
        let frames_described = if sizes.is_empty() {
            frames_described
        } else {
            let average = sizes.iter().sum::<usize>() / sizes.len();
            format!(
                "{frames_described} (PNGs of {} to {} KB, {} KB on average)",
                sizes.iter().min().unwrap_or(&0) / 1000,
                sizes.iter().max().unwrap_or(&0) / 1000,
                average / 1000
            )
        };

        Ok(Simulation {
            plan: Arc::new(Plan {
                endpoint,
                bots,
                rate: args.fps,
                stop,
                participant_events: args.participant_events,
                audio_chunk_ms: args.audio.then_some(args.audio_chunk_ms),
                audio_all: args.audio_all,
                retry_delay: args.retry_delay,
                retries: args.retries,
                meeting_start: Timestamp::now(),
                frames_described,
            }),
            frames: Arc::new(frames),
        })
    }

    /// Runs every bot to the end, or until `cancel` (what Ctrl-C does), and reports what was
    /// sent. Errors when a bot cannot go on; refusals are in the report.
    pub async fn run(
        &self,
        output: Output,
        cancel: CancellationToken,
    ) -> Result<Report, SimulateError> {
        let plan = &self.plan;
        let total = match plan.stop {
            Stop::Frames(n) => Some(
                n * plan
                    .bots
                    .iter()
                    .map(|b| b.streams.len() as u64)
                    .sum::<u64>(),
            ),
            Stop::Deadline(_) => None,
        };
        let progress = progress::Progress::start(output, total);
        let shared = Arc::new(bot::Shared::new(progress.clone()));
        let started = tokio::time::Instant::now();
        progress.note(&format!(
            "{} bot(s) -> {}: {} stream(s) each at {}; {}",
            plan.bots.len(),
            plan.endpoint,
            plan.bots.first().map_or(0, |b| b.streams.len()),
            plan.rate,
            plan.frames_described,
        ));

        let mut tasks = tokio::task::JoinSet::new();
        for index in 0..plan.bots.len() {
            let (plan, frames, shared) = (plan.clone(), self.frames.clone(), shared.clone());
            let cancel = cancel.clone();
            tasks.spawn(async move { bot::run(plan, frames, shared, index, cancel).await });
        }
        let mut outcomes = Vec::with_capacity(plan.bots.len());
        let mut failure = None;
        while let Some(joined) = tasks.join_next().await {
            match joined.map_err(SimulateError::from).and_then(|r| r) {
                Ok(outcome) => outcomes.push(outcome),
                Err(error) => {
                    // One bot failing ends the run: stop the others where they are.
                    cancel.cancel();
                    failure.get_or_insert(error);
                }
            }
        }
        progress.finish().await;
        if let Some(error) = failure {
            return Err(error);
        }
        outcomes.sort_by_key(|o| o.bot);
        Ok(self.report(outcomes, &shared, started.elapsed(), cancel.is_cancelled()))
    }

    fn report(
        &self,
        outcomes: Vec<bot::Outcome>,
        shared: &bot::Shared,
        elapsed: Duration,
        interrupted: bool,
    ) -> Report {
        let plan = &self.plan;
        let mut streams = Vec::new();
        for outcome in &outcomes {
            let bot = &plan.bots[outcome.bot];
            for (stream, &ticks) in bot.streams.iter().zip(&outcome.ticks_sent) {
                let member = &bot.cast[stream.member];
                streams.push(StreamReport {
                    recording: bot.recording_id().into(),
                    participant: member.participant.id,
                    name: member.participant.name.clone(),
                    is_host: member.participant.is_host,
                    slot: stream.member,
                    kind: stream.kind,
                    sent_ms: (0..ticks).map(|tick| plan.relative_ms(tick)).collect(),
                });
            }
        }
        let count = |kind| {
            streams
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| s.sent_ms.len() as u64)
                .sum()
        };
        let mut audio = Vec::new();
        for outcome in &outcomes {
            let bot = &plan.bots[outcome.bot];
            for (slot, chunks) in outcome.audio_sent.iter().enumerate() {
                if chunks.is_empty() {
                    continue;
                }
                let member = &bot.cast[slot];
                audio.push(AudioReport {
                    recording: bot.recording_id().into(),
                    participant: member.participant.id,
                    name: member.participant.name.clone(),
                    is_host: member.participant.is_host,
                    slot,
                    chunks: chunks.clone(),
                });
            }
        }
        let totals = shared.totals();
        Report {
            audio_chunks: audio.iter().map(|a| a.chunks.len() as u64).sum(),
            audio_samples: audio
                .iter()
                .flat_map(|a| &a.chunks)
                .map(|&(_, samples)| samples)
                .sum(),
            audio,
            elapsed,
            frames: count(StreamKind::Webcam) + count(StreamKind::Screenshare),
            webcam_frames: count(StreamKind::Webcam),
            screenshare_frames: count(StreamKind::Screenshare),
            png_bytes: totals.png_bytes,
            message_bytes: totals.message_bytes,
            participant_events: totals.events,
            resent: totals.resent,
            reconnects: totals.reconnects,
            refusals: shared.refusals(),
            bots: plan.bots.len(),
            streams,
            interrupted,
            recordings: plan
                .bots
                .iter()
                .map(|bot| {
                    let id = bot.recording_id();
                    RecordingPage {
                        id: id.into(),
                        page: plan.endpoint.recording_page(id),
                    }
                })
                .collect(),
            frames_described: plan.frames_described.clone(),
        }
    }

    /// The exact PNG bytes the simulator sends as frame `tick` of a participant slot's
    /// stream: what a test compares the saved files with.
    pub fn png(&self, slot: usize, kind: StreamKind, tick: u64) -> bytes::Bytes {
        self.frames
            .png((slot, kind), tick, self.plan.relative_ms(tick))
    }
}

impl Plan {
    /// A frame's time in the meeting: frame `tick` of every stream is at the same time.
    fn relative_ms(&self, tick: u64) -> u64 {
        (tick as f64 * 1000.0 / self.rate.clock_fps()).round() as u64
    }

    /// With `--audio`, the audio chunks each participant has per round of frames: enough to
    /// cover the time to the next round (those past it are skipped).
    fn audio_chunks_per_tick(&self) -> Option<u64> {
        let chunk_ms = self.audio_chunk_ms?;
        let tick_ms = (1000.0 / self.rate.clock_fps()).ceil() as u64;
        Some(tick_ms.div_ceil(chunk_ms) + 1)
    }

    /// Audio chunk `chunk` of round `tick`: its first timeline sample and its length, or
    /// `None` when it starts at or past the next round.
    fn audio_chunk(&self, tick: u64, chunk: u64) -> Option<(u64, usize)> {
        let per_ms = crate::audio::SAMPLES_PER_MS;
        let chunk_samples = self.audio_chunk_ms? * per_ms;
        let (start, next) = (
            self.relative_ms(tick) * per_ms,
            self.relative_ms(tick + 1) * per_ms,
        );
        let first = start + chunk * chunk_samples;
        (first < next).then(|| (first, (chunk_samples.min(next - first)) as usize))
    }
}

fn participant_name(names: &[String], slot: usize) -> String {
    match names.get(slot) {
        Some(name) => name.clone(),
        None if slot < DEFAULT_NAMES.len() => DEFAULT_NAMES[slot].into(),
        None => format!("Participant {}", slot + 1),
    }
}

fn default_recording_id() -> String {
    let now = Timestamp::now().strftime("%Y%m%dT%H%M%SZ");
    format!("sim-{now}-{:04x}", rand::random::<u16>())
}

/// Bot `index`'s meeting title, of `bots` in the run whose recording id is `run`.
fn bot_title(title: Option<&str>, run: &str, index: usize, bots: usize) -> String {
    match title {
        Some(title) if bots == 1 => title.to_owned(),
        Some(title) => format!("{title} #{}", index + 1),
        None => {
            // Any stable mix of the id will do: a default id has a random part.
            let first = run.bytes().map(usize::from).sum::<usize>();
            let title = DEFAULT_TITLES[(first + index) % DEFAULT_TITLES.len()];
            match index / DEFAULT_TITLES.len() {
                0 => title.to_owned(),
                round => format!("{title} #{}", round + 1),
            }
        }
    }
}

fn bot_resources(recording: &str, title: &str) -> BotResources {
    let resource = |prefix: &str, metadata| Resource {
        id: format!("{prefix}-{recording}").into(),
        metadata,
    };
    BotResources {
        recording: Resource {
            id: recording.into(),
            metadata: serde_json::json!({"simulated": true}),
        },
        bot: resource(
            "bot",
            serde_json::json!({
                "simulator": "recall-frames simulate",
                crate::title::TITLE_KEY: title,
            }),
        ),
        realtime_endpoint: resource("re", serde_json::json!({})),
        video_separate: resource("vs", serde_json::json!({})),
        participant_events: resource("pe", serde_json::json!({})),
        audio_separate: resource("as", serde_json::json!({})),
    }
}

/// What a run sent, and what the server said about it.
#[derive(Debug, Clone)]
pub struct Report {
    pub elapsed: Duration,
    pub frames: u64,
    pub webcam_frames: u64,
    pub screenshare_frames: u64,
    /// PNG bytes in the frames sent.
    pub png_bytes: u64,
    /// Bytes of every message sent (JSON and base64 included).
    pub message_bytes: u64,
    pub participant_events: u64,
    /// Audio chunks sent, and the samples in them.
    pub audio_chunks: u64,
    pub audio_samples: u64,
    /// Each participant's audio as sent, for those who sent any.
    pub audio: Vec<AudioReport>,
    /// Messages sent again after a reconnect because their first send failed; the server
    /// skips any it had already saved.
    pub resent: u64,
    pub reconnects: u64,
    /// Messages the server refused, by reason.
    pub refusals: BTreeMap<String, Refused>,
    pub bots: usize,
    pub streams: Vec<StreamReport>,
    /// Stopped early by Ctrl-C.
    pub interrupted: bool,
    /// Each bot's recording and the page that shows it, in bot order.
    pub recordings: Vec<RecordingPage>,
    frames_described: String,
}

/// A recording the run streamed, and its browse page on the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingPage {
    pub id: String,
    /// `http(s)://host:port/recordings/<id>`, from the websocket URL.
    pub page: String,
}

/// Recordings the summary lists one by one; a larger run names the rest by count.
const RECORDINGS_LISTED: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub count: u64,
    /// The server's message for the first refusal of this reason.
    pub first_message: String,
}

/// One stream's frames as sent: every one of them should be a file on the server.
#[derive(Debug, Clone)]
pub struct StreamReport {
    pub recording: String,
    pub participant: ParticipantId,
    pub name: Option<String>,
    pub is_host: bool,
    /// The participant's place in the cast, the same in every bot.
    pub slot: usize,
    pub kind: StreamKind,
    /// Relative times, in milliseconds, of the frames sent, in sending order; frame `i` of
    /// the stream is `sent_ms[i]`.
    pub sent_ms: Vec<u64>,
}

impl StreamReport {
    /// The folder a server writing to `data_dir` saves this stream's frames in.
    pub fn dir_in(&self, data_dir: &std::path::Path) -> PathBuf {
        participant_dir(
            data_dir,
            &self.recording,
            self.participant,
            &self.name,
            self.is_host,
        )
        .join(self.kind.as_str())
    }
}

/// One participant's audio as sent: every sample should be in their track on the server.
#[derive(Debug, Clone)]
pub struct AudioReport {
    pub recording: String,
    pub participant: ParticipantId,
    pub name: Option<String>,
    pub is_host: bool,
    /// The participant's place in the cast: their voice is [`voice::voice`] of it.
    pub slot: usize,
    /// Each chunk sent, in sending order: its first timeline sample and its samples (a
    /// chunk sent again after a failed send is listed again).
    pub chunks: Vec<(u64, u64)>,
}

impl AudioReport {
    /// The folder a server writing to `data_dir` saves this participant's audio in.
    pub fn dir_in(&self, data_dir: &std::path::Path) -> PathBuf {
        participant_dir(
            data_dir,
            &self.recording,
            self.participant,
            &self.name,
            self.is_host,
        )
        .join(crate::layout::AUDIO_FOLDER)
    }
}

/// A participant's folder as a server writing to `data_dir` names it on first sight.
fn participant_dir(
    data_dir: &std::path::Path,
    recording: &str,
    id: ParticipantId,
    name: &Option<String>,
    is_host: bool,
) -> PathBuf {
    let participant = Participant {
        name: name.clone(),
        is_host,
        ..Participant::unknown(id)
    };
    data_dir
        .join(recording)
        .join(crate::layout::participant_folder_name(&participant))
}

impl Report {
    pub fn refused(&self) -> u64 {
        self.refusals.values().map(|r| r.count).sum()
    }

    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        let mb = self.png_bytes as f64 / 1e6;
        writeln!(
            f,
            "sent {} frames ({} webcam, {} screenshare) from {} bot(s), {} streams, in {seconds:.1} s",
            self.frames,
            self.webcam_frames,
            self.screenshare_frames,
            self.bots,
            self.streams.len()
        )?;
        writeln!(
            f,
            "     {mb:.1} MB of PNG ({:.1} MB on the wire): {:.1} frames/s, {:.1} MB/s",
            self.message_bytes as f64 / 1e6,
            self.frames_per_second(),
            mb / seconds
        )?;
        writeln!(f, "     {}", self.frames_described)?;
        if self.participant_events > 0 {
            writeln!(f, "     {} participant events", self.participant_events)?;
        }
        if self.audio_chunks > 0 {
            writeln!(
                f,
                "     {} audio chunks from {} participant(s): {:.1} s of audio",
                self.audio_chunks,
                self.audio.len(),
                self.audio_samples as f64 / f64::from(crate::audio::SAMPLE_RATE)
            )?;
        }
        writeln!(
            f,
            "reconnects: {}; messages sent again after a failed send: {}",
            self.reconnects, self.resent
        )?;
        if self.refusals.is_empty() {
            write!(f, "refused by the server: none")?;
        } else {
            write!(f, "refused by the server: {}", self.refused())?;
            for (reason, refused) in &self.refusals {
                write!(
                    f,
                    "\n     {reason} x{}: {}",
                    refused.count, refused.first_message
                )?;
            }
        }
        for recording in self.recordings.iter().take(RECORDINGS_LISTED) {
            write!(f, "\nrecording {}: open {}", recording.id, recording.page)?;
        }
        if let Some(more) = self.recordings.len().checked_sub(RECORDINGS_LISTED)
            && more > 0
        {
            write!(f, "\n     and {more} more recording(s), numbered as above")?;
        }
        if self.interrupted {
            write!(f, "\ninterrupted before the end")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> SimulateArgs {
        let mut all = vec!["ws://127.0.0.1:9/ws?token=abcdefghijklmnop"];
        all.extend(extra);
        SimulateArgs::from_args(all).unwrap()
    }

    #[test]
    fn each_bot_carries_a_meeting_title() {
        // "sim-b" starts the list at "Weekly sync", "sim-c" one later: runs differ.
        assert_eq!(bot_title(None, "sim-b", 0, 1), "Weekly sync");
        assert_eq!(bot_title(None, "sim-c", 0, 1), "Design review");
        assert_eq!(bot_title(None, "sim-b", 1, 20), "Design review");
        assert_eq!(bot_title(None, "sim-b", 8, 20), "Weekly sync #2");
        assert_eq!(bot_title(None, "sim-c", 7, 20), "Weekly sync");
        assert_eq!(bot_title(Some("Demo"), "sim-b", 0, 1), "Demo");
        assert_eq!(bot_title(Some("Demo"), "sim-b", 2, 3), "Demo #3");
        let bot = bot_resources("rec", "Weekly sync").bot;
        assert_eq!(bot.metadata["title"], "Weekly sync");
    }

    #[tokio::test]
    async fn the_plan_has_the_cast_and_streams_asked_for() {
        let sim = Simulation::prepare(args(&[
            "--bots",
            "2",
            "--participants",
            "3",
            "--names",
            "Ann,Ben",
            "--hosts",
            "2",
            "--screenshare",
            "1",
            "--recording",
            "rec",
            "--frames",
            "4",
            "--size",
            "64x36",
        ]))
        .await
        .unwrap();
        let plan = &sim.plan;
        assert_eq!(plan.bots.len(), 2);
        assert_eq!(plan.bots[1].resources.recording.id, "rec-2");
        let cast: Vec<_> = plan.bots[0]
            .cast
            .iter()
            .map(|m| {
                (
                    m.participant.id.0,
                    m.participant.name.clone().unwrap(),
                    m.participant.is_host,
                    m.screenshare,
                )
            })
            .collect();
        assert_eq!(
            cast,
            [
                (100, "Ann".into(), true, true),
                (101, "Ben".into(), true, false),
                (102, "Carol Díaz".into(), false, false)
            ]
        );
        let kinds: Vec<_> = plan.bots[0]
            .streams
            .iter()
            .map(|s| (s.member, s.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (0, StreamKind::Webcam),
                (0, StreamKind::Screenshare),
                (1, StreamKind::Webcam),
                (2, StreamKind::Webcam)
            ]
        );
        assert!(matches!(plan.stop, Stop::Frames(4)));
        assert_eq!(plan.relative_ms(3), 1500);
    }

    #[tokio::test]
    async fn bad_arguments_are_refused_with_a_reason() {
        let refused = |extra: &[&str]| {
            let args = args(extra);
            async move { Simulation::prepare(args).await.err().map(|e| e.to_string()) }
        };
        assert!(
            refused(&["--hosts", "3"])
                .await
                .unwrap()
                .contains("--hosts 3 is more than --participants 2")
        );
        assert!(
            refused(&["--recording", "../x"])
                .await
                .unwrap()
                .contains("recording id")
        );
        let bad_url =
            Simulation::prepare(SimulateArgs::from_args(["ftp://example.com/ws"]).unwrap())
                .await
                .err()
                .unwrap();
        assert!(matches!(bad_url, SimulateError::BadUrl(_)));
        assert!(SimulateArgs::from_args(["--fps", "fast"]).is_err());
        assert!(SimulateArgs::from_args(["--size", "10x10"]).is_err());
        assert!(SimulateArgs::from_args(["--frames", "3", "--duration", "3s"]).is_err());
    }

    #[test]
    fn rates_are_frames_per_second_or_max() {
        assert_eq!(Rate::parse("max"), Ok(Rate::Max));
        assert_eq!(Rate::parse("2.5"), Ok(Rate::PerSecond(2.5)));
        assert!(Rate::parse("0").is_err());
    }

    #[tokio::test]
    async fn a_steady_duration_is_a_frame_count_and_max_is_a_deadline() {
        let steady =
            Simulation::prepare(args(&["--duration", "3s", "--fps", "4", "--size", "32x32"]))
                .await
                .unwrap();
        assert!(matches!(steady.plan.stop, Stop::Frames(12)));
        let max = Simulation::prepare(args(&[
            "--duration",
            "3s",
            "--fps",
            "max",
            "--size",
            "32x32",
        ]))
        .await
        .unwrap();
        assert!(matches!(max.plan.stop, Stop::Deadline(d) if d == Duration::from_secs(3)));
        assert!(
            matches!(&*max.frames, FrameSource::Ring(ring) if ring.values().all(|r| r.len() == DEFAULT_MAX_RING))
        );
        assert_eq!(max.plan.relative_ms(3), 1500);
    }
}
