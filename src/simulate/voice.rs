//! The simulated participants' voices: a voice-like signal per participant (a pitch of its
//! own with harmonics, a little vibrato, syllables about four a second), heard only during
//! that participant's speech turns, so that a person listening to the saved tracks hears who
//! is talking. Every sample is a function of its place on the timeline: a chunk sent again
//! after a reconnect is the same chunk.

use crate::audio::SAMPLE_RATE;

/// How long each participant speaks before the next one does, in turn.
pub const TURN_MS: u64 = 4_000;

/// Whether `member` of `members` is speaking at `ms` into the meeting.
pub fn is_speaking(member: usize, members: usize, ms: u64) -> bool {
    members > 0 && (ms / TURN_MS) as usize % members == member
}

/// `samples` samples of `member`'s voice from timeline sample `start` on.
pub fn voice(member: usize, start: u64, samples: usize) -> Vec<i16> {
    use std::f64::consts::TAU;
    let rate = f64::from(SAMPLE_RATE);
    // Pitches a few semitones apart: 110 Hz, 131 Hz, 156 Hz... wrapping after eight.
    let pitch = 110.0 * 2f64.powf((member % 8) as f64 * 3.0 / 12.0);
    (0..samples as u64)
        .map(|i| {
            let t = (start + i) as f64 / rate;
            let vibrato = 1.0 + 0.02 * (TAU * 5.0 * t).sin();
            let phase = TAU * pitch * vibrato * t;
            let tone: f64 = (1..=6)
                .map(|k| (phase * f64::from(k)).sin() / f64::from(k))
                .sum();
            // Syllables: a raised cosine at about 4 Hz, varying a little per participant.
            let syllables = 0.5 - 0.5 * (TAU * (3.5 + 0.3 * (member % 4) as f64) * t).cos();
            (tone * syllables * 6_000.0).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_differ_repeat_exactly_and_take_turns() {
        assert_eq!(voice(0, 1000, 320), voice(0, 1000, 320));
        assert_eq!(voice(0, 1000, 320)[160..], voice(0, 1160, 160)[..]);
        assert_ne!(voice(0, 1000, 320), voice(1, 1000, 320));
        assert!(
            voice(1, 4000, 1600)
                .iter()
                .any(|&s| s.unsigned_abs() > 1000)
        );
        assert!(is_speaking(0, 2, 0) && !is_speaking(1, 2, 0));
        assert!(is_speaking(1, 2, TURN_MS) && is_speaking(0, 2, 2 * TURN_MS));
    }
}
