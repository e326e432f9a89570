//! Times the parts of one training step of the fused model at a given catalogue size:
//! `cargo run --example step_profile -- [tracks] [steps] [batch]`.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use segue_model::{
    Adam, AdamConfig, Batch, Fusion, FusionConfig, FusionInit, ModelParams, Softmax,
};

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).map(|a| a.parse().expect("a number")).collect();
    let tracks = args.first().copied().unwrap_or(11_366);
    let steps = args.get(1).copied().unwrap_or(30);
    let batch_size = args.get(2).copied().unwrap_or(32);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let config = FusionConfig::from_params(tracks, &ModelParams::default(), vec![]);
    let model = Fusion::new(config, FusionInit::default(), &mut rng).unwrap();
    let vars = model.vars().iter().map(|(_, v)| v.clone()).collect();
    let mut adam = Adam::new(vars, AdamConfig::default());
    let (mut graph, mut fast) = (0.0, 0.0);
    let mut batches = Vec::new();
    for _ in 0..steps {
        // Window lengths as in sessions of 33 tracks: min(t, 20) for t uniform in 1..33.
        let inputs: Vec<Vec<u32>> = (0..batch_size)
            .map(|_| {
                let len = rng.random_range(1..33usize).min(20);
                (0..len).map(|_| rng.random_range(0..tracks as u32)).collect()
            })
            .collect();
        let refs: Vec<&[u32]> = inputs.iter().map(|v| v.as_slice()).collect();
        let targets = (0..batch_size).map(|_| rng.random_range(0..tracks as u32)).collect();
        batches.push(Batch::new(&refs, targets));
    }
    // candle's graph end to end with candle's gradient store, then the training step.
    for batch in
        batches.iter().take(if std::env::var_os("FAST_ONLY").is_some() { 0 } else { steps })
    {
        let t = Instant::now();
        let loss = model.loss(batch, &Softmax::Full, &mut rng).unwrap();
        adam.step(&loss.backward().unwrap()).unwrap();
        graph += t.elapsed().as_secs_f64();
    }
    let mut each = Vec::with_capacity(steps);
    for batch in &batches {
        let t = Instant::now();
        model.step(batch, &Softmax::Full, &mut rng, &mut adam).unwrap();
        each.push(t.elapsed().as_secs_f64());
        fast += each.last().unwrap();
    }
    let ms = |s: f64| 1000.0 * s / steps as f64;
    // The median and the fastest step say more than the mean on a busy machine.
    each.sort_by(f64::total_cmp);
    println!(
        "{tracks} tracks, batch {batch_size}, windows min(t, 20) of sessions of 33: candle graph {:.1} ms/step, training step {:.1} ms/step ({:.0} examples/s; median {:.1} ms, fastest {:.1} ms)",
        ms(graph),
        ms(fast),
        (steps * batch_size) as f64 / fast,
        1000.0 * each[each.len() / 2],
        1000.0 * each[0],
    );
}
