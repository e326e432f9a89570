//! segue's pipeline files and artifact cache, for running segue's stages from Rust.
//!
//! A [`Pipeline`] is one TOML file naming the dataset and every stage's parameters; a key the
//! file leaves out takes segue's default ([`pipeline::SEGUE_DEFAULTS`] over the stage crates'
//! own), `protocol = "authors-code"` fills in the departures of the paper's public code
//! ([`pipeline::AUTHORS_CODE`]), and [`Pipeline::with_sets`] overrides any key as `--set`
//! does. The [`cache`] keeps each stage's artifacts under a key that hashes its code version,
//! parameters and inputs ([`cache::Recipe`]), written atomically and checked against their
//! recorded hashes before reuse.
//!
//! ```
//! use segue_pipeline::Pipeline;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let file = dir.path().join("segue.toml");
//! std::fs::write(&file, "[pipeline]\nname = \"mine\"\n\n[[dataset.sources]]\npaths = [\"logs\"]\n")
//!     .unwrap();
//! let p = Pipeline::load(&file).unwrap();
//! // Left out: segue's defaults, chosen on validation data.
//! assert_eq!((p.model.epochs, p.model.patience, p.model.repeat), (20, 1, true));
//! // Any key can be overridden, and the result is checked like a file.
//! let q = p.with_sets(&["model.lr=0.003".into(), "sessionize.gap_seconds=3600".into()]).unwrap();
//! assert_eq!((q.model.lr, q.sessionize.gap_seconds), (0.003, 3600));
//! assert!(p.with_sets(&["model.learning_rate=1".into()]).is_err());
//! // The cache sits beside the file unless `cache_dir` says otherwise.
//! assert_eq!(q.cache_dir(), p.base_dir().join(".segue/mine"));
//! ```
#![deny(missing_docs)]

pub mod cache;
pub mod pipeline;

pub use pipeline::Pipeline;

/// The workspace root, for tests that read the checkout's pipeline files.
#[cfg(test)]
pub(crate) fn tests_workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
