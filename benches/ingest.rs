//! The per-frame costs of ingestion, on a real camera-like frame (about 330 KB of PNG, 450 KB
//! as an event): decoding a message at the edge, and writing a frame to the file sink, next
//! to the floor of writing the same bytes to a new file. `cargo bench --bench ingest`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use recall_frames::frame::{Frame, ParticipantId, Resource, StreamKind};
use recall_frames::recorder::Recorder;
use recall_frames::simulate::picture::{self, Look};
use recall_frames::simulate::wire::{self, BotResources, EncodedPng, WireParticipant};
use recall_frames::sink::FrameSink as _;
use recall_frames::testing::event::{self, Inbound};

/// A frame event as a bot sends it, and the PNG in it.
fn real_event() -> (String, Vec<u8>) {
    let look = Look {
        name: "Alice Smith".into(),
        kind: StreamKind::Webcam,
        width: 640,
        height: 360,
        seed: 0,
    };
    let png = picture::render(&look, 7, "frame 7/20");
    let resource = |id: &str| Resource {
        id: id.into(),
        metadata: serde_json::json!({}),
    };
    let resources = BotResources {
        recording: resource("bench"),
        bot: resource("bot"),
        realtime_endpoint: resource("re"),
        video_separate: resource("vs"),
        participant_events: resource("pe"),
        audio_separate: resource("as"),
    };
    let participant = WireParticipant {
        id: ParticipantId(100),
        name: Some("Alice Smith".into()),
        is_host: true,
        platform: Some("desktop".into()),
        extra_data: serde_json::json!({}),
        email: None,
    };
    let text = wire::frame_event(
        &resources,
        &participant,
        StreamKind::Webcam,
        jiff::Timestamp::now(),
        3500,
        &EncodedPng::new(png.clone()),
    );
    (text, png)
}

fn decode(c: &mut Criterion) {
    let (text, png) = real_event();
    let buffer = base64::engine::general_purpose::STANDARD.encode(&png);
    println!(
        "event: {} KB of message, {} KB of PNG",
        text.len() / 1000,
        png.len() / 1000
    );
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::BytesDecimal(text.len() as u64));
    group.bench_function("event::decode (whole message)", |b| {
        b.iter(|| {
            event::decode(
                black_box(&text),
                jiff::Timestamp::now(),
                std::time::Instant::now(),
            )
            .expect("a valid frame")
        })
    });
    group.bench_function("JSON pass (serde_json, skipping every value)", |b| {
        b.iter(|| serde_json::from_str::<serde::de::IgnoredAny>(black_box(&text)).unwrap())
    });
    group.throughput(Throughput::BytesDecimal(buffer.len() as u64));
    group.bench_function("base64 decode, base64 crate (the fallback)", |b| {
        b.iter(|| {
            base64::engine::general_purpose::STANDARD
                .decode(black_box(&buffer))
                .unwrap()
        })
    });
    group.bench_function(
        "base64 decode, base64-simd (what event::decode uses)",
        |b| {
            b.iter(|| {
                base64_simd::STANDARD
                    .decode_to_vec(black_box(&buffer))
                    .unwrap()
            })
        },
    );
    group.throughput(Throughput::BytesDecimal(png.len() as u64));
    group.bench_function("PNG header and IEND check", |b| {
        b.iter(|| event::png_dimensions(black_box(&png)).unwrap())
    });
    group.finish();
}

/// Times `iters` writes made by `write(i)` into a fresh folder under `root`. Nothing is
/// deleted until the whole group is done: for 30 s after a mass deletion, ext4 allocates
/// new inodes slowly (it steps past the freed ones), which would slow the next sample.
fn timed_writes(root: &Path, iters: u64, mut write: impl FnMut(&Path, u64)) -> Duration {
    let dir = tempfile::tempdir_in(root).unwrap().keep();
    let started = Instant::now();
    for i in 0..iters {
        write(&dir, i);
    }
    started.elapsed()
}

fn write(c: &mut Criterion) {
    let (text, png) = real_event();
    let Ok(Inbound::Frame(frame)) =
        event::decode(&text, jiff::Timestamp::now(), std::time::Instant::now())
    else {
        panic!("the event decodes to a frame");
    };
    let root = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("write");
    group.throughput(Throughput::BytesDecimal(png.len() as u64));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(8));
    group.bench_function("floor: std::fs::write to a new file", |b| {
        b.iter_custom(|iters| {
            timed_writes(root.path(), iters, |dir, i| {
                std::fs::write(dir.join(format!("{i:09}.png")), &png).unwrap()
            })
        })
    });
    let mut participant = 0;
    group.bench_function("recorder StreamWriter::write", |b| {
        b.iter_custom(|iters| {
            // A new stream each sample, in a data folder of its own.
            participant += 1;
            let data = tempfile::tempdir_in(root.path()).unwrap().keep();
            let mut first: Frame = (*frame).clone();
            first.participant.id = ParticipantId(participant);
            first.key.participant = ParticipantId(participant);
            runtime.block_on(async {
                let sink = Arc::new(Recorder::in_folder(data).await.unwrap());
                let mut writer = sink.open_stream(&first).await.unwrap();
                let mut frames: Vec<Frame> = (0..iters)
                    .map(|i| {
                        let mut next = first.clone();
                        next.relative_ms = i;
                        next.time.relative = i as f64 / 1000.0;
                        next
                    })
                    .collect();
                let started = Instant::now();
                for frame in &mut frames {
                    writer.write(frame).await.unwrap();
                }
                let elapsed = started.elapsed();
                writer.close().await.unwrap();
                elapsed
            })
        })
    });
    group.finish();
}

criterion_group!(benches, decode, write);
criterion_main!(benches);
