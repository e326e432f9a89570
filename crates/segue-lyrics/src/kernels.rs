//! The element-wise and matrix kernels of the encoder, single-threaded (the encoder runs one
//! sequence per thread). The element-wise loops are written branch-free so the compiler
//! vectorises them; on x86-64 they are compiled a second time for AVX2 + FMA and picked at
//! run time, since the default target only has SSE2.

/// A row-major matrix view: pointer plus row and column strides (in elements).
#[derive(Clone, Copy, Debug)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub rs: isize,
    pub cs: isize,
}

impl View {
    /// The transpose of a contiguous row-major matrix with `cols` columns (equivalently, a
    /// column-major matrix with `cols` rows).
    pub fn transposed(data: &[f32], cols: usize) -> View {
        View { ptr: data.as_ptr(), rs: 1, cs: cols as isize }
    }
}

/// `dst (m x n, strides dst_rs, dst_cs) = [dst +] alpha * lhs (m x k) * rhs (k x n)`.
///
/// gemm is fastest with a column-major `lhs` (unit row stride: used without repacking) and a
/// `rhs` with unit row stride (read in place while `m` is below its packing threshold).
///
/// # Safety
/// The views and `dst` must address valid `m x k`, `k x n` and `m x n` matrices.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: isize,
    dst_cs: isize,
    accumulate: bool,
    lhs: View,
    rhs: View,
    alpha: f32,
) {
    // SAFETY: the caller guarantees the matrices (see above).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            dst_cs,
            dst_rs,
            accumulate,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            if accumulate { 1.0 } else { 0.0 },
            alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// `a * b + c` rounded once. The element-wise kernels below run through `dispatch!`, whose
/// x86-64 tiers have FMA, where this is one instruction (a libm call on older CPUs, which
/// only the fallback tier meets); fused steps also round less than a multiply and an add.
#[inline(always)]
fn fma(a: f32, b: f32, c: f32) -> f32 {
    a.mul_add(b, c)
}

/// `e^x` for `x <= 0` (softmax's shifted scores, GELU's tail): Cephes' `expf` as
/// `segue_core::simd::exp` computes it, with fused multiply-adds, and zero below the
/// smallest normal result. No NaN or infinity reaches it here.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23
    let x0 = x;
    // Down to ln of the smallest normal float, where 2^n still is one (n = -126).
    let x = x.max(-87.336_55);
    let t = fma(x, std::f32::consts::LOG2_E, SHIFT);
    let n = t - SHIFT;
    let r = fma(n, 2.121_944_4e-4, fma(n, -0.693_359_4, x));
    let p = fma(1.987_569_1e-4, r, 1.398_199_9e-3);
    let p = fma(p, r, 8.333_452e-3);
    let p = fma(p, r, 4.166_579_6e-2);
    let p = fma(p, r, 1.666_666_5e-1);
    let p = fma(p, r, 0.5);
    let p = fma(p * r, r, r) + 1.0;
    // t's bits are 0x4B40_0000 + n for |n| < 2^22.
    let pow2 = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    if x0 < -87.336_55 { 0.0 } else { p * pow2 }
}

/// Sum with eight independent accumulators: vectorises (a plain float fold cannot be
/// reordered by the compiler) and rounds no worse than a sequential sum.
#[inline(always)]
pub(crate) fn sum(xs: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Maximum with eight independent accumulators (see [`sum`]).
#[inline(always)]
fn max(xs: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = xs.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a = a.max(*x);
        }
    }
    acc.iter().chain(rest).fold(f32::NEG_INFINITY, |m, &v| m.max(v))
}

/// GELU with the exact error function, `x/2 (1 + erf(x / sqrt 2)) = x/2 erfc(-x / sqrt 2)`;
/// erfc as Numerical Recipes' Chebyshev fit (relative error below 1.2e-7), so the negative
/// tail keeps its relative accuracy.
#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    let a = (x * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / fma(0.5, a, 1.0);
    let p = fma(t, 0.170_872_77, -0.822_152_23);
    let p = fma(p, t, 1.488_515_9);
    let p = fma(p, t, -1.135_204);
    let p = fma(p, t, 0.278_868_07);
    let p = fma(p, t, -0.186_288_06);
    let p = fma(p, t, 0.096_784_18);
    let p = fma(p, t, 0.374_091_96);
    let p = fma(p, t, 1.000_023_7);
    let poly = fma(p, t, -1.265_512_2);
    let erfc_a = t * exp_nonpositive(fma(-a, a, poly));
    // erfc(-z) = erfc(|z|) for negative x, 2 - erfc(|z|) otherwise.
    let erfc_neg = if x < 0.0 { erfc_a } else { 2.0 - erfc_a };
    0.5 * x * erfc_neg
}

segue_core::dispatch! {
    fn add_bias_gelu(x: &mut [f32], bias: &[f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v = gelu_one(*v + b);
            }
        }
    }
}

segue_core::dispatch! {
    fn add_bias(x: &mut [f32], bias: &[f32]) {
        for row in x.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

segue_core::dispatch! {
    fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let d = gamma.len();
        for row in x.chunks_exact_mut(d) {
            let mean = sum(row) / d as f32;
            let mut sq = [0f32; 8];
            let chunks = row.chunks_exact(8);
            let rest: f32 = chunks.remainder().iter().map(|v| (v - mean) * (v - mean)).sum();
            for c in chunks {
                for (a, v) in sq.iter_mut().zip(c) {
                    *a += (v - mean) * (v - mean);
                }
            }
            let var = (sq.iter().sum::<f32>() + rest) / d as f32;
            let inv = 1.0 / (var + eps).sqrt();
            for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}

segue_core::dispatch! {
    /// Softmax of each `n`-long row of `scores` (an `n x n` matrix), after adding
    /// `bias[j - i + n - 1]` to entry (i, j) when a relative-position bias is given.
    fn softmax_rows(scores: &mut [f32], n: usize, bias: Option<&[f32]>) {
        for (i, row) in scores.chunks_exact_mut(n).enumerate() {
            if let Some(bias) = bias {
                for (v, b) in row.iter_mut().zip(&bias[n - 1 - i..2 * n - 1 - i]) {
                    *v += b;
                }
            }
            let top = max(row);
            for v in row.iter_mut() {
                *v = exp_nonpositive(*v - top);
            }
            let inv = 1.0 / sum(row);
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemm_with_strides_matches_the_definition() {
        // lhs 2 x 3 column-major, rhs 3 x 2 with unit row stride, dst column-major.
        let lhs = [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]; // [[1,2,3],[4,5,6]]
        let rhs = [7.0, 9.0, 11.0, 8.0, 10.0, 12.0]; // [[7,8],[9,10],[11,12]]
        let mut dst = [1.0f32; 4];
        // SAFETY: the arrays hold the matrices.
        unsafe {
            gemm(
                2,
                2,
                3,
                dst.as_mut_ptr(),
                1,
                2,
                true,
                View::transposed(&lhs, 2),
                View::transposed(&rhs, 3),
                1.0,
            )
        };
        // [[58, 64], [139, 154]] + 1, stored column by column.
        assert_eq!(dst, [59.0, 140.0, 65.0, 155.0]);
    }

    /// erf by its Taylor series (converges everywhere; exact enough in f64 for |x| < 6).
    fn erf_reference(x: f64) -> f64 {
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 * sum.abs().max(1e-300) {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        2.0 / std::f64::consts::PI.sqrt() * sum
    }

    #[test]
    fn exp_nonpositive_is_within_a_few_ulp() {
        for i in 0..8734 {
            let x = -(i as f32) / 100.0;
            let (got, want) = (exp_nonpositive(x), f64::from(x).exp());
            assert!(((f64::from(got) - want) / want).abs() < 3e-7, "exp({x}) = {got}, want {want}");
        }
        assert_eq!(exp_nonpositive(-100.0), 0.0);
        assert_eq!(exp_nonpositive(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn gelu_matches_the_exact_definition() {
        for i in -600..600 {
            let x = i as f32 / 100.0;
            let want = 0.5 * x as f64 * (1.0 + erf_reference(x as f64 / 2f64.sqrt()));
            let got = gelu_one(x) as f64;
            // f32 arithmetic: within a few f32 ulps of the exact value, tails included.
            assert!(
                (got - want).abs() <= 3e-6 * want.abs() + 1e-9,
                "gelu({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn softmax_with_relative_bias() {
        let n = 3;
        let mut s = vec![0.0, 1.0, 2.0, 1.0, 1.0, 1.0, -1.0, 0.0, 3.0];
        let bias = [0.5, 0.0, -0.5, 1.0, 2.0]; // index j - i + 2
        let want: Vec<f32> = (0..n)
            .flat_map(|i| {
                let row: Vec<f64> =
                    (0..n).map(|j| (s[i * n + j] + bias[j + 2 - i]) as f64).collect();
                let z: f64 = row.iter().map(|v| v.exp()).sum();
                row.into_iter().map(move |v| (v.exp() / z) as f32)
            })
            .collect();
        softmax_rows(&mut s, n, Some(&bias));
        for (g, w) in s.iter().zip(&want) {
            assert!((g - w).abs() < 1e-6, "{s:?} vs {want:?}");
        }
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        layer_norm(&mut x, &[1.0, 1.0], &[0.0, 0.5], 0.0);
        assert_eq!(x, vec![-1.0, 1.5, -1.0, 1.5]);
    }
}
