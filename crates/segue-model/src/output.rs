//! The output layer and its cross-entropy, forward and backward by hand.
//!
//! The output layer holds a row per track; through candle's graph each step would allocate
//! and add several catalogue-sized gradient tensors (the gradient store starts every
//! gradient as zeros and adds to it), which page faults made most of a step. Here logits,
//! softmax and the gradients of the features, weights and biases are computed with three
//! matrix products into buffers that live across steps.

use rand_chacha::ChaCha8Rng;

use crate::Softmax;
use crate::bigru::matmul_par;

/// Buffers that live across steps.
#[derive(Debug, Default)]
pub(crate) struct OutputScratch {
    logits: Vec<f32>,
    /// Gradient of the weights, `V x F`; rows outside `rows` are zero after a sampled step.
    pub d_w: Vec<f32>,
    /// Gradient of the biases, `V`.
    pub d_b: Vec<f32>,
    /// Rows written by the last sampled step (zeroed before the next).
    rows: Vec<u32>,
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

/// Mean cross-entropy of `features` (`B x F`) against `targets`; writes the features'
/// gradient into `d_features` and the layer's into `scratch`.
pub(crate) fn cross_entropy(
    layer: &Layer,
    features: &[f32],
    targets: &[u32],
    softmax: &Softmax,
    rng: &mut ChaCha8Rng,
    scratch: &mut OutputScratch,
    d_features: &mut [f32],
) -> f32 {
    let Layer { w, b: bias, v, f } = *layer;
    let nb = targets.len();
    scratch.d_w.resize(v * f, 0.0);
    scratch.d_b.resize(v, 0.0);
    let scale = 1.0 / nb as f32;
    match softmax {
        Softmax::Full => {
            scratch.logits.resize(nb * v, 0.0);
            let logits = &mut scratch.logits;
            matmul_par(logits, false, features, false, w, true, nb, v, f);
            let mut loss = 0.0f64;
            for (row, &y) in logits.chunks_exact_mut(v).zip(targets) {
                let mut max = f32::NEG_INFINITY;
                for (l, b) in row.iter_mut().zip(bias) {
                    *l += b;
                    max = max.max(*l);
                }
                let mut sum = 0.0f32;
                for l in row.iter_mut() {
                    *l = (*l - max).exp();
                    sum += *l;
                }
                loss += (sum.ln() - (row[y as usize].ln())) as f64;
                // d logits = (softmax - onehot) / B
                let inv = scale / sum;
                for l in row.iter_mut() {
                    *l *= inv;
                }
                row[y as usize] -= scale;
            }
            // Every row of the weights gets a gradient: no stale rows to clear.
            scratch.rows.clear();
            matmul_par(d_features, false, logits, false, w, false, nb, f, v);
            matmul_par(&mut scratch.d_w, false, logits, true, features, false, v, f, nb);
            scratch.d_b.fill(0.0);
            for row in logits.chunks_exact(v) {
                for (d, l) in scratch.d_b.iter_mut().zip(row) {
                    *d += l;
                }
            }
            (loss / nb as f64) as f32
        }
        Softmax::Sampled { negatives, sampler } => {
            for &r in &scratch.rows {
                let r = r as usize;
                scratch.d_w[r * f..(r + 1) * f].fill(0.0);
                scratch.d_b[r] = 0.0;
            }
            scratch.rows.clear();
            let neg = sampler.draw(*negatives, rng);
            let ln_n = (*negatives as f32).ln();
            let q = |t: u32| sampler.log_q[t as usize] + ln_n;
            let dot = |a: &[f32], r: u32| -> f32 {
                a.iter().zip(&w[r as usize * f..(r as usize + 1) * f]).map(|(x, y)| x * y).sum()
            };
            d_features.fill(0.0);
            let mut loss = 0.0f64;
            let mut scores = vec![0.0f32; neg.len() + 1];
            for (bi, &y) in targets.iter().enumerate() {
                let fb = &features[bi * f..(bi + 1) * f];
                scores[0] = dot(fb, y) + bias[y as usize] - q(y);
                for (s, &n) in scores[1..].iter_mut().zip(&neg) {
                    // logQ correction; an accidental hit is not a negative.
                    *s = if n == y {
                        f32::NEG_INFINITY
                    } else {
                        dot(fb, n) + bias[n as usize] - q(n)
                    };
                }
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let sum: f32 = scores.iter().map(|s| (s - max).exp()).sum();
                loss += (sum.ln() + max - scores[0]) as f64;
                let df = &mut d_features[bi * f..(bi + 1) * f];
                for (k, &s) in scores.iter().enumerate() {
                    let p = (s - max).exp() / sum;
                    let g = scale * (p - if k == 0 { 1.0 } else { 0.0 });
                    if g == 0.0 {
                        continue;
                    }
                    let r = if k == 0 { y } else { neg[k - 1] } as usize;
                    let wr = &w[r * f..(r + 1) * f];
                    for j in 0..f {
                        df[j] += g * wr[j];
                    }
                    let dw = &mut scratch.d_w[r * f..(r + 1) * f];
                    for j in 0..f {
                        dw[j] += g * fb[j];
                    }
                    scratch.d_b[r] += g;
                    scratch.rows.push(r as u32);
                }
            }
            (loss / nb as f64) as f32
        }
    }
}
