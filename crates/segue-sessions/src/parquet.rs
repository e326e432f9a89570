//! Parquet artifacts: atomic writes, reads that name the file, typed column access.

use std::path::Path;

use polars::prelude::*;
use segue_core::{Error, Result};

use crate::ingest::pl_err;

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

/// Reads a Parquet file.
pub fn read(path: &Path) -> Result<DataFrame> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    ParquetReader::new(file)
        .finish()
        .map_err(|e| Error::artifact(path, format!("reading Parquet: {e}")))
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

/// A u32 column as a contiguous vector.
pub fn u32_column(df: &DataFrame, name: &str) -> Result<Vec<u32>> {
    let col = column(df, name)?;
    let c = col.u32().map_err(|_| wrong_type(col, "u32"))?;
    Ok(c.rechunk().cont_slice().map_err(pl_err)?.to_vec())
}

/// An i64 column as a contiguous vector.
pub fn i64_column(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    let col = column(df, name)?;
    let c = col.i64().map_err(|_| wrong_type(col, "i64"))?;
    Ok(c.rechunk().cont_slice().map_err(pl_err)?.to_vec())
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
}
