//! Session-based nearest neighbours: SKNN and V-SKNN (Ludewig and Jannach 2018).

use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::{NextTrack, TrainingSessions};

/// Neighbourhood settings of [`Sknn`] and [`Vsknn`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnnParams {
    /// Neighbours whose tracks are scored.
    pub k: usize,
    /// Candidate sessions: the most recent ones sharing a track with the input (0: all).
    pub sample_size: usize,
}

impl Default for KnnParams {
    fn default() -> Self {
        KnnParams { k: 100, sample_size: 500 }
    }
}

impl KnnParams {
    /// Checks the values, naming a bad one.
    pub fn validate(&self) -> Result<()> {
        if self.k == 0 {
            return Err(Error::Config("k = 0: must be at least 1".into()));
        }
        Ok(())
    }
}

/// The training sessions as sets, and each track's sessions, most recent first.
#[derive(Debug, Clone)]
struct Index {
    /// Per session, its distinct tracks, sorted.
    items: Vec<Vec<u32>>,
    /// Per track, the sessions holding it, most recent first.
    sessions_of: Vec<Vec<u32>>,
    /// Per session, its recency rank (0: the most recent; ties: the later session first).
    rank: Vec<u32>,
}

impl Index {
    fn new(data: &TrainingSessions<'_>) -> Self {
        let n = data.len();
        let mut by_recency: Vec<u32> = (0..n as u32).collect();
        by_recency
            .sort_by(|&a, &b| data.ends[b as usize].cmp(&data.ends[a as usize]).then(b.cmp(&a)));
        let mut rank = vec![0u32; n];
        for (r, &s) in by_recency.iter().enumerate() {
            rank[s as usize] = r as u32;
        }
        let items: Vec<Vec<u32>> = (0..n)
            .map(|s| {
                let mut v = data.session(s).to_vec();
                v.sort_unstable();
                v.dedup();
                v
            })
            .collect();
        let mut sessions_of = vec![Vec::new(); data.tracks()];
        for &s in &by_recency {
            for &t in &items[s as usize] {
                sessions_of[t as usize].push(s);
            }
        }
        Index { items, sessions_of, rank }
    }

    /// The candidate neighbours of an input with distinct tracks `distinct`: the `sample_size`
    /// most recent sessions holding any of them, most recent first.
    fn candidates(&self, distinct: &[u32], sample_size: usize) -> Vec<u32> {
        let mut all: Vec<u32> = distinct
            .iter()
            .filter_map(|&t| self.sessions_of.get(t as usize))
            .flatten()
            .copied()
            .collect();
        all.sort_unstable_by_key(|&s| self.rank[s as usize]);
        all.dedup();
        if sample_size > 0 {
            all.truncate(sample_size);
        }
        all
    }

    /// The `k` candidates of highest similarity (ties: the more recent first), with it.
    fn neighbours(
        &self,
        distinct: &[u32],
        params: &KnnParams,
        similarity: impl Fn(&[u32]) -> f64,
    ) -> Vec<(u32, f64)> {
        let mut scored: Vec<(u32, f64)> = self
            .candidates(distinct, params.sample_size)
            .into_iter()
            .map(|s| (s, similarity(&self.items[s as usize])))
            .filter(|(_, sim)| *sim > 0.0)
            .collect();
        // Candidates come most recent first; a stable sort keeps that order among equals.
        scored.sort_by(|a, b| b.1.total_cmp(&a.1));
        scored.truncate(params.k);
        scored
    }
}

/// The input's distinct tracks inside the catalogue, sorted.
fn distinct_tracks(input: &[u32], tracks: usize) -> Vec<u32> {
    let mut v: Vec<u32> = input.iter().copied().filter(|&t| (t as usize) < tracks).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Size of the intersection of two sorted sets.
fn overlap(a: &[u32], b: &[u32]) -> usize {
    let (mut i, mut j, mut n) = (0, 0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                n += 1;
                i += 1;
                j += 1;
            }
        }
    }
    n
}

/// Session-based kNN: neighbours by the cosine of binary track vectors,
/// `|S ∩ N| / sqrt(|S| |N|)`; a track scores the summed similarity of the neighbours holding it.
#[derive(Debug, Clone)]
pub struct Sknn {
    index: Index,
    params: KnnParams,
}

impl Sknn {
    /// Indexes the training sessions.
    pub fn fit(data: &TrainingSessions<'_>, params: &KnnParams) -> Result<Self> {
        params.validate()?;
        Ok(Sknn { index: Index::new(data), params: params.clone() })
    }

    /// The neighbours of an input and their similarity, best first.
    pub fn neighbours(&self, input: &[u32]) -> Vec<(u32, f64)> {
        let distinct = distinct_tracks(input, self.index.sessions_of.len());
        let len = distinct.len() as f64;
        self.index.neighbours(&distinct, &self.params, |items| {
            overlap(&distinct, items) as f64 / (len * items.len() as f64).sqrt()
        })
    }
}

impl NextTrack for Sknn {
    fn score_into(&self, input: &[u32], out: &mut [f32]) {
        out.fill(0.0);
        for (s, sim) in self.neighbours(input) {
            for &t in &self.index.items[s as usize] {
                out[t as usize] += sim as f32;
            }
        }
    }
}

/// Vector-multiplication session kNN: the input's track at position `p` of `L` weighs `p / L`
/// (its last position when repeated); a neighbour's similarity is the summed weight of the
/// tracks it shares divided by the input's distinct tracks; a track scores the similarity of
/// each neighbour holding it, divided by `step`, the position from the end of the most recent
/// input track the neighbour shares (1 for the last).
#[derive(Debug, Clone)]
pub struct Vsknn {
    index: Index,
    params: KnnParams,
}

impl Vsknn {
    /// Indexes the training sessions.
    pub fn fit(data: &TrainingSessions<'_>, params: &KnnParams) -> Result<Self> {
        params.validate()?;
        Ok(Vsknn { index: Index::new(data), params: params.clone() })
    }

    /// The neighbours of an input and their similarity, best first.
    pub fn neighbours(&self, input: &[u32]) -> Vec<(u32, f64)> {
        let tracks = self.index.sessions_of.len();
        let distinct = distinct_tracks(input, tracks);
        // Weight of each distinct track: its last position's p / L.
        let len = input.len() as f64;
        let mut weight = vec![0f64; distinct.len()];
        for (p, &t) in input.iter().enumerate() {
            if let Ok(i) = distinct.binary_search(&t) {
                weight[i] = (p + 1) as f64 / len;
            }
        }
        let n = distinct.len() as f64;
        self.index.neighbours(&distinct, &self.params, |items| {
            let shared: f64 = distinct
                .iter()
                .zip(&weight)
                .filter(|(t, _)| items.binary_search(t).is_ok())
                .map(|(_, w)| w)
                .sum();
            shared / n
        })
    }
}

impl NextTrack for Vsknn {
    fn score_into(&self, input: &[u32], out: &mut [f32]) {
        out.fill(0.0);
        for (s, sim) in self.neighbours(input) {
            let items = &self.index.items[s as usize];
            let step = input.iter().rev().position(|t| items.binary_search(t).is_ok());
            let Some(step) = step else { continue };
            let contribution = (sim / (step + 1) as f64) as f32;
            for &t in items {
                out[t as usize] += contribution;
            }
        }
    }
}
