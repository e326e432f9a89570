//! Full-ranking evaluation of next-item predictions.
//!
//! Every prediction scores the whole catalogue; the target's rank is one plus the number of
//! *other* items scoring at least as high, so ties count against the model (a model that
//! scores everything equal ranks every target last, never first). From ranks come
//! HitRatio@k, MRR@k and NDCG@k (one relevant item: `1 / log2(rank + 1)` when `rank <= k`),
//! averaged over all predictions (the paper's figure) and per user (each user's mean, then
//! the mean over users), and broken down by whether the target was seen in training and
//! whether it already occurred earlier in the session.
//!
//! Works on any score matrix: [`Evaluator::add_scores`] takes a row-major block of scores,
//! [`evaluate`] pulls batches from a scoring function in parallel. Sums are accumulated in
//! query order, so the report does not depend on the number of threads.
//!
//! ```
//! use segue_eval::{Evaluator, Query};
//!
//! let mut eval = Evaluator::new(&[1, 2], 4).unwrap();
//! let q = |user, target| Query { user, target, seen_in_train: true, repeat: false };
//! // Target 1 ties with item 2: rank 2. Target 0 is last: rank 4.
//! eval.add_scores(&[q(0, 1), q(1, 0)], &[0.1, 0.5, 0.5, 0.2, 0.0, 0.3, 0.2, 0.1]).unwrap();
//! let r = eval.report();
//! assert_eq!(r.all.hit, vec![0.0, 0.5]);
//! assert_eq!(r.all.mrr, vec![0.0, 0.25]);
//! assert_eq!((r.hit_at(2), r.mrr_at(2), r.ndcg_at(3)), (Some(0.5), Some(0.25), None));
//! ```
#![deny(missing_docs)]

mod stats;

pub use stats::{Interval, PairedTest, mean_interval, paired_bootstrap};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The cut-offs the paper reports.
pub const PAPER_KS: [usize; 5] = [10, 20, 30, 40, 50];

/// What is known about one prediction besides its scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The user the session belongs to.
    pub user: u32,
    /// The item to be predicted.
    pub target: u32,
    /// Whether the target occurs in the training data.
    pub seen_in_train: bool,
    /// Whether the target already occurred earlier in the same session.
    pub repeat: bool,
}

/// The 1-based rank of `target`: one plus the number of other items scoring at least as high.
/// A NaN anywhere in the row is an error (it cannot be ranked): [`Error::NanScore`]; a target
/// outside the row is [`Error::TargetOutOfRange`].
pub fn rank(scores: &[f32], target: usize) -> Result<usize> {
    let Some(&t) = scores.get(target) else {
        return Err(Error::TargetOutOfRange { prediction: None, target, items: scores.len() });
    };
    let mut above = 0usize;
    let mut nan = None;
    for (j, &s) in scores.iter().enumerate() {
        if s.is_nan() {
            nan = Some(j);
        }
        above += usize::from(s >= t && j != target);
    }
    match nan {
        Some(item) => Err(Error::NanScore { prediction: None, item }),
        None => Ok(above + 1),
    }
}

/// Names the prediction a row-level error belongs to.
fn at_prediction(e: Error, index: usize) -> Error {
    match e {
        Error::NanScore { item, .. } => Error::NanScore { prediction: Some(index), item },
        Error::TargetOutOfRange { target, items, .. } => {
            Error::TargetOutOfRange { prediction: Some(index), target, items }
        }
        Error::InvalidRank { rank, items, .. } => {
            Error::InvalidRank { prediction: Some(index), rank, items }
        }
        other => other,
    }
}

/// Mean metrics over a set of predictions, one entry per cut-off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of predictions (or of users, for per-user averages).
    pub count: u64,
    /// HitRatio@k.
    pub hit: Vec<f64>,
    /// MRR@k.
    pub mrr: Vec<f64>,
    /// NDCG@k.
    pub ndcg: Vec<f64>,
}

/// Running sums of per-prediction metrics.
#[derive(Debug, Clone, PartialEq)]
struct Sums {
    count: u64,
    hit: Vec<f64>,
    mrr: Vec<f64>,
    ndcg: Vec<f64>,
}

impl Sums {
    fn new(n: usize) -> Self {
        Sums { count: 0, hit: vec![0.0; n], mrr: vec![0.0; n], ndcg: vec![0.0; n] }
    }

    fn add(&mut self, ks: &[usize], rank: usize) {
        self.count += 1;
        for (i, &k) in ks.iter().enumerate() {
            if rank <= k {
                self.hit[i] += 1.0;
                self.mrr[i] += 1.0 / rank as f64;
                self.ndcg[i] += 1.0 / (rank as f64 + 1.0).log2();
            }
        }
    }

    fn mean(&self) -> Metrics {
        let n = self.count.max(1) as f64;
        let div = |v: &[f64]| v.iter().map(|x| x / n).collect();
        Metrics {
            count: self.count,
            hit: div(&self.hit),
            mrr: div(&self.mrr),
            ndcg: div(&self.ndcg),
        }
    }
}

/// Everything an evaluation reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The cut-offs, in the order of every metric vector.
    pub ks: Vec<usize>,
    /// Number of items ranked per prediction.
    pub items: usize,
    /// Mean over all predictions (the paper's).
    pub all: Metrics,
    /// Mean over users of each user's mean; `count` is the number of users.
    pub per_user: Metrics,
    /// Targets seen in training.
    pub seen: Metrics,
    /// Targets never seen in training (cold items).
    pub unseen: Metrics,
    /// Targets that already occurred earlier in the session.
    pub repeat: Metrics,
    /// Targets new to the session.
    pub new: Metrics,
    /// Each user's mean.
    pub users: BTreeMap<u32, Metrics>,
}

impl Report {
    /// HitRatio at cut-off `k`, over all predictions, if `k` was evaluated.
    pub fn hit_at(&self, k: usize) -> Option<f64> {
        self.at(&self.all, k).map(|m| m.hit)
    }

    /// MRR at cut-off `k`, over all predictions, if `k` was evaluated.
    pub fn mrr_at(&self, k: usize) -> Option<f64> {
        self.at(&self.all, k).map(|m| m.mrr)
    }

    /// NDCG at cut-off `k`, over all predictions, if `k` was evaluated.
    pub fn ndcg_at(&self, k: usize) -> Option<f64> {
        self.at(&self.all, k).map(|m| m.ndcg)
    }

    /// The three metrics of `metrics` (one of this report's groups: `all`, `per_user`, `seen`,
    /// a user's, ...) at cut-off `k`, if `k` was evaluated.
    pub fn at(&self, metrics: &Metrics, k: usize) -> Option<MetricsAt> {
        let i = self.ks.iter().position(|&c| c == k)?;
        Some(MetricsAt { hit: metrics.hit[i], mrr: metrics.mrr[i], ndcg: metrics.ndcg[i] })
    }
}

/// The metrics of a group at one cut-off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsAt {
    /// HitRatio@k.
    pub hit: f64,
    /// MRR@k.
    pub mrr: f64,
    /// NDCG@k.
    pub ndcg: f64,
}

/// Accumulates ranks of predictions into a [`Report`].
#[derive(Debug, Clone)]
pub struct Evaluator {
    ks: Vec<usize>,
    items: usize,
    all: Sums,
    seen: Sums,
    unseen: Sums,
    repeat: Sums,
    new: Sums,
    users: BTreeMap<u32, Sums>,
}

impl Evaluator {
    /// An evaluator at cut-offs `ks` over a catalogue of `items`.
    pub fn new(ks: &[usize], items: usize) -> Result<Self> {
        if ks.is_empty() || ks.contains(&0) {
            return Err(Error::Config(format!(
                "cut-offs must be positive and at least one: {ks:?}"
            )));
        }
        if items == 0 {
            return Err(Error::Config("an evaluation needs at least one item".into()));
        }
        let n = ks.len();
        Ok(Evaluator {
            ks: ks.to_vec(),
            items,
            all: Sums::new(n),
            seen: Sums::new(n),
            unseen: Sums::new(n),
            repeat: Sums::new(n),
            new: Sums::new(n),
            users: BTreeMap::new(),
        })
    }

    /// Records one prediction whose target came at `rank`: 1-based, one plus the number of
    /// other items scoring at least as high, so `1..=items`. Any other rank is an
    /// [`Error::InvalidRank`] and records nothing.
    pub fn add_rank(&mut self, q: &Query, rank: usize) -> Result<()> {
        if !(1..=self.items).contains(&rank) {
            return Err(Error::InvalidRank { prediction: None, rank, items: self.items });
        }
        let ks = &self.ks;
        self.all.add(ks, rank);
        if q.seen_in_train { &mut self.seen } else { &mut self.unseen }.add(ks, rank);
        if q.repeat { &mut self.repeat } else { &mut self.new }.add(ks, rank);
        self.users.entry(q.user).or_insert_with(|| Sums::new(ks.len())).add(ks, rank);
        Ok(())
    }

    /// Ranks a row-major block of scores (`queries.len()` rows of `items`), rows in parallel.
    /// Nothing of a block with an error is recorded.
    pub fn add_scores(&mut self, queries: &[Query], scores: &[f32]) -> Result<()> {
        let ranks = ranks(queries, scores, self.items, 0, "scores")?;
        for (q, r) in queries.iter().zip(ranks) {
            self.add_rank(q, r)?;
        }
        Ok(())
    }

    /// The means so far.
    pub fn report(&self) -> Report {
        let users: BTreeMap<u32, Metrics> =
            self.users.iter().map(|(&u, s)| (u, s.mean())).collect();
        let n = self.ks.len();
        let mut per_user = Metrics {
            count: users.len() as u64,
            hit: vec![0.0; n],
            mrr: vec![0.0; n],
            ndcg: vec![0.0; n],
        };
        let u = users.len().max(1) as f64;
        for m in users.values() {
            for i in 0..n {
                per_user.hit[i] += m.hit[i] / u;
                per_user.mrr[i] += m.mrr[i] / u;
                per_user.ndcg[i] += m.ndcg[i] / u;
            }
        }
        Report {
            ks: self.ks.clone(),
            items: self.items,
            all: self.all.mean(),
            per_user,
            seen: self.seen.mean(),
            unseen: self.unseen.mean(),
            repeat: self.repeat.mean(),
            new: self.new.mean(),
            users,
        }
    }
}

/// The rank of each query's target in its row of `scores`, rows in parallel; `first` is the
/// index of the first query among all predictions (for errors), `what` names the block.
fn ranks(
    queries: &[Query],
    scores: &[f32],
    items: usize,
    first: usize,
    what: &str,
) -> Result<Vec<usize>> {
    if scores.len() != queries.len() * items {
        return Err(Error::ShapeMismatch {
            what: format!("{what} ({} queries over {items} items)", queries.len()),
            expected: queries.len() * items,
            found: scores.len(),
        });
    }
    queries
        .par_iter()
        .zip(scores.par_chunks(items))
        .enumerate()
        .map(|(i, (q, row))| rank(row, q.target as usize).map_err(|e| at_prediction(e, first + i)))
        // Collected whole, then checked in order: the error named is the first bad prediction.
        .collect::<Vec<_>>()
        .into_iter()
        .collect()
}

/// Scores `queries` in batches of `batch` through `score` (given the index of the batch's first
/// query and the batch, it returns a row-major `batch.len() x items` block), batches in
/// parallel, and reports.
pub fn evaluate<F>(
    queries: &[Query],
    items: usize,
    ks: &[usize],
    batch: usize,
    score: F,
) -> Result<Report>
where
    F: Fn(usize, &[Query]) -> Result<Vec<f32>> + Sync,
{
    Ok(evaluate_ranked(queries, items, ks, batch, score)?.0)
}

/// [`evaluate`], also returning each query's rank (for paired tests between methods).
pub fn evaluate_ranked<F>(
    queries: &[Query],
    items: usize,
    ks: &[usize],
    batch: usize,
    score: F,
) -> Result<(Report, Vec<usize>)>
where
    F: Fn(usize, &[Query]) -> Result<Vec<f32>> + Sync,
{
    let mut eval = Evaluator::new(ks, items)?;
    let batch = batch.max(1);
    // The error reported is the first failing batch in order, whatever the threads' timing:
    // batches after a known failure are skipped, and results are checked in batch order.
    let first_failed = AtomicUsize::new(usize::MAX);
    let ranked: Vec<Option<Result<Vec<usize>>>> = queries
        .par_chunks(batch)
        .enumerate()
        .map(|(b, qs)| {
            if b > first_failed.load(Ordering::Relaxed) {
                return None;
            }
            let result = score(b * batch, qs).and_then(|scores| {
                ranks(qs, &scores, items, b * batch, &format!("scores of batch {b}"))
            });
            if result.is_err() {
                first_failed.fetch_min(b, Ordering::Relaxed);
            }
            Some(result)
        })
        .collect();
    let ranked: Vec<usize> =
        ranked.into_iter().flatten().collect::<Result<Vec<_>>>()?.into_iter().flatten().collect();
    for (q, &r) in queries.iter().zip(&ranked) {
        eval.add_rank(q, r)?;
    }
    Ok((eval.report(), ranked))
}

#[cfg(test)]
mod tests;
