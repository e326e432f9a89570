//! Times the encoder on a file of texts (one JSON string per line), for profiling:
//! `cargo run --release --example encode_speed -- MODEL_DIR TEXTS.jsonl [THREADS]`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: encode_speed MODEL_DIR TEXTS.jsonl [THREADS]".into());
    }
    let threads: usize = args.get(3).map_or(Ok(2), |t| t.parse())?;
    if let Ok(t) = std::env::var("RHS_PACK") {
        gemm::set_rhs_packing_threshold(t.parse()?);
    }
    if let Ok(t) = std::env::var("LHS_PACK") {
        gemm::set_lhs_packing_threshold_single_thread(t.parse()?);
    }
    rayon::ThreadPoolBuilder::new().num_threads(threads).build_global()?;
    let texts: Vec<String> = std::fs::read_to_string(&args[2])?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let encoder = segue_lyrics::SentenceEncoder::load(std::path::Path::new(&args[1]))?;
    let started = std::time::Instant::now();
    let ids = encoder.tokenize(&texts)?;
    let tokenized = started.elapsed().as_secs_f64();
    let tokens: usize = ids.iter().map(Vec::len).sum();
    let v = encoder.encode_ids(&ids, &segue_core::NoProgress);
    let total = started.elapsed().as_secs_f64();
    println!(
        "{} texts, {tokens} tokens: tokenize {tokenized:.2} s, total {total:.2} s, {:.1} texts/s, checksum {:.4}",
        texts.len(),
        texts.len() as f64 / total,
        v.iter().sum::<f32>()
    );
    Ok(())
}
