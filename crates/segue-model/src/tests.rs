use candle_core::{D, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segue_core::NoProgress;

use crate::*;

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn randn(r: &mut ChaCha8Rng, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| r.random_range(-1.0..1.0f32) * scale).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    a.sub(b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar().unwrap()
}

/// One direction of a GRU with plain candle ops over one unpadded sequence (PyTorch's gates).
fn reference_dir(x: &Tensor, w: &Tensor, b: &Tensor, reverse: bool) -> Tensor {
    let (t, g3) = x.dims2().unwrap();
    let h = g3 / 3;
    let mut state = Tensor::zeros((1, h), candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut outs = vec![None; t];
    let order: Vec<usize> = if reverse { (0..t).rev().collect() } else { (0..t).collect() };
    for i in order {
        let xi = x.narrow(0, i, 1).unwrap();
        let gh = state.matmul(&w.t().unwrap()).unwrap().broadcast_add(b).unwrap();
        let part = |m: &Tensor, k: usize| m.narrow(D::Minus1, k * h, h).unwrap();
        let r = candle_nn::ops::sigmoid(&part(&xi, 0).add(&part(&gh, 0)).unwrap()).unwrap();
        let z = candle_nn::ops::sigmoid(&part(&xi, 1).add(&part(&gh, 1)).unwrap()).unwrap();
        let n = part(&xi, 2).add(&r.mul(&part(&gh, 2)).unwrap()).unwrap().tanh().unwrap();
        state = n.add(&z.mul(&state.sub(&n).unwrap()).unwrap()).unwrap();
        outs[i] = Some(state.clone());
    }
    Tensor::cat(&outs.into_iter().map(Option::unwrap).collect::<Vec<_>>(), 0).unwrap()
}

#[test]
fn bigru_matches_a_plain_gru_forward_and_backward_with_padding() {
    let mut r = rng(1);
    let (b, t, h) = (3, 5, 4);
    let lengths = [5, 2, 3];
    let x = Var::from_tensor(&randn(&mut r, &[b, t, 2, 3 * h], 1.0)).unwrap();
    let w = Var::from_tensor(&randn(&mut r, &[2, 3 * h, h], 0.5)).unwrap();
    let bias = Var::from_tensor(&randn(&mut r, &[2, 3 * h], 0.5)).unwrap();
    let weights = randn(&mut r, &[b, t, h], 1.0);
    let out = bigru(&x, &w, &bias, &lengths).unwrap();
    // Reference: each sequence alone, unpadded, both directions, summed.
    let mut ref_loss = Tensor::zeros((), candle_core::DType::F32, &Device::Cpu).unwrap();
    for (i, &len) in lengths.iter().enumerate() {
        let xi = x.narrow(0, i, 1).unwrap().squeeze(0).unwrap().narrow(0, 0, len).unwrap();
        let dir = |d: usize| {
            let xd = xi.narrow(1, d, 1).unwrap().squeeze(1).unwrap();
            let wd = w.narrow(0, d, 1).unwrap().squeeze(0).unwrap();
            let bd = bias.narrow(0, d, 1).unwrap().squeeze(0).unwrap();
            reference_dir(&xd, &wd, &bd, d == 1)
        };
        let expect = dir(0).add(&dir(1)).unwrap();
        let got = out.narrow(0, i, 1).unwrap().squeeze(0).unwrap();
        assert!(max_diff(&got.narrow(0, 0, len).unwrap(), &expect) < 1e-5);
        // Padding is zero.
        if len < t {
            let pad = got.narrow(0, len, t - len).unwrap();
            assert_eq!(pad.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        }
        let wi = weights.narrow(0, i, 1).unwrap().squeeze(0).unwrap().narrow(0, 0, len).unwrap();
        ref_loss = ref_loss.add(&expect.mul(&wi).unwrap().sum_all().unwrap()).unwrap();
    }
    let loss = out.mul(&weights).unwrap().sum_all().unwrap();
    let (g, gr) = (loss.backward().unwrap(), ref_loss.backward().unwrap());
    for v in [&x, &w, &bias] {
        let (a, e) = (g.get(v).unwrap(), gr.get(v).unwrap());
        let scale =
            e.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(max_diff(a, e) < 1e-5 * scale.max(1.0), "{}", max_diff(a, e));
    }
    // Inputs at padded positions get no gradient.
    let gx = g.get(&x).unwrap();
    let padded = gx.narrow(0, 1, 1).unwrap().narrow(1, 2, 3).unwrap();
    assert_eq!(padded.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
}

fn small_config(content_dims: Vec<usize>) -> FusionConfig {
    FusionConfig {
        tracks: 30,
        embedding_dim: 6,
        hidden: 5,
        fc: 7,
        dropout: 0.0,
        leaky_slope: 0.01,
        content_dims,
        repeat_positions: 0,
    }
}

fn content(r: &mut ChaCha8Rng, rows: usize, d: usize) -> Vec<f32> {
    (0..rows * d).map(|_| r.random_range(-1.0..1.0f32)).collect()
}

#[test]
fn padded_and_unpadded_inputs_give_the_same_scores() {
    let mut r = rng(2);
    let init =
        FusionInit { e1: None, content: vec![content(&mut r, 30, 3), content(&mut r, 30, 2)] };
    let m = Fusion::new(small_config(vec![3, 2]), init, &mut r).unwrap();
    let long: &[u32] = &[3, 9, 4, 11, 2, 7];
    let short: &[u32] = &[5, 6];
    let together = m.scores(&Batch::new(&[long, short], vec![])).unwrap();
    let alone = m.scores(&Batch::new(&[short], vec![])).unwrap();
    assert!(max_diff(&together.narrow(0, 1, 1).unwrap(), &alone) < 1e-5);
    // Changing what sits in the padding changes nothing.
    let mut b = Batch::new(&[long, short], vec![]);
    for id in &mut b.ids[6 + 2..] {
        *id = 17;
    }
    assert!(max_diff(&m.scores(&b).unwrap(), &together) < 1e-6);
}

/// Central finite differences of the loss against candle's gradients, for a few entries of
/// every parameter (f32, so the tolerance is loose but far below any real error).
#[test]
fn fusion_gradients_match_finite_differences() {
    let mut r = rng(3);
    let init = FusionInit { e1: None, content: vec![content(&mut r, 30, 3)] };
    let m = Fusion::new(small_config(vec![3]), init, &mut r).unwrap();
    let batch = Batch::new(&[&[1, 2, 3, 4], &[5, 6], &[7, 8, 9]], vec![10, 11, 2]);
    let loss_of = |m: &Fusion| m.loss(&batch, &Softmax::Full, &mut rng(0)).unwrap();
    let grads = loss_of(&m).backward().unwrap();
    let eps = 1e-2f32;
    for (name, var) in m.vars() {
        // Every parameter is reached by the backward pass, and not with zeros.
        let g = grads.get(var).unwrap_or_else(|| panic!("{name} has no gradient"));
        let g = g.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(g.iter().any(|x| x.abs() > 1e-6), "{name} has an all-zero gradient");
        let base = var.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let picks: Vec<usize> = (0..6).map(|_| r.random_range(0..base.len())).collect();
        for i in picks {
            let at = |delta: f32| {
                let mut v = base.clone();
                v[i] += delta;
                var.set(&Tensor::from_vec(v, var.dims(), &Device::Cpu).unwrap()).unwrap();
                loss_of(&m).to_scalar::<f32>().unwrap()
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            var.set(&Tensor::from_vec(base.clone(), var.dims(), &Device::Cpu).unwrap()).unwrap();
            let analytic = g[i];
            assert!(
                (numeric - analytic).abs() < 2e-3 + 2e-2 * analytic.abs(),
                "{name}[{i}]: finite difference {numeric}, gradient {analytic}"
            );
        }
    }
}

#[test]
fn adam_matches_the_formula() {
    let p = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 0.5], &Device::Cpu).unwrap()).unwrap();
    let mut adam = Adam::new(vec![p.clone()], AdamConfig { lr: 0.1, ..AdamConfig::default() });
    let mut expect = [1.0f64, -2.0, 0.5];
    let (mut m, mut v) = ([0.0f64; 3], [0.0f64; 3]);
    for t in 1..=3 {
        // loss = sum(c_i p_i^2) so g = 2 c_i p_i
        let c = Tensor::new(&[1.0f32, 3.0, -0.5], &Device::Cpu).unwrap();
        let loss = p.sqr().unwrap().mul(&c).unwrap().sum_all().unwrap();
        adam.step(&loss.backward().unwrap()).unwrap();
        for i in 0..3 {
            let g = 2.0 * [1.0, 3.0, -0.5][i] * expect[i];
            m[i] = 0.9 * m[i] + 0.1 * g;
            v[i] = 0.999 * v[i] + 0.001 * g * g;
            let mh = m[i] / (1.0 - 0.9f64.powi(t));
            let vh = v[i] / (1.0 - 0.999f64.powi(t));
            expect[i] -= 0.1 * mh / (vh.sqrt() + 1e-8);
        }
    }
    let got = p.to_vec1::<f32>().unwrap();
    for i in 0..3 {
        assert!((got[i] as f64 - expect[i]).abs() < 1e-5, "{got:?} vs {expect:?}");
    }
}

/// Sessions that repeat one of three fixed orders: the next track is a function of the last.
fn planted(sessions: usize, seed: u64) -> (Vec<u32>, Vec<usize>, Vec<u32>) {
    let mut r = rng(seed);
    let orders: [&[u32]; 3] =
        [&[0, 1, 2, 3, 4, 5, 6], &[7, 8, 9, 10, 11, 12], &[13, 14, 15, 16, 17, 18, 19]];
    let (mut flat, mut offsets, mut users) = (Vec::new(), vec![0], Vec::new());
    for s in 0..sessions {
        let o = orders[r.random_range(0..3)];
        let from = r.random_range(0..3);
        flat.extend_from_slice(&o[from..]);
        offsets.push(flat.len());
        users.push((s % 4) as u32);
    }
    (flat, offsets, users)
}

fn params(epochs: usize) -> ModelParams {
    ModelParams {
        embedding_dim: 8,
        hidden: 8,
        fc: 16,
        epochs,
        patience: 0,
        batch_size: 16,
        lr: 0.01,
        gru4rec_negatives: 10,
        ..ModelParams::default()
    }
}

fn options(p: ModelParams, flat: &[u32]) -> TrainOptions {
    let mut counts = vec![0u32; 30];
    for &t in flat {
        counts[t as usize] += 1;
    }
    TrainOptions { params: p, train_counts: counts, dir: None, resume: false }
}

fn fusion(p: &ModelParams) -> Network {
    let c = FusionConfig::from_params(30, p, vec![]);
    Network::Fusion(Fusion::new(c, FusionInit::default(), &mut rng(p.seed)).unwrap())
}

#[test]
fn fusion_learns_planted_orders_and_is_deterministic() {
    let (flat, offsets, users) = planted(200, 4);
    let s = Sessions::new(&flat, &offsets, &users).unwrap();
    let (tf, to, tu) = planted(40, 5);
    let test = Sessions::new(&tf, &to, &tu).unwrap();
    let p = params(4);
    let net = fusion(&p);
    let before = evaluate(&net, &test, &[], 20, &[1], 64).unwrap();
    let trained = train(&net, &s, None, &options(p.clone(), &flat), &NoProgress).unwrap();
    let after = evaluate(&net, &test, &[], 20, &[1], 64).unwrap();
    assert!(after.all.hit[0] > 0.95, "HR@1 {} (before {})", after.all.hit[0], before.all.hit[0]);
    assert!(trained.history.last().unwrap().loss < trained.history[0].loss);
    // Same seed, same run.
    let again = fusion(&p);
    let t2 = train(&again, &s, None, &options(p, &flat), &NoProgress).unwrap();
    assert_eq!(
        trained.history.iter().map(|e| e.loss).collect::<Vec<_>>(),
        t2.history.iter().map(|e| e.loss).collect::<Vec<_>>()
    );
}

#[test]
fn sampled_softmax_and_gru4rec_learn() {
    let (flat, offsets, users) = planted(200, 6);
    let s = Sessions::new(&flat, &offsets, &users).unwrap();
    let p = ModelParams { sampled_negatives: 8, ..params(4) };
    let net = fusion(&p);
    train(&net, &s, None, &options(p.clone(), &flat), &NoProgress).unwrap();
    let r = evaluate(&net, &s, &[], 20, &[1], 64).unwrap();
    assert!(r.all.hit[0] > 0.9, "sampled softmax HR@1 {}", r.all.hit[0]);
    let g = Network::Gru4Rec(
        Gru4Rec::new(
            Gru4RecConfig { tracks: 30, embedding_dim: 8, hidden: 8, dropout: 0.0, negatives: 10 },
            &mut rng(0),
        )
        .unwrap(),
    );
    let t = train(&g, &s, None, &options(params(6), &flat), &NoProgress).unwrap();
    assert_eq!(t.history[0].examples, flat.len() - (offsets.len() - 1));
    let r = evaluate(&g, &s, &[], 20, &[1], 64).unwrap();
    assert!(r.all.hit[0] > 0.9, "GRU4Rec HR@1 {}", r.all.hit[0]);
}

#[test]
fn min_input_leaves_earlier_targets_out_of_training_and_evaluation() {
    let (flat, offsets, users) = planted(120, 7);
    let s = Sessions::new(&flat, &offsets, &users).unwrap().with_min_input(3);
    // Planted sessions hold 4 to 7 tracks: positions 3.. of each are predicted.
    let expected: usize = offsets.windows(2).map(|w| (w[1] - w[0]).saturating_sub(3)).sum();
    let examples = s.examples();
    assert_eq!(examples.len(), expected);
    assert!(examples.iter().all(|e| e.t >= 3 && s.input(e, 20).len() >= 3));
    assert_eq!(Sessions::new(&flat, &offsets, &users).unwrap().with_min_input(0).min_input, 1);

    let p = params(2);
    let net = fusion(&p);
    let t = train(&net, &s, None, &options(p.clone(), &flat), &NoProgress).unwrap();
    assert_eq!(t.history[0].examples, expected);
    let r = evaluate(&net, &s, &[], 20, &[1], 64).unwrap();
    assert_eq!(r.all.count as usize, expected);

    // GRU4Rec reads every track into its state but predicts only from position 3 on.
    let g = Network::Gru4Rec(
        Gru4Rec::new(
            Gru4RecConfig { tracks: 30, embedding_dim: 8, hidden: 8, dropout: 0.0, negatives: 10 },
            &mut rng(0),
        )
        .unwrap(),
    );
    let t = train(&g, &s, None, &options(params(8), &flat), &NoProgress).unwrap();
    assert_eq!(t.history[0].examples, expected);
    assert!(t.history.last().unwrap().loss < t.history[0].loss);
    let r = evaluate(&g, &s, &[], 20, &[1], 64).unwrap();
    assert_eq!(r.all.count as usize, expected);
    // Planted orders are fixed after 3 tracks: the 4th on is predictable.
    assert!(r.all.hit[0] > 0.9, "GRU4Rec HR@1 {}", r.all.hit[0]);
}

#[test]
fn resume_continues_exactly_and_early_stopping_keeps_the_best() {
    let (flat, offsets, users) = planted(120, 7);
    let s = Sessions::new(&flat, &offsets, &users).unwrap();
    let (vf, vo, vu) = planted(30, 8);
    let v = Sessions::new(&vf, &vo, &vu).unwrap();
    let dir = std::env::temp_dir().join(format!("segue-model-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let p = ModelParams { patience: 2, ..params(3) };
    // Three epochs straight through.
    let full = fusion(&p);
    let straight = train(&full, &s, Some(&v), &options(p.clone(), &flat), &NoProgress).unwrap();
    // Two epochs, then a resumed run to three.
    let part = fusion(&p);
    let opts = TrainOptions {
        dir: Some(dir.clone()),
        ..options(ModelParams { epochs: 2, ..p.clone() }, &flat)
    };
    train(&part, &s, Some(&v), &opts, &NoProgress).unwrap();
    let resumed_net = fusion(&p);
    let opts = TrainOptions { dir: Some(dir.clone()), resume: true, ..options(p.clone(), &flat) };
    let resumed = train(&resumed_net, &s, Some(&v), &opts, &NoProgress).unwrap();
    assert_eq!(resumed.resumed_after, Some(2));
    assert_eq!(straight.history.len(), resumed.history.len());
    // Epochs before the resume come back from the checkpoint's JSON (exact to 1e-15: the
    // JSON reader may round the last bit); the epoch after it is recomputed bit for bit.
    for (a, b) in straight.history.iter().zip(&resumed.history).take(2) {
        assert!((a.loss - b.loss).abs() < 1e-12 && a.valid_hr10 == b.valid_hr10);
    }
    let (a, b) = (&straight.history[2], &resumed.history[2]);
    assert_eq!((a.loss, a.valid_hr10), (b.loss, b.valid_hr10));
    let log = std::fs::read_to_string(dir.join("train.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3);
    // The kept weights are the best epoch's: re-evaluating gives its validation HR@10.
    let best = &resumed.history[resumed.best_epoch - 1];
    let again = evaluate(&resumed_net, &v, &[], 20, &[10], 256).unwrap();
    assert_eq!(Some(again.all.hit[0]), best.valid_hr10);
    assert!(resumed.history.iter().all(|e| e.valid_hr10 <= best.valid_hr10));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `max_steps` stops mid-epoch: 200 planted sessions of batches of 16 make many steps per
/// epoch; a cap of one and a half epochs trains one whole epoch and half of the next.
#[test]
fn max_steps_caps_training_mid_epoch() {
    let (flat, offsets, users) = planted(200, 4);
    let s = Sessions::new(&flat, &offsets, &users).unwrap();
    let p = params(5);
    let net = fusion(&p);
    let whole = train(&net, &s, None, &options(p.clone(), &flat), &NoProgress).unwrap();
    let per_epoch = whole.history[0].examples.div_ceil(p.batch_size);
    assert!(per_epoch >= 4, "{per_epoch} steps per epoch");
    let cap = per_epoch + per_epoch / 2;
    let capped = ModelParams { max_steps: cap, ..p.clone() };
    let net = fusion(&capped);
    let t = train(&net, &s, None, &options(capped, &flat), &NoProgress).unwrap();
    assert_eq!(t.history.len(), 2);
    assert_eq!(t.history[0].examples, whole.history[0].examples);
    assert_eq!(t.history[1].examples, (per_epoch / 2) * p.batch_size);
    // The first epoch is the uncapped run's, bit for bit.
    assert_eq!(t.history[0].loss, whole.history[0].loss);
    // GRU4Rec trains whole epochs: a cap is refused, and says so.
    let gru = ModelParams { max_steps: 3, ..p };
    let c = Gru4RecConfig { tracks: 30, embedding_dim: 8, hidden: 8, dropout: 0.0, negatives: 10 };
    let net = Network::Gru4Rec(Gru4Rec::new(c, &mut rng(0)).unwrap());
    let e = train(&net, &s, None, &options(gru, &flat), &NoProgress).unwrap_err();
    assert!(e.to_string().contains("GRU4Rec trains whole epochs"), "{e}");
}

#[test]
fn an_exploding_loss_stops_with_a_clear_error() {
    let (flat, offsets, users) = planted(50, 9);
    let s = Sessions::new(&flat, &offsets, &users).unwrap();
    let p = ModelParams { lr: 1e30, ..params(3) };
    let net = fusion(&p);
    let e = train(&net, &s, None, &options(p, &flat), &NoProgress).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("training loss") && text.contains("epoch 1"), "{text}");
    assert!(text.contains("try a smaller model.lr"), "{text}");
    assert!(matches!(e, segue_core::Error::Diverged { epoch: 1, step: Some(_), .. }), "{e:?}");
}

#[test]
fn variants_and_params() {
    for v in Variant::ALL {
        assert_eq!(Variant::from_id(v.id()).unwrap(), v);
    }
    assert!(Variant::from_id("annx").unwrap_err().to_string().contains("ann-lsa"));
    assert_eq!(Variant::AnnwAcousticLyrics.modalities(), &[Modality::Acoustic, Modality::Lyrics]);
    assert_eq!(Variant::AnnLsa.e1(), E1Start::Lsa);
    let bad = ModelParams { dropout: 1.0, ..ModelParams::default() };
    assert!(bad.validate().unwrap_err().to_string().contains("model.dropout"));
    assert!(Sessions::new(&[1, 2], &[0, 1], &[0]).is_err());
}

/// The training step's hand-made gradients (every layer) equal candle's graph of the
/// same loss (same dropout draws), for the full and the sampled softmax.
#[test]
fn fast_step_gradients_equal_the_candle_graph() {
    let mut r = rng(11);
    // Two content tables of different widths: their context vectors sit side by side.
    let init =
        FusionInit { e1: None, content: vec![content(&mut r, 30, 3), content(&mut r, 30, 2)] };
    let config = FusionConfig { dropout: 0.3, ..small_config(vec![3, 2]) };
    let m = Fusion::new(config, init, &mut r).unwrap();
    // Track 2 twice in a row and track 5 in two rows: gradients of repeated rows add up.
    let batch = Batch::new(&[&[1, 2, 2, 4], &[5, 6], &[7, 5, 9]], vec![10, 11, 2]);
    let counts: Vec<u32> = (0..30).map(|i| 1 + i % 7).collect();
    let sampled =
        Softmax::Sampled { negatives: 12, sampler: Sampler::from_counts(&counts, 0.75).unwrap() };
    for softmax in [Softmax::Full, sampled] {
        let reference = m.loss(&batch, &softmax, &mut rng(5)).unwrap();
        let grads = reference.backward().unwrap();
        let (loss, fast) = m.gradients(&batch, &softmax, &mut rng(5)).unwrap();
        let expect = reference.to_scalar::<f32>().unwrap();
        assert!((loss - expect).abs() < 1e-5 * expect.abs().max(1.0), "{loss} vs {expect}");
        for ((name, var), (fname, g)) in m.vars().iter().zip(&fast) {
            assert_eq!(name, fname);
            let e = match grads.get(var) {
                Some(g) => g.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                None => panic!("{name} has no reference gradient"),
            };
            let worst = e.iter().zip(g).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let scale = e.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
            assert!(
                worst <= 1e-5 * scale.max(1e-3),
                "{name}: {worst} (scale {scale}) with {softmax:?}"
            );
        }
    }
}

/// The repeat path by hand equals the candle graph (one-hot products), and a repeated track
/// (2 twice in the first row) gets both of its positions' scores.
#[test]
fn repeat_path_gradients_equal_the_candle_graph() {
    let mut r = rng(12);
    let init = FusionInit { e1: None, content: vec![content(&mut r, 30, 3)] };
    let config = FusionConfig { dropout: 0.3, repeat_positions: 3, ..small_config(vec![3]) };
    let m = Fusion::new(config, init, &mut r).unwrap();
    // Nonzero repeat weights (they start at zero), so every term is exercised.
    for (name, values) in
        [("rep.u", vec![0.3f32, -0.2, 0.5, 0.1, -0.4]), ("rep.pos", vec![0.7, -0.3, 0.2])]
    {
        let var = m.vars().iter().find(|(n, _)| n == name).unwrap().1.clone();
        let n = values.len();
        var.set(&candle_core::Tensor::from_vec(values, n, &candle_core::Device::Cpu).unwrap())
            .unwrap();
    }
    // Rows longer than the 3 learned positions, a target inside its row's window (repeat),
    // and one outside.
    let batch = Batch::new(&[&[1, 2, 2, 4, 3], &[5, 6], &[7, 5, 9]], vec![2, 11, 5]);
    let reference = m.loss(&batch, &Softmax::Full, &mut rng(5)).unwrap();
    let grads = reference.backward().unwrap();
    let (loss, fast) = m.gradients(&batch, &Softmax::Full, &mut rng(5)).unwrap();
    let expect = reference.to_scalar::<f32>().unwrap();
    assert!((loss - expect).abs() < 1e-5 * expect.abs().max(1.0), "{loss} vs {expect}");
    for ((name, var), (fname, g)) in m.vars().iter().zip(&fast) {
        assert_eq!(name, fname);
        let e = grads.get(var).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let worst = e.iter().zip(g).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        let scale = e.iter().map(|x| x.abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5 * scale.max(1e-3), "{name}: {worst} (scale {scale})");
        if name.starts_with("rep.") {
            assert!(scale > 1e-4, "{name} gets a gradient");
        }
    }
    // Scores (evaluation, added in place) equal the graph's logits.
    let scores = m.scores(&batch).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let run = || -> candle_core::Result<Vec<f32>> {
        let (f, states) = m.features(&batch, &m.lookups(&batch)?, None)?;
        m.logits(&batch, &f, &states)?.flatten_all()?.to_vec1::<f32>()
    };
    let graph = run().unwrap();
    assert!(scores.iter().zip(&graph).all(|(a, b)| (a - b).abs() < 1e-5));
    // The repeat scores need every track scored: a sampled softmax is refused.
    let sampled =
        Softmax::Sampled { negatives: 3, sampler: Sampler::from_counts(&[1; 30], 0.75).unwrap() };
    assert!(m.loss(&batch, &sampled, &mut rng(1)).is_err());
    assert!(m.gradients(&batch, &sampled, &mut rng(1)).is_err());
}

/// A training step with the full softmax applies the output weights' gradient inside the
/// backward pass, piece by piece (never stored whole); it must move every parameter as
/// Adam does from the whole gradients. 3,000 tracks: several pieces per part of the catalogue.
#[test]
fn fused_output_update_equals_adam_on_the_whole_gradients() {
    let tracks = 3000;
    let config = FusionConfig { tracks, dropout: 0.2, ..small_config(vec![3]) };
    let make = || {
        let mut r = rng(21);
        let init = FusionInit { e1: None, content: vec![content(&mut r, tracks, 3)] };
        Fusion::new(config.clone(), init, &mut r).unwrap()
    };
    let (fused, reference) = (make(), make());
    let adam_over = |m: &Fusion| {
        Adam::new(m.vars().iter().map(|(_, v)| v.clone()).collect(), AdamConfig::default())
    };
    let (mut adam_f, mut adam_r) = (adam_over(&fused), adam_over(&reference));
    let batches = [
        Batch::new(&[&[1, 2, 2, 4], &[2999, 6], &[7, 5, 1500]], vec![10, 2047, 2]),
        Batch::new(&[&[9], &[2999, 8, 7, 6, 5]], vec![1, 2999]),
    ];
    for (i, batch) in batches.iter().enumerate() {
        let loss = fused.step(batch, &Softmax::Full, &mut rng(i as u64), &mut adam_f).unwrap();
        let (expect, grads) =
            reference.gradients(batch, &Softmax::Full, &mut rng(i as u64)).unwrap();
        assert!((loss - expect).abs() < 1e-6 * expect.abs(), "{loss} vs {expect}");
        adam_r.begin_step();
        for (k, (_, g)) in grads.iter().enumerate() {
            adam_r.update_var(k, g).unwrap();
        }
        for ((name, a), (_, b)) in fused.vars().iter().zip(reference.vars()) {
            let d = max_diff(a.as_tensor(), b.as_tensor());
            // Adam's first steps move each weight by about lr = 1e-3: a wrong or missing
            // update shows at that size, float rounding far below it.
            assert!(d < 1e-6, "{name} after step {}: {d}", i + 1);
        }
    }
}

/// Lazy Adam (sampled softmax): the first step equals dense Adam (rows without a gradient do
/// not move from zero moments); at the second, a table row the first batch touched and the
/// second did not stays where it was while dense Adam's momentum moves it, the rows the second
/// batch touches move, and the dense parameters stay equal to dense Adam's.
#[test]
fn lazy_adam_updates_only_the_rows_a_batch_touches() {
    let config = FusionConfig { tracks: 300, dropout: 0.0, ..small_config(vec![]) };
    let make = || Fusion::new(config.clone(), FusionInit::default(), &mut rng(4)).unwrap();
    let (lazy, dense) = (make(), make());
    let adam_over = |m: &Fusion, lazy: bool| {
        let vars = m.vars().iter().map(|(_, v)| v.clone()).collect();
        Adam::new(vars, AdamConfig { lazy, ..AdamConfig::default() })
    };
    let (mut adam_l, mut adam_d) = (adam_over(&lazy, true), adam_over(&dense, false));
    let sampled =
        Softmax::Sampled { negatives: 5, sampler: Sampler::from_counts(&[1; 300], 0.75).unwrap() };
    let e1 = |m: &Fusion| {
        let (_, v) = m.vars().iter().find(|(n, _)| n == "e1").unwrap();
        v.as_tensor().to_vec2::<f32>().unwrap()
    };
    let batches = [
        Batch::new(&[&[1, 2, 3], &[4, 5]], vec![6, 7]),
        Batch::new(&[&[10, 11], &[12, 2]], vec![13, 14]),
    ];
    let step = |m: &Fusion, adam: &mut Adam, i: usize| {
        m.step(&batches[i], &sampled, &mut rng(i as u64), adam).unwrap()
    };
    let (before, l1, d1) = (e1(&lazy), step(&lazy, &mut adam_l, 0), step(&dense, &mut adam_d, 0));
    assert_eq!(l1, d1);
    for ((name, a), (_, b)) in lazy.vars().iter().zip(dense.vars()) {
        assert!(max_diff(a.as_tensor(), b.as_tensor()) < 1e-7, "{name} after the first step");
    }
    let after_first = e1(&lazy);
    assert_ne!(after_first[1], before[1], "a touched row moves");
    assert_eq!(after_first[20], before[20], "an untouched row stays");
    step(&lazy, &mut adam_l, 1);
    step(&dense, &mut adam_d, 1);
    let (lazy_e1, dense_e1) = (e1(&lazy), e1(&dense));
    // Row 1: first batch only. Lazy leaves it; dense Adam's momentum moves it.
    assert_eq!(lazy_e1[1], after_first[1]);
    assert_ne!(dense_e1[1], after_first[1]);
    // Row 10: second batch only; row 2: both. Lazy moves them.
    assert_ne!(lazy_e1[10], after_first[10]);
    assert_ne!(lazy_e1[2], after_first[2]);
    assert_eq!(lazy_e1[20], before[20]);
    for ((name, a), (_, b)) in lazy.vars().iter().zip(dense.vars()) {
        if name.starts_with("gru.") || name.starts_with("att.") || name.starts_with("fc.") {
            // The second step read the same rows (equal after the first): same gradients.
            let d = max_diff(a.as_tensor(), b.as_tensor());
            assert!(d < 1e-7, "{name} after the second step: {d}");
        }
    }
    // Rows must come sorted and distinct.
    assert!(adam_l.update_rows(0, &[0.0; 4], &[1, 1], 1).is_err());
}

/// `match` scales the taken rows by one factor to a mean length of sqrt(dim); the others and
/// `none` are left alone.
#[test]
fn pretrained_rows_are_scaled_to_the_random_rows_length() {
    let mut rows = vec![0.3, 0.4, 0.0, 0.1, 6.0, 8.0];
    let take = [true, true, false];
    let before = rows.clone();
    assert_eq!(crate::PretrainedScale::None.apply(&mut rows, &take, 2), 1.0);
    assert_eq!(rows, before);
    let factor = crate::PretrainedScale::Match.apply(&mut rows, &take, 2);
    // Lengths 0.5 and 0.1: mean 0.3; sqrt(2) / 0.3.
    assert!((factor - 2f64.sqrt() / 0.3).abs() < 1e-6, "{factor}");
    let len = |r: &[f32]| r.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(((len(&rows[0..2]) + len(&rows[2..4])) / 2.0 - 2f32.sqrt()).abs() < 1e-5);
    assert_eq!(&rows[4..], &[6.0, 8.0]);
    assert!((rows[1] / rows[0] - 4.0 / 3.0).abs() < 1e-6, "directions kept");
}

/// `row-min-max` maps each taken row to [0, 1] on its own (the authors' `utils.rep`); a
/// constant row becomes zeros; untaken rows stay.
#[test]
fn row_min_max_rescales_each_taken_row_alone() {
    let mut rows = vec![-1.0, 0.0, 3.0, 2.0, 2.0, 2.0, 5.0, 6.0, 7.0];
    let take = [true, true, false];
    crate::PretrainedScale::RowMinMax.apply(&mut rows, &take, 3);
    assert_eq!(rows, vec![0.0, 0.25, 1.0, 0.0, 0.0, 0.0, 5.0, 6.0, 7.0]);
}

/// Ranking a block of tracks at a time gives the whole rows' report for every kind of network
/// (the fused model with its repeat path, GRU4Rec, SASRec), and the same ranks up to the
/// deepest cut-off.
#[test]
fn blocked_evaluation_equals_whole_rows() {
    let (flat, offsets, users) = planted(120, 9);
    let s = Sessions::new(&flat, &offsets, &users).unwrap();
    let p = ModelParams { repeat: true, ..params(1) };
    let fused = fusion(&p);
    train(&fused, &s, None, &options(p, &flat), &NoProgress).unwrap();
    let gru = Network::Gru4Rec(
        Gru4Rec::new(
            Gru4RecConfig { tracks: 30, embedding_dim: 8, hidden: 8, dropout: 0.0, negatives: 10 },
            &mut rng(0),
        )
        .unwrap(),
    );
    train(&gru, &s, None, &options(params(1), &flat), &NoProgress).unwrap();
    let sasrec_params = SasRecParams { hidden: 8, heads: 2, inner: 16, ..SasRecParams::default() };
    let sasrec = Network::SasRec(
        SasRec::new(SasRecConfig { tracks: 30, max_len: 20, params: sasrec_params }, &mut rng(2))
            .unwrap(),
    );
    let seen: Vec<bool> = (0..30).map(|i| i % 4 != 0).collect();
    for net in [&fused, &gru, &sasrec] {
        let (whole, whole_ranks) = evaluate_ranked(net, &s, &seen, 20, &[1, 3], 16).unwrap();
        assert!(whole.all.hit[1] > 0.0 && whole.all.hit[1] < 1.0, "{net:?}: {:?}", whole.all);
        for block in [1, 4, 7, 29] {
            let (blocked, ranks) =
                evaluate_in_blocks(net, &s, &seen, 20, &[1, 3], 16, block).unwrap();
            assert_eq!(whole, blocked, "block {block}");
            for (&w, &b) in whole_ranks.iter().zip(&ranks) {
                assert!(w == b || (w > 3 && b > 3 && b <= w), "whole {w}, blocked {b}");
            }
        }
    }
}

/// A capped evaluation keeps a seeded, ordered subset of the examples.
#[test]
fn at_most_n_examples_are_a_seeded_subset_in_order() {
    let (flat, offsets, users) = planted(50, 3);
    let s = Sessions::new(&flat, &offsets, &users).unwrap();
    let all = s.examples();
    let some = s.with_max_examples(40, 5).examples();
    assert_eq!(some.len(), 40);
    assert_eq!(some, s.with_max_examples(40, 5).examples());
    assert_ne!(some, s.with_max_examples(40, 6).examples());
    let mut from = 0;
    for e in &some {
        from += all[from..].iter().position(|a| a == e).expect("a sampled example in order") + 1;
    }
    assert_eq!(s.with_max_examples(0, 5).examples(), all);
    assert_eq!(s.with_max_examples(all.len() + 1, 5).examples(), all);
}

/// Dropout masks drawn a block at a time equal `rng.random::<f64>() < p` drawn one value at
/// a time (the graph's models and the hand-written steps must see the same masks), whatever
/// the generator's position in its 64-word blocks: sizes across block edges, after an odd
/// number of 32-bit words, several masks in a row.
#[test]
fn dropout_masks_equal_one_draw_at_a_time() {
    let reference = |rng: &mut ChaCha8Rng, n: usize, p: f64| -> Vec<f32> {
        let keep = 1.0 / (1.0 - p) as f32;
        (0..n).map(|_| if rng.random::<f64>() < p { 0.0 } else { keep }).collect()
    };
    for (seed, skew) in [(0u64, 0usize), (1, 1), (2, 63), (3, 64), (4, 127)] {
        let mut a = ChaCha8Rng::seed_from_u64(seed);
        let mut b = ChaCha8Rng::seed_from_u64(seed);
        for _ in 0..skew {
            let _: u32 = a.random();
            let _: u32 = b.random();
        }
        let mut mask = Vec::new();
        for (n, p) in [(1, 0.5), (31, 0.2), (512, 0.5), (513, 0.1), (5_000, 0.9), (7, 0.0)] {
            crate::fusion::dropout_into(&mut a, n, p, &mut mask);
            let want = if p > 0.0 { reference(&mut b, n, p) } else { Vec::new() };
            assert_eq!(mask, want, "seed {seed}, skew {skew}, n {n}, p {p}");
        }
        assert_eq!(a.random::<u64>(), b.random::<u64>(), "the generators end in step");
    }
}
