//! Raw events as readers produce them: interned strings, times in UTC seconds, and the
//! account of every record that was skipped or filtered.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;
use segue_core::{Error, Position, Result};

/// Distinct strings and their codes, in first-seen order.
#[derive(Debug, Clone)]
pub struct Interner<K> {
    map: FxHashMap<K, u32>,
    strings: Vec<K>,
}

impl<K> Default for Interner<K> {
    fn default() -> Self {
        Interner { map: FxHashMap::default(), strings: Vec::new() }
    }
}

impl<K: Hash + Eq + Clone> Interner<K> {
    /// The code of `s`, adding it when new.
    pub fn intern<Q>(&mut self, s: &Q) -> u32
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized + ToOwnedKey<K>,
    {
        if let Some(&c) = self.map.get(s) {
            return c;
        }
        let c = self.strings.len() as u32;
        let k = s.to_owned_key();
        self.map.insert(k.clone(), c);
        self.strings.push(k);
        c
    }

    /// The distinct strings, index = code.
    pub fn strings(&self) -> &[K] {
        &self.strings
    }

    /// Number of distinct strings.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// The code of `s`, if it was interned.
    pub fn code<Q>(&self, s: &Q) -> Option<u32>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(s).copied()
    }

    /// True when nothing was interned.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }
}

/// Conversion of a borrowed lookup key into the interner's stored key.
pub trait ToOwnedKey<K> {
    /// The stored form.
    fn to_owned_key(&self) -> K;
}

impl ToOwnedKey<Box<str>> for str {
    fn to_owned_key(&self) -> Box<str> {
        self.into()
    }
}

impl<'a> ToOwnedKey<&'a str> for &'a str {
    fn to_owned_key(&self) -> &'a str {
        self
    }
}

/// Why a record did not become an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A line with more fields than the format has.
    TooManyFields,
    /// A line with fewer fields than the format has.
    TooFewFields,
    /// Bytes that are not UTF-8.
    NotUtf8,
    /// A required field is missing, null or of the wrong type.
    MissingField,
    /// A time that does not parse.
    BadTimestamp,
    /// A time before 2000-01-01.
    TimestampBefore2000,
    /// A time after now (plus a day of slack).
    TimestampInFuture,
    /// An empty user id.
    EmptyUser,
    /// An artist or title that is empty after normalisation.
    EmptyArtistOrTitle,
    /// A play shorter than the minimum (a filter, not an error).
    ShortPlay,
    /// A podcast episode or audiobook chapter (a filter).
    Episode,
    /// A record with neither a track name nor an episode: a play the export could not name
    /// (a filter).
    NoTrackName,
    /// An entry that is not music: a YouTube video outside YouTube Music, an Apple Music video
    /// (a filter).
    NotMusic,
    /// An event that is not a finished play, such as Apple Music's `PLAY_START` row (the play
    /// is counted once, at its end; a filter).
    NotAPlay,
    /// The same user, time and track as an earlier event (a filter).
    DuplicateEvent,
    /// A control character (NUL, a line break, ...) in a user id, artist or title.
    ControlCharacter,
    /// A user id, artist or title longer than [`MAX_FIELD_BYTES`].
    FieldTooLong,
    /// A line longer than the reader's limit ([`MAX_LINE_BYTES`] for listening logs).
    LineTooLong,
    /// A JSON file cut off mid-record: the records before the cut were kept.
    TruncatedFile,
    /// A JSON file that stops parsing mid-way: the records before the fault were kept.
    InvalidJson,
}

impl SkipReason {
    /// Filters drop well-formed records on purpose; the rest are malformed input, which strict
    /// mode turns into errors.
    pub fn is_filter(self) -> bool {
        matches!(
            self,
            SkipReason::ShortPlay
                | SkipReason::Episode
                | SkipReason::NoTrackName
                | SkipReason::NotMusic
                | SkipReason::NotAPlay
                | SkipReason::DuplicateEvent
        )
    }

    /// What a well-formed record has instead, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            SkipReason::TooManyFields => "more fields than the format has",
            SkipReason::TooFewFields => "fewer fields than the format has",
            SkipReason::NotUtf8 => "bytes that are not UTF-8",
            SkipReason::MissingField => "a required field missing or of the wrong type",
            SkipReason::BadTimestamp => "a timestamp that does not parse",
            SkipReason::TimestampBefore2000 => "a timestamp before 2000-01-01",
            SkipReason::TimestampInFuture => "a timestamp in the future",
            SkipReason::EmptyUser => "an empty user id",
            SkipReason::EmptyArtistOrTitle => "an empty artist or title",
            SkipReason::ShortPlay => "a play shorter than the minimum",
            SkipReason::Episode => "a podcast episode or audiobook chapter, not music",
            SkipReason::NoTrackName => {
                "a record with neither a track name nor an episode (a play the export could not name)"
            }
            SkipReason::NotMusic => "not a music entry (a YouTube video, an Apple Music video)",
            SkipReason::NotAPlay => {
                "an event other than a finished play (e.g. Apple Music's PLAY_START; counted at its end)"
            }
            SkipReason::DuplicateEvent => {
                "a duplicate of an earlier event (same user, time, track)"
            }
            SkipReason::ControlCharacter => {
                "a control character (e.g. NUL) in a user id, artist or title"
            }
            SkipReason::FieldTooLong => "a user id, artist or title longer than 4096 bytes",
            SkipReason::LineTooLong => "a line longer than 64 KiB",
            SkipReason::TruncatedFile => {
                "a file that ends mid-record (truncated); the records before the cut were kept"
            }
            SkipReason::InvalidJson => {
                "JSON that stops parsing mid-file; the records before the fault were kept"
            }
        }
    }
}

/// One example of a skipped record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SkipExample {
    /// The input file.
    pub file: PathBuf,
    /// Where in it.
    pub position: String,
    /// What was found.
    pub detail: String,
}

/// Count and first examples of one skip reason.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SkipCount {
    /// Records skipped for this reason.
    pub count: u64,
    /// The first few, for the report.
    pub examples: Vec<SkipExample>,
}

/// How many examples of each reason a report keeps.
pub const MAX_EXAMPLES: usize = 3;

/// Every record that was skipped or filtered, by reason. Strict mode turns the first malformed
/// record into an error instead.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SkipReport {
    /// Counts by reason.
    pub reasons: BTreeMap<SkipReason, SkipCount>,
    #[serde(skip)]
    strict: bool,
}

impl SkipReport {
    /// An empty report; `strict` makes [`SkipReport::skip`] fail on malformed records.
    pub fn new(strict: bool) -> Self {
        SkipReport { reasons: BTreeMap::new(), strict }
    }

    /// Records a skipped record; in strict mode a malformed one is an error that names the
    /// file, the position and what was expected.
    pub fn skip(
        &mut self,
        reason: SkipReason,
        file: &Path,
        position: Position,
        detail: impl FnOnce() -> String,
    ) -> Result<()> {
        if self.strict && !reason.is_filter() {
            return Err(Error::input(
                file,
                position,
                format!(
                    "{} (found {}); rerun without strict mode to skip such records",
                    reason.describe(),
                    detail()
                ),
            ));
        }
        let entry = self.reasons.entry(reason).or_default();
        entry.count += 1;
        if entry.examples.len() < MAX_EXAMPLES {
            entry.examples.push(SkipExample {
                file: file.to_path_buf(),
                position: position.to_string(),
                detail: detail(),
            });
        }
        Ok(())
    }

    /// Records `n` filtered records at once (no examples).
    pub fn add_count(&mut self, reason: SkipReason, n: u64) {
        if n > 0 {
            self.reasons.entry(reason).or_default().count += n;
        }
    }

    /// Adds another report's counts and examples.
    pub fn merge(&mut self, other: SkipReport) {
        for (reason, c) in other.reasons {
            let entry = self.reasons.entry(reason).or_default();
            entry.count += c.count;
            let room = MAX_EXAMPLES.saturating_sub(entry.examples.len());
            entry.examples.extend(c.examples.into_iter().take(room));
        }
    }

    /// Count for one reason.
    pub fn count(&self, reason: SkipReason) -> u64 {
        self.reasons.get(&reason).map_or(0, |c| c.count)
    }

    /// All records skipped, filters included.
    pub fn total(&self) -> u64 {
        self.reasons.values().map(|c| c.count).sum()
    }

    /// Whether strict mode is on.
    pub fn is_strict(&self) -> bool {
        self.strict
    }
}

/// Distinct (artist, title) pairs of raw spellings and their codes, in first-seen order; one
/// hash lookup per event instead of two.
#[derive(Debug, Clone)]
pub struct PairInterner<S> {
    table: hashbrown::HashTable<u32>,
    pairs: Vec<(S, S)>,
}

impl<S> Default for PairInterner<S> {
    fn default() -> Self {
        PairInterner { table: hashbrown::HashTable::new(), pairs: Vec::new() }
    }
}

fn pair_hash(a: &str, t: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = rustc_hash::FxBuildHasher.build_hasher();
    h.write(a.as_bytes());
    h.write_u8(0xff); // not UTF-8: separates the fields
    h.write(t.as_bytes());
    h.finish()
}

impl<S: AsRef<str>> PairInterner<S> {
    /// The code of `(artist, title)`, adding it (converted by `own`) when new.
    pub fn intern_with(
        &mut self,
        artist: &str,
        title: &str,
        own: impl FnOnce(&str, &str) -> (S, S),
    ) -> u32 {
        let hash = pair_hash(artist, title);
        let pairs = &self.pairs;
        if let Some(&code) = self.table.find(hash, |&c| {
            let (a, t) = &pairs[c as usize];
            a.as_ref() == artist && t.as_ref() == title
        }) {
            return code;
        }
        let code = self.pairs.len() as u32;
        self.pairs.push(own(artist, title));
        let pairs = &self.pairs;
        self.table.insert_unique(hash, code, |&c| {
            let (a, t) = &pairs[c as usize];
            pair_hash(a.as_ref(), t.as_ref())
        });
        code
    }

    /// The distinct pairs, index = code.
    pub fn pairs(&self) -> &[(S, S)] {
        &self.pairs
    }

    /// Number of distinct pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when nothing was interned.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// Events in columns, strings interned, in input order, each with where it was read.
#[derive(Debug, Default)]
pub struct RawEvents {
    /// Distinct user ids.
    pub users: Interner<Box<str>>,
    /// Distinct raw (artist, title) spellings.
    pub tracks: PairInterner<Box<str>>,
    /// User code per event.
    pub user: Vec<u32>,
    /// Start time per event, UTC seconds.
    pub ts: Vec<i64>,
    /// Raw (artist, title) code per event.
    pub track: Vec<u32>,
    /// Where each event was read in its file: a line number with the top bit (`1 << 31`) set, else a
    /// record number.
    pub at: Vec<u32>,
    /// The files read, each with the index of its first event.
    pub files: Vec<FileSpan>,
}

/// Marks a position in [`RawEvents::at`] as a line number.
pub const LINE_BIT: u32 = 1 << 31;

fn packed(at: Position) -> u32 {
    let n = |n: u64| n.min((LINE_BIT - 1) as u64) as u32;
    match at {
        Position::Line(l) | Position::LineColumn(l, _) => n(l) | LINE_BIT,
        Position::Record(r) => n(r),
        Position::File => 0,
    }
}

/// The events of one input file: `first..` up to the next file's first.
#[derive(Debug, Clone)]
pub struct FileSpan {
    /// The file.
    pub path: PathBuf,
    /// Index of its first event.
    pub first: usize,
}

impl RawEvents {
    /// Starts the events of `path`.
    pub fn begin_file(&mut self, path: &Path) {
        self.files.push(FileSpan { path: path.to_path_buf(), first: self.ts.len() });
    }

    /// Appends one event read at `at` (a line or record number) of the current file.
    pub fn push_at(&mut self, user: &str, ts: i64, artist: &str, title: &str, at: Position) {
        let u = self.users.intern(user);
        let t = self.tracks.intern_with(artist, title, |a, t| (a.into(), t.into()));
        self.user.push(u);
        self.ts.push(ts);
        self.track.push(t);
        self.at.push(packed(at));
    }

    /// Where event `i` was read: its file and position.
    pub fn origin(&self, i: usize) -> (PathBuf, Position) {
        let path = match self.files.partition_point(|f| f.first <= i) {
            0 => PathBuf::from("(input)"),
            k => self.files[k - 1].path.clone(),
        };
        let at = self.at.get(i).copied().unwrap_or(0);
        let n = (at & !LINE_BIT) as u64;
        (path, if at & LINE_BIT != 0 { Position::Line(n) } else { Position::Record(n) })
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.ts.len()
    }

    /// True when there is no event.
    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    /// Appends events whose strings were interned in borrowed form (a parallel chunk whose
    /// line numbers start after `line_offset` lines of the file).
    pub fn absorb(&mut self, chunk: BorrowedEvents<'_>, line_offset: u64) {
        let users: Vec<u32> = chunk.users.strings().iter().map(|s| self.users.intern(*s)).collect();
        let tracks: Vec<u32> = chunk
            .tracks
            .pairs()
            .iter()
            .map(|(a, t)| self.tracks.intern_with(a, t, |a, t| (a.into(), t.into())))
            .collect();
        self.user.extend(chunk.user.iter().map(|&c| users[c as usize]));
        self.track.extend(chunk.track.iter().map(|&c| tracks[c as usize]));
        self.ts.extend_from_slice(&chunk.ts);
        self.at.extend(chunk.line.iter().map(|&l| packed(Position::Line(l as u64 + line_offset))));
    }
}

/// Events of one chunk of a file, with strings borrowed from the file's bytes.
#[derive(Debug, Default)]
pub struct BorrowedEvents<'a> {
    /// Distinct user ids.
    pub users: Interner<&'a str>,
    /// Distinct raw (artist, title) pairs.
    pub tracks: PairInterner<&'a str>,
    /// User code per event.
    pub user: Vec<u32>,
    /// Start time per event, UTC seconds.
    pub ts: Vec<i64>,
    /// Pair code per event.
    pub track: Vec<u32>,
    /// Line number of each event within the chunk.
    pub line: Vec<u32>,
    last_user: Option<(&'a str, u32)>,
}

impl<'a> BorrowedEvents<'a> {
    /// Appends one event, read at `line` of the chunk.
    pub fn push(&mut self, user: &'a str, ts: i64, artist: &'a str, title: &'a str, line: u64) {
        // Logs come grouped by user: most lines repeat the previous line's user.
        let u = match self.last_user {
            Some((name, code)) if name == user => code,
            _ => {
                let code = self.users.intern(&user);
                self.last_user = Some((user, code));
                code
            }
        };
        let t = self.tracks.intern_with(artist, title, |_, _| (artist, title));
        self.user.push(u);
        self.ts.push(ts);
        self.track.push(t);
        self.line.push(line.min(u32::MAX as u64) as u32);
    }
}

/// The longest user id, artist or title accepted, in bytes. Real names are far shorter (the
/// longest titles in Last.fm 1K are a few hundred bytes); anything longer is a malformed
/// record, so a hostile input cannot make segue keep (and normalise, hash, store) megabytes
/// per field.
pub const MAX_FIELD_BYTES: usize = 4096;

/// The longest line of a line-oriented listening log (Last.fm TSV, CSV/TSV tables, JSON
/// Lines), in bytes. Longer lines are malformed records, dropped before parsing without being
/// held in memory whole.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The longest line of a content table (lyrics, audio features, tags), in bytes.
pub const MAX_CONTENT_LINE_BYTES: usize = 1 << 20;

/// Why the identity fields of a record (user id, artist, title) cannot be kept, if they cannot:
/// a control character (`char::is_control`: C0, DEL, C1) or more than [`MAX_FIELD_BYTES`].
pub fn check_identity(user: &str, artist: &str, title: &str) -> Option<(SkipReason, String)> {
    for (name, value) in [("user id", user), ("artist", artist), ("title", title)] {
        if value.len() > MAX_FIELD_BYTES {
            return Some((
                SkipReason::FieldTooLong,
                format!(
                    "{name} of {} bytes (limit {MAX_FIELD_BYTES}) starting {:?}",
                    value.len(),
                    prefix(value, 40)
                ),
            ));
        }
        if let Some(c) = value.chars().find(|c| c.is_control()) {
            return Some((
                SkipReason::ControlCharacter,
                format!("{name} {:?} holds U+{:04X}", prefix(value, 80), c as u32),
            ));
        }
    }
    None
}

/// At most the first `max` bytes of `value`, cut at a character boundary, for messages.
pub(crate) fn prefix(value: &str, max: usize) -> &str {
    let mut end = max.min(value.len());
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// True when a name is empty after normalisation (nothing but whitespace).
pub fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}
