//! Hashes the sources of every segue library crate (`SEGUE_SRC_<CRATE>` at compile time), so a
//! stage's cache key changes whenever the code that computes it changes.

use std::path::{Path, PathBuf};

/// 64-bit FNV-1a: stable across Rust versions (std's hasher is not).
fn fnv1a(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn main() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates");
    let mut names: Vec<String> = std::fs::read_dir(&crates)
        .expect("the workspace's crates folder")
        .flatten()
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let src = crates.join(&name).join("src");
        println!("cargo:rerun-if-changed={}", src.display());
        let mut files = Vec::new();
        sources(&src, &mut files);
        files.sort();
        let mut hash = 0xcbf2_9ce4_8422_2325u64;
        for file in files {
            let relative = file.strip_prefix(&src).unwrap_or(&file);
            fnv1a(&mut hash, relative.to_string_lossy().as_bytes());
            fnv1a(&mut hash, &[0]);
            fnv1a(&mut hash, &std::fs::read(&file).expect("a readable source file"));
            fnv1a(&mut hash, &[0]);
        }
        let var = name.to_uppercase().replace('-', "_");
        println!("cargo:rustc-env=SEGUE_SRC_{var}={hash:016x}");
    }
}
