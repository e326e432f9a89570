//! Per-track content tables (audio features, tags, lyrics): CSV, TSV or Parquet files with an
//! artist and a title column, joined to the vocabulary on the normalised (artist, title) key.
//! The first row of a key wins, as in the peer; rows of tracks outside the vocabulary are
//! counted, not errors.

use std::path::{Path, PathBuf};

use polars::prelude::*;
use segue_core::{Error, Position, Result, TrackId, Vocab, normalize_name};
use serde::Serialize;

/// Artist columns recognised, in order: the peers' and synth's, Spotify's, plain.
pub const ARTIST_COLUMNS: [&str; 3] = ["artist_name", "artistName", "artist"];
/// Title columns recognised, in order.
pub const TITLE_COLUMNS: [&str; 4] = ["track_name", "trackName", "title", "track"];

/// A content table read with every column as text.
#[derive(Debug)]
pub struct ContentTable {
    /// The file it came from.
    pub file: PathBuf,
    /// Its rows, every column a string.
    pub frame: DataFrame,
    artist: StringChunked,
    /// None for an artist-level table (tags or genres of artists).
    title: Option<StringChunked>,
}

/// How a content table met the vocabulary.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct JoinReport {
    /// Rows read.
    pub records: usize,
    /// Rows whose track is in the vocabulary (first row of each key).
    pub matched: usize,
    /// Rows whose track is not in the vocabulary.
    pub unmatched: usize,
    /// Later rows of a key already seen (ignored).
    pub duplicates: usize,
}

fn header(df: &DataFrame) -> String {
    df.get_column_names().iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
}

impl ContentTable {
    /// Reads `file`; fails naming the file when it is unreadable or has no artist or title
    /// column ([`ARTIST_COLUMNS`], [`TITLE_COLUMNS`]).
    pub fn read(file: &Path) -> Result<Self> {
        Self::read_with(file, true)
    }

    /// [`ContentTable::read`], where `title_required = false` accepts a table without a title
    /// column: its rows describe artists and apply to every track of the artist.
    pub fn read_with(file: &Path, title_required: bool) -> Result<Self> {
        let max = crate::raw::MAX_CONTENT_LINE_BYTES;
        let (frame, long) = crate::table::load(file, None, max)?;
        if let Some(l) = long.first() {
            return Err(Error::input(
                file,
                segue_core::Position::Line(l.line),
                format!(
                    "a line of {} bytes (limit {max}) starting {:?}; a content table has one track per line: repair or remove this line",
                    l.bytes, l.start
                ),
            ));
        }
        let find = |names: &[&str], what: &str| -> Result<StringChunked> {
            let name = names
                .iter()
                .find(|n| frame.get_column_names().iter().any(|c| c.as_str() == **n))
                .ok_or_else(|| {
                    Error::input(
                        file,
                        Position::Line(1),
                        format!(
                            "no {what} column: expected one of {}; the header has {}",
                            names.join(", "),
                            header(&frame)
                        ),
                    )
                })?;
            self::column(&frame, name, file)
        };
        let artist = find(&ARTIST_COLUMNS, "artist")?;
        let has_title =
            TITLE_COLUMNS.iter().any(|n| frame.get_column_names().iter().any(|c| c.as_str() == *n));
        let title =
            if title_required || has_title { Some(find(&TITLE_COLUMNS, "title")?) } else { None };
        Ok(ContentTable { file: file.to_path_buf(), frame, artist, title })
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.frame.height()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.frame.height() == 0
    }

    /// The text column `name`, or an error naming the file and its header.
    pub fn column(&self, name: &str) -> Result<StringChunked> {
        column(&self.frame, name, &self.file)
    }

    /// Whether rows describe artists (no title column).
    pub fn is_artist_level(&self) -> bool {
        self.title.is_none()
    }

    /// The display name of row `row` ("artist - title", or the artist), for messages.
    pub fn track_name(&self, row: usize) -> String {
        match &self.title {
            Some(t) => format!(
                "{} - {}",
                self.artist.get(row).unwrap_or_default(),
                t.get(row).unwrap_or_default()
            ),
            None => self.artist.get(row).unwrap_or_default().to_string(),
        }
    }

    /// (row, track id) for every row and every vocabulary track it describes: the track of
    /// its (artist, title) key, or every track of its artist in an artist-level table. Rows
    /// are not de-duplicated (each may add one tag); `duplicates` stays 0.
    pub fn join_all(&self, vocab: &Vocab) -> (Vec<(usize, TrackId)>, JoinReport) {
        let mut report = JoinReport { records: self.len(), ..JoinReport::default() };
        let mut out = Vec::new();
        let by_artist: Option<std::collections::HashMap<&str, Vec<TrackId>>> =
            self.title.is_none().then(|| {
                let mut m: std::collections::HashMap<&str, Vec<TrackId>> =
                    std::collections::HashMap::new();
                for (i, e) in vocab.entries().iter().enumerate() {
                    m.entry(e.artist_key.as_str()).or_default().push(TrackId(i as u32));
                }
                m
            });
        for row in 0..self.len() {
            let a = normalize_name(self.artist.get(row).unwrap_or_default());
            let ids: Vec<TrackId> = match (&self.title, &by_artist) {
                (Some(t), _) => vocab
                    .id(&a, &normalize_name(t.get(row).unwrap_or_default()))
                    .into_iter()
                    .collect(),
                (None, Some(m)) => m.get(a.as_str()).cloned().unwrap_or_default(),
                (None, None) => Vec::new(),
            };
            if ids.is_empty() {
                report.unmatched += 1;
            } else {
                report.matched += 1;
            }
            out.extend(ids.into_iter().map(|id| (row, id)));
        }
        (out, report)
    }

    /// (row, track id) of the first row of every key in `vocab`, in row order.
    pub fn join(&self, vocab: &Vocab) -> (Vec<(usize, TrackId)>, JoinReport) {
        // Every (row, track) pair, then the first row of each track.
        let (all, mut report) = self.join_all(vocab);
        let mut taken = vec![false; vocab.len()];
        let mut out = Vec::new();
        for (row, id) in all {
            if taken[id.index()] {
                report.duplicates += 1;
            } else {
                taken[id.index()] = true;
                out.push((row, id));
            }
        }
        report.matched = out.len();
        (out, report)
    }
}

fn column(df: &DataFrame, name: &str, file: &Path) -> Result<StringChunked> {
    let col = df.column(name).map_err(|_| {
        Error::input(
            file,
            Position::Line(1),
            format!("no column `{name}`; the header has {}", header(df)),
        )
    })?;
    let col = col
        .cast(&DataType::String)
        .map_err(|e| Error::input(file, Position::File, format!("column `{name}`: {e}")))?;
    Ok(col.str().map_err(crate::ingest::pl_err)?.rechunk().into_owned())
}

/// A track left without features, for the end-of-stage report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissingFeature {
    /// 1-based record number in the file.
    pub record: usize,
    /// "artist - title".
    pub track: String,
    /// The column.
    pub column: String,
    /// The text found ("" when empty).
    pub value: String,
}

/// Numeric features of the vocabulary's tracks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureMatrix {
    /// The feature columns, in the order of each row.
    pub columns: Vec<String>,
    /// Tracks with every feature, in file order.
    pub ids: Vec<TrackId>,
    /// Row-major `ids.len() x columns.len()`, all finite.
    pub values: Vec<f32>,
    /// How the file met the vocabulary.
    pub join: JoinReport,
    /// Vocabulary tracks whose row has an empty, non-numeric or non-finite feature (masked).
    pub masked: usize,
    /// The first few of them.
    pub masked_examples: Vec<MissingFeature>,
}

/// Reads the numeric `columns` of every vocabulary track in `file`. A missing column is an
/// error; a bad value masks its track (counted, first examples kept), or with `strict` is an
/// error naming the record, track and column.
pub fn read_features(
    file: &Path,
    columns: &[&str],
    vocab: &Vocab,
    strict: bool,
) -> Result<FeatureMatrix> {
    let table = ContentTable::read(file)?;
    let cols: Vec<StringChunked> =
        columns.iter().map(|c| table.column(c)).collect::<Result<_>>()?;
    let (rows, join) = table.join(vocab);
    let mut out = FeatureMatrix {
        columns: columns.iter().map(|c| c.to_string()).collect(),
        ids: Vec::with_capacity(rows.len()),
        values: Vec::with_capacity(rows.len() * columns.len()),
        join,
        masked: 0,
        masked_examples: Vec::new(),
    };
    let mut row_values = Vec::with_capacity(columns.len());
    'rows: for (row, id) in rows {
        row_values.clear();
        for (c, col) in cols.iter().enumerate() {
            let text = col.get(row).unwrap_or_default();
            match text.trim().parse::<f32>() {
                Ok(v) if v.is_finite() => row_values.push(v),
                _ => {
                    let missing = MissingFeature {
                        record: row + 1,
                        track: table.track_name(row),
                        column: columns[c].to_string(),
                        value: text.to_string(),
                    };
                    if strict {
                        return Err(Error::input(
                            file,
                            Position::Record(row as u64 + 1),
                            format!(
                                "track {}: column `{}` is {:?}, expected a finite number",
                                missing.track, missing.column, missing.value
                            ),
                        ));
                    }
                    out.masked += 1;
                    if out.masked_examples.len() < 3 {
                        out.masked_examples.push(missing);
                    }
                    continue 'rows;
                }
            }
        }
        out.ids.push(id);
        out.values.extend_from_slice(&row_values);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use segue_core::VocabEntry;

    fn vocab() -> Vocab {
        Vocab::new(vec![
            VocabEntry::new("abba", "waterloo", "ABBA", "Waterloo"),
            VocabEntry::new("björk", "jóga", "Björk", "Jóga"),
            VocabEntry::new("can", "vitamin c", "Can", "Vitamin C"),
        ])
        .unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn json_lines_and_artist_level_tables() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "lyrics.jsonl",
            "{\"artist_name\": \"ABBA\", \"track_name\": \"Waterloo\", \"lyrics\": \"My, my\\nat Waterloo\"}\n\n\
             {\"artist_name\": \"Can\", \"track_name\": \"Vitamin C\", \"year\": 1972}\n",
        );
        let t = ContentTable::read(&f).unwrap();
        let (rows, report) = t.join(&vocab());
        assert_eq!(rows, vec![(0, TrackId(0)), (1, TrackId(2))]);
        assert_eq!(report.matched, 2);
        let lyrics = t.column("lyrics").unwrap();
        assert_eq!(lyrics.get(0), Some("My, my\nat Waterloo"));
        assert_eq!(lyrics.get(1), None, "absent field");
        assert_eq!(t.column("year").unwrap().get(1), Some("1972"));
        let bad = write(dir.path(), "bad.jsonl", "{\"artist_name\": \"A\"}\n[1, 2]\n");
        let e = ContentTable::read(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.jsonl, line 2: expected one JSON object"), "{e}");

        // Genres per artist: no title column, every track of the artist, every row kept.
        let g =
            write(dir.path(), "genres.csv", "artistName,genre\nABBA,pop\nABBA,europop\nNobody,x\n");
        assert!(ContentTable::read(&g).is_err(), "a title column is required by default");
        let t = ContentTable::read_with(&g, false).unwrap();
        assert!(t.is_artist_level());
        let (rows, report) = t.join_all(&vocab());
        assert_eq!(rows, vec![(0, TrackId(0)), (1, TrackId(0))]);
        assert_eq!((report.matched, report.unmatched), (2, 1));
    }

    #[test]
    fn joins_on_normalised_keys_first_row_wins() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(
            dir.path(),
            "f.csv",
            "artistName,trackName,tempo,mode\n\
             ABBA,Waterloo,120.5,1\n\
             Nobody,Unknown,99,0\n\
             \u{0042}JÖRK ,  Jóga,90,0\n\
             abba,waterloo,1,1\n\
             Can,Vitamin C,,1\n",
        );
        let m = read_features(&f, &["tempo", "mode"], &vocab(), false).unwrap();
        assert_eq!(m.ids, vec![TrackId(0), TrackId(1)]);
        assert_eq!(m.values, vec![120.5, 1.0, 90.0, 0.0]);
        assert_eq!(m.join, JoinReport { records: 5, matched: 3, unmatched: 1, duplicates: 1 });
        assert_eq!(m.masked, 1);
        assert_eq!(
            m.masked_examples[0],
            MissingFeature {
                record: 5,
                track: "Can - Vitamin C".into(),
                column: "tempo".into(),
                value: String::new()
            }
        );
        // Strict: the same row is an error naming file, record, track and column.
        let e = read_features(&f, &["tempo", "mode"], &vocab(), true).unwrap_err().to_string();
        assert!(
            e.contains("f.csv, record 5: track Can - Vitamin C: column `tempo` is \"\""),
            "{e}"
        );
    }

    #[test]
    fn missing_columns_and_bad_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = write(dir.path(), "g.csv", "artist_name,track_name,tempo\nABBA,Waterloo,fast\n");
        let e = read_features(&f, &["tempo", "mode"], &vocab(), false).unwrap_err().to_string();
        assert!(e.contains("g.csv, line 1: no column `mode`"), "{e}");
        let m = read_features(&f, &["tempo"], &vocab(), false).unwrap();
        assert_eq!((m.ids.len(), m.masked), (0, 1));
        let f = write(dir.path(), "h.csv", "name,tempo\nx,1\n");
        let e = ContentTable::read(&f).unwrap_err().to_string();
        assert!(
            e.contains("no artist column: expected one of artist_name, artistName, artist"),
            "{e}"
        );
        let f = write(dir.path(), "i.csv", "artist,title,tempo\nABBA,Waterloo,inf\n");
        let m = read_features(&f, &["tempo"], &vocab(), false).unwrap();
        assert_eq!(m.masked, 1, "an infinite value is not a feature");
    }
}
