//! Every export dialect segue reads, one fixture each (`tests/fixtures/`, rows written for
//! these tests): `format = "auto"` picks the reader, the plays come out at the right UTC start
//! with the right names, every record is accounted for (read = kept + each skip reason), and
//! strict mode stops at the first malformed record with its file and place.

use std::path::{Path, PathBuf};

use segue_core::NoProgress;
use segue_sessions::{
    ColumnMap, ColumnRef, Format, IngestOptions, Ingested, SkipReason, SourceSpec, TimeFormat,
    ingest,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn opts(strict: bool) -> IngestOptions {
    IngestOptions { strict, ..IngestOptions::default() }
}

fn read(source: &SourceSpec, base: &Path, strict: bool) -> segue_core::Result<Ingested> {
    ingest(std::slice::from_ref(source), base, &opts(strict), &NoProgress)
}

/// The plays as (user, UTC start, artist, title), in the events' order (user, time).
fn plays(out: &Ingested) -> Vec<(String, String, String, String)> {
    use segue_sessions::parquet::{i64_column, str_column, u32_column};
    let users = str_column(&out.events.frame().unwrap(), "user").unwrap();
    let ts = i64_column(&out.events.frame().unwrap(), "ts").unwrap();
    let keys = u32_column(&out.events.frame().unwrap(), "track_key").unwrap();
    let artists = str_column(&out.keys, "artist").unwrap();
    let titles = str_column(&out.keys, "title").unwrap();
    (0..users.len())
        .map(|i| {
            let k = keys[i] as usize;
            (users[i].clone(), segue_core::format_utc(ts[i]), artists[k].clone(), titles[k].clone())
        })
        .collect()
}

/// Reads fixture `file` with `format = "auto"` and checks the reader, every play, every skip
/// and the account; then strict mode: an error naming the file where a record is malformed,
/// the same plays where none is.
fn check(
    file: &str,
    format: Format,
    dialect: &str,
    expected: &[(&str, &str, &str, &str)],
    skipped: &[(SkipReason, u64)],
) {
    let source = SourceSpec::new(Format::Auto, [file]);
    let out = read(&source, &fixtures(), false).unwrap();
    assert_eq!(out.choices.len(), 1, "{:?}", out.choices);
    let choice = &out.choices[0];
    assert_eq!(choice.format, format, "{choice:?}");
    assert!(choice.reader.contains(dialect), "{choice:?}");
    let got = plays(&out);
    let want: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|(u, t, a, s)| (u.to_string(), t.to_string(), a.to_string(), s.to_string()))
        .collect();
    assert_eq!(got, want, "{file}");
    for (reason, n) in skipped {
        assert_eq!(out.skips.count(*reason), *n, "{file}: {reason:?} in {:?}", out.skips);
    }
    assert_eq!(
        out.skips.total(),
        skipped.iter().map(|(_, n)| n).sum::<u64>(),
        "{file}: {:?}",
        out.skips
    );
    assert_eq!(out.records, out.events.len() as u64 + out.skips.total(), "{file}");
    let malformed = skipped.iter().any(|(r, _)| !r.is_filter());
    match read(&source, &fixtures(), true) {
        Ok(strict) => {
            assert!(!malformed, "{file}: strict mode kept going past a malformed record");
            assert_eq!(plays(&strict), want);
        }
        Err(e) => {
            assert!(malformed, "{file}: strict mode failed without a malformed record: {e}");
            let text = e.to_string();
            assert!(text.contains(file) && text.contains("strict"), "{text}");
        }
    }
}

const AV: &str = "Aurora Vale";
const QO: &str = "The Quiet Orchard";
const U: &str = "fixtures";
/// The four plays most fixtures hold: the user is the fixtures' folder.
const FOUR_PLAYS: &[(&str, &str, &str, &str)] = &[
    (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
    (U, "2021-01-31T14:09:00Z", AV, "Harbour Lights"),
    (U, "2021-01-31T14:13:00Z", QO, "Morning Wire"),
    (U, "2021-01-31T14:17:00Z", QO, "Kite Season"),
];

#[test]
fn lastfm_ghan_uts_and_utc_time() {
    check(
        "lastfm-ghan-uts.csv",
        Format::LastfmScrobblesCsv,
        "time in uts",
        &[
            (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            (U, "2021-01-31T14:09:00Z", AV, "Salt, and Smoke"),
            (U, "2021-01-31T14:13:00Z", QO, "Morning Wire"),
            (U, "2021-01-31T14:17:00Z", QO, "Kite Season"),
            (U, "2021-01-31T14:21:00Z", AV, "Lantern Song"),
        ],
        &[],
    );
}

#[test]
fn lastfm_utc_time_day_month_name_with_comma() {
    check("lastfm-utc-time.csv", Format::LastfmScrobblesCsv, "time in utc_time", FOUR_PLAYS, &[]);
}

#[test]
fn lastfm_played_at_iso_with_zone() {
    check("lastfm-played-at.csv", Format::LastfmScrobblesCsv, "time in played_at", FOUR_PLAYS, &[]);
}

#[test]
fn lastfm_date_iso_without_zone() {
    check("lastfm-date-naive.csv", Format::LastfmScrobblesCsv, "time in date", FOUR_PLAYS, &[]);
}

#[test]
fn lastfm_semicolons_and_unix_milliseconds() {
    check(
        "lastfm-timestamp-ms.csv",
        Format::LastfmScrobblesCsv,
        "time in Timestamp",
        FOUR_PLAYS,
        &[],
    );
}

#[test]
fn lastfm_iso_without_seconds_with_an_offset() {
    check(
        "lastfm-iso-offset.csv",
        Format::LastfmScrobblesCsv,
        "time in timestamp",
        FOUR_PLAYS,
        &[],
    );
}

#[test]
fn lastfm_to_csv_headerless_four_columns() {
    check(
        "lastfm-to-csv.csv",
        Format::LastfmScrobblesCsv,
        "headerless artist, album, track, date",
        &[
            (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            (U, "2021-01-31T14:09:00Z", AV, "Salt, and Smoke"),
            (U, "2021-01-31T14:13:00Z", QO, "Morning Wire"),
            (U, "2021-01-31T14:17:00Z", QO, "Kite Season"),
        ],
        &[],
    );
}

#[test]
fn lastfm_backup_headerless_date_and_time() {
    check(
        "lastfm-backup.csv",
        Format::LastfmScrobblesCsv,
        "headerless date, time, artist, title",
        FOUR_PLAYS,
        &[],
    );
}

#[test]
fn lastexport_headerless_tab_separated_uts() {
    check(
        "lastexport.txt",
        Format::LastfmScrobblesCsv,
        "headerless uts, track, artist",
        &[
            (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            (U, "2021-01-31T14:09:00Z", AV, "Harbour \"Lights\""),
            (U, "2021-01-31T14:13:00Z", QO, "Morning Wire"),
            (U, "2021-01-31T14:17:00Z", QO, "Kite Season"),
        ],
        &[],
    );
}

#[test]
fn lastfm_1k_tsv() {
    check(
        "lastfm-1k.tsv",
        Format::Lastfm1k,
        "lastfm-1k",
        &[
            ("user_000001", "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            ("user_000001", "2021-01-31T14:09:00Z", AV, "Harbour Lights"),
            ("user_000002", "2021-01-31T14:13:00Z", QO, "Morning Wire"),
            ("user_000002", "2021-01-31T14:17:00Z", QO, "Kite Season"),
        ],
        &[],
    );
}

#[test]
fn lastfm_with_a_user_column() {
    check(
        "lastfm-users.csv",
        Format::LastfmScrobblesCsv,
        "time in uts",
        &[
            ("ana", "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            ("ana", "2021-01-31T14:09:00Z", AV, "Harbour Lights"),
            ("ben", "2021-01-31T14:13:00Z", QO, "Morning Wire"),
            ("ben", "2021-01-31T14:17:00Z", QO, "Kite Season"),
        ],
        &[],
    );
}

#[test]
fn listenbrainz_json_lines() {
    check(
        "listenbrainz.jsonl",
        Format::Listenbrainz,
        "listenbrainz",
        &[
            (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            (U, "2021-01-31T14:09:00Z", AV, "Harbour Lights"),
            (U, "2021-01-31T14:13:00Z", QO, "Morning Wire"),
        ],
        &[(SkipReason::InvalidJson, 1), (SkipReason::MissingField, 1)],
    );
}

#[test]
fn listenbrainz_json_array_with_user_names() {
    check(
        "listenbrainz-export.json",
        Format::Listenbrainz,
        "listenbrainz",
        &[
            ("ana_lb", "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            ("ana_lb", "2021-01-31T14:09:00Z", AV, "Harbour Lights"),
            ("ana_lb", "2021-01-31T14:13:00Z", QO, "Morning Wire"),
        ],
        &[],
    );
}

#[test]
fn apple_music_play_activity() {
    check(
        "Apple Music Play Activity.csv",
        Format::AppleMusic,
        "apple-music",
        &[
            (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            (U, "2021-01-31T14:09:00Z", AV, "Harbour Lights"),
            // No start time: the end (14:28) minus 180 s played.
            (U, "2021-01-31T14:25:00Z", QO, "Kite Season"),
        ],
        &[
            (SkipReason::NotAPlay, 1),
            (SkipReason::ShortPlay, 1),
            (SkipReason::NotMusic, 1),
            (SkipReason::MissingField, 1),
        ],
    );
}

#[test]
fn youtube_music_watch_history() {
    check(
        "watch-history.json",
        Format::YoutubeMusic,
        "youtube-music",
        &[
            (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            (U, "2021-01-31T14:13:00Z", QO, "Morning Wire"),
        ],
        &[(SkipReason::NotMusic, 1), (SkipReason::NoTrackName, 1)],
    );
}

#[test]
fn spotify_streaming_history() {
    check(
        "StreamingHistory0.json",
        Format::SpotifyStreamingHistory,
        "spotify-streaming-history",
        &[
            (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            (U, "2021-01-31T14:09:00Z", AV, "Harbour Lights"),
        ],
        &[(SkipReason::ShortPlay, 1)],
    );
}

#[test]
fn spotify_extended_history_splits_episodes_from_unnamed_plays() {
    check(
        "Streaming_History_Audio_2021.json",
        Format::SpotifyExtended,
        "spotify-extended",
        &[
            ("ana_sp", "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            ("ana_sp", "2021-01-31T14:45:00Z", QO, "Morning Wire"),
        ],
        &[(SkipReason::Episode, 1), (SkipReason::NoTrackName, 1)],
    );
}

#[test]
fn spotify_columns_in_a_csv() {
    check(
        "spotify-history.csv",
        Format::Table,
        "Spotify StreamingHistory columns",
        &[
            (U, "2021-01-31T14:05:00Z", AV, "Lantern Song"),
            (U, "2021-01-31T14:09:00Z", AV, "Harbour Lights"),
        ],
        &[(SkipReason::ShortPlay, 1)],
    );
}

/// A table no sniffer knows: no header, semicolons, day/month/year local times in Berlin,
/// read through a mapping by position with a strftime pattern and a zone.
#[test]
fn table_mapping_by_position_with_a_pattern_and_a_zone() {
    let mut source = SourceSpec::new(Format::Table, ["custom-local.txt"]);
    source.columns = Some(ColumnMap {
        time_format: "%d/%m/%Y %H:%M".parse::<TimeFormat>().unwrap(),
        timezone: Some("Europe/Berlin".into()),
        separator: Some(';'),
        has_header: false,
        ..ColumnMap::new(ColumnRef::Position(1), ColumnRef::Position(2), ColumnRef::Position(3))
    });
    let out = read(&source, &fixtures(), true).unwrap();
    let got: Vec<(String, String)> = plays(&out).into_iter().map(|p| (p.1, p.3)).collect();
    assert_eq!(
        got,
        [
            ("2021-01-31T14:05:00Z".to_string(), "Lantern Song".to_string()),
            ("2021-01-31T14:09:00Z".into(), "Harbour Lights".into()),
            // Summer time: +02:00.
            ("2021-07-31T13:13:00Z".into(), "Morning Wire".into()),
        ]
    );
    // The same mapping naming a column on a headerless table is an error that says how.
    let mut named = source.clone();
    named.columns.as_mut().unwrap().artist = ColumnRef::Name("artist".into());
    let err = read(&named, &fixtures(), false).unwrap_err().to_string();
    assert!(err.contains("has_header = false") && err.contains("by position"), "{err}");
    // A pattern that is not one.
    let err = "%Q".parse::<TimeFormat>().unwrap_err();
    assert!(err.contains("strftime"), "{err}");
    let toml_err = toml::from_str::<ColumnMap>("time = 1\nartist = 2\ntitle = 0\n").unwrap_err();
    assert!(toml_err.to_string().contains("start at 1"), "{toml_err}");
}

/// The built-in data's files, all sniffed: the Spotify JSON exports and the CSV with Spotify's
/// columns (its pipeline names no format).
#[test]
fn the_builtin_data_needs_no_format() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/listens");
    let folders: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    let out = read(&SourceSpec::new(Format::Auto, folders), &root, false).unwrap();
    let formats: std::collections::BTreeSet<Format> =
        out.choices.iter().map(|c| c.format).collect();
    assert_eq!(
        formats,
        [Format::SpotifyStreamingHistory, Format::Table].into_iter().collect(),
        "{:?}",
        out.choices
    );
    assert_eq!(out.choices.len(), 12);
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
}
