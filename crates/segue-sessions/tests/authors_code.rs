//! The authors'-code departures of sessionize: a pooled random split of sessions and sessions
//! cut into pieces after the split (README, "The authors'-code protocol").

use polars::prelude::*;
use segue_sessions::{Events, SessionOptions, Split, SplitRule, sessionize};

/// Two users, `n` sessions each of `len` plays one minute apart, sessions a day apart; track
/// keys cycle through 30.
fn events(n: usize, len: usize) -> (Events, DataFrame) {
    let (mut user, mut ts, mut key) = (Vec::new(), Vec::new(), Vec::new());
    for u in ["u1", "u2"] {
        for s in 0..n {
            for i in 0..len {
                user.push(u);
                ts.push(1_600_000_000 + (s * 86_400 + i * 60) as i64);
                key.push(((s * len + i) % 30) as u32);
            }
        }
    }
    let events = df!("user" => user, "ts" => ts, "track_key" => key).unwrap();
    let names: Vec<String> = (0..30).map(|k| format!("t{k}")).collect();
    let keys = df!(
        "track_key" => (0..30u32).collect::<Vec<_>>(),
        "artist_key" => vec!["a"; 30],
        "title_key" => names.clone(),
        "artist" => vec!["A"; 30],
        "title" => names,
    )
    .unwrap();
    (Events::from_frame(&events).unwrap(), keys)
}

/// (session, split code, length) of every session in file order.
fn sessions_of(df: &DataFrame) -> Vec<(u32, u8, usize)> {
    let session = df.column("session").unwrap().u32().unwrap().clone();
    let split = df.column("split").unwrap().u8().unwrap().clone();
    let mut out: Vec<(u32, u8, usize)> = Vec::new();
    for (s, c) in session.into_no_null_iter().zip(split.into_no_null_iter()) {
        match out.last_mut() {
            Some(last) if last.0 == s => last.2 += 1,
            _ => out.push((s, c, 1)),
        }
    }
    out
}

#[test]
fn random_split_pools_users_and_mixes_time() {
    let (events, keys) = events(20, 6);
    let options = SessionOptions {
        split: SplitRule::RandomSessions,
        validation_share: 0.0,
        ..SessionOptions::default()
    };
    let out = sessionize(&events, &keys, &options).unwrap();
    let st = &out.stats;
    // floor(0.7 * 40) of the pooled sessions train, not floor(0.7 * 20) per user.
    assert_eq!((st.train_sessions, st.test_sessions), (28, 12));
    // Some user has a test session before one of their training sessions (a leak the
    // chronological split never makes).
    let s = sessions_of(&out.sessions().unwrap());
    let per_user = |range: std::ops::Range<usize>| {
        let codes: Vec<u8> = s[range].iter().map(|x| x.1).collect();
        let first_test = codes.iter().position(|&c| c == Split::Test as u8);
        first_test.is_some_and(|f| codes[f..].contains(&(Split::Train as u8)))
    };
    assert!(per_user(0..20) || per_user(20..40));
    // The same seed, the same split; the chronological split is untouched by the new keys.
    assert_eq!(sessions_of(&sessionize(&events, &keys, &options).unwrap().sessions().unwrap()), s);
    let chrono = sessionize(&events, &keys, &SessionOptions::default()).unwrap();
    let u1 = &chrono.stats.per_user[0];
    assert_eq!((u1.train_sessions, u1.valid_sessions, u1.test_sessions), (13, 1, 6));
}

#[test]
fn chunks_cut_each_session_after_the_split() {
    let (events, keys) = events(10, 11);
    let options = SessionOptions { chunk_len: 4, ..SessionOptions::default() };
    let out = sessionize(&events, &keys, &options).unwrap();
    let s = sessions_of(&out.sessions().unwrap());
    // 11 plays: two pieces of 4 and a remainder of 3, dropped.
    assert_eq!(s.len(), 2 * 10 * 2);
    assert!(s.iter().all(|x| x.2 == 4));
    assert_eq!(out.stats.events_in_chunk_remainders, 2 * 10 * 3);
    assert_eq!(out.stats.sessions_dropped_short, 0);
    // Both pieces of a session share its split: u1's floor(0.7 * 10) = 7 training sessions
    // (floor(0.1 * 7) = 0 of them validating) give 14 pieces, its 3 test sessions 6.
    let u1 = &out.stats.per_user[0];
    assert_eq!((u1.train_sessions, u1.valid_sessions, u1.test_sessions), (14, 0, 6));
    assert!(SessionOptions { chunk_len: 1, ..SessionOptions::default() }.validate().is_err());
}

#[test]
fn the_first_predicted_position_must_leave_one_in_each_piece() {
    let ok = SessionOptions { chunk_len: 4, min_input_len: 3, ..SessionOptions::default() };
    assert!(ok.validate().is_ok());
    let none_left = SessionOptions { min_input_len: 4, ..ok.clone() };
    let e = none_left.validate().unwrap_err().to_string();
    assert!(e.contains("sessionize.min_input_len = 4") && e.contains("at most 3"), "{e}");
    let zero = SessionOptions { min_input_len: 0, ..SessionOptions::default() };
    assert!(zero.validate().unwrap_err().to_string().contains("min_input_len = 0"));
    // Whole sessions: any first position is allowed (short sessions just give fewer examples).
    assert!(SessionOptions { min_input_len: 9, ..SessionOptions::default() }.validate().is_ok());
}
