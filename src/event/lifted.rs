//! The fastest path, for a frame or an audio chunk as Recall sends it: its base64 `buffer`,
//! most of the message, is found with a SIMD search and lifted out, so the JSON parser reads
//! only the rest (about a kilobyte) and the buffer's bytes are read once more, by the base64
//! decoder.
//!
//! Why this decodes exactly what the reference does: the message is the rest with the
//! buffer's characters put back between the quotes of one string. If the rest parses as a
//! frame or a chunk whose `buffer` is that very string (checked by address), and the
//! characters decode as base64 (so none is a quote, a backslash or a control character), then
//! the whole message parses to the same frame or chunk with that buffer. Anything else — no
//! such string, a different string in the `buffer` field, any refusal — goes to the other
//! paths, which decide.

use std::borrow::Cow;
use std::time::Instant;

use jiff::Timestamp;

use super::Inbound;
use super::audio::decode_audio;
use super::one_pass::OnePass;
use super::wire::decode_frame;

/// Buffers shorter than this stay in place: lifting costs a copy of the rest of the message
/// (about a kilobyte), which a short scan does not repay. A 20 ms audio chunk's buffer is
/// 856 characters; a frame's, hundreds of thousands.
const MIN_LIFTED: usize = 256;

/// A message with its buffer's characters taken out: `head`, `buffer`, `tail`.
pub(super) struct Lifted<'t> {
    /// The message up to the buffer's opening quote, included.
    pub(super) head: &'t str,
    pub(super) buffer: &'t str,
    /// The message from the buffer's closing quote on.
    pub(super) tail: &'t str,
}

impl<'t> Lifted<'t> {
    /// Finds the first `"buffer"` key with a string value of at least [`MIN_LIFTED`]
    /// characters, and takes them out.
    pub(super) fn new(text: &'t str) -> Option<Self> {
        let bytes = text.as_bytes();
        let key = memchr::memmem::find(bytes, br#""buffer""#)? + br#""buffer""#.len();
        let colon = key + skip_whitespace(&bytes[key..]);
        let quote = colon + 1 + skip_whitespace(bytes.get(colon + 1..)?);
        if bytes.get(colon) != Some(&b':') || bytes.get(quote) != Some(&b'"') {
            return None;
        }
        let at = quote + 1;
        // The first quote ends the string unless a backslash escapes it; a backslash is no
        // base64 character, so such a buffer is refused below and left to the other paths.
        let len = memchr::memchr(b'"', &bytes[at..])?;
        if len < MIN_LIFTED {
            return None;
        }
        // Both ends are at ASCII quotes, so they are character boundaries.
        Some(Lifted {
            head: &text[..at],
            buffer: &text[at..at + len],
            tail: &text[at + len..],
        })
    }

    /// The message with `"buffer":""` where the buffer was.
    pub(super) fn rest(&self) -> String {
        [self.head, self.tail].concat()
    }

    /// The frame or audio chunk in the message, if it is one this path can decode; `None`
    /// leaves the message (good or bad) to the other paths.
    pub(super) fn decode(&self, received_at: Timestamp, received: Instant) -> Option<Inbound> {
        let rest = self.rest();
        match serde_json::from_str::<OnePass>(&rest).ok()? {
            OnePass::Frame(mut event) => {
                self.put_back(&rest, event.buffer_mut())?;
                let frame = decode_frame(*event, received_at, received).ok()?;
                Some(Inbound::Frame(Box::new(frame)))
            }
            OnePass::Audio(kind, mut event) => {
                self.put_back(&rest, event.buffer_mut())?;
                let chunk = decode_audio(kind, *event, received_at, received).ok()?;
                Some(Inbound::Audio(Box::new(chunk)))
            }
            _ => None,
        }
    }

    /// Puts the buffer's characters back into `value`, parsed from `rest`, when it is the
    /// string they were taken out of: an empty string borrowed from exactly there (an
    /// unescaped copy would be elsewhere). `None` when it is another.
    fn put_back<'r>(&self, rest: &str, value: &mut Cow<'r, str>) -> Option<()>
    where
        't: 'r,
    {
        let emptied =
            value.is_empty() && std::ptr::eq(value.as_ptr(), rest[self.head.len()..].as_ptr());
        emptied.then(|| *value = Cow::Borrowed(self.buffer))
    }
}

fn skip_whitespace(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::event::buffer::BASE64;
    use crate::event::tests::{audio_event, event, png};
    use crate::event::{
        FRAME_EVENT, Inbound, Refusal, SEPARATE_AUDIO_EVENT, decode, decode_in_two_passes,
    };

    /// A PNG whose base64 is well over [`MIN_LIFTED`]: noise does not compress.
    fn big_png() -> Vec<u8> {
        use rand::{RngExt as _, SeedableRng as _};
        let mut rng = rand::rngs::Xoshiro256PlusPlus::seed_from_u64(18);
        let mut out = Vec::new();
        image::RgbImage::from_fn(48, 48, |_, _| image::Rgb(rng.random()))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    /// 20 ms of audio, as Recall sends a chunk: 640 bytes.
    fn pcm() -> Vec<u8> {
        (0..320i16).flat_map(|s| (s * 37).to_le_bytes()).collect()
    }

    /// A message of one kind around a given buffer.
    type Make = fn(&str) -> serde_json::Value;

    /// The two kinds of message the lifted path reads: the event type, the bytes of a
    /// buffer long enough to be lifted, and the message around a given buffer.
    fn kinds() -> [(&'static str, Vec<u8>, Make); 2] {
        [
            (FRAME_EVENT, big_png(), event),
            (SEPARATE_AUDIO_EVENT, pcm(), audio_event),
        ]
    }

    /// A message with its `event` first, as Recall sends them (a `Value` may print its keys
    /// sorted).
    fn message(event: &str, data: &str) -> String {
        format!(r#"{{"event":"{event}","data":{data}}}"#)
    }

    fn show(result: &Result<Inbound, Refusal>) -> String {
        match result {
            Ok(inbound) => format!("{inbound:?}"),
            Err(refusal) => format!("{:?}: {refusal}", refusal.reason()),
        }
    }

    #[test]
    fn recall_frames_and_chunks_take_the_lifted_path_whatever_the_spacing() {
        for (kind, bytes, make) in kinds() {
            let encoded = BASE64.encode(&bytes);
            assert!(encoded.len() > MIN_LIFTED);
            let data = make(&encoded)["data"].clone();
            let compact = message(kind, &data.to_string());
            let pretty = serde_json::to_string_pretty(&data).unwrap();
            let spaced = format!("{{\n  \"event\" : \"{kind}\",\n  \"data\" :\t{pretty}\n}}");
            let (at, instant) = (Timestamp::now(), Instant::now());
            for text in [&compact, &spaced] {
                let inbound = Lifted::new(text)
                    .and_then(|l| l.decode(at, instant))
                    .expect("the lifted path");
                match &inbound {
                    Inbound::Frame(frame) => assert_eq!(frame.png.as_ref(), bytes.as_slice()),
                    Inbound::Audio(chunk) => assert_eq!(chunk.pcm.as_ref(), bytes.as_slice()),
                    other => panic!("{other:?}"),
                }
                let lifted = show(&Ok(inbound));
                let reference = show(&decode_in_two_passes(text, at, instant));
                assert!(lifted == reference, "{lifted:.300}\n{reference:.300}");
            }
        }
    }

    #[test]
    fn what_the_lifted_path_leaves_is_decoded_as_before() {
        for (kind, bytes, make) in kinds() {
            let encoded = BASE64.encode(&bytes);
            let data = make(&encoded)["data"].to_string();
            let compact = message(kind, &data);
            // Another string called buffer comes first: it is not the frame's or chunk's.
            let decoy = message(
                kind,
                &format!(
                    r#"{{"extra":{{"buffer":"{}"}},{}"#,
                    &encoded[..MIN_LIFTED + 100],
                    &data[1..]
                ),
            );
            let short = match kind {
                FRAME_EVENT => BASE64.encode(png(8, 8)),
                _ => BASE64.encode([1u8, 2, 3, 4]),
            };
            let mut messages = vec![
                // Not lifted: short, escaped, data before event, another kind of event.
                message(kind, &make(&short)["data"].to_string()),
                compact.replacen('/', "\\/", 1),
                format!(r#"{{"data":{data},"event":"{kind}"}}"#),
                message("participant_events.join", &data),
                message("transcript.data", &data),
                message(
                    if kind == FRAME_EVENT {
                        SEPARATE_AUDIO_EVENT
                    } else {
                        FRAME_EVENT
                    },
                    &data,
                ),
                decoy.clone(),
            ];
            let start = compact.find(&encoded).unwrap();
            // Characters that no base64 has, inside the buffer or at its ends.
            for bad in ["\u{1}", "\n", " ", "\u{e9}", "\"", "\\", "-", "=", "==A"] {
                for offset in [0, 1, encoded.len() / 2, encoded.len() - 1, encoded.len()] {
                    let mut text = compact.clone();
                    text.insert_str(start + offset, bad);
                    messages.push(text);
                }
            }
            // Good base64 that is not a PNG, or an odd number of bytes of audio; a refusal
            // found before the buffer is decoded, with and without a control character in
            // the buffer.
            let wrong = match kind {
                FRAME_EVENT => vec![7u8; 6000],
                _ => vec![7u8; 641],
            };
            messages.push(compact.replace(&encoded, &BASE64.encode(wrong)));
            let bad_id = compact.replace("rec_1", "../x");
            messages.push(bad_id.clone());
            messages.push(bad_id.replace(&encoded, &format!("{}\u{1}", &encoded[..600])));
            let (at, instant) = (Timestamp::now(), Instant::now());
            for text in &messages {
                let decoded = show(&decode(text, at, instant));
                let reference = show(&decode_in_two_passes(text, at, instant));
                assert!(
                    decoded == reference,
                    "{text:.300}\n{decoded:.300}\n{reference:.300}"
                );
            }
            assert!(
                Lifted::new(&compact)
                    .and_then(|l| l.decode(at, instant))
                    .is_some()
            );
            assert!(
                Lifted::new(&decoy)
                    .and_then(|l| l.decode(at, instant))
                    .is_none()
            );
        }
    }
}
