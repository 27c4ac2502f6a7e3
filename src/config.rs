//! Configuration: one clap `Config` read from flags and environment variables, checked at
//! start-up so that a mistake stops the server with a clear message.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::auth::Secret;

#[derive(Debug, Parser)]
#[command(
    name = "recall-frames",
    version,
    about = "Records the per-participant PNG frames that Recall.ai bots stream over a websocket"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (what running with no subcommand does).
    Serve,
    /// Stream realistic frames to a server as Recall bots would.
    #[command(long_about = crate::simulate::LONG_ABOUT)]
    Simulate(Box<crate::simulate::SimulateArgs>),
}

const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TCP port to listen on, on all interfaces.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Folder the recordings are written to.
    #[arg(long, env = "DATA_DIR", default_value = "./frames")]
    pub data_dir: PathBuf,

    /// Secret that bots present as `?token=` on /ws (16+ characters of A-Z a-z 0-9 . _ ~ -).
    /// When unset, one is generated on first start and kept in DATA_DIR/.ws-token.
    #[arg(long, env = "WS_TOKEN", hide_env_values = true, value_parser = Secret::parse_url_safe)]
    pub ws_token: Option<Secret>,

    /// Secret that guards the HTTP API as a Bearer token or as the HTTP Basic password.
    /// When unset, only requests from this machine (loopback, not forwarded) are served.
    #[arg(long, env = "API_TOKEN", hide_env_values = true, value_parser = Secret::parse_url_safe)]
    pub api_token: Option<Secret>,

    /// Largest websocket message accepted, in bytes; a larger one closes its connection
    /// with code 1009.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 16 * MIB as usize,
          value_parser = RangedU64ValueParser::<usize>::new().range(1024..=1024 * MIB))]
    pub max_message_bytes: usize,

    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info,recall_frames=debug`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// How often every open websocket is pinged, so that proxies keep idle ones open.
    #[arg(long, env = "PING_INTERVAL", default_value = "20s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A stream with no frame for this long has its channel and task closed.
    #[arg(long, env = "STREAM_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub stream_idle_timeout: Duration,

    /// Frames each stream's channel holds before the connection feeding it waits.
    #[arg(long, env = "STREAM_QUEUE_FRAMES", default_value_t = 16,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=4096))]
    pub stream_queue_frames: usize,

    /// PNG bytes held in memory across all stream channels before connections wait.
    #[arg(long, env = "BUFFER_BYTES", default_value_t = 128 * MIB as usize,
          value_parser = RangedU64ValueParser::<usize>::new().range(MIB..=(u32::MAX as u64)))]
    pub buffer_bytes: usize,

    /// Longest a shutdown may take: closing sockets, draining channels, flushing manifests.
    #[arg(long, env = "SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 20s, 500ms, 2m)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

impl Config {
    /// Parses server flags as the command line would, but with no environment variables:
    /// what tests and embedders use to get a configuration that nothing outside can change.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let program = std::iter::once(std::ffi::OsString::from("recall-frames"));
        let matches = Cli::command()
            .mut_args(|arg| arg.env(None))
            .try_get_matches_from(program.chain(args.into_iter().map(Into::into)))?;
        Ok(Cli::from_arg_matches(&matches)?.config)
    }
}
