//! The ingest stage: every source of a dataset -> normalised, de-duplicated events sorted by
//! (user, time, input order), and the catalogue of normalised track keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use segue_core::{Error, Progress, Result, normalize_name};

use crate::apple::read_apple_music;
use crate::events::{self, Events};
use crate::lastfm::read_lastfm_1k;
use crate::listenbrainz::read_listenbrainz;
use crate::plays::Plays;
use crate::raw::{MAX_LINE_BYTES, RawEvents, SkipReason, SkipReport};
use crate::sniff::{self, Reader, Sniffed, Verdict};
use crate::source::{Format, SourceSpec, read_input, read_lines_input};
use crate::spotify::{ReadSettings, SpotifyKind, read_spotify};
use crate::table::{read_table, skip_long_lines};
use crate::time::Zone;
use crate::youtube::read_youtube_music;
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
    /// The kept events, sorted by (user, time, input order).
    pub events: Events,
    /// Columns `track_key` (u32), `artist_key`, `title_key` (normalised), `artist`, `title`
    /// (first spelling in input order).
    pub keys: DataFrame,
    /// Every record not kept, by reason.
    pub skips: SkipReport,
    /// Records read (kept or not), over all files.
    pub records: u64,
    /// Files read.
    pub files: Vec<PathBuf>,
    /// What finding the files noticed: link loops not followed, files reached twice, files of
    /// a folder that are not listening logs.
    pub notes: Vec<String>,
    /// The reader of every file read, and why.
    pub choices: Vec<ReaderChoice>,
    /// What may be wrong: user ids two folders share without saying so, files of which
    /// nothing was kept.
    pub warnings: Vec<String>,
}

/// How one file was read: the reader, and why it was chosen.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReaderChoice {
    /// The source's index in the dataset (0 for the first).
    pub source: usize,
    /// The file.
    pub file: PathBuf,
    /// The format a pipeline would name for it.
    pub format: Format,
    /// The reader in words (a table's layout included).
    pub reader: String,
    /// What decided it: the sniffer's finding, or the pipeline's `format`.
    pub why: String,
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
    /// What finding the files noticed, and files of a folder that are not listening logs.
    pub notes: Vec<String>,
    /// The reader of every file read.
    pub choices: Vec<ReaderChoice>,
    /// What may be wrong: user ids that two folders share without saying so, files of which
    /// nothing was kept.
    pub warnings: Vec<String>,
}

/// Where the default user id of a source's files came from.
#[derive(Debug, Default)]
struct UserOrigins {
    /// User id -> the folders (or `user = ...` sources) that gave it, and whether explicitly.
    by_id: BTreeMap<String, Vec<(PathBuf, bool)>>,
}

impl UserOrigins {
    fn note(&mut self, id: &str, origin: PathBuf, explicit: bool) {
        let list = self.by_id.entry(id.to_string()).or_default();
        if !list.iter().any(|(p, _)| *p == origin) {
            list.push((origin, explicit));
        }
    }

    /// One warning per id that two places give without all of them saying so.
    fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (id, origins) in &self.by_id {
            if origins.len() < 2 || origins.iter().all(|(_, explicit)| *explicit) {
                continue;
            }
            let places: Vec<String> = origins
                .iter()
                .map(|(p, explicit)| {
                    if *explicit {
                        format!("a source with user = {id:?} ({})", p.display())
                    } else {
                        format!("the files of folder {}", p.display())
                    }
                })
                .collect();
            out.push(format!(
                "user id {id:?} comes from {}: they are read as ONE user; set `user = \"...\"` on the sources to keep them apart (or to say they are one)",
                places.join(" and ")
            ));
        }
        out
    }
}

/// The reader a source's `format` names for `file` (a `lastfm-scrobbles-csv` file's layout
/// is found from its header or first row).
fn named_reader(source: &SourceSpec, file: &Path) -> Result<Sniffed> {
    let why = format!("format = \"{}\" in the pipeline", source.format);
    let reader = match source.format {
        Format::Auto => unreachable!("auto sources are sniffed"),
        Format::Lastfm1k => Reader::Lastfm1k,
        Format::SpotifyStreamingHistory => Reader::Spotify(SpotifyKind::StreamingHistory),
        Format::SpotifyExtended => Reader::Spotify(SpotifyKind::Extended),
        Format::Listenbrainz => Reader::Listenbrainz,
        Format::AppleMusic => Reader::AppleMusic,
        Format::YoutubeMusic => Reader::YoutubeMusic,
        Format::Table => match &source.columns {
            Some(map) => Reader::Table {
                format: Format::Table,
                map: Box::new(map.clone()),
                dialect: "mapped".into(),
            },
            None => {
                return Err(Error::Config(format!(
                    "the table source of {} has no [dataset.sources.columns] mapping (or use format = \"auto\")",
                    file.display()
                )));
            }
        },
        Format::LastfmScrobblesCsv => match &source.columns {
            Some(map) => Reader::Table {
                format: Format::LastfmScrobblesCsv,
                map: Box::new(map.clone()),
                dialect: "mapped".into(),
            },
            None => match sniff::scrobble_layout(file)? {
                Ok(s) => return Ok(Sniffed { why: format!("{why}; {}", s.why), ..s }),
                Err(what) => {
                    return Err(Error::input(
                        file,
                        segue_core::Position::Line(1),
                        format!("not a Last.fm scrobble export segue knows: {what}"),
                    ));
                }
            },
        },
    };
    Ok(Sniffed { reader, why })
}

/// What the sniffer would read `file` as, when that is another format than `named`: a hint for
/// a file given to the wrong reader.
fn wrong_reader_hint(file: &Path, named: Format) -> Option<String> {
    match sniff::sniff(file).ok()? {
        Verdict::Read(s) if s.reader.format() != named => Some(format!(
            "it looks like {} ({}): set format = \"{}\", or \"auto\"",
            s.reader.label(),
            s.why,
            s.reader.format()
        )),
        _ => None,
    }
}

/// Adds `hint` to an error's message.
fn with_hint(e: Error, hint: &str) -> Error {
    match e {
        Error::Input { file, position, message } => {
            Error::Input { file, position, message: format!("{message}; {hint}") }
        }
        Error::Config(message) => Error::Config(format!("{message}; {hint}")),
        other => other,
    }
}

/// Reads one file with `reader` into `events`.
#[allow(clippy::too_many_arguments)]
fn read_file(
    reader: &Reader,
    file: &Path,
    user: &str,
    options: &IngestOptions,
    settings: ReadSettings,
    events: &mut RawEvents,
    skips: &mut SkipReport,
    progress: &dyn Progress,
) -> Result<()> {
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    match reader {
        Reader::Table { map, .. } => {
            read_table(file, map, user, settings, events, skips)?;
            progress.advance(size);
        }
        Reader::AppleMusic => {
            read_apple_music(user, &mut Plays::new(file, settings, Zone::Utc, events, skips))?;
            progress.advance(size);
        }
        Reader::Lastfm1k => {
            let (bytes, long) = read_lines_input(file, MAX_LINE_BYTES)?;
            if long.is_empty() && bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(empty_file(file));
            }
            skip_long_lines(&long, file, MAX_LINE_BYTES, skips)?;
            // Progress is reported on decompressed bytes; scale to the file size.
            let scale = ScaledProgress { inner: progress, num: size, den: bytes.len() as u64 };
            let release = |upto: usize| bytes.release(upto);
            read_lastfm_1k(
                &bytes,
                file,
                options.strict,
                settings.latest,
                events,
                skips,
                &scale,
                &release,
            )?;
        }
        Reader::Listenbrainz if !starts_with_bracket(file)? => {
            // JSON Lines: read line by line, overlong lines dropped before parsing.
            let (bytes, long) = read_lines_input(file, MAX_LINE_BYTES)?;
            if long.is_empty() && bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(empty_file(file));
            }
            skip_long_lines(&long, file, MAX_LINE_BYTES, skips)?;
            read_listenbrainz(
                &bytes,
                user,
                &mut Plays::new(file, settings, Zone::Utc, events, skips),
            )?;
            progress.advance(size);
        }
        Reader::Spotify(_) | Reader::Listenbrainz | Reader::YoutubeMusic => {
            let bytes = read_input(file)?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(empty_file(file));
            }
            if let Reader::Spotify(kind) = reader {
                read_spotify(&bytes, file, *kind, user, settings, events, skips)?;
            } else {
                let mut plays = Plays::new(file, settings, Zone::Utc, events, skips);
                match reader {
                    Reader::Listenbrainz => read_listenbrainz(&bytes, user, &mut plays)?,
                    _ => read_youtube_music(&bytes, user, &mut plays)?,
                }
            }
            progress.advance(size);
        }
    }
    Ok(())
}

/// Reads every source into raw events (strings interned, not yet normalised).
pub fn read_sources(
    sources: &[SourceSpec],
    base: &Path,
    options: &IngestOptions,
    progress: &dyn Progress,
) -> Result<SourcesRead> {
    let mut read = SourcesRead { skips: SkipReport::new(options.strict), ..Default::default() };
    let settings =
        ReadSettings { min_ms_played: options.min_ms_played, latest: time::latest_plausible() };
    if sources.is_empty() {
        return Err(Error::Config("the dataset has no sources".into()));
    }
    let mut users = UserOrigins::default();
    for (index, source) in sources.iter().enumerate() {
        if let Some(map) = &source.columns {
            map.validate()?;
        }
        let found = source.find_files(base)?;
        read.notes.extend(found.notes);
        let total: u64 =
            found.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
        progress.start(&format!("reading {} files", source.format), Some(total), "bytes");
        for (file, named) in found.files.iter().zip(&found.named) {
            let sniffed = if source.format == Format::Auto {
                match sniff::sniff(file)? {
                    Verdict::Other(what) if !named => {
                        read.notes.push(format!("{}: not read, {what}", file.display()));
                        continue;
                    }
                    verdict => verdict.into_reader(file)?,
                }
            } else {
                named_reader(source, file)?
            };
            let user = source.user_for(file);
            let (events_before, skipped_before) = (read.events.len(), read.skips.total());
            read.events.begin_file(file);
            let result = read_file(
                &sniffed.reader,
                file,
                &user,
                options,
                settings,
                &mut read.events,
                &mut read.skips,
                progress,
            );
            if let Err(e) = result {
                return Err(match source.format {
                    Format::Auto => e,
                    named => match wrong_reader_hint(file, named) {
                        Some(hint) => with_hint(e, &hint),
                        None => e,
                    },
                });
            }
            if let Some(forced) = &source.user {
                // `user = ...` holds over the user names an export carries in its records.
                let code = read.events.users.intern(forced.as_str());
                read.events.user[events_before..].fill(code);
            }
            let kept = read.events.len() - events_before;
            if kept == 0
                && read.skips.total() > skipped_before
                && source.format != Format::Auto
                && let Some(hint) = wrong_reader_hint(file, source.format)
            {
                read.warnings.push(format!(
                    "{}: no record kept with format = \"{}\"; {hint}",
                    file.display(),
                    source.format
                ));
            }
            // The folder name stood in for the user only if some event of the file took it.
            let code = read.events.users.code(user.as_str());
            let took_default = code.is_some_and(|c| read.events.user[events_before..].contains(&c));
            match (&source.user, took_default) {
                (Some(u), _) => users.note(u, PathBuf::from(format!("source {}", index + 1)), true),
                (None, true) => users.note(
                    &user,
                    file.parent().map(Path::to_path_buf).unwrap_or_default(),
                    false,
                ),
                (None, false) => {}
            }
            read.choices.push(ReaderChoice {
                source: index,
                file: file.clone(),
                format: sniffed.reader.format(),
                reader: sniffed.reader.label(),
                why: sniffed.why,
            });
            read.files.push(file.clone());
        }
        progress.finish();
    }
    read.warnings.extend(users.warnings());
    if read.files.is_empty() {
        return Err(Error::Config(format!(
            "no listening-log file among the sources' files: {}",
            read.notes.join("; ")
        )));
    }
    Ok(read)
}

/// True when the file's first non-blank byte (after decompression) opens a JSON array.
fn starts_with_bracket(file: &Path) -> Result<bool> {
    let (head, _) = sniff::read_head(file, 4096)?;
    Ok(head.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'['))
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
    let SourcesRead { events: mut raw, mut skips, files, notes, choices, warnings } = read;
    let records = raw.len() as u64 + skips.total();
    // Normalise each distinct raw (artist, title) spelling once, in parallel; spellings that
    // normalise alike share a track key, numbered in first-seen order.
    let pairs = raw.tracks.pairs();
    let normed: Vec<(String, String)> =
        pairs.par_iter().map(|(a, t)| (normalize_name(a), normalize_name(t))).collect();
    let mut key_first: Vec<usize> = Vec::new(); // the raw pair that first gave each key
    let pair_key: Vec<u32> = {
        let mut key_index: FxHashMap<(&str, &str), u32> = FxHashMap::default();
        normed
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
            .collect()
    };

    // Users in code-point order, so the user column sorts like the strings.
    let mut user_order: Vec<u32> = (0..raw.users.len() as u32).collect();
    user_order
        .sort_by(|&a, &b| raw.users.strings()[a as usize].cmp(&raw.users.strings()[b as usize]));
    let mut user_rank = vec![0u32; raw.users.len()];
    for (rank, &u) in user_order.iter().enumerate() {
        user_rank[u as usize] = rank as u32;
    }

    // Each kept event as one sort key, (user rank, time, input index) packed in a u128, sorted
    // in place: a third of the memory of sorting the columns as a frame, and the same order.
    let n = raw.len();
    // The input index is kept as 32 bits in the sort key.
    if n > u32::MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "{n} events read in one ingest: at most {} fit; split the sources into several pipelines",
            u32::MAX
        )));
    }
    // Readers skip blank names with their file and line; this catches the rest.
    for i in (0..n).filter(|&i| pair_key[raw.track[i] as usize] == u32::MAX) {
        let (artist, title) = &pairs[raw.track[i] as usize];
        let (file, position) = raw.origin(i);
        skips.skip(SkipReason::EmptyArtistOrTitle, &file, position, || {
            format!("artist {artist:?}, title {title:?}")
        })?;
    }
    // Built from the last event back, giving the raw users and times back a block at a time
    // as they move into the keys (the sort does not depend on the order they come in).
    let mut order: Vec<u128> = Vec::with_capacity(n);
    const BLOCK: usize = 1 << 22;
    for block in (0..n.div_ceil(BLOCK)).rev() {
        let (start, end) = (block * BLOCK, ((block + 1) * BLOCK).min(n));
        for i in start..end {
            if pair_key[raw.track[i] as usize] != u32::MAX {
                order.push(events::pack(user_rank[raw.user[i] as usize], raw.ts[i], i as u32));
            }
        }
        raw.user.truncate(start);
        raw.user.shrink_to_fit();
        raw.ts.truncate(start);
        raw.ts.shrink_to_fit();
    }
    order.par_sort_unstable();
    let user_names: Vec<Box<str>> =
        user_order.iter().map(|&u| raw.users.strings()[u as usize].clone()).collect();
    // In place, each key's input index becomes its track key, and duplicates go.
    let dedupe = Dedupe { raw: &raw, pairs, pair_key: &pair_key, users: &user_names };
    dedupe.run(&mut order, options.drop_duplicates, &mut skips)?;
    // The per-event columns read above are no longer needed (the names and pairs stay).
    drop((std::mem::take(&mut raw.track), std::mem::take(&mut raw.at)));
    let events = Events::from_packed(order, user_names);
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
    if events.is_empty() {
        return Err(Error::Config(no_events_message(&files, records, &skips)));
    }
    Ok(Ingested { events, keys, skips, records, files, notes, choices, warnings })
}

/// What the de-duplication of sorted events reads: the raw events' tracks and origins, the
/// distinct (artist, title) spellings and their keys, the user ids by rank.
struct Dedupe<'a> {
    raw: &'a RawEvents,
    pairs: &'a [(Box<str>, Box<str>)],
    pair_key: &'a [u32],
    users: &'a [Box<str>],
}

impl Dedupe<'_> {
    /// Replaces each sorted event's input index by its track key, in place, and (with `drop`)
    /// removes exact duplicates (same user, time and track as an earlier event), counting each
    /// in `skips` with where it and its first occurrence were read.
    fn run(&self, order: &mut Vec<u128>, drop: bool, skips: &mut SkipReport) -> Result<()> {
        let raw = self.raw;
        // The kept events of the current run of equal (user, time): (key, input index).
        let mut run: Vec<(u32, u32)> = Vec::new();
        let mut run_of = None;
        let mut kept = 0;
        for r in 0..order.len() {
            let row = order[r];
            let (user_ts, input) = (row >> 32, events::low_of(row));
            let key = self.pair_key[raw.track[input as usize] as usize];
            if run_of != Some(user_ts) {
                run.clear();
                run_of = Some(user_ts);
            }
            if let Some(&(_, first)) = run.iter().find(|(k, _)| *k == key).filter(|_| drop) {
                let (dup, first) = (input as usize, first as usize);
                let (file, position) = raw.origin(dup);
                skips.skip(SkipReason::DuplicateEvent, &file, position, || {
                    let (artist, title) = &self.pairs[raw.track[dup] as usize];
                    let (first_file, first_position) = raw.origin(first);
                    format!(
                        "user {:?}, {}, {artist} - {title}: the same as {}, {first_position}",
                        &*self.users[events::user_of(row) as usize],
                        time::format_utc(events::ts_of(row)),
                        first_file.display(),
                    )
                })?;
                continue;
            }
            run.push((key, input));
            order[kept] = user_ts << 32 | u128::from(key);
            kept += 1;
        }
        order.truncate(kept);
        Ok(())
    }
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
    Error::backend("polars", "", e)
}

impl Ingested {
    /// Writes `events.parquet` and `keys.parquet` into `dir`, atomically each.
    pub fn write(&mut self, dir: &Path) -> Result<()> {
        self.events.write(&dir.join("events.parquet"))?;
        parquet::write(&dir.join("keys.parquet"), &mut self.keys)
    }

    /// Reads the events and keys written by [`Ingested::write`].
    pub fn read_frames(dir: &Path) -> Result<(DataFrame, DataFrame)> {
        Ok((parquet::read(&dir.join("events.parquet"))?, Self::read_keys(dir)?))
    }

    /// Reads the events written by [`Ingested::write`], a row group at a time.
    pub fn read_events(dir: &Path) -> Result<Events> {
        Events::read(&dir.join("events.parquet"))
    }

    /// Reads the keys written by [`Ingested::write`].
    pub fn read_keys(dir: &Path) -> Result<DataFrame> {
        parquet::read(&dir.join("keys.parquet"))
    }
}
