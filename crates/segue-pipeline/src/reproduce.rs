//! Whole-pipeline runs: the synthetic datasets a pipeline names, `reproduce` (every stage,
//! then the report) and `status` (what the cache holds).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use segue_core::Progress;
use segue_sessions::Split;

use crate::cache::Check;
use crate::pipeline::Pipeline;
use crate::stages::{Runner, STAGES, split_instance};
use crate::{html_report, model_stages, report, user_study};

/// What [`reproduce`] wrote.
#[derive(Debug, Clone)]
pub struct Reproduced {
    /// Tables I-IV and the paired tests, as markdown.
    pub tables: String,
    /// The stage times, as markdown.
    pub timing: String,
    /// `report/report.md` in the cache.
    pub markdown: PathBuf,
    /// `report/index.html` in the cache.
    pub html: PathBuf,
    /// Wall-clock seconds of the whole run.
    pub seconds: f64,
}

/// Generates and writes a synthetic dataset, reporting its size and time.
pub fn synth(cfg: &segue_synth::SynthConfig, out: &Path, log: &dyn Progress) -> Result<()> {
    let t = Instant::now();
    let data = segue_synth::generate(cfg);
    let generated = t.elapsed().as_secs_f64();
    let summary = data.write(out)?;
    log.note(&format!(
        "synth: {} listens of {} users over {} tracks ({} planted sessions) in {}: generated in {generated:.1} s, written in {:.1} s",
        summary.listens,
        cfg.users,
        cfg.tracks,
        data.planted_sessions,
        out.display(),
        t.elapsed().as_secs_f64() - generated
    ));
    Ok(())
}

/// Makes sure a pipeline's synthetic dataset exists with its configuration (generated when it
/// is missing or was made with other settings).
pub fn ensure_synth(p: &Pipeline, log: &dyn Progress) -> Result<()> {
    let Some(spec) = &p.dataset.synth else { return Ok(()) };
    let out = segue_sessions::clean_path(&p.base_dir().join(&spec.out));
    let cfg = segue_synth::SynthConfig::preset(spec.preset, spec.seed);
    let meta = std::fs::read_to_string(out.join("synth.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if meta.is_some_and(|m| m["config"] == serde_json::to_value(&cfg).unwrap_or_default()) {
        return Ok(());
    }
    log.note(&format!(
        "synth: generating the {:?} preset (seed {}) into {}",
        spec.preset,
        spec.seed,
        out.display()
    ));
    synth(&cfg, &out, log)
}

/// Runs every stage of the pipeline that applies to its dataset (fresh artifacts reused;
/// `force`: a stage to recompute, or `"all"`) and writes the report: Tables I-IV, the paired
/// tests and the stage times as markdown and CSV, and `index.html` with its figures, under
/// `report/` in the cache.
pub fn reproduce(p: &Pipeline, force: Option<&str>, log: &dyn Progress) -> Result<Reproduced> {
    let started = Instant::now();
    log.note(&format!(
        "reproduce: pipeline {} ({}), cache {}, {} threads",
        p.pipeline.name,
        p.path.display(),
        p.cache_dir().display(),
        p.threads()
    ));
    let mut runner = Runner::new(p, log);
    let mut times = Vec::new();
    let mut skipped: BTreeMap<segue_model::Variant, String> = BTreeMap::new();
    let mut study: Option<Result<segue_model::Variant, String>> = None;
    let forced = |stage: &str| matches!(force, Some("all")) || force == Some(stage);
    // The models' trainings run side by side (pipeline.jobs), as one group.
    let mut trainings: Vec<&str> = Vec::new();
    let mut trainings_wall = 0.0;
    for stage in STAGES {
        let model_training = matches!(model_stages::variant_of(stage), Some((true, _)));
        if !model_training && !trainings.is_empty() {
            trainings_wall += run_trainings(&mut runner, &mut trainings, &forced, &mut times)?;
        }
        if crate::stages::is_study(stage) {
            let dir_of = |s: &str| runner.dir(s);
            let outcome = match &study {
                Some(o) => o.clone(),
                None => user_study::study_variant(&dir_of)?,
            };
            study = Some(outcome.clone());
            if let Err(why) = outcome {
                if *stage == "train-user-study" {
                    log.note(&format!("{stage:>31}: not applicable: {why}"));
                }
                continue;
            }
        }
        if let Some((is_train, v)) = model_stages::variant_of(stage) {
            if is_train {
                let why = model_stages::not_applicable(v, &|s: &str| runner.dir(s))?;
                if let Some(why) = why {
                    log.note(&format!("{stage:>31}: not applicable: {why}"));
                    skipped.insert(v, why);
                    continue;
                }
            } else if skipped.contains_key(&v) {
                continue;
            }
        }
        if model_training {
            trainings.push(stage);
            continue;
        }
        let t = Instant::now();
        let built: f64 = runner.run(stage, forced(stage))?.iter().map(|m| m.seconds).sum();
        times.push((*stage, t.elapsed().as_secs_f64(), built));
    }
    trainings_wall += run_trainings(&mut runner, &mut trainings, &forced, &mut times)?;
    let report_dir = p.cache_dir().join("report");
    let mut md = report::table1(
        &p.pipeline.name,
        &runner.dir("ingest")?,
        &runner.dir("sessionize")?,
        &report_dir,
    )?;
    let mut results = BTreeMap::new();
    for v in segue_model::Variant::ALL {
        let stage = format!("evaluate-{}", v.id());
        let outcome = if let Some(why) = skipped.get(&v) {
            report::Outcome::NotApplicable(why.clone())
        } else if STAGES.contains(&stage.as_str()) {
            let mut runs = Vec::new();
            for instance in runner.instances(&stage) {
                runs.push(report::Run::load(&runner.dir(&instance)?, split_instance(&instance).1)?);
            }
            report::Outcome::Runs(runs)
        } else {
            let missing = v.modalities().iter().map(|m| m.name()).find(|m| !STAGES.contains(m));
            report::Outcome::NotApplicable(format!(
                "segue has no `{}` stage yet",
                missing.unwrap_or("?")
            ))
        };
        results.insert(report::Method::Model(v), outcome);
    }
    for r in segue_baselines::Rule::ALL {
        let stage = format!("evaluate-{}", r.id());
        let run = report::Run::load(&runner.dir(&stage)?, None)?;
        results.insert(report::Method::Rule(r), report::Outcome::Runs(vec![run]));
    }
    md.push('\n');
    let test = report::TestSessions::read(p, &runner.dir("sessionize")?)?;
    md.push_str(&report::model_tables(p, &results, &test, &report_dir)?);
    let table4 = match study {
        Some(Ok(v)) => {
            let mut evaluations = Vec::new();
            for instance in runner.instances("evaluate-user-study") {
                evaluations.push((runner.dir(&instance)?, split_instance(&instance).1));
            }
            user_study::Study::load(&runner.dir("user-groups")?, v, &evaluations)?
        }
        Some(Err(why)) => user_study::Study::NotApplicable(why),
        None => user_study::Study::NotApplicable("the study did not run".into()),
    };
    md.push_str(&user_study::table4(&table4, &report_dir)?);
    let threads = match p.pipeline.threads {
        crate::pipeline::Threads::Auto => format!("{} (pipeline.threads = \"auto\")", p.threads()),
        crate::pipeline::Threads::Count(n) => n.to_string(),
    };
    let jobs = p.jobs();
    let mut timing = format!(
        "## Stage times\n\nThreads: {threads}; Word2Vec: {} ({}). Model trainings: up to {jobs} at once \
         (pipeline.jobs), each on {} thread(s), one with none beside it on {}; they took {:.1} s \
         of wall time in this run, and a training stage's time below is the sum of its seeds'.\n\n\
         | stage | this run (s) | when built (s) |\n|---|---:|---:|\n",
        p.word2vec.threads,
        if p.word2vec.threads == 1 { "deterministic" } else { "Hogwild" },
        (p.threads() / jobs.max(1)).max(1),
        p.threads(),
        trainings_wall
    );
    for (stage, now, built) in &times {
        timing.push_str(&format!("| {stage} | {now:.2} | {built:.2} |\n"));
    }
    if let Ok(tuning) = std::fs::read_to_string(report_dir.join("tuning.md")) {
        md.push('\n');
        md.push_str(&tuning);
    }
    let report = format!("# segue report: {}\n\n{md}\n{timing}", p.pipeline.name);
    segue_core::fs::write_bytes_atomic(&report_dir.join("report.md"), report.as_bytes())?;
    let sessions = segue_sessions::read_splits(
        &runner.dir("sessionize")?.join(crate::files::SESSIONS),
        &[Split::Train, Split::Valid, Split::Test],
    )?;
    let page = html_report::write(
        &report_dir,
        &html_report::Inputs {
            pipeline: &p.pipeline.name,
            markdown: &format!("{md}\n{timing}"),
            results: &results,
            histories: training_histories(&runner, &results)?,
            session_lengths: sessions.offsets.windows(2).map(|w| w[1] - w[0]).collect(),
            user_names: sessions.user_names,
            study: &table4,
        },
    )?;
    log.note(&format!(
        "reproduce: done in {:.1} s; report in {} and {}",
        started.elapsed().as_secs_f64(),
        report_dir.join("report.md").display(),
        page.display()
    ));
    Ok(Reproduced {
        tables: md,
        timing,
        markdown: report_dir.join("report.md"),
        html: page,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Runs the model trainings gathered in `stages` side by side (and empties it); each stage's
/// time (the sum of its seeds') goes into `times`. Returns their wall time.
fn run_trainings<'s>(
    runner: &mut Runner<'_>,
    stages: &mut Vec<&'s str>,
    forced: &dyn Fn(&str) -> bool,
    times: &mut Vec<(&'s str, f64, f64)>,
) -> Result<f64> {
    if stages.is_empty() {
        return Ok(0.0);
    }
    let t = Instant::now();
    let ran = runner.run_side_by_side(stages, forced)?;
    for s in stages.drain(..) {
        let mine = ran.iter().filter(|r| split_instance(&r.instance).0 == s);
        let (now, built) =
            mine.fold((0.0, 0.0), |(n, b), r| (n + r.seconds, b + r.manifest.seconds));
        times.push((s, now, built));
    }
    Ok(t.elapsed().as_secs_f64())
}

/// Each trained model's epochs (train.jsonl), one list per seed.
fn training_histories(
    runner: &Runner,
    results: &BTreeMap<report::Method, report::Outcome>,
) -> Result<BTreeMap<report::Method, Vec<Vec<segue_model::Epoch>>>> {
    let mut out = BTreeMap::new();
    for (method, outcome) in results {
        let (report::Method::Model(v), report::Outcome::Runs(_)) = (method, outcome) else {
            continue;
        };
        let mut seeds = Vec::new();
        for instance in runner.instances(&format!("train-{}", v.id())) {
            let file = runner.dir(&instance)?.join("train.jsonl");
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let epochs = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<std::result::Result<Vec<segue_model::Epoch>, _>>()
                .with_context(|| format!("parsing {}", file.display()))?;
            seeds.push(epochs);
        }
        out.insert(*method, seeds);
    }
    Ok(out)
}

/// Every stage instance of the pipeline with its state in the cache, as `status` shows them:
/// fresh, stale (and why), partial (a resumable training), missing; a header line first.
pub fn status(p: &Pipeline) -> Result<Vec<String>> {
    let log = segue_core::NoProgress;
    let mut runner = Runner::new(p, &log);
    let mut out = Vec::new();
    out.push(format!(
        "pipeline {} ({}), cache {}",
        p.pipeline.name,
        p.path.display(),
        p.cache_dir().display()
    ));
    if let Some(spec) = &p.dataset.synth
        && !p.base_dir().join(&spec.out).join("synth.json").exists()
    {
        out.push(format!(
            "     dataset: not generated yet (segue-synth {:?} preset, seed {}); `run` or `reproduce` generates it",
            spec.preset, spec.seed
        ));
    }
    let mut upstream_ok = true;
    for stage in STAGES {
        for instance in runner.instances(stage) {
            let shown = runner.shown(&instance);
            let recipe = match runner.recipe(&instance) {
                Ok(r) => r,
                Err(e) => {
                    out.push(format!("{shown:>31}: missing: its inputs are unavailable ({e:#})"));
                    return Ok(out);
                }
            };
            let key = recipe.key();
            runner.note_key(&instance, &key);
            let line = match runner.cache.check(stage, &key) {
                Check::Fresh(m) if upstream_ok => {
                    format!("fresh (key {key}, built in {:.1} s)", m.seconds)
                }
                Check::Fresh(_) => format!("fresh (key {key})"),
                Check::Corrupt(why) => {
                    upstream_ok = false;
                    format!("stale: artifact damaged ({why})")
                }
                Check::Missing => {
                    upstream_ok = false;
                    let partial = runner.cache.stage_dir(stage, &format!("{key}.partial"));
                    let checkpointed = segue_model::checkpoint_epochs(&partial);
                    match runner.cache.last_recipe(recipe.last_name()) {
                        _ if checkpointed.is_some() => {
                            let done = checkpointed.unwrap_or(0);
                            format!(
                                "partial: interrupted after epoch {done}, resumable from epoch {} (`run {stage}` continues it)",
                                done + 1
                            )
                        }
                        Some(old) => {
                            format!("stale: {} (key {key})", recipe.differences(&old).join("; "))
                        }
                        None => format!("missing: never run (key {key})"),
                    }
                }
            };
            out.push(format!("{shown:>31}: {line}"));
        }
    }
    Ok(out)
}
