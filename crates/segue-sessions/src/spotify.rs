//! Spotify exports: the account-data `StreamingHistory*.json` and the extended streaming history
//! (`endsong_*.json`, `Streaming_History_Audio_*.json`). Both give the time a play *ended*; the
//! event time is that minus the milliseconds played, floored to the second.

use std::path::Path;

use segue_core::Result;
use serde_json::Value;

use crate::json::{JsonRecords, kind_name};
use crate::plays::Plays;
use crate::raw::{RawEvents, SkipReason, SkipReport};
use crate::source::{TimeFormat, TimeIs};
use crate::time::Zone;

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
    crate::json::require_utf8(bytes, file, "a Spotify export is UTF-8 JSON")?;
    let (time_key, ms_key, artist_key, title_key) = match kind {
        SpotifyKind::StreamingHistory => ("endTime", "msPlayed", "artistName", "trackName"),
        SpotifyKind::Extended => {
            ("ts", "ms_played", "master_metadata_album_artist_name", "master_metadata_track_name")
        }
    };
    let parsed = JsonRecords::read(bytes, file, skips.is_strict(), false)?;
    let mut plays = Plays::new(file, settings, Zone::Utc, out, skips);
    for (pos, rec) in &parsed.records {
        let pos = *pos;
        let Some(obj) = rec.as_object() else {
            plays.skips.skip(SkipReason::MissingField, file, pos, || {
                format!("{}, expected an object", kind_name(rec))
            })?;
            continue;
        };
        let title = obj.get(title_key).and_then(Value::as_str);
        if kind == SpotifyKind::Extended && title.is_none_or(str::is_empty) {
            let named = |k: &str| obj.get(k).and_then(Value::as_str).filter(|v| !v.is_empty());
            match [
                "episode_name",
                "spotify_episode_uri",
                "audiobook_title",
                "audiobook_chapter_title",
            ]
            .into_iter()
            .find_map(named)
            {
                Some(episode) => plays.skips.skip(SkipReason::Episode, file, pos, || {
                    format!("{:?}", crate::raw::prefix(episode, 80))
                })?,
                None => plays.skips.skip(SkipReason::NoTrackName, file, pos, || {
                    format!(
                        "no master_metadata_track_name or episode_name (ts {:?}, ms_played {})",
                        obj.get("ts").and_then(Value::as_str).unwrap_or(""),
                        obj.get("ms_played").map_or("?".into(), |v| v.to_string())
                    )
                })?,
            }
            continue;
        }
        let field = |k: &str| obj.get(k).and_then(Value::as_str);
        let (Some(end), Some(artist), Some(title)) = (field(time_key), field(artist_key), title)
        else {
            let missing: Vec<&str> = [time_key, artist_key, title_key]
                .into_iter()
                .filter(|k| field(k).is_none())
                .collect();
            plays.skips.skip(SkipReason::MissingField, file, pos, || {
                format!("no string field {}", missing.join(", "))
            })?;
            continue;
        };
        let Some(ms) = obj.get(ms_key).and_then(Value::as_u64) else {
            plays.skips.skip(SkipReason::MissingField, file, pos, || {
                format!("`{ms_key}` missing or not a non-negative integer")
            })?;
            continue;
        };
        let user = match kind {
            SpotifyKind::Extended => obj
                .get("username")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .unwrap_or(user),
            SpotifyKind::StreamingHistory => user,
        };
        let Some(end_secs) = plays.time(end, &TimeFormat::Iso, &format!("`{time_key}`"), pos)?
        else {
            continue;
        };
        plays.play(pos, user, end_secs, TimeIs::End, Some(ms as i64), artist, title)?;
    }
    parsed.finish(file, skips)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ReadSettings {
        ReadSettings { min_ms_played: 30_000, latest: crate::time::latest_plausible() }
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
        assert_eq!(crate::time::format_utc(ev.ts[0]), "2021-12-03T05:27:51Z");
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
          {"ts": "2020-01-01T12:10:00Z", "username": "u", "ms_played": 60000, "master_metadata_track_name": null, "master_metadata_album_artist_name": null, "episode_name": "Pod"},
          {"ts": "2020-01-01T12:20:00Z", "username": "u", "ms_played": 60000, "master_metadata_track_name": null, "master_metadata_album_artist_name": null, "episode_name": null}
        ]"#;
        let (ev, sk) = read(json, "e.json", SpotifyKind::Extended, true);
        let sk = sk.unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(&*ev.users.strings()[0], "u");
        assert_eq!(sk.count(SkipReason::Episode), 1);
        assert_eq!(sk.count(SkipReason::NoTrackName), 1);
        assert_eq!(sk.reasons[&SkipReason::Episode].examples[0].detail, "\"Pod\"");
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
