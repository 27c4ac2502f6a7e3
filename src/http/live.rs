//! Live updates over server-sent events: the events of one recording, or of all.
//!
//! Each subscriber has its own place in a bounded broadcast. One that falls behind gets a
//! `lagged` event saying how many it missed, then carries on from the newest: a slow
//! browser never slows ingestion. Every stream ends when shutdown starts.

use std::convert::Infallible;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt as _};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use crate::error::ApiError;
use crate::frame::RecordingId;
use crate::http::api::recording_id;
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
            let event = next_event(&mut receiver, only.as_ref()).await?;
            Some((event, receiver))
        }
    });
    let stream = futures_util::stream::once(async { ready })
        .chain(events)
        .map(Ok)
        .take_until(state.shutdown.clone().cancelled_owned());
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The next event for this subscriber; `None` once the broadcast is gone.
async fn next_event(
    receiver: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<crate::live::LiveEvent>>,
    only: Option<&RecordingId>,
) -> Option<Event> {
    loop {
        match receiver.recv().await {
            Ok(event) if only.is_none_or(|id| id == event.recording()) => {
                match Event::default().event(event.name()).json_data(&*event) {
                    Ok(sse) => return Some(sse),
                    Err(error) => tracing::error!(%error, "cannot encode a live event"),
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(missed)) => {
                return Some(
                    Event::default()
                        .event("lagged")
                        .data(format!("{{\"missed\":{missed}}}")),
                );
            }
            Err(RecvError::Closed) => return None,
        }
    }
}
