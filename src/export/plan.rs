//! The timeline of an export, worked out before ffmpeg runs: which frames are in the range,
//! when each is shown in the video (its `relative_ms`, less the range's start and any
//! shortened pauses before it), and which spans of the meeting's audio the video keeps.

/// A frame as the video shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shown {
    /// The frame's name in its stream: meeting time in ms.
    pub relative_ms: u64,
    /// When the video shows it, in ms from the video's start.
    pub at_ms: u64,
}

/// Where an export's frames fall, and what of the meeting's time it keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    pub shown: Vec<Shown>,
    /// Spans of meeting time (ms, `[start, end)`) the video plays, in order: the range,
    /// less the pauses cut short. The audio is these spans back to back.
    pub kept: Vec<(u64, u64)>,
}

impl Timeline {
    /// The timeline of `frames` (their `relative_ms`, in time order) from `from_ms` to
    /// `to_ms`: frames in `[from_ms, to_ms]`; with `max_pause_ms`, every stretch between two
    /// frames longer than it shown as just `max_pause_ms`.
    pub fn plan(frames: &[u64], from_ms: u64, to_ms: u64, max_pause_ms: Option<u64>) -> Timeline {
        let inside: Vec<u64> = frames
            .iter()
            .copied()
            .filter(|&ms| ms >= from_ms && ms <= to_ms)
            .collect();
        let mut kept = Vec::new();
        let mut start = from_ms;
        if let Some(max) = max_pause_ms {
            for pair in inside.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                if b - a > max {
                    kept.push((start, a + max));
                    start = b;
                }
            }
        }
        kept.push((start, to_ms.max(start)));
        let mut shown = Vec::with_capacity(inside.len());
        let (mut span, mut before) = (0, 0);
        for ms in inside {
            while ms >= kept[span].1 && span + 1 < kept.len() {
                before += kept[span].1 - kept[span].0;
                span += 1;
            }
            shown.push(Shown {
                relative_ms: ms,
                at_ms: before + (ms - kept[span].0),
            });
        }
        Timeline { shown, kept }
    }

    #[cfg(test)]
    /// Milliseconds of meeting time the video plays.
    pub fn length_ms(&self) -> u64 {
        self.kept.iter().map(|(a, b)| b - a).sum()
    }

    #[cfg(test)]
    /// The meeting time shown at `at_ms` into the video.
    pub fn meeting_ms(&self, at_ms: u64) -> u64 {
        let mut before = 0;
        for &(a, b) in &self.kept {
            if at_ms < before + (b - a) {
                return a + (at_ms - before);
            }
            before += b - a;
        }
        self.kept.last().map_or(0, |&(_, b)| b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(timeline: &Timeline) -> Vec<u64> {
        timeline.shown.iter().map(|s| s.at_ms).collect()
    }

    #[test]
    fn frames_keep_their_meeting_time_less_the_ranges_start() {
        let plan = Timeline::plan(&[500, 1000, 1733, 4734], 0, 10_000, None);
        assert_eq!(at(&plan), [500, 1000, 1733, 4734]);
        assert_eq!(plan.kept, [(0, 10_000)]);
        let plan = Timeline::plan(&[500, 1000, 1733, 4734], 1000, 4000, None);
        assert_eq!(at(&plan), [0, 733]);
        assert_eq!(plan.length_ms(), 3000);
    }

    #[test]
    fn long_pauses_are_cut_to_the_longest_kept() {
        // 10 s of nothing between 2 s and 12 s, kept as 3 s.
        let plan = Timeline::plan(&[1000, 2000, 12_000, 12_500], 0, 13_000, Some(3000));
        assert_eq!(at(&plan), [1000, 2000, 5000, 5500]);
        assert_eq!(plan.kept, [(0, 5000), (12_000, 13_000)]);
        assert_eq!(plan.length_ms(), 6000);
        assert_eq!(plan.meeting_ms(5000), 12_000);
        assert_eq!(plan.meeting_ms(4999), 4999);
        // Short pauses stay as they are.
        let plan = Timeline::plan(&[1000, 2000, 3000], 0, 3000, Some(3000));
        assert_eq!(at(&plan), [1000, 2000, 3000]);
    }
}
