//! The Prometheus text parser of both the tests and the load bench (which includes this file
//! by path): keep it free of other test code and of dependencies.

/// The value of one sample in Prometheus text `text`: `sample` is the name with its labels as
/// the server writes them, e.g. `recall_frames_messages_refused_total{reason="invalid_json"}`;
/// 0 when absent.
pub fn metric_value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(sample)?
                .strip_prefix(' ')?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}
