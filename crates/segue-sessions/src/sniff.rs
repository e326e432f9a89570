//! Which reader a file needs, decided from its first bytes: the sniffer behind `format = "auto"`.
//!
//! A file is decompressed (gzip, zstd) as far as needed and classified by its shape:
//!
//! | shape | decided by | reader |
//! |---|---|---|
//! | JSON array or JSON Lines of objects | the first record's keys | Spotify (both exports), ListenBrainz, YouTube Music |
//! | CSV / TSV / Parquet with a header | the column names | Spotify as CSV, Apple Music, Last.fm scrobble exports |
//! | headerless CSV / TSV | the number of fields and which of them is a time | Last.fm 1K, Last.fm exporters' headerless layouts |
//!
//! The Last.fm exporters' files, read without a mapping:
//! - a header naming an artist (`artist`, `artist_name`, ...), a track (`track`, `title`,
//!   `name`, ...) and a time column, by priority `uts`, `timestamp`, `utc_time`, `played_at`,
//!   `scrobbled_at`, `listened_at`, `date`, `datetime`, `time`; values in epoch seconds or
//!   milliseconds, ISO 8601 with or without zone and seconds, or `31 Jan 2021[,] 14:05`
//!   (lastfm.ghan.nl's `uts,utc_time,artist,...`, the API scripts that write `date` or
//!   `played_at`, ...);
//! - headerless `artist,album,track,date` (benjaminbenben's lastfm-to-csv);
//! - headerless `date,time,artist,title` (lastfm-backup-cli: `2021-04-01,10:42:53,...`);
//! - headerless tab-separated `uts, track, artist, album, mbids...` (lastexport.py).
//!
//! Two readers that both fit is an error that lists them; a file of another kind (Spotify's
//! `Userdata.json`, a podcast history, an HTML page) is named as such, so a folder of a whole
//! export can be given and only its listening files are read.

use std::io::Read;
use std::path::Path;

use segue_core::{Error, Result};
use serde_json::Value;

use crate::source::{ColumnMap, ColumnRef, Format, TimeFormat, TimeIs, read_up_to};
use crate::spotify::SpotifyKind;
use crate::time;

/// Bytes read to decide; a first record longer than this makes the sniffer read the whole file.
const HEAD: usize = 256 << 10;

/// How a file is read.
#[derive(Debug, Clone, PartialEq)]
pub enum Reader {
    /// Last.fm 1K TSV.
    Lastfm1k,
    /// One of Spotify's JSON exports.
    Spotify(SpotifyKind),
    /// ListenBrainz listens (JSON array or JSON Lines).
    Listenbrainz,
    /// Google Takeout's YouTube watch history.
    YoutubeMusic,
    /// Apple Music's play activity CSV.
    AppleMusic,
    /// A table through a column mapping: a `table` source, Spotify's columns in a CSV, or a
    /// Last.fm exporter's layout.
    Table {
        /// The format a pipeline would name for it (`table` or `lastfm-scrobbles-csv`).
        format: Format,
        /// The columns.
        map: Box<ColumnMap>,
        /// The layout in words (`headerless artist, album, track, date`).
        dialect: String,
    },
}

impl Reader {
    /// The format a pipeline would name to get this reader.
    pub fn format(&self) -> Format {
        match self {
            Reader::Lastfm1k => Format::Lastfm1k,
            Reader::Spotify(SpotifyKind::StreamingHistory) => Format::SpotifyStreamingHistory,
            Reader::Spotify(SpotifyKind::Extended) => Format::SpotifyExtended,
            Reader::Listenbrainz => Format::Listenbrainz,
            Reader::YoutubeMusic => Format::YoutubeMusic,
            Reader::AppleMusic => Format::AppleMusic,
            Reader::Table { format, .. } => *format,
        }
    }

    /// The reader in words: its format, and a table's layout.
    pub fn label(&self) -> String {
        match self {
            Reader::Table { format, dialect, .. } => format!("{format} ({dialect})"),
            other => other.format().name().to_string(),
        }
    }
}

/// A reader the sniffer chose, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Sniffed {
    /// The reader.
    pub reader: Reader,
    /// What in the file decided it.
    pub why: String,
}

/// What the sniffer found.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// One reader fits.
    Read(Sniffed),
    /// Not a listening log: what it is instead.
    Other(String),
    /// Several readers fit.
    Ambiguous(Vec<Sniffed>),
}

impl Verdict {
    /// The chosen reader, or an error that says what the file is (or which readers compete).
    pub fn into_reader(self, file: &Path) -> Result<Sniffed> {
        match self {
            Verdict::Read(s) => Ok(s),
            Verdict::Other(what) => Err(Error::input(
                file,
                segue_core::Position::File,
                format!(
                    "format = \"auto\" found no listening-log reader for it: {what}; name the format, or describe the columns with format = \"table\""
                ),
            )),
            Verdict::Ambiguous(all) => Err(Error::input(
                file,
                segue_core::Position::File,
                format!(
                    "more than one reader fits ({}); name the format of this source",
                    all.iter()
                        .map(|s| format!("{}: {}", s.reader.label(), s.why))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            )),
        }
    }
}

/// Decides how `file` is read.
pub fn sniff(file: &Path) -> Result<Verdict> {
    let (head, whole) = read_head(file, HEAD)?;
    match sniff_bytes(file, &head, whole) {
        Undecided::Verdict(v) => Ok(v),
        Undecided::NeedMore => {
            let all = crate::source::read_input(file)?;
            Ok(match sniff_bytes(file, &all, true) {
                Undecided::Verdict(v) => v,
                Undecided::NeedMore => Verdict::Other("JSON whose first record never ends".into()),
            })
        }
    }
}

/// The layout of a Last.fm scrobble export (a `lastfm-scrobbles-csv` source), or why the file
/// is not one.
pub fn scrobble_layout(file: &Path) -> Result<std::result::Result<Sniffed, String>> {
    let (head, _) = read_head(file, HEAD)?;
    let text = String::from_utf8_lossy(strip_bom(&head)).into_owned();
    let candidates = table_candidates(file, &text, is_tsv_name(file));
    match candidates {
        Ok(list) => {
            let scrobbles: Vec<Sniffed> = list
                .into_iter()
                .filter(|s| s.reader.format() == Format::LastfmScrobblesCsv)
                .collect();
            Ok(scrobbles.into_iter().next().ok_or_else(|| {
                "no time, artist and track columns a Last.fm exporter writes, and no headerless layout of one".to_string()
            }))
        }
        Err(what) => Ok(Err(what)),
    }
}

enum Undecided {
    Verdict(Verdict),
    NeedMore,
}

fn strip_bom(b: &[u8]) -> &[u8] {
    b.strip_prefix(&[0xef, 0xbb, 0xbf]).unwrap_or(b)
}

fn sniff_bytes(file: &Path, head: &[u8], whole: bool) -> Undecided {
    let v = |v| Undecided::Verdict(v);
    if head.starts_with(b"PAR1") {
        return v(parquet_verdict(file));
    }
    let body = strip_bom(head);
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return v(Verdict::Other("an empty file".into()));
    };
    match body[start] {
        b'[' => json_array(file, &body[start + 1..], whole),
        b'{' => json_object_or_lines(&body[start..], whole),
        b'<' => v(Verdict::Other(html_hint(file))),
        _ => {
            let text = String::from_utf8_lossy(body);
            v(match table_candidates(file, &text, is_tsv_name(file)) {
                Ok(list) => choose(list),
                Err(what) => Verdict::Other(what),
            })
        }
    }
}

fn html_hint(file: &Path) -> String {
    let name = file.to_string_lossy().to_ascii_lowercase();
    if name.contains("watch-history") || name.contains("youtube") {
        "an HTML page: Google Takeout writes the YouTube history as HTML unless JSON is chosen; export again with \"History\" in JSON format".into()
    } else {
        "an HTML or XML document, not a listening log".into()
    }
}

/// The single candidate, or the ambiguity.
fn choose(mut list: Vec<Sniffed>) -> Verdict {
    match list.len() {
        0 => Verdict::Other("no reader recognises it".into()),
        1 => Verdict::Read(list.remove(0)),
        _ => Verdict::Ambiguous(list),
    }
}

fn json_array(file: &Path, after_bracket: &[u8], whole: bool) -> Undecided {
    let rest = after_bracket.iter().position(|b| !b.is_ascii_whitespace());
    let Some(first) = rest else {
        return if whole { Undecided::Verdict(empty_array(file)) } else { Undecided::NeedMore };
    };
    if after_bracket[first] == b']' {
        return Undecided::Verdict(empty_array(file));
    }
    let mut stream =
        serde_json::Deserializer::from_slice(&after_bracket[first..]).into_iter::<Value>();
    match stream.next() {
        Some(Ok(value)) => Undecided::Verdict(match value {
            Value::Object(map) => record_verdict(&map, "a JSON array"),
            other => Verdict::Other(format!("a JSON array of {}", kind_name(&other))),
        }),
        Some(Err(e)) if e.is_eof() && !whole => Undecided::NeedMore,
        Some(Err(e)) => Undecided::Verdict(Verdict::Other(format!("invalid JSON ({e})"))),
        None => Undecided::NeedMore,
    }
}

/// An empty array: the file name decides between the exports that are JSON arrays.
fn empty_array(file: &Path) -> Verdict {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let reader = if name.starts_with("StreamingHistory") {
        Some(Reader::Spotify(SpotifyKind::StreamingHistory))
    } else if name.starts_with("endsong") || name.starts_with("Streaming_History_Audio") {
        Some(Reader::Spotify(SpotifyKind::Extended))
    } else if name.starts_with("watch-history") {
        Some(Reader::YoutubeMusic)
    } else {
        None
    };
    match reader {
        Some(reader) => Verdict::Read(Sniffed {
            why: format!("an empty JSON array named like {} files", reader.format()),
            reader,
        }),
        None => Verdict::Other("an empty JSON array".into()),
    }
}

fn json_object_or_lines(body: &[u8], whole: bool) -> Undecided {
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let first = match stream.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) if e.is_eof() && !whole => return Undecided::NeedMore,
        Some(Err(e)) => return Undecided::Verdict(Verdict::Other(format!("invalid JSON ({e})"))),
        None => return Undecided::NeedMore,
    };
    let after = &body[stream.byte_offset()..];
    let next = after.iter().find(|b| !b.is_ascii_whitespace());
    let Value::Object(map) = first else {
        return Undecided::Verdict(Verdict::Other("JSON that is not an object".into()));
    };
    match next {
        Some(b'{') => Undecided::Verdict(record_verdict(&map, "JSON Lines")),
        None if !whole => Undecided::NeedMore,
        _ => {
            // One object: a JSON Lines file of one record, or a document such as Userdata.json.
            match record_verdict(&map, "JSON Lines") {
                Verdict::Read(s) => Undecided::Verdict(Verdict::Read(s)),
                _ => Undecided::Verdict(Verdict::Other(format!(
                    "a JSON object with keys {}",
                    key_list(&map)
                ))),
            }
        }
    }
}

fn key_list(map: &serde_json::Map<String, Value>) -> String {
    let keys: Vec<&str> = map.keys().map(String::as_str).take(8).collect();
    let more = if map.len() > 8 { ", ..." } else { "" };
    format!("{}{more}", keys.join(", "))
}

/// The reader of a JSON record, from its keys.
fn record_verdict(map: &serde_json::Map<String, Value>, container: &str) -> Verdict {
    let has = |k: &str| map.contains_key(k);
    let why = |keys: &[&str]| format!("{container} of records with {}", keys.join(", "));
    let mut found = Vec::new();
    if ["endTime", "artistName", "trackName", "msPlayed"].iter().all(|k| has(k)) {
        found.push(Sniffed {
            reader: Reader::Spotify(SpotifyKind::StreamingHistory),
            why: why(&["endTime", "artistName", "trackName", "msPlayed"]),
        });
    }
    if has("ts")
        && has("ms_played")
        && ["master_metadata_track_name", "spotify_track_uri", "episode_name"]
            .iter()
            .any(|k| has(k))
    {
        found.push(Sniffed {
            reader: Reader::Spotify(SpotifyKind::Extended),
            why: why(&["ts", "ms_played", "master_metadata_track_name"]),
        });
    }
    if has("listened_at") && has("track_metadata") {
        found.push(Sniffed {
            reader: Reader::Listenbrainz,
            why: why(&["listened_at", "track_metadata"]),
        });
    }
    if has("header")
        && has("title")
        && has("time")
        && ["titleUrl", "subtitles", "products"].iter().any(|k| has(k))
    {
        found.push(Sniffed {
            reader: Reader::YoutubeMusic,
            why: why(&["header", "title", "time"]) + " (Google Takeout activity)",
        });
    }
    if found.is_empty() {
        if has("podcastName") || has("episodeName") {
            return Verdict::Other(
                "Spotify's podcast history (podcastName, episodeName): episodes, not music".into(),
            );
        }
        return Verdict::Other(format!("{container} of records with keys {}", key_list(map)));
    }
    choose(found)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nulls",
        Value::Bool(_) => "booleans",
        Value::Number(_) => "numbers",
        Value::String(_) => "strings",
        Value::Array(_) => "arrays",
        Value::Object(_) => "objects",
    }
}

fn parquet_verdict(file: &Path) -> Verdict {
    use polars::prelude::*;
    let names = std::fs::File::open(file).ok().and_then(|f| {
        let mut reader = ParquetReader::new(f);
        reader.schema().ok().map(|s| s.iter_names().map(|n| n.to_string()).collect::<Vec<_>>())
    });
    match names {
        None => Verdict::Other("a Parquet file whose schema cannot be read".into()),
        Some(names) => choose(header_candidates(&names)),
    }
}

fn is_tsv_name(file: &Path) -> bool {
    crate::source::is_tsv(file)
}

/// Lower case, letters and digits only: `Event Start Timestamp` and `event_start_timestamp`
/// are the same column name.
pub(crate) fn norm(name: &str) -> String {
    name.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// Splits one line of a delimited text into fields, with double-quoted fields (`""` inside is
/// a quote) when `quotes` is set.
pub(crate) fn split_fields(line: &str, sep: char, quotes: bool) -> Vec<String> {
    if !quotes {
        return line.split(sep).map(str::to_string).collect();
    }
    let mut out = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' if quoted => quoted = false,
            '"' if field.is_empty() => quoted = true,
            c if c == sep && !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out
}

/// The separator of a text table: the most frequent of tab, comma and semicolon outside quotes
/// in its first line (tab first for a .tsv name, then comma, on a tie).
fn separator(first: &str, tsv: bool) -> Option<char> {
    let count = |sep: char| split_fields(first, sep, sep != '\t').len() - 1;
    let order: [char; 3] = if tsv { ['\t', ',', ';'] } else { [',', '\t', ';'] };
    let best = order
        .iter()
        .copied()
        .max_by_key(|&c| (count(c), std::cmp::Reverse(order.iter().position(|&o| o == c))))?;
    (count(best) > 0).then_some(best)
}

/// The readers that fit a text table, or what it is when none does.
fn table_candidates(
    file: &Path,
    text: &str,
    tsv: bool,
) -> std::result::Result<Vec<Sniffed>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(first) = lines.next() else {
        return Err("an empty file".into());
    };
    let first = first.trim_end_matches('\r');
    let Some(sep) = separator(first, tsv) else {
        return Err(format!(
            "a text file with one column ({:?}...): not a CSV or TSV table",
            first.chars().take(60).collect::<String>()
        ));
    };
    let quotes = sep != '\t';
    let fields = split_fields(first, sep, quotes);
    let has_time = fields.iter().any(|f| time::parse_any(f).is_some() || is_date(f));
    if !has_time {
        let names: Vec<String> = fields.iter().map(|f| f.trim().to_string()).collect();
        let mut found = header_candidates(&names);
        for s in &mut found {
            if let Reader::Table { map, .. } = &mut s.reader
                && sep != ','
                && !(sep == '\t' && tsv)
            {
                map.separator = Some(sep);
            }
        }
        if found.is_empty() {
            return Err(format!(
                "a table whose header ({}) names no time, artist and track columns segue knows; describe it with format = \"table\" and [dataset.sources.columns]",
                names.iter().take(12).map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
            ));
        }
        return Ok(found);
    }
    Ok(headerless_candidates(file, &fields, sep).into_iter().collect())
}

fn pos(i: usize) -> ColumnRef {
    ColumnRef::Position(i)
}

fn is_date(f: &str) -> bool {
    let b = f.trim().as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn is_clock(f: &str) -> bool {
    let b = f.trim().as_bytes();
    (b.len() == 5 || b.len() == 8)
        && b[2] == b':'
        && (b.len() == 5 || b[5] == b':')
        && b.iter().enumerate().all(|(i, c)| i == 2 || i == 5 || c.is_ascii_digit())
}

/// The headerless layouts, recognised by their field count and which field holds the time.
fn headerless_candidates(file: &Path, fields: &[String], sep: char) -> Option<Sniffed> {
    let n = fields.len();
    let is_epoch = |f: &str| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit());
    let headerless = |mut map: ColumnMap, dialect: &str, why: String, format: Format| {
        map.has_header = false;
        if sep != ',' && !(sep == '\t' && is_tsv_name(file)) {
            map.separator = Some(sep);
        }
        Some(Sniffed {
            reader: Reader::Table { format, map: Box::new(map), dialect: dialect.into() },
            why,
        })
    };
    if sep == '\t' && n == 6 && time::parse_iso_stamp(&fields[1]).is_some() {
        return Some(Sniffed {
            reader: Reader::Lastfm1k,
            why: format!(
                "no header; 6 tab-separated fields, the second an ISO time ({:?})",
                fields[1]
            ),
        });
    }
    if sep == '\t' && n >= 4 && is_epoch(&fields[0]) {
        let map =
            ColumnMap { time_format: TimeFormat::Unix, ..ColumnMap::new(pos(1), pos(3), pos(2)) };
        return headerless(
            map,
            "headerless uts, track, artist, album, ... (lastexport.py)",
            format!(
                "no header; {n} tab-separated fields, the first epoch seconds ({:?})",
                fields[0]
            ),
            Format::LastfmScrobblesCsv,
        );
    }
    if n == 4 && is_date(&fields[0]) && is_clock(&fields[1]) {
        let map = ColumnMap { date: Some(pos(1)), ..ColumnMap::new(pos(2), pos(3), pos(4)) };
        return headerless(
            map,
            "headerless date, time, artist, title (lastfm-backup-cli)",
            format!(
                "no header; 4 fields, a date ({:?}) and a time ({:?}) first",
                fields[0], fields[1]
            ),
            Format::LastfmScrobblesCsv,
        );
    }
    if n == 4 && time::parse_day_month_name(&fields[3]).is_some() {
        let map = ColumnMap::new(pos(4), pos(1), pos(3));
        return headerless(
            map,
            "headerless artist, album, track, date (lastfm-to-csv)",
            format!("no header; 4 fields, the last a date ({:?})", fields[3]),
            Format::LastfmScrobblesCsv,
        );
    }
    None
}

/// Header names of Last.fm exporters' columns, best first.
const ARTIST_NAMES: &[&str] = &["artist", "artistname", "artists"];
const TITLE_NAMES: &[&str] =
    &["track", "trackname", "title", "tracktitle", "song", "songname", "name"];
const TIME_NAMES: &[&str] = &[
    "uts",
    "timestamp",
    "utctime",
    "playedat",
    "scrobbledat",
    "listenedat",
    "date",
    "datetime",
    "time",
    "scrobbletime",
];
const USER_NAMES: &[&str] = &["user", "username"];

/// The readers whose columns a header names (after [`norm`]): the specific exports first; the
/// Last.fm scrobble columns only when no specific one fits.
fn header_candidates(names: &[String]) -> Vec<Sniffed> {
    let normed: Vec<String> = names.iter().map(|n| norm(n)).collect();
    let find = |wanted: &[&str]| -> Option<String> {
        wanted.iter().find_map(|w| normed.iter().position(|n| n == w).map(|i| names[i].clone()))
    };
    let mut found = Vec::new();
    if let (Some(time), Some(artist), Some(title), Some(ms)) =
        (find(&["endtime"]), find(&["artistname"]), find(&["trackname"]), find(&["msplayed"]))
    {
        let map = ColumnMap {
            time_is: TimeIs::End,
            ms_played: Some(ColumnRef::Name(ms.clone())),
            ..ColumnMap::new(time.as_str(), artist.as_str(), title.as_str())
        };
        found.push(Sniffed {
            reader: Reader::Table {
                format: Format::Table,
                map: Box::new(map),
                dialect: "Spotify StreamingHistory columns in a table".into(),
            },
            why: format!("a header with {time}, {artist}, {title}, {ms}"),
        });
    }
    if let (Some(title), Some(_), Some(ms)) = (
        find(&["songname", "contentname"]),
        find(&["eventstarttimestamp", "eventendtimestamp"]),
        find(&["playdurationmilliseconds"]),
    ) {
        found.push(Sniffed {
            reader: Reader::AppleMusic,
            why: format!(
                "a header with {title}, Event Start Timestamp, {ms} (Apple Music Play Activity)"
            ),
        });
    }
    if !found.is_empty() {
        return found;
    }
    if let (Some(artist), Some(title), Some(time)) =
        (find(ARTIST_NAMES), find(TITLE_NAMES), find(TIME_NAMES))
    {
        let map = ColumnMap {
            user: find(USER_NAMES).map(ColumnRef::Name),
            ..ColumnMap::new(time.as_str(), artist.as_str(), title.as_str())
        };
        found.push(Sniffed {
            reader: Reader::Table {
                format: Format::LastfmScrobblesCsv,
                map: Box::new(map),
                dialect: format!("a header with {artist}, {title}, time in {time}"),
            },
            why: format!(
                "a header naming the artist ({artist}), the track ({title}) and the time ({time})"
            ),
        });
    }
    found
}

/// Up to `limit` decompressed bytes of `file`, and whether that is all of it.
pub(crate) fn read_head(file: &Path, limit: usize) -> Result<(Vec<u8>, bool)> {
    let mut f = std::fs::File::open(file).map_err(|e| Error::io(file, e))?;
    let mut magic = [0u8; 4];
    let got = read_up_to(&mut f, &mut magic).map_err(|e| Error::io(file, e))?;
    let reopen = || std::fs::File::open(file).map_err(|e| Error::io(file, e));
    let corrupt = |e: std::io::Error| {
        Error::input(file, segue_core::Position::File, format!("corrupt compressed file: {e}"))
    };
    let mut reader: Box<dyn Read> = if magic[..got].starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(reopen()?)))
    } else if magic[..got].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::new(reopen()?).map_err(corrupt)?)
    } else {
        Box::new(reopen()?)
    };
    let mut buf = vec![0u8; limit + 1];
    let n = read_up_to(&mut reader, &mut buf).map_err(corrupt)?;
    buf.truncate(n.min(limit));
    Ok((buf, n <= limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sniff_text(name: &str, text: &str) -> Verdict {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        sniff(&path).unwrap()
    }

    fn format_of(name: &str, text: &str) -> Format {
        match sniff_text(name, text) {
            Verdict::Read(s) => s.reader.format(),
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn json_shapes() {
        let sh = r#"[{"endTime": "2021-01-01 10:00", "artistName": "A", "trackName": "T", "msPlayed": 60000}]"#;
        assert_eq!(format_of("x.json", sh), Format::SpotifyStreamingHistory);
        assert_eq!(format_of("StreamingHistory0.json", "[]"), Format::SpotifyStreamingHistory);
        assert!(matches!(sniff_text("other.json", "[ ]"), Verdict::Other(_)));
        let lb = "{\"listened_at\": 1, \"track_metadata\": {}}\n{\"listened_at\": 2, \"track_metadata\": {}}\n";
        assert_eq!(format_of("l.jsonl", lb), Format::Listenbrainz);
        let user = r#"{"username": "me", "country": "SE"}"#;
        match sniff_text("Userdata.json", user) {
            Verdict::Other(what) => {
                assert!(what.contains("country") && what.contains("username"), "{what}")
            }
            v => panic!("{v:?}"),
        }
        let pod = r#"[{"endTime": "2021-01-01 10:00", "podcastName": "P", "episodeName": "E", "msPlayed": 1}]"#;
        match sniff_text("StreamingHistory_podcast_0.json", pod) {
            Verdict::Other(what) => assert!(what.contains("podcast"), "{what}"),
            v => panic!("{v:?}"),
        }
        let both = r#"[{"endTime": "x", "artistName": "A", "trackName": "T", "msPlayed": 1, "listened_at": 1, "track_metadata": {}}]"#;
        match sniff_text("both.json", both) {
            Verdict::Ambiguous(all) => assert_eq!(all.len(), 2),
            v => panic!("{v:?}"),
        }
        match sniff_text("watch-history.html", "<html><body>YouTube</body></html>") {
            Verdict::Other(what) => assert!(what.contains("JSON format"), "{what}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn a_first_record_beyond_the_head_is_read_whole() {
        let long = "x".repeat(HEAD + 10);
        let text = format!(
            r#"[{{"endTime": "2021-01-01 10:00", "artistName": "{long}", "trackName": "T", "msPlayed": 1}}]"#
        );
        assert_eq!(format_of("big.json", &text), Format::SpotifyStreamingHistory);
    }

    #[test]
    fn fields_and_separators() {
        assert_eq!(split_fields(r#"a,"b, ""c""",d"#, ',', true), ["a", r#"b, "c""#, "d"]);
        assert_eq!(separator("a;b;c", false), Some(';'));
        assert_eq!(separator("a\tb,c\td", false), Some('\t'));
        assert_eq!(separator("abc", false), None);
        assert_eq!(norm("Event Start_Timestamp"), "eventstarttimestamp");
    }
}
