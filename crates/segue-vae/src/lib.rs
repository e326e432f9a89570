//! The acoustic VAE: each track's audio features, standardised with training-track statistics,
//! go through a small variational auto-encoder; the latent mean is the track's acoustic
//! embedding.
//!
//! Architecture (the paper's authors' `LinearVAE`, DESIGN.md): `n -> hidden ReLU -> (mu,
//! log var) latent`, decoder `latent -> hidden ReLU -> n`, linear output. Loss: squared error
//! summed over features plus `beta` times KL(N(mu, sigma^2) || N(0, 1)) summed over latent
//! dimensions, both averaged over the batch; Adam without weight decay. Layers start as
//! PyTorch's `nn.Linear` does (uniform in +-1/sqrt(fan in)).
//!
//! Early stopping: a seeded share of the training tracks is held out; after each epoch their
//! loss (decoded from the mean, so it is deterministic) is measured, the best weights are
//! kept, and training stops after `patience` epochs without improvement.
//!
//! Deterministic for a seed: every random number (initial weights, shuffles, the
//! reparameterisation noise) comes from a seeded ChaCha generator, not from candle's.
//!
//! ```
//! use segue_vae::{VaeParams, train};
//!
//! // 200 tracks with 3 features on a line: one latent direction explains them.
//! let rows: Vec<f32> = (0..200).flat_map(|i| {
//!     let t = i as f32 / 200.0;
//!     [t, 2.0 * t + 1.0, -t]
//! }).collect();
//! let fit: Vec<usize> = (0..200).collect();
//! let params = VaeParams { hidden: 16, latent: 4, epochs: 30, batch_size: 32, ..VaeParams::default() };
//! let trained = train(&rows, 3, &fit, &params).unwrap();
//! let mu = trained.embed(&rows).unwrap();
//! assert_eq!(mu.len(), 200 * 4);
//! assert!(trained.history.last().unwrap().train_loss < trained.history[0].train_loss);
//! ```
#![deny(missing_docs)]

use candle_core::{D, Device, Tensor, Var};
use candle_nn::{Linear, Module, Optimizer};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};
use segue_core::{Error, NoProgress, Progress, Result};
use serde::{Deserialize, Serialize};

/// The 11 Spotify audio features, in the order of the peer and of every feature matrix here.
pub const FEATURES: [&str; 11] = [
    "acousticness",
    "danceability",
    "duration_ms",
    "energy",
    "instrumentalness",
    "liveness",
    "loudness",
    "speechiness",
    "tempo",
    "valence",
    "mode",
];

/// Settings of the VAE and its training; the defaults are DESIGN.md's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VaeParams {
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Latent size (the embedding size).
    pub latent: usize,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Tracks per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Weight of the KL term.
    pub beta: f64,
    /// Share of the training tracks held out for early stopping (0: none, train all epochs).
    pub holdout_share: f64,
    /// Epochs without a better held-out loss before stopping (0: never stop early).
    pub patience: usize,
    /// Seed of the weights, shuffles, hold-out and noise.
    pub seed: u64,
}

impl Default for VaeParams {
    fn default() -> Self {
        VaeParams {
            hidden: 128,
            latent: 150,
            epochs: 50,
            batch_size: 64,
            lr: 1e-3,
            beta: 1.0,
            holdout_share: 0.1,
            patience: 5,
            seed: 0,
        }
    }
}

impl VaeParams {
    /// Checks the settings, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |k: &str, why: &str| Err(Error::Config(format!("vae.{k}: {why}")));
        for (k, v) in [
            ("hidden", self.hidden),
            ("latent", self.latent),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
        ] {
            if v == 0 {
                return bad(k, "must be positive");
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("lr", "must be a positive number");
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return bad("beta", "must be a non-negative number");
        }
        if !(0.0..0.9).contains(&self.holdout_share) {
            return bad("holdout_share", "must be in [0, 0.9)");
        }
        Ok(())
    }
}

/// Column means and population standard deviations (ddof 0, as scikit-learn's
/// `StandardScaler`; a constant column gets 1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Mean of each column.
    pub mean: Vec<f64>,
    /// Standard deviation of each column.
    pub std: Vec<f64>,
}

impl Standardizer {
    /// Fits on the rows `fit` of the row-major `rows` (`width` columns).
    pub fn fit(rows: &[f32], width: usize, fit: &[usize]) -> Self {
        let n = fit.len().max(1) as f64;
        let mut mean = vec![0f64; width];
        for &r in fit {
            for (m, &x) in mean.iter_mut().zip(&rows[r * width..][..width]) {
                *m += f64::from(x) / n;
            }
        }
        let mut var = vec![0f64; width];
        for &r in fit {
            for ((v, &x), m) in var.iter_mut().zip(&rows[r * width..][..width]).zip(&mean) {
                *v += (f64::from(x) - m).powi(2) / n;
            }
        }
        let std = var.into_iter().map(|v| if v > 0.0 { v.sqrt() } else { 1.0 }).collect();
        Standardizer { mean, std }
    }

    /// The z-scores of every row.
    pub fn apply(&self, rows: &[f32]) -> Vec<f32> {
        let width = self.mean.len();
        rows.chunks(width)
            .flat_map(|r| {
                r.iter()
                    .zip(&self.mean)
                    .zip(&self.std)
                    .map(|((&x, m), s)| ((f64::from(x) - m) / s) as f32)
            })
            .collect()
    }
}

fn err(e: candle_core::Error) -> Error {
    Error::backend("candle", "VAE", e)
}

/// The network.
#[derive(Debug)]
pub struct Vae {
    vars: Vec<(String, Var)>,
    enc: Linear,
    mu: Linear,
    logvar: Linear,
    dec1: Linear,
    dec2: Linear,
}

impl Vae {
    /// A fresh network with PyTorch's default initialisation drawn from `rng`.
    fn new(n_in: usize, hidden: usize, latent: usize, rng: &mut ChaCha8Rng) -> Result<Self> {
        let mut vars = Vec::new();
        let mut layer = |name: &str, fan_in: usize, fan_out: usize| -> Result<Linear> {
            let bound = 1.0 / (fan_in as f32).sqrt();
            let u = Uniform::new_inclusive(-bound, bound).expect("a valid range");
            let w: Vec<f32> = (0..fan_in * fan_out).map(|_| u.sample(rng)).collect();
            let b: Vec<f32> = (0..fan_out).map(|_| u.sample(rng)).collect();
            let w = Var::from_tensor(
                &Tensor::from_vec(w, (fan_out, fan_in), &Device::Cpu).map_err(err)?,
            )
            .map_err(err)?;
            let b = Var::from_tensor(&Tensor::from_vec(b, fan_out, &Device::Cpu).map_err(err)?)
                .map_err(err)?;
            let linear = Linear::new(w.as_tensor().clone(), Some(b.as_tensor().clone()));
            vars.push((format!("{name}.weight"), w));
            vars.push((format!("{name}.bias"), b));
            Ok(linear)
        };
        let enc = layer("enc", n_in, hidden)?;
        let mu = layer("mu", hidden, latent)?;
        let logvar = layer("logvar", hidden, latent)?;
        let dec1 = layer("dec1", latent, hidden)?;
        let dec2 = layer("dec2", hidden, n_in)?;
        Ok(Vae { vars, enc, mu, logvar, dec1, dec2 })
    }

    fn encode(&self, x: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
        let h = self.enc.forward(x)?.relu()?;
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    fn decode(&self, z: &Tensor) -> candle_core::Result<Tensor> {
        self.dec2.forward(&self.dec1.forward(z)?.relu()?)
    }

    /// (total, reconstruction, KL) batch means; `noise` None decodes the mean itself.
    fn loss(
        &self,
        x: &Tensor,
        noise: Option<&Tensor>,
        beta: f64,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let (mu, logvar) = self.encode(x)?;
        let z = match noise {
            Some(eps) => (&mu + (eps * (&logvar * 0.5)?.exp()?)?)?,
            None => mu.clone(),
        };
        let recon = (self.decode(&z)? - x)?.sqr()?.sum(D::Minus1)?.mean_all()?;
        // -0.5 * sum(1 + logvar - mu^2 - exp(logvar))
        let kl = ((((logvar.exp()? + mu.sqr()?)? - &logvar)? - 1.0)? * 0.5)?
            .sum(D::Minus1)?
            .mean_all()?;
        let total = (&recon + (&kl * beta)?)?;
        Ok((total, recon, kl))
    }

    /// The weights by name (`enc.weight`, `mu.bias`, ...).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        self.vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().copy().expect("cpu copy")))
            .collect()
    }

    fn restore(&self, saved: &[(String, Tensor)]) -> Result<()> {
        for ((_, v), (_, t)) in self.vars.iter().zip(saved) {
            v.set(t).map_err(err)?;
        }
        Ok(())
    }
}

/// Named weight tensors.
type Weights = Vec<(String, Tensor)>;

/// One epoch of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    /// Mean training loss over the epoch's tracks.
    pub train_loss: f64,
    /// Held-out loss (reconstruction from the mean + beta KL), if tracks are held out.
    pub held_out_loss: Option<f64>,
    /// Held-out reconstruction error (squared error summed over features, mean over tracks).
    pub held_out_recon: Option<f64>,
}

/// A trained VAE with its feature scaling and history.
#[derive(Debug)]
pub struct Trained {
    /// The network (the best epoch's weights when tracks were held out).
    pub vae: Vae,
    /// The training tracks' feature statistics.
    pub standardizer: Standardizer,
    /// Every epoch's losses.
    pub history: Vec<Epoch>,
    /// The epoch whose weights were kept (0-based).
    pub best_epoch: usize,
    /// Number of training tracks the weights were fitted on (held-out ones excluded).
    pub fit_tracks: usize,
    /// Number of held-out tracks.
    pub held_out_tracks: usize,
    /// The rows (of `fit`) that were held out, in the order drawn.
    pub held_out: Vec<usize>,
}

impl Trained {
    /// The latent means of raw (unstandardised) feature rows, row-major `n x latent`.
    pub fn embed(&self, rows: &[f32]) -> Result<Vec<f32>> {
        let width = self.standardizer.mean.len();
        let z = self.standardizer.apply(rows);
        let mut out =
            Vec::with_capacity(rows.len() / width * self.vae.mu.weight().dim(0).map_err(err)?);
        for chunk in z.chunks(4096 * width) {
            let x = Tensor::from_slice(chunk, (chunk.len() / width, width), &Device::Cpu)
                .map_err(err)?;
            let (mu, _) = self.vae.encode(&x).map_err(err)?;
            out.extend(mu.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err)?);
        }
        Ok(out)
    }
}

/// Trains on the rows `fit` of the row-major `rows` (`width` raw features each, all finite).
pub fn train(rows: &[f32], width: usize, fit: &[usize], params: &VaeParams) -> Result<Trained> {
    train_with_progress(rows, width, fit, params, &NoProgress)
}

/// [`train`], reporting tracks as they are trained on.
pub fn train_with_progress(
    rows: &[f32],
    width: usize,
    fit: &[usize],
    params: &VaeParams,
    progress: &dyn Progress,
) -> Result<Trained> {
    params.validate()?;
    if width == 0 {
        return Err(Error::Config("the feature rows are 0 values wide".into()));
    }
    if !rows.len().is_multiple_of(width) {
        return Err(Error::ShapeMismatch {
            what: format!("feature values (whole rows of {width})"),
            expected: rows.len().div_ceil(width) * width,
            found: rows.len(),
        });
    }
    if let Some(i) = rows.iter().position(|x| !x.is_finite()) {
        return Err(Error::NonFinite {
            what: format!("feature {} of row {}", i % width, i / width),
            value: f64::from(rows[i]),
        });
    }
    if fit.is_empty() {
        return Err(Error::no_data("no training track has features: nothing to fit"));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
    let standardizer = Standardizer::fit(rows, width, fit);
    let z = standardizer.apply(rows);
    let mut order = fit.to_vec();
    order.shuffle(&mut rng);
    let n_held = (order.len() as f64 * params.holdout_share).floor() as usize;
    let (held, train_rows) = order.split_at(n_held);
    let mut train_rows = train_rows.to_vec();
    if train_rows.is_empty() {
        return Err(Error::Config(
            "every training track is held out: lower vae.holdout_share".into(),
        ));
    }
    let gather = |idx: &[usize]| -> Result<Tensor> {
        let mut v = Vec::with_capacity(idx.len() * width);
        for &r in idx {
            v.extend_from_slice(&z[r * width..][..width]);
        }
        Tensor::from_vec(v, (idx.len(), width), &Device::Cpu).map_err(err)
    };
    let held_x = if held.is_empty() { None } else { Some(gather(held)?) };

    let vae = Vae::new(width, params.hidden, params.latent, &mut rng)?;
    let vars: Vec<Var> = vae.vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = candle_nn::AdamW::new(
        vars,
        candle_nn::ParamsAdamW { lr: params.lr, weight_decay: 0.0, ..Default::default() },
    )
    .map_err(err)?;
    let mut history = Vec::new();
    // (held-out loss, epoch, weights) of the best epoch so far.
    let mut best: Option<(f64, usize, Weights)> = None;
    progress.start("VAE", Some((params.epochs * train_rows.len()) as u64), "tracks");
    for epoch in 0..params.epochs {
        train_rows.shuffle(&mut rng);
        let (mut total, mut seen) = (0f64, 0usize);
        for batch in train_rows.chunks(params.batch_size) {
            let x = gather(batch)?;
            let eps: Vec<f32> =
                (0..batch.len() * params.latent).map(|_| StandardNormal.sample(&mut rng)).collect();
            let eps =
                Tensor::from_vec(eps, (batch.len(), params.latent), &Device::Cpu).map_err(err)?;
            let (loss, _, _) = vae.loss(&x, Some(&eps), params.beta).map_err(err)?;
            let value = f64::from(loss.to_scalar::<f32>().map_err(err)?);
            if !value.is_finite() {
                return Err(Error::Diverged {
                    what: "the VAE".into(),
                    loss: value,
                    epoch: epoch + 1,
                    step: None,
                    lower: "vae.lr".into(),
                });
            }
            opt.backward_step(&loss).map_err(err)?;
            total += value * batch.len() as f64;
            seen += batch.len();
            progress.advance(batch.len() as u64);
        }
        let (held_out_loss, held_out_recon) = match &held_x {
            Some(x) => {
                let (l, r, _) = vae.loss(x, None, params.beta).map_err(err)?;
                (
                    Some(f64::from(l.to_scalar::<f32>().map_err(err)?)),
                    Some(f64::from(r.to_scalar::<f32>().map_err(err)?)),
                )
            }
            None => (None, None),
        };
        history.push(Epoch { train_loss: total / seen as f64, held_out_loss, held_out_recon });
        if let Some(h) = held_out_loss {
            if best.as_ref().is_none_or(|(b, _, _)| h < *b) {
                best = Some((h, epoch, vae.tensors()));
            } else if params.patience > 0
                && best.as_ref().is_some_and(|(_, e, _)| epoch - e >= params.patience)
            {
                break;
            }
        }
    }
    progress.finish();
    let best_epoch = match best {
        Some((_, e, saved)) => {
            vae.restore(&saved)?;
            e
        }
        None => history.len() - 1,
    };
    Ok(Trained {
        vae,
        standardizer,
        history,
        best_epoch,
        fit_tracks: train_rows.len(),
        held_out_tracks: held.len(),
        held_out: held.to_vec(),
    })
}

#[cfg(test)]
mod tests;
