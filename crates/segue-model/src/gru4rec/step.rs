//! GRU4Rec's training step by hand: one GRU cell, the scores of the batch's targets and the
//! shared negatives, cross-entropy, and every gradient, over plain buffers.
//!
//! Through candle's graph each step built a catalogue-sized gradient for the input table and
//! for the output layer (an embedding's backward starts from zeros of the whole table), and
//! the step is small (one event per lane). Here only the rows a step touches get gradients;
//! Adam then updates every row (dense, as PyTorch) or only those (`model.lazy_adam`).
//! [`Gru4Rec::step_loss`] (candle's graph of the same step) is the reference the tests
//! compare with.

use segue_core::Result;

use super::Gru4Rec;
use crate::bigru::{matmul, sigmoid, tanh};
use crate::fusion::cpu_f32;
use crate::fusion::step::{add_bias, column_sums};

/// One step's inputs: each lane's input track, state and target, the shared negatives, the
/// lanes predicted, and the input dropout mask.
pub(crate) struct StepInput<'a> {
    pub inputs: &'a [u32],
    pub state: &'a [f32],
    pub targets: &'a [u32],
    pub negatives: &'a [u32],
    pub predicted: &'a [u32],
    pub mask: Option<&'a [f32]>,
}

/// Gradients of a step: the GRU's dense ones, and rows of the catalogue-sized ones.
#[derive(Debug, Default)]
pub(crate) struct StepGradients {
    pub w_ih: Vec<f32>,
    pub b_ih: Vec<f32>,
    pub w_hh: Vec<f32>,
    pub b_hh: Vec<f32>,
    /// `(track, gradient row)` of the input table, a track once.
    pub e1: Vec<(u32, Vec<f32>)>,
    /// `(track, gradient row, bias gradient)` of the output layer, a track once.
    pub out: Vec<(u32, Vec<f32>, f32)>,
}

/// Rows of `values` (`width` wide) summed per distinct id of `ids`, ids sorted.
fn sum_rows(ids: &[u32], values: &[f32], width: usize) -> Vec<(u32, Vec<f32>)> {
    let mut order: Vec<usize> = (0..ids.len()).collect();
    order.sort_by_key(|&i| ids[i]);
    let mut out: Vec<(u32, Vec<f32>)> = Vec::new();
    for i in order {
        let row = &values[i * width..(i + 1) * width];
        match out.last_mut() {
            Some((id, sum)) if *id == ids[i] => sum.iter_mut().zip(row).for_each(|(s, x)| *s += x),
            _ => out.push((ids[i], row.to_vec())),
        }
    }
    out
}

impl Gru4Rec {
    /// Mean cross-entropy of the predicted lanes (`None` when none is), the new states
    /// (`B x H`) and the gradients.
    pub(crate) fn step_gradients(
        &self,
        s: &StepInput,
    ) -> Result<(Option<f32>, Vec<f32>, StepGradients)> {
        let (e, h) = (self.config.embedding_dim, self.config.hidden);
        let b = s.inputs.len();
        let params: Vec<_> =
            ["e1", "gru.w_ih", "gru.b_ih", "gru.w_hh", "gru.b_hh", "out.w", "out.b"]
                .iter()
                .map(|n| self.get(n).storage_and_layout())
                .collect();
        let slice = |i: usize| cpu_f32(&params[i].0, params[i].1).map_err(crate::err);
        let (e1, w_ih, b_ih, w_hh, b_hh, out_w, out_b) =
            (slice(0)?, slice(1)?, slice(2)?, slice(3)?, slice(4)?, slice(5)?, slice(6)?);

        // Forward: the inputs through dropout, the two projections, the gates.
        let mut x = Vec::with_capacity(b * e);
        for &t in s.inputs {
            x.extend_from_slice(&e1[t as usize * e..(t as usize + 1) * e]);
        }
        if let Some(m) = s.mask {
            x.iter_mut().zip(m).for_each(|(v, k)| *v *= k);
        }
        let mut gi = vec![0f32; b * 3 * h];
        matmul(&mut gi, false, &x, false, w_ih, true, b, 3 * h, e);
        add_bias(&mut gi, b_ih);
        let mut gh = vec![0f32; b * 3 * h];
        matmul(&mut gh, false, s.state, false, w_hh, true, b, 3 * h, h);
        add_bias(&mut gh, b_hh);
        let (mut r, mut z, mut n, mut h1) =
            (vec![0f32; b * h], vec![0f32; b * h], vec![0f32; b * h], vec![0f32; b * h]);
        for row in 0..b {
            let (gi, gh) =
                (&gi[row * 3 * h..(row + 1) * 3 * h], &gh[row * 3 * h..(row + 1) * 3 * h]);
            for j in 0..h {
                let k = row * h + j;
                r[k] = sigmoid(gi[j] + gh[j]);
                z[k] = sigmoid(gi[h + j] + gh[h + j]);
                n[k] = tanh(gi[2 * h + j] + r[k] * gh[2 * h + j]);
                h1[k] = n[k] + z[k] * (s.state[k] - n[k]);
            }
        }
        if s.predicted.is_empty() {
            return Ok((None, h1, StepGradients::default()));
        }

        // Scores of the candidates (the lanes' targets, then the negatives) and the softmax.
        let cand: Vec<u32> = s.targets.iter().chain(s.negatives).copied().collect();
        let c = cand.len();
        let mut wc = Vec::with_capacity(c * h);
        for &t in &cand {
            wc.extend_from_slice(&out_w[t as usize * h..(t as usize + 1) * h]);
        }
        let mut logits = vec![0f32; b * c];
        matmul(&mut logits, false, &h1, false, &wc, true, b, c, h);
        let bc: Vec<f32> = cand.iter().map(|&t| out_b[t as usize]).collect();
        add_bias(&mut logits, &bc);
        let mut d_logits = vec![0f32; b * c];
        let scale = 1.0 / s.predicted.len() as f32;
        let mut loss = 0f64;
        for &p in s.predicted {
            let p = p as usize;
            let row = &logits[p * c..(p + 1) * c];
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
            loss += f64::from(sum.ln() + max - row[p]);
            let d = &mut d_logits[p * c..(p + 1) * c];
            for (dj, &v) in d.iter_mut().zip(row) {
                *dj = (v - max).exp() / sum * scale;
            }
            d[p] -= scale;
        }
        let loss = (loss / s.predicted.len() as f64) as f32;

        // Backward: the output rows, the state, the gates, the projections, the inputs.
        let mut d_wc = vec![0f32; c * h];
        matmul(&mut d_wc, false, &d_logits, true, &h1, false, c, h, b);
        let d_bc = column_sums(&d_logits, c);
        let mut dh1 = vec![0f32; b * h];
        matmul(&mut dh1, false, &d_logits, false, &wc, false, b, h, c);
        let (mut dgi, mut dgh) = (vec![0f32; b * 3 * h], vec![0f32; b * 3 * h]);
        for row in 0..b {
            let ghn = &gh[row * 3 * h + 2 * h..(row + 1) * 3 * h];
            for j in 0..h {
                let k = row * h + j;
                let (rk, zk, nk) = (r[k], z[k], n[k]);
                let da_n = dh1[k] * (1.0 - zk) * (1.0 - nk * nk);
                let da_z = dh1[k] * (s.state[k] - nk) * zk * (1.0 - zk);
                let da_r = da_n * ghn[j] * rk * (1.0 - rk);
                let (i, o) = (row * 3 * h, row * 3 * h);
                dgi[i + j] = da_r;
                dgi[i + h + j] = da_z;
                dgi[i + 2 * h + j] = da_n;
                dgh[o + j] = da_r;
                dgh[o + h + j] = da_z;
                dgh[o + 2 * h + j] = da_n * rk;
            }
        }
        let mut g = StepGradients {
            w_ih: vec![0f32; 3 * h * e],
            b_ih: column_sums(&dgi, 3 * h),
            w_hh: vec![0f32; 3 * h * h],
            b_hh: column_sums(&dgh, 3 * h),
            ..StepGradients::default()
        };
        matmul(&mut g.w_ih, false, &dgi, true, &x, false, 3 * h, e, b);
        matmul(&mut g.w_hh, false, &dgh, true, s.state, false, 3 * h, h, b);
        let mut dx = vec![0f32; b * e];
        matmul(&mut dx, false, &dgi, false, w_ih, false, b, e, 3 * h);
        if let Some(m) = s.mask {
            dx.iter_mut().zip(m).for_each(|(v, k)| *v *= k);
        }
        g.e1 = sum_rows(s.inputs, &dx, e);
        let mut with_bias = Vec::with_capacity(c * (h + 1));
        for (row, &db) in d_wc.chunks_exact(h).zip(&d_bc) {
            with_bias.extend_from_slice(row);
            with_bias.push(db);
        }
        g.out = sum_rows(&cand, &with_bias, h + 1)
            .into_iter()
            .map(|(t, mut row)| {
                let db = row.pop().unwrap_or(0.0);
                (t, row, db)
            })
            .collect();
        Ok((Some(loss), h1, g))
    }
}

/// Catalogue-sized gradient buffers kept across steps: only the rows of a step are written,
/// and cleared after its update.
#[derive(Debug, Default)]
pub struct Gru4RecScratch {
    e1: Vec<f32>,
    out_w: Vec<f32>,
    out_b: Vec<f32>,
}

impl Gru4Rec {
    /// One Adam step from a step's gradients (after nothing else this step): the GRU's
    /// weights dense; the input table and the output layer dense too (every row moves, as
    /// PyTorch's Adam), or with [`crate::AdamConfig::lazy`] only the rows the step touched.
    pub(crate) fn apply(
        &self,
        adam: &mut crate::Adam,
        g: &StepGradients,
        scratch: &mut Gru4RecScratch,
    ) -> Result<()> {
        let (v, e, h) = (self.config.tracks, self.config.embedding_dim, self.config.hidden);
        scratch.e1.resize(v * e, 0.0);
        scratch.out_w.resize(v * h, 0.0);
        scratch.out_b.resize(v, 0.0);
        for (t, row) in &g.e1 {
            scratch.e1[*t as usize * e..(*t as usize + 1) * e].copy_from_slice(row);
        }
        for (t, row, db) in &g.out {
            scratch.out_w[*t as usize * h..(*t as usize + 1) * h].copy_from_slice(row);
            scratch.out_b[*t as usize] = *db;
        }
        let e1_rows: Vec<u32> = g.e1.iter().map(|r| r.0).collect();
        let out_rows: Vec<u32> = g.out.iter().map(|r| r.0).collect();
        adam.begin_step();
        let run = |adam: &mut crate::Adam| -> candle_core::Result<()> {
            // The order of `Gru4Rec::new`'s variables.
            adam.update_var(1, &g.w_ih)?;
            adam.update_var(2, &g.b_ih)?;
            adam.update_var(3, &g.w_hh)?;
            adam.update_var(4, &g.b_hh)?;
            if adam.config.lazy {
                adam.update_rows(0, &scratch.e1, &e1_rows, e)?;
                adam.update_rows(5, &scratch.out_w, &out_rows, h)?;
                adam.update_rows(6, &scratch.out_b, &out_rows, 1)
            } else {
                adam.update_var(0, &scratch.e1)?;
                adam.update_var(5, &scratch.out_w)?;
                adam.update_var(6, &scratch.out_b)
            }
        };
        let result = run(adam).map_err(crate::err);
        for &t in &e1_rows {
            scratch.e1[t as usize * e..(t as usize + 1) * e].fill(0.0);
        }
        for &t in &out_rows {
            scratch.out_w[t as usize * h..(t as usize + 1) * h].fill(0.0);
            scratch.out_b[t as usize] = 0.0;
        }
        result
    }

    /// The step's loss as one candle graph (the reference for [`Gru4Rec::step_gradients`]),
    /// with the new states; `None` when no lane is predicted.
    #[cfg(test)]
    pub(crate) fn step_loss(
        &self,
        s: &StepInput,
    ) -> candle_core::Result<(Option<candle_core::Tensor>, candle_core::Tensor)> {
        use candle_core::{Device, Tensor};
        let dev = Device::Cpu;
        let (b, h) = (s.inputs.len(), self.config.hidden);
        let ids = Tensor::from_slice(s.inputs, b, &dev)?;
        let mut x = self.get("e1").embedding(&ids)?;
        if let Some(mask) = s.mask {
            x = x.mul(&Tensor::from_slice(mask, (b, self.config.embedding_dim), &dev)?)?;
        }
        let h0 = Tensor::from_slice(s.state, (b, h), &dev)?;
        let h1 = self.cell(&x, &h0)?;
        if s.predicted.is_empty() {
            return Ok((None, h1));
        }
        let cand: Vec<u32> = s.targets.iter().chain(s.negatives).copied().collect();
        let cand = Tensor::from_vec(cand.clone(), cand.len(), &dev)?;
        let w = self.get("out.w").embedding(&cand)?;
        let bias = self.get("out.b").index_select(&cand, 0)?;
        let logits = h1.matmul(&w.t()?)?.broadcast_add(&bias)?;
        // Each predicted lane's own target is candidate `i`, its lane index.
        let rows = Tensor::from_slice(s.predicted, s.predicted.len(), &dev)?;
        let loss = candle_nn::loss::cross_entropy(&logits.index_select(&rows, 0)?, &rows)?;
        Ok((Some(loss), h1))
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::Gru4RecConfig;

    fn close(what: &str, a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-5 + 1e-4 * y.abs(), "{what}[{i}]: by hand {x}, graph {y}");
        }
    }

    /// The hand-written step gives the graph's loss, states and every gradient: repeated
    /// inputs and targets, negatives that are also targets, a lane not predicted, dropout.
    #[test]
    fn step_gradients_equal_the_graph() {
        let config =
            Gru4RecConfig { tracks: 20, embedding_dim: 6, hidden: 5, dropout: 0.3, negatives: 4 };
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let model = Gru4Rec::new(config, &mut rng).unwrap();
        let (b, e, h, v) = (5, 6, 5, 20);
        let state: Vec<f32> = (0..b * h).map(|_| rng.random_range(-0.9..0.9)).collect();
        let mask = crate::fusion::dropout_values(&mut rng, b * e, 0.3).unwrap();
        let input = StepInput {
            inputs: &[3, 7, 3, 11, 0],
            state: &state,
            targets: &[4, 8, 4, 12, 19],
            negatives: &[8, 15, 2, 15],
            predicted: &[0, 1, 2, 4],
            mask: Some(&mask),
        };
        let (loss, h1, g) = model.step_gradients(&input).unwrap();
        let (graph_loss, graph_h1) = model.step_loss(&input).unwrap();
        let graph_loss = graph_loss.unwrap();
        close("loss", &[loss.unwrap()], &[graph_loss.to_scalar::<f32>().unwrap()]);
        close("states", &h1, &graph_h1.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        let grads = graph_loss.backward().unwrap();
        let graph = |name: &str| -> Vec<f32> {
            grads.get(model.get(name)).unwrap().flatten_all().unwrap().to_vec1().unwrap()
        };
        close("w_ih", &g.w_ih, &graph("gru.w_ih"));
        close("b_ih", &g.b_ih, &graph("gru.b_ih"));
        close("w_hh", &g.w_hh, &graph("gru.w_hh"));
        close("b_hh", &g.b_hh, &graph("gru.b_hh"));
        let (mut e1, mut out_w, mut out_b) = (vec![0f32; v * e], vec![0f32; v * h], vec![0f32; v]);
        for (t, row) in &g.e1 {
            e1[*t as usize * e..(*t as usize + 1) * e].copy_from_slice(row);
        }
        for (t, row, db) in &g.out {
            out_w[*t as usize * h..(*t as usize + 1) * h].copy_from_slice(row);
            out_b[*t as usize] = *db;
        }
        assert_eq!(g.e1.iter().map(|r| r.0).collect::<Vec<_>>(), vec![0, 3, 7, 11]);
        assert_eq!(g.out.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 4, 8, 12, 15, 19]);
        close("e1", &e1, &graph("e1"));
        close("out.w", &out_w, &graph("out.w"));
        close("out.b", &out_b, &graph("out.b"));
        // No lane predicted: states move on, no loss and no gradient.
        let idle = StepInput { predicted: &[], ..input };
        let (loss, h1_idle, g) = model.step_gradients(&idle).unwrap();
        assert!(loss.is_none() && g.e1.is_empty() && g.out.is_empty());
        assert_eq!(h1_idle, h1);
    }
}
