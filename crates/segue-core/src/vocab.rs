use std::collections::HashMap;
use std::fmt;

use unicode_normalization::UnicodeNormalization;

use crate::{Error, Result};

/// A track's row in every embedding table and its class in the model's output layer.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct TrackId(pub u32);

impl TrackId {
    /// The id as an index into a table.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// True for the characters Python's `str.isspace()` accepts: Unicode White_Space plus the
/// information separators U+001C..U+001F, so keys equal the Python peer's.
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The track-identity normalisation of the design: Unicode NFKC, lower case (full case mapping,
/// final sigma included), inner whitespace collapsed to one space, trimmed.
///
/// ```
/// assert_eq!(segue_core::normalize_name("  The  BEATLES\t"), "the beatles");
/// assert_eq!(segue_core::normalize_name("ＡＢＢＡ"), "abba"); // NFKC folds full-width forms
/// ```
pub fn normalize_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    let mut push = |c: char, out: &mut String| {
        if is_space(c) {
            pending_space = !out.is_empty();
        } else {
            if pending_space {
                out.push(' ');
                pending_space = false;
            }
            out.push(c);
        }
    };
    if raw.is_ascii() {
        // NFKC and full case mapping are the identity / ASCII lowering on ASCII text.
        for b in raw.bytes() {
            push(b.to_ascii_lowercase() as char, &mut out);
        }
    } else {
        let lowered = raw.nfkc().collect::<String>().to_lowercase();
        for c in lowered.chars() {
            push(c, &mut out);
        }
    }
    out
}

/// One track of the vocabulary: its normalised identity and a display spelling.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VocabEntry {
    /// Normalised artist (see [`normalize_name`]).
    pub artist_key: String,
    /// Normalised title.
    pub title_key: String,
    /// Artist as first seen in the input.
    pub artist: String,
    /// Title as first seen in the input.
    pub title: String,
}

impl VocabEntry {
    /// An entry from its keys and display names.
    pub fn new(
        artist_key: impl Into<String>,
        title_key: impl Into<String>,
        artist: impl Into<String>,
        title: impl Into<String>,
    ) -> Self {
        VocabEntry {
            artist_key: artist_key.into(),
            title_key: title_key.into(),
            artist: artist.into(),
            title: title.into(),
        }
    }
}

/// The catalogue: track id <-> normalised (artist, title) key <-> display artist and title.
#[derive(Debug, Clone, Default)]
pub struct Vocab {
    entries: Vec<VocabEntry>,
    index: HashMap<(String, String), TrackId>,
}

impl Vocab {
    /// A vocabulary whose ids are the positions of `entries`. Two entries with the same key
    /// are an error.
    pub fn new(entries: Vec<VocabEntry>) -> Result<Self> {
        if entries.len() > u32::MAX as usize {
            return Err(Error::Config(format!("{} tracks do not fit u32 ids", entries.len())));
        }
        let mut index = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let key = (e.artist_key.clone(), e.title_key.clone());
            if let Some(prev) = index.insert(key, TrackId(i as u32)) {
                return Err(Error::Config(format!(
                    "vocabulary: tracks {prev} and {i} share the key ({:?}, {:?})",
                    e.artist_key, e.title_key
                )));
            }
        }
        Ok(Vocab { entries, index })
    }

    /// Number of tracks.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no track.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id of a normalised key.
    pub fn id(&self, artist_key: &str, title_key: &str) -> Option<TrackId> {
        self.index.get(&(artist_key.to_owned(), title_key.to_owned())).copied()
    }

    /// The id of a raw artist and title, normalised first.
    pub fn lookup(&self, artist: &str, title: &str) -> Option<TrackId> {
        self.id(&normalize_name(artist), &normalize_name(title))
    }

    /// The entry of an id.
    pub fn get(&self, id: TrackId) -> Option<&VocabEntry> {
        self.entries.get(id.index())
    }

    /// All entries in id order.
    pub fn entries(&self) -> &[VocabEntry] {
        &self.entries
    }

    /// A hash of the keys in id order: tables built on one vocabulary carry it, so a table
    /// is never used with a vocabulary whose ids mean other tracks.
    pub fn hash(&self) -> String {
        let mut h = blake3::Hasher::new();
        for e in &self.entries {
            h.update(e.artist_key.as_bytes());
            h.update(&[0]);
            h.update(e.title_key.as_bytes());
            h.update(&[0xff]);
        }
        h.finalize().to_hex()[..32].to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_matches_python_semantics() {
        assert_eq!(normalize_name("  A  b\u{a0}C "), "a b c");
        assert_eq!(normalize_name("\u{1c}x\u{1f}y\u{1e}"), "x y");
        assert_eq!(normalize_name("ΟΔΟΣ"), "οδος");
        assert_eq!(normalize_name("ﬁne"), "fine");
        assert_eq!(normalize_name("   "), "");
        assert_eq!(normalize_name("Beyoncé"), normalize_name("Beyonce\u{301}"));
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let e = VocabEntry::new("a", "b", "A", "B");
        assert!(Vocab::new(vec![e.clone(), e]).is_err());
    }

    #[test]
    fn hash_depends_on_order() {
        let a = VocabEntry::new("a", "x", "A", "X");
        let b = VocabEntry::new("b", "y", "B", "Y");
        let v1 = Vocab::new(vec![a.clone(), b.clone()]).unwrap();
        let v2 = Vocab::new(vec![b, a]).unwrap();
        assert_ne!(v1.hash(), v2.hash());
        assert_eq!(v1.lookup(" A ", "X"), Some(TrackId(0)));
    }
}
