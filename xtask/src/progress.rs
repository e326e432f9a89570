//! Progress bars with rates on stderr; indicatif hides them when stderr is not a terminal.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Default)]
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
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
        bar.set_message(step.to_string());
        *self.bar.lock().expect("progress lock") = Some(bar);
    }

    fn advance(&self, n: u64) {
        if let Some(b) = &*self.bar.lock().expect("progress lock") {
            b.inc(n);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().expect("progress lock").take() {
            b.finish_and_clear();
        }
    }

    fn note(&self, line: &str) {
        match &*self.bar.lock().expect("progress lock") {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }
}
