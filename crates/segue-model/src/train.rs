//! Training (epochs of Adam steps, early stopping on validation HitRatio@10 keeping the best
//! weights, a checkpoint after every epoch, resume, a `train.jsonl` log) and full-ranking
//! evaluation.
//!
//! Every epoch draws its shuffle, dropout and samples from a generator seeded by the run's
//! seed and the epoch number, so a run resumed from a checkpoint continues exactly as the
//! uninterrupted run would have.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use safetensors::{Dtype, SafeTensors};
use segue_core::{Error, Progress, Result};
use segue_eval::{Query, Report};
use serde::{Deserialize, Serialize};

use crate::data::{Batch, Example, Sessions};
use crate::{
    Adam, AdamConfig, Fusion, Gru4Rec, Hidden, ModelParams, Sampler, SasRec, Softmax, err,
};

/// A trainable model.
#[derive(Debug)]
pub enum Network {
    /// The fused attentive BiGRU (ANN family).
    Fusion(Fusion),
    /// GRU4Rec.
    Gru4Rec(Gru4Rec),
    /// SASRec.
    SasRec(SasRec),
}

impl Network {
    /// Named parameters.
    pub fn vars(&self) -> &[(String, Var)] {
        match self {
            Network::Fusion(m) => m.vars(),
            Network::Gru4Rec(m) => m.vars(),
            Network::SasRec(m) => m.vars(),
        }
    }

    /// The catalogue size it scores.
    pub fn tracks(&self) -> usize {
        match self {
            Network::Fusion(m) => m.config.tracks,
            Network::Gru4Rec(m) => m.config.tracks,
            Network::SasRec(m) => m.config.tracks,
        }
    }

    /// Scores of every track for each row of `batch` (`B x tracks`).
    pub fn scores(&self, batch: &crate::Batch) -> Result<Tensor> {
        self.hidden(batch)?.scores_tensor(0..self.tracks())
    }

    /// The batch's state from which any block of tracks is scored ([`Hidden::scores`]).
    pub fn hidden(&self, batch: &crate::Batch) -> Result<Hidden> {
        match self {
            Network::Fusion(m) => m.hidden(batch),
            Network::Gru4Rec(m) => m.hidden(batch),
            Network::SasRec(m) => m.hidden(batch),
        }
    }

    /// Writes the parameters (safetensors, names as [`Network::vars`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: Vec<(String, Tensor)> =
            self.vars().iter().map(|(n, v)| (n.clone(), v.as_tensor().clone())).collect();
        save_tensors(path, &tensors, &[])
    }

    /// Reads parameters written by [`Network::save`]; names and shapes must match.
    pub fn load(&self, path: &Path) -> Result<()> {
        let saved = load_tensors(path)?;
        for (name, v) in self.vars() {
            let t = saved
                .get(name)
                .ok_or_else(|| Error::artifact(path, format!("no parameter `{name}`")))?;
            if t.dims() != v.dims() {
                return Err(Error::artifact(
                    path,
                    format!("parameter `{name}` is {:?}, the model has {:?}", t.dims(), v.dims()),
                ));
            }
            v.set(t).map_err(err)?;
        }
        Ok(())
    }
}

/// A tensor's values as safetensors writes them: its little-endian bytes are made one tensor
/// at a time, as the file is written, so saving a model of several GB (Adam's moments beside
/// it) needs no copy of the whole.
struct F32View<'a> {
    shape: Vec<usize>,
    values: &'a [f32],
}

impl safetensors::View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Owned(self.values.iter().flat_map(|v| v.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.values.len() * 4
    }
}

/// Writes `tensors` (contiguous f32 on the CPU) and `slices` (name, shape, values) to a
/// safetensors file, atomically (safetensors writes a temporary sibling and renames it).
fn save_tensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    slices: &[(String, Vec<usize>, &[f32])],
) -> Result<()> {
    let guards: Vec<_> = tensors.iter().map(|(_, t)| t.storage_and_layout()).collect();
    let mut views: Vec<(&str, F32View)> = Vec::with_capacity(tensors.len() + slices.len());
    for ((name, t), (storage, layout)) in tensors.iter().zip(&guards) {
        let values = crate::fusion::cpu_f32(storage, layout).map_err(err)?;
        views.push((name, F32View { shape: t.dims().to_vec(), values }));
    }
    for (name, shape, values) in slices {
        views.push((name, F32View { shape: shape.clone(), values }));
    }
    safetensors::serialize_to_file(views, None, path)
        .map_err(|e| Error::backend("safetensors", &format!("writing {}", path.display()), e))
}

fn load_tensors(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bytes = segue_core::fs::read(path)?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::artifact(path, format!("not safetensors: {e}")))?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::artifact(path, format!("`{name}` is {:?}, not F32", view.dtype())));
        }
        let values: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let t = Tensor::from_vec(values, view.shape(), &Device::Cpu).map_err(err)?;
        out.insert(name, t);
    }
    Ok(out)
}

/// How to train.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Sizes, epochs, batch, learning rate, patience, seed.
    pub params: ModelParams,
    /// Training plays per track, for sampled losses (GRU4Rec's negatives, a sampled softmax).
    pub train_counts: Vec<u32>,
    /// Where `checkpoint.safetensors`, `checkpoint.json` and `train.jsonl` go (none: nowhere).
    pub dir: Option<PathBuf>,
    /// Continue from the checkpoint in `dir` when there is one.
    pub resume: bool,
}

/// One epoch's line of `train.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Epoch {
    /// 1-based.
    pub epoch: usize,
    /// Mean training loss.
    pub loss: f64,
    /// Training examples seen.
    pub examples: usize,
    /// Training time of the epoch (validation excluded).
    pub seconds: f64,
    /// Training throughput.
    pub examples_per_second: f64,
    /// HitRatio@10 on the validation sessions, if there are any.
    pub valid_hr10: Option<f64>,
}

/// What training did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trained {
    /// Every epoch, in order (those before a resume included).
    pub history: Vec<Epoch>,
    /// The epoch whose weights the model holds (1-based).
    pub best_epoch: usize,
    /// Whether patience ran out before the last epoch.
    pub stopped_early: bool,
    /// The epoch a resumed run started after, if it resumed.
    pub resumed_after: Option<usize>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointMeta {
    epochs_done: usize,
    adam_step: u64,
    history: Vec<Epoch>,
    best_epoch: usize,
    best_hr10: Option<f64>,
    seed: u64,
}

/// The epochs an interrupted training in `dir` (its [`TrainOptions::dir`]) has checkpointed, if
/// it left a readable checkpoint: a rerun resumes after them.
pub fn checkpoint_epochs(dir: &Path) -> Option<usize> {
    if !dir.join("checkpoint.safetensors").exists() {
        return None;
    }
    let bytes = std::fs::read(dir.join("checkpoint.json")).ok()?;
    serde_json::from_slice::<CheckpointMeta>(&bytes).ok().map(|m| m.epochs_done)
}

fn epoch_rng(seed: u64, epoch: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64 + 1);
    rng
}

/// A NaN or infinite loss stops training with an error naming where.
fn check_loss(value: f32, epoch: usize, step: usize) -> Result<()> {
    if value.is_finite() {
        return Ok(());
    }
    Err(Error::Diverged {
        what: "the model".into(),
        loss: f64::from(value),
        epoch: epoch + 1,
        step: Some(step + 1),
        lower: "model.lr".into(),
    })
}

/// Trains `net` on `train`, validating on `valid` after every epoch when it has examples.
pub fn train(
    net: &Network,
    train: &Sessions,
    valid: Option<&Sessions>,
    opts: &TrainOptions,
    progress: &dyn Progress,
) -> Result<Trained> {
    let p = &opts.params;
    p.validate()?;
    let vars: Vec<Var> = net.vars().iter().map(|(_, v)| v.clone()).collect();
    // SASRec keeps its own rate and batch (RecBole's setting), GRU4Rec its own batch where set,
    // the others the model's.
    let (lr, batch_size) = match net {
        Network::SasRec(m) => (m.config.params.lr, m.config.params.batch_size),
        Network::Gru4Rec(_) => (p.lr, p.gru4rec_batch_size.unwrap_or(p.batch_size)),
        _ => (p.lr, p.batch_size),
    };
    if p.max_steps > 0 && matches!(net, Network::Gru4Rec(_)) {
        return Err(Error::Config(
            "model.max_steps caps the fused model and SASRec; GRU4Rec trains whole epochs (set model.max_steps = 0 or model.epochs)".into(),
        ));
    }
    let lazy = p.lazy_adam;
    let mut adam = Adam::new(vars.clone(), AdamConfig { lr, lazy, ..AdamConfig::default() });
    let examples = train.examples();
    if examples.is_empty() {
        return Err(Error::no_data("no training examples (no training session has 2 tracks)"));
    }
    let valid = valid.filter(|v| !v.examples().is_empty());
    let sampler = Sampler::from_counts(&opts.train_counts, 0.75)?;
    let softmax = match p.sampled_negatives {
        0 => Softmax::Full,
        n => Softmax::Sampled { negatives: n, sampler: sampler.clone() },
    };
    let ckpt = opts.dir.as_ref().map(|d| Checkpoint {
        tensors: d.join("checkpoint.safetensors"),
        meta: d.join("checkpoint.json"),
    });
    let mut state = match &ckpt {
        Some(c) if opts.resume && c.tensors.exists() && c.meta.exists() => {
            let state = c.load(net, &mut adam, p.seed)?;
            progress.note(&format!(
                "resuming after epoch {} from {}",
                state.start,
                c.tensors.display()
            ));
            state
        }
        _ => RunState::default(),
    };
    let resumed_after = (state.start > 0).then_some(state.start);
    let mut stopped_early = false;
    if let Some(dir) = &opts.dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // The log holds the epochs the weights have seen: rewrite it from the history.
        let mut text = String::new();
        for e in &state.history {
            text.push_str(
                &serde_json::to_string(e)
                    .map_err(|e| Error::backend("serde_json", "train.jsonl", e))?,
            );
            text.push('\n');
        }
        segue_core::fs::write_bytes_atomic(&dir.join("train.jsonl"), text.as_bytes())?;
    }
    for epoch in state.start..p.epochs {
        if p.patience > 0 && state.best.1.is_some() && epoch >= state.best.0 + p.patience {
            stopped_early = true;
            break;
        }
        if p.max_steps > 0 && epoch * examples.len().div_ceil(batch_size) >= p.max_steps {
            break;
        }
        let mut rng = epoch_rng(p.seed, epoch);
        let started = Instant::now();
        progress.start(
            &format!("epoch {}/{}", epoch + 1, p.epochs),
            Some(examples.len() as u64),
            "examples",
        );
        let pass = EpochPass { train, examples: &examples, p, batch_size, epoch };
        let (total, seen) = pass.run(net, &softmax, &sampler, &mut adam, &mut rng, progress)?;
        progress.finish();
        let seconds = started.elapsed().as_secs_f64();
        let valid_hr10 = match valid {
            Some(v) => {
                let report = evaluate(net, v, &[], p.max_input_len, &[10], 256)?;
                Some(report.all.hit[0])
            }
            None => None,
        };
        let record = Epoch {
            epoch: epoch + 1,
            loss: total / seen.max(1) as f64,
            examples: seen,
            seconds,
            examples_per_second: seen as f64 / seconds.max(1e-9),
            valid_hr10,
        };
        progress.note(&format!(
            "epoch {}: loss {:.4}, {:.0} examples/s{}",
            record.epoch,
            record.loss,
            record.examples_per_second,
            valid_hr10.map_or(String::new(), |h| format!(", validation HR@10 {:.2}%", 100.0 * h))
        ));
        if let Some(h) = valid_hr10
            && state.best.1.is_none_or(|b| h > b)
        {
            state.best = (epoch + 1, Some(h));
            state.best_weights = Some(
                net.vars()
                    .iter()
                    .map(|(_, v)| v.as_tensor().copy())
                    .collect::<candle_core::Result<_>>()
                    .map_err(err)?,
            );
        } else if valid_hr10.is_none() {
            state.best = (epoch + 1, None);
        }
        state.history.push(record);
        if let (Some(dir), Some(c)) = (&opts.dir, &ckpt) {
            append_epoch_log(dir, state.history.last().expect("pushed"))?;
            c.save(net, &adam, &state, epoch + 1, p.seed)?;
        }
    }
    if let Some(bw) = &state.best_weights {
        for ((_, v), t) in net.vars().iter().zip(bw) {
            v.set(t).map_err(err)?;
        }
    }
    let RunState { best, history, .. } = state;
    Ok(Trained { best_epoch: best.0, history, stopped_early, resumed_after })
}

/// Where a run's state is: what resuming reads and every epoch rewrites.
#[derive(Default)]
struct RunState {
    /// The first epoch to run (0-based).
    start: usize,
    history: Vec<Epoch>,
    /// The best epoch (1-based) and its validation HR@10.
    best: (usize, Option<f64>),
    best_weights: Option<Vec<Tensor>>,
}

/// A run's checkpoint files: every parameter with its Adam moments (and the best weights so
/// far), and a JSON record of the run.
struct Checkpoint {
    tensors: PathBuf,
    meta: PathBuf,
}

impl Checkpoint {
    /// Sets the parameters and Adam's moments from the checkpoint; the run's state to go on.
    fn load(&self, net: &Network, adam: &mut Adam, seed: u64) -> Result<RunState> {
        let (tensors, meta) = (&self.tensors, &self.meta);
        let m: CheckpointMeta = serde_json::from_slice(&segue_core::fs::read(meta)?)
            .map_err(|e| Error::artifact(meta, format!("bad checkpoint record: {e}")))?;
        if m.seed != seed {
            return Err(Error::artifact(
                meta,
                format!("checkpoint of seed {}, this run has seed {}", m.seed, seed),
            ));
        }
        let saved = load_tensors(tensors)?;
        let take = |key: String| -> Result<Tensor> {
            saved
                .get(&key)
                .cloned()
                .ok_or_else(|| Error::artifact(tensors, format!("no tensor `{key}`")))
        };
        for ((name, v), (mm, vv)) in net.vars().iter().zip(adam.moments.iter_mut()) {
            v.set(&take(format!("param/{name}"))?).map_err(err)?;
            *mm = take(format!("adam_m/{name}"))?
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(err)?;
            *vv = take(format!("adam_v/{name}"))?
                .flatten_all()
                .and_then(|t| t.to_vec1())
                .map_err(err)?;
        }
        let best_weights = match m.best_hr10 {
            Some(_) => Some(
                net.vars()
                    .iter()
                    .map(|(name, _)| take(format!("best/{name}")))
                    .collect::<Result<_>>()?,
            ),
            None => None,
        };
        adam.step = m.adam_step;
        Ok(RunState {
            start: m.epochs_done,
            history: m.history,
            best: (m.best_epoch, m.best_hr10),
            best_weights,
        })
    }

    /// Writes the parameters, Adam's moments, the best weights and the run's record after
    /// `epochs_done` epochs.
    fn save(
        &self,
        net: &Network,
        adam: &Adam,
        state: &RunState,
        epochs_done: usize,
        seed: u64,
    ) -> Result<()> {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        let mut moments: Vec<(String, Vec<usize>, &[f32])> = Vec::new();
        for ((name, v), (mm, vv)) in net.vars().iter().zip(&adam.moments) {
            tensors.push((format!("param/{name}"), v.as_tensor().clone()));
            moments.push((format!("adam_m/{name}"), v.dims().to_vec(), mm));
            moments.push((format!("adam_v/{name}"), v.dims().to_vec(), vv));
        }
        if let Some(bw) = &state.best_weights {
            for ((name, _), t) in net.vars().iter().zip(bw) {
                tensors.push((format!("best/{name}"), t.contiguous().map_err(err)?));
            }
        }
        save_tensors(&self.tensors, &tensors, &moments)?;
        let m = CheckpointMeta {
            epochs_done,
            adam_step: adam.step,
            history: state.history.clone(),
            best_epoch: state.best.0,
            best_hr10: state.best.1,
            seed,
        };
        segue_core::fs::write_bytes_atomic(
            &self.meta,
            &serde_json::to_vec_pretty(&m)
                .map_err(|e| Error::backend("serde_json", "the checkpoint's metadata", e))?,
        )
    }
}

/// Appends one epoch's record to `train.jsonl`.
fn append_epoch_log(dir: &Path, record: &Epoch) -> Result<()> {
    let mut line = serde_json::to_string(record)
        .map_err(|e| Error::backend("serde_json", "train.jsonl", e))?;
    line.push('\n');
    let log = dir.join("train.jsonl");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(|e| Error::io(&log, e))
}

/// One pass over the training examples.
struct EpochPass<'a> {
    train: &'a Sessions<'a>,
    examples: &'a [Example],
    p: &'a ModelParams,
    batch_size: usize,
    epoch: usize,
}

impl EpochPass<'_> {
    /// Trains one epoch; the summed loss (times batch sizes) and the number of examples.
    fn run(
        &self,
        net: &Network,
        softmax: &Softmax,
        sampler: &Sampler,
        adam: &mut Adam,
        rng: &mut ChaCha8Rng,
        progress: &dyn Progress,
    ) -> Result<(f64, usize)> {
        let &EpochPass { train, examples, p, batch_size, epoch } = self;
        // The steps left under `max_steps` (all of the epoch without a cap).
        let per_epoch = examples.len().div_ceil(batch_size);
        let steps = match p.max_steps {
            0 => per_epoch,
            cap => cap.saturating_sub(epoch * per_epoch).min(per_epoch),
        };
        Ok(match net {
            Network::Fusion(m) => {
                let mut order = examples.to_vec();
                order.shuffle(rng);
                let (mut total, mut seen) = (0.0, 0);
                for (i, chunk) in order.chunks(batch_size).take(steps).enumerate() {
                    let batch = train.batch(chunk, p.max_input_len);
                    let loss = m.step(&batch, softmax, rng, adam)?;
                    check_loss(loss, epoch, i)?;
                    progress.advance(chunk.len() as u64);
                    total += loss as f64 * chunk.len() as f64;
                    seen += chunk.len();
                }
                (total, seen)
            }
            Network::SasRec(m) => {
                let mut order = examples.to_vec();
                order.shuffle(rng);
                let (mut total, mut seen) = (0.0, 0);
                let mut scratch = crate::sasrec::SasRecScratch::default();
                for (i, chunk) in order.chunks(batch_size).take(steps).enumerate() {
                    let batch = train.batch(chunk, p.max_input_len);
                    let value = m.step(&batch, rng, adam, &mut scratch)?;
                    check_loss(value, epoch, i)?;
                    progress.advance(chunk.len() as u64);
                    total += value as f64 * chunk.len() as f64;
                    seen += chunk.len();
                }
                (total, seen)
            }
            Network::Gru4Rec(m) => {
                let mut i = 0;
                let mut scratch = crate::gru4rec::Gru4RecScratch::default();
                m.epoch(train, batch_size, sampler, rng, |loss, n, grads| {
                    check_loss(loss, epoch, i)?;
                    i += 1;
                    m.apply(adam, &grads, &mut scratch)?;
                    progress.advance(n as u64);
                    Ok(())
                })?
            }
        })
    }
}

/// Ranks the whole catalogue for every example of `sessions` and reports HitRatio, MRR and
/// NDCG at `ks` with their breakdowns. `seen_in_train[i]` says whether track `i` occurs in
/// training (an empty slice: unknown, counted as seen).
pub fn evaluate(
    net: &Network,
    sessions: &Sessions,
    seen_in_train: &[bool],
    max_len: usize,
    ks: &[usize],
    batch: usize,
) -> Result<Report> {
    Ok(evaluate_ranked(net, sessions, seen_in_train, max_len, ks, batch)?.0)
}

/// The most tracks scored at once per prediction in evaluation: a catalogue up to this size is
/// ranked from whole rows, a larger one a block at a time (ranks exact up to the deepest
/// cut-off, lower bounds past it: [`segue_eval::evaluate_blocked`]), so memory stays at
/// `batch x EVAL_BLOCK` scores however large the catalogue.
pub const EVAL_BLOCK: usize = 65_536;

/// [`evaluate`], also returning the rank of every prediction, in example order.
pub fn evaluate_ranked(
    net: &Network,
    sessions: &Sessions,
    seen_in_train: &[bool],
    max_len: usize,
    ks: &[usize],
    batch: usize,
) -> Result<(Report, Vec<usize>)> {
    evaluate_in_blocks(net, sessions, seen_in_train, max_len, ks, batch, EVAL_BLOCK)
}

/// [`evaluate_ranked`] scoring `block` tracks at a time.
pub fn evaluate_in_blocks(
    net: &Network,
    sessions: &Sessions,
    seen_in_train: &[bool],
    max_len: usize,
    ks: &[usize],
    batch: usize,
    block: usize,
) -> Result<(Report, Vec<usize>)> {
    let (examples, queries) = queries(sessions, seen_in_train);
    let eval = segue_eval::Evaluator::with_groups(ks, net.tracks(), &BREAKDOWNS)?;
    segue_eval::evaluate_blocked(
        eval,
        &queries,
        batch,
        block,
        |start, qs| net.hidden(&sessions.batch(&examples[start..start + qs.len()], max_len)),
        |hidden, _, items| hidden.scores(items),
    )
}

/// The groups every evaluation here breaks its predictions down by, in [`Report::groups`]:
/// targets seen in training or never seen there (cold tracks), and targets that already occurred
/// earlier in the session (repeats) or are new to it.
pub const BREAKDOWNS: [&str; 4] = ["seen", "unseen", "repeat", "new"];

/// Every example of `sessions` and its query, in [`BREAKDOWNS`]' groups.
fn queries(sessions: &Sessions, seen_in_train: &[bool]) -> (Vec<Example>, Vec<Query>) {
    let examples: Vec<Example> = sessions.examples();
    let queries: Vec<Query> = examples
        .iter()
        .map(|e| {
            let target = sessions.target(e);
            let before = &sessions.flat[e.start..e.start + e.t as usize];
            let seen = seen_in_train.get(target as usize).copied().unwrap_or(true);
            Query::new(e.user, target)
                .in_group(if seen { 0 } else { 1 })
                .in_group(if before.contains(&target) { 2 } else { 3 })
        })
        .collect();
    (examples, queries)
}

/// Full-ranking evaluation of any scorer over every example of `sessions`, as [`evaluate`]:
/// `score` gets a batch of inputs (the previous `max_len` tracks of each example, targets set)
/// and returns a row-major `batch x items` block. Returns the report and every prediction's
/// rank, in example order.
pub fn evaluate_scorer<F>(
    sessions: &Sessions,
    seen_in_train: &[bool],
    max_len: usize,
    ks: &[usize],
    batch: usize,
    items: usize,
    score: F,
) -> Result<(Report, Vec<usize>)>
where
    F: Fn(&Batch) -> Result<Vec<f32>> + Sync,
{
    let (examples, queries) = queries(sessions, seen_in_train);
    let eval = segue_eval::Evaluator::with_groups(ks, items, &BREAKDOWNS)?;
    segue_eval::evaluate_ranked(eval, &queries, batch, |start, qs| {
        score(&sessions.batch(&examples[start..start + qs.len()], max_len))
    })
}
