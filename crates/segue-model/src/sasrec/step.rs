//! SASRec's training step by hand: forward and backward of every layer over plain buffers,
//! without candle's graph.
//!
//! Through the graph, a step of 256 sequences spent most of its time outside the matrix
//! products: small element-wise tensors, each allocated and zeroed, a gradient store that
//! starts every gradient as zeros and adds to it, and candle's thread pool waking for each.
//! Here the products run on rayon's threads, attention runs one sequence per task, and the
//! buffers live across steps. [`SasRec::loss`] (the graph of the same model) is the reference
//! the tests compare every gradient with; the dropout masks are drawn in the graph's order,
//! so both see the same ones.

use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use segue_core::simd::dot;
use segue_core::{Error, Result};

use super::{LAYER_NORM_EPS, MASKED, SasRec, SasRecParams};
use crate::Softmax;
use crate::bigru::matmul_par;
use crate::data::Batch;
use crate::fusion::step::add_bias;
use crate::fusion::{dropout_into, param};
use crate::output::{Layer, OutputScratch, cross_entropy};

/// What one encoder block keeps from its forward pass for the backward one.
#[derive(Debug, Default)]
struct BlockSaved {
    /// The block's input (`N x H`, N = B x T positions).
    input: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    /// Attention weights, `B x heads x T x T`, before and after dropout.
    probs: Vec<f32>,
    dropped: Vec<f32>,
    attn_mask: Vec<f32>,
    context: Vec<f32>,
    out_mask: Vec<f32>,
    norm1: LayerNormSaved,
    /// The block's middle state (after the first layer norm).
    middle: Vec<f32>,
    /// The feed-forward layer before GELU, the normal CDF of it, and after GELU
    /// (`N x inner` each).
    inner: Vec<f32>,
    cdf: Vec<f32>,
    activated: Vec<f32>,
    ff_mask: Vec<f32>,
    norm2: LayerNormSaved,
}

/// A layer norm's normalised rows and their reciprocal deviations.
#[derive(Debug, Default)]
struct LayerNormSaved {
    normed: Vec<f32>,
    inv_std: Vec<f32>,
}

/// Buffers of SASRec's training step that live across steps: allocating them every step
/// (megabytes each) cost page faults.
#[derive(Debug, Default)]
pub struct SasRecScratch {
    pub(super) output: OutputScratch,
    zero_bias: Vec<f32>,
    items: Vec<u32>,
    embed_norm: LayerNormSaved,
    embed_mask: Vec<f32>,
    blocks: Vec<BlockSaved>,
    x: Vec<f32>,
    /// Gradients, one per variable in [`SasRec::vars`]'s order.
    pub(super) grads: Vec<Vec<f32>>,
}

/// The widths of one step.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    h: usize,
    heads: usize,
    inner: usize,
}

impl Dims {
    fn n(&self) -> usize {
        self.b * self.t
    }

    fn dh(&self) -> usize {
        self.h / self.heads
    }
}

/// `buf` as `len` zeros, reusing its memory.
fn zeroed(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buf.clear();
    buf.resize(len, 0.0);
    buf
}

/// Rows per task of the row-wise loops below: a fixed split, so the sums over rows (bias
/// and gain gradients) add in the same order whatever the number of threads.
const ROWS_PER_TASK: usize = 256;

/// Values per task of the element-wise loops below.
const VALUES_PER_TASK: usize = 4096;

/// Two distinct elements of `v`, both mutable.
fn two_mut(v: &mut [Vec<f32>], a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
    assert_ne!(a, b, "two distinct variables");
    if a < b {
        let (left, right) = v.split_at_mut(b);
        (&mut left[a], &mut right[0])
    } else {
        let (left, right) = v.split_at_mut(a);
        (&mut right[0], &mut left[b])
    }
}

/// The gradients of a block's parameters `{name}.w` and `{name}.b` (`index` maps a short name
/// to its variable).
fn weight_and_bias<'g>(
    grads: &'g mut [Vec<f32>],
    index: &dyn Fn(&str) -> usize,
    name: &str,
) -> (&'g mut [f32], &'g mut [f32]) {
    two_mut(grads, index(&format!("{name}.w")), index(&format!("{name}.b")))
}

/// Multiplies `x` by a dropout mask (none when the mask is empty: no dropout).
fn apply_mask(x: &mut [f32], mask: &[f32]) {
    if !mask.is_empty() {
        let tasks = x.par_chunks_mut(VALUES_PER_TASK).zip(mask.par_chunks(VALUES_PER_TASK));
        tasks.for_each(|(x, m)| x.iter_mut().zip(m).for_each(|(x, m)| *x *= m));
    }
}

/// `x += y`, element by element.
fn add_into(x: &mut [f32], y: &[f32]) {
    let tasks = x.par_chunks_mut(VALUES_PER_TASK).zip(y.par_chunks(VALUES_PER_TASK));
    tasks.for_each(|(x, y)| x.iter_mut().zip(y).for_each(|(x, y)| *x += y));
}

/// Column sums of the row-major `rows` (the gradient of a bias added to every row), by
/// blocks of [`ROWS_PER_TASK`] rows on rayon's threads, the blocks' sums added in order.
fn column_sums(rows: &[f32], width: usize) -> Vec<f32> {
    let parts: Vec<Vec<f32>> = rows
        .par_chunks(ROWS_PER_TASK * width)
        .map(|block| crate::fusion::step::column_sums(block, width))
        .collect();
    let mut out = vec![0f32; width];
    for part in parts {
        out.iter_mut().zip(part).for_each(|(o, p)| *o += p);
    }
    out
}

/// `y = x W^T + b` for the `n` rows of `x`; `W` is `out x inp`.
fn linear(x: &[f32], w: &[f32], b: &[f32], y: &mut Vec<f32>, n: usize, out: usize, inp: usize) {
    // Every value is written by the product: no zeroing.
    y.resize(n * out, 0.0);
    matmul_par(y, false, x, false, w, true, n, out, inp);
    y.par_chunks_mut(ROWS_PER_TASK * out).for_each(|rows| add_bias(rows, b));
}

/// The gradients of `y = x W^T + b` from `dy`: `dW = dy^T x`, `db` the column sums, and
/// `dx (+)= dy W` when `dx` is given.
#[allow(clippy::too_many_arguments)]
fn linear_backward(
    dy: &[f32],
    x: &[f32],
    w: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: Option<(&mut [f32], bool)>,
    n: usize,
    out: usize,
    inp: usize,
) {
    matmul_par(dw, false, dy, true, x, false, out, inp, n);
    db.copy_from_slice(&column_sums(dy, out));
    if let Some((dx, accumulate)) = dx {
        matmul_par(dx, accumulate, dy, false, w, false, n, inp, out);
    }
}

/// Layer norm of each `h`-wide row of `x` (as [`SasRec`]'s graph computes it), into `y`.
fn layer_norm(x: &[f32], w: &[f32], b: &[f32], saved: &mut LayerNormSaved, y: &mut Vec<f32>) {
    let h = w.len();
    y.resize(x.len(), 0.0);
    saved.normed.resize(x.len(), 0.0);
    saved.inv_std.resize(x.len() / h, 0.0);
    let chunk = ROWS_PER_TASK * h;
    let outputs =
        saved.normed.par_chunks_mut(chunk).zip(saved.inv_std.par_chunks_mut(ROWS_PER_TASK));
    let tasks = x.par_chunks(chunk).zip(y.par_chunks_mut(chunk)).zip(outputs);
    tasks.for_each(|((x, y), (normed, inv_std))| {
        let rows = x.chunks_exact(h).zip(y.chunks_exact_mut(h));
        for ((row, out), (nrow, is)) in rows.zip(normed.chunks_exact_mut(h).zip(inv_std)) {
            let mean = row.iter().sum::<f32>() / h as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / h as f32;
            *is = 1.0 / (var + LAYER_NORM_EPS).sqrt();
            for (((o, n), v), (g, c)) in out.iter_mut().zip(nrow).zip(row).zip(w.iter().zip(b)) {
                *n = (v - mean) * *is;
                *o = *n * g + c;
            }
        }
    });
}

/// The gradients of [`layer_norm`] from `dy`: into `dx`, and the gain's and bias's (summed by blocks of [`ROWS_PER_TASK`] rows, the blocks in order).
fn layer_norm_backward(
    dy: &[f32],
    saved: &LayerNormSaved,
    w: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    dx: &mut [f32],
) {
    let h = w.len();
    let chunk = ROWS_PER_TASK * h;
    let inputs = saved.normed.par_chunks(chunk).zip(saved.inv_std.par_chunks(ROWS_PER_TASK));
    let tasks = dy.par_chunks(chunk).zip(dx.par_chunks_mut(chunk)).zip(inputs);
    let parts: Vec<(Vec<f32>, Vec<f32>)> = tasks
        .map(|((dy, dx), (normed, inv_std))| {
            let (mut dw, mut db, mut dn) = (vec![0f32; h], vec![0f32; h], vec![0f32; h]);
            let rows = dy.chunks_exact(h).zip(dx.chunks_exact_mut(h));
            for ((dyr, dxr), (nr, &is)) in rows.zip(normed.chunks_exact(h).zip(inv_std)) {
                for j in 0..h {
                    dn[j] = dyr[j] * w[j];
                    dw[j] += dyr[j] * nr[j];
                    db[j] += dyr[j];
                }
                let mean_dn = dn.iter().sum::<f32>() / h as f32;
                let mean_dn_n = dn.iter().zip(nr).map(|(a, b)| a * b).sum::<f32>() / h as f32;
                for j in 0..h {
                    dxr[j] = is * (dn[j] - mean_dn - nr[j] * mean_dn_n);
                }
            }
            (dw, db)
        })
        .collect();
    dw.fill(0.0);
    db.fill(0.0);
    for (pw, pb) in parts {
        dw.iter_mut().zip(pw).for_each(|(a, b)| *a += b);
        db.iter_mut().zip(pb).for_each(|(a, b)| *a += b);
    }
}

/// Backward through `LayerNorm(residual + dropout(branch))` from the gradient of its output:
/// the gradients reaching the residual and the branch (through its dropout mask); the norm's
/// gain and bias gradients into `dw` and `db`.
fn residual_norm_backward(
    d_out: &[f32],
    saved: &LayerNormSaved,
    w: &[f32],
    dw: &mut [f32],
    db: &mut [f32],
    mask: &[f32],
) -> (Vec<f32>, Vec<f32>) {
    let mut d_residual = vec![0f32; d_out.len()];
    layer_norm_backward(d_out, saved, w, dw, db, &mut d_residual);
    let mut d_branch = d_residual.clone();
    apply_mask(&mut d_branch, mask);
    (d_residual, d_branch)
}

/// The normal CDF `Phi(x) = (1 + erf(x / sqrt 2)) / 2`, with the error function candle's
/// `gelu_erf` uses.
fn normal_cdf(x: f32) -> f32 {
    (libm::erff(x * std::f32::consts::FRAC_1_SQRT_2) + 1.0) * 0.5
}

/// GELU's derivative `Phi(x) + x phi(x)`, given `Phi(x)`.
fn gelu_grad(x: f32, cdf: f32) -> f32 {
    cdf + x * (-0.5 * x * x).exp() * 0.398_942_3
}

impl SasRec {
    fn index(&self, name: &str) -> usize {
        self.vars.iter().position(|(n, _)| n == name).expect("a SASRec variable")
    }

    /// The values of variable `name`.
    fn values(&self, name: &str) -> Result<Vec<f32>> {
        param(&self.vars, name).flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(crate::err)
    }

    /// Loss of a training batch (with dropout) and the gradient of every variable, into
    /// `scratch.grads` in [`SasRec::vars`]'s order: the values candle's graph of
    /// [`SasRec::loss`] gives, without the graph.
    pub(super) fn step_gradients(
        &self,
        batch: &Batch,
        rng: &mut ChaCha8Rng,
        scratch: &mut SasRecScratch,
    ) -> Result<f32> {
        let SasRecParams { hidden: h, heads, inner, layers, dropout, .. } = self.config.params;
        let d = Dims { b: batch.len(), t: batch.width, h, heads, inner };
        if d.t > self.config.max_len {
            return Err(Error::Config(format!(
                "an input of {} tracks; SASRec has {} positions",
                d.t, self.config.max_len
            )));
        }
        let n = d.n();
        let values: Vec<Vec<f32>> =
            self.vars.iter().map(|(name, _)| self.values(name)).collect::<Result<_>>()?;
        let value = |name: &str| &values[self.index(name)];
        // Items: track + 1 at real positions, 0 (padding) after.
        scratch.items.clear();
        scratch.items.extend(
            batch
                .ids
                .iter()
                .enumerate()
                .map(|(g, &id)| if g % d.t < batch.lengths[g / d.t] { id + 1 } else { 0 }),
        );
        // Embeddings, layer norm, dropout.
        let (item, pos) = (value("item"), value("pos"));
        let mut embedded = vec![0f32; n * h];
        for (g, (row, &it)) in embedded.chunks_exact_mut(h).zip(&scratch.items).enumerate() {
            let (e, p) = (&item[it as usize * h..][..h], &pos[(g % d.t) * h..][..h]);
            row.iter_mut().zip(e.iter().zip(p)).for_each(|(o, (a, b))| *o = a + b);
        }
        let mut x = std::mem::take(&mut scratch.x);
        layer_norm(&embedded, value("ln.w"), value("ln.b"), &mut scratch.embed_norm, &mut x);
        dropout_into(rng, n * h, dropout, &mut scratch.embed_mask);
        apply_mask(&mut x, &scratch.embed_mask);
        scratch.blocks.resize_with(layers, BlockSaved::default);
        for l in 0..layers {
            let w = |name: &str| value(&format!("l{l}.{name}"));
            let s = &mut scratch.blocks[l];
            s.input.clone_from(&x);
            self.block_forward(d, &w, &scratch.items, s, &mut x, rng);
        }
        // The output at each row's last real position, scored against the item table.
        let mut features = vec![0f32; d.b * h];
        for (r, (f, &len)) in features.chunks_exact_mut(h).zip(&batch.lengths).enumerate() {
            f.copy_from_slice(&x[(r * d.t + len - 1) * h..][..h]);
        }
        let v = self.config.tracks;
        scratch.zero_bias.resize(v, 0.0);
        let mut d_features = vec![0f32; d.b * h];
        let layer = Layer { w: &item[h..], b: &scratch.zero_bias, v, f: h };
        let loss = cross_entropy(
            &layer,
            &features,
            &batch.targets,
            &[],
            &Softmax::Full,
            rng,
            &mut scratch.output,
            &mut d_features,
        );
        // Backward.
        let grads = &mut scratch.grads;
        grads.resize_with(values.len(), Vec::new);
        for (g, v) in grads.iter_mut().zip(&values) {
            zeroed(g, v.len());
        }
        let mut dx = x;
        zeroed(&mut dx, n * h);
        for (r, (df, &len)) in d_features.chunks_exact(h).zip(&batch.lengths).enumerate() {
            dx[(r * d.t + len - 1) * h..][..h].copy_from_slice(df);
        }
        for l in (0..layers).rev() {
            let w = |name: &str| value(&format!("l{l}.{name}"));
            let index = |name: &str| self.index(&format!("l{l}.{name}"));
            self.block_backward(d, &w, &index, &scratch.blocks[l], &mut dx, grads);
        }
        apply_mask(&mut dx, &scratch.embed_mask);
        let mut d_embedded = vec![0f32; n * h];
        let (dw, db) = two_mut(grads, self.index("ln.w"), self.index("ln.b"));
        layer_norm_backward(&dx, &scratch.embed_norm, value("ln.w"), dw, db, &mut d_embedded);
        let d_item = &mut grads[self.index("item")];
        d_item[h..].copy_from_slice(&scratch.output.d_w[..v * h]);
        for (row, &it) in d_embedded.chunks_exact(h).zip(&scratch.items) {
            let dst = &mut d_item[it as usize * h..][..h];
            dst.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        let d_pos = &mut grads[self.index("pos")];
        for (g, row) in d_embedded.chunks_exact(h).enumerate() {
            let dst = &mut d_pos[(g % d.t) * h..][..h];
            dst.iter_mut().zip(row).for_each(|(a, b)| *a += b);
        }
        scratch.x = dx;
        Ok(loss)
    }

    /// One encoder block forward, from `x` (its input) into `x`; `w` gives the block's
    /// weights by short name.
    fn block_forward<'w>(
        &self,
        d: Dims,
        w: &dyn Fn(&str) -> &'w Vec<f32>,
        items: &[u32],
        s: &mut BlockSaved,
        x: &mut Vec<f32>,
        rng: &mut ChaCha8Rng,
    ) {
        let SasRecParams { dropout, attn_dropout, .. } = self.config.params;
        let (n, h, f) = (d.n(), d.h, d.inner);
        linear(&s.input, w("q.w"), w("q.b"), &mut s.q, n, h, h);
        linear(&s.input, w("k.w"), w("k.b"), &mut s.k, n, h, h);
        linear(&s.input, w("v.w"), w("v.b"), &mut s.v, n, h, h);
        let t = d.t;
        attention_probs(d, &s.q, &s.k, items, zeroed(&mut s.probs, d.b * d.heads * t * t));
        dropout_into(rng, d.b * d.heads * t * t, attn_dropout, &mut s.attn_mask);
        s.dropped.clone_from(&s.probs);
        apply_mask(&mut s.dropped, &s.attn_mask);
        attention_context(d, &s.dropped, &s.v, zeroed(&mut s.context, n * h));
        let mut attended = Vec::new();
        linear(&s.context, w("o.w"), w("o.b"), &mut attended, n, h, h);
        dropout_into(rng, n * h, dropout, &mut s.out_mask);
        apply_mask(&mut attended, &s.out_mask);
        add_into(&mut attended, &s.input);
        layer_norm(&attended, w("ln1.w"), w("ln1.b"), &mut s.norm1, &mut s.middle);
        linear(&s.middle, w("ff1.w"), w("ff1.b"), &mut s.inner, n, f, h);
        // GELU as candle's gelu_erf: (erf(x / sqrt 2) + 1) / 2 * x.
        s.cdf.resize(n * f, 0.0);
        s.activated.resize(n * f, 0.0);
        let chunks =
            s.cdf.par_chunks_mut(VALUES_PER_TASK).zip(s.activated.par_chunks_mut(VALUES_PER_TASK));
        s.inner.par_chunks(VALUES_PER_TASK).zip(chunks).for_each(|(x, (cdf, out))| {
            for ((&v, c), o) in x.iter().zip(cdf).zip(out) {
                *c = normal_cdf(v);
                *o = *c * v;
            }
        });
        let mut ff = Vec::new();
        linear(&s.activated, w("ff2.w"), w("ff2.b"), &mut ff, n, h, f);
        dropout_into(rng, n * h, dropout, &mut s.ff_mask);
        apply_mask(&mut ff, &s.ff_mask);
        add_into(&mut ff, &s.middle);
        layer_norm(&ff, w("ln2.w"), w("ln2.b"), &mut s.norm2, x);
    }

    /// One encoder block backward: `dx` holds the gradient of its output and becomes that of
    /// its input; the block's weight gradients land in `grads` (`index` maps a short name to
    /// its variable).
    fn block_backward<'w>(
        &self,
        d: Dims,
        w: &dyn Fn(&str) -> &'w Vec<f32>,
        index: &dyn Fn(&str) -> usize,
        s: &BlockSaved,
        dx: &mut Vec<f32>,
        grads: &mut [Vec<f32>],
    ) {
        let (n, h, f) = (d.n(), d.h, d.inner);
        // Second layer norm, over middle + ff; d_middle gets the residual's part here and the
        // feed-forward's below.
        let (dw, db) = weight_and_bias(grads, index, "ln2");
        let (mut d_middle, d_ff) =
            residual_norm_backward(dx, &s.norm2, w("ln2.w"), dw, db, &s.ff_mask);
        let mut d_act = vec![0f32; n * f];
        let (dw, db) = weight_and_bias(grads, index, "ff2");
        let dx_ff2 = Some((&mut d_act[..], false));
        linear_backward(&d_ff, &s.activated, w("ff2.w"), dw, db, dx_ff2, n, h, f);
        let act = d_act
            .par_chunks_mut(VALUES_PER_TASK)
            .zip(s.inner.par_chunks(VALUES_PER_TASK).zip(s.cdf.par_chunks(VALUES_PER_TASK)));
        act.for_each(|(g, (x, cdf))| {
            for (g, (&v, &c)) in g.iter_mut().zip(x.iter().zip(cdf)) {
                *g *= gelu_grad(v, c);
            }
        });
        let (dw, db) = weight_and_bias(grads, index, "ff1");
        let dx_ff1 = Some((&mut d_middle[..], true));
        linear_backward(&d_act, &s.middle, w("ff1.w"), dw, db, dx_ff1, n, f, h);
        // First layer norm, over input + attended; the input gets the residual's part here and
        // the attention's below.
        let (dw, db) = weight_and_bias(grads, index, "ln1");
        let (d_input, d_att) =
            residual_norm_backward(&d_middle, &s.norm1, w("ln1.w"), dw, db, &s.out_mask);
        let mut d_context = vec![0f32; n * h];
        let (dw, db) = weight_and_bias(grads, index, "o");
        let dx_o = Some((&mut d_context[..], false));
        linear_backward(&d_att, &s.context, w("o.w"), dw, db, dx_o, n, h, h);
        let (mut dq, mut dk, mut dv) = (vec![0f32; n * h], vec![0f32; n * h], vec![0f32; n * h]);
        attention_backward(d, s, &d_context, &mut dq, &mut dk, &mut dv);
        *dx = d_input;
        for (name, dy) in [("q", &dq), ("k", &dk), ("v", &dv)] {
            let (dw, db) = weight_and_bias(grads, index, name);
            let wv = w(&format!("{name}.w"));
            linear_backward(dy, &s.input, wv, dw, db, Some((&mut dx[..], true)), n, h, h);
        }
    }
}

/// Masked, scaled attention weights of every row and head (`B x heads x T x T`): a key is
/// visible when it is real and not after the query; a masked score gets [`MASKED`] added, as
/// in the graph.
fn attention_probs(d: Dims, q: &[f32], k: &[f32], items: &[u32], probs: &mut [f32]) {
    let (t, h, dh) = (d.t, d.h, d.dh());
    let scale = (1.0 / (dh as f64).sqrt()) as f32;
    probs.par_chunks_mut(d.heads * t * t).enumerate().for_each(|(r, row_probs)| {
        for (hd, p) in row_probs.chunks_exact_mut(t * t).enumerate() {
            for i in 0..t {
                let qi = &q[(r * t + i) * h + hd * dh..][..dh];
                let pi = &mut p[i * t..][..t];
                for (j, s) in pi.iter_mut().enumerate() {
                    let kj = &k[(r * t + j) * h + hd * dh..][..dh];
                    let visible = j <= i && items[r * t + j] != 0;
                    *s = dot(qi, kj) * scale + if visible { 0.0 } else { MASKED };
                }
                let top = pi.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                pi.iter_mut().for_each(|v| *v = (*v - top).exp());
                let sum: f32 = pi.iter().sum();
                pi.iter_mut().for_each(|v| *v /= sum);
            }
        }
    });
}

/// `context[r, i, head] = sum over j of probs[r, head, i, j] v[r, j, head]`.
fn attention_context(d: Dims, probs: &[f32], v: &[f32], context: &mut [f32]) {
    let (t, h, dh) = (d.t, d.h, d.dh());
    context.par_chunks_mut(t * h).enumerate().for_each(|(r, ctx)| {
        for hd in 0..d.heads {
            let p = &probs[(r * d.heads + hd) * t * t..][..t * t];
            for i in 0..t {
                let out = &mut ctx[i * h + hd * dh..][..dh];
                for j in 0..t {
                    let pij = p[i * t + j];
                    let vj = &v[(r * t + j) * h + hd * dh..][..dh];
                    out.iter_mut().zip(vj).for_each(|(o, x)| *o += pij * x);
                }
            }
        }
    });
}

/// The gradients of q, k and v from the context's, through the dropout on the weights and
/// the softmax.
fn attention_backward(
    d: Dims,
    s: &BlockSaved,
    d_context: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    dv: &mut [f32],
) {
    let (t, h, dh) = (d.t, d.h, d.dh());
    let scale = (1.0 / (dh as f64).sqrt()) as f32;
    let rows = dq.par_chunks_mut(t * h).zip(dk.par_chunks_mut(t * h)).zip(dv.par_chunks_mut(t * h));
    rows.enumerate().for_each(|(r, ((dq, dk), dv))| {
        let mut d_probs = vec![0f32; t * t];
        for hd in 0..d.heads {
            let at = (r * d.heads + hd) * t * t;
            let (p, pd) = (&s.probs[at..][..t * t], &s.dropped[at..][..t * t]);
            let mask = (!s.attn_mask.is_empty()).then(|| &s.attn_mask[at..][..t * t]);
            // Head hd's columns of position g within this row.
            let col = |g: usize| g * h + hd * dh..g * h + hd * dh + dh;
            for i in 0..t {
                let dci = &d_context[(r * t + i) * h + hd * dh..][..dh];
                for j in 0..t {
                    let vj = &s.v[(r * t + j) * h + hd * dh..][..dh];
                    let dpd = dot(dci, vj);
                    d_probs[i * t + j] = dpd * mask.map_or(1.0, |m| m[i * t + j]);
                    let pdij = pd[i * t + j];
                    dv[col(j)].iter_mut().zip(dci).for_each(|(o, g)| *o += pdij * g);
                }
                let pi = &p[i * t..][..t];
                let dpi = &mut d_probs[i * t..][..t];
                let inner = dot(pi, dpi);
                for (dp, &pv) in dpi.iter_mut().zip(pi) {
                    *dp = pv * (*dp - inner) * scale;
                }
                let qi = &s.q[(r * t + i) * h + hd * dh..][..dh];
                for j in 0..t {
                    let ds = dpi[j];
                    let kj = &s.k[(r * t + j) * h + hd * dh..][..dh];
                    dq[col(i)].iter_mut().zip(kj).for_each(|(o, x)| *o += ds * x);
                    dk[col(j)].iter_mut().zip(qi).for_each(|(o, x)| *o += ds * x);
                }
            }
        }
    });
}
