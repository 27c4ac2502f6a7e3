//! What the meeting replay reads: a stream's frames between two times (with the frame still
//! on screen when the span starts), and where a stream had frames at all, as runs. Both
//! come from the stream's in-memory index, so a long meeting costs no more than its
//! answer.

use std::ops::Bound;

use super::{Catalog, CatalogError, FrameIndex};
use crate::frame::StreamKey;

/// A stream's frames between two times, by millisecond.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameSpan {
    /// The last frame before `from`: the one showing when the span starts.
    pub before: Option<u64>,
    /// Frames at or after `from` and at or before `to`, in time order, at most the limit.
    pub frames: Vec<u64>,
    /// Where the listing goes on when the limit cut it short.
    pub next_from: Option<u64>,
}

impl FrameIndex {
    fn span(&self, from: u64, to: u64, limit: usize) -> FrameSpan {
        let before = self.frames.range(..from).next_back().map(|(&ms, _)| ms);
        let mut inside = self
            .frames
            .range((Bound::Included(from), Bound::Included(to)))
            .map(|(&ms, _)| ms);
        let frames: Vec<u64> = inside.by_ref().take(limit).collect();
        let next_from = inside.next();
        FrameSpan {
            before,
            frames,
            next_from,
        }
    }

    /// Runs of frames no more than `max_gap` ms apart, as `(first, last)`.
    fn runs(&self, max_gap: u64) -> Vec<(u64, u64)> {
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &ms in self.frames.keys() {
            match runs.last_mut() {
                Some((_, last)) if ms - *last <= max_gap => *last = ms,
                _ => runs.push((ms, ms)),
            }
        }
        runs
    }
}

impl Catalog {
    /// A stream's frames from `from` to `to` ms (both included), at most `limit`, with the
    /// last frame before `from`.
    pub async fn frame_span(
        &self,
        stream: &StreamKey,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<FrameSpan, CatalogError> {
        let key = self.stream_key(stream).await?;
        let (span, found) = self
            .read_index(stream, &key, |index| {
                (index.frames.span(from, to, limit), index.cursor.found_log())
            })
            .await?;
        if !found {
            return Err(CatalogError::NotFound);
        }
        Ok(span)
    }

    /// Where a stream had frames: runs of frames no more than `max_gap` ms apart, as
    /// `(first, last)` ms. Empty for a stream with no frames.
    pub async fn frame_runs(
        &self,
        stream: &StreamKey,
        max_gap: u64,
    ) -> Result<Vec<(u64, u64)>, CatalogError> {
        let key = self.stream_key(stream).await?;
        self.read_index(stream, &key, |index| index.frames.runs(max_gap))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::tests::record;

    fn index(times: &[u64]) -> FrameIndex {
        let mut index = FrameIndex::default();
        for &ms in times {
            index.insert(ms, &record(ms, false));
        }
        index
    }

    #[test]
    fn a_span_has_the_frame_showing_at_its_start_and_stops_at_its_limit() {
        let index = index(&[500, 1000, 1500, 2000, 2500]);
        assert_eq!(
            index.span(1200, 2000, 10),
            FrameSpan {
                before: Some(1000),
                frames: vec![1500, 2000],
                next_from: None
            }
        );
        // A frame exactly at `from` is in the span, not before it.
        let at = index.span(1000, 1000, 10);
        assert_eq!((at.before, at.frames), (Some(500), vec![1000]));
        let cut = index.span(0, 10_000, 2);
        assert_eq!(
            (cut.before, cut.frames, cut.next_from),
            (None, vec![500, 1000], Some(1500))
        );
        let past = index.span(9000, 9500, 10);
        assert_eq!((past.before, past.frames), (Some(2500), vec![]));
        assert_eq!(FrameIndex::default().span(0, u64::MAX, 1).before, None);
    }

    #[test]
    fn runs_split_where_frames_stop_for_longer_than_the_gap() {
        let index = index(&[0, 500, 1000, 4000, 4500, 9000]);
        assert_eq!(
            index.runs(2000),
            vec![(0, 1000), (4000, 4500), (9000, 9000)]
        );
        assert_eq!(index.runs(10_000), vec![(0, 9000)]);
        assert_eq!(FrameIndex::default().runs(2000), vec![]);
    }
}
