//! Deterministic synthetic listening datasets with planted multimodal structure, written in the
//! formats segue reads, from test size to the size of the paper's Last.fm data.
//!
//! What is planted, so every modality has something to find:
//! - `genres` latent genres; artists belong to one genre and tracks to one artist, in an
//!   "album order" (a track's successor is the next track of its artist).
//! - Track popularity within a genre follows a power law (Zipf, `zipf_exponent`).
//! - Users prefer 2-4 genres and own 10-25 favourite tracks in each, which they replay.
//! - Sessions are bursts: plays minutes apart (the previous track's duration times U(0.3, 1.05)),
//!   sessions at least 2.5 h apart, so a 2 h gap recovers them exactly. Lengths are geometric
//!   with mean `mean_session_len` before the >= 5 filter (14 after it, for the default 10).
//!   A session stays in one genre and switches with probability `genre_switch` per play.
//! - Audio features (Spotify's 11, in their units), lyric vocabulary (a 12-word theme per genre
//!   mixed into common words) and tags (4 per genre, 80% of a track's tags) are drawn per genre
//!   with noise. About 20% of tracks have no lyrics; `features_missing` and `tags_missing` set
//!   the shares without features or tags.
//! - Users have K-10 scores; at-risk users (29 or more) replay favourites and repeat tracks
//!   within a session more often, as the paper hypothesises.
//!
//! Nothing is planted as bad input: every listen reads back through segue-sessions.
//!
//! Presets, and the ranges their Table I falls in after segue's default sessionization (2 h gap,
//! sessions of 5 or more), checked by the tests for tiny and small:
//!
//! | preset | users | tracks | listens | events kept | mean session length | unique songs |
//! |---|---:|---:|---:|---:|---:|---:|
//! | tiny | 8 | 400 | 4,000 | 3,000 to 3,900 | 11 to 17 | 250 to 400 |
//! | small | 50 | 3,000 | 100,000 | 80,000 to 95,000 | 12.5 to 15.5 | 2,000 to 3,000 |
//! | paper | 541 | 414,000 | 5,500,000 | about 5.05 million | about 14 | about 380,000 |
//! | large | 20,000 | 2,000,000 | 50,000,000 | | | |
//!
//! The paper preset (seed 0) gave 360,735 sessions, 380,421 unique songs, 5,051,754 events and
//! a mean session length of 14.00; the paper's Table I has 394,057, 413,819, 5,492,139 and 13.9.
//! The same seed gives byte-identical files whatever the number of threads: every user and every
//! track draws from its own generator, seeded from the dataset seed and its index.
//!
//! ```
//! let cfg = segue_synth::SynthConfig::preset(segue_synth::Preset::Tiny, 7);
//! let data = segue_synth::generate(&cfg);
//! assert_eq!(data.users.len(), cfg.users);
//! let dir = tempfile::tempdir().unwrap();
//! let summary = data.write(dir.path()).unwrap();
//! assert_eq!(summary.listens, data.listens.iter().map(Vec::len).sum::<usize>());
//! assert!(dir.path().join("listens.tsv").exists());
//! ```
#![deny(missing_docs)]

mod words;

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use segue_core::{Error, Result};

/// Named sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// A few thousand listens: unit tests, well under a second.
    Tiny,
    /// About 100,000 listens, 50 users, 3,000 tracks: end-to-end tests.
    Small,
    /// The paper's size: about 5.5 million listens, 541 users, 414,000 tracks: benchmarks.
    Paper,
    /// Past the paper, at the scale of the public logs' subsets: about 50 million listens,
    /// 20,000 users, 2 million tracks (scale benchmarks; several GB of files).
    Large,
}

impl std::str::FromStr for Preset {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tiny" => Ok(Preset::Tiny),
            "small" => Ok(Preset::Small),
            "paper" => Ok(Preset::Paper),
            "large" => Ok(Preset::Large),
            other => Err(Error::Config(format!(
                "unknown preset {other:?}; expected tiny, small, paper or large"
            ))),
        }
    }
}

/// Every knob of the generator.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SynthConfig {
    /// Seed of everything.
    pub seed: u64,
    /// Number of users.
    pub users: usize,
    /// Catalogue size.
    pub tracks: usize,
    /// Latent genres.
    pub genres: usize,
    /// Tracks per artist (album order runs within an artist).
    pub tracks_per_artist: usize,
    /// Listens over all users (before any filtering).
    pub listens: usize,
    /// Mean of the geometric session length, before the >= 5 filter.
    pub mean_session_len: f64,
    /// Exponent of the power law of popularity within a genre.
    pub zipf_exponent: f64,
    /// Probability per play of switching to another preferred genre.
    pub genre_switch: f64,
    /// Probability of playing the previous track's successor in its artist's order.
    pub successor_prob: f64,
    /// Probability of playing one of the user's favourites (users not at risk).
    pub favourite_prob: f64,
    /// The same for at-risk users.
    pub at_risk_favourite_prob: f64,
    /// Probability of replaying a track already played in the session (users not at risk).
    pub repeat_prob: f64,
    /// The same for at-risk users.
    pub at_risk_repeat_prob: f64,
    /// Share of users at risk (K-10 of 29 or more).
    pub at_risk_share: f64,
    /// Share of tracks without lyrics.
    pub lyrics_missing: f64,
    /// Share of tracks without audio features.
    pub features_missing: f64,
    /// Share of tracks without tags.
    pub tags_missing: f64,
    /// Noise of a track's audio features around its genre's mean, as a share of each range.
    pub feature_noise: f64,
    /// Share of listens whose names are spelled with other case or spacing than the content
    /// files (exercises track-identity normalisation).
    pub respelled_share: f64,
    /// Mean hours between sessions beyond the 2.5 h minimum.
    pub mean_gap_hours: f64,
    /// Earliest first play, epoch seconds.
    pub start: i64,
}

impl SynthConfig {
    /// A preset with a seed.
    pub fn preset(preset: Preset, seed: u64) -> Self {
        let base = SynthConfig {
            seed,
            users: 50,
            tracks: 3_000,
            genres: 20,
            tracks_per_artist: 8,
            listens: 100_000,
            mean_session_len: 10.0,
            zipf_exponent: 1.0,
            genre_switch: 0.1,
            successor_prob: 0.25,
            favourite_prob: 0.3,
            at_risk_favourite_prob: 0.5,
            repeat_prob: 0.03,
            at_risk_repeat_prob: 0.12,
            at_risk_share: 0.3,
            lyrics_missing: 0.2,
            features_missing: 0.05,
            tags_missing: 0.1,
            feature_noise: 0.12,
            respelled_share: 0.05,
            mean_gap_hours: 12.0,
            start: 1_136_073_600, // 2006-01-01
        };
        match preset {
            Preset::Tiny => {
                SynthConfig { users: 8, tracks: 400, genres: 5, listens: 4_000, ..base }
            }
            Preset::Small => base,
            Preset::Paper => SynthConfig {
                users: 541,
                tracks: 414_000,
                genres: 40,
                listens: 5_500_000,
                zipf_exponent: 0.75,
                mean_gap_hours: 4.0,
                ..base
            },
            // The paper preset's structure with 37x the users, 5x the tracks, 9x the listens:
            // about 2,500 listens per user (the paper: about 10,000).
            Preset::Large => SynthConfig {
                users: 20_000,
                tracks: 2_000_000,
                genres: 200,
                listens: 50_000_000,
                zipf_exponent: 0.75,
                mean_gap_hours: 4.0,
                ..base
            },
        }
    }

    /// Checks the knobs, naming a bad one.
    pub fn validate(&self) -> Result<()> {
        let counts = [
            ("users", self.users),
            ("tracks", self.tracks),
            ("genres", self.genres),
            ("tracks_per_artist", self.tracks_per_artist),
            ("listens", self.listens),
        ];
        for (name, v) in counts {
            if v == 0 {
                return Err(Error::Config(format!("synth.{name} = 0: must be positive")));
            }
        }
        if self.tracks < self.genres * self.tracks_per_artist {
            return Err(Error::Config(format!(
                "synth.tracks = {}: need at least genres x tracks_per_artist = {}",
                self.tracks,
                self.genres * self.tracks_per_artist
            )));
        }
        let shares = [
            ("genre_switch", self.genre_switch),
            ("successor_prob", self.successor_prob),
            ("favourite_prob", self.favourite_prob),
            ("at_risk_favourite_prob", self.at_risk_favourite_prob),
            ("repeat_prob", self.repeat_prob),
            ("at_risk_repeat_prob", self.at_risk_repeat_prob),
            ("at_risk_share", self.at_risk_share),
            ("lyrics_missing", self.lyrics_missing),
            ("features_missing", self.features_missing),
            ("tags_missing", self.tags_missing),
            ("respelled_share", self.respelled_share),
            ("feature_noise", self.feature_noise),
        ];
        for (name, v) in shares {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::Config(format!("synth.{name} = {v}: must be in [0, 1]")));
            }
        }
        if self.mean_session_len < 1.0 || self.zipf_exponent < 0.0 || self.mean_gap_hours < 0.0 {
            return Err(Error::Config("synth: mean_session_len >= 1, zipf_exponent >= 0 and mean_gap_hours >= 0 are needed".into()));
        }
        Ok(())
    }
}

/// Spotify's 11 audio features, in Spotify's units.
pub const FEATURES: [&str; 11] = [
    "acousticness",
    "danceability",
    "duration_ms",
    "energy",
    "instrumentalness",
    "liveness",
    "loudness",
    "speechiness",
    "tempo",
    "valence",
    "mode",
];
const RANGES: [(f64, f64); 11] = [
    (0.0, 1.0),
    (0.0, 1.0),
    (90_000.0, 420_000.0),
    (0.0, 1.0),
    (0.0, 1.0),
    (0.0, 1.0),
    (-30.0, 0.0),
    (0.0, 1.0),
    (60.0, 200.0),
    (0.0, 1.0),
    (0.0, 1.0),
];

/// One track of the catalogue and its content.
#[derive(Debug, Clone)]
pub struct Track {
    /// Artist name.
    pub artist: String,
    /// Title.
    pub title: String,
    /// Index of the artist.
    pub artist_index: u32,
    /// Planted genre.
    pub genre: u32,
    /// Popularity rank within the genre (0 = most popular).
    pub rank: u32,
    /// The 11 features, `None` when the track has none.
    pub features: Option<[f64; 11]>,
    /// Lyrics, `None` when the track has none.
    pub lyrics: Option<String>,
    /// Tags, `None` when the track has none.
    pub tags: Option<Vec<&'static str>>,
}

/// One user.
#[derive(Debug, Clone)]
pub struct User {
    /// The id written to the files.
    pub id: String,
    /// Kessler K-10 score, 10 to 50.
    pub k10: u32,
    /// Preferred genres.
    pub genres: Vec<u32>,
}

/// One play: track index and start time in epoch seconds.
pub type Listen = (u32, i64);

/// A generated dataset.
#[derive(Debug)]
pub struct Dataset {
    /// The configuration it came from.
    pub config: SynthConfig,
    /// The catalogue.
    pub tracks: Vec<Track>,
    /// The users.
    pub users: Vec<User>,
    /// Each user's plays in time order.
    pub listens: Vec<Vec<Listen>>,
    /// Sessions planted (before any length filter).
    pub planted_sessions: usize,
}

/// Counts of what [`Dataset::write`] wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WriteSummary {
    /// Lines of listens.tsv.
    pub listens: usize,
    /// Rows of audio_features.csv.
    pub with_features: usize,
    /// Rows of lyrics.csv.
    pub with_lyrics: usize,
    /// Rows of tags.csv.
    pub with_tags: usize,
}

fn rng_for(seed: u64, stream: u64, index: u64) -> ChaCha8Rng {
    // SplitMix-style mixing so neighbouring indices get unrelated streams.
    let mut z = seed
        ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ index.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ChaCha8Rng::seed_from_u64(z ^ (z >> 31))
}

fn normal(rng: &mut impl Rng) -> f64 {
    // Box-Muller; one value per call keeps streams simple.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn name(rng: &mut impl Rng, words: usize) -> String {
    let mut out = String::new();
    for w in 0..words {
        if w > 0 {
            out.push(' ');
        }
        let n = rng.random_range(2..=3);
        let mut word = String::new();
        for _ in 0..n {
            word.push_str(words::SYLLABLES[rng.random_range(0..words::SYLLABLES.len())]);
        }
        let mut c = word.chars();
        let first = c.next().map(|f| f.to_ascii_uppercase()).unwrap_or('X');
        out.push(first);
        out.extend(c);
    }
    out
}

/// Cumulative Zipf weights of `n` ranks.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let mut acc = 0.0;
    (0..n)
        .map(|r| {
            acc += 1.0 / ((r + 1) as f64).powf(s);
            acc
        })
        .collect()
}

fn draw_cdf(rng: &mut impl Rng, cdf: &[f64]) -> usize {
    let x = rng.random::<f64>() * cdf[cdf.len() - 1];
    cdf.partition_point(|&c| c <= x).min(cdf.len() - 1)
}

struct Genre {
    /// Tracks by popularity rank.
    tracks: Vec<u32>,
    cdf: Vec<f64>,
    theme: Vec<&'static str>,
    tags: Vec<&'static str>,
    feature_mean: [f64; 11],
}

/// Generates a dataset (in memory; [`Dataset::write`] writes it).
pub fn generate(cfg: &SynthConfig) -> Dataset {
    let mut rng = rng_for(cfg.seed, 0, 0);
    let artists = make_artists(cfg);
    let (genres, rank) = make_genres(cfg, &artists, &mut rng);
    let tracks: Vec<Track> = (0..cfg.tracks)
        .into_par_iter()
        .map(|t| make_track(cfg, t, &artists, &genres, &rank))
        .collect();
    let (users, counts) = make_users(cfg, &mut rng);
    let per_user: Vec<(Vec<Listen>, usize)> = users
        .par_iter()
        .enumerate()
        .map(|(u, user)| user_listens(cfg, u, user, counts[u], &genres, &tracks))
        .collect();
    let planted_sessions = per_user.iter().map(|p| p.1).sum();
    let listens = per_user.into_iter().map(|p| p.0).collect();
    Dataset { config: cfg.clone(), tracks, users, listens, planted_sessions }
}

/// Artists: genre and a unique name, drawn in order.
fn make_artists(cfg: &SynthConfig) -> Vec<(String, u32)> {
    let n_artists = cfg.tracks.div_ceil(cfg.tracks_per_artist);
    let mut seen = std::collections::HashSet::new();
    (0..n_artists)
        .map(|a| {
            let genre = (a % cfg.genres) as u32;
            let mut r = rng_for(cfg.seed, 1, a as u64);
            let mut n = name(&mut r, 2);
            while !seen.insert(n.clone()) {
                n = name(&mut r, 2);
            }
            if a % 37 == 5 {
                n = format!("{n} & the Ünïcode Quartet"); // non-ASCII letters and an ampersand
            }
            (n, genre)
        })
        .collect()
}

/// Genres (lyric theme, tags, mean audio features) with their tracks in popularity order, and
/// each track's popularity rank within its genre.
fn make_genres(
    cfg: &SynthConfig,
    artists: &[(String, u32)],
    rng: &mut ChaCha8Rng,
) -> (Vec<Genre>, Vec<u32>) {
    let lyric_pool = words::LYRIC_WORDS;
    let mut genres: Vec<Genre> = (0..cfg.genres)
        .map(|g| {
            let mut r = rng_for(cfg.seed, 2, g as u64);
            let theme = (0..12).map(|_| lyric_pool[r.random_range(0..lyric_pool.len())]).collect();
            let tags = (0..4)
                .map(|_| words::TAG_WORDS[r.random_range(0..words::TAG_WORDS.len())])
                .collect();
            let mut feature_mean = [0.0; 11];
            for (m, (lo, hi)) in feature_mean.iter_mut().zip(RANGES) {
                *m = lo + (hi - lo) * r.random_range(0.15..0.85);
            }
            Genre { tracks: Vec::new(), cdf: Vec::new(), theme, tags, feature_mean }
        })
        .collect();
    for t in 0..cfg.tracks {
        genres[artists[t / cfg.tracks_per_artist].1 as usize].tracks.push(t as u32);
    }
    let mut rank = vec![0u32; cfg.tracks];
    for g in &mut genres {
        // Popularity order: a seeded shuffle of the genre's tracks.
        for i in (1..g.tracks.len()).rev() {
            let j = rng.random_range(0..=i);
            g.tracks.swap(i, j);
        }
        for (r, &t) in g.tracks.iter().enumerate() {
            rank[t as usize] = r as u32;
        }
        g.cdf = zipf_cdf(g.tracks.len(), cfg.zipf_exponent);
    }
    (genres, rank)
}

/// Track `t`: its name, and audio features, lyrics and tags drawn around its genre's.
fn make_track(
    cfg: &SynthConfig,
    t: usize,
    artists: &[(String, u32)],
    genres: &[Genre],
    rank: &[u32],
) -> Track {
    let lyric_pool = words::LYRIC_WORDS;
    let mut r = rng_for(cfg.seed, 3, t as u64);
    let a = t / cfg.tracks_per_artist;
    let (artist, genre) = (&artists[a].0, artists[a].1);
    let genre_of = &genres[genre as usize];
    let words = r.random_range(1..=3);
    let mut title = name(&mut r, words);
    title.push_str(&format!(" {}", t % cfg.tracks_per_artist + 1)); // unique within the artist
    if t % 53 == 7 {
        title = format!("\"{title}\" (it's a remix)");
    }
    let features = (r.random::<f64>() >= cfg.features_missing).then(|| {
        let mut f = [0.0; 11];
        for (k, v) in f.iter_mut().enumerate() {
            let (lo, hi) = RANGES[k];
            *v = if k == 10 {
                // mode: major with the genre's probability
                f64::from(r.random::<f64>() < genre_of.feature_mean[k])
            } else {
                (genre_of.feature_mean[k] + normal(&mut r) * cfg.feature_noise * (hi - lo))
                    .clamp(lo, hi)
            };
        }
        f[2] = f[2].round();
        f
    });
    let lyrics = (r.random::<f64>() >= cfg.lyrics_missing).then(|| {
        let n = r.random_range(30..=200);
        let mut s = String::new();
        for i in 0..n {
            if i > 0 {
                s.push(if i % 8 == 0 { '\n' } else { ' ' });
            }
            let w = if r.random::<f64>() < 0.45 {
                genre_of.theme[r.random_range(0..genre_of.theme.len())]
            } else {
                lyric_pool[r.random_range(0..lyric_pool.len())]
            };
            s.push_str(w);
        }
        s
    });
    let tags = (r.random::<f64>() >= cfg.tags_missing).then(|| {
        let n = r.random_range(2..=5);
        let mut v: Vec<&'static str> = Vec::new();
        for _ in 0..n {
            let tag = if r.random::<f64>() < 0.8 {
                genre_of.tags[r.random_range(0..genre_of.tags.len())]
            } else {
                words::TAG_WORDS[r.random_range(0..words::TAG_WORDS.len())]
            };
            if !v.contains(&tag) {
                v.push(tag);
            }
        }
        v
    });
    Track {
        artist: artist.clone(),
        title,
        artist_index: a as u32,
        genre,
        rank: rank[t],
        features,
        lyrics,
        tags,
    }
}

/// Users (K-10, preferred genres) and how many listens each gets.
fn make_users(cfg: &SynthConfig, rng: &mut ChaCha8Rng) -> (Vec<User>, Vec<usize>) {
    let mut users = Vec::with_capacity(cfg.users);
    let mut weights = Vec::with_capacity(cfg.users);
    for u in 0..cfg.users {
        let at_risk = rng.random::<f64>() < cfg.at_risk_share;
        let k10 = if at_risk { rng.random_range(29..=50) } else { rng.random_range(10..=28) };
        let n_pref = rng.random_range(2..=4).min(cfg.genres);
        let mut prefs: Vec<u32> = Vec::new();
        while prefs.len() < n_pref {
            let g = rng.random_range(0..cfg.genres) as u32;
            if !prefs.contains(&g) {
                prefs.push(g);
            }
        }
        users.push(User { id: format!("user_{:06}", u + 1), k10, genres: prefs });
        weights.push((0.5 * normal(rng)).exp());
    }
    let total_w: f64 = weights.iter().sum();
    let mut counts: Vec<usize> =
        weights.iter().map(|w| (cfg.listens as f64 * w / total_w).floor() as usize).collect();
    let short = cfg.listens - counts.iter().sum::<usize>();
    for c in counts.iter_mut().take(short) {
        *c += 1;
    }
    (users, counts)
}

fn user_listens(
    cfg: &SynthConfig,
    u: usize,
    user: &User,
    count: usize,
    genres: &[Genre],
    tracks: &[Track],
) -> (Vec<Listen>, usize) {
    let mut r = rng_for(cfg.seed, 4, u as u64);
    let at_risk = user.k10 >= 29;
    let fav_p = if at_risk { cfg.at_risk_favourite_prob } else { cfg.favourite_prob };
    let rep_p = if at_risk { cfg.at_risk_repeat_prob } else { cfg.repeat_prob };
    let favourites: Vec<Vec<u32>> = user
        .genres
        .iter()
        .map(|&g| {
            let genre_of = &genres[g as usize];
            let n = r.random_range(10..=25).min(genre_of.tracks.len());
            (0..n).map(|_| genre_of.tracks[draw_cdf(&mut r, &genre_of.cdf)]).collect()
        })
        .collect();
    let p_geom = 1.0 / cfg.mean_session_len;
    let mut t = cfg.start + r.random_range(0..(2 * 365 * 86_400));
    let mut out: Vec<Listen> = Vec::with_capacity(count);
    let mut sessions = 0;
    while out.len() < count {
        sessions += 1;
        let mut len = 1;
        while r.random::<f64>() >= p_geom {
            len += 1;
        }
        let len = len.min(count - out.len());
        let mut gi = r.random_range(0..user.genres.len());
        let start = out.len();
        let mut prev: Option<u32> = None;
        for _ in 0..len {
            if r.random::<f64>() < cfg.genre_switch {
                gi = r.random_range(0..user.genres.len());
            }
            let genre_of = &genres[user.genres[gi] as usize];
            let x = r.random::<f64>();
            let track = if x < rep_p && out.len() > start {
                out[r.random_range(start..out.len())].0
            } else if x < rep_p + cfg.successor_prob
                && prev.is_some_and(|p| {
                    (p as usize + 1) < tracks.len()
                        && tracks[p as usize + 1].artist_index == tracks[p as usize].artist_index
                })
            {
                prev.map_or(0, |p| p + 1)
            } else if x < rep_p + cfg.successor_prob + fav_p {
                favourites[gi][r.random_range(0..favourites[gi].len())]
            } else {
                genre_of.tracks[draw_cdf(&mut r, &genre_of.cdf)]
            };
            if let Some(p) = prev {
                let dur = tracks[p as usize].features.map_or(210_000.0, |f| f[2]) / 1000.0;
                t += (dur * r.random_range(0.3..1.05)).max(20.0) as i64;
            }
            out.push((track, t));
            prev = Some(track);
        }
        // At least 2.5 h to the next session.
        t += 9_000 + (-(r.random::<f64>().max(1e-12)).ln() * cfg.mean_gap_hours * 3600.0) as i64;
    }
    (out, sessions)
}

fn csv(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn respell(s: &str, how: u64) -> String {
    match how % 3 {
        0 => s.to_uppercase(),
        1 => format!("  {}", s.replace(' ', "  ")),
        _ => s.to_lowercase(),
    }
}

/// Users whose lines [`Dataset::write`] formats before writing them.
const USERS_PER_WRITE: usize = 256;

impl Dataset {
    /// Writes `listens.tsv` (Last.fm 1K, per user in reverse time order as Last.fm 1K is),
    /// `audio_features.csv`, `lyrics.csv`, `tags.csv`, `users.csv`, `truth.csv` and
    /// `synth.json` into `dir`, each atomically.
    pub fn write(&self, dir: &Path) -> Result<WriteSummary> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let cfg = &self.config;
        let user_lines = |u: usize, plays: &[Listen]| {
            let mut buf = Vec::with_capacity(plays.len() * 120);
            let user = &self.users[u].id;
            for (i, &(track, ts)) in plays.iter().enumerate().rev() {
                let tr = &self.tracks[track as usize];
                let h = (u as u64) << 32 | i as u64;
                let mixed = h.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
                let respelled = (mixed % 1_000_000) as f64 / 1e6 < cfg.respelled_share;
                let (artist, title) = if respelled {
                    (respell(&tr.artist, mixed), respell(&tr.title, mixed >> 8))
                } else {
                    (tr.artist.clone(), tr.title.clone())
                };
                let _ =
                    writeln!(buf, "{user}\t{}\t\t{artist}\t\t{title}", segue_core::format_utc(ts));
            }
            buf
        };
        let listens: usize = self.listens.iter().map(Vec::len).sum();
        // Users formatted in parallel a group at a time, so the text held in memory stays a
        // group's (the large preset's whole file is several GB).
        segue_core::fs::write_atomic(&dir.join("listens.tsv"), |out| {
            for (g, group) in self.listens.chunks(USERS_PER_WRITE).enumerate() {
                let chunks: Vec<Vec<u8>> = group
                    .par_iter()
                    .enumerate()
                    .map(|(i, plays)| user_lines(g * USERS_PER_WRITE + i, plays))
                    .collect();
                for c in &chunks {
                    out.write_all(c).map_err(|e| Error::io(dir.join("listens.tsv"), e))?;
                }
            }
            Ok(())
        })?;

        let mut features = format!("artist_name,track_name,{}\n", FEATURES.join(","));
        let mut lyrics = String::from("artist_name,track_name,lyrics\n");
        let mut tags = String::from("artist_name,track_name,tags\n");
        let mut truth = String::from("artist_name,track_name,genre,artist_index,popularity_rank\n");
        let (mut nf, mut nl, mut nt) = (0, 0, 0);
        for tr in &self.tracks {
            let (a, t) = (csv(&tr.artist), csv(&tr.title));
            if let Some(f) = &tr.features {
                nf += 1;
                features.push_str(&format!("{a},{t}"));
                for (k, v) in f.iter().enumerate() {
                    match k {
                        2 | 10 => features.push_str(&format!(",{}", *v as i64)),
                        _ => features.push_str(&format!(",{v:.4}")),
                    }
                }
                features.push('\n');
            }
            if let Some(l) = &tr.lyrics {
                nl += 1;
                lyrics.push_str(&format!("{a},{t},{}\n", csv(l)));
            }
            if let Some(tg) = &tr.tags {
                nt += 1;
                tags.push_str(&format!("{a},{t},{}\n", csv(&tg.join(";"))));
            }
            truth.push_str(&format!("{a},{t},{},{},{}\n", tr.genre, tr.artist_index, tr.rank));
        }
        let mut users = String::from("user_id,k10\n");
        for u in &self.users {
            users.push_str(&format!("{},{}\n", u.id, u.k10));
        }
        let w =
            |name: &str, s: &str| segue_core::fs::write_bytes_atomic(&dir.join(name), s.as_bytes());
        w("audio_features.csv", &features)?;
        w("lyrics.csv", &lyrics)?;
        w("tags.csv", &tags)?;
        w("truth.csv", &truth)?;
        w("users.csv", &users)?;
        let summary = WriteSummary { listens, with_features: nf, with_lyrics: nl, with_tags: nt };
        let meta = serde_json::json!({ "config": cfg, "summary": summary, "planted_sessions": self.planted_sessions });
        w(
            "synth.json",
            &serde_json::to_string_pretty(&meta)
                .map_err(|e| Error::backend("serde_json", "synth.json", e))?,
        )?;
        Ok(summary)
    }
}
