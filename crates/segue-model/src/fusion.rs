//! The attentive BiGRU with multimodal fusion (paper Fig. 2, eqs. 2-6) and every variant of it.
//!
//! `E1` (track embedding) -> dropout -> BiGRU (directions added) -> additive attention
//! `e_i = v^T tanh(W h_i + b)`, softmax over real positions -> `c1 = sum a_i h_i`; each content
//! table `E_k` -> dropout -> `c_k = sum a_i E_k[x_i]` with the same weights;
//! `[c1; c2; ...] -> FC -> LeakyReLU -> FC over the catalogue`.

use candle_core::{D, DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use segue_core::{Error, Result};

use crate::bigru::bigru;
use crate::data::Batch;
use crate::{Softmax, ce};

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

/// The model's parameters.
#[derive(Debug)]
pub struct Fusion {
    /// Its sizes.
    pub config: FusionConfig,
    vars: Vec<(String, Var)>,
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
    if p <= 0.0 {
        return Ok(None);
    }
    let keep = 1.0 / (1.0 - p) as f32;
    let v: Vec<f32> =
        (0..shape.0 * shape.1).map(|_| if rng.random::<f64>() < p { 0.0 } else { keep }).collect();
    Ok(Some(Tensor::from_vec(v, shape, &Device::Cpu).map_err(crate::err)?))
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
        Ok(Fusion { config, vars })
    }

    /// Named parameters, in a fixed order.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    fn get(&self, name: &str) -> &Tensor {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor())
            .expect("known parameter")
    }

    /// The input to the output layer, `B x fc`; `rng` draws dropout (training) or is `None`.
    fn features(
        &self,
        batch: &Batch,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (b, t, h) = (batch.len(), batch.width, c.hidden);
        let dev = Device::Cpu;
        let ids = Tensor::from_slice(&batch.ids, b * t, &dev)?;
        let mut dropped = |x: Tensor, width: usize| -> candle_core::Result<Tensor> {
            match rng.as_deref_mut().map(|r| dropout_mask(r, (b * t, width), c.dropout)) {
                Some(Ok(Some(mask))) => x.mul(&mask),
                Some(Err(e)) => Err(candle_core::Error::Msg(e.to_string())),
                _ => Ok(x),
            }
        };
        let emb = dropped(self.get("e1").embedding(&ids)?, c.embedding_dim)?;
        let x = emb
            .matmul(&self.get("gru.w_ih").t()?)?
            .broadcast_add(self.get("gru.b_ih"))?
            .reshape((b, t, 2, 3 * h))?;
        let states = bigru(&x, self.get("gru.w_hh"), self.get("gru.b_hh"), &batch.lengths)?;
        let flat = states.reshape((b * t, h))?;
        let u = flat.matmul(&self.get("att.w").t()?)?.broadcast_add(self.get("att.b"))?.tanh()?;
        let scores = u.matmul(self.get("att.v"))?.reshape((b, t))?;
        let pad: Vec<f32> = (0..b * t)
            .map(|i| if i % t < batch.lengths[i / t] { 0.0 } else { f32::NEG_INFINITY })
            .collect();
        let scores = scores.add(&Tensor::from_vec(pad, (b, t), &dev)?)?;
        let alpha = candle_nn::ops::softmax_last_dim(&scores)?.unsqueeze(1)?; // B x 1 x T
        let mut contexts = vec![alpha.matmul(&states)?.squeeze(1)?];
        for (k, &d) in c.content_dims.iter().enumerate() {
            let ek = dropped(self.get(&format!("content{k}")).embedding(&ids)?, d)?;
            contexts.push(alpha.matmul(&ek.reshape((b, t, d))?)?.squeeze(1)?);
        }
        let joined = Tensor::cat(&contexts, D::Minus1)?;
        let hidden = joined.matmul(&self.get("fc.w").t()?)?.broadcast_add(self.get("fc.b"))?;
        hidden.maximum(&hidden.affine(c.leaky_slope, 0.0)?)
    }

    /// Scores of every track for each row of `batch`, `B x tracks` (no dropout).
    pub fn scores(&self, batch: &Batch) -> Result<Tensor> {
        let f = self.features(batch, None).map_err(crate::err)?;
        f.matmul(&self.get("out.w").t().map_err(crate::err)?)
            .and_then(|s| s.broadcast_add(self.get("out.b")))
            .map_err(crate::err)
    }

    /// The training loss of `batch` (mean cross-entropy), dropout drawn from `rng`.
    pub fn loss(&self, batch: &Batch, softmax: &Softmax, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let f = self.features(batch, Some(rng)).map_err(crate::err)?;
        ce(&f, self.get("out.w"), self.get("out.b"), &batch.targets, softmax, rng)
    }

    /// The dtype of every parameter.
    pub fn dtype(&self) -> DType {
        DType::F32
    }
}
