//! ListenBrainz listens: the export's JSON Lines (`listens/YYYY/M.jsonl`) or the older JSON
//! array, each listen `{listened_at, track_metadata: {artist_name, track_name, ...},
//! user_name}`. ListenBrainz records a listen by its submitting player's rule (usually half
//! the track or four minutes), not the time played, so `min_ms_played` does not apply.

use segue_core::Result;
use serde_json::Value;

use crate::json::{JsonRecords, kind_name, require_utf8};
use crate::plays::Plays;
use crate::raw::SkipReason;
use crate::source::{TimeFormat, TimeIs};

/// Reads one ListenBrainz file (already decompressed) into `plays`; listens without a
/// `user_name` belong to `user`.
pub(crate) fn read_listenbrainz(bytes: &[u8], user: &str, plays: &mut Plays<'_>) -> Result<()> {
    let file = plays.file;
    require_utf8(bytes, file, "a ListenBrainz export is UTF-8 JSON")?;
    let parsed = JsonRecords::read(bytes, file, plays.skips.is_strict(), true)?;
    for (pos, rec) in &parsed.records {
        let pos = *pos;
        let meta = rec.get("track_metadata").and_then(Value::as_object);
        let name = |k: &str| meta.and_then(|m| m.get(k)).and_then(Value::as_str);
        let (Some(when), Some(artist), Some(title)) =
            (rec.get("listened_at"), name("artist_name"), name("track_name"))
        else {
            plays.skips.skip(SkipReason::MissingField, file, pos, || match rec {
                Value::Object(_) => {
                    "expected listened_at and track_metadata.artist_name, .track_name".to_string()
                }
                other => format!("{}, expected a listen object", kind_name(other)),
            })?;
            continue;
        };
        let when = match when {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let Some(secs) = plays.time(&when, &TimeFormat::Auto, "`listened_at`", pos)? else {
            continue;
        };
        let user =
            rec.get("user_name").and_then(Value::as_str).filter(|u| !u.is_empty()).unwrap_or(user);
        plays.play(pos, user, secs, TimeIs::Start, None, artist, title)?;
    }
    parsed.finish(file, plays.skips)
}
