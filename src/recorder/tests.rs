//! The recorder against the in-memory store: what lands where, for an unshared store (as a
//! folder) and a shared one (as a bucket, listing times in whole seconds).

use std::io::Cursor;
use std::sync::Arc;

use serde_json::Value;

use super::*;
use crate::frame::{FrameTime, RecordingInfo, Resource, StreamKey, StreamKind};
use crate::store::memory::MemoryStore;

fn png(width: u32, height: u32) -> Bytes {
    let mut out = Vec::new();
    image::RgbImage::new(width, height)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out.into()
}

fn participant(name: &str) -> Participant {
    Participant {
        name: Some(name.into()),
        ..Participant::unknown(ParticipantId(100))
    }
}

fn frame(relative_ms: u64, name: &str) -> Frame {
    let recording = RecordingId::parse("rec").unwrap();
    Frame {
        key: StreamKey {
            recording: recording.clone(),
            participant: ParticipantId(100),
            kind: StreamKind::Webcam,
        },
        time: FrameTime {
            relative: relative_ms as f64 / 1000.0,
            absolute: None,
        },
        relative_ms,
        png: png(4, 3),
        width: 4,
        height: 3,
        participant: participant(name),
        recording: RecordingInfo {
            id: recording,
            metadata: Value::Null,
            bot: Some(Resource {
                id: "bot_1".into(),
                metadata: Value::Null,
            }),
            realtime_endpoint: None,
            video_separate: None,
            participant_events: None,
            audio_separate: None,
        },
        received_at: Timestamp::now(),
        received: std::time::Instant::now(),
    }
}

fn key(path: &str) -> Key {
    Key::parse(path).unwrap()
}

fn json(store: &MemoryStore, path: &str) -> Value {
    serde_json::from_slice(&store.bytes(&key(path)).expect(path)).unwrap()
}

fn manifest_files(store: &MemoryStore, path: &str) -> Vec<String> {
    let text = store.bytes(&key(path)).unwrap_or_default();
    crate::store::complete_lines(&text)
        .map(|line| FrameRecord::parse_line(line).unwrap().1.file)
        .collect()
}

const STREAM: &str = "rec/100-alice/webcam";

#[tokio::test]
async fn frames_their_lines_and_summaries_land_in_the_layout() {
    let store = MemoryStore::default();
    let recorder = Recorder::new(Arc::new(store.clone()));
    let mut writer = recorder.open_stream(&frame(500, "Alice")).await.unwrap();
    assert_eq!(
        json(&store, "rec/100-alice/participant.json")["name"],
        "Alice",
        "written before the first frame"
    );
    for ms in [500, 1000, 500] {
        writer.write(&frame(ms, "Alice")).await.unwrap();
    }
    writer.close().await.unwrap();
    assert_eq!(
        store.bytes(&key(&format!("{STREAM}/000000500.png"))),
        Some(png(4, 3).to_vec())
    );
    assert_eq!(
        manifest_files(&store, &format!("{STREAM}/frames.jsonl")),
        ["000000500.png", "000001000.png"],
        "one line per frame: the repeat is a duplicate"
    );
    let summary = json(&store, "rec/recording.json");
    assert_eq!(summary["first_frame"]["relative"], 0.5);
    assert_eq!(summary["last_frame"]["relative"], 1.0);
    assert_eq!(summary["bot"]["id"], "bot_1");
}

#[tokio::test]
async fn a_second_writer_of_a_millisecond_is_a_duplicate() {
    let store = MemoryStore::default();
    let first = Recorder::new(Arc::new(store.clone()));
    let second = Recorder::new(Arc::new(store.clone()));
    let mut a = first.open_stream(&frame(500, "Alice")).await.unwrap();
    let mut b = second.open_stream(&frame(500, "Alice")).await.unwrap();
    assert!(matches!(
        a.write(&frame(500, "Alice")).await.unwrap(),
        WriteOutcome::Saved { .. }
    ));
    assert_eq!(
        b.write(&frame(500, "Alice")).await.unwrap(),
        WriteOutcome::Duplicate
    );
}

#[tokio::test]
async fn an_older_description_never_replaces_a_newer_one() {
    let store = MemoryStore::default();
    let recorder = Recorder::new(Arc::new(store.clone()));
    let mut writer = recorder.open_stream(&frame(500, "Alice")).await.unwrap();
    writer.write(&frame(2000, "Alice B")).await.unwrap();
    // Waited in its queue while the newer frame was saved: describes her as she was.
    writer.write(&frame(1000, "Alice")).await.unwrap();
    writer.close().await.unwrap();
    recorder.flush().await.unwrap();
    assert_eq!(
        json(&store, "rec/100-alice/participant.json")["name"],
        "Alice B"
    );
}

#[tokio::test]
async fn a_reopened_stream_rebuilds_the_lines_a_crash_lost() {
    let store = MemoryStore::default();
    let recorder = Recorder::new(Arc::new(store.clone()));
    let mut writer = recorder.open_stream(&frame(500, "Alice")).await.unwrap();
    writer.write(&frame(500, "Alice")).await.unwrap();
    writer.close().await.unwrap();
    // A frame saved without its line, and a torn line.
    store.replace_raw(&key(&format!("{STREAM}/000001000.png")), &png(6, 5));
    store.append_raw(&key(&format!("{STREAM}/frames.jsonl")), b"{\"file\":");

    let mut writer = recorder.open_stream(&frame(1500, "Alice")).await.unwrap();
    writer.write(&frame(1500, "Alice")).await.unwrap();
    writer.close().await.unwrap();
    let text = store
        .bytes(&key(&format!("{STREAM}/frames.jsonl")))
        .unwrap();
    let lines: Vec<FrameRecord> = crate::store::complete_lines(&text)
        .filter_map(|line| FrameRecord::parse_line(line).ok().map(|(_, r)| r))
        .collect();
    let rebuilt = lines.iter().find(|r| r.file == "000001000.png").unwrap();
    assert!(rebuilt.recovered);
    assert_eq!((rebuilt.width, rebuilt.height), (6, 5), "read from the PNG");
    assert!(lines.iter().any(|r| r.file == "000001500.png"));
}

/// Two servers on one bucket: a frame that server A saved a moment ago, and will list at its
/// next flush, must not get a rebuilt line from server B, although the listing says it was
/// written at the start of its second (S3 keeps whole seconds).
#[tokio::test]
async fn a_shared_store_leaves_a_live_writers_frames_alone() {
    let interval = Duration::from_millis(500);
    let store = MemoryStore::shared(interval);
    let young = key(&format!("{STREAM}/000005000.png"));
    store.replace_raw(&young, &png(4, 3));
    // Written 0.9 s into its second, 0.15 s ago: its listing says 0.9 s older than that,
    // past the settling time of two intervals.
    let into_second = Timestamp::now().as_millisecond().rem_euclid(1000) as u64;
    tokio::time::sleep(Duration::from_millis((1050 - into_second) % 1000)).await;
    let written = Timestamp::now() - jiff::SignedDuration::from_millis(150);
    store.set_written(&young, written);
    let old = key(&format!("{STREAM}/000004000.png"));
    store.replace_raw(&old, &png(4, 3));
    store.set_written(&old, Timestamp::now() - jiff::SignedDuration::from_secs(10));

    let recorder = Recorder::new(Arc::new(store.clone()));
    let mut writer = recorder.open_stream(&frame(5100, "Alice")).await.unwrap();
    writer.write(&frame(5100, "Alice")).await.unwrap();
    let listed: Vec<String> = {
        let inner = &recorder.inner;
        let survey = inner
            .survey(&key(STREAM), inner.settle(), None)
            .await
            .unwrap();
        assert!(
            survey.young.contains(&5000),
            "the live writer's frame is young, whatever second it fell in"
        );
        survey.recovered.iter().map(|r| r.file.clone()).collect()
    };
    assert_eq!(
        listed,
        Vec::<String>::new(),
        "the old one was rebuilt at open"
    );
    drop(writer);
    let chunks: Vec<Key> = store
        .keys()
        .into_iter()
        .filter(|k| k.as_str().ends_with("frames.jsonl"))
        .collect();
    let files = manifest_files(&store, chunks[0].as_str());
    assert_eq!(
        files,
        ["000004000.png"],
        "rebuilt at open; the young one left alone"
    );
}

#[test]
fn a_description_is_replaced_only_by_a_newer_different_one() {
    let named = |name: &str| Participant {
        name: Some(name.into()),
        ..Participant::unknown(ParticipantId(100))
    };
    let mut written = Described::new(&named("Alice"), 2.0);
    assert!(!written.is_superseded_by(&named("Alice"), 3.0), "the same");
    assert!(!written.is_superseded_by(&named("Al"), 1.0), "older");
    assert!(
        !written.is_superseded_by(&named("Al"), 2.5),
        "older than the same description seen at 3.0"
    );
    assert!(written.is_superseded_by(&named("Al"), 3.0));
    assert!(written.is_superseded_by(&named("Al"), 9.0));
}

#[test]
fn a_recording_is_forgotten_when_its_last_lease_goes() {
    let recordings = Recordings::default();
    let id = RecordingId::parse("rec").unwrap();
    let first = recordings.lease(&id, || 1);
    let second = recordings.lease(&id, || 2);
    assert_eq!((*first, *second), (1, 1), "one state for the recording");
    drop(first);
    assert_eq!(recordings.all().len(), 1);
    drop(second);
    assert!(recordings.all().is_empty());
    assert_eq!(*recordings.lease(&id, || 3), 3, "started afresh");
}

/// A memory store whose writes of `recording.json` hang until released: a bucket request
/// that takes its time.
#[derive(Clone)]
struct SlowSummaries {
    store: MemoryStore,
    released: Arc<tokio::sync::Semaphore>,
}

#[async_trait]
impl Store for SlowSummaries {
    async fn create(&self, key: &Key, bytes: Bytes) -> Result<Created, StoreError> {
        self.store.create(key, bytes).await
    }
    async fn create_from_file(
        &self,
        key: &Key,
        file: &std::path::Path,
    ) -> Result<Created, StoreError> {
        self.store.create_from_file(key, file).await
    }
    async fn put(&self, key: &Key, bytes: Bytes) -> Result<(), StoreError> {
        self.store.put(key, bytes).await
    }
    async fn swap(
        &self,
        key: &Key,
        bytes: Bytes,
        expected: Option<&crate::store::Version>,
    ) -> Result<Option<crate::store::Version>, StoreError> {
        if key.name() == Some(layout::RECORDING_FILE) {
            let _released = self.released.acquire().await.unwrap();
        }
        self.store.swap(key, bytes, expected).await
    }
    async fn get(&self, key: &Key) -> Result<Option<crate::store::Fetched>, StoreError> {
        self.store.get(key).await
    }
    async fn get_from(&self, key: &Key, offset: u64) -> Result<Option<Bytes>, StoreError> {
        self.store.get_from(key, offset).await
    }
    async fn list(&self, prefix: &Key) -> Result<Vec<crate::store::Listed>, StoreError> {
        self.store.list(prefix).await
    }
    async fn list_folders(&self, prefix: &Key) -> Result<Vec<String>, StoreError> {
        self.store.list_folders(prefix).await
    }
    async fn delete(&self, key: &Key) -> Result<(), StoreError> {
        self.store.delete(key).await
    }
    async fn delete_prefix(&self, prefix: &Key) -> Result<crate::store::Removed, StoreError> {
        self.store.delete_prefix(prefix).await
    }
    fn log_writer(&self, log: &Key, lines_per_part: usize) -> Box<dyn LogWriter> {
        self.store.log_writer(log, lines_per_part)
    }
    async fn log_parts(&self, log: &Key) -> Result<Vec<crate::store::Listed>, StoreError> {
        self.store.log_parts(log).await
    }
    fn is_shared(&self) -> bool {
        false
    }
    fn log_interval(&self) -> Option<Duration> {
        None
    }
    fn backend(&self) -> &'static str {
        "slow"
    }
}

/// One slow summary write stalls no stream: while `recording.json` hangs, both of the
/// recording's streams keep saving frames, and the summary lands once the store answers.
#[tokio::test(start_paused = true)]
async fn a_hanging_summary_write_stalls_no_stream() {
    let slow = SlowSummaries {
        store: MemoryStore::default(),
        released: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let recorder = Recorder::new(Arc::new(slow.clone()));
    let mut bob_frame = frame(500, "Bob");
    bob_frame.participant.id = ParticipantId(200);
    bob_frame.key.participant = ParticipantId(200);
    let mut alice = recorder.open_stream(&frame(500, "Alice")).await.unwrap();
    let mut bob = recorder.open_stream(&bob_frame).await.unwrap();
    // Alice's first frame hands the new summary to the publisher, whose write hangs.
    let first = frame(500, "Alice");
    let saved = tokio::time::timeout(Duration::from_secs(1), alice.write(&first)).await;
    assert!(
        matches!(saved, Ok(Ok(WriteOutcome::Saved { .. }))),
        "the frame that made the summary due waits for it"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    for ms in [1000, 1500, 2000, 2500] {
        let mut next = bob_frame.clone();
        next.relative_ms = ms;
        next.time.relative = ms as f64 / 1000.0;
        let saved = tokio::time::timeout(Duration::from_secs(1), bob.write(&next)).await;
        assert!(
            matches!(saved, Ok(Ok(WriteOutcome::Saved { .. }))),
            "Bob's frame at {ms} ms waits for Alice's summary"
        );
        let saved =
            tokio::time::timeout(Duration::from_secs(1), alice.write(&frame(ms, "Alice"))).await;
        assert!(matches!(saved, Ok(Ok(WriteOutcome::Saved { .. }))));
    }
    assert_eq!(slow.store.bytes(&key("rec/recording.json")), None);
    slow.released.add_permits(100);
    alice.close().await.unwrap();
    bob.close().await.unwrap();
    assert_eq!(
        json(&slow.store, "rec/recording.json")["last_frame"]["relative"],
        2.5
    );
}

fn chunk(start_sample: u64, samples: &[i16]) -> crate::audio::AudioChunk {
    let mut pcm = Vec::new();
    for sample in samples {
        pcm.extend_from_slice(&sample.to_le_bytes());
    }
    let recording = frame(0, "Alice").recording;
    crate::audio::AudioChunk {
        source: crate::audio::AudioSource::Participant(Arc::new(participant("Alice"))),
        time: FrameTime {
            relative: start_sample as f64 / 16_000.0,
            absolute: None,
        },
        start_sample,
        pcm: pcm.into(),
        recording: Arc::new(recording),
        received_at: Timestamp::now(),
        received: std::time::Instant::now(),
    }
}

/// The samples of a WAV piece, read by a real WAV reader.
fn wav_samples(bytes: Vec<u8>) -> Vec<i16> {
    hound::WavReader::new(Cursor::new(bytes))
        .unwrap()
        .into_samples()
        .map(Result::unwrap)
        .collect()
}

#[tokio::test]
async fn audio_lands_in_pieces_that_play_in_place_and_in_a_bucket() {
    for store in [
        MemoryStore::default(),
        MemoryStore::shared(Duration::from_secs(60)),
    ] {
        let recorder = Recorder::new(Arc::new(store.clone()));
        let piece = key("rec/100-alice/audio/000001000.wav");
        // 1 s in, two chunks with 2 samples of silence between, and one resent.
        for (start, samples) in [
            (16_000, &[1i16, 2][..]),
            (16_004, &[5, 6]),
            (16_000, &[1, 2]),
        ] {
            recorder.record_audio(&chunk(start, samples)).await.unwrap();
        }
        assert!(store.bytes(&piece).is_none(), "held until the flush");
        // A late chunk fills the silence, and only it.
        let late = recorder.record_audio(&chunk(16_001, &[9, 3, 4, 9])).await;
        assert_eq!(
            late.unwrap(),
            crate::sink::AudioOutcome::Saved {
                written: 2,
                overlap: 2
            }
        );
        recorder.flush().await.unwrap();
        assert_eq!(
            wav_samples(store.bytes(&piece).unwrap()),
            [1, 2, 3, 4, 5, 6]
        );
        let manifest = store
            .bytes(&key("rec/100-alice/audio/audio.jsonl"))
            .unwrap();
        let kinds: Vec<String> = crate::store::complete_lines(&manifest)
            .map(|line| serde_json::from_slice::<Value>(line).unwrap()["kind"].to_string())
            .collect();
        assert_eq!(
            kinds,
            [
                "\"segment\"",
                "\"chunk\"",
                "\"gap\"",
                "\"chunk\"",
                "\"chunk\""
            ],
            "the duplicate is not listed"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn in_a_folder_chunks_wait_at_most_write_behind_or_a_second_of_audio() {
    let store = MemoryStore::default();
    assert!(store.writes_in_place());
    let recorder = Recorder::new(Arc::new(store.clone()));
    let piece = key("rec/100-alice/audio/000000000.wav");
    let manifest = key("rec/100-alice/audio/audio.jsonl");
    let lines = || {
        store
            .bytes(&manifest)
            .map_or(0, |bytes| crate::store::complete_lines(&bytes).count())
    };
    recorder.record_audio(&chunk(0, &[1, 2])).await.unwrap();
    assert!(store.bytes(&piece).is_none(), "waiting to be written");
    tokio::time::sleep(audio::WRITE_BEHIND * 2).await;
    assert_eq!(wav_samples(store.bytes(&piece).unwrap()), [1, 2]);
    assert_eq!(lines(), 2, "its segment and its line follow its samples");

    // Faster than real time: a second of audio (50 chunks of 20 ms) waits at most; the next
    // chunk writes it, with no time passing.
    let voice: Vec<i16> = (0..320).collect();
    for i in 0..53 {
        recorder
            .record_audio(&chunk(2 + i * 320, &voice))
            .await
            .unwrap();
    }
    let written = wav_samples(store.bytes(&piece).unwrap()).len();
    assert_eq!(written, 2 + 52 * 320, "one write of what waited");
    assert_eq!(lines(), 2 + 52);
    recorder.flush().await.unwrap();
    assert_eq!(
        wav_samples(store.bytes(&piece).unwrap()).len(),
        2 + 53 * 320
    );
}

#[tokio::test]
async fn a_stale_header_and_samples_without_lines_are_repaired_when_the_recorder_starts_again() {
    let store = MemoryStore::default();
    let recorder = Recorder::new(Arc::new(store.clone()));
    recorder.record_audio(&chunk(0, &[1, 2])).await.unwrap();
    recorder.flush().await.unwrap();
    // A crash between a write and its header and line: two samples more, header stale.
    let piece = key("rec/100-alice/audio/000000000.wav");
    store.append_raw(&piece, &[3, 0, 4, 0]);
    drop(recorder);
    let recorder = Recorder::new(Arc::new(store.clone()));
    let again = recorder.record_audio(&chunk(2, &[3, 4])).await.unwrap();
    assert_eq!(
        again,
        crate::sink::AudioOutcome::Duplicate,
        "rebuilt as received"
    );
    assert_eq!(wav_samples(store.bytes(&piece).unwrap()), [1, 2, 3, 4]);
    let manifest = store
        .bytes(&key("rec/100-alice/audio/audio.jsonl"))
        .unwrap();
    let last: Value =
        serde_json::from_slice(crate::store::complete_lines(&manifest).last().unwrap()).unwrap();
    assert_eq!(last["recovered"], true);
    assert_eq!(
        (last["start_sample"].as_u64(), last["samples"].as_u64()),
        (Some(2), Some(2))
    );
}
