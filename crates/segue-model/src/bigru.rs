//! A fused bidirectional GRU as one candle operation with a hand-written backward pass.
//!
//! candle's `GRU` runs a dozen small tensor operations per time step and recomputes the input
//! projection at every step; here the input projection of all steps is one matrix product done
//! by the caller (so candle differentiates it), and the recurrence of both directions runs in
//! one op: one `B x H` by `H x 3H` product per step and direction, the directions on two
//! threads. The forward pass keeps its gates for the backward pass.
//!
//! Gates and weights follow PyTorch's `nn.GRU` (rows r, z, n):
//! `r = s(x_r + W_hr h + b_hr)`, `z = s(x_z + W_hz h + b_hz)`,
//! `n = tanh(x_n + r * (W_hn h + b_hn))`, `h' = (1 - z) n + z h`,
//! where `x = W_ih e + b_ih` is the precomputed input projection.
//!
//! Sequences are left-aligned: sequence `b` has real items at `0..lengths[b]`. The forward
//! direction runs over them from the start; the backward direction starts at each sequence's
//! last real item with a zero state. The output is the sum of the two directions' states at
//! each real position and zero at padding, so padding never changes a real output.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use gemm::Parallelism;
use segue_core::simd::exp;

/// The op: lengths of the batch's sequences and the gates its forward pass saves.
pub(crate) struct BiGru {
    lengths: Vec<usize>,
    hidden: usize,
    /// Where the input projection of grid position `b * T + t` is: row `rows[g]` of a packed
    /// table of the real positions (the fused step's own products), or, when `None`, row `g`
    /// of the `B x T` grid (candle's graph). Padding's entry is never read.
    rows: Option<Vec<u32>>,
    saved: Mutex<Option<[Saved; 2]>>,
}

/// What one direction's forward pass keeps, each `B x T x H` (gates r, z, n, the recurrent
/// part of n before r is applied, and the state entering the step).
#[derive(Default, Clone)]
pub(crate) struct Saved {
    r: Vec<f32>,
    z: Vec<f32>,
    n: Vec<f32>,
    hn: Vec<f32>,
    h_prev: Vec<f32>,
}

/// The logistic function through segue-core's vectorisable `exp`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// tanh through `exp` (libm's `tanhf` goes through the slower `expm1f`; this was 6% of a
/// training step). Absolute error below 1e-7; saturates to +-1 without overflow trouble.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    2.0 * sigmoid(2.0 * x) - 1.0
}

/// The gates of one row at one step, for each of the `H` units: the input projection `x`
/// and recurrent product `gh` (`3H` each, rows r, z, n), `b_hh`, the state (updated in
/// place) and the saved gates `r`, `z`, `n`, `hn` and output (`H` each). One loop the
/// compiler vectorises, `exp` included.
struct Gates<'a> {
    r: &'a mut [f32],
    z: &'a mut [f32],
    n: &'a mut [f32],
    hn: &'a mut [f32],
    out: &'a mut [f32],
}

segue_core::dispatch! {
    fn gru_gates(x: &[f32], gh: &[f32], bias: &[f32], state: &mut [f32], g: Gates<'_>) {
        let h = state.len();
        let (xr, xz, xn) = (&x[..h], &x[h..2 * h], &x[2 * h..3 * h]);
        let (gr, gz, gn) = (&gh[..h], &gh[h..2 * h], &gh[2 * h..3 * h]);
        let (br, bz, bn) = (&bias[..h], &bias[h..2 * h], &bias[2 * h..3 * h]);
        let Gates { r: rs, z: zs, n: ns, hn: hns, out } = g;
        let (rs, zs, ns, hns, out) = (&mut rs[..h], &mut zs[..h], &mut ns[..h], &mut hns[..h], &mut out[..h]);
        for j in 0..h {
            let r = sigmoid(xr[j] + gr[j] + br[j]);
            let z = sigmoid(xz[j] + gz[j] + bz[j]);
            let hn = gn[j] + bn[j];
            let n = tanh(xn[j] + r * hn);
            let new = (1.0 - z) * n + z * state[j];
            rs[j] = r;
            zs[j] = z;
            ns[j] = n;
            hns[j] = hn;
            state[j] = new;
            out[j] = new;
        }
    }
}

/// `dst (m x n) = [dst +] lhs (m x k) * rhs`, all row-major; `lhs_t` reads lhs as the
/// transpose of a `k x m` matrix, `rhs_t` reads rhs as the transpose of an `n x k` matrix.
/// Single-threaded (the GRU's products are small and run two at a time).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_t: bool,
    rhs: &[f32],
    rhs_t: bool,
    m: usize,
    n: usize,
    k: usize,
) {
    gemm_with(dst, accumulate, lhs, lhs_t, rhs, rhs_t, m, n, k, Parallelism::None)
}

/// [`matmul`] on rayon's threads, for the catalogue-sized products.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_par(
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_t: bool,
    rhs: &[f32],
    rhs_t: bool,
    m: usize,
    n: usize,
    k: usize,
) {
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    gemm_with(dst, accumulate, lhs, lhs_t, rhs, rhs_t, m, n, k, par)
}

#[allow(clippy::too_many_arguments)]
fn gemm_with(
    dst: &mut [f32],
    accumulate: bool,
    lhs: &[f32],
    lhs_t: bool,
    rhs: &[f32],
    rhs_t: bool,
    m: usize,
    n: usize,
    k: usize,
    parallelism: Parallelism,
) {
    assert!(dst.len() >= m * n && lhs.len() >= m * k && rhs.len() >= k * n);
    let (lhs_cs, lhs_rs) = if lhs_t { (m as isize, 1) } else { (1, k as isize) };
    let (rhs_cs, rhs_rs) = if rhs_t { (k as isize, 1) } else { (1, n as isize) };
    // SAFETY: the slices hold the m x n, m x k and k x n matrices the strides describe
    // (checked above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            parallelism,
        )
    }
}

/// Geometry shared by the passes.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    h: usize,
}

impl Dims {
    /// The time step processed at `step` by direction `dir` (0 forward, 1 backward).
    fn time(&self, dir: usize, step: usize) -> usize {
        if dir == 0 { step } else { self.t - 1 - step }
    }
}

impl BiGru {
    pub(crate) fn new(lengths: Vec<usize>, hidden: usize) -> Self {
        BiGru { lengths, hidden, rows: None, saved: Mutex::new(None) }
    }

    /// An op whose input projection (and its gradient) holds only the real positions, grid
    /// position `g` at row `rows[g]`: no `B x T` copy of it is made in either pass.
    pub(crate) fn packed(lengths: Vec<usize>, hidden: usize, rows: Vec<u32>) -> Self {
        BiGru { lengths, hidden, rows: Some(rows), saved: Mutex::new(None) }
    }

    /// The input projection's row of grid position `g`.
    fn row(&self, g: usize) -> usize {
        self.rows.as_ref().map_or(g, |r| r[g] as usize)
    }

    /// Rows of the input projection: the real positions when packed, else the grid's.
    fn input_rows(&self, nb: usize, nt: usize) -> usize {
        match &self.rows {
            Some(_) => self.lengths.iter().sum(),
            None => nb * nt,
        }
    }

    /// Both directions' forward passes on two threads: the input projection `x`
    /// (`B x T x 2 x 3H`, or one row per real position when packed), `W_hh` (`2 x 3H x H`)
    /// and `b_hh` (`2 x 3H`) give the summed states
    /// (`B x T x H`, zero at padding) and what the backward pass needs. The caller checks the
    /// shapes and that every length is in `1..=T`.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        nb: usize,
        nt: usize,
    ) -> (Vec<f32>, [Saved; 2]) {
        let h = self.hidden;
        let g3 = 3 * h;
        let d = Dims { b: nb, t: nt, h };
        let mut out_f = vec![0.0f32; nb * nt * h];
        let mut out_b = vec![0.0f32; nb * nt * h];
        let (sf, sb) = rayon::join(
            || self.forward_dir(d, 0, x, &w[..g3 * h], &bias[..g3], &mut out_f),
            || self.forward_dir(d, 1, x, &w[g3 * h..], &bias[g3..], &mut out_b),
        );
        for (a, b) in out_f.iter_mut().zip(&out_b) {
            *a += b;
        }
        (out_f, [sf, sb])
    }

    /// Both directions' backward passes on two threads, from the gradient of the summed
    /// states: gradients of the input projection (laid out as the input was), `W_hh` and
    /// `b_hh`.
    pub(crate) fn backward(
        &self,
        saved: &[Saved; 2],
        w: &[f32],
        grad: &[f32],
        nb: usize,
        nt: usize,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let h = self.hidden;
        let g3 = 3 * h;
        let d = Dims { b: nb, t: nt, h };
        let mut dw = vec![0.0f32; 2 * g3 * h];
        let mut db = vec![0.0f32; 2 * g3];
        let (dw_f, dw_b) = dw.split_at_mut(g3 * h);
        let (db_f, db_b) = db.split_at_mut(g3);
        let (dx_f, dx_b) = rayon::join(
            || self.backward_dir(d, 0, &saved[0], &w[..g3 * h], grad, dw_f, db_f),
            || self.backward_dir(d, 1, &saved[1], &w[g3 * h..], grad, dw_b, db_b),
        );
        let mut dx = vec![0.0f32; self.input_rows(nb, nt) * 2 * g3];
        for (i, row) in dx.chunks_exact_mut(2 * g3).enumerate() {
            row[..g3].copy_from_slice(&dx_f[i * g3..][..g3]);
            row[g3..].copy_from_slice(&dx_b[i * g3..][..g3]);
        }
        (dx, dw, db)
    }

    /// One direction's forward pass: writes its states into `out` (`B x T x H`, zero at
    /// padding) and returns the saved gates.
    fn forward_dir(
        &self,
        d: Dims,
        dir: usize,
        x: &[f32],
        w: &[f32],
        bias: &[f32],
        out: &mut [f32],
    ) -> Saved {
        let Dims { b: nb, t: nt, h } = d;
        let g3 = 3 * h;
        let mut s = Saved {
            r: vec![0.0; nb * nt * h],
            z: vec![0.0; nb * nt * h],
            n: vec![0.0; nb * nt * h],
            hn: vec![0.0; nb * nt * h],
            h_prev: vec![0.0; nb * nt * h],
        };
        let mut state = vec![0.0f32; nb * h];
        // The rows with a real item at this step, their states packed (PyTorch's packed
        // sequences do the same: padding costs no arithmetic).
        let mut packed = vec![0.0f32; nb * h];
        let mut gh = vec![0.0f32; nb * g3];
        let mut wt = vec![0.0f32; h * g3];
        for (i, row) in w.chunks_exact(h).enumerate() {
            for (j, x) in row.iter().enumerate() {
                wt[j * g3 + i] = *x;
            }
        }
        for step in 0..nt {
            let t = d.time(dir, step);
            // Padding keeps the state (forward) or leaves it at zero (backward).
            let active: Vec<usize> = (0..nb).filter(|&b| t < self.lengths[b]).collect();
            let na = active.len();
            if na == 0 {
                continue;
            }
            for (i, &b) in active.iter().enumerate() {
                packed[i * h..(i + 1) * h].copy_from_slice(&state[b * h..(b + 1) * h]);
            }
            matmul(&mut gh[..na * g3], false, &packed[..na * h], false, &wt, false, na, g3, h);
            for (i, &b) in active.iter().enumerate() {
                let at = (b * nt + t) * h;
                let xrow = &x[self.row(b * nt + t) * 2 * g3 + dir * g3..][..g3];
                let ghrow = &gh[i * g3..][..g3];
                let hrow = &mut state[b * h..][..h];
                s.h_prev[at..at + h].copy_from_slice(hrow);
                let gates = Gates {
                    r: &mut s.r[at..at + h],
                    z: &mut s.z[at..at + h],
                    n: &mut s.n[at..at + h],
                    hn: &mut s.hn[at..at + h],
                    out: &mut out[at..at + h],
                };
                gru_gates(xrow, ghrow, bias, hrow, gates);
            }
        }
        s
    }

    /// One direction's backward pass: gradients of the input projection (written into this
    /// direction's half of `dx`, `B x T x 2 x 3H`), of `W_hh` (`3H x H`) and `b_hh` (`3H`).
    #[allow(clippy::too_many_arguments)]
    fn backward_dir(
        &self,
        d: Dims,
        dir: usize,
        s: &Saved,
        w: &[f32],
        grad: &[f32],
        dw: &mut [f32],
        db: &mut [f32],
    ) -> Vec<f32> {
        let Dims { b: nb, t: nt, h } = d;
        let g3 = 3 * h;
        // This direction's input-projection gradient, one 3H row per input row.
        let mut dx = vec![0.0f32; self.input_rows(nb, nt) * g3];
        let mut dh = vec![0.0f32; nb * h];
        // Packed rows of the active sequences, step after step: recurrent pre-activation
        // gradients and entering states, kept for one weight-gradient product at the end (a
        // product per step has only the step's few rows to sum over), and the gradient
        // flowing back into the states.
        let real: usize = self.lengths.iter().sum();
        let mut gh_all = vec![0.0f32; real * g3];
        let mut h_prev_all = vec![0.0f32; real * h];
        let mut done = 0;
        let mut dh_packed = vec![0.0f32; nb * h];
        for step in (0..nt).rev() {
            let t = d.time(dir, step);
            let mut active = Vec::with_capacity(nb);
            for b in 0..nb {
                if t < self.lengths[b] {
                    active.push(b);
                } else if dir == 1 {
                    // The backward state is reset before a real item.
                    dh[b * h..(b + 1) * h].fill(0.0);
                }
            }
            let na = active.len();
            if na == 0 {
                continue;
            }
            let gh = &mut gh_all[done * g3..][..na * g3];
            let h_prev = &mut h_prev_all[done * h..][..na * h];
            done += na;
            for (i, &b) in active.iter().enumerate() {
                let at = (b * nt + t) * h;
                let hp = &mut h_prev[i * h..][..h];
                hp.copy_from_slice(&s.h_prev[at..at + h]);
                let ghrow = &mut gh[i * g3..][..g3];
                let dhrow = &mut dh[b * h..][..h];
                let dxrow = &mut dx[self.row(b * nt + t) * g3..][..g3];
                for j in 0..h {
                    let (r, z, n, hn) = (s.r[at + j], s.z[at + j], s.n[at + j], s.hn[at + j]);
                    let dtot = dhrow[j] + grad[at + j];
                    let dn_pre = dtot * (1.0 - z) * (1.0 - n * n);
                    let dz_pre = dtot * (hp[j] - n) * z * (1.0 - z);
                    let dr_pre = dn_pre * hn * r * (1.0 - r);
                    dxrow[j] = dr_pre;
                    dxrow[h + j] = dz_pre;
                    dxrow[2 * h + j] = dn_pre;
                    ghrow[j] = dr_pre;
                    ghrow[h + j] = dz_pre;
                    ghrow[2 * h + j] = dn_pre * r;
                    dhrow[j] = dtot * z;
                }
            }
            // dh += gh W.
            matmul(&mut dh_packed[..na * h], false, gh, false, w, false, na, h, g3);
            for (i, &b) in active.iter().enumerate() {
                for (a, g) in dh[b * h..(b + 1) * h].iter_mut().zip(&dh_packed[i * h..(i + 1) * h])
                {
                    *a += g;
                }
            }
        }
        // dW += gh^T h_prev and db += column sums of gh, over every step at once.
        let (gh, hp) = (&gh_all[..done * g3], &h_prev_all[..done * h]);
        matmul(dw, true, gh, true, hp, false, g3, h, done);
        for row in gh.chunks_exact(g3) {
            for (acc, g) in db.iter_mut().zip(row) {
                *acc += g;
            }
        }
        dx
    }
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("bigru: {what} must be f32") };
    let Some((start, end)) = l.contiguous_offsets() else {
        candle_core::bail!("bigru: {what} must be contiguous")
    };
    Ok(&v[start..end])
}

impl CustomOp3 for BiGru {
    fn name(&self) -> &'static str {
        "bigru"
    }

    /// Arguments: the input projection `B x T x 2 x 3H` (both directions, `b_ih` included),
    /// `W_hh` as `2 x 3H x H` and `b_hh` as `2 x 3H`. Result: `B x T x H`.
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (nb, nt, two, g3) = l1.shape().dims4()?;
        let h = self.hidden;
        if two != 2 || g3 != 3 * h || nb != self.lengths.len() {
            candle_core::bail!("bigru: input projection {:?} for hidden {h}", l1.shape());
        }
        if l2.shape().dims() != [2, g3, h] || l3.shape().dims() != [2, g3] {
            candle_core::bail!("bigru: weights {:?} and biases {:?}", l2.shape(), l3.shape());
        }
        if let Some(bad) = self.lengths.iter().find(|&&l| l == 0 || l > nt) {
            candle_core::bail!("bigru: sequence length {bad} outside 1..={nt}");
        }
        let (x, w, bias) =
            (slice(s1, l1, "input")?, slice(s2, l2, "W_hh")?, slice(s3, l3, "b_hh")?);
        let (out, saved) = self.forward(x, w, bias, nb, nt);
        *self.saved.lock().map_err(|_| candle_core::Error::Msg("bigru: poisoned".into()))? =
            Some(saved);
        Ok((CpuStorage::F32(out), Shape::from((nb, nt, h))))
    }

    fn bwd(
        &self,
        arg1: &Tensor,
        arg2: &Tensor,
        _arg3: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (nb, nt, _, g3) = arg1.dims4()?;
        let h = self.hidden;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("bigru: poisoned".into()))?
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("bigru: backward before forward".into()))?;
        let w = arg2.flatten_all()?.to_vec1::<f32>()?;
        let grad = grad_res.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let (dx, dw, db) = self.backward(&saved, &w, &grad, nb, nt);
        let dev = arg1.device();
        Ok((
            Some(Tensor::from_vec(dx, (nb, nt, 2, g3), dev)?),
            Some(Tensor::from_vec(dw, (2, g3, h), dev)?),
            Some(Tensor::from_vec(db, (2, g3), dev)?),
        ))
    }
}

/// The fused bidirectional GRU: `x` is the input projection `B x T x 2 x 3H` (both
/// directions' `W_ih e + b_ih`), `w_hh` is `2 x 3H x H`, `b_hh` is `2 x 3H`; returns the
/// summed states `B x T x H`, zero at padding.
pub fn bigru(
    x: &Tensor,
    w_hh: &Tensor,
    b_hh: &Tensor,
    lengths: &[usize],
) -> candle_core::Result<Tensor> {
    let hidden = w_hh.dim(2)?;
    x.contiguous()?.apply_op3(
        &w_hh.contiguous()?,
        &b_hh.contiguous()?,
        BiGru::new(lengths.to_vec(), hidden),
    )
}
