//! How a bucket request ended when it did not succeed as asked: a definite answer from the
//! store (not found, already exists, precondition failed), or a failure of some kind, read
//! from object_store's errors.

use std::time::Duration;

/// How a bucket request failed, for `bucket_requests_failed{kind}` and the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// No connection could be made, or it broke before an answer.
    Unreachable,
    Timeout,
    /// A 5xx answer.
    ServerError,
    /// 429 or 503 Slow Down: the store asks for fewer requests.
    Throttled,
    /// 401 or 403: the credentials are wrong, or lack a permission.
    Denied,
    /// Any other 4xx: the store will not do what was asked.
    Rejected,
    Other,
}

impl FailureKind {
    pub const ALL: [FailureKind; 7] = [
        FailureKind::Unreachable,
        FailureKind::Timeout,
        FailureKind::ServerError,
        FailureKind::Throttled,
        FailureKind::Denied,
        FailureKind::Rejected,
        FailureKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Unreachable => "unreachable",
            FailureKind::Timeout => "timeout",
            FailureKind::ServerError => "server_error",
            FailureKind::Throttled => "throttled",
            FailureKind::Denied => "denied",
            FailureKind::Rejected => "rejected",
            FailureKind::Other => "other",
        }
    }

    /// Whether the same request may succeed later.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            FailureKind::Unreachable
                | FailureKind::Timeout
                | FailureKind::ServerError
                | FailureKind::Throttled
        )
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A definite answer from the store to a request that did not succeed as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    NotFound,
    /// The key exists (a create), or is not at the version given (an update).
    Conflict,
}

#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error(transparent)]
    Request(Box<RequestFailed>),
    #[error("{key} is not what this server writes there: {why}")]
    Unexpected { key: String, why: String },
}

/// A request that failed for good: not transient, or retried for `BUCKET_RETRY_TIMEOUT`.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {key} ({kind}, {retries} retries in {elapsed:?}): {source}")]
pub struct RequestFailed {
    pub action: &'static str,
    pub key: String,
    pub kind: FailureKind,
    pub retries: u32,
    pub elapsed: Duration,
    #[source]
    pub source: object_store::Error,
}

impl BucketError {
    pub fn kind(&self) -> &'static str {
        match self {
            BucketError::Request(failed) => failed.kind.as_str(),
            BucketError::Unexpected { .. } => "unexpected_object",
        }
    }
}

/// An object_store error as an answer (the request was understood and answered) or a
/// failure of some kind.
pub fn classify(error: &object_store::Error) -> Result<Answer, FailureKind> {
    use object_store::Error as E;
    match error {
        E::NotFound { .. } => return Ok(Answer::NotFound),
        E::AlreadyExists { .. } | E::Precondition { .. } | E::NotModified { .. } => {
            return Ok(Answer::Conflict);
        }
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            return Err(FailureKind::Denied);
        }
        _ => {}
    }
    // Other failures carry the HTTP status or transport error in their sources.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind as K;
            return Err(match http.kind() {
                K::Connect | K::Request | K::Interrupted => FailureKind::Unreachable,
                K::Timeout => FailureKind::Timeout,
                _ => FailureKind::Other,
            });
        }
        if let Some(status) = http_status(&current.to_string()) {
            return match status {
                404 => Ok(Answer::NotFound),
                409 | 412 => Ok(Answer::Conflict),
                401 | 403 => Err(FailureKind::Denied),
                408 => Err(FailureKind::Timeout),
                429 | 503 => Err(FailureKind::Throttled),
                500.. => Err(FailureKind::ServerError),
                _ => Err(FailureKind::Rejected),
            };
        }
        source = current.source();
    }
    Err(FailureKind::Other)
}

/// The HTTP status in an object_store request error's message ("... non-2xx status code:
/// 503 Service Unavailable: ..."). object_store 0.14 keeps the error type that holds the
/// status private (and maps only some statuses to variants), so its message is where the
/// status can be read; `answers_are_not_failures` pins the format.
fn http_status(message: &str) -> Option<u16> {
    let (_, after) = message.split_once("status code: ")?;
    let digits = after.get(..3)?;
    digits
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| digits.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_not_failures() {
        let source = || Box::new(std::io::Error::other("x")) as _;
        let path = || "k".to_owned();
        assert_eq!(
            classify(&object_store::Error::NotFound {
                path: path(),
                source: source()
            }),
            Ok(Answer::NotFound)
        );
        assert_eq!(
            classify(&object_store::Error::AlreadyExists {
                path: path(),
                source: source()
            }),
            Ok(Answer::Conflict)
        );
        assert_eq!(
            classify(&object_store::Error::PermissionDenied {
                path: path(),
                source: source()
            }),
            Err(FailureKind::Denied)
        );
        assert_eq!(
            classify(&object_store::Error::Generic {
                store: "S3",
                source: source()
            }),
            Err(FailureKind::Other)
        );
        let status = |message: &str| {
            classify(&object_store::Error::Generic {
                store: "S3",
                source: Box::new(std::io::Error::other(message.to_owned())),
            })
        };
        let message = |code: &str| {
            format!(
                "Error performing PUT http://127.0.0.1:9/b/k in 2ms - Server returned non-2xx \
                 status code: {code}: <Error><Code>X</Code></Error>"
            )
        };
        assert_eq!(
            status(&message("503 Service Unavailable")),
            Err(FailureKind::Throttled)
        );
        assert_eq!(
            status(&message("500 Internal Server Error")),
            Err(FailureKind::ServerError)
        );
        assert_eq!(status(&message("404 Not Found")), Ok(Answer::NotFound));
        assert_eq!(
            status(&message("412 Precondition Failed")),
            Ok(Answer::Conflict)
        );
        assert_eq!(status(&message("403 Forbidden")), Err(FailureKind::Denied));
        assert_eq!(
            status(&message("400 Bad Request")),
            Err(FailureKind::Rejected)
        );
        assert!(!FailureKind::Denied.is_transient());
        assert!(FailureKind::Unreachable.is_transient());
    }
}
