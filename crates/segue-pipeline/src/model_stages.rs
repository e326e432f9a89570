//! The `train-<variant>` and `evaluate-<variant>` stages.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use segue_core::EmbeddingTable;
use segue_model::{
    E1Start, Modality, Network, Pretrained, PretrainedRows, Sessions, TrainOptions, Variant,
};
use segue_sessions::{Split, SplitCorpus, TrackCounts};

use crate::pipeline::Pipeline;
use crate::stages::files;
use segue_core::Progress;

/// Bumped when training or evaluation changes its output for the same inputs (train v5: each
/// seed's run now trains with its own seed; v4 trained every seed with `model.seed`).
pub const TRAIN_VERSION: u32 = 5;
/// See [`TRAIN_VERSION`].
pub const EVALUATE_VERSION: u32 = 2;

/// The variant of a `train-*` or `evaluate-*` stage.
pub fn variant_of(stage: &str) -> Option<(bool, Variant)> {
    let (train, id) = match stage.split_once('-')? {
        ("train", id) => (true, id),
        ("evaluate", id) => (false, id),
        _ => return None,
    };
    Variant::from_id(id).ok().map(|v| (train, v))
}

/// The stage that makes a modality's table.
pub fn modality_stage(m: Modality) -> &'static str {
    m.name()
}

/// The upstream stages of a variant's training.
pub fn train_upstream(v: Variant) -> &'static [&'static str] {
    match v {
        Variant::Gru4Rec | Variant::Ann | Variant::SasRec => &["sessionize"],
        Variant::AnnLsa => &["sessionize", "lsa"],
        Variant::Annw => &["sessionize", "word2vec"],
        Variant::AnnwAcoustic => &["sessionize", "word2vec", "acoustic"],
        Variant::AnnwLyrics => &["sessionize", "word2vec", "lyrics"],
        Variant::AnnwAcousticLyrics => &["sessionize", "word2vec", "acoustic", "lyrics"],
        Variant::AnnwAcousticLyricsTags => {
            &["sessionize", "word2vec", "acoustic", "lyrics", "tags"]
        }
    }
}

/// The upstream stages of a variant's evaluation: its training and what built the model.
pub fn evaluate_upstream(v: Variant) -> &'static [&'static str] {
    match v {
        Variant::Gru4Rec => &["sessionize", "train-gru4rec"],
        Variant::SasRec => &["sessionize", "train-sasrec"],
        Variant::Ann => &["sessionize", "train-ann"],
        Variant::AnnLsa => &["sessionize", "lsa", "train-ann-lsa"],
        Variant::Annw => &["sessionize", "word2vec", "train-annw"],
        Variant::AnnwAcoustic => &["sessionize", "word2vec", "acoustic", "train-annw-acoustic"],
        Variant::AnnwLyrics => &["sessionize", "word2vec", "lyrics", "train-annw-lyrics"],
        Variant::AnnwAcousticLyrics => {
            &["sessionize", "word2vec", "acoustic", "lyrics", "train-annw-acoustic-lyrics"]
        }
        Variant::AnnwAcousticLyricsTags => &[
            "sessionize",
            "word2vec",
            "acoustic",
            "lyrics",
            "tags",
            "train-annw-acoustic-lyrics-tags",
        ],
    }
}

/// Why a variant cannot run on this dataset, if it cannot: a modality it needs is absent
/// (no training track has it, so there is nothing to learn from it).
pub fn not_applicable(
    v: Variant,
    dir_of: &dyn Fn(&str) -> Result<PathBuf>,
) -> Result<Option<String>> {
    for &m in v.modalities() {
        let stage = modality_stage(m);
        if !crate::stages::STAGES.contains(&stage) {
            return Ok(Some(format!("segue has no `{stage}` stage yet")));
        }
        // Only the coverage is read; a report without it is an error, not "applicable".
        #[derive(serde::Deserialize)]
        struct ContentReport {
            coverage: crate::stages::Coverage,
        }
        let file = dir_of(stage)?.join(crate::stages::content_report_file(stage));
        let report: ContentReport = serde_json::from_slice(
            &std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
        )
        .with_context(|| format!("reading the coverage in {}", file.display()))?;
        if report.coverage.training_tracks_with == 0 {
            return Ok(Some(format!("no training track has {stage} data in this dataset")));
        }
    }
    Ok(None)
}

/// What a variant's model is built from.
#[derive(Debug)]
pub struct Inputs {
    pub tracks: usize,
    pub counts: TrackCounts,
    pub train: SplitCorpus,
    pub valid: SplitCorpus,
    pub test: SplitCorpus,
}

/// A split's sessions as the models and rules read them: targets from the pipeline's
/// `sessionize.min_input_len` on.
pub fn sessions<'a>(p: &Pipeline, c: &'a SplitCorpus) -> Result<Sessions<'a>> {
    Ok(Sessions::new(&c.flat, &c.offsets, &c.users)?.with_min_input(p.sessionize.min_input_len))
}

/// [`sessions`] of a split that is evaluated: at most `model.eval_predictions` of its
/// predictions, the same sample for every seed and method.
pub fn eval_sessions<'a>(p: &Pipeline, c: &'a SplitCorpus) -> Result<Sessions<'a>> {
    Ok(sessions(p, c)?.with_max_examples(p.model.eval_predictions, p.pipeline.seed))
}

impl Inputs {
    pub fn read(sessions_dir: &Path) -> Result<Inputs> {
        let counts = TrackCounts::read(&sessions_dir.join(crate::files::TRACKS))?;
        let file = sessions_dir.join(crate::files::SESSIONS);
        Ok(Inputs {
            tracks: counts.total.len(),
            train: segue_sessions::read_split(&file, Split::Train)?,
            valid: segue_sessions::read_split(&file, Split::Valid)?,
            test: segue_sessions::read_split(&file, Split::Test)?,
            counts,
        })
    }
}

fn table(path: &Path, tracks: usize) -> Result<EmbeddingTable> {
    let t = EmbeddingTable::load(path)?;
    if t.rows() != tracks {
        bail!("{} has {} rows; the vocabulary has {tracks} tracks", path.display(), t.rows());
    }
    Ok(t)
}

fn pretrained_rows<'a>(t: &'a EmbeddingTable, present: &'a [bool]) -> PretrainedRows<'a> {
    PretrainedRows { rows: t.as_slice(), dim: t.dim(), present }
}

/// Builds a variant's network ([`Variant::build`]) from its stages' tables: `E1` from Word2Vec
/// or LSA where the variant says so, kept for training tracks that have a vector (every track
/// with a vector under `embeddings.sessions = "all"`), content tables from their stages.
pub fn network(
    p: &Pipeline,
    v: Variant,
    inputs: &Inputs,
    dir_of: &dyn Fn(&str) -> Result<PathBuf>,
) -> Result<Network> {
    let present = |t: &EmbeddingTable| -> Vec<bool> {
        (0..inputs.tracks).map(|i| t.is_present(segue_core::TrackId(i as u32))).collect()
    };
    let e1_table = match v.e1() {
        E1Start::Random => None,
        E1Start::Lsa => Some(table(&dir_of("lsa")?.join(files::LSA_TABLE), inputs.tracks)?),
        E1Start::Word2Vec => {
            Some(table(&dir_of("word2vec")?.join(files::WORD2VEC_TABLE), inputs.tracks)?)
        }
    };
    // Leak-free, only training tracks keep their vectors; with `embeddings.sessions = "all"`
    // (the authors' code) test-only tracks have them too, and keep them.
    let all = p.embeddings.sessions == crate::pipeline::EmbeddingSessions::All;
    let e1_present: Vec<bool> = match &e1_table {
        Some(t) => present(t)
            .into_iter()
            .enumerate()
            .map(|(i, has)| has && (all || inputs.counts.seen_in_train(i)))
            .collect(),
        None => Vec::new(),
    };
    let mut content_tables = Vec::new();
    for &modality in v.modalities() {
        let stage = modality_stage(modality);
        content_tables
            .push(table(&dir_of(stage)?.join(format!("{stage}.safetensors")), inputs.tracks)?);
    }
    let content_present: Vec<Vec<bool>> = content_tables.iter().map(present).collect();
    let pretrained = Pretrained {
        e1: e1_table.as_ref().map(|t| pretrained_rows(t, &e1_present)),
        content: content_tables
            .iter()
            .zip(&content_present)
            .map(|(t, p)| pretrained_rows(t, p))
            .collect(),
    };
    v.build(&p.model, inputs.tracks, &pretrained)
        .with_context(|| format!("building {} from its stages' tables", v.paper_name()))
}

/// The report of a `train-<variant>` stage.
pub const TRAIN_REPORT: &str = "train_report.json";

/// What a `train-<variant>` stage did ([`TRAIN_REPORT`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainReport {
    /// The variant's id.
    pub variant: String,
    /// Its name in the paper's tables.
    pub name: String,
    /// Training examples per epoch.
    pub examples: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// Epochs run (early stopping may end before `model.epochs`).
    pub epochs_run: usize,
    /// The epoch whose weights were kept (1-based).
    pub best_epoch: usize,
    /// Whether patience ran out.
    pub stopped_early: bool,
    /// The epoch a resumed run started after.
    pub resumed_after: Option<usize>,
    /// The last epoch's mean loss.
    pub final_loss: f64,
    /// Mean training throughput over the epochs.
    pub examples_per_second: f64,
    /// Every epoch.
    pub history: Vec<segue_model::Epoch>,
    /// The model settings it trained with.
    pub params: segue_model::ModelParams,
    /// Whether the epochs came from the first seed's early stopping (`model.refit`, a later
    /// seed): then no training here chose them, `history` is empty and `best_epoch` is the
    /// first seed's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub epochs_from_first_seed: bool,
    /// The training again on the training and validation sessions (`model.refit`) whose
    /// weights the model holds; `history` and `best_epoch` are then the run that chose its
    /// number of epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refit: Option<Refit>,
}

/// The second training of `model.refit`: from scratch, on the training sessions and the
/// validation share together, for the epochs the first one chose.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Refit {
    /// Training examples per epoch (the validation share's included).
    pub examples: usize,
    /// Epochs run: the first training's best epoch.
    pub epochs: usize,
    /// Its last epoch's mean loss.
    pub final_loss: f64,
    /// Every epoch (no validation HR@10: the validation share is trained on).
    pub history: Vec<segue_model::Epoch>,
}

/// The upstream name, in a later seed's training recipe, of the first seed's training whose
/// early stopping chose the epochs (`model.refit`).
pub const EPOCHS_FROM: &str = "epochs from the first seed";

/// What a `train-<variant>` stage instance trains.
#[derive(Debug, Clone, Copy)]
pub struct Training<'a> {
    /// The variant.
    pub variant: Variant,
    /// With `model.refit`, for every seed after the first: the first seed's training folder.
    /// Its early stopping chose the epochs; this seed only trains on the training and
    /// validation sessions for that many (the epochs are a setting chosen on validation once,
    /// like the others; the seeds then differ in initialisation and shuffling only).
    pub epochs_from: Option<&'a Path>,
}

/// Trains a variant into `dir` (model.safetensors, train.jsonl, train_report.json). Checkpoints
/// go to `partial`, so an interrupted run resumes where it stopped.
pub fn run_train(
    p: &Pipeline,
    training: Training<'_>,
    dir_of: &dyn Fn(&str) -> Result<PathBuf>,
    dir: &Path,
    partial: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let v = training.variant;
    if let Some(why) = not_applicable(v, dir_of)? {
        bail!("{} is not applicable: {why}", v.paper_name());
    }
    let inputs = Inputs::read(&dir_of("sessionize")?)?;
    let net = network(p, v, &inputs, dir_of)?;
    let train = sessions(p, &inputs.train)?;
    let valid = eval_sessions(p, &inputs.valid)?;
    let opts = TrainOptions {
        params: p.model.clone(),
        train_counts: inputs.counts.train.clone(),
        dir: Some(partial.to_path_buf()),
        resume: true,
    };
    let examples = train.examples().len();
    let parameters: usize = net.vars().iter().map(|(_, v)| v.elem_count()).sum();
    log.note(&format!(
        "{:>31}  {}: {} training examples, {} validation examples, {} tracks, {} parameters",
        "",
        v.paper_name(),
        examples,
        valid.examples().len(),
        inputs.tracks,
        parameters
    ));
    let chosen = match training.epochs_from {
        Some(first) => crate::load_json::<TrainReport>(&first.join(TRAIN_REPORT))?
            .refit
            .map(|r| (r.epochs, first)),
        None => None,
    };
    // Either the epochs come from the first seed and this seed only trains on both shares, or
    // early stopping chooses them here, and refit (when on) trains again for that many.
    let again =
        RefitInto { p, inputs: &inputs, opts: &opts, what: v.paper_name(), dir, partial, log };
    let (trained, refit) = match chosen {
        Some((epochs, first)) => {
            log.note(&format!(
                "{:>31}  {}: seed {} takes its {epochs} epochs from the first seed's training ({})",
                "",
                v.paper_name(),
                p.model.seed,
                first.display()
            ));
            let refit = again.train(&net, epochs)?;
            // No training chose epochs here: an empty history.
            std::fs::write(dir.join("train.jsonl"), "")?;
            (None, Some(refit))
        }
        None => {
            let trained = segue_model::train(&net, &train, Some(&valid), &opts, log)?;
            let refit = if p.model.refit && !valid.examples().is_empty() {
                Some(again.train(&network(p, v, &inputs, dir_of)?, trained.best_epoch)?)
            } else {
                net.save(&dir.join("model.safetensors"))?;
                None
            };
            std::fs::copy(partial.join("train.jsonl"), dir.join("train.jsonl"))?;
            (Some(trained), refit)
        }
    };
    // The run whose epochs the report sums up: this seed's early-stopped one, else its refit.
    let (history, final_loss, best_epoch) = match (&trained, &refit) {
        (Some(t), _) => (&t.history, t.history.last().context("no epoch ran")?.loss, t.best_epoch),
        (None, Some(r)) => (&r.history, r.final_loss, r.epochs),
        (None, None) => bail!("{}: no training ran", v.paper_name()),
    };
    let examples_per_second =
        history.iter().map(|e| e.examples_per_second).sum::<f64>() / history.len().max(1) as f64;
    let summary = TrainReport {
        variant: v.id().to_string(),
        name: v.paper_name().to_string(),
        examples,
        parameters,
        epochs_run: trained.as_ref().map_or(0, |t| t.history.len()),
        best_epoch,
        stopped_early: trained.as_ref().is_some_and(|t| t.stopped_early),
        resumed_after: trained.as_ref().and_then(|t| t.resumed_after),
        final_loss,
        examples_per_second,
        history: trained.as_ref().map(|t| t.history.clone()).unwrap_or_default(),
        params: p.model.clone(),
        epochs_from_first_seed: trained.is_none(),
        refit,
    };
    std::fs::write(dir.join(TRAIN_REPORT), serde_json::to_vec_pretty(&summary)?)?;
    std::fs::remove_dir_all(partial).with_context(|| format!("removing {}", partial.display()))?;
    Ok(serde_json::to_value(summary)?)
}

/// A `train-<variant>` stage's `model.refit` training: on its training and validation
/// sessions, the model saved into `dir` and its epochs (`refit.jsonl`) copied from its
/// checkpoint folder under `partial`.
struct RefitInto<'a> {
    p: &'a Pipeline,
    inputs: &'a Inputs,
    opts: &'a TrainOptions,
    what: &'a str,
    dir: &'a Path,
    partial: &'a Path,
    log: &'a dyn Progress,
}

impl RefitInto<'_> {
    /// [`refit`] of `net` (freshly built) for `epochs`, then the model and its log saved.
    fn train(&self, net: &Network, epochs: usize) -> Result<Refit> {
        let both = train_and_valid(self.inputs);
        let refit = refit(self.p, net, &both, self.opts, epochs, self.what, self.log)?;
        net.save(&self.dir.join("model.safetensors"))?;
        std::fs::copy(
            self.partial.join("refit").join("train.jsonl"),
            self.dir.join("refit.jsonl"),
        )?;
        Ok(refit)
    }
}

/// `model.refit`: `net`, freshly built (the same seed, so the same initial weights), trained
/// on `both` (training and validation sessions) for `epochs`, without validation; checkpoints
/// go to `refit/` in the first training's partial folder.
pub fn refit(
    p: &Pipeline,
    net: &Network,
    both: &SplitCorpus,
    first: &TrainOptions,
    epochs: usize,
    what: &str,
    log: &dyn Progress,
) -> Result<Refit> {
    let sessions = sessions(p, both)?;
    let mut params = first.params.clone();
    params.epochs = epochs;
    params.patience = 0;
    let opts =
        TrainOptions { params, dir: first.dir.as_ref().map(|d| d.join("refit")), ..first.clone() };
    let examples = sessions.examples().len();
    log.note(&format!(
        "{:>31}  {what}: training again on the training and validation sessions ({examples} \
         examples) for the {epochs} epochs chosen (model.refit)",
        "",
    ));
    let trained = segue_model::train(net, &sessions, None, &opts, log)?;
    let final_loss = trained.history.last().context("no epoch ran")?.loss;
    Ok(Refit { examples, epochs, final_loss, history: trained.history })
}

/// The sessions of `a`, then those of `b` (two splits of one sessions file: users index the
/// same names in both).
pub fn concat(a: &SplitCorpus, b: &SplitCorpus) -> SplitCorpus {
    let mut out = a.clone();
    let base = out.flat.len();
    out.flat.extend_from_slice(&b.flat);
    out.offsets.extend(b.offsets.iter().skip(1).map(|o| o + base));
    out.users.extend_from_slice(&b.users);
    out.ends.extend_from_slice(&b.ends);
    if out.user_names.is_empty() {
        out.user_names = b.user_names.clone();
    }
    out
}

/// The training sessions and the validation share together.
pub fn train_and_valid(inputs: &Inputs) -> SplitCorpus {
    concat(&inputs.train, &inputs.valid)
}

/// Evaluates a trained variant on the test sessions (metrics.json).
pub fn run_evaluate(
    p: &Pipeline,
    v: Variant,
    dir_of: &dyn Fn(&str) -> Result<PathBuf>,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let inputs = Inputs::read(&dir_of("sessionize")?)?;
    let net = network(p, v, &inputs, dir_of)?;
    net.load(&dir_of(&format!("train-{}", v.id()))?.join("model.safetensors"))?;
    let test = eval_sessions(p, &inputs.test)?;
    let seen: Vec<bool> = (0..inputs.tracks).map(|i| inputs.counts.seen_in_train(i)).collect();
    let started = std::time::Instant::now();
    let (report, ranks) = segue_model::evaluate_ranked(
        &net,
        &test,
        &seen,
        p.model.max_input_len,
        &segue_eval::PAPER_KS,
        64,
    )?;
    write_evaluation(dir, "", v.paper_name(), &report, &ranks, started, log)
}

/// Writes an evaluation (`<prefix>metrics.json`, `<prefix>ranks.json`), says its HitRatios and
/// returns its summary.
pub fn write_evaluation(
    dir: &Path,
    prefix: &str,
    name: &str,
    report: &segue_eval::Report,
    ranks: &[usize],
    started: std::time::Instant,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let seconds = started.elapsed().as_secs_f64();
    std::fs::write(dir.join(format!("{prefix}metrics.json")), serde_json::to_vec_pretty(report)?)?;
    std::fs::write(
        dir.join(format!("{prefix}ranks.json")),
        serde_json::to_vec(&serde_json::json!({ "ranks": ranks }))?,
    )?;
    let pct = |m: &segue_eval::Metrics| m.hit.iter().map(|h| 100.0 * h).collect::<Vec<_>>();
    log.note(&format!(
        "{:>31}  {name}: HR@10..50 {} over {} test predictions ({:.0}/s)",
        "",
        pct(&report.all).iter().map(|h| format!("{h:.2}")).collect::<Vec<_>>().join(" / "),
        report.all.count,
        report.all.count as f64 / seconds
    ));
    Ok(serde_json::json!({
        "method": name,
        "predictions": report.all.count,
        "hr": pct(&report.all),
        "user_hr": pct(&report.per_user),
        "seconds": seconds,
    }))
}
