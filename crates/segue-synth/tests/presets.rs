//! The generator's promises: determinism across thread counts, preset statistics in the stated
//! ranges, ground truth consistent with the files, and a clean read through segue-sessions.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use segue_core::NoProgress;
use segue_sessions::{Format, IngestOptions, SessionOptions, SourceSpec, ingest, sessionize};
use segue_synth::{Preset, SynthConfig, generate};

const FILES: [&str; 7] = [
    "listens.tsv",
    "audio_features.csv",
    "lyrics.csv",
    "tags.csv",
    "users.csv",
    "truth.csv",
    "synth.json",
];

fn write_with_threads(cfg: &SynthConfig, threads: usize, dir: &Path) {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    pool.install(|| generate(cfg).write(dir).unwrap());
}

#[test]
fn same_seed_same_bytes_whatever_the_threads() {
    let cfg = SynthConfig { listens: 20_000, ..SynthConfig::preset(Preset::Tiny, 11) };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_with_threads(&cfg, 1, a.path());
    write_with_threads(&cfg, 3, b.path());
    for f in FILES {
        assert_eq!(
            std::fs::read(a.path().join(f)).unwrap(),
            std::fs::read(b.path().join(f)).unwrap(),
            "{f} differs"
        );
    }
    let c = tempfile::tempdir().unwrap();
    write_with_threads(&SynthConfig { seed: 12, ..cfg }, 2, c.path());
    assert_ne!(
        std::fs::read(a.path().join("listens.tsv")).unwrap(),
        std::fs::read(c.path().join("listens.tsv")).unwrap()
    );
}

fn csv_keys(path: &Path) -> Vec<(String, String)> {
    // The generator quotes only fields with commas or quotes; names never hold newlines.
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    let mut rows = text.split('\n').skip(1).peekable();
    while let Some(line) = rows.next() {
        if line.is_empty() {
            continue;
        }
        let fields = split_csv(line);
        out.push((fields[0].clone(), fields[1].clone()));
        // Skip continuation lines of a quoted multi-line lyrics field.
        let mut open = line.matches('"').count() % 2 == 1;
        while open {
            let next = rows.next().unwrap();
            open = next.matches('"').count().is_multiple_of(2);
        }
    }
    out
}

fn split_csv(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                chars.next();
                out.last_mut().unwrap().push('"');
            }
            ('"', _) => quoted = !quoted,
            (',', false) => out.push(String::new()),
            (c, _) => out.last_mut().unwrap().push(c),
        }
    }
    out
}

/// Stated ranges of the small preset (seed 0..): see the crate docs.
#[test]
fn small_preset_reads_back_cleanly_with_planted_statistics() {
    let cfg = SynthConfig::preset(Preset::Small, 3);
    let data = generate(&cfg);
    let dir = tempfile::tempdir().unwrap();
    let summary = data.write(dir.path()).unwrap();
    assert_eq!(summary.listens, 100_000);

    // Nothing is dropped on the way in: no skipped record, no duplicate.
    let opts = IngestOptions { strict: true, ..IngestOptions::default() };
    let ing = ingest(
        &[SourceSpec::new(Format::Lastfm1k, ["listens.tsv"])],
        dir.path(),
        &opts,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(ing.skips.total(), 0, "{:?}", ing.skips);
    assert_eq!(ing.events.len(), 100_000);
    // Respelled names fold back onto the catalogue's keys.
    let played: HashSet<u32> = data.listens.iter().flatten().map(|l| l.0).collect();
    assert_eq!(ing.keys.height(), played.len());

    let out = sessionize(&ing.events, &ing.keys, &SessionOptions::default()).unwrap();
    let s = &out.stats;
    assert_eq!(s.users, 50);
    assert_eq!(
        s.sessions_before_filter, data.planted_sessions,
        "a 2 h gap recovers the planted sessions"
    );
    assert!(
        (12.5..=15.5).contains(&s.mean_session_length),
        "mean session length {}",
        s.mean_session_length
    );
    assert!((80_000..=95_000).contains(&s.events), "events {}", s.events);
    assert!((2_000..=3_000).contains(&s.unique_songs), "unique songs {}", s.unique_songs);

    // At-risk users repeat within sessions more than the others.
    let k10: HashMap<&str, u32> = data.users.iter().map(|u| (u.id.as_str(), u.k10)).collect();
    let mean = |risk: bool| {
        let v: Vec<f64> = s
            .per_user
            .iter()
            .filter(|u| (k10[u.user.as_str()] >= 29) == risk)
            .map(|u| u.repeat_share)
            .collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(true) > mean(false) + 0.03, "at risk {} vs not {}", mean(true), mean(false));

    // Content coverage and ground truth.
    let truth = csv_keys(&dir.path().join("truth.csv"));
    assert_eq!(truth.len(), cfg.tracks);
    let truth: HashSet<(String, String)> = truth.into_iter().collect();
    assert_eq!(truth.len(), cfg.tracks, "track keys are unique");
    for (file, share_missing) in [
        ("lyrics.csv", cfg.lyrics_missing),
        ("audio_features.csv", cfg.features_missing),
        ("tags.csv", cfg.tags_missing),
    ] {
        let keys = csv_keys(&dir.path().join(file));
        assert!(keys.iter().all(|k| truth.contains(k)), "{file} names a track outside the truth");
        let missing = 1.0 - keys.len() as f64 / cfg.tracks as f64;
        assert!(
            (missing - share_missing).abs() < 0.03,
            "{file}: {missing} missing, planted {share_missing}"
        );
    }
}

#[test]
fn tiny_preset_statistics_in_range() {
    for seed in 0..3 {
        let data = generate(&SynthConfig::preset(Preset::Tiny, seed));
        let dir = tempfile::tempdir().unwrap();
        data.write(dir.path()).unwrap();
        let opts = IngestOptions { strict: true, ..IngestOptions::default() };
        let src = [SourceSpec::new(Format::Lastfm1k, ["listens.tsv"])];
        let ing = ingest(&src, dir.path(), &opts, &NoProgress).unwrap();
        assert_eq!(ing.events.len(), 4_000);
        let s = sessionize(&ing.events, &ing.keys, &SessionOptions::default()).unwrap().stats;
        assert_eq!(s.users, 8);
        assert!((3_000..=3_900).contains(&s.events), "seed {seed}: events {}", s.events);
        assert!(
            (11.0..=17.0).contains(&s.mean_session_length),
            "seed {seed}: {}",
            s.mean_session_length
        );
        assert!((250..=400).contains(&s.unique_songs), "seed {seed}: unique {}", s.unique_songs);
    }
}

#[test]
fn features_are_in_spotify_units() {
    let data = generate(&SynthConfig::preset(Preset::Tiny, 1));
    for t in &data.tracks {
        if let Some(f) = t.features {
            assert!(
                (90_000.0..=420_000.0).contains(&f[2]) && f[2].fract() == 0.0,
                "duration {}",
                f[2]
            );
            assert!((-30.0..=0.0).contains(&f[6]), "loudness {}", f[6]);
            assert!((60.0..=200.0).contains(&f[8]), "tempo {}", f[8]);
            assert!(f[10] == 0.0 || f[10] == 1.0, "mode {}", f[10]);
            for k in [0, 1, 3, 4, 5, 7, 9] {
                assert!((0.0..=1.0).contains(&f[k]));
            }
        }
    }
}
