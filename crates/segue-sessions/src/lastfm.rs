//! The Last.fm 1K TSV reader: `user \t ISO time \t artist mbid \t artist \t track mbid \t track`,
//! no header, no quoting. Parsed in parallel chunks with strings borrowed from the file's bytes.

use std::path::Path;

use rayon::prelude::*;
use segue_core::{Position, Progress, Result};

use crate::raw::{BorrowedEvents, RawEvents, SkipReason, SkipReport};
use crate::time;

/// Smallest chunk of the parallel parse.
const CHUNK: usize = 4 << 20;

/// Largest chunk: a wave of chunks in flight (two per thread) holds their bytes and their
/// events at once, so a log of many GB is read in bounded memory.
const MAX_CHUNK: usize = 128 << 20;

/// Splits `buf` into pieces that end at line ends: about 8 per thread (few chunks keep the
/// merge of their string tables cheap), none smaller than `CHUNK` nor larger than `MAX_CHUNK`.
fn line_chunks(buf: &[u8]) -> Vec<&[u8]> {
    let chunk = CHUNK.max(buf.len() / (rayon::current_num_threads() * 8)).min(MAX_CHUNK);
    let mut out = Vec::new();
    let mut start = 0;
    while start < buf.len() {
        let mut end = (start + chunk).min(buf.len());
        if end < buf.len() {
            end = match memchr::memchr(b'\n', &buf[end..]) {
                Some(i) => end + i + 1,
                None => buf.len(),
            };
        }
        out.push(&buf[start..end]);
        start = end;
    }
    out
}

struct ChunkResult<'a> {
    events: BorrowedEvents<'a>,
    skips: SkipReport,
    lines: u64,
    /// A strict-mode error, with the line number local to the chunk.
    error: Option<(u64, segue_core::Error)>,
}

fn parse_chunk<'a>(chunk: &'a [u8], file: &Path, strict: bool, latest: i64) -> ChunkResult<'a> {
    let mut events = BorrowedEvents::default();
    let mut skips = SkipReport::new(strict);
    let mut line_no = 0u64;
    let mut error = None;
    for raw_line in chunk.split_inclusive(|&b| b == b'\n') {
        line_no += 1;
        let line = raw_line.strip_suffix(b"\n").unwrap_or(raw_line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if let Err(e) = parse_line(line, line_no, file, latest, &mut events, &mut skips) {
            error = Some((line_no, e));
            break;
        }
    }
    ChunkResult { events, skips, lines: line_no, error }
}

fn parse_line<'a>(
    line: &'a [u8],
    line_no: u64,
    file: &Path,
    latest: i64,
    events: &mut BorrowedEvents<'a>,
    skips: &mut SkipReport,
) -> Result<()> {
    let pos = Position::Line(line_no);
    let show = || String::from_utf8_lossy(&line[..line.len().min(120)]).into_owned();
    // Split on tab bytes; only the four fields used are checked for UTF-8.
    let mut fields: [&[u8]; 6] = [&[]; 6];
    let mut n = 0;
    let mut start = 0;
    for tab in memchr::memchr_iter(b'\t', line) {
        if n == 5 {
            let count = memchr::memchr_iter(b'\t', line).count() + 1;
            return skips.skip(SkipReason::TooManyFields, file, pos, || {
                format!("{count} tab-separated fields, expected 6 (user, time, artist mbid, artist, track mbid, track): {}", show())
            });
        }
        fields[n] = &line[start..tab];
        n += 1;
        start = tab + 1;
    }
    fields[n] = &line[start..];
    n += 1;
    if n < 6 {
        return skips.skip(SkipReason::TooFewFields, file, pos, || {
            format!("{n} tab-separated fields, expected 6 (user, time, artist mbid, artist, track mbid, track): {}", show())
        });
    }
    let text = |b: &'a [u8]| std::str::from_utf8(b);
    let (Ok(user), Ok(ts), Ok(artist), Ok(title)) =
        (text(fields[0]), text(fields[1]), text(fields[3]), text(fields[5]))
    else {
        return skips.skip(SkipReason::NotUtf8, file, pos, show);
    };
    if let Some((reason, detail)) = crate::raw::check_identity(user, artist, title) {
        return skips.skip(reason, file, pos, || detail);
    }
    if user.trim().is_empty() {
        return skips.skip(SkipReason::EmptyUser, file, pos, show);
    }
    let Some(secs) = time::parse_iso(ts) else {
        return skips.skip(SkipReason::BadTimestamp, file, pos, || {
            format!("time {ts:?}, expected YYYY-MM-DDTHH:MM:SSZ")
        });
    };
    if let Some(reason) = time::out_of_range(secs, latest) {
        return skips.skip(reason, file, pos, || ts.to_string());
    }
    if crate::raw::is_blank(artist) || crate::raw::is_blank(title) {
        return skips.skip(SkipReason::EmptyArtistOrTitle, file, pos, show);
    }
    events.push(user, secs, artist, title, line_no);
    Ok(())
}

/// Reads one Last.fm 1K TSV file (already decompressed) into `out`. Chunks are parsed in
/// parallel a wave at a time (two per thread); after each wave `release` is told how many
/// leading bytes are no longer needed (a memory-mapped file gives their pages back).
#[allow(clippy::too_many_arguments)]
pub fn read_lastfm_1k(
    bytes: &[u8],
    file: &Path,
    strict: bool,
    latest: i64,
    out: &mut RawEvents,
    skips: &mut SkipReport,
    progress: &dyn Progress,
    release: &dyn Fn(usize),
) -> Result<()> {
    let chunks = line_chunks(bytes);
    let wave = rayon::current_num_threads().max(1) * 2;
    let mut line_offset = 0u64;
    let mut consumed = 0usize;
    for group in chunks.chunks(wave) {
        let results: Vec<ChunkResult<'_>> = group
            .par_iter()
            .map(|c| {
                let r = parse_chunk(c, file, strict, latest);
                progress.advance(c.len() as u64);
                r
            })
            .collect();
        for r in results {
            if let Some((local, e)) = r.error {
                return Err(relocate(e, line_offset + local));
            }
            let mut chunk_skips = r.skips;
            for c in chunk_skips.reasons.values_mut() {
                for ex in &mut c.examples {
                    if let Some(n) =
                        ex.position.strip_prefix("line ").and_then(|n| n.parse::<u64>().ok())
                    {
                        ex.position = format!("line {}", n + line_offset);
                    }
                }
            }
            skips.merge(chunk_skips);
            out.absorb(r.events, line_offset);
            line_offset += r.lines;
        }
        consumed += group.iter().map(|c| c.len()).sum::<usize>();
        release(consumed);
    }
    Ok(())
}

/// Replaces a chunk-local line number by the file's.
fn relocate(e: segue_core::Error, line: u64) -> segue_core::Error {
    match e {
        segue_core::Error::Input { file, position: Position::Line(_), message } => {
            segue_core::Error::Input { file, position: Position::Line(line), message }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use segue_core::NoProgress;

    fn parse(text: &str, strict: bool) -> Result<(RawEvents, SkipReport)> {
        let mut ev = RawEvents::default();
        let mut sk = SkipReport::new(strict);
        read_lastfm_1k(
            text.as_bytes(),
            Path::new("x.tsv"),
            strict,
            time::latest_plausible(),
            &mut ev,
            &mut sk,
            &NoProgress,
            &|_| {},
        )?;
        Ok((ev, sk))
    }

    #[test]
    fn reads_fields_and_counts_bad_lines() {
        let text = "u1\t2009-05-04T23:08:57Z\t\tA\t\tT\n\
                    u1\t2009-05-04T23:10:00Z\tm\tA\tm\tT2\textra\n\
                    u2\tnot a time\t\tA\t\tT\n\
                    u2\t1999-12-31T23:59:59Z\t\tA\t\tT\n\
                    u2\t2009-05-04T23:08:57Z\t\tA\n\
                    \n\
                    u3\t2010-01-01T00:00:00Z\t\tB\t\tT\r\n";
        let (ev, sk) = parse(text, false).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev.users.strings().len(), 2);
        assert_eq!(&*ev.tracks.pairs()[ev.track[1] as usize].1, "T");
        assert_eq!(sk.count(SkipReason::TooManyFields), 1);
        assert_eq!(sk.count(SkipReason::BadTimestamp), 1);
        assert_eq!(sk.count(SkipReason::TimestampBefore2000), 1);
        assert_eq!(sk.count(SkipReason::TooFewFields), 1);
        assert_eq!(sk.reasons[&SkipReason::TooFewFields].examples[0].position, "line 5");
        let err = parse(text, true).unwrap_err().to_string();
        assert!(err.contains("x.tsv, line 2") && err.contains("expected 6"), "{err}");
    }

    #[test]
    fn line_numbers_survive_chunking() {
        let good = "u\t2009-05-04T23:08:57Z\t\tA\t\tT\n";
        let n = CHUNK / good.len() * 3;
        let mut text = good.repeat(n);
        text.push_str("u\tbad\t\tA\t\tT\n");
        let (ev, sk) = parse(&text, false).unwrap();
        assert_eq!(ev.len(), n);
        assert_eq!(
            sk.reasons[&SkipReason::BadTimestamp].examples[0].position,
            format!("line {}", n + 1)
        );
        let err = parse(&text, true).unwrap_err().to_string();
        assert!(err.contains(&format!("line {}", n + 1)), "{err}");
    }
}
