//! How much listing a long stream costs: a 20,000-frame stream (about 2 hours and 45 minutes
//! of webcam at 2 frames a second) paged through the file-system catalog, as the JSON API
//! and the player do.
//!
//! ```sh
//! cargo run --release --example catalog_bench
//! ```

use std::io::Write as _;
use std::time::{Duration, Instant};

use std::sync::Arc;

use recall_frames::catalog::Catalog;
use recall_frames::frame::{ParticipantId, RecordingId, StreamKey, StreamKind};
use recall_frames::layout::{FrameRecord, frame_file_name};
use recall_frames::store::fs::FsStore;

const FRAMES: u64 = 20_000;
const PAGES: u32 = 2_000;

fn record(ms: u64) -> String {
    let record = FrameRecord {
        file: frame_file_name(ms),
        relative: ms as f64 / 1000.0,
        absolute: jiff::Timestamp::from_millisecond(1_795_000_000_000 + ms as i64).ok(),
        width: 640,
        height: 360,
        bytes: 312_877,
        received_at: jiff::Timestamp::from_millisecond(1_795_000_000_200 + ms as i64)
            .expect("a time"),
        recovered: false,
    };
    serde_json::to_string(&record).expect("JSON") + "\n"
}

fn per(total: Duration, n: u32) -> String {
    format!("{:.1} µs", total.as_secs_f64() * 1e6 / f64::from(n))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let dir = root.path().join("rec_bench/100-alice-smith/webcam");
    std::fs::create_dir_all(&dir)?;
    let manifest = dir.join("frames.jsonl");
    let text: String = (0..FRAMES).map(|i| record(i * 500)).collect();
    std::fs::write(&manifest, &text)?;
    println!(
        "stream: {FRAMES} frames, frames.jsonl {:.1} MB",
        text.len() as f64 / 1e6
    );

    let catalog = Catalog::new(Arc::new(FsStore::at(root.path().to_owned())), 1_000_000);
    let key = StreamKey {
        recording: RecordingId::parse("rec_bench").expect("an id"),
        participant: ParticipantId(100),
        kind: StreamKind::Webcam,
    };

    let started = Instant::now();
    let first = catalog.frames(&key, None, 100).await?;
    assert_eq!(first.total, FRAMES as usize);
    println!(
        "first page, index built from the whole manifest: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );

    let started = Instant::now();
    for i in 0..PAGES {
        let after = u64::from(i) * 4_999 % (FRAMES * 500);
        let page = catalog.frames(&key, Some(after), 100).await?;
        assert!(!page.frames.is_empty());
    }
    println!(
        "a page of 100 anywhere in the stream, index current: {} (mean of {PAGES})",
        per(started.elapsed(), PAGES)
    );

    let mut appended = Duration::ZERO;
    for i in 0..PAGES {
        let mut file = std::fs::OpenOptions::new().append(true).open(&manifest)?;
        file.write_all(record((FRAMES + u64::from(i)) * 500).as_bytes())?;
        drop(file);
        let started = Instant::now();
        let page = catalog.frames(&key, Some((FRAMES - 1) * 500), 100).await?;
        appended += started.elapsed();
        assert_eq!(page.frames.len(), (i as usize + 1).min(100));
    }
    println!(
        "a page after a frame was saved (reads only the new line): {} (mean of {PAGES})",
        per(appended, PAGES)
    );

    let started = Instant::now();
    for _ in 0..100 {
        catalog.recording(&key.recording).await?;
    }
    println!(
        "the recording's summary (folders, participant.json, stream indexes): {}",
        per(started.elapsed(), 100)
    );
    println!(
        "index memory: {} bytes a frame",
        std::mem::size_of::<recall_frames::catalog::FrameInfo>()
    );
    Ok(())
}
