//! Pipeline files: TOML naming the dataset and every parameter of every stage, with the
//! paper's defaults. Unknown keys and bad values are errors that name them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use segue_sessions::{IngestOptions, SessionOptions, SourceSpec};
use serde::{Deserialize, Serialize};

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    pub pipeline: PipelineMeta,
    pub dataset: Dataset,
    #[serde(default)]
    pub ingest: IngestOptions,
    #[serde(default)]
    pub sessionize: SessionOptions,
    #[serde(default)]
    pub word2vec: segue_word2vec::Params,
    #[serde(default)]
    pub lsa: segue_lsa::LsaParams,
    #[serde(default)]
    pub vae: segue_vae::VaeParams,
    #[serde(default)]
    pub lyrics: segue_lyrics::LyricsParams,
    #[serde(default)]
    pub tags: segue_tags::TagsParams,
    #[serde(default)]
    pub model: segue_model::ModelParams,
    #[serde(default)]
    pub baselines: segue_baselines::BaselineParams,
    /// Where the file was read from; relative paths are resolved against its folder.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineMeta {
    /// Names the cache and report folders.
    pub name: String,
    /// Artifact cache; relative to the pipeline file. Default: `.segue/` in the workspace.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Seed of every seeded stage.
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_seed() -> u64 {
    0
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    #[serde(default)]
    pub description: String,
    pub sources: Vec<SourceSpec>,
    /// Audio features CSV (Spotify's columns), optional.
    #[serde(default)]
    pub audio_features: Option<String>,
    /// Artist genres / tags CSV, optional.
    #[serde(default)]
    pub tags: Option<String>,
    /// Lyrics CSV or JSONL, optional.
    #[serde(default)]
    pub lyrics: Option<String>,
    /// Users CSV (user, k10), optional.
    #[serde(default)]
    pub users: Option<String>,
    /// `"tags"`: keep only plays of tracks that have tags before sessionizing (the paper's tag
    /// subset dataset). Optional.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// Generate the dataset with segue-synth before ingest, when it is missing.
    #[serde(default)]
    pub synth: Option<SynthSpec>,
}

/// A synthetic dataset a pipeline generates for itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SynthSpec {
    pub preset: segue_synth::Preset,
    #[serde(default)]
    pub seed: u64,
    /// Output folder, relative to the pipeline file; the sources read from it.
    pub out: PathBuf,
}

impl Pipeline {
    /// This pipeline for one model run: `model.seed` set to `seed` (the pipeline's own when
    /// `None`) and no seed list.
    pub fn for_model_seed(&self, seed: Option<u64>) -> Pipeline {
        let mut p = self.clone();
        p.model = self.model.for_seed(seed.unwrap_or(self.model.seed));
        p
    }

    /// Reads and checks a pipeline file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading pipeline file {}", path.display()))?;
        let mut p: Pipeline = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("pipeline file {}: {e}", path.display()))?;
        p.path = path.canonicalize().with_context(|| format!("resolving {}", path.display()))?;
        p.validate().with_context(|| format!("pipeline file {}", path.display()))?;
        Ok(p)
    }

    fn validate(&self) -> Result<()> {
        if self.pipeline.name.is_empty()
            || !self.pipeline.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            bail!("pipeline.name = {:?}: use letters, digits, '-', '_' or '.'", self.pipeline.name);
        }
        if self.dataset.sources.is_empty() {
            bail!("dataset.sources: at least one [[dataset.sources]] is needed");
        }
        self.sessionize.validate()?;
        self.word2vec.validate()?;
        self.lsa.validate()?;
        self.vae.validate()?;
        self.model.validate()?;
        self.baselines.validate()?;
        for (name, v) in [("word2vec.alpha", self.word2vec.alpha)] {
            if !(v > 0.0 && v.is_finite()) {
                bail!("{name} = {v}: must be a positive number");
            }
        }
        Ok(())
    }

    /// This pipeline with keys overridden: `("model.lr", 0.003)` sets `lr` in `[model]`. The
    /// result is checked like a file (an unknown key or a bad value is an error naming it).
    pub fn with_overrides(&self, overrides: &[(String, toml::Value)]) -> Result<Pipeline> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let mut doc = toml::Value::try_from(self).context("the pipeline as TOML")?;
        for (key, value) in overrides {
            let parts: Vec<&str> = key.split('.').collect();
            let (last, path) = parts.split_last().context("an empty key")?;
            let mut table = doc.as_table_mut().context("the pipeline is a table")?;
            for part in path {
                table = table
                    .entry(part.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                    .as_table_mut()
                    .with_context(|| format!("`{key}`: `{part}` is not a section"))?;
            }
            table.insert(last.to_string(), value.clone());
        }
        let mut p: Pipeline = doc.try_into().map_err(|e| {
            anyhow::anyhow!(
                "overriding {}: {e}",
                overrides.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
            )
        })?;
        p.path = self.path.clone();
        p.validate()?;
        Ok(p)
    }

    /// The folder relative paths are resolved against.
    pub fn base_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// A dataset content file, resolved against the pipeline file's folder.
    pub fn content_file(&self, file: &Option<String>) -> Option<PathBuf> {
        file.as_ref().map(|f| self.base_dir().join(f))
    }

    /// The pipeline's cache folder.
    pub fn cache_dir(&self) -> PathBuf {
        match &self.pipeline.cache_dir {
            Some(d) => segue_sessions::source::clean_path(
                &self.base_dir().join(d).join(&self.pipeline.name),
            ),
            None => crate::workspace_root().join(".segue").join(&self.pipeline.name),
        }
    }
}
