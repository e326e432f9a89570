//! Small numeric kernels shared by the crates that run models on the CPU: a vectorisable
//! `exp` and [`dispatch!`](crate::dispatch), which compiles a loop three times and runs the
//! AVX-512 or else the AVX2 + FMA copy where the CPU has those features.
//!
//! ```
//! segue_core::dispatch! {
//!     /// `x = e^x` for each value.
//!     fn exp_all(x: &mut [f32]) {
//!         for v in x.iter_mut() {
//!             *v = segue_core::simd::exp(*v);
//!         }
//!     }
//! }
//! let mut x = [0.0f32, 1.0];
//! exp_all(&mut x);
//! assert!((x[1] - std::f32::consts::E).abs() < 1e-6);
//! ```

/// Runs `$body` (a block using the function's arguments) through an AVX-512 copy, else an
/// AVX2 + FMA copy, where the CPU has the features. The copies compute the same values: Rust
/// neither reorders float operations nor fuses them into FMAs on its own, so only the vector
/// width changes.
#[macro_export]
macro_rules! dispatch {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$meta])*
        pub(crate) fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                unsafe fn fast512($($arg: $ty),*) { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU has the features `fast512` is compiled for.
                    return unsafe { fast512($($arg),*) };
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn fast($($arg: $ty),*) { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU has the features `fast` is compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// `e^x`, Cephes' `expf` (range reduction by ln 2, degree-6 polynomial): within 2 ulp on the
/// range that does not under- or overflow; infinity above it, zero below it (no subnormal
/// results), NaN for NaN. Branch-free and with integer steps that wrap, so
/// loops over it vectorise: `round(x log2 e)` comes from adding 1.5 * 2^23 (the float's low
/// mantissa bits then hold the integer), and 2^n is built from its bits.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23
    let x0 = x;
    #[allow(clippy::manual_clamp)] // min/max vectorise; NaN is handled at the end
    let x = x.max(-87.0).min(88.0);
    let t = x * std::f32::consts::LOG2_E + SHIFT;
    let n = t - SHIFT;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let p = p * r * r + r + 1.0;
    // t's bits are 0x4B40_0000 + n for |n| < 2^22.
    let pow2 = f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23);
    // The clamp above would hide a NaN and turn overflow into a finite value: selects (which
    // vectorise) restore them, and flush results below the smallest normal float to zero.
    let y = p * pow2;
    let y = if x0 > 88.722_83 { f32::INFINITY } else { y };
    let y = if x0 < -87.336_55 { 0.0 } else { y };
    if x0.is_nan() { x0 } else { y }
}

/// Dot product in 8 independent lanes, so the compiler can vectorise it (a plain float `sum`
/// must keep its sequential order and cannot).
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp() {
        for i in -8700..8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (exp(x), (x as f64).exp());
            let rel = ((got as f64 - want) / want).abs();
            assert!(rel < 3e-7, "exp({x}) = {got}, want {want}");
        }
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(100.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
    }
}
