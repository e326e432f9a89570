//! The `train-<rule>` and `evaluate-<rule>` stages of the session-based baselines
//! (segue-baselines): fitted on the training sessions, evaluated by the same full-ranking
//! evaluator as the models.

use segue_core::Progress;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use rayon::prelude::*;
use segue_baselines::{NextTrack, Rule, TrainingSessions};
use segue_sessions::SplitCorpus;

use crate::model_stages::{Inputs, eval_sessions};
use crate::pipeline::Pipeline;

/// Bumped when a rule's output changes for the same inputs and settings.
pub const RULES_VERSION: u32 = 1;

/// The rule of a `train-*` or `evaluate-*` stage.
pub fn rule_of(stage: &str) -> Option<(bool, Rule)> {
    let (train, id) = match stage.split_once('-')? {
        ("train", id) => (true, id),
        ("evaluate", id) => (false, id),
        _ => return None,
    };
    Rule::from_id(id).map(|r| (train, r))
}

/// The sessions a rule is fitted on for the test: the training sessions, and with
/// `model.refit` the validation share too (as the models are trained again on both).
fn final_sessions<'a>(p: &Pipeline, inputs: &'a Inputs) -> std::borrow::Cow<'a, SplitCorpus> {
    if p.model.refit {
        std::borrow::Cow::Owned(crate::model_stages::train_and_valid(inputs))
    } else {
        std::borrow::Cow::Borrowed(&inputs.train)
    }
}

/// Fits `rule` on the sessions `t`.
fn fit(
    p: &Pipeline,
    rule: Rule,
    t: &SplitCorpus,
    inputs: &Inputs,
) -> Result<(Box<dyn NextTrack>, f64)> {
    let data = TrainingSessions::new(&t.flat, &t.offsets, &t.ends, inputs.tracks)?;
    let started = Instant::now();
    let fitted = rule.fit(&data, &p.baselines)?;
    Ok((fitted, started.elapsed().as_secs_f64()))
}

/// Fits a rule and records its settings and the fit's figures (fit.json). The rules are cheap
/// to fit: the evaluate stage fits them again from the same sessions (deterministic) rather
/// than storing them.
pub fn run_fit(
    p: &Pipeline,
    rule: Rule,
    dir_of: &dyn Fn(&str) -> Result<PathBuf>,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let inputs = Inputs::read(&dir_of("sessionize")?)?;
    let sessions = final_sessions(p, &inputs);
    let (_, seconds) = fit(p, rule, &sessions, &inputs)?;
    let summary = serde_json::json!({
        "rule": rule.id(),
        "name": rule.name(),
        "settings": rule.settings(&p.baselines),
        "training_sessions": sessions.offsets.len() - 1,
        "tracks": inputs.tracks,
        "fit_seconds": seconds,
    });
    std::fs::write(dir.join("fit.json"), serde_json::to_vec_pretty(&summary)?)?;
    log.note(&format!(
        "{:>31}  {}: fitted on {} training sessions in {seconds:.2} s",
        "",
        rule.name(),
        sessions.offsets.len() - 1
    ));
    Ok(summary)
}

/// Evaluates a rule on the test sessions: metrics.json and ranks.json (every prediction's rank,
/// in example order, for paired tests).
pub fn run_evaluate(
    p: &Pipeline,
    rule: Rule,
    dir_of: &dyn Fn(&str) -> Result<PathBuf>,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let inputs = Inputs::read(&dir_of("sessionize")?)?;
    let (fitted, _) = fit(p, rule, &final_sessions(p, &inputs), &inputs)?;
    let started = Instant::now();
    let (report, ranks) = evaluate_rule(p, fitted.as_ref(), &inputs, &inputs.test)?;
    crate::model_stages::write_evaluation(dir, "", rule.name(), &report, &ranks, started, log)
}

/// A rule's HR@10 on the validation sessions, fitted on the training sessions (for tuning).
pub fn validation_hr10(p: &Pipeline, rule: Rule, inputs: &Inputs) -> Result<f64> {
    if inputs.valid.flat.is_empty() {
        anyhow::bail!("no validation sessions: give sessionize.validation_share > 0 to tune");
    }
    let (fitted, _) = fit(p, rule, &inputs.train, inputs)?;
    let (report, _) = evaluate_rule(p, fitted.as_ref(), inputs, &inputs.valid)?;
    Ok(report.all.hit[0])
}

/// The full-ranking evaluation of a fitted rule on `split`'s sessions.
pub fn evaluate_rule(
    p: &Pipeline,
    fitted: &dyn NextTrack,
    inputs: &Inputs,
    split: &segue_sessions::SplitCorpus,
) -> Result<(segue_eval::Report, Vec<usize>)> {
    let test = eval_sessions(p, split)?;
    let seen: Vec<bool> = (0..inputs.tracks).map(|i| inputs.counts.seen_in_train(i)).collect();
    let items = inputs.tracks;
    Ok(segue_model::evaluate_scorer(
        &test,
        &seen,
        p.model.max_input_len,
        &segue_eval::PAPER_KS,
        64,
        items,
        |batch| {
            let mut out = vec![0f32; batch.len() * items];
            out.par_chunks_mut(items).zip(batch.lengths.par_iter()).enumerate().for_each(
                |(r, (row, &len))| {
                    fitted.score_into(&batch.ids[r * batch.width..r * batch.width + len], row)
                },
            );
            Ok(out)
        },
    )?)
}
