//! The `recall-frames` command: parse the configuration, bind, and run the server.

#![warn(clippy::unwrap_used)]

use anyhow::Context as _;
use clap::Parser as _;
use recall_frames::config::{Cli, Command};
use recall_frames::recall::BotCommand;
use tokio::signal::unix::{SignalKind, signal};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None | Some(Command::Serve) => serve(cli.config).await,
        Some(Command::Bot(BotCommand::Create(args))) => {
            let bot = recall_frames::recall::create_bot_command(&cli.config, &args).await?;
            println!("{}", serde_json::to_string_pretty(&bot)?);
            Ok(())
        }
    }
}

async fn serve(config: recall_frames::Config) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&config.log)
        .with_context(|| format!("RUST_LOG {:?} is not a valid filter", config.log))?;
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", config.port))
        .await
        .with_context(|| format!("cannot listen on port {}", config.port))?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    };
    recall_frames::run(config, listener, shutdown).await
}
