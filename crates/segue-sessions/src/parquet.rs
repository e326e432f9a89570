//! Parquet artifacts: atomic writes, reads that name the file, typed column access.

use std::path::Path;

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
}
