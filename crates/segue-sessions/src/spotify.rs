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

fn parse_array(bytes: &[u8], file: &Path) -> Result<Vec<Value>> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "the JSON ends early (a truncated file?)",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unexpected JSON data",
            serde_json::error::Category::Io => "unreadable JSON",
        };
        Error::input(
            file,
            Position::LineColumn(e.line() as u64, e.column() as u64),
            format!("{what}: {e}"),
        )
    })?;
    match value {
        Value::Array(v) => Ok(v),
        other => Err(Error::input(
            file,
            Position::File,
            format!("expected a JSON array of plays, found {}", kind_name(&other)),
        )),
    }
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
    for (i, rec) in parse_array(bytes, file)?.iter().enumerate() {
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
                out.push(user, start, artist, title);
            }
        }
    }
    Ok(())
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
            read(json, "t.json", SpotifyKind::StreamingHistory, false).1.unwrap_err().to_string();
        assert!(err.contains("t.json, line 2") && err.contains("truncated"), "{err}");
    }
}
