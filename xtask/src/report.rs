//! The paper's tables as markdown and CSV: Table I from the sessionize and ingest artifacts,
//! Tables II and III from the evaluate stages.

use std::fmt::Write as _;
use std::path::Path;

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use segue_baselines::Rule;
use segue_model::Variant;

use crate::stages::IngestReport;

pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn thousands(n: u64) -> String {
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
    let stats: serde_json::Value = load(&sessions_dir.join("stats.json"))?;
    let ingest: IngestReport = load(&ingest_dir.join("ingest_report.json"))?;
    let g = |k: &str| stats[k].as_u64().unwrap_or(0);
    let mean = stats["mean_session_length"].as_f64().unwrap_or(0.0);
    let mut md = String::new();
    writeln!(md, "## Table I: dataset statistics ({pipeline_name})\n")?;
    writeln!(md, "| users | sessions | unique songs | listening events | mean session length |")?;
    writeln!(md, "|---:|---:|---:|---:|---:|")?;
    writeln!(
        md,
        "| {} | {} | {} | {} | {:.2} |\n",
        thousands(g("users")),
        thousands(g("sessions")),
        thousands(g("unique_songs")),
        thousands(g("events")),
        mean
    )?;
    let o = &stats["options"];
    writeln!(
        md,
        "Sessions: a gap of {} s or more starts a new one; sessions shorter than {} events are dropped; per user the first floor({} n) sessions train, a {} share of those is held out for validation.\n",
        o["gap_seconds"], o["min_session_len"], o["train_share"], o["validation_share"]
    )?;
    writeln!(md, "| what | count |\n|---|---:|")?;
    writeln!(md, "| records read | {} |", thousands(ingest.records))?;
    if let Some(reasons) = ingest.skipped["reasons"].as_object() {
        for (reason, c) in reasons {
            writeln!(
                md,
                "| records dropped: {} | {} |",
                reason.replace('_', " "),
                thousands(c["count"].as_u64().unwrap_or(0))
            )?;
        }
    }
    writeln!(md, "| events after ingest | {} |", thousands(ingest.events))?;
    writeln!(
        md,
        "| sessions before the length filter | {} |",
        thousands(g("sessions_before_filter"))
    )?;
    writeln!(md, "| sessions dropped (too short) | {} |", thousands(g("sessions_dropped_short")))?;
    writeln!(
        md,
        "| events in dropped sessions | {} |",
        thousands(g("events_in_dropped_sessions"))
    )?;
    for what in ["sessions", "events"] {
        let [tr, va, te] = ["train", "valid", "test"].map(|p| thousands(g(&format!("{p}_{what}"))));
        writeln!(md, "| train / valid / test {what} | {tr} / {va} / {te} |")?;
    }
    writeln!(
        md,
        "| tracks seen in training / only outside it | {} / {} |",
        thousands(g("train_tracks")),
        thousands(g("unseen_tracks"))
    )?;
    writeln!(
        md,
        "| share of repeats within sessions | {:.1}% |\n",
        100.0 * stats["repeat_share"].as_f64().unwrap_or(0.0)
    )?;
    let per_user = stats["per_user"].as_array().cloned().unwrap_or_default();
    let mut csv_users = String::from(
        "user,sessions,train_sessions,valid_sessions,test_sessions,events,unique_tracks,repeat_share\n",
    );
    const COUNTS: [&str; 6] = [
        "sessions",
        "train_sessions",
        "valid_sessions",
        "test_sessions",
        "events",
        "unique_tracks",
    ];
    let counts = |u: &serde_json::Value, sep: &str| {
        COUNTS.map(|k| u[k].as_u64().unwrap_or(0).to_string()).join(sep)
    };
    for u in &per_user {
        let (name, repeats) =
            (u["user"].as_str().unwrap_or(""), u["repeat_share"].as_f64().unwrap_or(0.0));
        writeln!(csv_users, "{},{},{repeats:.4}", csv_field(name), counts(u, ","))?;
    }
    if per_user.len() <= 20 {
        writeln!(
            md,
            "| user | sessions | train | valid | test | events | unique tracks | repeats |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        )?;
        for u in &per_user {
            let (name, repeats) =
                (u["user"].as_str().unwrap_or(""), u["repeat_share"].as_f64().unwrap_or(0.0));
            writeln!(md, "| {name} | {} | {:.1}% |", counts(u, " | "), 100.0 * repeats)?;
        }
    } else {
        writeln!(md, "Per-user counts for {} users: table1_users.csv.", per_user.len())?;
    }
    std::fs::create_dir_all(out_dir)?;
    let csv = format!(
        "users,sessions,unique_songs,events,mean_session_length\n{},{},{},{},{:.4}\n",
        g("users"),
        g("sessions"),
        g("unique_songs"),
        g("events"),
        mean
    );
    segue_core::fs::write_bytes_atomic(&out_dir.join("table1.md"), md.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table1.csv"), csv.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table1_users.csv"), csv_users.as_bytes())?;
    Ok(md)
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
    /// Its test metrics.
    Metrics(Box<segue_eval::Report>),
    /// Why it did not run.
    NotApplicable(String),
}

const TABLE2: [Method; 4] = [
    Method::Model(Variant::Gru4Rec),
    Method::Model(Variant::Ann),
    Method::Model(Variant::AnnLsa),
    Method::Model(Variant::AnnwAcousticLyrics),
];
/// Below Table II: the baselines reviewers ask for, run by the same stages and evaluator.
const BEYOND: [Method; 5] = [
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
    writeln!(md, "|---|{}---:|---:|", "---:|".repeat(ks.len()))?;
    let mut csv = format!(
        "block,method,{},{},predictions,note\n",
        ks.iter().map(|k| format!("hr{k}")).collect::<Vec<_>>().join(","),
        ks.iter().map(|k| format!("user_hr{k}")).collect::<Vec<_>>().join(",")
    );
    let mut notes = Vec::new();
    for (b, (block, methods)) in blocks.iter().enumerate() {
        if b > 0 {
            writeln!(md, "| *{block}* |{}| |", " |".repeat(ks.len() + 1))?;
        }
        for v in methods.iter() {
            match results.get(v) {
                Some(Outcome::Metrics(r)) => {
                    let cells: Vec<String> =
                        r.all.hit.iter().map(|h| format!("{:.2}", 100.0 * h)).collect();
                    writeln!(
                        md,
                        "| {} | {} | {:.2} | {} |",
                        v.name(),
                        cells.join(" | "),
                        100.0 * r.per_user.hit[0],
                        thousands(r.all.count)
                    )?;
                    let user: Vec<String> =
                        r.per_user.hit.iter().map(|h| format!("{:.4}", 100.0 * h)).collect();
                    let all: Vec<String> =
                        r.all.hit.iter().map(|h| format!("{:.4}", 100.0 * h)).collect();
                    writeln!(
                        csv,
                        "{block},{},{},{},{},",
                        v.name(),
                        all.join(","),
                        user.join(","),
                        r.all.count
                    )?;
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
                        "{block},{},{},,{}",
                        v.name(),
                        ",".repeat(2 * ks.len() - 1),
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

/// Tables II and III (markdown and CSV) with the run's settings and seeds.
pub fn model_tables(
    p: &crate::pipeline::Pipeline,
    results: &BTreeMap<Method, Outcome>,
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
    let m = &p.model;
    let mut md = format!("{t2}\n{t3}\n{t3t}\n");
    writeln!(
        md,
        "Settings: embeddings {}, GRU {}, FC {}, dropout {}, input window {}, batch {}, Adam lr {}, at most {} epochs (patience {} on validation HR@10), {} softmax, model seed {}, Word2Vec seed {}, LSA seed {}, VAE seed {}. Ties count against the model; every track of the catalogue is ranked.\n",
        m.embedding_dim,
        m.hidden,
        m.fc,
        m.dropout,
        m.max_input_len,
        m.batch_size,
        m.lr,
        m.epochs,
        m.patience,
        if m.sampled_negatives == 0 {
            "full".to_string()
        } else {
            format!("sampled ({} negatives)", m.sampled_negatives)
        },
        m.seed,
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
    Ok(md)
}
