use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors};

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
            return Err(Error::OutOfRange {
                what: "an embedding table's rows".into(),
                index: i,
                len: self.rows,
            });
        }
        if values.len() != self.dim {
            return Err(Error::ShapeMismatch {
                what: format!("the row of track {id}"),
                expected: self.dim,
                found: values.len(),
            });
        }
        if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: format!("value {bad} of the row of track {id}"),
                value: f64::from(values[bad]),
            });
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

    /// Writes the table atomically. The bytes depend only on the table: the header is written
    /// in a fixed order (safetensors' own writer takes the metadata as a `HashMap`, whose order
    /// changes from run to run), so equal tables give byte-identical files.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fs::write_bytes_atomic(path, &self.to_bytes())
    }

    /// The safetensors file of the table: the 8-byte header length, the header (JSON in a fixed
    /// order, padded with spaces to a multiple of 8 bytes, as safetensors aligns it), then
    /// `embeddings` (F32, row-major, little-endian) and `mask` (U8).
    fn to_bytes(&self) -> Vec<u8> {
        let emb_len = self.data.len() * 4;
        // `json!` inserts keys in the order written, and serde_json keeps either that order or
        // sorted order: both fixed.
        let header = serde_json::json!({
            "__metadata__": {
                "format": "segue-embedding-table-v1",
                "vocab_hash": self.vocab_hash,
            },
            "embeddings": {
                "dtype": "F32",
                "shape": [self.rows, self.dim],
                "data_offsets": [0, emb_len],
            },
            "mask": {
                "dtype": "U8",
                "shape": [self.rows],
                "data_offsets": [emb_len, emb_len + self.mask.len()],
            },
        });
        let mut header = header.to_string().into_bytes();
        header.resize(header.len().next_multiple_of(8), b' ');
        let mut out = Vec::with_capacity(8 + header.len() + emb_len + self.mask.len());
        out.extend_from_slice(&(header.len() as u64).to_le_bytes());
        out.extend_from_slice(&header);
        out.extend(self.data.iter().flat_map(|v| v.to_le_bytes()));
        out.extend_from_slice(&self.mask);
        out
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

    /// Equal tables give equal bytes (safetensors' writer orders its metadata by a `HashMap`),
    /// and the bytes are what safetensors itself reads, metadata included.
    #[test]
    fn equal_tables_give_identical_files_that_safetensors_reads() {
        let mut t = EmbeddingTable::zeros(5, 3, "vocab-hash");
        t.set_row(TrackId(1), &[1.0, 2.0, 3.0]).unwrap();
        t.set_row(TrackId(4), &[-1.0, 0.5, 0.25]).unwrap();
        let first = t.to_bytes();
        for _ in 0..20 {
            assert_eq!(t.clone().to_bytes(), first);
        }
        assert_eq!(u64::from_le_bytes(first[..8].try_into().unwrap()) % 8, 0);
        let st = SafeTensors::deserialize(&first).unwrap();
        assert_eq!(st.tensor("embeddings").unwrap().shape(), [5, 3]);
        assert_eq!(st.tensor("mask").unwrap().data(), &[0, 1, 0, 0, 1]);
        let (_, meta) = SafeTensors::read_metadata(&first).unwrap();
        let meta = meta.metadata().clone().unwrap();
        assert_eq!(meta["vocab_hash"], "vocab-hash");
        assert_eq!(meta["format"], "segue-embedding-table-v1");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.safetensors");
        t.save(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), first);
        assert_eq!(EmbeddingTable::load(&p).unwrap(), t);
    }
}
