//! A sentence-transformers model folder: the transformer's `config.json`, the
//! `sentence_bert_config.json` (max_seq_length), `modules.json` (is there a Normalize module?)
//! and the pooling module's `config.json`.

use std::path::{Path, PathBuf};

use segue_core::{Error, Position, Result};
use serde::Deserialize;

/// The transformer architectures this crate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// BERT (all-MiniLM-L6-v2): absolute positions from 0, token-type embeddings.
    Bert,
    /// MPNet (all-mpnet-base-v2): absolute positions from `pad + 1`, no token types, and a
    /// bucketed relative-position bias shared by every layer.
    MpNet,
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the real tokens (special tokens included, as sentence-transformers does).
    Mean,
    /// The first token's vector.
    Cls,
    /// Element-wise maximum over the tokens.
    Max,
}

/// Everything the encoder needs to know about a model folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ModelConfig {
    /// The folder.
    pub dir: PathBuf,
    /// BERT or MPNet.
    pub architecture: Architecture,
    /// Width of the token vectors (and of the sentence vector).
    pub hidden: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width.
    pub intermediate: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f32,
    /// Rows of the absolute position table.
    pub max_position_embeddings: usize,
    /// The padding token id (MPNet's positions start after it).
    pub pad_token_id: u32,
    /// MPNet's relative-position buckets.
    pub relative_buckets: usize,
    /// Tokens per text, special tokens included; longer texts are truncated.
    pub max_seq_length: usize,
    /// Pooling mode.
    pub pooling: Pooling,
    /// Whether the model ends with a Normalize module (unit-length vectors).
    pub normalize: bool,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: String,
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    intermediate_size: usize,
    #[serde(default)]
    layer_norm_eps: Option<f32>,
    max_position_embeddings: usize,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    relative_attention_num_buckets: Option<usize>,
    #[serde(default)]
    hidden_act: Option<String>,
}

#[derive(Deserialize)]
struct SbertConfig {
    max_seq_length: usize,
}

#[derive(Deserialize)]
struct Module {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
}

/// The files a model folder must have.
pub const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// Other files read when present (sentence-transformers' own configuration).
pub const OPTIONAL_FILES: [&str; 3] =
    ["sentence_bert_config.json", "modules.json", "1_Pooling/config.json"];

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| {
        Error::input(
            path,
            Position::LineColumn(e.line() as u64, e.column() as u64),
            format!("not the expected JSON: {e}"),
        )
    })
}

impl ModelConfig {
    /// Reads the configuration of the model in `dir`.
    pub fn read(dir: &Path) -> Result<ModelConfig> {
        for f in REQUIRED_FILES {
            if !dir.join(f).is_file() {
                return Err(Error::input(
                    dir,
                    Position::File,
                    format!(
                        "not a model folder: {f} is missing (a sentence-transformers folder has {})",
                        REQUIRED_FILES.join(", ")
                    ),
                ));
            }
        }
        let hf: HfConfig = read_json(&dir.join("config.json"))?;
        let architecture = match hf.model_type.as_str() {
            "bert" => Architecture::Bert,
            "mpnet" => Architecture::MpNet,
            other => {
                return Err(Error::input(
                    dir.join("config.json"),
                    Position::File,
                    format!("model_type `{other}` is not supported (bert or mpnet)"),
                ));
            }
        };
        if let Some(act) = hf.hidden_act.as_deref()
            && act != "gelu"
        {
            return Err(Error::input(
                dir.join("config.json"),
                Position::File,
                format!("hidden_act `{act}` is not supported (gelu)"),
            ));
        }
        if !hf.hidden_size.is_multiple_of(hf.num_attention_heads) {
            return Err(Error::input(
                dir.join("config.json"),
                Position::File,
                format!(
                    "hidden_size {} is not a multiple of num_attention_heads {}",
                    hf.hidden_size, hf.num_attention_heads
                ),
            ));
        }
        let pad = hf.pad_token_id.unwrap_or(match architecture {
            Architecture::Bert => 0,
            Architecture::MpNet => 1,
        });
        // Without sentence-transformers' config, the longest input the positions allow.
        let position_limit = match architecture {
            Architecture::Bert => hf.max_position_embeddings,
            Architecture::MpNet => hf.max_position_embeddings.saturating_sub(pad as usize + 1),
        };
        let sbert = dir.join("sentence_bert_config.json");
        let max_seq_length = if sbert.is_file() {
            read_json::<SbertConfig>(&sbert)?.max_seq_length
        } else {
            position_limit
        };
        if max_seq_length == 0 || max_seq_length > position_limit {
            return Err(Error::input(
                sbert,
                Position::File,
                format!(
                    "max_seq_length {max_seq_length} is outside 1..={position_limit} (the position table's size)"
                ),
            ));
        }
        let modules_path = dir.join("modules.json");
        let modules: Vec<Module> =
            if modules_path.is_file() { read_json(&modules_path)? } else { Vec::new() };
        let normalize = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        let pooling_dir = modules
            .iter()
            .find(|m| m.kind.ends_with(".Pooling"))
            .map_or_else(|| "1_Pooling".to_string(), |m| m.path.clone());
        let pooling_path = dir.join(&pooling_dir).join("config.json");
        let pooling = if pooling_path.is_file() {
            let p: PoolingConfig = read_json(&pooling_path)?;
            match (
                p.pooling_mode_mean_tokens,
                p.pooling_mode_cls_token,
                p.pooling_mode_max_tokens,
                p.pooling_mode_mean_sqrt_len_tokens,
            ) {
                (true, false, false, false) => Pooling::Mean,
                (false, true, false, false) => Pooling::Cls,
                (false, false, true, false) => Pooling::Max,
                _ => {
                    return Err(Error::input(
                        pooling_path,
                        Position::File,
                        "exactly one of pooling_mode_mean_tokens, pooling_mode_cls_token, \
                         pooling_mode_max_tokens is supported",
                    ));
                }
            }
        } else {
            Pooling::Mean
        };
        Ok(ModelConfig {
            dir: dir.to_path_buf(),
            architecture,
            hidden: hf.hidden_size,
            layers: hf.num_hidden_layers,
            heads: hf.num_attention_heads,
            intermediate: hf.intermediate_size,
            layer_norm_eps: hf.layer_norm_eps.unwrap_or(1e-12),
            max_position_embeddings: hf.max_position_embeddings,
            pad_token_id: pad,
            relative_buckets: hf.relative_attention_num_buckets.unwrap_or(32),
            max_seq_length,
            pooling,
            normalize,
        })
    }
}
