//! End to end on synthetic data: segue-synth -> ingest -> sessionize -> Word2Vec -> the fused
//! model and GRU4Rec (segue-model) -> full-ranking evaluation (segue-eval), through the
//! libraries only.

use rand::SeedableRng;
use segue_core::NoProgress;
use segue_model::{
    Fusion, FusionConfig, FusionInit, Gru4Rec, Gru4RecConfig, ModelParams, Network, Sessions,
    TrainOptions, evaluate, train,
};
use segue_sessions::{
    Format, IngestOptions, SessionOptions, SourceSpec, Split, ingest, sessionize,
};

#[test]
fn models_learn_the_planted_sessions_of_the_tiny_preset() {
    let dir = tempfile::tempdir().unwrap();
    let data =
        segue_synth::generate(&segue_synth::SynthConfig::preset(segue_synth::Preset::Tiny, 0));
    data.write(dir.path()).unwrap();
    let src = SourceSpec::new(Format::Lastfm1k, ["listens.tsv"]);
    let ing = ingest(&[src], dir.path(), &IngestOptions::default(), &NoProgress).unwrap();
    let opts = SessionOptions { validation_share: 0.0, ..SessionOptions::default() };
    let mut out = sessionize(&ing.events, &ing.keys, &opts).unwrap();
    out.write(dir.path()).unwrap();
    let file = dir.path().join("sessions.parquet");
    let (train_c, test_c) = (
        segue_sessions::read_split(&file, Split::Train).unwrap(),
        segue_sessions::read_split(&file, Split::Test).unwrap(),
    );
    let counts = segue_sessions::TrackCounts::read(&dir.path().join("tracks.parquet")).unwrap();
    let tracks = counts.total.len();
    let train_s = Sessions::new(&train_c.flat, &train_c.offsets, &train_c.users).unwrap();
    let test_s = Sessions::new(&test_c.flat, &test_c.offsets, &test_c.users).unwrap();
    let seen: Vec<bool> = (0..tracks).map(|i| counts.seen_in_train(i)).collect();

    let params = ModelParams {
        embedding_dim: 32,
        hidden: 32,
        fc: 64,
        epochs: 3,
        patience: 0,
        gru4rec_negatives: 64,
        ..ModelParams::default()
    };
    let w2v_params = segue_word2vec::Params { vector_size: 32, threads: 1, ..Default::default() };
    let w2v = segue_word2vec::train(
        &segue_word2vec::Corpus::new(&train_c.flat, &train_c.offsets, tracks).unwrap(),
        &w2v_params,
    )
    .unwrap();
    let table = w2v.to_table(tracks, "test").unwrap();
    let take = (0..tracks).map(|i| table.is_present(segue_core::TrackId(i as u32))).collect();

    let fusion = |e1: Option<(Vec<f32>, Vec<bool>)>| {
        let config = FusionConfig {
            tracks,
            embedding_dim: 32,
            hidden: 32,
            fc: 64,
            dropout: 0.2,
            leaky_slope: 0.01,
            content_dims: vec![],
            repeat_positions: 0,
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
        Network::Fusion(Fusion::new(config, FusionInit { e1, content: vec![] }, &mut rng).unwrap())
    };
    let gru4rec = Network::Gru4Rec(
        Gru4Rec::new(
            Gru4RecConfig { tracks, embedding_dim: 32, hidden: 32, dropout: 0.2, negatives: 64 },
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(0),
        )
        .unwrap(),
    );
    let options = TrainOptions {
        params: params.clone(),
        train_counts: counts.train.clone(),
        dir: None,
        resume: false,
    };
    let random_hr10 = 10.0 / tracks as f64;
    let untrained = evaluate(&fusion(None), &test_s, &seen, 20, &[10], 64).unwrap();
    for (name, net) in [
        ("ANN", fusion(None)),
        ("ANNW", fusion(Some((table.as_slice().to_vec(), take)))),
        ("GRU4Rec", gru4rec),
    ] {
        let trained = train(&net, &train_s, None, &options, &NoProgress).unwrap();
        assert_eq!(trained.history.len(), 3);
        let report = evaluate(&net, &test_s, &seen, 20, &[10, 50], 64).unwrap();
        assert_eq!(report.all.count as usize, test_s.examples().len());
        let hr10 = report.all.hit[0];
        // Planted sessions are predictable: far above chance and above the untrained model.
        assert!(
            hr10 > 4.0 * random_hr10 && hr10 > untrained.all.hit[0] + 0.03,
            "{name}: HR@10 {hr10:.3}, chance {random_hr10:.3}, untrained {:.3}",
            untrained.all.hit[0]
        );
        // Every prediction is counted once as seen or unseen in training.
        let count = |group| report.group(group).map_or(0, |m| m.count);
        assert_eq!(count("seen") + count("unseen"), report.all.count);
        assert_eq!(count("repeat") + count("new"), report.all.count);
    }
}
