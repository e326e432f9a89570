//! Catalogue limits (`min_track_plays`, `max_tracks`): counted on training sessions, the
//! removed tracks' plays taken out of every split, the sessions cut again, Table I told.

use polars::prelude::*;
use segue_sessions::{CatalogueLimits, Events, SessionOptions, sessionize};

/// Two users, 10 sessions each a day apart (7 train, 3 test): plays 0-4 are tracks 10-14, the
/// 6th play is track 1 in session 0, track 15 in sessions 1-6, track 2 in the test sessions.
fn events() -> (Events, DataFrame) {
    let (mut user, mut ts, mut key) = (Vec::new(), Vec::new(), Vec::new());
    for u in ["u1", "u2"] {
        for s in 0..10u32 {
            let last = match s {
                0 => 1,
                1..=6 => 15,
                _ => 2,
            };
            for (i, k) in [10, 11, 12, 13, 14, last].into_iter().enumerate() {
                user.push(u);
                ts.push(1_600_000_000 + i64::from(s) * 86_400 + i as i64 * 60);
                key.push(k as u32);
            }
        }
    }
    let events = df!("user" => user, "ts" => ts, "track_key" => key).unwrap();
    let names: Vec<String> = (0..16).map(|k| format!("t{k:02}")).collect();
    let keys = df!(
        "track_key" => (0..16u32).collect::<Vec<_>>(),
        "artist_key" => vec!["a"; 16],
        "title_key" => names.clone(),
        "artist" => vec!["A"; 16],
        "title" => names,
    )
    .unwrap();
    (Events::from_frame(&events).unwrap(), keys)
}

fn options(min_track_plays: usize, max_tracks: usize) -> SessionOptions {
    SessionOptions { validation_share: 0.0, min_track_plays, max_tracks, ..Default::default() }
}

fn titles(tracks: &DataFrame) -> Vec<String> {
    segue_sessions::parquet::str_column(tracks, "title").unwrap()
}

#[test]
fn rare_tracks_leave_every_split() {
    let (events, keys) = events();
    let plain = sessionize(&events, &keys, &options(0, 0)).unwrap();
    assert_eq!(plain.stats.unique_songs, 8);
    assert_eq!(plain.stats.catalogue_limits, None);

    // Track 1 has 2 training plays, track 2 none (test only): both go, with their 2 + 6 plays.
    let out = sessionize(&events, &keys, &options(3, 0)).unwrap();
    let limits = out.stats.catalogue_limits.clone().unwrap();
    assert_eq!(
        limits,
        CatalogueLimits {
            tracks_before: 8,
            tracks_rare: 2,
            tracks_beyond_max: 0,
            events_removed: 8,
            tracks_now_under_min: 0,
        }
    );
    assert_eq!(titles(&out.tracks), ["t10", "t11", "t12", "t13", "t14", "t15"]);
    assert_eq!(out.stats.events_before_sessionize, 120);
    assert_eq!(out.stats.events, 112);
    // Sessions of 5 are still long enough: the split is the same, the test sessions shorter.
    assert_eq!((out.stats.train_sessions, out.stats.test_sessions), (14, 6));
    assert_eq!(out.stats.test_events, 30);
    assert_eq!(out.stats.unseen_tracks, 0);
}

#[test]
fn max_tracks_keeps_the_most_played_in_training() {
    let (events, keys) = events();
    // Tracks 10-14 have 14 training plays, 15 has 12, 1 has 2, 2 none.
    let out = sessionize(&events, &keys, &options(0, 5)).unwrap();
    let limits = out.stats.catalogue_limits.clone().unwrap();
    assert_eq!((limits.tracks_rare, limits.tracks_beyond_max), (1, 2));
    assert_eq!(limits.events_removed, 12 + 2 + 6);
    assert_eq!(titles(&out.tracks), ["t10", "t11", "t12", "t13", "t14"]);
}

#[test]
fn sessions_cut_again_can_drop_and_reassign() {
    let (events, keys) = events();
    // With 6 plays needed, every session that lost its 6th play is dropped: only sessions 1-6
    // of each user remain, floor(0.7 * 6) = 4 of them train.
    let out = sessionize(&events, &keys, &SessionOptions { min_session_len: 6, ..options(3, 0) })
        .unwrap();
    assert_eq!((out.stats.train_sessions, out.stats.test_sessions), (8, 4));
    assert_eq!(out.stats.catalogue_limits.unwrap().tracks_now_under_min, 0);
}
