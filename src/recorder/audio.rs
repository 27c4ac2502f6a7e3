//! Audio tracks, written once above the store for every backend: where each chunk's samples
//! go is [`Timeline::place`]'s decision; here they are stored.
//!
//! - Where the store writes in place (a folder), a track's chunks are written behind: their
//!   runs of samples and their manifest lines wait in memory, at most [`WRITE_BEHIND`] (and
//!   [`MAX_UNWRITTEN_BYTES`]), and are then written together, each piece's WAV header updated
//!   in the same trip as its samples, so that every file plays at any moment; the lines
//!   follow. A chunk costs a few microseconds rather than two trips to the blocking pool.
//!   A `kill -9` loses what was waiting; a header left stale by a crash between a piece's
//!   samples and its header is rewritten when the track opens again.
//! - Where objects are only replaced whole (a bucket), a piece is held in memory while it is
//!   written, and each piece written to since is put whole, then the manifest's lines, every
//!   `log_interval`, when the track goes quiet, and at shutdown. A piece is at most 10 s.
//! - A track opening again (a restart, a reconnect after it went quiet) reads its manifest
//!   and its pieces back: resent samples are duplicates, and samples stored without a line
//!   (a crash between the two) get one rebuilt, marked `recovered`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Inner, Lease, Recording, json_line};
use crate::audio::{
    AudioChunk, AudioSource, AudioTrackKey, BYTES_PER_SAMPLE, PIECE_SAMPLES, SAMPLE_RATE,
    SAMPLES_PER_MS, StoredTrack, Timeline, WAV_HEADER_BYTES, parse_piece_file_name,
    piece_file_name, pieces_of, wav_header,
};
use crate::frame::RecordingId;
use crate::layout::{self, AudioRecord};
use crate::sink::{AudioOutcome, SinkError};
use crate::store::{Key, LogWriter, Store, StoreError, read_whole_log};

/// Lines a part of an audio manifest holds where logs are split into parts: about 200
/// bytes each, 50 a second per participant.
const LINES_PER_PART: usize = 1000;
/// A track that receives nothing for this long is flushed and let go; its next chunk opens
/// it again from what is stored. Long, because opening reads the whole manifest (about
/// 50 lines a second of audio) and someone silent for a minute is common; an open track
/// holds its timeline and, in a bucket, one piece (at most 320 KB).
const QUIET: Duration = Duration::from_secs(600);
/// Where pieces are held in memory (a bucket), how often they are written at least, and quiet
/// tracks looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Where pieces are written in place (a folder), how long a chunk may wait in memory to be
/// written with the chunks after it, and how often quiet tracks are looked for: what a
/// `kill -9` can lose of each track. Ten 20 ms chunks of a voice take two trips to the
/// blocking pool (their samples, their lines) rather than twenty.
pub const WRITE_BEHIND: Duration = Duration::from_millis(200);
/// Samples a track holds unwritten at most (1 s of audio), however fast they come: the next
/// chunk waits until they are written.
const MAX_UNWRITTEN_BYTES: usize = 32 * 1024;

/// The tracks being written, each behind its own lock: one chunk at a time per track, in
/// the order they arrive.
#[derive(Default)]
pub(super) struct AudioTracks {
    open: Mutex<HashMap<AudioTrackKey, Arc<tokio::sync::Mutex<Slot>>>>,
}

/// A track's place in [`AudioTracks`]: empty until its first chunk opens it, and closed once
/// let go (a chunk that finds it so takes a new place).
#[derive(Default)]
struct Slot {
    track: Option<AudioTrack>,
    used_at: Option<Instant>,
    closed: bool,
}

impl AudioTracks {
    pub(super) async fn record(
        &self,
        inner: &Arc<Inner>,
        chunk: &AudioChunk,
    ) -> Result<AudioOutcome, SinkError> {
        let key = chunk.track();
        loop {
            let slot = {
                let mut open = self.open.lock();
                match open.get(&key) {
                    Some(slot) => slot.clone(),
                    None => open.entry(key.clone()).or_default().clone(),
                }
            };
            let mut slot = slot.lock().await;
            if slot.closed {
                continue;
            }
            slot.used_at = Some(Instant::now());
            let track = match &mut slot.track {
                Some(track) => track,
                None => slot.track.insert(AudioTrack::open(inner, chunk).await?),
            };
            return track.write(chunk).await;
        }
    }

    /// Flushes every track, and lets go of those quiet for `quiet` (all of them with
    /// `Duration::ZERO`). Returns the first error; every track is tried.
    pub(super) async fn sweep(&self, quiet: Duration) -> Result<(), SinkError> {
        let slots: Vec<(AudioTrackKey, Arc<tokio::sync::Mutex<Slot>>)> = self
            .open
            .lock()
            .iter()
            .map(|(key, slot)| (key.clone(), slot.clone()))
            .collect();
        let mut result = Ok(());
        for (key, shared) in slots {
            let mut slot = shared.lock().await;
            let Some(track) = &mut slot.track else {
                continue;
            };
            let flushed = track.flush().await;
            // Tried again every sweep (five times a second in a folder): said once when it
            // starts failing, and once when it works again.
            match (&flushed, track.failing) {
                (Err(error), false) => {
                    tracing::warn!(%error, track = %key, "could not write an audio track's pieces or manifest; trying again until it works");
                }
                (Ok(()), true) => {
                    tracing::info!(track = %key, "an audio track's pieces and manifest are written again");
                }
                _ => {}
            }
            track.failing = flushed.is_err();
            let quiet_now = slot.used_at.is_none_or(|at| at.elapsed() >= quiet);
            if flushed.is_ok() && quiet_now {
                slot.closed = true;
                slot.track = None;
                let mut open = self.open.lock();
                if open.get(&key).is_some_and(|s| Arc::ptr_eq(s, &shared)) {
                    open.remove(&key);
                }
            }
            if result.is_ok() {
                result = flushed.map_err(SinkError::from);
            }
        }
        result
    }
}

/// Flushes and lets go of quiet tracks until `stop`.
pub(super) async fn keep_tracks(inner: Arc<Inner>, stop: CancellationToken) {
    let every = inner
        .store
        .log_interval()
        .map_or(WRITE_BEHIND, |interval| interval.min(SWEEP_EVERY));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {
                // Errors are logged per track; its pieces and lines stay for the next try.
                let _ = inner.audio.sweep(QUIET).await;
            }
        }
    }
}

/// One track open for writing.
struct AudioTrack {
    inner: Arc<Inner>,
    recording: Lease<Recording>,
    folder: Key,
    timeline: Timeline,
    /// Each piece's first sample → the samples it holds.
    pieces: BTreeMap<u64, u64>,
    /// Where objects are replaced whole: pieces held in memory (their samples, no header),
    /// and those written to since they were last put.
    held: Option<Held>,
    /// Where objects are written in place: runs of samples placed but not yet written, in
    /// the order they were placed, as (piece, offset in the piece's file, samples).
    unwritten: Vec<(u64, u64, Bytes)>,
    unwritten_bytes: usize,
    /// Whether anything placed (samples, pieces or lines) waits to be written.
    pending: bool,
    /// Whether the last flush from [`AudioTracks::sweep`] failed.
    failing: bool,
    manifest: Box<dyn LogWriter>,
}

#[derive(Default)]
struct Held {
    pieces: BTreeMap<u64, Vec<u8>>,
    dirty: std::collections::BTreeSet<u64>,
}

impl AudioTrack {
    async fn open(inner: &Arc<Inner>, first: &AudioChunk) -> Result<Self, SinkError> {
        let recording = inner.recording(&first.recording.id);
        let folder = match &first.source {
            AudioSource::Participant(participant) => {
                let folder = inner
                    .folder(&recording, participant, first.time.relative)
                    .await?;
                let unwritten = recording
                    .state
                    .lock()
                    .note_participant(participant, first.time.relative);
                if unwritten {
                    inner.publish(&recording).await?;
                }
                layout::audio_key(&first.recording.id, Some(&folder))
            }
            AudioSource::Mixed => layout::audio_key(&first.recording.id, None),
        };
        if recording.state.lock().note_recording(&first.recording) {
            inner.publish(&recording).await?;
        }
        let (stored, manifest) = survey(inner, &folder).await?;
        Ok(AudioTrack {
            inner: inner.clone(),
            recording,
            folder,
            timeline: stored.timeline,
            pieces: stored.pieces,
            held: (!inner.store.writes_in_place()).then(Held::default),
            unwritten: Vec::new(),
            unwritten_bytes: 0,
            pending: false,
            failing: false,
            manifest,
        })
    }

    async fn write(&mut self, chunk: &AudioChunk) -> Result<AudioOutcome, SinkError> {
        // What earlier chunks left waiting is written first once there is enough of it (the
        // rest goes every `WRITE_BEHIND`, from `keep_tracks`). Should that fail, this chunk is
        // refused and can come again: what a track holds stays bounded.
        let enough = match self.held {
            None => self.unwritten_bytes >= MAX_UNWRITTEN_BYTES,
            Some(_) => self.manifest.is_full(),
        };
        if enough {
            self.flush().await?;
        }
        let (start, samples) = (chunk.start_sample, chunk.samples());
        // Decided first, noted only once stored (or, in a folder, waiting to be written): a
        // chunk that fails can come again.
        let placement = self.timeline.plan(start, samples);
        if placement.writes.is_empty() {
            return Ok(AudioOutcome::Duplicate);
        }
        self.pending = true;
        for &(segment, run) in &placement.writes {
            for (piece, (from, to)) in pieces_of(segment, run) {
                let pcm = chunk.pcm.slice(
                    ((from - start) * BYTES_PER_SAMPLE) as usize
                        ..((to - start) * BYTES_PER_SAMPLE) as usize,
                );
                self.store_run(piece, from - piece, pcm, to - piece).await?;
            }
        }
        self.timeline.commit(&placement);
        for &segment in &placement.new_segments {
            self.manifest.push(json_line(&segment_record(segment)));
        }
        for &(from, to) in &placement.gaps {
            self.manifest.push(json_line(&AudioRecord::Gap {
                start_sample: from,
                samples: to - from,
                start: seconds(from),
            }));
        }
        let written = placement.written();
        self.manifest.push(chunk_line(&AudioRecord::Chunk {
            start_sample: start,
            start: chunk.time.relative,
            absolute: chunk.time.absolute,
            samples,
            bytes: chunk.pcm.len() as u64,
            received_at: chunk.received_at,
            written,
            overlap: placement.overlap,
            recovered: false,
        }));
        if self.recording.state.lock().note_recording(&chunk.recording) {
            self.inner.publish(&self.recording).await?;
        }
        Ok(AudioOutcome::Saved {
            written,
            overlap: placement.overlap,
        })
    }

    /// Stores `pcm` at sample `at` of the piece starting at `piece`, which then holds at
    /// least `end` samples: in the piece held in memory, or with the runs to write at the
    /// next [`AudioTrack::flush`].
    async fn store_run(
        &mut self,
        piece: u64,
        at: u64,
        pcm: Bytes,
        end: u64,
    ) -> Result<(), StoreError> {
        debug_assert!(end <= PIECE_SAMPLES);
        let held_samples = self.pieces.get(&piece).copied().unwrap_or(0);
        let samples = held_samples.max(end);
        match &mut self.held {
            None => {
                self.unwritten_bytes += pcm.len();
                self.unwritten
                    .push((piece, WAV_HEADER_BYTES + at * BYTES_PER_SAMPLE, pcm));
            }
            Some(held) => {
                let data = match held.pieces.entry(piece) {
                    std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        // A late chunk into a piece already put: read it back to change it.
                        let stored = match held_samples {
                            0 => Vec::new(),
                            _ => self
                                .inner
                                .store
                                .get(&piece_key(&self.folder, piece))
                                .await?
                                .map(|found| {
                                    found
                                        .bytes
                                        .get(WAV_HEADER_BYTES as usize..)
                                        .unwrap_or_default()
                                        .to_vec()
                                })
                                .unwrap_or_default(),
                        };
                        entry.insert(stored)
                    }
                };
                let (from, to) = (
                    (at * BYTES_PER_SAMPLE) as usize,
                    (at * BYTES_PER_SAMPLE) as usize + pcm.len(),
                );
                if data.len() < to {
                    data.resize(to, 0);
                }
                data[from..to].copy_from_slice(&pcm);
                held.dirty.insert(piece);
            }
        }
        self.pieces.insert(piece, samples);
        Ok(())
    }

    /// Writes what waits: the runs of samples placed (each piece's with its header) or the
    /// pieces held in memory that changed, then the pending manifest lines. On an error
    /// everything stays to be written again: the same bytes at the same places.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if !self.pending {
            return Ok(());
        }
        if !self.unwritten.is_empty() {
            for (piece, writes) in runs_by_piece(&self.unwritten) {
                let mut writes = writes;
                let samples = self.pieces.get(&piece).copied().unwrap_or(0);
                writes.push((0, Bytes::copy_from_slice(&wav_header(samples))));
                self.inner
                    .store
                    .write_at(&piece_key(&self.folder, piece), writes)
                    .await?;
            }
            self.unwritten.clear();
            self.unwritten_bytes = 0;
        }
        if let Some(held) = &mut self.held {
            let dirty: Vec<u64> = held.dirty.iter().copied().collect();
            for piece in dirty {
                let Some(data) = held.pieces.get(&piece) else {
                    continue;
                };
                let samples = data.len() as u64 / BYTES_PER_SAMPLE;
                let mut body = Vec::with_capacity(WAV_HEADER_BYTES as usize + data.len());
                body.extend_from_slice(&wav_header(samples));
                body.extend_from_slice(data);
                let key = piece_key(&self.folder, piece);
                self.inner.store.put(&key, body.into()).await?;
                held.dirty.remove(&piece);
            }
            // Only the newest piece is likely to grow: the others go, and a late chunk
            // reads its piece back.
            if let Some(&newest) = held.pieces.keys().next_back() {
                held.pieces.retain(|&piece, _| piece == newest);
            }
        }
        self.manifest.flush().await?;
        self.pending = false;
        Ok(())
    }
}

/// The runs of samples waiting to be written, gathered per piece (in the order pieces start)
/// with runs that follow each other in a piece joined into one write: most of a voice's
/// chunks are.
fn runs_by_piece(runs: &[(u64, u64, Bytes)]) -> BTreeMap<u64, Vec<(u64, Bytes)>> {
    let mut pieces: BTreeMap<u64, Vec<(u64, bytes::BytesMut)>> = BTreeMap::new();
    for (piece, offset, pcm) in runs {
        let writes = pieces.entry(*piece).or_default();
        match writes.last_mut() {
            Some((at, joined)) if *at + joined.len() as u64 == *offset => {
                joined.extend_from_slice(pcm);
            }
            _ => writes.push((*offset, bytes::BytesMut::from(&pcm[..]))),
        }
    }
    pieces
        .into_iter()
        .map(|(piece, writes)| {
            let writes = writes
                .into_iter()
                .map(|(at, joined)| (at, joined.freeze()))
                .collect();
            (piece, writes)
        })
        .collect()
}

/// What an audio folder holds, made whole: headers a crash left stale rewritten (where
/// pieces are written in place), and lines rebuilt for samples stored without one. Returns
/// the track as stored, with every stored sample received, and a writer of its manifest.
async fn survey(
    inner: &Inner,
    folder: &Key,
) -> Result<(StoredTrack, Box<dyn LogWriter>), StoreError> {
    let manifest_key = folder.join(layout::AUDIO_MANIFEST);
    let records = read_whole_log(inner.store.as_ref(), &manifest_key)
        .await?
        .iter()
        .filter_map(|line| {
            serde_json::from_slice::<AudioRecord>(line)
                .inspect_err(|error| tracing::warn!(%manifest_key, %error, "skipping an audio manifest line"))
                .ok()
        })
        .collect::<Vec<_>>();
    let listed = inner.store.list(folder).await?;
    let settled =
        jiff::Timestamp::now() - jiff::SignedDuration::try_from(inner.settle()).unwrap_or_default();
    let mut young = false;
    let mut pieces = Vec::new();
    for object in &listed {
        if let Some([name]) = object.key.strip_prefix(folder).as_deref()
            && let Some(ms) = parse_piece_file_name(name)
        {
            let samples = object.size.saturating_sub(WAV_HEADER_BYTES) / BYTES_PER_SAMPLE;
            pieces.push((ms * SAMPLES_PER_MS, samples));
            young |= object.written_by > settled;
        }
    }
    let mut stored = StoredTrack::read(records, pieces);
    let mut manifest = inner.store.log_writer(&manifest_key, LINES_PER_PART);
    if inner.store.writes_in_place() {
        repair_headers(inner.store.as_ref(), folder, &stored.pieces).await?;
    }
    // On a shared store another writer may still be about to list what it stored: samples
    // without a line are rebuilt only once nothing can be.
    let tails = stored.unlisted_tails();
    if !young && (!stored.unlisted_segments.is_empty() || !tails.is_empty()) {
        for start in &stored.unlisted_segments {
            manifest.push(json_line(&segment_record(*start)));
        }
        for (from, to) in tails {
            manifest.push(json_line(&AudioRecord::Chunk {
                start_sample: from,
                start: seconds(from),
                absolute: None,
                samples: to - from,
                bytes: (to - from) * BYTES_PER_SAMPLE,
                received_at: jiff::Timestamp::now(),
                written: to - from,
                overlap: 0,
                recovered: true,
            }));
            stored.timeline.received.insert((from, to));
        }
        manifest.flush().await?;
        tracing::info!(%folder, "rebuilt audio manifest lines of samples saved before a crash");
    }
    Ok((stored, manifest))
}

/// At start-up, where pieces are written in place (a folder): makes every audio folder
/// whole (see [`survey`]), so that a file a `kill -9` left with a stale header plays whole
/// again without waiting for its participant to speak. Each track is held while it is
/// looked at, so a chunk arriving meanwhile waits for it.
pub(super) async fn repair_all(inner: Arc<Inner>, stop: CancellationToken) {
    let store = inner.store.clone();
    let recordings = match store.list_folders(&Key::root()).await {
        Ok(names) => names,
        Err(error) => {
            tracing::warn!(%error, "could not list recordings to look over their audio");
            return;
        }
    };
    for id in recordings
        .iter()
        .filter_map(|name| RecordingId::parse(name))
    {
        let recording = layout::recording_key(&id);
        let mut tracks = vec![(None, layout::audio_key(&id, None))];
        match store.list_folders(&recording).await {
            Ok(folders) => tracks.extend(folders.iter().filter_map(|name| {
                let participant = layout::parse_participant_folder_name(name)?;
                Some((Some(participant), layout::audio_key(&id, Some(name))))
            })),
            Err(error) => tracing::warn!(%error, %recording, "could not list participants"),
        }
        for (participant, folder) in tracks {
            if stop.is_cancelled() {
                return;
            }
            let key = AudioTrackKey {
                recording: id.clone(),
                participant,
            };
            let shared = inner
                .audio
                .open
                .lock()
                .entry(key.clone())
                .or_default()
                .clone();
            let mut slot = shared.lock().await;
            if slot.track.is_some() || slot.closed {
                continue; // open already: its opening made it whole
            }
            if let Err(error) = survey(&inner, &folder).await {
                tracing::warn!(%error, %folder, "could not look over an audio folder");
            }
            // Let go: a chunk waiting on this place takes a new one.
            slot.closed = true;
            let mut open = inner.audio.open.lock();
            if open.get(&key).is_some_and(|s| Arc::ptr_eq(s, &shared)) {
                open.remove(&key);
            }
        }
    }
}

/// Rewrites each piece's header that does not say how many samples it holds: a crash
/// between a write and its header's. Only a piece that grew can have one, and only the
/// last of a run of pieces grows (the others are full), so only those are read.
async fn repair_headers(
    store: &dyn Store,
    folder: &Key,
    pieces: &BTreeMap<u64, u64>,
) -> Result<(), StoreError> {
    let may_be_stale = pieces.iter().filter(|&(&piece, &samples)| {
        samples < PIECE_SAMPLES || !pieces.contains_key(&(piece + PIECE_SAMPLES))
    });
    for (&piece, &samples) in may_be_stale {
        let key = piece_key(folder, piece);
        let Some(found) = store.get(&key).await? else {
            continue;
        };
        let header = wav_header(samples);
        if found.bytes.get(..header.len()) != Some(&header[..]) {
            store
                .write_at(&key, vec![(0, Bytes::copy_from_slice(&header))])
                .await?;
            tracing::info!(%key, samples, "repaired the header of a WAV piece a crash left stale");
        }
    }
    Ok(())
}

fn piece_key(folder: &Key, piece: u64) -> Key {
    folder.join(&piece_file_name(piece / SAMPLES_PER_MS))
}

/// A manifest line, as [`json_line`] writes it; a chunk's (one per chunk, 50 a second per
/// voice) without serde_json's general path, which escapes every key and prints the
/// timestamps through `Display`: keys written as they are, numbers by serde_json, timestamps
/// by jiff's printer straight into the line. 4.2 K → 1.8 K instructions a chunk. The unit
/// tests hold the two writers to the same bytes.
fn chunk_line(record: &AudioRecord) -> Vec<u8> {
    let &AudioRecord::Chunk {
        start_sample,
        start,
        absolute,
        samples,
        bytes,
        received_at,
        written,
        overlap,
        recovered,
    } = record
    else {
        return json_line(record);
    };
    fn number(line: &mut Vec<u8>, key: &str, value: impl serde::Serialize) {
        line.extend_from_slice(key.as_bytes());
        serde_json::to_writer(line, &value).expect("a number encodes as JSON");
    }
    let mut line = Vec::with_capacity(256);
    let time = |line: &mut Vec<u8>, key: &str, value: Option<jiff::Timestamp>| {
        line.extend_from_slice(key.as_bytes());
        match value {
            Some(at) => {
                line.push(b'"');
                jiff::fmt::temporal::DateTimePrinter::new()
                    .print_timestamp(&at, &mut *line)
                    .expect("a timestamp prints into memory");
                line.push(b'"');
            }
            None => line.extend_from_slice(b"null"),
        }
    };
    number(
        &mut line,
        r#"{"kind":"chunk","start_sample":"#,
        start_sample,
    );
    number(&mut line, r#","start":"#, start);
    time(&mut line, r#","absolute":"#, absolute);
    number(&mut line, r#","samples":"#, samples);
    number(&mut line, r#","bytes":"#, bytes);
    time(&mut line, r#","received_at":"#, Some(received_at));
    number(&mut line, r#","written":"#, written);
    number(&mut line, r#","overlap":"#, overlap);
    if recovered {
        line.extend_from_slice(br#","recovered":true"#);
    }
    line.extend_from_slice(b"}\n");
    line
}

fn seconds(sample: u64) -> f64 {
    sample as f64 / f64::from(SAMPLE_RATE)
}

fn segment_record(start: u64) -> AudioRecord {
    AudioRecord::Segment {
        file: piece_file_name(start / SAMPLES_PER_MS),
        start_sample: start,
        start: seconds(start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_line_is_what_serde_json_writes() {
        let at = |text: &str| text.parse::<jiff::Timestamp>().unwrap();
        let times = [
            at("2026-11-21T10:00:12.5Z"),
            at("2026-11-21T10:00:12Z"),
            at("1970-01-01T00:00:00.000000001Z"),
            at("2026-12-02T14:31:07.123456789Z"),
            at("9999-12-30T00:00:00.999999999Z"),
            at("1969-12-31T23:59:59.5Z"),
        ];
        let starts: [f64; 7] = [0.0, 0.02, 12.5, 1e-7, 123_456.789, 999_999.999, 1.0 / 3.0];
        for (i, &start) in starts.iter().enumerate() {
            for recovered in [false, true] {
                for absolute in [None, Some(times[i % times.len()])] {
                    let record = AudioRecord::Chunk {
                        start_sample: (start * 16_000.0).round() as u64,
                        start,
                        absolute,
                        samples: 320 + i as u64,
                        bytes: 640,
                        received_at: times[(i + 1) % times.len()],
                        written: u64::MAX - i as u64,
                        overlap: i as u64,
                        recovered,
                    };
                    let (fast, general) = (chunk_line(&record), json_line(&record));
                    assert_eq!(
                        String::from_utf8(fast).unwrap(),
                        String::from_utf8(general).unwrap()
                    );
                }
            }
        }
        let gap = AudioRecord::Gap {
            start_sample: 1,
            samples: 2,
            start: seconds(1),
        };
        assert_eq!(chunk_line(&gap), json_line(&gap));
    }
}
