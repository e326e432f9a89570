//! Hostile inputs: NUL and other control characters, fields and lines far past any real
//! record, symbolic-link loops, truncated files and inputs that leave nothing. Every one is
//! either a counted skip (lenient) or an error naming the file and position (strict), and the
//! account holds: records read = kept + every skip reason.

use std::io::Write;
use std::path::Path;

use segue_core::NoProgress;
use segue_sessions::{
    Format, IngestOptions, Ingested, SessionOptions, SkipReason, SourceSpec, ingest, sessionize,
};
use segue_sessions::{MAX_FIELD_BYTES, MAX_LINE_BYTES};

fn opts(strict: bool) -> IngestOptions {
    IngestOptions { strict, ..IngestOptions::default() }
}

/// A Last.fm 1K line of `user` at minute `i`.
fn line(user: &str, i: u32, artist: &str, title: &str) -> String {
    format!(
        "{user}\t{}\t\t{artist}\t\t{title}\n",
        segue_core::format_utc(1_600_000_000 + i64::from(i) * 60)
    )
}

/// Ten good plays of `u1`.
fn good_lines() -> String {
    (0..10).map(|i| line("u1", i, "Artist", &format!("Song {i}"))).collect()
}

fn read(dir: &Path, format: Format, path: &str, strict: bool) -> segue_core::Result<Ingested> {
    ingest(&[SourceSpec::new(format, [path])], dir, &opts(strict), &NoProgress)
}

/// Records read = events kept + every skip (filters included).
fn assert_accounted(out: &Ingested) {
    assert_eq!(out.records, out.events.len() as u64 + out.skips.total());
}

fn users(out: &Ingested) -> Vec<String> {
    let col = out.events.frame().unwrap().column("user").unwrap().str().unwrap().clone();
    let mut u: Vec<String> = col.iter().map(|s| s.unwrap().to_string()).collect();
    u.dedup();
    u
}

#[test]
fn nul_bytes_before_a_line_make_no_phantom_user() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = good_lines();
    text.push_str(&"\0".repeat(512));
    text.push_str(&line("u1", 20, "Artist", "After the NULs"));
    text.push_str(&line("u1", 21, "Art\0ist", "NUL inside"));
    text.push_str(&line("u1", 22, "Artist", "Bell\u{7}"));
    text.push_str(&line("u1", 23, "Artist", "C1 \u{85} control"));
    std::fs::write(dir.path().join("l.tsv"), &text).unwrap();
    let out = read(dir.path(), Format::Lastfm1k, "l.tsv", false).unwrap();
    assert_eq!(users(&out), ["u1"]);
    assert_eq!(out.events.len(), 10);
    assert_eq!(out.skips.count(SkipReason::ControlCharacter), 4);
    let ex = &out.skips.reasons[&SkipReason::ControlCharacter].examples[0];
    assert_eq!(ex.position, "line 11");
    assert!(ex.detail.contains("user id") && ex.detail.contains("U+0000"), "{ex:?}");
    assert_accounted(&out);
    // Strict mode: an error at the first, with file, line and what to do.
    let err = read(dir.path(), Format::Lastfm1k, "l.tsv", true).unwrap_err().to_string();
    assert!(err.contains("l.tsv, line 11") && err.contains("control character"), "{err}");
    assert!(err.contains("rerun without strict mode"), "{err}");
}

#[test]
fn control_characters_are_malformed_in_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.csv"),
        "user,time,artist,title\nu1,2020-01-01T00:00:00Z,A,ok\nu1,2020-01-01T00:05:00Z,A,\"line\nbreak\"\nu\u{1}2,2020-01-01T00:10:00Z,A,t\n",
    )
    .unwrap();
    let mut src = SourceSpec::new(Format::Table, ["t.csv"]);
    src.columns = Some(
        toml::from_str("user = 'user'\ntime = 'time'\nartist = 'artist'\ntitle = 'title'").unwrap(),
    );
    let out = ingest(std::slice::from_ref(&src), dir.path(), &opts(false), &NoProgress).unwrap();
    assert_eq!(out.events.len(), 1);
    assert_eq!(out.skips.count(SkipReason::ControlCharacter), 2);
    assert_accounted(&out);
    std::fs::write(
        dir.path().join("StreamingHistory0.json"),
        r#"[{"endTime": "2021-12-03 05:31", "artistName": "A\u0000B", "trackName": "T", "msPlayed": 188823},
            {"endTime": "2021-12-03 05:41", "artistName": "A", "trackName": "T", "msPlayed": 188823}]"#,
    )
    .unwrap();
    let out =
        read(dir.path(), Format::SpotifyStreamingHistory, "StreamingHistory0.json", false).unwrap();
    assert_eq!((out.events.len(), out.skips.count(SkipReason::ControlCharacter)), (1, 1));
}

#[test]
fn overlong_fields_are_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = good_lines();
    text.push_str(&line("u1", 30, &"x".repeat(MAX_FIELD_BYTES + 1), "Long artist"));
    text.push_str(&line("u1", 31, "Artist", &"é".repeat(MAX_FIELD_BYTES / 2 + 1)));
    text.push_str(&line("u1", 32, &"y".repeat(MAX_FIELD_BYTES), "At the limit"));
    std::fs::write(dir.path().join("l.tsv"), &text).unwrap();
    let out = read(dir.path(), Format::Lastfm1k, "l.tsv", false).unwrap();
    assert_eq!(out.events.len(), 11, "the field at the limit is kept");
    assert_eq!(out.skips.count(SkipReason::FieldTooLong), 2);
    let ex = &out.skips.reasons[&SkipReason::FieldTooLong].examples[0];
    assert!(ex.detail.contains(&format!("artist of {} bytes", MAX_FIELD_BYTES + 1)), "{ex:?}");
    assert!(ex.detail.len() < 200, "the message shows the start only");
    assert_accounted(&out);
}

#[test]
fn overlong_lines_are_dropped_without_holding_them() {
    let dir = tempfile::tempdir().unwrap();
    // 8 MB in one line, between good lines; the same gzipped; and a file of nothing else.
    let long = format!("u1\t2020-01-01T00:00:00Z\t\t{}\t\tT\n", "z".repeat(8 << 20));
    let good = good_lines();
    let text = format!("{}{long}{}", &good[..good.len() / 2], &good[good.len() / 2..]);
    std::fs::write(dir.path().join("l.tsv"), &text).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    std::fs::write(dir.path().join("g.tsv.gz"), gz.finish().unwrap()).unwrap();
    for file in ["l.tsv", "g.tsv.gz"] {
        let out = read(dir.path(), Format::Lastfm1k, file, false).unwrap();
        assert_eq!(out.events.len(), 10, "{file}");
        assert_eq!(out.skips.count(SkipReason::LineTooLong), 1);
        let ex = &out.skips.reasons[&SkipReason::LineTooLong].examples[0];
        assert_eq!(ex.position, "line 6", "{file}: line numbers stay the file's");
        assert!(
            ex.detail.starts_with(&format!("{} bytes (limit {MAX_LINE_BYTES})", long.len() - 1))
        );
        assert_accounted(&out);
        let err = read(dir.path(), Format::Lastfm1k, file, true).unwrap_err().to_string();
        assert!(err.contains(&format!("{file}, line 6")) && err.contains("64 KiB"), "{err}");
    }
    // Only a long line, without a line end: nothing usable, and the message says why.
    std::fs::write(dir.path().join("only.tsv"), long.trim_end()).unwrap();
    let err = read(dir.path(), Format::Lastfm1k, "only.tsv", false).unwrap_err().to_string();
    assert!(err.contains("all 1 record(s)") && err.contains("longer than 64 KiB"), "{err}");
    assert!(err.contains("only.tsv"), "{err}");
}

#[cfg(unix)]
#[test]
fn link_loops_are_read_once_and_named() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("a")).unwrap();
    std::fs::write(data.join("a/l.tsv"), good_lines()).unwrap();
    // A link back to the top (a loop), two links that point at each other, and a second link
    // to the same file.
    symlink(&data, data.join("a/up")).unwrap();
    symlink(data.join("p"), data.join("q")).unwrap();
    symlink(data.join("q"), data.join("p")).unwrap();
    symlink(data.join("a/l.tsv"), data.join("same.tsv")).unwrap();
    let out = read(dir.path(), Format::Lastfm1k, "data/**/*.tsv", false).unwrap();
    assert_eq!(out.files.len(), 1, "{:?}", out.files);
    assert_eq!(out.events.len(), 10);
    assert_eq!(out.skips.total(), 0, "nothing hidden as duplicates");
    let notes = out.notes.join("\n");
    assert!(notes.contains("already searched: not followed"), "{notes}");
    assert!(notes.contains("symbolic link loop"), "{notes}");
    assert!(notes.contains("read once"), "{notes}");
    // Without duplicate dropping the plays are not multiplied either.
    let keep_all = IngestOptions { drop_duplicates: false, ..IngestOptions::default() };
    let src = SourceSpec::new(Format::Lastfm1k, ["data/**/*.tsv", "data/same.tsv"]);
    let out = ingest(&[src], dir.path(), &keep_all, &NoProgress).unwrap();
    assert_eq!(out.events.len(), 10);
    // A path that is itself a loop says so.
    let err = read(dir.path(), Format::Lastfm1k, "data/p", false).unwrap_err().to_string();
    assert!(err.contains("data/p is a symbolic link loop"), "{err}");
    symlink(data.join("missing.tsv"), data.join("dangling.tsv")).unwrap();
    let err = read(dir.path(), Format::Lastfm1k, "data/dangling.tsv", false).unwrap_err();
    assert!(err.to_string().contains("which does not exist"), "{err}");
}

#[test]
fn empty_results_fail_where_they_are_made_and_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..240).map(|i| format!("u1\tyesterday {i}\t\tA\t\tT\n")).collect();
    std::fs::write(dir.path().join("bad.tsv"), text).unwrap();
    let err = read(dir.path(), Format::Lastfm1k, "bad.tsv", false).unwrap_err().to_string();
    assert!(
        err.contains("all 240 record(s) of 1 file(s)")
            && err.contains("bad.tsv")
            && err.contains("a timestamp that does not parse: 240")
            && err.contains("line 1"),
        "{err}"
    );
    assert!(!err.contains("Some("), "{err}");
    // Events, but every session shorter than min_session_len: sessionize says so.
    let short: String = (0..4).map(|i| line("u1", i * 200, "A", &format!("S{i}"))).collect();
    std::fs::write(dir.path().join("short.tsv"), short).unwrap();
    let out = read(dir.path(), Format::Lastfm1k, "short.tsv", false).unwrap();
    let s = sessionize(&out.events, &out.keys, &SessionOptions::default()).unwrap();
    assert_eq!(s.stats.sessions, 0);
    let err = s.require_training().unwrap_err().to_string();
    assert!(
        err.contains("sessionize kept no session")
            && err.contains("4 event(s) form 4 session(s)")
            && err.contains("min_session_len = 5")
            && err.contains("the longest has 1"),
        "{err}"
    );
    // One session per user: nothing falls in the training share.
    std::fs::write(dir.path().join("one.tsv"), good_lines()).unwrap();
    let out = read(dir.path(), Format::Lastfm1k, "one.tsv", false).unwrap();
    let s = sessionize(&out.events, &out.keys, &SessionOptions::default()).unwrap();
    let err = s.require_training().unwrap_err().to_string();
    assert!(err.contains("no session falls in the training share"), "{err}");
}

#[test]
fn a_truncated_json_file_is_one_bad_file_not_the_end_of_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let rec = |m: u32| {
        format!(
            r#"{{"endTime": "2021-12-03 05:{m:02}", "artistName": "A", "trackName": "T{m}", "msPlayed": 60000}}"#
        )
    };
    let whole = format!("[{},{},{}]", rec(10), rec(20), rec(30));
    std::fs::create_dir_all(dir.path().join("me")).unwrap();
    std::fs::write(dir.path().join("me/StreamingHistory0.json"), &whole[..whole.len() - 30])
        .unwrap();
    let other = format!("[{},{},{}]", rec(40), rec(50), rec(55));
    std::fs::write(dir.path().join("me/StreamingHistory1.json"), &other).unwrap();
    let out = read(dir.path(), Format::SpotifyStreamingHistory, "me", false).unwrap();
    assert_eq!(out.events.len(), 5);
    assert_eq!(out.skips.count(SkipReason::TruncatedFile), 1);
    let ex = &out.skips.reasons[&SkipReason::TruncatedFile].examples[0];
    assert!(ex.file.ends_with("StreamingHistory0.json"), "{ex:?}");
    assert_accounted(&out);
    let err = read(dir.path(), Format::SpotifyStreamingHistory, "me", true).unwrap_err();
    assert!(err.to_string().contains("StreamingHistory0.json, line 1"), "{err}");
}
