use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::{Error, Result, TrackId};

/// A V x d matrix of f32 track vectors, row i = track id i, with a presence mask for tracks
/// that have no vector (no lyrics, no features, ...; their row is zero).
///
/// Stored as safetensors with tensors `embeddings` (F32, V x d) and `mask` (U8, V), and the
/// vocabulary's hash in the metadata, so numpy and torch read it directly:
/// `safetensors.numpy.load_file(path)["embeddings"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct EmbeddingTable {
    rows: usize,
    dim: usize,
    data: Vec<f32>,
    mask: Vec<u8>,
    vocab_hash: String,
}

impl EmbeddingTable {
    /// A table of zeros with every track absent.
    pub fn zeros(rows: usize, dim: usize, vocab_hash: impl Into<String>) -> Self {
        EmbeddingTable {
            rows,
            dim,
            data: vec![0.0; rows * dim],
            mask: vec![0; rows],
            vocab_hash: vocab_hash.into(),
        }
    }

    /// Number of rows (tracks).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Width of each vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The hash of the vocabulary the rows follow.
    pub fn vocab_hash(&self) -> &str {
        &self.vocab_hash
    }

    /// Sets a row and marks it present. A non-finite value or a wrong width is an error.
    pub fn set_row(&mut self, id: TrackId, values: &[f32]) -> Result<()> {
        let i = id.index();
        if i >= self.rows {
            return Err(Error::Other(format!("track {id} outside a table of {} rows", self.rows)));
        }
        if values.len() != self.dim {
            return Err(Error::Other(format!(
                "row of width {} in a table of width {}",
                values.len(),
                self.dim
            )));
        }
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::Other(format!("track {id}: value {bad} is {}", values[bad])));
        }
        self.data[i * self.dim..(i + 1) * self.dim].copy_from_slice(values);
        self.mask[i] = 1;
        Ok(())
    }

    /// The row of a track, zeros when absent.
    pub fn row(&self, id: TrackId) -> &[f32] {
        &self.data[id.index() * self.dim..(id.index() + 1) * self.dim]
    }

    /// Whether a track has a vector.
    pub fn is_present(&self, id: TrackId) -> bool {
        self.mask.get(id.index()).is_some_and(|&m| m == 1)
    }

    /// Number of tracks with a vector.
    pub fn present_count(&self) -> usize {
        self.mask.iter().filter(|&&m| m == 1).count()
    }

    /// The row-major matrix.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// Writes the table atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes: Vec<u8> = self.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let emb = TensorView::new(Dtype::F32, vec![self.rows, self.dim], &bytes)
            .map_err(|e| Error::Other(format!("embeddings tensor: {e}")))?;
        let mask = TensorView::new(Dtype::U8, vec![self.rows], &self.mask)
            .map_err(|e| Error::Other(format!("mask tensor: {e}")))?;
        let meta = HashMap::from([
            ("vocab_hash".to_string(), self.vocab_hash.clone()),
            ("format".to_string(), "segue-embedding-table-v1".to_string()),
        ]);
        let out = safetensors::serialize([("embeddings", emb), ("mask", mask)], Some(meta))
            .map_err(|e| Error::Other(format!("serialising {}: {e}", path.display())))?;
        crate::fs::write_bytes_atomic(path, &out)
    }

    /// Reads a table written by [`EmbeddingTable::save`] (or by numpy/torch with the same
    /// tensor names), checking shapes, dtypes and values.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = crate::fs::read(path)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::artifact(path, format!("not safetensors: {e}")))?;
        let (_, meta) = SafeTensors::read_metadata(&bytes)
            .map_err(|e| Error::artifact(path, format!("bad header: {e}")))?;
        let vocab_hash = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("vocab_hash").cloned())
            .ok_or_else(|| Error::artifact(path, "no vocab_hash in the metadata"))?;
        let emb = st
            .tensor("embeddings")
            .map_err(|e| Error::artifact(path, format!("tensor `embeddings`: {e}")))?;
        let mask =
            st.tensor("mask").map_err(|e| Error::artifact(path, format!("tensor `mask`: {e}")))?;
        let (rows, dim) = match (emb.dtype(), emb.shape()) {
            (Dtype::F32, [r, d]) => (*r, *d),
            (dt, shape) => {
                return Err(Error::artifact(
                    path,
                    format!("`embeddings` is {dt:?} {shape:?}, expected F32 [V, d]"),
                ));
            }
        };
        if mask.dtype() != Dtype::U8 || mask.shape() != [rows] {
            return Err(Error::artifact(
                path,
                format!("`mask` is {:?} {:?}, expected U8 [{rows}]", mask.dtype(), mask.shape()),
            ));
        }
        let raw = emb.data();
        if raw.len() != rows * dim * 4 {
            return Err(Error::artifact(path, "`embeddings` has the wrong byte length"));
        }
        let data: Vec<f32> =
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if data.iter().any(|v| !v.is_finite()) {
            return Err(Error::artifact(path, "`embeddings` holds a NaN or infinite value"));
        }
        let mask = mask.data().to_vec();
        if mask.iter().any(|&m| m > 1) {
            return Err(Error::artifact(path, "`mask` holds a value other than 0 or 1"));
        }
        Ok(EmbeddingTable { rows, dim, data, mask, vocab_hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let mut t = EmbeddingTable::zeros(3, 2, "abc");
        t.set_row(TrackId(2), &[1.5, -2.0]).unwrap();
        assert!(t.set_row(TrackId(1), &[f32::NAN, 0.0]).is_err());
        assert!(t.set_row(TrackId(3), &[0.0, 0.0]).is_err());
        assert!(t.set_row(TrackId(0), &[0.0]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        t.save(&p).unwrap();
        let back = EmbeddingTable::load(&p).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.present_count(), 1);
        assert_eq!(back.row(TrackId(2)), &[1.5, -2.0]);
        std::fs::write(&p, b"garbage").unwrap();
        let err = EmbeddingTable::load(&p).unwrap_err().to_string();
        assert!(err.contains("not safetensors"), "{err}");
    }
}
