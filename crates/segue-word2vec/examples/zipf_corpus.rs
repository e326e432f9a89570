//! Trains CBOW on a generated corpus shaped like the paper's listening log (about 195,000
//! sessions of 19 tracks, 414,000 distinct tracks with Zipf-distributed plays) and prints the
//! throughput: a fixed workload for profiling the training loop without any data files.
//!
//! ```text
//! cargo run --release --example zipf_corpus -- [threads] [epochs] [sessions]
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segue_word2vec::{Corpus, Params, train};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let threads = args.next().transpose()?.unwrap_or(1);
    let epochs = args.next().transpose()?.unwrap_or(1);
    let sessions = args.next().transpose()?.unwrap_or(195_000);
    let tokens = 414_000usize;

    // Zipf(1) by inverse transform on the cumulative weights.
    let mut cumulative = Vec::with_capacity(tokens);
    let mut total = 0f64;
    for r in 0..tokens {
        total += 1.0 / (r as f64 + 1.0);
        cumulative.push(total);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut flat = Vec::with_capacity(sessions * 19);
    let mut offsets = Vec::with_capacity(sessions + 1);
    offsets.push(0);
    for _ in 0..sessions {
        let len = rng.random_range(2..=36);
        for _ in 0..len {
            let u = rng.random::<f64>() * total;
            flat.push(cumulative.partition_point(|&c| c < u) as u32);
        }
        offsets.push(flat.len());
    }
    let corpus = Corpus::new(&flat, &offsets, tokens)?;
    let params = Params { threads, epochs, ..Params::default() };
    let model = train(&corpus, &params)?;
    println!(
        "{} sessions, {} tokens, {} threads, {} epochs: {:.2} s, {:.0} raw words/s",
        sessions,
        flat.len(),
        threads,
        epochs,
        model.stats().seconds,
        model.stats().words_per_second()
    );
    Ok(())
}
