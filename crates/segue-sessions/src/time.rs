//! Timestamps as UTC seconds since the Unix epoch, parsed without allocation.

/// 2000-01-01T00:00:00Z: events before it are rejected as implausible for a streaming log.
pub const EARLIEST: i64 = 946_684_800;

/// Days from 1970-01-01 to a civil date (proleptic Gregorian), after Howard Hinnant.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub use segue_core::format_utc;

fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() {
        return None;
    }
    let mut v = 0u32;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn month_from_name(b: &[u8]) -> Option<u32> {
    const NAMES: [&[u8; 3]; 12] = [
        b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov",
        b"dec",
    ];
    if b.len() < 3 {
        return None;
    }
    let lower = [b[0].to_ascii_lowercase(), b[1].to_ascii_lowercase(), b[2].to_ascii_lowercase()];
    NAMES.iter().position(|n| **n == lower).map(|i| i as u32 + 1)
}

fn checked(y: u32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    let dim = match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => return None,
    };
    if d == 0 || d > dim || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    Some(days_from_civil(y as i64, mo, d) * 86_400 + (h * 3600 + mi * 60 + s.min(59)) as i64)
}

/// Parses an ISO-8601-like UTC time: `YYYY-MM-DD[T| ]HH:MM[:SS[.fff]][Z|+HH:MM|+HHMM|-HH:MM]`.
/// Fractions are dropped (floor); an offset is applied so the result is UTC.
///
/// ```
/// use segue_sessions::parse_iso;
/// assert_eq!(parse_iso("2009-05-04T23:08:57Z"), Some(1_241_478_537));
/// assert_eq!(parse_iso("2009-05-04 23:08"), Some(1_241_478_480));
/// assert_eq!(parse_iso("2009-05-05T01:08:57+02:00"), Some(1_241_478_537));
/// assert_eq!(parse_iso("2009-02-30T00:00:00Z"), None);
/// ```
pub fn parse_iso(s: &str) -> Option<i64> {
    parse_iso_stamp(s).map(|t| t.utc(Zone::Utc).expect("UTC maps every time"))
}

/// A time as written: with its offset (or as a count since the epoch) it is one instant;
/// without, it is a wall-clock reading whose zone the source must say ([`Zone`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    /// UTC epoch seconds.
    Instant(i64),
    /// Epoch seconds of the wall-clock reading taken as if it were UTC.
    Local(i64),
}

impl Stamp {
    /// The instant, reading a wall-clock time in `zone`.
    pub fn utc(self, zone: Zone) -> Option<i64> {
        match self {
            Stamp::Instant(s) => Some(s),
            Stamp::Local(s) => zone.local_to_utc(s),
        }
    }
}

/// [`parse_iso`] keeping apart a time written with an offset (`Z`, `+02:00`) from one without.
pub fn parse_iso_stamp(s: &str) -> Option<Stamp> {
    let b = s.trim().as_bytes();
    if b.len() < 16 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b' ') {
        return None;
    }
    let y = digits(&b[0..4])?;
    let mo = digits(&b[5..7])?;
    let d = digits(&b[8..10])?;
    if b[13] != b':' {
        return None;
    }
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let mut rest = &b[16..];
    let mut sec = 0;
    if rest.first() == Some(&b':') {
        sec = digits(rest.get(1..3)?)?;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            rest = &rest[1 + n..];
        }
    }
    let offset = match rest {
        [] => None,
        [b'Z'] | [b'z'] => Some(0),
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (oh, om) = match tail {
                [a, b, b':', c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                [a, b, c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                [a, b] => (digits(&[*a, *b])?, 0),
                _ => return None,
            };
            let o = (oh * 3600 + om * 60) as i64;
            Some(if *sign == b'+' { o } else { -o })
        }
        _ => return None,
    };
    let wall = checked(y, mo, d, h, mi, sec)?;
    Some(match offset {
        Some(o) => Stamp::Instant(wall - o),
        None => Stamp::Local(wall),
    })
}

/// Parses Last.fm's export style `DD Mon YYYY, HH:MM` (the comma optional), in UTC.
pub fn parse_day_month_name(s: &str) -> Option<i64> {
    parse_day_month_name_wall(s)
}

/// The wall-clock seconds of `DD Mon YYYY[,] HH:MM[:SS]`, as if UTC.
fn parse_day_month_name_wall(s: &str) -> Option<i64> {
    let mut parts = s.trim().split([' ', ',']).filter(|p| !p.is_empty());
    let d = digits(parts.next()?.as_bytes())?;
    let mo = month_from_name(parts.next()?.as_bytes())?;
    let y = digits(parts.next()?.as_bytes())?;
    let hm = parts.next()?;
    let (h, m) = hm.split_once(':')?;
    let (m, sec) = match m.split_once(':') {
        Some((m, s)) => (m, digits(s.as_bytes())?),
        None => (m, 0),
    };
    if parts.next().is_some() {
        return None;
    }
    checked(y, mo, d, digits(h.as_bytes())?, digits(m.as_bytes())?, sec)
}

/// Parses an integer count of seconds (or milliseconds) since the epoch.
pub fn parse_unix(s: &str, millis: bool) -> Option<i64> {
    let v: i64 = s.trim().parse().ok()?;
    Some(if millis { v.div_euclid(1000) } else { v })
}

/// Which zone a wall-clock time (one written without an offset) is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// Coordinated Universal Time (what every export segue knows uses).
    #[default]
    Utc,
    /// A fixed offset east of UTC, in seconds.
    Fixed(i32),
    /// A zone of the IANA database (`Europe/Berlin`), daylight saving time included.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Parses `UTC`, a fixed offset (`+02:00`, `-0530`, `+01`) or an IANA zone name.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") {
            return Ok(Zone::Utc);
        }
        if let [sign @ (b'+' | b'-'), tail @ ..] = t.as_bytes() {
            let (h, m) = match tail {
                [a, b, b':', c, d] => (digits(&[*a, *b]), digits(&[*c, *d])),
                [a, b, c, d] => (digits(&[*a, *b]), digits(&[*c, *d])),
                [a, b] => (digits(&[*a, *b]), Some(0)),
                _ => (None, None),
            };
            if let (Some(h), Some(m)) = (h, m)
                && h <= 14
                && m < 60
            {
                let o = (h * 3600 + m * 60) as i32;
                return Ok(Zone::Fixed(if *sign == b'+' { o } else { -o }));
            }
            return Err(format!("`{t}` is not an offset: write it as +HH:MM, e.g. +02:00"));
        }
        t.parse::<chrono_tz::Tz>().map(Zone::Named).map_err(|_| {
            format!(
                "`{t}` is neither UTC, an offset (+02:00) nor an IANA time zone name (e.g. Europe/Berlin, America/New_York)"
            )
        })
    }

    /// The UTC instant of a wall-clock reading (`wall` = its seconds taken as if UTC). In a
    /// named zone, a reading that occurs twice (the hour clocks go back) is the first of the two;
    /// one that never occurs (the hour clocks skip) is read with the offset in force before it.
    pub fn local_to_utc(self, wall: i64) -> Option<i64> {
        use chrono::TimeZone;
        match self {
            Zone::Utc => Some(wall),
            Zone::Fixed(o) => Some(wall - o as i64),
            Zone::Named(tz) => {
                let naive = chrono::DateTime::from_timestamp(wall, 0)?.naive_utc();
                match tz.from_local_datetime(&naive) {
                    chrono::LocalResult::Single(t) => Some(t.timestamp()),
                    chrono::LocalResult::Ambiguous(first, _) => Some(first.timestamp()),
                    chrono::LocalResult::None => {
                        // In a gap: the offset of the moment just before it.
                        let before =
                            tz.offset_from_utc_datetime(&(naive - chrono::TimeDelta::hours(3)));
                        use chrono::Offset;
                        Some(wall - before.fix().local_minus_utc() as i64)
                    }
                }
            }
        }
    }
}

/// Epoch seconds written as digits: milliseconds when the number is too large to be seconds of
/// a plausible year (above 10^11, i.e. after the year 5138), else seconds.
fn parse_epoch_digits(s: &str) -> Option<i64> {
    let t = s.trim();
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: i64 = int.parse().ok()?;
    Some(if v >= 100_000_000_000 { v.div_euclid(1000) } else { v })
}

/// Every time form segue reads without being told which: epoch seconds or milliseconds (by
/// magnitude), ISO 8601 with or without seconds, fraction and offset, and Last.fm's
/// `DD Mon YYYY[,] HH:MM[:SS]`. Times without an offset are wall-clock ([`Stamp::Local`]).
pub fn parse_any(s: &str) -> Option<Stamp> {
    if let Some(v) = parse_epoch_digits(s) {
        return Some(Stamp::Instant(v));
    }
    if let Some(t) = parse_iso_stamp(s) {
        return Some(t);
    }
    parse_day_month_name_wall(s).map(Stamp::Local)
}

/// Checks a strftime-style pattern (`%d/%m/%Y %H:%M`): it must hold a `%` field and no
/// unknown one.
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    if !pattern.contains('%') {
        return Err(format!("`{pattern}` has no % field"));
    }
    if StrftimeItems::new(pattern).any(|i| matches!(i, Item::Error)) {
        return Err(format!(
            "`{pattern}` is not a valid strftime pattern (fields such as %Y %m %d %H %M %S %b %z)"
        ));
    }
    Ok(())
}

/// Parses `s` with a strftime-style pattern. A pattern with an offset field (`%z`, `%:z`)
/// gives an instant; one without gives a wall-clock time; a date alone is its midnight.
pub fn parse_pattern(s: &str, pattern: &str) -> Option<Stamp> {
    let s = s.trim();
    if let Ok(t) = chrono::DateTime::parse_from_str(s, pattern) {
        return Some(Stamp::Instant(t.timestamp()));
    }
    if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, pattern) {
        return Some(Stamp::Local(t.and_utc().timestamp()));
    }
    let d = chrono::NaiveDate::parse_from_str(s, pattern).ok()?;
    Some(Stamp::Local(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp()))
}

/// Why a timestamp is unusable, or `None` when it lies between 2000 and `latest`.
pub fn out_of_range(secs: i64, latest: i64) -> Option<crate::SkipReason> {
    if secs < EARLIEST {
        Some(crate::SkipReason::TimestampBefore2000)
    } else if secs > latest {
        Some(crate::SkipReason::TimestampInFuture)
    } else {
        None
    }
}

/// Now plus a day of slack for clock skew, in epoch seconds: later events are "in the future".
pub fn latest_plausible() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(i64::MAX / 2);
    now + 86_400
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_forms_parse() {
        assert_eq!(parse_day_month_name("04 May 2009, 23:08"), Some(1_241_478_480));
        assert_eq!(Zone::parse("+02:00"), Ok(Zone::Fixed(7200)));
        assert!(Zone::parse("Europe/Berlin").is_ok());
        assert!(Zone::parse("Mars/Olympus").is_err());
        assert_eq!(parse_any("1241478537"), Some(Stamp::Instant(1_241_478_537)));
        assert_eq!(parse_any("1241478537000"), Some(Stamp::Instant(1_241_478_537)));
        assert_eq!(parse_any("2009-05-04T23:08:57Z"), Some(Stamp::Instant(1_241_478_537)));
        assert_eq!(parse_any("04 May 2009, 23:08"), Some(Stamp::Local(1_241_478_480)));
        assert_eq!(parse_any("yesterday"), None);
    }

    proptest::proptest! {
        #[test]
        fn iso_times_round_trip(secs in EARLIEST..4_102_444_800i64) {
            proptest::prop_assert_eq!(parse_iso(&format_utc(secs)), Some(secs));
        }
    }

    #[test]
    fn civil_round_trip() {
        for secs in [0, EARLIEST, 1_241_478_537, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_iso(&format_utc(secs)), Some(secs));
        }
        assert_eq!(format_utc(EARLIEST), "2000-01-01T00:00:00Z");
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2009-05-04",
            "2009-13-01T00:00:00Z",
            "2009-05-04T24:00:00Z",
            "abcd-ef-ghTij:kl",
            "2009-05-04T23:08:57Q",
            "2009-05-04T23:08:57.Z",
        ] {
            assert_eq!(parse_iso(s), None, "{s}");
        }
        assert_eq!(parse_iso("2020-02-29T12:00:00.999Z"), parse_iso("2020-02-29T12:00:00Z"));
        assert_eq!(parse_day_month_name("31 Feb 2020, 10:00"), None);
        assert_eq!(parse_unix("1700000000123", true), Some(1_700_000_000));
    }

    #[test]
    fn stamps_keep_the_offset_apart() {
        assert_eq!(parse_iso_stamp("2021-01-31 14:05"), Some(Stamp::Local(1_612_101_900)));
        assert_eq!(parse_iso_stamp("2021-01-31T14:05:00Z"), Some(Stamp::Instant(1_612_101_900)));
        assert_eq!(
            parse_iso_stamp("2021-01-31T15:05:00.250+01:00"),
            Some(Stamp::Instant(1_612_101_900))
        );
        assert_eq!(parse_any("1612101900.5"), Some(Stamp::Instant(1_612_101_900)));
        assert_eq!(parse_any("31 Jan 2021 14:05"), Some(Stamp::Local(1_612_101_900)));
        assert_eq!(parse_any("31 Jan 2021, 14:05:30"), Some(Stamp::Local(1_612_101_930)));
        assert_eq!(parse_any("12.5.2021"), None);
    }

    #[test]
    fn zones_read_wall_clock_times() {
        let wall = parse_iso_stamp("2021-07-01 12:00").unwrap();
        assert_eq!(wall.utc(Zone::Utc), parse_iso("2021-07-01T12:00:00Z"));
        assert_eq!(wall.utc(Zone::parse("+02:00").unwrap()), parse_iso("2021-07-01T10:00:00Z"));
        let berlin = Zone::parse("Europe/Berlin").unwrap();
        // Summer time (+02:00) and winter time (+01:00).
        assert_eq!(wall.utc(berlin), parse_iso("2021-07-01T10:00:00Z"));
        let winter = parse_iso_stamp("2021-01-01 12:00").unwrap();
        assert_eq!(winter.utc(berlin), parse_iso("2021-01-01T11:00:00Z"));
        // 02:30 on 2021-10-31 happens twice in Berlin: the first (summer time) is taken.
        let twice = parse_iso_stamp("2021-10-31 02:30").unwrap();
        assert_eq!(twice.utc(berlin), parse_iso("2021-10-31T00:30:00Z"));
        // 02:30 on 2021-03-28 never happens: read with the offset before the gap (+01:00).
        let never = parse_iso_stamp("2021-03-28 02:30").unwrap();
        assert_eq!(never.utc(berlin), parse_iso("2021-03-28T01:30:00Z"));
        // An instant ignores the zone.
        let instant = parse_iso_stamp("2021-07-01T12:00:00Z").unwrap();
        assert_eq!(instant.utc(berlin), parse_iso("2021-07-01T12:00:00Z"));
        assert!(Zone::parse("+25:00").is_err());
    }

    #[test]
    fn strftime_patterns() {
        assert!(check_pattern("%d/%m/%Y %H:%M").is_ok());
        assert!(check_pattern("%Q").is_err());
        assert!(check_pattern("dd/mm/yyyy").is_err());
        assert_eq!(
            parse_pattern("31/01/2021 14:05", "%d/%m/%Y %H:%M"),
            Some(Stamp::Local(1_612_101_900))
        );
        assert_eq!(
            parse_pattern("31/01/2021 15:05 +0100", "%d/%m/%Y %H:%M %z"),
            Some(Stamp::Instant(1_612_101_900))
        );
        assert_eq!(parse_pattern("2021-01-31", "%Y-%m-%d"), Some(Stamp::Local(1_612_051_200)));
        assert_eq!(parse_pattern("31/01/2021", "%Y-%m-%d"), None);
    }
}
