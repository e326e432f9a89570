//! What a user is told when an export is not what segue expected: files of a folder that are
//! not listening logs, a file given to the wrong reader, a header that is a record, a time
//! column that never parses, two folders that would merge two people, duplicates with their
//! places, and files that fit more than one reader.

use std::path::Path;

use segue_core::NoProgress;
use segue_sessions::{ColumnMap, Format, IngestOptions, Ingested, SkipReason, SourceSpec, ingest};

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(sources: &[SourceSpec], base: &Path) -> segue_core::Result<Ingested> {
    ingest(sources, base, &IngestOptions::default(), &NoProgress)
}

fn copy(name: &str, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(fixtures().join(name), to).unwrap();
}

#[test]
fn a_folder_of_a_whole_export_reads_only_its_listening_files() {
    let dir = tempfile::tempdir().unwrap();
    copy("StreamingHistory0.json", &dir.path().join("export/StreamingHistory0.json"));
    copy("Userdata.json", &dir.path().join("export/Userdata.json"));
    let out = read(&[SourceSpec::new(Format::Auto, ["export"])], dir.path()).unwrap();
    assert_eq!(out.files.len(), 1);
    assert!(
        out.notes.iter().any(|n| n.contains("Userdata.json") && n.contains("not read")),
        "{:?}",
        out.notes
    );
    // Named by itself, the same file is an error that says what it is.
    let err = read(&[SourceSpec::new(Format::Auto, ["export/Userdata.json"])], dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Userdata.json")
            && err.contains("a JSON object with keys")
            && err.contains("username"),
        "{err}"
    );
}

#[test]
fn a_file_given_to_the_wrong_reader_says_which_reader_fits() {
    let err = read(
        &[SourceSpec::new(Format::SpotifyStreamingHistory, ["spotify-history.csv"])],
        &fixtures(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("spotify-history.csv"), "{err}");
    assert!(
        err.contains("it looks like table (Spotify StreamingHistory columns")
            && err.contains("\"auto\""),
        "{err}"
    );
    // A lenient reader that keeps nothing warns with the same hint.
    let out = read(
        &[SourceSpec::new(Format::Lastfm1k, ["lastfm-1k.tsv", "lastexport.txt"])],
        &fixtures(),
    )
    .unwrap();
    assert!(
        out.warnings.iter().any(|w| w.contains("lastexport.txt")
            && w.contains("no record kept")
            && w.contains("lastfm-scrobbles-csv")),
        "{:?}",
        out.warnings
    );
}

#[test]
fn a_header_that_is_a_record_says_so() {
    let mut source = SourceSpec::new(Format::Table, ["lastfm-to-csv.csv"]);
    source.columns = Some(ColumnMap::new("date", "artist", "track"));
    let err = read(&[source], &fixtures()).unwrap_err().to_string();
    assert!(err.contains("lastfm-to-csv.csv"), "{err}");
    assert!(
        err.contains("looks like a record, not a header") && err.contains("has_header = false"),
        "{err}"
    );
}

#[test]
fn a_time_column_that_never_parses_names_column_values_formats_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = "date,artist,track\n01/31/2021 2:05 PM,A,T1\n01/31/2021 2:09 PM,A,T2\n01/31/2021 2:13 PM,B,T3\n01/31/2021 2:17 PM,B,T4\n";
    std::fs::write(dir.path().join("us-dates.csv"), text).unwrap();
    let err = read(&[SourceSpec::new(Format::Auto, ["us-dates.csv"])], dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("us-dates.csv") && err.contains("`date`"), "{err}");
    assert!(
        err.contains("\"01/31/2021 2:05 PM\", \"01/31/2021 2:09 PM\", \"01/31/2021 2:13 PM\""),
        "{err}"
    );
    assert!(err.contains("tried epoch seconds") && err.contains("time_format"), "{err}");
    // With the pattern it names, the file reads.
    let mut source = SourceSpec::new(Format::Table, ["us-dates.csv"]);
    source.columns = Some(ColumnMap {
        time_format: "%m/%d/%Y %I:%M %p".parse().unwrap(),
        ..ColumnMap::new("date", "artist", "track")
    });
    let out = read(&[source], dir.path()).unwrap();
    assert_eq!(out.events.len(), 4);
}

#[test]
fn two_folders_with_the_same_name_are_one_user_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    copy("StreamingHistory0.json", &dir.path().join("ana/data/StreamingHistory0.json"));
    copy("StreamingHistory0.json", &dir.path().join("ben/data/StreamingHistory1.json"));
    let both = [SourceSpec::new(Format::Auto, ["ana/data", "ben/data"])];
    let out = read(&both, dir.path()).unwrap();
    let warning = out.warnings.iter().find(|w| w.contains("\"data\"")).expect("a warning");
    assert!(
        warning.contains("ana/data")
            && warning.contains("ben/data")
            && warning.contains("ONE user"),
        "{warning}"
    );
    // Saying who is who on both silences it.
    let mut ana = SourceSpec::new(Format::Auto, ["ana/data"]);
    ana.user = Some("ana".into());
    let mut ben = SourceSpec::new(Format::Auto, ["ben/data"]);
    ben.user = Some("ben".into());
    let out = read(&[ana.clone(), ben], dir.path()).unwrap();
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    // A folder that happens to be called like another source's user id still warns.
    let mut data = SourceSpec::new(Format::Auto, ["ben/data"]);
    data.user = None;
    ana.user = Some("data".into());
    let out = read(&[ana, data], dir.path()).unwrap();
    assert!(out.warnings.iter().any(|w| w.contains("user = \"data\"")), "{:?}", out.warnings);
}

#[test]
fn duplicates_are_reported_with_their_places() {
    let dir = tempfile::tempdir().unwrap();
    let line = |m: u32| format!("u1\t2021-01-31T14:{m:02}:00Z\t\tA\t\tT{m}\n");
    let text = format!("{}{}{}", line(5), line(9), line(9));
    std::fs::write(dir.path().join("d.tsv"), text).unwrap();
    let out = read(&[SourceSpec::new(Format::Auto, ["d.tsv"])], dir.path()).unwrap();
    let dup = &out.skips.reasons[&SkipReason::DuplicateEvent];
    assert_eq!(dup.count, 1);
    let ex = &dup.examples[0];
    assert_eq!(ex.position, "line 3");
    assert!(ex.detail.contains("the same as") && ex.detail.ends_with("d.tsv, line 2"), "{ex:?}");
}

#[test]
fn a_file_two_readers_fit_is_an_error_listing_both() {
    let dir = tempfile::tempdir().unwrap();
    let both = r#"[{"endTime": "2021-01-31 14:05", "artistName": "A", "trackName": "T", "msPlayed": 60000, "listened_at": 1612101900, "track_metadata": {}}]"#;
    std::fs::write(dir.path().join("both.json"), both).unwrap();
    let err =
        read(&[SourceSpec::new(Format::Auto, ["both.json"])], dir.path()).unwrap_err().to_string();
    assert!(err.contains("more than one reader fits"), "{err}");
    assert!(err.contains("spotify-streaming-history") && err.contains("listenbrainz"), "{err}");
}

#[test]
fn a_sources_user_holds_over_the_names_in_the_records() {
    let mut source = SourceSpec::new(Format::Auto, ["listenbrainz-export.json"]);
    source.user = Some("ana".into());
    let out = read(&[source], &fixtures()).unwrap();
    let users = segue_sessions::parquet::str_column(&out.events.frame().unwrap(), "user").unwrap();
    assert_eq!(users, ["ana", "ana", "ana"]);
}
