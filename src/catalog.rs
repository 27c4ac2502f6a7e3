//! Reading saved recordings back: the [`Catalog`] trait that the browse UI and the JSON API
//! read through, with one implementation per storage backend (`catalog/fs.rs` for
//! `DATA_DIR`).
//!
//! A catalog speaks in the domain's names ([`RecordingId`], [`StreamKey`], milliseconds)
//! and in the keys of [`crate::layout`]; it never takes a path or a key from a client.
//! Frames are listed in pages that start after a time, which the zero-padded frame names
//! make a plain "start after" listing on any store.

pub mod fs;
pub mod object;

use crate::layout::EventRecord;
use std::path::PathBuf;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use serde::Serialize;

use crate::frame::{FrameTime, Participant, ParticipantId, RecordingId, StreamKey};
use crate::layout::RecordingSummary;

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
    Fs(#[from] fs::FsCatalogError),
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

/// Sorts recordings newest first: by start time, then by id for those without one.
pub fn sort_newest_first(recordings: &mut [RecordingOverview]) {
    recordings.sort_by(|a, b| {
        b.started_at
            .cmp(&a.started_at)
            .then_with(|| a.id.cmp(&b.id))
    });
}

/// Parses a participant id as a client writes it in a URL: decimal digits only.
pub fn parse_participant_id(text: &str) -> Option<ParticipantId> {
    let digits = !text.is_empty() && text.len() <= 20 && text.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| text.parse().ok().map(ParticipantId))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

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
