//! GRU4Rec (Hidasi et al., ICLR 2016; the cross-entropy with additional samples of Hidasi &
//! Karatzoglou, CIKM 2018), the paper's sequential baseline.
//!
//! Training is session-parallel: `batch_size` lanes each walk through one session, one event
//! per step; a lane whose session ends takes the next session and its hidden state is reset
//! to zero; the hidden state is carried from step to step without back-propagation through
//! earlier steps (truncated at one step, as GRU4Rec). Sessions are taken in a seeded random
//! order each epoch, and lanes that run out of sessions drop out, so every transition of every
//! training session is one example, as for the other models. The loss at each step is
//! cross-entropy over the scores of the batch's targets (each row's own target is its
//! positive, the other rows' are its negatives) plus `negatives` tracks drawn with
//! probability proportional to training plays^0.75, shared by the rows.
//!
//! Settings: embedding input of the model's embedding size with dropout on it, one GRU layer
//! of the model's hidden size, a linear output over the catalogue, Adam at the model's rate.
//! Evaluation runs the GRU over the same input window as the other models and ranks the whole
//! catalogue.

use candle_core::{D, Device, Tensor, Var};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use segue_core::{Error, Result};

use crate::data::{Batch, Sessions};
use crate::fusion::{dropout_values, normal, uniform, var};
use crate::scoring::Hidden;
use crate::{Sampler, err};

mod step;

pub use step::Gru4RecScratch;
pub(crate) use step::{StepGradients, StepInput};

/// Sizes and loss of GRU4Rec.
#[derive(Debug, Clone, PartialEq)]
pub struct Gru4RecConfig {
    /// Catalogue size.
    pub tracks: usize,
    /// Width of the input embedding.
    pub embedding_dim: usize,
    /// GRU state size.
    pub hidden: usize,
    /// Dropout on the input embedding.
    pub dropout: f64,
    /// Extra negatives per step beyond the batch's own targets.
    pub negatives: usize,
}

/// GRU4Rec's parameters.
#[derive(Debug)]
pub struct Gru4Rec {
    /// Its sizes.
    pub config: Gru4RecConfig,
    vars: Vec<(String, Var)>,
}

impl Gru4Rec {
    /// A model with PyTorch's initialisation from `rng`.
    pub fn new(config: Gru4RecConfig, rng: &mut ChaCha8Rng) -> Result<Self> {
        let Gru4RecConfig { tracks: v, embedding_dim: e, hidden: h, .. } = config;
        if v == 0 || e == 0 || h == 0 {
            return Err(Error::Config("model sizes must be positive".into()));
        }
        let gb = 1.0 / (h as f64).sqrt();
        let vars = vec![
            ("e1".to_string(), var(normal(rng, v * e), &[v, e])?),
            ("gru.w_ih".into(), var(uniform(rng, 3 * h * e, gb), &[3 * h, e])?),
            ("gru.b_ih".into(), var(uniform(rng, 3 * h, gb), &[3 * h])?),
            ("gru.w_hh".into(), var(uniform(rng, 3 * h * h, gb), &[3 * h, h])?),
            ("gru.b_hh".into(), var(uniform(rng, 3 * h, gb), &[3 * h])?),
            ("out.w".into(), var(uniform(rng, v * h, gb), &[v, h])?),
            ("out.b".into(), var(uniform(rng, v, gb), &[v])?),
        ];
        Ok(Gru4Rec { config, vars })
    }

    /// Named parameters, in a fixed order.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    fn get(&self, name: &str) -> &Tensor {
        crate::fusion::param(&self.vars, name)
    }

    /// One GRU step (PyTorch's gate layout) from inputs `x` (`B x E`) and states `h`.
    fn cell(&self, x: &Tensor, h: &Tensor) -> candle_core::Result<Tensor> {
        let hd = self.config.hidden;
        let gi = x.matmul(&self.get("gru.w_ih").t()?)?.broadcast_add(self.get("gru.b_ih"))?;
        let gh = h.matmul(&self.get("gru.w_hh").t()?)?.broadcast_add(self.get("gru.b_hh"))?;
        let part = |t: &Tensor, k: usize| t.narrow(D::Minus1, k * hd, hd);
        let r = candle_nn::ops::sigmoid(&part(&gi, 0)?.add(&part(&gh, 0)?)?)?;
        let z = candle_nn::ops::sigmoid(&part(&gi, 1)?.add(&part(&gh, 1)?)?)?;
        let n = part(&gi, 2)?.add(&r.mul(&part(&gh, 2)?)?)?.tanh()?;
        // h' = n + z (h - n) = (1 - z) n + z h
        n.add(&z.mul(&h.sub(&n)?)?)
    }

    /// Scores of every track after running the GRU over each row of `batch` (no dropout).
    pub fn scores(&self, batch: &Batch) -> Result<Tensor> {
        self.hidden(batch)?.scores_tensor(0..self.config.tracks)
    }

    /// The GRU's last states and the output layer, from which any block of tracks is scored.
    pub fn hidden(&self, batch: &Batch) -> Result<Hidden> {
        let run = || -> candle_core::Result<Hidden> {
            let (b, t) = (batch.len(), batch.width);
            let dev = Device::Cpu;
            let ids = Tensor::from_slice(&batch.ids, (b, t), &dev)?;
            let mut h = Tensor::zeros((b, self.config.hidden), candle_core::DType::F32, &dev)?;
            for step in 0..t {
                let x = self.get("e1").embedding(&ids.narrow(1, step, 1)?.squeeze(1)?)?;
                let next = self.cell(&x, &h)?;
                let keep: Vec<f32> =
                    batch.lengths.iter().map(|&l| if step < l { 1.0 } else { 0.0 }).collect();
                let keep = Tensor::from_vec(keep, (b, 1), &dev)?;
                // Rows already at their end keep their state.
                h = h.add(&next.sub(&h)?.broadcast_mul(&keep)?)?;
            }
            Ok(Hidden::new(h, self.get("out.w").clone(), Some(self.get("out.b").clone())))
        };
        run().map_err(err)
    }

    /// One epoch of session-parallel training; `step` takes each step's loss, the number of
    /// predictions in it and its gradients (it runs the optimizer: [`Gru4Rec::apply`]).
    /// Targets before `sessions.min_input` feed the state but are not predicted.
    pub(crate) fn epoch(
        &self,
        sessions: &Sessions,
        batch_size: usize,
        sampler: &Sampler,
        rng: &mut ChaCha8Rng,
        mut step: impl FnMut(f32, usize, StepGradients) -> Result<()>,
    ) -> Result<(f64, usize)> {
        let h = self.config.hidden;
        let mut order: Vec<usize> = (0..sessions.offsets.len() - 1)
            .filter(|&s| sessions.offsets[s + 1] - sessions.offsets[s] > sessions.min_input.max(1))
            .collect();
        order.shuffle(rng);
        let mut next_session = order.into_iter();
        // Each lane: (flat index of the current input, flat index one past its session, flat
        // index of its session's first track).
        let mut lanes: Vec<(usize, usize, usize)> = Vec::with_capacity(batch_size);
        let mut state: Vec<f32> = Vec::new();
        let (mut total, mut examples) = (0.0f64, 0usize);
        loop {
            // Refill finished lanes with new sessions (state reset), drop lanes with none left.
            let mut i = 0;
            while i < batch_size.max(lanes.len()) {
                let done = i >= lanes.len() || lanes[i].0 + 1 >= lanes[i].1;
                if done {
                    match next_session.next() {
                        Some(s) => {
                            let lane =
                                (sessions.offsets[s], sessions.offsets[s + 1], sessions.offsets[s]);
                            if i < lanes.len() {
                                lanes[i] = lane;
                                state[i * h..(i + 1) * h].fill(0.0);
                            } else {
                                lanes.push(lane);
                                state.extend(std::iter::repeat_n(0.0, h));
                            }
                        }
                        None if i < lanes.len() => {
                            lanes.swap_remove(i);
                            let last = lanes.len();
                            state.copy_within(last * h..(last + 1) * h, i * h);
                            state.truncate(last * h);
                            continue;
                        }
                        None => break,
                    }
                }
                i += 1;
            }
            if lanes.is_empty() {
                break;
            }
            let b = lanes.len();
            let inputs: Vec<u32> = lanes.iter().map(|l| sessions.flat[l.0]).collect();
            let targets: Vec<u32> = lanes.iter().map(|l| sessions.flat[l.0 + 1]).collect();
            // Lanes whose target sits before `min_input` read their input but predict nothing
            // (every lane counts with the default of 1).
            let predicted: Vec<u32> = (0..b as u32)
                .filter(|&i| {
                    let l = lanes[i as usize];
                    l.0 + 1 - l.2 >= sessions.min_input
                })
                .collect();
            let negatives = sampler.draw(self.config.negatives, rng);
            let mask = dropout_values(rng, b * self.config.embedding_dim, self.config.dropout);
            let input = StepInput {
                inputs: &inputs,
                state: &state,
                targets: &targets,
                negatives: &negatives,
                predicted: &predicted,
                mask: mask.as_deref(),
            };
            let (loss, h1, grads) = self.step_gradients(&input)?;
            state = h1;
            if let Some(loss) = loss {
                let n = predicted.len();
                step(loss, n, grads)?;
                total += loss as f64 * n as f64;
                examples += n;
            }
            for l in &mut lanes {
                l.0 += 1;
            }
        }
        Ok((total, examples))
    }
}
