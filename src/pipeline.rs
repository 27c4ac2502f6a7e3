//! Routes decoded frames to their stream: each stream (recording, participant, webcam or
//! screenshare) has its own bounded channel and task that hands frames to the sink in order.
//!
//! Backpressure, not loss: when a stream's channel is full, or the frames held in memory
//! across all streams reach the byte budget, [`Pipeline::submit`] waits, and so does the
//! connection that called it. A stream that goes quiet has its task and channel closed;
//! its next frame opens them again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::frame::{Frame, ParticipantEvent, StreamKey};
use crate::live::Live;
use crate::metrics::{Metrics, Tally};
use crate::sink::{FrameSink, StreamWriter, WriteOutcome};

#[derive(Debug, Clone, Copy)]
pub struct PipelineConfig {
    /// Frames each stream's channel holds before its senders wait.
    pub queue_frames: usize,
    /// PNG bytes all channels together hold before senders wait.
    pub buffer_bytes: usize,
    /// A stream with no frame for this long has its task and channel closed.
    pub idle_timeout: Duration,
}

impl PipelineConfig {
    /// The pipeline's part of the server's configuration.
    pub fn of(config: &crate::Config) -> Self {
        PipelineConfig {
            queue_frames: config.stream_queue_frames,
            buffer_bytes: config.buffer_bytes,
            idle_timeout: config.stream_idle_timeout,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the server is shutting down and takes no more frames")]
pub struct PipelineClosed;

/// A frame on its way to its stream's task, with the memory it holds and the tally of the
/// connection it came from.
struct Queued {
    frame: Box<Frame>,
    tally: Arc<Tally>,
    _budget: Budget,
}

/// A frame's share of the byte budget, given back (and taken off `buffered_bytes`) when the
/// frame has been written or dropped.
struct Budget {
    permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Budget {
    fn new(permit: OwnedSemaphorePermit, metrics: Arc<Metrics>) -> Self {
        metrics
            .buffered_bytes
            .inc_by(i64::from(permit.num_permits() as u32));
        Budget { permit, metrics }
    }
}

impl Drop for Budget {
    fn drop(&mut self) {
        self.metrics
            .buffered_bytes
            .dec_by(i64::from(self.permit.num_permits() as u32));
    }
}

#[derive(Clone)]
pub struct Pipeline {
    inner: Arc<Inner>,
}

struct Inner {
    config: PipelineConfig,
    sink: Arc<dyn FrameSink>,
    metrics: Arc<Metrics>,
    /// Told of every saved frame, for live views; publishing never waits.
    live: Live,
    budget: Arc<Semaphore>,
    streams: Mutex<Streams>,
    tasks: TaskTracker,
    /// When each recording last had a frame, event or audio chunk: a recording heard from
    /// within `idle_timeout` is being streamed into (a deletion is refused with 409).
    activity: Mutex<HashMap<crate::frame::RecordingId, tokio::time::Instant>>,
}

#[derive(Default)]
struct Streams {
    open: HashMap<StreamKey, StreamHandle>,
    /// Tasks that went idle and are saving what their channel still held. A new task for
    /// the same stream waits for the old one, so one stream never has two writers.
    draining: HashMap<StreamKey, (u64, oneshot::Receiver<()>)>,
    next_id: u64,
    closed: bool,
}

struct StreamHandle {
    id: u64,
    sender: mpsc::Sender<Queued>,
}

impl Pipeline {
    pub fn new(
        config: PipelineConfig,
        sink: Arc<dyn FrameSink>,
        metrics: Arc<Metrics>,
        live: Live,
    ) -> Self {
        Pipeline {
            inner: Arc::new(Inner {
                budget: Arc::new(Semaphore::new(config.buffer_bytes)),
                config,
                sink,
                metrics,
                live,
                streams: Mutex::default(),
                tasks: TaskTracker::new(),
                activity: Mutex::default(),
            }),
        }
    }

    /// Queues a frame for its stream, waiting while the stream's channel or the memory
    /// budget is full.
    pub async fn submit(&self, frame: Box<Frame>, tally: Arc<Tally>) -> Result<(), PipelineClosed> {
        let inner = &self.inner;
        self.heard_from(&frame.key.recording);
        // A frame larger than the whole budget (possible only if the budget is set below the
        // message size limit) takes all of it rather than waiting forever.
        let cost = frame.png.len().clamp(1, inner.config.buffer_bytes);
        let permit = inner
            .budget
            .clone()
            .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
            .map_err(|_| PipelineClosed)?;
        let mut queued = Queued {
            frame,
            tally,
            _budget: Budget::new(permit, inner.metrics.clone()),
        };
        loop {
            let (id, sender) = inner.sender_for(&queued.frame.key)?;
            inner.metrics.frames_queued.inc();
            match sender.send(queued).await {
                Ok(()) => return Ok(()),
                // The stream's task closed for idleness between the lookup and the send: it
                // has let go of the channel, so open a new one and go again.
                Err(mpsc::error::SendError(back)) => {
                    inner.metrics.frames_queued.dec();
                    inner.forget(&back.frame.key, id);
                    queued = back;
                }
            }
        }
    }

    /// Takes no more frames, lets every stream's task save what its channel holds and close
    /// its stream, and waits for them up to `timeout`. Returns whether all finished.
    pub async fn close(&self, timeout: Duration) -> bool {
        let inner = &self.inner;
        {
            let mut streams = inner.streams.lock();
            streams.closed = true;
            streams.open.clear(); // dropping the senders ends each task once it has drained
        }
        inner.budget.close();
        inner.tasks.close();
        tokio::time::timeout(timeout, inner.tasks.wait())
            .await
            .is_ok()
    }
}

impl Pipeline {
    /// Records a participant event in the sink and waits until it is written. Events skip the
    /// stream channels: they are small and rare, so their caller awaits the sink itself.
    pub async fn record_event(
        &self,
        event: &ParticipantEvent,
    ) -> Result<(), crate::sink::SinkError> {
        self.heard_from(&event.recording.id);
        let recorded = self.inner.sink.record_event(event).await;
        match &recorded {
            Ok(()) => {
                self.inner.metrics.participant_events_recorded.inc();
            }
            Err(error) => self.inner.sink_failed(error),
        };
        recorded
    }

    /// Records an audio chunk in the sink and waits until it is stored. Like events, chunks
    /// skip the stream channels: they are small (a few hundred bytes), and one connection's
    /// chunks are written in arrival order, so a slow sink holds the connection back rather
    /// than filling a queue.
    pub async fn record_audio(
        &self,
        chunk: &crate::audio::AudioChunk,
    ) -> Result<crate::sink::AudioOutcome, crate::sink::SinkError> {
        let started = std::time::Instant::now();
        self.heard_from(&chunk.recording.id);
        let recorded = self.inner.sink.record_audio(chunk).await;
        match &recorded {
            Ok(outcome) => {
                self.inner
                    .metrics
                    .audio_recorded(*outcome, chunk.received.elapsed());
                self.inner
                    .metrics
                    .sink_wrote(self.inner.sink.backend(), started.elapsed());
            }
            Err(error) => self.inner.sink_failed(error),
        }
        recorded
    }

    /// Notes that `recording` was just streamed into.
    fn heard_from(&self, recording: &crate::frame::RecordingId) {
        let now = tokio::time::Instant::now();
        let mut activity = self.inner.activity.lock();
        if let Some(at) = activity.get_mut(recording) {
            *at = now;
            return;
        }
        // Bounded by the recordings heard from within the idle timeout.
        if activity.len() >= 1024 {
            let idle = self.inner.config.idle_timeout;
            activity.retain(|_, at| now.duration_since(*at) < idle);
        }
        activity.insert(recording.clone(), now);
    }

    /// Whether a bot streamed into `recording` on this server within
    /// `STREAM_IDLE_TIMEOUT`.
    pub fn is_streaming(&self, recording: &crate::frame::RecordingId) -> bool {
        self.inner
            .activity
            .lock()
            .get(recording)
            .is_some_and(|at| at.elapsed() < self.inner.config.idle_timeout)
    }

    /// Flushes what the sink holds back; call after [`Pipeline::close`].
    pub async fn flush_sink(&self) -> Result<(), crate::sink::SinkError> {
        self.inner.sink.flush().await
    }
}

impl Inner {
    fn sink_failed(&self, error: &crate::sink::SinkError) {
        self.metrics.sink_failed(self.sink.backend(), error.kind());
    }

    /// The sender of the stream's channel, opening the channel and its task if needed.
    fn sender_for(
        self: &Arc<Self>,
        key: &StreamKey,
    ) -> Result<(u64, mpsc::Sender<Queued>), PipelineClosed> {
        let mut streams = self.streams.lock();
        if streams.closed {
            return Err(PipelineClosed);
        }
        if let Some(handle) = streams.open.get(key) {
            return Ok((handle.id, handle.sender.clone()));
        }
        let id = streams.next_id;
        streams.next_id += 1;
        let (sender, receiver) = mpsc::channel(self.config.queue_frames);
        streams.open.insert(
            key.clone(),
            StreamHandle {
                id,
                sender: sender.clone(),
            },
        );
        let previous = streams.draining.remove(key).map(|(_, finished)| finished);
        let span = tracing::info_span!(
            "stream",
            recording = %key.recording,
            participant = key.participant.0,
            kind = %key.kind,
        );
        let task = self.clone().run_stream(key.clone(), id, receiver, previous);
        self.tasks.spawn(task.instrument(span));
        Ok((id, sender))
    }

    /// Removes the stream's channel from the map if it is still the one with that id.
    fn forget(&self, key: &StreamKey, id: u64) {
        let mut streams = self.streams.lock();
        if streams.open.get(key).is_some_and(|handle| handle.id == id) {
            streams.open.remove(key);
        }
    }

    /// One stream's task: saves frames in arrival order until the stream goes quiet or the
    /// pipeline closes, then closes the stream in the sink.
    async fn run_stream(
        self: Arc<Self>,
        key: StreamKey,
        id: u64,
        mut receiver: mpsc::Receiver<Queued>,
        previous: Option<oneshot::Receiver<()>>,
    ) {
        if let Some(previous) = previous {
            // Resolves when the previous task drops its end, having closed the stream.
            let _ = previous.await;
        }
        self.metrics.streams_open.inc();
        tracing::debug!("stream opened");
        let mut writer: Option<Box<dyn StreamWriter>> = None;
        let mut finished = None;
        loop {
            match tokio::time::timeout(self.config.idle_timeout, receiver.recv()).await {
                Ok(Some(queued)) => self.save(&mut writer, queued).await,
                Ok(None) => break,
                Err(_idle) => {
                    // Stop taking frames, then save the ones already queued.
                    finished = Some(self.start_draining(&key, id));
                    receiver.close();
                    while let Some(queued) = receiver.recv().await {
                        self.save(&mut writer, queued).await;
                    }
                    break;
                }
            }
        }
        if let Some(writer) = writer
            && let Err(error) = writer.close().await
        {
            self.sink_failed(&error);
            tracing::error!(%error, "could not finish the stream");
        }
        if finished.is_some() {
            let mut streams = self.streams.lock();
            if streams
                .draining
                .get(&key)
                .is_some_and(|(draining, _)| *draining == id)
            {
                streams.draining.remove(&key);
            }
        }
        drop(finished);
        self.metrics.streams_open.dec();
        tracing::debug!("stream closed");
    }

    /// Takes an idle stream's channel out of use and notes that its task is draining.
    fn start_draining(&self, key: &StreamKey, id: u64) -> oneshot::Sender<()> {
        let (finished, wait) = oneshot::channel();
        let mut streams = self.streams.lock();
        if streams.open.get(key).is_some_and(|handle| handle.id == id) {
            streams.open.remove(key);
            streams.draining.insert(key.clone(), (id, wait));
        }
        finished
    }

    async fn save(&self, slot: &mut Option<Box<dyn StreamWriter>>, queued: Queued) {
        self.metrics.frames_queued.dec();
        let Queued {
            frame,
            tally,
            _budget,
        } = queued;
        let writer = match slot {
            Some(writer) => writer,
            None => match self.sink.open_stream(&frame).await {
                Ok(opened) => slot.insert(opened),
                Err(error) => {
                    // The next frame tries to open the stream again.
                    self.sink_failed(&error);
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%error, relative_ms = frame.relative_ms, "could not open the stream; frame not saved");
                    return;
                }
            },
        };
        let started = std::time::Instant::now();
        let written = writer.write(&frame).await;
        if written.is_ok() {
            self.metrics
                .sink_wrote(self.sink.backend(), started.elapsed());
        }
        match written {
            Ok(WriteOutcome::Saved { bytes }) => {
                self.metrics
                    .saved(frame.key.kind, bytes, frame.received.elapsed());
                tally.saved.fetch_add(1, Ordering::Relaxed);
                self.live.frame_saved(&frame);
            }
            Ok(WriteOutcome::Duplicate) => {
                self.metrics.frames_duplicate.inc();
                tally.duplicates.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(relative_ms = frame.relative_ms, "duplicate frame skipped");
            }
            Err(error) => {
                self.sink_failed(&error);
                tally.failed.fetch_add(1, Ordering::Relaxed);
                tracing::error!(%error, relative_ms = frame.relative_ms, "frame not saved");
                // Whatever the fault did to the writer's files (a folder gone, a manifest
                // handle on a deleted file), the next frame opens the stream afresh, which
                // recreates and repairs its folder once the fault is cleared.
                if let Some(broken) = slot.take()
                    && let Err(error) = broken.close().await
                {
                    tracing::warn!(%error, "could not finish the stream after a failed write");
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The pipeline driven with paused time and a sink that records what it is asked to do.

    use bytes::Bytes;
    use tokio::time::Instant;

    use super::*;
    use crate::frame::{
        FrameTime, Participant, ParticipantId, RecordingId, RecordingInfo, StreamKind,
    };
    use crate::sink::SinkError;

    /// What the sink was asked to do. Writers are numbered in the order they were opened.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) enum Call {
        Open { writer: usize, first_ms: u64 },
        Write { writer: usize, relative_ms: u64 },
        Closing { writer: usize },
        Closed { writer: usize },
        Event,
    }

    /// A `FrameSink` that keeps every call with the (paused) time it was made at. Closing a
    /// writer takes `close_takes`, as flushing a manifest might.
    #[derive(Clone, Default)]
    pub(crate) struct RecordingSink {
        calls: Arc<Mutex<Vec<(Instant, Call)>>>,
        writers: Arc<Mutex<usize>>,
        close_takes: Duration,
    }

    impl RecordingSink {
        pub(crate) fn closing_in(close_takes: Duration) -> Self {
            RecordingSink {
                close_takes,
                ..RecordingSink::default()
            }
        }

        /// The calls so far, each with how long after `start` it was made.
        pub(crate) fn calls_since(&self, start: Instant) -> Vec<(Duration, Call)> {
            let calls = self.calls.lock();
            calls
                .iter()
                .map(|(at, call)| (*at - start, call.clone()))
                .collect()
        }

        fn record(&self, call: Call) {
            self.calls.lock().push((Instant::now(), call));
        }
    }

    struct RecordingWriter {
        sink: RecordingSink,
        id: usize,
    }

    #[async_trait::async_trait]
    impl FrameSink for RecordingSink {
        async fn open_stream(&self, first: &Frame) -> Result<Box<dyn StreamWriter>, SinkError> {
            let id = {
                let mut writers = self.writers.lock();
                *writers += 1;
                *writers - 1
            };
            self.record(Call::Open {
                writer: id,
                first_ms: first.relative_ms,
            });
            Ok(Box::new(RecordingWriter {
                sink: self.clone(),
                id,
            }))
        }

        async fn record_event(&self, _event: &ParticipantEvent) -> Result<(), SinkError> {
            self.record(Call::Event);
            Ok(())
        }

        async fn flush(&self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl StreamWriter for RecordingWriter {
        async fn write(&mut self, frame: &Frame) -> Result<WriteOutcome, SinkError> {
            self.sink.record(Call::Write {
                writer: self.id,
                relative_ms: frame.relative_ms,
            });
            Ok(WriteOutcome::Saved {
                bytes: frame.png.len() as u64,
            })
        }

        async fn close(self: Box<Self>) -> Result<(), SinkError> {
            self.sink.record(Call::Closing { writer: self.id });
            tokio::time::sleep(self.sink.close_takes).await;
            self.sink.record(Call::Closed { writer: self.id });
            Ok(())
        }
    }

    /// A frame of the one stream these tests feed (`rec/1/webcam`), `relative_ms` into it.
    pub(crate) fn frame(relative_ms: u64) -> Box<Frame> {
        let recording = RecordingId::parse("rec").expect("a safe id");
        let participant = Participant::unknown(ParticipantId(1));
        Box::new(Frame {
            key: StreamKey {
                recording: recording.clone(),
                participant: participant.id,
                kind: StreamKind::Webcam,
            },
            time: FrameTime {
                relative: relative_ms as f64 / 1000.0,
                absolute: None,
            },
            relative_ms,
            png: Bytes::from_static(b"not decoded here"),
            width: 1,
            height: 1,
            participant,
            recording: RecordingInfo {
                id: recording,
                metadata: serde_json::Value::Null,
                bot: None,
                realtime_endpoint: None,
                video_separate: None,
                participant_events: None,
                audio_separate: None,
            },
            received_at: jiff::Timestamp::now(),
            received: std::time::Instant::now(),
        })
    }

    const IDLE: Duration = Duration::from_secs(60);

    fn pipeline(sink: &RecordingSink) -> Pipeline {
        Pipeline::new(
            PipelineConfig {
                queue_frames: 4,
                buffer_bytes: 1 << 20,
                idle_timeout: IDLE,
            },
            Arc::new(sink.clone()),
            Arc::new(Metrics::default()),
            Live::default(),
        )
    }

    fn tally() -> Arc<Tally> {
        Arc::new(Tally::new(tracing::Span::none()))
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_stream_is_closed_after_the_idle_timeout_and_its_next_frame_reopens_it() {
        let sink = RecordingSink::default();
        let pipeline = pipeline(&sink);
        let (start, tally) = (Instant::now(), tally());

        pipeline.submit(frame(0), tally.clone()).await.unwrap();
        tokio::time::sleep(secs(30)).await;
        // A frame restarts the idle clock: the stream stays open past 60 s.
        pipeline.submit(frame(500), tally.clone()).await.unwrap();
        tokio::time::sleep_until(start + secs(89)).await;
        assert!(
            !sink
                .calls_since(start)
                .iter()
                .any(|(_, call)| matches!(call, Call::Closing { .. })),
            "closed before the stream was quiet for the idle timeout"
        );
        tokio::time::sleep_until(start + secs(100)).await;
        pipeline.submit(frame(1000), tally.clone()).await.unwrap();
        assert!(pipeline.close(secs(1)).await, "the pipeline drained");

        use Call::*;
        assert_eq!(
            sink.calls_since(start),
            [
                (
                    secs(0),
                    Open {
                        writer: 0,
                        first_ms: 0
                    }
                ),
                (
                    secs(0),
                    Write {
                        writer: 0,
                        relative_ms: 0
                    }
                ),
                (
                    secs(30),
                    Write {
                        writer: 0,
                        relative_ms: 500
                    }
                ),
                (secs(90), Closing { writer: 0 }),
                (secs(90), Closed { writer: 0 }),
                (
                    secs(100),
                    Open {
                        writer: 1,
                        first_ms: 1000
                    }
                ),
                (
                    secs(100),
                    Write {
                        writer: 1,
                        relative_ms: 1000
                    }
                ),
                (secs(100), Closing { writer: 1 }),
                (secs(100), Closed { writer: 1 }),
            ]
        );
        assert_eq!(tally.saved.load(Ordering::Relaxed), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn frames_that_arrive_while_an_idle_stream_closes_are_saved_in_order_by_a_new_writer() {
        // Closing takes 10 s: frames come in the middle of it.
        let sink = RecordingSink::closing_in(secs(10));
        let pipeline = pipeline(&sink);
        let (start, tally) = (Instant::now(), tally());

        pipeline.submit(frame(0), tally.clone()).await.unwrap();
        tokio::time::sleep_until(start + secs(65)).await;
        // The old writer is closing (60 s to 70 s). These go to a new channel at once, more
        // of them than it holds, and must wait for the old writer to be closed before a
        // new one writes them: one stream never has two writers.
        for ms in [1000, 1500, 2000, 2500, 3000, 3500] {
            pipeline.submit(frame(ms), tally.clone()).await.unwrap();
        }
        assert!(pipeline.close(secs(60)).await, "the pipeline drained");

        use Call::*;
        let mut expected = vec![
            (
                secs(0),
                Open {
                    writer: 0,
                    first_ms: 0,
                },
            ),
            (
                secs(0),
                Write {
                    writer: 0,
                    relative_ms: 0,
                },
            ),
            (secs(60), Closing { writer: 0 }),
            (secs(70), Closed { writer: 0 }),
            (
                secs(70),
                Open {
                    writer: 1,
                    first_ms: 1000,
                },
            ),
        ];
        for ms in [1000, 1500, 2000, 2500, 3000, 3500] {
            expected.push((
                secs(70),
                Write {
                    writer: 1,
                    relative_ms: ms,
                },
            ));
        }
        expected.push((secs(70), Closing { writer: 1 }));
        expected.push((secs(80), Closed { writer: 1 }));
        assert_eq!(sink.calls_since(start), expected);
        assert_eq!(tally.saved.load(Ordering::Relaxed), 7, "nothing lost");
    }
}
