//! Latent semantic analysis of listening sessions.
//!
//! The training sessions become a sparse session x item count matrix ([`CountMatrix`]); a
//! randomized truncated SVD ([`randomized_svd`], Halko, Martinsson and Tropp 2011, as
//! scikit-learn's `TruncatedSVD(algorithm="randomized")` runs it: Gaussian test matrix with 10
//! extra columns, `n_iter` power iterations normalised by LU, a final QR, the SVD of the small
//! projected matrix, signs flipped so each component's largest entry is positive) gives item
//! vectors: the right singular vectors, unscaled or multiplied by the singular values.
//!
//! Dense algebra (LU, QR, SVD) is faer's, on rayon; the sparse products are parallel over rows
//! and do not depend on the number of threads, so results are the same for a seed everywhere.
//!
//! ```
//! use segue_lsa::{CountMatrix, LsaParams, randomized_svd};
//!
//! // Items 0-4 and 5-9 never share a session; the first group is played twice as often.
//! let mut flat = Vec::new();
//! let mut offsets = vec![0];
//! for s in 0..300u32 {
//!     let base = if s % 3 == 0 { 5 } else { 0 };
//!     flat.extend((0..4).map(|i| base + (s + i) % 5));
//!     offsets.push(flat.len());
//! }
//! let counts = CountMatrix::from_sessions(&flat, &offsets, 10).unwrap();
//! let svd = randomized_svd(&counts, &LsaParams { dim: 2, ..LsaParams::default() }).unwrap();
//! assert!(svd.singular_values[0] > svd.singular_values[1]);
//! // Each leading component lives on one group: the busier one first.
//! let v = svd.item_vectors(false);
//! let weight = |items: std::ops::Range<usize>, c: usize| items.map(|i| v[i * 2 + c].abs()).sum::<f64>();
//! assert!(weight(5..10, 0) < 1e-9 && weight(0..5, 1) < 1e-9);
//! ```
#![deny(missing_docs)]

#[cfg(test)]
use faer::Mat;
use faer::MatRef;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use segue_core::{EmbeddingTable, Error, NoProgress, Progress, Result, TrackId};
use serde::{Deserialize, Serialize};

/// The settings of the LSA stage; the defaults are the paper's size and scikit-learn's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LsaParams {
    /// Number of components (the embedding size).
    pub dim: usize,
    /// Power iterations (scikit-learn's `n_iter`, default 5).
    pub n_iter: usize,
    /// Extra random columns beyond `dim` (scikit-learn's `n_oversamples`, default 10).
    pub n_oversamples: usize,
    /// "none": right singular vectors as they are (the default); "sigma": V times Sigma.
    pub scale: String,
    /// Seed of the Gaussian test matrix.
    pub seed: u64,
}

impl Default for LsaParams {
    fn default() -> Self {
        LsaParams { dim: 150, n_iter: 5, n_oversamples: 10, scale: "none".into(), seed: 0 }
    }
}

impl LsaParams {
    /// Checks the settings, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.dim == 0 {
            return Err(Error::Config("lsa.dim must be at least 1".into()));
        }
        if !["none", "sigma"].contains(&self.scale.as_str()) {
            return Err(Error::Config(format!(
                "lsa.scale must be \"none\" or \"sigma\", not {:?}",
                self.scale
            )));
        }
        Ok(())
    }
}

/// A sparse matrix in compressed sparse row form, f64 values.
#[derive(Debug, Clone, PartialEq)]
pub struct CountMatrix {
    /// Number of rows.
    pub rows: usize,
    /// Number of columns.
    pub cols: usize,
    /// Row `r`'s entries are `indptr[r]..indptr[r + 1]`.
    pub indptr: Vec<usize>,
    /// Column of each entry, increasing within a row.
    pub indices: Vec<u32>,
    /// Value of each entry.
    pub values: Vec<f64>,
}

impl CountMatrix {
    /// One row per session (`flat[offsets[s]..offsets[s + 1]]`), one column per item below
    /// `cols`; an item repeated in a session counts once per play.
    pub fn from_sessions(flat: &[u32], offsets: &[usize], cols: usize) -> Result<Self> {
        if offsets.first() != Some(&0) || offsets.last() != Some(&flat.len()) {
            return Err(Error::InvalidArgument(
                "session offsets must run from 0 to the corpus length".into(),
            ));
        }
        let mut indptr = Vec::with_capacity(offsets.len());
        let mut indices = Vec::with_capacity(flat.len());
        let mut values = Vec::with_capacity(flat.len());
        indptr.push(0);
        let mut row: Vec<u32> = Vec::new();
        for (s, w) in offsets.windows(2).enumerate() {
            if w[1] < w[0] {
                return Err(Error::InvalidArgument(format!("session {s} has a negative length")));
            }
            row.clear();
            row.extend_from_slice(&flat[w[0]..w[1]]);
            row.sort_unstable();
            for chunk in row.chunk_by(|a, b| a == b) {
                let item = chunk[0];
                if item as usize >= cols {
                    return Err(Error::OutOfRange {
                        what: format!("the columns of session {s}"),
                        index: item as usize,
                        len: cols,
                    });
                }
                indices.push(item);
                values.push(chunk.len() as f64);
            }
            indptr.push(indices.len());
        }
        Ok(CountMatrix { rows: offsets.len() - 1, cols, indptr, indices, values })
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The transpose, also in CSR form (the CSC form of `self`).
    pub fn transpose(&self) -> CountMatrix {
        let mut counts = vec![0usize; self.cols + 1];
        for &c in &self.indices {
            counts[c as usize + 1] += 1;
        }
        for c in 0..self.cols {
            counts[c + 1] += counts[c];
        }
        let indptr = counts.clone();
        let mut next = counts;
        let mut indices = vec![0u32; self.nnz()];
        let mut values = vec![0f64; self.nnz()];
        for r in 0..self.rows {
            for k in self.indptr[r]..self.indptr[r + 1] {
                let c = self.indices[k] as usize;
                indices[next[c]] = r as u32;
                values[next[c]] = self.values[k];
                next[c] += 1;
            }
        }
        CountMatrix { rows: self.cols, cols: self.rows, indptr, indices, values }
    }

    /// `self * x` for a row-major dense `x` with `width` columns; row-major result.
    fn mul_dense(&self, x: &[f64], width: usize) -> Vec<f64> {
        let mut out = vec![0f64; self.rows * width];
        self.mul_dense_into(x, width, &mut out);
        out
    }

    /// `out = self * x`, both row-major with `width` columns.
    fn mul_dense_into(&self, x: &[f64], width: usize, out: &mut [f64]) {
        debug_assert_eq!(out.len(), self.rows * width);
        self.mul_dense_rows(x, width, 0, out);
    }

    /// Rows `first..` of `self * x` into `out` (as many rows as it holds).
    fn mul_dense_rows(&self, x: &[f64], width: usize, first: usize, out: &mut [f64]) {
        debug_assert_eq!(x.len(), self.cols * width);
        out.par_chunks_mut(width * 64).enumerate().for_each(|(block, out)| {
            for (i, out_row) in out.chunks_mut(width).enumerate() {
                out_row.fill(0.0);
                let r = first + block * 64 + i;
                for k in self.indptr[r]..self.indptr[r + 1] {
                    let a = self.values[k];
                    let x_row = &x[self.indices[k] as usize * width..][..width];
                    for (o, &v) in out_row.iter_mut().zip(x_row) {
                        *o += a * v;
                    }
                }
            }
        });
    }

    /// Per-column variance (population), summed: scikit-learn's total variance of `X`.
    fn total_variance(&self) -> f64 {
        let mut sum = vec![0f64; self.cols];
        let mut sq = vec![0f64; self.cols];
        for (&c, &v) in self.indices.iter().zip(&self.values) {
            sum[c as usize] += v;
            sq[c as usize] += v * v;
        }
        let n = self.rows as f64;
        sum.iter().zip(&sq).map(|(s, q)| q / n - (s / n) * (s / n)).sum()
    }
}

/// A truncated SVD `X ~ U diag(s) V^T`, keeping what LSA needs.
#[derive(Debug, Clone)]
pub struct TruncatedSvd {
    /// Singular values, largest first.
    pub singular_values: Vec<f64>,
    /// Right singular vectors, row-major `cols x k`: row `i` is item `i`'s vector.
    pub right_vectors: Vec<f64>,
    /// Number of columns of the factorised matrix (items).
    pub cols: usize,
    /// Variance of each component of `X V` over rows divided by the total variance of `X`
    /// (scikit-learn's `explained_variance_ratio_`).
    pub explained_variance_ratio: Vec<f64>,
}

impl TruncatedSvd {
    /// Number of components.
    pub fn k(&self) -> usize {
        self.singular_values.len()
    }

    /// Item vectors, row-major `cols x k`: `V`, or `V Sigma` when `scaled`.
    pub fn item_vectors(&self, scaled: bool) -> Vec<f64> {
        let k = self.k();
        let mut v = self.right_vectors.clone();
        if scaled {
            for row in v.chunks_mut(k) {
                for (x, s) in row.iter_mut().zip(&self.singular_values) {
                    *x *= s;
                }
            }
        }
        v
    }

    /// The item vectors as an embedding table of `rows` tracks and `dim >= k` columns (columns
    /// past `k` are zero: for corpora too small for `dim` components); items past `cols` are
    /// masked.
    pub fn to_table(
        &self,
        rows: usize,
        dim: usize,
        vocab_hash: &str,
        scaled: bool,
    ) -> Result<EmbeddingTable> {
        let k = self.k();
        if self.cols > rows || dim < k {
            return Err(Error::InvalidArgument(format!(
                "an SVD of {} items x {k} components does not fit a table of {rows} rows x {dim}",
                self.cols
            )));
        }
        let mut table = EmbeddingTable::zeros(rows, dim, vocab_hash);
        let v = self.item_vectors(scaled);
        let mut row = vec![0f32; dim];
        for (i, src) in v.chunks(k).enumerate() {
            for (x, &s) in row.iter_mut().zip(src) {
                *x = s as f32;
            }
            table.set_row(TrackId(i as u32), &row)?;
        }
        Ok(table)
    }
}

/// Row-major `rows x width` standard normal matrix; blocks of rows have their own stream, so
/// the result does not depend on the number of threads.
fn gaussian(rows: usize, width: usize, seed: u64) -> Vec<f64> {
    const BLOCK: usize = 4096;
    let mut out = vec![0f64; rows * width];
    out.par_chunks_mut(BLOCK * width).enumerate().for_each(|(b, chunk)| {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(b as u64);
        for x in chunk {
            *x = StandardNormal.sample(&mut rng);
        }
    });
    out
}

fn as_mat(x: &[f64], rows: usize, width: usize) -> MatRef<'_, f64> {
    MatRef::from_row_major_slice(x, rows, width)
}

fn to_row_major(m: MatRef<'_, f64>) -> Vec<f64> {
    let (rows, cols) = m.shape();
    let mut out = vec![0f64; rows * cols];
    out.par_chunks_mut(cols).enumerate().for_each(|(i, row)| {
        for (j, x) in row.iter_mut().enumerate() {
            *x = m[(i, j)];
        }
    });
    out
}

/// Copies row-major `src` (`rows x width`) into column-major `dst`, in cache-sized tiles.
fn transpose_into(src: &[f64], rows: usize, width: usize, dst: &mut [f64]) {
    const TILE: usize = 256;
    dst.par_chunks_mut(rows).enumerate().for_each(|(c, col)| {
        for r0 in (0..rows).step_by(TILE) {
            for (r, x) in col[r0..(r0 + TILE).min(rows)].iter_mut().enumerate() {
                *x = src[(r0 + r) * width + c];
            }
        }
    });
}

/// `P L` of `y = P L U` (scipy's `lu(y, permute_l=True)[0]`): a well-conditioned basis of
/// `y`'s column space, cheaper than QR, written over `y`. `y` is row-major; faer factorises a
/// column-major copy in `scratch` (its LU is faster on columns), so `y` is free for the basis
/// and no third buffer of its size is needed.
fn lu_basis_in_place(y: &mut [f64], rows: usize, width: usize, scratch: &mut [f64]) {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::lu::partial_pivoting::factor;
    let par = faer::get_global_parallelism();
    transpose_into(y, rows, width, scratch);
    let out = y;
    let mut forward = vec![0usize; rows];
    let mut inverse = vec![0usize; rows];
    let need = factor::lu_in_place_scratch::<usize, f64>(rows, width, par, Default::default());
    factor::lu_in_place(
        faer::MatMut::from_column_major_slice_mut(scratch, rows, width),
        &mut forward,
        &mut inverse,
        par,
        MemStack::new(&mut MemBuffer::new(need)),
        Default::default(),
    );
    // Row i of L U is row forward[i] of y, so row r of P L is row inverse[r] of L.
    let l = &*scratch;
    out.par_chunks_mut(width).enumerate().for_each(|(r, row)| {
        let i = inverse[r];
        for (j, x) in row.iter_mut().enumerate() {
            *x = match j.cmp(&i) {
                std::cmp::Ordering::Less => l[j * rows + i],
                std::cmp::Ordering::Equal => 1.0,
                std::cmp::Ordering::Greater => 0.0,
            };
        }
    });
}

#[cfg(test)]
fn lu_basis(y: &[f64], rows: usize, width: usize) -> Vec<f64> {
    let mut scratch = vec![0f64; rows * width];
    let mut out = y.to_vec();
    lu_basis_in_place(&mut out, rows, width, &mut scratch);
    out
}

/// An orthonormal basis of `y`'s columns. `y` is dropped once factorised, and each copy as
/// soon as the next exists: at the large synthetic preset's size each is 2.5 GB.
fn qr_basis(y: Vec<f64>, rows: usize, width: usize) -> Vec<f64> {
    let qr = as_mat(&y, rows, width).qr();
    drop(y);
    let q = qr.compute_thin_Q();
    drop(qr);
    to_row_major(q.as_ref())
}

/// The share of `x`'s total variance along each of the `k` directions `v` (row-major,
/// `x.cols x k`). The projection `x v` is computed a block of rows at a time and its sums
/// taken in row order, as over the whole projection at once, so a large `x` never holds it
/// whole.
fn explained_variance_ratio(x: &CountMatrix, v: &[f64], k: usize) -> Vec<f64> {
    const ROWS: usize = 1 << 16;
    let (mut sum, mut sq) = (vec![0f64; k], vec![0f64; k]);
    let mut block = vec![0f64; ROWS.min(x.rows) * k];
    for first in (0..x.rows).step_by(ROWS) {
        let n = ROWS.min(x.rows - first);
        let out = &mut block[..n * k];
        x.mul_dense_rows(v, k, first, out);
        for row in out.chunks_exact(k) {
            for c in 0..k {
                sum[c] += row[c];
                sq[c] += row[c] * row[c];
            }
        }
    }
    let total = x.total_variance();
    let n = x.rows as f64;
    (0..k).map(|c| (sq[c] / n - (sum[c] / n) * (sum[c] / n)) / total).collect()
}

/// The randomized truncated SVD of `x` to `params.dim` components.
pub fn randomized_svd(x: &CountMatrix, params: &LsaParams) -> Result<TruncatedSvd> {
    randomized_svd_with_progress(x, params, &NoProgress)
}

/// [`randomized_svd`], reporting each sparse product and factorisation as a step.
pub fn randomized_svd_with_progress(
    x: &CountMatrix,
    params: &LsaParams,
    progress: &dyn Progress,
) -> Result<TruncatedSvd> {
    params.validate()?;
    let k = params.dim;
    if k > x.rows.min(x.cols) {
        return Err(Error::Config(format!(
            "lsa.dim = {k} exceeds the matrix's smaller side ({} sessions x {} items)",
            x.rows, x.cols
        )));
    }
    let width = (k + params.n_oversamples).min(x.rows.min(x.cols));
    let xt = x.transpose();
    // scikit-learn factorises X^T when X is wide; the range finder then works on the
    // smaller side. `a` is the matrix whose range is found, `at` its transpose.
    let transpose = x.rows < x.cols;
    let (a, at) = if transpose { (&xt, x) } else { (x, &xt) };

    progress.start("randomized SVD", Some(2 * params.n_iter as u64 + 3), "steps");
    // Buffers reused across iterations: fresh 100-MB allocations cost page faults each time.
    // Each basis is written over the product it comes from, and the new q swapped in.
    let mut q = gaussian(a.cols, width, params.seed);
    let mut z = vec![0f64; a.cols * width];
    let mut y = vec![0f64; a.rows * width];
    let mut scratch = vec![0f64; a.rows.max(a.cols) * width];
    for _ in 0..params.n_iter {
        a.mul_dense_into(&q, width, &mut y);
        lu_basis_in_place(&mut y, a.rows, width, &mut scratch[..a.rows * width]);
        progress.advance(1);
        at.mul_dense_into(&y, width, &mut z);
        lu_basis_in_place(&mut z, at.rows, width, &mut scratch[..at.rows * width]);
        std::mem::swap(&mut q, &mut z);
        progress.advance(1);
    }
    drop((z, scratch));
    a.mul_dense_into(&q, width, &mut y);
    drop(q);
    let q = qr_basis(y, a.rows, width);
    progress.advance(1);
    // B = Q^T A; its SVD comes from the thin SVD of the tall B^T = A^T Q.
    let bt = at.mul_dense(&q, width);
    let svd = as_mat(&bt, at.rows, width)
        .thin_svd()
        .map_err(|e| Error::backend("faer", "the SVD of the projected matrix", format!("{e:?}")))?;
    progress.advance(1);
    let s: Vec<f64> = (0..k).map(|i| svd.S()[i]).collect();
    // B^T = W S Uh^T: when A = X, W holds X's right singular vectors; when A = X^T,
    // X's right singular vectors are Q Uh.
    let mut v = if transpose {
        let uh = svd.V();
        let q = as_mat(&q, a.rows, width);
        to_row_major((q * uh.get(.., ..k)).as_ref())
    } else {
        to_row_major(svd.U().get(.., ..k))
    };
    // scikit-learn's svd_flip(u_based_decision=False): each component's largest |entry| > 0.
    for c in 0..k {
        let (mut best, mut sign) = (0f64, 1f64);
        for r in 0..x.cols {
            let val = v[r * k + c];
            if val.abs() > best {
                best = val.abs();
                sign = val.signum();
            }
        }
        if sign < 0.0 {
            for r in 0..x.cols {
                v[r * k + c] = -v[r * k + c];
            }
        }
    }
    let explained_variance_ratio = explained_variance_ratio(x, &v, k);
    progress.advance(1);
    progress.finish();
    Ok(TruncatedSvd {
        singular_values: s,
        right_vectors: v,
        cols: x.cols,
        explained_variance_ratio,
    })
}

#[cfg(test)]
mod tests;
