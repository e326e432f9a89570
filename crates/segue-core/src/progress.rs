/// Progress of a long step, reported by libraries and drawn by whoever drives them (the xtask
/// draws bars; tests and other projects can pass [`NoProgress`]).
pub trait Progress: Sync {
    /// A step starts; `total` is in `unit`s (bytes, events, ...) when known.
    fn start(&self, step: &str, total: Option<u64>, unit: &str);
    /// `n` more units are done.
    fn advance(&self, n: u64);
    /// The current step is over.
    fn finish(&self);
    /// A line for the person watching (an epoch's loss and rate, a resumed run); libraries
    /// never print, they report here. Ignored by default.
    fn note(&self, _line: &str) {}
    /// A reporter for one of several jobs that run at the same time, called `name`: its
    /// notes say the name, and its steps get a bar of their own where this reporter can show
    /// several at once. By default the notes go here with the name before them and the
    /// steps are not shown (one bar cannot follow two jobs).
    fn lane<'a>(&'a self, name: &str) -> Box<dyn Progress + 'a> {
        let prefix = format!("[{name}] ");
        // Stage notes are indented to line up under the stage's name; a lane names it first.
        Box::new(NotesOnly(Box::new(move |line: &str| {
            self.note(&format!("{prefix}{}", line.trim_start()))
        })))
    }
}

/// A lane that passes its notes on and shows no steps.
struct NotesOnly<'a>(Box<dyn Fn(&str) + Sync + 'a>);

impl Progress for NotesOnly<'_> {
    fn start(&self, _step: &str, _total: Option<u64>, _unit: &str) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
    fn note(&self, line: &str) {
        (self.0)(line)
    }
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _step: &str, _total: Option<u64>, _unit: &str) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);

    impl Progress for Lines {
        fn start(&self, step: &str, _total: Option<u64>, _unit: &str) {
            self.0.lock().unwrap().push(format!("start {step}"));
        }
        fn advance(&self, _n: u64) {}
        fn finish(&self) {}
        fn note(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_string());
        }
    }

    #[test]
    fn a_lane_names_its_job_in_every_note_and_keeps_its_steps_off_the_shared_bar() {
        let lines = Lines::default();
        let lane = lines.lane("train-ann/seed-1");
        lane.start("epoch 1/20", Some(10), "examples");
        lane.note("    epoch 1: loss 7.7");
        lines.note("a note of the run itself");
        assert_eq!(
            *lines.0.lock().unwrap(),
            ["[train-ann/seed-1] epoch 1: loss 7.7", "a note of the run itself"]
        );
    }
}
