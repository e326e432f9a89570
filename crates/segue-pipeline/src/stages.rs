//! The stages of the pipeline: how each one's recipe is made and how it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use segue_sessions::{Ingested, SessionStats, SkipReport, ingest};

use crate::baseline_stages::{RULES_VERSION, rule_of};
use crate::cache::{Cache, Check, Manifest, Recipe, hash_file};
use crate::model_stages::{
    EPOCHS_FROM, EVALUATE_VERSION, TRAIN_VERSION, Training, evaluate_upstream, run_evaluate,
    run_train, train_upstream, variant_of,
};
use crate::pipeline::Pipeline;
use segue_core::Progress;

/// Stages in dependency order.
pub const STAGES: &[&str] = &[
    "ingest",
    "sessionize",
    "word2vec",
    "lsa",
    "acoustic",
    "lyrics",
    "tags",
    "user-groups",
    "train-gru4rec",
    "train-ann",
    "train-ann-lsa",
    "train-annw",
    "train-annw-acoustic",
    "train-annw-lyrics",
    "train-annw-acoustic-lyrics",
    "train-annw-acoustic-lyrics-tags",
    "train-sasrec",
    "train-user-study",
    "evaluate-gru4rec",
    "evaluate-ann",
    "evaluate-ann-lsa",
    "evaluate-annw",
    "evaluate-annw-acoustic",
    "evaluate-annw-lyrics",
    "evaluate-annw-acoustic-lyrics",
    "evaluate-annw-acoustic-lyrics-tags",
    "evaluate-sasrec",
    "evaluate-user-study",
    "train-pop",
    "train-repeat-pop",
    "train-sknn",
    "train-vsknn",
    "train-sr",
    "evaluate-pop",
    "evaluate-repeat-pop",
    "evaluate-sknn",
    "evaluate-vsknn",
    "evaluate-sr",
];

/// The hashes of a library crate's sources (xtask/build.rs).
fn source_hash(krate: &str) -> &'static str {
    match krate {
        "segue-core" => env!("SEGUE_SRC_SEGUE_CORE"),
        "segue-sessions" => env!("SEGUE_SRC_SEGUE_SESSIONS"),
        "segue-word2vec" => env!("SEGUE_SRC_SEGUE_WORD2VEC"),
        "segue-lsa" => env!("SEGUE_SRC_SEGUE_LSA"),
        "segue-vae" => env!("SEGUE_SRC_SEGUE_VAE"),
        "segue-lyrics" => env!("SEGUE_SRC_SEGUE_LYRICS"),
        "segue-pca" => env!("SEGUE_SRC_SEGUE_PCA"),
        "segue-tags" => env!("SEGUE_SRC_SEGUE_TAGS"),
        "segue-model" => env!("SEGUE_SRC_SEGUE_MODEL"),
        "segue-eval" => env!("SEGUE_SRC_SEGUE_EVAL"),
        "segue-baselines" => env!("SEGUE_SRC_SEGUE_BASELINES"),
        _ => unreachable!("not a stage crate: {krate}"),
    }
}

/// The library crates whose code computes a stage's artifacts.
fn stage_crates(stage: &str) -> &'static [&'static str] {
    const SESSIONS: [&str; 2] = ["segue-core", "segue-sessions"];
    if rule_of(stage).is_some() {
        return &["segue-core", "segue-sessions", "segue-baselines", "segue-eval"];
    }
    if variant_of(stage).is_some() || is_study(stage) {
        return &["segue-core", "segue-sessions", "segue-model", "segue-eval"];
    }
    match stage {
        "word2vec" => &["segue-core", "segue-sessions", "segue-word2vec"],
        "lsa" => &["segue-core", "segue-sessions", "segue-lsa"],
        "acoustic" => &["segue-core", "segue-sessions", "segue-vae"],
        "lyrics" => &["segue-core", "segue-sessions", "segue-lyrics", "segue-pca"],
        "tags" => &["segue-core", "segue-sessions", "segue-tags", "segue-pca"],
        _ => &SESSIONS,
    }
}

/// A stage's code version: the hash of its crates' sources (any change to them recomputes
/// the stage), then the version of xtask's own glue for it, bumped by hand when that changes
/// the stage's output.
fn code_version(stage: &str) -> String {
    let mut hash = blake3::Hasher::new();
    for krate in stage_crates(stage) {
        hash.update(krate.as_bytes());
        hash.update(source_hash(krate).as_bytes());
    }
    format!("{} src {}", glue_version(stage), &hash.finalize().to_hex()[..12])
}

/// xtask's own part of a stage's version.
fn glue_version(stage: &str) -> String {
    if rule_of(stage).is_some() {
        return format!("{stage}-v{RULES_VERSION}");
    }
    match variant_of(stage) {
        Some((true, _)) => return format!("{stage}-v{TRAIN_VERSION}"),
        Some((false, _)) => return format!("{stage}-v{EVALUATE_VERSION}"),
        None => {}
    }
    if is_study(stage) {
        return format!("{stage}-v{}", crate::user_study::VERSION);
    }
    let v = match stage {
        "ingest" => 3,
        "sessionize" => 2,
        "word2vec" => 1,
        "lsa" => 1,
        "acoustic" => 1,
        "lyrics" => 1,
        "tags" => 1,
        _ => 0,
    };
    format!("{stage}-v{v}")
}

fn upstream(stage: &str) -> &'static [&'static str] {
    if let Some((train, r)) = rule_of(stage) {
        return if train { &["sessionize"] } else { rule_evaluate_upstream(r) };
    }
    match variant_of(stage) {
        Some((true, v)) => return train_upstream(v),
        Some((false, v)) => return evaluate_upstream(v),
        None => {}
    }
    match stage {
        "sessionize" => &["ingest"],
        "word2vec" | "lsa" | "acoustic" | "lyrics" | "tags" | "user-groups" => &["sessionize"],
        // The study's model is the first applicable fusion variant: every modality is read.
        "train-user-study" => &["sessionize", "user-groups", "word2vec", "acoustic", "lyrics"],
        "evaluate-user-study" => {
            &["sessionize", "user-groups", "word2vec", "acoustic", "lyrics", "train-user-study"]
        }
        _ => &[],
    }
}

/// A session-embedding stage's parameters, with `[embeddings]` beside them when it is not the
/// default (so leak-free keys stay as they were).
fn with_embeddings(mut params: serde_json::Value, p: &Pipeline) -> Result<serde_json::Value> {
    if p.embeddings != crate::pipeline::Embeddings::default() {
        params["embeddings"] = serde_json::to_value(&p.embeddings)?;
    }
    Ok(params)
}

/// The user study's model stages (one run per seed, like a variant's).
pub fn is_study(stage: &str) -> bool {
    matches!(stage, "train-user-study" | "evaluate-user-study")
}

/// Stages run once per model seed.
fn per_seed(stage: &str) -> bool {
    variant_of(stage).is_some() || is_study(stage)
}

/// The upstream stages of a rule's evaluation.
fn rule_evaluate_upstream(r: segue_baselines::Rule) -> &'static [&'static str] {
    use segue_baselines::Rule;
    match r {
        Rule::Popularity => &["sessionize", "train-pop"],
        Rule::RepeatThenPopularity => &["sessionize", "train-repeat-pop"],
        Rule::Sknn => &["sessionize", "train-sknn"],
        Rule::Vsknn => &["sessionize", "train-vsknn"],
        Rule::SequentialRules => &["sessionize", "train-sr"],
    }
}

/// Every stage in words, from [`STAGES`] (what `run --help` shows and `status` walks).
pub fn registry_help() -> String {
    let data: Vec<&str> =
        STAGES.iter().copied().filter(|s| !per_seed(s) && rule_of(s).is_none()).collect();
    let mut out = format!("Stages, in dependency order:\n  data: {}\n", data.join(", "));
    out += "  models (train-ID, evaluate-ID; one run per seed of model.seeds):\n";
    for v in segue_model::Variant::ALL {
        if STAGES.contains(&format!("train-{}", v.id()).as_str()) {
            out += &format!("    {:<28} {}\n", v.id(), v.paper_name());
        }
    }
    out += "    user-study                   Table IV: the fusion per K-10 group (dataset.users)\n";
    out += "  rules (train-ID fits, evaluate-ID ranks):\n";
    for r in segue_baselines::Rule::ALL {
        if STAGES.contains(&format!("train-{}", r.id()).as_str()) {
            out += &format!("    {:<28} {}\n", r.id(), r.name());
        }
    }
    out
}

/// Fails with the list of stages when `stage` is unknown.
pub fn check_stage(stage: &str) -> Result<()> {
    if !STAGES.contains(&stage) {
        bail!("unknown stage `{stage}`; the stages are: {}", STAGES.join(", "));
    }
    Ok(())
}

/// The stages `target` needs, itself last.
pub fn closure(target: &str) -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    fn visit(s: &str, out: &mut Vec<&'static str>) {
        for u in upstream(s) {
            visit(u, out);
        }
        if let Some(name) = STAGES.iter().find(|n| **n == s)
            && !out.contains(name)
        {
            out.push(name);
        }
    }
    visit(target, &mut out);
    out
}

/// The content hash of a dataset's content file, for a recipe. A file not there yet (synthetic
/// data generated by ingest) reads as missing; the stage itself then names it if it is still
/// missing.
fn content_files(p: &Pipeline, file: &Option<String>) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    if let Some(f) = p.content_file(file) {
        let hash = if f.exists() { hash_file(&f)? } else { "missing".into() };
        files.insert(f.display().to_string(), hash);
    }
    Ok(files)
}

/// Runs stages and remembers their keys: each stage instance is resolved to its cache key
/// (code version, parameters, upstream keys, input hashes), reused when fresh, else computed
/// into the cache. What it does is said line by line through `log`, with progress bars for the
/// long steps.
#[allow(missing_debug_implementations)] // holds a `&dyn Progress`
pub struct Runner<'a> {
    /// The pipeline whose stages run.
    pub pipeline: &'a Pipeline,
    /// Where the artifacts are kept.
    pub cache: Cache,
    pub(crate) log: &'a dyn Progress,
    keys: BTreeMap<String, String>,
    input_hashes: Option<BTreeMap<String, String>>,
}

impl<'a> Runner<'a> {
    /// A runner over `pipeline`'s cache, reporting to `log` ([`segue_core::NoProgress`]: nothing).
    pub fn new(pipeline: &'a Pipeline, log: &'a dyn Progress) -> Self {
        Runner {
            pipeline,
            cache: Cache { root: pipeline.cache_dir() },
            log,
            keys: BTreeMap::new(),
            input_hashes: None,
        }
    }

    /// Content hashes of the dataset's listening files (hashed once per run).
    fn input_files(&mut self) -> Result<BTreeMap<String, String>> {
        if let Some(h) = &self.input_hashes {
            return Ok(h.clone());
        }
        let mut out = BTreeMap::new();
        for source in &self.pipeline.dataset.sources {
            for file in source.files(self.pipeline.base_dir())? {
                out.insert(file.display().to_string(), hash_file(&file)?);
            }
        }
        self.input_hashes = Some(out.clone());
        Ok(out)
    }

    /// The runs of a stage: one per seed (`train-ann/seed-0`, ...) for a model's train and
    /// evaluate stages, else the stage itself.
    pub fn instances(&self, stage: &str) -> Vec<String> {
        if per_seed(stage) {
            let seeds = self.pipeline.model.seed_list();
            seeds.iter().map(|s| format!("{stage}/seed-{s}")).collect()
        } else {
            vec![stage.to_string()]
        }
    }

    /// How an instance is shown: the stage alone when there is one seed.
    pub fn shown(&self, instance: &str) -> String {
        match split_instance(instance) {
            (stage, Some(_)) if self.pipeline.model.seed_list().len() == 1 => stage.to_string(),
            _ => instance.to_string(),
        }
    }

    /// The key name of an upstream stage `u` for a run of seed `seed`.
    fn upstream_instance(u: &str, seed: Option<u64>) -> String {
        match seed {
            Some(s) if per_seed(u) => format!("{u}/seed-{s}"),
            _ => u.to_string(),
        }
    }

    /// The recipe of a stage instance; its upstream stages must have been resolved first.
    pub fn recipe(&mut self, instance: &str) -> Result<Recipe> {
        let p = self.pipeline;
        let (stage, seed) = split_instance(instance);
        let model = p.for_model_seed(seed).model;
        let (params, files) = match stage {
            "ingest" => (
                serde_json::json!({ "sources": p.dataset.sources, "ingest": p.ingest }),
                self.input_files()?,
            ),
            "sessionize" => match &p.dataset.subset {
                // Keys of pipelines without a subset stay what they were.
                None => (serde_json::to_value(&p.sessionize)?, BTreeMap::new()),
                Some(subset) => (
                    serde_json::json!({ "sessionize": p.sessionize, "subset": subset }),
                    content_files(p, &p.dataset.tags)?,
                ),
            },
            "word2vec" => {
                (with_embeddings(serde_json::to_value(&p.word2vec)?, p)?, BTreeMap::new())
            }
            "lsa" => (with_embeddings(serde_json::to_value(&p.lsa)?, p)?, BTreeMap::new()),
            "acoustic" => (
                serde_json::json!({ "vae": p.vae, "strict": p.ingest.strict }),
                content_files(p, &p.dataset.audio_features)?,
            ),
            "lyrics" => (serde_json::to_value(&p.lyrics)?, content_files(p, &p.dataset.lyrics)?),
            "tags" => (serde_json::to_value(&p.tags)?, content_files(p, &p.dataset.tags)?),
            "user-groups" => (
                serde_json::json!({
                    "at_risk_min": crate::user_study::AT_RISK_MIN,
                    "no_risk_below": crate::user_study::NO_RISK_BELOW,
                }),
                content_files(p, &p.dataset.users)?,
            ),
            "train-user-study" => (
                serde_json::json!({
                    "candidates": crate::user_study::CANDIDATES.map(|v| v.id()),
                    "model": model,
                }),
                BTreeMap::new(),
            ),
            "evaluate-user-study" => (
                serde_json::json!({
                    "ks": segue_eval::PAPER_KS,
                    "max_input_len": p.model.max_input_len,
                }),
                BTreeMap::new(),
            ),
            other if rule_of(other).is_some() => {
                let (_, r) = rule_of(other).expect("checked");
                let mut params = serde_json::json!({
                    "rule": r.id(),
                    "settings": r.settings(&p.baselines),
                });
                // Keys without it stay what they were.
                if p.model.refit {
                    params["fit_on"] = serde_json::json!("train-and-valid");
                }
                if other.starts_with("evaluate-") {
                    params["ks"] = serde_json::json!(segue_eval::PAPER_KS);
                    params["max_input_len"] = serde_json::json!(p.model.max_input_len);
                }
                (params, BTreeMap::new())
            }
            other => match variant_of(other) {
                Some((true, v)) => {
                    (serde_json::json!({ "variant": v.id(), "model": model }), BTreeMap::new())
                }
                Some((false, v)) => (
                    serde_json::json!({
                        "variant": v.id(),
                        "ks": segue_eval::PAPER_KS,
                        "max_input_len": p.model.max_input_len,
                    }),
                    BTreeMap::new(),
                ),
                None => bail!("no recipe for stage {other}"),
            },
        };
        let mut up = BTreeMap::new();
        for u in upstream(stage) {
            let name = Self::upstream_instance(u, seed);
            let key = self
                .keys
                .get(&name)
                .with_context(|| format!("stage {name} was not resolved before {instance}"))?;
            up.insert(u.to_string(), key.clone());
        }
        if let Some(first) = self.epochs_from(stage, seed) {
            let key = self
                .keys
                .get(&first)
                .with_context(|| format!("stage {first} was not resolved before {instance}"))?;
            up.insert(EPOCHS_FROM.to_string(), key.clone());
        }
        Ok(Recipe {
            stage: stage.into(),
            code_version: code_version(stage),
            params,
            upstream: up,
            files,
            instance: seed.map(|_| instance.to_string()),
        })
    }

    /// The instance whose early stopping chooses the epochs of a model's run of `seed`: with
    /// `model.refit`, the first seed's (`train-ann/seed-0`) for every later seed, which then
    /// only trains on the training and validation sessions for that many epochs. None for the
    /// first seed, without refit, and for stages that are not a variant's training.
    pub(crate) fn epochs_from(&self, stage: &str, seed: Option<u64>) -> Option<String> {
        let first = *self.pipeline.model.seed_list().first()?;
        match (variant_of(stage), seed) {
            (Some((true, _)), Some(s)) if self.pipeline.model.refit && s != first => {
                Some(format!("{stage}/seed-{first}"))
            }
            _ => None,
        }
    }

    /// Records a stage's key without running it (for `status`).
    pub fn note_key(&mut self, stage: &str, key: &str) {
        self.keys.insert(stage.into(), key.into());
    }

    /// The artifact folder of a resolved stage instance.
    pub fn dir(&self, instance: &str) -> Result<PathBuf> {
        let key =
            self.keys.get(instance).with_context(|| format!("stage {instance} has not run"))?;
        Ok(self.cache.stage_dir(split_instance(instance).0, key))
    }

    /// Runs every instance of a stage (one per seed for a model; its upstream must have run),
    /// skipping those whose artifact is fresh. A model's seeds run side by side
    /// ([`Runner::run_side_by_side`]).
    pub fn run(&mut self, stage: &str, force: bool) -> Result<Vec<Manifest>> {
        // One instance (a stage without seeds) runs alone on every thread.
        let ran = self.run_side_by_side(&[stage], &|_| force)?;
        Ok(ran.into_iter().map(|r| r.manifest).collect())
    }

    /// Resolves a stage instance's recipe and key (remembered for the stages after it) and
    /// says whether its artifact is fresh; `force` builds it anyway.
    pub(crate) fn resolve(&mut self, instance: &str, force: bool) -> Result<Resolved> {
        let log = self.log;
        let recipe = self.recipe(instance)?;
        let stage = split_instance(instance).0;
        let shown = self.shown(instance);
        let key = recipe.key();
        self.keys.insert(instance.into(), key.clone());
        let why = match self.cache.check(stage, &key) {
            Check::Fresh(m) if !force => {
                log.note(&format!(
                    "{shown:>31}: fresh, skipped (key {key}, built in {:.1} s)",
                    m.seconds
                ));
                return Ok(Resolved::Fresh(m));
            }
            Check::Corrupt(why) => format!("cached artifact is damaged ({why}); recomputing"),
            Check::Fresh(_) => "forced; recomputing".to_string(),
            Check::Missing => match self.cache.last_recipe(recipe.last_name()) {
                Some(old) if old.key() != recipe.key() => {
                    format!("running ({})", recipe.differences(&old).join("; "))
                }
                _ => "running".to_string(),
            },
        };
        Ok(Resolved::Build(Box::new(ToBuild { recipe, key, why })))
    }

    /// Builds a resolved stage instance on `threads` threads; the stage reports through `log`
    /// (a lane when it runs beside others).
    pub(crate) fn build_logged(
        &self,
        instance: &str,
        job: &ToBuild,
        force: bool,
        threads: usize,
        log: &dyn Progress,
    ) -> Result<Manifest> {
        let (stage, seed) = split_instance(instance);
        let shown = self.shown(instance);
        let ToBuild { recipe, key, why } = job;
        // Its own lines say the stage: on the run's reporter, not a lane's.
        self.log.note(&format!("{shown:>31}: {why}"));
        let started = Instant::now();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .with_context(|| format!("starting {threads} threads for stage {shown}"))?;
        let manifest = pool
            .install(|| self.build_instance(stage, seed, recipe, key, force, log))
            .with_context(|| format!("stage {shown}"))?;
        self.log.note(&format!("{shown:>31}: done in {:.2} s", started.elapsed().as_secs_f64()));
        Ok(manifest)
    }

    /// Where a training stage keeps its epoch checkpoints until it finishes (resumed after an
    /// interruption); `force` starts it over.
    fn partial_dir(&self, stage: &str, key: &str, force: bool) -> PathBuf {
        let partial = self.cache.stage_dir(stage, &format!("{key}.partial"));
        if force {
            let _ = std::fs::remove_dir_all(&partial);
        }
        partial
    }

    /// Computes one stage instance into the cache (its recipe resolved, not fresh).
    fn build_instance(
        &self,
        stage: &str,
        seed: Option<u64>,
        recipe: &Recipe,
        key: &str,
        force: bool,
        log: &dyn Progress,
    ) -> Result<Manifest> {
        if stage == "ingest" {
            return self.cache.build(recipe, |dir| run_ingest(self.pipeline, dir, log));
        }
        if let Some((upstream, run)) = from_one_folder(stage) {
            let input = self.dir(upstream)?;
            return self.cache.build(recipe, |dir| run(self.pipeline, &input, dir, log));
        }
        match stage {
            "train-user-study" | "evaluate-user-study" => {
                let dir_of = |s: &str| self.dir(&Self::upstream_instance(s, seed));
                let seeded = self.pipeline.for_model_seed(seed);
                if stage == "train-user-study" {
                    let partial = self.partial_dir(stage, key, force);
                    self.cache.build(recipe, |dir| {
                        crate::user_study::run_train(&seeded, &dir_of, dir, &partial, log)
                    })
                } else {
                    self.cache.build(recipe, |dir| {
                        crate::user_study::run_evaluate(&seeded, &dir_of, dir, log)
                    })
                }
            }
            other if rule_of(other).is_some() => {
                let dir_of = |s: &str| self.dir(s);
                match rule_of(other).expect("checked") {
                    (true, r) => self.cache.build(recipe, |dir| {
                        crate::baseline_stages::run_fit(self.pipeline, r, &dir_of, dir, log)
                    }),
                    (false, r) => self.cache.build(recipe, |dir| {
                        crate::baseline_stages::run_evaluate(self.pipeline, r, &dir_of, dir, log)
                    }),
                }
            }
            other => {
                let dir_of = |s: &str| self.dir(&Self::upstream_instance(s, seed));
                // The run's own seed: the model's initialisation and shuffling follow it.
                let seeded = self.pipeline.for_model_seed(seed);
                match variant_of(other) {
                    Some((true, v)) => {
                        let partial = self.partial_dir(stage, key, force);
                        let epochs_from = match self.epochs_from(stage, seed) {
                            Some(first) => Some(self.dir(&first)?),
                            None => None,
                        };
                        let train = Training { variant: v, epochs_from: epochs_from.as_deref() };
                        self.cache.build(recipe, |dir| {
                            run_train(&seeded, train, &dir_of, dir, &partial, log)
                        })
                    }
                    Some((false, v)) => {
                        self.cache.build(recipe, |dir| run_evaluate(&seeded, v, &dir_of, dir, log))
                    }
                    None => bail!("stage {other} cannot run"),
                }
            }
        }
    }
}

/// What [`Runner::resolve`] found for a stage instance.
pub(crate) enum Resolved {
    /// Its artifact is fresh: nothing to do.
    Fresh(Box<Manifest>),
    /// It has to be built.
    Build(Box<ToBuild>),
}

/// A stage instance to build: its recipe and key, and why it runs (a line for the log).
pub(crate) struct ToBuild {
    pub(crate) recipe: Recipe,
    pub(crate) key: String,
    pub(crate) why: String,
}

/// A stage instance's stage and seed: `train-ann/seed-3` is `train-ann` for seed 3.
pub fn split_instance(instance: &str) -> (&str, Option<u64>) {
    match instance.split_once("/seed-") {
        Some((stage, seed)) => (stage, seed.parse().ok()),
        None => (instance, None),
    }
}

/// The artifacts' file names, in each stage's folder ([`Runner::dir`]).
pub mod files {
    /// ingest: what was read and skipped ([`super::IngestReport`]).
    pub const INGEST_REPORT: &str = "ingest_report.json";
    /// sessionize: every kept session's tracks, user and split.
    pub const SESSIONS: &str = "sessions.parquet";
    /// sessionize: the vocabulary (training tracks first) with play counts per split.
    pub const TRACKS: &str = "tracks.parquet";
    /// sessionize: Table I and what lies behind it ([`segue_sessions::SessionStats`]).
    pub const SESSION_STATS: &str = segue_sessions::Sessionized::STATS;
    /// word2vec: one row per vocabulary track (zero where it has no vector).
    pub const WORD2VEC_TABLE: &str = "w2v.safetensors";
    /// word2vec: the vectors in word2vec's binary format (gensim reads it).
    pub const WORD2VEC_BINARY: &str = "w2v.bin";
    /// word2vec: [`super::Word2VecReport`].
    pub const WORD2VEC_REPORT: &str = "word2vec_report.json";
    /// lsa: one row per vocabulary track.
    pub const LSA_TABLE: &str = "lsa.safetensors";
    /// lsa: [`super::LsaReport`].
    pub const LSA_REPORT: &str = "lsa_report.json";
}

/// What the word2vec stage did (`word2vec_report.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Word2VecReport {
    /// Sessions trained on.
    pub sentences: usize,
    /// Tracks with a vector.
    pub tracks_with_vectors: usize,
    /// Tracks of the vocabulary (the table's rows).
    pub tracks: usize,
    /// Tokens read per epoch before down-sampling.
    pub raw_words: u64,
    /// Tokens trained on, over all epochs.
    pub effective_words: u64,
    /// Training time.
    pub train_seconds: f64,
    /// Raw tokens per second.
    pub words_per_second: f64,
    /// Threads used.
    pub threads: usize,
    /// Whether a rerun gives the same bytes (one thread).
    pub deterministic: bool,
}

/// What the lsa stage did (`lsa_report.json`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LsaReport {
    /// Sessions (rows of the count matrix).
    pub sessions: usize,
    /// Tracks with a column.
    pub train_tracks: usize,
    /// Tracks of the vocabulary (the table's rows).
    pub tracks: usize,
    /// Non-zero counts.
    pub nnz: usize,
    /// Components computed.
    pub components: usize,
    /// Time to build the count matrix.
    pub build_seconds: f64,
    /// Time of the randomized SVD.
    pub svd_seconds: f64,
    /// The singular values.
    pub singular_values: Vec<f64>,
    /// Share of the variance the components explain.
    pub explained_variance_ratio_sum: f64,
}

/// The report ingest writes beside its artifacts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct IngestReport {
    /// Every file read.
    pub files: Vec<PathBuf>,
    /// Records read.
    pub records: u64,
    /// Listening events kept.
    pub events: u64,
    /// Records not kept, per reason with examples (`segue_sessions::SkipReport`).
    pub skipped: serde_json::Value,
    /// Link loops not followed, files reached twice, files of a folder that are not
    /// listening logs.
    #[serde(default)]
    pub notes: Vec<String>,
    /// The reader of every file, and why it was chosen.
    #[serde(default)]
    pub readers: Vec<segue_sessions::ReaderChoice>,
    /// User ids two folders share without saying so, files of which nothing was kept.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// Per source and reader: the files read with it and why (one line each).
pub fn reader_lines(choices: &[segue_sessions::ReaderChoice]) -> Vec<String> {
    let mut groups: Vec<(usize, &str, &str, Vec<&Path>)> = Vec::new();
    for c in choices {
        match groups.iter_mut().find(|g| g.0 == c.source && g.1 == c.reader) {
            Some(g) => g.3.push(&c.file),
            None => groups.push((c.source, &c.reader, &c.why, vec![&c.file])),
        }
    }
    groups
        .into_iter()
        .map(|(source, reader, why, files)| {
            let which = match files.as_slice() {
                [one] => one.display().to_string(),
                [first, rest @ ..] => format!("{} and {} more", first.display(), rest.len()),
                [] => String::new(),
            };
            format!("source {}: {which} read as {reader}: {why}", source + 1)
        })
        .collect()
}

/// A stage computed from one upstream stage's folder alone (its name, then the stage's code).
type FromOneFolder = fn(&Pipeline, &Path, &Path, &dyn Progress) -> Result<serde_json::Value>;

/// The stages that read a single upstream folder, with that upstream stage.
fn from_one_folder(stage: &str) -> Option<(&'static str, FromOneFolder)> {
    let run: FromOneFolder = match stage {
        "sessionize" => return Some(("ingest", run_sessionize)),
        "word2vec" => run_word2vec,
        "lsa" => run_lsa,
        "acoustic" => run_acoustic,
        "lyrics" => crate::content_stages::run_lyrics,
        "tags" => crate::content_stages::run_tags,
        "user-groups" => crate::user_study::run_groups,
        _ => return None,
    };
    Some(("sessionize", run))
}

fn run_ingest(p: &Pipeline, dir: &Path, log: &dyn Progress) -> Result<serde_json::Value> {
    let mut out = ingest(&p.dataset.sources, p.base_dir(), &p.ingest, log)?;
    out.write(dir)?;
    let report = IngestReport {
        files: out.files.clone(),
        records: out.records,
        events: out.events.len() as u64,
        skipped: serde_json::to_value(&out.skips)?,
        notes: out.notes.clone(),
        readers: out.choices.clone(),
        warnings: out.warnings.clone(),
    };
    for line in reader_lines(&out.choices) {
        log.note(&format!("{:>31}  {line}", ""));
    }
    for warning in &out.warnings {
        log.note(&format!("{:>31}  warning: {warning}", ""));
    }
    for note in &out.notes {
        log.note(&format!("{:>31}  note: {note}", ""));
    }
    std::fs::write(dir.join(files::INGEST_REPORT), serde_json::to_vec_pretty(&report)?)?;
    print_skips(&out.skips, out.records, log);
    Ok(
        serde_json::json!({ "records": report.records, "events": report.events, "skipped": out.skips.total() }),
    )
}

/// The end-of-stage account of skipped records: a count and first examples per reason.
pub fn print_skips(skips: &SkipReport, records: u64, log: &dyn Progress) {
    if skips.total() == 0 {
        log.note(&format!("{:>31}  all {records} records kept", ""));
        return;
    }
    log.note(&format!("{:>31}  {records} records read, {} not kept:", "", skips.total()));
    for (reason, c) in &skips.reasons {
        log.note(&format!("{:>33}{:>9}  {}", "", c.count, reason.describe()));
        for ex in &c.examples {
            log.note(&format!(
                "{:>44}e.g. {}, {}: {}",
                "",
                ex.file.display(),
                ex.position,
                ex.detail
            ));
        }
    }
}

fn run_sessionize(
    p: &Pipeline,
    ingest_dir: &Path,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    // The events come a row group at a time into 16 bytes a play, never as a whole frame.
    let (events, keys) = (Ingested::read_events(ingest_dir)?, Ingested::read_keys(ingest_dir)?);
    let events = match p.dataset.subset.as_deref() {
        None => events,
        Some("tags") => crate::content_stages::tag_subset(p, events, &keys, log)?,
        Some(other) => bail!("dataset.subset = \"{other}\": the only subset is \"tags\""),
    };
    let mut out = segue_sessions::sessionize_owned(events, &keys, &p.sessionize)?;
    out.require_training()?;
    out.write(dir)?;
    let s: &SessionStats = &out.stats;
    Ok(serde_json::json!({
        "users": s.users, "sessions": s.sessions, "unique_songs": s.unique_songs,
        "events": s.events, "mean_session_length": s.mean_session_length,
    }))
}

/// The vocabulary of a sessionize folder and the sessions the embeddings learn from
/// (`embeddings.sessions`).
fn embedding_corpus(
    p: &Pipeline,
    sessions_dir: &Path,
) -> Result<(segue_core::Vocab, segue_sessions::SplitCorpus)> {
    let vocab = segue_sessions::read_vocab(&sessions_dir.join(files::TRACKS))?;
    let corpus = segue_sessions::read_splits(
        &sessions_dir.join(files::SESSIONS),
        p.embeddings.sessions.splits(),
    )?;
    Ok((vocab, corpus))
}

/// The vocabulary of a sessionize folder and each track's play counts per split.
pub(crate) fn catalogue(
    sessions_dir: &Path,
) -> Result<(segue_core::Vocab, segue_sessions::TrackCounts)> {
    let tracks = sessions_dir.join(files::TRACKS);
    Ok((segue_sessions::read_vocab(&tracks)?, segue_sessions::TrackCounts::read(&tracks)?))
}

fn run_word2vec(
    p: &Pipeline,
    sessions_dir: &Path,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let (vocab, corpus) = embedding_corpus(p, sessions_dir)?;
    let model = segue_word2vec::train_with_progress(
        &segue_word2vec::Corpus::new(&corpus.flat, &corpus.offsets, vocab.len())?,
        &p.word2vec,
        log,
    )?;
    model.to_table(vocab.len(), &vocab.hash())?.save(&dir.join(files::WORD2VEC_TABLE))?;
    model.save_word2vec_binary(&dir.join(files::WORD2VEC_BINARY), |t| t.to_string())?;
    let st = model.stats();
    let summary = Word2VecReport {
        sentences: corpus.offsets.len() - 1,
        tracks_with_vectors: model.vocabulary().len(),
        tracks: vocab.len(),
        raw_words: st.raw_words,
        effective_words: st.effective_words,
        train_seconds: st.seconds,
        words_per_second: st.words_per_second(),
        threads: p.word2vec.threads,
        deterministic: p.word2vec.threads == 1,
    };
    std::fs::write(dir.join(files::WORD2VEC_REPORT), serde_json::to_vec_pretty(&summary)?)?;
    log.note(&format!(
        "{:>31}  {} of {} tracks have vectors; {:.2} M raw words/s over {} epochs ({} threads{})",
        "",
        model.vocabulary().len(),
        vocab.len(),
        st.words_per_second() / 1e6,
        p.word2vec.epochs,
        p.word2vec.threads,
        if p.word2vec.threads == 1 { ", deterministic" } else { ", Hogwild" }
    ));
    Ok(serde_json::to_value(summary)?)
}

fn run_lsa(
    p: &Pipeline,
    sessions_dir: &Path,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let (vocab, corpus) = embedding_corpus(p, sessions_dir)?;
    // Training tracks come first in the vocabulary: the columns are ids 0..train_tracks (every
    // track of the corpus, with `embeddings.sessions = "all"`).
    let train_tracks = corpus.flat.iter().max().map_or(0, |&m| m as usize + 1);
    let started = Instant::now();
    let counts =
        segue_lsa::CountMatrix::from_sessions(&corpus.flat, &corpus.offsets, train_tracks)?;
    let build_seconds = started.elapsed().as_secs_f64();
    log.note(&format!(
        "{:>31}  {} training sessions x {} tracks, {} entries",
        "",
        counts.rows,
        counts.cols,
        counts.nnz()
    ));
    // A corpus smaller than the embedding size gets as many components as it has; the rest of
    // the table's columns are zero, so the model's embedding size stays the same.
    let possible = counts.rows.min(counts.cols);
    let params = segue_lsa::LsaParams { dim: p.lsa.dim.min(possible), ..p.lsa.clone() };
    if params.dim < p.lsa.dim {
        log.note(&format!(
            "{:>31}  warning: only {} components are possible (lsa.dim = {}); the other columns are zero",
            "", params.dim, p.lsa.dim
        ));
    }
    let svd = segue_lsa::randomized_svd_with_progress(&counts, &params, log)?;
    let svd_seconds = started.elapsed().as_secs_f64() - build_seconds;
    svd.to_table(vocab.len(), p.lsa.dim, &vocab.hash(), p.lsa.scale == "sigma")?
        .save(&dir.join(files::LSA_TABLE))?;
    let explained: f64 = svd.explained_variance_ratio.iter().sum();
    let summary = LsaReport {
        sessions: counts.rows,
        train_tracks: counts.cols,
        tracks: vocab.len(),
        nnz: counts.nnz(),
        components: params.dim,
        build_seconds,
        svd_seconds,
        singular_values: svd.singular_values.clone(),
        explained_variance_ratio_sum: explained,
    };
    std::fs::write(dir.join(files::LSA_REPORT), serde_json::to_vec_pretty(&summary)?)?;
    log.note(&format!(
        "{:>31}  {} of {} tracks have vectors; {} components explain {:.1}% of the variance",
        "",
        counts.cols,
        vocab.len(),
        params.dim,
        100.0 * explained
    ));
    Ok(serde_json::to_value(summary)?)
}

/// Prints a content stage's coverage and returns it for the report.
/// How much of the catalogue a content modality covers (in each content stage's report).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Coverage {
    /// Share of the vocabulary's tracks with the modality.
    pub track_share: f64,
    /// Share of all plays that are of tracks with it.
    pub play_share: f64,
    /// Training tracks with it: 0 makes the variants that need it not applicable.
    pub training_tracks_with: usize,
    /// Training tracks.
    pub training_tracks: usize,
}

/// The report file of a content stage (`acoustic_report.json`, ...), which holds its
/// [`Coverage`] under `coverage`.
pub fn content_report_file(stage: &str) -> String {
    format!("{stage}_report.json")
}

/// A content stage's coverage, said through `log`.
pub fn coverage(
    stage: &str,
    counts: &segue_sessions::TrackCounts,
    has: impl Fn(usize) -> bool,
    log: &dyn Progress,
) -> Coverage {
    let (tracks, plays) = counts.coverage(&has);
    let train_total = counts.train.iter().filter(|&&c| c > 0).count();
    let train_has = (0..counts.train.len()).filter(|&i| counts.seen_in_train(i) && has(i)).count();
    log.note(&format!(
        "{:>31}  {stage} coverage: {:.1}% of tracks, {:.1}% of plays; {train_has} of {train_total} training tracks",
        "",
        100.0 * tracks,
        100.0 * plays
    ));
    Coverage {
        track_share: tracks,
        play_share: plays,
        training_tracks_with: train_has,
        training_tracks: train_total,
    }
}

fn run_acoustic(
    p: &Pipeline,
    sessions_dir: &Path,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let (vocab, counts) = catalogue(sessions_dir)?;
    let latent = p.vae.latent;
    let mut table = segue_core::EmbeddingTable::zeros(vocab.len(), latent, vocab.hash());
    let Some(file) = p.content_file(&p.dataset.audio_features) else {
        log.note(&format!(
            "{:>31}  the dataset has no audio features (dataset.audio_features): every track is masked",
            ""
        ));
        table.save(&dir.join("acoustic.safetensors"))?;
        let summary = serde_json::json!({ "audio_features": null, "coverage": coverage("acoustic", &counts, |_| false, log) });
        std::fs::write(
            dir.join(content_report_file("acoustic")),
            serde_json::to_vec_pretty(&summary)?,
        )?;
        return Ok(summary);
    };
    let features =
        segue_sessions::read_features(&file, &segue_vae::FEATURES, &vocab, p.ingest.strict)?;
    let j = &features.join;
    log.note(&format!(
        "{:>31}  {}: {} rows, {} vocabulary tracks, {} not in the vocabulary, {} repeated keys",
        "",
        file.display(),
        j.records,
        j.matched,
        j.unmatched,
        j.duplicates
    ));
    if features.masked > 0 {
        log.note(&format!(
            "{:>31}  {} tracks masked for a missing or non-numeric feature, e.g.:",
            "", features.masked
        ));
        for m in &features.masked_examples {
            log.note(&format!(
                "{:>33}record {}: {}, `{}` = {:?}",
                "", m.record, m.track, m.column, m.value
            ));
        }
    }
    let width = segue_vae::FEATURES.len();
    let fit: Vec<usize> = features
        .ids
        .iter()
        .enumerate()
        .filter(|(_, id)| counts.seen_in_train(id.index()))
        .map(|(r, _)| r)
        .collect();
    let has: std::collections::HashSet<usize> = features.ids.iter().map(|id| id.index()).collect();
    let cover = coverage("acoustic", &counts, |i| has.contains(&i), log);
    if fit.is_empty() {
        log.note(&format!(
            "{:>31}  no training track has audio features: nothing to fit, every track is masked",
            ""
        ));
        table.save(&dir.join("acoustic.safetensors"))?;
        let summary = serde_json::json!({ "audio_features": file, "join": j, "masked": features.masked, "fit_tracks": 0, "coverage": cover });
        std::fs::write(
            dir.join(content_report_file("acoustic")),
            serde_json::to_vec_pretty(&summary)?,
        )?;
        return Ok(summary);
    }
    let trained = segue_vae::train_with_progress(&features.values, width, &fit, &p.vae, log)?;
    let mu = trained.embed(&features.values)?;
    for (id, row) in features.ids.iter().zip(mu.chunks(latent)) {
        table.set_row(*id, row)?;
    }
    table.save(&dir.join("acoustic.safetensors"))?;
    let best = &trained.history[trained.best_epoch];
    log.note(&format!(
        "{:>31}  VAE on {} tracks ({} held out): {} epochs, kept epoch {}, held-out reconstruction {}",
        "",
        trained.fit_tracks,
        trained.held_out_tracks,
        trained.history.len(),
        trained.best_epoch + 1,
        best.held_out_recon.map_or("n/a".to_string(), |r| format!("{r:.4}"))
    ));
    let summary = serde_json::json!({
        "audio_features": file,
        "join": j,
        "masked": features.masked,
        "masked_examples": features.masked_examples,
        "fit_tracks": trained.fit_tracks,
        "held_out_tracks": trained.held_out_tracks,
        "epochs_run": trained.history.len(),
        "best_epoch": trained.best_epoch + 1,
        "history": trained.history,
        "standardizer": trained.standardizer,
        "coverage": cover,
    });
    std::fs::write(
        dir.join(content_report_file("acoustic")),
        serde_json::to_vec_pretty(&summary)?,
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_versions_hash_the_sources_of_each_stages_crates() {
        for krate in ["segue-core", "segue-sessions", "segue-word2vec", "segue-model"] {
            let h = source_hash(krate);
            assert!(h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit()), "{krate}: {h}");
        }
        assert_ne!(source_hash("segue-lsa"), source_hash("segue-pca"));
        for stage in STAGES {
            let v = code_version(stage);
            assert!(v.starts_with(&format!("{stage}-v")) && v.contains(" src "), "{v}");
            assert!(stage_crates(stage).contains(&"segue-sessions"), "{stage}");
        }
        // Stages built on different crates never share a version.
        assert_ne!(
            code_version("word2vec").rsplit(' ').next(),
            code_version("lsa").rsplit(' ').next()
        );
        assert_eq!(stage_crates("train-ann"), stage_crates("evaluate-user-study"));
        assert!(stage_crates("evaluate-sknn").contains(&"segue-baselines"));
    }
}
