//! Listening logs in, sessions out: readers for Last.fm and Spotify exports and any table,
//! track-identity normalisation, sessionization, the per-user chronological split, and the
//! paper's Table I, on polars.
//!
//! Every record that does not become an event is accounted for in a [`SkipReport`] (counts and
//! first examples per reason); in strict mode the first malformed record is an error that names
//! the file, the line or record, and what was expected.
//!
//! ```
//! use segue_core::NoProgress;
//! use segue_sessions::{Format, IngestOptions, SessionOptions, SourceSpec, ingest, sessionize};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let mut log = String::new();
//! for day in [4, 5] {
//!     for (i, track) in ["a", "b", "c", "d", "e", "a"].iter().enumerate() {
//!         log += &format!("u1\t2009-05-0{day}T10:0{i}:00Z\t\tArtist\t\t{track}\n");
//!     }
//! }
//! std::fs::write(dir.path().join("listens.tsv"), log).unwrap();
//!
//! let source = SourceSpec::new(Format::Lastfm1k, ["listens.tsv"]);
//! let events = ingest(&[source], dir.path(), &IngestOptions::default(), &NoProgress).unwrap();
//! let out = sessionize(&events.events, &events.keys, &SessionOptions::default()).unwrap();
//! // Two sessions: the first trains, the second tests.
//! assert_eq!((out.stats.users, out.stats.sessions, out.stats.events), (1, 2, 12));
//! assert_eq!(out.stats.unique_songs, 5);
//! ```
#![deny(missing_docs)]

pub mod content;
pub mod ingest;
pub mod lastfm;
pub mod parquet;
pub mod raw;
pub mod sessionize;
pub mod source;
pub mod spotify;
pub mod table;
pub mod time;

pub use ingest::{IngestOptions, Ingested, ingest};
pub use polars::prelude::DataFrame;
pub use raw::{RawEvents, SkipReason, SkipReport};
pub use sessionize::{
    SessionOptions, SessionStats, Sessionized, Split, SplitCorpus, TrackCounts, read_split,
    read_vocab, sessionize,
};
pub use source::{ColumnMap, Format, SourceSpec, TimeFormat, TimeIs};
