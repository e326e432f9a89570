//! Apple Music's `Apple Music Play Activity.csv` (Apple's privacy export, "Apple Media
//! Services information"). One row per event; a play is its `PLAY_END` row (`Event Type`),
//! with the track in `Song Name` (older exports: `Content Name`), the artist in `Artist Name`
//! or, where Apple left that out, `Container Artist Name`, the start in `Event Start Timestamp`
//! (else the end in `Event End Timestamp`) and the time played in `Play Duration Milliseconds`.
//! Rows of other event types and videos (`Media Type` other than AUDIO) are counted and
//! dropped. Apple's exports since about 2021 leave the artist out of many rows; those are
//! skipped as missing a field, with that said.

use polars::prelude::*;
use segue_core::{Position, Result};

use crate::plays::Plays;
use crate::raw::{MAX_LINE_BYTES, SkipReason};
use crate::sniff::norm;
use crate::source::{ColumnRef, TimeFormat, TimeIs};
use crate::table::{load_with, skip_long_lines, string_column};

/// The trimmed value of row `i` of an optional column, if it has one.
fn get(c: &Option<StringChunked>, i: usize) -> Option<&str> {
    c.as_ref().and_then(|c| c.get(i)).map(str::trim).filter(|v| !v.is_empty())
}

/// Reads one Apple Music play activity file (`plays.file`) as plays of `user`.
pub(crate) fn read_apple_music(user: &str, plays: &mut Plays<'_>) -> Result<()> {
    let file = plays.file;
    let (df, long) = load_with(file, None, true, MAX_LINE_BYTES)?;
    skip_long_lines(&long, file, MAX_LINE_BYTES, plays.skips)?;
    let names: Vec<String> = df.get_column_names().iter().map(|c| c.to_string()).collect();
    let column = |wanted: &[&str]| -> Result<Option<StringChunked>> {
        let found = wanted.iter().find_map(|w| names.iter().find(|n| norm(n) == *w));
        found.map(|n| string_column(&df, &ColumnRef::Name(n.clone()), n, file)).transpose()
    };
    let title = column(&["songname", "contentname"])?;
    let artists = [column(&["artistname"])?, column(&["containerartistname"])?];
    let start = column(&["eventstarttimestamp"])?;
    let end = column(&["eventendtimestamp"])?;
    let ms = column(&["playdurationmilliseconds"])?;
    let media = column(&["mediatype"])?;
    let event = column(&["eventtype"])?;
    for i in 0..df.height() {
        let pos = Position::Record(i as u64 + 1);
        if let Some(kind) = get(&event, i)
            && kind != "PLAY_END"
        {
            plays.skips.skip(SkipReason::NotAPlay, file, pos, || format!("Event Type {kind:?}"))?;
            continue;
        }
        if let Some(kind) = get(&media, i)
            && kind != "AUDIO"
        {
            plays.skips.skip(SkipReason::NotMusic, file, pos, || format!("Media Type {kind:?}"))?;
            continue;
        }
        let Some(song) = get(&title, i) else {
            plays.skips.skip(SkipReason::NoTrackName, file, pos, || "no Song Name".into())?;
            continue;
        };
        let Some(artist) = artists.iter().find_map(|a| get(a, i)) else {
            plays.skips.skip(SkipReason::MissingField, file, pos, || {
                format!("{song:?} has no Artist Name or Container Artist Name (Apple's exports since about 2021 leave the artist out of many rows)")
            })?;
            continue;
        };
        let Some(played) = plays.millis(get(&ms, i), "`Play Duration Milliseconds`", pos)? else {
            continue;
        };
        let (when, time_is, column) = match (get(&start, i), get(&end, i)) {
            (Some(s), _) => (s, TimeIs::Start, "`Event Start Timestamp`"),
            (None, Some(e)) => (e, TimeIs::End, "`Event End Timestamp`"),
            (None, None) => {
                plays.skips.skip(SkipReason::MissingField, file, pos, || {
                    "no Event Start Timestamp or Event End Timestamp".into()
                })?;
                continue;
            }
        };
        let Some(secs) = plays.time(when, &TimeFormat::Iso, column, pos)? else {
            continue;
        };
        plays.play(pos, user, secs, time_is, Some(played), artist, song)?;
    }
    plays.check_times(
        "`Event Start Timestamp`",
        &TimeFormat::Iso,
        "Apple's export writes ISO 8601 times; describe this file with format = \"table\" if it was converted",
    )
}
