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

fn column<'a>(df: &'a DataFrame, name: &str) -> Result<&'a Column> {
    df.column(name).map_err(|_| {
        let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
        Error::Other(format!("no column `{name}` (columns: {})", names.join(", ")))
    })
}

/// A u32 column as a contiguous vector.
pub fn u32_column(df: &DataFrame, name: &str) -> Result<Vec<u32>> {
    let c = column(df, name)?.u32().map_err(pl_err)?;
    Ok(c.rechunk().cont_slice().map_err(pl_err)?.to_vec())
}

/// An i64 column as a contiguous vector.
pub fn i64_column(df: &DataFrame, name: &str) -> Result<Vec<i64>> {
    let c = column(df, name)?.i64().map_err(pl_err)?;
    Ok(c.rechunk().cont_slice().map_err(pl_err)?.to_vec())
}

/// A string column; nulls are an error.
pub fn str_column(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let c = column(df, name)?.str().map_err(pl_err)?;
    c.iter()
        .enumerate()
        .map(|(i, v)| {
            v.map(str::to_owned)
                .ok_or_else(|| Error::Other(format!("column `{name}` is null at row {i}")))
        })
        .collect()
}
