//! The attentive BiGRU with multimodal fusion (paper Fig. 2, eqs. 2-6) and every variant of it.
//!
//! `E1` (track embedding) -> dropout -> BiGRU (directions added) -> additive attention
//! `e_i = v^T tanh(W h_i + b)`, softmax over real positions -> `c1 = sum a_i h_i`; each content
//! table `E_k` -> dropout -> `c_k = sum a_i E_k[x_i]` with the same weights;
//! `[c1; c2; ...] -> FC -> LeakyReLU -> FC over the catalogue`.

use std::sync::Mutex;

use candle_core::{D, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use segue_core::{Error, Result};

use crate::bigru::bigru;
use crate::data::Batch;
use crate::output::OutputScratch;
use crate::scoring::Hidden;
use crate::{Softmax, ce};

pub(crate) mod step;

/// Sizes of the fused model.
#[derive(Debug, Clone, PartialEq)]
pub struct FusionConfig {
    /// Catalogue size (rows of every table, columns of the output).
    pub tracks: usize,
    /// Width of `E1`.
    pub embedding_dim: usize,
    /// GRU state size (and attention size).
    pub hidden: usize,
    /// Width of the fully connected layer.
    pub fc: usize,
    /// Dropout on every embedding.
    pub dropout: f64,
    /// Slope of LeakyReLU below zero.
    pub leaky_slope: f64,
    /// Widths of the content tables (acoustic, lyrics, tags: whichever the variant uses).
    pub content_dims: Vec<usize>,
    /// The repeat path, beyond the paper (0: off): each input position `p` of `n` adds
    /// `u . h_p + pos[n - 1 - p]` to the score of the track played there (`h_p` the BiGRU's
    /// state, `pos` one learned bias per distance from the end, up to this many positions), so
    /// the session's own tracks, seen in training or not, can be put on top.
    pub repeat_positions: usize,
}

impl FusionConfig {
    /// The sizes `params` give, for a catalogue of `tracks` and content tables of
    /// `content_dims` (none: ANN); the repeat path spans the input window when `params.repeat`.
    pub fn from_params(
        tracks: usize,
        params: &crate::ModelParams,
        content_dims: Vec<usize>,
    ) -> FusionConfig {
        FusionConfig {
            tracks,
            embedding_dim: params.embedding_dim,
            hidden: params.hidden,
            fc: params.fc,
            dropout: params.dropout,
            leaky_slope: params.leaky_slope,
            content_dims,
            repeat_positions: if params.repeat { params.max_input_len } else { 0 },
        }
    }
}

/// Starting values: `E1` rows with a pretrained vector and the content tables.
#[derive(Debug, Clone, Default)]
pub struct FusionInit {
    /// `E1` rows to start from (`tracks x embedding_dim`) and which rows to take; the others
    /// start as PyTorch's `nn.Embedding` does, N(0, 1).
    pub e1: Option<(Vec<f32>, Vec<bool>)>,
    /// Content tables, `tracks x content_dims[k]` each (zero rows where a track has none).
    pub content: Vec<Vec<f32>>,
}

/// Gradients by parameter name.
pub type NamedGradients = Vec<(String, Vec<f32>)>;

/// The model's parameters.
#[derive(Debug)]
pub struct Fusion {
    /// Its sizes.
    pub config: FusionConfig,
    vars: Vec<(String, Var)>,
    scratch: Mutex<Scratch>,
}

/// Gradient buffers kept across training steps (catalogue-sized; allocating them each step
/// cost more than the arithmetic).
#[derive(Debug, Default)]
struct Scratch {
    output: OutputScratch,
    /// Gradients of `E1` and the content tables, `V x dim` each, zero outside the rows of
    /// the batch being processed.
    d_tables: Vec<Vec<f32>>,
}

/// The repeat path scores the session's own tracks, which a sampled softmax may not draw.
pub(crate) fn repeat_needs_full_softmax() -> Error {
    Error::Config(
        "model.repeat needs the full softmax (model.sampled_negatives = 0): the session's own tracks must be among the scored ones".into(),
    )
}

/// The parameter called `name` (every caller names one its model created).
pub(crate) fn param<'a>(vars: &'a [(String, Var)], name: &str) -> &'a Tensor {
    vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_tensor()).expect("known parameter")
}

/// A contiguous f32 CPU tensor's values, without a copy.
pub(crate) fn cpu_f32<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [f32]> {
    match (storage, layout.contiguous_offsets()) {
        (candle_core::Storage::Cpu(candle_core::CpuStorage::F32(all)), Some((s, e))) => {
            Ok(&all[s..e])
        }
        _ => candle_core::bail!("parameters must be contiguous f32 on the CPU"),
    }
}

/// `n` values uniform in `+-bound` (PyTorch's `nn.Linear` and `nn.GRU` initialisation).
pub(crate) fn uniform(rng: &mut ChaCha8Rng, n: usize, bound: f64) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect()
}

/// `n` values from N(0, 1) (PyTorch's `nn.Embedding`).
pub(crate) fn normal(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

pub(crate) fn var(values: Vec<f32>, shape: &[usize]) -> Result<Var> {
    Var::from_tensor(&Tensor::from_vec(values, shape, &Device::Cpu).map_err(crate::err)?)
        .map_err(crate::err)
}

/// An inverted-dropout mask (`0` or `1 / (1 - p)`) of `n` values, or `None` when `p` is 0.
pub(crate) fn dropout_mask(
    rng: &mut ChaCha8Rng,
    shape: (usize, usize),
    p: f64,
) -> Result<Option<Tensor>> {
    match dropout_values(rng, shape.0 * shape.1, p) {
        None => Ok(None),
        Some(v) => Ok(Some(Tensor::from_vec(v, shape, &Device::Cpu).map_err(crate::err)?)),
    }
}

/// The values of [`dropout_mask`] (the same draws from `rng`), or `None` when `p` is 0.
pub(crate) fn dropout_values(rng: &mut ChaCha8Rng, n: usize, p: f64) -> Option<Vec<f32>> {
    let mut mask = Vec::new();
    dropout_into(rng, n, p, &mut mask);
    (p > 0.0).then_some(mask)
}

/// [`dropout_values`] into `mask`, reusing its memory (left empty when `p` is 0; the same
/// draws from `rng` otherwise).
pub(crate) fn dropout_into(rng: &mut ChaCha8Rng, n: usize, p: f64, mask: &mut Vec<f32>) {
    mask.clear();
    if p <= 0.0 {
        return;
    }
    let keep = 1.0 / (1.0 - p) as f32;
    // `rng.random::<f64>() < p` for each value, a block of draws at a time: that uniform is
    // the top 53 bits of `next_u64` times 2^-53, and filling u64s takes the same words from
    // the generator as drawing them one by one (tested), so the masks are the same.
    let limit = p * (1u64 << 53) as f64;
    let mut words = [0u64; 512];
    let mut left = n;
    while left > 0 {
        let block = &mut words[..left.min(512)];
        rng.fill(block);
        mask.extend(block.iter().map(|&w| if ((w >> 11) as f64) < limit { 0.0 } else { keep }));
        left -= block.len();
    }
}

/// The ids, sorted, each once.
fn sorted_distinct(mut ids: Vec<u32>) -> Vec<u32> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

impl Fusion {
    /// A model with PyTorch's initialisation from `rng`, `E1` and the content tables from
    /// `init`.
    pub fn new(config: FusionConfig, init: FusionInit, rng: &mut ChaCha8Rng) -> Result<Self> {
        let FusionConfig { tracks: v, embedding_dim: e, hidden: h, fc, .. } = config;
        if v == 0 || e == 0 || h == 0 || fc == 0 {
            return Err(Error::Config("model sizes must be positive".into()));
        }
        if init.content.len() != config.content_dims.len() {
            return Err(Error::Config(format!(
                "{} content tables for {} content inputs",
                init.content.len(),
                config.content_dims.len()
            )));
        }
        let mut e1 = normal(rng, v * e);
        if let Some((rows, take)) = &init.e1 {
            if rows.len() != v * e || take.len() != v {
                return Err(Error::Config(format!(
                    "E1 start table is {} values for {} tracks; expected {v} x {e}",
                    rows.len(),
                    take.len()
                )));
            }
            for (i, _) in take.iter().enumerate().filter(|(_, t)| **t) {
                e1[i * e..(i + 1) * e].copy_from_slice(&rows[i * e..(i + 1) * e]);
            }
        }
        let gb = 1.0 / (h as f64).sqrt();
        let mut vars = vec![
            ("e1".to_string(), var(e1, &[v, e])?),
            ("gru.w_ih".into(), var(uniform(rng, 6 * h * e, gb), &[6 * h, e])?),
            ("gru.b_ih".into(), var(uniform(rng, 6 * h, gb), &[6 * h])?),
            ("gru.w_hh".into(), var(uniform(rng, 6 * h * h, gb), &[2, 3 * h, h])?),
            ("gru.b_hh".into(), var(uniform(rng, 6 * h, gb), &[2, 3 * h])?),
            ("att.w".into(), var(uniform(rng, h * h, gb), &[h, h])?),
            ("att.b".into(), var(uniform(rng, h, gb), &[h])?),
            ("att.v".into(), var(uniform(rng, h, gb), &[h, 1])?),
        ];
        for (k, (table, &d)) in init.content.into_iter().zip(&config.content_dims).enumerate() {
            if table.len() != v * d {
                return Err(Error::Config(format!(
                    "content table {k} has {} values; expected {v} x {d}",
                    table.len()
                )));
            }
            vars.push((format!("content{k}"), var(table, &[v, d])?));
        }
        let width = h + config.content_dims.iter().sum::<usize>();
        let fb = 1.0 / (width as f64).sqrt();
        let ob = 1.0 / (fc as f64).sqrt();
        vars.push(("fc.w".into(), var(uniform(rng, fc * width, fb), &[fc, width])?));
        vars.push(("fc.b".into(), var(uniform(rng, fc, fb), &[fc])?));
        vars.push(("out.w".into(), var(uniform(rng, v * fc, ob), &[v, fc])?));
        vars.push(("out.b".into(), var(uniform(rng, v, ob), &[v])?));
        if config.repeat_positions > 0 {
            // Zero: the model starts as the paper's and learns how much to repeat.
            vars.push(("rep.u".into(), var(vec![0.0; h], &[h])?));
            let positions = config.repeat_positions;
            vars.push(("rep.pos".into(), var(vec![0.0; positions], &[positions])?));
        }
        Ok(Fusion { config, vars, scratch: Mutex::new(Scratch::default()) })
    }

    /// Named parameters, in a fixed order.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// The position of parameter `name` in [`Fusion::vars`] (and in an [`crate::Adam`]
    /// over them).
    fn index(&self, name: &str) -> usize {
        self.vars.iter().position(|(n, _)| n == name).expect("known parameter")
    }

    fn get(&self, name: &str) -> &Tensor {
        crate::fusion::param(&self.vars, name)
    }

    /// Names of the tables looked up by track: `E1`, then the content tables.
    fn table_names(&self) -> Vec<String> {
        let mut names = vec!["e1".to_string()];
        names.extend((0..self.config.content_dims.len()).map(|k| format!("content{k}")));
        names
    }

    /// The input to the output layer, `B x fc`, from each table's rows for the batch's real
    /// positions (`N x dim`, [`Batch::real_ids`] order, tables in [`Fusion::table_names`]
    /// order); `rng` draws dropout (training) or is `None`. Only real positions are projected;
    /// the grid the GRU and attention see is gathered from them.
    pub(crate) fn features(
        &self,
        batch: &Batch,
        rows: &[Tensor],
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<(Tensor, Tensor)> {
        let c = &self.config;
        let (b, t, h) = (batch.len(), batch.width, c.hidden);
        let dev = Device::Cpu;
        let grid = Tensor::from_vec(batch.grid_to_real(), b * t, &dev)?;
        let mut dropped = |x: &Tensor| -> candle_core::Result<Tensor> {
            let (n, width) = x.dims2()?;
            match rng.as_deref_mut().map(|r| dropout_mask(r, (n, width), c.dropout)) {
                Some(Ok(Some(mask))) => x.mul(&mask),
                Some(Err(e)) => Err(candle_core::Error::Msg(e.to_string())),
                _ => Ok(x.clone()),
            }
        };
        let emb = dropped(&rows[0])?;
        let x = emb
            .matmul(&self.get("gru.w_ih").t()?)?
            .broadcast_add(self.get("gru.b_ih"))?
            .index_select(&grid, 0)?
            .reshape((b, t, 2, 3 * h))?;
        let states = bigru(&x, self.get("gru.w_hh"), self.get("gru.b_hh"), &batch.lengths)?;
        let flat = states.reshape((b * t, h))?;
        let u = flat.matmul(&self.get("att.w").t()?)?.broadcast_add(self.get("att.b"))?.tanh()?;
        let scores = u.matmul(self.get("att.v"))?.reshape((b, t))?;
        let pad: Vec<f32> = (0..b * t)
            .map(|i| if i % t < batch.lengths[i / t] { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let scores = scores.add(&Tensor::from_vec(pad, (b, t), &dev)?)?;
        // candle_nn::ops::softmax_last_dim has no backward pass: this one is differentiable.
        let alpha = candle_nn::ops::softmax(&scores, D::Minus1)?.unsqueeze(1)?; // B x 1 x T
        let mut contexts = vec![alpha.matmul(&states)?.squeeze(1)?];
        for (k, &d) in c.content_dims.iter().enumerate() {
            let ek = dropped(&rows[k + 1])?.index_select(&grid, 0)?;
            contexts.push(alpha.matmul(&ek.reshape((b, t, d))?)?.squeeze(1)?);
        }
        let joined = Tensor::cat(&contexts, D::Minus1)?;
        let hidden = joined.matmul(&self.get("fc.w").t()?)?.broadcast_add(self.get("fc.b"))?;
        Ok((hidden.maximum(&hidden.affine(c.leaky_slope, 0.0)?)?, flat))
    }

    /// The repeat path's score of every real input position, `B x T` (padding 0): `u . h_p`
    /// plus the bias of its distance from the row's end.
    fn repeat_scores(&self, batch: &Batch, states: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = (batch.len(), batch.width);
        let dev = Device::Cpu;
        let from_state = states.matmul(&self.get("rep.u").unsqueeze(1)?)?.reshape((b, t))?;
        // The bias of each grid position by distance from the end, through a one-hot matrix
        // (B*T x P; padding rows zero), so the graph differentiates it.
        let positions = self.config.repeat_positions;
        let mut pick = vec![0f32; b * t * positions];
        let mut real = vec![0f32; b * t];
        for (r, &len) in batch.lengths.iter().enumerate() {
            for q in 0..len {
                let distance = len - 1 - q;
                if distance < positions {
                    pick[(r * t + q) * positions + distance] = 1.0;
                }
                real[r * t + q] = 1.0;
            }
        }
        let pick = Tensor::from_vec(pick, (b * t, positions), &dev)?;
        let bias = pick.matmul(&self.get("rep.pos").unsqueeze(1)?)?.reshape((b, t))?;
        from_state.add(&bias)?.mul(&Tensor::from_vec(real, (b, t), &dev)?)
    }

    /// Output scores `B x tracks` from the features and the BiGRU states, the repeat path
    /// included (as a one-hot product, so the graph differentiates it: for tests and small
    /// catalogues).
    pub(crate) fn logits(
        &self,
        batch: &Batch,
        f: &Tensor,
        states: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let out = f.matmul(&self.get("out.w").t()?)?.broadcast_add(self.get("out.b"))?;
        if self.config.repeat_positions == 0 {
            return Ok(out);
        }
        let (b, t, v) = (batch.len(), batch.width, self.config.tracks);
        let r = self.repeat_scores(batch, states)?;
        let mut onehot = vec![0f32; b * t * v];
        for (row, &len) in batch.lengths.iter().enumerate() {
            for q in 0..len {
                onehot[(row * t + q) * v + batch.ids[row * t + q] as usize] = 1.0;
            }
        }
        let onehot = Tensor::from_vec(onehot, (b, t, v), &Device::Cpu)?;
        out.add(&r.unsqueeze(1)?.matmul(&onehot)?.squeeze(1)?)
    }

    /// Each table's rows for the batch's real positions, looked up through candle
    /// (differentiable).
    pub(crate) fn lookups(&self, batch: &Batch) -> candle_core::Result<Vec<Tensor>> {
        let real = batch.real_ids();
        let ids = Tensor::from_vec(real.clone(), real.len(), &Device::Cpu)?;
        self.table_names().iter().map(|n| self.get(n).embedding(&ids)).collect()
    }

    /// Scores of every track for each row of `batch`, `B x tracks` (no dropout).
    pub fn scores(&self, batch: &Batch) -> Result<Tensor> {
        self.hidden(batch)?.scores_tensor(0..self.config.tracks)
    }

    /// The batch's features and output layer, from which any block of tracks is scored.
    pub fn hidden(&self, batch: &Batch) -> Result<Hidden> {
        let run = || -> candle_core::Result<Hidden> {
            let (f, states) = self.features(batch, &self.lookups(batch)?, None)?;
            let hidden = Hidden::new(f, self.get("out.w").clone(), Some(self.get("out.b").clone()));
            if self.config.repeat_positions == 0 {
                return Ok(hidden);
            }
            // The repeat path added in place: a dense one-hot product would be B x T x tracks.
            let t = batch.width;
            let r = self.repeat_scores(batch, &states)?.flatten_all()?.to_vec1::<f32>()?;
            let mut extra = Vec::with_capacity(batch.ids.len());
            for (row, &len) in batch.lengths.iter().enumerate() {
                for q in 0..len {
                    extra.push((row, batch.ids[row * t + q], r[row * t + q]));
                }
            }
            Ok(hidden.with_extra(extra))
        };
        run().map_err(crate::err)
    }

    /// The training loss of `batch` (mean cross-entropy), dropout drawn from `rng`, as one
    /// candle graph: the reference the fast [`Fusion::step`] is tested against.
    pub fn loss(&self, batch: &Batch, softmax: &Softmax, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let (f, states) = self
            .features(batch, &self.lookups(batch).map_err(crate::err)?, Some(rng))
            .map_err(crate::err)?;
        if self.config.repeat_positions == 0 {
            return ce(&f, self.get("out.w"), self.get("out.b"), &batch.targets, softmax, rng);
        }
        if !matches!(softmax, Softmax::Full) {
            return Err(repeat_needs_full_softmax());
        }
        let run = || -> candle_core::Result<Tensor> {
            let logits = self.logits(batch, &f, &states)?;
            let y = Tensor::from_slice(&batch.targets, batch.len(), &Device::Cpu)?;
            candle_nn::loss::cross_entropy(&logits, &y)
        };
        run().map_err(crate::err)
    }

    /// One training step on `batch`: loss, gradients, and `adam`'s update of every parameter
    /// (`adam` must be over [`Fusion::vars`] in order). Returns the loss.
    pub fn step(
        &self,
        batch: &Batch,
        softmax: &Softmax,
        rng: &mut ChaCha8Rng,
        adam: &mut crate::Adam,
    ) -> Result<f32> {
        let mut scratch = self.scratch.lock().map_err(|_| {
            Error::backend("std", "the training scratch", "a thread panicked holding it")
        })?;
        // Begun first: the output weights may be updated inside the backward pass. (A
        // non-finite loss leaves the parameters alone and stops training.)
        adam.begin_step();
        let (loss, dense, out_w_applied) =
            self.backward(batch, softmax, rng, &mut scratch, Some(&mut *adam))?;
        if !loss.is_finite() {
            return Ok(loss);
        }
        let index = |name: &str| self.index(name);
        for (name, g) in &dense {
            adam.update_var(index(name), g).map_err(crate::err)?;
        }
        let lazy = adam.config.lazy;
        let touched = if lazy { sorted_distinct(batch.real_ids()) } else { Vec::new() };
        for (k, name) in self.table_names().iter().enumerate() {
            let dim = scratch.d_tables[k].len() / self.config.tracks;
            if lazy {
                adam.update_rows(index(name), &scratch.d_tables[k], &touched, dim)
            } else {
                adam.update_var(index(name), &scratch.d_tables[k])
            }
            .map_err(crate::err)?;
            // Clear the rows this batch touched for the next step.
            for &id in &batch.ids {
                scratch.d_tables[k][id as usize * dim..(id as usize + 1) * dim].fill(0.0);
            }
        }
        let (out_w, out_b) = (index("out.w"), index("out.b"));
        let output = &scratch.output;
        if lazy && matches!(softmax, Softmax::Sampled { .. }) {
            let rows = sorted_distinct(output.rows.clone());
            adam.update_rows(out_w, &output.d_w, &rows, self.config.fc).map_err(crate::err)?;
            adam.update_rows(out_b, &output.d_b, &rows, 1).map_err(crate::err)?;
            return Ok(loss);
        }
        if !out_w_applied {
            adam.update_var(out_w, &output.d_w).map_err(crate::err)?;
        }
        adam.update_var(out_b, &output.d_b).map_err(crate::err)?;
        Ok(loss)
    }

    /// The loss and the gradient of every parameter (by name) that [`Fusion::step`] would
    /// apply, for tests.
    pub fn gradients(
        &self,
        batch: &Batch,
        softmax: &Softmax,
        rng: &mut ChaCha8Rng,
    ) -> Result<(f32, NamedGradients)> {
        let mut scratch = Scratch::default();
        let (loss, mut dense, _) = self.backward(batch, softmax, rng, &mut scratch, None)?;
        let tables = self.table_names();
        let mut out = Vec::new();
        for (name, _) in &self.vars {
            let g = if let Some(k) = tables.iter().position(|t| t == name) {
                std::mem::take(&mut scratch.d_tables[k])
            } else if name == "out.w" {
                std::mem::take(&mut scratch.output.d_w)
            } else if name == "out.b" {
                std::mem::take(&mut scratch.output.d_b)
            } else {
                let i = dense.iter().position(|(n, _)| n == name).expect("every dense gradient");
                dense.swap_remove(i).1
            };
            out.push((name.clone(), g));
        }
        Ok((loss, out))
    }
}
