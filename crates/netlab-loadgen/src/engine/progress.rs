//! The live progress line on stderr while a run goes: connections up, then messages and
//! messages per second. indicatif draws it, and only on a terminal.

use std::time::{Duration, Instant};

/// The live progress line: indicatif on a terminal, nothing otherwise.
#[derive(Clone)]
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new(wanted: bool, connections: u64) -> Progress {
        use std::io::IsTerminal;
        let bar = (wanted && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(connections);
            bar.set_style(
                indicatif::ProgressStyle::with_template("  {msg} [{bar:30}] {pos}/{len}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar.set_message("connecting");
            bar
        });
        Progress { bar }
    }

    pub(crate) fn connecting(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(n);
        }
    }

    pub(crate) fn load_phase(&self, total: Duration) {
        if let Some(bar) = &self.bar {
            bar.set_length(total.as_millis() as u64);
            bar.set_position(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("  {msg} [{bar:30}] {elapsed}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
        }
    }

    pub(crate) fn load(&self, elapsed: Duration, completed: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(elapsed.as_millis() as u64);
            let rate = completed as f64 / elapsed.as_secs_f64().max(1e-3);
            bar.set_message(format!(
                "{} msgs, {} msg/s",
                crate::units::human(completed as f64),
                crate::units::human(rate)
            ));
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Sleeps until `deadline`, or until `stop` says so, refreshing the progress line every
/// 100 ms.
pub(crate) fn sleep_until(
    deadline: Instant,
    progress: &Progress,
    start: Instant,
    completed: &dyn Fn() -> u64,
    stop: &dyn Fn() -> bool,
) {
    loop {
        let now = Instant::now();
        if now >= deadline || stop() {
            return;
        }
        progress.load(now - start, completed());
        std::thread::sleep((deadline - now).min(Duration::from_millis(100)));
    }
}
