//! `cargo xtask tune`: a grid of settings, each judged on the validation share only.
//!
//! Every point of the grid is the pipeline with some keys overridden (`--grid
//! model.lr=0.001,0.003` is one axis; several axes give their product). A model is trained by
//! the ordinary `train-VARIANT` stage of that pipeline (cached like any stage, early-stopped on
//! validation) and judged by its best validation HR@10; a rule is fitted on the training
//! sessions and evaluated on the validation sessions. Test sessions are never read: the
//! choice cannot depend on them (a test poisons them and checks). The table goes to
//! `report/tuning.md` and `.csv`, and into the report of the next `reproduce`.

use segue_core::Progress;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::pipeline::Pipeline;
use crate::stages::{Runner, closure};

/// One axis of a grid: a pipeline key and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// The pipeline key, `section.key`.
    pub key: String,
    /// The values tried.
    pub values: Vec<toml::Value>,
}

impl Axis {
    /// Parses `section.key=v1,v2,...` (values in TOML: numbers, booleans, "strings").
    pub fn parse(text: &str) -> Result<Axis> {
        let (key, values) = text
            .split_once('=')
            .with_context(|| format!("--grid {text}: expected section.key=value,value,..."))?;
        let values = values
            .split(',')
            .map(|v| parse_value(v.trim()).with_context(|| format!("--grid {text}")))
            .collect::<Result<Vec<_>>>()?;
        if values.is_empty() {
            bail!("--grid {text}: no values");
        }
        Ok(Axis { key: key.trim().to_string(), values })
    }
}

pub use crate::pipeline::parse_value;

/// Every point of the grid: one override list per point, in a fixed order.
pub fn points(axes: &[Axis]) -> Vec<Vec<(String, toml::Value)>> {
    let mut out = vec![Vec::new()];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|point| {
                axis.values.iter().map(move |v| {
                    let mut p = point.clone();
                    p.push((axis.key.clone(), v.clone()));
                    p
                })
            })
            .collect();
    }
    out
}

/// What one point gave one method on validation.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Row {
    pub method: String,
    pub setting: String,
    pub valid_hr10: f64,
    /// The best epoch (models only).
    pub epoch: Option<usize>,
}

fn describe(point: &[(String, toml::Value)]) -> String {
    if point.is_empty() {
        return "(the pipeline's)".to_string();
    }
    point.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
}

/// Runs the grid for `methods` (variant or rule ids) and writes the table.
pub fn tune(
    base: &Pipeline,
    methods: &[String],
    axes: &[Axis],
    log: &dyn Progress,
) -> Result<(Vec<Row>, String)> {
    let mut rows = Vec::new();
    for point in points(axes) {
        let mut p = base.with_overrides(&point)?;
        // One run per point: the first seed. Judged on validation, so no training again on it.
        let seed = p.model.seed_list()[0];
        p.model = p.model.for_seed(seed);
        p.model.refit = false;
        for method in methods {
            let row = if let Some(rule) = segue_baselines::Rule::from_id(method) {
                let mut runner = Runner::new(&p, log);
                runner.run("ingest", false)?;
                runner.run("sessionize", false)?;
                let inputs = crate::model_stages::Inputs::read(&runner.dir("sessionize")?)?;
                let valid_hr10 = crate::baseline_stages::validation_hr10(&p, rule, &inputs)?;
                Row {
                    method: rule.name().into(),
                    setting: describe(&point),
                    valid_hr10,
                    epoch: None,
                }
            } else {
                let v = segue_model::Variant::from_id(method)?;
                let stage = format!("train-{method}");
                let mut runner = Runner::new(&p, log);
                for s in closure(&stage) {
                    runner.run(s, false)?;
                }
                let dir = runner.dir(&runner.instances(&stage)[0])?;
                let (valid_hr10, epoch) = best_validation(&dir)?;
                Row {
                    method: v.paper_name().into(),
                    setting: describe(&point),
                    valid_hr10,
                    epoch: Some(epoch),
                }
            };
            log.note(&format!(
                "tune: {} with {}: validation HR@10 {:.2}%",
                row.method,
                row.setting,
                100.0 * row.valid_hr10
            ));
            rows.push(row);
        }
    }
    let table = write(base, &rows, axes, log)?;
    Ok((rows, table))
}

/// The best validation HR@10 of a training and its epoch (1-based), from its report.
fn best_validation(train_dir: &Path) -> Result<(f64, usize)> {
    let report: crate::model_stages::TrainReport =
        crate::report::load(&train_dir.join(crate::model_stages::TRAIN_REPORT))?;
    report
        .history
        .iter()
        .filter_map(|e| Some((e.valid_hr10?, e.epoch)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .context("no validation HR@10 was recorded: give sessionize.validation_share > 0")
}

/// Adds this run's rows to the pipeline's tuning record (`tuning/rows.jsonl` in its cache; a
/// method and setting tuned again replaces its row) and writes the table of every row.
fn write(base: &Pipeline, rows: &[Row], axes: &[Axis], log: &dyn Progress) -> Result<String> {
    let record = base.cache_dir().join("tuning").join("rows.jsonl");
    let mut all: Vec<Row> = std::fs::read_to_string(&record)
        .map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default();
    for r in rows {
        all.retain(|o| !(o.method == r.method && o.setting == r.setting));
        all.push(r.clone());
    }
    let mut text = String::new();
    for r in &all {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    std::fs::create_dir_all(record.parent().expect("a folder"))?;
    segue_core::fs::write_bytes_atomic(&record, text.as_bytes())?;
    let (md, csv) = table(&all, axes)?;
    let dir = base.cache_dir().join("report");
    std::fs::create_dir_all(&dir)?;
    segue_core::fs::write_bytes_atomic(&dir.join("tuning.md"), md.as_bytes())?;
    segue_core::fs::write_bytes_atomic(&dir.join("tuning.csv"), csv.as_bytes())?;
    log.note(&format!("tune: table in {}", dir.join("tuning.md").display()));
    Ok(md)
}

/// The tuning table (markdown, CSV): every row, grouped by method, the best of each marked.
fn table(rows: &[Row], axes: &[Axis]) -> Result<(String, String)> {
    let mut md = String::from(
        "## Tuning (validation HR@10 of each setting; test sessions are not read)\n\n",
    );
    let grid: Vec<String> = axes
        .iter()
        .map(|a| {
            let v: Vec<String> = a.values.iter().map(|v| v.to_string()).collect();
            format!("{} in {{{}}}", a.key, v.join(", "))
        })
        .collect();
    writeln!(
        md,
        "Settings are overrides of the pipeline file; every run of `cargo xtask tune` adds its rows (last grid: {}).\n",
        if grid.is_empty() { "none".into() } else { grid.join("; ") }
    )?;
    writeln!(
        md,
        "| method | setting | validation HR@10 | best epoch | chosen |\n|---|---|---:|---:|---|"
    )?;
    let mut csv = String::from("method,setting,valid_hr10,best_epoch,chosen\n");
    let mut methods: Vec<&str> = rows.iter().map(|r| r.method.as_str()).collect();
    methods.dedup();
    let mut seen = std::collections::BTreeSet::new();
    for method in methods.into_iter().filter(|m| seen.insert(*m)) {
        let own: Vec<&Row> = rows.iter().filter(|r| r.method == method).collect();
        let best = own.iter().map(|r| r.valid_hr10).fold(f64::NEG_INFINITY, f64::max);
        for r in own {
            let chosen = r.valid_hr10 == best;
            let epoch = r.epoch.map_or(String::new(), |e| e.to_string());
            writeln!(
                md,
                "| {} | {} | {:.2} | {epoch} | {} |",
                r.method,
                r.setting,
                100.0 * r.valid_hr10,
                if chosen { "yes" } else { "" }
            )?;
            writeln!(
                csv,
                "{},\"{}\",{:.6},{epoch},{chosen}",
                r.method,
                r.setting.replace('"', "\"\""),
                r.valid_hr10
            )?;
        }
    }
    Ok((md, csv))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_and_points() {
        let a = Axis::parse("model.lr=0.001, 0.003").unwrap();
        assert_eq!(a.key, "model.lr");
        assert_eq!(a.values, vec![toml::Value::Float(0.001), toml::Value::Float(0.003)]);
        let b = Axis::parse("lsa.scale=\"none\",\"sigma\"").unwrap();
        let p = points(&[a, b]);
        assert_eq!(p.len(), 4);
        assert_eq!(describe(&p[1]), "model.lr=0.001 lsa.scale=\"sigma\"");
        assert!(Axis::parse("model.lr").is_err());
        assert!(Axis::parse("lsa.scale=sigma").is_err(), "strings need quotes");
        assert_eq!(points(&[]), vec![Vec::new()]);
    }
}
