//! `bench recommend`: how long `cargo xtask recommend` takes on a trained model: loading it,
//! scoring one session (every test session of the data, its first up-to-`max_input_len`
//! plays), and the whole command as a user runs it (a fresh process each time).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};

use crate::pipeline::Pipeline;
use segue_pipeline::{Recommender, default_variant};

#[derive(clap::Args)]
pub struct RecommendArgs {
    #[arg(long, default_value_os_t = crate::workspace_root().join("pipelines/default.toml"))]
    pub pipeline: PathBuf,
    /// The variant (default: as `recommend` chooses).
    #[arg(long, value_parser = crate::parse_variant)]
    pub variant: Option<segue_model::Variant>,
    /// Runs of the whole command (fresh processes).
    #[arg(long, default_value_t = 5)]
    pub commands: usize,
    /// Override a pipeline key, as `recommend --set` (passed on to the command's runs).
    #[arg(long, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

/// Median and 95th percentile of a sample, in milliseconds.
fn quantiles(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.95), *ms.last().unwrap_or(&0.0))
}

pub fn run(args: RecommendArgs) -> Result<()> {
    let p = Pipeline::load(&args.pipeline)?.with_sets(&args.set)?;
    let variant = match args.variant {
        Some(v) => v,
        None => default_variant(&p)?,
    };
    let mut loads = Vec::new();
    let mut rec = None;
    for _ in 0..3 {
        let t = Instant::now();
        rec = Some(Recommender::load(&p, variant, None)?);
        loads.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let rec = rec.context("loaded above")?;
    let test = rec.test_sessions();
    let mut per_session = Vec::new();
    for w in test.offsets.windows(2) {
        let session = &test.flat[w[0]..w[1]];
        let input = &session[..(session.len() - 1).min(rec.max_input_len)];
        let t = Instant::now();
        let top = rec.top(input, 10)?;
        per_session.push(t.elapsed().as_secs_f64() * 1e3);
        std::hint::black_box(top);
    }
    let user = test.user_names.first().context("no user in the test sessions")?.clone();
    let exe = std::env::current_exe()?;
    let mut commands = Vec::new();
    for _ in 0..args.commands.max(1) {
        let t = Instant::now();
        let out = std::process::Command::new(&exe)
            .args(["recommend", "--variant", variant.id(), "--user", &user, "--json"])
            .arg("--pipeline")
            .arg(&p.path)
            .args(args.set.iter().flat_map(|s| ["--set", s.as_str()]))
            .output()
            .context("running recommend")?;
        commands.push(t.elapsed().as_secs_f64() * 1e3);
        if !out.status.success() {
            anyhow::bail!("recommend failed: {}", String::from_utf8_lossy(&out.stderr));
        }
    }
    let (sessions, tracks) = (per_session.len(), rec.catalogue_len());
    println!(
        "recommend, {} ({} tracks ranked), pipeline {}, {} thread(s)",
        variant.paper_name(),
        tracks,
        p.pipeline.name,
        rayon::current_num_threads()
    );
    println!("| what | runs | median ms | p95 ms | max ms |");
    println!("|---|---:|---:|---:|---:|");
    for (what, sample) in [
        ("load the model and vocabulary", loads),
        ("score one test session, top 10", per_session),
        ("the whole command (`recommend --user U --json`, fresh process)", commands),
    ] {
        let n = sample.len();
        let (median, p95, max) = quantiles(sample);
        println!("| {what} | {n} | {median:.1} | {p95:.1} | {max:.1} |");
    }
    println!("{sessions} test sessions scored one at a time");
    Ok(())
}
