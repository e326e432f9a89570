//! SASRec (Kang and McAuley, ICDM 2018) as RecBole 1.2.1 builds it: item and learned position
//! embeddings added, layer norm and dropout, `layers` Transformer blocks (multi-head
//! self-attention with a causal and padding mask, then a GELU feed-forward, each with dropout, a
//! residual connection and layer norm), and the output at each sequence's last real position
//! scored against the item embeddings (tied), cross-entropy over the whole catalogue. Weights
//! start as RecBole's: normal(0, 0.02) for embeddings and linear layers, zero biases, unit
//! layer-norm gains. Track `t` is item `t + 1`; item 0 is padding (masked out of attention,
//! never scored).

use candle_core::{D, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::data::Batch;
use crate::fusion::{dropout_values, var};
use crate::scoring::Hidden;
use crate::{Adam, NamedGradients, err};

mod step;

pub use step::SasRecScratch;

/// SASRec's settings (RecBole 1.2.1's defaults; batch and learning rate as the peer ran it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SasRecParams {
    /// Width of embeddings and hidden states.
    pub hidden: usize,
    /// Attention heads (must divide `hidden`).
    pub heads: usize,
    /// Transformer blocks.
    pub layers: usize,
    /// Width of the feed-forward layer.
    pub inner: usize,
    /// Dropout on hidden states.
    pub dropout: f64,
    /// Dropout on attention weights.
    pub attn_dropout: f64,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
}

impl Default for SasRecParams {
    fn default() -> Self {
        SasRecParams {
            hidden: 64,
            heads: 2,
            layers: 2,
            inner: 256,
            dropout: 0.5,
            attn_dropout: 0.5,
            batch_size: 256,
            lr: 1e-3,
        }
    }
}

impl SasRecParams {
    /// True for the defaults (kept out of stage keys, so they stay what they were).
    pub fn is_default(&self) -> bool {
        *self == SasRecParams::default()
    }

    /// Checks the values, naming a bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |k: &str, why: &str| Err(Error::Config(format!("model.sasrec.{k}: {why}")));
        if self.hidden == 0 || self.heads == 0 || self.layers == 0 || self.inner == 0 {
            return bad("hidden/heads/layers/inner", "must be positive");
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return bad("heads", "must divide hidden");
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.attn_dropout) {
            return bad("dropout", "must be in [0, 1)");
        }
        if self.batch_size == 0 || !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("batch_size/lr", "must be positive");
        }
        Ok(())
    }
}

/// Sizes of a SASRec model.
#[derive(Debug, Clone, PartialEq)]
pub struct SasRecConfig {
    /// Catalogue size (tracks; items are one more, for padding).
    pub tracks: usize,
    /// Longest input (learned positions).
    pub max_len: usize,
    /// Its settings.
    pub params: SasRecParams,
}

/// SASRec's parameters.
#[derive(Debug)]
pub struct SasRec {
    /// Its sizes.
    pub config: SasRecConfig,
    vars: Vec<(String, Var)>,
}

const LAYER_NORM_EPS: f32 = 1e-12;
const MASKED: f32 = -10_000.0;

/// `v` repeated as `rows` rows (`rows x v.elem_count()`), as the product of a ones column and
/// `v`: the same values as broadcasting, but `v`'s gradient is then a matrix product, where
/// broadcasting's is candle's strided sum over the rows (a tenth of the step when SASRec
/// trained through this graph; it is now the reference of the hand-written step's tests).
fn repeat_rows(v: &Tensor, rows: usize) -> candle_core::Result<Tensor> {
    let ones = Tensor::ones((rows, 1), v.dtype(), v.device())?;
    ones.matmul(&v.reshape((1, v.elem_count()))?)
}

fn normal_values(rng: &mut ChaCha8Rng, n: usize, std: f64) -> Vec<f32> {
    let d = Normal::new(0.0, std).expect("a positive deviation");
    (0..n).map(|_| d.sample(rng) as f32).collect()
}

impl SasRec {
    /// A model with RecBole's initialisation from `rng`.
    pub fn new(config: SasRecConfig, rng: &mut ChaCha8Rng) -> Result<Self> {
        config.params.validate()?;
        if config.tracks == 0 || config.max_len == 0 {
            return Err(Error::Config("SASRec needs tracks and a positive input length".into()));
        }
        let SasRecParams { hidden: h, inner, layers, .. } = config.params;
        let items = config.tracks + 1;
        let mut vars = Vec::new();
        let mut add = |name: String, values: Vec<f32>, shape: &[usize]| -> Result<()> {
            vars.push((name, var(values, shape)?));
            Ok(())
        };
        add("item".into(), normal_values(rng, items * h, 0.02), &[items, h])?;
        add("pos".into(), normal_values(rng, config.max_len * h, 0.02), &[config.max_len, h])?;
        add("ln.w".into(), vec![1.0; h], &[h])?;
        add("ln.b".into(), vec![0.0; h], &[h])?;
        for l in 0..layers {
            for (name, out, inp) in [
                ("q", h, h),
                ("k", h, h),
                ("v", h, h),
                ("o", h, h),
                ("ff1", inner, h),
                ("ff2", h, inner),
            ] {
                add(format!("l{l}.{name}.w"), normal_values(rng, out * inp, 0.02), &[out, inp])?;
                add(format!("l{l}.{name}.b"), vec![0.0; out], &[out])?;
            }
            for ln in ["ln1", "ln2"] {
                add(format!("l{l}.{ln}.w"), vec![1.0; h], &[h])?;
                add(format!("l{l}.{ln}.b"), vec![0.0; h], &[h])?;
            }
        }
        Ok(SasRec { config, vars })
    }

    /// Named parameters, in a fixed order.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    fn get(&self, name: &str) -> &Tensor {
        crate::fusion::param(&self.vars, name)
    }

    /// `x W^T + b` over the last dimension, as one matrix product over every position (a
    /// broadcast product ran one small product per row, several times slower).
    fn linear(&self, x: &Tensor, name: &str) -> candle_core::Result<Tensor> {
        let w = self.get(&format!("{name}.w"));
        let mut dims = x.dims().to_vec();
        let last = dims.pop().unwrap_or(0);
        let rows = dims.iter().product::<usize>();
        dims.push(w.dims()[0]);
        (x.reshape((rows, last))?.matmul(&w.t()?)?
            + repeat_rows(self.get(&format!("{name}.b")), rows)?)?
        .reshape(dims)
    }

    /// Layer norm over the last dimension, as `candle_nn::ops::layer_norm_slow`, with the gain
    /// and bias repeated by [`repeat_rows`].
    fn layer_norm(&self, x: &Tensor, name: &str) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let h = dims.last().copied().unwrap_or(0);
        let rows = x.elem_count() / h.max(1);
        let x = x.reshape((rows, h))?;
        let centred = x.broadcast_sub(&(x.sum_keepdim(1)? / h as f64)?)?;
        let var = (centred.sqr()?.sum_keepdim(1)? / h as f64)?;
        let normed = centred.broadcast_div(&(var + f64::from(LAYER_NORM_EPS))?.sqrt()?)?;
        (normed.mul(&repeat_rows(self.get(&format!("{name}.w")), rows)?)?
            + repeat_rows(self.get(&format!("{name}.b")), rows)?)?
        .reshape(dims)
    }

    /// Dropout with the model's generator (none when `rng` is `None`: evaluation).
    fn dropout(
        x: &Tensor,
        p: f64,
        rng: &mut Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<Tensor> {
        match rng {
            Some(r) => match dropout_values(r, x.elem_count(), p) {
                Some(mask) => x.mul(&Tensor::from_vec(mask, x.dims(), &Device::Cpu)?),
                None => Ok(x.clone()),
            },
            None => Ok(x.clone()),
        }
    }

    /// The hidden state at each row's last real position (`B x hidden`); dropout when `rng`.
    fn encode(
        &self,
        batch: &Batch,
        mut rng: Option<&mut ChaCha8Rng>,
    ) -> candle_core::Result<Tensor> {
        let (b, t) = (batch.len(), batch.width);
        let SasRecParams { hidden: h, heads, dropout, attn_dropout, layers, .. } =
            self.config.params;
        if t > self.config.max_len {
            return Err(candle_core::Error::Msg(format!(
                "an input of {t} tracks; SASRec has {} positions",
                self.config.max_len
            )));
        }
        let dev = Device::Cpu;
        // Items: track + 1 at real positions, 0 (padding) after.
        let items: Vec<u32> = batch
            .ids
            .iter()
            .enumerate()
            .map(|(g, &id)| if g % t < batch.lengths[g / t] { id + 1 } else { 0 })
            .collect();
        let ids = Tensor::from_vec(items.clone(), b * t, &dev)?;
        let emb = self.get("item").index_select(&ids, 0)?.reshape((b, t, h))?;
        let pos = repeat_rows(&self.get("pos").narrow(0, 0, t)?, b)?.reshape((b, t, h))?;
        let mut x = emb.add(&pos)?;
        x = self.layer_norm(&x, "ln")?;
        x = Self::dropout(&x, dropout, &mut rng)?;
        // Attention mask: a key is visible when it is real and not after the query.
        let mut mask = vec![MASKED; b * t * t];
        for r in 0..b {
            for q in 0..t {
                for k in 0..=q {
                    if items[r * t + k] != 0 {
                        mask[(r * t + q) * t + k] = 0.0;
                    }
                }
            }
        }
        let mask = Tensor::from_vec(mask, (b, 1, t, t), &dev)?;
        let dh = h / heads;
        let scale = 1.0 / (dh as f64).sqrt();
        for l in 0..layers {
            let split = |y: Tensor| -> candle_core::Result<Tensor> {
                y.reshape((b, t, heads, dh))?.transpose(1, 2)?.contiguous()
            };
            let q = split(self.linear(&x, &format!("l{l}.q"))?)?;
            let k = split(self.linear(&x, &format!("l{l}.k"))?)?;
            let v = split(self.linear(&x, &format!("l{l}.v"))?)?;
            let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(&mask)?;
            let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
            let probs = Self::dropout(&probs, attn_dropout, &mut rng)?;
            let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, t, h))?;
            let attended = self.linear(&context, &format!("l{l}.o"))?;
            let attended = Self::dropout(&attended, dropout, &mut rng)?;
            x = self.layer_norm(&attended.add(&x)?, &format!("l{l}.ln1"))?;
            let ff = self.linear(&x, &format!("l{l}.ff1"))?.gelu_erf()?;
            let ff = self.linear(&ff, &format!("l{l}.ff2"))?;
            let ff = Self::dropout(&ff, dropout, &mut rng)?;
            x = self.layer_norm(&ff.add(&x)?, &format!("l{l}.ln2"))?;
        }
        // The last real position of each row.
        let last: Vec<u32> =
            batch.lengths.iter().enumerate().map(|(r, &len)| (r * t + len - 1) as u32).collect();
        let last = Tensor::from_vec(last, b, &dev)?;
        x.reshape((b * t, h))?.index_select(&last, 0)
    }

    /// Scores of every track for each row of `batch` (`B x tracks`; no dropout).
    pub fn scores(&self, batch: &Batch) -> Result<Tensor> {
        self.hidden(batch)?.scores_tensor(0..self.config.tracks)
    }

    /// The encoder's last positions and the tied item table (padding row left out), from
    /// which any block of tracks is scored.
    pub fn hidden(&self, batch: &Batch) -> Result<Hidden> {
        let run = || -> candle_core::Result<Hidden> {
            let out = self.encode(batch, None)?;
            Ok(Hidden::new(out, self.get("item").narrow(0, 1, self.config.tracks)?, None))
        };
        run().map_err(err)
    }

    /// Loss and gradients of a training batch (with dropout), in [`SasRec::vars`]'s order:
    /// the values of [`SasRec::loss`] and its backward pass, computed by hand (see the
    /// `step` module).
    pub fn gradients(
        &self,
        batch: &Batch,
        rng: &mut ChaCha8Rng,
        scratch: &mut SasRecScratch,
    ) -> Result<(f32, NamedGradients)> {
        let loss = self.step_gradients(batch, rng, scratch)?;
        let names = self.vars.iter().map(|(n, _)| n.clone());
        Ok((loss, names.zip(scratch.grads.iter().cloned()).collect()))
    }

    /// One training step: the gradients of [`SasRec::gradients`], then Adam's update of
    /// every variable (`adam` built over [`SasRec::vars`] in its order). Returns the loss.
    pub fn step(
        &self,
        batch: &Batch,
        rng: &mut ChaCha8Rng,
        adam: &mut Adam,
        scratch: &mut SasRecScratch,
    ) -> Result<f32> {
        let loss = self.step_gradients(batch, rng, scratch)?;
        adam.begin_step();
        for (index, g) in scratch.grads.iter().enumerate() {
            adam.update_var(index, g).map_err(err)?;
        }
        Ok(loss)
    }

    /// Mean cross-entropy of a training batch over the whole catalogue, with dropout.
    pub fn loss(&self, batch: &Batch, rng: &mut ChaCha8Rng) -> Result<Tensor> {
        let mut run = || -> candle_core::Result<Tensor> {
            let out = self.encode(batch, Some(rng))?;
            let items = self.get("item").narrow(0, 1, self.config.tracks)?;
            let logits = out.matmul(&items.t()?)?;
            let y = Tensor::from_slice(&batch.targets, batch.len(), &Device::Cpu)?;
            candle_nn::loss::cross_entropy(&logits, &y)
        };
        run().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use rand::SeedableRng;

    fn model(tracks: usize) -> SasRec {
        let params = SasRecParams { hidden: 8, heads: 2, inner: 16, ..SasRecParams::default() };
        let config = SasRecConfig { tracks, max_len: 6, params };
        SasRec::new(config, &mut ChaCha8Rng::seed_from_u64(1)).unwrap()
    }

    /// Padding changes nothing: a row scores the same alone or beside a longer one, and the
    /// output is that of its last real position (later positions cannot be seen: causal).
    #[test]
    fn padding_and_causality() {
        let m = model(20);
        let alone = m.scores(&Batch::new(&[&[3, 4]], vec![])).unwrap();
        let padded = m.scores(&Batch::new(&[&[3, 4], &[5, 6, 7, 8, 9]], vec![])).unwrap();
        let a = alone.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let p = padded.get(0).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), 20);
        for (x, y) in a.iter().zip(&p) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
        assert!(m.scores(&Batch::new(&[&[1; 7]], vec![])).is_err(), "more positions than it has");
    }

    /// The graph's gradient of one weight against a central finite difference.
    #[test]
    fn gradients_match_finite_differences() {
        let mut m = model(12);
        // No dropout, so the loss is a function of the weights alone.
        m.config.params.dropout = 0.0;
        m.config.params.attn_dropout = 0.0;
        let batch = Batch::new(&[&[1, 2, 3], &[4], &[5, 5, 6, 7]], vec![3, 9, 2]);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let loss = m.loss(&batch, &mut rng).unwrap();
        let grads = loss.backward().unwrap();
        for (name, idx) in [
            ("item", 4 * 8 + 3),
            ("pos", 2 * 8 + 1),
            ("l0.q.w", 5),
            ("l1.ff2.w", 17),
            ("l1.ln2.w", 2),
            ("l0.o.b", 6),
        ] {
            let v = crate::fusion::param(m.vars(), name).clone();
            let g = grads.get(&v).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()[idx];
            let base = v.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let var = m.vars().iter().find(|(n, _)| n == name).unwrap().1.clone();
            let at = |delta: f32| {
                let mut w = base.clone();
                w[idx] += delta;
                var.set(&Tensor::from_vec(w, v.dims(), &Device::Cpu).unwrap()).unwrap();
                let l = m.loss(&batch, &mut ChaCha8Rng::seed_from_u64(0)).unwrap();
                f64::from(l.to_scalar::<f32>().unwrap())
            };
            let eps = 1e-2;
            let numeric = (at(eps) - at(-eps)) / (2.0 * f64::from(eps));
            var.set(&Tensor::from_vec(base, v.dims(), &Device::Cpu).unwrap()).unwrap();
            assert!(
                (numeric - f64::from(g)).abs() < 2e-3 + 2e-2 * numeric.abs(),
                "{name}[{idx}]: graph {g}, finite difference {numeric}"
            );
        }
    }

    /// The hand-written step gives the graph's loss and gradients, dropout included (the
    /// same masks: drawn in the same order from the same generator), on rows of different
    /// lengths with padding.
    #[test]
    fn hand_step_equals_the_graph() {
        let m = model(15);
        let batch = Batch::new(&[&[1, 2, 3], &[4], &[5, 5, 6, 7], &[14, 0]], vec![3, 9, 2, 0]);
        let graph_loss = m.loss(&batch, &mut ChaCha8Rng::seed_from_u64(4)).unwrap();
        let graph = graph_loss.backward().unwrap();
        let mut scratch = SasRecScratch::default();
        for _ in 0..2 {
            // Twice: buffers reused across steps must not leak into the next.
            let (loss, hand) =
                m.gradients(&batch, &mut ChaCha8Rng::seed_from_u64(4), &mut scratch).unwrap();
            assert!((loss - graph_loss.to_scalar::<f32>().unwrap()).abs() < 1e-5);
            assert_eq!(hand.len(), m.vars().len());
            for ((name, var), (hand_name, b)) in m.vars().iter().zip(&hand) {
                assert_eq!(name, hand_name);
                let a = graph.get(var).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(a.len(), b.len(), "{name}");
                let scale = a.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-6);
                for (x, y) in a.iter().zip(b) {
                    assert!((x - y).abs() <= 1e-4 * scale + 1e-7, "{name}: graph {x}, hand {y}");
                }
            }
        }
    }

    #[test]
    fn settings_are_checked() {
        let bad = SasRecParams { heads: 3, ..SasRecParams::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("model.sasrec.heads"));
        assert!(SasRecParams::default().is_default());
        assert_eq!(model(3).get("item").dtype(), DType::F32);
    }
}
