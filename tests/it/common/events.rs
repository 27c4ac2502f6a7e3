//! Recall's realtime events as a bot sends them, written out by hand (not by the simulator's
//! encoder) so that the tests check the decoder against the documented shape.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{RECORDING, png};

/// A frame event as Recall sends it, with a real PNG.
#[derive(Clone)]
pub struct TestFrame {
    pub recording: String,
    pub participant: u64,
    pub name: Option<String>,
    pub kind: &'static str,
    pub relative: f64,
    pub png: Vec<u8>,
    /// `recording.metadata` and `bot.metadata` as Recall sends them back.
    pub recording_metadata: Value,
    pub bot_metadata: Value,
}

impl TestFrame {
    /// A webcam frame of participant 100 ("Alice Smith") in [`RECORDING`].
    pub fn new(relative: f64) -> Self {
        TestFrame {
            recording: RECORDING.into(),
            participant: 100,
            name: Some("Alice Smith".into()),
            kind: "webcam",
            relative,
            png: png(64, 36, (relative * 1000.0) as u32),
            recording_metadata: json!({"team": "research"}),
            bot_metadata: json!({"purpose": "tests"}),
        }
    }

    /// The recording's metadata, as Recall echoes it with every event.
    pub fn recording_metadata(mut self, metadata: Value) -> Self {
        self.recording_metadata = metadata;
        self
    }

    /// The bot's metadata, as given when the bot was created.
    pub fn bot_metadata(mut self, metadata: Value) -> Self {
        self.bot_metadata = metadata;
        self
    }

    pub fn participant(mut self, id: u64, name: Option<&str>) -> Self {
        self.participant = id;
        self.name = name.map(str::to_string);
        self.png = png(64, 36, id as u32 * 7919 + (self.relative * 1000.0) as u32);
        self
    }

    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self.png = png(80, 45, (self.relative * 1000.0) as u32 + 17);
        self
    }

    pub fn recording(mut self, recording: &str) -> Self {
        self.recording = recording.into();
        self
    }

    pub fn png(mut self, png: Vec<u8>) -> Self {
        self.png = png;
        self
    }

    pub fn event_value(&self) -> Value {
        json!({
            "event": "video_separate_png.data",
            "data": {
                "data": {
                    "buffer": base64::engine::general_purpose::STANDARD.encode(&self.png),
                    "timestamp": {"relative": self.relative, "absolute": absolute_time(self.relative)},
                    "type": self.kind,
                    "participant": {
                        "id": self.participant, "name": self.name, "is_host": self.participant == 100,
                        "platform": "desktop", "extra_data": {"zoom": {"user_guid": "g"}}
                    }
                },
                "realtime_endpoint": {"id": "re_1", "metadata": {}},
                "video_separate": {"id": "vs_1", "metadata": {}},
                "recording": {"id": self.recording, "metadata": self.recording_metadata},
                "bot": {"id": "bot_1", "metadata": self.bot_metadata}
            }
        })
    }

    pub fn event(&self) -> String {
        self.event_value().to_string()
    }

    pub fn file_name(&self) -> String {
        format!("{:09}.png", (self.relative * 1000.0).round() as u64)
    }
}

/// A participant event as Recall sends it (`participant_events.<kind>`), by default a `join`
/// of participant 100 ("Alice Smith") in [`RECORDING`].
#[derive(Clone)]
pub struct TestEvent {
    pub kind: String,
    pub recording: String,
    pub participant: u64,
    pub name: Option<String>,
    pub relative: f64,
    pub data: Value,
}

impl TestEvent {
    /// `kind` is the part after `participant_events.`, e.g. `join` or `chat_message`.
    pub fn new(kind: &str, relative: f64) -> Self {
        TestEvent {
            kind: format!("participant_events.{kind}"),
            recording: RECORDING.into(),
            participant: 100,
            name: Some("Alice Smith".into()),
            relative,
            data: Value::Null,
        }
    }

    pub fn participant(mut self, id: u64, name: Option<&str>) -> Self {
        self.participant = id;
        self.name = name.map(str::to_string);
        self
    }

    pub fn recording(mut self, recording: &str) -> Self {
        self.recording = recording.into();
        self
    }

    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }

    /// The participant as the event describes it: what `participant.json` should then hold.
    pub fn participant_value(&self) -> Value {
        json!({
            "id": self.participant, "name": self.name, "is_host": self.participant == 100,
            "platform": "desktop", "email": null, "extra_data": {"zoom": {"user_guid": "g"}}
        })
    }

    pub fn event_value(&self) -> Value {
        let mut participant = self.participant_value();
        participant.as_object_mut().unwrap().remove("email");
        json!({
            "event": self.kind,
            "data": {
                "data": {
                    "participant": participant,
                    "timestamp": {"relative": self.relative, "absolute": absolute_time(self.relative)},
                    "data": self.data
                },
                "realtime_endpoint": {"id": "re_1", "metadata": {}},
                "participant_events": {"id": "pe_1", "metadata": {"source": "tests"}},
                "recording": {"id": self.recording, "metadata": {"team": "research"}},
                "bot": {"id": "bot_1", "metadata": {"purpose": "tests"}}
            }
        })
    }

    pub fn event(&self) -> String {
        self.event_value().to_string()
    }
}
/// The absolute time of a frame `relative` seconds into a meeting that began at a fixed time.
pub fn absolute_time(relative: f64) -> String {
    let start: jiff::Timestamp = "2026-11-21T10:00:00Z".parse().unwrap();
    let at = start + jiff::SignedDuration::from_millis((relative * 1000.0).round() as i64);
    at.to_string()
}

/// An audio chunk as Recall sends it: `audio_separate_raw.data` of participant 100 ("Alice
/// Smith") in [`RECORDING`], or `audio_mixed_raw.data` with [`TestAudio::mixed`].
#[derive(Clone)]
pub struct TestAudio {
    pub recording: String,
    /// `None` for the mixed audio.
    pub participant: Option<u64>,
    pub relative: f64,
    pub samples: Vec<i16>,
}

impl TestAudio {
    /// `samples` starting `relative` seconds into the recording.
    pub fn new(relative: f64, samples: Vec<i16>) -> Self {
        TestAudio {
            recording: RECORDING.into(),
            participant: Some(100),
            relative,
            samples,
        }
    }

    /// `n` samples starting at sample `start` (16 kHz) whose values tell them apart: each is
    /// `seed` plus its place, so any misplaced sample shows.
    pub fn at_sample(start: u64, n: usize, seed: i16) -> Self {
        let samples = (0..n).map(|i| seed.wrapping_add(i as i16).max(1)).collect();
        Self::new(start as f64 / 16_000.0, samples)
    }

    pub fn participant(mut self, id: u64) -> Self {
        self.participant = Some(id);
        self
    }

    pub fn mixed(mut self) -> Self {
        self.participant = None;
        self
    }

    /// The buffer as Recall encodes it: s16le, base64.
    pub fn buffer(&self) -> String {
        let bytes: Vec<u8> = self.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    pub fn event_value(&self) -> Value {
        let mut data = json!({
            "buffer": self.buffer(),
            "timestamp": {"relative": self.relative, "absolute": absolute_time(self.relative)},
        });
        let (event, resource) = match self.participant {
            Some(id) => {
                data["participant"] = json!({
                    "id": id, "name": if id == 100 { Some("Alice Smith") } else { None },
                    "is_host": id == 100, "platform": "desktop", "extra_data": {}
                });
                ("audio_separate_raw.data", "audio_separate")
            }
            None => ("audio_mixed_raw.data", "audio_mixed"),
        };
        json!({
            "event": event,
            "data": {
                "data": data,
                "realtime_endpoint": {"id": "re_1", "metadata": {}},
                resource: {"id": "as_1", "metadata": {}},
                "recording": {"id": self.recording, "metadata": {"team": "research"}},
                "bot": {"id": "bot_1", "metadata": {"purpose": "tests"}}
            }
        })
    }

    pub fn event(&self) -> String {
        self.event_value().to_string()
    }
}

/// The timeline the chunks make: each at its first sample, silence elsewhere.
pub fn timeline(chunks: &[&TestAudio]) -> Vec<i16> {
    let end = chunks
        .iter()
        .map(|c| (c.relative * 16_000.0).round() as usize + c.samples.len())
        .max()
        .unwrap_or(0);
    let mut all = vec![0i16; end];
    for chunk in chunks {
        let at = (chunk.relative * 16_000.0).round() as usize;
        all[at..at + chunk.samples.len()].copy_from_slice(&chunk.samples);
    }
    all
}
