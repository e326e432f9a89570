//! The models of segue: the attentive BiGRU with multimodal fusion of the paper (every variant
//! of DESIGN.md from one configurable [`Fusion`]), the GRU4Rec and SASRec baselines, their training
//! ([`train()`]: Adam, early stopping on validation HitRatio@10, checkpoints, resume, a JSON-lines
//! log) and full-ranking evaluation through segue-eval.
//!
//! Everything runs on candle's CPU device in f32. [`Fusion::loss`] is the model as one candle
//! graph (the bidirectional GRU one fused operation with a hand-written backward pass,
//! [`bigru()`]); the training step [`Fusion::step`] computes the same loss and every gradient
//! by hand over plain buffers (tested equal to the graph's), as do GRU4Rec's and SASRec's
//! ([`SasRec::step`]; [`SasRec::loss`] is its graph), and Adam is one in-place pass per
//! parameter ([`Adam`]): see their modules for why.
//!
//! ```
//! use rand::SeedableRng;
//! use segue_model::{Batch, Fusion, FusionConfig, FusionInit, Softmax};
//!
//! let config = FusionConfig {
//!     tracks: 50, embedding_dim: 8, hidden: 8, fc: 16, dropout: 0.2, leaky_slope: 0.01,
//!     content_dims: vec![4], repeat_positions: 0,
//! };
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
//! let init = FusionInit { e1: None, content: vec![vec![0.5; 50 * 4]] };
//! let model = Fusion::new(config, init, &mut rng).unwrap();
//! // Two sessions' inputs (lengths 3 and 1) and their next tracks.
//! let batch = Batch::new(&[&[1, 2, 3], &[7]], vec![4, 8]);
//! let scores = model.scores(&batch).unwrap();
//! assert_eq!(scores.dims(), &[2, 50]);
//! let loss = model.loss(&batch, &Softmax::Full, &mut rng).unwrap();
//! assert!(loss.to_scalar::<f32>().unwrap() > 0.0);
//! ```
#![deny(missing_docs)]

mod adam;
mod bigru;
mod build;
mod data;
mod fusion;
mod gru4rec;
mod output;
mod sasrec;
mod scoring;
mod train;

pub use adam::{Adam, AdamConfig};
pub use bigru::bigru;
pub use build::{Pretrained, PretrainedRows};
pub use data::{Batch, Example, Sessions};
pub use fusion::{Fusion, FusionConfig, FusionInit, NamedGradients};
pub use gru4rec::{Gru4Rec, Gru4RecConfig};
pub use sasrec::{SasRec, SasRecConfig, SasRecParams, SasRecScratch};
pub use scoring::Hidden;
pub use train::{
    BREAKDOWNS, EVAL_BLOCK, Epoch, Network, TrainOptions, Trained, checkpoint_epochs, evaluate,
    evaluate_in_blocks, evaluate_ranked, evaluate_scorer, train,
};

use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

pub(crate) fn err(e: candle_core::Error) -> Error {
    Error::backend("candle", "", e)
}

/// Settings of the models and their training; the defaults are DESIGN.md's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelParams {
    /// Width of every embedding table.
    pub embedding_dim: usize,
    /// GRU state size (and attention size).
    pub hidden: usize,
    /// Width of the fully connected layer.
    pub fc: usize,
    /// Dropout on embeddings.
    pub dropout: f64,
    /// Slope of LeakyReLU below zero.
    pub leaky_slope: f64,
    /// Tracks of input before each prediction (L).
    pub max_input_len: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Maximum number of epochs.
    pub epochs: usize,
    /// Epochs without a better validation HitRatio@10 before stopping (0: never stop early).
    pub patience: usize,
    /// Sampled softmax with this many negatives for training (0: full softmax). Evaluation
    /// always ranks the whole catalogue.
    pub sampled_negatives: usize,
    /// GRU4Rec's extra negatives per step beyond the batch's targets.
    pub gru4rec_negatives: usize,
    /// GRU4Rec's sessions per step (its parallel lanes); unset: `batch_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gru4rec_batch_size: Option<usize>,
    /// Seed of initial weights, shuffles, dropout and samples.
    pub seed: u64,
    /// Train every model once per seed: a count (`seed`, `seed + 1`, ...) or a list. Unset:
    /// `seed` alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seeds: Option<Seeds>,
    /// The repeat path of the fused model (beyond the paper; [`FusionConfig::repeat_positions`]):
    /// the session's own tracks get a learned score by position. Needs the full softmax.
    #[serde(skip_serializing_if = "is_false")]
    pub repeat: bool,
    /// How pretrained `E1` rows (Word2Vec, LSA) are scaled beside the N(0, 1) rows of the
    /// other tracks (beyond the paper; the paper: as they come).
    #[serde(skip_serializing_if = "PretrainedScale::is_none")]
    pub pretrained_scale: PretrainedScale,
    /// SASRec's own settings (`[model.sasrec]`).
    #[serde(skip_serializing_if = "SasRecParams::is_default")]
    pub sasrec: SasRecParams,
    /// Lazy (sparse) Adam for the embedding tables of the fused model and GRU4Rec, and their
    /// output layers with a sampled softmax: a row is updated only at the steps whose batch
    /// touches it
    /// ([`AdamConfig::lazy`]), so a step's time does not grow with the catalogue (large
    /// catalogues; off: dense Adam, as PyTorch's).
    #[serde(skip_serializing_if = "is_false")]
    pub lazy_adam: bool,
    /// Stop training after this many steps (batches) in all, mid-epoch if need be; the last,
    /// partial epoch is validated and logged like the others (0: no cap). The fused model and
    /// SASRec; GRU4Rec trains whole epochs.
    #[serde(skip_serializing_if = "is_zero")]
    pub max_steps: usize,
    /// Rank at most this many validation and test predictions, a sample drawn with the
    /// pipeline's seed ([`Sessions::with_max_examples`]; 0: every one). For splits of millions
    /// of predictions over catalogues of millions of tracks, where ranking all is out of reach.
    #[serde(skip_serializing_if = "is_zero")]
    pub eval_predictions: usize,
    /// After early stopping has chosen the number of epochs on the validation share, train
    /// again from scratch on the training sessions and the validation share together for that
    /// many epochs (no validation), as RecBole's peer does; the test then sees that model. The
    /// validation share is each user's most recent training sessions, the closest in time to
    /// the test. Costs a second training. No effect without validation sessions.
    #[serde(skip_serializing_if = "is_false")]
    pub refit: bool,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The scale of pretrained `E1` rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PretrainedScale {
    /// As the embedding stage wrote them (the paper). Word2Vec rows are about a tenth of the
    /// length of the N(0, 1) rows beside them.
    #[default]
    None,
    /// Multiplied by one factor so their mean length is `sqrt(dim)`, the mean length of an
    /// N(0, 1) row: pretrained and random rows start on the same scale.
    Match,
    /// Each row rescaled on its own to [0, 1] (`(x - min) / (max - min)`), as the authors'
    /// public code does to every pretrained and content row (`utils.rep`).
    RowMinMax,
}

impl PretrainedScale {
    fn is_none(&self) -> bool {
        *self == PretrainedScale::None
    }

    /// Scales the rows of `rows` (`dim` wide) that `take` marks, in place; returns the factor.
    pub fn apply(self, rows: &mut [f32], take: &[bool], dim: usize) -> f64 {
        if self == PretrainedScale::None || dim == 0 {
            return 1.0;
        }
        if self == PretrainedScale::RowMinMax {
            for (r, _) in rows.chunks_exact_mut(dim).zip(take).filter(|(_, t)| **t) {
                let lo = r.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let span = hi - lo;
                // numpy's ptp of a constant row is 0 and the authors' division gives NaN;
                // such a row becomes zeros here.
                r.iter_mut().for_each(|x| *x = if span > 0.0 { (*x - lo) / span } else { 0.0 });
            }
            return 1.0;
        }
        let norms: Vec<f64> = rows
            .chunks_exact(dim)
            .zip(take)
            .filter(|(_, t)| **t)
            .map(|(r, _)| r.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt())
            .collect();
        let mean = norms.iter().sum::<f64>() / norms.len().max(1) as f64;
        if mean <= 0.0 {
            return 1.0;
        }
        let factor = (dim as f64).sqrt() / mean;
        for (r, _) in rows.chunks_exact_mut(dim).zip(take).filter(|(_, t)| **t) {
            r.iter_mut().for_each(|x| *x = (f64::from(*x) * factor) as f32);
        }
        factor
    }
}

/// The seeds of repeated runs: a count or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Seeds {
    /// This many seeds, counting up from the model's `seed`.
    Count(usize),
    /// These seeds.
    List(Vec<u64>),
}

impl Default for ModelParams {
    fn default() -> Self {
        ModelParams {
            embedding_dim: 150,
            hidden: 150,
            fc: 256,
            dropout: 0.2,
            leaky_slope: 0.01,
            max_input_len: 20,
            batch_size: 32,
            lr: 1e-3,
            epochs: 10,
            patience: 2,
            sampled_negatives: 0,
            gru4rec_negatives: 2048,
            gru4rec_batch_size: None,
            seed: 0,
            seeds: None,
            repeat: false,
            pretrained_scale: PretrainedScale::None,
            sasrec: SasRecParams::default(),
            lazy_adam: false,
            max_steps: 0,
            eval_predictions: 0,
            refit: false,
        }
    }
}

impl ModelParams {
    /// The seeds to train with, in order: `seeds` when set, else `seed` alone.
    pub fn seed_list(&self) -> Vec<u64> {
        match &self.seeds {
            None => vec![self.seed],
            Some(Seeds::Count(n)) => (0..*n as u64).map(|i| self.seed + i).collect(),
            Some(Seeds::List(v)) => v.clone(),
        }
    }

    /// These settings for one run of seed `seed` (no seed list).
    pub fn for_seed(&self, seed: u64) -> ModelParams {
        ModelParams { seed, seeds: None, ..self.clone() }
    }

    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<()> {
        self.sasrec.validate()?;
        if self.repeat && self.sampled_negatives > 0 {
            return Err(Error::Config(
                "model.repeat needs the full softmax: set model.sampled_negatives = 0".into(),
            ));
        }
        let seeds = self.seed_list();
        if seeds.is_empty() {
            return Err(Error::Config("model.seeds: give at least one seed".into()));
        }
        let mut distinct = seeds.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != seeds.len() {
            return Err(Error::Config(format!("model.seeds = {seeds:?}: a seed is repeated")));
        }
        let positive = [
            ("model.embedding_dim", self.embedding_dim),
            ("model.hidden", self.hidden),
            ("model.fc", self.fc),
            ("model.max_input_len", self.max_input_len),
            ("model.batch_size", self.batch_size),
            ("model.gru4rec_batch_size", self.gru4rec_batch_size.unwrap_or(1)),
            ("model.epochs", self.epochs),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::Config(format!("{name} = 0: must be positive")));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Config(format!(
                "model.dropout = {}: must be in [0, 1)",
                self.dropout
            )));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::Config(format!(
                "model.lr = {}: must be a positive number",
                self.lr
            )));
        }
        if !(self.leaky_slope >= 0.0 && self.leaky_slope < 1.0) {
            return Err(Error::Config(format!(
                "model.leaky_slope = {}: must be in [0, 1)",
                self.leaky_slope
            )));
        }
        Ok(())
    }
}

/// A content modality the fused model can pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// Audio features through the VAE.
    Acoustic,
    /// Lyrics through Sentence-BERT and PCA.
    Lyrics,
    /// Tag word vectors.
    Tags,
}

impl Modality {
    /// Its name in tables and stage names.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Acoustic => "acoustic",
            Modality::Lyrics => "lyrics",
            Modality::Tags => "tags",
        }
    }
}

/// Where `E1` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum E1Start {
    /// N(0, 1) for every row.
    Random,
    /// Word2Vec vectors of training tracks.
    Word2Vec,
    /// LSA vectors of training tracks.
    Lsa,
}

/// The paper's models: GRU4Rec and the ANN family (Tables II and III).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Variant {
    /// GRU4Rec (Hidasi et al.).
    Gru4Rec,
    /// The attentive BiGRU with random `E1`.
    Ann,
    /// ANN with `E1` from LSA.
    AnnLsa,
    /// ANN with `E1` from Word2Vec.
    Annw,
    /// ANNW with acoustic embeddings.
    AnnwAcoustic,
    /// ANNW with lyric embeddings.
    AnnwLyrics,
    /// ANNW with acoustic and lyric embeddings (the paper's model).
    AnnwAcousticLyrics,
    /// ANNW with acoustic, lyric and tag embeddings.
    AnnwAcousticLyricsTags,
    /// SASRec (Kang and McAuley 2018), beyond the paper.
    SasRec,
}

impl Variant {
    /// Every variant, baselines first.
    pub const ALL: [Variant; 9] = [
        Variant::Gru4Rec,
        Variant::Ann,
        Variant::AnnLsa,
        Variant::Annw,
        Variant::AnnwAcoustic,
        Variant::AnnwLyrics,
        Variant::AnnwAcousticLyrics,
        Variant::AnnwAcousticLyricsTags,
        Variant::SasRec,
    ];

    /// The name used in stage names and on the command line (the peer's names).
    pub fn id(self) -> &'static str {
        match self {
            Variant::Gru4Rec => "gru4rec",
            Variant::Ann => "ann",
            Variant::AnnLsa => "ann-lsa",
            Variant::Annw => "annw",
            Variant::AnnwAcoustic => "annw-acoustic",
            Variant::AnnwLyrics => "annw-lyrics",
            Variant::AnnwAcousticLyrics => "annw-acoustic-lyrics",
            Variant::AnnwAcousticLyricsTags => "annw-acoustic-lyrics-tags",
            Variant::SasRec => "sasrec",
        }
    }

    /// The name in the paper's tables.
    pub fn paper_name(self) -> &'static str {
        match self {
            Variant::Gru4Rec => "GRU4Rec",
            Variant::Ann => "ANN",
            Variant::AnnLsa => "ANN-LSA",
            Variant::Annw => "ANNW",
            Variant::AnnwAcoustic => "ANNW+Acoustic",
            Variant::AnnwLyrics => "ANNW+Lyrics",
            Variant::AnnwAcousticLyrics => "ANNW+Acoustic+Lyrics",
            Variant::AnnwAcousticLyricsTags => "ANNW+Acoustic+Lyrics+Tags",
            Variant::SasRec => "SASRec",
        }
    }

    /// The variant called `id`.
    pub fn from_id(id: &str) -> Result<Variant> {
        Variant::ALL.into_iter().find(|v| v.id() == id).ok_or_else(|| {
            let all: Vec<&str> = Variant::ALL.iter().map(|v| v.id()).collect();
            Error::Config(format!("unknown variant `{id}`; the variants are {}", all.join(", ")))
        })
    }

    /// Where its `E1` starts.
    pub fn e1(self) -> E1Start {
        match self {
            Variant::Gru4Rec | Variant::Ann | Variant::SasRec => E1Start::Random,
            Variant::AnnLsa => E1Start::Lsa,
            _ => E1Start::Word2Vec,
        }
    }

    /// The content it pools, in the order of its context vectors.
    pub fn modalities(self) -> &'static [Modality] {
        match self {
            Variant::AnnwAcoustic => &[Modality::Acoustic],
            Variant::AnnwLyrics => &[Modality::Lyrics],
            Variant::AnnwAcousticLyrics => &[Modality::Acoustic, Modality::Lyrics],
            Variant::AnnwAcousticLyricsTags => {
                &[Modality::Acoustic, Modality::Lyrics, Modality::Tags]
            }
            _ => &[],
        }
    }
}

/// The training loss's softmax.
#[derive(Debug, Clone)]
pub enum Softmax {
    /// Over the whole catalogue.
    Full,
    /// Over each row's target and `negatives` tracks drawn from `sampler` (shared by the rows),
    /// each score corrected by `-log(expected draws)` (logQ), accidental hits removed.
    Sampled {
        /// Draws per step.
        negatives: usize,
        /// The proposal distribution.
        sampler: Sampler,
    },
}

/// Draws tracks with probability proportional to fixed weights.
#[derive(Debug, Clone)]
pub struct Sampler {
    cumulative: Vec<f64>,
    log_q: Vec<f32>,
}

impl Sampler {
    /// Weights `counts^power` (tracks with no count get a tiny weight, so every track can be
    /// drawn and its log-probability is finite).
    pub fn from_counts(counts: &[u32], power: f64) -> Result<Sampler> {
        if counts.is_empty() {
            return Err(Error::Config("a sampler needs at least one track".into()));
        }
        let w: Vec<f64> = counts.iter().map(|&c| (c as f64).max(1e-3).powf(power)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let cumulative = w
            .iter()
            .map(|x| {
                acc += x / total;
                acc
            })
            .collect();
        let log_q = w.iter().map(|x| (x / total).ln() as f32).collect();
        Ok(Sampler { cumulative, log_q })
    }

    /// `n` draws with replacement.
    pub fn draw(&self, n: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
        let last = self.cumulative.len() - 1;
        (0..n)
            .map(|_| {
                let u: f64 = rng.random();
                self.cumulative.partition_point(|&c| c < u).min(last) as u32
            })
            .collect()
    }
}

/// Mean cross-entropy of rows `features` (`B x F`) against `targets` through the output layer
/// `w` (`V x F`), `b` (`V`).
pub(crate) fn ce(
    features: &Tensor,
    w: &Tensor,
    b: &Tensor,
    targets: &[u32],
    softmax: &Softmax,
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    let dev = Device::Cpu;
    let mut run = || -> candle_core::Result<Tensor> {
        let y = Tensor::from_slice(targets, targets.len(), &dev)?;
        match softmax {
            Softmax::Full => {
                let logits = features.matmul(&w.t()?)?.broadcast_add(b)?;
                candle_nn::loss::cross_entropy(&logits, &y)
            }
            Softmax::Sampled { negatives, sampler } => {
                let neg = sampler.draw(*negatives, rng);
                let ln_n = (*negatives as f32).ln();
                let own = features.mul(&w.embedding(&y)?)?.sum(1)?.add(&b.index_select(&y, 0)?)?;
                let own_q: Vec<f32> =
                    targets.iter().map(|&t| sampler.log_q[t as usize] + ln_n).collect();
                let own = own.sub(&Tensor::from_vec(own_q, targets.len(), &dev)?)?;
                let nt = Tensor::from_slice(&neg, neg.len(), &dev)?;
                let mut corr = Vec::with_capacity(targets.len() * neg.len());
                for &t in targets {
                    for &n in &neg {
                        // logQ correction; an accidental hit is not a negative.
                        corr.push(if n == t {
                            f32::NEG_INFINITY
                        } else {
                            -(sampler.log_q[n as usize] + ln_n)
                        });
                    }
                }
                let other = features
                    .matmul(&w.embedding(&nt)?.t()?)?
                    .broadcast_add(&b.index_select(&nt, 0)?)?
                    .add(&Tensor::from_vec(corr, (targets.len(), neg.len()), &dev)?)?;
                let logits = Tensor::cat(&[own.unsqueeze(1)?, other], 1)?;
                let zero = Tensor::zeros(targets.len(), candle_core::DType::U32, &dev)?;
                candle_nn::loss::cross_entropy(&logits, &zero)
            }
        }
    };
    run().map_err(err)
}

#[cfg(test)]
mod tests;
