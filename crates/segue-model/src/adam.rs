//! Adam without weight decay, fused: one pass over each parameter that updates its moments and
//! the parameter together, in place, in parallel chunks.
//!
//! candle's `AdamW` runs about a dozen whole-tensor operations per parameter and allocates a
//! new tensor for each; on the embedding and output matrices of a large catalogue that was
//! most of a training step. The arithmetic here is PyTorch's `Adam` (`fused=True` or not):
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`.

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp2, Layout, Var};
use rayon::prelude::*;

/// Adam's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// The optimizer: its settings, the step count and each parameter's moments.
#[derive(Debug)]
pub struct Adam {
    /// Settings.
    pub config: AdamConfig,
    /// Steps taken.
    pub step: u64,
    vars: Vec<Var>,
    /// First and second moments of each variable, in the order of `vars`.
    pub(crate) moments: Vec<(Vec<f32>, Vec<f32>)>,
}

struct Update<'a> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc1: f32,
    bc2_sqrt: f32,
}

const CHUNK: usize = 1 << 14;

impl InplaceOp2 for Update<'_> {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        gl: &Layout,
    ) -> candle_core::Result<()> {
        let (CpuStorage::F32(p), CpuStorage::F32(g)) = (dst, src) else {
            candle_core::bail!("adam: parameters and gradients must be f32")
        };
        let (Some((ps, pe)), Some((gs, ge))) =
            (dst_l.contiguous_offsets(), gl.contiguous_offsets())
        else {
            candle_core::bail!("adam: parameters and gradients must be contiguous")
        };
        let (p, g) = (&mut p[ps..pe], &g[gs..ge]);
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        if p.len() != g.len() || p.len() != m.len() {
            candle_core::bail!("adam: {} parameters, {} gradients", p.len(), g.len());
        }
        let step = self.lr / self.bc1;
        let (b1, b2, eps, bc2) = (self.beta1, self.beta2, self.eps, self.bc2_sqrt);
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
            .for_each(|((p, g), (m, v))| {
                for i in 0..p.len() {
                    let gi = g[i];
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    p[i] -= step * m[i] / (v[i].sqrt() / bc2 + eps);
                }
            });
        Ok(())
    }
}

impl Adam {
    /// An optimizer over `vars` with zero moments.
    pub fn new(vars: Vec<Var>, config: AdamConfig) -> Self {
        let moments =
            vars.iter().map(|v| (vec![0.0; v.elem_count()], vec![0.0; v.elem_count()])).collect();
        Adam { config, step: 0, vars, moments }
    }

    /// One step from the gradients in `grads`; a variable without a gradient is left alone
    /// (its moments too, as PyTorch skips parameters whose grad is None).
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        for (var, (m, v)) in self.vars.iter().zip(&mut self.moments) {
            let Some(g) = grads.get(var) else { continue };
            let g = g.contiguous()?;
            let op = Update {
                m: RefCell::new(m),
                v: RefCell::new(v),
                lr: c.lr as f32,
                beta1: c.beta1 as f32,
                beta2: c.beta2 as f32,
                eps: c.eps as f32,
                bc1: (1.0 - c.beta1.powi(t)) as f32,
                bc2_sqrt: (1.0 - c.beta2.powi(t)).sqrt() as f32,
            };
            var.as_tensor().inplace_op2(&g, &op)?;
        }
        Ok(())
    }
}
