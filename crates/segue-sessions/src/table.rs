//! Tables read through a column mapping: CSV, TSV (optionally gzip or zstd) and Parquet, via
//! polars. Last.fm scrobble exports, Spotify's columns in a CSV and Apple Music's play activity
//! are preset mappings (or filters) over the same row path.

use std::io::Cursor;
use std::path::Path;

use polars::prelude::*;
use segue_core::{Error, Position, Result};

use crate::plays::Plays;
use crate::raw::MAX_LINE_BYTES;
use crate::raw::{RawEvents, SkipReason, SkipReport};
use crate::source::{ColumnMap, ColumnRef, LongLine, is_parquet, is_tsv, read_lines_input};
use crate::spotify::ReadSettings;

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

/// Reads a table file (CSV, TSV, JSON Lines or Parquet) with a header; lines of a text table
/// longer than `max_line` bytes are left out and returned (see [`read_lines_input`]).
pub(crate) fn load(
    file: &Path,
    separator: Option<char>,
    max_line: usize,
) -> Result<(DataFrame, Vec<LongLine>)> {
    load_with(file, separator, true, max_line)
}

/// [`load`], for a table with or without a header line (without one, the columns are
/// `column_1`, `column_2`, ... and are addressed by position).
pub(crate) fn load_with(
    file: &Path,
    separator: Option<char>,
    has_header: bool,
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
    // Spreadsheet programs (and Apple's export) start UTF-8 files with a byte-order mark.
    let text: &[u8] = bytes.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(&bytes);
    if is_jsonl(file) {
        return Ok((load_jsonl(file, text)?, long));
    }
    if text.iter().all(u8::is_ascii_whitespace) {
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
    // Tab-separated logs are not quoted (Last.fm's names hold `"`); comma tables are.
    let quote = (sep != b'\t').then_some(b'"');
    let df = CsvReadOptions::default()
        .with_has_header(has_header)
        .with_infer_schema_length(Some(0))
        .with_parse_options(CsvParseOptions::default().with_separator(sep).with_quote_char(quote))
        .into_reader_with_file_handle(Cursor::new(text))
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

fn header(df: &DataFrame) -> String {
    df.get_column_names().iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}

/// True when a header row reads like a record: one of its names is a time.
fn header_is_a_record(df: &DataFrame) -> Option<String> {
    df.get_column_names()
        .iter()
        .find(|c| crate::time::parse_any(c.as_str()).is_some())
        .map(|c| c.to_string())
}

/// A column of `df` as text, by name or position.
pub(crate) fn string_column(
    df: &DataFrame,
    column: &ColumnRef,
    key: &str,
    file: &Path,
) -> Result<StringChunked> {
    let col = match column {
        ColumnRef::Name(name) => df.column(name).map_err(|_| {
            let mut message = format!(
                "the column mapping names `{name}` ({key}), which the table lacks; its columns are {}",
                header(df)
            );
            if let Some(value) = header_is_a_record(df) {
                message += &format!(
                    ". Its first line looks like a record, not a header ({value:?} is a time): set has_header = false and name the columns by position ({key} = 1 for the first)"
                );
            }
            Error::input(file, Position::Line(1), message)
        })?,
        ColumnRef::Position(i) => {
            let names = df.get_column_names();
            let name = names.get(i - 1).ok_or_else(|| {
                Error::input(
                    file,
                    Position::Line(1),
                    format!("{key} = {i}, but the table has {} columns", df.width()),
                )
            })?;
            df.column(name.as_str()).map_err(crate::ingest::pl_err)?
        }
    };
    let col = col
        .cast(&DataType::String)
        .map_err(|e| Error::input(file, Position::File, format!("{key} column: {e}")))?;
    Ok(col.str().map_err(crate::ingest::pl_err)?.rechunk().into_owned())
}

/// Reads one table file through a column mapping into `out`.
pub fn read_table(
    file: &Path,
    map: &ColumnMap,
    default_user: &str,
    settings: ReadSettings,
    out: &mut RawEvents,
    skips: &mut SkipReport,
) -> Result<()> {
    let zone = map.validate()?;
    let (df, long) = load_with(file, map.separator, map.has_header, MAX_LINE_BYTES)?;
    skip_long_lines(&long, file, MAX_LINE_BYTES, skips)?;
    let times = string_column(&df, &map.time, "time", file)?;
    let dates = map.date.as_ref().map(|d| string_column(&df, d, "date", file)).transpose()?;
    let artists = string_column(&df, &map.artist, "artist", file)?;
    let titles = string_column(&df, &map.title, "title", file)?;
    let users = map.user.as_ref().map(|u| string_column(&df, u, "user", file)).transpose()?;
    let ms =
        map.ms_played.as_ref().map(|m| string_column(&df, m, "ms_played", file)).transpose()?;
    let time_name = map.time.describe();
    let mut ctx = Plays::new(file, settings, zone, out, skips);
    for i in 0..df.height() {
        let pos = Position::Record(i as u64 + 1);
        let (Some(t), Some(artist), Some(title)) = (times.get(i), artists.get(i), titles.get(i))
        else {
            ctx.skips.skip(SkipReason::MissingField, file, pos, || {
                format!(
                    "an empty {}, {} or {}",
                    map.time.describe(),
                    map.artist.describe(),
                    map.title.describe()
                )
            })?;
            continue;
        };
        let user = match &users {
            Some(u) => u.get(i).unwrap_or(""),
            None => default_user,
        };
        let played = match &ms {
            Some(m) => {
                let name = map.ms_played.as_ref().map(ColumnRef::describe).unwrap_or_default();
                match ctx.millis(m.get(i), &name, pos)? {
                    Some(v) => Some(v),
                    None => continue,
                }
            }
            None => None,
        };
        let joined;
        let value = match &dates {
            Some(d) => {
                joined = format!("{} {}", d.get(i).unwrap_or("").trim(), t.trim());
                joined.as_str()
            }
            None => t,
        };
        let Some(secs) = ctx.time(value, &map.time_format, &time_name, pos)? else {
            continue;
        };
        ctx.play(pos, user, secs, map.time_is, played, artist, title)?;
    }
    ctx.check_times(
        &time_name,
        &map.time_format,
        "Set time_format in [dataset.sources.columns] (format = \"table\") to the values' form: one of auto, iso, unix, unix-ms, day-month-name, or a strftime pattern such as \"%d/%m/%Y %H:%M\"",
    )
}
