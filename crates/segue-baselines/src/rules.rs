//! Rules without neighbours: popularity, repeat-then-popularity and sequential rules.

use rustc_hash::FxHashMap;
use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::{NextTrack, TrainingSessions};

/// Tracks by their number of plays in the training sessions.
#[derive(Debug, Clone)]
pub struct Popularity {
    counts: Vec<f32>,
}

impl Popularity {
    /// Counts the plays of every track.
    pub fn fit(data: &TrainingSessions<'_>) -> Self {
        let mut counts = vec![0f64; data.tracks()];
        for &t in data.flat {
            counts[t as usize] += 1.0;
        }
        Popularity { counts: counts.into_iter().map(|c| c as f32).collect() }
    }

    /// The training plays of each track.
    pub fn counts(&self) -> &[f32] {
        &self.counts
    }
}

impl NextTrack for Popularity {
    fn score_into(&self, _input: &[u32], out: &mut [f32]) {
        out.copy_from_slice(&self.counts);
    }
}

/// The session's own tracks first, the most recently played highest, then every other track by
/// [`Popularity`].
#[derive(Debug, Clone)]
pub struct RepeatThenPopularity {
    popularity: Popularity,
}

/// Above any play count: position `j` of the input scores `REPEAT_BASE * (1 + j)`, distinct for
/// every position and far below f32's largest value.
const REPEAT_BASE: f32 = 1e30;

impl RepeatThenPopularity {
    /// Counts the plays of every track.
    pub fn fit(data: &TrainingSessions<'_>) -> Self {
        RepeatThenPopularity { popularity: Popularity::fit(data) }
    }
}

impl NextTrack for RepeatThenPopularity {
    fn score_into(&self, input: &[u32], out: &mut [f32]) {
        self.popularity.score_into(input, out);
        // Later positions overwrite earlier ones: a track's score is its most recent play.
        for (j, &t) in input.iter().enumerate() {
            if let Some(s) = out.get_mut(t as usize) {
                *s = REPEAT_BASE * (1.0 + j as f32);
            }
        }
    }
}

/// Settings of [`SequentialRules`] (session-rec's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SrParams {
    /// A rule `a -> b` is counted when `b` comes at most this many positions after `a`.
    pub steps: usize,
    /// Rules kept per track `a`, the strongest (0: all).
    pub pruning: usize,
}

impl Default for SrParams {
    fn default() -> Self {
        SrParams { steps: 10, pruning: 20 }
    }
}

impl SrParams {
    /// Checks the values, naming a bad one.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 {
            return Err(Error::Config("steps = 0: must be at least 1".into()));
        }
        Ok(())
    }
}

/// Sequential rules: for every pair of plays `a` then `b` of a training session at most
/// `steps` apart, the rule `a -> b` gains `1 / gap`; each `a` keeps its `pruning` strongest rules
/// (ties: the rule first seen first). The last track of the input scores its rules.
#[derive(Debug, Clone)]
pub struct SequentialRules {
    /// Per track, its rules `(b, weight)`, strongest first.
    rules: Vec<Vec<(u32, f32)>>,
}

impl SequentialRules {
    /// Mines and prunes the rules.
    pub fn fit(data: &TrainingSessions<'_>, params: &SrParams) -> Result<Self> {
        params.validate()?;
        // Per track: rule targets in first-seen order, and their index.
        let mut weights: Vec<Vec<(u32, f64)>> = vec![Vec::new(); data.tracks()];
        let mut index: Vec<FxHashMap<u32, usize>> = vec![FxHashMap::default(); data.tracks()];
        for s in 0..data.len() {
            let session = data.session(s);
            for (j, &b) in session.iter().enumerate() {
                for gap in 1..=params.steps.min(j) {
                    let a = session[j - gap] as usize;
                    let slot = *index[a].entry(b).or_insert_with(|| {
                        weights[a].push((b, 0.0));
                        weights[a].len() - 1
                    });
                    weights[a][slot].1 += 1.0 / gap as f64;
                }
            }
        }
        let rules = weights
            .into_iter()
            .map(|mut r| {
                // Stable: equal weights keep their first-seen order (Python's Counter order).
                r.sort_by(|x, y| y.1.total_cmp(&x.1));
                if params.pruning > 0 {
                    r.truncate(params.pruning);
                }
                r.into_iter().map(|(b, w)| (b, w as f32)).collect()
            })
            .collect();
        Ok(SequentialRules { rules })
    }

    /// The rules of track `a`, strongest first.
    pub fn rules_of(&self, a: u32) -> &[(u32, f32)] {
        self.rules.get(a as usize).map_or(&[], |r| r.as_slice())
    }

    /// Number of rules kept.
    pub fn len(&self) -> usize {
        self.rules.iter().map(Vec::len).sum()
    }

    /// True when no rule was found.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl NextTrack for SequentialRules {
    fn score_into(&self, input: &[u32], out: &mut [f32]) {
        out.fill(0.0);
        if let Some(&last) = input.last() {
            for &(b, w) in self.rules_of(last) {
                out[b as usize] = w;
            }
        }
    }
}
