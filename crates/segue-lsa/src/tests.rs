use super::*;
use faer::prelude::SolveLstsq;

/// A random sparse count matrix with a decaying spectrum (sessions drawn from a few topics).
fn corpus(sessions: usize, items: u32, seed: u64) -> (Vec<u32>, Vec<usize>) {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut flat = Vec::new();
    let mut offsets = vec![0];
    for _ in 0..sessions {
        let topic = rng.random_range(0..6u32);
        let len = rng.random_range(3..12);
        for _ in 0..len {
            let item = if rng.random_bool(0.7) {
                (topic * 7 + rng.random_range(0..10)) % items
            } else {
                rng.random_range(0..items)
            };
            flat.push(item);
        }
        offsets.push(flat.len());
    }
    (flat, offsets)
}

fn dense(x: &CountMatrix) -> Mat<f64> {
    let mut m = Mat::<f64>::zeros(x.rows, x.cols);
    for r in 0..x.rows {
        for k in x.indptr[r]..x.indptr[r + 1] {
            m[(r, x.indices[k] as usize)] = x.values[k];
        }
    }
    m
}

#[test]
fn counts_sum_repeats_and_reject_items_outside() {
    let x = CountMatrix::from_sessions(&[2, 0, 2, 1, 1], &[0, 3, 5], 3).unwrap();
    assert_eq!(x.indptr, vec![0, 2, 3]);
    assert_eq!(x.indices, vec![0, 2, 1]);
    assert_eq!(x.values, vec![1.0, 2.0, 2.0]);
    let err = CountMatrix::from_sessions(&[0, 5], &[0, 2], 3).unwrap_err();
    assert!(
        matches!(&err, Error::OutOfRange { what, index: 5, len: 3 } if what.contains("session 0")),
        "{err}"
    );
    assert!(CountMatrix::from_sessions(&[0, 1], &[0, 1], 3).is_err());
}

#[test]
fn transpose_is_the_dense_transpose() {
    let (flat, offsets) = corpus(50, 30, 1);
    let x = CountMatrix::from_sessions(&flat, &offsets, 30).unwrap();
    let t = x.transpose();
    assert_eq!(dense(&t), dense(&x).transpose().to_owned());
    assert_eq!(t.transpose(), x);
}

#[test]
fn sparse_product_equals_dense_product() {
    let (flat, offsets) = corpus(300, 40, 2);
    let x = CountMatrix::from_sessions(&flat, &offsets, 40).unwrap();
    let g = gaussian(40, 5, 3);
    let got = x.mul_dense(&g, 5);
    let want = to_row_major((dense(&x) * as_mat(&g, 40, 5)).as_ref());
    for (a, b) in got.iter().zip(&want) {
        assert!((a - b).abs() < 1e-9);
    }
}

#[test]
fn lu_basis_spans_the_input() {
    let y = gaussian(50, 6, 4);
    let q = lu_basis(&y, 50, 6);
    // y = (P L) U, so y's columns are combinations of q's: the projection residual is zero.
    let qm = as_mat(&q, 50, 6).to_owned();
    let ym = as_mat(&y, 50, 6).to_owned();
    let coef = qm.qr().solve_lstsq(&ym);
    let residual = &ym - &qm * &coef;
    assert!(residual.norm_max() < 1e-9, "{}", residual.norm_max());
    // The unit diagonal of L sits on the pivot rows: every column has an entry equal to 1.
    for c in 0..6 {
        assert!((0..50).any(|r| q[r * 6 + c] == 1.0));
    }
}

/// Both orientations (more sessions than items and fewer) agree with the exact SVD.
#[test]
fn singular_values_match_the_exact_svd() {
    for (sessions, items) in [(400usize, 60u32), (50, 90)] {
        let (flat, offsets) = corpus(sessions, items, 5);
        let x = CountMatrix::from_sessions(&flat, &offsets, items as usize).unwrap();
        let exact = dense(&x).thin_svd().unwrap();
        // Test matrix as wide as the smaller side: the range is found exactly.
        let full = sessions.min(items as usize) - 8;
        let params = LsaParams { dim: 8, n_oversamples: full, ..LsaParams::default() };
        let svd = randomized_svd(&x, &params).unwrap();
        // With scikit-learn's 10 extra columns: a lower bound, close even on this flat tail.
        let approx = randomized_svd(&x, &LsaParams { dim: 8, ..LsaParams::default() }).unwrap();
        for i in 0..8 {
            let want = exact.S()[i];
            let got = svd.singular_values[i];
            assert!((got - want).abs() / want < 1e-9, "{sessions}x{items} s{i}: {got} vs {want}");
            let near = approx.singular_values[i];
            assert!(near <= want * (1.0 + 1e-12), "{sessions}x{items} s{i}: {near} vs {want}");
            assert!(near > want * 0.99, "{sessions}x{items} s{i}: {near} vs {want}");
        }
        // Unit, orthogonal right vectors whose largest entry is positive, aligned with the
        // exact ones up to sign.
        let v = as_mat(&svd.right_vectors, items as usize, 8);
        let gram = v.transpose() * v;
        for i in 0..8 {
            for j in 0..8 {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((gram[(i, j)] - want).abs() < 1e-9);
            }
            let col: Vec<f64> = (0..items as usize).map(|r| v[(r, i)]).collect();
            let top = col.iter().cloned().fold(0f64, |m, x| if x.abs() > m.abs() { x } else { m });
            assert!(top > 0.0);
            let dot: f64 = (0..items as usize).map(|r| col[r] * exact.V()[(r, i)]).sum();
            assert!((dot.abs() - 1.0).abs() < 1e-6, "component {i}: |cos| {}", dot.abs());
        }
        // explained variance: var over rows of X v_i / total column variance, by hand.
        let d = dense(&x);
        let n = sessions as f64;
        let total: f64 = (0..items as usize)
            .map(|c| {
                let m = (0..sessions).map(|r| d[(r, c)]).sum::<f64>() / n;
                (0..sessions).map(|r| (d[(r, c)] - m).powi(2)).sum::<f64>() / n
            })
            .sum();
        let proj = &d * v;
        for i in 0..8 {
            let m = (0..sessions).map(|r| proj[(r, i)]).sum::<f64>() / n;
            let var = (0..sessions).map(|r| (proj[(r, i)] - m).powi(2)).sum::<f64>() / n;
            assert!((svd.explained_variance_ratio[i] - var / total).abs() < 1e-9);
        }
    }
}

#[test]
fn same_seed_same_result_other_seed_close() {
    // faer blocks its parallel kernels by thread count: the same count gives the same bits,
    // another count agrees to rounding.
    let (flat, offsets) = corpus(500, 80, 6);
    let x = CountMatrix::from_sessions(&flat, &offsets, 80).unwrap();
    let p = LsaParams { dim: 10, ..LsaParams::default() };
    let a = randomized_svd(&x, &p).unwrap();
    let again = randomized_svd(&x, &p).unwrap();
    assert_eq!(a.singular_values, again.singular_values);
    assert_eq!(a.right_vectors, again.right_vectors);
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let b = one.install(|| randomized_svd(&x, &p).unwrap());
    for (s, t) in a.singular_values.iter().zip(&b.singular_values) {
        assert!((s - t).abs() / s < 1e-12);
    }
    for (s, t) in a.right_vectors.iter().zip(&b.right_vectors) {
        assert!((s - t).abs() < 1e-9);
    }
    let c = randomized_svd(&x, &LsaParams { seed: 9, ..p }).unwrap();
    assert_ne!(a.right_vectors, c.right_vectors);
    for (s, t) in a.singular_values.iter().zip(&c.singular_values) {
        assert!((s - t).abs() / s < 1e-2, "{s} vs {t}");
    }
}

#[test]
fn table_holds_vectors_and_masks_the_rest() {
    let (flat, offsets) = corpus(200, 30, 7);
    let x = CountMatrix::from_sessions(&flat, &offsets, 30).unwrap();
    let svd = randomized_svd(&x, &LsaParams { dim: 4, ..LsaParams::default() }).unwrap();
    let table = svd.to_table(35, 6, "h", true).unwrap();
    assert_eq!(table.dim(), 6);
    let row = table.row(TrackId(3));
    assert!(table.is_present(TrackId(3)));
    for (c, &got) in row.iter().enumerate() {
        let want = if c < 4 { svd.right_vectors[3 * 4 + c] * svd.singular_values[c] } else { 0.0 };
        assert!((f64::from(got) - want).abs() < 1e-5);
    }
    assert!(!table.is_present(TrackId(31)));
    assert!(table.row(TrackId(31)).iter().all(|&x| x == 0.0));
    assert!(svd.to_table(20, 4, "h", false).is_err());
    assert!(svd.to_table(35, 3, "h", false).is_err());
}

#[test]
fn bad_settings_are_named() {
    let x = CountMatrix::from_sessions(&[0, 1, 2], &[0, 3], 3).unwrap();
    let e = randomized_svd(&x, &LsaParams { dim: 5, ..LsaParams::default() }).unwrap_err();
    assert!(e.to_string().contains("lsa.dim = 5"), "{e}");
    let e = LsaParams { scale: "both".into(), ..LsaParams::default() }.validate().unwrap_err();
    assert!(e.to_string().contains("lsa.scale"), "{e}");
}
