//! Records to events: what every reader does with a record's fields once it has them.

use std::path::Path;

use segue_core::{Error, Position, Result};

use crate::raw::{RawEvents, SkipReason, SkipReport, is_blank};
use crate::source::{TimeFormat, TimeIs};
use crate::spotify::ReadSettings;
use crate::time::Zone;

/// The path of one file's records to events: time parsing, played time, the filters and
/// checks, every record that does not become an event counted.
pub(crate) struct Plays<'a> {
    pub file: &'a Path,
    pub settings: ReadSettings,
    pub zone: Zone,
    pub out: &'a mut RawEvents,
    pub skips: &'a mut SkipReport,
    /// Records whose time was parsed, those that failed, and the first failing values.
    times_tried: u64,
    times_failed: u64,
    bad_times: Vec<String>,
}

impl<'a> Plays<'a> {
    /// The plays of `file`; times without an offset are read in `zone`.
    pub fn new(
        file: &'a Path,
        settings: ReadSettings,
        zone: Zone,
        out: &'a mut RawEvents,
        skips: &'a mut SkipReport,
    ) -> Self {
        Plays {
            file,
            settings,
            zone,
            out,
            skips,
            times_tried: 0,
            times_failed: 0,
            bad_times: Vec::new(),
        }
    }

    /// Reads a time value; a failure is counted (with the first examples kept for
    /// [`Plays::check_times`]) and skipped.
    pub fn time(
        &mut self,
        value: &str,
        format: &TimeFormat,
        column: &str,
        pos: Position,
    ) -> Result<Option<i64>> {
        self.times_tried += 1;
        let stamp = format.parse(value).and_then(|s| s.utc(self.zone));
        if stamp.is_none() {
            self.times_failed += 1;
            if self.bad_times.len() < 3 {
                self.bad_times.push(value.to_string());
            }
            self.skips.skip(SkipReason::BadTimestamp, self.file, pos, || {
                format!("{column} = {value:?}, expected {}", format.describe())
            })?;
        }
        Ok(stamp)
    }

    /// Milliseconds played: `None` (and a counted skip) when the value is not a non-negative
    /// number.
    pub fn millis(
        &mut self,
        value: Option<&str>,
        column: &str,
        pos: Position,
    ) -> Result<Option<i64>> {
        match value.and_then(|v| v.trim().parse::<f64>().ok()).filter(|v| *v >= 0.0) {
            Some(v) => Ok(Some(v as i64)),
            None => {
                self.skips.skip(SkipReason::MissingField, self.file, pos, || {
                    format!(
                        "{column} = {:?}, expected milliseconds (a number, 0 or more)",
                        value.unwrap_or("")
                    )
                })?;
                Ok(None)
            }
        }
    }

    /// A play of `played` ms (when known) at `time` (its start or end): an event, or a counted
    /// skip (short, out of range, bad identity, blank names).
    #[allow(clippy::too_many_arguments)]
    pub fn play(
        &mut self,
        pos: Position,
        user: &str,
        time: i64,
        time_is: TimeIs,
        played: Option<i64>,
        artist: &str,
        title: &str,
    ) -> Result<()> {
        let (file, min) = (self.file, self.settings.min_ms_played);
        if played.is_some_and(|p| (p as u64) < min) {
            return self.skips.skip(SkipReason::ShortPlay, file, pos, || {
                format!("{} ms played, minimum {min}", played.unwrap_or(0))
            });
        }
        let start = match (time_is, played) {
            (TimeIs::End, Some(p)) => (time * 1000 - p).div_euclid(1000),
            _ => time,
        };
        if let Some(reason) = crate::time::out_of_range(start, self.settings.latest) {
            return self.skips.skip(reason, file, pos, || crate::time::format_utc(start));
        }
        if let Some((reason, detail)) = crate::raw::check_identity(user, artist, title) {
            return self.skips.skip(reason, file, pos, || detail);
        }
        if user.trim().is_empty() {
            return self.skips.skip(SkipReason::EmptyUser, file, pos, String::new);
        }
        if is_blank(artist) || is_blank(title) {
            return self.skips.skip(SkipReason::EmptyArtistOrTitle, file, pos, || {
                format!("artist {artist:?}, title {title:?}")
            });
        }
        self.out.push_at(user, start, artist, title, pos);
        Ok(())
    }

    /// A time column that never parsed is a mapping to fix, not bad records: an error that
    /// names the column, shows values, and says which key to set.
    pub fn check_times(&self, column: &str, format: &TimeFormat, key_hint: &str) -> Result<()> {
        if self.times_tried == 0 || self.times_failed < self.times_tried {
            return Ok(());
        }
        Err(Error::input(
            self.file,
            Position::File,
            format!(
                "no value of the time column {column} parses ({} rows; e.g. {}); tried {}. {key_hint}",
                self.times_tried,
                self.bad_times.iter().map(|v| format!("{v:?}")).collect::<Vec<_>>().join(", "),
                format.describe(),
            ),
        ))
    }
}
