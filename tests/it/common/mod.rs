//! Shared set-up for the integration tests, one file per concern: the real server in-process
//! (`server`) or as a child process (`binary`), a bot's websocket (`bot`), Recall's events
//! (`events`) with real PNGs (`pictures`), polling (`wait`), the Prometheus text (`metrics`,
//! shared with the load bench), what is read back from disk (`files`), captured logs (`logs`),
//! a small tmpfs (`disk`), skipping what this machine cannot run (`skip`), scenarios checked on several backends (`scenarios`), a stand-in for
//! Recall's API (`recall_api`) and a real S3 server (`s3`).

mod binary;
mod bot;
mod disk;
mod events;
mod files;
mod logs;
mod media;
mod metrics;
mod pictures;
pub mod recall_api;
pub mod s3;
mod scenarios;
mod server;
mod skip;
mod wait;

use std::time::Duration;

pub use binary::*;
pub use bot::*;
pub use disk::*;
pub use events::*;
pub use files::*;
pub use logs::*;
pub use media::*;
pub use metrics::*;
pub use pictures::*;
pub use scenarios::*;
pub use server::*;
pub use skip::*;
pub use wait::*;

pub const WS_TOKEN: &str = "test-ws-token-0123456789";
pub const RECORDING: &str = "rec_9f1c2a";

/// How long any wait for the server may take before the test fails.
pub const PATIENCE: Duration = Duration::from_secs(15);
