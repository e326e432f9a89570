//! Shared types of segue: track ids, the vocabulary, embedding tables, progress reporting and
//! the one error type every segue crate returns.
//!
//! Features: `tables` (default) brings the track vocabulary and the embedding tables with
//! their hashing, Unicode normalisation and safetensors I/O; without it the crate is the error
//! type, progress, atomic writes and SIMD helpers, with no dependencies (what segue-eval uses).
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

#[cfg(feature = "tables")]
mod embedding;
mod error;
pub mod fs;
mod progress;
pub mod simd;
#[cfg(feature = "tables")]
mod vocab;

#[cfg(feature = "tables")]
pub use embedding::EmbeddingTable;
pub use error::{Error, Position, Result};
pub use progress::{NoProgress, Progress};
#[cfg(feature = "tables")]
pub use vocab::{TrackId, Vocab, VocabEntry, normalize_name};

/// `YYYY-MM-DDTHH:MM:SSZ` of UTC epoch seconds (proleptic Gregorian), for messages and exports.
///
/// ```
/// assert_eq!(segue_core::format_utc(946_684_800), "2000-01-01T00:00:00Z");
/// ```
pub fn format_utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
