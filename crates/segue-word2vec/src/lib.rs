//! CBOW Word2Vec with negative sampling, as gensim implements it, on any token sequences.
//!
//! Faithful to gensim 4's `word2vec_inner.pyx`: a window shrunk at random per position,
//! frequent-token down-sampling with gensim's `sample_int`, negatives drawn from the
//! unigram^`ns_exponent` cumulative table with its linear congruential generator, the
//! 1000-entry sigmoid table clipped at |x| >= 6, a learning rate decaying linearly per job of
//! up to 10,000 words, and `cbow_mean` (the context mean as input, the full error applied to
//! every context vector, as gensim does).
//!
//! Threads: with `threads = 1` training is bit-for-bit deterministic for a seed. With more,
//! jobs run Hogwild (lock-free, as word2vec.c and gensim): threads update shared rows without
//! locks, so results vary from run to run. Unlike word2vec.c, it is sound: the shared rows are
//! atomics read and written with relaxed loads and stores (no data race, no `unsafe` on the
//! training path), the arithmetic runs on thread-local copies.
//!
//! The main types: [`Corpus`] (sentences of token ids, borrowed flat or built from one
//! sequence per sentence), [`Params`] (gensim's defaults), [`train`] and the trained
//! [`Model`] (vectors by token, nearest neighbours, word2vec exports, an embedding table).
//!
//! ```
//! use segue_word2vec::{Corpus, Params, train};
//!
//! // Two "genres" of tokens that never share a sentence.
//! let sentences: Vec<Vec<u32>> = (0..400u32)
//!     .map(|s| {
//!         let base = if s % 2 == 0 { 0 } else { 10 };
//!         (0..8).map(|i| base + (s * 7 + i * 3) % 10).collect()
//!     })
//!     .collect();
//! let corpus = Corpus::from_sentences(&sentences, 20).unwrap();
//! let params = Params { vector_size: 16, epochs: 10, sample: 0.0, ..Params::default() };
//! let model = train(&corpus, &params).unwrap(); // one thread: the same vectors every run
//! let near = model.most_similar(3, 5);
//! assert!(near.iter().all(|(t, _)| *t < 10), "{near:?}");
//! assert_eq!(model.vector(3).unwrap().len(), 16);
//! ```
#![deny(missing_docs)]

mod export;
mod rng;

use std::borrow::Cow;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use rayon::prelude::*;
use segue_core::simd::dot;
use segue_core::{Error, Result};

use crate::rng::ChaCha8;

pub use export::{read_word2vec_binary, read_word2vec_text};

/// Training parameters: gensim's defaults, except `vector_size` 150, `min_count` 1 and one
/// thread (deterministic; ask for more to train Hogwild, as gensim's default 3 workers do).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Width of the vectors.
    pub vector_size: usize,
    /// Maximum distance between the predicted token and a context token.
    pub window: usize,
    /// Shrink the window at random per position (gensim's `shrink_windows`).
    pub shrink_windows: bool,
    /// Noise tokens per prediction.
    pub negative: usize,
    /// Exponent of the unigram noise distribution.
    pub ns_exponent: f64,
    /// Down-sampling threshold of frequent tokens (0 disables it).
    pub sample: f64,
    /// Starting learning rate.
    pub alpha: f64,
    /// Final learning rate.
    pub min_alpha: f64,
    /// Passes over the corpus.
    pub epochs: usize,
    /// Tokens seen fewer times get no vector.
    pub min_count: u64,
    /// Use the mean (not the sum) of the context vectors.
    pub cbow_mean: bool,
    /// Threads; 1 (the default) is deterministic, more run Hogwild.
    pub threads: usize,
    /// Seed of the initial vectors and of every job's generator.
    pub seed: u64,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            vector_size: 150,
            window: 5,
            shrink_windows: true,
            negative: 5,
            ns_exponent: 0.75,
            sample: 1e-3,
            alpha: 0.025,
            min_alpha: 1e-4,
            epochs: 5,
            min_count: 1,
            cbow_mean: true,
            threads: 1,
            seed: 1,
        }
    }
}

impl Params {
    /// Checks every value, naming a bad one.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, why: &str| Err(Error::Config(format!("word2vec.{name}: {why}")));
        if self.vector_size == 0 {
            return bad("vector_size", "must be positive");
        }
        if self.window == 0 {
            return bad("window", "must be positive");
        }
        if self.epochs == 0 {
            return bad("epochs", "must be positive");
        }
        if self.threads == 0 {
            return bad("threads", "must be positive");
        }
        if !(self.alpha > 0.0 && self.min_alpha >= 0.0 && self.min_alpha <= self.alpha) {
            return bad("alpha", "need 0 <= min_alpha <= alpha and alpha > 0");
        }
        if !(self.sample >= 0.0 && self.sample.is_finite()) {
            return bad("sample", "must be a non-negative number");
        }
        Ok(())
    }
}

/// Sentences over tokens `0..n_tokens`: sentence `s` is `flat[offsets[s]..offsets[s + 1]]`.
/// Borrowed from a flat token array ([`Corpus::new`]) or built from one sequence per sentence
/// ([`Corpus::from_sentences`]).
#[derive(Debug, Clone)]
pub struct Corpus<'a> {
    flat: Cow<'a, [u32]>,
    offsets: Cow<'a, [usize]>,
    n_tokens: usize,
}

impl<'a> Corpus<'a> {
    /// The flat form, borrowed: checks that offsets rise from 0 to `flat.len()` and that
    /// tokens are below `n_tokens`.
    pub fn new(flat: &'a [u32], offsets: &'a [usize], n_tokens: usize) -> Result<Self> {
        Corpus { flat: Cow::Borrowed(flat), offsets: Cow::Borrowed(offsets), n_tokens }.checked()
    }

    fn checked(self) -> Result<Self> {
        let (flat, offsets, n_tokens) = (&self.flat, &self.offsets, self.n_tokens);
        if offsets.first() != Some(&0)
            || offsets.last() != Some(&flat.len())
            || offsets.windows(2).any(|w| w[0] > w[1])
        {
            return Err(Error::Config(
                "corpus offsets must rise from 0 to the number of tokens".into(),
            ));
        }
        if let Some(t) = flat.iter().find(|&&t| t as usize >= n_tokens) {
            return Err(Error::Config(format!("token {t} outside 0..{n_tokens}")));
        }
        Ok(self)
    }

    fn sentence(&self, s: usize) -> &[u32] {
        &self.flat[self.offsets[s]..self.offsets[s + 1]]
    }

    fn len(&self) -> usize {
        self.offsets.len() - 1
    }
}

impl Corpus<'static> {
    /// One token sequence per sentence (e.g. `&[Vec<u32>]`), copied into the flat form; tokens
    /// must be below `n_tokens`.
    pub fn from_sentences<S: AsRef<[u32]>>(
        sentences: impl IntoIterator<Item = S>,
        n_tokens: usize,
    ) -> Result<Self> {
        let mut flat = Vec::new();
        let mut offsets = vec![0];
        for sentence in sentences {
            flat.extend_from_slice(sentence.as_ref());
            offsets.push(flat.len());
        }
        Corpus { flat: Cow::Owned(flat), offsets: Cow::Owned(offsets), n_tokens }.checked()
    }
}

/// gensim truncates longer sentences.
pub const MAX_SENTENCE_LEN: usize = 10_000;
/// Words per job, gensim's `batch_words`.
const BATCH_WORDS: usize = 10_000;
const MAX_EXP: f32 = 6.0;
const EXP_TABLE_SIZE: usize = 1000;

/// Tokens with vectors, most frequent first (ties in first-seen order, as gensim's sort).
#[derive(Debug, Clone)]
pub struct Vocabulary {
    /// Token of each vocabulary row.
    tokens: Vec<u32>,
    /// Row of each token, [`NO_ROW`] when it has none.
    rows: Vec<u32>,
    /// Count of each row's token.
    counts: Vec<u64>,
}

/// The row of a token without a vector.
const NO_ROW: u32 = u32::MAX;

impl Vocabulary {
    /// Counts tokens and keeps those seen at least `min_count` times.
    pub fn build(corpus: &Corpus<'_>, min_count: u64) -> Self {
        let mut count = vec![0u64; corpus.n_tokens];
        let mut first_seen = Vec::new();
        for &t in corpus.flat.iter() {
            if count[t as usize] == 0 {
                first_seen.push(t);
            }
            count[t as usize] += 1;
        }
        let mut tokens: Vec<u32> =
            first_seen.into_iter().filter(|&t| count[t as usize] >= min_count.max(1)).collect();
        tokens.sort_by_key(|&t| std::cmp::Reverse(count[t as usize])); // stable
        let mut rows = vec![NO_ROW; corpus.n_tokens];
        for (r, &t) in tokens.iter().enumerate() {
            rows[t as usize] = r as u32;
        }
        let counts = tokens.iter().map(|&t| count[t as usize]).collect();
        Vocabulary { tokens, rows, counts }
    }

    /// Number of tokens with vectors.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True when no token has a vector.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token of each row, row order (most frequent first).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// How often each row's token occurs in the corpus, row order.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The row of `token`, if it has a vector.
    pub fn row(&self, token: u32) -> Option<usize> {
        self.rows.get(token as usize).filter(|&&r| r != NO_ROW).map(|&r| r as usize)
    }
}

/// gensim's `make_cum_table`: cumulative unigram^exponent counts scaled to 2^31 - 1.
pub(crate) fn noise_table(counts: &[u64], exponent: f64) -> Vec<u32> {
    let domain = (i32::MAX) as f64;
    let total: f64 = counts.iter().map(|&c| (c as f64).powf(exponent)).sum();
    let mut cumulative = 0.0;
    counts
        .iter()
        .map(|&c| {
            cumulative += (c as f64).powf(exponent);
            (cumulative / total * domain).round() as u32
        })
        .collect()
}

/// Draws noise tokens from a cumulative table exactly as gensim's `bisect_left`, but starts the
/// search from a 2^16-bucket index of the table, so a draw costs a cache-resident lookup and a
/// short search instead of ~19 probes into a table of 300,000+ entries.
#[derive(Debug, Clone)]
pub(crate) struct NoiseSampler {
    cum: Vec<u32>,
    /// `starts[b]` = bisect_left(cum, b << shift); one extra entry at the end.
    starts: Vec<u32>,
    shift: u32,
}

impl NoiseSampler {
    /// The sampler of a cumulative table (as [`noise_table`] makes).
    pub(crate) fn new(cum: Vec<u32>) -> Self {
        let max = u64::from(*cum.last().unwrap_or(&1)).max(1);
        let mut shift = 0;
        while (max >> shift) >= (1 << 16) {
            shift += 1;
        }
        let buckets = (max >> shift) as usize + 2;
        let starts = (0..buckets)
            .map(|b| cum.partition_point(|&c| u64::from(c) < (b as u64) << shift) as u32)
            .collect();
        NoiseSampler { cum, starts, shift }
    }

    /// The last cumulative value: draws are taken modulo it.
    pub(crate) fn max(&self) -> u64 {
        u64::from(*self.cum.last().unwrap_or(&1)).max(1)
    }

    /// The index `bisect_left(cum, draw)` (clamped to the last index).
    #[inline]
    pub(crate) fn index(&self, draw: u32) -> u32 {
        let b = (draw >> self.shift) as usize;
        let (lo, hi) =
            (self.starts[b] as usize, (self.starts[b + 1] as usize + 1).min(self.cum.len()));
        let i = lo + self.cum[lo..hi].partition_point(|&c| c < draw);
        (i as u32).min(self.cum.len() as u32 - 1)
    }
}

/// gensim's down-sampling: each token is kept when its `sample_int` is at least a 32-bit random
/// draw; `sample_int = P(keep) * (2^32 - 1)` with
/// `P(keep) = (sqrt(c / t) + 1) * t / c`, `t = sample * total` (or `sample` itself when >= 1).
pub(crate) fn sample_ints(counts: &[u64], sample: f64) -> Vec<u32> {
    let total: u64 = counts.iter().sum();
    let threshold = if sample == 0.0 {
        total as f64
    } else if sample < 1.0 {
        sample * total as f64
    } else {
        sample
    };
    counts
        .iter()
        .map(|&c| {
            let p = ((c as f64 / threshold).sqrt() + 1.0) * (threshold / c as f64);
            (p.min(1.0) * (u32::MAX as f64)) as u32
        })
        .collect()
}

/// gensim's generator: a 48-bit linear congruential step, returning the upper bits.
#[inline]
fn random_int32(next_random: &mut u64) -> u64 {
    let this = *next_random >> 16;
    *next_random =
        (next_random.wrapping_mul(25_214_903_917).wrapping_add(11)) & 281_474_976_710_655;
    this
}

fn exp_table() -> Vec<f32> {
    (0..EXP_TABLE_SIZE)
        .map(|i| {
            let e = ((i as f32 / EXP_TABLE_SIZE as f32 * 2.0 - 1.0) * MAX_EXP).exp();
            e / (e + 1.0)
        })
        .collect()
}

/// A trained model: the token vectors (gensim's `syn0`) and the output weights of negative
/// sampling (`syn1neg`), one row per vocabulary row.
#[derive(Debug, Clone)]
pub struct Model {
    params: Params,
    vocab: Vocabulary,
    syn0: Vec<f32>,
    syn1neg: Vec<f32>,
    stats: TrainStats,
}

/// Figures of a training run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TrainStats {
    /// Corpus tokens with vectors times epochs.
    pub raw_words: u64,
    /// Of which trained on after down-sampling.
    pub effective_words: u64,
    /// Training time.
    pub seconds: f64,
}

impl TrainStats {
    /// Raw words per second, gensim's figure.
    pub fn words_per_second(&self) -> f64 {
        self.raw_words as f64 / self.seconds.max(1e-9)
    }
}

/// A parameter matrix shared by training threads without locks (Hogwild), soundly: each row
/// holds its f32 values as the bits of `AtomicU64` pairs (a row of odd width gets one zero pad
/// lane, which stays zero), and every access is a relaxed atomic load or store of one pair.
/// Threads may interleave their updates of a row, as in word2vec.c and gensim, which makes
/// multi-threaded results vary from run to run; but there is no data race, so no undefined
/// behaviour. A prediction loads the rows it needs into thread-local buffers, computes there
/// (vectorised), and stores the changed rows back. On x86-64 a relaxed load or store is a plain
/// `mov`, so the cost is only that the copies cannot be vectorised.
#[derive(Debug)]
struct SharedRows {
    words: Vec<AtomicU64>,
    /// `u64` words per row.
    stride: usize,
}

impl SharedRows {
    /// Rows of `size` values each, from a row-major matrix.
    fn new(values: &[f32], size: usize) -> Self {
        let stride = size.div_ceil(2);
        let mut words = Vec::with_capacity(values.len() / size.max(1) * stride);
        for row in values.chunks_exact(size) {
            let mut pairs = row.chunks(2);
            for _ in 0..stride {
                let pair = pairs.next().unwrap_or(&[]);
                let lo = pair.first().map_or(0, |v| v.to_bits());
                let hi = pair.get(1).map_or(0, |v| v.to_bits());
                words.push(AtomicU64::new(pack(lo, hi)));
            }
        }
        SharedRows { words, stride }
    }

    /// The row-major matrix of `size` values per row.
    fn into_values(self, size: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.words.len() / self.stride.max(1) * size);
        for row in self.words.chunks_exact(self.stride) {
            let mut vals = Vec::with_capacity(2 * self.stride);
            for w in row {
                let (lo, hi) = unpack(w.load(Relaxed));
                vals.push(f32::from_bits(lo));
                vals.push(f32::from_bits(hi));
            }
            out.extend_from_slice(&vals[..size]);
        }
        out
    }

    /// Row `r`. Panics (a bug, never bad input) when `r` is not a row.
    #[inline(always)]
    fn row(&self, r: u32) -> &[AtomicU64] {
        let start = r as usize * self.stride;
        &self.words[start..start + self.stride]
    }
}

#[inline(always)]
fn pack(lo: u32, hi: u32) -> u64 {
    u64::from(lo) | (u64::from(hi) << 32)
}

#[inline(always)]
fn unpack(w: u64) -> (u32, u32) {
    (w as u32, (w >> 32) as u32)
}

/// Copies a shared row into a local buffer of `2 * row.len()` values.
#[inline(always)]
fn load_row(row: &[AtomicU64], out: &mut [f32]) {
    for (o, w) in out.chunks_exact_mut(2).zip(row) {
        let (lo, hi) = unpack(w.load(Relaxed));
        o[0] = f32::from_bits(lo);
        o[1] = f32::from_bits(hi);
    }
}

/// Writes a local buffer of `2 * row.len()` values into a shared row.
#[inline(always)]
fn store_row(row: &[AtomicU64], values: &[f32]) {
    for (v, w) in values.chunks_exact(2).zip(row) {
        w.store(pack(v[0].to_bits(), v[1].to_bits()), Relaxed);
    }
}

#[inline(always)]
fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Asks the CPU to bring a row into cache (a hint: no memory access, no effect on results).
#[inline(always)]
fn prefetch_row(row: &[AtomicU64]) {
    #[cfg(target_arch = "x86_64")]
    for line in (0..row.len()).step_by(8) {
        // SAFETY: prefetching never faults and is not a memory access in Rust's model; the
        // address is inside the row.
        unsafe {
            std::arch::x86_64::_mm_prefetch(
                row.as_ptr().wrapping_add(line).cast::<i8>(),
                std::arch::x86_64::_MM_HINT_T0,
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Scratch of one job: the sentence's kept rows and their window reductions.
struct JobState {
    indexes: Vec<u32>,
    reduced: Vec<usize>,
}

/// Thread-local buffers of one prediction, each row `2 * stride` values (the pad lane is
/// zero).
struct Scratch {
    neu1: Vec<f32>,
    work: Vec<f32>,
    row: Vec<f32>,
    targets: Vec<(u32, f32)>,
    /// The context's distinct rows, in first-seen order, and their local copies.
    distinct: Vec<u32>,
    context_rows: Vec<f32>,
    /// For each context position, its row's index in `distinct`.
    slots: Vec<usize>,
}

impl Scratch {
    fn new(stride: usize, negative: usize) -> Self {
        Scratch {
            neu1: vec![0.0; 2 * stride],
            work: vec![0.0; 2 * stride],
            row: vec![0.0; 2 * stride],
            targets: Vec::with_capacity(negative + 1),
            distinct: Vec::new(),
            context_rows: Vec::new(),
            slots: Vec::new(),
        }
    }
}

/// The shared matrices of a run.
struct Weights {
    syn0: SharedRows,
    syn1neg: SharedRows,
}

/// The arguments of one CBOW prediction.
struct Prediction<'a> {
    noise: &'a NoiseSampler,
    exp: &'a [f32],
    negative: usize,
    cbow_mean: bool,
    context: &'a [u32],
    word: u32,
    alpha: f32,
}

/// One CBOW prediction with negative sampling, compiled for AVX2 where the CPU has it (the
/// vector kernels then run 8 lanes wide; the lane order, and so the result, is the same).
fn cbow_neg(w: &Weights, p: &Prediction<'_>, next_random: &mut u64, st: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, the only requirement of the function.
        return unsafe { cbow_neg_avx2(w, p, next_random, st) };
    }
    cbow_neg_body(w, p, next_random, st)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn cbow_neg_avx2(w: &Weights, p: &Prediction<'_>, next_random: &mut u64, st: &mut Scratch) {
    cbow_neg_body(w, p, next_random, st)
}

/// gensim's `fast_sentence_cbow_neg`, on local copies of the rows: every row is read whole,
/// updated locally and written back whole, in gensim's order, so one thread computes exactly
/// what an in-place update would. The context's rows are read once, when they are summed, and
/// written once at the end (a repeated context token adds the error to its copy once per
/// occurrence, as gensim adds it to the row); with several threads, an update another thread
/// makes to one of them meanwhile is overwritten, one of the races Hogwild accepts.
#[inline(always)]
fn cbow_neg_body(w: &Weights, p: &Prediction<'_>, next_random: &mut u64, st: &mut Scratch) {
    let &Prediction { noise, exp, negative, cbow_mean, context, word, alpha } = p;
    // Draw the targets first (the draws depend on the generator only, not on the updates), so
    // their output rows, scattered over a table far larger than the caches, are fetched in
    // parallel while the context is summed.
    let Scratch { neu1, work, row, targets, distinct, context_rows, slots } = st;
    targets.clear();
    let table_max = noise.max();
    for d in 0..=negative {
        let (target, label) = if d == 0 {
            (word, 1.0f32)
        } else {
            let draw = ((*next_random >> 16) % table_max) as u32;
            let t = noise.index(draw); // gensim's bisect_left
            *next_random =
                (next_random.wrapping_mul(25_214_903_917).wrapping_add(11)) & 281_474_976_710_655;
            if t == word {
                continue;
            }
            (t, 0.0)
        };
        targets.push((target, label));
        prefetch_row(w.syn1neg.row(target));
    }
    neu1.iter_mut().for_each(|v| *v = 0.0);
    work.iter_mut().for_each(|v| *v = 0.0);
    let width = neu1.len();
    distinct.clear();
    slots.clear();
    for &c in context {
        let slot = match distinct.iter().position(|&d| d == c) {
            Some(s) => s,
            None => {
                distinct.push(c);
                let s = distinct.len() - 1;
                if context_rows.len() < (s + 1) * width {
                    context_rows.resize((s + 1) * width, 0.0);
                }
                load_row(w.syn0.row(c), &mut context_rows[s * width..(s + 1) * width]);
                s
            }
        };
        slots.push(slot);
        axpy(1.0, &context_rows[slot * width..(slot + 1) * width], neu1);
    }
    let count = context.len() as f32;
    let inv_count = if count > 0.5 { 1.0 / count } else { 1.0 };
    if cbow_mean {
        neu1.iter_mut().for_each(|v| *v *= inv_count);
    }
    for &(target, label) in targets.iter() {
        let shared = w.syn1neg.row(target);
        load_row(shared, row);
        let f_dot = dot(neu1, row);
        if f_dot <= -MAX_EXP || f_dot >= MAX_EXP {
            continue;
        }
        // f32 rounding can land a dot just below MAX_EXP on index 1000: clamp to the table.
        let idx = ((f_dot + MAX_EXP) * (EXP_TABLE_SIZE as f32 / MAX_EXP / 2.0)) as usize;
        let f = exp[idx.min(EXP_TABLE_SIZE - 1)];
        let g = (label - f) * alpha;
        axpy(g, row, work);
        axpy(g, neu1, row);
        store_row(shared, row);
    }
    if !cbow_mean {
        work.iter_mut().for_each(|v| *v *= inv_count);
    }
    for &slot in slots.iter() {
        axpy(1.0, work, &mut context_rows[slot * width..(slot + 1) * width]);
    }
    for (s, &c) in distinct.iter().enumerate() {
        store_row(w.syn0.row(c), &context_rows[s * width..(s + 1) * width]);
    }
}

/// Trains CBOW on `corpus`.
pub fn train(corpus: &Corpus<'_>, params: &Params) -> Result<Model> {
    train_with_progress(corpus, params, &segue_core::NoProgress)
}

/// Trains CBOW on `corpus`, reporting words done (all epochs) to `progress`.
pub fn train_with_progress(
    corpus: &Corpus<'_>,
    params: &Params,
    progress: &dyn segue_core::Progress,
) -> Result<Model> {
    train_in_jobs(corpus, params, progress, BATCH_WORDS)
}

/// [`train_with_progress`] with jobs of up to `batch_words` words (tests use small jobs, so a
/// tiny corpus still gives threads several jobs to race on).
fn train_in_jobs(
    corpus: &Corpus<'_>,
    params: &Params,
    progress: &dyn segue_core::Progress,
    batch_words: usize,
) -> Result<Model> {
    params.validate()?;
    let vocab = Vocabulary::build(corpus, params.min_count);
    if vocab.is_empty() {
        return Err(Error::Config("word2vec: no token reaches min_count; nothing to train".into()));
    }
    let size = params.vector_size;
    let mut syn0 = vec![0f32; vocab.len() * size];
    syn0.par_chunks_mut(size).enumerate().for_each(|(r, row)| {
        let mut rng =
            ChaCha8::seed_from_u64(params.seed ^ (r as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        for v in row {
            *v = (rng.next_f32() - 0.5) / size as f32;
        }
    });
    let syn1neg = vec![0f32; vocab.len() * size];
    let noise = NoiseSampler::new(noise_table(&vocab.counts, params.ns_exponent));
    let sample_int = sample_ints(&vocab.counts, params.sample);
    let exp = exp_table();

    // Jobs of up to BATCH_WORDS words, as gensim batches sentences.
    let mut jobs: Vec<(usize, usize, u64)> = Vec::new(); // (first sentence, end, words before)
    let (mut start, mut words, mut before) = (0, 0usize, 0u64);
    for s in 0..corpus.len() {
        let n = corpus.sentence(s).len().min(MAX_SENTENCE_LEN);
        if words > 0 && words + n > batch_words {
            jobs.push((start, s, before));
            before += words as u64;
            start = s;
            words = 0;
        }
        words += n;
    }
    if start < corpus.len() {
        jobs.push((start, corpus.len(), before));
    }
    let epoch_words = (before + words as u64).max(1);
    let weights =
        Weights { syn0: SharedRows::new(&syn0, size), syn1neg: SharedRows::new(&syn1neg, size) };
    let stride = weights.syn0.stride;
    let started = Instant::now();
    let effective = std::sync::atomic::AtomicU64::new(0);
    let run_job = |epoch: usize, j: usize| {
        let (first, end, before) = jobs[j];
        let share_done = (epoch as f64 + before as f64 / epoch_words as f64) / params.epochs as f64;
        let alpha = (params.alpha - (params.alpha - params.min_alpha) * share_done)
            .max(params.min_alpha) as f32;
        let mut rng =
            ChaCha8::seed_from_u64(params.seed.wrapping_add(((epoch as u64) << 40) ^ j as u64));
        let mut next_random: u64 = rng.next_u64() & 281_474_976_710_655;
        let mut st = Scratch::new(stride, params.negative);
        let mut job = JobState { indexes: Vec::new(), reduced: Vec::new() };
        let mut eff = 0u64;
        for s in first..end {
            job.indexes.clear();
            for &t in corpus.sentence(s).iter().take(MAX_SENTENCE_LEN) {
                let r = vocab.rows[t as usize];
                if r == NO_ROW {
                    continue;
                }
                if params.sample > 0.0
                    && u64::from(sample_int[r as usize]) < random_int32(&mut next_random)
                {
                    continue;
                }
                job.indexes.push(r);
            }
            job.reduced.clear();
            for _ in 0..job.indexes.len() {
                let b = if params.shrink_windows {
                    (random_int32(&mut next_random) % params.window as u64) as usize
                } else {
                    0
                };
                job.reduced.push(b);
            }
            let n = job.indexes.len();
            eff += n as u64;
            let mut context = Vec::with_capacity(2 * params.window);
            for i in 0..n {
                let b = job.reduced[i];
                let lo = (i + b).saturating_sub(params.window);
                let hi = (i + params.window + 1 - b).min(n);
                context.clear();
                context.extend(
                    job.indexes[lo..hi]
                        .iter()
                        .enumerate()
                        .filter(|(m, _)| lo + m != i)
                        .map(|(_, &r)| r),
                );
                // The next prediction's window is known (its reduction is drawn): start
                // fetching the row that enters it.
                if i + 1 < n {
                    let b = job.reduced[i + 1];
                    let hi = (i + 1 + params.window + 1 - b).min(n);
                    prefetch_row(weights.syn0.row(job.indexes[hi - 1]));
                }
                let p = Prediction {
                    noise: &noise,
                    exp: &exp,
                    negative: params.negative,
                    cbow_mean: params.cbow_mean,
                    context: &context,
                    word: job.indexes[i],
                    alpha,
                };
                cbow_neg(&weights, &p, &mut next_random, &mut st);
            }
        }
        effective.fetch_add(eff, std::sync::atomic::Ordering::Relaxed);
        progress.advance(corpus.offsets[end] as u64 - corpus.offsets[first] as u64);
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(params.threads)
        .build()
        .map_err(|e| Error::backend("rayon", "the word2vec thread pool", e))?;
    progress.start(
        "word2vec (CBOW)",
        Some(corpus.flat.len() as u64 * params.epochs as u64),
        "words",
    );
    for epoch in 0..params.epochs {
        if params.threads == 1 {
            (0..jobs.len()).for_each(|j| run_job(epoch, j));
        } else {
            pool.install(|| (0..jobs.len()).into_par_iter().for_each(|j| run_job(epoch, j)));
        }
    }
    progress.finish();
    let syn0 = weights.syn0.into_values(size);
    let syn1neg = weights.syn1neg.into_values(size);
    let raw_words: u64 = vocab.counts.iter().sum::<u64>() * params.epochs as u64;
    let stats = TrainStats {
        raw_words,
        effective_words: effective.into_inner(),
        seconds: started.elapsed().as_secs_f64(),
    };
    Ok(Model { params: params.clone(), vocab, syn0, syn1neg, stats })
}

impl Model {
    /// The vector of a token, if it has one.
    pub fn vector(&self, token: u32) -> Option<&[f32]> {
        let r = self.vocab.row(token)?;
        let size = self.params.vector_size;
        Some(&self.syn0[r * size..(r + 1) * size])
    }

    /// The parameters it was trained with.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The tokens with vectors and their rows.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocab
    }

    /// Every token vector, row-major: row `r` (of [`Vocabulary::tokens`]) is
    /// `[r * vector_size, (r + 1) * vector_size)`.
    pub fn vectors(&self) -> &[f32] {
        &self.syn0
    }

    /// The output weights of negative sampling (gensim's `syn1neg`), rows as [`Model::vectors`].
    pub fn output_weights(&self) -> &[f32] {
        &self.syn1neg
    }

    /// Figures of the training run.
    pub fn stats(&self) -> &TrainStats {
        &self.stats
    }

    /// The `k` tokens nearest to `token` by cosine, best first (empty when it has no vector).
    pub fn most_similar(&self, token: u32, k: usize) -> Vec<(u32, f32)> {
        let Some(q) = self.vector(token) else { return Vec::new() };
        let norm = |v: &[f32]| dot(v, v).sqrt().max(f32::MIN_POSITIVE);
        let qn = norm(q);
        let size = self.params.vector_size;
        let mut scored: Vec<(u32, f32)> = self
            .syn0
            .par_chunks(size)
            .enumerate()
            .filter(|(r, _)| self.vocab.tokens[*r] != token)
            .map(|(r, v)| (self.vocab.tokens[r], dot(q, v) / (qn * norm(v))))
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }

    /// The vectors as an embedding table of `rows` tracks (token i = track i); tokens without a
    /// vector are masked. (Feature `tables`.)
    #[cfg(feature = "tables")]
    pub fn to_table(&self, rows: usize, vocab_hash: &str) -> Result<segue_core::EmbeddingTable> {
        use segue_core::{EmbeddingTable, TrackId};
        let mut table = EmbeddingTable::zeros(rows, self.params.vector_size, vocab_hash);
        for (r, &t) in self.vocab.tokens.iter().enumerate() {
            let size = self.params.vector_size;
            table.set_row(TrackId(t), &self.syn0[r * size..(r + 1) * size])?;
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests;
