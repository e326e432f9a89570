//! `bench lyrics`: segue's Sentence-BERT beside sentence-transformers on the same texts, in one
//! run, 2 threads each: sentences per second, the cosine of every text's two vectors, and the
//! explained variance of PCA(150) beside scikit-learn's `PCA(svd_solver="full")`.
//!
//! The two sides take turns (`--rounds`: peer, segue, peer, segue, ...) and the speed is the
//! median of each round's ratio: this machine's speed drifts by a fifth over minutes, and a
//! ratio of two runs minutes apart moved with it.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::bench::median;

/// Settings of `bench lyrics`.
#[derive(clap::Args)]
pub struct LyricsArgs {
    /// Models to compare (hub ids or short names).
    #[arg(long, value_delimiter = ',', default_value = "all-MiniLM-L6-v2,all-mpnet-base-v2")]
    pub models: Vec<String>,
    /// Lyrics of the small synthetic preset to encode (the first N non-empty ones).
    #[arg(long, default_value_t = 1000)]
    pub texts: usize,
    /// Extra texts longer than every model's max_seq_length (lyrics joined end to end).
    #[arg(long, default_value_t = 50)]
    pub long_texts: usize,
    /// Turns each side takes, alternating; the speed is the median of the rounds' ratios.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    #[arg(long, default_value_os_t = crate::bench::default_python())]
    pub python: PathBuf,
}

/// The peer side: sentence-transformers and scikit-learn, as `pipeline.py lyrics` uses them.
const PEER: &str = r#"
import json, os, sys, time
os.environ["HF_HUB_OFFLINE"] = "1"
import numpy as np, torch
from sentence_transformers import SentenceTransformer
from sklearn.decomposition import PCA
model_dir, texts_path, out_dir, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
texts = [json.loads(l) for l in open(texts_path, encoding="utf-8")]
m = SentenceTransformer(model_dir, device="cpu")
t = time.perf_counter()
E = m.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
secs = time.perf_counter() - t
E.astype(np.float32).tofile(os.path.join(out_dir, "vectors.f32"))
pca = PCA(n_components=min(150, len(texts), E.shape[1]), svd_solver="full").fit(E)
json.dump({"seconds": secs, "dim": int(E.shape[1]), "max_seq_length": int(m.max_seq_length),
           "explained_variance_ratio": pca.explained_variance_ratio_.tolist()},
          open(os.path.join(out_dir, "peer.json"), "w"))
"#;

/// `threads`: on each side (the global `--threads`: a count, or `auto` for every core).
pub fn run(args: LyricsArgs, threads: usize) -> Result<()> {
    let root = crate::workspace_root();
    let p = crate::pipeline::Pipeline::load(&root.join("pipelines/synth-small.toml"))?;
    segue_pipeline::ensure_synth(&p, &crate::progress::Bars::default())?;
    let lyrics_csv = root.join(".segue/synth-data/small-0/lyrics.csv");
    let table = segue_sessions::ContentTable::read(&lyrics_csv)?;
    let column = table.column("lyrics")?;
    let mut texts: Vec<String> = (0..column.len())
        .filter_map(|i| column.get(i))
        .filter(|t| !t.trim().is_empty())
        .take(args.texts)
        .map(str::to_string)
        .collect();
    if texts.is_empty() {
        bail!("{} has no lyrics", lyrics_csv.display());
    }
    let originals = texts.len();
    for i in 0..args.long_texts {
        let joined: Vec<&str> = (0..6).map(|k| texts[(i * 6 + k) % originals].as_str()).collect();
        texts.push(joined.join("\n"));
    }
    let work = crate::bench::bench_dir().join("lyrics");
    std::fs::create_dir_all(&work)?;
    let texts_path = work.join("texts.jsonl");
    let mut lines = String::new();
    for t in &texts {
        lines.push_str(&serde_json::to_string(t)?);
        lines.push('\n');
    }
    std::fs::write(&texts_path, lines)?;
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().ok();

    let mut rows = Vec::new();
    for name in &args.models {
        let (dir, route) = segue_lyrics::ModelSource::new(name).resolve()?;
        eprintln!("{name}: {} ({route:?})", dir.display());
        let out =
            work.join(segue_lyrics::known_model(name).map_or(name.as_str(), |m| m.short_name()));
        std::fs::create_dir_all(&out)?;
        let encoder = segue_lyrics::SentenceEncoder::load(&dir)?;
        let (mut peer_seconds, mut our_seconds, mut ours) = (Vec::new(), Vec::new(), Vec::new());
        for round in 1..=args.rounds.max(1) {
            eprintln!(
                "  round {round}: sentence-transformers on {} texts, {threads} threads ...",
                texts.len()
            );
            let status = Command::new(&args.python)
                .args(["-c", PEER])
                .arg(&dir)
                .arg(&texts_path)
                .arg(&out)
                .arg(threads.to_string())
                .env("OMP_NUM_THREADS", threads.to_string())
                .status()
                .with_context(|| format!("running {}", args.python.display()))?;
            if !status.success() {
                bail!("the peer failed ({status})");
            }
            let peer: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join("peer.json"))?)?;
            peer_seconds.push(peer["seconds"].as_f64().unwrap_or(f64::NAN));
            eprintln!("  round {round}: segue ...");
            let started = Instant::now();
            ours = encoder.encode(&texts)?;
            our_seconds.push(started.elapsed().as_secs_f64());
        }
        let peer: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("peer.json"))?)?;
        let peer_vectors: Vec<f32> = std::fs::read(out.join("vectors.f32"))?
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let d = encoder.dim();
        if peer_vectors.len() != ours.len() {
            bail!("the peer gave {} values, segue {}", peer_vectors.len(), ours.len());
        }
        let cosines: Vec<f64> = ours
            .chunks_exact(d)
            .zip(peer_vectors.chunks_exact(d))
            .map(|(a, b)| {
                let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
                let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
                dot / (na * nb)
            })
            .collect();
        let min_cos = cosines.iter().cloned().fold(f64::INFINITY, f64::min);
        let below = cosines.iter().filter(|&&c| c < 0.9999).count();
        let long_min = cosines[originals..].iter().cloned().fold(f64::INFINITY, f64::min);
        let all: Vec<usize> = (0..texts.len()).collect();
        let (pca, _) = segue_lyrics::reduce(&ours, d, &all, 150)?;
        let peer_ratio: Vec<f64> = peer["explained_variance_ratio"]
            .as_array()
            .context("peer ratios")?
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        let ratio_diff = pca
            .explained_variance_ratio
            .iter()
            .zip(&peer_ratio)
            .map(|(a, b)| (a - b).abs())
            .fold(0f64, f64::max);
        let n = texts.len() as f64;
        let ratios: Vec<f64> = peer_seconds.iter().zip(&our_seconds).map(|(p, o)| p / o).collect();
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        rows.push(format!(
            "| {name} | {} | {} | {:.1} | {:.1} | {:.2}x ({}) | {min_cos:.6} | {long_min:.6} | {below} | {ratio_diff:.2e} (sum {:.4} vs {:.4}) |",
            texts.len(),
            encoder.config().max_seq_length,
            n / median(our_seconds),
            n / median(peer_seconds),
            median(ratios.clone()),
            shown.join(", "),
            pca.explained_variance_ratio_sum(),
            peer_ratio.iter().sum::<f64>(),
        ));
    }
    println!(
        "\nSentence-BERT, segue beside sentence-transformers ({} threads each, {} alternating rounds; {} lyrics of the small synthetic preset + {} texts longer than max_seq_length):\n",
        threads,
        args.rounds.max(1),
        originals,
        args.long_texts
    );
    println!(
        "| model | texts | max_seq_length | segue texts/s (median) | peer texts/s (median) | speed: median of the rounds' ratios (each round's) | min cosine | min cosine (long texts) | texts < 0.9999 | PCA(150) explained-variance ratio, max abs difference |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
