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
/// use segue_sessions::time::parse_iso;
/// assert_eq!(parse_iso("2009-05-04T23:08:57Z"), Some(1_241_478_537));
/// assert_eq!(parse_iso("2009-05-04 23:08"), Some(1_241_478_480));
/// assert_eq!(parse_iso("2009-05-05T01:08:57+02:00"), Some(1_241_478_537));
/// assert_eq!(parse_iso("2009-02-30T00:00:00Z"), None);
/// ```
pub fn parse_iso(s: &str) -> Option<i64> {
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
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (oh, om) = match tail {
                [a, b, b':', c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                [a, b, c, d] => (digits(&[*a, *b])?, digits(&[*c, *d])?),
                [a, b] => (digits(&[*a, *b])?, 0),
                _ => return None,
            };
            let o = (oh * 3600 + om * 60) as i64;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    Some(checked(y, mo, d, h, mi, sec)? - offset)
}

/// Parses Last.fm's export style `DD Mon YYYY, HH:MM` (the comma optional), in UTC.
///
/// ```
/// use segue_sessions::time::parse_day_month_name;
/// assert_eq!(parse_day_month_name("04 May 2009, 23:08"), Some(1_241_478_480));
/// ```
pub fn parse_day_month_name(s: &str) -> Option<i64> {
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
}
