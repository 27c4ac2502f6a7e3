//! The websocket endpoint Recall's bots stream to: the token check before the upgrade, the
//! read loop, and the hand-off of decoded frames and participant events to the pipeline.
//!
//! A refused message is counted, logged (rate-limited) and answered with a JSON error
//! message on the same socket; the connection stays open. Only a message over the size
//! limit closes the connection, with code 1009, and a connection that sends nothing, not
//! even a pong, for `WS_IDLE_TIMEOUT` is closed with 1008.
//!
//! Before the upgrade: the token, then Recall's signature when a verification secret is
//! set, then a free slot under `MAX_CONNECTIONS` (503 when there is none).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum_tws::{CloseCode, Limits, Message, WebSocket, WebSocketError, WebSocketUpgrade};
use futures_util::{FutureExt as _, Sink, SinkExt as _, Stream, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::audio::{AudioChunk, AudioTrackKey};
use crate::error::ApiError;
use crate::event::{self, Inbound, Refusal, RefusalReason};
use crate::frame::{Frame, StreamKey};
use crate::metrics::Tally;
use crate::sink::AudioOutcome;
use crate::state::AppState;

/// How long a closing connection waits for the bot to acknowledge our close frame, reading
/// (and saving) whatever the bot sent before it saw it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// How long a connection closed for a message over the limit stays open, unread, before its
/// socket is dropped.
const TOO_LARGE_LINGER: Duration = Duration::from_secs(1);

/// Messages up to this size are decoded on the connection's task, larger ones in the
/// blocking pool. A frame's decode is a SIMD search and a SIMD base64 decode (the JSON
/// parser reads only the kilobyte around the image), about 1.7 instructions a byte: a 450 KB
/// frame holds an async worker for some tens of microseconds, less than the trip through the
/// pool costs (two thread wake-ups, and spinning on the pool's lock under load). Larger
/// screenshares still go there.
const DECODE_IN_PLACE_BYTES: usize = 1024 * 1024;

#[derive(Deserialize)]
pub struct WsParams {
    #[serde(default)]
    token: Option<String>,
}

pub async fn accept_ws(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<WsParams>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketError>,
) -> Response {
    if !params
        .token
        .is_some_and(|token| state.ws_token.matches(&token))
    {
        state.metrics.refuse_upgrade("token");
        tracing::warn!(%peer, "websocket refused: missing or wrong token");
        return ApiError::WsTokenRejected.into_response();
    }
    if let Some(secret) = &state.config.recall_verification_secret
        && let Err(error) = secret.verify(&headers, jiff::Timestamp::now())
    {
        state.metrics.refuse_upgrade("signature");
        tracing::warn!(%peer, %error, "websocket refused: no valid Recall signature");
        return ApiError::WsSignatureRejected.into_response();
    }
    if state.shutdown.is_cancelled() {
        state.metrics.refuse_upgrade("shutting_down");
        return ApiError::ShuttingDown.into_response();
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    // Taken before the upgrade and held until the connection ends.
    let Ok(slot) = state.ws_slots.clone().try_acquire_owned() else {
        state.metrics.refuse_upgrade("connection_limit");
        tracing::warn!(
            %peer,
            max_connections = state.config.max_connections,
            "websocket refused: MAX_CONNECTIONS are open"
        );
        return ApiError::TooManyConnections.into_response();
    };
    let limit = state.config.max_message_bytes;
    let connections = state.connections.clone();
    // tokio-websockets reads each message into one buffer of its full size, straight from
    // the socket (no zero-filling), and a quiet connection keeps only its 8 KiB start.
    upgrade
        .limits(Limits::default().max_payload_len(Some(limit)))
        .on_failed_upgrade(|error| tracing::warn!(%error, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            let id = state.next_connection_id();
            let span = tracing::info_span!("connection", id, %peer);
            connections.track_future(serve_socket(socket, state, slot).instrument(span))
        })
}

/// Why a connection ended, for the log.
#[derive(Debug)]
enum End {
    PeerClosed,
    PeerGone,
    TooLarge,
    Idle,
    ShutdownHandshakeDone,
    ShutdownHandshakeTimedOut,
    PipelineClosed,
    Error(WebSocketError),
}

impl End {
    /// Whether closing the socket waits on nothing more from the bot: it sent its close
    /// frame, or a message over the limit, after which tokio-websockets reads no more.
    fn handshake_over(&self) -> bool {
        matches!(
            self,
            End::PeerClosed | End::ShutdownHandshakeDone | End::TooLarge
        )
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            End::PeerClosed => f.write_str("the bot closed the connection"),
            End::PeerGone => f.write_str("the connection dropped without a close frame"),
            End::TooLarge => f.write_str("a message was over MAX_MESSAGE_BYTES"),
            End::Idle => f.write_str("nothing, not even a pong, for WS_IDLE_TIMEOUT"),
            End::ShutdownHandshakeDone => f.write_str("closed for shutdown"),
            End::ShutdownHandshakeTimedOut => {
                f.write_str("closed for shutdown; the bot did not acknowledge")
            }
            End::PipelineClosed => f.write_str("the server stopped taking frames"),
            End::Error(error) => write!(f, "websocket error: {error}"),
        }
    }
}

async fn serve_socket(socket: WebSocket, state: AppState, _slot: OwnedSemaphorePermit) {
    let (sender, receiver) = socket.split();
    serve_connection(sender, receiver, state).await;
}

/// One connection, from the bot's first message to its close. Generic over the socket's two
/// halves, as axum's `testing-websockets` example is, so that tests drive it without one.
async fn serve_connection<W, R>(sender: W, receiver: R, state: AppState) -> End
where
    W: Sink<Message, Error = WebSocketError> + Unpin,
    R: Stream<Item = Result<Message, WebSocketError>> + Unpin,
{
    state.metrics.connections_open.inc();
    state.metrics.connections_total.inc();
    tracing::info!("bot connected");
    let mut connection = Connection {
        tally: Arc::new(Tally::new(tracing::Span::current())),
        state: state.clone(),
        sender,
        streams: HashMap::new(),
        audio_tracks: HashMap::new(),
        decoder: event::Decoder::default(),
    };
    let end = connection.read(receiver).await;
    // Sends what is queued (our close frame, or the answer to the bot's), then closes the
    // socket. tokio-websockets' close waits for the bot's close frame, so it is used only
    // where that has come: a bot that went quiet or never answered is not waited on again.
    let finish = async {
        if end.handshake_over() {
            connection.sender.close().await
        } else {
            connection.sender.flush().await
        }
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
    if matches!(end, End::TooLarge) {
        // The rest of the refused message is still coming, unread: closing the socket now
        // would reset the connection, and a reset can discard our close frame (1009, with
        // the limit) before the bot reads it. Its side was shut already; let it read.
        tokio::time::sleep(TOO_LARGE_LINGER).await;
    }
    state.metrics.connections_open.dec();
    tracing::info!(end = %end, "connection closed");
    // The summary is logged when the last of this connection's frames is saved.
    end
}

struct Connection<W> {
    state: AppState,
    tally: Arc<Tally>,
    sender: W,
    /// The streams this connection feeds, with when each last had a frame: at most
    /// `MAX_STREAMS_PER_CONNECTION`.
    streams: HashMap<StreamKey, Instant>,
    /// The audio tracks this connection feeds, likewise.
    audio_tracks: HashMap<AudioTrackKey, Instant>,
    /// Remembers the audio tracks' context, the same in each of their chunks.
    decoder: event::Decoder,
}

impl<W> Connection<W>
where
    W: Sink<Message, Error = WebSocketError> + Unpin,
{
    async fn read<R>(&mut self, mut receiver: R) -> End
    where
        R: Stream<Item = Result<Message, WebSocketError>> + Unpin,
    {
        let period = self.state.config.ping_interval;
        let mut ping = tokio::time::interval_at(Instant::now() + period, period);
        let shutdown = self.state.shutdown.clone();
        let mut closing_until: Option<Instant> = None;
        let idle_timeout = self.state.config.ws_idle_timeout;
        let mut heard_at = Instant::now();
        loop {
            let closing = closing_until.is_some();
            let close_deadline =
                tokio::time::sleep_until(closing_until.unwrap_or_else(Instant::now));
            let idle_deadline = tokio::time::sleep_until(heard_at + idle_timeout);
            tokio::select! {
                () = shutdown.cancelled(), if !closing => {
                    // Ask the bot to go; keep reading what it sent before it saw that.
                    closing_until = Some(Instant::now() + CLOSE_GRACE);
                    let close = Message::close(Some(CloseCode::GOING_AWAY), "server shutting down");
                    if let Err(error) = self.sender.send(close).await {
                        return End::Error(error);
                    }
                }
                () = close_deadline, if closing => return End::ShutdownHandshakeTimedOut,
                () = idle_deadline, if !closing => {
                    self.close_idle().await;
                    return End::Idle;
                }
                _ = ping.tick(), if !closing => {
                    if let Err(error) = self.sender.send(Message::ping(Vec::new())).await {
                        return End::Error(error);
                    }
                }
                message = receiver.next() => match message.inspect(|_| heard_at = Instant::now()) {
                    None => return if closing { End::ShutdownHandshakeDone } else { End::PeerGone },
                    Some(Ok(message)) if message.is_text() => {
                        if self.receive_text(message).await.is_err() {
                            return End::PipelineClosed;
                        }
                    }
                    Some(Ok(message)) if message.is_binary() => {
                        self.state.metrics.events_ignored.inc();
                        self.tally.ignored.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(message)) if message.is_close() => {
                        return if closing { End::ShutdownHandshakeDone } else { End::PeerClosed };
                    }
                    // Pings are answered by tokio-websockets; a pong only restarts the idle clock.
                    Some(Ok(_)) => {}
                    Some(Err(error)) if is_too_large(&error) => {
                        self.refuse_too_large(&error);
                        return End::TooLarge;
                    }
                    Some(Err(error)) => return End::Error(error),
                },
            }
        }
    }

    /// Decodes a text message (checked as UTF-8 by tokio-websockets as it arrived) and
    /// hands what it holds on.
    async fn receive_text(&mut self, text: Message) -> Result<(), crate::pipeline::PipelineClosed> {
        let (received_at, received) = (jiff::Timestamp::now(), std::time::Instant::now());
        // A message up to a 360p frame decodes in less than a trip to the blocking pool
        // and back costs; only larger ones go there, off the async workers.
        let decoded = if text.as_payload().len() <= DECODE_IN_PLACE_BYTES {
            Ok(self.decoder.decode(as_str(&text), received_at, received))
        } else {
            tokio::task::spawn_blocking(move || event::decode(as_str(&text), received_at, received))
                .await
        };
        match decoded {
            Ok(Ok(Inbound::Frame(frame))) => {
                if let Err(refusal) = self.admit(&frame) {
                    self.refuse(&refusal);
                    return Ok(());
                }
                self.state.metrics.frames_received.inc();
                self.tally.accepted.fetch_add(1, Ordering::Relaxed);
                self.state
                    .pipeline
                    .submit(frame, self.tally.clone())
                    .await?;
            }
            Ok(Ok(Inbound::ParticipantEvent(event))) => {
                if let Err(refusal) =
                    self.admit_recording(&event.recording.id, Some(event.participant.id))
                {
                    self.refuse(&refusal);
                    return Ok(());
                }
                // Events are small and rare (a few per participant per minute), so the
                // connection writes each one itself, in order, instead of queueing it. While
                // the sink is slow, this connection reads nothing more: the wait reaches the
                // bot as backpressure, as a full frame channel does. Nothing is held beyond
                // the event in hand, and nothing is dropped.
                match self.state.pipeline.record_event(&event).await {
                    Ok(()) => {
                        self.tally.events.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        self.tally.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(%error, event = %event.kind, recording = %event.recording.id,
                            participant = event.participant.id.0, "participant event not saved");
                    }
                }
            }
            Ok(Ok(Inbound::Audio(chunk))) => self.receive_audio(&chunk).await,
            Ok(Ok(Inbound::Ignored)) => {
                self.state.metrics.events_ignored.inc();
                self.tally.ignored.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(refusal)) => self.refuse(&refusal),
            Err(panic) => tracing::error!(error = %panic, "decoding a message panicked"),
        }
        Ok(())
    }

    /// Audio is written by the connection itself, in order, as events are: chunks are small
    /// (a few hundred bytes, dozens a second per participant), and waiting on the sink here
    /// reaches the bot as backpressure. Nothing is queued, nothing dropped.
    async fn receive_audio(&mut self, chunk: &AudioChunk) {
        if let Err(refusal) = self.admit_audio(chunk) {
            self.refuse(&refusal);
            return;
        }
        self.state.metrics.audio_chunks_received.inc();
        match self.state.pipeline.record_audio(chunk).await {
            Ok(AudioOutcome::Saved { .. }) => {
                self.tally.audio.fetch_add(1, Ordering::Relaxed);
            }
            Ok(AudioOutcome::Duplicate) => {
                self.tally.duplicates.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.tally.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, track = %chunk.track(), start_sample = chunk.start_sample,
                    "audio chunk not saved");
            }
        }
    }

    /// The checks a valid audio chunk must still pass: room on disk, and a place for its
    /// track under `MAX_STREAMS_PER_CONNECTION` (audio tracks counted apart from video).
    fn admit_audio(&mut self, chunk: &AudioChunk) -> Result<(), Refusal> {
        if self.state.disk.is_low() {
            return Err(Refusal::StorageLow);
        }
        let track = chunk.track();
        self.admit_recording(&track.recording, track.participant)?;
        let config = &self.state.config;
        take_place(
            &mut self.audio_tracks,
            &track,
            config.max_streams_per_connection,
            config.stream_idle_timeout,
        )
    }

    /// The checks a valid frame must still pass: room on disk, and a place for its stream
    /// under `MAX_STREAMS_PER_CONNECTION`.
    ///
    /// A frame of one stream too many is refused and the connection goes on, rather than
    /// closing it with 1008: a real bot in a meeting larger than the cap would reconnect,
    /// hit the cap again, and after Recall's 30 retries lose every stream of the meeting,
    /// where refusing keeps the first streams recording. Abuse stays bounded either way: a
    /// refused stream gets no channel, task or file, and the map here holds at most the cap.
    fn admit(&mut self, frame: &Frame) -> Result<(), Refusal> {
        if self.state.disk.is_low() {
            return Err(Refusal::StorageLow);
        }
        self.admit_recording(&frame.key.recording, Some(frame.key.participant))?;
        let config = &self.state.config;
        take_place(
            &mut self.streams,
            &frame.key,
            config.max_streams_per_connection,
            config.stream_idle_timeout,
        )
    }

    /// What is refused for its recording whatever it is: a deleted recording or
    /// participant is never written again, and at `MAX_STORED_BYTES` a recording not stored
    /// yet (and not being streamed into) is not started.
    fn admit_recording(
        &self,
        recording: &crate::frame::RecordingId,
        participant: Option<crate::frame::ParticipantId>,
    ) -> Result<(), Refusal> {
        let keeper = &self.state.keeper;
        if keeper.deletions().is_deleted(recording, None) {
            return Err(Refusal::Deleted {
                what: "this recording",
            });
        }
        if keeper.deletions().is_deleted(recording, participant) {
            return Err(Refusal::Deleted {
                what: "this participant of the recording",
            });
        }
        if keeper.refuses(recording) && !self.state.pipeline.is_streaming(recording) {
            return Err(Refusal::QuotaReached);
        }
        Ok(())
    }

    async fn close_idle(&mut self) {
        let timeout = self.state.config.ws_idle_timeout;
        self.state.metrics.ws_closed_idle.inc();
        tracing::warn!(
            ?timeout,
            "closing a websocket that sent nothing and answered no ping for WS_IDLE_TIMEOUT"
        );
        let reason = format!("idle: nothing received, not even a pong, for {timeout:?}");
        let close = Message::close(Some(CloseCode::POLICY_VIOLATION), &reason);
        // The bot may be gone: do not wait on it here (serve_socket bounds the close).
        let _ = self.sender.send(close).now_or_never();
    }

    fn refuse(&mut self, refusal: &Refusal) {
        let reason = refusal.reason();
        let message = refusal.to_string();
        self.count_refusal(reason, &message);
        let reply = json!({"error": {"reason": reason.as_str(), "message": message}}).to_string();
        // Best effort: a client that does not read its socket must not stall this one.
        let _ = self.sender.send(Message::text(reply)).now_or_never();
    }

    /// Counts a message over the limit. tokio-websockets has already queued the close,
    /// 1009 with "max length: <MAX_MESSAGE_BYTES>", and sends it as the connection closes.
    fn refuse_too_large(&mut self, error: &WebSocketError) {
        self.count_refusal(RefusalReason::TooLarge, &error.to_string());
    }

    fn count_refusal(&self, reason: RefusalReason, message: &str) {
        self.state.metrics.refused(reason);
        let count = self.tally.refused(reason);
        // 1st, 2nd, 4th, 8th...: every kind of mistake shows, a flood of one does not.
        if count.is_power_of_two() {
            tracing::warn!(
                reason = reason.as_str(),
                count,
                error = message,
                "message refused"
            );
        }
    }
}

fn is_too_large(error: &WebSocketError) -> bool {
    matches!(
        error,
        WebSocketError::Internal(axum_tws::Error::PayloadTooLong { .. })
    )
}

/// A text message's text. Only text messages are passed here, and tokio-websockets checked
/// them as UTF-8 as they arrived.
fn as_str(text: &Message) -> &str {
    text.as_text().unwrap_or_default()
}

/// A place for `key` among a connection's streams (or audio tracks) under
/// `MAX_STREAMS_PER_CONNECTION`, noting it was heard from now. Places quiet for
/// `STREAM_IDLE_TIMEOUT` are freed first when the cap is reached: their streams are closed.
fn take_place<K: Eq + std::hash::Hash + Clone>(
    places: &mut HashMap<K, Instant>,
    key: &K,
    limit: usize,
    idle: Duration,
) -> Result<(), Refusal> {
    let now = Instant::now();
    if let Some(last) = places.get_mut(key) {
        *last = now;
        return Ok(());
    }
    if places.len() >= limit {
        places.retain(|_, last| now.saturating_duration_since(*last) < idle);
    }
    if places.len() >= limit {
        return Err(Refusal::TooManyStreams { limit });
    }
    places.insert(key.clone(), now);
    Ok(())
}

#[cfg(test)]
mod tests {
    //! The read loop driven through channels in place of a socket, with paused time: pings,
    //! the idle close and the closing handshake at shutdown happen at exact instants.

    use std::io::Cursor;

    use base64::Engine as _;
    use parking_lot::Mutex;
    use tokio::sync::{Semaphore, mpsc};
    use tokio::task::JoinHandle;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::Config;
    use crate::catalog::Catalog;
    use crate::disk::DiskWatch;
    use crate::live::Live;
    use crate::metrics::Metrics;
    use crate::pipeline::tests::{Call, RecordingSink};
    use crate::pipeline::{Pipeline, PipelineConfig};

    /// The bot's side of a connection served without a socket.
    struct Bot {
        /// What the bot sends; dropping it is the connection dropping.
        send: mpsc::Sender<Result<Message, WebSocketError>>,
        /// What the server sent, each with when.
        received: Arc<Mutex<Vec<(Instant, Message)>>>,
        /// The connection's end, and when it came.
        end: JoinHandle<(End, Instant)>,
        start: Instant,
        /// DATA_DIR, kept for the test's length.
        _dir: tempfile::TempDir,
    }

    impl Bot {
        /// Serves one connection with the server's defaults, changed by `flags`; frames go
        /// to `sink`.
        async fn connect(sink: &RecordingSink, flags: &[&str]) -> (Bot, AppState) {
            let dir = tempfile::tempdir().unwrap();
            let data_dir = dir.path().to_str().unwrap().to_owned();
            let args = ["--data-dir", data_dir.as_str()].into_iter();
            let config = Config::from_args(args.chain(flags.iter().copied())).unwrap();
            let metrics = Arc::new(Metrics::default());
            let live = Live::default();
            let pipeline = Pipeline::new(
                PipelineConfig::of(&config),
                Arc::new(sink.clone()),
                metrics.clone(),
                live.clone(),
            );
            // Measured once, with no watermark: never low, and no task left ticking.
            let stopped = CancellationToken::new();
            stopped.cancel();
            let (disk, _) = DiskWatch::start(
                dir.path().to_path_buf(),
                0,
                config.disk_check_interval,
                metrics.clone(),
                stopped,
            )
            .await;
            let store: Arc<dyn crate::store::Store> =
                Arc::new(crate::store::memory::MemoryStore::default());
            let deletions = crate::deletion::Deletions::load(store.clone())
                .await
                .unwrap();
            let keeper = crate::retention::Keeper::new(
                store.clone(),
                deletions,
                crate::retention::KeeperConfig::of(&config),
                metrics.clone(),
            );
            let recall_media = crate::recall_media::RecallMedia::start(
                &config,
                store.clone(),
                None,
                metrics.clone(),
            )
            .await
            .unwrap();
            let catalog = Arc::new(Catalog::new(store.clone(), 1000));
            let exports = crate::export::Exports::start(
                &config,
                catalog.clone(),
                store,
                CancellationToken::new(),
            )
            .await;
            let state = AppState {
                keeper,
                catalog,
                exports,
                config: Arc::new(config),
                ws_token: crate::auth::Secret::parse_url_safe("test-ws-token-0123456789").unwrap(),
                pipeline,
                metrics,
                live,
                connections: TaskTracker::new(),
                shutdown: CancellationToken::new(),
                bots: crate::recall::Bots::default(),
                connection_ids: Arc::default(),
                ws_slots: Arc::new(Semaphore::new(1)),
                disk,
                bucket: None,
                recall_media,
            };

            let received = Arc::new(Mutex::new(Vec::new()));
            let sender = Box::pin(futures_util::sink::unfold(
                received.clone(),
                |received, message: Message| async move {
                    received.lock().push((Instant::now(), message));
                    Ok::<_, WebSocketError>(received)
                },
            ));
            let (send, from_bot) = mpsc::channel(16);
            let receiver = Box::pin(futures_util::stream::unfold(
                from_bot,
                |mut from_bot| async move { from_bot.recv().await.map(|m| (m, from_bot)) },
            ));
            let start = Instant::now();
            let serving = serve_connection(sender, receiver, state.clone());
            let end = tokio::spawn(async move { (serving.await, Instant::now()) });
            let bot = Bot {
                send,
                received,
                end,
                start,
                _dir: dir,
            };
            (bot, state)
        }

        /// Sends as a bot would: into the void, once the server has ended the connection.
        async fn send(&self, message: Message) {
            let _ = self.send.send(Ok(message)).await;
        }

        async fn sleep_until(&self, seconds: u64) {
            tokio::time::sleep_until(self.start + secs(seconds)).await;
        }

        /// How the connection ended, and how long after it started.
        async fn end(&mut self) -> (End, Duration) {
            let (end, at) = (&mut self.end).await.unwrap();
            (end, at - self.start)
        }

        /// What the server sent, each with how long after the start: `ping`, or
        /// `close <code>`, or the text.
        fn received(&self) -> Vec<(Duration, String)> {
            let received = self.received.lock();
            received
                .iter()
                .map(|(at, message)| {
                    let shown = match message.as_close() {
                        _ if message.is_ping() => "ping".to_owned(),
                        Some((code, _)) => format!("close {}", u16::from(code)),
                        None => format!("{:?}", message.as_text()),
                    };
                    (*at - self.start, shown)
                })
                .collect()
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn pings(from: u64, to: u64, every: u64) -> Vec<(Duration, String)> {
        (from..=to)
            .step_by(every as usize)
            .map(|s| (secs(s), "ping".to_owned()))
            .collect()
    }

    /// A frame event, as Recall sends one, of an 8x8 PNG at `relative` seconds.
    fn frame_message(relative: f64) -> Message {
        let mut png = Vec::new();
        image::RgbImage::new(8, 8)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let event = json!({
            "event": event::FRAME_EVENT,
            "data": {
                "data": {
                    "buffer": base64::engine::general_purpose::STANDARD.encode(&png),
                    "timestamp": {"relative": relative, "absolute": null},
                    "type": "webcam",
                    "participant": {"id": 1, "name": "Alice"}
                },
                "recording": {"id": "rec", "metadata": {}}
            }
        });
        Message::text(event.to_string())
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_bot_is_pinged_every_interval_then_closed_when_idle() {
        let flags = ["--ping-interval", "20s", "--ws-idle-timeout", "110s"];
        let (mut bot, state) = Bot::connect(&RecordingSink::default(), &flags).await;

        let (end, at) = bot.end().await;
        assert!(matches!(end, End::Idle), "{end:?}");
        assert_eq!(at, secs(110));
        let mut expected = pings(20, 100, 20);
        expected.push((
            secs(110),
            format!("close {}", u16::from(CloseCode::POLICY_VIOLATION)),
        ));
        assert_eq!(bot.received(), expected);
        assert_eq!(state.metrics.ws_closed_idle.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn anything_from_the_bot_even_a_pong_restarts_the_idle_clock() {
        let flags = ["--ping-interval", "20s", "--ws-idle-timeout", "110s"];
        let (mut bot, _state) = Bot::connect(&RecordingSink::default(), &flags).await;

        bot.sleep_until(100).await;
        bot.send(Message::pong(Vec::new())).await;
        let (end, at) = bot.end().await;
        assert!(matches!(end, End::Idle), "{end:?}");
        assert_eq!(at, secs(210), "idle for 110 s after the pong");
        let mut expected = pings(20, 200, 20);
        expected.push((
            secs(210),
            format!("close {}", u16::from(CloseCode::POLICY_VIOLATION)),
        ));
        assert_eq!(bot.received(), expected);
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_a_bot_that_does_not_answer_is_given_the_close_grace_then_dropped() {
        let (mut bot, state) = Bot::connect(&RecordingSink::default(), &[]).await;

        bot.sleep_until(30).await;
        state.shutdown.cancel();
        let (end, at) = bot.end().await;
        assert!(matches!(end, End::ShutdownHandshakeTimedOut), "{end:?}");
        assert_eq!(at, secs(30) + CLOSE_GRACE);
        // Pinged at the default 20 s; nothing but the close after shutdown started.
        assert_eq!(
            bot.received(),
            [
                (secs(20), "ping".to_owned()),
                (
                    secs(30),
                    format!("close {}", u16::from(CloseCode::GOING_AWAY))
                ),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_what_the_bot_sends_before_its_close_is_still_saved() {
        let sink = RecordingSink::default();
        let (mut bot, state) = Bot::connect(&sink, &[]).await;

        bot.sleep_until(30).await;
        state.shutdown.cancel();
        bot.sleep_until(32).await;
        bot.send(frame_message(12.5)).await;
        bot.sleep_until(34).await;
        bot.send(Message::close(None, "")).await;
        let (end, at) = bot.end().await;
        assert!(matches!(end, End::ShutdownHandshakeDone), "{end:?}");
        assert_eq!(at, secs(34), "the bot's close ends the wait");

        assert!(state.pipeline.close(secs(1)).await);
        let written: Vec<Call> = sink
            .calls_since(bot.start)
            .into_iter()
            .map(|(_, call)| call)
            .filter(|call| matches!(call, Call::Write { .. }))
            .collect();
        assert_eq!(
            written,
            [Call::Write {
                writer: 0,
                relative_ms: 12_500
            }]
        );
    }
}
