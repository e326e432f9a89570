//! Table IV, the paper's user study (section IV-D): users grouped by their K-10 distress score,
//! one fusion model trained and evaluated per group.
//!
//! - `user-groups` reads `dataset.users` (a CSV with a `user` or `user_id` column and a `k10`
//!   column) and forms the paper's groups among the users the sessions have: At-risk (K-10 of
//!   29 or more), No-risk (under 20) and No-risk-N (the N No-risk users with the highest K-10,
//!   N = the number of At-risk users, for a balanced comparison). It also measures each group's
//!   share of in-session repeats, the paper's explanation of its result.
//! - `train-user-study` trains, per group and per seed, the paper's model (ANNW+Acoustic+Lyrics,
//!   or the first applicable of ANNW+Acoustic, ANNW+Lyrics, ANNW when a modality is absent) on
//!   that group's training sessions only. The catalogue, Word2Vec and the content tables stay
//!   the whole dataset's (all fitted on training data only), so every model ranks every track.
//! - `evaluate-user-study` evaluates each group's model on that group's test sessions.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use segue_model::{TrainOptions, Variant};
use segue_sessions::SplitCorpus;
use serde::{Deserialize, Serialize};

use crate::model_stages::{
    Inputs, eval_sessions, network, not_applicable, sessions, write_evaluation,
};
use crate::pipeline::Pipeline;
use segue_core::Progress;

/// K-10 of this or more: At-risk (the paper, after Surana et al.).
pub const AT_RISK_MIN: f64 = 29.0;
/// K-10 under this: No-risk.
pub const NO_RISK_BELOW: f64 = 20.0;
/// The model of the study, and its stand-ins in the paper's order of preference when a
/// modality is absent from the dataset.
pub const CANDIDATES: [Variant; 4] =
    [Variant::AnnwAcousticLyrics, Variant::AnnwAcoustic, Variant::AnnwLyrics, Variant::Annw];
/// Bumped when the study's output changes for the same inputs.
pub const VERSION: u32 = 1;

/// One group of users.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Group {
    /// As the paper names it: `At-risk-142`, `No-risk-193`, `No-risk-142`.
    pub name: String,
    /// File-name form of the name (`at-risk`, `no-risk`, `no-risk-n`).
    pub slug: String,
    /// The users, by name, and their K-10 scores.
    pub users: Vec<String>,
    pub k10: Vec<f64>,
    pub train_sessions: usize,
    pub test_sessions: usize,
    /// Test predictions (every position after the first of a test session).
    pub test_predictions: usize,
    /// Share of test targets already played earlier in their session.
    pub test_repeat_share: f64,
    /// Share of all plays after a session's first that repeat a track of that session.
    pub repeat_share: f64,
}

/// The `user-groups` artifact (`groups.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Groups {
    /// Why there is no study, when there is none.
    pub not_applicable: Option<String>,
    pub users_file: Option<PathBuf>,
    /// Users of the sessions with a score; scored users the sessions do not have (first ten).
    pub scored_users: usize,
    pub users_without_sessions: usize,
    pub users_without_sessions_examples: Vec<String>,
    /// Users of the sessions without a score.
    pub users_without_score: usize,
    pub groups: Vec<Group>,
}

/// The file name of a group's artifact: `<slug>.<what>`.
pub fn file_of(slug: &str, what: &str) -> String {
    format!("{slug}.{what}")
}

/// Reads a users CSV: `user` (or `user_id`) and `k10` columns, any order, other columns
/// ignored. A missing column, a duplicate user or a score that is not a number is an error
/// naming the file and line.
pub fn read_scores(path: &Path) -> Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the users file {}", path.display()))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (_, header) =
        lines.next().with_context(|| format!("{}: the file is empty", path.display()))?;
    let cols: Vec<String> =
        header.split(',').map(|c| c.trim().trim_matches('"').to_lowercase()).collect();
    let find = |names: &[&str]| cols.iter().position(|c| names.contains(&c.as_str()));
    let (Some(user_col), Some(k10_col)) = (find(&["user", "user_id", "username"]), find(&["k10"]))
    else {
        bail!(
            "{}: the header `{header}` needs a `user` (or `user_id`) column and a `k10` column",
            path.display()
        );
    };
    let mut out = BTreeMap::new();
    for (i, line) in lines {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_matches('"')).collect();
        let at = || format!("{} line {}", path.display(), i + 1);
        let (Some(user), Some(k10)) = (fields.get(user_col), fields.get(k10_col)) else {
            bail!(
                "{}: expected {} columns as the header has, found {}",
                at(),
                cols.len(),
                fields.len()
            );
        };
        let score: f64 = k10.parse().ok().filter(|s: &f64| s.is_finite()).with_context(|| {
            format!("{}: k10 = {k10:?} is not a number (a K-10 score, 10 to 50)", at())
        })?;
        if out.insert(user.to_string(), score).is_some() {
            bail!("{}: user {user:?} has a second score; give each user one line", at());
        }
    }
    Ok(out)
}

/// Session statistics of one set of users: train sessions, test sessions, test predictions,
/// the test targets' repeat share and the repeat share of all plays.
fn group_counts(
    train: &SplitCorpus,
    valid: &SplitCorpus,
    test: &SplitCorpus,
    users: &HashSet<&str>,
    first: usize,
) -> (usize, usize, usize, f64, f64) {
    let of = |c: &SplitCorpus| -> Vec<usize> {
        (0..c.users.len())
            .filter(|&s| users.contains(c.user_names[c.users[s] as usize].as_str()))
            .collect()
    };
    // (predicted positions, from `first` on, and repeats among them) over the given sessions.
    let repeats = |c: &SplitCorpus, ss: &[usize]| -> (usize, usize) {
        let (mut n, mut r) = (0, 0);
        for &s in ss {
            let tracks = &c.flat[c.offsets[s]..c.offsets[s + 1]];
            for t in first.max(1)..tracks.len() {
                n += 1;
                r += usize::from(tracks[..t].contains(&tracks[t]));
            }
        }
        (n, r)
    };
    let (tr, va, te) = (of(train), of(valid), of(test));
    let (tn, trep) = repeats(test, &te);
    let (mut n, mut r) = (tn, trep);
    for (c, ss) in [(train, &tr), (valid, &va)] {
        let (a, b) = repeats(c, ss);
        n += a;
        r += b;
    }
    let share = |r: usize, n: usize| if n == 0 { 0.0 } else { r as f64 / n as f64 };
    (tr.len() + va.len(), te.len(), tn, share(trep, tn), share(r, n))
}

/// The `user-groups` stage: groups.json.
pub fn run_groups(
    p: &Pipeline,
    sessions_dir: &Path,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let inputs = Inputs::read(sessions_dir)?;
    let groups = groups(p, &inputs)?;
    match &groups.not_applicable {
        Some(why) => log.note(&format!("{:>31}  no user study: {why}", "")),
        None => {
            for g in &groups.groups {
                log.note(&format!(
                    "{:>31}  {}: {} users, {} test predictions, {:.1}% of test targets repeat a track of their session",
                    "",
                    g.name,
                    g.users.len(),
                    g.test_predictions,
                    100.0 * g.test_repeat_share
                ));
            }
        }
    }
    std::fs::write(dir.join("groups.json"), serde_json::to_vec_pretty(&groups)?)?;
    Ok(serde_json::json!({
        "not_applicable": groups.not_applicable,
        "groups": groups.groups.iter().map(|g| (g.name.clone(), g.users.len())).collect::<BTreeMap<_, _>>(),
    }))
}

fn groups(p: &Pipeline, inputs: &Inputs) -> Result<Groups> {
    let mut out = Groups {
        not_applicable: None,
        users_file: None,
        scored_users: 0,
        users_without_sessions: 0,
        users_without_sessions_examples: Vec::new(),
        users_without_score: 0,
        groups: Vec::new(),
    };
    let Some(file) = p.content_file(&p.dataset.users) else {
        out.not_applicable =
            Some("the dataset has no K-10 scores (dataset.users: a CSV of user,k10)".to_string());
        return Ok(out);
    };
    let scores = read_scores(&file)?;
    out.users_file = Some(file.clone());
    let present: HashSet<&str> = inputs.train.user_names.iter().map(String::as_str).collect();
    let missing: Vec<&String> = scores.keys().filter(|u| !present.contains(u.as_str())).collect();
    out.users_without_sessions = missing.len();
    out.users_without_sessions_examples = missing.iter().take(10).map(|u| u.to_string()).collect();
    out.users_without_score = present.iter().filter(|u| !scores.contains_key(**u)).count();
    let scored: Vec<(&str, f64)> = scores
        .iter()
        .filter(|(u, _)| present.contains(u.as_str()))
        .map(|(u, k)| (u.as_str(), *k))
        .collect();
    out.scored_users = scored.len();
    let at_risk: Vec<(&str, f64)> =
        scored.iter().copied().filter(|(_, k)| *k >= AT_RISK_MIN).collect();
    let mut no_risk: Vec<(&str, f64)> =
        scored.iter().copied().filter(|(_, k)| *k < NO_RISK_BELOW).collect();
    if at_risk.is_empty() || no_risk.is_empty() {
        out.not_applicable = Some(format!(
            "{} of {} scored users are At-risk (K-10 >= {AT_RISK_MIN}) and {} No-risk (K-10 < {NO_RISK_BELOW}): both groups need users",
            at_risk.len(),
            scored.len(),
            no_risk.len()
        ));
        return Ok(out);
    }
    // The highest scores first; ties by name, so the choice is fixed.
    no_risk.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
    let n = at_risk.len().min(no_risk.len());
    let sets = [
        (format!("At-risk-{}", at_risk.len()), "at-risk", at_risk.clone()),
        (format!("No-risk-{}", no_risk.len()), "no-risk", no_risk.clone()),
        (format!("No-risk-{n}"), "no-risk-n", no_risk[..n].to_vec()),
    ];
    for (name, slug, members) in sets {
        let users: HashSet<&str> = members.iter().map(|(u, _)| *u).collect();
        let (train_sessions, test_sessions, test_predictions, test_repeat_share, repeat_share) =
            group_counts(
                &inputs.train,
                &inputs.valid,
                &inputs.test,
                &users,
                p.sessionize.min_input_len,
            );
        out.groups.push(Group {
            name,
            slug: slug.to_string(),
            users: members.iter().map(|(u, _)| u.to_string()).collect(),
            k10: members.iter().map(|(_, k)| *k).collect(),
            train_sessions,
            test_sessions,
            test_predictions,
            test_repeat_share,
            repeat_share,
        });
    }
    Ok(out)
}

/// Reads the `user-groups` artifact.
pub fn read_groups(dir: &Path) -> Result<Groups> {
    crate::report::load(&dir.join("groups.json"))
}

/// Why the study cannot run: no scores, or no group; else the variant it trains.
pub fn study_variant(dir_of: &dyn Fn(&str) -> Result<PathBuf>) -> Result<Result<Variant, String>> {
    let groups = read_groups(&dir_of("user-groups")?)?;
    if let Some(why) = groups.not_applicable {
        return Ok(Err(why));
    }
    for v in CANDIDATES {
        if not_applicable(v, dir_of)?.is_none() {
            return Ok(Ok(v));
        }
    }
    Ok(Err("no fusion variant is applicable: Word2Vec has no training track".to_string()))
}

/// The sessions of `corpus` whose user is in `users` (user indices and names kept).
fn subset(corpus: &SplitCorpus, users: &HashSet<&str>) -> SplitCorpus {
    let mut out = SplitCorpus {
        flat: Vec::new(),
        offsets: vec![0],
        users: Vec::new(),
        user_names: corpus.user_names.clone(),
        ends: Vec::new(),
    };
    for s in 0..corpus.users.len() {
        if users.contains(corpus.user_names[corpus.users[s] as usize].as_str()) {
            out.flat.extend_from_slice(&corpus.flat[corpus.offsets[s]..corpus.offsets[s + 1]]);
            out.offsets.push(out.flat.len());
            out.users.push(corpus.users[s]);
            out.ends.push(corpus.ends[s]);
        }
    }
    out
}

fn members(g: &Group) -> HashSet<&str> {
    g.users.iter().map(String::as_str).collect()
}

/// The `train-user-study` stage: one model per group (`<group>.model.safetensors`,
/// `<group>.train.jsonl`). A finished group's model waits in `partial`, so an interrupted study
/// resumes at the group (and epoch) where it stopped.
pub fn run_train(
    p: &Pipeline,
    dir_of: &dyn Fn(&str) -> Result<PathBuf>,
    dir: &Path,
    partial: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let (v, groups, inputs) = study_inputs(dir_of)?;
    let mut summary = BTreeMap::new();
    for g in &groups.groups {
        let users = members(g);
        let (train, valid) = (subset(&inputs.train, &users), subset(&inputs.valid, &users));
        let net = network(p, v, &inputs, dir_of)?;
        let group_partial = partial.join(&g.slug);
        let done = group_partial.join("model.safetensors");
        let report_file = group_partial.join("train_report.json");
        if !(done.exists() && report_file.exists()) {
            let (train_s, valid_s) = (sessions(p, &train)?, eval_sessions(p, &valid)?);
            log.note(&format!(
                "{:>31}  {} ({}): {} training examples, {} validation examples",
                "",
                g.name,
                v.paper_name(),
                train_s.examples().len(),
                valid_s.examples().len()
            ));
            let opts = TrainOptions {
                params: p.model.clone(),
                train_counts: inputs.counts.train.clone(),
                dir: Some(group_partial.clone()),
                resume: true,
            };
            let trained = segue_model::train(&net, &train_s, Some(&valid_s), &opts, log)?;
            let mut r = serde_json::json!({
                "group": g.name,
                "variant": v.id(),
                "examples": train_s.examples().len(),
                "epochs_run": trained.history.len(),
                "best_epoch": trained.best_epoch,
                "stopped_early": trained.stopped_early,
                "history": trained.history,
            });
            if p.model.refit && !valid_s.examples().is_empty() {
                let net = network(p, v, &inputs, dir_of)?;
                let both = crate::model_stages::concat(&train, &valid);
                let what = format!("{} ({})", g.name, v.paper_name());
                let epochs = trained.best_epoch;
                let refit = crate::model_stages::refit(p, &net, &both, &opts, epochs, &what, log)?;
                r["refit"] = serde_json::to_value(refit)?;
                net.save(&done)?;
            } else {
                net.save(&done)?;
            }
            std::fs::write(&report_file, serde_json::to_vec_pretty(&r)?)?;
        }
        std::fs::copy(&done, dir.join(file_of(&g.slug, "model.safetensors")))?;
        std::fs::copy(
            group_partial.join("train.jsonl"),
            dir.join(file_of(&g.slug, "train.jsonl")),
        )?;
        let r: serde_json::Value = crate::report::load(&report_file)?;
        summary.insert(g.slug.clone(), r);
    }
    let summary = serde_json::json!({ "variant": v.id(), "name": v.paper_name(), "groups": summary, "params": p.model });
    std::fs::write(dir.join("train_report.json"), serde_json::to_vec_pretty(&summary)?)?;
    std::fs::remove_dir_all(partial).with_context(|| format!("removing {}", partial.display()))?;
    Ok(summary)
}

/// What both model stages of the study read: its variant, the groups and the sessions.
fn study_inputs(dir_of: &dyn Fn(&str) -> Result<PathBuf>) -> Result<(Variant, Groups, Inputs)> {
    let v = match study_variant(dir_of)? {
        Ok(v) => v,
        Err(why) => bail!("the user study is not applicable: {why}"),
    };
    let groups = read_groups(&dir_of("user-groups")?)?;
    let inputs = Inputs::read(&dir_of("sessionize")?)?;
    Ok((v, groups, inputs))
}

/// The `evaluate-user-study` stage: each group's model on that group's test sessions
/// (`<group>.metrics.json`, `<group>.ranks.json`).
pub fn run_evaluate(
    p: &Pipeline,
    dir_of: &dyn Fn(&str) -> Result<PathBuf>,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let (v, groups, inputs) = study_inputs(dir_of)?;
    let seen: Vec<bool> = (0..inputs.tracks).map(|i| inputs.counts.seen_in_train(i)).collect();
    let trained = dir_of("train-user-study")?;
    let mut summary = BTreeMap::new();
    for g in &groups.groups {
        let test = subset(&inputs.test, &members(g));
        let net = network(p, v, &inputs, dir_of)?;
        net.load(&trained.join(file_of(&g.slug, "model.safetensors")))?;
        let started = std::time::Instant::now();
        let (report, ranks) = segue_model::evaluate_ranked(
            &net,
            &eval_sessions(p, &test)?,
            &seen,
            p.model.max_input_len,
            &segue_eval::PAPER_KS,
            64,
        )?;
        let s = write_evaluation(
            dir,
            &file_of(&g.slug, ""),
            &format!("{} ({})", v.paper_name(), g.name),
            &report,
            &ranks,
            started,
            log,
        )?;
        summary.insert(g.slug.clone(), s);
    }
    Ok(serde_json::json!({ "variant": v.id(), "groups": summary }))
}

/// One group's evaluations over seeds, for Table IV.
#[derive(Debug)]
pub struct GroupRuns {
    pub group: Group,
    pub runs: Vec<crate::report::Run>,
}

/// What reproduce has for Table IV.
#[derive(Debug)]
pub enum Study {
    Ran { variant: Variant, groups: Vec<GroupRuns> },
    NotApplicable(String),
}

impl Study {
    /// Loads every group's evaluations (one per seed) from the evaluate instances' folders.
    pub fn load(
        groups_dir: &Path,
        variant: Variant,
        evaluations: &[(PathBuf, Option<u64>)],
    ) -> Result<Study> {
        let groups = read_groups(groups_dir)?;
        let mut out = Vec::new();
        for g in groups.groups {
            let mut runs = Vec::new();
            for (dir, seed) in evaluations {
                runs.push(crate::report::Run::load_named(dir, &g.slug, *seed)?);
            }
            out.push(GroupRuns { group: g, runs });
        }
        Ok(Study::Ran { variant, groups: out })
    }
}

/// Table IV in markdown and CSV.
pub fn table4(study: &Study, out_dir: &Path) -> Result<String> {
    let ks = segue_eval::PAPER_KS;
    let mut md = String::from(
        "## Table IV: user study, groups by Kessler's distress scale (HitRatio@k, %)\n\n",
    );
    let mut csv = format!(
        "group,users,seed,{},test_predictions,test_repeat_share,repeat_share\n",
        ks.iter().map(|k| format!("hr{k}")).collect::<Vec<_>>().join(",")
    );
    match study {
        Study::NotApplicable(why) => {
            writeln!(md, "Not applicable: {why}.\n")?;
            writeln!(csv, "n/a,,,{},,,", ",".repeat(ks.len() - 1))?;
        }
        Study::Ran { variant, groups } => {
            let head: Vec<String> = ks.iter().map(|k| format!("k={k}")).collect();
            writeln!(
                md,
                "| group | {} | test predictions | repeats among test targets | repeats among all plays |",
                head.join(" | ")
            )?;
            writeln!(md, "|---|{}---:|---:|---:|", "---:|".repeat(ks.len()))?;
            for gr in groups {
                let g = &gr.group;
                let cells: Vec<String> = (0..ks.len())
                    .map(|i| {
                        crate::report::show(&crate::report::over_seeds(&gr.runs, |r| r.all.hit[i]))
                    })
                    .collect();
                writeln!(
                    md,
                    "| {} | {} | {} | {:.1}% | {:.1}% |",
                    g.name,
                    cells.join(" | "),
                    g.test_predictions,
                    100.0 * g.test_repeat_share,
                    100.0 * g.repeat_share
                )?;
                for run in &gr.runs {
                    let hits: Vec<String> =
                        run.report.all.hit.iter().map(|h| format!("{:.4}", 100.0 * h)).collect();
                    writeln!(
                        csv,
                        "{},{},{},{},{},{:.4},{:.4}",
                        g.name,
                        g.users.len(),
                        run.seed.map_or("-".to_string(), |s| s.to_string()),
                        hits.join(","),
                        g.test_predictions,
                        g.test_repeat_share,
                        g.repeat_share
                    )?;
                }
            }
            let seeds = groups.first().map_or(0, |g| g.runs.len());
            writeln!(
                md,
                "\n{} trained and evaluated per group (the paper's model{}); mean ± half the 95% interval over {seeds} seed(s). At-risk: K-10 of {AT_RISK_MIN} or more; No-risk: under {NO_RISK_BELOW}; No-risk-N: the N No-risk users with the highest K-10, N = the At-risk count. Each group's model trains on that group's training sessions and ranks the whole catalogue.\n",
                variant.paper_name(),
                if *variant == CANDIDATES[0] {
                    String::new()
                } else {
                    format!(
                        ", standing in for {}: a modality is absent from this dataset",
                        CANDIDATES[0].paper_name()
                    )
                },
            )?;
        }
    }
    std::fs::create_dir_all(out_dir)?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table4.md"), md.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&out_dir.join("table4.csv"), csv.as_bytes())?;
    Ok(md)
}
