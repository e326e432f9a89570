//! `bench scale`: ingest + sessionize at growing sizes of one synthetic structure (the large
//! preset, scaled down in users, tracks and listens together), each run in its own process
//! (`bench sessions-worker`), so its seconds and peak memory are its own: the curve that shows
//! whether time per event and memory stay flat as the log grows.

use std::process::Command;

use anyhow::{Context, Result};
use segue_synth::{Preset, SynthConfig, generate};

#[derive(clap::Args)]
pub struct ScaleArgs {
    /// Millions of listens per point, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [0.5, 5.5, 50.0])]
    pub millions: Vec<f64>,
    /// Remove each generated log after its run (the 50 M log is 3.4 GB).
    #[arg(long)]
    pub clean: bool,
}

/// The large preset scaled to `listens`: users and tracks in the same proportion.
fn scaled(listens: usize) -> SynthConfig {
    let large = SynthConfig::preset(Preset::Large, 0);
    let f = listens as f64 / large.listens as f64;
    SynthConfig {
        users: ((large.users as f64 * f).round() as usize).max(10),
        tracks: ((large.tracks as f64 * f).round() as usize).max(1_000),
        listens,
        ..large
    }
}

pub fn run(args: ScaleArgs) -> Result<()> {
    let exe = std::env::current_exe()?;
    println!(
        "ingest + sessionize (Last.fm 1K TSV in, events and sessions Parquet out, default sessionization), the large synthetic preset scaled; one process per size\n"
    );
    println!(
        "| listens | users | tracks | events kept | seconds | µs / listen | peak RSS | bytes / listen |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &m in &args.millions {
        let listens = (m * 1e6).round() as usize;
        let cfg = scaled(listens);
        let dir = crate::bench::bench_dir().join(format!("scale-{listens}"));
        let log = dir.join("listens.tsv");
        if !log.exists() {
            eprintln!("generating {listens} listens into {}", dir.display());
            generate(&cfg).write(&dir)?;
        }
        let out = dir.join("out");
        let o = Command::new(&exe)
            .args(["bench", "sessions-worker", "--format", "lastfm-1k", "--listens"])
            .arg(&log)
            .arg("--out")
            .arg(&out)
            .output()
            .context("running the sessions worker")?;
        if !o.status.success() {
            anyhow::bail!("the worker failed at {listens}: {}", String::from_utf8_lossy(&o.stderr));
        }
        let r = crate::bench::last_json_line(&o.stdout)?;
        let seconds = r["seconds"].as_f64().context("seconds")?;
        let rss = r["peak_rss"].as_f64().context("peak_rss")?;
        println!(
            "| {listens} | {} | {} | {} | {seconds:.1} | {:.2} | {:.2} GB | {:.0} |",
            cfg.users,
            cfg.tracks,
            r["events"],
            1e6 * seconds / listens as f64,
            rss / 1e9,
            rss / listens as f64
        );
        std::fs::remove_dir_all(&out).ok();
        if args.clean {
            std::fs::remove_dir_all(&dir).ok();
        }
    }
    Ok(())
}
