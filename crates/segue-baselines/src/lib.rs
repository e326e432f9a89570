//! Session-based baselines for next-track prediction, as the literature defines them: the rules
//! reviewers expect a neural recommender to beat.
//!
//! - [`Popularity`]: tracks by their number of plays in training.
//! - [`RepeatThenPopularity`]: the session's own tracks first, most recent first, then
//!   [`Popularity`] (music sessions repeat: a strong rule on listening data).
//! - [`Sknn`]: session-based k-nearest neighbours (Jannach and Ludewig 2017; Ludewig and
//!   Jannach, "Evaluation of session-based recommendation algorithms", 2018): the `k` training
//!   sessions most similar to the current one (cosine of binary item vectors) among the
//!   `sample_size` most recent sessions sharing a track with it; a track scores the summed
//!   similarity of the neighbours that hold it.
//! - [`Vsknn`]: vector-multiplication SKNN (same paper): the current session's tracks weighted by
//!   position (`p / L`, later is heavier), and a neighbour's contribution divided by how far back
//!   the most recent track it shares with the current session lies (`1 / step`).
//! - [`SequentialRules`]: rules `a -> b` for `b` played up to `steps` positions after `a` in a
//!   training session, weighted `1 / gap`, each `a` keeping its `pruning` strongest rules; the
//!   last track of the current session scores its rules (Ludewig and Jannach 2018, after
//!   Kamehkhosh et al. 2017).
//!
//! Each fits on training sessions ([`TrainingSessions`]) and scores the whole catalogue for an
//! input (the session so far, most recent last) through [`NextTrack`]; tracks a rule says nothing
//! about score 0, which a full-ranking evaluation counts against the rule (ties are pessimistic).
//! Everything is deterministic.
//!
//! ```
//! use segue_baselines::{NextTrack, SequentialRules, SrParams, TrainingSessions};
//!
//! // Two training sessions over 5 tracks: 0 1 2 and 0 1 3.
//! let flat = [0, 1, 2, 0, 1, 3];
//! let data = TrainingSessions::new(&flat, &[0, 3, 6], &[10, 20], 5).unwrap();
//! let sr = SequentialRules::fit(&data, &SrParams::default()).unwrap();
//! let mut scores = vec![0.0; 5];
//! sr.score_into(&[4, 0], &mut scores);
//! // After track 0: track 1 twice at gap 1, tracks 2 and 3 once each at gap 2.
//! assert_eq!(scores, vec![0.0, 2.0, 0.5, 0.5, 0.0]);
//! ```
#![deny(missing_docs)]

mod knn;
mod rules;

pub use knn::{KnnParams, Sknn, Vsknn};
pub use rules::{Popularity, RepeatThenPopularity, SequentialRules, SrParams};

use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Training sessions: session `i` is `flat[offsets[i]..offsets[i + 1]]`, its last play at
/// `ends[i]` (any increasing time, for "most recent"), tracks `0..tracks`.
#[derive(Debug, Clone, Copy)]
pub struct TrainingSessions<'a> {
    flat: &'a [u32],
    offsets: &'a [usize],
    ends: &'a [i64],
    tracks: usize,
}

impl<'a> TrainingSessions<'a> {
    /// Checks the boundaries, the times and the track ids.
    pub fn new(
        flat: &'a [u32],
        offsets: &'a [usize],
        ends: &'a [i64],
        tracks: usize,
    ) -> Result<Self> {
        if offsets.first() != Some(&0)
            || offsets.last() != Some(&flat.len())
            || offsets.windows(2).any(|w| w[0] > w[1])
        {
            return Err(Error::Config(format!(
                "session offsets must rise from 0 to {} (the number of plays)",
                flat.len()
            )));
        }
        if ends.len() + 1 != offsets.len() {
            return Err(Error::ShapeMismatch {
                what: "session end times".into(),
                expected: offsets.len() - 1,
                found: ends.len(),
            });
        }
        if let Some(&t) = flat.iter().find(|&&t| t as usize >= tracks) {
            return Err(Error::Config(format!("track {t} outside the catalogue 0..{tracks}")));
        }
        Ok(TrainingSessions { flat, offsets, ends, tracks })
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// True when there is no session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Session `i`.
    pub fn session(&self, i: usize) -> &'a [u32] {
        &self.flat[self.offsets[i]..self.offsets[i + 1]]
    }

    /// The size of the catalogue.
    pub fn tracks(&self) -> usize {
        self.tracks
    }
}

/// The baselines by name, as pipelines and tables call them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Rule {
    /// [`Popularity`].
    Popularity,
    /// [`RepeatThenPopularity`].
    RepeatThenPopularity,
    /// [`Sknn`].
    Sknn,
    /// [`Vsknn`].
    Vsknn,
    /// [`SequentialRules`].
    SequentialRules,
}

impl Rule {
    /// Every rule, simplest first.
    pub const ALL: [Rule; 5] = [
        Rule::Popularity,
        Rule::RepeatThenPopularity,
        Rule::Sknn,
        Rule::Vsknn,
        Rule::SequentialRules,
    ];

    /// Its short name (stage names, the command line).
    pub fn id(self) -> &'static str {
        match self {
            Rule::Popularity => "pop",
            Rule::RepeatThenPopularity => "repeat-pop",
            Rule::Sknn => "sknn",
            Rule::Vsknn => "vsknn",
            Rule::SequentialRules => "sr",
        }
    }

    /// Its name in tables.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Popularity => "Popularity",
            Rule::RepeatThenPopularity => "Repeat-then-popularity",
            Rule::Sknn => "SKNN",
            Rule::Vsknn => "V-SKNN",
            Rule::SequentialRules => "SR",
        }
    }

    /// The rule called `id`.
    pub fn from_id(id: &str) -> Option<Rule> {
        Rule::ALL.into_iter().find(|r| r.id() == id)
    }

    /// Fits the rule on training sessions with its settings from `params`.
    pub fn fit(
        self,
        data: &TrainingSessions<'_>,
        params: &BaselineParams,
    ) -> Result<Box<dyn NextTrack>> {
        Ok(match self {
            Rule::Popularity => Box::new(Popularity::fit(data)),
            Rule::RepeatThenPopularity => Box::new(RepeatThenPopularity::fit(data)),
            Rule::Sknn => Box::new(Sknn::fit(data, &params.sknn)?),
            Rule::Vsknn => Box::new(Vsknn::fit(data, &params.vsknn)?),
            Rule::SequentialRules => Box::new(SequentialRules::fit(data, &params.sr)?),
        })
    }

    /// The settings that change what it predicts (none for the parameter-free rules).
    pub fn settings(self, params: &BaselineParams) -> serde_json::Value {
        match self {
            Rule::Popularity | Rule::RepeatThenPopularity => serde_json::Value::Null,
            Rule::Sknn => serde_json::json!(params.sknn),
            Rule::Vsknn => serde_json::json!(params.vsknn),
            Rule::SequentialRules => serde_json::json!(params.sr),
        }
    }
}

/// The settings of every baseline.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineParams {
    /// [`Sknn`]'s neighbourhood.
    pub sknn: KnnParams,
    /// [`Vsknn`]'s neighbourhood.
    pub vsknn: KnnParams,
    /// [`SequentialRules`]' steps and pruning.
    pub sr: SrParams,
}

impl BaselineParams {
    /// Checks every value, naming a bad one.
    pub fn validate(&self) -> Result<()> {
        self.sknn.validate().map_err(|e| Error::Config(format!("baselines.sknn: {e}")))?;
        self.vsknn.validate().map_err(|e| Error::Config(format!("baselines.vsknn: {e}")))?;
        self.sr.validate().map_err(|e| Error::Config(format!("baselines.sr: {e}")))
    }
}

/// A fitted rule: it scores every track of the catalogue as the next play after `input`.
pub trait NextTrack: Send + Sync {
    /// Writes one score per track into `out` (the catalogue's length; overwritten whole). `input`
    /// is the session so far, most recent last; tracks outside the catalogue are ignored.
    fn score_into(&self, input: &[u32], out: &mut [f32]);
}

#[cfg(test)]
mod tests;
