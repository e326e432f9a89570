//! Properties of sessionization and track identity on random logs.

use proptest::prelude::*;
use segue_core::{NoProgress, normalize_name};
use segue_sessions::{Format, IngestOptions, SessionOptions, SourceSpec, ingest, sessionize};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn normalisation_is_idempotent(s in "\\PC{0,24}") {
        let once = normalize_name(&s);
        prop_assert_eq!(normalize_name(&once), once.clone());
        prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
    }

    /// Random plays of a few users: sessions partition the kept events, gaps inside a session
    /// are below the threshold and between a user's kept sessions at or above it, and each
    /// user's first floor(0.7 n) sessions are the training ones.
    #[test]
    fn sessions_partition_and_split(
        plays in prop::collection::vec((0u8..3, 0i64..200_000, 0u8..12), 1..300),
        gap in 600i64..10_000,
        min_len in 2usize..6,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = String::new();
        for (u, t, k) in &plays {
            log += &format!("u{u}\t{}\t\tA\t\tT{k}\n", segue_core::format_utc(1_600_000_000 + t));
        }
        std::fs::write(dir.path().join("l.tsv"), log).unwrap();
        let src = [SourceSpec::new(Format::Lastfm1k, ["l.tsv"])];
        let ing = ingest(&src, dir.path(), &IngestOptions::default(), &NoProgress).unwrap();
        let opts = SessionOptions { gap_seconds: gap, min_session_len: min_len, train_share: 0.7, validation_share: 0.0, ..SessionOptions::default() };
        let out = sessionize(&ing.events, &ing.keys, &opts).unwrap();
        let df = &out.sessions().unwrap();
        let user: Vec<String> = df.column("user").unwrap().str().unwrap().iter().map(|u| u.unwrap().to_string()).collect();
        let session: Vec<u32> = df.column("session").unwrap().u32().unwrap().iter().map(Option::unwrap).collect();
        let position: Vec<u32> = df.column("position").unwrap().u32().unwrap().iter().map(Option::unwrap).collect();
        let ts: Vec<i64> = df.column("ts").unwrap().i64().unwrap().iter().map(Option::unwrap).collect();
        let split: Vec<u8> = df.column("split").unwrap().u8().unwrap().iter().map(Option::unwrap).collect();
        prop_assert_eq!(out.stats.events, df.height());
        prop_assert_eq!(out.stats.events + out.stats.events_in_dropped_sessions, ing.events.len());
        let mut per_user: std::collections::BTreeMap<&str, Vec<u8>> = Default::default();
        let mut len = 0usize;
        for i in 0..df.height() {
            if i > 0 && session[i] == session[i - 1] {
                prop_assert_eq!(position[i], position[i - 1] + 1);
                prop_assert!(ts[i] - ts[i - 1] < gap);
                prop_assert_eq!(&user[i], &user[i - 1]);
                len += 1;
            } else {
                prop_assert!(i == 0 || len >= min_len);
                prop_assert_eq!(position[i], 0);
                if i > 0 && user[i] == user[i - 1] {
                    prop_assert!(ts[i] - ts[i - 1] >= gap);
                }
                per_user.entry(user[i].as_str()).or_default().push(split[i]);
                len = 1;
            }
        }
        prop_assert!(df.height() == 0 || len >= min_len);
        for splits in per_user.values() {
            let n_train = (splits.len() as f64 * 0.7 + 1e-9).floor() as usize;
            for (r, s) in splits.iter().enumerate() {
                prop_assert_eq!(*s, if r < n_train { 0 } else { 2 });
            }
        }
    }
}
