//! Quick looks at a recording without a video: a contact sheet (frames evenly spaced in
//! time, each with its time written under it) of a stream or of the whole meeting, and an
//! animated WebP preview made by ffmpeg.

use std::io::Cursor;

use image::{Rgb, RgbImage};
use tokio_util::sync::CancellationToken;

use super::ffmpeg::Ffmpeg;
use super::render::RenderError;
use crate::catalog::{Catalog, CatalogError};
use crate::frame::StreamKey;

/// A contact sheet's cell: a frame scaled to fit, centred on dark grey.
pub const CELL_WIDTH: u32 = 240;
pub const CELL_HEIGHT: u32 = 135;
/// The strip under each cell that holds its time.
pub const LABEL_HEIGHT: u32 = 20;
/// Space around and between cells.
pub const GAP: u32 = 4;
/// Columns of a stream's sheet.
pub const COLUMNS: u32 = 4;
/// Frames of an animated preview, and how long each is shown.
pub const PREVIEW_FRAMES: usize = 30;
const PREVIEW_FRAME_MS: u64 = 100;

/// The size of a sheet of `columns` × `rows` cells.
pub fn sheet_size(columns: u32, rows: u32) -> (u32, u32) {
    (
        columns * CELL_WIDTH + (columns + 1) * GAP,
        rows * (CELL_HEIGHT + LABEL_HEIGHT) + (rows + 1) * GAP,
    )
}

/// `n` times evenly spaced from `first` to `last`, both included.
fn spaced(first: u64, last: u64, n: usize) -> Vec<u64> {
    if n <= 1 || last <= first {
        return vec![first; n.max(1)];
    }
    (0..n)
        .map(|i| first + (last - first) * i as u64 / (n as u64 - 1))
        .collect()
}

/// `h:mm:ss.s` of a meeting time.
fn clock(ms: u64) -> String {
    let tenths = ms / 100;
    format!(
        "{}:{:02}:{:02}.{}",
        tenths / 36_000,
        tenths / 600 % 60,
        tenths / 10 % 60,
        tenths % 10
    )
}

/// A cell to draw: a frame's PNG (or nothing yet) and the time under it.
struct Cell {
    png: Option<bytes::Bytes>,
    at_ms: u64,
}

/// The frames of `stream` at `times`: each the last at or before its time.
async fn cells(
    catalog: &Catalog,
    stream: &StreamKey,
    times: &[u64],
) -> Result<Vec<Cell>, CatalogError> {
    let mut cells = Vec::with_capacity(times.len());
    for &at_ms in times {
        let png = match catalog.frame_at(stream, at_ms).await? {
            Some((_, frame)) if frame.relative_ms <= at_ms => {
                Some(catalog.frame_bytes(stream, frame.relative_ms).await?)
            }
            _ => None,
        };
        cells.push(Cell { png, at_ms });
    }
    Ok(cells)
}

/// A stream's contact sheet: `n` frames evenly spaced from its first to its last, in rows of
/// [`COLUMNS`], as a PNG.
pub async fn stream_sheet(
    catalog: &Catalog,
    stream: &StreamKey,
    n: usize,
) -> Result<Vec<u8>, CatalogError> {
    let frames = super::render::all_frames(catalog, stream).await?;
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err(CatalogError::NotFound);
    };
    let times = spaced(first.relative_ms, last.relative_ms, n);
    let cells = cells(catalog, stream, &times).await?;
    let columns = COLUMNS.min(cells.len() as u32);
    let grid: Vec<Vec<Cell>> = {
        let mut rows = Vec::new();
        let mut cells = cells.into_iter().peekable();
        while cells.peek().is_some() {
            rows.push(cells.by_ref().take(columns as usize).collect());
        }
        rows
    };
    Ok(tokio::task::spawn_blocking(move || draw(columns, grid)).await?)
}

/// The whole meeting's contact sheet: a row per stream, `n` columns at times evenly spaced
/// from the recording's first frame to its last, each cell the stream's frame at or before
/// its column's time (empty before the stream's first frame).
pub async fn meeting_sheet(
    catalog: &Catalog,
    recording: &crate::frame::RecordingId,
    n: usize,
) -> Result<Vec<u8>, CatalogError> {
    let detail = catalog.recording(recording).await?;
    let streams: Vec<StreamKey> = detail
        .participants
        .iter()
        .flat_map(|p| p.streams.iter().map(|s| s.key.clone()))
        .collect();
    let (Some(first), Some(last)) = (detail.overview.first_frame, detail.overview.last_frame)
    else {
        return Err(CatalogError::NotFound);
    };
    let ms = |t: f64| (t * 1000.0).round() as u64;
    let times = spaced(ms(first.relative), ms(last.relative), n);
    let mut grid = Vec::new();
    for stream in &streams {
        grid.push(cells(catalog, stream, &times).await?);
    }
    Ok(tokio::task::spawn_blocking(move || draw(n as u32, grid)).await?)
}

fn draw(columns: u32, grid: Vec<Vec<Cell>>) -> Vec<u8> {
    let (width, height) = sheet_size(columns, grid.len() as u32);
    let mut sheet = RgbImage::from_pixel(width, height, Rgb([24, 24, 28]));
    for (row, cells) in grid.iter().enumerate() {
        for (column, cell) in cells.iter().enumerate() {
            let x = GAP + column as u32 * (CELL_WIDTH + GAP);
            let y = GAP + row as u32 * (CELL_HEIGHT + LABEL_HEIGHT + GAP);
            for dy in 0..CELL_HEIGHT {
                for dx in 0..CELL_WIDTH {
                    sheet.put_pixel(x + dx, y + dy, Rgb([48, 48, 54]));
                }
            }
            if let Some(png) = &cell.png
                && let Ok(frame) = image::load_from_memory(png)
            {
                let thumb = frame.thumbnail(CELL_WIDTH, CELL_HEIGHT).to_rgb8();
                let (ox, oy) = (
                    x + (CELL_WIDTH - thumb.width()) / 2,
                    y + (CELL_HEIGHT - thumb.height()) / 2,
                );
                image::imageops::replace(&mut sheet, &thumb, i64::from(ox), i64::from(oy));
            }
            crate::simulate::picture::draw_label(
                &mut sheet,
                x,
                y + CELL_HEIGHT + 2,
                1,
                &clock(cell.at_ms),
            );
        }
    }
    let mut bytes = Vec::new();
    sheet
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .expect("a PNG encodes into memory");
    bytes
}

/// An animated WebP of the stream: [`PREVIEW_FRAMES`] frames evenly spaced in time, each
/// shown [`PREVIEW_FRAME_MS`], 320 pixels wide, looping.
pub async fn preview(
    ffmpeg: &Ffmpeg,
    catalog: &Catalog,
    stream: &StreamKey,
    cancel: &CancellationToken,
) -> Result<Vec<u8>, RenderError> {
    let frames = super::render::all_frames(catalog, stream).await?;
    let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
        return Err(RenderError::NoFrames);
    };
    // Every frame of a short stream; evenly spaced ones of a longer one (a time-lapse).
    let times: Vec<u64> = if frames.len() <= PREVIEW_FRAMES {
        frames.iter().map(|f| f.relative_ms).collect()
    } else {
        spaced(first.relative_ms, last.relative_ms, PREVIEW_FRAMES)
    };
    let work = tempfile::tempdir()?;
    let mut list = String::from("ffconcat version 1.0\n");
    for (i, &at) in times.iter().enumerate() {
        let Some((_, frame)) = catalog.frame_at(stream, at).await? else {
            continue;
        };
        let path = work.path().join(format!("{i:03}.png"));
        tokio::fs::write(&path, catalog.frame_bytes(stream, frame.relative_ms).await?).await?;
        list.push_str(&format!(
            "file '{}'\noption framerate 1000\nduration 0.{PREVIEW_FRAME_MS:03}\n",
            path.display()
        ));
    }
    let list_path = work.path().join("preview.ffconcat");
    tokio::fs::write(&list_path, list).await?;
    let out = work.path().join("preview.webp");
    let args: Vec<String> = [
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        &list_path.display().to_string(),
        "-vf",
        "scale=320:-2:flags=bicubic",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "libwebp_anim",
        "-loop",
        "0",
        "-quality",
        "70",
        "-f",
        "webp",
        &out.display().to_string(),
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    ffmpeg.run(&args, cancel, |_| {}).await?;
    Ok(tokio::fs::read(&out).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_evenly_spaced_with_both_ends() {
        assert_eq!(spaced(1000, 4000, 4), [1000, 2000, 3000, 4000]);
        assert_eq!(spaced(500, 500, 3), [500, 500, 500]);
        assert_eq!(clock(754_200), "0:12:34.2");
    }

    #[test]
    fn a_sheet_is_the_size_its_cells_make() {
        let png = draw(3, vec![vec![], vec![]]);
        let sheet = image::load_from_memory(&png).unwrap();
        assert_eq!((sheet.width(), sheet.height()), sheet_size(3, 2));
    }
}
