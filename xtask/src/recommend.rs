//! `cargo xtask recommend`: the answer of segue-pipeline's [`Recommender`] on the terminal.

use std::time::Instant;

use anyhow::Result;
use segue_model::Variant;
use segue_pipeline::{Answer, Pipeline, Recommender, SessionSource, default_variant};

/// The answer as a person reads it.
pub fn print(a: &Answer, pipeline: &str) {
    println!(
        "Session ({} tracks), {} seed {} of pipeline {pipeline}:",
        a.session.len(),
        a.variant,
        a.seed
    );
    for (i, t) in a.session.iter().enumerate() {
        let seen = if t.seen_in_train { "" } else { "  [never played in training]" };
        println!("  {:>3}. {} - {}{seen}", i + 1, t.artist, t.title);
    }
    for u in &a.unknown {
        println!("  not in the vocabulary: {:?} ({})", u.given, u.place);
    }
    println!("\nTop {} next tracks:", a.recommendations.len());
    println!("  {:>4}  {:>8}  {:>7}  {:<9}  artist - title", "rank", "score", "prob %", "training");
    for r in &a.recommendations {
        println!(
            "  {:>4}  {:>8.3}  {:>7.3}  {:<9}  {} - {}{}",
            r.rank,
            r.score,
            100.0 * r.probability,
            if r.seen_in_train { "seen" } else { "unseen" },
            r.artist,
            r.title,
            if r.in_session { "  (in the session)" } else { "" }
        );
    }
    for n in &a.notes {
        println!("note: {n}");
    }
}

/// `cargo xtask recommend`.
pub fn run(
    p: &Pipeline,
    variant: Option<Variant>,
    seed: Option<u64>,
    source: SessionSource,
    k: usize,
    json: bool,
) -> Result<()> {
    let started = Instant::now();
    let variant = match variant {
        Some(v) => v,
        None => default_variant(p)?,
    };
    let rec = Recommender::load(p, variant, seed)?;
    let answer = rec.answer(&source, k)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        print(&answer, &p.pipeline.name);
        eprintln!(
            "recommend: {:.3} s (model loaded and session scored)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
