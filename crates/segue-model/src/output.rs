//! The output layer and its cross-entropy, forward and backward by hand.
//!
//! The output layer holds a row per track; through candle's graph each step would allocate
//! and add several catalogue-sized gradient tensors (the gradient store starts every
//! gradient as zeros and adds to it), which page faults made most of a step. Here logits,
//! softmax and the gradients of the features, weights and biases are computed with three
//! matrix products into buffers that live across steps. In a training step with the full
//! softmax the last two products and Adam's update of the weights run together, piece by
//! piece ([`full_backward_fused`]): the weights are read once for both and their gradient is
//! never stored whole (that pass was memory-bound).

use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::Softmax;
use crate::adam::{StepConsts, update_serial};
use crate::bigru::{matmul, matmul_par};

/// Buffers that live across steps.
#[derive(Debug, Default)]
pub(crate) struct OutputScratch {
    /// Logits, then their gradient, `V x B` (full softmax).
    pub logits: Vec<f32>,
    /// Gradient of the weights, `V x F`; rows outside `rows` are zero after a sampled step.
    pub d_w: Vec<f32>,
    /// Gradient of the biases, `V`.
    pub d_b: Vec<f32>,
    /// Rows written by the last sampled step (zeroed before the next), in the order written,
    /// with repeats.
    pub rows: Vec<u32>,
}

/// Shapes of one call.
pub(crate) struct Layer<'a> {
    /// Output weights, `V x F` row-major.
    pub w: &'a [f32],
    /// Output biases, `V`.
    pub b: &'a [f32],
    /// Tracks.
    pub v: usize,
    /// Feature width.
    pub f: usize,
}

/// Scores added to single logits before the softmax: `(row of the batch, track, value)` (the
/// repeat path; the full softmax only).
pub(crate) type Extra = [(usize, u32, f32)];

/// Mean cross-entropy of `features` (`B x F`) against `targets`; writes the features'
/// gradient into `d_features` and the layer's into `scratch`. `extra` must be empty with a
/// sampled softmax.
#[allow(clippy::too_many_arguments)]
pub(crate) fn cross_entropy(
    layer: &Layer,
    features: &[f32],
    targets: &[u32],
    extra: &Extra,
    softmax: &Softmax,
    rng: &mut ChaCha8Rng,
    scratch: &mut OutputScratch,
    d_features: &mut [f32],
) -> f32 {
    let Layer { w, v, f, .. } = *layer;
    let nb = targets.len();
    scratch.d_w.resize(v * f, 0.0);
    scratch.d_b.resize(v, 0.0);
    match softmax {
        Softmax::Full => {
            let loss = full_softmax(layer, features, targets, extra, scratch);
            let lt = &scratch.logits;
            // Every row of the weights gets a gradient: no stale rows to clear.
            scratch.rows.clear();
            let mut d_ft = vec![0.0f32; f * nb];
            matmul_par(&mut d_ft, false, w, true, lt, false, f, nb, v);
            for (j, row) in d_ft.chunks_exact(nb).enumerate() {
                for (bi, x) in row.iter().enumerate() {
                    d_features[bi * f + j] = *x;
                }
            }
            matmul_par(&mut scratch.d_w, false, lt, false, features, false, v, f, nb);
            bias_gradient(scratch, nb);
            loss
        }
        Softmax::Sampled { negatives, sampler } => {
            debug_assert!(extra.is_empty(), "extra scores need the full softmax");
            let neg = sampler.draw(*negatives, rng);
            sampled_softmax(layer, features, targets, &neg, &sampler.log_q, scratch, d_features)
        }
    }
}

/// The sampled softmax with logQ correction: every example scores its target and the batch's
/// shared negatives `neg` (an accidental hit is not a negative). The negatives' rows are
/// gathered once and scored with matrix products; the gradients of the rows touched land in
/// `scratch` (listed in `scratch.rows`).
fn sampled_softmax(
    layer: &Layer,
    features: &[f32],
    targets: &[u32],
    neg: &[u32],
    log_q: &[f32],
    scratch: &mut OutputScratch,
    d_features: &mut [f32],
) -> f32 {
    let Layer { w, b: bias, f, .. } = *layer;
    let (nb, nn) = (targets.len(), neg.len());
    let scale = 1.0 / nb as f32;
    for &r in &scratch.rows {
        let r = r as usize;
        scratch.d_w[r * f..(r + 1) * f].fill(0.0);
        scratch.d_b[r] = 0.0;
    }
    scratch.rows.clear();
    let ln_n = (nn as f32).ln();
    let shift = |t: u32| bias[t as usize] - (log_q[t as usize] + ln_n);
    let row = |t: u32| &w[t as usize * f..(t as usize + 1) * f];
    let mut wn = vec![0.0f32; nn * f];
    for (dst, &n) in wn.chunks_exact_mut(f).zip(neg) {
        dst.copy_from_slice(row(n));
    }
    // Scores of the negatives (B x N), then in place their gradient (softmax / B).
    let mut g = vec![0.0f32; nb * nn];
    matmul_par(&mut g, false, features, false, &wn, true, nb, nn, f);
    let neg_shift: Vec<f32> = neg.iter().map(|&n| shift(n)).collect();
    let per_example: Vec<(f64, f32)> = g
        .par_chunks_mut(nn.max(1))
        .zip(targets.par_iter())
        .enumerate()
        .map(|(bi, (scores, &y))| {
            let fb = &features[bi * f..(bi + 1) * f];
            let t = fb.iter().zip(row(y)).map(|(x, w)| x * w).sum::<f32>() + shift(y);
            for ((x, &n), sh) in scores.iter_mut().zip(neg).zip(&neg_shift) {
                *x = if n == y { f32::NEG_INFINITY } else { *x + sh };
            }
            let max = scores.iter().copied().fold(t, f32::max);
            let sum = (t - max).exp() + scores.iter().map(|s| (s - max).exp()).sum::<f32>();
            for x in scores.iter_mut() {
                *x = scale * ((*x - max).exp() / sum);
            }
            ((sum.ln() + max - t) as f64, scale * ((t - max).exp() / sum - 1.0))
        })
        .collect();
    let loss: f64 = per_example.iter().map(|p| p.0).sum();
    // d_features = G Wn + g_target w_y; d_Wn = G^T F.
    matmul_par(d_features, false, &g, false, &wn, false, nb, f, nn);
    let mut d_wn = vec![0.0f32; nn * f];
    matmul_par(&mut d_wn, false, &g, true, features, false, nn, f, nb);
    for (k, &n) in neg.iter().enumerate() {
        let r = n as usize;
        let dw = &mut scratch.d_w[r * f..(r + 1) * f];
        dw.iter_mut().zip(&d_wn[k * f..(k + 1) * f]).for_each(|(o, x)| *o += x);
        scratch.d_b[r] += (0..nb).map(|bi| g[bi * nn + k]).sum::<f32>();
        scratch.rows.push(n);
    }
    for (bi, (&y, &(_, gt))) in targets.iter().zip(&per_example).enumerate() {
        let fb = &features[bi * f..(bi + 1) * f];
        let df = &mut d_features[bi * f..(bi + 1) * f];
        df.iter_mut().zip(row(y)).for_each(|(o, x)| *o += gt * x);
        let r = y as usize;
        scratch.d_w[r * f..(r + 1) * f].iter_mut().zip(fb).for_each(|(o, x)| *o += gt * x);
        scratch.d_b[r] += gt;
        scratch.rows.push(y);
    }
    (loss / nb as f64) as f32
}

/// The full softmax's mean cross-entropy, `extra` scores added to their logits; leaves the
/// logits' gradient `(softmax - onehot) / B`
/// in `scratch.logits`, transposed (`V x B`): the products run 1.5-2x faster with the
/// catalogue as the long dimension of their destination (measured with the gemm crate at
/// V = 11,366, B = 32, F = 256).
pub(crate) fn full_softmax(
    layer: &Layer,
    features: &[f32],
    targets: &[u32],
    extra: &Extra,
    scratch: &mut OutputScratch,
) -> f32 {
    let Layer { w, b: bias, v, f } = *layer;
    let nb = targets.len();
    let scale = 1.0 / nb as f32;
    scratch.logits.resize(v * nb, 0.0);
    let lt = &mut scratch.logits;
    matmul_par(lt, false, w, false, features, true, v, nb, f);
    // Column-wise softmax over the catalogue in parallel blocks of rows; the blocks are
    // fixed, and their partial sums added in order, so the result does not depend on the
    // threads.
    let block = SOFTMAX_ROWS * nb;
    let max = lt
        .par_chunks_mut(block)
        .zip(bias.par_chunks(SOFTMAX_ROWS))
        .map(|(rows, bias)| {
            let mut max = vec![f32::NEG_INFINITY; nb];
            for (row, b) in rows.chunks_exact_mut(nb).zip(bias) {
                for (x, m) in row.iter_mut().zip(max.iter_mut()) {
                    *x += b;
                    *m = m.max(*x);
                }
            }
            max
        })
        .reduce_with(|a, b| a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect())
        .unwrap_or_default();
    // Added after the bias; the shift stays at least the column's largest logit.
    let mut max = max;
    for &(col, track, value) in extra {
        let x = &mut lt[track as usize * nb + col];
        *x += value;
        max[col] = max[col].max(*x);
    }
    let partial: Vec<Vec<f32>> = lt
        .par_chunks_mut(block)
        .map(|rows| {
            let mut sum = vec![0.0f32; nb];
            exp_shifted(rows, &max, &mut sum);
            sum
        })
        .collect();
    let mut sum = vec![0.0f32; nb];
    for p in &partial {
        sum.iter_mut().zip(p).for_each(|(s, x)| *s += x);
    }
    let mut loss = 0.0f64;
    for (col, &y) in targets.iter().enumerate() {
        loss += (sum[col].ln() - lt[y as usize * nb + col].ln()) as f64;
    }
    let inv: Vec<f32> = sum.iter().map(|s| scale / s).collect();
    lt.par_chunks_mut(block).for_each(|rows| {
        for row in rows.chunks_exact_mut(nb) {
            for (x, i) in row.iter_mut().zip(&inv) {
                *x *= i;
            }
        }
    });
    for (col, &y) in targets.iter().enumerate() {
        lt[y as usize * nb + col] -= scale;
    }
    (loss / nb as f64) as f32
}

/// The biases' gradient from the logits' gradient in `scratch.logits`.
pub(crate) fn bias_gradient(scratch: &mut OutputScratch, nb: usize) {
    let OutputScratch { logits, d_b, .. } = scratch;
    d_b.resize(logits.len() / nb, 0.0);
    for (d, row) in d_b.iter_mut().zip(logits.chunks_exact(nb)) {
        *d = row.iter().sum();
    }
}

segue_core::dispatch! {
    /// `x = e^(x - max)` for each row of `rows` (row-major, `max.len()` wide), summed per
    /// column into `sum`: one loop the compiler vectorises, `exp` included.
    fn exp_shifted(rows: &mut [f32], max: &[f32], sum: &mut [f32]) {
        for row in rows.chunks_exact_mut(max.len()) {
            for ((x, m), s) in row.iter_mut().zip(max).zip(sum.iter_mut()) {
                *x = segue_core::simd::exp(*x - m);
                *s += *x;
            }
        }
    }
}

/// Rows per parallel block of the softmax.
const SOFTMAX_ROWS: usize = 1024;

/// Rows of the weights per piece of [`full_backward_fused`]: the piece's gradient
/// (`ROWS x F`) stays in cache between its product and Adam's update.
const ROWS: usize = 128;
/// Contiguous parts of the catalogue, one rayon task each; a fixed number, so the features'
/// gradient sums the same partial sums in the same order whatever the threads do.
const PARTS: usize = 16;

/// After [`full_softmax`]: the features' gradient (`B x F`) and Adam's update of the weights
/// `w` (`V x F`, moments `m` and `v`) in one pass over the catalogue, piece by piece, so the
/// weights' gradient is never stored whole and the weights are read once for both.
#[allow(clippy::too_many_arguments)]
pub(crate) fn full_backward_fused(
    w: &mut [f32],
    m: &mut [f32],
    v: &mut [f32],
    consts: StepConsts,
    dlogits: &[f32],
    features: &[f32],
    d_features: &mut [f32],
    f: usize,
) {
    let nb = d_features.len() / f;
    let tracks = w.len() / f;
    let part = tracks.div_ceil(PARTS).max(1) * f;
    let partials: Vec<Vec<f32>> = w
        .par_chunks_mut(part)
        .zip(m.par_chunks_mut(part).zip(v.par_chunks_mut(part)))
        .enumerate()
        .map(|(p, (w, (m, v)))| {
            let mut d_feat = vec![0.0f32; nb * f];
            let mut grad = vec![0.0f32; ROWS * f];
            let first = p * (part / f);
            for (i, ((w, m), v)) in w
                .chunks_mut(ROWS * f)
                .zip(m.chunks_mut(ROWS * f))
                .zip(v.chunks_mut(ROWS * f))
                .enumerate()
            {
                let rows = w.len() / f;
                let dl = &dlogits[(first + i * ROWS) * nb..][..rows * nb];
                // The features' gradient with the weights before this step's update.
                matmul(&mut d_feat, true, dl, true, w, false, nb, f, rows);
                let g = &mut grad[..rows * f];
                matmul(g, false, dl, false, features, false, rows, f, nb);
                update_serial(w, g, m, v, consts);
            }
            d_feat
        })
        .collect();
    d_features.fill(0.0);
    for d_feat in &partials {
        d_features.iter_mut().zip(d_feat).for_each(|(a, b)| *a += b);
    }
}
