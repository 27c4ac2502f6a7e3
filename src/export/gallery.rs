//! The whole meeting as one MP4, a gallery like the meeting itself: composed here with the
//! `image` crate on a fixed clock of [`GALLERY_FPS`] frames a second, piped raw to ffmpeg,
//! which encodes it and mixes everyone's sound.
//!
//! At each moment a participant has a tile while their camera is on (their last webcam frame
//! is at most [`STALE_MS`] old: Recall sends about two a second while it is on); an active
//! screen share (same rule) takes the left three quarters, the tiles a column on the right;
//! without one, the tiles fill a grid. Names are written on tiles, and the speaking
//! participant's tile is framed in green: from `speech_on`/`speech_off` events when the
//! recording has any, else from their audio's loudness.

use std::collections::HashMap;
use std::path::Path;

use image::{Rgb, RgbImage};
use tokio_util::sync::CancellationToken;

use super::ffmpeg::Ffmpeg;
use super::render::{RenderError, all_frames, write_spans};
use crate::audio::{AudioTrackKey, SAMPLES_PER_MS};
use crate::catalog::{Catalog, CatalogError};
use crate::frame::{ParticipantId, RecordingId, StreamKey, StreamKind};

pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 720;
/// Frames a second of a gallery.
pub const GALLERY_FPS: u64 = 2;
const STEP_MS: u64 = 1000 / GALLERY_FPS;
/// A stream whose last frame is older than this is off.
pub const STALE_MS: u64 = 3000;
/// The frame around the speaking participant's tile.
pub const SPEAKER: Rgb<u8> = Rgb([46, 204, 113]);
const BACKGROUND: Rgb<u8> = Rgb([18, 18, 22]);
/// Loudness (root mean square, fraction of full scale) above which someone is speaking.
const SPEAKING_LEVEL: f64 = 0.02;

/// What to render: the whole meeting from `from_ms` to `to_ms` (its last frame when
/// `None`).
#[derive(Debug, Clone)]
pub struct GalleryRender {
    pub recording: RecordingId,
    pub from_ms: u64,
    pub to_ms: Option<u64>,
}

struct Source {
    key: StreamKey,
    name: String,
    /// The stream's frame times.
    frames: Vec<u64>,
    /// The next frame not yet reached.
    next: usize,
    /// The frame shown now, decoded.
    shown: Option<(u64, image::RgbImage)>,
    /// The shown frame scaled for the last size asked.
    scaled: Option<((u32, u32), RgbImage)>,
}

impl Source {
    /// Moves to `t`: the frame at or before it, if not stale. `Some(ms)` when a frame must
    /// be fetched.
    fn advance(&mut self, t: u64) -> Option<u64> {
        while self.next < self.frames.len() && self.frames[self.next] <= t {
            self.next += 1;
        }
        let current = self.next.checked_sub(1).map(|i| self.frames[i])?;
        if t - current > STALE_MS {
            return None;
        }
        match &self.shown {
            Some((ms, _)) if *ms == current => None,
            _ => Some(current),
        }
    }

    fn is_on(&self, t: u64) -> bool {
        self.shown
            .as_ref()
            .is_some_and(|(ms, _)| *ms <= t && t - *ms <= STALE_MS)
    }

    fn fitted(&mut self, (w, h): (u32, u32)) -> Option<&RgbImage> {
        let (_, frame) = self.shown.as_ref()?;
        if self.scaled.as_ref().is_none_or(|(size, _)| *size != (w, h)) {
            let scale = f64::min(
                f64::from(w) / f64::from(frame.width()),
                f64::from(h) / f64::from(frame.height()),
            );
            let (sw, sh) = (
                ((f64::from(frame.width()) * scale) as u32).max(1),
                ((f64::from(frame.height()) * scale) as u32).max(1),
            );
            // An area average: as sharp as a tile needs, several times quicker than a filter.
            let scaled = image::imageops::thumbnail(frame, sw, sh);
            self.scaled = Some(((w, h), scaled));
        }
        self.scaled.as_ref().map(|(_, image)| image)
    }
}

/// Who speaks when: spans of meeting ms per participant.
type Speech = HashMap<ParticipantId, Vec<(u64, u64)>>;

async fn speech(
    catalog: &Catalog,
    recording: &RecordingId,
    participants: &[ParticipantId],
) -> Result<Speech, CatalogError> {
    let events = catalog.events(recording).await?;
    let mut spans: Speech = HashMap::new();
    let mut open: HashMap<ParticipantId, u64> = HashMap::new();
    for event in &events {
        let ms = (event.timestamp.relative * 1000.0).round() as u64;
        match event.short_name() {
            "speech_on" => {
                open.insert(event.participant.id, ms);
            }
            "speech_off" | "leave" => {
                if let Some(start) = open.remove(&event.participant.id) {
                    spans
                        .entry(event.participant.id)
                        .or_default()
                        .push((start, ms));
                }
            }
            _ => {}
        }
    }
    for (id, start) in open {
        spans.entry(id).or_default().push((start, u64::MAX));
    }
    if !spans.is_empty() {
        return Ok(spans);
    }
    // No speech events: loudness, in spans of a quarter second.
    for &id in participants {
        let track = AudioTrackKey {
            recording: recording.clone(),
            participant: Some(id),
        };
        let pieces = match catalog.audio_pieces(&track).await {
            Ok(pieces) => pieces,
            Err(CatalogError::NotFound) => continue,
            Err(error) => return Err(error),
        };
        let end_ms = pieces.end() / SAMPLES_PER_MS;
        let buckets = (end_ms / 250).clamp(1, 100_000) as usize;
        let levels = catalog.audio_levels(&track, &pieces, buckets).await?;
        let span = end_ms as f64 / buckets as f64;
        let loud = levels
            .iter()
            .enumerate()
            .filter(|(_, level)| **level > SPEAKING_LEVEL)
            .map(|(i, _)| ((i as f64 * span) as u64, ((i + 1) as f64 * span) as u64));
        spans.entry(id).or_default().extend(loud);
    }
    Ok(spans)
}

fn speaking(speech: &Speech, id: ParticipantId, t: u64) -> bool {
    speech
        .get(&id)
        .is_some_and(|spans| spans.iter().any(|&(a, b)| a <= t && t < b))
}

/// Where tiles go: `n` cells in the area `(x, y, w, h)`, as a grid, or a column beside a
/// share.
fn grid(n: usize, (x, y, w, h): (u32, u32, u32, u32)) -> Vec<(u32, u32, u32, u32)> {
    if n == 0 {
        return Vec::new();
    }
    let mut best = (0, 1, 1);
    for columns in 1..=n {
        let rows = n.div_ceil(columns);
        let (cw, ch) = (w / columns as u32, h / rows as u32);
        // The largest 16:9 tile that fits the cell.
        let tile = cw.min(ch * 16 / 9);
        if tile > best.0 {
            best = (tile, columns, rows);
        }
    }
    let (_, columns, rows) = best;
    let (cw, ch) = (w / columns as u32, h / rows as u32);
    (0..n)
        .map(|i| {
            let (c, r) = ((i % columns) as u32, (i / columns) as u32);
            (x + c * cw, y + r * ch, cw, ch)
        })
        .collect()
}

/// Draws `source`'s frame centred in `cell`, its name, and the speaker's frame.
fn draw_tile(
    canvas: &mut RgbImage,
    source: &mut Source,
    cell: (u32, u32, u32, u32),
    speaking: bool,
) {
    let (x, y, w, h) = cell;
    let pad = 4;
    let inner = (
        w.saturating_sub(2 * pad).max(1),
        h.saturating_sub(2 * pad).max(1),
    );
    let name = source.name.clone();
    let Some(image) = source.fitted(inner) else {
        return;
    };
    let (ox, oy) = (x + (w - image.width()) / 2, y + (h - image.height()) / 2);
    image::imageops::replace(canvas, image, i64::from(ox), i64::from(oy));
    if speaking {
        let (x0, y0, x1, y1) = (
            ox.saturating_sub(3),
            oy.saturating_sub(3),
            ox + image.width() + 3,
            oy + image.height() + 3,
        );
        for yy in y0..y1.min(HEIGHT) {
            for xx in x0..x1.min(WIDTH) {
                let edge =
                    yy < oy || yy >= oy + image.height() || xx < ox || xx >= ox + image.width();
                if edge {
                    canvas.put_pixel(xx, yy, SPEAKER);
                }
            }
        }
    }
    let scale = if image.height() >= 300 { 2 } else { 1 };
    let label_y = (oy + image.height()).saturating_sub(8 * scale + 4 * scale + 4);
    crate::simulate::picture::draw_label(canvas, ox + 4, label_y, scale, &name);
}

/// Renders the gallery into `out`; `progress(done, total)` in composed frames. Returns the
/// frames in the video.
pub async fn render_gallery(
    ffmpeg: &Ffmpeg,
    catalog: &Catalog,
    render: &GalleryRender,
    work: &Path,
    out: &Path,
    cancel: &CancellationToken,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<u64, RenderError> {
    let detail = catalog.recording(&render.recording).await?;
    let mut sources = Vec::new();
    for participant in &detail.participants {
        let name = participant
            .participant
            .name
            .clone()
            .unwrap_or_else(|| format!("Participant {}", participant.participant.id));
        for stream in &participant.streams {
            let frames: Vec<u64> = all_frames(catalog, &stream.key)
                .await?
                .into_iter()
                .map(|f| f.relative_ms)
                .collect();
            sources.push(Source {
                key: stream.key.clone(),
                name: match stream.key.kind {
                    StreamKind::Webcam => name.clone(),
                    StreamKind::Screenshare => format!("{name} (screen)"),
                },
                frames,
                next: 0,
                shown: None,
                scaled: None,
            });
        }
    }
    let last = sources
        .iter()
        .filter_map(|s| s.frames.last())
        .max()
        .copied();
    let Some(last) = last else {
        return Err(RenderError::NoFrames);
    };
    let to_ms = render.to_ms.unwrap_or(last);
    if to_ms < render.from_ms {
        return Err(RenderError::NoFrames);
    }
    let total = (to_ms - render.from_ms) / STEP_MS + 1;
    progress(0, total);
    let ids: Vec<ParticipantId> = detail
        .participants
        .iter()
        .map(|p| p.participant.id)
        .collect();
    let speech = speech(catalog, &render.recording, &ids).await?;

    // Everyone's sound, each on the recording's timeline, mixed by ffmpeg.
    let mut sounds = Vec::new();
    for &id in &ids {
        let track = AudioTrackKey {
            recording: render.recording.clone(),
            participant: Some(id),
        };
        match catalog.audio(&track).await {
            Ok(view) => {
                let wav = work.join(format!("audio-{id}.wav"));
                if write_spans(catalog, &view, &[(render.from_ms, to_ms + STEP_MS)], &wav).await? {
                    sounds.push(wav);
                }
            }
            Err(CatalogError::NotFound) => {}
            Err(error) => return Err(error.into()),
        }
    }
    let mut args: Vec<String> = [
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "-s",
        &format!("{WIDTH}x{HEIGHT}"),
        "-framerate",
        &GALLERY_FPS.to_string(),
        "-i",
        "pipe:0",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    for wav in &sounds {
        args.push("-i".into());
        args.push(wav.display().to_string());
    }
    args.extend(["-map".into(), "0:v".into()]);
    if !sounds.is_empty() {
        let inputs: String = (1..=sounds.len()).map(|i| format!("[{i}:a]")).collect();
        args.extend([
            "-filter_complex".into(),
            format!(
                "{inputs}amix=inputs={}:normalize=0:duration=longest[a]",
                sounds.len()
            ),
            "-map".into(),
            "[a]".into(),
        ]);
        args.extend(super::ffmpeg::aac("128k"));
    }
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            &ffmpeg.preset,
            "-crf",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-threads",
            &ffmpeg.threads.to_string(),
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ]
        .into_iter()
        .map(str::to_owned),
    );
    args.push(out.display().to_string());

    // Composed frames go to ffmpeg through a small queue: composing waits for the encoder.
    let (frames_in, frames_out) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let compose = async move {
        let mut sources = sources;
        for k in 0..total {
            let t = render.from_ms + k * STEP_MS;
            // The frames that changed, fetched and decoded side by side.
            let changed: Vec<(usize, u64)> = sources
                .iter_mut()
                .enumerate()
                .filter_map(|(i, source)| source.advance(t).map(|ms| (i, ms)))
                .collect();
            let decodes = changed.iter().map(|&(i, ms)| {
                let key = sources[i].key.clone();
                async move {
                    let png = catalog.frame_bytes(&key, ms).await?;
                    let decoded = tokio::task::spawn_blocking(move || {
                        image::load_from_memory(&png).map(|i| i.to_rgb8())
                    })
                    .await
                    .map_err(CatalogError::from)?;
                    Ok::<_, CatalogError>((i, ms, decoded))
                }
            });
            for (i, ms, decoded) in futures_util::future::try_join_all(decodes).await? {
                let source = &mut sources[i];
                match decoded {
                    Ok(image) => {
                        source.shown = Some((ms, image));
                        source.scaled = None;
                    }
                    Err(error) => {
                        tracing::warn!(stream = %source.key, ms, %error, "a frame that does not decode is left out")
                    }
                }
            }
            let (canvas, back) = tokio::task::spawn_blocking({
                let speech = speech.clone();
                move || {
                    let canvas = compose_frame(&mut sources, t, &speech);
                    (canvas, sources)
                }
            })
            .await
            .map_err(CatalogError::from)?;
            sources = back;
            if frames_in.send(canvas.into_raw()).await.is_err() {
                break;
            }
        }
        Ok::<_, RenderError>(())
    };
    let encode = ffmpeg.run_with_input(
        &args,
        cancel,
        |done| progress(done.min(total), total),
        Some(frames_out),
    );
    let (composed, encoded) = tokio::join!(compose, encode);
    encoded?;
    composed?;
    Ok(total)
}

fn compose_frame(sources: &mut [Source], t: u64, speech: &Speech) -> RgbImage {
    let mut canvas = RgbImage::from_pixel(WIDTH, HEIGHT, BACKGROUND);
    let share = sources
        .iter()
        .position(|s| s.key.kind == StreamKind::Screenshare && s.is_on(t));
    let cameras: Vec<usize> = (0..sources.len())
        .filter(|&i| sources[i].key.kind == StreamKind::Webcam && sources[i].is_on(t))
        .collect();
    let tiles_area = match share {
        Some(i) => {
            let speaking_now = speaking(speech, sources[i].key.participant, t);
            draw_tile(
                &mut canvas,
                &mut sources[i],
                (0, 0, WIDTH * 3 / 4, HEIGHT),
                speaking_now && cameras.is_empty(),
            );
            (WIDTH * 3 / 4, 0, WIDTH / 4, HEIGHT)
        }
        None => (0, 0, WIDTH, HEIGHT),
    };
    let cells = if share.is_some() {
        // A column: one tile per row.
        let n = cameras.len() as u32;
        (0..n)
            .map(|r| {
                let h = (tiles_area.3 / n.max(1)).min(tiles_area.2 * 9 / 16 + 8);
                (tiles_area.0, r * h, tiles_area.2, h)
            })
            .collect()
    } else {
        grid(cameras.len(), tiles_area)
    };
    for (&i, cell) in cameras.iter().zip(cells) {
        let speaking_now = speaking(speech, sources[i].key.participant, t);
        draw_tile(&mut canvas, &mut sources[i], cell, speaking_now);
    }
    canvas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grid_gives_every_tile_a_cell_inside_the_frame() {
        for n in 1..=12 {
            let cells = grid(n, (0, 0, WIDTH, HEIGHT));
            assert_eq!(cells.len(), n);
            for (x, y, w, h) in cells {
                assert!(x + w <= WIDTH && y + h <= HEIGHT, "{n}: {x},{y} {w}x{h}");
            }
        }
        assert_eq!(grid(1, (0, 0, WIDTH, HEIGHT)), [(0, 0, WIDTH, HEIGHT)]);
        assert_eq!(grid(4, (0, 0, WIDTH, HEIGHT)).len(), 4);
    }
}
