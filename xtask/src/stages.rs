//! The stages of the pipeline: how each one's recipe is made and how it runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use segue_sessions::{Ingested, SessionStats, SkipReport, ingest, sessionize};

use crate::cache::{Cache, Check, Manifest, Recipe, hash_file};
use crate::pipeline::Pipeline;
use crate::progress::Bars;

/// Stages in dependency order.
pub const STAGES: &[&str] = &["ingest", "sessionize", "word2vec", "lsa"];

/// Bumped when a stage's output changes for the same inputs and parameters.
fn code_version(stage: &str) -> String {
    let v = match stage {
        "ingest" => 2,
        "sessionize" => 2,
        "word2vec" => 1,
        "lsa" => 1,
        _ => 0,
    };
    format!("{stage}-v{v}")
}

fn upstream(stage: &str) -> &'static [&'static str] {
    match stage {
        "sessionize" => &["ingest"],
        "word2vec" | "lsa" => &["sessionize"],
        _ => &[],
    }
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

/// Runs stages and remembers their keys.
pub struct Runner<'a> {
    pub pipeline: &'a Pipeline,
    pub cache: Cache,
    keys: BTreeMap<String, String>,
    input_hashes: Option<BTreeMap<String, String>>,
}

impl<'a> Runner<'a> {
    pub fn new(pipeline: &'a Pipeline) -> Self {
        Runner {
            pipeline,
            cache: Cache { root: pipeline.cache_dir() },
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

    /// The recipe of a stage; its upstream stages must have been resolved first.
    pub fn recipe(&mut self, stage: &str) -> Result<Recipe> {
        let p = self.pipeline;
        let (params, files) = match stage {
            "ingest" => (
                serde_json::json!({ "sources": p.dataset.sources, "ingest": p.ingest }),
                self.input_files()?,
            ),
            "sessionize" => (serde_json::to_value(&p.sessionize)?, BTreeMap::new()),
            "word2vec" => (serde_json::to_value(&p.word2vec)?, BTreeMap::new()),
            "lsa" => (serde_json::to_value(&p.lsa)?, BTreeMap::new()),
            other => bail!("no recipe for stage {other}"),
        };
        let mut up = BTreeMap::new();
        for u in upstream(stage) {
            let key = self
                .keys
                .get(*u)
                .with_context(|| format!("stage {u} was not resolved before {stage}"))?;
            up.insert(u.to_string(), key.clone());
        }
        Ok(Recipe {
            stage: stage.into(),
            code_version: code_version(stage),
            params,
            upstream: up,
            files,
        })
    }

    /// Records a stage's key without running it (for `status`).
    pub fn note_key(&mut self, stage: &str, key: &str) {
        self.keys.insert(stage.into(), key.into());
    }

    /// The artifact folder of a resolved stage.
    pub fn dir(&self, stage: &str) -> Result<PathBuf> {
        let key = self.keys.get(stage).with_context(|| format!("stage {stage} has not run"))?;
        Ok(self.cache.stage_dir(stage, key))
    }

    /// Runs one stage (its upstream must have run), or skips it when its artifact is fresh.
    pub fn run(&mut self, stage: &str, force: bool) -> Result<Manifest> {
        let recipe = self.recipe(stage)?;
        let key = recipe.key();
        self.keys.insert(stage.into(), key.clone());
        match self.cache.check(stage, &key) {
            Check::Fresh(m) if !force => {
                eprintln!("{stage:>12}: fresh, skipped (key {key}, built in {:.1} s)", m.seconds);
                return Ok(m);
            }
            Check::Corrupt(why) => {
                eprintln!("{stage:>12}: cached artifact is damaged ({why}); recomputing")
            }
            Check::Fresh(_) => eprintln!("{stage:>12}: forced; recomputing"),
            Check::Missing => {
                let why = match self.cache.last_recipe(stage) {
                    Some(old) if old != recipe => {
                        format!(" ({})", recipe.differences(&old).join("; "))
                    }
                    _ => String::new(),
                };
                eprintln!("{stage:>12}: running{why}");
            }
        }
        let started = Instant::now();
        let manifest = match stage {
            "ingest" => self.cache.build(&recipe, |dir| run_ingest(self.pipeline, dir)),
            "sessionize" => {
                let ingest_dir = self.dir("ingest")?;
                self.cache.build(&recipe, |dir| run_sessionize(self.pipeline, &ingest_dir, dir))
            }
            "word2vec" => {
                let sessions_dir = self.dir("sessionize")?;
                self.cache.build(&recipe, |dir| run_word2vec(self.pipeline, &sessions_dir, dir))
            }
            "lsa" => {
                let sessions_dir = self.dir("sessionize")?;
                self.cache.build(&recipe, |dir| run_lsa(self.pipeline, &sessions_dir, dir))
            }
            other => bail!("stage {other} cannot run"),
        }
        .with_context(|| format!("stage {stage}"))?;
        eprintln!("{stage:>12}: done in {:.2} s", started.elapsed().as_secs_f64());
        Ok(manifest)
    }
}

/// The report ingest writes beside its artifacts.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct IngestReport {
    pub files: Vec<PathBuf>,
    pub records: u64,
    pub events: u64,
    pub skipped: serde_json::Value,
}

fn run_ingest(p: &Pipeline, dir: &Path) -> Result<serde_json::Value> {
    let bars = Bars::default();
    let mut out = ingest(&p.dataset.sources, p.base_dir(), &p.ingest, &bars)?;
    out.write(dir)?;
    let report = IngestReport {
        files: out.files.clone(),
        records: out.records,
        events: out.events.height() as u64,
        skipped: serde_json::to_value(&out.skips)?,
    };
    std::fs::write(dir.join("ingest_report.json"), serde_json::to_vec_pretty(&report)?)?;
    print_skips(&out.skips, out.records);
    Ok(
        serde_json::json!({ "records": report.records, "events": report.events, "skipped": out.skips.total() }),
    )
}

/// The end-of-stage account of skipped records: a count and first examples per reason.
pub fn print_skips(skips: &SkipReport, records: u64) {
    if skips.total() == 0 {
        eprintln!("{:>12}  all {records} records kept", "");
        return;
    }
    eprintln!("{:>12}  {records} records read, {} not kept:", "", skips.total());
    for (reason, c) in &skips.reasons {
        eprintln!("{:>14}{:>9}  {}", "", c.count, reason.describe());
        for ex in &c.examples {
            eprintln!("{:>25}e.g. {}, {}: {}", "", ex.file.display(), ex.position, ex.detail);
        }
    }
}

fn run_sessionize(p: &Pipeline, ingest_dir: &Path, dir: &Path) -> Result<serde_json::Value> {
    let (events, keys) = Ingested::read_frames(ingest_dir)?;
    let mut out = sessionize(&events, &keys, &p.sessionize)?;
    out.write(dir)?;
    let s: &SessionStats = &out.stats;
    Ok(serde_json::json!({
        "users": s.users, "sessions": s.sessions, "unique_songs": s.unique_songs,
        "events": s.events, "mean_session_length": s.mean_session_length,
    }))
}

fn run_word2vec(p: &Pipeline, sessions_dir: &Path, dir: &Path) -> Result<serde_json::Value> {
    let vocab = segue_sessions::read_vocab(&sessions_dir.join("tracks.parquet"))?;
    let corpus = segue_sessions::read_split(
        &sessions_dir.join("sessions.parquet"),
        segue_sessions::Split::Train,
    )?;
    let model = segue_word2vec::train_with_progress(
        &segue_word2vec::Corpus::new(&corpus.flat, &corpus.offsets, vocab.len())?,
        &p.word2vec,
        &Bars::default(),
    )?;
    model.to_table(vocab.len(), &vocab.hash())?.save(&dir.join("w2v.safetensors"))?;
    model.save_word2vec_binary(&dir.join("w2v.bin"), |t| t.to_string())?;
    let st = &model.stats;
    let summary = serde_json::json!({
        "sentences": corpus.offsets.len() - 1,
        "tracks_with_vectors": model.vocab.len(),
        "tracks": vocab.len(),
        "raw_words": st.raw_words,
        "effective_words": st.effective_words,
        "train_seconds": st.seconds,
        "words_per_second": st.words_per_second(),
        "threads": p.word2vec.threads,
        "deterministic": p.word2vec.threads == 1,
    });
    std::fs::write(dir.join("word2vec_report.json"), serde_json::to_vec_pretty(&summary)?)?;
    eprintln!(
        "{:>12}  {} of {} tracks have vectors; {:.2} M raw words/s over {} epochs ({} threads{})",
        "",
        model.vocab.len(),
        vocab.len(),
        st.words_per_second() / 1e6,
        p.word2vec.epochs,
        p.word2vec.threads,
        if p.word2vec.threads == 1 { ", deterministic" } else { ", Hogwild" }
    );
    Ok(summary)
}

fn run_lsa(p: &Pipeline, sessions_dir: &Path, dir: &Path) -> Result<serde_json::Value> {
    let vocab = segue_sessions::read_vocab(&sessions_dir.join("tracks.parquet"))?;
    let corpus = segue_sessions::read_split(
        &sessions_dir.join("sessions.parquet"),
        segue_sessions::Split::Train,
    )?;
    // Training tracks come first in the vocabulary: the columns are ids 0..train_tracks.
    let train_tracks = corpus.flat.iter().max().map_or(0, |&m| m as usize + 1);
    let started = Instant::now();
    let counts =
        segue_lsa::CountMatrix::from_sessions(&corpus.flat, &corpus.offsets, train_tracks)?;
    let build_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{:>12}  {} training sessions x {} tracks, {} entries",
        "",
        counts.rows,
        counts.cols,
        counts.nnz()
    );
    // A corpus smaller than the embedding size gets as many components as it has; the rest of
    // the table's columns are zero, so the model's embedding size stays the same.
    let possible = counts.rows.min(counts.cols);
    let params = segue_lsa::LsaParams { dim: p.lsa.dim.min(possible), ..p.lsa.clone() };
    if params.dim < p.lsa.dim {
        eprintln!(
            "{:>12}  warning: only {} components are possible (lsa.dim = {}); the other columns are zero",
            "", params.dim, p.lsa.dim
        );
    }
    let svd = segue_lsa::randomized_svd_with_progress(&counts, &params, &Bars::default())?;
    let svd_seconds = started.elapsed().as_secs_f64() - build_seconds;
    svd.to_table(vocab.len(), p.lsa.dim, &vocab.hash(), p.lsa.scale == "sigma")?
        .save(&dir.join("lsa.safetensors"))?;
    let explained: f64 = svd.explained_variance_ratio.iter().sum();
    let summary = serde_json::json!({
        "sessions": counts.rows,
        "train_tracks": counts.cols,
        "tracks": vocab.len(),
        "nnz": counts.nnz(),
        "components": params.dim,
        "build_seconds": build_seconds,
        "svd_seconds": svd_seconds,
        "singular_values": svd.singular_values,
        "explained_variance_ratio_sum": explained,
    });
    std::fs::write(dir.join("lsa_report.json"), serde_json::to_vec_pretty(&summary)?)?;
    eprintln!(
        "{:>12}  {} of {} tracks have vectors; {} components explain {:.1}% of the variance",
        "",
        counts.cols,
        vocab.len(),
        params.dim,
        100.0 * explained
    );
    Ok(summary)
}
