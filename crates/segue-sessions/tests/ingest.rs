//! End to end: listening files -> ingest -> sessionize, for every input format, every kind of
//! bad input, and the built-in data against the pandas peer's Table I.

use std::io::Write;
use std::path::{Path, PathBuf};

use segue_core::NoProgress;
use segue_sessions::{
    ColumnMap, Format, IngestOptions, SessionOptions, SkipReason, SourceSpec, TimeFormat, TimeIs,
    ingest, sessionize,
};

// Small listening logs written in the Last.fm 1K format.

/// One play: user, start time (epoch seconds), artist, title.
type Play = (&'static str, i64, String, String);

/// 2020-01-01T00:00:00Z.
const T0: i64 = 1_577_836_800;

/// Formats epoch seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn iso(secs: i64) -> String {
    segue_core::format_utc(secs)
}

/// Writes plays as a Last.fm 1K TSV file.
fn write_lastfm(path: &Path, plays: &[Play]) -> PathBuf {
    let mut s = String::new();
    for (u, t, a, title) in plays {
        s += &format!("{u}\t{}\t\t{a}\t\t{title}\n", iso(*t));
    }
    std::fs::write(path, s).unwrap();
    path.to_path_buf()
}

/// A user's sessions: `sessions` sessions of `len` plays 3 minutes apart, 5 hours between
/// sessions, tracks drawn round-robin from `catalogue` titles of one artist.
fn sessions_of(
    user: &'static str,
    sessions: usize,
    len: usize,
    catalogue: usize,
    start: i64,
) -> Vec<Play> {
    let mut out = Vec::new();
    let mut k = 0;
    for s in 0..sessions {
        for i in 0..len {
            let t = start + s as i64 * 5 * 3600 + i as i64 * 180;
            out.push((user, t, "Artist".to_string(), format!("Song {}", k % catalogue)));
            k += 1;
        }
    }
    out
}

fn lenient() -> IngestOptions {
    IngestOptions::default()
}

fn strict() -> IngestOptions {
    IngestOptions { strict: true, ..IngestOptions::default() }
}

fn run(
    sources: &[SourceSpec],
    base: &Path,
    opts: &IngestOptions,
) -> segue_core::Result<segue_sessions::Ingested> {
    ingest(sources, base, opts, &NoProgress)
}

#[test]
fn sessions_split_and_vocab_follow_the_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let mut plays = sessions_of("alice", 10, 6, 8, T0);
    plays.extend(sessions_of("bob", 3, 5, 4, T0));
    // A short session (4 plays) for bob, dropped; then one exactly 2 h after the previous play
    // (a new session) and one 1 s less than 2 h after it (the same session).
    let base = T0 + 100 * 3600;
    for i in 0..4 {
        plays.push(("bob", base + i * 60, "Other".into(), format!("Short {i}")));
    }
    let b2 = base + 50 * 3600;
    for i in 0..3 {
        plays.push(("bob", b2 + i * 60, "Gap".into(), format!("G{i}")));
    }
    plays.push(("bob", b2 + 2 * 60 + 7199, "Gap".into(), "G3".into()));
    plays.push(("bob", b2 + 2 * 60 + 7199 + 7200, "Gap".into(), "G4".into()));
    // An exact duplicate of bob's first play, and the same time with another track (kept).
    plays.push(("bob", T0, "Artist".into(), "Song 0".into()));
    plays.push(("bob", T0, "Artist".into(), "Other song".into()));
    write_lastfm(&dir.path().join("l.tsv"), &plays);

    let src = SourceSpec::new(Format::Lastfm1k, ["l.tsv"]);
    let ing = run(&[src], dir.path(), &lenient()).unwrap();
    assert_eq!(ing.skips.count(SkipReason::DuplicateEvent), 1);
    let opts = SessionOptions { validation_share: 0.0, ..SessionOptions::default() };
    let out = sessionize(&ing.events, &ing.keys, &opts).unwrap();
    let st = &out.stats;
    // alice: 10 sessions; bob: 3 regular (first one with 6 plays), short dropped, G0..G3 = 4 (dropped), G4 alone (dropped).
    assert_eq!(st.users, 2);
    assert_eq!(st.sessions, 13);
    assert_eq!(st.sessions_dropped_short, 3);
    assert_eq!(st.events, 60 + 16);
    let bob = st.per_user.iter().find(|u| u.user == "bob").unwrap();
    assert_eq!((bob.train_sessions, bob.test_sessions), (2, 1)); // floor(0.7 * 3) = 2
    let alice = st.per_user.iter().find(|u| u.user == "alice").unwrap();
    assert_eq!((alice.train_sessions, alice.test_sessions), (7, 3));
    // Training tracks come first, most played first.
    let seen = out.tracks.column("seen_in_train").unwrap().bool().unwrap().clone();
    let first_unseen = seen.iter().position(|s| s == Some(false)).unwrap_or(out.tracks.height());
    assert_eq!(first_unseen, st.train_tracks);
    assert!(seen_is_prefix(&out.tracks));
    let counts = out.tracks.column("train_count").unwrap().u32().unwrap().clone();
    let v: Vec<u32> = counts.iter().map(|c| c.unwrap()).collect();
    assert!(v[..st.train_tracks].windows(2).all(|w| w[0] >= w[1]));

    let with_valid =
        sessionize(&ing.events, &ing.keys, &SessionOptions { validation_share: 0.3, ..opts })
            .unwrap();
    let alice = with_valid.stats.per_user.iter().find(|u| u.user == "alice").unwrap();
    assert_eq!((alice.train_sessions, alice.valid_sessions, alice.test_sessions), (5, 2, 3));
}

fn seen_is_prefix(tracks: &segue_sessions::DataFrame) -> bool {
    let seen: Vec<bool> = tracks
        .column("seen_in_train")
        .unwrap()
        .bool()
        .unwrap()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    seen.windows(2).all(|w| w[0] || !w[1])
}

#[test]
fn normalised_identity_merges_spellings() {
    let dir = tempfile::tempdir().unwrap();
    let mut plays = Vec::new();
    for (i, (a, t)) in [
        ("The Beatles", "Help!"),
        (" the  BEATLES ", "help!"),
        ("ＴＨＥ BEATLES", "Help!"),
        ("Sigur Rós", "Hoppípolla"),
        ("sigur rós", "HOPPÍPOLLA"),
    ]
    .iter()
    .enumerate()
    {
        plays.push(("u", T0 + i as i64 * 60, a.to_string(), t.to_string()));
    }
    write_lastfm(&dir.path().join("l.tsv"), &plays);
    let ing = run(&[SourceSpec::new(Format::Lastfm1k, ["l.tsv"])], dir.path(), &lenient()).unwrap();
    assert_eq!(ing.keys.height(), 2);
    let out = sessionize(&ing.events, &ing.keys, &SessionOptions::default()).unwrap();
    assert_eq!(out.stats.unique_songs, 2);
    assert!((out.stats.repeat_share - 3.0 / 5.0).abs() < 1e-12);
}

#[test]
fn empty_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.tsv"), "").unwrap();
    let err = run(&[SourceSpec::new(Format::Lastfm1k, ["empty.tsv"])], dir.path(), &lenient())
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty.tsv") && err.contains("empty"), "{err}");
    std::fs::create_dir(dir.path().join("u")).unwrap();
    std::fs::write(dir.path().join("u/StreamingHistory0.json"), "\n").unwrap();
    let err =
        run(&[SourceSpec::new(Format::SpotifyStreamingHistory, ["u"])], dir.path(), &lenient())
            .unwrap_err()
            .to_string();
    assert!(err.contains("StreamingHistory0.json") && err.contains("empty"), "{err}");
}

#[test]
fn folder_without_matching_files_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("export")).unwrap();
    std::fs::write(dir.path().join("export/notes.txt"), "hi").unwrap();
    let err = run(
        &[SourceSpec::new(Format::SpotifyStreamingHistory, ["export"])],
        dir.path(),
        &lenient(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("export") && err.contains("StreamingHistory*.json"), "{err}");
    let err = run(&[SourceSpec::new(Format::Lastfm1k, ["nothing-*.tsv"])], dir.path(), &lenient())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no file matches") && err.contains("nothing-*.tsv"), "{err}");
    let err = run(&[SourceSpec::new(Format::Lastfm1k, ["missing.tsv"])], dir.path(), &lenient())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing.tsv"), "{err}");
}

fn table_source(path: &str, artist_col: &str) -> SourceSpec {
    let mut s = SourceSpec::new(Format::Table, [path]);
    s.columns = Some(ColumnMap {
        user: Some("who".into()),
        time_format: TimeFormat::Iso,
        time_is: TimeIs::End,
        ms_played: Some("ms".into()),
        ..ColumnMap::new("when", artist_col, "song")
    });
    s
}

#[test]
fn column_mapping_reads_tables_and_names_a_wrong_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("who,when,ms,band,song\n");
    for i in 0..6 {
        csv += &format!("u,{},{},\"Band, The\",Song {i}\n", iso(T0 + 240 * i), 200_000);
    }
    csv += &format!("u,{},1000,Band,Skipped\n", iso(T0 + 5000));
    std::fs::write(dir.path().join("plays.csv"), &csv).unwrap();
    let ing = run(&[table_source("plays.csv", "band")], dir.path(), &lenient()).unwrap();
    assert_eq!(ing.events.len(), 6);
    assert_eq!(ing.skips.count(SkipReason::ShortPlay), 1);
    // The time is the end of the play: the start is 200 s earlier.
    let ts = ing.events.frame().unwrap().column("ts").unwrap().i64().unwrap().get(0).unwrap();
    assert_eq!(ts, T0 - 200);

    let err = run(&[table_source("plays.csv", "artist")], dir.path(), &lenient())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("plays.csv") && err.contains("`artist`") && err.contains("`band`"),
        "{err}"
    );
}

#[test]
fn non_utf8_bytes_are_skipped_or_named() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    for i in 0..5 {
        bytes.extend(format!("u\t{}\t\tA\t\tT{i}\n", iso(T0 + i * 60)).as_bytes());
    }
    bytes.extend(b"u\t2020-01-01T01:00:00Z\t\tBad \xff\xfe artist\t\tT\n");
    std::fs::write(dir.path().join("l.tsv"), &bytes).unwrap();
    let src = [SourceSpec::new(Format::Lastfm1k, ["l.tsv"])];
    let ing = run(&src, dir.path(), &lenient()).unwrap();
    assert_eq!(ing.skips.count(SkipReason::NotUtf8), 1);
    assert_eq!(ing.events.len(), 5);
    let err = run(&src, dir.path(), &strict()).unwrap_err().to_string();
    assert!(err.contains("l.tsv, line 6") && err.contains("UTF-8"), "{err}");
}

/// A truncated JSON export: strict mode stops with its position; lenient mode keeps the
/// complete records before the cut and counts the rest as one skipped record.
#[test]
fn truncated_json_is_an_error_with_its_position_in_strict_mode() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("me")).unwrap();
    let json = "[\n  {\"endTime\": \"2021-12-03 05:31\", \"artistName\": \"A\", \"trackName\": \"T\", \"msPlayed\": 188823},\n  {\"endTime\": \"2021-12-03 05";
    std::fs::write(dir.path().join("me/StreamingHistory0.json"), json).unwrap();
    let src = [SourceSpec::new(Format::SpotifyStreamingHistory, ["me"])];
    let err = run(&src, dir.path(), &strict()).unwrap_err().to_string();
    assert!(err.contains("StreamingHistory0.json, line 3") && err.contains("truncated"), "{err}");
    let ing = run(&src, dir.path(), &lenient()).unwrap();
    assert_eq!(ing.events.len(), 1);
    assert_eq!(ing.skips.count(SkipReason::TruncatedFile), 1);
    assert_eq!(ing.records, 2);
}

#[test]
fn bad_times_and_field_counts_are_counted_or_fatal_in_strict_mode() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::new();
    for i in 0..5 {
        text += &format!("u\t{}\t\tA\t\tT{i}\n", iso(T0 + i * 60));
    }
    let lines = [
        "u\tyesterday\t\tA\t\tT".to_string(),
        "u\t1999-12-31T23:59:59Z\t\tA\t\tT".to_string(),
        format!("u\t{}\t\tA\t\tT", iso(4_102_444_800)), // 2100
        "u\t2020-01-01T00:00:00Z\t\tA\t\tT\tx".to_string(),
        "u\t2020-01-01T00:00:00Z\t\tA".to_string(),
    ];
    let reasons = [
        SkipReason::BadTimestamp,
        SkipReason::TimestampBefore2000,
        SkipReason::TimestampInFuture,
        SkipReason::TooManyFields,
        SkipReason::TooFewFields,
    ];
    for (line, reason) in lines.iter().zip(reasons) {
        let body = format!("{text}{line}\n");
        std::fs::write(dir.path().join("l.tsv"), &body).unwrap();
        let src = [SourceSpec::new(Format::Lastfm1k, ["l.tsv"])];
        let ing = run(&src, dir.path(), &lenient()).unwrap();
        assert_eq!(ing.skips.count(reason), 1, "{line}");
        assert_eq!(ing.skips.total(), 1, "{line}");
        assert_eq!(ing.events.len(), 5);
        assert_eq!(ing.skips.reasons[&reason].examples[0].position, "line 6");
        let err = run(&src, dir.path(), &strict()).unwrap_err().to_string();
        assert!(err.contains("l.tsv, line 6") && err.contains(reason.describe()), "{line}: {err}");
    }
}

#[test]
fn all_bad_is_an_error_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("l.tsv"), "u\tnope\t\tA\t\tT\n").unwrap();
    let err = run(&[SourceSpec::new(Format::Lastfm1k, ["l.tsv"])], dir.path(), &lenient())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no usable listening events") && err.contains("timestamp"), "{err}");
}

#[test]
fn gzip_zstd_globs_and_many_files() {
    let dir = tempfile::tempdir().unwrap();
    let plays = sessions_of("u", 2, 5, 10, T0);
    let mut text = String::new();
    for (u, t, a, title) in &plays {
        text += &format!("{u}\t{}\t\t{a}\t\t{title}\n", iso(*t));
    }
    let (first, second) =
        text.split_at(text.find("Song 5").map(|i| text[..i].rfind('\n').unwrap() + 1).unwrap());
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(first.as_bytes()).unwrap();
    std::fs::write(dir.path().join("part-1.tsv.gz"), gz.finish().unwrap()).unwrap();
    std::fs::write(
        dir.path().join("part-2.tsv.zst"),
        zstd::encode_all(second.as_bytes(), 3).unwrap(),
    )
    .unwrap();
    let ing = run(&[SourceSpec::new(Format::Lastfm1k, ["part-*"])], dir.path(), &strict()).unwrap();
    assert_eq!(ing.events.len(), 10);
    assert_eq!(ing.files.len(), 2);
}

#[test]
fn spotify_extended_and_lastfm_scrobbles() {
    let dir = tempfile::tempdir().unwrap();
    let mut recs = Vec::new();
    for i in 0..5 {
        recs.push(format!(
            "{{\"ts\": \"{}\", \"username\": \"sam\", \"ms_played\": 180000, \"master_metadata_track_name\": \"T{i}\", \"master_metadata_album_artist_name\": \"A\"}}",
            iso(T0 + i * 200)
        ));
    }
    recs.push(format!("{{\"ts\": \"{}\", \"username\": \"sam\", \"ms_played\": 900000, \"master_metadata_track_name\": null, \"episode_name\": \"A podcast\"}}", iso(T0 + 2000)));
    std::fs::write(dir.path().join("endsong_0.json"), format!("[{}]", recs.join(",\n"))).unwrap();
    let mut csv =
        String::from("uts,utc_time,artist,artist_mbid,album,album_mbid,track,track_mbid\n");
    for i in 0..5 {
        csv += &format!("{},\"01 Jan 2020, 00:00\",B,,Al,,S{i},\n", T0 + 10_000 + i * 200);
    }
    std::fs::write(dir.path().join("scrobbles.csv"), csv).unwrap();
    let mut scrobbles = SourceSpec::new(Format::LastfmScrobblesCsv, ["scrobbles.csv"]);
    scrobbles.user = Some("sam-lastfm".into());
    let ing = run(
        &[SourceSpec::new(Format::SpotifyExtended, ["endsong_0.json"]), scrobbles],
        dir.path(),
        &strict(),
    )
    .unwrap();
    assert_eq!(ing.events.len(), 10);
    assert_eq!(ing.skips.count(SkipReason::Episode), 1);
    let out = sessionize(&ing.events, &ing.keys, &SessionOptions::default()).unwrap();
    assert_eq!(out.stats.users, 2);
    assert_eq!(out.stats.sessions, 2);
}

/// The built-in data gives the pandas peer's Table I (../shared/peers/README.md: 4 users,
/// 2,039 sessions, 11,366 unique songs, 66,619 events, from 67,848 plays of 30 s or more).
#[test]
fn builtin_data_matches_the_peer_table_one() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("pipelines/default.toml")).unwrap();
    #[derive(serde::Deserialize)]
    struct Partial {
        dataset: Dataset,
    }
    #[derive(serde::Deserialize)]
    struct Dataset {
        sources: Vec<SourceSpec>,
    }
    let p: Partial = toml::from_str(&text).unwrap();
    let ing = run(&p.dataset.sources, &root.join("pipelines"), &lenient()).unwrap();
    let dups = ing.skips.count(SkipReason::DuplicateEvent);
    assert_eq!(ing.events.len() as u64 + dups, 67_848);
    let out = sessionize(&ing.events, &ing.keys, &SessionOptions::default()).unwrap();
    let s = &out.stats;
    assert_eq!((s.users, s.sessions, s.unique_songs, s.events), (4, 2_039, 11_366, 66_619));
    assert!((s.mean_session_length - 32.67).abs() < 0.005);
}
