//! segue's pipeline: its files, its stages, its artifact cache and its report, for running
//! segue from Rust as `cargo xtask` does.
//!
//! A [`Pipeline`] is one TOML file naming the dataset and every stage's parameters; a key the
//! file leaves out takes segue's default ([`pipeline::SEGUE_DEFAULTS`] over the stage crates'
//! own), `protocol = "authors-code"` fills in the departures of the paper's public code
//! ([`pipeline::AUTHORS_CODE`]), and [`Pipeline::with_sets`] overrides any key as `--set`
//! does. The [`cache`] keeps each stage's artifacts under a key that hashes its code version,
//! parameters and inputs ([`cache::Recipe`]), written atomically and checked against their
//! recorded hashes before reuse. A [`Runner`] runs stages by name (`"sessionize"`,
//! `"word2vec"`, `"train-ann/seed-0"`, ...; [`STAGES`] lists them in dependency order) and
//! reuses what is fresh, running model trainings side by side ([`Runner::run_side_by_side`]:
//! `pipeline.jobs` at once, a later seed after the first seed it takes its epochs from);
//! [`reproduce`] runs them all and writes the report; [`Recommender`] scores a session with a
//! trained model from the cache.
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
//! assert_eq!((p.model.epochs, p.model.patience, p.model.batch_size), (20, 2, 128));
//! // Any key can be overridden, and the result is checked like a file.
//! let q = p.with_sets(&["model.lr=0.003".into(), "sessionize.gap_seconds=3600".into()]).unwrap();
//! assert_eq!((q.model.lr, q.sessionize.gap_seconds), (0.003, 3600));
//! assert!(p.with_sets(&["model.learning_rate=1".into()]).is_err());
//! // The cache sits beside the file unless `cache_dir` says otherwise.
//! assert_eq!(q.cache_dir(), p.base_dir().join(".segue/mine"));
//! ```
//!
//! # Running stages from Rust
//!
//! A data engineer's run of `sessionize` then `word2vec` on their own pipeline file, the
//! results read back in memory (here on two tiny listening logs written for the example;
//! `examples/sessions_and_word2vec.rs` does the same on any pipeline file):
//!
//! ```
//! use segue_pipeline::{Pipeline, Runner, files};
//! use segue_sessions::Split;
//!
//! # fn main() -> anyhow::Result<()> {
//! let dir = tempfile::tempdir()?;
//! // Two users' exports (lastfm.ghan.nl's CSV): 12 sessions of 6 plays, a day apart.
//! for user in ["ana", "ben"] {
//!     let mut csv = String::from("uts,utc_time,artist,artist_mbid,album,album_mbid,track,track_mbid\n");
//!     for s in 0..12u32 {
//!         for i in 0..6u32 {
//!             let t = 1_600_000_000 + s * 86_400 + i * 240;
//!             csv += &format!("{t},,Artist {},,,,Song {},\n", (s + i) % 4, (s + i) % 9);
//!         }
//!     }
//!     std::fs::create_dir_all(dir.path().join(user))?;
//!     std::fs::write(dir.path().join(user).join("scrobbles.csv"), csv)?;
//! }
//! let file = dir.path().join("segue.toml");
//! std::fs::write(&file, "[pipeline]\nname = \"mine\"\n\n[[dataset.sources]]\npaths = [\"ana\", \"ben\"]\n")?;
//! // One Word2Vec thread: the same vectors on every run.
//! let p = Pipeline::load(&file)?.with_sets(&["word2vec.threads=1".into()])?;
//!
//! let log = segue_core::NoProgress; // or anything that draws segue_core::Progress
//! let mut runner = Runner::new(&p, &log);
//! for stage in segue_pipeline::closure("word2vec") {
//!     runner.run(stage, false)?; // ingest, sessionize, word2vec; fresh ones are reused
//! }
//! let sessions = runner.dir("sessionize")?;
//! let train = segue_sessions::read_splits(&sessions.join(files::SESSIONS), &[Split::Train])?;
//! let vocab = segue_sessions::read_vocab(&sessions.join(files::TRACKS))?;
//! let vectors = segue_core::EmbeddingTable::load(&runner.dir("word2vec")?.join(files::WORD2VEC_TABLE))?;
//! let report: segue_pipeline::Word2VecReport =
//!     segue_pipeline::load_json(&runner.dir("word2vec")?.join(files::WORD2VEC_REPORT))?;
//! // floor(0.7 * 12) = 8 training sessions per user.
//! assert_eq!(train.offsets.len() - 1, 16);
//! assert_eq!((vectors.rows(), vectors.dim()), (vocab.len(), 150));
//! assert_eq!(report.sentences, 16);
//! assert!(report.deterministic);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod baseline_stages;
pub mod cache;
mod content_stages;
mod html_report;
mod model_stages;
pub mod pipeline;
mod recommend;
mod report;
mod reproduce;
mod side_by_side;
mod stages;
mod tune;
mod user_study;

pub use model_stages::{TRAIN_REPORT, TrainReport};
pub use pipeline::Pipeline;
pub use recommend::{Answer, Recommender, SessionSource, default_variant, read_lines};
pub use report::{load as load_json, table1};
pub use reproduce::{Reproduced, ensure_synth, reproduce, status, synth};
pub use side_by_side::Ran;
pub use stages::{
    Coverage, IngestReport, LsaReport, Runner, STAGES, Word2VecReport, check_stage, closure, files,
    print_skips, reader_lines, registry_help, split_instance,
};
pub use tune::{Axis, tune};

/// The workspace root, for tests that read the checkout's pipeline files.
#[cfg(test)]
pub(crate) fn tests_workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
