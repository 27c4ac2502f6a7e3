//! The fast path: an event whose `event` comes before its `data`, as Recall sends them, is
//! read in one pass over the message rather than two.

use std::borrow::Cow;

use serde::Deserialize;

use super::FRAME_EVENT;
use super::audio::{AudioEvent, WireAudioEvent};
use super::wire::{WireFrameEvent, WireParticipantEvent};
use crate::frame::ParticipantEventKind;

/// What a single pass over a message made of it.
pub(super) enum OnePass<'a> {
    Frame(Box<WireFrameEvent<'a>>),
    ParticipantEvent(ParticipantEventKind, Box<WireParticipantEvent<'a>>),
    Audio(AudioEvent, Box<WireAudioEvent<'a>>),
    Ignored,
    /// `data` came before `event` (its type was not known when it was read), or is missing
    /// where it is required: the two passes decide.
    DataFirst,
}

impl<'de: 'a, 'a> Deserialize<'de> for OnePass<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "lowercase")]
        enum Key {
            Event,
            Data,
            #[serde(other)]
            Other,
        }

        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);

        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = OnePass<'a>;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an event object")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                use serde::de::{Error as _, IgnoredAny};
                let mut event: Option<Cow<'de, str>> = None;
                let mut frame = None;
                let mut participant_event = None;
                let mut audio = None;
                let mut data_seen = false;
                let mut data_first = false;
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Event if event.is_some() => {
                            return Err(M::Error::duplicate_field("event"));
                        }
                        Key::Event => event = Some(map.next_value::<Cow<'de, str>>()?),
                        Key::Data if data_seen => return Err(M::Error::duplicate_field("data")),
                        Key::Data => {
                            data_seen = true;
                            let kind = event
                                .as_deref()
                                .map(|e| (e, ParticipantEventKind::parse(e), AudioEvent::parse(e)));
                            match kind {
                                Some((FRAME_EVENT, _, _)) => {
                                    frame = Some(map.next_value::<WireFrameEvent<'de>>()?)
                                }
                                Some((_, Some(kind), _)) => {
                                    let wire = map.next_value::<WireParticipantEvent<'de>>()?;
                                    participant_event = Some((kind, wire));
                                }
                                Some((_, _, Some(kind))) => {
                                    let wire = map.next_value::<WireAudioEvent<'de>>()?;
                                    audio = Some((kind, wire));
                                }
                                Some(_) => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                                None => {
                                    data_first = true;
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let Some(name) = event.as_deref() else {
                    return Err(M::Error::missing_field("event"));
                };
                if data_first {
                    return Ok(OnePass::DataFirst);
                }
                if let Some(frame) = frame {
                    return Ok(OnePass::Frame(Box::new(frame)));
                }
                if let Some((kind, wire)) = participant_event {
                    return Ok(OnePass::ParticipantEvent(kind, Box::new(wire)));
                }
                if let Some((kind, wire)) = audio {
                    return Ok(OnePass::Audio(kind, Box::new(wire)));
                }
                match name {
                    FRAME_EVENT => Err(M::Error::missing_field("data")),
                    // A participant or audio event without its data: the two passes refuse it.
                    _ if ParticipantEventKind::parse(name).is_some()
                        || AudioEvent::parse(name).is_some() =>
                    {
                        Ok(OnePass::DataFirst)
                    }
                    _ => Ok(OnePass::Ignored),
                }
            }
        }

        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use base64::Engine as _;
    use jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::event::buffer::BASE64;
    use crate::event::tests::{audio_event, event, participant_event, png};
    use crate::event::{Inbound, Refusal, decode, decode_in_two_passes};

    #[test]
    fn one_pass_and_two_passes_decode_every_message_alike() {
        let good = event(&BASE64.encode(png(8, 8)));
        let data = good["data"].to_string();
        let frame = format!(r#""event":"{FRAME_EVENT}""#);
        let chat = participant_event("participant_events.chat_message");
        let chat_data = chat["data"].to_string();
        let chat_event = r#""event":"participant_events.chat_message""#;
        let audio = audio_event(&BASE64.encode([1u8, 2, 3, 4]));
        let audio_data = audio["data"].to_string();
        let audio_event = r#""event":"audio_separate_raw.data""#;
        let mixed_event = r#""event":"audio_mixed_raw.data""#;
        let mut messages = vec![
            // As Recall sends them: the event first. (Whether a `Value` prints its keys sorted
            // depends on serde_json's `preserve_order`, which a test dependency turns on; so
            // the orders that matter are spelled out.)
            format!(r#"{{{frame},"data":{data}}}"#),
            format!(r#"{{"data":{data},{frame}}}"#),
            format!(r#"{{{frame},"data":{data},"extra":[1,{{"a":null}}]}}"#),
            format!(r#"{{{frame},{frame},"data":{data}}}"#),
            format!(r#"{{{frame},"data":{data},"data":{data}}}"#),
            format!(r#"{{"ev\u0065nt":"video_separate_png\u002edata","data":{data}}}"#),
            format!(r#"["{FRAME_EVENT}",{data}]"#),
            format!(r#"{{{frame},"data":null}}"#),
            format!(r#"{{{frame}}}"#),
            format!(r#"{{{frame},"data":{data}}} trailing"#),
            format!(r#"{{{frame},"data":{data},"x":}}"#),
            format!(r#"{{{frame},"data":{{"data":{{}}}},"x":tru}}"#),
            r#"{"event":"transcript.data","data":{"words":[1,2,{"w":"x"}]}}"#.into(),
            r#"{"data":{"w":1},"event":"transcript.data"}"#.into(),
            r#"{"event":"transcript.data","data":{"w":1},"data":2}"#.into(),
            r#"{"event":"transcript.data"}"#.into(),
            r#"{"event":5,"data":{}}"#.into(),
            r#"{"data":{}}"#.into(),
            r#"{"event":"transcript.data","data":{"unclosed":"#.into(),
            "[]".into(),
            "\"video_separate_png.data\"".into(),
            "".into(),
            // Participant events, both orders, and broken.
            format!(r#"{{{chat_event},"data":{chat_data}}}"#),
            format!(r#"{{"data":{chat_data},{chat_event}}}"#),
            format!(r#"{{{chat_event}}}"#),
            format!(r#"{{{chat_event},"data":null}}"#),
            format!(r#"{{{chat_event},"data":{{"data":{{}}}}}}"#),
            // Audio, separate and mixed, both orders, and broken.
            format!(r#"{{{audio_event},"data":{audio_data}}}"#),
            format!(r#"{{"data":{audio_data},{audio_event}}}"#),
            format!(r#"{{{mixed_event},"data":{audio_data}}}"#),
            format!(r#"{{{audio_event},{audio_event},"data":{audio_data}}}"#),
            format!(r#"{{{audio_event},"data":{audio_data},"data":{audio_data}}}"#),
            format!(r#"{{{audio_event}}}"#),
            format!(r#"{{{audio_event},"data":null}}"#),
            format!(r#"{{{audio_event},"data":{{"data":{{}}}}}}"#),
            format!(r#"{{{audio_event},"data":{audio_data}}} trailing"#),
        ];
        for pointer in [
            "/data/data/timestamp",
            "/data/recording/id",
            "/data/data/type",
        ] {
            let mut bad = good.clone();
            *bad.pointer_mut(pointer).unwrap() = json!(["not", "this"]);
            messages.push(bad.to_string());
        }
        // Recall's messages take the one pass.
        let chat_first = format!(r#"{{{chat_event},"data":{chat_data}}}"#);
        let audio_first = format!(r#"{{{audio_event},"data":{audio_data}}}"#);
        for message in [
            &messages[0],
            &messages[2],
            &messages[5],
            &messages[12],
            &chat_first,
            &audio_first,
        ] {
            assert!(
                matches!(
                    serde_json::from_str::<OnePass>(message),
                    Ok(OnePass::Frame(_)
                        | OnePass::ParticipantEvent(..)
                        | OnePass::Audio(..)
                        | OnePass::Ignored)
                ),
                "{message:.200}"
            );
        }
        let (at, instant) = (Timestamp::now(), Instant::now());
        for message in &messages {
            let one = decode(message, at, instant);
            let two = decode_in_two_passes(message, at, instant);
            let show = |r: &Result<Inbound, Refusal>| match r {
                Ok(inbound) => format!("{inbound:?}"),
                Err(refusal) => format!("{:?}: {refusal}", refusal.reason()),
            };
            assert_eq!(show(&one), show(&two), "{message:.200}");
        }
    }
}
