//! What the simulator shows while it runs: a progress bar (frames, MB, frames/s, reconnects,
//! refusals) on a terminal, and one line for each thing worth knowing (a reconnect, the first
//! refusal of each reason).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use super::bot::Totals;

/// Where the simulator reports as it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Nothing: for tests and benchmarks, which read the report.
    Quiet,
    /// A progress bar on stderr when it is a terminal, and notes on stderr.
    Terminal,
}

/// The running counts, shared by every bot.
#[derive(Debug, Default)]
pub struct Counters {
    pub frames: AtomicU64,
    pub png_bytes: AtomicU64,
    pub message_bytes: AtomicU64,
    pub events: AtomicU64,
    pub resent: AtomicU64,
    pub reconnects: AtomicU64,
    pub refused: AtomicU64,
}

impl Counters {
    pub fn totals(&self) -> Totals {
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        Totals {
            png_bytes: load(&self.png_bytes),
            message_bytes: load(&self.message_bytes),
            events: load(&self.events),
            resent: load(&self.resent),
            reconnects: load(&self.reconnects),
        }
    }
}

#[derive(Clone)]
pub struct Progress {
    counters: Arc<Counters>,
    bar: Option<ProgressBar>,
    /// Ends the task that refreshes the bar.
    stop: CancellationToken,
    refresher: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Progress {
    /// Starts showing progress; `total` is the number of frames when it is known.
    pub fn start(output: Output, total: Option<u64>) -> Self {
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let mut refresher = None;
        let bar = match output {
            Output::Quiet => None,
            Output::Terminal => {
                let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
                let template = if total.is_some() {
                    "{spinner} {elapsed_precise} [{bar:24}] {pos}/{len} frames  {msg}"
                } else {
                    "{spinner} {elapsed_precise} {pos} frames  {msg}"
                };
                bar.set_style(
                    ProgressStyle::with_template(template)
                        .expect("the template is valid")
                        .progress_chars("=> "),
                );
                // Refreshed by a task rather than per frame: cheap at thousands of frames/s.
                refresher = Some(tokio::spawn(refresh(
                    bar.clone(),
                    counters.clone(),
                    stop.clone(),
                )));
                Some(bar)
            }
        };
        Progress {
            counters,
            bar,
            stop,
            refresher: Arc::new(Mutex::new(refresher)),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A line above the bar (or on stderr when there is no terminal).
    pub fn note(&self, line: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            Some(_) => eprintln!("{line}"),
            None => {}
        }
    }

    pub async fn finish(&self) {
        self.stop.cancel();
        let refresher = self.refresher.lock().take();
        if let Some(refresher) = refresher {
            let _ = refresher.await;
        }
        if let Some(bar) = &self.bar {
            bar.set_position(self.counters.frames.load(Ordering::Relaxed));
            bar.abandon_with_message(status(&self.counters, None));
        }
    }
}

async fn refresh(bar: ProgressBar, counters: Arc<Counters>, stop: CancellationToken) {
    const EVERY: Duration = Duration::from_millis(250);
    let mut ticker = tokio::time::interval(EVERY);
    // Frames/s over the last few refreshes, so that the figure follows changes in pace.
    let mut window = std::collections::VecDeque::from([(tokio::time::Instant::now(), 0u64)]);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        let frames = counters.frames.load(Ordering::Relaxed);
        let now = tokio::time::Instant::now();
        window.push_back((now, frames));
        if window.len() > 8 {
            window.pop_front();
        }
        let (then, before) = window[0];
        let rate = (frames - before) as f64 / (now - then).as_secs_f64().max(1e-3);
        bar.set_position(frames);
        bar.set_message(status(&counters, Some(rate)));
    }
}

/// MB sent, the recent rate, reconnects and refusals.
fn status(counters: &Counters, frames_per_second: Option<f64>) -> String {
    let mb = counters.png_bytes.load(Ordering::Relaxed) as f64 / 1e6;
    let rate = frames_per_second.map_or(String::new(), |rate| format!("{rate:.1} frames/s  "));
    format!(
        "{mb:.1} MB  {rate}{} reconnects  {} refused",
        counters.reconnects.load(Ordering::Relaxed),
        counters.refused.load(Ordering::Relaxed)
    )
}
