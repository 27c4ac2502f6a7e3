//! The command line: the `recall-frames` command, its subcommands and their flags. The one
//! module that knows every part the commands drive (the server's [`Config`], Recall's bots,
//! the simulator), so that none of them knows the command line.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use serde_json::Value;

use crate::config::Config;
use crate::recall::{BotRequest, Bots};
use crate::simulate::{SimulateArgs, SimulateError};

#[derive(Debug, Parser)]
#[command(
    name = "recall-frames",
    version,
    about = "Records the per-participant PNG frames that Recall.ai bots stream over a websocket"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten, next_help_heading = "Server settings")]
    pub config: Config,
}

impl Cli {
    /// Parses the process's command line, exiting with clap's message (and status 2) on a
    /// mistake, or with the help or version asked for.
    pub fn parse_args() -> Self {
        let matches = command_line(Cli::command()).get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

/// The subcommand that takes none of the server's settings but `--data-dir` (where it
/// finds the server's websocket token).
const CLIENT_SUBCOMMAND: &str = "simulate";

/// The command line as people type it: every server setting is global, so it is taken
/// before the subcommand (`recall-frames --port 9001 serve`) or after it (`recall-frames
/// serve --port 9001`, `bot create --recall-api-key ...`), and each subcommand's `--help`
/// lists the settings it reads. Given in both places, the one after the subcommand wins.
/// `simulate`, a client of the server, reads none of them but `--data-dir` and `--port`:
/// the others are left out of its help.
fn command_line(command: clap::Command) -> clap::Command {
    let command = command.mut_args(|arg| arg.global(true));
    // A subcommand that has an argument of a global's id keeps its own: give `simulate`
    // hidden copies of the settings, so that they stay out of its help.
    let hidden: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|arg| arg.get_id() != "data_dir")
        .map(|arg| match arg.get_id().as_str() {
            // The one it reads besides `--data-dir`: where to connect without a URL.
            "port" => arg
                .clone()
                .help("The server's port: without a URL, connect to ws://localhost:PORT/ws"),
            _ => arg.clone().hide(true),
        })
        .collect();
    command.mut_subcommand(CLIENT_SUBCOMMAND, |client| client.args(hidden))
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (what running with no subcommand does).
    Serve,
    /// Manage Recall bots from the command line, as the /api/bots routes do.
    #[command(subcommand)]
    Bot(BotCommand),
    /// Stream realistic frames to a server as Recall bots would.
    #[command(long_about = SIMULATE_LONG_ABOUT)]
    Simulate(Box<SimulateArgs>),
    /// Copy the recordings in DATA_DIR into the bucket BUCKET_NAME names
    ///
    /// For a move from a volume to a bucket. Nothing in the bucket is replaced; running it
    /// again finishes an interrupted copy. Prints a JSON report; exits 1 if anything could
    /// not be copied. DATA_DIR and the bucket's settings come from the environment or from
    /// the options (`recall-frames copy-to-bucket --data-dir ./frames --bucket-name ...`).
    CopyToBucket,
    /// Delete a recording, or one participant of it, or the recordings older than a time
    ///
    /// From DATA_DIR or the bucket, as `DELETE /api/recordings/...` does: tombstoned at once,
    /// then removed, and logged in .deletions/audit.jsonl. A server on the same store learns
    /// of it at its next STORAGE_CHECK_INTERVAL. Prints a JSON report. `--older-than 30d
    /// --dry-run` (or `--dry-run` with RETENTION set) lists what retention would delete.
    Delete(crate::DeleteArgs),

    /// Fetch Recall's per-participant MP4s and audio of a bot's recordings into the store
    ///
    /// For bots created elsewhere, or webhooks that never came: lists the media at Recall,
    /// then stores each part not yet stored under its participant, with a progress bar on
    /// stderr. Running it again adds nothing. Prints a JSON report; exits 1 if a part could
    /// not be fetched. Reads RECALL_API_KEY and DATA_DIR (or the bucket's settings).
    FetchMedia(FetchMediaArgs),

    /// Export a stream of a recording as an MP4, through a running server
    ///
    /// Asks the server (--server, or this machine's on PORT) to export, shows its progress,
    /// and downloads the MP4 to -o. The server does the work: it reads the folder or the
    /// bucket, keeps exports within EXPORT_CONCURRENCY and EXPORT_THREADS at a lower
    /// priority, and keeps results, so asking again is instant. API_TOKEN is sent when set.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).multiple(true).args(["bot", "recording"])))]
pub struct FetchMediaArgs {
    /// The Recall bot whose recordings to fetch (this, or --recording, or both).
    #[arg(long)]
    pub bot: Option<String>,
    /// Recall's recording id, which is also recall-frames' recording id (the folder's name,
    /// the id in /recordings/<id>); may be given more than once.
    #[arg(long)]
    pub recording: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The recording's id.
    pub recording: String,
    /// The participant whose stream is exported.
    #[arg(long, required_unless_present = "gallery", conflicts_with = "gallery")]
    pub participant: Option<u64>,
    /// The whole meeting as a gallery: a tile per camera, the screen share large, names,
    /// the speaker framed, everyone's sound.
    #[arg(long)]
    pub gallery: bool,
    /// Which of their streams.
    #[arg(long, value_enum, default_value_t = ExportStream::Webcam)]
    pub stream: ExportStream,
    /// Seconds into the recording where the video starts.
    #[arg(long)]
    pub from: Option<f64>,
    /// Seconds into the recording where it ends.
    #[arg(long)]
    pub to: Option<f64>,
    /// Shows pauses between frames longer than this many seconds as this long.
    #[arg(long)]
    pub max_pause: Option<f64>,
    /// Writes the participant's name and the meeting time on the video.
    #[arg(long)]
    pub burn_in: bool,
    /// Where to write the MP4.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// The server's address; http://localhost:PORT when absent.
    #[arg(long, env = "RECALL_FRAMES_URL")]
    pub server: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportStream {
    Webcam,
    Screenshare,
}

impl ExportArgs {
    /// What the server is asked for.
    pub fn spec(&self) -> crate::export::ExportSpec {
        crate::export::ExportSpec {
            participant: self.participant,
            gallery: self.gallery,
            stream: match self.stream {
                ExportStream::Webcam => crate::frame::StreamKind::Webcam,
                ExportStream::Screenshare => crate::frame::StreamKind::Screenshare,
            },
            from: self.from,
            to: self.to,
            max_pause: self.max_pause,
            burn_in: self.burn_in,
        }
    }
}

/// `recall-frames export`: the finished job's JSON.
pub async fn export(
    config: &Config,
    args: &ExportArgs,
    show_progress: bool,
) -> anyhow::Result<Value> {
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| format!("http://localhost:{}", config.port));
    let token = config.api_token.as_ref().map(|t| t.expose().to_owned());
    crate::export::client::export(
        &server,
        token.as_deref(),
        &args.recording,
        &args.spec(),
        &args.output,
        show_progress,
    )
    .await
}

/// The long help of `recall-frames simulate`.
const SIMULATE_LONG_ABOUT: &str = "Stream realistic frames to a server as Recall bots would: one \
websocket per bot, each bot one recording whose participants send webcam (and some screenshare) \
PNG frames as video_separate_png.data events. Bots reconnect as Recall's do (--retries \
attempts, --retry-delay apart) and resume where they were. Exits non-zero if the server refuses \
the upgrade or any message, closes a connection for a reason a reconnect cannot fix (such as \
1009, message too big), or cannot be reached again.

Frames are camera-like PNGs made on the fly: a room, a swaying person, something moving, sensor \
noise, and the participant's name and a frame counter, about 330 KB at 640x360 like real webcam \
frames. Encoding one takes several milliseconds of CPU, more than the server spends on it, so for \
load runs (--fps max, or many streams) frames are pre-rendered in a ring of --ring frames per \
participant and sent again in turn with new timestamps: the counter on the picture then counts \
around the ring. With --pngs, a folder's PNG files are sent instead.";

/// The `bot` subcommands.
#[derive(Debug, Subcommand)]
pub enum BotCommand {
    /// Create a Recall bot that joins a meeting and streams its frames to this server (as
    /// `POST /api/bots` does). Reads the server's settings (RECALL_API_KEY, PUBLIC_URL,
    /// WS_TOKEN...) from the environment or from the options.
    Create(CreateBotArgs),
}

#[derive(Debug, Args)]
pub struct CreateBotArgs {
    /// The meeting link (Zoom, Google Meet, Teams, Webex...).
    #[arg(long)]
    pub meeting_url: String,
    /// The name the bot shows in the meeting.
    #[arg(long)]
    pub bot_name: Option<String>,
    /// When the bot joins, as an ISO-8601 time (e.g. 2026-11-21T10:00:00Z); now if absent.
    #[arg(long)]
    pub join_at: Option<String>,
    /// What to call the bot's recordings in the browse UI and the API (sent as the bot's
    /// metadata); without it they are called by the bot's name.
    #[arg(long)]
    pub title: Option<String>,
    /// Also stream each participant's audio (Recall's audio_separate_raw). Off by default:
    /// it costs more at Recall, and Recall may have to enable it for the workspace.
    #[arg(long)]
    pub audio: bool,
    /// Ask Recall for each participant's MP4 after the call (video_separate_mp4), fetched
    /// into the recording when Recall says it is done. Off by default: it costs at Recall.
    #[arg(long)]
    pub async_video: bool,
    /// Ask Recall for each participant's audio file after the call (audio_separate_raw),
    /// fetched like --async-video. Off by default.
    #[arg(long)]
    pub async_audio: bool,
}

/// `recall-frames bot create`: creates a bot exactly as `POST /api/bots` does, for the server
/// this configuration describes, and returns Recall's bot JSON.
///
/// The websocket token must be the server's: `WS_TOKEN`, or the one the server keeps in
/// `DATA_DIR`. None is ever generated here, since a bot given a token the server does not
/// know could never connect.
pub async fn create_bot(config: &Config, args: &CreateBotArgs) -> anyhow::Result<Value> {
    let request = BotRequest::new(
        &args.meeting_url,
        args.bot_name.clone(),
        args.join_at.as_deref(),
    )?
    .with_title(args.title.as_deref())?
    .with_audio(args.audio)
    .with_async_media(args.async_video, args.async_audio);
    let (token, _) = crate::auth::existing_ws_token(config.ws_token.clone(), &config.data_dir)
        .await?
        .with_context(|| {
            format!(
                "no websocket token: set WS_TOKEN to the server's token, or run this where \
                 DATA_DIR ({}) holds the server's {}",
                config.data_dir.display(),
                crate::auth::WS_TOKEN_FILE
            )
        })?;
    let bots = Bots::new(config, &token)?;
    Ok(bots.create(&request).await?)
}

/// `recall-frames fetch-media`: returns the JSON report, and whether every fetch succeeded.
pub async fn fetch_media(config: &Config, args: &FetchMediaArgs) -> anyhow::Result<(Value, bool)> {
    let bot = args
        .bot
        .as_deref()
        .map(|bot| {
            crate::recall::BotId::parse(bot).with_context(|| {
                format!("{bot:?} is not a Recall bot id (1 to 128 of A-Z a-z 0-9 - _)")
            })
        })
        .transpose()?;
    let recordings = args
        .recording
        .iter()
        .map(|id| {
            crate::frame::RecordingId::parse(id)
                .filter(|id| !id.as_str().starts_with('.'))
                .with_context(|| format!("{id:?} is not a Recall recording id"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let metrics = std::sync::Arc::new(crate::metrics::Metrics::default());
    let (store, _) = crate::open_store(config, metrics).await?;
    let progress = FetchProgress::new();
    let reports =
        crate::recall_media::fetch_by_hand(config, store, bot.as_ref(), recordings, &progress)
            .await?;
    progress.bar.finish_and_clear();
    let ok = reports.iter().all(Result::is_ok);
    let json: Vec<Value> = reports
        .into_iter()
        .map(|report| match report {
            Ok(report) => serde_json::to_value(report).expect("plain JSON"),
            Err((what, error)) => serde_json::json!({"fetch": what, "error": error.to_string()}),
        })
        .collect();
    Ok((serde_json::json!({ "fetches": json }), ok))
}

/// The progress bar of `fetch-media`: bytes of the part being downloaded, on stderr.
struct FetchProgress {
    bar: indicatif::ProgressBar,
}

impl FetchProgress {
    fn new() -> Self {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg:24} {bar:30} {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .expect("a valid template"),
        );
        FetchProgress { bar }
    }
}

impl crate::recall_media::Progress for FetchProgress {
    fn part_started(&self, file: &str, length: Option<u64>) {
        self.bar.reset();
        self.bar.set_length(length.unwrap_or(0));
        self.bar.set_message(file.to_owned());
    }

    fn advanced(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn part_finished(&self, file: &str, stored: bool) {
        let what = if stored { "stored" } else { "already stored" };
        self.bar.println(format!("{file}: {what}"));
    }
}

/// Where the websocket token `simulate` sends comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SimulateToken {
    /// The URL has `?token=`.
    InUrl,
    /// `--token` or `WS_TOKEN`.
    Given,
    /// The server's own token, read from its `DATA_DIR`.
    Stored(PathBuf),
    /// None anywhere: not in the URL, not given, and no such file.
    Missing(PathBuf),
}

impl fmt::Display for SimulateToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimulateToken::InUrl => f.write_str("token: the one in the URL"),
            SimulateToken::Given => f.write_str("token: --token (or WS_TOKEN)"),
            SimulateToken::Stored(path) => {
                write!(f, "token: the server's, read from {}", path.display())
            }
            SimulateToken::Missing(path) => write!(
                f,
                "token: none (not in the URL, no --token or WS_TOKEN, no {})",
                path.display()
            ),
        }
    }
}

/// The token `recall-frames simulate` sends: the URL's, else `--token`/`WS_TOKEN`, else the
/// one a server using `data_dir` keeps there, which is set as `args.token`. None is ever
/// generated: a token the server does not know is as good as none.
pub async fn simulate_token(
    args: &mut SimulateArgs,
    data_dir: &Path,
) -> anyhow::Result<SimulateToken> {
    let in_url = url::Url::parse(&args.url)
        .is_ok_and(|url| url.query_pairs().any(|(key, _)| key == "token"));
    if in_url {
        return Ok(SimulateToken::InUrl);
    }
    if args.token.is_some() {
        return Ok(SimulateToken::Given);
    }
    match crate::auth::existing_ws_token(None, data_dir).await? {
        Some((token, _)) => {
            args.token = Some(token.expose().to_owned());
            Ok(SimulateToken::Stored(
                data_dir.join(crate::auth::WS_TOKEN_FILE),
            ))
        }
        None => Ok(SimulateToken::Missing(
            data_dir.join(crate::auth::WS_TOKEN_FILE),
        )),
    }
}

/// Says where a token would have come from when the server refused a simulator that sent
/// none.
pub fn explain_simulate_error(error: SimulateError, token: &SimulateToken) -> anyhow::Error {
    match (&error, token) {
        (SimulateError::UpgradeRefused { status: 401, .. }, SimulateToken::Missing(path)) => {
            anyhow::Error::new(error).context(format!(
                "no websocket token was sent: the URL has no ?token=, neither --token nor \
                 WS_TOKEN is set, and there is no {}. Pass the URL the server printed, or \
                 --token, or point --data-dir (or DATA_DIR) at the server's data folder: \
                 recall-frames --data-dir DIR simulate",
                path.display()
            ))
        }
        _ => error.into(),
    }
}

// Here rather than in `config.rs`: it parses through the whole command line, which the
// configuration does not know.
impl Config {
    /// Parses server flags as the command line would, but with no environment variables:
    /// what tests and embedders use to get a configuration that nothing outside can change.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let program = std::iter::once(std::ffi::OsString::from("recall-frames"));
        let matches = command_line(Cli::command().mut_args(|arg| arg.env(None)))
            .try_get_matches_from(program.chain(args.into_iter().map(Into::into)))?;
        Ok(Cli::from_arg_matches(&matches)?.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of the command line as it is built with global settings (clashing
    /// names, a hidden copy in `simulate` that no longer matches its global).
    #[test]
    fn the_command_line_is_well_formed() {
        command_line(Cli::command()).debug_assert();
    }

    #[test]
    fn settings_are_read_before_and_after_the_subcommand() {
        let config = Config::from_args(["--port", "9001", "serve", "--data-dir", "/d"]).unwrap();
        assert_eq!((config.port, config.data_dir), (9001, PathBuf::from("/d")));
        let config = Config::from_args(["--port", "9001", "serve", "--port", "9002"]).unwrap();
        assert_eq!(config.port, 9002, "the one after the subcommand wins");
        let config = Config::from_args(["serve"]).unwrap();
        assert_eq!(config.port, 8080);
    }
}
