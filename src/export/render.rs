//! One stream as an MP4: its frames listed for ffmpeg's concat demuxer, each with the time
//! until the next frame as its duration on a 1 ms clock, the participant's audio as one WAV
//! on the same timeline, and ffmpeg's H.264 and AAC encoders.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

use super::ffmpeg::{Ffmpeg, FfmpegError, strings};
use super::plan::Timeline;
use crate::audio::{AudioTrackKey, BYTES_PER_SAMPLE, SAMPLES_PER_MS, WAV_HEADER_BYTES, wav_header};
use crate::catalog::{Catalog, CatalogError, FrameInfo, FrameSource};
use crate::frame::StreamKey;

/// Frames fetched from a bucket at once.
const FETCHES: usize = 8;

/// What to render: one stream, a range of it, and the options.
#[derive(Debug, Clone)]
pub struct StreamRender {
    pub stream: StreamKey,
    pub from_ms: u64,
    /// The range's end; the stream's last frame when `None`.
    pub to_ms: Option<u64>,
    pub max_pause_ms: Option<u64>,
    /// The participant's name, written on the video with the meeting time.
    pub burn_in: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("the range holds no frame")]
    NoFrames,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Ffmpeg(#[from] FfmpegError),
    #[error("writing the export's working files: {0}")]
    Io(#[from] std::io::Error),
}

/// Every frame of a stream in time order.
pub async fn all_frames(
    catalog: &Catalog,
    stream: &StreamKey,
) -> Result<Vec<FrameInfo>, CatalogError> {
    let mut frames = Vec::new();
    let mut after = None;
    loop {
        let page = catalog.frames(stream, after, 1000).await?;
        frames.extend(page.frames);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(frames),
        }
    }
}

/// A frame's file on this machine: the store's own when it is a folder, else fetched into
/// `work`.
async fn local_frame(
    catalog: &Catalog,
    stream: &StreamKey,
    ms: u64,
    work: &Path,
) -> Result<PathBuf, RenderError> {
    match catalog.frame(stream, ms).await? {
        FrameSource::File(path) => Ok(path),
        FrameSource::Bytes(bytes) => {
            let path = work.join(crate::layout::frame_file_name(ms));
            tokio::fs::write(&path, bytes).await?;
            Ok(path)
        }
    }
}

/// Renders `render` into `out` (an MP4) using the folder `work` for working files, calling
/// `progress(done, total)` as frames are encoded. Returns the frames in the video.
pub async fn render_stream(
    ffmpeg: &Ffmpeg,
    catalog: &Catalog,
    render: &StreamRender,
    work: &Path,
    out: &Path,
    cancel: &CancellationToken,
    mut progress: impl FnMut(u64, u64) + Send,
) -> Result<u64, RenderError> {
    let frames = all_frames(catalog, &render.stream).await?;
    let to_ms = render
        .to_ms
        .unwrap_or_else(|| frames.last().map_or(0, |f| f.relative_ms));
    let names: Vec<u64> = frames.iter().map(|f| f.relative_ms).collect();
    let timeline = Timeline::plan(&names, render.from_ms, to_ms, render.max_pause_ms);
    let Some(first) = timeline.shown.first() else {
        return Err(RenderError::NoFrames);
    };
    let total = timeline.shown.len() as u64;
    progress(0, total);
    // The video's size: the first frame's, even on both sides as yuv420p needs.
    let info = frames
        .iter()
        .find(|f| f.relative_ms == first.relative_ms)
        .copied()
        .ok_or(RenderError::NoFrames)?;
    let (width, height) = ((info.width / 2 * 2).max(2), (info.height / 2 * 2).max(2));

    let mut paths: Vec<PathBuf> = Vec::with_capacity(timeline.shown.len());
    for chunk in timeline.shown.chunks(FETCHES) {
        let fetches = chunk
            .iter()
            .map(|shown| local_frame(catalog, &render.stream, shown.relative_ms, work));
        paths.extend(futures_util::future::try_join_all(fetches).await?);
    }
    let list = work.join("frames.ffconcat");
    let sizes: HashMap<u64, (u32, u32)> = frames
        .iter()
        .map(|f| (f.relative_ms, (f.width, f.height)))
        .collect();
    tokio::fs::write(&list, concat_list(&timeline, &paths, &sizes)).await?;

    let track = AudioTrackKey {
        recording: render.stream.recording.clone(),
        participant: Some(render.stream.participant),
    };
    let audio = match catalog.audio(&track).await {
        Ok(view) => {
            let wav = work.join("audio.wav");
            write_audio(catalog, &view, &timeline, &wav)
                .await?
                .then_some(wav)
        }
        Err(CatalogError::NotFound) => None,
        Err(error) => return Err(error.into()),
    };

    let mut filters = format!(
        "setpts=PTS+{offset},scale={width}:{height}:force_original_aspect_ratio=decrease,\
         pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p",
        offset = first.at_ms,
    );
    if let Some(name) = &render.burn_in {
        filters.push(',');
        filters.push_str(&burn_in(name, &timeline, height));
    }
    let filter_script = work.join("video.filter");
    tokio::fs::write(&filter_script, &filters).await?;
    let threads = ffmpeg.threads.to_string();
    let path = |path: &Path| path.display().to_string();
    // The PNG decoder picks its own threads (one per core, and one more): limited to
    // EXPORT_THREADS it was 15% slower for no gain to recording, which the niceness
    // already puts first.
    let mut args = strings(["-f", "concat", "-safe", "0", "-i"]);
    args.push(path(&list));
    if let Some(wav) = &audio {
        args.extend(strings(["-i", &path(wav)]));
    }
    args.extend(strings([
        "-filter_script:v",
        &path(&filter_script),
        "-map",
        "0:v",
    ]));
    if audio.is_some() {
        args.extend(strings(["-map", "1:a"]));
        args.extend(super::ffmpeg::aac("96k"));
    }
    args.extend(strings([
        // Each frame keeps its own time, on a clock of milliseconds.
        "-fps_mode",
        "passthrough",
        "-enc_time_base",
        "1:1000",
        "-video_track_timescale",
        "1000",
        "-c:v",
        "libx264",
        "-preset",
        &ffmpeg.preset,
        "-crf",
        "23",
        "-pix_fmt",
        "yuv420p",
        "-threads",
        &threads,
        "-movflags",
        "+faststart",
        "-f",
        "mp4",
    ]));
    args.push(path(out));
    ffmpeg
        .run(&args, cancel, |done| progress(done.min(total), total))
        .await?;
    progress(total, total);
    Ok(total)
}

/// The concat demuxer's list: each frame for the time until the next one, on a 1 ms clock
/// (`option framerate 1000` gives the image demuxer that time base, so nothing is rounded
/// to 1/25 s). Each frame's size and a pixel format are given too: the demuxer would
/// otherwise decode every PNG once more only to learn them, which doubles the time spent
/// decoding (the decoder still reads each frame's own).
fn concat_list(timeline: &Timeline, paths: &[PathBuf], sizes: &HashMap<u64, (u32, u32)>) -> String {
    let mut text = String::from("ffconcat version 1.0\n");
    for (i, (shown, path)) in timeline.shown.iter().zip(paths).enumerate() {
        if let Some((width, height)) = sizes.get(&shown.relative_ms) {
            let _ = writeln!(
                text,
                "file '{}'\noption video_size {width}x{height}\noption pixel_format rgb24",
                path.display().to_string().replace('\'', r"'\''")
            );
        } else {
            let _ = writeln!(
                text,
                "file '{}'",
                path.display().to_string().replace('\'', r"'\''")
            );
        }
        let next = timeline
            .shown
            .get(i + 1)
            .map_or(shown.at_ms + 1, |n| n.at_ms);
        let duration = next.saturating_sub(shown.at_ms).max(1);
        let _ = writeln!(
            text,
            "option framerate 1000\nduration {}.{:03}",
            duration / 1000,
            duration % 1000
        );
    }
    text
}

/// Writes the track's samples in the timeline's kept spans, back to back, as one WAV at
/// `wav`: the video's time 0 is the WAV's first sample. `false` when no sample falls in them.
async fn write_audio(
    catalog: &Catalog,
    view: &crate::catalog::AudioTrackView,
    timeline: &Timeline,
    wav: &Path,
) -> Result<bool, RenderError> {
    write_spans(catalog, view, &timeline.kept, wav).await
}

/// Writes the track's samples in `spans_ms` (from, to), back to back, as one WAV at `wav`;
/// `false` when no sample falls in them.
pub(super) async fn write_spans(
    catalog: &Catalog,
    view: &crate::catalog::AudioTrackView,
    spans_ms: &[(u64, u64)],
    wav: &Path,
) -> Result<bool, RenderError> {
    let end = view.stored.end();
    let spans: Vec<(u64, u64)> = spans_ms
        .iter()
        .map(|&(a, b)| (a * SAMPLES_PER_MS, (b * SAMPLES_PER_MS).min(end)))
        .filter(|(a, b)| a < b)
        .collect();
    let samples: u64 = spans.iter().map(|(a, b)| b - a).sum();
    if samples == 0 {
        return Ok(false);
    }
    let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(wav).await?);
    file.write_all(&wav_header(samples)).await?;
    for (a, b) in spans {
        let bytes = (
            WAV_HEADER_BYTES + a * BYTES_PER_SAMPLE,
            WAV_HEADER_BYTES + b * BYTES_PER_SAMPLE,
        );
        let mut parts = std::pin::pin!(catalog.wav_bytes(view, bytes));
        while let Some(part) = parts.next().await {
            file.write_all(&part?).await?;
        }
    }
    file.flush().await?;
    Ok(true)
}

/// The drawtext filters that write `name` and the meeting time (hh:mm:ss) at the bottom
/// of each frame. The time is worked out from the video's own `t`, adding back the range's
/// start and each pause cut short before it.
fn burn_in(name: &str, timeline: &Timeline, height: u32) -> String {
    // Meeting seconds at video time t.
    let mut meeting = String::from("t");
    let mut before = 0u64;
    for (i, &(a, b)) in timeline.kept.iter().enumerate() {
        // The range's start, then each cut's length from where it was cut.
        let shift = if i == 0 {
            a
        } else {
            a - timeline.kept[i - 1].1
        };
        if i == 0 {
            let _ = write!(meeting, "+{:.3}", shift as f64 / 1000.0);
        } else {
            let _ = write!(
                meeting,
                "+{:.3}*gte(t\\,{:.3})",
                shift as f64 / 1000.0,
                before as f64 / 1000.0
            );
        }
        before += b - a;
    }
    let part = |expr: String| format!("%{{eif\\:{expr}\\:d\\:2}}");
    let clock = format!(
        "{}\\:{}\\:{}",
        part(format!("floor(({meeting})/3600)")),
        part(format!("mod(floor(({meeting})/60)\\,60)")),
        part(format!("mod(floor({meeting})\\,60)")),
    );
    let size = (height / 18).max(10);
    let name: String = name
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| match c {
            '\'' => '\u{2019}',
            '%' | '\\' | ':' => ' ',
            c => c,
        })
        .collect();
    format!(
        "drawtext=font=DejaVu Sans:fontsize={size}:fontcolor=white:box=1:boxcolor=black@0.55:\
         boxborderw=6:x=12:y=h-th-14:text='{name}',\
         drawtext=font=DejaVu Sans Mono:fontsize={size}:fontcolor=white:box=1:boxcolor=black@0.55:\
         boxborderw=6:x=w-tw-12:y=h-th-14:text='{clock}'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burned_in_clock_adds_back_the_range_start_and_each_cut() {
        let timeline = Timeline::plan(&[1000, 2000, 12_000], 500, 13_000, Some(3000));
        let filter = burn_in("Ann O'Neil: 100%", &timeline, 360);
        // 0.5 s of range start, then the 7 s cut from 5 s into the video.
        assert!(filter.contains("t+0.500+7.000*gte(t\\,4.500)"), "{filter}");
        assert!(
            filter.contains("text='Ann O\u{2019}Neil  100 '"),
            "{filter}"
        );
        if let Ok(path) = std::env::var("BURN_IN_FILTER") {
            std::fs::write(path, filter).unwrap();
        }
    }
}
