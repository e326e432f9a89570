//! The paper's tables as markdown and CSV: Table I from the sessionize and ingest artifacts,
//! Tables II and III from the evaluate stages.

use std::fmt::Write as _;
use std::path::Path;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use segue_baselines::Rule;
use segue_model::Variant;

use segue_sessions::{SessionStats, SplitRule, UserStats};

use crate::stages::{IngestReport, files};

/// Reads a JSON file of the cache (a stage's report, metrics) into `T`; the error names the
/// file.
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// An unsigned count with thousands separators.
fn thousands(n: impl std::fmt::Display) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Table I and its details, in markdown; the CSV of the five paper columns beside it.
pub fn table1(
    pipeline_name: &str,
    ingest_dir: &Path,
    sessions_dir: &Path,
    out_dir: &Path,
) -> Result<String> {
    let stats: SessionStats = load(&sessions_dir.join(files::SESSION_STATS))?;
    let ingest: IngestReport = load(&ingest_dir.join(files::INGEST_REPORT))?;
    let mut md = String::new();
    writeln!(md, "## Table I: dataset statistics ({pipeline_name})\n")?;
    writeln!(md, "| users | sessions | unique songs | listening events | mean session length |")?;
    writeln!(md, "|---:|---:|---:|---:|---:|")?;
    writeln!(
        md,
        "| {} | {} | {} | {} | {:.2} |\n",
        thousands(stats.users),
        thousands(stats.sessions),
        thousands(stats.unique_songs),
        thousands(stats.events),
        stats.mean_session_length
    )?;
    writeln!(md, "{}\n", protocol_sentence(&stats))?;
    table1_counts(&mut md, &stats, &ingest)?;
    let csv_users = table1_users(&mut md, &stats.per_user)?;
    std::fs::create_dir_all(out_dir)?;
    let csv = format!(
        "users,sessions,unique_songs,events,mean_session_length\n{},{},{},{},{:.4}\n",
        stats.users, stats.sessions, stats.unique_songs, stats.events, stats.mean_session_length
    );
    segue_core::fs::write_bytes_atomic(&out_dir.join("table1.md"), md.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table1.csv"), csv.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table1_users.csv"), csv_users.as_bytes())?;
    Ok(md)
}

/// How sessions were cut and split, in one sentence.
fn protocol_sentence(stats: &SessionStats) -> String {
    let o = &stats.options;
    let split = match o.split {
        SplitRule::RandomSessions => format!(
            "every user's sessions pooled and drawn at random (seed {}, the authors' code: a leak), floor({:?} n) of them train",
            o.split_seed, o.train_share
        ),
        SplitRule::PerUserChronological => {
            format!("per user the first floor({:?} n) sessions train", o.train_share)
        }
    };
    let chunks = if o.chunk_len > 0 {
        format!(
            "; after the split each session is cut into pieces of {} plays, each a session ({} events in shorter remainders dropped)",
            o.chunk_len,
            thousands(stats.events_in_chunk_remainders)
        )
    } else {
        String::new()
    };
    let first = if o.min_input_len > 1 {
        format!(
            "; only targets with at least {} plays before them in their session are predicted, in training and test alike",
            o.min_input_len
        )
    } else {
        String::new()
    };
    format!(
        "Sessions: a gap of {} s or more starts a new one; sessions shorter than {} events are dropped; {split}, a {:?} share of those is held out for validation{chunks}{first}.",
        o.gap_seconds, o.min_session_len, o.validation_share
    )
}

/// The counts behind Table I: what ingest dropped, what the catalogue limits and the length
/// filter removed, the split.
fn table1_counts(md: &mut String, stats: &SessionStats, ingest: &IngestReport) -> Result<()> {
    writeln!(md, "| what | count |\n|---|---:|")?;
    writeln!(md, "| records read | {} |", thousands(ingest.records))?;
    if let Some(reasons) = ingest.skipped["reasons"].as_object() {
        for (reason, c) in reasons {
            let count = c["count"].as_u64().with_context(|| {
                format!("{}: skipped.reasons.{reason} has no count", files::INGEST_REPORT)
            })?;
            let reason = reason.replace('_', " ");
            writeln!(md, "| records dropped: {reason} | {} |", thousands(count))?;
        }
    }
    writeln!(md, "| events after ingest | {} |", thousands(ingest.events))?;
    if let Some(limits) = &stats.catalogue_limits {
        let o = &stats.options;
        let max = if o.max_tracks > 0 { thousands(o.max_tracks) } else { "-".into() };
        writeln!(
            md,
            "| tracks removed: under {} training plays / beyond the {max} most played (of {}) | {} / {} |",
            o.min_track_plays.max(1),
            thousands(limits.tracks_before),
            thousands(limits.tracks_rare),
            thousands(limits.tracks_beyond_max)
        )?;
        let removed = thousands(limits.events_removed);
        writeln!(md, "| events of removed tracks (every split) | {removed} |")?;
        if limits.tracks_now_under_min > 0 {
            writeln!(
                md,
                "| kept tracks the sessions cut again leave under that many training plays | {} |",
                thousands(limits.tracks_now_under_min)
            )?;
        }
    }
    let before = thousands(stats.sessions_before_filter);
    writeln!(md, "| sessions before the length filter | {before} |")?;
    writeln!(md, "| sessions dropped (too short) | {} |", thousands(stats.sessions_dropped_short))?;
    let dropped = thousands(stats.events_in_dropped_sessions);
    writeln!(md, "| events in dropped sessions | {dropped} |")?;
    let sessions = [stats.train_sessions, stats.valid_sessions, stats.test_sessions];
    let events = [stats.train_events, stats.valid_events, stats.test_events];
    for (what, [tr, va, te]) in [("sessions", sessions), ("events", events)] {
        let [tr, va, te] = [tr, va, te].map(thousands);
        writeln!(md, "| train / valid / test {what} | {tr} / {va} / {te} |")?;
    }
    writeln!(
        md,
        "| tracks seen in training / only outside it | {} / {} |",
        thousands(stats.train_tracks),
        thousands(stats.unseen_tracks)
    )?;
    writeln!(md, "| share of repeats within sessions | {:.1}% |\n", 100.0 * stats.repeat_share)?;
    Ok(())
}

/// The per-user table (in the markdown up to 20 users) and its CSV.
fn table1_users(md: &mut String, per_user: &[UserStats]) -> Result<String> {
    let mut csv = String::from(
        "user,sessions,train_sessions,valid_sessions,test_sessions,events,unique_tracks,repeat_share\n",
    );
    let counts = |u: &UserStats, sep: &str| {
        [u.sessions, u.train_sessions, u.valid_sessions, u.test_sessions, u.events, u.unique_tracks]
            .map(|n| n.to_string())
            .join(sep)
    };
    for u in per_user {
        writeln!(csv, "{},{},{:.4}", csv_field(&u.user), counts(u, ","), u.repeat_share)?;
    }
    if per_user.len() <= 20 {
        writeln!(
            md,
            "| user | sessions | train | valid | test | events | unique tracks | repeats |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for u in per_user {
            let repeats = 100.0 * u.repeat_share;
            writeln!(md, "| {} | {} | {repeats:.1}% |", u.user, counts(u, " | "))?;
        }
    } else {
        writeln!(md, "Per-user counts for {} users: table1_users.csv.", per_user.len())?;
    }
    Ok(csv)
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A row of the tables: one of the paper's models or a baseline rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    /// A model of segue-model.
    Model(Variant),
    /// A rule of segue-baselines.
    Rule(Rule),
}

impl Method {
    /// Its name in the tables.
    pub fn name(self) -> &'static str {
        match self {
            Method::Model(v) => v.paper_name(),
            Method::Rule(r) => r.name(),
        }
    }
}

/// What reproduce has for a variant.
#[derive(Debug)]
pub enum Outcome {
    /// Its test evaluations, one per seed (one for the deterministic rules).
    Runs(Vec<Run>),
    /// Why it did not run.
    NotApplicable(String),
}

/// One evaluation: its seed (none for a rule), its metrics and every prediction's rank.
#[derive(Debug)]
pub struct Run {
    pub seed: Option<u64>,
    pub report: segue_eval::Report,
    pub ranks: Vec<usize>,
}

impl Run {
    /// Reads an evaluate stage's metrics.json and ranks.json.
    pub fn load(dir: &Path, seed: Option<u64>) -> Result<Run> {
        Self::load_named(dir, "", seed)
    }

    /// Reads `<prefix>.metrics.json` and `<prefix>.ranks.json` (an empty prefix: the plain
    /// names), as a stage with several evaluations writes them.
    pub fn load_named(dir: &Path, prefix: &str, seed: Option<u64>) -> Result<Run> {
        #[derive(serde::Deserialize)]
        struct Ranks {
            ranks: Vec<usize>,
        }
        let name = |what: &str| {
            if prefix.is_empty() { what.to_string() } else { format!("{prefix}.{what}") }
        };
        let report: segue_eval::Report = load(&dir.join(name("metrics.json")))?;
        let ranks: Ranks = load(&dir.join(name("ranks.json")))?;
        if ranks.ranks.len() as u64 != report.all.count {
            anyhow::bail!(
                "{}: {} ranks for {} predictions",
                dir.display(),
                ranks.ranks.len(),
                report.all.count
            );
        }
        Ok(Run { seed, report, ranks: ranks.ranks })
    }
}

/// The test session of every test prediction, in example order: the clusters of paired tests.
#[derive(Debug)]
pub struct TestSessions {
    pub session_of: Vec<u32>,
}

impl TestSessions {
    /// The test predictions as the evaluation stages rank them (`sessionize.min_input_len`,
    /// `model.eval_predictions`), each with its session's index.
    pub fn read(p: &crate::Pipeline, sessions_dir: &Path) -> Result<TestSessions> {
        let test = segue_sessions::read_split(
            &sessions_dir.join(crate::files::SESSIONS),
            segue_sessions::Split::Test,
        )?;
        let sessions = crate::model_stages::eval_sessions(p, &test)?;
        let session_of = sessions
            .examples()
            .iter()
            .map(|e| test.offsets.partition_point(|&o| o <= e.start) as u32 - 1)
            .collect();
        Ok(TestSessions { session_of })
    }
}

/// A method's per-prediction hit@10, averaged over its seeds.
fn mean_hits(runs: &[Run]) -> Vec<f64> {
    let n = runs.first().map_or(0, |r| r.ranks.len());
    (0..n)
        .map(|i| {
            runs.iter().map(|r| f64::from(u8::from(r.ranks[i] <= 10))).sum::<f64>()
                / runs.len() as f64
        })
        .collect()
}

/// Mean and 95% interval over seeds of a metric picked from each run's report.
pub fn over_seeds(runs: &[Run], pick: impl Fn(&segue_eval::Report) -> f64) -> segue_eval::Interval {
    let v: Vec<f64> = runs.iter().map(|r| 100.0 * pick(&r.report)).collect();
    segue_eval::mean_interval(&v).unwrap_or(segue_eval::Interval {
        n: 0,
        mean: f64::NAN,
        half_width: 0.0,
    })
}

pub fn show(i: &segue_eval::Interval) -> String {
    if i.n > 1 { format!("{:.2} ± {:.2}", i.mean, i.half_width) } else { format!("{:.2}", i.mean) }
}

const TABLE2: [Method; 4] = [
    Method::Model(Variant::Gru4Rec),
    Method::Model(Variant::Ann),
    Method::Model(Variant::AnnLsa),
    Method::Model(Variant::AnnwAcousticLyrics),
];
/// Below Table II: the baselines reviewers ask for, run by the same stages and evaluator.
const BEYOND: [Method; 6] = [
    Method::Model(Variant::SasRec),
    Method::Rule(Rule::Popularity),
    Method::Rule(Rule::RepeatThenPopularity),
    Method::Rule(Rule::Sknn),
    Method::Rule(Rule::Vsknn),
    Method::Rule(Rule::SequentialRules),
];
/// Table III (complete dataset): the ANN family from ANN to ANNW+Acoustic+Lyrics.
const TABLE3: [Method; 6] = [
    Method::Model(Variant::Ann),
    Method::Model(Variant::AnnLsa),
    Method::Model(Variant::Annw),
    Method::Model(Variant::AnnwAcoustic),
    Method::Model(Variant::AnnwLyrics),
    Method::Model(Variant::AnnwAcousticLyrics),
];
/// The paper's tag comparison: ANN, the full fusion, and the fusion with tags.
const TABLE3_TAGS: [Method; 3] = [
    Method::Model(Variant::Ann),
    Method::Model(Variant::AnnwAcousticLyrics),
    Method::Model(Variant::AnnwAcousticLyricsTags),
];

/// One table of HitRatio@k rows in blocks (the paper's rows, then e.g. "beyond the paper"):
/// markdown (with the per-user mean and why a row is empty) and CSV
/// (`block,method,k10,...,user_k10,...`; empty cells for a method that did not run).
fn hit_table(
    title: &str,
    blocks: &[(&str, &[Method])],
    results: &BTreeMap<Method, Outcome>,
) -> Result<(String, String)> {
    let ks = segue_eval::PAPER_KS;
    let mut md = String::new();
    writeln!(md, "## {title}\n")?;
    let head: Vec<String> = ks.iter().map(|k| format!("k={k}")).collect();
    writeln!(md, "| method | {} | per-user HR@10 | predictions |", head.join(" | "))?;
    // Intervals: mean ± half the 95% t-interval over seeds, where a method ran with several.
    writeln!(md, "|---|{}---:|---:|", "---:|".repeat(ks.len()))?;
    let cols =
        |prefix: &str| ks.iter().map(|k| format!("{prefix}{k}")).collect::<Vec<_>>().join(",");
    let mut csv = format!(
        "block,method,seed,{},{},{},predictions,note\n",
        cols("hr"),
        cols("hr_pm"),
        cols("user_hr")
    );
    let mut notes = Vec::new();
    for (b, (block, methods)) in blocks.iter().enumerate() {
        if b > 0 {
            writeln!(md, "| *{block}* |{}", " |".repeat(ks.len() + 2))?;
        }
        for v in methods.iter() {
            match results.get(v) {
                Some(Outcome::Runs(runs)) if !runs.is_empty() => {
                    let hit: Vec<segue_eval::Interval> =
                        (0..ks.len()).map(|i| over_seeds(runs, |r| r.all.hit[i])).collect();
                    let user: Vec<segue_eval::Interval> =
                        (0..ks.len()).map(|i| over_seeds(runs, |r| r.per_user.hit[i])).collect();
                    let cells: Vec<String> = hit.iter().map(show).collect();
                    writeln!(
                        md,
                        "| {} | {} | {} | {} |",
                        v.name(),
                        cells.join(" | "),
                        show(&user[0]),
                        thousands(runs[0].report.all.count)
                    )?;
                    let seeds = runs.len();
                    let mean: Vec<String> = hit.iter().map(|h| format!("{:.4}", h.mean)).collect();
                    let pm: Vec<String> =
                        hit.iter().map(|h| format!("{:.4}", h.half_width)).collect();
                    let um: Vec<String> = user.iter().map(|h| format!("{:.4}", h.mean)).collect();
                    writeln!(
                        csv,
                        "{block},{},mean of {seeds},{},{},{},{},",
                        v.name(),
                        mean.join(","),
                        pm.join(","),
                        um.join(","),
                        runs[0].report.all.count
                    )?;
                    for run in runs.iter().filter(|_| seeds > 1) {
                        let r = &run.report;
                        let all: Vec<String> =
                            r.all.hit.iter().map(|h| format!("{:.4}", 100.0 * h)).collect();
                        let u: Vec<String> =
                            r.per_user.hit.iter().map(|h| format!("{:.4}", 100.0 * h)).collect();
                        writeln!(
                            csv,
                            "{block},{},{},{},{},{},{},",
                            v.name(),
                            run.seed.map_or("-".to_string(), |s| s.to_string()),
                            all.join(","),
                            ",".repeat(ks.len() - 1),
                            u.join(","),
                            r.all.count
                        )?;
                    }
                }
                other => {
                    let why = match other {
                        Some(Outcome::NotApplicable(w)) => w.clone(),
                        _ => "not run".to_string(),
                    };
                    let na = vec!["n/a"; ks.len() + 1].join(" | ");
                    writeln!(md, "| {} | {na} | |", v.name())?;
                    writeln!(
                        csv,
                        "{block},{},,{},,{}",
                        v.name(),
                        ",".repeat(3 * ks.len() - 1),
                        csv_field(&why)
                    )?;
                    notes.push(format!("{}: not applicable: {why}.", v.name()));
                }
            }
        }
    }
    writeln!(md)?;
    for n in notes {
        writeln!(md, "- {n}")?;
    }
    Ok((md, csv))
}

/// Resamples of the paired tests, and their generator's seed.
const RESAMPLES: usize = 10_000;
const TEST_SEED: u64 = 2021;

/// Paired bootstrap tests of hit@10 (mean over seeds per prediction), test sessions resampled:
/// every method that ran against ANN and against the best baseline rule.
fn paired_tests(
    methods: &[Method],
    results: &BTreeMap<Method, Outcome>,
    test: &TestSessions,
) -> Result<(String, String)> {
    let runs = |m: &Method| match results.get(m) {
        Some(Outcome::Runs(r)) if !r.is_empty() => Some(r),
        _ => None,
    };
    let best_rule = BEYOND
        .iter()
        .filter_map(|m| runs(m).map(|r| (m, over_seeds(r, |x| x.all.hit[0]).mean)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(m, _)| *m);
    let mut references = vec![Method::Model(Variant::Ann)];
    references.extend(best_rule);
    let mut md = format!(
        "## Paired tests (HR@10, points; paired bootstrap over {} test sessions, {RESAMPLES} resamples, seed {TEST_SEED})\n\n| method | against | difference | 95% interval | p |\n|---|---|---:|---:|---:|\n",
        test.session_of.iter().max().map_or(0, |m| m + 1)
    );
    let mut csv = String::from("method,against,difference,low,high,p_value,resamples\n");
    for m in methods {
        let Some(a) = runs(m) else { continue };
        for reference in &references {
            let Some(b) = runs(reference) else { continue };
            if reference == m || a[0].ranks.len() != test.session_of.len() {
                continue;
            }
            let t = segue_eval::paired_bootstrap(
                &mean_hits(a),
                &mean_hits(b),
                &test.session_of,
                RESAMPLES,
                TEST_SEED,
            )?;
            writeln!(
                md,
                "| {} | {} | {:+.2} | [{:+.2}, {:+.2}] | {} |",
                m.name(),
                reference.name(),
                100.0 * t.difference,
                100.0 * t.low,
                100.0 * t.high,
                if t.p_value < 1e-3 { "< 0.001".to_string() } else { format!("{:.3}", t.p_value) }
            )?;
            writeln!(
                csv,
                "{},{},{:.4},{:.4},{:.4},{:.5},{}",
                m.name(),
                reference.name(),
                100.0 * t.difference,
                100.0 * t.low,
                100.0 * t.high,
                t.p_value,
                t.resamples
            )?;
        }
    }
    Ok((md, csv))
}

/// Tables II and III (markdown and CSV) with the run's settings and seeds.
pub fn model_tables(
    p: &crate::pipeline::Pipeline,
    results: &BTreeMap<Method, Outcome>,
    test: &TestSessions,
    out_dir: &Path,
) -> Result<String> {
    let (t2, c2) = hit_table(
        "Table II: comparison with the baselines (HitRatio@k, %, test sessions, full ranking)",
        &[("paper", &TABLE2), ("beyond the paper", &BEYOND)],
        results,
    )?;
    let (t3, c3) = hit_table(
        "Table III: ablation, complete dataset (HitRatio@k, %)",
        &[("paper", &TABLE3)],
        results,
    )?;
    let (t3t, c3t) = hit_table(
        "Table III (tags): the fusion with tags, complete dataset (HitRatio@k, %)",
        &[("paper", &TABLE3_TAGS)],
        results,
    )?;
    let mut tested: Vec<Method> = TABLE2.iter().chain(&TABLE3).chain(&BEYOND).copied().collect();
    tested.sort();
    tested.dedup();
    let (tp, cp) = paired_tests(&tested, results, test)?;
    let m = &p.model;
    let mut md = format!("{t2}\n{t3}\n{t3t}\n{tp}\n");
    writeln!(
        md,
        "Settings: embeddings {}, GRU {}, FC {}, dropout {}, input window {}, batch {}{}, {} lr {}, at most {} epochs{} (patience {} on validation HR@10){}, {} softmax, model seeds {}, Word2Vec seed {}, LSA seed {}, VAE seed {}. Ties count against the model; every track of the catalogue is ranked.\n",
        m.embedding_dim,
        m.hidden,
        m.fc,
        m.dropout,
        m.max_input_len,
        m.batch_size,
        match m.gru4rec_batch_size {
            Some(b) if b != m.batch_size => format!(" (GRU4Rec {b})"),
            _ => String::new(),
        },
        if m.lazy_adam { "lazy Adam" } else { "Adam" },
        m.lr,
        m.epochs,
        if m.max_steps > 0 { format!(" or {} steps", m.max_steps) } else { String::new() },
        m.patience,
        if m.refit && p.sessionize.validation_share > 0.0 {
            ", the epochs chosen by the first seed's; then every seed trained from scratch on the training and validation sessions for that many epochs (model.refit; the rules fitted on both)"
        } else {
            ""
        },
        if m.sampled_negatives == 0 {
            "full".to_string()
        } else {
            format!("sampled ({} negatives)", m.sampled_negatives)
        },
        m.seed_list().iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", "),
        p.word2vec.seed,
        p.lsa.seed,
        p.vae.seed,
    )?;
    if p.dataset.subset.as_deref() == Some("tags") {
        writeln!(
            md,
            "This pipeline is the paper's tag subset (dataset.subset = \"tags\"): only plays of tracks with tags were kept before sessionizing, so every table here is on the subset.\n"
        )?;
    } else {
        writeln!(
            md,
            "Table III (tags) is measured on the complete dataset: a track without tags has a zero, masked tag vector. The paper trains and tests these three on a subset restricted to tracks with tags: a pipeline with dataset.subset = \"tags\" builds it (pipelines/synth-small-tags.toml).\n"
        )?;
    }
    std::fs::create_dir_all(out_dir)?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table2.md"), t2.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table2.csv"), c2.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table3.md"), t3.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table3.csv"), c3.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table3_tags.md"), t3t.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table3_tags.csv"), c3t.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("paired_tests.md"), tp.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("paired_tests.csv"), cp.as_bytes())?;
    Ok(md)
}
