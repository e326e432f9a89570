//! Helpers of segue's end-to-end tests: small listening logs written in each supported format.

use std::path::{Path, PathBuf};

/// One play: user, start time (epoch seconds), artist, title.
pub type Play = (&'static str, i64, String, String);

/// 2020-01-01T00:00:00Z.
pub const T0: i64 = 1_577_836_800;

/// Formats epoch seconds as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso(secs: i64) -> String {
    segue_sessions::time::format_utc(secs)
}

/// Writes plays as a Last.fm 1K TSV file.
pub fn write_lastfm(path: &Path, plays: &[Play]) -> PathBuf {
    let mut s = String::new();
    for (u, t, a, title) in plays {
        s += &format!("{u}\t{}\t\t{a}\t\t{title}\n", iso(*t));
    }
    std::fs::write(path, s).unwrap();
    path.to_path_buf()
}

/// A user's sessions: `sessions` sessions of `len` plays 3 minutes apart, 5 hours between
/// sessions, tracks drawn round-robin from `catalogue` titles of one artist.
pub fn sessions_of(
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
