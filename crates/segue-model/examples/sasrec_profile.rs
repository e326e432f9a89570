//! Times SASRec's training step at the built-in data's size (11,366 tracks, batch 256, inputs
//! of 20): gradients and Adam separately. `cargo run --release --example sasrec_profile`.
//!
//! glibc returns every freed block above 128 KiB to the system, so a step that allocates
//! page-faults its way through: set `MALLOC_MMAP_THRESHOLD_=67108864
//! MALLOC_TRIM_THRESHOLD_=268435456` as `cargo xtask` does.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segue_model::{Adam, AdamConfig, Batch, SasRec, SasRecConfig, SasRecParams, SasRecScratch};

fn main() {
    let tracks = 11_366;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let config = SasRecConfig { tracks, max_len: 20, params: SasRecParams::default() };
    let model = SasRec::new(config, &mut rng).expect("a model");
    let vars = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let mut adam = Adam::new(vars, AdamConfig::default());
    let rows: Vec<Vec<u32>> = (0..256)
        .map(|_| {
            (0..rng.random_range(1..=20)).map(|_| rng.random_range(0..tracks as u32)).collect()
        })
        .collect();
    let inputs: Vec<&[u32]> = rows.iter().map(|r| r.as_slice()).collect();
    let targets = (0..256).map(|_| rng.random_range(0..tracks as u32)).collect();
    let batch = Batch::new(&inputs, targets);
    let mut scratch = SasRecScratch::default();
    for step in 0..30 {
        let t0 = Instant::now();
        let (_, grads) = model.gradients(&batch, &mut rng, &mut scratch).expect("gradients");
        let t1 = Instant::now();
        adam.begin_step();
        for (index, (_, g)) in grads.iter().enumerate() {
            adam.update_var(index, g).expect("an update");
        }
        let t2 = Instant::now();
        println!(
            "step {step}: gradients {:.1} ms, adam {:.1} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3
        );
    }
}
