//! The sessionize stage: events -> sessions (a gap of `gap_seconds` or more starts a new one,
//! short ones are dropped), the per-user chronological split, and the vocabulary whose ids put
//! training tracks first.

use polars::prelude::*;
use segue_core::{Error, Result};

use crate::events::Events;
use crate::ingest::pl_err;
use crate::parquet;

/// Parameters of sessionization and the split (DESIGN.md, Protocol).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionOptions {
    /// A gap of at least this many seconds between two plays starts a new session.
    pub gap_seconds: i64,
    /// Sessions with fewer events are dropped.
    pub min_session_len: usize,
    /// Per user, the first floor(share * n) sessions in time order are training sessions.
    pub train_share: f64,
    /// Per user, the last floor(share * n_train) training sessions are held out for validation.
    pub validation_share: f64,
    /// How sessions are split: per user in time order (DESIGN.md), or the authors' code's
    /// pooled random split (a leak: a user's later sessions train the model tested on earlier
    /// ones).
    #[serde(skip_serializing_if = "SplitRule::is_default")]
    pub split: SplitRule,
    /// Seed of `split = "random-sessions"` (the authors' code: scikit-learn's random_state 42).
    #[serde(skip_serializing_if = "is_default_split_seed")]
    pub split_seed: u64,
    /// Cut each kept session, after the split, into consecutive pieces of this many plays and
    /// drop a shorter remainder; each piece is then a session (0: sessions stay whole). The
    /// authors' code trains and tests on pieces of 4 (3 inputs, 1 target).
    #[serde(skip_serializing_if = "is_zero")]
    pub chunk_len: usize,
    /// The first position of a session that is predicted, in every split and for every model
    /// and baseline: with `n`, the target is track `t >= n` and its input holds at least `n`
    /// tracks (1: every track after the first). The authors' code, with pieces of 4, predicts
    /// only the 4th: `min_input_len = 3`. Sessionize keeps every track; the models' and rules'
    /// examples read it.
    #[serde(skip_serializing_if = "is_one")]
    pub min_input_len: usize,
    /// Catalogue limit (large logs): tracks played fewer times than this in the training
    /// sessions are removed, their plays taken out of every session (test included, so a test
    /// target never played in training is no longer a target), and the sessions are cut again
    /// from what remains (0: off). Counted on training sessions only, so the test split does
    /// not choose the catalogue. Table I reports what it removed.
    #[serde(skip_serializing_if = "is_zero")]
    pub min_track_plays: usize,
    /// Catalogue limit: keep only the this many tracks most played in training (ties by
    /// key), removed as `min_track_plays` removes (0: no limit).
    #[serde(skip_serializing_if = "is_zero")]
    pub max_tracks: usize,
}

/// How kept sessions are assigned to training, validation and test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitRule {
    /// Per user, the first `train_share` of their sessions in time order train (the last
    /// `validation_share` of those validate), the rest test: nothing of the future is fitted.
    #[default]
    PerUserChronological,
    /// Every user's sessions pooled and shuffled with `split_seed`; the first
    /// `floor(train_share * n)` train (a random `validation_share` of them validate), the rest
    /// test, as scikit-learn's `train_test_split` in the authors' code.
    RandomSessions,
}

impl SplitRule {
    fn is_default(&self) -> bool {
        *self == SplitRule::PerUserChronological
    }
}

const DEFAULT_SPLIT_SEED: u64 = 42;

fn is_default_split_seed(s: &u64) -> bool {
    *s == DEFAULT_SPLIT_SEED
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            gap_seconds: 7200,
            min_session_len: 5,
            train_share: 0.7,
            validation_share: 0.1,
            split: SplitRule::PerUserChronological,
            split_seed: DEFAULT_SPLIT_SEED,
            chunk_len: 0,
            min_input_len: 1,
            min_track_plays: 0,
            max_tracks: 0,
        }
    }
}

impl SessionOptions {
    /// Checks every value, naming the bad one.
    pub fn validate(&self) -> Result<()> {
        if self.gap_seconds <= 0 {
            return Err(Error::Config(format!(
                "sessionize.gap_seconds = {}: must be positive",
                self.gap_seconds
            )));
        }
        if self.min_session_len < 2 {
            return Err(Error::Config(format!(
                "sessionize.min_session_len = {}: must be at least 2 (a session needs an input and a target)",
                self.min_session_len
            )));
        }
        if !(self.train_share > 0.0 && self.train_share <= 1.0) {
            return Err(Error::Config(format!(
                "sessionize.train_share = {}: must be in (0, 1]",
                self.train_share
            )));
        }
        if self.chunk_len == 1 {
            return Err(Error::Config(
                "sessionize.chunk_len = 1: a piece needs an input and a target (use 0 for whole sessions, or 2 or more)".into(),
            ));
        }
        if self.min_input_len == 0 {
            return Err(Error::Config(
                "sessionize.min_input_len = 0: a prediction needs at least one track of input (1 predicts every track after the first)".into(),
            ));
        }
        if self.chunk_len > 0 && self.min_input_len >= self.chunk_len {
            return Err(Error::Config(format!(
                "sessionize.min_input_len = {} with chunk_len = {}: a piece of {} plays has no position left to predict (use at most {})",
                self.min_input_len,
                self.chunk_len,
                self.chunk_len,
                self.chunk_len - 1
            )));
        }
        if !(0.0..1.0).contains(&self.validation_share) {
            return Err(Error::Config(format!(
                "sessionize.validation_share = {}: must be in [0, 1)",
                self.validation_share
            )));
        }
        Ok(())
    }
}

/// Which part of the data a session belongs to.
/// Stored in sessions.parquet as its code (u8): 0 train, 1 valid, 2 test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Split {
    /// Fitted on (code 0).
    Train = 0,
    /// Held out from training sessions for early stopping (code 1).
    Valid = 1,
    /// Evaluated on; nothing is fitted on it (code 2).
    Test = 2,
}

impl Split {
    /// The name stored in sessions.parquet.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Valid => "valid",
            Split::Test => "test",
        }
    }
}

/// Statistics of one user.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct UserStats {
    /// User id.
    pub user: String,
    /// Sessions kept.
    pub sessions: usize,
    /// Of which training sessions.
    pub train_sessions: usize,
    /// Of which validation sessions.
    pub valid_sessions: usize,
    /// Of which test sessions.
    pub test_sessions: usize,
    /// Events in kept sessions.
    pub events: usize,
    /// Distinct tracks in kept sessions.
    pub unique_tracks: usize,
    /// Share of events whose track was already played earlier in the same session.
    pub repeat_share: f64,
}

/// The paper's Table I and what lies behind it (`stats.json`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SessionStats {
    /// Users with at least one kept session.
    pub users: usize,
    /// Kept sessions.
    pub sessions: usize,
    /// Distinct tracks in kept sessions (the catalogue).
    pub unique_songs: usize,
    /// Events in kept sessions.
    pub events: usize,
    /// Mean events per kept session.
    pub mean_session_length: f64,
    /// Events read from ingest.
    pub events_before_sessionize: usize,
    /// Sessions before the length filter.
    pub sessions_before_filter: usize,
    /// The longest session before the length filter, in events.
    #[serde(default)]
    pub longest_session_before_filter: usize,
    /// Sessions dropped for being shorter than the minimum.
    pub sessions_dropped_short: usize,
    /// Events in those sessions.
    pub events_in_dropped_sessions: usize,
    /// Events dropped as the remainders of `chunk_len` pieces.
    #[serde(default)]
    pub events_in_chunk_remainders: usize,
    /// What the catalogue limits (`min_track_plays`, `max_tracks`) removed, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalogue_limits: Option<CatalogueLimits>,
    /// Training sessions.
    pub train_sessions: usize,
    /// Validation sessions.
    pub valid_sessions: usize,
    /// Test sessions.
    pub test_sessions: usize,
    /// Events in training sessions.
    pub train_events: usize,
    /// Events in validation sessions.
    pub valid_events: usize,
    /// Events in test sessions.
    pub test_events: usize,
    /// Tracks played in training sessions (ids below this number).
    pub train_tracks: usize,
    /// Tracks played only outside training sessions.
    pub unseen_tracks: usize,
    /// Share of events whose track was already played earlier in the same session.
    pub repeat_share: f64,
    /// Per-user figures, users in code-point order.
    pub per_user: Vec<UserStats>,
    /// The parameters used.
    pub options: SessionOptions,
}

/// What the catalogue limits removed (counted before the sessions were cut again).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CatalogueLimits {
    /// Tracks of the first cut's sessions.
    pub tracks_before: usize,
    /// Tracks removed for fewer than `max(1, min_track_plays)` training plays: tracks never
    /// played in training are always removed when a limit is set.
    pub tracks_rare: usize,
    /// Tracks removed beyond the `max_tracks` most played.
    pub tracks_beyond_max: usize,
    /// Plays of removed tracks taken out of the events.
    pub events_removed: usize,
    /// Tracks kept that the second cut leaves under `min_track_plays` training plays (their
    /// sessions moved or were dropped); not removed again.
    pub tracks_now_under_min: usize,
}

/// Sessions, vocabulary and statistics.
///
/// The sessions table is not held as a frame: it is made from the events a row group at a
/// time when written ([`Sessionized::write`]), or whole on request ([`Sessionized::sessions`]).
#[derive(Debug)]
pub struct Sessionized {
    rows: SessionRows,
    /// The vocabulary: `track` (u32 id), `artist_key`, `title_key`, `artist`, `title`,
    /// `train_count`, `total_count` (u32), `seen_in_train` (bool). Training tracks come first,
    /// by (-train_count, artist_key, title_key); then unseen tracks by (artist_key, title_key).
    pub tracks: DataFrame,
    /// Table I and more.
    pub stats: SessionStats,
}

/// The per-user chronological split of kept sessions (in (user, time) order).
fn split_per_user(
    kept: &[(usize, usize)],
    events: &Events,
    options: &SessionOptions,
) -> Vec<Split> {
    let user = |i: usize| events.user(i);
    let mut split = vec![Split::Test; kept.len()];
    let mut u0 = 0;
    while u0 < kept.len() {
        let mut u1 = u0;
        while u1 < kept.len() && user(kept[u1].0) == user(kept[u0].0) {
            u1 += 1;
        }
        let (n_train, n_valid) = split_sizes(u1 - u0, options);
        for (r, s) in split[u0..u1].iter_mut().enumerate() {
            *s = if r < n_train - n_valid {
                Split::Train
            } else if r < n_train {
                Split::Valid
            } else {
                Split::Test
            };
        }
        u0 = u1;
    }
    split
}

/// Training and validation sessions out of `count`.
fn split_sizes(count: usize, options: &SessionOptions) -> (usize, usize) {
    let n_train = (count as f64 * options.train_share + 1e-9).floor() as usize;
    let n_valid = (n_train as f64 * options.validation_share + 1e-9).floor() as usize;
    (n_train, n_valid)
}

/// The authors' code's split: all sessions pooled, shuffled with the seed (Fisher-Yates over
/// splitmix64), the first shares train and validate.
fn split_at_random(count: usize, options: &SessionOptions) -> Vec<Split> {
    let mut order: Vec<usize> = (0..count).collect();
    let mut state = options.split_seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..count).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    let (n_train, n_valid) = split_sizes(count, options);
    let mut split = vec![Split::Test; count];
    for (r, &s) in order.iter().enumerate() {
        if r < n_train - n_valid {
            split[s] = Split::Train;
        } else if r < n_train {
            split[s] = Split::Valid;
        }
    }
    split
}

/// Each session cut into pieces of `len` plays (a shorter remainder dropped), each piece in its
/// session's split; `len = 0` keeps sessions whole.
fn chunked(
    kept: Vec<(usize, usize)>,
    split: Vec<Split>,
    len: usize,
) -> (Vec<(usize, usize)>, Vec<Split>) {
    if len == 0 {
        return (kept, split);
    }
    let mut pieces = Vec::new();
    let mut piece_split = Vec::new();
    for (&(a, b), &s) in kept.iter().zip(&split) {
        for start in (a..b).step_by(len).filter(|&start| start + len <= b) {
            pieces.push((start, start + len));
            piece_split.push(s);
        }
    }
    (pieces, piece_split)
}

/// Cuts sorted events (as written by ingest) into sessions, splits them and builds the vocab.
/// With catalogue limits, a first cut counts training plays, the removed tracks' plays are
/// taken out, and the sessions are cut again. The result holds a copy of the events
/// ([`sessionize_owned`] takes them instead).
pub fn sessionize(
    events: &Events,
    keys: &DataFrame,
    options: &SessionOptions,
) -> Result<Sessionized> {
    options.validate()?;
    sessionize_owned(events.clone(), keys, options)
}

/// [`sessionize`] from events it consumes: the catalogue limits filter them in place, and the
/// result keeps them to make the sessions table from.
pub fn sessionize_owned(
    mut events: Events,
    keys: &DataFrame,
    options: &SessionOptions,
) -> Result<Sessionized> {
    options.validate()?;
    if options.min_track_plays == 0 && options.max_tracks == 0 {
        return cut(events, keys, options);
    }
    // The first cut only counts training plays: no sessions table is built for it.
    let first = sessions_of(&events, options)?;
    let vocab = vocabulary(keys, &events, &first.kept, &first.split)?;
    drop(first);
    let (keep, mut limits) = catalogue(&vocab.tracks, &vocab.track_of_key, options)?;
    drop(vocab);
    let before = events.len();
    events.retain_keys(&keep)?;
    limits.events_removed = before - events.len();
    let mut out = cut(events, keys, options)?;
    let train = parquet::u32_column(&out.tracks, "train_count")?;
    limits.tracks_now_under_min =
        train.iter().filter(|&&c| (c as usize) < options.min_track_plays).count();
    out.stats.events_before_sessionize = before;
    out.stats.catalogue_limits = Some(limits);
    Ok(out)
}

/// Which track keys the limits keep, from the first cut's training counts (`track_of_key`:
/// its id of each key, `u32::MAX` for keys without plays).
fn catalogue(
    tracks: &DataFrame,
    track_of_key: &[u32],
    options: &SessionOptions,
) -> Result<(Vec<bool>, CatalogueLimits)> {
    let train = parquet::u32_column(tracks, "train_count")?;
    let mut track_key = vec![0u32; train.len()];
    for (k, &id) in track_of_key.iter().enumerate().filter(|(_, id)| **id != u32::MAX) {
        track_key[id as usize] = k as u32;
    }
    let mut keep = vec![false; track_of_key.len()];
    let mut limits = CatalogueLimits {
        tracks_before: track_key.len(),
        tracks_rare: 0,
        tracks_beyond_max: 0,
        events_removed: 0,
        tracks_now_under_min: 0,
    };
    // The tracks table is in vocabulary order: most training plays first, ties by key.
    let mut kept = 0usize;
    for (&k, &c) in track_key.iter().zip(&train) {
        if (c as usize) < options.min_track_plays.max(1) {
            limits.tracks_rare += 1;
        } else if options.max_tracks > 0 && kept >= options.max_tracks {
            limits.tracks_beyond_max += 1;
        } else {
            keep[k as usize] = true;
            kept += 1;
        }
    }
    Ok((keep, limits))
}

/// The sessions of one cut, before the vocabulary: each as a range of events, its split.
struct Sessions {
    /// The first event of every session before the length filter, then the number of events.
    starts: Vec<usize>,
    /// The sessions kept (cut in chunks where asked), as event ranges.
    kept: Vec<(usize, usize)>,
    split: Vec<Split>,
    /// Sessions, and their events, that passed the length filter (before chunking).
    whole_sessions: usize,
    events_in_whole: usize,
}

fn sessions_of(events: &Events, options: &SessionOptions) -> Result<Sessions> {
    let starts = session_starts(events, options.gap_seconds)?;
    let kept: Vec<(usize, usize)> = starts
        .windows(2)
        .map(|w| (w[0], w[1]))
        .filter(|(a, b)| b - a >= options.min_session_len)
        .collect();
    let (whole_sessions, events_in_whole) =
        (kept.len(), kept.iter().map(|(a, b)| b - a).sum::<usize>());
    let split = match options.split {
        SplitRule::PerUserChronological => split_per_user(&kept, events, options),
        SplitRule::RandomSessions => split_at_random(kept.len(), options),
    };
    let (kept, split) = chunked(kept, split, options.chunk_len);
    Ok(Sessions { starts, kept, split, whole_sessions, events_in_whole })
}

/// One cut of the events into sessions, the split and the vocabulary.
fn cut(events: Events, keys: &DataFrame, options: &SessionOptions) -> Result<Sessionized> {
    let n = events.len();
    let Sessions { starts, kept, split, whole_sessions, events_in_whole } =
        sessions_of(&events, options)?;
    let sessions_before_filter = starts.len() - 1;
    let events_kept: usize = kept.iter().map(|(a, b)| b - a).sum();
    let longest_session_before_filter = starts.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0);
    drop(starts);

    let vocab = vocabulary(keys, &events, &kept, &split)?;
    let rows = SessionRows { events, kept, split, track_of_key: vocab.track_of_key };
    let TableStats { per_user, repeats, split_sessions, split_events } = rows.walk(|_| Ok(()))?;
    let sessions = rows.kept.len();
    let stats = SessionStats {
        users: per_user.len(),
        sessions,
        unique_songs: vocab.tracks.height(),
        events: events_kept,
        mean_session_length: if sessions == 0 { 0.0 } else { events_kept as f64 / sessions as f64 },
        events_before_sessionize: n,
        sessions_before_filter,
        longest_session_before_filter,
        sessions_dropped_short: sessions_before_filter - whole_sessions,
        events_in_dropped_sessions: n - events_in_whole,
        events_in_chunk_remainders: events_in_whole - events_kept,
        catalogue_limits: None,
        train_sessions: split_sessions[0],
        valid_sessions: split_sessions[1],
        test_sessions: split_sessions[2],
        train_events: split_events[0],
        valid_events: split_events[1],
        test_events: split_events[2],
        train_tracks: vocab.train_tracks,
        unseen_tracks: vocab.tracks.height() - vocab.train_tracks,
        repeat_share: repeats as f64 / events_kept.max(1) as f64,
        per_user,
        options: options.clone(),
    };
    Ok(Sessionized { rows, tracks: vocab.tracks, stats })
}

/// The first row of every session, then `n`: a new session starts at a new user or after a
/// gap of `gap_seconds` or more. The events must be sorted by (user, time).
fn session_starts(events: &Events, gap_seconds: i64) -> Result<Vec<usize>> {
    let n = events.len();
    let mut starts: Vec<usize> = Vec::new();
    for i in 0..n {
        let other_user = i > 0 && events.user(i) != events.user(i - 1);
        let new = i == 0 || other_user || events.ts(i) - events.ts(i - 1) >= gap_seconds;
        // A new code is a new id: it must sort after the one before (each user one run).
        let unsorted = i > 0
            && if other_user {
                events.user_name(i) <= events.user_name(i - 1)
            } else {
                events.ts(i) < events.ts(i - 1)
            };
        if unsorted {
            return Err(Error::InvalidArgument(format!(
                "events are not sorted by (user, time) at row {i}; they must come from ingest"
            )));
        }
        if new {
            starts.push(i);
        }
    }
    starts.push(n);
    Ok(starts)
}

/// The tracks of the kept sessions, numbered in vocabulary order.
struct Vocabulary {
    /// The tracks table (`track`, keys, names, counts, `seen_in_train`).
    tracks: DataFrame,
    /// The track id of each key (`u32::MAX`: not in a kept session).
    track_of_key: Vec<u32>,
    /// Tracks played in training sessions (they come first).
    train_tracks: usize,
}

/// Counts plays per key in the kept sessions and orders the vocabulary: tracks seen in
/// training first, by training plays (descending), then by artist and title key.
fn vocabulary(
    keys: &DataFrame,
    events: &Events,
    kept: &[(usize, usize)],
    split: &[Split],
) -> Result<Vocabulary> {
    let n_keys = keys.height();
    let mut train_count = vec![0u32; n_keys];
    let mut total_count = vec![0u32; n_keys];
    for (s, &(a, b)) in kept.iter().enumerate() {
        for i in a..b {
            let k = events.key(i) as usize;
            if k >= n_keys {
                return Err(Error::OutOfRange {
                    what: "the keys table (track_key)".into(),
                    index: k,
                    len: n_keys,
                });
            }
            total_count[k] += 1;
            if split[s] == Split::Train {
                train_count[k] += 1;
            }
        }
    }
    let present: Vec<u32> = (0..n_keys as u32).filter(|&k| total_count[k as usize] > 0).collect();
    let idx = IdxCa::from_vec("idx".into(), present.iter().map(|&k| k as IdxSize).collect());
    let mut vocab = keys.take(&idx).map_err(pl_err)?;
    let tc: Vec<u32> = present.iter().map(|&k| train_count[k as usize]).collect();
    let seen: Vec<bool> = tc.iter().map(|&c| c > 0).collect();
    vocab.with_column(Column::new("train_count".into(), tc)).map_err(pl_err)?;
    vocab
        .with_column(Column::new(
            "total_count".into(),
            present.iter().map(|&k| total_count[k as usize]).collect::<Vec<_>>(),
        ))
        .map_err(pl_err)?;
    vocab.with_column(Column::new("seen_in_train".into(), seen)).map_err(pl_err)?;
    let mut vocab = vocab
        .sort(
            ["seen_in_train", "train_count", "artist_key", "title_key"],
            SortMultipleOptions::new()
                .with_order_descending_multi([true, true, false, false])
                .with_maintain_order(true),
        )
        .map_err(pl_err)?;
    let order = parquet::u32_column(&vocab, "track_key")?;
    let mut track_of_key = vec![u32::MAX; n_keys];
    for (id, &k) in order.iter().enumerate() {
        track_of_key[k as usize] = id as u32;
    }
    vocab
        .with_column(Column::new("track".into(), (0..order.len() as u32).collect::<Vec<_>>()))
        .map_err(pl_err)?;
    let tracks = vocab
        .select([
            "track",
            "artist_key",
            "title_key",
            "artist",
            "title",
            "train_count",
            "total_count",
            "seen_in_train",
        ])
        .map_err(pl_err)?;
    let train_tracks = order.iter().filter(|&&k| train_count[k as usize] > 0).count();
    Ok(Vocabulary { tracks, track_of_key, train_tracks })
}

/// What the sessions table is made from: the events, the kept sessions as event ranges, their
/// splits, and the track id of each key.
struct SessionRows {
    events: Events,
    kept: Vec<(usize, usize)>,
    split: Vec<Split>,
    track_of_key: Vec<u32>,
}

/// The counts, not the rows.
impl std::fmt::Debug for SessionRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRows")
            .field("events", &self.events)
            .field("sessions", &self.kept.len())
            .finish_non_exhaustive()
    }
}

/// One row of the sessions table (the user as its code in the events).
struct SessionRow {
    user: u32,
    session: u32,
    position: u32,
    track: u32,
    ts: i64,
    split: u8,
}

/// The per-user and per-split figures of Table I.
struct TableStats {
    per_user: Vec<UserStats>,
    /// Plays of a track already played earlier in the same session.
    repeats: usize,
    split_sessions: [usize; 3],
    split_events: [usize; 3],
}

impl SessionRows {
    /// Walks the kept sessions' plays in order, giving each as a row to `row`, and counts the
    /// figures of Table I on the way.
    fn walk(&self, mut row: impl FnMut(SessionRow) -> Result<()>) -> Result<TableStats> {
        let (events, track_of_key) = (&self.events, &self.track_of_key);
        let n_tracks = track_of_key.iter().filter(|&&t| t != u32::MAX).count();
        let mut per_user: Vec<UserStats> = Vec::new();
        // Stamps instead of sets: last_session[t] = 1 + the last session that played t.
        let mut last_session = vec![0u32; n_tracks];
        let mut last_user = vec![0u32; n_tracks];
        let mut user_unique = 0usize;
        let mut repeats = 0usize;
        let mut user_repeats = 0usize;
        let (mut split_sessions, mut split_events) = ([0usize; 3], [0usize; 3]);
        for (s, &(a, b)) in self.kept.iter().enumerate() {
            let (u, code) = (events.user_name(a), events.user(a));
            if per_user.last().is_none_or(|p| p.user != u) {
                if let Some(p) = per_user.last_mut() {
                    p.unique_tracks = user_unique;
                    p.repeat_share = user_repeats as f64 / p.events.max(1) as f64;
                }
                user_unique = 0;
                user_repeats = 0;
                per_user.push(UserStats {
                    user: u.to_string(),
                    sessions: 0,
                    train_sessions: 0,
                    valid_sessions: 0,
                    test_sessions: 0,
                    events: 0,
                    unique_tracks: 0,
                    repeat_share: 0.0,
                });
            }
            let p = per_user.last_mut().expect("pushed above");
            p.sessions += 1;
            p.events += b - a;
            let split = self.split[s];
            split_sessions[split as usize] += 1;
            split_events[split as usize] += b - a;
            match split {
                Split::Train => p.train_sessions += 1,
                Split::Valid => p.valid_sessions += 1,
                Split::Test => p.test_sessions += 1,
            }
            let user_stamp = per_user.len() as u32;
            for (position, i) in (a..b).enumerate() {
                let t = track_of_key[events.key(i) as usize];
                if last_session[t as usize] == s as u32 + 1 {
                    repeats += 1;
                    user_repeats += 1;
                }
                last_session[t as usize] = s as u32 + 1;
                if last_user[t as usize] != user_stamp {
                    last_user[t as usize] = user_stamp;
                    user_unique += 1;
                }
                row(SessionRow {
                    user: code,
                    session: s as u32,
                    position: position as u32,
                    track: t,
                    ts: events.ts(i),
                    split: split as u8,
                })?;
            }
        }
        if let Some(p) = per_user.last_mut() {
            p.unique_tracks = user_unique;
            p.repeat_share = user_repeats as f64 / p.events.max(1) as f64;
        }
        Ok(TableStats { per_user, repeats, split_sessions, split_events })
    }
}

/// Rows of the sessions table gathered as columns.
#[derive(Default)]
struct TableColumns {
    user: Vec<u32>,
    session: Vec<u32>,
    position: Vec<u32>,
    track: Vec<u32>,
    ts: Vec<i64>,
    split: Vec<u8>,
}

impl TableColumns {
    fn push(&mut self, r: SessionRow) {
        self.user.push(r.user);
        self.session.push(r.session);
        self.position.push(r.position);
        self.track.push(r.track);
        self.ts.push(r.ts);
        self.split.push(r.split);
    }

    fn len(&self) -> usize {
        self.ts.len()
    }

    /// The rows as a frame, the users' ids from their codes; the columns are emptied.
    fn take_frame(&mut self, users: &[Box<str>]) -> Result<DataFrame> {
        let names = self.user.drain(..).map(|c| &*users[c as usize]);
        let user = StringChunked::from_iter_values("user".into(), names);
        DataFrame::new_infer_height(vec![
            Column::new("user".into(), user),
            Column::new("session".into(), std::mem::take(&mut self.session)),
            Column::new("position".into(), std::mem::take(&mut self.position)),
            Column::new("track".into(), std::mem::take(&mut self.track)),
            Column::new("ts".into(), std::mem::take(&mut self.ts)),
            Column::new("split".into(), std::mem::take(&mut self.split)),
        ])
        .map_err(pl_err)
    }
}

impl Sessionized {
    /// The sessions table, whole: columns `user`, `session` (u32, global, in (user, time)
    /// order), `position` (u32, from 0), `track` (u32 id), `ts` (i64), `split` (u8: 0 train,
    /// 1 valid, 2 test, as [`Split`]). [`Sessionized::write`] writes it a row group at a time.
    pub fn sessions(&self) -> Result<DataFrame> {
        let mut columns = TableColumns::default();
        self.rows.walk(|r| {
            columns.push(r);
            Ok(())
        })?;
        columns.take_frame(self.rows.events.user_names())
    }

    /// The sessions of `split`, in memory (what [`read_split`] gives from the written file).
    pub fn split(&self, split: Split) -> Result<SplitCorpus> {
        splits_of(&self.sessions()?, &[split])
    }

    /// The sessions of every split in `splits`, in order.
    pub fn splits(&self, splits: &[Split]) -> Result<SplitCorpus> {
        splits_of(&self.sessions()?, splits)
    }

    /// The vocabulary, track ids in order (what [`read_vocab`] gives from the written file).
    pub fn vocab(&self) -> Result<segue_core::Vocab> {
        vocab_of(&self.tracks)
    }

    /// Plays per track in training and in all sessions.
    pub fn track_counts(&self) -> Result<TrackCounts> {
        TrackCounts::of(&self.tracks)
    }

    /// An error when nothing can be trained on (no session kept, or none in the training
    /// share), naming the cause and the settings to change: what a pipeline checks before the
    /// stages that need training sessions.
    pub fn require_training(&self) -> Result<()> {
        let (st, o) = (&self.stats, &self.stats.options);
        if st.events_before_sessionize == 0 {
            return Err(Error::Config("sessionize: there are no events (ingest kept none)".into()));
        }
        if st.sessions == 0 {
            return Err(Error::Config(format!(
                "sessionize kept no session: the {} event(s) form {} session(s) (a gap of {} s or more starts a new one), none with at least min_session_len = {} events (the longest has {}); lower sessionize.min_session_len or raise sessionize.gap_seconds",
                st.events_before_sessionize,
                st.sessions_before_filter,
                o.gap_seconds,
                o.min_session_len,
                st.longest_session_before_filter
            )));
        }
        if st.train_sessions > 0 {
            return Ok(());
        }
        Err(Error::Config(format!(
            "sessionize: no session falls in the training share: {} session(s) kept, and with train_share = {} a user needs at least {} sessions of {} or more events for one to train; raise sessionize.train_share or use more data",
            self.stats.sessions,
            o.train_share,
            (1.0 / o.train_share).ceil().max(1.0) as usize,
            o.min_session_len
        )))
    }

    /// The file name of [`SessionStats`] in the folder [`Sessionized::write`] fills.
    pub const STATS: &str = "stats.json";

    /// Writes `sessions.parquet`, `tracks.parquet` and `stats.json` into `dir`, atomically each.
    pub fn write(&mut self, dir: &std::path::Path) -> Result<()> {
        self.write_sessions(&dir.join("sessions.parquet"))?;
        parquet::write(&dir.join("tracks.parquet"), &mut self.tracks)?;
        let json = serde_json::to_vec_pretty(&self.stats)
            .map_err(|e| Error::backend("serde_json", "the sessionize stats", e))?;
        segue_core::fs::write_bytes_atomic(&dir.join(Self::STATS), &json)
    }
}

impl Sessionized {
    /// Writes the sessions table a row group at a time, atomically.
    fn write_sessions(&self, path: &std::path::Path) -> Result<()> {
        let users = self.rows.events.user_names();
        let mut columns = TableColumns::default();
        let mut out = parquet::BatchWriter::new(path, columns.take_frame(users)?.schema())?;
        self.rows.walk(|r| {
            columns.push(r);
            if columns.len() == parquet::ROW_GROUP {
                out.write(&mut columns.take_frame(users)?)?;
            }
            Ok(())
        })?;
        if columns.len() > 0 {
            out.write(&mut columns.take_frame(users)?)?;
        }
        out.finish()
    }
}

/// Sessions of one split as a flat token corpus: `flat[offsets[i]..offsets[i + 1]]` is the
/// i-th session's tracks, sessions in (user, time) order.
#[derive(Debug, Clone, Default)]
pub struct SplitCorpus {
    /// Track ids, session after session.
    pub flat: Vec<u32>,
    /// Session boundaries into `flat`.
    pub offsets: Vec<usize>,
    /// The user of each session, an index into `user_names`.
    pub users: Vec<u32>,
    /// Every user of the file (all splits), in file order, so indices agree across splits.
    pub user_names: Vec<String>,
    /// The time (UTC seconds) of each session's last play.
    pub ends: Vec<i64>,
}

/// Reads the sessions of `split` from a sessions.parquet written by [`Sessionized::write`].
pub fn read_split(path: &std::path::Path, split: Split) -> Result<SplitCorpus> {
    read_splits(path, &[split])
}

/// Reads the sessions of every split in `splits`, in file order.
pub fn read_splits(path: &std::path::Path, splits: &[Split]) -> Result<SplitCorpus> {
    splits_of(&parquet::read(path)?, splits)
}

/// The sessions of every split in `splits` of a sessions table, in its order.
fn splits_of(df: &DataFrame, splits: &[Split]) -> Result<SplitCorpus> {
    let wanted = |code: u8| splits.iter().any(|&s| s as u8 == code);
    let session = parquet::u32_column(df, "session")?;
    let track = parquet::u32_column(df, "track")?;
    let codes = df.column("split").and_then(|c| c.u8()).map_err(pl_err)?.rechunk().into_owned();
    let codes = codes.cont_slice().map_err(pl_err)?;
    let user = parquet::str_column(df, "user")?;
    let ts = parquet::i64_column(df, "ts")?;
    let mut out = SplitCorpus { offsets: vec![0], ..SplitCorpus::default() };
    let mut index_of = std::collections::HashMap::new();
    for i in 0..track.len() {
        let next = index_of.len() as u32;
        let user_index = *index_of.entry(user[i].as_str()).or_insert_with(|| {
            out.user_names.push(user[i].clone());
            next
        });
        if !wanted(codes[i]) {
            continue;
        }
        if i > 0
            && session[i] != session[i - 1]
            && out.flat.len() > *out.offsets.last().unwrap_or(&0)
        {
            out.offsets.push(out.flat.len());
        }
        if out.flat.len() == *out.offsets.last().unwrap_or(&0) {
            out.users.push(user_index);
            out.ends.push(ts[i]);
        }
        *out.ends.last_mut().expect("pushed with the session's first play") = ts[i];
        out.flat.push(track[i]);
    }
    if out.flat.len() > *out.offsets.last().unwrap_or(&0) {
        out.offsets.push(out.flat.len());
    }
    Ok(out)
}

/// Reads the vocabulary (tracks.parquet) in id order.
pub fn read_vocab(path: &std::path::Path) -> Result<segue_core::Vocab> {
    let df = parquet::read(path)?;
    check_track_ids(&df).map_err(|why| Error::artifact(path, why))?;
    vocab_of(&df)
}

/// Track ids must be 0..V in order.
fn check_track_ids(df: &DataFrame) -> std::result::Result<(), String> {
    let ids = parquet::u32_column(df, "track").map_err(|e| e.to_string())?;
    if ids.iter().enumerate().any(|(i, &t)| t as usize != i) {
        return Err("track ids are not 0..V in order".into());
    }
    Ok(())
}

/// The vocabulary of a tracks table whose ids are 0..V in order.
fn vocab_of(df: &DataFrame) -> Result<segue_core::Vocab> {
    let [ak, tk, a, t] =
        ["artist_key", "title_key", "artist", "title"].map(|c| parquet::str_column(df, c));
    let entries = ak?
        .into_iter()
        .zip(tk?)
        .zip(a?.into_iter().zip(t?))
        .map(|((ak, tk), (a, t))| segue_core::VocabEntry::new(ak, tk, a, t))
        .collect();
    segue_core::Vocab::new(entries)
}

/// Per-track play counts from a tracks.parquet written by [`Sessionized::write`].
#[derive(Debug, Clone, PartialEq)]
pub struct TrackCounts {
    /// Plays in training sessions, by track id (0 for tracks seen only outside training).
    pub train: Vec<u32>,
    /// Plays in all sessions, by track id.
    pub total: Vec<u32>,
}

impl TrackCounts {
    /// Reads the counts; track ids must be 0..V in order.
    pub fn read(path: &std::path::Path) -> Result<Self> {
        let df = parquet::read(path)?;
        check_track_ids(&df).map_err(|why| Error::artifact(path, why))?;
        Self::of(&df)
    }

    fn of(df: &DataFrame) -> Result<Self> {
        Ok(TrackCounts {
            train: parquet::u32_column(df, "train_count")?,
            total: parquet::u32_column(df, "total_count")?,
        })
    }

    /// Whether track `id` occurs in training sessions.
    pub fn seen_in_train(&self, id: usize) -> bool {
        self.train.get(id).is_some_and(|&c| c > 0)
    }

    /// Share of tracks and share of plays (all sessions) among the tracks `has` marks.
    pub fn coverage(&self, has: impl Fn(usize) -> bool) -> (f64, f64) {
        let (mut tracks, mut plays, mut all_plays) = (0usize, 0u64, 0u64);
        for (i, &c) in self.total.iter().enumerate() {
            all_plays += u64::from(c);
            if has(i) {
                tracks += 1;
                plays += u64::from(c);
            }
        }
        (tracks as f64 / self.total.len().max(1) as f64, plays as f64 / all_plays.max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_split_has_the_shares_and_depends_only_on_the_seed() {
        let options = SessionOptions {
            split: SplitRule::RandomSessions,
            train_share: 0.7,
            validation_share: 0.1,
            ..SessionOptions::default()
        };
        let a = split_at_random(100, &options);
        let count = |s: &[Split], which| s.iter().filter(|&&x| x == which).count();
        assert_eq!((count(&a, Split::Train), count(&a, Split::Valid)), (63, 7));
        assert_eq!(count(&a, Split::Test), 30);
        assert_eq!(a, split_at_random(100, &options));
        // Not the chronological order: some test session comes before some training one.
        let first_test = a.iter().position(|&s| s == Split::Test).unwrap();
        assert!(a[first_test..].contains(&Split::Train));
        let other = split_at_random(100, &SessionOptions { split_seed: 7, ..options });
        assert_ne!(a, other);
    }

    #[test]
    fn chunks_keep_their_session_split_and_drop_remainders() {
        let kept = vec![(0, 9), (9, 12), (12, 20)];
        let split = vec![Split::Train, Split::Test, Split::Test];
        let (pieces, piece_split) = chunked(kept.clone(), split.clone(), 4);
        assert_eq!(pieces, vec![(0, 4), (4, 8), (12, 16), (16, 20)]);
        assert_eq!(piece_split, vec![Split::Train, Split::Train, Split::Test, Split::Test]);
        assert_eq!(chunked(kept.clone(), split.clone(), 0), (kept, split));
    }

    /// Users become one code per run of equal ids; a user whose events are not one run, or
    /// ids out of order, or a time going back, is refused at the row where it shows.
    #[test]
    fn user_codes_follow_runs_and_unsorted_events_are_refused() {
        let events = |ids: &[&str], ts: &[i64]| {
            let df = df!("user" => ids, "ts" => ts, "track_key" => vec![0u32; ids.len()]).unwrap();
            Events::from_frame(&df).unwrap()
        };
        let ts = [0, 10, 0, 0, 9_000];
        let e = events(&["a", "a", "b", "c", "c"], &ts);
        assert_eq!(
            (
                e.user_names().iter().map(|n| &**n).collect::<Vec<_>>(),
                (0..5).map(|i| e.user(i)).collect::<Vec<_>>()
            ),
            (vec!["a", "b", "c"], vec![0, 0, 1, 2, 2])
        );
        assert_eq!(e.user_name(3), "c");
        assert_eq!(session_starts(&e, 7200).unwrap(), vec![0, 2, 3, 4, 5]);
        let at_row = |ids: [&str; 3], ts: [i64; 3]| {
            let e = session_starts(&events(&ids, &ts), 7200).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
            e.to_string()
        };
        assert!(at_row(["a", "b", "a"], [0, 0, 0]).contains("at row 2"));
        assert!(at_row(["b", "a", "a"], [0, 0, 0]).contains("at row 1"));
        assert!(at_row(["a", "a", "b"], [5, 4, 0]).contains("at row 1"));
    }

    /// The sessions table written a row group at a time is the table made whole.
    #[test]
    fn sessions_written_in_row_groups_equal_the_whole_table() {
        // 3 users, sessions of 7 plays a day apart: more rows than one row group.
        let (mut user, mut ts, mut key) = (Vec::new(), Vec::new(), Vec::new());
        for u in ["u1", "u2", "u3"] {
            for i in 0..(parquet::ROW_GROUP / 3 + 5_000) as i64 {
                user.push(u);
                ts.push(i / 7 * 86_400 + i % 7 * 60);
                key.push((i % 101) as u32);
            }
        }
        let events = df!("user" => user, "ts" => ts, "track_key" => key).unwrap();
        let names: Vec<String> = (0..101).map(|k| format!("t{k}")).collect();
        let keys = df!(
            "track_key" => (0..101u32).collect::<Vec<_>>(),
            "artist_key" => vec!["a"; 101],
            "title_key" => names.clone(),
            "artist" => vec!["A"; 101],
            "title" => names,
        )
        .unwrap();
        let options = SessionOptions { min_session_len: 2, ..SessionOptions::default() };
        let mut out = sessionize(&Events::from_frame(&events).unwrap(), &keys, &options).unwrap();
        assert!(out.stats.events > parquet::ROW_GROUP);
        let dir = tempfile::tempdir().unwrap();
        out.write(dir.path()).unwrap();
        let written = parquet::read(&dir.path().join("sessions.parquet")).unwrap();
        assert_eq!(written, out.sessions().unwrap());
        assert_eq!(written.height(), out.stats.events);
    }
}
