//! Principal component analysis, as scikit-learn's `PCA(n_components, svd_solver="full")`:
//! the data are centred on their mean, the thin SVD `X_c = U S V^T` is exact (faer, in f64),
//! each component's sign makes its largest-magnitude entry positive (scikit-learn's
//! `svd_flip(u_based_decision=False)`), the explained variance is `S^2 / (n - 1)` and its ratio
//! is taken over the total variance of every component. No whitening.
//!
//! ```
//! use segue_pca::Pca;
//!
//! // Points on the line y = 2x, with a little noise off it.
//! let rows: Vec<f32> = (0..50)
//!     .flat_map(|i| {
//!         let x = i as f32 / 10.0;
//!         let e = if i % 2 == 0 { 0.01 } else { -0.01 };
//!         [x, 2.0 * x + e]
//!     })
//!     .collect();
//! let pca = Pca::fit(&rows, 2, 1).unwrap();
//! assert!(pca.explained_variance_ratio[0] > 0.999);
//! let z = pca.transform(&rows[..2]);
//! assert_eq!(z.len(), 1);
//! ```
#![deny(missing_docs)]

use faer::Mat;
use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// A fitted PCA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pca {
    /// Input width.
    pub dim: usize,
    /// Number of components kept.
    pub components: usize,
    /// Rows the fit saw.
    pub samples: usize,
    /// Mean of the fitted rows (`dim`).
    pub mean: Vec<f64>,
    /// Components, row-major `components x dim` (scikit-learn's `components_`).
    pub axes: Vec<f64>,
    /// Variance along each component, `S^2 / (n - 1)`.
    pub explained_variance: Vec<f64>,
    /// `explained_variance` over the total variance.
    pub explained_variance_ratio: Vec<f64>,
    /// Singular values of the centred data.
    pub singular_values: Vec<f64>,
}

impl Pca {
    /// Fits `components` components to the rows of `data` (row-major, `dim` wide).
    ///
    /// Fails when `dim` is 0, `data` is not whole rows, there are fewer than 2 rows, or
    /// `components` exceeds `min(rows, dim)`; a non-finite value is an error naming its row.
    pub fn fit(data: &[f32], dim: usize, components: usize) -> Result<Pca> {
        if dim == 0 || !data.len().is_multiple_of(dim) {
            return Err(Error::Config(format!(
                "PCA input of {} values is not whole rows of {dim}",
                data.len()
            )));
        }
        let n = data.len() / dim;
        if n < 2 {
            return Err(Error::Config(format!("PCA needs at least 2 rows, got {n}")));
        }
        if components == 0 || components > n.min(dim) {
            return Err(Error::Config(format!(
                "PCA with {components} components on {n} rows of width {dim}: the number of \
                 components must be between 1 and {}",
                n.min(dim)
            )));
        }
        if let Some(bad) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Config(format!(
                "PCA input row {} column {} is {}",
                bad / dim,
                bad % dim,
                data[bad]
            )));
        }
        let mut mean = vec![0f64; dim];
        for row in data.chunks_exact(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += f64::from(v);
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let centred = Mat::<f64>::from_fn(n, dim, |r, c| f64::from(data[r * dim + c]) - mean[c]);
        let svd = centred
            .thin_svd()
            .map_err(|e| Error::backend("faer", "the SVD of the centred data", format!("{e:?}")))?;
        let s: Vec<f64> = (0..n.min(dim)).map(|i| svd.S()[i]).collect();
        let v = svd.V();
        let mut axes = vec![0f64; components * dim];
        for c in 0..components {
            let col = v.col(c);
            let (mut best, mut sign) = (0f64, 1f64);
            for r in 0..dim {
                if col[r].abs() > best {
                    best = col[r].abs();
                    sign = col[r].signum();
                }
            }
            for r in 0..dim {
                axes[c * dim + r] = sign * col[r];
            }
        }
        let variance: Vec<f64> = s.iter().map(|s| s * s / (n as f64 - 1.0)).collect();
        let total: f64 = variance.iter().sum();
        let explained_variance = variance[..components].to_vec();
        let explained_variance_ratio =
            explained_variance.iter().map(|v| if total > 0.0 { v / total } else { 0.0 }).collect();
        Ok(Pca {
            dim,
            components,
            samples: n,
            mean,
            axes,
            explained_variance,
            explained_variance_ratio,
            singular_values: s[..components].to_vec(),
        })
    }

    /// Projects one row (`dim` values) onto the components.
    pub fn transform(&self, row: &[f32]) -> Vec<f32> {
        assert_eq!(row.len(), self.dim, "PCA row width");
        let centred: Vec<f64> =
            row.iter().zip(&self.mean).map(|(&x, m)| f64::from(x) - m).collect();
        self.axes
            .chunks_exact(self.dim)
            .map(|axis| axis.iter().zip(&centred).map(|(a, x)| a * x).sum::<f64>() as f32)
            .collect()
    }

    /// Sum of [`Pca::explained_variance_ratio`].
    pub fn explained_variance_ratio_sum(&self) -> f64 {
        self.explained_variance_ratio.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random values in [-1, 1).
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn components_are_orthonormal_and_sorted_and_reconstruct() {
        let (n, d) = (60, 8);
        // Anisotropic data: column c scaled by c + 1.
        let data: Vec<f32> =
            noise(n * d, 3).iter().enumerate().map(|(i, v)| v * ((i % d) as f32 + 1.0)).collect();
        let pca = Pca::fit(&data, d, d).unwrap();
        for a in 0..d {
            for b in 0..d {
                let dot: f64 = (0..d).map(|r| pca.axes[a * d + r] * pca.axes[b * d + r]).sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-9, "axes {a},{b}: {dot}");
            }
            let axis = &pca.axes[a * d..(a + 1) * d];
            let big = axis.iter().cloned().fold(0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            assert!(big > 0.0, "sign convention");
        }
        assert!(pca.explained_variance.windows(2).all(|w| w[0] >= w[1]));
        assert!((pca.explained_variance_ratio_sum() - 1.0).abs() < 1e-12);
        // All components: the projection keeps every distance, so it reconstructs the row.
        let row = &data[5 * d..6 * d];
        let z = pca.transform(row);
        for (c, &x) in row.iter().enumerate() {
            let back: f64 =
                pca.mean[c] + (0..d).map(|k| f64::from(z[k]) * pca.axes[k * d + c]).sum::<f64>();
            assert!((back - f64::from(x)).abs() < 1e-5);
        }
    }

    #[test]
    fn variance_equals_the_sample_variance_along_each_axis() {
        let (n, d) = (40, 5);
        let data = noise(n * d, 9);
        let pca = Pca::fit(&data, d, 3).unwrap();
        for c in 0..3 {
            let proj: Vec<f64> =
                data.chunks_exact(d).map(|r| f64::from(pca.transform(r)[c])).collect();
            let mean = proj.iter().sum::<f64>() / n as f64;
            let var = proj.iter().map(|p| (p - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
            assert!(
                (var - pca.explained_variance[c]).abs() < 1e-5,
                "{var} {}",
                pca.explained_variance[c]
            );
        }
        // Total variance: the per-column sample variances summed.
        let total: f64 = (0..d)
            .map(|c| {
                let col: Vec<f64> = data.chunks_exact(d).map(|r| f64::from(r[c])).collect();
                let m = col.iter().sum::<f64>() / n as f64;
                col.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n as f64 - 1.0)
            })
            .sum();
        let ratio0 = pca.explained_variance[0] / total;
        assert!((ratio0 - pca.explained_variance_ratio[0]).abs() < 1e-9);
    }

    #[test]
    fn matches_scikit_learn() {
        // X[i][j] = sin(0.37 i + 1.3 j^2) + 0.1 cos(i j), 40 x 12; PCA(5, svd_solver="full")
        // of scikit-learn 1.9.1 on the float64 matrix.
        let data: Vec<f32> = (0..40)
            .flat_map(|i| {
                (0..12).map(move |j| {
                    let (i, j) = (f64::from(i), f64::from(j));
                    ((0.37 * i + 1.3 * j * j).sin() + 0.1 * (i * j).cos()) as f32
                })
            })
            .collect();
        let pca = Pca::fit(&data, 12, 5).unwrap();
        let ratio = [
            0.6280464239966941,
            0.3642477459476936,
            0.0009648919118778163,
            0.0009430180976389204,
            0.0009083649458767216,
        ];
        let variance = [
            3.795627034107373,
            2.2013477647617616,
            0.005831368010041032,
            0.005699172622101632,
            0.005489744728525536,
        ];
        let first_axis =
            [0.056406880528291584, 0.3624039147726906, -0.29093285064669894, -0.23687257340917464];
        for c in 0..5 {
            assert!((pca.explained_variance_ratio[c] - ratio[c]).abs() < 1e-6, "ratio {c}");
            assert!((pca.explained_variance[c] - variance[c]).abs() < 1e-5, "variance {c}");
        }
        for (k, want) in first_axis.iter().enumerate() {
            assert!(
                (pca.axes[k] - want).abs() < 1e-5,
                "axis 0 entry {k}: {} vs {want}",
                pca.axes[k]
            );
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        assert!(Pca::fit(&[1.0, 2.0, 3.0], 2, 1).is_err());
        assert!(Pca::fit(&[1.0, 2.0], 2, 1).is_err());
        assert!(Pca::fit(&[1.0, 2.0, 3.0, 4.0], 2, 3).is_err());
        let err = Pca::fit(&[1.0, f32::NAN, 3.0, 4.0], 2, 1).unwrap_err().to_string();
        assert!(err.contains("row 0 column 1"), "{err}");
    }
}
