//! Where the simulator's PNGs come from: a ring of frames rendered before the run, frames
//! rendered as they are sent, or the PNG files of a folder.
//!
//! PNG encoding costs milliseconds a frame, far more than the server spends on it, so load
//! runs use the ring: each stream's frames are rendered once and sent again in turn with new
//! timestamps, and the simulator is never the bottleneck.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;

use super::SimulateError;
use super::picture::{self, Look};
use super::wire::EncodedPng;
use crate::frame::StreamKind;

/// The folder mode uses at most this many files, in name order.
pub const MAX_FOLDER_FILES: usize = 1000;

/// One participant slot's stream of one kind: every bot's participant in that slot looks the
/// same, so frames are rendered per slot, not per bot.
pub type StreamLook = (usize, StreamKind);

pub enum FrameSource {
    /// `frames[i % len]` is sent as the stream's frame `i`.
    Ring(HashMap<StreamLook, Vec<Arc<EncodedPng>>>),
    /// Every frame rendered when it is sent, its caption the true frame number and time.
    Live(HashMap<StreamLook, Look>),
    /// A folder's PNGs, base64-encoded as they are sent (to hold the raw bytes only); each
    /// stream starts at its own offset so that streams differ.
    Folder(Vec<Bytes>),
}

impl FrameSource {
    /// Renders `ring` frames of every look, on all cores.
    pub async fn ring(
        looks: HashMap<StreamLook, Look>,
        ring: usize,
    ) -> Result<Self, SimulateError> {
        let jobs: Vec<(StreamLook, Look, usize)> = looks
            .into_iter()
            .flat_map(|(key, look)| (0..ring).map(move |i| (key, look.clone(), i)))
            .collect();
        let rendered = tokio::task::spawn_blocking(move || {
            in_parallel(&jobs, |(key, look, i)| {
                let caption = format!("frame {}/{ring}", i + 1);
                let png = picture::render(look, *i as u64, &caption);
                (*key, *i, Arc::new(EncodedPng::new(png)))
            })
        })
        .await?;
        let mut frames: HashMap<StreamLook, Vec<Arc<EncodedPng>>> = HashMap::new();
        let mut rendered = rendered;
        rendered.sort_by_key(|(key, i, _)| (*key, *i));
        for (key, _, png) in rendered {
            frames.entry(key).or_default().push(png);
        }
        Ok(FrameSource::Ring(frames))
    }

    /// Reads the PNG files of `dir` (name order, at most [`MAX_FOLDER_FILES`]) and checks that
    /// each is a PNG the server accepts.
    pub async fn folder(dir: PathBuf) -> Result<Self, SimulateError> {
        let frames = tokio::task::spawn_blocking(move || read_folder(&dir)).await??;
        Ok(FrameSource::Folder(frames))
    }

    /// The PNG sent as frame `tick` of the stream.
    pub async fn frame(&self, stream: StreamLook, tick: u64, relative_ms: u64) -> Arc<EncodedPng> {
        match self {
            FrameSource::Live(looks) => {
                let look = looks[&stream].clone();
                let rendered = tokio::task::spawn_blocking(move || {
                    EncodedPng::new(render_live(&look, tick, relative_ms))
                })
                .await;
                // Rendering is a pure function of its inputs; a panic there is a bug.
                Arc::new(rendered.expect("rendering a frame does not panic"))
            }
            FrameSource::Ring(frames) => pick(&frames[&stream], tick, 0).clone(),
            FrameSource::Folder(pngs) => Arc::new(EncodedPng::new(
                pick(pngs, tick, folder_offset(stream)).clone(),
            )),
        }
    }

    /// The exact PNG bytes of frame `tick` of a stream, as [`FrameSource::frame`] sends them.
    pub fn png(&self, stream: StreamLook, tick: u64, relative_ms: u64) -> Bytes {
        match self {
            FrameSource::Live(looks) => render_live(&looks[&stream], tick, relative_ms).into(),
            FrameSource::Ring(frames) => pick(&frames[&stream], tick, 0).png.clone(),
            FrameSource::Folder(pngs) => pick(pngs, tick, folder_offset(stream)).clone(),
        }
    }

    /// The sizes of the distinct PNGs held, for the summary.
    pub fn stored_sizes(&self) -> Vec<usize> {
        match self {
            FrameSource::Ring(frames) => frames.values().flatten().map(|f| f.png.len()).collect(),
            FrameSource::Folder(pngs) => pngs.iter().map(Bytes::len).collect(),
            FrameSource::Live(_) => Vec::new(),
        }
    }
}

/// Item `tick` of a non-empty cycle, shifted by `offset`.
fn pick<T>(items: &[T], tick: u64, offset: u64) -> &T {
    &items[((tick + offset) % items.len() as u64) as usize]
}

/// Where a stream starts in the folder's cycle, so that streams show different pictures.
fn folder_offset((slot, kind): StreamLook) -> u64 {
    slot as u64 * 2 + u64::from(kind == StreamKind::Screenshare)
}

fn render_live(look: &Look, tick: u64, relative_ms: u64) -> Vec<u8> {
    let caption = format!(
        "frame {tick}  {:02}:{:02}.{:03}",
        relative_ms / 60_000,
        relative_ms / 1000 % 60,
        relative_ms % 1000
    );
    picture::render(look, tick, &caption)
}

/// Runs `work` over `jobs` on as many threads as there are cores; results in any order.
fn in_parallel<J: Sync, R: Send>(jobs: &[J], work: impl Fn(&J) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.min(jobs.len()).max(1))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                        done.push(work(job));
                    }
                    done
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a rendering thread panicked"))
            .collect()
    })
}

fn read_folder(dir: &Path) -> Result<Vec<Bytes>, SimulateError> {
    let folder_error = |source| SimulateError::Folder {
        path: dir.to_owned(),
        source,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(folder_error)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(folder_error)?;
    paths.retain(|path| {
        path.is_file()
            && path
                .extension()
                .is_some_and(|ext| ext.eq_ignore_ascii_case("png"))
    });
    paths.sort();
    paths.truncate(MAX_FOLDER_FILES);
    if paths.is_empty() {
        return Err(SimulateError::EmptyFolder(dir.to_owned()));
    }
    paths
        .iter()
        .map(|path| {
            let png = std::fs::read(path).map_err(|source| SimulateError::Folder {
                path: path.clone(),
                source,
            })?;
            crate::event::png_dimensions(&png).map_err(|refusal| SimulateError::BadPng {
                path: path.clone(),
                refusal,
            })?;
            Ok(Bytes::from(png))
        })
        .collect()
}
