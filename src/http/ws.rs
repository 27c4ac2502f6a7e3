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

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tracing::Instrument as _;

use crate::error::ApiError;
use crate::event::{self, Inbound, Refusal, RefusalReason};
use crate::frame::{Frame, StreamKey};
use crate::metrics::Tally;
use crate::state::AppState;

/// How long a closing connection waits for the bot to acknowledge our close frame, reading
/// (and saving) whatever the bot sent before it saw it.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The socket's read buffer, which every connection keeps while idle (tungstenite zero-fills
/// it before each read). The default, 128 KiB, made 2,000 quiet bots hold 285 MB; at 32 KiB
/// they hold under 100 MB. A message is still read into one buffer of its full size: only
/// the reads are smaller (13 rather than 3 per 450 KB frame, no measurable CPU difference).
const READ_BUFFER_BYTES: usize = 32 * 1024;

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
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
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
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_failed_upgrade(|error| tracing::warn!(%error, "websocket upgrade failed"))
        .on_upgrade(move |socket| {
            let id = state.next_connection_id();
            let span = tracing::info_span!("connection", id, %peer);
            connections.track_future(serve_socket(socket, state, slot).instrument(span))
        })
}

/// Why a connection ended, for the log.
enum End {
    PeerClosed,
    PeerGone,
    TooLarge,
    Idle,
    ShutdownHandshakeDone,
    ShutdownHandshakeTimedOut,
    PipelineClosed,
    Error(axum::Error),
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
    state.metrics.connections_open.inc();
    state.metrics.connections_total.inc();
    tracing::info!("bot connected");
    let (sender, receiver) = socket.split();
    let mut connection = Connection {
        tally: Arc::new(Tally::new(tracing::Span::current())),
        state: state.clone(),
        sender,
        streams: HashMap::new(),
    };
    let end = connection.read(receiver).await;
    // Completes the closing handshake where one was started, and lets the bot know.
    let _ = tokio::time::timeout(CLOSE_GRACE, connection.sender.close()).await;
    state.metrics.connections_open.dec();
    tracing::info!(end = %end, "connection closed");
    // The summary is logged when the last of this connection's frames is saved.
}

struct Connection {
    state: AppState,
    tally: Arc<Tally>,
    sender: SplitSink<WebSocket, Message>,
    /// The streams this connection feeds, with when each last had a frame: at most
    /// `MAX_STREAMS_PER_CONNECTION`.
    streams: HashMap<StreamKey, Instant>,
}

impl Connection {
    async fn read(&mut self, mut receiver: SplitStream<WebSocket>) -> End {
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
                    let frame = CloseFrame { code: close_code::AWAY, reason: "server shutting down".into() };
                    if let Err(error) = self.sender.send(Message::Close(Some(frame))).await {
                        return End::Error(error);
                    }
                }
                () = close_deadline, if closing => return End::ShutdownHandshakeTimedOut,
                () = idle_deadline, if !closing => {
                    self.close_idle().await;
                    return End::Idle;
                }
                _ = ping.tick(), if !closing => {
                    if let Err(error) = self.sender.send(Message::Ping(Default::default())).await {
                        return End::Error(error);
                    }
                }
                message = receiver.next() => match message.inspect(|_| heard_at = Instant::now()) {
                    None => return if closing { End::ShutdownHandshakeDone } else { End::PeerGone },
                    Some(Ok(Message::Text(text))) => {
                        if self.receive_text(text).await.is_err() {
                            return End::PipelineClosed;
                        }
                    }
                    Some(Ok(Message::Binary(_))) => {
                        self.state.metrics.events_ignored.inc();
                        self.tally.ignored.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(Ok(Message::Close(_))) => {
                        return if closing { End::ShutdownHandshakeDone } else { End::PeerClosed };
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Err(error)) if is_too_large(&error) => {
                        self.refuse_too_large(&error).await;
                        return End::TooLarge;
                    }
                    Some(Err(error)) => return End::Error(error),
                },
            }
        }
    }

    async fn receive_text(
        &mut self,
        text: Utf8Bytes,
    ) -> Result<(), crate::pipeline::PipelineClosed> {
        let (received_at, received) = (jiff::Timestamp::now(), std::time::Instant::now());
        let decoded = tokio::task::spawn_blocking(move || {
            event::decode(text.as_str(), received_at, received)
        })
        .await;
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
            Ok(Ok(Inbound::Ignored)) => {
                self.state.metrics.events_ignored.inc();
                self.tally.ignored.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(refusal)) => self.refuse(&refusal),
            Err(panic) => tracing::error!(error = %panic, "decoding a message panicked"),
        }
        Ok(())
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
        let now = Instant::now();
        if let Some(last) = self.streams.get_mut(&frame.key) {
            *last = now;
            return Ok(());
        }
        let limit = self.state.config.max_streams_per_connection;
        if self.streams.len() >= limit {
            // Streams quiet for STREAM_IDLE_TIMEOUT have been closed: their places are free.
            let idle = self.state.config.stream_idle_timeout;
            self.streams
                .retain(|_, last| now.saturating_duration_since(*last) < idle);
        }
        if self.streams.len() >= limit {
            return Err(Refusal::TooManyStreams { limit });
        }
        self.streams.insert(frame.key.clone(), now);
        Ok(())
    }

    async fn close_idle(&mut self) {
        let timeout = self.state.config.ws_idle_timeout;
        self.state.metrics.ws_closed_idle.inc();
        tracing::warn!(
            ?timeout,
            "closing a websocket that sent nothing and answered no ping for WS_IDLE_TIMEOUT"
        );
        let frame = CloseFrame {
            code: close_code::POLICY,
            reason: format!("idle: nothing received, not even a pong, for {timeout:?}").into(),
        };
        // The bot may be gone: do not wait on it here (serve_socket bounds the close).
        let _ = self.sender.send(Message::Close(Some(frame))).now_or_never();
    }

    fn refuse(&mut self, refusal: &Refusal) {
        let reason = refusal.reason();
        let message = refusal.to_string();
        self.count_refusal(reason, &message);
        let reply = json!({"error": {"reason": reason.as_str(), "message": message}}).to_string();
        // Best effort: a client that does not read its socket must not stall this one.
        let _ = self.sender.send(Message::Text(reply.into())).now_or_never();
    }

    async fn refuse_too_large(&mut self, error: &axum::Error) {
        let limit = self.state.config.max_message_bytes;
        self.count_refusal(RefusalReason::TooLarge, &error.to_string());
        let reason = format!("message too big: the limit is {limit} bytes");
        let frame = CloseFrame {
            code: close_code::SIZE,
            reason: reason.into(),
        };
        let _ = self.sender.send(Message::Close(Some(frame))).await;
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

fn is_too_large(error: &axum::Error) -> bool {
    use std::error::Error as _;
    let inner = error.source();
    matches!(
        inner.and_then(|e| e.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong { .. }
        ))
    )
}
