//! The word2vec text and binary formats, which gensim's `KeyedVectors.load_word2vec_format`
//! reads: a header `count dim`, then per token its name and values (text: space-separated
//! decimals; binary: little-endian f32 after a space, then a newline).

use std::io::{BufRead, Write};
use std::path::Path;

use segue_core::{Error, Position, Result};

use crate::Model;

impl Model {
    /// Writes the vectors in word2vec text format, naming each token with `name`.
    pub fn save_word2vec_text(&self, path: &Path, name: impl Fn(u32) -> String) -> Result<()> {
        self.save_word2vec(path, name, false)
    }

    /// Writes the vectors in word2vec binary format.
    pub fn save_word2vec_binary(&self, path: &Path, name: impl Fn(u32) -> String) -> Result<()> {
        self.save_word2vec(path, name, true)
    }

    fn save_word2vec(&self, path: &Path, name: impl Fn(u32) -> String, binary: bool) -> Result<()> {
        let size = self.params.vector_size;
        segue_core::fs::write_atomic(path, |out| {
            let io = |e| Error::io(path, e);
            writeln!(out, "{} {size}", self.vocab.len()).map_err(io)?;
            for (r, &t) in self.vocab.tokens.iter().enumerate() {
                write!(out, "{}", name(t)).map_err(io)?;
                let row = &self.syn0[r * size..(r + 1) * size];
                if binary {
                    out.write_all(b" ").map_err(io)?;
                    for v in row {
                        out.write_all(&v.to_le_bytes()).map_err(io)?;
                    }
                } else {
                    for v in row {
                        write!(out, " {v}").map_err(io)?;
                    }
                }
                out.write_all(b"\n").map_err(io)?;
            }
            Ok(())
        })
    }
}

fn header(line: &str, path: &Path) -> Result<(usize, usize)> {
    let mut it = line.split_whitespace().map(str::parse::<usize>);
    match (it.next(), it.next()) {
        (Some(Ok(n)), Some(Ok(d))) => Ok((n, d)),
        _ => Err(Error::input(
            path,
            Position::Line(1),
            format!("header {line:?}, expected `count dim`"),
        )),
    }
}

/// Reads a word2vec text file: names and vectors.
pub fn read_word2vec_text(path: &Path) -> Result<Vec<(String, Vec<f32>)>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = std::io::BufReader::new(file).lines();
    let first = lines.next().transpose().map_err(|e| Error::io(path, e))?.unwrap_or_default();
    let (n, d) = header(&first, path)?;
    let mut out = Vec::with_capacity(n);
    for (i, line) in lines.enumerate() {
        let line = line.map_err(|e| Error::io(path, e))?;
        let mut parts = line.split(' ');
        let name = parts.next().unwrap_or_default().to_string();
        let values: std::result::Result<Vec<f32>, _> = parts.map(str::parse).collect();
        match values {
            Ok(v) if v.len() == d => out.push((name, v)),
            _ => {
                return Err(Error::input(
                    path,
                    Position::Line(i as u64 + 2),
                    format!("expected a name and {d} numbers"),
                ));
            }
        }
    }
    if out.len() != n {
        return Err(Error::input(
            path,
            Position::File,
            format!("{} vectors, the header says {n}", out.len()),
        ));
    }
    Ok(out)
}

/// Reads a word2vec binary file: names and vectors.
pub fn read_word2vec_binary(path: &Path) -> Result<Vec<(String, Vec<f32>)>> {
    let bytes = segue_core::fs::read(path)?;
    let nl = bytes
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| Error::input(path, Position::Line(1), "no header line"))?;
    let (n, d) = header(&String::from_utf8_lossy(&bytes[..nl]), path)?;
    let mut pos = nl + 1;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let space = bytes[pos..].iter().position(|&b| b == b' ').ok_or_else(|| {
            Error::input(path, Position::Record(i as u64 + 1), "truncated: no name")
        })?;
        let name =
            String::from_utf8_lossy(&bytes[pos..pos + space]).trim_start_matches('\n').to_string();
        pos += space + 1;
        let end = pos + 4 * d;
        let raw = bytes.get(pos..end).ok_or_else(|| {
            Error::input(path, Position::Record(i as u64 + 1), "truncated vector")
        })?;
        out.push((
            name,
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        ));
        pos = end;
        if bytes.get(pos) == Some(&b'\n') {
            pos += 1;
        }
    }
    Ok(out)
}
