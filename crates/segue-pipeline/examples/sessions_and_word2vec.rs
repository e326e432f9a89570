//! Runs a pipeline's `sessionize` and `word2vec` stages from Rust (reusing what its cache holds)
//! and reads the results in memory: the training sessions, the vocabulary and the track
//! vectors, then prints the nearest neighbours of the most played training track.
//!
//!     cargo run --release --example sessions_and_word2vec -- [PIPELINE_FILE]
//!
//! The pipeline file defaults to `./segue.toml`; `pipelines/default.toml` is the built-in data.

use std::path::PathBuf;

use segue_core::{EmbeddingTable, TrackId};
use segue_pipeline::{Pipeline, Runner, Word2VecReport, files};
use segue_sessions::Split;

/// Says each stage's lines on stderr (no bars).
struct Lines;

impl segue_core::Progress for Lines {
    fn start(&self, step: &str, _total: Option<u64>, _unit: &str) {
        eprintln!("  {step} ...");
    }
    fn advance(&self, _n: u64) {}
    fn finish(&self) {}
    fn note(&self, line: &str) {
        eprintln!("{line}");
    }
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    dot / (norm(a) * norm(b))
}

fn main() -> anyhow::Result<()> {
    let file =
        std::env::args_os().nth(1).map_or_else(|| PathBuf::from("segue.toml"), PathBuf::from);
    let pipeline = Pipeline::load(&file)?;
    let mut runner = Runner::new(&pipeline, &Lines);
    for stage in segue_pipeline::closure("word2vec") {
        runner.run(stage, false)?;
    }

    let sessions = runner.dir("sessionize")?;
    let train = segue_sessions::read_splits(&sessions.join(files::SESSIONS), &[Split::Train])?;
    let vocab = segue_sessions::read_vocab(&sessions.join(files::TRACKS))?;
    let word2vec = runner.dir("word2vec")?;
    let vectors = EmbeddingTable::load(&word2vec.join(files::WORD2VEC_TABLE))?;
    let report: Word2VecReport = segue_pipeline::load_json(&word2vec.join(files::WORD2VEC_REPORT))?;
    println!(
        "{} training sessions, {} tracks, {} with vectors ({:.1} s of Word2Vec)",
        train.offsets.len() - 1,
        vocab.len(),
        report.tracks_with_vectors,
        report.train_seconds
    );

    let mut plays = vec![0usize; vocab.len()];
    for &t in &train.flat {
        plays[t as usize] += 1;
    }
    let Some(top) = (0..vocab.len()).max_by_key(|&t| plays[t]) else {
        return Ok(());
    };
    let name = |t: usize| {
        vocab.get(TrackId(t as u32)).map_or("?".into(), |e| format!("{} - {}", e.artist, e.title))
    };
    let row = vectors.row(TrackId(top as u32));
    let mut near: Vec<(f32, usize)> = (0..vocab.len())
        .filter(|&t| t != top && plays[t] > 0)
        .map(|t| (cosine(row, vectors.row(TrackId(t as u32))), t))
        .collect();
    near.sort_by(|a, b| b.0.total_cmp(&a.0));
    println!("nearest to {} ({} plays in training):", name(top), plays[top]);
    for (similarity, t) in near.iter().take(10) {
        println!("  {similarity:.3}  {}", name(*t));
    }
    Ok(())
}
