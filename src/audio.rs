//! Per-participant and mixed audio: the decoded [`AudioChunk`], the one timeline every track
//! is laid on (16 kHz samples since the recording started), the WAV header, and the
//! [`Timeline`] that decides where each chunk's samples go.
//!
//! A track is a set of segments; a segment is a run of samples without a silence longer than
//! [`SEGMENT_GAP_SAMPLES`]. A segment is stored as pieces of at most [`PIECE_SAMPLES`], each a
//! complete WAV file named by the millisecond its first sample sits at: a segment starts on
//! a whole millisecond, so a piece's name alone places it on the timeline, sample-exact.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use jiff::Timestamp;

use crate::frame::{FrameTime, Participant, ParticipantId, RecordingId, RecordingInfo};
use crate::layout::AudioRecord;

/// Samples per second: Recall sends 16 kHz mono PCM.
pub const SAMPLE_RATE: u32 = 16_000;
/// Bytes per sample: signed 16-bit little-endian.
pub const BYTES_PER_SAMPLE: u64 = 2;
/// Samples per millisecond, the unit of names.
pub const SAMPLES_PER_MS: u64 = SAMPLE_RATE as u64 / 1000;
/// The longest chunk accepted: 10 s. Recall does not document its chunk length (tens of
/// milliseconds in practice); anything this long is a client gone wrong.
pub const MAX_CHUNK_SAMPLES: u64 = 10 * SAMPLE_RATE as u64;
/// A silence longer than this (2 s, someone muted) ends a segment: the next sample starts a
/// new one. Shorter silences are filled with zeros inside the segment and listed as gaps.
pub const SEGMENT_GAP_SAMPLES: u64 = 2 * SAMPLE_RATE as u64;
/// Samples a piece holds at most: 10 s, 320 KB of PCM. Bounds what a bucket rewrites, and
/// what one read of the API fetches.
pub const PIECE_SAMPLES: u64 = 10 * SAMPLE_RATE as u64;
/// A WAV file's canonical header, before its samples.
pub const WAV_HEADER_BYTES: u64 = 44;

/// Whose audio a chunk is.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    /// Shared: every chunk of a track names the same participant.
    Participant(Arc<Participant>),
    /// `audio_mixed_raw.data`: the whole call mixed.
    Mixed,
}

/// One track of a recording: a participant's audio, or the mixed audio.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AudioTrackKey {
    pub recording: RecordingId,
    /// `None` for the mixed track.
    pub participant: Option<ParticipantId>,
}

impl std::fmt::Display for AudioTrackKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.participant {
            Some(id) => write!(f, "{}/{id}/audio", self.recording),
            None => write!(f, "{}/mixed/audio", self.recording),
        }
    }
}

/// One decoded, validated chunk of audio: a whole number of samples, within the cap, at a
/// place on the recording's timeline.
#[derive(Debug, Clone)]
pub struct AudioChunk {
    pub source: AudioSource,
    pub time: FrameTime,
    /// The first sample's place on the timeline: `time.relative` × 16,000, rounded.
    pub start_sample: u64,
    /// The samples as sent: s16le, an even number of bytes, at most [`MAX_CHUNK_SAMPLES`].
    pub pcm: Bytes,
    /// Shared, as the source is: every chunk of a track carries the same context.
    pub recording: Arc<RecordingInfo>,
    pub received_at: Timestamp,
    /// When the message was read from the socket, for receipt-to-disk latency.
    pub received: Instant,
}

impl AudioChunk {
    pub fn samples(&self) -> u64 {
        self.pcm.len() as u64 / BYTES_PER_SAMPLE
    }

    pub fn track(&self) -> AudioTrackKey {
        AudioTrackKey {
            recording: self.recording.id.clone(),
            participant: match &self.source {
                AudioSource::Participant(p) => Some(p.id),
                AudioSource::Mixed => None,
            },
        }
    }

    /// The place of a chunk starting `relative` seconds into the recording, or `None` when it
    /// is not a meeting time (negative, not a number, past the 9-digit names).
    pub fn start_sample(relative: f64) -> Option<u64> {
        let sample = (relative * f64::from(SAMPLE_RATE)).round();
        let max = (FrameTime::MAX_RELATIVE_MS * SAMPLES_PER_MS) as f64;
        (sample.is_finite() && (0.0..=max).contains(&sample)).then_some(sample as u64)
    }
}

/// The 44-byte header of a WAV file of `samples` samples of 16 kHz mono s16le. Sizes past
/// 4 GiB (37 hours) are capped, as every WAV reader expects.
pub fn wav_header(samples: u64) -> [u8; WAV_HEADER_BYTES as usize] {
    let data = u32::try_from(samples * BYTES_PER_SAMPLE)
        .unwrap_or(u32::MAX - 36)
        .min(u32::MAX - 36);
    let mut header = [0u8; WAV_HEADER_BYTES as usize];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        header[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(b"RIFF");
    put(&(36 + data).to_le_bytes());
    put(b"WAVE");
    put(b"fmt ");
    put(&16u32.to_le_bytes()); // the fmt chunk's size
    put(&1u16.to_le_bytes()); // PCM
    put(&1u16.to_le_bytes()); // mono
    put(&SAMPLE_RATE.to_le_bytes());
    put(&(SAMPLE_RATE * BYTES_PER_SAMPLE as u32).to_le_bytes()); // bytes per second
    put(&(BYTES_PER_SAMPLE as u16).to_le_bytes()); // block align
    put(&16u16.to_le_bytes()); // bits per sample
    put(b"data");
    put(&data.to_le_bytes());
    header
}

/// The name of the piece whose first sample sits at millisecond `ms`: `000012500.wav`.
pub fn piece_file_name(ms: u64) -> String {
    format!("{ms:09}.wav")
}

/// The inverse of [`piece_file_name`]; `None` for any other name.
pub fn parse_piece_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".wav")?;
    (digits.len() == 9 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// A half-open range of samples on the timeline.
pub type Span = (u64, u64);

/// A set of samples, as merged half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampleSet {
    ranges: BTreeMap<u64, u64>,
}

impl SampleSet {
    /// Adds `[start, end)`, merging with what it touches.
    pub fn insert(&mut self, (mut start, mut end): Span) {
        if start >= end {
            return;
        }
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back()
            && e >= start
        {
            start = s;
            end = end.max(e);
        }
        // The ranges starting inside are taken in, one at a time (usually none: a chunk
        // extends the range before it, whose entry is then updated in place).
        while let Some((&s, &e)) = self
            .ranges
            .range((
                std::ops::Bound::Excluded(start),
                std::ops::Bound::Included(end),
            ))
            .next()
        {
            self.ranges.remove(&s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
    }

    /// The parts of `[start, end)` not in the set, in order.
    pub fn missing(&self, (start, end): Span) -> Vec<Span> {
        let mut missing = Vec::new();
        let mut at = start;
        let first = self
            .ranges
            .range(..=start)
            .next_back()
            .map_or(start, |(&s, _)| s);
        for (&s, &e) in self.ranges.range(first..end) {
            if e <= at {
                continue;
            }
            if s > at {
                missing.push((at, s.min(end)));
            }
            at = at.max(e);
            if at >= end {
                break;
            }
        }
        if at < end {
            missing.push((at, end));
        }
        missing
    }

    pub fn ranges(&self) -> impl Iterator<Item = Span> + '_ {
        self.ranges.iter().map(|(&s, &e)| (s, e))
    }
}

/// Where a track's samples are: its segments (start → end of what is stored) and the
/// samples received. Deciding where a chunk goes is pure: the recorder then writes what
/// [`Timeline::place`] says.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub segments: BTreeMap<u64, u64>,
    pub received: SampleSet,
}

/// What placing one chunk decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Runs of the chunk's samples to store, each within one segment: (segment start,
    /// run on the timeline). A run replaces silence or extends its segment.
    pub writes: Vec<(u64, Span)>,
    /// Segments this chunk started.
    pub new_segments: Vec<u64>,
    /// Silences laid down (zeros) inside a segment before a run extending it.
    pub gaps: Vec<Span>,
    /// Samples of the chunk already received: kept as first written, not written again.
    pub overlap: u64,
    /// The chunk's samples on the timeline.
    pub chunk: Span,
    /// The segments written to, with their ends once the writes are done.
    pub segment_ends: Vec<(u64, u64)>,
}

impl Placement {
    /// Samples written.
    pub fn written(&self) -> u64 {
        self.writes.iter().map(|(_, (s, e))| e - s).sum()
    }
}

impl Timeline {
    /// Decides where the samples `[start, start + samples)` go, and notes them as received
    /// and stored. A chunk whose every sample was received already places nothing: a
    /// duplicate.
    pub fn place(&mut self, start: u64, samples: u64) -> Placement {
        let placement = self.plan(start, samples);
        self.commit(&placement);
        placement
    }

    /// Notes what [`Timeline::plan`] decided as done: its samples received and stored.
    pub fn commit(&mut self, placement: &Placement) {
        for &(segment, end) in &placement.segment_ends {
            let stored = self.segments.entry(segment).or_insert(end);
            *stored = (*stored).max(end);
        }
        self.received.insert(placement.chunk);
    }

    /// Decides where the samples `[start, start + samples)` go, changing nothing: the caller
    /// stores them, then [`Timeline::commit`]s, so that a chunk that failed to be stored can
    /// come again. Costs a copy of the segments (a few per long silence), never of the
    /// samples received.
    pub fn plan(&self, start: u64, samples: u64) -> Placement {
        let end = start + samples;
        let missing = self.received.missing((start, end));
        let mut placement = Placement {
            overlap: samples - missing.iter().map(|(s, e)| e - s).sum::<u64>(),
            chunk: (start, end),
            ..Placement::default()
        };
        let mut segments = self.segments.clone();
        for (mut at, run_end) in missing {
            while at < run_end {
                let previous = segments.range(..=at).next_back().map(|(&s, &e)| (s, e));
                let (segment, segment_end) = match previous {
                    Some((s, e)) if at <= e + SEGMENT_GAP_SAMPLES => (s, e),
                    _ => {
                        // A segment starts on a whole millisecond; the few samples before
                        // the chunk's first are silence, not a gap.
                        let s = at / SAMPLES_PER_MS * SAMPLES_PER_MS;
                        let s = previous.map_or(s, |(_, e)| s.max(e));
                        segments.insert(s, s);
                        placement.new_segments.push(s);
                        (s, s)
                    }
                };
                let limit = segments
                    .range(segment + 1..)
                    .next()
                    .map_or(u64::MAX, |(&s, _)| s);
                let until = run_end.min(limit);
                if at > segment_end && segment_end > segment {
                    placement.gaps.push((segment_end, at));
                }
                placement.writes.push((segment, (at, until)));
                segments.insert(segment, segment_end.max(until));
                placement
                    .segment_ends
                    .push((segment, segment_end.max(until)));
                at = until;
            }
        }
        placement
    }

    /// The silences inside segments: what no received sample covers.
    pub fn gaps(&self) -> Vec<Span> {
        let mut gaps = Vec::new();
        for (&s, &e) in &self.segments {
            // The lead before a segment's first sample is alignment, not a gap.
            let first = self
                .received
                .missing((s, e))
                .first()
                .filter(|(from, _)| *from == s)
                .map_or(s, |&(_, to)| to);
            gaps.extend(
                self.received
                    .missing((first, e))
                    .into_iter()
                    .filter(|(a, b)| b > a),
            );
        }
        gaps
    }
}

/// A track as its manifest and its pieces say it is stored: what a writer takes up again
/// and what a reader serves.
#[derive(Debug, Clone, Default)]
pub struct StoredTrack {
    pub timeline: Timeline,
    /// Each piece's first sample → the samples it holds.
    pub pieces: BTreeMap<u64, u64>,
    /// Chunks the manifest lists.
    pub chunks: usize,
    /// Segments found as pieces without a line in the manifest (a crash took it).
    pub unlisted_segments: Vec<u64>,
}

impl StoredTrack {
    /// From the manifest's records and the pieces listed: `(first sample, samples held)`.
    pub fn read(
        records: impl IntoIterator<Item = AudioRecord>,
        pieces: impl IntoIterator<Item = (u64, u64)>,
    ) -> Self {
        let mut track = StoredTrack::default();
        for record in records {
            match record {
                AudioRecord::Segment { start_sample, .. } => {
                    track
                        .timeline
                        .segments
                        .entry(start_sample)
                        .or_insert(start_sample);
                }
                AudioRecord::Chunk {
                    start_sample,
                    samples,
                    ..
                } => {
                    track.chunks += 1;
                    track
                        .timeline
                        .received
                        .insert((start_sample, start_sample + samples));
                }
                AudioRecord::Gap { .. } => {}
            }
        }
        track.pieces = pieces.into_iter().collect();
        for (&piece, &samples) in &track.pieces {
            let segment = track
                .timeline
                .segments
                .range(..=piece)
                .next_back()
                .map(|(&s, _)| s)
                .filter(|&s| (piece - s).is_multiple_of(PIECE_SAMPLES));
            let segment = segment.unwrap_or_else(|| {
                track.timeline.segments.insert(piece, piece);
                track.unlisted_segments.push(piece);
                piece
            });
            let end = track.timeline.segments.entry(segment).or_insert(segment);
            *end = (*end).max(piece + samples);
        }
        // A segment line without a piece yet (a crash before its first write) holds nothing.
        track.timeline.segments.retain(|&s, &mut e| e > s);
        track
    }

    /// Samples stored at the end of a segment that no received chunk lists: written just
    /// before a crash took their lines.
    pub fn unlisted_tails(&self) -> Vec<Span> {
        let mut tails = Vec::new();
        for (&s, &e) in &self.timeline.segments {
            let listed_end = self
                .timeline
                .received
                .ranges()
                .filter(|&(a, b)| a < e && b > s)
                .map(|(_, b)| b.min(e))
                .max()
                .unwrap_or(s);
            if listed_end < e {
                tails.push((listed_end, e));
            }
        }
        tails
    }

    /// The end of the track: one past its last stored sample.
    pub fn end(&self) -> u64 {
        self.pieces.iter().map(|(&p, &n)| p + n).max().unwrap_or(0)
    }
}

/// The segments a track's pieces alone make, without its manifest: a piece continues a
/// segment when the piece before it is full and ends where it starts. Exact, since a segment
/// only ever follows another after more than [`SEGMENT_GAP_SAMPLES`] of silence.
pub fn segments_of_pieces(pieces: &BTreeMap<u64, u64>) -> usize {
    let mut segments = 0;
    let mut previous: Option<(u64, u64)> = None;
    for (&piece, &samples) in pieces {
        let continues =
            previous.is_some_and(|(p, n)| n == PIECE_SAMPLES && p + PIECE_SAMPLES == piece);
        if !continues {
            segments += 1;
        }
        previous = Some((piece, samples));
    }
    segments
}

/// How loud a track is over time: the root mean square of its samples in `buckets` equal
/// spans of `[0, end)`, as a fraction of full scale (0 silence, 1 the loudest square wave).
/// Samples are added a run at a time, in any order; silence is what was never added.
#[derive(Debug, Clone)]
pub struct Levels {
    end: u64,
    squares: Vec<f64>,
}

impl Levels {
    pub fn new(end: u64, buckets: usize) -> Self {
        Levels {
            end,
            squares: vec![0.0; buckets],
        }
    }

    /// The first sample of bucket `i`: `ceil(i × end / buckets)`.
    fn bucket_start(&self, i: usize) -> u64 {
        let n = self.squares.len() as u128;
        ((i as u128 * u128::from(self.end)).div_ceil(n)) as u64
    }

    /// Adds s16le `pcm` whose first sample sits at `first`; samples past `end` are left out.
    pub fn add(&mut self, first: u64, pcm: &[u8]) {
        let n = self.squares.len();
        if n == 0 || self.end == 0 {
            return;
        }
        let samples = pcm.chunks_exact(BYTES_PER_SAMPLE as usize);
        let mut bucket = (u128::from(first) * n as u128 / u128::from(self.end)) as usize;
        let mut next = self.bucket_start(bucket + 1);
        for (at, sample) in (first..self.end).zip(samples) {
            while at >= next {
                bucket += 1;
                next = self.bucket_start(bucket + 1);
            }
            let value = f64::from(i16::from_le_bytes([sample[0], sample[1]]));
            self.squares[bucket] += value * value;
        }
    }

    /// Each bucket's level, from 0 to 1.
    pub fn finish(&self) -> Vec<f64> {
        (0..self.squares.len())
            .map(|i| {
                let count = self.bucket_start(i + 1) - self.bucket_start(i);
                if count == 0 {
                    return 0.0;
                }
                ((self.squares[i] / count as f64).sqrt() / 32768.0).min(1.0)
            })
            .collect()
    }
}

/// The pieces that hold the samples `[from, to)` of the segment starting at `segment`: the
/// start of each piece, and the run in it.
pub fn pieces_of(segment: u64, (from, to): Span) -> Vec<(u64, Span)> {
    let mut pieces = Vec::new();
    let mut at = from;
    while at < to {
        let piece = segment + (at - segment) / PIECE_SAMPLES * PIECE_SAMPLES;
        let until = to.min(piece + PIECE_SAMPLES);
        pieces.push((piece, (at, until)));
        at = until;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = SAMPLE_RATE as u64;

    #[test]
    fn a_header_is_what_a_wav_reader_expects() {
        let mut wav = wav_header(3).to_vec();
        wav.extend_from_slice(&[1, 0, 2, 0, 0xff, 0xff]);
        let reader = hound::WavReader::new(std::io::Cursor::new(wav)).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 16_000, 16)
        );
        let samples: Vec<i16> = reader.into_samples().map(Result::unwrap).collect();
        assert_eq!(samples, [1, 2, -1]);
    }

    #[test]
    fn sample_sets_merge_and_say_what_is_missing() {
        let mut set = SampleSet::default();
        set.insert((10, 20));
        set.insert((30, 40));
        assert_eq!(set.missing((0, 50)), [(0, 10), (20, 30), (40, 50)]);
        assert_eq!(set.missing((12, 18)), []);
        assert_eq!(set.missing((15, 35)), [(20, 30)]);
        set.insert((20, 30));
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(10, 40)]);
        set.insert((0, 5));
        set.insert((5, 10));
        assert_eq!(set.ranges().collect::<Vec<_>>(), [(0, 40)]);
    }

    #[test]
    fn sample_sets_hold_what_was_inserted() {
        use rand::{RngExt as _, SeedableRng as _};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(18);
        for _ in 0..200 {
            let (mut set, mut model) = (SampleSet::default(), [false; 64]);
            for _ in 0..12 {
                let (a, b): (u64, u64) = (rng.random_range(0..64), rng.random_range(0..64));
                set.insert((a.min(b), a.max(b)));
                model[a.min(b) as usize..a.max(b) as usize].fill(true);
                let mut runs = Vec::new();
                for (i, &held) in model.iter().enumerate() {
                    match runs.last_mut() {
                        Some((_, end)) if held && *end == i as u64 => *end += 1,
                        _ if held => runs.push((i as u64, i as u64 + 1)),
                        _ => {}
                    }
                }
                assert_eq!(set.ranges().collect::<Vec<_>>(), runs);
            }
        }
    }

    #[test]
    fn chunks_in_order_make_one_segment_and_a_short_silence_is_a_gap() {
        let mut timeline = Timeline::default();
        let first = timeline.place(S, 320);
        assert_eq!(first.new_segments, [S]);
        assert_eq!(first.writes, [(S, (S, S + 320))]);
        let next = timeline.place(S + 320, 320);
        assert_eq!(next.writes, [(S, (S + 320, S + 640))]);
        assert!(next.gaps.is_empty());
        // Half a second of nothing, then more: the same segment, with a gap.
        let after = timeline.place(S + 640 + S / 2, 320);
        assert_eq!(after.gaps, [(S + 640, S + 640 + S / 2)]);
        assert_eq!(after.writes[0].0, S);
        assert_eq!(timeline.gaps(), [(S + 640, S + 640 + S / 2)]);
    }

    #[test]
    fn a_long_silence_starts_a_segment_on_a_whole_millisecond() {
        let mut timeline = Timeline::default();
        timeline.place(0, 320);
        let late = timeline.place(5 * S + 7, 320);
        assert_eq!(late.new_segments, [5 * S]);
        assert_eq!(late.writes, [(5 * S, (5 * S + 7, 5 * S + 327))]);
        assert!(late.gaps.is_empty());
        assert!(timeline.gaps().is_empty(), "{:?}", timeline.gaps());
    }

    #[test]
    fn duplicates_overlaps_and_late_chunks() {
        let mut timeline = Timeline::default();
        timeline.place(0, 320);
        timeline.place(640, 320);
        assert_eq!(timeline.gaps(), [(320, 640)]);
        let again = timeline.place(0, 320);
        assert_eq!((again.written(), again.overlap), (0, 320), "a duplicate");
        let overlapping = timeline.place(160, 320);
        assert_eq!(overlapping.writes, [(0, (320, 480))]);
        assert_eq!(overlapping.overlap, 160);
        assert_eq!(timeline.gaps(), [(480, 640)]);
        let late = timeline.place(480, 160);
        assert_eq!(late.writes, [(0, (480, 640))]);
        assert!(timeline.gaps().is_empty());
    }

    #[test]
    fn a_late_chunk_before_a_later_segment_stops_at_its_start() {
        let mut timeline = Timeline::default();
        timeline.place(10 * S, 320);
        let early = timeline.place(10 * S - 160, 320);
        assert_eq!(early.new_segments, [10 * S - 160]);
        assert_eq!(early.writes, [(10 * S - 160, (10 * S - 160, 10 * S))]);
        assert_eq!(early.overlap, 160);
    }

    #[test]
    fn segments_follow_full_pieces_only() {
        let p = PIECE_SAMPLES;
        let pieces = BTreeMap::from([(16, p), (16 + p, 100), (16 + p + 100 + 3 * S, 5)]);
        assert_eq!(segments_of_pieces(&pieces), 2);
        assert_eq!(segments_of_pieces(&BTreeMap::new()), 0);
        // A short piece is a segment's last: what starts at its end is another segment.
        assert_eq!(segments_of_pieces(&BTreeMap::from([(0, 10), (p, 10)])), 2);
    }

    #[test]
    fn levels_are_the_rms_of_each_bucket_and_silence_is_zero() {
        let loud: Vec<u8> = (0..1600)
            .flat_map(|i| if i % 2 == 0 { 16384i16 } else { -16384 }.to_le_bytes())
            .collect();
        // Four buckets of 1600 samples; the second one loud, the rest never sent.
        let mut levels = Levels::new(6400, 4);
        levels.add(1600, &loud);
        assert_eq!(levels.finish(), [0.0, 0.5, 0.0, 0.0]);
        // Half a bucket loud: the square mean halves.
        let mut levels = Levels::new(6400, 4);
        levels.add(800, &loud[..1600]);
        let got = levels.finish();
        assert!((got[0] - 0.5 / 2f64.sqrt()).abs() < 1e-9, "{got:?}");
        assert_eq!(got[1..], [0.0, 0.0, 0.0]);
        // Past the end is left out; more buckets than samples leaves some empty.
        let mut levels = Levels::new(3, 8);
        levels.add(0, &loud[..20]);
        assert_eq!(levels.finish().iter().filter(|&&l| l > 0.0).count(), 3);
    }

    #[test]
    fn runs_split_at_piece_boundaries() {
        assert_eq!(
            pieces_of(16, (16 + PIECE_SAMPLES - 10, 16 + PIECE_SAMPLES + 10)),
            [
                (16, (16 + PIECE_SAMPLES - 10, 16 + PIECE_SAMPLES)),
                (
                    16 + PIECE_SAMPLES,
                    (16 + PIECE_SAMPLES, 16 + PIECE_SAMPLES + 10)
                )
            ]
        );
    }
}
