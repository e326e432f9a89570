//! Ranking a catalogue too large for one row of scores per prediction: items are scored a block
//! at a time and each prediction keeps only a running count and its best few scores.

use std::ops::Range;

use segue_core::{Error, Result};

use crate::{Evaluator, Query, Report};

/// What one prediction has seen of its scores so far, block after block.
///
/// Until the block holding the target comes, the target's score is unknown, so the best
/// `depth` other scores are kept; from then on, items scoring at least as high as the target
/// are counted. The rank is exact when it is at most `depth`, and otherwise at least
/// `depth + 1` (which is all a metric at a cut-off up to `depth` needs).
#[derive(Debug, Clone)]
pub(crate) struct RunningRank {
    target: usize,
    depth: usize,
    target_score: Option<f32>,
    /// Other items scoring at least as high as the target (once its score is known).
    above: usize,
    /// The best other scores before the target's score was known (at most `depth`).
    best: Vec<f32>,
    /// Whether the kept scores could not tell the rank below `depth + 1`.
    censored: bool,
}

impl RunningRank {
    pub(crate) fn new(target: usize, depth: usize) -> Self {
        RunningRank {
            target,
            depth,
            target_score: None,
            above: 0,
            best: Vec::with_capacity(depth),
            censored: false,
        }
    }

    /// Takes the scores of items `items` (one per item). A NaN is an error naming its item.
    pub(crate) fn add(&mut self, items: Range<usize>, scores: &[f32]) -> Result<()> {
        if let Some(j) = scores.iter().position(|s| s.is_nan()) {
            return Err(Error::NanScore { prediction: None, item: items.start + j });
        }
        if items.contains(&self.target) {
            let t = scores[self.target - items.start];
            let kept = self.best.iter().filter(|&&s| s >= t).count();
            // Every earlier score left out is at most the least kept one: when fewer than
            // `depth` kept scores reach the target's, none of those left out do.
            self.censored = kept == self.depth;
            self.above += kept;
            self.best = Vec::new();
            self.target_score = Some(t);
            let skip = self.target - items.start;
            self.above += scores.iter().enumerate().filter(|&(j, &s)| j != skip && s >= t).count();
        } else if let Some(t) = self.target_score {
            self.above += scores.iter().filter(|&&s| s >= t).count();
        } else {
            for &s in scores {
                self.keep(s);
            }
        }
        Ok(())
    }

    fn keep(&mut self, s: f32) {
        if self.depth == 0 {
            return;
        }
        if self.best.len() < self.depth {
            self.best.push(s);
            return;
        }
        let (i, least) = self
            .best
            .iter()
            .enumerate()
            .fold((0, f32::INFINITY), |m, (i, &x)| if x < m.1 { (i, x) } else { m });
        if s > least {
            self.best[i] = s;
        }
    }

    /// The 1-based rank: exact up to `depth`, else a lower bound above `depth`. `None` before
    /// the target's block came.
    pub(crate) fn rank(&self) -> Option<usize> {
        self.target_score?;
        let rank = self.above + 1;
        Some(if self.censored { rank.max(self.depth + 1) } else { rank })
    }
}

/// Ranks `queries` as [`crate::evaluate_ranked`] does, without ever holding a prediction's scores
/// of the whole catalogue: batches of `batch` queries in parallel, each prepared once by
/// `prepare` (given the index of the batch's first query; e.g. a model's hidden states) and
/// scored `block` items at a time by `score` (a row-major `batch.len() x items.len()` block).
/// Memory grows with `batch x block`, not with the catalogue.
///
/// Ranks up to the deepest cut-off of `eval` are exact, so every metric equals the full
/// ranking's; a rank beyond it is a lower bound (at least the deepest cut-off plus one) when
/// the target's block came after blocks holding that many better items. With `block` at least
/// the catalogue, every rank is exact.
pub fn evaluate_blocked<H, P, S>(
    eval: Evaluator,
    queries: &[Query],
    batch: usize,
    block: usize,
    prepare: P,
    score: S,
) -> Result<(Report, Vec<usize>)>
where
    P: Fn(usize, &[Query]) -> Result<H> + Sync,
    S: Fn(&H, &[Query], Range<usize>) -> Result<Vec<f32>> + Sync,
{
    let items = eval.items;
    let depth = eval.ks.iter().copied().max().unwrap_or(0);
    let block = block.max(1);
    crate::rank_batches(eval, queries, batch, |first, qs| {
        let prepared = prepare(first, qs)?;
        let mut running = Vec::with_capacity(qs.len());
        for q in qs {
            if q.target as usize >= items {
                return Err(Error::TargetOutOfRange {
                    prediction: Some(first + running.len()),
                    target: q.target as usize,
                    items,
                });
            }
            running.push(RunningRank::new(q.target as usize, depth));
        }
        let mut start = 0;
        while start < items {
            let range = start..(start + block).min(items);
            let n = range.len();
            let scores = score(&prepared, qs, range.clone())?;
            if scores.len() != qs.len() * n {
                return Err(Error::ShapeMismatch {
                    what: format!("scores of items {range:?} for {} queries", qs.len()),
                    expected: qs.len() * n,
                    found: scores.len(),
                });
            }
            for (i, (r, row)) in running.iter_mut().zip(scores.chunks(n)).enumerate() {
                r.add(range.clone(), row).map_err(|e| crate::at_prediction(e, first + i))?;
            }
            start = range.end;
        }
        running
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // Unreachable: targets were checked to lie inside the catalogue, all scored.
                r.rank().ok_or(Error::TargetOutOfRange {
                    prediction: Some(first + i),
                    target: r.target,
                    items,
                })
            })
            .collect()
    })
}
