//! The ingest stage: every source of a dataset -> normalised, de-duplicated events sorted by
//! (user, time, input order), and the catalogue of normalised track keys.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use segue_core::{Error, Progress, Result, normalize_name};

use crate::lastfm::read_lastfm_1k;
use crate::raw::{MAX_LINE_BYTES, RawEvents, SkipReason, SkipReport};
use crate::source::{Format, SourceSpec, read_input, read_lines_input};
use crate::spotify::{ReadSettings, SpotifyKind, read_spotify};
use crate::table::{read_table, skip_long_lines};
use crate::{parquet, time};

/// Settings of the ingest stage.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestOptions {
    /// Stop at the first malformed record instead of skipping and counting it.
    pub strict: bool,
    /// Plays shorter than this many milliseconds are filtered out (formats that record it).
    pub min_ms_played: u64,
    /// Drop events with the same user, time and track as an earlier one.
    pub drop_duplicates: bool,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions { strict: false, min_ms_played: 30_000, drop_duplicates: true }
    }
}

/// What ingest produced: events sorted by (user, time, input order) and the track keys.
#[derive(Debug)]
pub struct Ingested {
    /// Columns `user` (str), `ts` (i64, UTC seconds of the play's start), `track_key` (u32).
    pub events: DataFrame,
    /// Columns `track_key` (u32), `artist_key`, `title_key` (normalised), `artist`, `title`
    /// (first spelling in input order).
    pub keys: DataFrame,
    /// Every record not kept, by reason.
    pub skips: SkipReport,
    /// Records read (kept or not), over all files.
    pub records: u64,
    /// Files read.
    pub files: Vec<PathBuf>,
    /// What finding the files noticed: link loops not followed, files reached twice.
    pub notes: Vec<String>,
}

/// What [`read_sources`] read.
#[derive(Debug, Default)]
pub struct SourcesRead {
    /// The events, strings interned.
    pub events: RawEvents,
    /// Every record not kept so far.
    pub skips: SkipReport,
    /// Files read.
    pub files: Vec<PathBuf>,
    /// What finding the files noticed.
    pub notes: Vec<String>,
}

/// Reads every source into raw events (strings interned, not yet normalised).
pub fn read_sources(
    sources: &[SourceSpec],
    base: &Path,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<SourcesRead> {
    let mut events = RawEvents::default();
    let mut notes = Vec::new();
    let mut skips = SkipReport::new(options.strict);
    let settings =
        ReadSettings { min_ms_played: options.min_ms_played, latest: time::latest_plausible() };
    let mut all_files = Vec::new();
    if sources.is_empty() {
        return Err(Error::Config("the dataset has no sources".into()));
    }
    for source in sources {
        let found = source.find_files(base)?;
        notes.extend(found.notes);
        let files = found.files;
        let total: u64 =
            files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        progress.start(&format!("reading {:?} files", source.format), Some(total), "bytes");
        for file in &files {
            let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
            match source.format {
                Format::Table | Format::LastfmScrobblesCsv => {
                    read_table(file, source, settings, &mut events, &mut skips)?;
                    progress.advance(size);
                }
                Format::Lastfm1k => {
                    let (bytes, long) = read_lines_input(file, MAX_LINE_BYTES)?;
                    if long.is_empty() && bytes.iter().all(u8::is_ascii_whitespace) {
                        return Err(empty_file(file));
                    }
                    skip_long_lines(&long, file, MAX_LINE_BYTES, &mut skips)?;
                    // Progress is reported on decompressed bytes; scale to the file size.
                    let scale =
                        ScaledProgress { inner: progress, num: size, den: bytes.len() as u64 };
                    read_lastfm_1k(
                        &bytes,
                        file,
                        options.strict,
                        settings.latest,
                        &mut events,
                        &mut skips,
                        &scale,
                    )?;
                }
                Format::SpotifyStreamingHistory | Format::SpotifyExtended => {
                    let bytes = read_input(file)?;
                    if bytes.iter().all(u8::is_ascii_whitespace) {
                        return Err(empty_file(file));
                    }
                    let kind = if source.format == Format::SpotifyExtended {
                        SpotifyKind::Extended
                    } else {
                        SpotifyKind::StreamingHistory
                    };
                    read_spotify(
                        &bytes,
                        file,
                        kind,
                        &source.user_for(file),
                        settings,
                        &mut events,
                        &mut skips,
                    )?;
                    progress.advance(size);
                }
            }
        }
        progress.finish();
        all_files.extend(files);
    }
    Ok(SourcesRead { events, skips, files: all_files, notes })
}

fn empty_file(file: &Path) -> Error {
    Error::input(file, segue_core::Position::File, "the file is empty; expected listening records")
}

/// Scales progress from decompressed bytes to file bytes.
struct ScaledProgress<'a> {
    inner: &'a dyn Progress,
    num: u64,
    den: u64,
}

impl Progress for ScaledProgress<'_> {
    fn start(&self, step: &str, total: Option<u64>, unit: &str) {
        self.inner.start(step, total, unit)
    }
    fn advance(&self, n: u64) {
        self.inner.advance(n * self.num / self.den.max(1));
    }
    fn finish(&self) {}
}

/// Normalises, de-duplicates and sorts raw events.
pub fn build_events(read: SourcesRead, options: &IngestOptions) -> Result<Ingested> {
    let SourcesRead { events: raw, mut skips, files, notes } = read;
    let records = raw.len() as u64 + skips.total();
    // Normalise each distinct raw (artist, title) spelling once, in parallel; spellings that
    // normalise alike share a track key, numbered in first-seen order.
    let pairs = raw.tracks.pairs();
    let normed: Vec<(String, String)> =
        pairs.par_iter().map(|(a, t)| (normalize_name(a), normalize_name(t))).collect();
    let mut key_index: FxHashMap<(&str, &str), u32> = FxHashMap::default();
    let mut key_first: Vec<usize> = Vec::new(); // the raw pair that first gave each key
    let pair_key: Vec<u32> = normed
        .iter()
        .enumerate()
        .map(|(p, (a, t))| {
            if a.is_empty() || t.is_empty() {
                return u32::MAX;
            }
            *key_index.entry((a.as_str(), t.as_str())).or_insert_with(|| {
                key_first.push(p);
                key_first.len() as u32 - 1
            })
        })
        .collect();

    // Users in code-point order, so the user column sorts like the strings.
    let mut user_order: Vec<u32> = (0..raw.users.len() as u32).collect();
    user_order
        .sort_by(|&a, &b| raw.users.strings()[a as usize].cmp(&raw.users.strings()[b as usize]));
    let mut user_rank = vec![0u32; raw.users.len()];
    for (rank, &u) in user_order.iter().enumerate() {
        user_rank[u as usize] = rank as u32;
    }

    let n = raw.len();
    let mut user = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut key = Vec::with_capacity(n);
    let mut seq = Vec::with_capacity(n);
    for i in 0..n {
        let k = pair_key[raw.track[i] as usize];
        if k == u32::MAX {
            // Readers skip blank names with their file and line; this catches the rest.
            let (artist, title) = &pairs[raw.track[i] as usize];
            skips.skip(
                SkipReason::EmptyArtistOrTitle,
                Path::new("(all inputs)"),
                segue_core::Position::Record(i as u64 + 1),
                || format!("artist {artist:?}, title {title:?}"),
            )?;
            continue;
        }
        user.push(user_rank[raw.user[i] as usize]);
        ts.push(raw.ts[i]);
        key.push(k);
        seq.push(i as u32);
    }

    let df = DataFrame::new_infer_height(vec![
        Column::new("user".into(), user),
        Column::new("ts".into(), ts),
        Column::new("track_key".into(), key),
        Column::new("seq".into(), seq),
    ])
    .map_err(pl_err)?;
    let df = df
        .sort(
            ["user", "ts", "seq"],
            SortMultipleOptions::new().with_multithreaded(true).with_maintain_order(true),
        )
        .map_err(pl_err)?;
    let user_col = parquet::u32_column(&df, "user")?;
    let ts_col = parquet::i64_column(&df, "ts")?;
    let key_col = parquet::u32_column(&df, "track_key")?;

    // Exact duplicates (same user, time, track) are adjacent within a run of equal (user, time).
    let mut keep = vec![true; user_col.len()];
    if options.drop_duplicates {
        let mut start = 0;
        while start < user_col.len() {
            let mut end = start + 1;
            while end < user_col.len()
                && user_col[end] == user_col[start]
                && ts_col[end] == ts_col[start]
            {
                end += 1;
            }
            for j in start + 1..end {
                if key_col[start..j].contains(&key_col[j]) {
                    keep[j] = false;
                }
            }
            start = end;
        }
        skips.add_count(SkipReason::DuplicateEvent, keep.iter().filter(|k| !**k).count() as u64);
    }
    let users = raw.users.strings();
    let user_names: Vec<&str> = user_col
        .iter()
        .zip(&keep)
        .filter(|(_, k)| **k)
        .map(|(&u, _)| &*users[user_order[u as usize] as usize])
        .collect();
    let ts_kept: Vec<i64> =
        ts_col.iter().zip(&keep).filter(|(_, k)| **k).map(|(&t, _)| t).collect();
    let key_kept: Vec<u32> =
        key_col.iter().zip(&keep).filter(|(_, k)| **k).map(|(&t, _)| t).collect();
    let events = DataFrame::new_infer_height(vec![
        Column::new("user".into(), user_names),
        Column::new("ts".into(), ts_kept),
        Column::new("track_key".into(), key_kept),
    ])
    .map_err(pl_err)?;

    type Pick = fn(&(String, String), &(Box<str>, Box<str>)) -> String;
    let first =
        |f: Pick| -> Vec<String> { key_first.iter().map(|&p| f(&normed[p], &pairs[p])).collect() };
    let keys = DataFrame::new_infer_height(vec![
        Column::new("track_key".into(), (0..key_first.len() as u32).collect::<Vec<_>>()),
        Column::new("artist_key".into(), first(|n, _| n.0.clone())),
        Column::new("title_key".into(), first(|n, _| n.1.clone())),
        Column::new("artist".into(), first(|_, r| r.0.to_string())),
        Column::new("title".into(), first(|_, r| r.1.to_string())),
    ])
    .map_err(pl_err)?;
    if events.height() == 0 {
        return Err(Error::Config(no_events_message(&files, records, &skips)));
    }
    Ok(Ingested { events, keys, skips, records, files, notes })
}

/// Why ingest has nothing to give: the files, and every skip reason with its first example.
fn no_events_message(files: &[PathBuf], records: u64, skips: &SkipReport) -> String {
    let shown: Vec<String> = files.iter().take(3).map(|f| f.display().to_string()).collect();
    let more = files.len().saturating_sub(3);
    let files_text = format!(
        "{}{}",
        shown.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    );
    let mut why: Vec<String> = Vec::new();
    for (reason, c) in &skips.reasons {
        let example = c.examples.first().map_or(String::new(), |ex| {
            format!(" (e.g. {}, {}: {})", ex.file.display(), ex.position, ex.detail)
        });
        why.push(format!("{}: {}{example}", reason.describe(), c.count));
    }
    if records == 0 {
        format!(
            "no usable listening events: {} file(s) ({files_text}) hold no records",
            files.len()
        )
    } else {
        format!(
            "no usable listening events: all {records} record(s) of {} file(s) ({files_text}) were skipped; {}",
            files.len(),
            why.join("; ")
        )
    }
}

/// Reads and builds in one call.
pub fn ingest(
    sources: &[SourceSpec],
    base: &Path,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<Ingested> {
    build_events(read_sources(sources, base, options, progress)?, options)
}

/// A polars error as a segue error.
pub(crate) fn pl_err(e: PolarsError) -> Error {
    Error::Other(format!("polars: {e}"))
}

impl Ingested {
    /// Writes `events.parquet` and `keys.parquet` into `dir`, atomically each.
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        parquet::write(&dir.join("events.parquet"), &mut self.events)?;
        parquet::write(&dir.join("keys.parquet"), &mut self.keys)
    }

    /// Reads the events and keys written by [`Ingested::write`].
    pub fn read_frames(dir: &Path) -> Result<(DataFrame, DataFrame)> {
        Ok((parquet::read(&dir.join("events.parquet"))?, parquet::read(&dir.join("keys.parquet"))?))
    }
}
