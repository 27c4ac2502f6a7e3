//! One simulated bot: its websocket connection, the messages it sends in order, and the
//! reconnection that Recall's bots do (a fixed number of attempts a fixed delay apart),
//! resuming at the first message not yet sent.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::source::FrameSource;
use super::wire::{self, EncodedPng, ParticipantEvent};
use super::{Plan, Refused, SimulateError, Stop, voice};
use crate::auth::signature::{self, SigningSecret};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a connection attempt may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a finished bot waits for the server to answer its close frame.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Close codes that say the server will not take what this bot sends: reconnecting and
/// sending the same again cannot help (protocol error, unsupported or invalid data, policy,
/// message too big, missing extension).
const FATAL_CLOSE_CODES: [u16; 6] = [1002, 1003, 1007, 1008, 1009, 1010];

/// The server's websocket URL, with its token, and how upgrade requests to it are made.
pub struct Endpoint {
    url: url::Url,
    /// Signs each upgrade as Recall does, when set.
    secret: Option<SigningSecret>,
}

impl Endpoint {
    /// Takes the URL the server printed, or the server's own address: `http(s)://` is taken
    /// as `ws(s)://`, an empty path or `/` as `/ws`, and `?token=` is added when the URL has
    /// none.
    pub fn parse(text: &str, token: Option<&str>) -> Result<Self, SimulateError> {
        let bad = || SimulateError::BadUrl(text.to_owned());
        let mut url = url::Url::parse(text).map_err(|_| bad())?;
        let scheme = match url.scheme() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            _ => return Err(bad()),
        };
        url.set_scheme(scheme).map_err(|()| bad())?;
        if url.host_str().is_none() {
            return Err(bad());
        }
        if matches!(url.path(), "" | "/") {
            url.set_path("/ws");
        }
        let has_token = url.query_pairs().any(|(key, _)| key == "token");
        if let (false, Some(token)) = (has_token, token) {
            url.query_pairs_mut().append_pair("token", token);
        }
        Ok(Endpoint { url, secret: None })
    }

    pub fn signed_with(self, secret: Option<SigningSecret>) -> Self {
        Endpoint { secret, ..self }
    }

    /// The browse page of a recording on this server: `http(s)://host:port/recordings/<id>`,
    /// under the same path prefix as the websocket's `/ws`.
    pub fn recording_page(&self, recording: &str) -> String {
        let mut page = self.url.clone();
        page.set_query(None);
        page.set_fragment(None);
        let scheme = if self.url.scheme() == "wss" {
            "https"
        } else {
            "http"
        };
        // ws -> http and wss -> https are both special schemes: the change cannot fail.
        let _ = page.set_scheme(scheme);
        let prefix = page.path().strip_suffix("/ws").unwrap_or("").to_owned();
        page.set_path(&format!("{prefix}/recordings/{recording}"));
        page.into()
    }

    /// The upgrade request of one connection attempt, made afresh for every attempt: a
    /// signed upgrade carries a new id and the current time, as Recall's do.
    fn upgrade_request(&self) -> Result<Request, tungstenite::Error> {
        let mut request = self.url.as_str().into_client_request()?;
        let headers = request.headers_mut();
        headers.insert(
            "user-agent",
            HeaderValue::from_static(concat!(
                "recall-frames-simulate/",
                env!("CARGO_PKG_VERSION")
            )),
        );
        if let Some(secret) = &self.secret {
            let id = format!("msg_{:032x}", rand::random::<u128>());
            let timestamp = jiff::Timestamp::now().as_second();
            let names = signature::WEBHOOK_HEADERS;
            for (name, value) in [
                (names.id, id.clone()),
                (names.timestamp, timestamp.to_string()),
                (names.signature, signature::sign(secret, &id, timestamp)),
            ] {
                let value = HeaderValue::from_str(&value)
                    .map_err(|e| tungstenite::Error::HttpFormat(e.into()))?;
                headers.insert(name, value);
            }
        }
        Ok(request)
    }
}

/// Characters of a refused upgrade's body that an error message shows.
const BODY_SHOWN: usize = 120;

/// The first non-blank line of a refused upgrade's body, cut short: our server answers with
/// one line of reason, but a wrong URL can answer with a whole HTML page.
fn first_line(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let first = lines.next().unwrap_or_default();
    let mut shown: String = first.chars().take(BODY_SHOWN).collect();
    if shown.len() < first.len() || lines.next().is_some() {
        shown.push('…');
    }
    shown
}

/// The URL with its token hidden, for messages.
impl Endpoint {
    /// The command that starts a server where this endpoint points, as far as a port says.
    fn serve_command(&self) -> String {
        match self.url.port_or_known_default() {
            Some(port) if port != crate::config::DEFAULT_PORT => {
                format!("recall-frames serve --port {port}")
            }
            _ => "recall-frames serve".to_owned(),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut bare = self.url.clone();
        bare.set_query(None);
        write!(f, "{bare}")?;
        for (i, (key, value)) in self.url.query_pairs().enumerate() {
            let value = if key == "token" { "…".into() } else { value };
            write!(f, "{}{key}={value}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// What all bots count together, for the progress line and the report.
pub struct Shared {
    progress: Progress,
    refusals: Mutex<BTreeMap<String, Refused>>,
    /// Some bot of this run has connected: the server was there, so a refused connection
    /// is a restart to wait for, as Recall would, rather than a wrong URL.
    connected: AtomicBool,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub png_bytes: u64,
    pub message_bytes: u64,
    pub events: u64,
    pub resent: u64,
    pub reconnects: u64,
}

impl Shared {
    pub fn new(progress: Progress) -> Self {
        Shared {
            progress,
            refusals: Mutex::default(),
            connected: AtomicBool::new(false),
        }
    }

    pub fn totals(&self) -> Totals {
        self.progress.counters().totals()
    }

    pub fn refusals(&self) -> BTreeMap<String, Refused> {
        self.refusals.lock().clone()
    }

    /// Reads a text message from the server: Recall's servers send nothing, ours sends
    /// `{"error":{"reason":...,"message":...}}` for each message it refuses.
    fn server_said(&self, bot: usize, text: &str) {
        #[derive(serde::Deserialize)]
        struct Reply {
            error: ReplyError,
        }
        #[derive(serde::Deserialize)]
        struct ReplyError {
            reason: String,
            message: String,
        }
        let Ok(Reply { error }) = serde_json::from_str::<Reply>(text) else {
            let shown: String = text.chars().take(200).collect();
            self.progress
                .note(&format!("bot {}: the server said {shown:?}", bot + 1));
            return;
        };
        self.progress
            .counters()
            .refused
            .fetch_add(1, Ordering::Relaxed);
        let mut refusals = self.refusals.lock();
        let entry = refusals.entry(error.reason.clone()).or_insert_with(|| {
            self.progress.note(&format!(
                "bot {}: the server refused a message: {}: {}",
                bot + 1,
                error.reason,
                error.message
            ));
            Refused {
                count: 0,
                first_message: error.message,
            }
        });
        entry.count += 1;
    }
}

/// How far a bot got: frames sent of each of its streams (a frame is sent once the socket
/// took all of it).
pub struct Outcome {
    pub bot: usize,
    pub ticks_sent: Vec<u64>,
    /// Per participant, each audio chunk sent: its first sample and its samples.
    pub audio_sent: Vec<Vec<(u64, u64)>>,
}

/// The next message of a bot, and where it stands: the messages are the prologue of
/// participant events, then round after round of one frame per stream, then the epilogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Event {
        member: usize,
        event: ParticipantEvent,
        /// Index in the prologue or epilogue.
        index: usize,
        closing: bool,
    },
    Frame {
        tick: u64,
        stream: usize,
    },
    /// With `--audio` and `--participant-events`: after a round's frames, the
    /// `speech_off`/`speech_on` of a turn that begins in the round.
    Speech {
        tick: u64,
        index: usize,
    },
    /// With `--audio`: after a round's frames, each participant's audio up to the next.
    Audio {
        tick: u64,
        member: usize,
        chunk: u64,
    },
    Done,
}

struct Cursor {
    step: Step,
    prologue: Vec<(usize, ParticipantEvent)>,
    epilogue: Vec<(usize, ParticipantEvent)>,
    streams: usize,
    /// With `--audio`: participants, and audio chunks of each per round.
    audio: Option<(usize, u64)>,
    /// With `--audio` (in turns) and `--participant-events`: the turns, told as events.
    turns: Option<Turns>,
    /// The round whose pacing wait is behind us (a reconnect mid-round does not wait again).
    paced: Option<u64>,
    /// The current message's first send failed: sending it again may repeat it.
    unsure: bool,
}

impl Cursor {
    fn new(plan: &Plan, bot: usize) -> Self {
        let cast = &plan.bots[bot].cast;
        let (mut prologue, mut epilogue) = (Vec::new(), Vec::new());
        if plan.participant_events {
            for (member, m) in cast.iter().enumerate() {
                prologue.push((member, ParticipantEvent::Join));
                prologue.push((member, ParticipantEvent::WebcamOn));
                if m.screenshare {
                    prologue.push((member, ParticipantEvent::ScreenshareOn));
                }
                epilogue.push((member, ParticipantEvent::Leave));
            }
        }
        let mut cursor = Cursor {
            step: Step::Done,
            prologue,
            epilogue,
            streams: plan.bots[bot].streams.len(),
            audio: plan
                .audio_chunks_per_tick()
                .map(|chunks| (cast.len(), chunks)),
            turns: (plan.participant_events && plan.audio_chunk_ms.is_some() && !plan.audio_all)
                .then(|| Turns {
                    members: cast.len(),
                    clock_fps: plan.rate.clock_fps(),
                }),
            paced: None,
            unsure: false,
        };
        cursor.step = cursor.event_or(0, false, Step::Frame { tick: 0, stream: 0 });
        cursor
    }

    fn event_or(&self, index: usize, closing: bool, otherwise: Step) -> Step {
        let list = if closing {
            &self.epilogue
        } else {
            &self.prologue
        };
        match list.get(index) {
            Some(&(member, event)) => Step::Event {
                member,
                event,
                index,
                closing,
            },
            None => otherwise,
        }
    }

    fn advance(&mut self) {
        self.unsure = false;
        self.step = match self.step {
            Step::Event {
                index,
                closing: false,
                ..
            } => self.event_or(index + 1, false, Step::Frame { tick: 0, stream: 0 }),
            Step::Event {
                index,
                closing: true,
                ..
            } => self.event_or(index + 1, true, Step::Done),
            Step::Frame { tick, stream } if stream + 1 < self.streams => Step::Frame {
                tick,
                stream: stream + 1,
            },
            Step::Frame { tick, .. } if self.audio.is_some() => self.speech_or_audio(tick, 0),
            Step::Speech { tick, index } => self.speech_or_audio(tick, index + 1),
            Step::Frame { tick, .. } => Step::Frame {
                tick: tick + 1,
                stream: 0,
            },
            Step::Audio {
                tick,
                member,
                chunk,
            } => match self.audio {
                Some((_, chunks)) if chunk + 1 < chunks => Step::Audio {
                    tick,
                    member,
                    chunk: chunk + 1,
                },
                Some((members, _)) if member + 1 < members => Step::Audio {
                    tick,
                    member: member + 1,
                    chunk: 0,
                },
                _ => Step::Frame {
                    tick: tick + 1,
                    stream: 0,
                },
            },
            Step::Done => Step::Done,
        };
    }

    /// After round `tick`'s frames: its speech event `index` if there is one, else its audio.
    fn speech_or_audio(&self, tick: u64, index: usize) -> Step {
        let changes = self.turns.map_or(0, |turns| turns.changes(tick).len());
        if index < changes {
            Step::Speech { tick, index }
        } else {
            Step::Audio {
                tick,
                member: 0,
                chunk: 0,
            }
        }
    }

    /// Ends the frames before round `tick`: the epilogue comes next, led by the last
    /// speaker's `speech_off` when turns are told.
    fn finish_frames(&mut self, tick: u64) {
        if let (Some(turns), Some(last)) = (self.turns, tick.checked_sub(1)) {
            self.epilogue
                .insert(0, (turns.speaker(last), ParticipantEvent::SpeechOff));
        }
        self.step = self.event_or(0, true, Step::Done);
    }
}

/// The speech turns of `--audio` ([`voice::TURN_MS`] each, in turn), as the
/// `participant_events.speech_on`/`speech_off` a bot sends with them.
#[derive(Debug, Clone, Copy)]
struct Turns {
    members: usize,
    clock_fps: f64,
}

impl Turns {
    /// Round `tick`'s time into the meeting, as [`Plan::relative_ms`] has it.
    fn ms(self, tick: u64) -> u64 {
        (tick as f64 * 1000.0 / self.clock_fps).round() as u64
    }

    /// Who speaks in round `tick`.
    fn speaker(self, tick: u64) -> usize {
        (self.ms(tick) / voice::TURN_MS) as usize % self.members
    }

    /// The events of a turn that begins in round `tick`: who stops, who starts, and when.
    fn changes(self, tick: u64) -> Vec<(usize, ParticipantEvent, u64)> {
        let (from, to) = (self.ms(tick), self.ms(tick + 1));
        let start = from.div_ceil(voice::TURN_MS) * voice::TURN_MS;
        if start >= to {
            return Vec::new();
        }
        let turn = (start / voice::TURN_MS) as usize;
        let mut changes = Vec::new();
        if turn > 0 && self.members > 1 {
            changes.push((
                (turn - 1) % self.members,
                ParticipantEvent::SpeechOff,
                start,
            ));
        }
        if turn == 0 || self.members > 1 {
            changes.push((turn % self.members, ParticipantEvent::SpeechOn, start));
        }
        changes
    }
}

/// Runs one bot until it has sent everything, is cancelled, or cannot go on.
pub async fn run(
    plan: Arc<Plan>,
    frames: Arc<FrameSource>,
    shared: Arc<Shared>,
    bot: usize,
    cancel: CancellationToken,
) -> Result<Outcome, SimulateError> {
    let mut sender = Sender {
        bot,
        cursor: Cursor::new(&plan, bot),
        ticks_sent: vec![0; plan.bots[bot].streams.len()],
        audio_sent: vec![Vec::new(); plan.bots[bot].cast.len()],
        pacing: match plan.rate {
            super::Rate::PerSecond(fps) => {
                // Meetings do not start in step: bots spread their rounds over the period, so
                // that a server sees a steady flow rather than every bot's frames at once.
                let period = Duration::from_secs_f64(1.0 / fps);
                let phase = period.mul_f64(bot as f64 / plan.bots.len() as f64);
                let mut interval = tokio::time::interval_at(Instant::now() + phase, period);
                // After an outage, carry on at the usual pace rather than in a burst.
                interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
                Some(interval)
            }
            super::Rate::Max => None,
        },
        deadline: match plan.stop {
            Stop::Deadline(duration) => Some(Instant::now() + duration),
            Stop::Frames(_) => None,
        },
        plan,
        frames,
        shared,
        cancel,
        round: None,
    };
    sender.run().await?;
    Ok(Outcome {
        bot,
        ticks_sent: sender.ticks_sent,
        audio_sent: sender.audio_sent,
    })
}

struct Sender {
    plan: Arc<Plan>,
    frames: Arc<FrameSource>,
    shared: Arc<Shared>,
    bot: usize,
    cursor: Cursor,
    ticks_sent: Vec<u64>,
    audio_sent: Vec<Vec<(u64, u64)>>,
    pacing: Option<tokio::time::Interval>,
    deadline: Option<Instant>,
    cancel: CancellationToken,
    /// The PNGs of the round being sent.
    round: Option<(u64, Vec<Arc<EncodedPng>>)>,
}

/// Why sending on a connection stopped.
enum Stopped {
    Finished,
    Cancelled,
    /// The connection failed; the message at the cursor was not (surely) sent.
    Broken(String),
}

/// How a connection's reading side ended.
struct Ended {
    close: Option<CloseFrame>,
    error: Option<String>,
}

impl Sender {
    fn name(&self) -> String {
        format!("bot {}", self.bot + 1)
    }

    async fn run(&mut self) -> Result<(), SimulateError> {
        let mut connected_before = false;
        loop {
            let Some(socket) = self.connect(connected_before).await? else {
                return Ok(()); // cancelled while connecting
            };
            if connected_before {
                self.shared
                    .progress
                    .counters()
                    .reconnects
                    .fetch_add(1, Ordering::Relaxed);
                self.shared.progress.note(&format!(
                    "{}: reconnected; resuming at {}",
                    self.name(),
                    self.position()
                ));
            }
            connected_before = true;
            let (mut sink, stream) = socket.split();
            let closed = CancellationToken::new();
            let reader = tokio::spawn(read_replies(
                stream,
                self.shared.clone(),
                self.bot,
                closed.clone(),
            ));
            let stopped = self.send_all(&mut sink, &closed).await;
            match stopped {
                Stopped::Finished | Stopped::Cancelled => {
                    let frame = CloseFrame {
                        code: CloseCode::Normal,
                        reason: "simulation finished".into(),
                    };
                    // The server answers once it has read everything sent before the close.
                    if sink.send(Message::Close(Some(frame))).await.is_ok()
                        && tokio::time::timeout(CLOSE_TIMEOUT, closed.cancelled())
                            .await
                            .is_err()
                    {
                        self.shared.progress.note(&format!(
                            "{}: the server did not answer the close frame within {CLOSE_TIMEOUT:?}",
                            self.name()
                        ));
                    }
                    reader.abort();
                    return Ok(());
                }
                Stopped::Broken(send_error) => {
                    drop(sink);
                    let ended = finish_reading(reader, &closed).await;
                    let why = self.classify(&ended, &send_error)?;
                    self.shared.progress.note(&format!(
                        "{}: connection lost ({why}); reconnecting every {:?}, up to {} times",
                        self.name(),
                        self.plan.retry_delay,
                        self.plan.retries
                    ));
                }
            }
        }
    }

    /// Connects, retrying as Recall does. `None` when cancelled meanwhile.
    async fn connect(&self, reconnecting: bool) -> Result<Option<Socket>, SimulateError> {
        let mut attempts = 0;
        loop {
            if reconnecting || attempts > 0 {
                tokio::select! {
                    () = tokio::time::sleep(self.plan.retry_delay) => {}
                    () = self.cancel.cancelled() => return Ok(None),
                }
            }
            let attempt = async {
                let request = self.plan.endpoint.upgrade_request()?;
                tokio_tungstenite::connect_async_with_config(request, None, true).await
            };
            let error = tokio::select! {
                result = tokio::time::timeout(CONNECT_TIMEOUT, attempt) => match result {
                    Ok(Ok((socket, _response))) => {
                        self.shared.connected.store(true, Ordering::Relaxed);
                        return Ok(Some(socket));
                    }
                    Ok(Err(error)) => error,
                    Err(_elapsed) => tungstenite::Error::Io(std::io::ErrorKind::TimedOut.into()),
                },
                () = self.cancel.cancelled() => return Ok(None),
            };
            let reason = match error {
                tungstenite::Error::Http(response) => {
                    let status = response.status().as_u16();
                    let body = response
                        .body()
                        .as_deref()
                        .map(first_line)
                        .filter(|line| !line.is_empty())
                        .map(|line| format!(": {line}"))
                        .unwrap_or_default();
                    // Refusals (a wrong token) will not change; overload and restarts may.
                    if !matches!(status, 408 | 429 | 500..) {
                        return Err(SimulateError::UpgradeRefused { status, body });
                    }
                    format!("HTTP {status}{body}")
                }
                tungstenite::Error::Io(error)
                    if error.kind() == std::io::ErrorKind::ConnectionRefused
                        && !reconnecting
                        && !self.shared.connected.load(Ordering::Relaxed) =>
                {
                    return Err(SimulateError::NotReachable {
                        url: self.plan.endpoint.to_string(),
                        serve: self.plan.endpoint.serve_command(),
                    });
                }
                tungstenite::Error::Io(error) => error.to_string(),
                tungstenite::Error::Tls(error) => error.to_string(),
                other @ (tungstenite::Error::ConnectionClosed
                | tungstenite::Error::AlreadyClosed
                | tungstenite::Error::Protocol(_)) => other.to_string(),
                other => {
                    return Err(SimulateError::CannotConnect {
                        url: self.plan.endpoint.to_string(),
                        reason: other.to_string(),
                    });
                }
            };
            attempts += 1;
            if attempts >= self.plan.retries {
                return Err(SimulateError::GaveUp {
                    bot: self.bot + 1,
                    attempts,
                    last: reason,
                });
            }
            self.shared.progress.note(&format!(
                "{}: cannot connect ({reason}); attempt {} of {} in {:?}",
                self.name(),
                attempts + 1,
                self.plan.retries,
                self.plan.retry_delay
            ));
        }
    }

    /// Sends messages from the cursor on until done, cancelled or the connection breaks.
    async fn send_all(
        &mut self,
        sink: &mut SplitSink<Socket, Message>,
        closed: &CancellationToken,
    ) -> Stopped {
        loop {
            if self.cancel.is_cancelled() {
                return Stopped::Cancelled;
            }
            let (text, png_bytes) = match self.cursor.step {
                Step::Done => return Stopped::Finished,
                Step::Frame { tick, stream } => {
                    if self.out_of_frames(tick, stream) {
                        self.cursor.finish_frames(tick);
                        continue;
                    }
                    self.round(tick).await;
                    if let Some(stopped) = self.pace(tick, stream, closed).await {
                        return stopped;
                    }
                    let (text, png_bytes) = self.frame_message(tick, stream).await;
                    (text, Some(png_bytes))
                }
                Step::Audio {
                    tick,
                    member,
                    chunk,
                } => {
                    let plan = &self.plan;
                    let bot = &plan.bots[self.bot];
                    let speaking = plan.audio_chunk(tick, chunk).filter(|&(start, _)| {
                        plan.audio_all
                            || voice::is_speaking(
                                member,
                                bot.cast.len(),
                                start / crate::audio::SAMPLES_PER_MS,
                            )
                    });
                    let Some((start, samples)) = speaking else {
                        // Quiet, or past the round: nothing to send.
                        self.cursor.advance();
                        continue;
                    };
                    let text = wire::audio_event(
                        &bot.resources,
                        &bot.cast[member].participant,
                        plan.meeting_start,
                        start,
                        &voice::voice(member, start, samples),
                    );
                    (text, None)
                }
                Step::Speech { tick, index } => {
                    let plan = &self.plan;
                    let bot = &plan.bots[self.bot];
                    let changes = self.cursor.turns.map(|turns| turns.changes(tick));
                    let Some(&(member, event, ms)) =
                        changes.as_ref().and_then(|changes| changes.get(index))
                    else {
                        self.cursor.advance();
                        continue;
                    };
                    let text = wire::participant_event(
                        &bot.resources,
                        &bot.cast[member].participant,
                        event,
                        plan.meeting_start,
                        ms,
                    );
                    (text, None)
                }
                Step::Event {
                    member,
                    event,
                    closing,
                    ..
                } => {
                    let plan = &self.plan;
                    let bot = &plan.bots[self.bot];
                    let relative_ms = if closing {
                        plan.relative_ms(self.ticks_sent.iter().copied().max().unwrap_or(0))
                    } else {
                        0
                    };
                    let text = wire::participant_event(
                        &bot.resources,
                        &bot.cast[member].participant,
                        event,
                        plan.meeting_start,
                        relative_ms,
                    );
                    (text, None)
                }
            };
            let length = text.len() as u64;
            let sent = tokio::select! {
                sent = sink.send(Message::text(text)) => sent,
                () = closed.cancelled() => Err(tungstenite::Error::ConnectionClosed),
            };
            if let Err(error) = sent {
                self.cursor.unsure = true;
                return Stopped::Broken(error.to_string());
            }
            self.count_sent(length, png_bytes);
            self.cursor.advance();
        }
    }

    fn out_of_frames(&self, tick: u64, stream: usize) -> bool {
        match self.plan.stop {
            Stop::Frames(n) => tick >= n,
            // Whole rounds only, so every stream sends as many frames.
            Stop::Deadline(_) => {
                stream == 0
                    && self
                        .deadline
                        .is_some_and(|deadline| Instant::now() >= deadline)
            }
        }
    }

    /// At a steady rate, waits for the round's time before its first frame.
    async fn pace(
        &mut self,
        tick: u64,
        stream: usize,
        closed: &CancellationToken,
    ) -> Option<Stopped> {
        let interval = self.pacing.as_mut()?;
        if stream != 0 || self.cursor.paced == Some(tick) {
            return None;
        }
        tokio::select! {
            _ = interval.tick() => {
                self.cursor.paced = Some(tick);
                None
            }
            () = closed.cancelled() => Some(Stopped::Broken("the server closed the connection".into())),
            () = self.cancel.cancelled() => Some(Stopped::Cancelled),
        }
    }

    /// The PNGs of a round's frames, made once for all its streams: when frames are rendered
    /// as they are sent, the streams render in parallel and while the round's time comes.
    async fn round(&mut self, tick: u64) -> &[Arc<EncodedPng>] {
        if self.round.as_ref().is_none_or(|(made, _)| *made != tick) {
            let relative_ms = self.plan.relative_ms(tick);
            let streams = &self.plan.bots[self.bot].streams;
            let pngs = futures_util::future::join_all(
                streams
                    .iter()
                    .map(|stream| self.frames.frame(stream.look(), tick, relative_ms)),
            )
            .await;
            self.round = Some((tick, pngs));
        }
        self.round.as_ref().map_or(&[], |(_, pngs)| pngs)
    }

    /// A frame's message, and the size of its PNG.
    async fn frame_message(&mut self, tick: u64, stream: usize) -> (String, u64) {
        let png = self.round(tick).await[stream].clone();
        let plan = &self.plan;
        let bot = &plan.bots[self.bot];
        let stream = bot.streams[stream];
        let relative_ms = plan.relative_ms(tick);
        let text = wire::frame_event(
            &bot.resources,
            &bot.cast[stream.member].participant,
            stream.kind,
            plan.meeting_start,
            relative_ms,
            &png,
        );
        (text, png.png.len() as u64)
    }

    fn count_sent(&mut self, length: u64, png_bytes: Option<u64>) {
        let counters = self.shared.progress.counters();
        if self.cursor.unsure {
            counters.resent.fetch_add(1, Ordering::Relaxed);
        }
        counters.message_bytes.fetch_add(length, Ordering::Relaxed);
        match self.cursor.step {
            Step::Frame { tick, stream } => {
                self.ticks_sent[stream] = tick + 1;
                counters.frames.fetch_add(1, Ordering::Relaxed);
                counters
                    .png_bytes
                    .fetch_add(png_bytes.unwrap_or(0), Ordering::Relaxed);
            }
            Step::Event { .. } | Step::Speech { .. } => {
                counters.events.fetch_add(1, Ordering::Relaxed);
            }
            Step::Audio {
                tick,
                member,
                chunk,
            } => {
                if let Some((start, samples)) = self.plan.audio_chunk(tick, chunk) {
                    self.audio_sent[member].push((start, samples as u64));
                }
            }
            Step::Done => {}
        }
    }

    /// Where the cursor stands, for messages.
    fn position(&self) -> String {
        match self.cursor.step {
            Step::Frame { tick, .. } => format!(
                "frame {} ({:.1} s into the meeting)",
                tick,
                self.plan.relative_ms(tick) as f64 / 1000.0
            ),
            Step::Event { event, .. } => format!("the {} event", event.name()),
            Step::Speech { tick, .. } => format!("the speech events after frame {tick}"),
            Step::Audio { tick, member, .. } => {
                format!("participant {}'s audio after frame {tick}", member + 1)
            }
            Step::Done => "the end".into(),
        }
    }

    /// Why a connection broke, or the error that ends the bot if a reconnect cannot help.
    fn classify(&self, ended: &Ended, send_error: &str) -> Result<String, SimulateError> {
        match &ended.close {
            Some(frame) => {
                let code = u16::from(frame.code);
                if FATAL_CLOSE_CODES.contains(&code) {
                    return Err(SimulateError::ClosedByServer {
                        bot: self.bot + 1,
                        code,
                        reason: frame.reason.to_string(),
                    });
                }
                Ok(format!("the server closed it with {code} {}", frame.reason))
            }
            None => Ok(ended.error.clone().unwrap_or_else(|| send_error.to_owned())),
        }
    }
}

/// Reads what the server sends until the connection ends: refusals are counted, pings are
/// answered (by tungstenite), and a close frame cancels `closed` so that sending stops.
async fn read_replies(
    mut stream: SplitStream<Socket>,
    shared: Arc<Shared>,
    bot: usize,
    closed: CancellationToken,
) -> Ended {
    let mut close = None;
    let error = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => shared.server_said(bot, text.as_str()),
            Some(Ok(Message::Close(frame))) => {
                close = frame;
                // Keep reading: tungstenite answers the close, then the server hangs up.
                closed.cancel();
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => break Some(error.to_string()),
            None => break None,
        }
    };
    closed.cancel();
    Ended { close, error }
}

/// Waits briefly for the reading side to see the end of a broken connection.
async fn finish_reading(reader: JoinHandle<Ended>, closed: &CancellationToken) -> Ended {
    let _ = tokio::time::timeout(Duration::from_secs(2), closed.cancelled()).await;
    if !reader.is_finished() {
        reader.abort();
    }
    match reader.await {
        Ok(ended) => ended,
        Err(_) => Ended {
            close: None,
            error: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::Output;

    #[test]
    fn refusal_replies_are_counted_by_reason_with_the_first_message() {
        let shared = Shared::new(Progress::start(Output::Quiet, None));
        let refusal = |reason: &str, message: &str| {
            serde_json::json!({"error": {"reason": reason, "message": message}}).to_string()
        };
        shared.server_said(0, &refusal("invalid_png", "PNG is truncated"));
        shared.server_said(1, &refusal("invalid_png", "another message"));
        shared.server_said(0, &refusal("bad_timestamp", "too late"));
        shared.server_said(0, "something else entirely");
        shared.server_said(0, r#"{"error": "not a refusal object"}"#);
        let refusals = shared.refusals();
        assert_eq!(
            refusals.get("invalid_png"),
            Some(&Refused {
                count: 2,
                first_message: "PNG is truncated".into()
            })
        );
        assert_eq!(refusals.get("bad_timestamp").map(|r| r.count), Some(1));
        assert_eq!(refusals.len(), 2);
        assert_eq!(
            shared.progress.counters().refused.load(Ordering::Relaxed),
            3
        );
    }

    #[test]
    fn urls_get_their_token_and_hide_it_when_shown() {
        let endpoint =
            Endpoint::parse("http://localhost:8080/ws", Some("secret-token-123456")).unwrap();
        assert_eq!(
            endpoint.url.as_str(),
            "ws://localhost:8080/ws?token=secret-token-123456"
        );
        assert_eq!(endpoint.to_string(), "ws://localhost:8080/ws?token=…");
        let given = Endpoint::parse("wss://x.fly.dev/ws?token=abc", Some("other")).unwrap();
        assert_eq!(given.url.as_str(), "wss://x.fly.dev/ws?token=abc");
        assert!(Endpoint::parse("localhost:8080/ws", None).is_err());
        assert!(Endpoint::parse("ftp://x/ws", None).is_err());
    }

    #[test]
    fn a_server_address_is_taken_as_its_websocket() {
        for (given, expected) in [
            ("http://localhost:8080/", "ws://localhost:8080/ws"),
            ("http://localhost:8080", "ws://localhost:8080/ws"),
            ("https://x.fly.dev/", "wss://x.fly.dev/ws"),
            (
                "ws://localhost:8080/?token=abc",
                "ws://localhost:8080/ws?token=abc",
            ),
            ("https://x.fly.dev/ws", "wss://x.fly.dev/ws"),
        ] {
            assert_eq!(Endpoint::parse(given, None).unwrap().url.as_str(), expected);
        }
    }

    #[test]
    fn the_browse_page_is_on_the_websocket_server() {
        let page = |url: &str| {
            Endpoint::parse(url, Some("t"))
                .unwrap()
                .recording_page("r-1")
        };
        assert_eq!(
            page("ws://127.0.0.1:9/ws?token=abc"),
            "http://127.0.0.1:9/recordings/r-1"
        );
        assert_eq!(page("wss://x.fly.dev/"), "https://x.fly.dev/recordings/r-1");
        assert_eq!(
            page("wss://x.example/frames/ws"),
            "https://x.example/frames/recordings/r-1"
        );
    }

    #[test]
    fn a_refused_upgrade_shows_a_short_first_line_of_its_body() {
        assert_eq!(
            first_line(b"token is missing or wrong\n"),
            "token is missing or wrong"
        );
        assert_eq!(
            first_line(b"\n<!doctype html>\n<html><body>page</body></html>\n"),
            "<!doctype html>…"
        );
        let long = "x".repeat(500);
        assert_eq!(first_line(long.as_bytes()).chars().count(), BODY_SHOWN + 1);
        assert_eq!(first_line(b""), "");
    }
}
