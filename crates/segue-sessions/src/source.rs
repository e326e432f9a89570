//! What a dataset is made of: sources (a format and files), and how their files are found and
//! opened (globs, folders, gzip and zstd).

use std::io::Read;
use std::path::{Path, PathBuf};

use segue_core::{Error, Result};

/// The listening-log formats segue reads natively.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    serde::Deserialize,
    serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Each file is sniffed ([`crate::sniff()`]): JSON array, JSON Lines or a CSV/TSV/Parquet
    /// table, by the keys or the header it has (or the layout of a headerless first row), and
    /// read with the reader that fits.
    #[default]
    Auto,
    /// Last.fm 1K TSV: user, ISO time, artist mbid, artist, track mbid, track; no header.
    #[serde(rename = "lastfm-1k")]
    Lastfm1k,
    /// Spotify's account-data export: `StreamingHistory*.json` (endTime, artistName, trackName,
    /// msPlayed), one user per file set.
    SpotifyStreamingHistory,
    /// Spotify's extended streaming history: `endsong_*.json` / `Streaming_History_Audio_*.json`.
    SpotifyExtended,
    /// A Last.fm scrobble export as the exporters write it: a CSV/TSV with a header (a time
    /// column such as `uts`, `utc_time`, `played_at`, `date` or `timestamp`, an artist and a
    /// track column), or one of the headerless layouts ([`crate::Reader`] lists them).
    LastfmScrobblesCsv,
    /// ListenBrainz listens: a JSON array or JSON Lines of `{listened_at, track_metadata}`.
    Listenbrainz,
    /// Apple Music's `Apple Music Play Activity.csv` from Apple's privacy export.
    AppleMusic,
    /// YouTube Music plays in Google Takeout's `watch-history.json` (music entries only).
    YoutubeMusic,
    /// Any CSV, TSV or Parquet table, read through a column mapping.
    Table,
}

impl Format {
    /// Every format, in the order they are documented.
    pub const ALL: [Format; 9] = [
        Format::Auto,
        Format::Lastfm1k,
        Format::SpotifyStreamingHistory,
        Format::SpotifyExtended,
        Format::LastfmScrobblesCsv,
        Format::Listenbrainz,
        Format::AppleMusic,
        Format::YoutubeMusic,
        Format::Table,
    ];

    /// The name a pipeline file uses (`format = "..."`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Lastfm1k => "lastfm-1k",
            Format::SpotifyStreamingHistory => "spotify-streaming-history",
            Format::SpotifyExtended => "spotify-extended",
            Format::LastfmScrobblesCsv => "lastfm-scrobbles-csv",
            Format::Listenbrainz => "listenbrainz",
            Format::AppleMusic => "apple-music",
            Format::YoutubeMusic => "youtube-music",
            Format::Table => "table",
        }
    }

    /// File-name patterns looked for when a source names a folder.
    pub fn folder_patterns(self) -> &'static [&'static str] {
        match self {
            Format::Auto => &[
                "*.json",
                "*.jsonl",
                "*.ndjson",
                "*.csv",
                "*.tsv",
                "*.parquet",
                "*.json.gz",
                "*.jsonl.gz",
                "*.csv.gz",
                "*.tsv.gz",
                "*.json.zst",
                "*.jsonl.zst",
                "*.csv.zst",
                "*.tsv.zst",
            ],
            Format::Lastfm1k => &["*.tsv", "*.tsv.gz", "*.tsv.zst"],
            Format::SpotifyStreamingHistory => &[
                "StreamingHistory*.json",
                "StreamingHistory*.json.gz",
                "StreamingHistory*.json.zst",
            ],
            Format::SpotifyExtended => &[
                "endsong*.json",
                "Streaming_History_Audio_*.json",
                "endsong*.json.gz",
                "Streaming_History_Audio_*.json.gz",
            ],
            Format::LastfmScrobblesCsv => {
                &["*.csv", "*.tsv", "*.txt", "*.csv.gz", "*.csv.zst", "*.tsv.gz"]
            }
            Format::Listenbrainz => &["*.json", "*.jsonl", "*.ndjson", "*.json.gz", "*.jsonl.gz"],
            Format::AppleMusic => &["Apple Music Play Activity*.csv", "*Play Activity*.csv"],
            Format::YoutubeMusic => &["watch-history*.json", "watch-history*.json.gz"],
            Format::Table => {
                &["*.csv", "*.tsv", "*.parquet", "*.csv.gz", "*.tsv.gz", "*.csv.zst", "*.tsv.zst"]
            }
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a table source's time column is written. In a pipeline file: `"auto"`, `"iso"`,
/// `"unix"`, `"unix-ms"`, `"day-month-name"`, or a strftime-style pattern such as
/// `"%d/%m/%Y %H:%M"` (any value with a `%`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TimeFormat {
    /// Whichever of the forms below a value is in: digits are
    /// epoch seconds, or milliseconds when too large for seconds.
    #[default]
    Auto,
    /// ISO 8601 / `YYYY-MM-DD HH:MM[:SS]`; UTC (or `timezone`) unless an offset is given.
    Iso,
    /// Seconds since the epoch.
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
    /// Last.fm's `DD Mon YYYY[,] HH:MM`.
    DayMonthName,
    /// A strftime-style pattern (chrono's fields: `%Y %m %d %H %M %S %b %z ...`).
    Pattern(String),
}

impl TimeFormat {
    /// The name a pipeline file uses.
    pub fn name(&self) -> &str {
        match self {
            TimeFormat::Auto => "auto",
            TimeFormat::Iso => "iso",
            TimeFormat::Unix => "unix",
            TimeFormat::UnixMs => "unix-ms",
            TimeFormat::DayMonthName => "day-month-name",
            TimeFormat::Pattern(p) => p,
        }
    }

    /// Reads a value written in this format.
    pub fn parse(&self, text: &str) -> Option<crate::time::Stamp> {
        use crate::time::{self, Stamp};
        match self {
            TimeFormat::Auto => time::parse_any(text),
            TimeFormat::Iso => time::parse_iso_stamp(text),
            TimeFormat::Unix => time::parse_unix(text, false).map(Stamp::Instant),
            TimeFormat::UnixMs => time::parse_unix(text, true).map(Stamp::Instant),
            TimeFormat::DayMonthName => time::parse_day_month_name(text).map(Stamp::Local),
            TimeFormat::Pattern(p) => time::parse_pattern(text, p),
        }
    }

    /// What values of this format look like, for messages.
    pub fn describe(&self) -> String {
        match self {
            TimeFormat::Auto => "epoch seconds or milliseconds, ISO 8601 (2021-01-31T14:05:00Z, 2021-01-31 14:05) or DD Mon YYYY[,] HH:MM".into(),
            TimeFormat::Iso => "ISO 8601 (2021-01-31T14:05:00Z, 2021-01-31 14:05)".into(),
            TimeFormat::Unix => "epoch seconds".into(),
            TimeFormat::UnixMs => "epoch milliseconds".into(),
            TimeFormat::DayMonthName => "DD Mon YYYY[,] HH:MM (31 Jan 2021, 14:05)".into(),
            TimeFormat::Pattern(p) => format!("the pattern {p:?}"),
        }
    }
}

impl std::str::FromStr for TimeFormat {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Ok(match s {
            "auto" => TimeFormat::Auto,
            "iso" => TimeFormat::Iso,
            "unix" => TimeFormat::Unix,
            "unix-ms" => TimeFormat::UnixMs,
            "day-month-name" => TimeFormat::DayMonthName,
            p if p.contains('%') => {
                crate::time::check_pattern(p)?;
                TimeFormat::Pattern(p.to_string())
            }
            other => {
                return Err(format!(
                    "time_format `{other}`: expected auto, iso, unix, unix-ms, day-month-name or a strftime pattern such as \"%d/%m/%Y %H:%M\""
                ));
            }
        })
    }
}

impl serde::Serialize for TimeFormat {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for TimeFormat {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Whether a table's time is when the play started or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeIs {
    /// The play started then.
    #[default]
    Start,
    /// The play ended then; the start is this minus the played duration.
    End,
}

/// A column of a table: by its header name, or by its 1-based position (`time = 4`; the only
/// way for a table without a header).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ColumnRef {
    /// The header's name for it.
    Name(String),
    /// Its position, 1 for the first column.
    Position(usize),
}

impl ColumnRef {
    /// How messages name it: `` `artist` `` or `column 3`.
    pub fn describe(&self) -> String {
        match self {
            ColumnRef::Name(n) => format!("`{n}`"),
            ColumnRef::Position(i) => format!("column {i}"),
        }
    }
}

impl From<&str> for ColumnRef {
    fn from(name: &str) -> Self {
        ColumnRef::Name(name.to_string())
    }
}

impl From<usize> for ColumnRef {
    fn from(position: usize) -> Self {
        ColumnRef::Position(position)
    }
}

impl serde::Serialize for ColumnRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            ColumnRef::Name(n) => s.serialize_str(n),
            ColumnRef::Position(i) => s.serialize_u64(*i as u64),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ColumnRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ColumnRef;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a column name (a string) or a 1-based column position (1, 2, ...)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<ColumnRef, E> {
                Ok(ColumnRef::Name(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<ColumnRef, E> {
                if v == 0 {
                    return Err(E::custom("column positions start at 1 (the first column)"));
                }
                Ok(ColumnRef::Position(v as usize))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<ColumnRef, E> {
                if v < 1 {
                    return Err(E::custom("column positions start at 1 (the first column)"));
                }
                Ok(ColumnRef::Position(v as usize))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Column mapping of a [`Format::Table`] source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMap {
    /// User id column; without it the source's `user` (or the folder name) is used.
    #[serde(default)]
    pub user: Option<ColumnRef>,
    /// Time column.
    pub time: ColumnRef,
    /// A separate date column for exports that split date and time (`2021-04-01` and
    /// `10:42:53`): its value is joined before the time's, with a space.
    #[serde(default)]
    pub date: Option<ColumnRef>,
    /// How the time is written.
    #[serde(default)]
    pub time_format: TimeFormat,
    /// Whether the time is the start or the end of the play.
    #[serde(default)]
    pub time_is: TimeIs,
    /// The zone of times written without an offset: `UTC` (default), an offset (`+02:00`) or
    /// an IANA name (`Europe/Berlin`, daylight saving time included).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Milliseconds played, when the table has it (needed for `time_is = "end"`).
    #[serde(default)]
    pub ms_played: Option<ColumnRef>,
    /// Artist column.
    pub artist: ColumnRef,
    /// Title column.
    pub title: ColumnRef,
    /// Field separator of a text table; by default `\t` for .tsv files and `,` otherwise.
    #[serde(default)]
    pub separator: Option<char>,
    /// Whether the first line is a header (names the columns); without one, columns are named
    /// by position.
    #[serde(default = "yes")]
    pub has_header: bool,
}

fn yes() -> bool {
    true
}

impl ColumnMap {
    /// A mapping of the three columns every table needs; the rest take their defaults (time
    /// format auto, start times in UTC, a header line).
    pub fn new(
        time: impl Into<ColumnRef>,
        artist: impl Into<ColumnRef>,
        title: impl Into<ColumnRef>,
    ) -> Self {
        ColumnMap {
            user: None,
            time: time.into(),
            date: None,
            time_format: TimeFormat::Auto,
            time_is: TimeIs::Start,
            timezone: None,
            ms_played: None,
            artist: artist.into(),
            title: title.into(),
            separator: None,
            has_header: true,
        }
    }

    /// Every column the mapping names, with its key.
    pub fn columns(&self) -> Vec<(&'static str, &ColumnRef)> {
        let mut out = vec![("time", &self.time), ("artist", &self.artist), ("title", &self.title)];
        for (key, c) in [("user", &self.user), ("date", &self.date), ("ms_played", &self.ms_played)]
        {
            if let Some(c) = c {
                out.push((key, c));
            }
        }
        out
    }

    /// Checks what can be checked before a file is read: the zone, the separator, names on a
    /// headerless table, `time_is = "end"` without `ms_played`.
    pub fn validate(&self) -> Result<crate::time::Zone> {
        let zone = match &self.timezone {
            None => crate::time::Zone::Utc,
            Some(z) => crate::time::Zone::parse(z)
                .map_err(|e| Error::Config(format!("[dataset.sources.columns] timezone: {e}")))?,
        };
        if let Some(c) = self.separator
            && !c.is_ascii()
        {
            return Err(Error::Config(format!(
                "[dataset.sources.columns] separator {c:?} is not a single ASCII character"
            )));
        }
        if !self.has_header
            && let Some((key, c)) =
                self.columns().into_iter().find(|(_, c)| matches!(c, ColumnRef::Name(_)))
        {
            return Err(Error::Config(format!(
                "[dataset.sources.columns] has_header = false, but {key} = {}: a table without a header names its columns by position (1 = the first), e.g. {key} = 2",
                c.describe()
            )));
        }
        if self.time_is == TimeIs::End && self.ms_played.is_none() {
            return Err(Error::Config(
                "[dataset.sources.columns] time_is = \"end\" needs `ms_played` (the start is the end minus the time played)".into(),
            ));
        }
        Ok(zone)
    }
}

/// One source of a dataset: a format and the files, folders or globs that hold it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The format of every file of this source; `auto` (the default) sniffs each file.
    #[serde(default)]
    pub format: Format,
    /// Files, folders (searched for the format's file names) or glob patterns; relative paths
    /// are relative to the pipeline file's folder.
    pub paths: Vec<String>,
    /// The user id of every record of this source, over what the export says (an account name
    /// in the records) and over the default, the name of the folder that holds each file.
    #[serde(default)]
    pub user: Option<String>,
    /// Columns of a `table` source.
    #[serde(default)]
    pub columns: Option<ColumnMap>,
}

impl SourceSpec {
    /// A source of `format` over `paths`.
    pub fn new(format: Format, paths: impl IntoIterator<Item = impl Into<String>>) -> Self {
        SourceSpec {
            format,
            paths: paths.into_iter().map(Into::into).collect(),
            user: None,
            columns: None,
        }
    }

    /// The files of this source, sorted within each path entry, relative paths resolved
    /// against `base`. A path that matches nothing is an error that says what was looked for.
    pub fn files(&self, base: &Path) -> Result<Vec<PathBuf>> {
        Ok(self.find_files(base)?.files)
    }

    /// The files of this source (as [`SourceSpec::files`]) and what was noticed finding them:
    /// each file is listed once, under the first path that reached it, however many links or
    /// overlapping patterns lead to it; a `**` pattern does not follow a link back into a
    /// folder it is already in (a loop), and says so.
    pub fn find_files(&self, base: &Path) -> Result<FoundFiles> {
        if self.paths.is_empty() {
            return Err(Error::Config(format!("a {} source has no paths", self.format)));
        }
        let mut found = FoundFiles::default();
        let mut seen = std::collections::HashSet::new();
        for p in &self.paths {
            let full = clean_path(&if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                base.join(p)
            });
            let full_str = full.to_string_lossy().into_owned();
            let named = full.is_file();
            let mut matched = if full.is_dir() {
                let mut v = Vec::new();
                for pat in self.format.folder_patterns() {
                    v.extend(glob_files(&full.join(pat).to_string_lossy(), &mut found.notes)?);
                }
                if v.is_empty() {
                    return Err(Error::Config(format!(
                        "folder {} has no {} files (looked for {})",
                        full.display(),
                        self.format,
                        self.format.folder_patterns().join(", ")
                    )));
                }
                v
            } else if full.is_file() {
                vec![full.clone()]
            } else if full_str.contains(['*', '?', '[']) {
                let v = glob_files(&full_str, &mut found.notes)?;
                if v.is_empty() {
                    return Err(Error::Config(format!("no file matches {full_str}")));
                }
                v
            } else {
                return Err(missing_path(&full));
            };
            matched.sort();
            matched.dedup();
            for file in matched {
                let canonical = file.canonicalize().map_err(|e| Error::io(&file, e))?;
                if seen.insert(canonical.clone()) {
                    found.files.push(file);
                    found.named.push(named);
                } else if canonical != file {
                    found.notes.push(format!(
                        "{} is {} again (reached by another path or link): read once",
                        file.display(),
                        canonical.display()
                    ));
                }
            }
        }
        Ok(found)
    }

    /// The user id of records of `file` that carry none.
    pub fn user_for(&self, file: &Path) -> String {
        self.user.clone().unwrap_or_else(|| folder_user(file))
    }
}

/// Removes `.` and resolves `..` lexically, so messages show plain paths.
pub fn clean_path(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// The name of the folder holding `file`: the user id of single-user exports.
pub fn folder_user(file: &Path) -> String {
    file.parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "user".to_string())
}

/// The files a source's paths lead to, and what was noticed on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoundFiles {
    /// Each file once, in the order of the source's paths (sorted within each).
    pub files: Vec<PathBuf>,
    /// For each file, whether the source names it itself (not through a folder or a pattern).
    pub named: Vec<bool>,
    /// Links not followed (loops) and files reached twice, in words.
    pub notes: Vec<String>,
}

/// The error for a path that is neither a file, a folder nor a pattern: a link loop, a dangling
/// link or nothing at all, said as such.
fn missing_path(path: &Path) -> Error {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    if !is_link {
        return Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound));
    }
    match path.canonicalize() {
        Err(e) if is_link_loop(&e) => Error::Config(format!(
            "{} is a symbolic link loop (following its links leads back to it): point it at a file or folder",
            path.display()
        )),
        _ => Error::Config(format!(
            "{} is a symbolic link to {}, which does not exist",
            path.display(),
            std::fs::read_link(path)
                .map_or_else(|_| "an unreadable target".to_string(), |t| t.display().to_string())
        )),
    }
}

/// True for the operating system's "too many levels of symbolic links".
fn is_link_loop(e: &std::io::Error) -> bool {
    // ELOOP: 40 on Linux, 62 on the BSDs and macOS.
    let eloop = if cfg!(target_os = "linux") { 40 } else { 62 };
    e.raw_os_error() == Some(eloop)
}

/// The files matching a glob pattern. Patterns without `**` go through the glob crate (one
/// folder level per component, so links cannot loop); `**` walks the folders below the
/// pattern's fixed prefix itself, entering each real folder once.
fn glob_files(pattern: &str, notes: &mut Vec<String>) -> Result<Vec<PathBuf>> {
    let compiled = glob::Pattern::new(pattern)
        .map_err(|e| Error::Config(format!("bad glob {pattern}: {e}")))?;
    if !pattern.contains("**") {
        let paths =
            glob::glob(pattern).map_err(|e| Error::Config(format!("bad glob {pattern}: {e}")))?;
        let mut out = Vec::new();
        for p in paths {
            let p = p.map_err(|e| Error::io(e.path().to_path_buf(), std::io::Error::from(e)))?;
            if p.is_file() {
                out.push(p);
            } else {
                note_link_loop(&p, notes);
            }
        }
        return Ok(out);
    }
    // The fixed prefix: the components before the first one with a wildcard.
    let mut root = PathBuf::new();
    for c in Path::new(pattern).components() {
        if c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            break;
        }
        root.push(c);
    }
    let options = glob::MatchOptions { require_literal_separator: true, ..Default::default() };
    let mut out = Vec::new();
    let mut entered = std::collections::HashSet::new();
    let mut stack = vec![root];
    while let Some(dir) = stack.pop() {
        let Ok(real) = dir.canonicalize() else {
            note_link_loop(&dir, notes);
            continue;
        };
        if !entered.insert(real.clone()) {
            notes.push(format!(
                "{} leads back to {}, already searched: not followed (a link loop or a second link)",
                dir.display(),
                real.display()
            ));
            continue;
        }
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .map(|e| e.map(|e| e.path()).map_err(|err| Error::io(&dir, err)))
            .collect::<Result<_>>()?;
        entries.sort();
        // Folders are searched in name order: pushed in reverse.
        for entry in entries.into_iter().rev() {
            if entry.is_dir() {
                stack.push(entry);
            } else if entry.is_file() {
                if compiled.matches_path_with(&entry, options) {
                    out.push(entry);
                }
            } else {
                note_link_loop(&entry, notes);
            }
        }
    }
    Ok(out)
}

/// Notes a path that is neither a file nor a folder because its links loop.
fn note_link_loop(path: &Path, notes: &mut Vec<String>) {
    if let Err(e) = std::fs::metadata(path)
        && is_link_loop(&e)
    {
        notes.push(format!(
            "{} is a symbolic link loop (following its links leads back to it): skipped",
            path.display()
        ));
    }
}

/// The bytes of an input file: mapped when it is plain, decompressed into memory otherwise.
#[derive(Debug)]
pub enum InputBytes {
    /// A memory map of an uncompressed file.
    Mapped(memmap2::Mmap),
    /// Decompressed (or empty) contents.
    Owned(Vec<u8>),
}

impl InputBytes {
    /// Says the first `upto` bytes are read: a mapped file's pages there leave this process's
    /// memory (they stay in the page cache; read again, they come back from the file).
    /// Owned bytes stay.
    pub fn release(&self, upto: usize) {
        #[cfg(unix)]
        if let InputBytes::Mapped(m) = self {
            let upto = upto.min(m.len());
            // SAFETY: the map is private, read-only and never written, so dropping its pages
            // changes no byte anyone reads: a later read faults the same bytes back in from
            // the file (which, like any reader, segue assumes is not changed while it reads).
            // A failure only means the pages stay.
            let _ =
                unsafe { m.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, 0, upto) };
        }
    }
}

impl std::ops::Deref for InputBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            InputBytes::Mapped(m) => m,
            InputBytes::Owned(v) => v,
        }
    }
}

/// Opens a whole input file, decompressing gzip or zstd (recognised by their magic bytes).
/// Plain files are memory-mapped rather than copied: a 700 MB log is parsed in place.
pub fn read_input(path: &Path) -> Result<InputBytes> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Ok(InputBytes::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only and private to this process; like any reader, segue
    // assumes its input files are not truncated while it reads them.
    let raw = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    let bad = |e: std::io::Error| {
        Error::input(path, segue_core::Position::File, format!("corrupt compressed file: {e}"))
    };
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 4);
        flate2::read::MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(bad)?;
        Ok(InputBytes::Owned(out))
    } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::decode_all(&raw[..]).map(InputBytes::Owned).map_err(bad)
    } else {
        Ok(InputBytes::Mapped(raw))
    }
}

/// A line longer than the limit of [`read_lines_input`], dropped before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongLine {
    /// Its 1-based line number.
    pub line: u64,
    /// Its length in bytes (without the line end).
    pub bytes: u64,
    /// Its first bytes, for messages.
    pub start: String,
}

/// Bytes read per step of the streaming line check.
const BLOCK: usize = 1 << 20;
/// Bytes of a long line kept for messages.
const PREVIEW: usize = 60;

/// Copies lines of a stream, replacing every line longer than `max` bytes by an empty line (so
/// line numbers stay those of the file) and noting it. Memory: the kept lines plus at most
/// `max` bytes of a long line before it is recognised.
struct LineFilter {
    max: usize,
    line: u64,
    /// Where the current line starts in the output.
    line_start: usize,
    /// Bytes of the current line so far.
    current: u64,
    preview: Vec<u8>,
    dropping: bool,
    long: Vec<LongLine>,
}

impl LineFilter {
    fn new(max: usize) -> Self {
        LineFilter {
            max,
            line: 1,
            line_start: 0,
            current: 0,
            preview: Vec::new(),
            dropping: false,
            long: Vec::new(),
        }
    }

    /// Feeds a block; kept bytes go to `out` when it is given (a first pass only counts).
    fn feed(&mut self, mut block: &[u8], mut out: Option<&mut Vec<u8>>) {
        while !block.is_empty() {
            let (piece, ends_line) = match memchr::memchr(b'\n', block) {
                Some(i) => (&block[..i], true),
                None => (block, false),
            };
            if self.preview.len() < PREVIEW {
                let room = PREVIEW - self.preview.len();
                self.preview.extend_from_slice(&piece[..piece.len().min(room)]);
            }
            self.current += piece.len() as u64;
            if !self.dropping && self.current > self.max as u64 {
                self.dropping = true;
                if let Some(o) = out.as_deref_mut() {
                    o.truncate(self.line_start);
                }
            }
            if let Some(o) = out.as_deref_mut()
                && !self.dropping
            {
                o.extend_from_slice(piece);
            }
            if ends_line {
                self.end_line(out.as_deref_mut());
                block = &block[piece.len() + 1..];
            } else {
                block = &[];
            }
        }
    }

    fn end_line(&mut self, out: Option<&mut Vec<u8>>) {
        if self.dropping {
            self.long.push(LongLine {
                line: self.line,
                bytes: self.current,
                start: String::from_utf8_lossy(&self.preview).into_owned(),
            });
        }
        if let Some(o) = out {
            o.push(b'\n');
            self.line_start = o.len();
        }
        self.line += 1;
        self.current = 0;
        self.preview.clear();
        self.dropping = false;
    }

    fn finish(mut self, out: Option<&mut Vec<u8>>) -> Vec<LongLine> {
        if self.dropping {
            // A long last line without a line end: dropped without adding one.
            let line_start = self.line_start;
            if let Some(o) = out {
                o.truncate(line_start);
            }
            self.long.push(LongLine {
                line: self.line,
                bytes: self.current,
                start: String::from_utf8_lossy(&self.preview).into_owned(),
            });
        }
        self.long
    }
}

/// Streams `reader` through a [`LineFilter`] in blocks.
fn filter_stream(
    path: &Path,
    mut reader: impl Read,
    max_line: usize,
    mut out: Option<&mut Vec<u8>>,
    corrupt: bool,
) -> Result<Vec<LongLine>> {
    let mut filter = LineFilter::new(max_line);
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if corrupt => {
                return Err(Error::input(
                    path,
                    segue_core::Position::File,
                    format!("corrupt compressed file: {e}"),
                ));
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        filter.feed(&block[..n], out.as_deref_mut());
    }
    Ok(filter.finish(out))
}

/// Opens a line-oriented text file (TSV, CSV, JSON Lines), decompressing gzip or zstd, with
/// every line longer than `max_line` bytes replaced by an empty line and returned, so a hostile
/// file (one 300 MB line) is never held whole: the file is read in blocks, and memory stays
/// within a small multiple of `max_line` beyond the lines kept. Plain files without long lines
/// are memory-mapped as [`read_input`] does.
pub fn read_lines_input(path: &Path, max_line: usize) -> Result<(InputBytes, Vec<LongLine>)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut file, &mut magic).map_err(|e| Error::io(path, e))?;
    let magic = &magic[..got];
    let reopen = || std::fs::File::open(path).map_err(|e| Error::io(path, e));
    if magic.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        let decoder = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(reopen()?));
        let long = filter_stream(path, decoder, max_line, Some(&mut out), true)?;
        return Ok((InputBytes::Owned(out), long));
    }
    if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        let mut out = Vec::new();
        let decoder = zstd::stream::read::Decoder::new(reopen()?).map_err(|e| {
            Error::input(path, segue_core::Position::File, format!("corrupt compressed file: {e}"))
        })?;
        let long = filter_stream(path, decoder, max_line, Some(&mut out), true)?;
        return Ok((InputBytes::Owned(out), long));
    }
    // Plain: a first pass only looks for long lines; most files have none and are mapped.
    let long = filter_stream(path, reopen()?, max_line, None, false)?;
    if long.is_empty() {
        return Ok((read_input(path)?, long));
    }
    let mut out = Vec::new();
    let long = filter_stream(path, reopen()?, max_line, Some(&mut out), false)?;
    Ok((InputBytes::Owned(out), long))
}

/// Reads up to `buf.len()` bytes (fewer only at the end of the file).
pub(crate) fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// True when a file (after any compression suffix) is a Parquet file.
pub fn is_parquet(path: &Path) -> bool {
    path.to_string_lossy().to_ascii_lowercase().ends_with(".parquet")
}

/// True when a text table's name says it is tab-separated.
pub fn is_tsv(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".tsv") || name.ends_with(".tsv.gz") || name.ends_with(".tsv.zst")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_checks_keep_every_byte_of_normal_files() {
        // Lines around the limit and Windows line ends: exactly the lines over it go.
        let dir = tempfile::tempdir().unwrap();
        let at = format!("{}\r\n", "a".repeat(crate::MAX_LINE_BYTES - 1));
        let over = format!("{}\n", "b".repeat(crate::MAX_LINE_BYTES + 1));
        let text = format!("first\r\n{at}{over}last");
        std::fs::write(dir.path().join("x.tsv"), &text).unwrap();
        let (bytes, long) =
            read_lines_input(&dir.path().join("x.tsv"), crate::MAX_LINE_BYTES).unwrap();
        assert_eq!(&*bytes, format!("first\r\n{at}\nlast").as_bytes());
        assert_eq!(long.len(), 1);
        assert_eq!((long[0].line, long[0].bytes), (3, crate::MAX_LINE_BYTES as u64 + 1));
        let clean = "one\ntwo\n";
        std::fs::write(dir.path().join("c.tsv"), clean).unwrap();
        let (bytes, long) = read_lines_input(&dir.path().join("c.tsv"), 4).unwrap();
        assert_eq!((&*bytes, long.len()), (clean.as_bytes(), 0));
    }
}
