use super::*;

#[test]
fn noise_table_and_sample_ints_match_gensim() {
    // gensim 4.4 on a corpus with counts 40000, 1000, 600, 200 (sample 1e-3, ns_exponent 0.75):
    // `model.cum_table` and `wv.get_vecattr(w, "sample_int")`.
    let counts = [40_000, 1_000, 600, 200];
    assert_eq!(
        noise_table(&counts, 0.75),
        vec![1_909_661_484, 2_029_725_094, 2_111_576_253, 2_147_483_647]
    );
    assert_eq!(
        sample_ints(&counts, 1e-3),
        vec![143_329_328, 1_057_637_770, 1_432_848_786, 2_861_157_652]
    );
}

#[test]
fn one_cbow_update_equals_the_hand_computed_one() {
    // Context rows 0 and 1, target row 2, no negatives, alpha 0.1, cbow_mean.
    let w = Weights {
        syn0: SharedRows::new(&[0.1, 0.2, 0.3, -0.4, 0.0, 0.0], 2),
        syn1neg: SharedRows::new(&[0.0, 0.0, 0.0, 0.0, 0.5, 0.5], 2),
    };
    let mut scratch = Scratch::new(1, 0);
    let mut next_random = 1;
    let exp = exp_table();
    let p = Prediction {
        noise: &NoiseSampler::new(vec![1, 2, 3]),
        exp: &exp,
        negative: 0,
        cbow_mean: true,
        context: &[0, 1],
        word: 2,
        alpha: 0.1,
    };
    cbow_neg(&w, &p, &mut next_random, &mut scratch);
    let (syn0, syn1) = (w.syn0.into_values(2), w.syn1neg.into_values(2));
    // neu1 = mean = (0.2, -0.1); dot with (0.5, 0.5) = 0.05; the sigmoid table's entry
    // int((0.05 + 6) * 1000 / 12) = 504 holds sigmoid(0.048) = 0.511998; g = 0.1 (1 - f).
    let f = 1.0 / (1.0 + (-0.048f64).exp());
    let g = 0.1 * (1.0 - f);
    let expect0 = [0.1 + g * 0.5, 0.2 + g * 0.5, 0.3 + g * 0.5, -0.4 + g * 0.5];
    let expect1 = [0.5 + g * 0.2, 0.5 - g * 0.1];
    for (a, b) in syn0[..4].iter().zip(expect0) {
        assert!((f64::from(*a) - b).abs() < 1e-6, "{syn0:?} vs {expect0:?}");
    }
    for (a, b) in syn1[4..].iter().zip(expect1) {
        assert!((f64::from(*a) - b).abs() < 1e-6, "{syn1:?} vs {expect1:?}");
    }
}

fn corpus_of(n_sentences: u32) -> (Vec<u32>, Vec<usize>) {
    let mut flat = Vec::new();
    let mut offsets = vec![0];
    for s in 0..n_sentences {
        let base = (s % 3) * 50;
        flat.extend((0..12).map(|i| base + (s * 13 + i * 7) % 50));
        offsets.push(flat.len());
    }
    (flat, offsets)
}

#[test]
fn single_thread_is_deterministic_and_threads_learn_the_same_structure() {
    let (flat, offsets) = corpus_of(3_000);
    let corpus = Corpus::new(&flat, &offsets, 150).unwrap();
    let params = Params { vector_size: 24, threads: 1, ..Params::default() };
    let a = train(&corpus, &params).unwrap();
    let b = train(&corpus, &params).unwrap();
    assert_eq!(a.syn0, b.syn0);
    assert_eq!(a.syn1neg, b.syn1neg);
    assert!(a.stats.effective_words > 0 && a.stats.effective_words <= a.stats.raw_words);
    let c = train(&corpus, &Params { seed: 2, ..params.clone() }).unwrap();
    assert_ne!(a.syn0, c.syn0);
    let hog = train(&corpus, &Params { threads: 2, ..params }).unwrap();
    for model in [&a, &hog] {
        // Tokens 0..50, 50..100, 100..150 never share a sentence: neighbours stay in the group.
        let same = (0..150u32)
            .map(|t| model.most_similar(t, 10).iter().filter(|(n, _)| n / 50 == t / 50).count())
            .sum::<usize>();
        assert!(same as f64 / 1500.0 > 0.9, "{same} of 1500 neighbours in the same group");
    }
}

/// Rows of odd width get a pad lane that stays zero and never shows.
#[test]
fn shared_rows_round_trip_and_keep_the_pad_lane_zero() {
    let values: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 3.0).collect();
    for size in [1, 3, 5, 15] {
        let rows = SharedRows::new(&values, size);
        assert_eq!(rows.stride, size.div_ceil(2));
        assert_eq!(rows.into_values(size), values);
    }
    let rows = SharedRows::new(&values, 3);
    let mut local = vec![0.0; 4];
    load_row(rows.row(1), &mut local);
    assert_eq!(local, [values[3], values[4], values[5], 0.0]);
}

/// Hogwild threads on a tiny corpus: the part Miri checks for data races
/// (`cargo +nightly miri test -p segue-word2vec hogwild`).
#[test]
fn hogwild_threads_on_a_tiny_corpus() {
    let (flat, offsets) = corpus_of(if cfg!(miri) { 8 } else { 60 });
    let corpus = Corpus::new(&flat, &offsets, 150).unwrap();
    let params = Params { vector_size: 5, epochs: 1, threads: 3, ..Params::default() };
    // Jobs of one sentence each: the threads share rows from the start.
    let model = train_in_jobs(&corpus, &params, &segue_core::NoProgress, 12).unwrap();
    assert_eq!(model.syn0.len(), model.vocab.len() * 5);
    assert!(model.syn0.iter().chain(&model.syn1neg).all(|v| v.is_finite()));
    assert!(model.syn1neg.iter().any(|&v| v != 0.0), "the output weights were trained");
}

#[test]
fn exports_round_trip() {
    let (flat, offsets) = corpus_of(200);
    let model = train(
        &Corpus::new(&flat, &offsets, 150).unwrap(),
        &Params { vector_size: 8, threads: 1, ..Params::default() },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (txt, bin) = (dir.path().join("v.txt"), dir.path().join("v.bin"));
    model.save_word2vec_text(&txt, |t| format!("track_{t}")).unwrap();
    model.save_word2vec_binary(&bin, |t| t.to_string()).unwrap();
    let text = read_word2vec_text(&txt).unwrap();
    let binary = read_word2vec_binary(&bin).unwrap();
    assert_eq!(text.len(), model.vocab.len());
    for (r, (&t, (name, v))) in model.vocab.tokens.iter().zip(&binary).enumerate() {
        assert_eq!(name, &t.to_string());
        assert_eq!(v.as_slice(), &model.syn0[r * 8..(r + 1) * 8]);
        assert_eq!(text[r].0, format!("track_{t}"));
        assert_eq!(text[r].1, *v, "text keeps every bit (shortest round-trip decimals)");
    }
    #[cfg(feature = "tables")]
    {
        let table = model.to_table(150, "h").unwrap();
        assert_eq!(table.present_count(), model.vocab.len());
    }
}

#[test]
fn bad_input_is_named() {
    assert!(Corpus::new(&[1, 2], &[0, 3], 5).is_err());
    assert!(Corpus::new(&[1, 9], &[0, 2], 5).unwrap_err().to_string().contains("token 9"));
    let err = Params { window: 0, ..Params::default() }.validate().unwrap_err().to_string();
    assert!(err.contains("word2vec.window"), "{err}");
}

#[test]
fn a_dot_just_below_the_clip_stays_inside_the_sigmoid_table() {
    // 5.9999995 + 6 scaled by 1000 / 12 rounds to 1000.0 in f32: the table's end.
    let w = Weights {
        syn0: SharedRows::new(&[1.0, 0.0], 1),
        syn1neg: SharedRows::new(&[0.0, 5.999_999_5], 1),
    };
    let mut scratch = Scratch::new(1, 0);
    let exp = exp_table();
    let p = Prediction {
        noise: &NoiseSampler::new(vec![1, 2]),
        exp: &exp,
        negative: 0,
        cbow_mean: true,
        context: &[0],
        word: 1,
        alpha: 0.1,
    };
    let mut next_random = 1;
    cbow_neg(&w, &p, &mut next_random, &mut scratch);
    let (syn0, syn1) = (w.syn0.into_values(1), w.syn1neg.into_values(1));
    assert!(syn1[1] > 5.999_999 && syn0[0] >= 1.0);
}

#[test]
fn noise_sampler_equals_bisect_left() {
    let counts: Vec<u64> = (1..50_000u64).map(|i| 1 + 1_000_000 / (i * i % 997 + i)).collect();
    let cum = noise_table(&counts, 0.75);
    let sampler = NoiseSampler::new(cum.clone());
    let mut next_random = 12_345u64;
    for _ in 0..200_000 {
        let draw = ((next_random >> 16) % sampler.max()) as u32;
        next_random =
            (next_random.wrapping_mul(25_214_903_917).wrapping_add(11)) & 281_474_976_710_655;
        let expect = (cum.partition_point(|&c| c < draw) as u32).min(cum.len() as u32 - 1);
        assert_eq!(sampler.index(draw), expect, "draw {draw}");
    }
    for draw in [0, 1, cum[0], cum[0] + 1, cum[10], *cum.last().unwrap() - 1] {
        let expect = (cum.partition_point(|&c| c < draw) as u32).min(cum.len() as u32 - 1);
        assert_eq!(sampler.index(draw), expect, "draw {draw}");
    }
}

#[test]
fn sentences_one_by_one_train_the_same_model_as_the_flat_form() {
    let (flat, offsets) = corpus_of(300);
    let sentences: Vec<Vec<u32>> = offsets.windows(2).map(|w| flat[w[0]..w[1]].to_vec()).collect();
    let params = Params { vector_size: 8, epochs: 2, ..Params::default() };
    assert_eq!(params.threads, 1, "the default is the deterministic single thread");
    let a = train(&Corpus::new(&flat, &offsets, 150).unwrap(), &params).unwrap();
    let b = train(&Corpus::from_sentences(&sentences, 150).unwrap(), &params).unwrap();
    assert_eq!(a.vectors(), b.vectors());
    assert_eq!(a.output_weights(), b.output_weights());
    // Rows: most frequent token first; a token outside the corpus has none.
    let vocab = a.vocabulary();
    assert!(vocab.counts().windows(2).all(|w| w[0] >= w[1]));
    let t = vocab.tokens()[0];
    assert_eq!(vocab.row(t), Some(0));
    assert_eq!(a.vector(t), Some(&a.vectors()[..8]));
    let absent = Corpus::from_sentences([vec![0u32, 1], vec![1]], 3).unwrap();
    let m = train(&absent, &Params { vector_size: 4, ..Params::default() }).unwrap();
    assert_eq!((m.vocabulary().row(2), m.vector(2)), (None, None));
    let e = Corpus::from_sentences([vec![5u32]], 3).unwrap_err();
    assert!(e.to_string().contains("token 5 outside 0..3"), "{e}");
}
