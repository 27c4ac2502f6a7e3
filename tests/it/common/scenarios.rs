//! What more than one test module checks the same way, whatever the backend: expected API
//! bodies and whole scenarios run against a server.

use std::future::Future;

use serde_json::{Value, json};

use super::{TestEvent, TestFrame, TestServer, eventually};

/// The `/api/recordings` entry of [`RECORDING`] once it holds `frames` frames of two
/// participants, the first at 0.5 s and the last, Alice's webcam frame, at 12.5 s.
pub fn recording_entry(frames: u64) -> Value {
    json!({
        "id": "rec_9f1c2a",
        "title": "Recording of 21 Nov 2026, 10:00 UTC",
        "title_source": "start_time",
        "bot_id": "bot_1",
        "started_at": "2026-11-21T10:00:00Z",
        "first_frame": {"relative": 0.5, "absolute": "2026-11-21T10:00:00.5Z"},
        "last_frame": {"relative": 12.5, "absolute": "2026-11-21T10:00:12.5Z"},
        "duration": 12.0,
        "frames": frames,
        "participants": 2,
        "people": [
            {"id": 100, "name": "Alice Smith", "is_host": true},
            {"id": 200, "name": null, "is_host": false}
        ],
        "thumbnail": "/api/recordings/rec_9f1c2a/100/webcam/000012500.png",
        "url": "/api/recordings/rec_9f1c2a",
        "page": "/recordings/rec_9f1c2a",
        "zip_url": "/api/recordings/rec_9f1c2a/zip"
    })
}

/// Renames participant 200 ("Bob") by event and by frame, with a late frame that still
/// carries the old name in between, and checks after each step that `participant.json`
/// (read by `participant_json`, from whichever backend) follows the newest description.
pub async fn renames_follow_meeting_time<F, Fut>(server: &TestServer, participant_json: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Value>,
{
    let mut bot = server.connect().await;
    let bob = |t: f64, name: &str| TestFrame::new(t).participant(200, Some(name));
    let saved = |frames: f64| async move {
        eventually(&format!("{frames} frames are saved"), || async {
            server
                .metric("recall_frames_frames_saved_total{kind=\"webcam\"}")
                .await
                == frames
        })
        .await;
    };
    let named = |name: &str| TestEvent::new("update", 0.0).participant(200, Some(name));

    bot.send_frame(&bob(1.0, "Bob")).await;
    saved(1.0).await;
    assert_eq!(participant_json().await, named("Bob").participant_value());

    let update = TestEvent::new("update", 3.0).participant(200, Some("Bob Jones"));
    bot.send_text(update.event()).await;
    eventually("the update is recorded", || async {
        server
            .metric("recall_frames_participant_events_recorded_total")
            .await
            == 1.0
    })
    .await;
    assert_eq!(participant_json().await, update.participant_value());

    // A frame from before the update, saved after it (it waited in its stream's queue, or
    // Recall resent it): its older name does not come back.
    bot.send_frame(&bob(2.5, "Bob")).await;
    saved(2.0).await;
    assert_eq!(participant_json().await, update.participant_value());

    // A later frame renames him on its own: its participant.json is written by the
    // recorder's publisher, in the background, soon after the frame is saved.
    bot.send_frame(&bob(4.0, "Robert")).await;
    saved(3.0).await;
    let robert = named("Robert").participant_value();
    eventually("participant.json says Robert", || async {
        participant_json().await == robert
    })
    .await;
    bot.close().await;
}
