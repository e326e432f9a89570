//! Full-ranking evaluation of next-item predictions.
//!
//! Every prediction scores the whole catalogue; the target's rank is one plus the number of
//! *other* items scoring at least as high, so ties count against the model (a model that
//! scores everything equal ranks every target last, never first). From ranks come
//! HitRatio@k, MRR@k and NDCG@k (one relevant item: `1 / log2(rank + 1)` when `rank <= k`),
//! averaged over all predictions (the paper's figure) and per user (each user's mean, then
//! the mean over users), and broken down by any named groups of predictions the caller
//! chooses ([`Evaluator::with_groups`]; a recommender might use "seen in training" and
//! "repeat in the session").
//!
//! Works on any score matrix: [`Evaluator::add_scores`] takes a row-major block of scores,
//! [`evaluate`] pulls batches from a scoring function in parallel, and [`evaluate_blocked`]
//! scores a catalogue of millions of items a block at a time (memory independent of its size). Sums are accumulated in
//! query order, so the report does not depend on the number of threads.
//!
//! ```
//! use segue_eval::{Evaluator, Query};
//!
//! let mut eval = Evaluator::with_groups(&[1, 2], 4, &["cold"]).unwrap();
//! // Target 1 ties with item 2: rank 2. Target 0 is last: rank 4, and a "cold" item.
//! let queries = [Query::new(0, 1), Query::new(1, 0).in_group(0)];
//! eval.add_scores(&queries, &[0.1, 0.5, 0.5, 0.2, 0.0, 0.3, 0.2, 0.1]).unwrap();
//! let r = eval.report();
//! assert_eq!(r.all.hit, vec![0.0, 0.5]);
//! assert_eq!(r.all.mrr, vec![0.0, 0.25]);
//! assert_eq!((r.hit_at(2), r.mrr_at(2), r.ndcg_at(3)), (Some(0.5), Some(0.25), None));
//! assert_eq!(r.group("cold").map(|m| (m.count, m.hit[1])), Some((1, 0.0)));
//! ```
#![deny(missing_docs)]

mod blocked;
mod stats;

pub use blocked::evaluate_blocked;
pub use stats::{Interval, PairedTest, mean_interval, paired_bootstrap};

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The cut-offs the paper reports.
pub const PAPER_KS: [usize; 5] = [10, 20, 30, 40, 50];

/// The most groups an evaluator breaks its predictions down by (one bit each in [`Query`]).
pub const MAX_GROUPS: usize = 64;

/// What is known about one prediction besides its scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Query {
    /// The user the prediction belongs to (for the per-user means).
    pub user: u32,
    /// The item to be predicted.
    pub target: u32,
    /// The breakdown groups it belongs to: bit `i` set for the evaluator's group `i`
    /// ([`Evaluator::with_groups`]); a prediction may be in any number of them, or none.
    pub groups: u64,
}

impl Query {
    /// A prediction of `target` for `user`, in no group.
    pub fn new(user: u32, target: u32) -> Self {
        Query { user, target, groups: 0 }
    }

    /// The same prediction, also in group `i` (an index into the evaluator's group names,
    /// below [`MAX_GROUPS`]; larger indices are ignored).
    pub fn in_group(mut self, i: usize) -> Self {
        if i < MAX_GROUPS {
            self.groups |= 1 << i;
        }
        self
    }

    /// Whether it is in group `i`.
    pub fn is_in(&self, i: usize) -> bool {
        i < MAX_GROUPS && self.groups & (1 << i) != 0
    }
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
    /// Each user's mean.
    #[serde(deserialize_with = "users_from_text_keys")]
    pub users: BTreeMap<u32, Metrics>,
    /// The mean over each named group's predictions (every group the evaluator was given, an
    /// empty one with `count` 0). Serialized beside the fields above, one key per group.
    #[serde(flatten)]
    pub groups: BTreeMap<String, Metrics>,
}

/// Reads the per-user map back. Beside a flattened field, serde buffers the report and hands
/// map keys over as text, which a `u32` key does not accept (serde-rs/serde#1183): read text
/// keys and parse them.
fn users_from_text_keys<'de, D>(d: D) -> std::result::Result<BTreeMap<u32, Metrics>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let text = BTreeMap::<String, Metrics>::deserialize(d)?;
    text.into_iter()
        .map(|(k, m)| {
            k.parse::<u32>().map(|u| (u, m)).map_err(|_| {
                serde::de::Error::custom(format!("user key \"{k}\" is not a user number"))
            })
        })
        .collect()
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

    /// The metrics of the predictions in group `name`, if the evaluator had such a group.
    pub fn group(&self, name: &str) -> Option<&Metrics> {
        self.groups.get(name)
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
    names: Vec<String>,
    groups: Vec<Sums>,
    users: BTreeMap<u32, Sums>,
}

/// Keys of a serialized [`Report`] that a group name would collide with.
const REPORT_FIELDS: [&str; 5] = ["ks", "items", "all", "per_user", "users"];

impl Evaluator {
    /// An evaluator at cut-offs `ks` over a catalogue of `items`, without breakdowns.
    pub fn new(ks: &[usize], items: usize) -> Result<Self> {
        Self::with_groups(ks, items, &[])
    }

    /// An evaluator that also reports the predictions of each named group on their own:
    /// `names[i]` is the group of the queries with bit `i` set ([`Query::in_group`]). Names
    /// are distinct, at most [`MAX_GROUPS`], and none of the report's own fields.
    pub fn with_groups(ks: &[usize], items: usize, names: &[&str]) -> Result<Self> {
        if ks.is_empty() || ks.contains(&0) {
            return Err(Error::Config(format!(
                "cut-offs must be positive and at least one: {ks:?}"
            )));
        }
        if items == 0 {
            return Err(Error::Config("an evaluation needs at least one item".into()));
        }
        if names.len() > MAX_GROUPS {
            return Err(Error::Config(format!(
                "{} groups: at most {MAX_GROUPS} can be told apart",
                names.len()
            )));
        }
        for (i, name) in names.iter().enumerate() {
            if REPORT_FIELDS.contains(name) || names[..i].contains(name) {
                return Err(Error::Config(format!(
                    "group name \"{name}\" is repeated or one of the report's fields {REPORT_FIELDS:?}"
                )));
            }
        }
        let n = ks.len();
        Ok(Evaluator {
            ks: ks.to_vec(),
            items,
            all: Sums::new(n),
            names: names.iter().map(|s| s.to_string()).collect(),
            groups: vec![Sums::new(n); names.len()],
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
        for (i, sums) in self.groups.iter_mut().enumerate() {
            if q.is_in(i) {
                sums.add(ks, rank);
            }
        }
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
            users,
            groups: self.names.iter().cloned().zip(self.groups.iter().map(Sums::mean)).collect(),
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
/// parallel, adds them to `eval` (which says the cut-offs, the catalogue and the groups) and
/// reports.
pub fn evaluate<F>(eval: Evaluator, queries: &[Query], batch: usize, score: F) -> Result<Report>
where
    F: Fn(usize, &[Query]) -> Result<Vec<f32>> + Sync,
{
    Ok(evaluate_ranked(eval, queries, batch, score)?.0)
}

/// [`evaluate`], also returning each query's rank (for paired tests between methods).
pub fn evaluate_ranked<F>(
    eval: Evaluator,
    queries: &[Query],
    batch: usize,
    score: F,
) -> Result<(Report, Vec<usize>)>
where
    F: Fn(usize, &[Query]) -> Result<Vec<f32>> + Sync,
{
    let items = eval.items;
    rank_batches(eval, queries, batch, |first, qs| {
        let scores = score(first, qs)?;
        ranks(qs, &scores, items, first, &format!("scores of batch {}", first / batch.max(1)))
    })
}

/// Ranks `queries` in batches of `batch`, batches in parallel through `rank` (given the index
/// of the batch's first query and the batch, it returns their ranks), adds them to `eval` in
/// query order and reports.
fn rank_batches<F>(
    mut eval: Evaluator,
    queries: &[Query],
    batch: usize,
    rank: F,
) -> Result<(Report, Vec<usize>)>
where
    F: Fn(usize, &[Query]) -> Result<Vec<usize>> + Sync,
{
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
            let result = rank(b * batch, qs);
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
