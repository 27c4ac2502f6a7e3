//! Reading saved recordings back: the [`Catalog`] trait that the browse UI and the JSON API
//! read through, with one implementation per storage backend (`catalog/fs.rs` for
//! `DATA_DIR`, `catalog/object.rs` for a bucket), and what the two share: the index of a
//! stream's frames and the cache that holds those indexes.
//!
//! A catalog speaks in the domain's names ([`RecordingId`], [`StreamKey`], milliseconds)
//! and in the keys of [`crate::layout`]; it never takes a path or a key from a client.
//! Frames are listed in pages that start after a time, which the zero-padded frame names
//! make a plain "start after" listing on any store.

pub mod fs;
pub mod object;

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt as _;
use jiff::Timestamp;
use lru::LruCache;
use serde::Serialize;

use crate::frame::{FrameTime, Participant, ParticipantId, RecordingId, StreamKey};
use crate::layout::{EventRecord, FrameRecord, RecordingSummary};

/// Reads in flight at once while a listing fans out (recordings, participants, chunks).
const PARALLEL: usize = 8;

/// Reads saved recordings. Every method answers [`CatalogError::NotFound`] for a recording,
/// participant, stream or frame that is not saved.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Every recording, newest first.
    async fn recordings(&self) -> Result<Vec<RecordingOverview>, CatalogError>;

    /// One recording: its participants and their streams.
    async fn recording(&self, id: &RecordingId) -> Result<RecordingDetail, CatalogError>;

    /// A recording's participant events (`events.jsonl`), in the order they were recorded;
    /// empty when it has none.
    async fn events(&self, id: &RecordingId) -> Result<Vec<EventRecord>, CatalogError>;

    /// Up to `limit` of a stream's frames in time order, starting after `after_ms` (from
    /// the first frame when `None`).
    async fn frames(
        &self,
        stream: &StreamKey,
        after_ms: Option<u64>,
        limit: usize,
    ) -> Result<FramePage, CatalogError>;

    /// How to serve one frame's PNG.
    async fn frame(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<FrameSource, CatalogError>;

    /// One frame's PNG bytes, exactly as the bot sent them.
    async fn frame_bytes(
        &self,
        stream: &StreamKey,
        relative_ms: u64,
    ) -> Result<Bytes, CatalogError>;

    /// The stream's manifest (`frames.jsonl`) as saved, up to its last complete line.
    async fn manifest(&self, stream: &StreamKey) -> Result<Bytes, CatalogError>;
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Fs(#[from] crate::files::FsError),
    #[error(transparent)]
    Object(#[from] crate::bucket::BucketError),
}

/// Where a frame's bytes come from, so the HTTP layer can serve each the best way.
#[derive(Debug)]
pub enum FrameSource {
    /// A file on this machine: served by tower-http's file service (ETag, Last-Modified,
    /// ranges). The catalog has checked that it is a regular file inside the data folder.
    File(PathBuf),
    /// Bytes a remote store returned, with the store's entity tag when it gives one.
    Bytes { bytes: Bytes, etag: Option<String> },
}

/// One saved frame, as a page of a stream lists it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FrameInfo {
    /// The frame's name within its stream: `relative` in whole milliseconds.
    pub relative_ms: u64,
    /// Seconds since the recording started, as Recall sent it.
    pub relative: f64,
    /// Wall-clock time, when Recall sent one (frames recovered after a crash have none).
    pub absolute: Option<Timestamp>,
    pub width: u32,
    pub height: u32,
    pub bytes: u64,
}

impl FrameInfo {
    /// A manifest line as a catalog lists it; `None` when the line names no frame file.
    pub fn from_record(record: &crate::layout::FrameRecord) -> Option<FrameInfo> {
        let Some(relative_ms) = crate::layout::parse_frame_file_name(&record.file) else {
            tracing::warn!(
                file = record.file,
                "manifest line names no frame file; skipped"
            );
            return None;
        };
        Some(FrameInfo {
            relative_ms,
            relative: record.relative,
            absolute: record.absolute,
            width: record.width,
            height: record.height,
            bytes: record.bytes,
        })
    }
}

/// A page of a stream's frames.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FramePage {
    pub frames: Vec<FrameInfo>,
    /// Frames the whole stream has.
    pub total: usize,
    /// The `after` that continues this listing, when frames remain past this page.
    pub next_after: Option<u64>,
}

/// One stream of a participant, summarised.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSummary {
    pub key: StreamKey,
    pub frames: usize,
    pub first: Option<FrameInfo>,
    pub last: Option<FrameInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipantDetail {
    /// What `participant.json` says; only the id when it is missing or unreadable.
    pub participant: Participant,
    /// The participant's folder (or key prefix) name within the recording.
    pub folder: String,
    /// The streams that have frames, webcam first.
    pub streams: Vec<StreamSummary>,
}

/// A recording as the list of recordings shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingOverview {
    pub id: RecordingId,
    /// `recording.json`, when saved and readable.
    pub summary: Option<RecordingSummary>,
    pub participants: usize,
    pub frames: u64,
    /// The earliest and latest frames across all streams.
    pub first_frame: Option<FrameTime>,
    pub last_frame: Option<FrameTime>,
    /// Wall-clock time the recording started, worked out from a frame's absolute and
    /// relative times.
    pub started_at: Option<Timestamp>,
    /// The newest frame of the stream with the most frames: a thumbnail.
    pub thumbnail: Option<(StreamKey, FrameInfo)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RecordingDetail {
    pub overview: RecordingOverview,
    pub participants: Vec<ParticipantDetail>,
}

impl StreamSummary {
    /// The earliest and latest frame times of a set of streams.
    fn span<'a>(
        streams: impl Iterator<Item = &'a StreamSummary> + Clone,
    ) -> (Option<FrameInfo>, Option<FrameInfo>) {
        let first = streams
            .clone()
            .filter_map(|s| s.first)
            .min_by_key(|f| f.relative_ms);
        let last = streams.filter_map(|s| s.last).max_by_key(|f| f.relative_ms);
        (first, last)
    }
}

impl RecordingOverview {
    /// Sums up a recording from its participants' streams.
    pub fn from_participants(
        id: RecordingId,
        summary: Option<RecordingSummary>,
        participants: &[ParticipantDetail],
    ) -> Self {
        let streams = participants.iter().flat_map(|p| p.streams.iter());
        let (first, last) = StreamSummary::span(streams.clone());
        let time = |f: FrameInfo| FrameTime {
            relative: f.relative,
            absolute: f.absolute,
        };
        let started_at = streams
            .clone()
            .filter_map(|s| s.first)
            .chain(streams.clone().filter_map(|s| s.last))
            .find_map(|f| {
                let offset = jiff::SignedDuration::from_millis(f.relative_ms as i64);
                f.absolute?.checked_sub(offset).ok()
            });
        let thumbnail = streams
            .clone()
            .filter(|s| s.last.is_some())
            .max_by_key(|s| s.frames)
            .and_then(|s| Some((s.key.clone(), s.last?)));
        RecordingOverview {
            id,
            summary,
            participants: participants.len(),
            frames: streams.map(|s| s.frames as u64).sum(),
            first_frame: first.map(time),
            last_frame: last.map(time),
            started_at,
            thumbnail,
        }
    }

    /// The id of the bot that recorded it, as `recording.json` has it.
    pub fn bot_id(&self) -> Option<String> {
        let bot = self.summary.as_ref()?.bot.as_ref()?;
        Some(match &bot.id {
            serde_json::Value::String(id) => id.clone(),
            other => other.to_string(),
        })
    }

    /// Seconds from the first frame to the last.
    pub fn duration(&self) -> Option<f64> {
        Some(self.last_frame?.relative - self.first_frame?.relative)
    }
}

/// Loads the listed recordings, a few at a time, into the list of recordings: newest
/// first by start time, then by id for those without one. A recording gone (or turned into
/// something else) since it was listed is left out.
async fn newest_first<F>(
    ids: Vec<RecordingId>,
    load: impl FnMut(RecordingId) -> F,
) -> Result<Vec<RecordingOverview>, CatalogError>
where
    F: Future<Output = Result<RecordingDetail, CatalogError>>,
{
    let loaded: Vec<_> = futures_util::stream::iter(ids)
        .map(load)
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut recordings = Vec::with_capacity(loaded.len());
    for detail in loaded {
        match detail {
            Ok(detail) => recordings.push(detail.overview),
            Err(CatalogError::NotFound) => {}
            Err(error) => return Err(error),
        }
    }
    recordings.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| a.id.cmp(&b.id))
    });
    Ok(recordings)
}

/// A stream's frames in time order, one per millisecond, built from its manifest lines.
/// Should two lines name one frame (a writer that went on in a new chunk, a line rebuilt
/// after a crash), the first stands, unless it was rebuilt and the later one is the
/// writer's own.
#[derive(Default)]
struct FrameIndex {
    /// By millisecond, with whether the line was rebuilt after a crash.
    frames: BTreeMap<u64, (FrameInfo, bool)>,
}

impl FrameIndex {
    /// Indexes the complete lines of `text` (a manifest, or what it gained since the last
    /// read) and returns the bytes they take: a line still being written is left for the
    /// next read. Unreadable lines are logged and skipped.
    fn add_lines(&mut self, text: &[u8], manifest: &dyn fmt::Display) -> usize {
        for line in complete_lines(text) {
            match serde_json::from_slice::<FrameRecord>(line) {
                Ok(record) => self.insert(&record),
                Err(error) => {
                    tracing::warn!(%manifest, %error, "skipping an unreadable manifest line");
                }
            }
        }
        complete_lines_len(text)
    }

    fn insert(&mut self, record: &FrameRecord) {
        let Some(info) = FrameInfo::from_record(record) else {
            return;
        };
        match self.frames.get(&info.relative_ms) {
            Some(&(_, rebuilt)) if !supersedes(record, rebuilt) => {}
            _ => {
                self.frames
                    .insert(info.relative_ms, (info, record.recovered));
            }
        }
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn page(&self, after_ms: Option<u64>, limit: usize) -> FramePage {
        let start = after_ms.map_or(Bound::Unbounded, Bound::Excluded);
        let mut rest = self.frames.range((start, Bound::Unbounded));
        let frames: Vec<FrameInfo> = rest.by_ref().take(limit).map(|(_, (f, _))| *f).collect();
        let next_after = rest
            .next()
            .is_some()
            .then(|| frames.last().map(|f| f.relative_ms))
            .flatten();
        FramePage {
            frames,
            total: self.frames.len(),
            next_after,
        }
    }

    fn summary(&self, key: StreamKey) -> StreamSummary {
        StreamSummary {
            key,
            frames: self.frames.len(),
            first: self.frames.values().next().map(|(f, _)| *f),
            last: self.frames.values().next_back().map(|(f, _)| *f),
        }
    }
}

/// Whether a manifest line takes the place of one already kept for the same frame: only
/// the writer's own line replaces one rebuilt after a crash.
fn supersedes(line: &FrameRecord, kept_was_rebuilt: bool) -> bool {
    kept_was_rebuilt && !line.recovered
}

/// The length of `text` up to the end of its last complete line: a last line without its
/// newline is still being written.
fn complete_lines_len(text: &[u8]) -> usize {
    text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// The non-empty complete lines of `text`.
pub(crate) fn complete_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text[..complete_lines_len(text)]
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty())
}

/// The participant events of `events.jsonl` lines; lines that do not parse are counted in
/// a warning and skipped.
fn parse_events<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    log: &dyn fmt::Display,
) -> Vec<EventRecord> {
    let mut events = Vec::new();
    let mut unreadable = 0_usize;
    for line in lines {
        match serde_json::from_slice(line) {
            Ok(event) => events.push(event),
            Err(_) => unreadable += 1,
        }
    }
    if unreadable > 0 {
        tracing::warn!(%log, unreadable, "skipped unreadable participant event lines");
    }
    events
}

/// A cached stream index, for the cache's budget.
trait Indexed {
    /// Frames the index holds, readable without its lock.
    fn frames(&self) -> usize;
}

/// Stream indexes kept between requests, bounded by the frames they hold together. The
/// least recently used go first; the stream just used is always kept, however large.
struct IndexCache<S> {
    streams: LruCache<StreamKey, Arc<S>>,
    frame_budget: usize,
}

impl<S: Indexed> IndexCache<S> {
    fn new(frame_budget: usize) -> Self {
        IndexCache {
            streams: LruCache::unbounded(),
            frame_budget,
        }
    }

    fn get(&mut self, key: &StreamKey) -> Option<Arc<S>> {
        self.streams.get(key).cloned()
    }

    fn get_or_insert(&mut self, key: &StreamKey, make: impl FnOnce() -> S) -> Arc<S> {
        self.streams
            .get_or_insert(key.clone(), || Arc::new(make()))
            .clone()
    }

    /// Drops the least recently used indexes until the rest fit the budget, never the one
    /// in use.
    fn keep_within_budget(&mut self, in_use: &StreamKey) {
        let mut total: usize = self.streams.iter().map(|(_, s)| s.frames()).sum();
        while total > self.frame_budget && self.streams.len() > 1 {
            let Some((key, oldest)) = self.streams.pop_lru() else {
                break;
            };
            if &key == in_use {
                self.streams.push(key, oldest);
            } else {
                total -= oldest.frames();
            }
        }
    }
}

/// Parses a participant id as a client writes it in a URL: decimal digits only.
pub fn parse_participant_id(text: &str) -> Option<ParticipantId> {
    let digits = !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse().ok().map(ParticipantId))
        .flatten()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::frame::StreamKind;
    use crate::layout;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A manifest line for the frame at `ms`; a rebuilt one has no wall-clock time.
    pub(crate) fn record(ms: u64, recovered: bool) -> FrameRecord {
        FrameRecord {
            file: layout::frame_file_name(ms),
            relative: ms as f64 / 1000.0,
            absolute: (!recovered)
                .then(|| Timestamp::from_millisecond(1_795_000_000_000 + ms as i64).unwrap()),
            width: 640,
            height: 360,
            bytes: 1000 + ms,
            received_at: Timestamp::UNIX_EPOCH,
            recovered,
        }
    }

    pub(crate) fn ms(page: &FramePage) -> Vec<u64> {
        page.frames.iter().map(|f| f.relative_ms).collect()
    }

    fn key(participant: u64) -> StreamKey {
        StreamKey {
            recording: RecordingId::parse("rec").unwrap(),
            participant: ParticipantId(participant),
            kind: StreamKind::Webcam,
        }
    }

    #[test]
    fn pages_continue_after_a_time_and_a_writers_line_beats_a_rebuilt_one() {
        let mut index = FrameIndex::default();
        for at in [2500, 500, 1500, 1000, 2000] {
            index.insert(&record(at, at == 1500));
        }
        // Listed twice (two chunks), and rebuilt then written: one frame each.
        index.insert(&record(500, false));
        index.insert(&record(1500, false));
        index.insert(&record(1000, true));
        let first = index.page(None, 2);
        assert_eq!(
            (ms(&first), first.total, first.next_after),
            (vec![500, 1000], 5, Some(1000))
        );
        let second = index.page(first.next_after, 2);
        assert_eq!(
            (ms(&second), second.next_after),
            (vec![1500, 2000], Some(2000))
        );
        assert!(second.frames[0].absolute.is_some(), "the writer's own line");
        assert!(
            index.page(Some(500), 1).frames[0].absolute.is_some(),
            "a rebuilt line never replaces the writer's"
        );
        let last = index.page(second.next_after, 2);
        assert_eq!((ms(&last), last.next_after), (vec![2500], None));
        // `after` between frames, before all, at the end, past the end.
        assert_eq!(ms(&index.page(Some(1200), 1)), vec![1500]);
        assert_eq!(ms(&index.page(Some(0), 1)), vec![500]);
        assert_eq!(index.page(Some(2500), 10).frames, vec![]);
        assert_eq!(index.page(Some(u64::MAX), 10).next_after, None);
        assert_eq!(ms(&index.page(None, usize::MAX)).len(), 5);
        let summary = index.summary(key(1));
        assert_eq!(
            (
                summary.frames,
                summary.first.map(|f| f.relative_ms),
                summary.last.map(|f| f.relative_ms)
            ),
            (5, Some(500), Some(2500))
        );
    }

    #[test]
    fn only_complete_lines_are_indexed() {
        let mut index = FrameIndex::default();
        let line = |ms| format!("{}\n", serde_json::to_string(&record(ms, false)).unwrap());
        let whole = [line(500), "not json\n".into(), line(1000)].concat();
        let torn = line(1500);
        let text = format!("{whole}{}", &torn[..20]);
        assert_eq!(index.add_lines(text.as_bytes(), &"test"), whole.len());
        assert_eq!(ms(&index.page(None, 10)), vec![500, 1000]);
    }

    struct Counted(AtomicUsize);

    impl Indexed for Counted {
        fn frames(&self) -> usize {
            self.0.load(Ordering::Relaxed)
        }
    }

    #[test]
    fn the_index_cache_keeps_within_its_frame_budget() {
        let mut cache = IndexCache::new(10);
        for participant in 0..3 {
            cache.get_or_insert(&key(participant), || Counted(AtomicUsize::new(6)));
            cache.keep_within_budget(&key(participant));
        }
        let kept: Vec<_> = cache.streams.iter().map(|(k, _)| k.participant.0).collect();
        assert_eq!(kept, vec![2], "only the newest fits");
        // The stream in use stays even when it alone is over budget.
        cache.get_or_insert(&key(9), || Counted(AtomicUsize::new(50)));
        cache.keep_within_budget(&key(9));
        assert!(cache.get(&key(9)).is_some());
    }

    #[test]
    fn participant_ids_in_urls_are_plain_digits() {
        assert_eq!(parse_participant_id("100"), Some(ParticipantId(100)));
        assert_eq!(parse_participant_id("0"), Some(ParticipantId(0)));
        for bad in [
            "",
            "+1",
            "-1",
            "1.0",
            "100-alice",
            " 1",
            "..",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_participant_id(bad), None, "{bad:?}");
        }
    }
}
