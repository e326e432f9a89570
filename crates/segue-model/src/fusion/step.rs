//! The fused model's training step by hand: forward and backward of every layer over plain
//! buffers, without candle's graph.
//!
//! Through candle's graph and gradient store the layers between the table rows and the output
//! layer (input projection, attention, the FC layer) were about a third of a step: small
//! tensor operations, each allocating, and a gradient store that starts every gradient as
//! zeros and adds to it. Here they are a few matrix products into plain buffers; the
//! catalogue-long input and output products run on rayon's threads. [`Fusion::loss`]
//! (candle's graph of the same model) is the reference the tests compare every gradient with.

use std::iter::once;

use rand_chacha::ChaCha8Rng;
use segue_core::{Error, Result};

use super::{Fusion, NamedGradients, Scratch, cpu_f32, dropout_values};
use crate::Softmax;
use crate::bigru::{BiGru, matmul, matmul_par, tanh};
use crate::data::Batch;
use crate::output::{Layer, bias_gradient, cross_entropy, full_backward_fused, full_softmax};

pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Adds `bias` to every row of `rows`.
pub(crate) fn add_bias(rows: &mut [f32], bias: &[f32]) {
    for row in rows.chunks_exact_mut(bias.len()) {
        for (x, b) in row.iter_mut().zip(bias) {
            *x += b;
        }
    }
}

/// Column sums of the row-major `rows` (the gradient of a bias added to every row).
pub(crate) fn column_sums(rows: &[f32], width: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; width];
    for row in rows.chunks_exact(width) {
        for (o, x) in out.iter_mut().zip(row) {
            *o += x;
        }
    }
    out
}

/// Each table's gradient at the real positions, through its dropout mask, added into the
/// table-sized gradients (a track at several positions adds up).
fn scatter_to_tables(
    d_tables: &mut Vec<Vec<f32>>,
    d_rows: &mut [Vec<f32>],
    masks: &[Option<Vec<f32>>],
    dims: &[usize],
    real: &[u32],
    tracks: usize,
) {
    d_tables.resize(dims.len(), Vec::new());
    for (k, (&dim, d_row)) in dims.iter().zip(d_rows.iter_mut()).enumerate() {
        if let Some(m) = &masks[k] {
            d_row.iter_mut().zip(m).for_each(|(x, k)| *x *= k);
        }
        let table = &mut d_tables[k];
        table.resize(tracks * dim, 0.0);
        for (pos, &id) in real.iter().enumerate() {
            let row = &mut table[id as usize * dim..][..dim];
            row.iter_mut().zip(&d_row[pos * dim..][..dim]).for_each(|(a, b)| *a += b);
        }
    }
}

/// The batch's grid (B rows of T positions, each row's first `lengths[b]` real) and the map
/// of its real positions to their rows in the gathered tables.
struct Grid<'a> {
    lengths: &'a [usize],
    grid: &'a [u32],
    nt: usize,
    h: usize,
}

impl Grid<'_> {
    fn is_real(&self, g: usize) -> bool {
        g % self.nt < self.lengths[g / self.nt]
    }

    /// Attention: u = tanh(W s + b), score = v . u, softmax over each row's real positions.
    fn attention(
        &self,
        states: &[f32],
        att_w: &[f32],
        att_b: &[f32],
        att_v: &[f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let (nt, h) = (self.nt, self.h);
        let bt = self.lengths.len() * nt;
        let mut u = vec![0.0f32; bt * h];
        matmul(&mut u, false, states, false, att_w, true, bt, h, h);
        for row in u.chunks_exact_mut(h) {
            for (x, b) in row.iter_mut().zip(att_b) {
                *x = tanh(*x + b);
            }
        }
        let mut alpha = vec![0.0f32; bt];
        for (b, &len) in self.lengths.iter().enumerate() {
            let a = &mut alpha[b * nt..][..len];
            for (t, s) in a.iter_mut().enumerate() {
                *s = dot(&u[(b * nt + t) * h..][..h], att_v);
            }
            let max = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for s in a.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            a.iter_mut().for_each(|s| *s /= sum);
        }
        (u, alpha)
    }

    /// Context vectors [c1; c2; ...] with the same weights: B x `width`.
    fn pool(
        &self,
        alpha: &[f32],
        states: &[f32],
        rows: &[Vec<f32>],
        dims: &[usize],
        width: usize,
    ) -> Vec<f32> {
        let (nt, h) = (self.nt, self.h);
        let bt = self.lengths.len() * nt;
        let mut joined = vec![0.0f32; self.lengths.len() * width];
        for g in (0..bt).filter(|&g| self.is_real(g)) {
            let (a, r) = (alpha[g], self.grid[g] as usize);
            let out = &mut joined[(g / nt) * width..][..width];
            let (c1, mut rest) = out.split_at_mut(h);
            c1.iter_mut().zip(&states[g * h..][..h]).for_each(|(o, s)| *o += a * s);
            for (k, &d) in dims.iter().enumerate().skip(1) {
                let (ck, tail) = rest.split_at_mut(d);
                ck.iter_mut().zip(&rows[k][r * d..][..d]).for_each(|(o, s)| *o += a * s);
                rest = tail;
            }
        }
        joined
    }

    /// Back through the pooling: the states' gradient, the content rows' (into `d_rows[1..]`)
    /// and each position's attention score's (through the softmax).
    fn pool_backward(
        &self,
        d_joined: &[f32],
        alpha: &[f32],
        states: &[f32],
        rows: &[Vec<f32>],
        dims: &[usize],
        d_rows: &mut [Vec<f32>],
    ) -> (Vec<f32>, Vec<f32>) {
        let (nt, h) = (self.nt, self.h);
        let bt = self.lengths.len() * nt;
        let width = d_joined.len() / self.lengths.len().max(1);
        let mut d_states = vec![0.0f32; bt * h];
        let mut d_score = vec![0.0f32; bt];
        for (b, &len) in self.lengths.iter().enumerate() {
            let dj = &d_joined[b * width..][..width];
            let mut weighted = 0.0f32;
            for t in 0..len {
                let g = b * nt + t;
                let (a, r) = (alpha[g], self.grid[g] as usize);
                let mut d_alpha = dot(&dj[..h], &states[g * h..][..h]);
                d_states[g * h..][..h].iter_mut().zip(&dj[..h]).for_each(|(o, d)| *o = a * d);
                let mut off = h;
                for (k, &d) in dims.iter().enumerate().skip(1) {
                    let dk = &dj[off..off + d];
                    d_alpha += dot(dk, &rows[k][r * d..][..d]);
                    d_rows[k][r * d..][..d].iter_mut().zip(dk).for_each(|(o, x)| *o = a * x);
                    off += d;
                }
                d_score[g] = d_alpha;
                weighted += a * d_alpha;
            }
            for g in b * nt..b * nt + len {
                d_score[g] = alpha[g] * (d_score[g] - weighted);
            }
        }
        (d_states, d_score)
    }

    /// Back through score = v . tanh(W s + b): the gradients of `v` and of the pre-activation.
    fn score_backward(&self, d_score: &[f32], u: &[f32], att_v: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let h = self.h;
        let bt = self.lengths.len() * self.nt;
        let mut d_att_v = vec![0.0f32; h];
        let mut d_u = vec![0.0f32; bt * h];
        for g in (0..bt).filter(|&g| self.is_real(g)) {
            let (ds, ur) = (d_score[g], &u[g * h..][..h]);
            let du = &mut d_u[g * h..][..h];
            for j in 0..h {
                d_att_v[j] += ds * ur[j];
                du[j] = ds * att_v[j] * (1.0 - ur[j] * ur[j]);
            }
        }
        (d_att_v, d_u)
    }
}

/// What the output layer hands back to the rest of the backward pass.
struct OutputGradients {
    loss: f32,
    d_features: Vec<f32>,
    d_repeat: Vec<f32>,
    fused: bool,
}

/// A batch whose sizes agree: targets and ids for its rows, lengths in `1..=width`.
fn check_batch(batch: &Batch) -> Result<()> {
    let (nb, nt) = (batch.len(), batch.width);
    if nb == 0 || batch.targets.len() != nb || batch.ids.len() != nb * nt {
        return Err(Error::InvalidArgument(format!(
            "a training batch of {nb} rows with {} targets and {} ids for width {nt}",
            batch.targets.len(),
            batch.ids.len()
        )));
    }
    if let Some(bad) = batch.lengths.iter().find(|&&l| l == 0 || l > nt) {
        return Err(Error::InvalidArgument(format!("sequence length {bad} outside 1..={nt}")));
    }
    Ok(())
}

impl Fusion {
    /// Each table's rows at the real positions, dropped out (masks drawn in table order, as
    /// `features` draws them, so both paths see the same dropout).
    #[allow(clippy::type_complexity)]
    fn dropped_rows(
        &self,
        names: &[String],
        dims: &[usize],
        real: &[u32],
        rng: &mut ChaCha8Rng,
    ) -> Result<(Vec<Vec<f32>>, Vec<Option<Vec<f32>>>)> {
        let n = real.len();
        let mut rows = Vec::with_capacity(names.len());
        let mut masks = Vec::with_capacity(names.len());
        for (name, &dim) in names.iter().zip(dims) {
            let table = self.get(name);
            let (storage, layout) = table.storage_and_layout();
            let all = cpu_f32(&storage, layout).map_err(crate::err)?;
            let mut r = Vec::with_capacity(n * dim);
            for &id in real {
                r.extend_from_slice(&all[id as usize * dim..][..dim]);
            }
            drop(storage);
            let mask = dropout_values(rng, n * dim, self.config.dropout);
            if let Some(m) = &mask {
                r.iter_mut().zip(m).for_each(|(x, k)| *x *= k);
            }
            rows.push(r);
            masks.push(mask);
        }
        Ok((rows, masks))
    }

    /// A parameter's values (the small dense ones: copying them is cheaper than holding
    /// their storage locked through the step).
    fn values(&self, name: &str) -> Result<Vec<f32>> {
        self.get(name).flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(crate::err)
    }

    /// Loss and gradients of one batch. Table gradients land in `scratch.d_tables` (rows
    /// `batch.ids`), the output layer's in `scratch.output`; the others are returned by name,
    /// in [`Fusion::vars`] order. With `adam` (its step begun) and the full softmax, the
    /// output weights' gradient is not kept: `adam` applies it piece by piece as it is
    /// computed, and the third value says so. A non-finite loss returns before any update.
    pub(super) fn backward(
        &self,
        batch: &Batch,
        softmax: &Softmax,
        rng: &mut ChaCha8Rng,
        scratch: &mut Scratch,
        adam: Option<&mut crate::Adam>,
    ) -> Result<(f32, NamedGradients, bool)> {
        check_batch(batch)?;
        let c = &self.config;
        let (nb, nt, h, e, fc) = (batch.len(), batch.width, c.hidden, c.embedding_dim, c.fc);
        let (g6, bt) = (6 * h, nb * nt);
        let lengths = &batch.lengths;
        let real = batch.real_ids();
        let n = real.len();
        let grid = batch.grid_to_real();
        let [w_ih, b_ih, w_hh, b_hh, att_w, att_b, att_v, fc_w, fc_b] =
            ["gru.w_ih", "gru.b_ih", "gru.w_hh", "gru.b_hh", "att.w", "att.b", "att.v"]
                .into_iter()
                .chain(["fc.w", "fc.b"])
                .map(|name| self.values(name))
                .collect::<Result<Vec<_>>>()?
                .try_into()
                .expect("nine parameters");

        let names = self.table_names();
        let dims: Vec<usize> = once(e).chain(c.content_dims.iter().copied()).collect();
        let (rows, masks) = self.dropped_rows(&names, &dims, &real, rng)?;

        // Input projection of the real positions (n x 2 x 3H), which the GRU reads through
        // the grid's map.
        let mut xp = vec![0.0f32; n * g6];
        matmul_par(&mut xp, false, &rows[0], false, &w_ih, true, n, g6, e);
        add_bias(&mut xp, &b_ih);
        let gru = BiGru::packed(lengths.clone(), h, grid.clone());
        let (states, saved) = gru.forward(&xp, &w_hh, &b_hh, nb, nt);

        let grid_shape = Grid { lengths, grid: &grid, nt, h };
        let (u, alpha) = grid_shape.attention(&states, &att_w, &att_b, &att_v);
        let width: usize = dims[1..].iter().sum::<usize>() + h;
        let joined = grid_shape.pool(&alpha, &states, &rows, &dims, width);
        // FC + LeakyReLU.
        let slope = c.leaky_slope as f32;
        let mut pre = vec![0.0f32; nb * fc];
        matmul(&mut pre, false, &joined, false, &fc_w, true, nb, fc, width);
        add_bias(&mut pre, &fc_b);
        let features: Vec<f32> = pre.iter().map(|&x| x.max(slope * x)).collect();

        // The repeat path: a score per real input position, added to its track's logit.
        let repeat = self.repeat_forward(batch, &states)?;
        if !repeat.extra.is_empty() && !matches!(softmax, Softmax::Full) {
            return Err(super::repeat_needs_full_softmax());
        }

        let out = self.output_backward(batch, softmax, rng, scratch, adam, &features, &repeat)?;
        let OutputGradients { loss, d_features, d_repeat, fused } = out;
        if !loss.is_finite() {
            return Ok((loss, Vec::new(), false));
        }

        // Backward: FC.
        let d_pre: Vec<f32> = d_features
            .iter()
            .zip(&pre)
            .map(|(&d, &x)| if x > 0.0 { d } else { d * slope })
            .collect();
        let mut d_fc_w = vec![0.0f32; fc * width];
        matmul(&mut d_fc_w, false, &d_pre, true, &joined, false, fc, width, nb);
        let d_fc_b = column_sums(&d_pre, fc);
        let mut d_joined = vec![0.0f32; nb * width];
        matmul(&mut d_joined, false, &d_pre, false, &fc_w, false, nb, width, fc);

        let mut d_rows: Vec<Vec<f32>> = dims.iter().map(|&d| vec![0.0f32; n * d]).collect();
        let (mut d_states, d_score) =
            grid_shape.pool_backward(&d_joined, &alpha, &states, &rows, &dims, &mut d_rows);
        let (d_att_v, d_u) = grid_shape.score_backward(&d_score, &u, &att_v);
        let mut d_att_w = vec![0.0f32; h * h];
        matmul(&mut d_att_w, false, &d_u, true, &states, false, h, h, bt);
        let d_att_b = column_sums(&d_u, h);
        matmul(&mut d_states, true, &d_u, false, &att_w, false, bt, h, h);
        let repeat_grads = self.repeat_backward(&repeat, &d_repeat, &states, &mut d_states)?;

        // BiGRU (its input gradient packed as its input was), then the input projection.
        let (d_xp, d_w_hh, d_b_hh) = gru.backward(&saved, &w_hh, &d_states, nb, nt);
        let d_b_ih = column_sums(&d_xp, g6);
        let mut d_w_ih = vec![0.0f32; g6 * e];
        matmul_par(&mut d_w_ih, false, &d_xp, true, &rows[0], false, g6, e, n);
        matmul_par(&mut d_rows[0], false, &d_xp, false, &w_ih, false, n, e, g6);

        scatter_to_tables(&mut scratch.d_tables, &mut d_rows, &masks, &dims, &real, c.tracks);
        let mut dense = vec![
            ("gru.w_ih", d_w_ih),
            ("gru.b_ih", d_b_ih),
            ("gru.w_hh", d_w_hh),
            ("gru.b_hh", d_b_hh),
            ("att.w", d_att_w),
            ("att.b", d_att_b),
            ("att.v", d_att_v),
            ("fc.w", d_fc_w),
            ("fc.b", d_fc_b),
        ];
        dense.extend(repeat_grads);
        Ok((loss, dense.into_iter().map(|(n, g)| (n.to_string(), g)).collect(), fused))
    }

    /// The output layer (full or sampled softmax, plus the repeat scores) forward and back:
    /// the loss and the gradients of the features and of the repeat scores. When the loss is
    /// not finite nothing is updated and the gradients are not computed. With `adam` and the full softmax the output
    /// weights are updated here, piece by piece (`fused`).
    #[allow(clippy::too_many_arguments)]
    fn output_backward(
        &self,
        batch: &Batch,
        softmax: &Softmax,
        rng: &mut ChaCha8Rng,
        scratch: &mut Scratch,
        adam: Option<&mut crate::Adam>,
        features: &[f32],
        repeat: &Repeat,
    ) -> Result<OutputGradients> {
        let (nb, fc) = (batch.len(), self.config.fc);
        let c = &self.config;
        let fused = adam.is_some() && matches!(softmax, Softmax::Full);
        let mut d_features = vec![0.0f32; nb * fc];
        let loss = {
            let (w_guard, w_layout) = self.get("out.w").storage_and_layout();
            let (b_guard, b_layout) = self.get("out.b").storage_and_layout();
            let layer = Layer {
                w: cpu_f32(&w_guard, w_layout).map_err(crate::err)?,
                b: cpu_f32(&b_guard, b_layout).map_err(crate::err)?,
                v: c.tracks,
                f: fc,
            };
            if fused {
                full_softmax(&layer, features, &batch.targets, &repeat.extra, &mut scratch.output)
            } else {
                cross_entropy(
                    &layer,
                    features,
                    &batch.targets,
                    &repeat.extra,
                    softmax,
                    rng,
                    &mut scratch.output,
                    &mut d_features,
                )
            }
        };
        if !loss.is_finite() {
            return Ok(OutputGradients { loss, d_features, d_repeat: Vec::new(), fused: false });
        }
        // The repeat scores' gradient: their logits' (left transposed in the scratch).
        let d_repeat: Vec<f32> = repeat
            .extra
            .iter()
            .map(|&(col, track, _)| scratch.output.logits[track as usize * nb + col])
            .collect();
        if let (true, Some(adam)) = (fused, adam) {
            let (dlogits, d_feat) = (&scratch.output.logits, &mut d_features);
            adam.update_var_with(self.index("out.w"), |w, m, v, consts| {
                full_backward_fused(w, m, v, consts, dlogits, features, d_feat, fc)
            })
            .map_err(crate::err)?;
            bias_gradient(&mut scratch.output, nb);
        }
        Ok(OutputGradients { loss, d_features, d_repeat, fused })
    }

    /// The repeat path's scores: one per real input position (grid index `g`), added to the
    /// logit of the track played there.
    fn repeat_forward(&self, batch: &Batch, states: &[f32]) -> Result<Repeat> {
        let positions = self.config.repeat_positions;
        if positions == 0 {
            return Ok(Repeat { grid: Vec::new(), distance: Vec::new(), extra: Vec::new() });
        }
        let (h, nt) = (self.config.hidden, batch.width);
        let (u, pos) = (self.values("rep.u")?, self.values("rep.pos")?);
        let mut out = Repeat { grid: Vec::new(), distance: Vec::new(), extra: Vec::new() };
        for (b, &len) in batch.lengths.iter().enumerate() {
            for q in 0..len {
                let g = b * nt + q;
                let distance = len - 1 - q;
                let bias = pos.get(distance).copied().unwrap_or(0.0);
                let score = dot(&states[g * h..][..h], &u) + bias;
                out.grid.push(g);
                out.distance.push(distance);
                out.extra.push((b, batch.ids[g], score));
            }
        }
        Ok(out)
    }

    /// Back through the repeat path: its parameters' gradients, and `u` times each position's
    /// gradient added to that state's.
    fn repeat_backward(
        &self,
        repeat: &Repeat,
        d_score: &[f32],
        states: &[f32],
        d_states: &mut [f32],
    ) -> Result<Vec<(&'static str, Vec<f32>)>> {
        let positions = self.config.repeat_positions;
        if positions == 0 {
            return Ok(Vec::new());
        }
        let h = self.config.hidden;
        let u = self.values("rep.u")?;
        let mut d_u = vec![0.0f32; h];
        let mut d_pos = vec![0.0f32; positions];
        for ((&g, &distance), &d) in repeat.grid.iter().zip(&repeat.distance).zip(d_score) {
            let s = &states[g * h..][..h];
            d_u.iter_mut().zip(s).for_each(|(o, x)| *o += d * x);
            if distance < positions {
                d_pos[distance] += d;
            }
            d_states[g * h..][..h].iter_mut().zip(&u).for_each(|(o, x)| *o += d * x);
        }
        Ok(vec![("rep.u", d_u), ("rep.pos", d_pos)])
    }
}

/// The repeat path's scores of one batch, by real input position.
struct Repeat {
    /// Grid index of each position.
    grid: Vec<usize>,
    /// Its distance from its row's last position.
    distance: Vec<usize>,
    /// `(row, track, score)`: what the output layer adds.
    extra: Vec<(usize, u32, f32)>,
}
