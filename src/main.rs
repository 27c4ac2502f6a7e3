//! The `recall-frames` command: parse the configuration, then bind and run the server, or
//! run one of the `bot` subcommands.

#![warn(clippy::unwrap_used)]

use anyhow::Context as _;
use clap::Parser as _;
use recall_frames::config::{Cli, Command};
use recall_frames::recall::BotCommand;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await,
        Some(Command::Bot(BotCommand::Create(args))) => {
            // Logs go to stderr: stdout is the bot's JSON, for scripts to read.
            init_logs(&cli.config.log, std::io::stderr)?;
            let bot = recall_frames::recall::create_bot_command(&cli.config, &args).await?;
            println!("{}", serde_json::to_string_pretty(&bot)?);
            Ok(())
        }
    }
}

fn init_logs<W>(log: &str, writer: W) -> anyhow::Result<()>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(log)
        .with_context(|| format!("RUST_LOG {log:?} is not a valid filter"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .init();
    Ok(())
}

async fn serve(config: recall_frames::Config) -> anyhow::Result<()> {
    init_logs(&config.log, std::io::stdout)?;
    let listener = tokio::net::TcpListener::bind((config.listen_address, config.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.listen_address, config.port))?;
    let shutdown = recall_frames::shutdown_signal()?;
    recall_frames::run(config, listener, shutdown).await
}
