//! Bad input, systematically: property tests of the event decoder over arbitrary bytes and
//! mutated real events, and of the path builder over ids and names that try to leave
//! DATA_DIR. Case counts follow `PROPTEST_CASES` (256 by default; `.ci/run` runs more).

use std::path::{Component, Path};
use std::time::Instant;

use base64::Engine as _;
use proptest::prelude::*;
use recall_frames::frame::{Frame, FrameTime, Participant, ParticipantId, RecordingId, StreamKind};
use recall_frames::layout;
use recall_frames::testing::event::{self, Inbound, MAX_SIDE};
use serde_json::{Value, json};

/// A realistic frame event with a real (small) PNG.
fn real_event() -> Value {
    let mut png = Vec::new();
    image::RgbImage::from_fn(16, 9, |x, y| image::Rgb([x as u8 * 16, y as u8 * 28, 7]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    json!({
        "event": "video_separate_png.data",
        "data": {
            "data": {
                "buffer": base64::engine::general_purpose::STANDARD.encode(&png),
                "timestamp": {"relative": 12.5, "absolute": "2026-11-21T10:00:12.500Z"},
                "type": "webcam",
                "participant": {"id": 100, "name": "Alice", "is_host": true,
                                "platform": "desktop", "extra_data": {"k": [1, 2]},
                                "email": "a@b.c"}
            },
            "realtime_endpoint": {"id": "re_1", "metadata": {}},
            "video_separate": {"id": "vs_1", "metadata": {}},
            "recording": {"id": "rec_1", "metadata": {"team": "x"}},
            "bot": {"id": "bot_1", "metadata": {}}
        }
    })
}

/// A realistic audio chunk: 20 ms of one participant's audio.
fn real_audio_event() -> Value {
    let pcm: Vec<u8> = (0..320i16).flat_map(|s| (s * 37).to_le_bytes()).collect();
    json!({
        "event": "audio_separate_raw.data",
        "data": {
            "data": {
                "buffer": base64::engine::general_purpose::STANDARD.encode(&pcm),
                "timestamp": {"relative": 12.5, "absolute": "2026-11-21T10:00:12.500Z"},
                "participant": {"id": 100, "name": "Alice", "is_host": true,
                                "platform": "desktop", "extra_data": {"k": [1, 2]}}
            },
            "realtime_endpoint": {"id": "re_1", "metadata": {}},
            "audio_separate": {"id": "as_1", "metadata": {}},
            "recording": {"id": "rec_1", "metadata": {"team": "x"}},
            "bot": {"id": "bot_1", "metadata": {}}
        }
    })
}

/// A realistic participant event (a chat message, the kind with the most data).
fn real_participant_event() -> Value {
    json!({
        "event": "participant_events.chat_message",
        "data": {
            "data": {
                "participant": {"id": 200, "name": "Bob", "is_host": false,
                                "platform": "zoom", "extra_data": {}},
                "timestamp": {"relative": 3.25, "absolute": "2026-11-21T10:00:03.250Z"},
                "data": {"text": "hello", "to": "everyone"}
            },
            "realtime_endpoint": {"id": "re_1", "metadata": {}},
            "participant_events": {"id": "pe_1", "metadata": {}},
            "recording": {"id": "rec_1", "metadata": {}},
            "bot": {"id": "bot_1", "metadata": {}}
        }
    })
}

/// A realistic frame event with a PNG of noise, whose base64 (about 9 KB) is long enough for
/// the decoder's lifted path; its `event` comes first, as Recall sends it, and `spacing` goes
/// around every colon.
fn real_big_event(spacing: &str) -> String {
    let mut rng = 18u64;
    let mut png = Vec::new();
    image::RgbImage::from_fn(48, 48, |_, _| {
        // xorshift: noise, which does not compress.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        image::Rgb([rng as u8, (rng >> 8) as u8, (rng >> 16) as u8])
    })
    .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
    .unwrap();
    let mut event = real_event();
    event["data"]["data"]["buffer"] = base64::engine::general_purpose::STANDARD
        .encode(&png)
        .into();
    let data = event["data"].to_string();
    format!(r#"{{"event":"video_separate_png.data","data":{data}}}"#)
        .replace("\":", &format!("\"{spacing}:{spacing}"))
}

/// The realistic audio chunk with its `event` first, as Recall sends it, and `spacing` around
/// every colon: what the decoder's lifted path reads.
fn real_audio_message(spacing: &str) -> String {
    let data = real_audio_event()["data"].to_string();
    format!(r#"{{"event":"audio_separate_raw.data","data":{data}}}"#)
        .replace("\":", &format!("\"{spacing}:{spacing}"))
}

/// A connection's decoder that has decoded the realistic audio chunk, as every spacing
/// writes it: it reads a message that differs from one of them only in its timestamp and
/// buffer from what it remembers.
fn primed_decoder() -> event::Decoder {
    let mut decoder = event::Decoder::default();
    let (at, instant) = (jiff::Timestamp::now(), Instant::now());
    for spacing in SPACINGS {
        let primed = decoder.decode(&real_audio_message(spacing), at, instant);
        assert!(matches!(primed, Ok(Inbound::Audio(_))));
    }
    decoder
}

/// What the realistic messages put around their colons.
const SPACINGS: [&str; 3] = ["", " ", "\n\t"];

/// A result as text, to compare two decodings of a message.
fn show(result: &Result<Inbound, event::Refusal>) -> String {
    match result {
        Ok(inbound) => format!("{inbound:?}"),
        Err(refusal) => format!("{:?}: {refusal}", refusal.reason()),
    }
}

/// Decodes, and checks that whatever came out is one of the outcomes, the same as the
/// reference decoding's, and, for a frame or a participant event, that everything later
/// code relies on holds.
fn decode_and_check(text: &str) -> Result<(), TestCaseError> {
    let (at, instant) = (jiff::Timestamp::now(), Instant::now());
    let decoded = event::decode(text, at, instant);
    let (fast, reference) = (
        show(&decoded),
        show(&event::decode_in_two_passes(text, at, instant)),
    );
    prop_assert!(
        fast == reference,
        "the fast paths and the reference differ on {text:.200}:\n{fast:.300}\n{reference:.300}"
    );
    let remembering = show(&primed_decoder().decode(text, at, instant));
    prop_assert!(
        remembering == reference,
        "a connection's decoder and the reference differ on {text:.200}:\n{remembering:.300}\n{reference:.300}"
    );
    match decoded {
        Ok(Inbound::Frame(frame)) => check_frame(&frame),
        Ok(Inbound::ParticipantEvent(event)) => {
            prop_assert!(RecordingId::parse(event.recording.id.as_str()).is_some());
            prop_assert!(FrameTime::relative_ms(event.time.relative).is_some());
            let root = Path::new("/data/frames");
            let folder = layout::participant_folder_name(&event.participant);
            check_inside(
                root,
                &layout::stream_dir(root, &event.recording.id, &folder, StreamKind::Webcam),
            )
        }
        Ok(Inbound::Audio(chunk)) => {
            // A whole number of samples, within the cap, at a place on the timeline.
            prop_assert!(RecordingId::parse(chunk.recording.id.as_str()).is_some());
            prop_assert!(!chunk.pcm.is_empty() && chunk.pcm.len() % 2 == 0);
            prop_assert!(chunk.samples() <= recall_frames::audio::MAX_CHUNK_SAMPLES);
            prop_assert!(FrameTime::relative_ms(chunk.time.relative).is_some());
            Ok(())
        }
        Ok(Inbound::Ignored) => Ok(()),
        Err(refusal) => {
            // Every refusal has a label and a message to send back.
            prop_assert!(!refusal.reason().as_str().is_empty());
            prop_assert!(!refusal.to_string().is_empty());
            Ok(())
        }
    }
}

fn check_frame(frame: &Frame) -> Result<(), TestCaseError> {
    prop_assert!(RecordingId::parse(frame.key.recording.as_str()).is_some());
    prop_assert!(frame.relative_ms <= FrameTime::MAX_RELATIVE_MS);
    prop_assert_eq!(
        FrameTime::relative_ms(frame.time.relative),
        Some(frame.relative_ms)
    );
    prop_assert!((1..=MAX_SIDE).contains(&frame.width));
    prop_assert!((1..=MAX_SIDE).contains(&frame.height));
    prop_assert_eq!(
        event::png_dimensions(&frame.png).ok(),
        Some((frame.width, frame.height))
    );
    prop_assert_eq!(frame.participant.id, frame.key.participant);
    let root = Path::new("/data/frames");
    let folder = layout::participant_folder_name(&frame.participant);
    check_inside(
        root,
        &layout::stream_dir(root, &frame.key.recording, &folder, frame.key.kind),
    )
}

/// `path` is `root` plus exactly three plain segments: nothing climbs out or starts over.
fn check_inside(root: &Path, path: &Path) -> Result<(), TestCaseError> {
    prop_assert!(
        path.starts_with(root),
        "{} leaves {}",
        path.display(),
        root.display()
    );
    let extra: Vec<Component> = path.components().skip(root.components().count()).collect();
    prop_assert_eq!(extra.len(), 3, "{}", path.display());
    for component in extra {
        let Component::Normal(segment) = component else {
            return Err(TestCaseError::fail(format!(
                "{component:?} in {}",
                path.display()
            )));
        };
        let segment = segment.to_str().unwrap();
        prop_assert!(!segment.is_empty() && segment != "." && segment != "..");
        prop_assert!(!segment.contains(['/', '\\', '\0']), "{segment:?}");
    }
    Ok(())
}

/// Pieces of hostile names: traversal, separators, NUL, look-alikes of `/` and `.`
/// (division slash, fraction slash, fullwidth solidus and full stop, one-dot leader),
/// percent-encodings, and plain characters.
fn hostile_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_string()),
        Just(".".to_string()),
        Just("/".to_string()),
        Just("\\".to_string()),
        Just("\0".to_string()),
        Just("\u{2215}".to_string()),
        Just("\u{2044}".to_string()),
        Just("\u{FF0F}".to_string()),
        Just("\u{FF0E}".to_string()),
        Just("\u{2024}".to_string()),
        Just("%2e%2e%2f".to_string()),
        Just("~".to_string()),
        Just("C:".to_string()),
        "[a-zA-Z0-9_.-]{1,8}",
        any::<char>().prop_map(String::from),
    ]
}

fn hostile_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(hostile_piece(), 0..12).prop_map(|p| p.concat()),
        // Very long.
        (hostile_piece(), 100..400usize).prop_map(|(p, n)| p.repeat(n)),
        any::<String>(),
    ]
}

/// A leaf JSON value of any type.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        hostile_name().prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
    ]
}

/// Where in a real event a value may be replaced.
/// Swaps `swaps` into `event` and checks its decoding; a recording id that is not one plain
/// segment is always refused, so the decoding must not be what `accepted` recognises.
fn check_swapped(
    mut event: Value,
    swaps: &[(&str, Value)],
    accepted: impl Fn(&Inbound) -> bool,
) -> Result<(), TestCaseError> {
    for (pointer, value) in swaps {
        if let Some(slot) = event.pointer_mut(pointer) {
            *slot = value.clone();
        }
    }
    let text = event.to_string();
    decode_and_check(&text)?;
    if let Some(id) = event.pointer("/data/recording/id").and_then(Value::as_str)
        && RecordingId::parse(id).is_none()
        && event::decode(&text, jiff::Timestamp::now(), Instant::now())
            .is_ok_and(|decoded| accepted(&decoded))
    {
        return Err(TestCaseError::fail(format!("accepted recording id {id:?}")));
    }
    Ok(())
}

const POINTERS: &[&str] = &[
    "/event",
    "/data",
    "/data/data",
    "/data/data/buffer",
    "/data/data/timestamp",
    "/data/data/timestamp/relative",
    "/data/data/timestamp/absolute",
    "/data/data/type",
    "/data/data/participant",
    "/data/data/participant/id",
    "/data/data/participant/name",
    "/data/data/participant/is_host",
    "/data/data/participant/extra_data",
    "/data/recording",
    "/data/recording/id",
    "/data/recording/metadata",
    "/data/bot",
    "/data/video_separate",
];

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to JSON, base64 and UTF-8, and any byte.
    let byte = prop_oneof![
        prop::sample::select(b"{}[]\",:\\0123456789.-+eE/=nultrf ".to_vec()),
        any::<u8>(),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, b)| Mutation::Flip(at, b)),
        (any::<usize>(), byte).prop_map(|(at, b)| Mutation::Insert(at, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

/// Bytes that end, escape or break a JSON string or base64, or are whitespace around it.
fn edge_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b" \t\n\r\"\\=/+-_:,{}[]0.e\x00\x01\x1f\x7fA".to_vec()),
        any::<u8>(),
    ]
}

fn apply(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match *mutation {
        Mutation::Flip(at, b) => {
            let at = at % bytes.len();
            bytes[at] = b;
        }
        Mutation::Insert(at, b) => bytes.insert(at % (bytes.len() + 1), b),
        Mutation::Delete(at) => {
            bytes.remove(at % bytes.len());
        }
        Mutation::Truncate(at) => bytes.truncate(at % bytes.len()),
    }
}

proptest! {
    #[test]
    fn the_decoder_survives_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_and_check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn the_decoder_survives_json_like_text(text in r#"[\[\]{}",:0-9a-z._\\ -]{0,300}"#) {
        decode_and_check(&text)?;
    }

    #[test]
    fn the_decoder_survives_byte_mutations_of_real_events(
        mutations in prop::collection::vec(mutation(), 1..8)
    ) {
        let mut bytes = real_event().to_string().into_bytes();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_and_check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn the_decoder_survives_byte_mutations_of_real_big_events_at_the_buffers_ends(
        audio in any::<bool>(),
        spacing in prop::sample::select(SPACINGS.as_slice()),
        mutations in prop::collection::vec((0..3usize, -3..3isize, 0..3usize, edge_byte()), 1..4),
        anywhere in prop::collection::vec(mutation(), 0..2),
    ) {
        // Most mutations land where the buffer starts or ends, where the lifted path decides
        // what the buffer is: bytes that end, escape or break a JSON string or base64. The
        // message is a frame or an audio chunk, the two that path reads.
        let text = match audio {
            false => real_big_event(spacing),
            true => real_audio_message(spacing),
        };
        let buffer = format!("\"buffer\"{spacing}:{spacing}\"");
        let start = text.find(&buffer).unwrap() + buffer.len();
        let end = start + text[start..].find('"').unwrap();
        let mut bytes = text.into_bytes();
        for (near, offset, how, byte) in &mutations {
            let at = [start, end, end + 1][*near].saturating_add_signed(*offset);
            let m = match how {
                0 => Mutation::Insert(at, *byte),
                1 => Mutation::Flip(at, *byte),
                _ => Mutation::Delete(at),
            };
            apply(&mut bytes, &m);
        }
        for m in &anywhere {
            apply(&mut bytes, m);
        }
        decode_and_check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn the_decoder_survives_byte_mutations_of_real_audio_chunks_timestamps(
        spacing in prop::sample::select(SPACINGS.as_slice()),
        relative in prop::sample::select(vec!["12.52", "0", "1e3", "-0.0", "13.000000000000001"]),
        mutations in prop::collection::vec((0..4usize, -2..3isize, 0..3usize, edge_byte()), 0..4),
    ) {
        // What a connection's decoder reads alone when the rest matches a chunk it
        // remembers: the timestamp, here with bytes inserted, changed or deleted at its ends
        // and around its numbers' and strings' edges.
        let number = format!(":{spacing}{relative},");
        let text = real_audio_message(spacing).replacen(&format!(":{spacing}12.5,"), &number, 1);
        let start = text.find("\"timestamp\"").unwrap();
        let end = start + text[start..].find('}').unwrap();
        let number = text.find(&number).unwrap() + 1 + spacing.len();
        let mut bytes = text.into_bytes();
        for (near, offset, how, byte) in &mutations {
            let at = [start, end, end + 1, number][*near].saturating_add_signed(*offset);
            let m = match how {
                0 => Mutation::Insert(at, *byte),
                1 => Mutation::Flip(at, *byte),
                _ => Mutation::Delete(at),
            };
            apply(&mut bytes, &m);
        }
        decode_and_check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn the_decoder_survives_byte_mutations_of_real_participant_events(
        mutations in prop::collection::vec(mutation(), 1..8)
    ) {
        let mut bytes = real_participant_event().to_string().into_bytes();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_and_check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn the_decoder_survives_byte_mutations_of_real_audio_events(
        mutations in prop::collection::vec(mutation(), 1..8)
    ) {
        let mut bytes = real_audio_event().to_string().into_bytes();
        for m in &mutations {
            apply(&mut bytes, m);
        }
        decode_and_check(&String::from_utf8_lossy(&bytes))?;
    }

    #[test]
    fn the_decoder_survives_values_swapped_in_real_audio_events(
        swaps in prop::collection::vec((prop::sample::select(POINTERS), json_leaf()), 1..4)
    ) {
        check_swapped(real_audio_event(), &swaps, |decoded| matches!(decoded, Inbound::Audio(_)))?;
    }

    #[test]
    fn the_decoder_survives_values_swapped_in_real_events(
        swaps in prop::collection::vec((prop::sample::select(POINTERS), json_leaf()), 1..4)
    ) {
        check_swapped(real_event(), &swaps, |decoded| matches!(decoded, Inbound::Frame(_)))?;
    }

    #[test]
    fn recording_ids_are_one_plain_segment_or_refused(id in hostile_name()) {
        match RecordingId::parse(&id) {
            None => {}
            Some(parsed) => {
                prop_assert_eq!(parsed.as_str(), id.as_str());
                prop_assert!(id.len() <= RecordingId::MAX_LEN);
                prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b)));
                let root = Path::new("/data/frames");
                check_inside(root, &layout::stream_dir(root, &parsed, "1", StreamKind::Webcam))?;
            }
        }
    }

    #[test]
    fn participant_folders_stay_inside_whatever_the_name(
        name in proptest::option::of(hostile_name()),
        id in any::<u64>(),
        screenshare in any::<bool>(),
    ) {
        let participant = Participant {
            id: ParticipantId(id),
            name,
            is_host: false,
            platform: None,
            email: None,
            extra_data: Value::Null,
        };
        let folder = layout::participant_folder_name(&participant);
        prop_assert!(folder.starts_with(&id.to_string()));
        prop_assert!(folder.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        prop_assert!(folder.len() <= 20 + 1 + 48);
        prop_assert_eq!(layout::parse_participant_folder_name(&folder), Some(ParticipantId(id)));
        let kind = if screenshare { StreamKind::Screenshare } else { StreamKind::Webcam };
        let root = Path::new("/data/frames");
        let recording = RecordingId::parse("rec_1").unwrap();
        check_inside(root, &layout::stream_dir(root, &recording, &folder, kind))?;
    }
}

#[test]
fn the_real_event_itself_decodes() {
    // The mutations start from a frame, not from something already refused.
    for text in [
        real_event().to_string(),
        real_big_event(""),
        real_big_event(" "),
        real_big_event("\n\t"),
    ] {
        let decoded = event::decode(&text, jiff::Timestamp::now(), Instant::now());
        assert!(
            matches!(decoded, Ok(Inbound::Frame(_))),
            "{:.300}",
            show(&decoded)
        );
    }
    let text = real_participant_event().to_string();
    let decoded = event::decode(&text, jiff::Timestamp::now(), Instant::now());
    assert!(
        matches!(decoded, Ok(Inbound::ParticipantEvent(_))),
        "{decoded:?}"
    );
    for text in [
        real_audio_event().to_string(),
        real_audio_message(""),
        real_audio_message(" "),
        real_audio_message("\n\t"),
    ] {
        let decoded = event::decode(&text, jiff::Timestamp::now(), Instant::now());
        assert!(
            matches!(&decoded, Ok(Inbound::Audio(chunk)) if chunk.samples() == 320 && chunk.start_sample == 200_000),
            "{decoded:?}"
        );
    }
}
