//! JSON exports as records: a JSON array (Spotify, ListenBrainz's older export, Google
//! Takeout) or JSON Lines (ListenBrainz), each record with its position. A file that breaks
//! off or goes wrong after some complete records keeps them in lenient mode; the rest counts
//! as one skipped record that says where it broke.

use std::path::Path;

use segue_core::{Error, Position, Result};
use serde_json::Value;

use crate::raw::{SkipReason, SkipReport};

/// Fails unless `bytes` are UTF-8, naming the line of the first bad byte.
pub(crate) fn require_utf8(bytes: &[u8], file: &Path, what: &str) -> Result<()> {
    if let Err(e) = std::str::from_utf8(bytes) {
        let valid = e.valid_up_to();
        let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        return Err(Error::input(
            file,
            Position::Line(line),
            format!("bytes that are not UTF-8; {what}"),
        ));
    }
    Ok(())
}

/// The records of a JSON export, each with its position (`record N` in an array, `line N` in
/// JSON Lines), and where the file broke, if it did.
#[derive(Debug)]
pub(crate) struct JsonRecords {
    pub records: Vec<(Position, Value)>,
    /// Lines of a JSON Lines file that are not JSON objects.
    bad_lines: Vec<(u64, String)>,
    broken: Broken,
}

impl JsonRecords {
    /// Parses an array of records; with `lines_too`, a file that does not start with `[` is
    /// read as JSON Lines. In strict mode a break is an error at once.
    pub fn read(bytes: &[u8], file: &Path, strict: bool, lines_too: bool) -> Result<JsonRecords> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if lines_too && first != Some(&b'[') {
            return read_lines(bytes, file, strict);
        }
        let (values, broken) = parse_array(bytes, file)?;
        if let Some((_, e)) = &broken
            && strict
        {
            return Err(Error::input(
                file,
                match e {
                    Error::Input { position, .. } => *position,
                    _ => Position::File,
                },
                format!(
                    "{}; rerun without strict mode to keep the records before it",
                    input_message(e)
                ),
            ));
        }
        let records = values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (Position::Record(i as u64 + 1), v))
            .collect();
        Ok(JsonRecords { records, bad_lines: Vec::new(), broken })
    }

    /// Counts the bad lines and the break (after the records were used).
    pub fn finish(self, file: &Path, skips: &mut SkipReport) -> Result<()> {
        for (line, what) in self.bad_lines {
            skips.skip(SkipReason::InvalidJson, file, Position::Line(line), || what)?;
        }
        if let Some((reason, e)) = self.broken {
            let position = match &e {
                Error::Input { position, .. } => *position,
                _ => Position::File,
            };
            let kept = self.records.len();
            skips.skip(reason, file, position, || {
                format!("{kept} complete record(s) before it kept; {}", input_message(&e))
            })?;
        }
        Ok(())
    }
}

/// JSON Lines: one object per line; a line that is not one is a malformed record (an error at
/// once in strict mode).
fn read_lines(bytes: &[u8], file: &Path, strict: bool) -> Result<JsonRecords> {
    let mut records = Vec::new();
    let mut bad_lines = Vec::new();
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i as u64 + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let what = match serde_json::from_slice::<Value>(line) {
            Ok(v @ Value::Object(_)) => {
                records.push((Position::Line(n), v));
                continue;
            }
            Ok(other) => format!("{}, expected one JSON object per line", kind_name(&other)),
            Err(e) => format!("not JSON ({e}); expected one JSON object per line"),
        };
        if strict {
            return Err(Error::input(
                file,
                Position::Line(n),
                format!(
                    "{} (found {what}); rerun without strict mode to skip such records",
                    SkipReason::InvalidJson.describe()
                ),
            ));
        }
        bad_lines.push((n, what));
    }
    Ok(JsonRecords { records, bad_lines, broken: None })
}

/// Where a JSON parser stopped, as a file position, and what it found.
fn json_error(e: &serde_json::Error, bytes: &[u8], start: usize, file: &Path) -> Error {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "the JSON ends early (a truncated file?)",
        serde_json::error::Category::Syntax => "invalid JSON",
        serde_json::error::Category::Data => "unexpected JSON data",
        serde_json::error::Category::Io => "unreadable JSON",
    };
    // serde_json counts from `start`: turn its line and column into the file's.
    let (line0, col0) = line_column(bytes, start);
    let (line, col) = (e.line() as u64, e.column() as u64);
    let position = if line <= 1 {
        Position::LineColumn(line0, col0 - 1 + col)
    } else {
        Position::LineColumn(line0 + line - 1, col)
    };
    Error::input(file, position, format!("{what}: {e}"))
}

/// The 1-based line and column of byte `offset`.
fn line_column(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let col = before.len() - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (line, col as u64 + 1)
}

/// Where and why a JSON array broke off, after the elements read before it.
type Broken = Option<(SkipReason, Error)>;

/// A JSON array of plays, element by element. When the file breaks off or goes wrong after
/// some complete elements, those are returned with the error, so lenient mode can keep them.
fn parse_array(bytes: &[u8], file: &Path) -> Result<(Vec<Value>, Broken)> {
    let skip_ws = |mut i: usize| {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let mut pos = skip_ws(0);
    if bytes.get(pos) != Some(&b'[') {
        // Not an array: the whole value says what it is instead.
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| json_error(&e, bytes, 0, file))?;
        return Err(Error::input(
            file,
            Position::File,
            format!("expected a JSON array of plays, found {}", kind_name(&value)),
        ));
    }
    pos += 1;
    let mut out = Vec::new();
    let broken = |e: serde_json::Error, at: usize| {
        let reason = if e.is_eof() { SkipReason::TruncatedFile } else { SkipReason::InvalidJson };
        (reason, json_error(&e, bytes, at, file))
    };
    loop {
        pos = skip_ws(pos);
        if out.is_empty() && bytes.get(pos) == Some(&b']') {
            pos += 1;
            break;
        }
        let mut stream = serde_json::Deserializer::from_slice(&bytes[pos..]).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => out.push(v),
            Some(Err(e)) => return Ok((out, Some(broken(e, pos)))),
            None => {
                let e = serde_json::from_slice::<Value>(&bytes[pos..]).unwrap_err();
                return Ok((out, Some(broken(e, pos))));
            }
        }
        pos = skip_ws(pos + stream.byte_offset());
        match bytes.get(pos) {
            Some(b',') => pos += 1,
            Some(b']') => {
                pos += 1;
                break;
            }
            found => {
                let (reason, what) = match found {
                    None => (SkipReason::TruncatedFile, "the JSON ends early (a truncated file?)"),
                    Some(_) => (SkipReason::InvalidJson, "invalid JSON"),
                };
                let message = format!(
                    "{what}: expected `,` or `]` after record {}, found {}",
                    out.len(),
                    found
                        .map_or("the end of the file".to_string(), |b| format!("{:?}", *b as char))
                );
                let (line, col) = line_column(bytes, pos);
                let e = Error::input(file, Position::LineColumn(line, col), message);
                return Ok((out, Some((reason, e))));
            }
        }
    }
    let end = skip_ws(pos);
    if end < bytes.len() {
        let e = serde_json::from_slice::<()>(&bytes[end..]).unwrap_err();
        return Ok((out, Some((SkipReason::InvalidJson, json_error(&e, bytes, end, file)))));
    }
    Ok((out, None))
}

/// A JSON value's kind, for messages ("an object").
pub(crate) fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The message of an input error without its file and position.
pub(crate) fn input_message(e: &Error) -> String {
    match e {
        Error::Input { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
