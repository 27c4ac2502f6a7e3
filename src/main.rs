//! The `recall-frames` command: parse the configuration, then bind and run the server, or
//! run one of the subcommands (`bot`, `simulate`, `copy-to-bucket`, `delete`,
//! `fetch-media`).

#![warn(clippy::unwrap_used)]

use std::io::IsTerminal as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use recall_frames::cli::{BotCommand, Cli, Command};
use recall_frames::simulate::{Output, SimulateArgs, Simulation};
use recall_frames::{Config, LogFormat};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_args();
    // Errors here are a user's to act on (a bad setting, a port in use, a refused token):
    // the message and its causes, not the `Debug` form that adds a backtrace whenever
    // RUST_BACKTRACE is set.
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await.map(|()| ExitCode::SUCCESS),
        Some(Command::Bot(BotCommand::Create(args))) => {
            // Logs go to stderr: stdout is the bot's JSON, for scripts to read.
            init_logs(
                &cli.config,
                std::io::stderr,
                std::io::stderr().is_terminal(),
            )?;
            let bot = recall_frames::cli::create_bot(&cli.config, &args).await?;
            println!("{}", serde_json::to_string_pretty(&bot)?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Export(args)) => {
            init_logs(
                &cli.config,
                std::io::stderr,
                std::io::stderr().is_terminal(),
            )?;
            let job =
                recall_frames::cli::export(&cli.config, &args, std::io::stderr().is_terminal())
                    .await?;
            eprintln!(
                "{} written ({} frames)",
                args.output.display(),
                job["frames"]
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::Simulate(args)) => {
            let mut args = *args;
            args.default_url_to_port(cli.config.port);
            simulate(args, &cli.config.data_dir).await
        }
        Some(Command::Delete(args)) => {
            init_logs(
                &cli.config,
                std::io::stderr,
                std::io::stderr().is_terminal(),
            )?;
            let report = recall_frames::delete(&cli.config, &args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Some(Command::FetchMedia(args)) => {
            init_logs(
                &cli.config,
                std::io::stderr,
                std::io::stderr().is_terminal(),
            )?;
            let (report, ok) = recall_frames::cli::fetch_media(&cli.config, &args).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Some(Command::CopyToBucket) => {
            init_logs(
                &cli.config,
                std::io::stderr,
                std::io::stderr().is_terminal(),
            )?;
            let report = recall_frames::copy_to_bucket(&cli.config).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            let skipped = report.skipped();
            if skipped > 0 {
                eprintln!(
                    "{skipped} frames, events, audio chunks or Recall files could not be copied: see \"skipped\""
                );
                return Ok(ExitCode::FAILURE);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Logs to `writer` (stdout or stderr, `on_terminal` saying whether it is one) at the
/// config's level and in its format: colour only for a terminal, never in a file or a pipe.
fn init_logs<W>(config: &Config, writer: W, on_terminal: bool) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let log = &config.log;
    let filter = EnvFilter::try_new(log)
        .with_context(|| format!("RUST_LOG {log:?} is not a valid filter"))?;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(on_terminal).init(),
        LogFormat::Json => logs.json().init(),
    }
    Ok(())
}

async fn serve(config: recall_frames::Config) -> anyhow::Result<()> {
    init_logs(&config, std::io::stdout, std::io::stdout().is_terminal())?;
    match raise_open_files_limit() {
        Ok((before, after)) if after > before => {
            tracing::info!("open files limit raised from {before} to {after}")
        }
        Ok((_, limit)) => tracing::info!("open files limit {limit}"),
        Err(error) => tracing::warn!(%error, "cannot read or raise the open files limit"),
    }
    let listener = tokio::net::TcpListener::bind((config.listen_address, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.listen_address, config.port))?;
    let shutdown = recall_frames::shutdown_signal()?;
    recall_frames::run(config, listener, shutdown).await
}

/// Every websocket is a file descriptor, and the usual soft limit (1024) is below what one
/// machine can serve: raise it to the hard limit. Returns the limit before and after.
fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let (before, _hard) = rlimit::Resource::NOFILE.get()?;
    let after = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok((before, after))
}

async fn simulate(mut args: SimulateArgs, data_dir: &Path) -> anyhow::Result<ExitCode> {
    // Many bots need many sockets; a failure shows up as a connection error later.
    let _ = raise_open_files_limit();
    let token = recall_frames::cli::simulate_token(&mut args, data_dir).await?;
    eprintln!("{token}");
    let simulation = Simulation::prepare(args).await?;
    let cancel = CancellationToken::new();
    let run = simulation.run(Output::Terminal, cancel.clone());
    let mut run = std::pin::pin!(run);
    let report = tokio::select! {
        report = &mut run => report,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: closing connections");
            cancel.cancel();
            run.await
        }
    }
    .map_err(|error| recall_frames::cli::explain_simulate_error(error, &token))?;
    println!("{report}");
    if report.refused() > 0 {
        eprintln!(
            "error: the server refused {} message(s); see the reasons above",
            report.refused()
        );
        return Ok(ExitCode::FAILURE);
    }
    if report.interrupted {
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}
