//! The server's configuration: one clap `Config` read from flags and environment variables,
//! checked at start-up so that a mistake stops the server with a clear message. The command
//! line around it is in `cli.rs`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use clap::builder::RangedU64ValueParser;
use url::Url;

use crate::auth::Secret;
use crate::auth::signature::SigningSecret;

const MIB: u64 = 1024 * 1024;
/// The port the server listens on when neither `--port` nor `PORT` says.
pub const DEFAULT_PORT: u16 = 8080;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// TCP port to listen on, on all interfaces.
    #[arg(long, env = "PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Folder the recordings are written to.
    #[arg(long, env = "DATA_DIR", default_value = "./frames")]
    pub data_dir: PathBuf,

    /// Secret that bots present as `?token=` on /ws (16+ characters of A-Z a-z 0-9 . _ ~ -).
    /// When unset, one is generated on first start and kept in DATA_DIR/.ws-token.
    #[arg(long, env = "WS_TOKEN", hide_env_values = true, value_parser = SecretParser(Secret::parse_url_safe))]
    pub ws_token: Option<Secret>,

    /// Secret that guards the HTTP API as a Bearer token or as the HTTP Basic password.
    /// When unset, only requests from this machine (loopback, not forwarded) are served.
    #[arg(long, env = "API_TOKEN", hide_env_values = true, value_parser = SecretParser(Secret::parse_url_safe))]
    pub api_token: Option<Secret>,

    /// Largest websocket message accepted, in bytes; a larger one closes its connection
    /// with code 1009.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 16 * MIB as usize,
          value_parser = RangedU64ValueParser::<usize>::new().range(1024..=1024 * MIB))]
    pub max_message_bytes: usize,

    /// Log filter, in `tracing` EnvFilter syntax (e.g. `info,recall_frames=debug`).
    #[arg(long = "log", env = "RUST_LOG", default_value = "info")]
    pub log: String,

    /// How log lines are written: `text` (coloured only on a terminal) or `json`, one object
    /// a line, for log shippers.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

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

    // ---- Hardening: who may connect, and the caps that hold under abuse (issue 6) ----
    /// Address to listen on. 0.0.0.0 is every interface; 127.0.0.1 keeps the server to this
    /// machine (behind a reverse proxy or tunnel on the same host).
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0")]
    pub listen_address: IpAddr,

    /// Recall's verification secret (`whsec_...`). When set, a websocket upgrade must also
    /// carry a valid Recall signature (webhook-* or svix-* headers), besides the token.
    #[arg(long, env = "RECALL_VERIFICATION_SECRET", hide_env_values = true,
          value_parser = SecretParser(SigningSecret::parse))]
    pub recall_verification_secret: Option<SigningSecret>,

    /// Most websocket connections open at once; an upgrade past it gets 503. Each bot holds
    /// one for its whole meeting, and a bot refused 30 times gives up, so the default is
    /// fly.toml's hard limit: a machine that takes 1,000 bots idle takes them here too.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 1000,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub max_connections: usize,

    /// Most streams (participant x webcam/screenshare) one connection may feed at once;
    /// frames of a further stream are refused with `too_many_streams`. A stream quiet for
    /// STREAM_IDLE_TIMEOUT frees its place.
    #[arg(long, env = "MAX_STREAMS_PER_CONNECTION", default_value_t = 128,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub max_streams_per_connection: usize,

    /// Largest HTTP request body, in bytes; a larger one gets 413.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = MIB as usize,
          value_parser = RangedU64ValueParser::<usize>::new().range(1024..=1024 * MIB))]
    pub max_body_bytes: usize,

    /// Time a client has to send a request's headers (a websocket handshake included), and
    /// again its body. A connection that sends no request for this long is closed too.
    #[arg(long, env = "REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// A websocket that sends nothing, not even a pong, for this long is closed (1008).
    /// Must be longer than PING_INTERVAL, so that a quiet but live bot gets pinged first.
    #[arg(long, env = "WS_IDLE_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub ws_idle_timeout: Duration,

    /// Free space DATA_DIR's file system must keep, in bytes. Below it new frames are
    /// refused (`storage_low`) and /healthz reports degraded, until space is freed.
    /// 0 turns the check off.
    #[arg(long, env = "MIN_FREE_BYTES", default_value_t = 256 * MIB)]
    pub min_free_bytes: u64,

    /// How often DATA_DIR's free space is measured.
    #[arg(long, env = "DISK_CHECK_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub disk_check_interval: Duration,

    // ---- Browsing: the web UI and the JSON API ----
    /// Frames the in-memory indexes of saved streams hold in all (56 bytes each) before
    /// the least recently used streams are dropped from memory.
    #[arg(long, env = "CATALOG_CACHE_FRAMES", default_value_t = 1_000_000,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=(u32::MAX as u64)))]
    pub catalog_cache_frames: usize,

    // ---- creating bots through Recall's API ----
    /// Recall API key, for creating and managing bots (`/api/bots`, `bot create`).
    #[arg(long, env = "RECALL_API_KEY", hide_env_values = true, value_parser = Secret::parse_header_safe)]
    pub recall_api_key: Option<Secret>,

    /// Region of the Recall workspace the API key belongs to.
    #[arg(long, env = "RECALL_REGION", value_enum, default_value_t = Region::UsEast1)]
    pub recall_region: Region,

    /// Base URL of Recall's API, in place of the region's (e.g. a proxy, or a test stand-in).
    #[arg(long, env = "RECALL_API_BASE", value_parser = parse_http_url)]
    pub recall_api_base: Option<Url>,

    /// Longest a request to Recall's API may take, answer included.
    #[arg(long, env = "RECALL_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub recall_timeout: Duration,

    /// This server's public URL, from which bots are given `wss://<host>[/prefix]/ws?token=`.
    #[arg(long, env = "PUBLIC_URL", value_parser = parse_http_url)]
    pub public_url: Option<Url>,

    /// Set by Fly.io: without PUBLIC_URL, the public URL is https://<FLY_APP_NAME>.fly.dev.
    #[arg(long, env = "FLY_APP_NAME", value_parser = parse_fly_app_name)]
    pub fly_app_name: Option<String>,

    // ---- After the call: Recall's webhooks and async media (issue 13) ----
    /// The secret of the webhook endpoint registered in Recall's dashboard (`whsec_...`):
    /// `POST /webhooks/recall` takes only deliveries signed with it. Unset: the workspace's
    /// RECALL_VERIFICATION_SECRET, if set; with neither, the route answers 503.
    #[arg(long, env = "RECALL_WEBHOOK_SECRET", hide_env_values = true,
          value_parser = SecretParser(SigningSecret::parse))]
    pub recall_webhook_secret: Option<SigningSecret>,

    /// Downloads of Recall's async media (per-participant MP4 and audio) run at once, at most.
    #[arg(long, env = "RECALL_MEDIA_CONCURRENCY", default_value_t = 2,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub recall_media_concurrency: usize,

    /// Attempts at one media part (with fresh download URLs after the first), and at a
    /// whole fetch, before it is marked failed in the recording's status.
    #[arg(long, env = "RECALL_MEDIA_ATTEMPTS", default_value_t = 5,
          value_parser = RangedU64ValueParser::<u32>::new().range(1..=100))]
    pub recall_media_attempts: u32,

    /// Wait before the second attempt at a media part or fetch; doubled at each further
    /// attempt, up to 5 minutes.
    #[arg(long, env = "RECALL_MEDIA_BACKOFF", default_value = "2s", value_parser = parse_duration)]
    pub recall_media_backoff: Duration,

    /// A media download that receives nothing for this long is cut and tried again.
    #[arg(long, env = "RECALL_MEDIA_READ_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub recall_media_read_timeout: Duration,

    // ---- Scaling out: an S3-compatible bucket in place of DATA_DIR (issue 7) ----
    /// S3 bucket that recordings go to, and that the browse UI and API read, in place of
    /// DATA_DIR (`fly storage create` sets it). Unset: recordings go to DATA_DIR.
    #[arg(long, env = "BUCKET_NAME", value_parser = parse_bucket_name)]
    pub bucket_name: Option<String>,

    /// Key prefix in the bucket that recordings go under, e.g. `recall-frames/prod`.
    #[arg(long, env = "BUCKET_PREFIX", value_parser = parse_bucket_prefix)]
    pub bucket_prefix: Option<String>,

    /// The bucket's S3 endpoint, e.g. https://fly.storage.tigris.dev. Unset: AWS S3.
    #[arg(long, env = "AWS_ENDPOINT_URL_S3", value_parser = parse_http_url)]
    pub bucket_endpoint: Option<Url>,

    /// The bucket's region (`auto` for Tigris). Unset: us-east-1.
    #[arg(long, env = "AWS_REGION", value_parser = parse_bucket_region)]
    pub bucket_region: Option<String>,

    /// Access key id for the bucket.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true,
          value_parser = SecretParser(Secret::parse_header_safe))]
    pub bucket_access_key_id: Option<Secret>,

    /// Secret access key for the bucket.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true,
          value_parser = SecretParser(Secret::parse_header_safe))]
    pub bucket_secret_access_key: Option<Secret>,

    /// How often a stream's newly saved frames are added to its manifest in the bucket (and
    /// so to the listings of other instances). Frames themselves are uploaded at once.
    #[arg(long, env = "BUCKET_MANIFEST_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub bucket_manifest_interval: Duration,

    /// How long a failing bucket request is retried, with backoff, before what it carried
    /// (a frame, an event) is given up and counted in sink_errors.
    #[arg(long, env = "BUCKET_RETRY_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub bucket_retry_timeout: Duration,

    /// How often the bucket is checked with a one-key listing, for /healthz and the metrics.
    #[arg(long, env = "BUCKET_CHECK_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub bucket_check_interval: Duration,

    /// How long a check of the bucket may take before /healthz says degraded: against a
    /// bucket that hangs rather than refusing, the time until the server notices.
    #[arg(long, env = "BUCKET_CHECK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub bucket_check_timeout: Duration,

    /// How long one bucket request may take, answer included, before it counts as failed
    /// (and is retried within BUCKET_RETRY_TIMEOUT).
    #[arg(long, env = "BUCKET_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub bucket_request_timeout: Duration,

    // ---- Deleting, retention and quotas (issue 16) ----
    /// Recordings whose last write is older than this are deleted (e.g. `30d`), at start and
    /// at every STORAGE_CHECK_INTERVAL, and logged in .deletions/audit.jsonl. Unset: kept
    /// until deleted. See what it would delete with `recall-frames delete --dry-run`.
    #[arg(long, env = "RETENTION", value_parser = parse_retention)]
    pub retention: Option<Duration>,
    /// Most bytes stored (DATA_DIR or the bucket). At the cap new recordings are refused
    /// (`quota_reached`) and /healthz says degraded; nothing is deleted to make room.
    #[arg(long, env = "MAX_STORED_BYTES", value_parser = RangedU64ValueParser::<u64>::new().range(1..))]
    pub max_stored_bytes: Option<u64>,
    /// How often the stored bytes are measured (one listing of the store), tombstones read
    /// again and RETENTION applied.
    #[arg(long, env = "STORAGE_CHECK_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub storage_check_interval: Duration,

    // ---- Exports (issue 14) ----
    /// The ffmpeg that exports run (a name looked up on PATH, or a path); checked at
    /// start-up. Without it exports answer 503 and everything else works.
    #[arg(long, env = "FFMPEG_PATH", default_value = "ffmpeg")]
    pub ffmpeg_path: PathBuf,

    /// Exports that run at once; more wait their turn.
    #[arg(long, env = "EXPORT_CONCURRENCY", default_value_t = 1,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub export_concurrency: usize,

    /// Threads each export's encoder may use: with EXPORT_CONCURRENCY, the share of the CPU
    /// exports take from recording.
    #[arg(long, env = "EXPORT_THREADS", default_value_t = 1,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    pub export_threads: usize,

    /// The x264 preset exports are encoded with: `ultrafast` spends the least CPU (the
    /// files are larger); `veryfast`, `faster`, `fast` or `medium` make smaller files
    /// more slowly.
    #[arg(long, env = "EXPORT_PRESET", default_value = "ultrafast",
          value_parser = ["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"])]
    pub export_preset: String,

    /// The niceness ffmpeg runs at (0 to 19): higher yields the CPU to recording sooner.
    #[arg(long, env = "EXPORT_NICE", default_value_t = 10,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    pub export_nice: i32,
}

/// The region a Recall workspace lives in. API keys are per region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Region {
    #[value(name = "us-east-1")]
    UsEast1,
    #[value(name = "us-west-2")]
    UsWest2,
    #[value(name = "eu-central-1")]
    EuCentral1,
    #[value(name = "ap-northeast-1")]
    ApNortheast1,
}

impl Region {
    pub fn as_str(self) -> &'static str {
        match self {
            Region::UsEast1 => "us-east-1",
            Region::UsWest2 => "us-west-2",
            Region::EuCentral1 => "eu-central-1",
            Region::ApNortheast1 => "ap-northeast-1",
        }
    }
}

/// Parses a secret like any value, but with an error that does not repeat it: clap's own
/// errors quote the rejected value, and a near-miss of a secret is as good as the secret
/// once it is in a deployment's logs.
#[derive(Clone)]
pub(crate) struct SecretParser<T>(pub(crate) fn(&str) -> Result<T, String>);

impl<T: Clone + Send + Sync + 'static> clap::builder::TypedValueParser for SecretParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        let name = arg.map(ToString::to_string).unwrap_or_default();
        let refuse = |why: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '{name}' (not shown: it is a secret): {why}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| refuse("not UTF-8".into()))?;
        (self.0)(text).map_err(refuse)
    }
}

/// An absolute `http://` or `https://` URL with a host, and no query, fragment or password.
fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|e| format!("{e} (example: https://frames.example.com)"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be http:// or https://, not {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must have a host".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a ?query or #fragment".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user name or password".into());
    }
    Ok(url)
}

/// A Fly.io app name: a DNS label, so that `<name>.fly.dev` is a host name.
fn parse_fly_app_name(text: &str) -> Result<String, String> {
    let label = (1..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if label {
        Ok(text.to_owned())
    } else {
        Err("must be a Fly.io app name: 1 to 63 of a-z 0-9 -".into())
    }
}

/// An S3 bucket name: 3 to 63 of a-z 0-9 . -, starting and ending with a letter or digit.
fn parse_bucket_name(text: &str) -> Result<String, String> {
    let edges_ok = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok = (3..=63).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edges_ok(text.as_bytes().first())
        && edges_ok(text.as_bytes().last())
        && !text.contains("..");
    if ok {
        Ok(text.to_owned())
    } else {
        Err("must be an S3 bucket name: 3 to 63 of a-z 0-9 . -, starting and ending with a letter or digit".into())
    }
}

/// A key prefix: `/`-separated segments of A-Z a-z 0-9 _ . - (not `.` or `..`); slashes at
/// either end are dropped.
fn parse_bucket_prefix(text: &str) -> Result<String, String> {
    let trimmed = text.trim_matches('/');
    let segment_ok = |segment: &str| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    };
    if trimmed.is_empty() || trimmed.len() > 512 || !trimmed.split('/').all(segment_ok) {
        return Err(
            "must be /-separated parts of A-Z a-z 0-9 _ . - (no empty part, . or ..), e.g. recall-frames/prod"
                .into(),
        );
    }
    Ok(trimmed.to_owned())
}

/// A region name such as `us-east-1`, or Tigris's `auto`.
fn parse_bucket_region(text: &str) -> Result<String, String> {
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(text.to_owned())
    } else {
        Err("must be a region name such as us-east-1 (Tigris: auto)".into())
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// A positive duration as people write it: `20s`, `500ms`, `2m`.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 20s, 500ms, 2m)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

/// The shortest retention period taken: anything shorter is almost surely `m` (minutes)
/// written for months, which would delete every recording.
const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// A retention period (RETENTION, `delete --older-than`): at least an hour, in the units
/// of [`parse_duration`] (`h` hours, `d` days, `w` weeks; `m` is minutes).
pub(crate) fn parse_retention(text: &str) -> Result<Duration, String> {
    let duration = parse_duration(text).map_err(|_| {
        format!("{text:?} is not a period: write e.g. 30d (days), 12h (hours) or 8w (weeks)")
    })?;
    if duration < MIN_RETENTION {
        return Err(format!(
            "{text:?} is {}, shorter than the least retention, one hour: `m` is minutes, not \
             months. Write e.g. 30d (days), 12h (hours) or 8w (weeks)",
            format_period(duration)
        ));
    }
    Ok(duration)
}

/// A period as RETENTION and `delete --older-than` echo it: in its largest whole unit,
/// `30d`, `36h`, `90m`, `45s`.
pub fn format_period(period: Duration) -> String {
    let seconds = period.as_secs();
    match seconds {
        0 => format!("{}ms", period.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Config {
    /// Where recordings are stored, for messages: `DATA_DIR ./frames` or `bucket
    /// s3://name/prefix/`.
    pub fn store_place(&self) -> String {
        match &self.bucket_name {
            Some(name) => format!(
                "bucket s3://{name}/{}",
                self.bucket_prefix
                    .as_ref()
                    .map(|prefix| format!("{prefix}/"))
                    .unwrap_or_default()
            ),
            None => format!("DATA_DIR {}", self.data_dir.display()),
        }
    }

    /// Checks what no single flag can: settings that must agree with each other.
    pub fn check(&self) -> Result<(), String> {
        if self.ws_idle_timeout <= self.ping_interval {
            return Err(format!(
                "WS_IDLE_TIMEOUT ({:?}) must be longer than PING_INTERVAL ({:?}), or quiet bots \
                 are closed before they are pinged",
                self.ws_idle_timeout, self.ping_interval
            ));
        }
        self.check_bucket()
    }

    /// The bucket settings agree: with BUCKET_NAME, both halves of the key; without it, no
    /// bucket setting that would be silently ignored.
    fn check_bucket(&self) -> Result<(), String> {
        let keys = (
            self.bucket_access_key_id.is_some(),
            self.bucket_secret_access_key.is_some(),
        );
        match (&self.bucket_name, keys) {
            (Some(_), (true, true)) => Ok(()),
            (Some(_), _) => Err(
                "BUCKET_NAME is set, so AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must both be \
                 set too (`fly storage create` sets all three)"
                    .into(),
            ),
            (None, _) if self.bucket_prefix.is_some() || self.bucket_endpoint.is_some() => Err(
                "BUCKET_PREFIX or AWS_ENDPOINT_URL_S3 is set but BUCKET_NAME is not: set \
                 BUCKET_NAME to store recordings in a bucket, or unset them to use DATA_DIR"
                    .into(),
            ),
            (None, _) => Ok(()),
        }
    }
}
