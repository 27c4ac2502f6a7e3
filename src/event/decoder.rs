//! A connection's decoder, which remembers the audio chunks it decoded last.
//!
//! Every chunk of a track repeats the same context (the participant, the recording and the
//! other resources: most of the JSON around the samples), and only the samples and the
//! timestamp change. For each of the tracks it decoded last, the decoder keeps the message
//! around the buffer, where its timestamp was, and the context it decoded to. A chunk that
//! matches one of them everywhere else has only its timestamp and its samples read, and
//! shares the context decoded before.
//!
//! Why this decodes exactly what [`super::decode`] does: a remembered message was decoded by
//! the lifted path, so it is `head + buffer + before + timestamp + after`, where `timestamp`
//! is the value of `data.data.timestamp`. A new message `head + buffer' + before + value +
//! after` is that message with the buffer's characters and one value replaced. If the new
//! buffer decodes as base64 (so it holds no quote, backslash or control character) and
//! `value` parses alone as a timestamp, with no nesting (so no depth limit can tell the two
//! apart), the whole message parses as the remembered one did, with the new buffer and
//! timestamp; the context's checks passed then and give the same answer now. Anything else
//! decodes as if nothing were remembered.

use std::ops::Range;
use std::time::Instant;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::audio::AudioContext;
use super::lifted::Lifted;
use super::wire::WireTimestamp;
use super::{Inbound, Refusal, decode_unlifted};
use crate::audio::AudioChunk;

/// The tracks remembered: as many as a call has separate audio streams (Zoom and Meet send
/// up to 16). A connection with more decodes the others in full.
const REMEMBERED_TRACKS: usize = 16;

/// Decodes a connection's messages as [`super::decode`] does, faster for audio chunks of the
/// tracks it decoded last.
#[derive(Default)]
pub struct Decoder {
    /// The most recently used first.
    remembered: Vec<Remembered>,
}

struct Remembered {
    head: Box<str>,
    tail: Box<str>,
    /// Where the timestamp's value is in `tail`.
    timestamp: Range<usize>,
    context: AudioContext,
}

impl Decoder {
    pub fn decode(
        &mut self,
        text: &str,
        received_at: Timestamp,
        received: Instant,
    ) -> Result<Inbound, Refusal> {
        let Some(lifted) = Lifted::new(text) else {
            return decode_unlifted(text, received_at, received);
        };
        if let Some(chunk) = self.reuse(&lifted, received_at, received) {
            return Ok(Inbound::Audio(Box::new(chunk)));
        }
        match lifted.decode(received_at, received) {
            Some(inbound) => {
                if let Inbound::Audio(chunk) = &inbound {
                    self.remember(&lifted, chunk);
                }
                Ok(inbound)
            }
            None => decode_unlifted(text, received_at, received),
        }
    }

    /// The chunk in `lifted`, if it is a remembered track's at another time.
    fn reuse(
        &mut self,
        lifted: &Lifted,
        received_at: Timestamp,
        received: Instant,
    ) -> Option<AudioChunk> {
        let (i, value) = self
            .remembered
            .iter()
            .enumerate()
            .find_map(|(i, remembered)| Some((i, remembered.timestamp_in(lifted)?)))?;
        let timestamp: WireTimestamp = serde_json::from_str(value).ok()?;
        let chunk = self.remembered[i]
            .context
            .chunk(timestamp, lifted.buffer, received_at, received)
            .ok()?;
        self.remembered[..=i].rotate_right(1);
        Some(chunk)
    }

    fn remember(&mut self, lifted: &Lifted, chunk: &AudioChunk) {
        let Some(timestamp) = timestamp_in_tail(lifted) else {
            return;
        };
        self.remembered.truncate(REMEMBERED_TRACKS - 1);
        self.remembered.insert(
            0,
            Remembered {
                head: lifted.head.into(),
                tail: lifted.tail.into(),
                timestamp,
                context: AudioContext {
                    source: chunk.source.clone(),
                    recording: chunk.recording.clone(),
                },
            },
        );
    }
}

impl Remembered {
    /// The text where this message's timestamp was, if `lifted` matches it everywhere else
    /// and that text has one level of brackets at most (counting any in strings too).
    fn timestamp_in<'t>(&self, lifted: &Lifted<'t>) -> Option<&'t str> {
        let before = &self.tail[..self.timestamp.start];
        let after = &self.tail[self.timestamp.end..];
        let tail = lifted.tail;
        if *self.head != *lifted.head
            || tail.len() < before.len() + after.len()
            || !tail.starts_with(before)
            || !tail.ends_with(after)
        {
            return None;
        }
        let value = &tail[before.len()..tail.len() - after.len()];
        (memchr::memchr2_iter(b'{', b'[', value.as_bytes()).count() <= 1).then_some(value)
    }
}

/// Where the value of `data.data.timestamp` is in `lifted`'s tail; `None` when it is in the
/// head (before the buffer), or the message has no such value.
fn timestamp_in_tail(lifted: &Lifted) -> Option<Range<usize>> {
    #[derive(Deserialize)]
    struct Data<T> {
        data: T,
    }
    #[derive(Deserialize)]
    struct Timestamped<'a> {
        #[serde(borrow)]
        timestamp: &'a RawValue,
    }
    let rest = lifted.rest();
    let event: Data<Data<Timestamped>> = serde_json::from_str(&rest).ok()?;
    let value = event.data.data.timestamp.get();
    let start =
        (value.as_ptr() as usize).checked_sub(rest.as_ptr() as usize + lifted.head.len())?;
    Some(start..start + value.len())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use base64::Engine as _;
    use serde_json::json;

    use super::*;
    use crate::event::buffer::BASE64;
    use crate::event::decode_in_two_passes;
    use crate::event::tests::audio_event;

    /// A 20 ms chunk at `relative` seconds, of participant `id`, its `event` first as Recall
    /// sends it, with `timestamp` in place of its timestamp's value when given.
    fn chunk(id: u64, relative: f64, timestamp: Option<&str>) -> String {
        let pcm: Vec<u8> = (0..320i16).flat_map(|s| (s * 37).to_le_bytes()).collect();
        let mut event = audio_event(&BASE64.encode(pcm));
        event["data"]["data"]["participant"]["id"] = json!(id);
        event["data"]["data"]["timestamp"]["relative"] = json!(relative);
        let data = event["data"].to_string();
        let message = format!(r#"{{"event":"audio_separate_raw.data","data":{data}}}"#);
        match timestamp {
            None => message,
            Some(value) => {
                let at = message.find(r#""timestamp":"#).unwrap() + r#""timestamp":"#.len();
                let end = at + message[at..].find('}').unwrap() + 1;
                format!("{}{value}{}", &message[..at], &message[end..])
            }
        }
    }

    fn show(result: &Result<Inbound, Refusal>) -> String {
        match result {
            Ok(inbound) => format!("{inbound:?}"),
            Err(refusal) => format!("{:?}: {refusal}", refusal.reason()),
        }
    }

    /// Decodes `text` with `decoder` and with the reference, and says whether the decoder
    /// read it from a remembered track (its chunk shares a remembered context).
    fn decode_alike(decoder: &mut Decoder, text: &str) -> bool {
        let (at, instant) = (Timestamp::now(), Instant::now());
        let remembered: Vec<_> = decoder
            .remembered
            .iter()
            .map(|r| Arc::as_ptr(&r.context.recording))
            .collect();
        let decoded = decoder.decode(text, at, instant);
        let reference = decode_in_two_passes(text, at, instant);
        let (shown, reference) = (show(&decoded), show(&reference));
        assert!(
            shown == reference,
            "{text:.400}\n{shown:.300}\n{reference:.300}"
        );
        matches!(&decoded, Ok(Inbound::Audio(chunk))
            if remembered.contains(&Arc::as_ptr(&chunk.recording)))
    }

    #[test]
    fn a_tracks_later_chunks_reuse_its_context_and_decode_as_the_reference_does() {
        let mut decoder = Decoder::default();
        assert!(!decode_alike(&mut decoder, &chunk(100, 12.5, None)));
        assert!(decode_alike(&mut decoder, &chunk(100, 12.52, None)));
        // Another participant's chunks, interleaved.
        assert!(!decode_alike(&mut decoder, &chunk(200, 12.52, None)));
        for i in 0..5 {
            let relative = 12.54 + f64::from(i) * 0.02;
            assert!(decode_alike(&mut decoder, &chunk(100, relative, None)));
            assert!(decode_alike(&mut decoder, &chunk(200, relative, None)));
        }
        // Timestamps written otherwise, good and bad: each is decoded as the reference does.
        for value in [
            r#"{"relative":13}"#,
            r#"{"relative":13,"absolute":null}"#,
            r#" {"absolute":"2026-11-21T10:00:13Z", "relative" : 1.3e1} "#,
            r#"[13.5,"2026-11-21T10:00:13.500Z"]"#,
            r#"{"relative":13,"other":"{["}"#,
            r#"{"relative":13,"other":{"nested":1}}"#,
            r#"{"relative":13,"relative":14}"#,
            r#"{"relative":-1}"#,
            r#"{"relative":"13"}"#,
            r#"{"relative":13,"absolute":"noon"}"#,
            r#"{"relative":13}}"#,
            r#"{"relative":13},"x":{"y":1}"#,
            r#"{"relative":13"#,
            "13",
            "",
        ] {
            decode_alike(&mut decoder, &chunk(100, 0.0, Some(value)));
        }
        assert!(decode_alike(&mut decoder, &chunk(100, 13.0, None)));
    }

    #[test]
    fn a_changed_context_or_a_bad_chunk_is_decoded_in_full() {
        let mut decoder = Decoder::default();
        let first = chunk(100, 12.5, None);
        decode_alike(&mut decoder, &first);
        let pcm = |bytes: &[u8]| BASE64.encode(bytes);
        let buffer = BASE64.encode(
            (0..320i16)
                .flat_map(|s| (s * 37).to_le_bytes())
                .collect::<Vec<u8>>(),
        );
        let changed = [
            first.replace("Alice", "Alicia"),
            first.replace(r#""team":"a""#, r#""team":"b""#),
            first.replace("rec_1", "../x"),
            first.replace("audio_separate_raw", "audio_mixed_raw"),
            first.replace(&buffer, &pcm(&[1; 641])),
            first.replace(&buffer, &format!("{}\u{1}", &buffer[..600])),
            first.replace(&buffer, &format!("{}\\/", &buffer[..600])),
            first.replace(&buffer, &"A".repeat(300)),
        ];
        for text in &changed {
            assert!(!decode_alike(&mut decoder, text), "{text:.400}");
        }
        assert!(decode_alike(&mut decoder, &chunk(100, 12.52, None)));
    }

    #[test]
    fn beyond_the_remembered_tracks_chunks_still_decode() {
        let mut decoder = Decoder::default();
        let tracks = REMEMBERED_TRACKS as u64 + 4;
        for round in 0..3 {
            for id in 0..tracks {
                decode_alike(&mut decoder, &chunk(id, 1.0 + f64::from(round), None));
            }
        }
        assert_eq!(decoder.remembered.len(), REMEMBERED_TRACKS);
        // The most recent are remembered.
        assert!(decode_alike(&mut decoder, &chunk(tracks - 1, 9.0, None)));
    }
}
