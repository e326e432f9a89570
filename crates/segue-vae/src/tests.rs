use super::*;

/// Rows with 3 latent factors spread over `width` noisy features.
fn data(n: usize, width: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .flat_map(|_| {
            let f: [f32; 3] = std::array::from_fn(|_| StandardNormal.sample(&mut rng));
            let noise: Vec<f32> = (0..width).map(|_| StandardNormal.sample(&mut rng)).collect();
            (0..width)
                .map(move |j| 10.0 * j as f32 + f[j % 3] * (1.0 + j as f32) + 0.05 * noise[j])
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn standardizer_is_population_zscore_on_the_fit_rows() {
    let rows = [1.0f32, 5.0, 3.0, 5.0, 100.0, 7.0];
    let s = Standardizer::fit(&rows, 2, &[0, 1]);
    assert_eq!(s.mean, vec![2.0, 5.0]);
    assert_eq!(s.std, vec![1.0, 1.0]); // first: ddof 0 -> 1; second: constant -> 1
    assert_eq!(s.apply(&rows), vec![-1.0, 0.0, 1.0, 0.0, 98.0, 2.0]);
}

#[test]
fn loss_is_squared_error_plus_kl() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let vae = Vae::new(2, 4, 3, &mut rng).unwrap();
    let x = Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.25], (2, 2), &Device::Cpu).unwrap();
    let (total, recon, kl) = vae.loss(&x, None, 0.5).unwrap();
    // By hand from the layers' outputs.
    let (mu, logvar) = vae.encode(&x).unwrap();
    let rec = vae.decode(&mu).unwrap().to_vec2::<f32>().unwrap();
    let (mu, logvar) = (mu.to_vec2::<f32>().unwrap(), logvar.to_vec2::<f32>().unwrap());
    let xs = [[0.5f32, -1.0], [2.0, 0.25]];
    let mut want_recon = 0.0;
    let mut want_kl = 0.0;
    for i in 0..2 {
        want_recon += (0..2).map(|j| (rec[i][j] - xs[i][j]).powi(2)).sum::<f32>() / 2.0;
        want_kl += (0..3)
            .map(|j| -0.5 * (1.0 + logvar[i][j] - mu[i][j].powi(2) - logvar[i][j].exp()))
            .sum::<f32>()
            / 2.0;
    }
    let got = |t: &Tensor| t.to_scalar::<f32>().unwrap();
    assert!((got(&recon) - want_recon).abs() < 1e-5);
    assert!((got(&kl) - want_kl).abs() < 1e-5);
    assert!((got(&total) - (want_recon + 0.5 * want_kl)).abs() < 1e-5);
}

#[test]
fn training_learns_and_is_deterministic() {
    let rows = data(600, 6, 1);
    let fit: Vec<usize> = (0..500).collect();
    let params =
        VaeParams { hidden: 32, latent: 8, epochs: 15, batch_size: 32, ..VaeParams::default() };
    let a = train(&rows, 6, &fit, &params).unwrap();
    assert_eq!((a.fit_tracks, a.held_out_tracks), (450, 50));
    let first = a.history[0].held_out_recon.unwrap();
    let best = a.history[a.best_epoch].held_out_recon.unwrap();
    // Standardised features have total variance 6; the KL term keeps the VAE from explaining
    // all of it, but training must take away a good part of the first epoch's error.
    assert!(best < 0.6 * first && best < 3.5, "held-out recon {first} -> {best}");
    let b = train(&rows, 6, &fit, &params).unwrap();
    let (ea, eb) = (a.embed(&rows).unwrap(), b.embed(&rows).unwrap());
    assert_eq!(ea, eb);
    assert_eq!(ea.len(), 600 * 8);
    assert!(ea.iter().all(|x| x.is_finite()));
    let c = train(&rows, 6, &fit, &VaeParams { seed: 1, ..params }).unwrap();
    assert_ne!(c.embed(&rows).unwrap(), ea);
}

#[test]
fn early_stopping_keeps_the_best_epoch() {
    let rows = data(300, 4, 2);
    let fit: Vec<usize> = (0..300).collect();
    // A high rate overfits / oscillates quickly; patience 2 stops well before 200 epochs.
    let params = VaeParams {
        hidden: 64,
        latent: 16,
        epochs: 200,
        batch_size: 16,
        lr: 1e-2,
        patience: 2,
        ..VaeParams::default()
    };
    let t = train(&rows, 4, &fit, &params).unwrap();
    assert!(t.history.len() < 200, "ran all {} epochs", t.history.len());
    assert_eq!(t.history.len(), t.best_epoch + 1 + 2);
    let best = t.history[t.best_epoch].held_out_loss.unwrap();
    assert!(t.history.iter().all(|e| e.held_out_loss.unwrap() >= best));
    // The kept weights are the best epoch's: the held-out loss recomputed now equals it.
    let z = t.standardizer.apply(&rows);
    let mut order = fit.clone();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(params.seed));
    let held: Vec<f32> = order[..30].iter().flat_map(|&r| z[r * 4..r * 4 + 4].to_vec()).collect();
    let x = Tensor::from_vec(held, (30, 4), &Device::Cpu).unwrap();
    let (l, _, _) = t.vae.loss(&x, None, 1.0).unwrap();
    assert!((f64::from(l.to_scalar::<f32>().unwrap()) - best).abs() < 1e-6);
}

#[test]
fn bad_input_is_named() {
    let mut rows = data(10, 3, 3);
    rows[7] = f32::NAN;
    let e = train(&rows, 3, &[0, 1, 2], &VaeParams::default()).unwrap_err();
    assert!(matches!(e, Error::NonFinite { value, .. } if value.is_nan()), "{e}");
    assert!(e.to_string().contains("feature 1 of row 2 is NaN"), "{e}");
    let rows = data(10, 3, 3);
    let e = train(&rows, 3, &[], &VaeParams::default()).unwrap_err().to_string();
    assert!(e.contains("no training track has features"), "{e}");
    let e = VaeParams { holdout_share: 1.0, ..VaeParams::default() }.validate().unwrap_err();
    assert!(e.to_string().contains("vae.holdout_share"), "{e}");
    let e = VaeParams { latent: 0, ..VaeParams::default() }.validate().unwrap_err();
    assert!(e.to_string().contains("vae.latent"), "{e}");
}
