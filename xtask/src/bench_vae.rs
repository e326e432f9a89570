//! `bench vae`: the acoustic VAE beside the PyTorch peer's (`pipeline.py`'s module, optimiser
//! and loop) on the same standardised features, the same training and held-out tracks, the
//! same sizes and epochs, no early stopping: held-out reconstruction error after every epoch.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::pipeline::Pipeline;
use segue_pipeline::Runner;

/// Settings of `bench vae`.
#[derive(clap::Args)]
pub struct VaeArgs {
    /// Use the small synthetic preset instead of the built-in data.
    #[arg(long)]
    pub small: bool,
    /// Epochs on both sides (no early stopping).
    #[arg(long, default_value_t = 50)]
    pub epochs: usize,
    #[arg(long, default_value_os_t = crate::bench::default_python())]
    pub python: PathBuf,
    #[arg(long, default_value_os_t = crate::workspace_root().join("../shared/peers"))]
    pub peers: PathBuf,
}

const PEER: &str = r#"
import json, sys, time
import numpy as np, torch
peers, z_path, split_path, out_path = sys.argv[1:5]
sys.path.insert(0, peers)
import pipeline
s = json.load(open(split_path))
torch.set_num_threads(s["threads"])
Z = np.fromfile(z_path, dtype=np.float32).reshape(-1, s["width"])
xt = torch.from_numpy(Z[s["train"]]); xh = torch.from_numpy(Z[s["held_out"]])
torch.manual_seed(s["seed"])
vae = pipeline._vae_module(s["width"], s["hidden"], s["latent"])
opt = torch.optim.Adam(vae.parameters(), lr=s["lr"], fused=True)
g = torch.Generator().manual_seed(s["seed"])
recon = []
t = time.perf_counter()
for _ in range(s["epochs"]):
    vae.train()
    perm = torch.randperm(len(xt), generator=g)
    for b in range(0, len(xt), s["batch_size"]):
        x = xt[perm[b:b + s["batch_size"]]]
        rec, mu, logvar = vae(x)
        loss = ((rec - x) ** 2).sum(1).mean() + s["beta"] * (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    vae.eval()
    with torch.no_grad():
        r = vae.dec(vae.mu(vae.enc(xh)))
        recon.append(float(((r - xh) ** 2).sum(1).mean()))
json.dump({"held_out_recon": recon, "seconds": time.perf_counter() - t}, open(out_path, "w"))
"#;

pub fn run(args: VaeArgs) -> Result<()> {
    let root = crate::workspace_root();
    let file =
        root.join(if args.small { "pipelines/synth-small.toml" } else { "pipelines/default.toml" });
    let p = Pipeline::load(&file)?;
    segue_pipeline::ensure_synth(&p, &crate::progress::Bars::default())?;
    let bars = crate::progress::Bars::default();
    let mut runner = Runner::new(&p, &bars);
    for stage in ["ingest", "sessionize"] {
        runner.run(stage, false)?;
    }
    let sessions_dir = runner.dir("sessionize")?;
    let vocab = segue_sessions::read_vocab(&sessions_dir.join("tracks.parquet"))?;
    let counts = segue_sessions::TrackCounts::read(&sessions_dir.join("tracks.parquet"))?;
    let features_file =
        p.content_file(&p.dataset.audio_features).context("the dataset has no audio features")?;
    let features = segue_sessions::read_features(
        &features_file,
        &segue_vae::FEATURES,
        &vocab,
        p.ingest.strict,
    )?;
    let width = segue_vae::FEATURES.len();
    let fit: Vec<usize> = (0..features.ids.len())
        .filter(|&r| counts.seen_in_train(features.ids[r].index()))
        .collect();
    let params = segue_vae::VaeParams { epochs: args.epochs, patience: 0, ..p.vae.clone() };
    eprintln!("segue: VAE on {} training tracks with features ...", fit.len());
    let started = Instant::now();
    let ours = segue_vae::train(&features.values, width, &fit, &params)?;
    let seconds = started.elapsed().as_secs_f64();
    let held: std::collections::HashSet<usize> = ours.held_out.iter().copied().collect();
    let train_rows: Vec<usize> = fit.iter().copied().filter(|r| !held.contains(r)).collect();

    let work = crate::bench::bench_dir()
        .join(format!("vae-{}", if args.small { "small" } else { "builtin" }));
    std::fs::create_dir_all(&work)?;
    let z = ours.standardizer.apply(&features.values);
    let bytes: Vec<u8> = z.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(work.join("z.f32"), bytes)?;
    let split = serde_json::json!({
        "width": width, "hidden": params.hidden, "latent": params.latent, "epochs": params.epochs,
        "batch_size": params.batch_size, "lr": params.lr, "beta": params.beta, "seed": params.seed,
        "threads": 2, "train": train_rows, "held_out": ours.held_out,
    });
    std::fs::write(work.join("split.json"), serde_json::to_vec(&split)?)?;
    eprintln!("peer: the same VAE in PyTorch ...");
    let status = Command::new(&args.python)
        .args(["-c", PEER])
        .arg(&args.peers)
        .arg(work.join("z.f32"))
        .arg(work.join("split.json"))
        .arg(work.join("peer.json"))
        .env("OMP_NUM_THREADS", "2")
        .status()
        .with_context(|| format!("running {}", args.python.display()))?;
    if !status.success() {
        bail!("the peer failed ({status})");
    }
    let peer: serde_json::Value = serde_json::from_slice(&std::fs::read(work.join("peer.json"))?)?;
    let theirs: Vec<f64> = peer["held_out_recon"]
        .as_array()
        .context("peer output")?
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    let mine: Vec<f64> = ours.history.iter().filter_map(|e| e.held_out_recon).collect();
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "\nVAE held-out reconstruction error (squared error summed over the {width} standardised features, mean over {} held-out tracks; {} training tracks, {} epochs, sizes {}-{}-{}):\n",
        ours.held_out.len(),
        train_rows.len(),
        params.epochs,
        width,
        params.hidden,
        params.latent
    );
    println!("| side | epoch 1 | last epoch | best epoch | seconds |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| segue | {:.4} | {:.4} | {:.4} | {seconds:.1} |",
        mine[0],
        mine[mine.len() - 1],
        best(&mine)
    );
    println!(
        "| peer (PyTorch) | {:.4} | {:.4} | {:.4} | {:.1} |",
        theirs[0],
        theirs[theirs.len() - 1],
        best(&theirs),
        peer["seconds"].as_f64().unwrap_or(f64::NAN)
    );
    println!(
        "\nsegue / peer: last epoch {:.3}, best epoch {:.3}",
        mine[mine.len() - 1] / theirs[theirs.len() - 1],
        best(&mine) / best(&theirs)
    );
    Ok(())
}
