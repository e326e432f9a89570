//! What a dataset is made of: sources (a format and files), and how their files are found and
//! opened (globs, folders, gzip and zstd).

use std::io::Read;
use std::path::{Path, PathBuf};

use segue_core::{Error, Result};

/// The listening-log formats segue reads natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Last.fm 1K TSV: user, ISO time, artist mbid, artist, track mbid, track; no header.
    #[serde(rename = "lastfm-1k")]
    Lastfm1k,
    /// Spotify's account-data export: `StreamingHistory*.json` (endTime, artistName, trackName,
    /// msPlayed), one user per file set.
    SpotifyStreamingHistory,
    /// Spotify's extended streaming history: `endsong_*.json` / `Streaming_History_Audio_*.json`.
    SpotifyExtended,
    /// A Last.fm scrobble CSV export with a header (uts or utc_time, artist, track, ...).
    LastfmScrobblesCsv,
    /// Any CSV, TSV or Parquet table, read through a column mapping.
    Table,
}

impl Format {
    /// File-name patterns looked for when a source names a folder.
    pub fn folder_patterns(self) -> &'static [&'static str] {
        match self {
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
            Format::LastfmScrobblesCsv => &["*.csv", "*.csv.gz", "*.csv.zst"],
            Format::Table => {
                &["*.csv", "*.tsv", "*.parquet", "*.csv.gz", "*.tsv.gz", "*.csv.zst", "*.tsv.zst"]
            }
        }
    }
}

/// How a table source's time column is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TimeFormat {
    /// ISO 8601 / `YYYY-MM-DD HH:MM[:SS]`, UTC unless an offset is given.
    #[default]
    Iso,
    /// Seconds since the epoch.
    Unix,
    /// Milliseconds since the epoch.
    UnixMs,
    /// Last.fm's `DD Mon YYYY, HH:MM`.
    DayMonthName,
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

/// Column mapping of a [`Format::Table`] source.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnMap {
    /// User id column; without it the source's `user` (or the folder name) is used.
    #[serde(default)]
    pub user: Option<String>,
    /// Time column.
    pub time: String,
    /// How the time is written.
    #[serde(default)]
    pub time_format: TimeFormat,
    /// Whether the time is the start or the end of the play.
    #[serde(default)]
    pub time_is: TimeIs,
    /// Milliseconds played, when the table has it (needed for `time_is = "end"`).
    #[serde(default)]
    pub ms_played: Option<String>,
    /// Artist column.
    pub artist: String,
    /// Title column.
    pub title: String,
    /// Field separator of a text table; by default `\t` for .tsv files and `,` otherwise.
    #[serde(default)]
    pub separator: Option<char>,
}

/// One source of a dataset: a format and the files, folders or globs that hold it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// The format of every file of this source.
    pub format: Format,
    /// Files, folders (searched for the format's file names) or glob patterns; relative paths
    /// are relative to the pipeline file's folder.
    pub paths: Vec<String>,
    /// The user id of formats that have none in the records; by default the name of the folder
    /// that holds each file.
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
        if self.paths.is_empty() {
            return Err(Error::Config(format!("a {:?} source has no paths", self.format)));
        }
        let mut out = Vec::new();
        for p in &self.paths {
            let full = clean_path(&if Path::new(p).is_absolute() {
                PathBuf::from(p)
            } else {
                base.join(p)
            });
            let full_str = full.to_string_lossy().into_owned();
            let mut found = if full.is_dir() {
                let mut v = Vec::new();
                for pat in self.format.folder_patterns() {
                    v.extend(glob_files(&full.join(pat).to_string_lossy())?);
                }
                if v.is_empty() {
                    return Err(Error::Config(format!(
                        "folder {} has no {:?} files (looked for {})",
                        full.display(),
                        self.format,
                        self.format.folder_patterns().join(", ")
                    )));
                }
                v
            } else if full.is_file() {
                vec![full.clone()]
            } else if full_str.contains(['*', '?', '[']) {
                let v = glob_files(&full_str)?;
                if v.is_empty() {
                    return Err(Error::Config(format!("no file matches {full_str}")));
                }
                v
            } else {
                return Err(Error::io(&full, std::io::Error::from(std::io::ErrorKind::NotFound)));
            };
            found.sort();
            found.dedup();
            out.extend(found);
        }
        Ok(out)
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

fn glob_files(pattern: &str) -> Result<Vec<PathBuf>> {
    let paths =
        glob::glob(pattern).map_err(|e| Error::Config(format!("bad glob {pattern}: {e}")))?;
    let mut out = Vec::new();
    for p in paths {
        let p = p.map_err(|e| Error::io(e.path().to_path_buf(), std::io::Error::from(e)))?;
        if p.is_file() {
            out.push(p);
        }
    }
    Ok(out)
}

/// The bytes of an input file: mapped when it is plain, decompressed into memory otherwise.
#[derive(Debug)]
pub enum InputBytes {
    /// A memory map of an uncompressed file.
    Mapped(memmap2::Mmap),
    /// Decompressed (or empty) contents.
    Owned(Vec<u8>),
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

/// True when a file (after any compression suffix) is a Parquet file.
pub fn is_parquet(path: &Path) -> bool {
    path.to_string_lossy().to_ascii_lowercase().ends_with(".parquet")
}

/// True when a text table's name says it is tab-separated.
pub fn is_tsv(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    name.ends_with(".tsv") || name.ends_with(".tsv.gz") || name.ends_with(".tsv.zst")
}
