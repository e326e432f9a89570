//! Pipeline files: TOML naming the dataset and every parameter of every stage, with the
//! paper's defaults. Unknown keys and bad values are errors that name them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use segue_sessions::{IngestOptions, SessionOptions, SourceSpec};
use serde::{Deserialize, Serialize};

/// A TOML value written on its own (`0.003`, `"text"`, `[1, 2]`), as `--set` and grids take it.
pub fn parse_value(text: &str) -> Result<toml::Value> {
    let doc: toml::Table = toml::from_str(&format!("v = {text}"))
        .with_context(|| format!("`{text}` is not a TOML value (quote strings)"))?;
    Ok(doc["v"].clone())
}

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// `"leak-free"` (DESIGN.md's protocol) or `"authors-code"`: the departures of the paper's
    /// public code ([`AUTHORS_CODE`]) as defaults under the file's own keys.
    #[serde(default)]
    pub protocol: Protocol,
    /// Name, cache folder, seed.
    pub pipeline: PipelineMeta,
    /// The listening logs and content files.
    pub dataset: Dataset,
    #[serde(default)]
    /// Reading the logs.
    pub ingest: IngestOptions,
    #[serde(default)]
    /// Sessions and the split.
    pub sessionize: SessionOptions,
    #[serde(default)]
    /// CBOW over the training sessions.
    pub word2vec: segue_word2vec::Params,
    #[serde(default)]
    /// Truncated SVD of the session x track matrix.
    pub lsa: segue_lsa::LsaParams,
    #[serde(default)]
    /// The acoustic VAE.
    pub vae: segue_vae::VaeParams,
    #[serde(default)]
    /// Sentence-BERT over lyrics, then PCA.
    pub lyrics: segue_lyrics::LyricsParams,
    #[serde(default)]
    /// Tag word vectors.
    pub tags: segue_tags::TagsParams,
    #[serde(default)]
    /// The models and their training.
    pub model: segue_model::ModelParams,
    #[serde(default)]
    /// The rule baselines.
    pub baselines: segue_baselines::BaselineParams,
    #[serde(default, skip_serializing_if = "Embeddings::is_default")]
    /// What Word2Vec and LSA learn from.
    pub embeddings: Embeddings,
    /// Where the file was read from; relative paths are resolved against its folder.
    #[serde(skip)]
    pub path: PathBuf,
    /// The stage seeds ([`STAGE_SEEDS`]) the file left to `pipeline.seed`; `--set
    /// pipeline.seed=N` moves them with it.
    #[serde(skip)]
    pub seeded_by_pipeline: Vec<&'static str>,
    /// Whether `word2vec.threads` was `"auto"` (resolved to `pipeline.threads` on load).
    #[serde(skip)]
    pub word2vec_threads_auto: bool,
}

/// Which protocol a pipeline follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// DESIGN.md: per-user chronological split, everything fitted on training sessions only.
    #[default]
    LeakFree,
    /// The paper's public code (yudhik11/MultimodalMusicRecsys, run.py): see [`AUTHORS_CODE`].
    AuthorsCode,
}

/// The departures of the authors' public code from the paper's protocol, as pipeline keys
/// (README, "The authors'-code protocol"): `protocol = "authors-code"` sets each one the
/// file does not set itself, so each can also be tried alone on a leak-free pipeline.
pub const AUTHORS_CODE: [(&str, &str); 13] = [
    // train_test_split(sessions, test_size=0.3, random_state=42): all users pooled.
    ("sessionize.split", "\"random-sessions\""),
    ("sessionize.split_seed", "42"),
    // Sessions cut into pieces of 4 after the split: 3 inputs, the 4th predicted.
    ("sessionize.chunk_len", "4"),
    ("sessionize.min_input_len", "3"),
    ("model.max_input_len", "3"),
    // Word2Vec(sentences) over every session, test included.
    ("embeddings.sessions", "\"all\""),
    // Adam(lr=2e-5), batch 64, 10 x 3 passes, no validation share (test printed every 3).
    ("model.lr", "2e-5"),
    ("model.batch_size", "64"),
    ("model.gru4rec_batch_size", "64"),
    ("model.epochs", "30"),
    ("model.patience", "0"),
    ("sessionize.validation_share", "0.0"),
    // Every pretrained row rescaled to [0, 1] on its own (utils.rep).
    ("model.pretrained_scale", "\"row-min-max\""),
];

/// segue's defaults where they depart from the stage crates' own (the paper's settings): the
/// model settings chosen on validation (report/tuning.md), the baselines' neighbourhood and
/// Word2Vec's threads.
/// A pipeline gets each one its file does not set, so a file that leaves out `[model]` trains
/// like pipelines/default.toml (a test holds the two equal); `pipelines/paper-settings.toml`
/// states the paper's values instead.
pub const SEGUE_DEFAULTS: [(&str, &str); 10] = [
    // segue-word2vec alone defaults to one (deterministic) thread; the pipeline to every core
    // (Hogwild, as gensim).
    ("word2vec.threads", "\"auto\""),
    // Chosen on validation (report/tuning.md): the fused model gains at 128 (and trains
    // faster), GRU4Rec loses.
    ("model.batch_size", "128"),
    ("model.gru4rec_batch_size", "32"),
    ("model.epochs", "20"),
    ("model.patience", "2"),
    ("model.seeds", "3"),
    ("model.repeat", "true"),
    ("model.pretrained_scale", "\"match\""),
    // After validation picks the epochs, the test's model also learns from the validation
    // share: each user's most recent training sessions (RecBole's peer does the same).
    ("model.refit", "true"),
    ("baselines.sknn.k", "50"),
];

/// The seeds `pipeline.seed` gives when a file sets it and the stage does not set its own.
pub const STAGE_SEEDS: [&str; 4] = ["word2vec.seed", "lsa.seed", "vae.seed", "model.seed"];

/// What the session embeddings (Word2Vec, LSA) learn from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Embeddings {
    /// The sessions they are fitted on.
    pub sessions: EmbeddingSessions,
}

impl Embeddings {
    fn is_default(&self) -> bool {
        *self == Embeddings::default()
    }
}

/// The sessions Word2Vec and LSA are fitted on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EmbeddingSessions {
    /// Training sessions only (leak-free).
    #[default]
    Train,
    /// Every session, test included (the authors' code; a leak: test sessions' co-occurrences
    /// shape the embeddings, and test-only tracks get vectors).
    All,
}

impl EmbeddingSessions {
    /// The splits read.
    pub fn splits(self) -> &'static [segue_sessions::Split] {
        use segue_sessions::Split;
        match self {
            EmbeddingSessions::Train => &[Split::Train],
            EmbeddingSessions::All => &[Split::Train, Split::Valid, Split::Test],
        }
    }
}

/// The `[pipeline]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineMeta {
    /// Names the cache and report folders.
    pub name: String,
    /// Artifact cache; relative to the pipeline file. Default: `.segue/` beside the file.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Seed of every seeded stage.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Threads of every stage: `"auto"` (the default: every core this machine offers) or a
    /// count. `word2vec.threads = "auto"` follows it. Not part of any cache key (results do not
    /// depend on it, except Hogwild Word2Vec, whose own `threads` is in its key).
    #[serde(default)]
    pub threads: Threads,
    /// Model trainings that run at once (a model's seeds; the models of `reproduce`):
    /// `"auto"` (the default: one per thread, each on one thread) or a count n, each on
    /// `threads / n` threads. A training with none beside it runs on every thread. Running
    /// side by side spends the cores better than one training on all of them (its small
    /// products do not split well); results do not depend on it (not in any cache key).
    #[serde(default)]
    pub jobs: Threads,
}

/// A thread count: `"auto"` or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Threads {
    /// Every core ([`std::thread::available_parallelism`]).
    #[default]
    Auto,
    /// This many.
    Count(usize),
}

impl Threads {
    /// The number of threads this means on this machine.
    pub fn resolve(self) -> usize {
        match self {
            Threads::Auto => std::thread::available_parallelism().map_or(1, |n| n.get()),
            Threads::Count(n) => n,
        }
    }

    fn from_toml(value: &toml::Value) -> std::result::Result<Threads, String> {
        match value {
            toml::Value::String(s) if s == "auto" => Ok(Threads::Auto),
            toml::Value::Integer(n) if *n > 0 => Ok(Threads::Count(*n as usize)),
            other => Err(format!("threads = {other}: write \"auto\" or a positive count")),
        }
    }
}

impl Serialize for Threads {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Threads::Auto => s.serialize_str("auto"),
            Threads::Count(n) => s.serialize_u64(*n as u64),
        }
    }
}

impl<'de> Deserialize<'de> for Threads {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Threads::from_toml(&toml::Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Resolves `word2vec.threads = "auto"` to `pipeline.threads` on this machine; says whether it
/// was `"auto"` (so a later `--set pipeline.threads` moves it too).
fn resolve_word2vec_threads(doc: &mut toml::Table) -> Result<bool> {
    let auto =
        doc.get("word2vec").and_then(|w| w.get("threads")).and_then(|t| t.as_str()) == Some("auto");
    if auto {
        let threads = match doc.get("pipeline").and_then(|p| p.get("threads")) {
            Some(v) => Threads::from_toml(v).map_err(|e| anyhow::anyhow!("pipeline.{e}"))?,
            None => Threads::Auto,
        };
        set_key(doc, "word2vec.threads", toml::Value::Integer(threads.resolve() as i64), true)?;
    }
    Ok(auto)
}

fn default_seed() -> u64 {
    0
}

/// The `[dataset]` section: the logs and the content files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// What the data is, for the report.
    #[serde(default)]
    pub description: String,
    /// The listening logs.
    pub sources: Vec<SourceSpec>,
    /// Audio features CSV (Spotify's columns), optional.
    #[serde(default)]
    pub audio_features: Option<String>,
    /// Artist genres / tags CSV, optional.
    #[serde(default)]
    pub tags: Option<String>,
    /// Lyrics CSV or JSONL, optional.
    #[serde(default)]
    pub lyrics: Option<String>,
    /// Users CSV (user, k10), optional.
    #[serde(default)]
    pub users: Option<String>,
    /// `"tags"`: keep only plays of tracks that have tags before sessionizing (the paper's tag
    /// subset dataset). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Generate the dataset with segue-synth before ingest, when it is missing.
    #[serde(default)]
    pub synth: Option<SynthSpec>,
}

/// A synthetic dataset a pipeline generates for itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    /// segue-synth's preset.
    pub preset: segue_synth::Preset,
    #[serde(default)]
    /// Its seed.
    pub seed: u64,
    /// Output folder, relative to the pipeline file; the sources read from it.
    pub out: PathBuf,
}

impl Pipeline {
    /// This pipeline for one model run: `model.seed` set to `seed` (the pipeline's own when
    /// `None`) and no seed list.
    pub fn for_model_seed(&self, seed: Option<u64>) -> Pipeline {
        let mut p = self.clone();
        p.model = self.model.for_seed(seed.unwrap_or(self.model.seed));
        p
    }

    /// Reads and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading pipeline file {}", path.display()))?;
        let mut doc: toml::Table = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("pipeline file {}: {e}", path.display()))?;
        let seeded_by_pipeline = fill_defaults(&mut doc)?;
        let word2vec_threads_auto = resolve_word2vec_threads(&mut doc)
            .with_context(|| format!("pipeline file {}", path.display()))?;
        let mut p: Pipeline = toml::Value::Table(doc)
            .try_into()
            .map_err(|e| anyhow::anyhow!("pipeline file {}: {e}", path.display()))?;
        p.path = path.canonicalize().with_context(|| format!("resolving {}", path.display()))?;
        p.seeded_by_pipeline = seeded_by_pipeline;
        p.word2vec_threads_auto = word2vec_threads_auto;
        p.validate().with_context(|| format!("pipeline file {}", path.display()))?;
        Ok(p)
    }

    fn validate(&self) -> Result<()> {
        if self.pipeline.name.is_empty()
            || !self.pipeline.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("pipeline.name = {:?}: use letters, digits, '-', '_' or '.'", self.pipeline.name);
        }
        if self.dataset.sources.is_empty() {
            bail!("dataset.sources: at least one [[dataset.sources]] is needed");
        }
        self.sessionize.validate()?;
        self.word2vec.validate()?;
        self.lsa.validate()?;
        self.vae.validate()?;
        self.model.validate()?;
        self.baselines.validate()?;
        for (name, v) in [("word2vec.alpha", self.word2vec.alpha)] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("{name} = {v}: must be a positive number");
            }
        }
        Ok(())
    }

    /// This pipeline with keys overridden: `("model.lr", 0.003)` sets `lr` in `[model]`. The
    /// result is checked like a file (an unknown key or a bad value is an error naming it).
    pub fn with_overrides(&self, overrides: &[(String, toml::Value)]) -> Result<Pipeline> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let toml::Value::Table(mut doc) =
            toml::Value::try_from(self).context("the pipeline as TOML")?
        else {
            bail!("the pipeline is not a TOML table");
        };
        for (key, value) in overrides {
            set_key(&mut doc, key, value.clone(), true)?;
            if key == "pipeline.seed" {
                for stage_seed in &self.seeded_by_pipeline {
                    if !overrides.iter().any(|(k, _)| k == stage_seed) {
                        set_key(&mut doc, stage_seed, value.clone(), true)?;
                    }
                }
            }
            let word2vec_set = overrides.iter().any(|(k, _)| k == "word2vec.threads");
            if key == "pipeline.threads" && self.word2vec_threads_auto && !word2vec_set {
                set_key(&mut doc, "word2vec.threads", "auto".into(), true)?;
            }
        }
        let word2vec_threads_auto = resolve_word2vec_threads(&mut doc)?
            || (self.word2vec_threads_auto
                && !overrides.iter().any(|(k, _)| k == "word2vec.threads"));
        let mut p: Pipeline = toml::Value::Table(doc).try_into().map_err(|e| {
            anyhow::anyhow!(
                "overriding {}: {e}",
                overrides.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
        p.path = self.path.clone();
        p.seeded_by_pipeline = self.seeded_by_pipeline.clone();
        p.word2vec_threads_auto = word2vec_threads_auto;
        p.validate()?;
        Ok(p)
    }

    /// `--set KEY=VALUE` arguments (TOML values) applied as [`Pipeline::with_overrides`].
    pub fn with_sets(&self, sets: &[String]) -> Result<Pipeline> {
        let overrides = sets
            .iter()
            .map(|s| {
                let (key, value) = s
                    .split_once('=')
                    .with_context(|| format!("--set {s}: write KEY=VALUE, e.g. model.lr=0.003"))?;
                // A bare word is a string: `--set sessionize.split=random-sessions`.
                let value = parse_value(value.trim())
                    .unwrap_or_else(|_| toml::Value::String(value.trim().to_string()));
                Ok((key.trim().to_string(), value))
            })
            .collect::<Result<Vec<_>>>()?;
        self.with_overrides(&overrides)
    }

    /// The threads stages run on ([`PipelineMeta::threads`] on this machine).
    pub fn threads(&self) -> usize {
        self.pipeline.threads.resolve()
    }

    /// How many model trainings run at once ([`PipelineMeta::jobs`]), at most one per thread.
    pub fn jobs(&self) -> usize {
        let threads = self.threads();
        match self.pipeline.jobs {
            Threads::Auto => threads,
            Threads::Count(n) => n.min(threads),
        }
    }

    /// The folder relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A dataset content file, resolved against the pipeline file's folder.
    pub fn content_file(&self, file: &Option<String>) -> Option<PathBuf> {
        file.as_ref().map(|f| self.base_dir().join(f))
    }

    /// The pipeline's cache folder.
    pub fn cache_dir(&self) -> PathBuf {
        match &self.pipeline.cache_dir {
            Some(d) => {
                segue_sessions::clean_path(&self.base_dir().join(d).join(&self.pipeline.name))
            }
            None => self.base_dir().join(".segue").join(&self.pipeline.name),
        }
    }
}

/// Fills the keys a pipeline file does not set, in order: the authors'-code departures (when
/// `protocol = "authors-code"`), segue's defaults ([`SEGUE_DEFAULTS`]), and, when the file sets
/// `pipeline.seed`, every stage seed it does not set itself. Returns those stage seeds.
fn fill_defaults(doc: &mut toml::Table) -> Result<Vec<&'static str>> {
    if doc.get("protocol").and_then(|v| v.as_str()) == Some("authors-code") {
        for (key, value) in AUTHORS_CODE {
            set_key(doc, key, parse_value(value)?, false)?;
        }
    }
    for (key, value) in SEGUE_DEFAULTS {
        set_key(doc, key, parse_value(value)?, false)?;
    }
    let seed = doc.get("pipeline").and_then(|p| p.get("seed")).cloned();
    let mut seeded = Vec::new();
    if let Some(seed) = seed {
        for key in STAGE_SEEDS {
            let (section, name) = key.split_once('.').context("a stage seed key")?;
            let set = doc.get(section).and_then(|t| t.get(name)).is_some();
            if !set {
                set_key(doc, key, seed.clone(), false)?;
                seeded.push(key);
            }
        }
    }
    Ok(seeded)
}

/// Sets `section.key` in a TOML document; `replace = false` keeps a value already there.
fn set_key(doc: &mut toml::Table, key: &str, value: toml::Value, replace: bool) -> Result<()> {
    let parts: Vec<&str> = key.split('.').collect();
    let (last, path) = parts.split_last().context("an empty key")?;
    let mut table = doc;
    for part in path {
        table = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .with_context(|| format!("`{key}`: `{part}` is not a section"))?;
    }
    if replace || !table.contains_key(*last) {
        table.insert(last.to_string(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Pipeline> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text)?;
        Pipeline::load(&path)
    }

    const BASE: &str = "[pipeline]\nname = \"t\"\n[[dataset.sources]]\npaths = [\"x\"]\n";

    #[test]
    fn threads_default_to_every_core_and_word2vec_follows_them() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let p = load(BASE).unwrap();
        assert_eq!((p.pipeline.threads, p.threads()), (Threads::Auto, cores));
        assert_eq!(p.word2vec.threads, cores, "word2vec.threads = \"auto\" by default");
        // Overriding the pipeline's threads moves Word2Vec's with them ...
        let one = p.with_sets(&["pipeline.threads=1".into()]).unwrap();
        assert_eq!((one.threads(), one.word2vec.threads), (1, 1));
        let back = one.with_sets(&["pipeline.threads=\"auto\"".into()]).unwrap();
        assert_eq!(back.word2vec.threads, cores);
        // ... unless Word2Vec states its own, in the file or in the same overrides.
        let own = load(&format!("{BASE}[word2vec]\nthreads = 3\n")).unwrap();
        let moved = own.with_sets(&["pipeline.threads=1".into()]).unwrap();
        assert_eq!((moved.threads(), moved.word2vec.threads), (1, 3));
        let both =
            p.with_sets(&["pipeline.threads=1".into(), "word2vec.threads=4".into()]).unwrap();
        assert_eq!(both.word2vec.threads, 4);
        let text = BASE.replace("name = \"t\"", "name = \"t\"\nthreads = 5");
        let five = load(&text).unwrap();
        assert_eq!((five.threads(), five.word2vec.threads), (5, 5));
        for bad in ["0", "-2", "\"many\""] {
            let text = BASE.replace("name = \"t\"", &format!("name = \"t\"\nthreads = {bad}"));
            let e = format!("{:#}", load(&text).unwrap_err());
            assert!(e.contains("\"auto\" or a positive count"), "{bad}: {e}");
        }
    }

    #[test]
    fn authors_code_sets_its_departures_under_the_files_own_keys() {
        let leak_free = load(BASE).unwrap();
        assert_eq!(leak_free.protocol, Protocol::LeakFree);
        assert_eq!(leak_free.sessionize.split, segue_sessions::SplitRule::PerUserChronological);
        assert_eq!(leak_free.embeddings.sessions, EmbeddingSessions::Train);

        let text = format!("protocol = \"authors-code\"\n{BASE}[model]\nepochs = 5\n");
        let p = load(&text).unwrap();
        assert_eq!(p.protocol, Protocol::AuthorsCode);
        assert_eq!(p.sessionize.split, segue_sessions::SplitRule::RandomSessions);
        assert_eq!((p.sessionize.chunk_len, p.sessionize.validation_share), (4, 0.0));
        assert_eq!(p.sessionize.min_input_len, 3, "only the 4th track of a piece is predicted");
        assert_eq!(p.embeddings.sessions, EmbeddingSessions::All);
        assert_eq!((p.model.lr, p.model.batch_size, p.model.max_input_len), (2e-5, 64, 3));
        assert_eq!(p.model.pretrained_scale, segue_model::PretrainedScale::RowMinMax);
        assert_eq!(p.model.epochs, 5, "the file's own key wins");
        // Every departure is a real key: the preset alone, applied as overrides, gives the same.
        let sets: Vec<String> = AUTHORS_CODE.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let one_by_one = leak_free.with_sets(&sets).unwrap();
        assert_eq!(one_by_one.sessionize, p.sessionize);
        assert_eq!(one_by_one.embeddings, p.embeddings);
        assert_eq!(
            one_by_one.model.for_seed(0),
            segue_model::ModelParams { epochs: 30, ..p.model.for_seed(0) }
        );
    }

    /// The stage sections of a pipeline, as TOML.
    fn stages(p: &Pipeline) -> toml::Table {
        let toml::Value::Table(mut t) = toml::Value::try_from(p).unwrap() else { panic!() };
        for key in ["protocol", "pipeline", "dataset"] {
            t.remove(key);
        }
        t
    }

    #[test]
    fn the_default_pipeline_file_states_the_schemas_defaults() {
        let file = crate::tests_workspace_root().join("pipelines/default.toml");
        let full = Pipeline::load(&file).unwrap();
        // The same dataset, every stage key left out (and no pipeline.seed, which would set
        // the stage seeds the file leaves out).
        let mut doc: toml::Table =
            toml::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        doc.retain(|k, _| k == "pipeline" || k == "dataset");
        doc["pipeline"].as_table_mut().unwrap().remove("seed");
        let minimal = load(&toml::to_string(&doc).unwrap()).unwrap();
        let (a, b) = (stages(&full), stages(&minimal));
        for (section, value) in &a {
            assert_eq!(Some(value), b.get(section), "[{section}] of pipelines/default.toml");
        }
        assert_eq!(a.len(), b.len());
        // The paper's file keeps the paper's model: no departure of segue's defaults leaks in.
        let paper =
            Pipeline::load(&crate::tests_workspace_root().join("pipelines/paper-settings.toml"))
                .unwrap();
        assert!(!paper.model.repeat);
        assert_eq!(paper.model.pretrained_scale, segue_model::PretrainedScale::None);
        assert_eq!((paper.model.epochs, paper.model.patience), (2, 0));
        assert_eq!(paper.baselines, segue_baselines::BaselineParams::default());
    }

    #[test]
    fn pipeline_seed_seeds_every_stage_that_does_not_set_its_own() {
        let unseeded = load(BASE).unwrap();
        assert_eq!(unseeded.word2vec.seed, segue_word2vec::Params::default().seed);
        assert!(unseeded.seeded_by_pipeline.is_empty());

        let text = BASE.replace("name = \"t\"", "name = \"t\"\nseed = 7") + "[lsa]\nseed = 3\n";
        let p = load(&text).unwrap();
        assert_eq!((p.word2vec.seed, p.lsa.seed, p.vae.seed, p.model.seed), (7, 3, 7, 7));
        let q = p.with_sets(&["pipeline.seed=9".into(), "vae.seed=1".into()]).unwrap();
        assert_eq!((q.word2vec.seed, q.lsa.seed, q.vae.seed, q.model.seed), (9, 3, 1, 9));
        assert_eq!(q.pipeline.seed, 9);
    }

    #[test]
    fn sets_take_bare_words_as_strings_and_name_bad_keys() {
        let p = load(BASE).unwrap();
        let q = p.with_sets(&["sessionize.split=random-sessions".into()]).unwrap();
        assert_eq!(q.sessionize.split, segue_sessions::SplitRule::RandomSessions);
        let e = p.with_sets(&["sessionize.splat=1".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("splat"), "{e:#}");
        let e = p.with_sets(&["model.lr".into()]).unwrap_err();
        assert!(format!("{e:#}").contains("KEY=VALUE"), "{e:#}");
    }
}
