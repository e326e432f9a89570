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
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _step: &str, _total: Option<u64>, _unit: &str) {}
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
}
