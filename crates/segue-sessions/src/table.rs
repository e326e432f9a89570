//! Tables read through a column mapping: CSV, TSV (optionally gzip or zstd) and Parquet, via
//! polars. Last.fm scrobble CSV exports are a preset mapping over the same reader.

use std::io::Cursor;
use std::path::Path;

use polars::prelude::*;
use segue_core::{Error, Position, Result};

use crate::raw::MAX_LINE_BYTES;
use crate::raw::{RawEvents, SkipReason, SkipReport, is_blank};
use crate::source::{
    ColumnMap, Format, LongLine, SourceSpec, TimeFormat, TimeIs, is_parquet, is_tsv,
    read_lines_input,
};
use crate::spotify::ReadSettings;
use crate::time;

/// True when a table's name says it is JSON Lines (one object per line).
fn is_jsonl(path: &Path) -> bool {
    let name = path.to_string_lossy().to_ascii_lowercase();
    [".jsonl", ".ndjson"].iter().any(|ext| {
        name.ends_with(ext)
            || name.ends_with(&format!("{ext}.gz"))
            || name.ends_with(&format!("{ext}.zst"))
    })
}

/// JSON Lines: every line one object; its fields become text columns (numbers and booleans as
/// written, null or absent as missing), in the order they first appear.
fn load_jsonl(file: &Path, bytes: &[u8]) -> Result<DataFrame> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::input(file, Position::File, format!("not UTF-8 text: {e}")))?;
    let mut names: Vec<String> = Vec::new();
    let mut columns: Vec<Vec<Option<String>>> = Vec::new();
    let mut rows = 0usize;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line)
            .map_err(|e| {
                Error::input(
                    file,
                    Position::Line(i as u64 + 1),
                    format!("expected one JSON object: {e}"),
                )
            })?;
        for (key, value) in object {
            let col = match names.iter().position(|n| *n == key) {
                Some(c) => c,
                None => {
                    names.push(key);
                    columns.push(vec![None; rows]);
                    columns.len() - 1
                }
            };
            columns[col].push(match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s),
                other => Some(other.to_string()),
            });
        }
        rows += 1;
        for c in &mut columns {
            c.resize(rows, None);
        }
    }
    let cols: Vec<Column> =
        names.iter().zip(columns).map(|(n, v)| Column::new(n.as_str().into(), v)).collect();
    DataFrame::new(rows, cols).map_err(|e| Error::input(file, Position::File, e.to_string()))
}

/// Reads a table file (CSV, TSV, JSON Lines or Parquet); lines of a text table longer than
/// `max_line` bytes are left out and returned (see [`read_lines_input`]).
pub(crate) fn load(
    file: &Path,
    separator: Option<char>,
    max_line: usize,
) -> Result<(DataFrame, Vec<LongLine>)> {
    if is_parquet(file) {
        let f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
        let df = ParquetReader::new(f).finish().map_err(|e| {
            Error::input(file, Position::File, format!("not a readable Parquet file: {e}"))
        })?;
        return Ok((df, Vec::new()));
    }
    let (bytes, long) = read_lines_input(file, max_line)?;
    if is_jsonl(file) {
        return Ok((load_jsonl(file, &bytes)?, long));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        let what = if long.is_empty() {
            "the file is empty; expected a header line and records".to_string()
        } else {
            format!(
                "no line is shorter than {max_line} bytes ({} longer ones, the first at line {}); expected a header line and records",
                long.len(),
                long[0].line
            )
        };
        return Err(Error::input(file, Position::File, what));
    }
    let sep = match separator {
        Some(c) if c.is_ascii() => c as u8,
        Some(c) => {
            return Err(Error::Config(format!("separator {c:?} is not a single ASCII character")));
        }
        None if is_tsv(file) => b'\t',
        None => b',',
    };
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(Some(0))
        .with_parse_options(CsvParseOptions::default().with_separator(sep))
        .into_reader_with_file_handle(Cursor::new(&*bytes))
        .finish()
        .map_err(|e| {
            Error::input(file, Position::File, format!("not a readable CSV table: {e}"))
        })?;
    Ok((df, long))
}

/// Accounts for the lines a reader left out for their length: counted and skipped, or in strict
/// mode an error at the first.
pub(crate) fn skip_long_lines(
    long: &[LongLine],
    file: &Path,
    max_line: usize,
    skips: &mut SkipReport,
) -> Result<()> {
    for l in long {
        skips.skip(SkipReason::LineTooLong, file, Position::Line(l.line), || {
            format!("{} bytes (limit {max_line}) starting {:?}", l.bytes, l.start)
        })?;
    }
    Ok(())
}

/// The mapping of a Last.fm scrobble export, from its header.
fn scrobble_mapping(df: &DataFrame, file: &Path) -> Result<ColumnMap> {
    let has = |n: &str| df.get_column_names().iter().any(|c| c.as_str() == n);
    let (time, time_format) = if has("uts") {
        ("uts", TimeFormat::Unix)
    } else if has("utc_time") {
        ("utc_time", TimeFormat::DayMonthName)
    } else {
        return Err(Error::input(
            file,
            Position::Line(1),
            format!(
                "a Last.fm scrobble export needs a `uts` or `utc_time` column; the header has {}",
                header(df)
            ),
        ));
    };
    Ok(ColumnMap {
        user: has("user").then(|| "user".to_string()),
        time: time.into(),
        time_format,
        time_is: TimeIs::Start,
        ms_played: None,
        artist: "artist".into(),
        title: "track".into(),
        separator: None,
    })
}

fn header(df: &DataFrame) -> String {
    df.get_column_names().iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}

fn string_column(df: &DataFrame, name: &str, file: &Path) -> Result<StringChunked> {
    let col = df.column(name).map_err(|_| {
        Error::input(
            file,
            Position::Line(1),
            format!(
                "the column mapping names `{name}`, which the table lacks; its columns are {}",
                header(df)
            ),
        )
    })?;
    let col = col
        .cast(&DataType::String)
        .map_err(|e| Error::input(file, Position::File, format!("column `{name}`: {e}")))?;
    Ok(col.str().map_err(|e| Error::Other(e.to_string()))?.rechunk().into_owned())
}

/// Reads one table file of a `table` or `lastfm-scrobbles-csv` source into `out`.
pub fn read_table(
    file: &Path,
    source: &SourceSpec,
    settings: ReadSettings,
    out: &mut RawEvents,
    skips: &mut SkipReport,
) -> Result<()> {
    let separator = source.columns.as_ref().and_then(|c| c.separator);
    let (df, long) = load(file, separator, MAX_LINE_BYTES)?;
    skip_long_lines(&long, file, MAX_LINE_BYTES, skips)?;
    let map = match (source.format, &source.columns) {
        (Format::LastfmScrobblesCsv, None) => scrobble_mapping(&df, file)?,
        (_, Some(m)) => m.clone(),
        (_, None) => {
            return Err(Error::Config(format!(
                "the table source of {} has no [columns] mapping",
                file.display()
            )));
        }
    };
    if map.time_is == TimeIs::End && map.ms_played.is_none() {
        return Err(Error::Config(
            "a column mapping with time_is = \"end\" needs `ms_played`".into(),
        ));
    }
    let times = string_column(&df, &map.time, file)?;
    let artists = string_column(&df, &map.artist, file)?;
    let titles = string_column(&df, &map.title, file)?;
    let users = map.user.as_deref().map(|u| string_column(&df, u, file)).transpose()?;
    let ms = map.ms_played.as_deref().map(|m| string_column(&df, m, file)).transpose()?;
    let default_user = source.user_for(file);
    for i in 0..df.height() {
        let pos = Position::Record(i as u64 + 1);
        let (Some(t), Some(artist), Some(title)) = (times.get(i), artists.get(i), titles.get(i))
        else {
            skips.skip(SkipReason::MissingField, file, pos, || {
                format!("an empty `{}`, `{}` or `{}`", map.time, map.artist, map.title)
            })?;
            continue;
        };
        let user = match &users {
            Some(u) => match u.get(i) {
                Some(u) if !u.trim().is_empty() => u,
                _ => {
                    skips.skip(SkipReason::EmptyUser, file, pos, String::new)?;
                    continue;
                }
            },
            None => default_user.as_str(),
        };
        let played = match &ms {
            Some(m) => {
                match m.get(i).and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| *v >= 0.0) {
                    Some(v) => Some(v as i64),
                    None => {
                        skips.skip(SkipReason::MissingField, file, pos, || {
                            format!(
                                "`{}` = {:?}, expected milliseconds",
                                map.ms_played.as_deref().unwrap_or(""),
                                m.get(i).unwrap_or("")
                            )
                        })?;
                        continue;
                    }
                }
            }
            None => None,
        };
        let parsed = match map.time_format {
            TimeFormat::Iso => time::parse_iso(t),
            TimeFormat::Unix => time::parse_unix(t, false),
            TimeFormat::UnixMs => time::parse_unix(t, true),
            TimeFormat::DayMonthName => time::parse_day_month_name(t),
        };
        let Some(secs) = parsed else {
            skips.skip(SkipReason::BadTimestamp, file, pos, || {
                format!("`{}` = {t:?}, expected {:?} time", map.time, map.time_format)
            })?;
            continue;
        };
        if played.is_some_and(|p| (p as u64) < settings.min_ms_played) {
            skips.skip(SkipReason::ShortPlay, file, pos, || {
                format!("{} ms played, minimum {}", played.unwrap_or(0), settings.min_ms_played)
            })?;
            continue;
        }
        let start = match (map.time_is, played) {
            (TimeIs::End, Some(p)) => (secs * 1000 - p).div_euclid(1000),
            _ => secs,
        };
        if let Some(reason) = time::out_of_range(start, settings.latest) {
            skips.skip(reason, file, pos, || t.to_string())?;
            continue;
        }
        if let Some((reason, detail)) = crate::raw::check_identity(user, artist, title) {
            skips.skip(reason, file, pos, || detail)?;
            continue;
        }
        if is_blank(artist) || is_blank(title) {
            skips.skip(SkipReason::EmptyArtistOrTitle, file, pos, || {
                format!("artist {artist:?}, title {title:?}")
            })?;
            continue;
        }
        out.push(user, start, artist, title);
    }
    Ok(())
}
