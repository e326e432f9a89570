//! Listening logs in, sessions out: readers for Last.fm (1K and the exporters' CSVs), Spotify,
//! ListenBrainz, Apple Music and YouTube Music exports and any table, a sniffer that picks the
//! reader of each file ([`sniff()`](crate::sniff())),
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
//!
//! // In memory, without writing Parquet: the training sessions, the vocabulary, the counts.
//! let train = out.split(segue_sessions::Split::Train).unwrap();
//! let vocab = out.vocab().unwrap();
//! assert_eq!((train.offsets.len() - 1, train.flat.len()), (1, 6));
//! assert_eq!(vocab.get(segue_core::TrackId(train.flat[0])).unwrap().title, "a");
//! assert_eq!(out.track_counts().unwrap().train.iter().sum::<u32>(), 6);
//! ```
//!
//! The sessions feed the other crates straight away; Word2Vec over the training sessions:
//!
//! ```
//! # use segue_core::NoProgress;
//! # use segue_sessions::{Format, IngestOptions, SessionOptions, SourceSpec, ingest, sessionize};
//! # let dir = tempfile::tempdir().unwrap();
//! # let mut log = String::new();
//! # for day in 1..=9 {
//! #     for (i, track) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
//! #         log += &format!("u1\t2009-05-0{day}T10:0{i}:00Z\t\tArtist\t\t{track}\n");
//! #     }
//! # }
//! # std::fs::write(dir.path().join("listens.tsv"), log).unwrap();
//! # let source = SourceSpec::new(Format::Lastfm1k, ["listens.tsv"]);
//! # let events = ingest(&[source], dir.path(), &IngestOptions::default(), &NoProgress).unwrap();
//! let out = sessionize(&events.events, &events.keys, &SessionOptions::default()).unwrap();
//! let train = out.split(segue_sessions::Split::Train).unwrap();
//! let tracks = out.vocab().unwrap().len();
//! let corpus = segue_word2vec::Corpus::new(&train.flat, &train.offsets, tracks).unwrap();
//! let params = segue_word2vec::Params { vector_size: 8, ..Default::default() };
//! let model = segue_word2vec::train(&corpus, &params).unwrap();
//! assert_eq!(model.vocabulary().len(), 6);
//! assert_eq!(model.most_similar(train.flat[0], 3).len(), 3);
//! ```
#![deny(missing_docs)]

mod apple;
mod content;
mod events;
mod ingest;
mod json;
mod lastfm;
mod listenbrainz;
pub mod parquet;
mod plays;
mod raw;
mod sessionize;
mod sniff;
mod source;
mod spotify;
mod table;
mod time;
mod youtube;

pub use content::{
    ARTIST_COLUMNS, ContentTable, FeatureMatrix, JoinReport, MissingFeature, TITLE_COLUMNS,
    read_features,
};
pub use events::Events;
pub use ingest::{IngestOptions, Ingested, ReaderChoice, ingest};
pub use polars::prelude::DataFrame;
pub use raw::{MAX_FIELD_BYTES, MAX_LINE_BYTES, RawEvents, SkipReason, SkipReport};
pub use sessionize::{
    CatalogueLimits, SessionOptions, SessionStats, Sessionized, Split, SplitCorpus, SplitRule,
    TrackCounts, UserStats, read_split, read_splits, read_vocab, sessionize, sessionize_owned,
};
pub use sniff::{Reader, Sniffed, Verdict, sniff};
pub use source::{ColumnMap, ColumnRef, Format, SourceSpec, TimeFormat, TimeIs, clean_path};
pub use time::parse_iso;
