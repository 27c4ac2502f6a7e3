//! Live updates over server-sent events: the events of one recording, or of all.
//!
//! Each subscriber has its own place in a bounded broadcast. One that falls behind gets a
//! `lagged` event saying how many it missed, then carries on from the newest: a slow
//! browser never slows ingestion. Every stream ends when shutdown starts.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::frame::RecordingId;
use crate::http::api::recording_id;
use crate::live::LiveEvent;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct LiveParams {
    recording: Option<String>,
}

pub async fn follow_live(
    State(state): State<AppState>,
    params: Result<Query<LiveParams>, QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(params) = params.map_err(|_| {
        ApiError::BadRequest("the only parameter is recording=<recording id>".into())
    })?;
    let only = params.recording.as_deref().map(recording_id).transpose()?;
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    let receiver = state.live.subscribe();
    // Subscribed before the response starts: whatever is saved from now on is sent.
    let ready = Event::default().event("ready").data("{}");
    let events = futures_util::stream::unfold(receiver, move |mut receiver| {
        let only = only.clone();
        async move {
            let next = next_event(&mut receiver, only.as_ref()).await?;
            Some((to_sse(next), receiver))
        }
    });
    let stream = futures_util::stream::once(async { ready })
        .chain(events)
        .map(Ok)
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// What a subscriber is sent next.
#[derive(Debug, PartialEq)]
enum Next {
    Event(Arc<LiveEvent>),
    /// The subscriber fell behind and this many events were dropped for it.
    Lagged(u64),
}

/// The next event for this subscriber; `None` once the broadcast is gone.
async fn next_event(
    receiver: &mut broadcast::Receiver<Arc<LiveEvent>>,
    only: Option<&RecordingId>,
) -> Option<Next> {
    loop {
        match receiver.recv().await {
            Ok(event) if only.is_none_or(|id| id == event.recording()) => {
                return Some(Next::Event(event));
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => return Some(Next::Lagged(missed)),
            Err(RecvError::Closed) => return None,
        }
    }
}

fn to_sse(next: Next) -> Event {
    match next {
        Next::Event(event) => Event::default()
            .event(event.name())
            .json_data(&*event)
            .unwrap_or_else(|error| {
                tracing::error!(%error, "cannot encode a live event");
                Event::default().comment("unencodable event")
            }),
        Next::Lagged(missed) => Event::default()
            .event("lagged")
            .data(format!("{{\"missed\":{missed}}}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Live;

    fn recording(id: &str) -> LiveEvent {
        LiveEvent::Recording {
            recording: RecordingId::parse(id).unwrap(),
        }
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_skips_to_the_newest() {
        let live = Live::new(2);
        let mut receiver = live.subscribe();
        for id in ["a", "b", "c", "d", "e"] {
            live.publish(recording(id));
        }
        assert_eq!(next_event(&mut receiver, None).await, Some(Next::Lagged(3)));
        assert_eq!(
            next_event(&mut receiver, None).await,
            Some(Next::Event(Arc::new(recording("d"))))
        );
        let only_e = RecordingId::parse("e").unwrap();
        assert_eq!(
            next_event(&mut receiver, Some(&only_e)).await,
            Some(Next::Event(Arc::new(recording("e"))))
        );
        drop(live);
        assert_eq!(next_event(&mut receiver, None).await, None);
    }
}
