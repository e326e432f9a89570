//! Shared types of segue: track ids, the vocabulary, embedding tables, progress reporting and
//! the one error type every segue crate returns.
//!
//! ```
//! use segue_core::{EmbeddingTable, TrackId, Vocab, VocabEntry};
//!
//! let vocab = Vocab::new(vec![
//!     VocabEntry::new("daft punk", "one more time", "Daft Punk", "One More Time"),
//!     VocabEntry::new("air", "la femme d'argent", "Air", "La femme d'argent"),
//! ])
//! .unwrap();
//! assert_eq!(vocab.id("air", "la femme d'argent"), Some(TrackId(1)));
//!
//! let mut table = EmbeddingTable::zeros(vocab.len(), 4, vocab.hash());
//! table.set_row(TrackId(0), &[0.1, 0.2, 0.3, 0.4]).unwrap();
//! assert!(table.is_present(TrackId(0)) && !table.is_present(TrackId(1)));
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("w2v.safetensors");
//! table.save(&path).unwrap();
//! assert_eq!(EmbeddingTable::load(&path).unwrap(), table);
//! ```
#![deny(missing_docs)]

mod embedding;
mod error;
pub mod fs;
mod progress;
mod vocab;

pub use embedding::EmbeddingTable;
pub use error::{Error, Position, Result};
pub use progress::{NoProgress, Progress};
pub use vocab::{TrackId, Vocab, VocabEntry, normalize_name};
