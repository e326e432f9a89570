//! `bench catalogue`: training steps of the fused model (ANN: E1, BiGRU, attention, FC, output
//! layer) at growing catalogue sizes, dense Adam beside lazy Adam, with a sampled softmax (and
//! the full softmax where it fits). Each configuration runs in its own process, so its peak
//! memory is its own. The batches are random windows, as in sessions of 33 tracks: what is
//! measured is the step, not learning.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use segue_model::{
    Adam, AdamConfig, Batch, Fusion, FusionConfig, FusionInit, ModelParams, Sampler, Softmax,
};

#[derive(clap::Args)]
pub struct CatalogueArgs {
    /// Catalogue sizes (tracks), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [11_366usize, 400_000, 2_000_000])]
    pub tracks: Vec<usize>,
    /// Timed steps per configuration (after 3 untimed ones).
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Negatives of the sampled softmax.
    #[arg(long, default_value_t = 2048)]
    pub negatives: usize,
    /// Examples per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// The full softmax is also measured up to this many tracks.
    #[arg(long, default_value_t = 400_000)]
    pub full_up_to: usize,
}

/// One configuration, as the worker process takes it.
#[derive(clap::Args, Debug, Clone)]
pub struct CatalogueWorkerArgs {
    #[arg(long)]
    pub tracks: usize,
    #[arg(long)]
    pub steps: usize,
    /// 0: the full softmax.
    #[arg(long)]
    pub negatives: usize,
    #[arg(long)]
    pub batch: usize,
    #[arg(long)]
    pub lazy: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Measured {
    median_ms: f64,
    examples_per_second: f64,
    setup_seconds: f64,
    peak_rss: u64,
}

pub fn run(args: CatalogueArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    println!(
        "Fused model (ANN: E1 150, BiGRU 150, FC 256), batches of {}, windows min(t, 20) of sessions of 33; {} timed steps after 3; median step; one process per row",
        args.batch, args.steps
    );
    println!(
        "\n| tracks | softmax | Adam | ms / step | examples / s | peak RSS | set-up |\n|---:|---|---|---:|---:|---:|---:|"
    );
    for &tracks in &args.tracks {
        let mut configs = vec![(args.negatives, false), (args.negatives, true)];
        if tracks <= args.full_up_to {
            configs.insert(0, (0, false));
        }
        for (negatives, lazy) in configs {
            let out = Command::new(&exe)
                .args(["bench", "catalogue-worker", "--tracks", &tracks.to_string()])
                .args(["--steps", &args.steps.to_string(), "--batch", &args.batch.to_string()])
                .args(["--negatives", &negatives.to_string()])
                .args(lazy.then_some("--lazy"))
                .output()
                .context("running the catalogue worker")?;
            let softmax =
                if negatives == 0 { "full".to_string() } else { format!("sampled {negatives}") };
            let adam = if lazy { "lazy" } else { "dense" };
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                let last = err.lines().last().unwrap_or("");
                println!("| {tracks} | {softmax} | {adam} | failed: {last} | | | |");
                continue;
            }
            let line = String::from_utf8_lossy(&out.stdout);
            let m: Measured = serde_json::from_str(line.trim())
                .with_context(|| format!("the worker's output: {line}"))?;
            println!(
                "| {tracks} | {softmax} | {adam} | {:.1} | {:.0} | {:.2} GB | {:.1} s |",
                m.median_ms,
                m.examples_per_second,
                m.peak_rss as f64 / 1e9,
                m.setup_seconds
            );
        }
    }
    Ok(())
}

/// Builds the model at one size, runs the steps, prints a JSON line of [`Measured`].
pub fn worker(a: CatalogueWorkerArgs) -> Result<()> {
    if a.steps == 0 || a.batch == 0 || a.tracks < 2 {
        bail!("steps, batch and tracks (2 or more) must be positive");
    }
    let started = Instant::now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    // ANN at the paper's sizes (the model's defaults).
    let config = FusionConfig::from_params(a.tracks, &ModelParams::default(), vec![]);
    let model = Fusion::new(config, FusionInit::default(), &mut rng)?;
    let vars = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let mut adam = Adam::new(vars, AdamConfig { lazy: a.lazy, ..AdamConfig::default() });
    let softmax = match a.negatives {
        0 => Softmax::Full,
        n => Softmax::Sampled {
            negatives: n,
            sampler: Sampler::from_counts(&vec![1u32; a.tracks], 0.75)?,
        },
    };
    let setup_seconds = started.elapsed().as_secs_f64();
    let tracks = a.tracks as u32;
    let mut each = Vec::with_capacity(a.steps);
    for step in 0..a.steps + 3 {
        let inputs: Vec<Vec<u32>> = (0..a.batch)
            .map(|_| {
                let len = rng.random_range(1..33usize).min(20);
                (0..len).map(|_| rng.random_range(0..tracks)).collect()
            })
            .collect();
        let refs: Vec<&[u32]> = inputs.iter().map(Vec::as_slice).collect();
        let targets = (0..a.batch).map(|_| rng.random_range(0..tracks)).collect();
        let batch = Batch::new(&refs, targets);
        let t = Instant::now();
        let loss = model.step(&batch, &softmax, &mut rng, &mut adam)?;
        if step >= 3 {
            each.push(t.elapsed().as_secs_f64());
        }
        if !loss.is_finite() {
            bail!("the loss became {loss} at step {step}");
        }
    }
    each.sort_by(f64::total_cmp);
    let median = each[each.len() / 2];
    let m = Measured {
        median_ms: 1e3 * median,
        examples_per_second: a.batch as f64 / median,
        setup_seconds,
        peak_rss: crate::bench::peak_rss(),
    };
    println!("{}", serde_json::to_string(&m)?);
    Ok(())
}
