//! Parquet artifacts: atomic writes, reads that name the file, typed column access.

use std::path::Path;

use polars::io::parquet::write::BatchedWriter;
use polars::prelude::*;
use segue_core::{Error, Result};

/// Writes a frame as zstd-compressed Parquet, atomically.
pub fn write(path: &Path, df: &mut DataFrame) -> Result<()> {
    segue_core::fs::write_atomic(path, |out| {
        ParquetWriter::new(out)
            .with_compression(ParquetCompression::Lz4Raw)
            .finish(df)
            .map(|_| ())
            .map_err(|e| Error::artifact(path, format!("writing Parquet: {e}")))
    })
}

/// Rows of one row group (polars' default): what [`BatchWriter`] writes at a time and
/// [`read_batches`] reads at a time, so a large table is never whole in memory.
pub const ROW_GROUP: usize = 512 * 512;

/// A Parquet file written a row group at a time (Lz4Raw, like [`write()`]), for tables
/// too large to hold whole: each batch is encoded and written as it comes. Atomic: the file
/// appears only at [`BatchWriter::finish`]; dropped before that, it leaves nothing behind.
pub struct BatchWriter {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    // Unbuffered: the writer hands over whole pages, and a failed write is an error here
    // rather than a lost flush when the writer is dropped.
    writer: Option<BatchedWriter<std::fs::File>>,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter").field("path", &self.path).finish_non_exhaustive()
    }
}

impl BatchWriter {
    /// Starts `path` with the columns of `schema`.
    pub fn new(path: &Path, schema: &Schema) -> Result<BatchWriter> {
        let tmp = segue_core::fs::temp_path(path);
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let writer = ParquetWriter::new(file)
            .with_compression(ParquetCompression::Lz4Raw)
            .batched(schema)
            .map_err(|e| Error::artifact(path, format!("writing Parquet: {e}")))?;
        Ok(BatchWriter { path: path.to_owned(), tmp, writer: Some(writer) })
    }

    /// Writes `batch` (its columns in the schema's order) as row groups of at most
    /// [`ROW_GROUP`] rows.
    pub fn write(&mut self, batch: &mut DataFrame) -> Result<()> {
        let err = |e: PolarsError| Error::artifact(&self.path, format!("writing Parquet: {e}"));
        batch.align_chunks_par();
        let writer = self.writer.as_mut().expect("written after finish");
        let mut offset = 0;
        while offset < batch.height() {
            let len = ROW_GROUP.min(batch.height() - offset);
            let mut group = batch.slice(offset as i64, len);
            group.rechunk_mut_par();
            writer.write_batch(&group).map_err(err)?;
            offset += len;
        }
        Ok(())
    }

    /// Writes the footer and moves the file into place.
    pub fn finish(mut self) -> Result<()> {
        let writer = self.writer.as_ref().expect("finished once");
        writer
            .finish()
            .map_err(|e| Error::artifact(&self.path, format!("writing Parquet: {e}")))?;
        self.writer = None;
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))
    }
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        // Not finished, or the rename failed: the partial file goes.
        if self.writer.take().is_some() || self.tmp.exists() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Reads a Parquet file.
pub fn read(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::artifact(path, format!("reading Parquet: {e}")))
}

/// The columns `columns` of a Parquet file, whole row groups at a time (at least
/// [`ROW_GROUP`] rows a batch, except the last), in order: for tables too large to read whole.
pub fn read_batches(
    path: &Path,
    columns: &[&str],
) -> Result<impl Iterator<Item = Result<DataFrame>> + use<>> {
    let err = |e: PolarsError| Error::artifact(path, format!("reading Parquet: {e}"));
    let open = |path: &Path| std::fs::File::open(path).map_err(|e| Error::io(path, e));
    let metadata = ParquetReader::new(open(path)?).get_metadata().map_err(err)?.clone();
    // Batch bounds at row-group bounds: a slice through a group would decode it twice.
    let mut bounds = vec![0usize];
    let mut rows = 0;
    for group in &metadata.row_groups {
        rows += group.num_rows();
        if rows - bounds.last().expect("starts with 0") >= ROW_GROUP {
            bounds.push(rows);
        }
    }
    if *bounds.last().expect("starts with 0") < rows {
        bounds.push(rows);
    }
    let (path, columns) = (path.to_owned(), columns.iter().map(|c| c.to_string()).collect());
    let columns: Vec<String> = columns;
    Ok(bounds.windows(2).map(|w| (w[0], w[1])).collect::<Vec<_>>().into_iter().map(
        move |(start, end)| {
            let mut reader = ParquetReader::new(open(&path)?);
            reader.set_metadata(metadata.clone());
            reader
                .with_columns(Some(columns.clone()))
                .with_slice(Some((start, end - start)))
                .finish()
                .map_err(|e| Error::artifact(&path, format!("reading Parquet: {e}")))
        },
    ))
}

/// Column `name` ([`Error::MissingColumn`] naming the columns there are).
fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    df.column(name).map_err(|_| Error::MissingColumn {
        column: name.to_string(),
        found: df.get_column_names().iter().map(|s| s.to_string()).collect(),
    })
}

/// [`Error::ColumnType`] for a column that is not `expected`.
fn wrong_type(c: &Column, expected: &str) -> Error {
    Error::ColumnType {
        column: c.name().to_string(),
        expected: expected.to_string(),
        found: c.dtype().to_string(),
    }
}

/// The values of a numeric column, chunk after chunk (a Parquet file read in row groups is
/// several chunks: joining them first would copy the column once more); nulls are an error.
fn values<T>(name: &str, c: &ChunkedArray<T>) -> Result<Vec<T::Native>>
where
    T: PolarsNumericType,
{
    if c.null_count() > 0 {
        let row = c.iter().position(|v| v.is_none()).unwrap_or(0);
        return Err(Error::NullValue { column: name.to_owned(), row });
    }
    let mut out = Vec::with_capacity(c.len());
    for chunk in c.downcast_iter() {
        out.extend_from_slice(chunk.values());
    }
    Ok(out)
}

/// A u32 column as a contiguous vector.
pub fn u32_column(df: &DataFrame, name: &str) -> Result<Vec<u32>> {
    let col = column(df, name)?;
    values(name, col.u32().map_err(|_| wrong_type(col, "u32"))?)
}

/// An i64 column as a contiguous vector.
pub fn i64_column(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    let col = column(df, name)?;
    values(name, col.i64().map_err(|_| wrong_type(col, "i64"))?)
}

/// A string column; nulls are an error.
pub fn str_column(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let col = column(df, name)?;
    let c = col.str().map_err(|_| wrong_type(col, "str"))?;
    c.iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(str::to_owned).ok_or_else(|| Error::NullValue { column: name.to_owned(), row: i })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_mistyped_columns_are_typed_errors() {
        let df = df!("track" => [1u32, 2], "user" => ["a", "b"]).unwrap();
        assert_eq!(u32_column(&df, "track").unwrap(), vec![1, 2]);
        match u32_column(&df, "session") {
            Err(Error::MissingColumn { column, found }) => {
                assert_eq!(
                    (column.as_str(), found),
                    ("session", vec!["track".into(), "user".into()])
                )
            }
            other => panic!("{other:?}"),
        }
        match i64_column(&df, "user") {
            Err(e @ Error::ColumnType { .. }) => {
                assert_eq!(e.to_string(), "column `user` is str, expected i64")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_batch_writer_not_finished_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let mut batch = df!("track" => [1u32, 2]).unwrap();
        let mut out = BatchWriter::new(&path, batch.schema()).unwrap();
        out.write(&mut batch).unwrap();
        drop(out);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut out = BatchWriter::new(&path, batch.schema()).unwrap();
        out.write(&mut batch).unwrap();
        out.finish().unwrap();
        assert_eq!(read(&path).unwrap(), batch);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
