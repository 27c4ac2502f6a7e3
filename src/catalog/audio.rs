//! Reading an audio track back: its segments and gaps from its manifest and pieces, and the
//! whole track as one WAV on the recording's timeline, any byte range of it, streamed from
//! the pieces with silence where nothing was sent.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};

use super::{Catalog, CatalogError, SavedContent, SavedFile};
use crate::audio::{
    AudioTrackKey, BYTES_PER_SAMPLE, Levels, SAMPLE_RATE, SAMPLES_PER_MS, StoredTrack,
    WAV_HEADER_BYTES, parse_piece_file_name, piece_file_name, segments_of_pieces, wav_header,
};
use crate::layout::{self, AudioRecord};
use crate::store::{Key, Listed, Store, read_whole_log};

/// Zeros handed out for silence, a slice at a time.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

/// A saved audio track, as its manifest and its pieces have it now.
#[derive(Debug, Clone)]
pub struct AudioTrackView {
    pub folder: Key,
    pub stored: StoredTrack,
}

impl AudioTrackView {
    /// Bytes of the track as one WAV: the header, then every sample from the recording's
    /// start to the track's last.
    pub fn wav_len(&self) -> u64 {
        WAV_HEADER_BYTES + self.stored.end() * BYTES_PER_SAMPLE
    }
}

/// A track's pieces as a listing of its folder has them.
#[derive(Debug, Clone)]
pub struct AudioPieces {
    pub folder: Key,
    /// Each piece's first sample → the samples it holds.
    pub pieces: BTreeMap<u64, u64>,
    /// The folder's listing, in key order: what says whether the track changed.
    pub listed: Vec<Listed>,
}

impl AudioPieces {
    /// One past the track's last sample.
    pub fn end(&self) -> u64 {
        self.pieces.iter().map(|(&p, &n)| p + n).max().unwrap_or(0)
    }

    /// Seconds from the recording's start to the track's last sample.
    pub fn duration(&self) -> f64 {
        self.end() as f64 / f64::from(SAMPLE_RATE)
    }

    pub fn segments(&self) -> usize {
        segments_of_pieces(&self.pieces)
    }
}

/// A recording's audio tracks (see [`Catalog::recording_audio`]).
#[derive(Debug, Clone)]
pub struct RecordingAudio {
    /// In the order of the recording's participants; `None` for one without audio.
    pub participants: Vec<Option<AudioPieces>>,
    pub mixed: Option<AudioPieces>,
}

/// Level summaries remembered: a few per recording page open at once.
pub(super) const LEVELS_REMEMBERED: std::num::NonZeroUsize =
    std::num::NonZeroUsize::new(256).expect("non-zero");

/// A level summary and the listing of the track's folder it was summed from. Every chunk
/// stored changes that listing (a piece's size or write time, the manifest's size): a late
/// chunk filling silence inside a piece keeps its size but adds a manifest line.
#[derive(Debug, Clone)]
pub(super) struct CachedLevels {
    listed: Vec<Listed>,
    levels: Vec<f64>,
}

/// Pieces read at once while the levels are summed.
const PIECES_AT_ONCE: usize = 4;

/// The WAV pieces of a listing of `folder`: each one's first sample and the samples it holds.
fn listed_pieces<'a>(
    folder: &'a Key,
    listed: &'a [Listed],
) -> impl Iterator<Item = (u64, u64)> + 'a {
    listed.iter().filter_map(move |object| {
        let name = object.key.strip_prefix(folder)?;
        let [name] = name.as_slice() else {
            return None;
        };
        let ms = parse_piece_file_name(name)?;
        let samples = object.size.saturating_sub(WAV_HEADER_BYTES) / BYTES_PER_SAMPLE;
        Some((ms * SAMPLES_PER_MS, samples))
    })
}

/// Where one run of the WAV's bytes comes from.
enum Source {
    Header(Bytes),
    Silence,
    /// A piece, from this byte of its file on.
    Piece(Key, u64),
}

impl Catalog {
    /// A participant's audio track, or the mixed track (`participant` `None`).
    pub async fn audio(&self, track: &AudioTrackKey) -> Result<AudioTrackView, CatalogError> {
        let folder = self.audio_folder(track).await?;
        let manifest = folder.join(layout::AUDIO_MANIFEST);
        let (lines, listed) = futures_util::try_join!(
            read_whole_log(self.store.as_ref(), &manifest),
            self.store.list(&folder),
        )?;
        let records = lines.iter().filter_map(|line| {
            serde_json::from_slice::<AudioRecord>(line)
                .inspect_err(
                    |error| tracing::warn!(%manifest, %error, "skipping an audio manifest line"),
                )
                .ok()
        });
        let stored = StoredTrack::read(records, listed_pieces(&folder, &listed));
        if stored.pieces.is_empty() {
            return Err(CatalogError::NotFound);
        }
        Ok(AudioTrackView { folder, stored })
    }

    /// The folder of a participant's audio track, or of the mixed track.
    async fn audio_folder(&self, track: &AudioTrackKey) -> Result<Key, CatalogError> {
        Ok(match track.participant {
            Some(participant) => {
                let folder = self
                    .participant_folder(&track.recording, participant)
                    .await?;
                layout::audio_key(&track.recording, Some(&folder))
            }
            None => layout::audio_key(&track.recording, None),
        })
    }

    /// A track's pieces from one listing of its folder, without reading its manifest: what
    /// a recording's summary of its tracks and the levels need. `NotFound` without a piece.
    pub async fn audio_pieces(&self, track: &AudioTrackKey) -> Result<AudioPieces, CatalogError> {
        let folder = self.audio_folder(track).await?;
        let mut listed = self.store.list(&folder).await?;
        let pieces: BTreeMap<u64, u64> = listed_pieces(&folder, &listed).collect();
        if pieces.is_empty() {
            return Err(CatalogError::NotFound);
        }
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(AudioPieces {
            folder,
            pieces,
            listed,
        })
    }

    /// How loud the track is in `buckets` equal spans from the recording's start to its
    /// last sample (see [`Levels`]): every piece read once, a few at a time, each summed
    /// off the async workers; or the same summary computed lately from the same pieces (a
    /// track that grew or changed is summed again).
    pub async fn audio_levels(
        &self,
        track: &AudioTrackKey,
        pieces: &AudioPieces,
        buckets: usize,
    ) -> Result<Vec<f64>, CatalogError> {
        let cached = (track.clone(), buckets);
        if let Some(known) = self.levels.lock().get(&cached)
            && known.listed == pieces.listed
        {
            return Ok(known.levels.clone());
        }
        let levels = self.sum_levels(pieces, buckets).await?;
        self.levels.lock().put(
            cached,
            CachedLevels {
                listed: pieces.listed.clone(),
                levels: levels.clone(),
            },
        );
        Ok(levels)
    }

    async fn sum_levels(
        &self,
        track: &AudioPieces,
        buckets: usize,
    ) -> Result<Vec<f64>, CatalogError> {
        let levels = Levels::new(track.end(), buckets);
        let store = self.store.clone();
        let pieces: Vec<(Key, u64, u64)> = track
            .pieces
            .iter()
            .map(|(&piece, &samples)| {
                let key = track.folder.join(&piece_file_name(piece / SAMPLES_PER_MS));
                (key, piece, samples)
            })
            .collect();
        let reads = futures_util::stream::iter(pieces)
            .map(|(key, piece, samples)| {
                let store = store.clone();
                async move {
                    let pcm = store.get_from(&key, WAV_HEADER_BYTES).await?;
                    // As listed: a piece growing meanwhile adds nothing past its listed end.
                    let pcm = pcm.unwrap_or_default();
                    let len = pcm.len().min((samples * BYTES_PER_SAMPLE) as usize);
                    Ok::<_, CatalogError>((piece, pcm.slice(..len)))
                }
            })
            .buffered(PIECES_AT_ONCE);
        futures_util::pin_mut!(reads);
        let mut levels = levels;
        while let Some(read) = reads.next().await {
            let (piece, pcm) = read?;
            levels = tokio::task::spawn_blocking(move || {
                levels.add(piece, &pcm);
                levels
            })
            .await?;
        }
        Ok(levels.finish())
    }

    /// The audio tracks of a recording read as [`Catalog::recording`] gave it: each
    /// participant's (in its order), `None` where they sent none, and the mixed track.
    /// Costs one listing of each track's folder, a few at a time; no manifest is read.
    pub async fn recording_audio(
        &self,
        recording: &super::RecordingDetail,
    ) -> Result<RecordingAudio, CatalogError> {
        let id = &recording.overview.id;
        // Owned first: a stream over borrowing iterators is not `Send` enough for a handler.
        let tracks: Vec<AudioTrackKey> = recording
            .participants
            .iter()
            .map(|p| Some(p.participant.id))
            .chain([None])
            .map(|participant| AudioTrackKey {
                recording: id.clone(),
                participant,
            })
            .collect();
        let mut found: Vec<Option<AudioPieces>> = futures_util::stream::iter(tracks)
            .map(|track| async move {
                match self.audio_pieces(&track).await {
                    Ok(pieces) => Ok(Some(pieces)),
                    Err(CatalogError::NotFound) => Ok(None),
                    Err(error) => Err(error),
                }
            })
            .buffered(super::PARALLEL)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        let mixed = found.pop().flatten();
        Ok(RecordingAudio {
            participants: found,
            mixed,
        })
    }

    /// An audio track's folder to download: its WAV pieces in time order, then its
    /// manifest; nothing when the track has no piece.
    pub(super) async fn audio_files(&self, folder: Key) -> Result<Vec<SavedFile>, CatalogError> {
        let mut pieces: Vec<(u64, Key)> = self
            .store
            .list(&folder)
            .await?
            .into_iter()
            .filter_map(|object| {
                let ms = match object.key.strip_prefix(&folder)?.as_slice() {
                    [name] => parse_piece_file_name(name)?,
                    _ => return None,
                };
                Some((ms, object.key))
            })
            .collect();
        if pieces.is_empty() {
            return Ok(Vec::new());
        }
        pieces.sort_by_key(|(ms, _)| *ms);
        let manifest = folder.join(layout::AUDIO_MANIFEST);
        Ok(pieces
            .into_iter()
            .map(|(_, key)| SavedFile::at(key, SavedContent::Whole))
            .chain([SavedFile::at(manifest, SavedContent::Log)])
            .collect())
    }

    /// The bytes `[from, to)` of the track as one WAV (see [`AudioTrackView::wav_len`]).
    pub fn wav_bytes(
        &self,
        view: &AudioTrackView,
        (from, to): (u64, u64),
    ) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
        let header = Bytes::copy_from_slice(&wav_header(view.stored.end()));
        // The whole file as runs: (first byte, end, source).
        let mut runs = vec![(0, WAV_HEADER_BYTES, Source::Header(header))];
        let mut at = WAV_HEADER_BYTES;
        for (&piece, &samples) in &view.stored.pieces {
            let first = WAV_HEADER_BYTES + piece * BYTES_PER_SAMPLE;
            if first > at {
                runs.push((at, first, Source::Silence));
            }
            let end = first + samples * BYTES_PER_SAMPLE;
            // Pieces never overlap; should one seem to, the earlier one's bytes stand.
            let start = first.max(at);
            if end > start {
                let key = view.folder.join(&piece_file_name(piece / SAMPLES_PER_MS));
                let offset = WAV_HEADER_BYTES + (start - first);
                runs.push((start, end, Source::Piece(key, offset)));
                at = end;
            }
        }
        // Clipped to the range asked for.
        let wanted: Vec<(u64, Source)> = runs
            .into_iter()
            .filter(|&(start, end, _)| end > from && start < to)
            .map(|(start, end, source)| {
                let (a, b) = (start.max(from), end.min(to));
                let source = match source {
                    Source::Header(bytes) => {
                        Source::Header(bytes.slice((a - start) as usize..(b - start) as usize))
                    }
                    Source::Silence => Source::Silence,
                    Source::Piece(key, offset) => Source::Piece(key, offset + (a - start)),
                };
                (b - a, source)
            })
            .collect();
        let store: Arc<dyn Store> = self.store.clone();
        futures_util::stream::iter(wanted)
            .then(move |(len, source)| {
                let store = store.clone();
                async move { read_run(store.as_ref(), len, source).await }
            })
            .flat_map(|read| {
                futures_util::stream::iter(match read {
                    Ok(parts) => parts.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(error) => vec![Err(error)],
                })
            })
    }
}

/// `len` bytes of one run, silence in parts of at most 64 KiB.
async fn read_run(store: &dyn Store, len: u64, source: Source) -> std::io::Result<Vec<Bytes>> {
    let zeros = |len: u64| {
        let mut parts = Vec::new();
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(ZEROS.len());
            parts.push(Bytes::from_static(&ZEROS[..n]));
            left -= n;
        }
        parts
    };
    match source {
        Source::Header(bytes) => Ok(vec![bytes]),
        Source::Silence => Ok(zeros(len)),
        Source::Piece(key, offset) => {
            let bytes = store
                .get_from(&key, offset)
                .await
                .map_err(std::io::Error::other)?
                .unwrap_or_default();
            // The length was promised: a piece read shorter than listed (replaced
            // meanwhile) ends in silence rather than a cut response.
            let got = bytes.slice(..bytes.len().min(len as usize));
            let short = len - got.len() as u64;
            let mut parts = vec![got];
            parts.extend(zeros(short));
            Ok(parts)
        }
    }
}
