//! Adam without weight decay, fused: one pass over each parameter that updates its moments and
//! the parameter together, in place, in parallel chunks.
//!
//! candle's `AdamW` runs about a dozen whole-tensor operations per parameter and allocates a
//! new tensor for each; on the embedding and output matrices of a large catalogue that was
//! most of a training step. The arithmetic here is PyTorch's `Adam` (`fused=True` or not):
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`, except that a moment below
//! f32's normal range becomes zero (the untouched rows' moments would otherwise sit on
//! subnormals, many times slower to compute with).

use std::cell::RefCell;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, InplaceOp1, InplaceOp2, Layout, Var};
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
    /// Lazy (sparse) Adam for the catalogue-sized parameters of the fused model and GRU4Rec: an
    /// embedding table's row, and with a sampled softmax (GRU4Rec's is always sampled) an
    /// output row and bias, is updated (moments
    /// included) only at the steps whose batch touches it, as TensorFlow's `LazyAdam`; the
    /// bias corrections still follow the global step. Time per step then does not grow with
    /// the catalogue. Dense parameters, and the output layer of a full softmax, stay dense.
    pub lazy: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, lazy: false }
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

/// The constants of one step.
#[derive(Clone, Copy)]
pub(crate) struct StepConsts {
    step: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bc2_sqrt: f32,
}

/// The fused update of one parameter slice from its gradient, on this thread.
pub(crate) fn update_serial(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: StepConsts) {
    let StepConsts { step, beta1: b1, beta2: b2, eps, bc2_sqrt: bc2 } = c;
    for i in 0..p.len() {
        let gi = g[i];
        m[i] = flush_subnormal(b1 * m[i] + (1.0 - b1) * gi);
        v[i] = flush_subnormal(b2 * v[i] + (1.0 - b2) * gi * gi);
        p[i] -= step * m[i] / (v[i].sqrt() / bc2 + eps);
    }
}

/// Zero for a moment that has decayed below f32's normal range. The moments of rows no batch
/// touches decay geometrically and would otherwise reach the smallest subnormal and stay
/// there (0.9 times it rounds back to it): every later step then computes on subnormals, which
/// CPUs do many times slower (a dense-Adam epoch ran at half the speed of the one before). A
/// moment that small moves no parameter: its update is below 1e-30 of the learning rate.
#[inline]
fn flush_subnormal(x: f32) -> f32 {
    if x.abs() < f32::MIN_POSITIVE { 0.0 } else { x }
}

/// [`update_serial`] in parallel chunks.
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: StepConsts) {
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((p, g), (m, v))| update_serial(p, g, m, v, c));
}

/// Updates a parameter in place from a gradient tensor.
struct FromTensor<'a> {
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    c: StepConsts,
}

/// Updates a parameter in place from a gradient slice.
struct FromSlice<'a> {
    g: &'a [f32],
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    c: StepConsts,
}

const CHUNK: usize = 1 << 14;

fn param_slice<'a>(dst: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
    let CpuStorage::F32(p) = dst else { candle_core::bail!("adam: parameters must be f32") };
    let Some((s, e)) = l.contiguous_offsets() else {
        candle_core::bail!("adam: parameters must be contiguous")
    };
    Ok(&mut p[s..e])
}

fn check(p: usize, g: usize, m: usize) -> candle_core::Result<()> {
    if p != g || p != m {
        candle_core::bail!("adam: {p} parameters, {g} gradients, {m} moments");
    }
    Ok(())
}

impl InplaceOp2 for FromTensor<'_> {
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
        let p = param_slice(dst, dst_l)?;
        let (CpuStorage::F32(g), Some((gs, ge))) = (src, gl.contiguous_offsets()) else {
            candle_core::bail!("adam: gradients must be contiguous f32")
        };
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        check(p.len(), ge - gs, m.len())?;
        update(p, &g[gs..ge], &mut m, &mut v, self.c);
        Ok(())
    }
}

impl InplaceOp1 for FromSlice<'_> {
    fn name(&self) -> &'static str {
        "adam"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout) -> candle_core::Result<()> {
        let p = param_slice(dst, dst_l)?;
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        check(p.len(), self.g.len(), m.len())?;
        update(p, self.g, &mut m, &mut v, self.c);
        Ok(())
    }
}

/// Updates only some rows of a parameter from their gradient rows (lazy Adam).
struct RowsFromSlice<'a> {
    g: &'a [f32],
    rows: &'a [u32],
    width: usize,
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    c: StepConsts,
}

impl InplaceOp1 for RowsFromSlice<'_> {
    fn name(&self) -> &'static str {
        "lazy-adam"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout) -> candle_core::Result<()> {
        let p = param_slice(dst, dst_l)?;
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        check(p.len(), self.g.len(), m.len())?;
        let w = self.width;
        for &r in self.rows {
            let s = r as usize * w;
            if s + w > p.len() {
                candle_core::bail!("lazy-adam: row {r} outside {} rows of {w}", p.len() / w);
            }
            let (p, g) = (&mut p[s..s + w], &self.g[s..s + w]);
            update_serial(p, g, &mut m[s..s + w], &mut v[s..s + w], self.c);
        }
        Ok(())
    }
}

/// Hands a parameter and its moments to a closure that computes the gradient and applies
/// the update itself (a gradient too large to keep: see [`Adam::update_var_with`]).
struct WithClosure<'a, F> {
    f: RefCell<Option<F>>,
    m: RefCell<&'a mut [f32]>,
    v: RefCell<&'a mut [f32]>,
    c: StepConsts,
}

impl<F> InplaceOp1 for WithClosure<'_, F>
where
    F: FnOnce(&mut [f32], &mut [f32], &mut [f32], StepConsts),
{
    fn name(&self) -> &'static str {
        "adam"
    }

    fn cpu_fwd(&self, dst: &mut CpuStorage, dst_l: &Layout) -> candle_core::Result<()> {
        let p = param_slice(dst, dst_l)?;
        let (mut m, mut v) = (self.m.borrow_mut(), self.v.borrow_mut());
        check(p.len(), p.len(), m.len())?;
        let f = self.f.borrow_mut().take();
        let Some(f) = f else { candle_core::bail!("adam: update applied twice") };
        f(p, &mut m, &mut v, self.c);
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

    fn consts(&self) -> StepConsts {
        let c = self.config;
        let t = self.step.max(1) as i32;
        StepConsts {
            step: (c.lr / (1.0 - c.beta1.powi(t))) as f32,
            beta1: c.beta1 as f32,
            beta2: c.beta2 as f32,
            eps: c.eps as f32,
            bc2_sqrt: (1.0 - c.beta2.powi(t)).sqrt() as f32,
        }
    }

    /// One step from the gradients in `grads`; a variable without a gradient is left alone
    /// (its moments too, as PyTorch skips parameters whose grad is None).
    pub fn step(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        self.begin_step();
        self.update_from(grads)
    }

    /// Starts a step: the bias corrections of the updates that follow use its number.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// Updates every variable that has a gradient in `grads` (after [`Adam::begin_step`]).
    pub fn update_from(&mut self, grads: &GradStore) -> candle_core::Result<()> {
        let c = self.consts();
        for (var, (m, v)) in self.vars.iter().zip(&mut self.moments) {
            let Some(g) = grads.get(var) else { continue };
            let g = g.contiguous()?;
            let op = FromTensor { m: RefCell::new(m), v: RefCell::new(v), c };
            var.as_tensor().inplace_op2(&g, &op)?;
        }
        Ok(())
    }

    /// Updates variable `index` through `f`, given the parameter, its two moments and the
    /// step's constants; `f` computes the gradient piece by piece and applies
    /// [`update_serial`] to each piece, so a catalogue-sized gradient is never stored (after
    /// [`Adam::begin_step`]).
    pub(crate) fn update_var_with<F>(&mut self, index: usize, f: F) -> candle_core::Result<()>
    where
        F: FnOnce(&mut [f32], &mut [f32], &mut [f32], StepConsts),
    {
        let c = self.consts();
        let (m, v) = &mut self.moments[index];
        let op =
            WithClosure { f: RefCell::new(Some(f)), m: RefCell::new(m), v: RefCell::new(v), c };
        self.vars[index].as_tensor().inplace_op1(&op)
    }

    /// Updates only `rows` (each once: sorted and deduplicated) of variable `index`, a matrix
    /// of rows `width` wide, from the same rows of `grad` (after [`Adam::begin_step`]). The
    /// other rows and their moments are left as they are: [`AdamConfig::lazy`].
    pub fn update_rows(
        &mut self,
        index: usize,
        grad: &[f32],
        rows: &[u32],
        width: usize,
    ) -> candle_core::Result<()> {
        if width == 0 || rows.windows(2).any(|w| w[0] >= w[1]) {
            candle_core::bail!("lazy-adam: rows must be sorted and distinct, width above 0");
        }
        let c = self.consts();
        let (m, v) = &mut self.moments[index];
        let op = RowsFromSlice { g: grad, rows, width, m: RefCell::new(m), v: RefCell::new(v), c };
        self.vars[index].as_tensor().inplace_op1(&op)
    }

    /// Updates variable `index` from a gradient computed outside candle's graph (after
    /// [`Adam::begin_step`]).
    pub fn update_var(&mut self, index: usize, grad: &[f32]) -> candle_core::Result<()> {
        let c = self.consts();
        let (m, v) = &mut self.moments[index];
        let op = FromSlice { g: grad, m: RefCell::new(m), v: RefCell::new(v), c };
        self.vars[index].as_tensor().inplace_op1(&op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row no batch touches: its first moment decays to exactly zero, never to a subnormal
    /// it would keep (0.9 times the smallest subnormal rounds back to it).
    #[test]
    fn untouched_moments_reach_zero_not_subnormals() {
        let (mut p, mut m, mut v) = ([0.5f32], [1e-3f32], [1e-6f32]);
        let c = StepConsts { step: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, bc2_sqrt: 1.0 };
        for _ in 0..2_000 {
            update_serial(&mut p, &[0.0], &mut m, &mut v, c);
            assert!(m[0] == 0.0 || m[0].is_normal(), "{:e}", m[0]);
            assert!(v[0] == 0.0 || v[0].is_normal(), "{:e}", v[0]);
        }
        assert_eq!(m[0], 0.0);
    }
}
