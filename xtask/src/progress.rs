//! Progress bars with rates on stderr; indicatif hides them when stderr is not a terminal.
//! Jobs that run side by side (model trainings) each get a lane: a bar of their own under
//! the others, and notes that say which job they come from.

use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

#[derive(Debug, Default)]
pub struct Bars {
    /// Every bar of this run, the lanes' included, so notes print above all of them.
    multi: MultiProgress,
    bar: Mutex<Option<ProgressBar>>,
    /// Before every note and step of a lane: its job's name.
    prefix: String,
}

impl segue_core::Progress for Bars {
    fn start(&self, step: &str, total: Option<u64>, unit: &str) {
        let bar = match total {
            Some(t) => ProgressBar::new(t),
            None => ProgressBar::new_spinner(),
        };
        let template = match (total.is_some(), unit) {
            (true, "bytes") => {
                "{msg:28} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            }
            (true, _) => "{msg:28} [{bar:30}] {human_pos}/{human_len} {per_sec} eta {eta}",
            (false, _) => "{msg:28} {spinner} {human_pos} {per_sec}",
        };
        bar.set_style(
            ProgressStyle::with_template(template).expect("valid template").progress_chars("=> "),
        );
        bar.set_message(format!("{}{step}", self.prefix));
        let bar = self.multi.add(bar);
        if let Some(old) = self.bar.lock().expect("progress lock").replace(bar) {
            old.finish_and_clear();
        }
    }

    fn advance(&self, n: u64) {
        if let Some(b) = &*self.bar.lock().expect("progress lock") {
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
            self.multi.remove(&b);
        }
    }

    fn note(&self, line: &str) {
        // A lane's notes name their job first, so they drop the indent that lines a stage's
        // notes up under its name.
        let line = if self.prefix.is_empty() { line } else { line.trim_start() };
        self.multi.suspend(|| eprintln!("{}{line}", self.prefix));
    }

    fn lane<'a>(&'a self, name: &str) -> Box<dyn segue_core::Progress + 'a> {
        Box::new(Bars {
            multi: self.multi.clone(),
            bar: Mutex::new(None),
            prefix: format!("{}[{name}] ", self.prefix),
        })
    }
}
