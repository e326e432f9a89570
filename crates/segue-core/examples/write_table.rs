//! Writes a small embedding table, for reading it from Python:
//! `cargo run -p segue-core --example write_table -- /tmp/t.safetensors`, then
//! `safetensors.numpy.load_file("/tmp/t.safetensors")["embeddings"]`.

use segue_core::{EmbeddingTable, TrackId};

fn main() -> segue_core::Result<()> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "table.safetensors".into());
    let mut table = EmbeddingTable::zeros(3, 4, "example-vocab");
    table.set_row(TrackId(0), &[1.0, 2.0, 3.0, 4.0])?;
    table.set_row(TrackId(2), &[-1.0, 0.5, 0.25, 0.0])?;
    table.save(std::path::Path::new(&path))?;
    println!(
        "wrote {path}: {} x {}, {} rows present",
        table.rows(),
        table.dim(),
        table.present_count()
    );
    Ok(())
}
