//! YouTube Music plays in Google Takeout's `watch-history.json` (Takeout's "History" in JSON
//! format; its default, HTML, is not read). Entries under the header "YouTube Music" are
//! music: the title is the entry's `title` without Takeout's English "Watched " prefix, the
//! artist its first subtitle (the channel) without the " - Topic" suffix of auto-generated
//! artist channels. Other entries (YouTube videos) are counted as not music. Takeout records
//! no play time, so `min_ms_played` does not apply: every entry is a play.

use segue_core::Result;
use serde_json::Value;

use crate::json::{JsonRecords, kind_name, require_utf8};
use crate::plays::Plays;
use crate::raw::SkipReason;
use crate::source::{TimeFormat, TimeIs};

/// The header of YouTube Music's entries.
const MUSIC_HEADER: &str = "YouTube Music";

/// Reads one `watch-history.json` (already decompressed) into `plays` as plays of `user`.
pub(crate) fn read_youtube_music(bytes: &[u8], user: &str, plays: &mut Plays<'_>) -> Result<()> {
    let file = plays.file;
    require_utf8(bytes, file, "a Google Takeout history is UTF-8 JSON")?;
    let parsed = JsonRecords::read(bytes, file, plays.skips.is_strict(), false)?;
    for (pos, rec) in &parsed.records {
        let pos = *pos;
        let text = |k: &str| rec.get(k).and_then(Value::as_str);
        let Some(header) = text("header") else {
            plays.skips.skip(SkipReason::MissingField, file, pos, || match rec {
                Value::Object(_) => "no `header` (expected a Takeout activity entry)".to_string(),
                other => format!("{}, expected an activity object", kind_name(other)),
            })?;
            continue;
        };
        if header != MUSIC_HEADER {
            plays.skips.skip(SkipReason::NotMusic, file, pos, || {
                format!(
                    "header {header:?}: {:?}",
                    crate::raw::prefix(text("title").unwrap_or(""), 60)
                )
            })?;
            continue;
        }
        let title = text("title").map(|t| t.strip_prefix("Watched ").unwrap_or(t));
        let channel = rec
            .get("subtitles")
            .and_then(Value::as_array)
            .and_then(|s| s.first())
            .and_then(|s| s.get("name"))
            .and_then(Value::as_str);
        let (Some(title), Some(channel), Some(when)) = (title, channel, text("time")) else {
            // Removed videos keep only "Watched <url>" and no channel.
            plays.skips.skip(SkipReason::NoTrackName, file, pos, || {
                format!(
                    "title {:?} without a channel (subtitles) or a time: a removed video?",
                    text("title").unwrap_or("")
                )
            })?;
            continue;
        };
        let artist = channel.strip_suffix(" - Topic").unwrap_or(channel);
        let Some(secs) = plays.time(when, &TimeFormat::Iso, "`time`", pos)? else {
            continue;
        };
        plays.play(pos, user, secs, TimeIs::Start, None, artist, title)?;
    }
    parsed.finish(file, plays.skips)
}
