//! Spotify exports: the account-data `StreamingHistory*.json` and the extended streaming history
//! (`endsong_*.json`, `Streaming_History_Audio_*.json`). Both give the time a play *ended*; the
//! event time is that minus the milliseconds played, floored to the second.

use std::path::Path;

use segue_core::{Error, Position, Result};
use serde_json::Value;

use crate::raw::{RawEvents, SkipReason, SkipReport};
use crate::time;

/// Which Spotify export a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpotifyKind {
    /// `StreamingHistory*.json`: endTime (`YYYY-MM-DD HH:MM`, UTC), artistName, trackName, msPlayed.
    StreamingHistory,
    /// Extended history: ts (ISO, UTC), ms_played, master_metadata_album_artist_name,
    /// master_metadata_track_name; rows without a track name are episodes or other non-tracks.
    Extended,
}

/// Shared settings of a read.
#[derive(Debug, Clone, Copy)]
pub struct ReadSettings {
    /// Plays shorter than this many milliseconds are filtered out.
    pub min_ms_played: u64,
    /// Events after this epoch second are "in the future".
    pub latest: i64,
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

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads one Spotify JSON export (already decompressed) into `out`.
pub fn read_spotify(
    bytes: &[u8],
    file: &Path,
    kind: SpotifyKind,
    user: &str,
    settings: ReadSettings,
    out: &mut RawEvents,
    skips: &mut SkipReport,
) -> Result<()> {
    if std::str::from_utf8(bytes).is_err() {
        let valid = std::str::from_utf8(bytes).unwrap_err().valid_up_to();
        let line = bytes[..valid].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        return Err(Error::input(
            file,
            Position::Line(line),
            "bytes that are not UTF-8; a Spotify export is UTF-8 JSON",
        ));
    }
    let (time_key, ms_key, artist_key, title_key) = match kind {
        SpotifyKind::StreamingHistory => ("endTime", "msPlayed", "artistName", "trackName"),
        SpotifyKind::Extended => {
            ("ts", "ms_played", "master_metadata_album_artist_name", "master_metadata_track_name")
        }
    };
    let (records, broken) = parse_array(bytes, file)?;
    if let Some((_, e)) = &broken
        && skips.is_strict()
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
    for (i, rec) in records.iter().enumerate() {
        let pos = Position::Record(i as u64 + 1);
        let Some(obj) = rec.as_object() else {
            skips.skip(SkipReason::MissingField, file, pos, || {
                format!("{}, expected an object", kind_name(rec))
            })?;
            continue;
        };
        let title = obj.get(title_key).and_then(Value::as_str);
        if kind == SpotifyKind::Extended && title.is_none_or(str::is_empty) {
            skips.skip(SkipReason::NotATrack, file, pos, String::new)?;
            continue;
        }
        let field = |k: &str| obj.get(k).and_then(Value::as_str);
        let (Some(end), Some(artist), Some(title)) = (field(time_key), field(artist_key), title)
        else {
            let missing: Vec<&str> = [time_key, artist_key, title_key]
                .into_iter()
                .filter(|k| field(k).is_none())
                .collect();
            skips.skip(SkipReason::MissingField, file, pos, || {
                format!("no string field {}", missing.join(", "))
            })?;
            continue;
        };
        let Some(ms) = obj.get(ms_key).and_then(Value::as_u64) else {
            skips.skip(SkipReason::MissingField, file, pos, || {
                format!("`{ms_key}` missing or not a non-negative integer")
            })?;
            continue;
        };
        let Some(end_secs) = time::parse_iso(end) else {
            skips.skip(SkipReason::BadTimestamp, file, pos, || {
                format!("`{time_key}` = {end:?}, expected YYYY-MM-DD HH:MM[:SS]")
            })?;
            continue;
        };
        if ms < settings.min_ms_played {
            skips.skip(SkipReason::ShortPlay, file, pos, || {
                format!("{ms} ms played, minimum {}", settings.min_ms_played)
            })?;
            continue;
        }
        let start = (end_secs * 1000 - ms as i64).div_euclid(1000);
        match time::out_of_range(start, settings.latest) {
            Some(reason) => skips.skip(reason, file, pos, || end.to_string())?,
            None if crate::raw::is_blank(artist) || crate::raw::is_blank(title) => {
                skips.skip(SkipReason::EmptyArtistOrTitle, file, pos, || {
                    format!("artist {artist:?}, title {title:?}")
                })?;
            }
            None => {
                let user = match kind {
                    SpotifyKind::Extended => obj
                        .get("username")
                        .and_then(Value::as_str)
                        .filter(|u| !u.is_empty())
                        .unwrap_or(user),
                    SpotifyKind::StreamingHistory => user,
                };
                if let Some((reason, detail)) = crate::raw::check_identity(user, artist, title) {
                    skips.skip(reason, file, pos, || detail)?;
                    continue;
                }
                out.push(user, start, artist, title);
            }
        }
    }
    if let Some((reason, e)) = broken {
        let position = match &e {
            Error::Input { position, .. } => *position,
            _ => Position::File,
        };
        skips.skip(reason, file, position, || {
            format!("{} complete record(s) before it kept; {}", records.len(), input_message(&e))
        })?;
    }
    Ok(())
}

/// The message of an input error without its file and position.
fn input_message(e: &Error) -> String {
    match e {
        Error::Input { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ReadSettings {
        ReadSettings { min_ms_played: 30_000, latest: time::latest_plausible() }
    }

    /// Reads `json` as `file`; the events and the report (or the strict-mode error).
    fn read(
        json: &str,
        file: &str,
        kind: SpotifyKind,
        strict: bool,
    ) -> (RawEvents, Result<SkipReport>) {
        let mut ev = RawEvents::default();
        let mut sk = SkipReport::new(strict);
        let r = read_spotify(
            json.as_bytes(),
            Path::new(file),
            kind,
            "me",
            settings(),
            &mut ev,
            &mut sk,
        );
        (ev, r.map(|()| sk))
    }

    #[test]
    fn streaming_history_start_time_and_filters() {
        let json = r#"[
          {"endTime": "2021-12-03 05:31", "artistName": "Kaiit", "trackName": "Miss Shiney", "msPlayed": 188823},
          {"endTime": "2021-12-03 05:32", "artistName": "Kaiit", "trackName": "Skip", "msPlayed": 2000},
          {"endTime": "2021-12-03 05:33", "artistName": "Kaiit", "msPlayed": 200000}
        ]"#;
        let (ev, sk) = read(json, "s.json", SpotifyKind::StreamingHistory, false);
        let sk = sk.unwrap();
        assert_eq!(ev.len(), 1);
        // 05:31:00 minus 188.823 s = 05:27:51.177, floored to 05:27:51.
        assert_eq!(time::format_utc(ev.ts[0]), "2021-12-03T05:27:51Z");
        assert_eq!(sk.count(SkipReason::ShortPlay), 1);
        assert_eq!(sk.count(SkipReason::MissingField), 1);
        let err =
            read(json, "s.json", SpotifyKind::StreamingHistory, true).1.unwrap_err().to_string();
        assert!(err.contains("s.json, record 3") && err.contains("trackName"), "{err}");
    }

    #[test]
    fn extended_excludes_episodes() {
        let json = r#"[
          {"ts": "2020-01-01T12:00:00Z", "username": "u", "ms_played": 60000, "master_metadata_track_name": "T", "master_metadata_album_artist_name": "A"},
          {"ts": "2020-01-01T12:10:00Z", "username": "u", "ms_played": 60000, "master_metadata_track_name": null, "master_metadata_album_artist_name": null, "episode_name": "Pod"}
        ]"#;
        let (ev, sk) = read(json, "e.json", SpotifyKind::Extended, true);
        let sk = sk.unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(&*ev.users.strings()[0], "u");
        assert_eq!(sk.count(SkipReason::NotATrack), 1);
    }

    #[test]
    fn truncated_json_names_the_position() {
        let json = "[{\"endTime\": \"2021-12-03 05:31\", \"artistName\": \"A\",\n \"trackName\": ";
        let err =
            read(json, "t.json", SpotifyKind::StreamingHistory, true).1.unwrap_err().to_string();
        assert!(err.contains("t.json, line 2") && err.contains("truncated"), "{err}");
    }

    /// Lenient mode keeps the complete records before a cut or a fault, and counts the rest
    /// of the file as one skipped record that says where it broke.
    #[test]
    fn a_truncated_or_broken_file_keeps_its_complete_records() {
        let rec = |m: u32| {
            format!(
                "{{\"endTime\": \"2021-12-03 05:{m:02}\", \"artistName\": \"A\", \"trackName\": \"T{m}\", \"msPlayed\": 60000}}"
            )
        };
        let whole = format!("[\n{},\n{},\n{}\n]", rec(10), rec(20), rec(30));
        let (ev, sk) = read(&whole, "w.json", SpotifyKind::StreamingHistory, false);
        assert_eq!((ev.len(), sk.unwrap().total()), (3, 0));
        // Cut inside the third record, after the second's comma, after the second record.
        for (cut, kept) in [
            (whole.len() - 20, 2),
            (whole.find(",\n{\"endTime\": \"2021-12-03 05:30").unwrap() + 1, 2),
            (whole.find(",\n{\"endTime\": \"2021-12-03 05:20").unwrap(), 1),
        ] {
            let (ev, sk) = read(&whole[..cut], "c.json", SpotifyKind::StreamingHistory, false);
            let sk = sk.unwrap();
            assert_eq!(ev.len(), kept, "cut at {cut}");
            assert_eq!(sk.count(SkipReason::TruncatedFile), 1);
            assert_eq!(sk.total(), 1);
            let ex = &sk.reasons[&SkipReason::TruncatedFile].examples[0];
            assert!(
                ex.detail.contains(&format!("{kept} complete record(s) before it kept")),
                "{ex:?}"
            );
            assert!(ex.position.starts_with("line "), "{ex:?}");
        }
        // A fault in the middle: the records before it are kept, the rest is one skip.
        let broken = whole.replace(&rec(20), "{\"endTime\": oops}");
        let (ev, sk) = read(&broken, "b.json", SpotifyKind::StreamingHistory, false);
        let sk = sk.unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(sk.count(SkipReason::InvalidJson), 1);
        assert_eq!(sk.reasons[&SkipReason::InvalidJson].examples[0].position, "line 3, column 13");
        let err = read(&broken, "b.json", SpotifyKind::StreamingHistory, true).1.unwrap_err();
        assert!(err.to_string().contains("b.json, line 3, column 13: invalid JSON"), "{err}");
        // Trailing garbage after a complete array.
        let (ev, sk) = read(&format!("{whole} x"), "g.json", SpotifyKind::StreamingHistory, false);
        assert_eq!((ev.len(), sk.unwrap().count(SkipReason::InvalidJson)), (3, 1));
        // Not an array at all is still an error.
        let (_, sk) = read("{\"a\": 1}", "o.json", SpotifyKind::StreamingHistory, false);
        assert!(
            sk.unwrap_err().to_string().contains("expected a JSON array of plays, found an object")
        );
    }
}
