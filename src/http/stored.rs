//! Answering a request for one stored file (an export, a Recall media part, a frame) the
//! same way whatever the store: byte ranges, so that a browser can seek in a video, and
//! the file sent a part at a time rather than read whole into memory.
//!
//! A folder's file is served by tower-http's `ServeFile` (ranges, ETag, Last-Modified). A
//! bucket's object is streamed from the bucket, with its Range header parsed as `ServeFile`
//! parses it (by the `http-range-header` crate): one satisfiable range is answered 206, an
//! unsatisfiable or malformed one 416, several ranges with the whole object (no multipart
//! answers, from either store).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use futures_util::TryStreamExt as _;
use headers::{ETag, HeaderMapExt as _, IfNoneMatch};
use std::ops::RangeInclusive;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::services::ServeFile;

use crate::store::{Key, Stat, Store, StoreError};

/// The answer to `request` (a GET or HEAD) for the object at `key`, typed `content_type`;
/// `None` when there is no object there. A body still being sent when `shutdown` starts is
/// cut off, so that shutdown does not wait for a long download.
pub async fn serve_stored(
    store: &dyn Store,
    key: &Key,
    content_type: &'static str,
    request: Request,
    shutdown: &CancellationToken,
) -> Result<Option<Response>, StoreError> {
    if let Some(path) = store.local_file(key).await? {
        let Ok(response) = ServeFile::new(path)
            .ignore_multi_range_requests(true)
            .oneshot(request)
            .await;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None); // removed since it was found
        }
        if !response.status().is_success() {
            return Ok(Some(response.map(Body::new)));
        }
        let mut response = response.map(|body| {
            let body = Body::new(body)
                .into_data_stream()
                .map_err(std::io::Error::other);
            Body::from_stream(super::abort_on_shutdown(body, shutdown.clone()))
        });
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        return Ok(Some(response));
    }

    // The Range asked for, as `ServeFile` reads it: unreadable text is no Range, a malformed
    // one stays (an error, answered 416), and several ranges count as none (the whole).
    let wanted = request
        .headers()
        .get(header::RANGE)
        .and_then(|value| value.to_str().ok())
        .map(http_range_header::parse_range_header)
        .filter(|parsed| {
            parsed
                .as_ref()
                .map_or(true, |ranges| ranges.ranges.len() == 1)
        });
    let head_only = request.method() == Method::HEAD;

    // The whole object takes one request, whose answer gives its size. A range is first
    // checked against the size, and a HEAD needs nothing more.
    let whole = if wanted.is_none() && !head_only {
        let Some(streamed) = store.get_stream(key, None).await? else {
            return Ok(None);
        };
        Some(streamed)
    } else {
        None
    };
    let stat = match &whole {
        Some(streamed) => streamed.stat.clone(),
        None => match store.stat(key).await? {
            Some(stat) => stat,
            None => return Ok(None),
        },
    };
    if let (Some(etag), Some(if_none_match)) =
        (etag(&stat), request.headers().typed_get::<IfNoneMatch>())
        && !if_none_match.precondition_passes(&etag)
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        response.headers_mut().typed_insert(etag);
        return Ok(Some(response));
    }
    let range = match wanted.map(|parsed| parsed.and_then(|ranges| ranges.validate(stat.size))) {
        None => None,
        // An empty object has no byte to range over: it is sent whole, as empty.
        Some(Ok(_)) if stat.size == 0 => None,
        Some(Ok(mut ranges)) => ranges.pop(),
        Some(Err(_)) => return Ok(Some(unsatisfiable(stat.size))),
    };
    let body = match whole {
        Some(streamed) => Some(streamed.body),
        None if head_only => None,
        None => {
            let part = range.as_ref().map(|range| *range.start()..*range.end() + 1);
            match store.get_stream(key, part).await? {
                Some(streamed) => Some(streamed.body),
                None => return Ok(None),
            }
        }
    };
    let body = body.map_or_else(Body::empty, |body| {
        let key = key.clone();
        let body = body
            .inspect_err(move |error| {
                tracing::warn!(%key, %error, "a download broke off part-way");
            })
            .map_err(std::io::Error::other);
        Body::from_stream(super::abort_on_shutdown(body, shutdown.clone()))
    });
    Ok(Some(answer(&stat, content_type, range, body)))
}

/// The object's entity tag, when the store gave one in the form HTTP wants (a bucket's).
fn etag(stat: &Stat) -> Option<ETag> {
    stat.version.e_tag.as_deref()?.parse().ok()
}

/// 200 with the whole object, or 206 with `range` of it.
fn answer(
    stat: &Stat,
    content_type: &'static str,
    range: Option<RangeInclusive<u64>>,
    body: Body,
) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(etag) = etag(stat) {
        headers.typed_insert(etag);
    }
    match range {
        Some(range) => {
            let (start, end) = (*range.start(), *range.end());
            let content_range = format!("bytes {start}-{end}/{}", stat.size);
            if let Ok(value) = HeaderValue::from_str(&content_range) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start + 1));
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        None => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(stat.size));
        }
    }
    response
}

/// 416, saying how large the object is.
fn unsatisfiable(size: u64) -> Response {
    let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
    let headers = response.headers_mut();
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
        headers.insert(header::CONTENT_RANGE, value);
    }
    response
}
