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

/// The crates whose code computes a stage's artifacts (`stages::source_hash`).
const STAGE_CRATES: [&str; 11] = [
    "segue-baselines",
    "segue-core",
    "segue-eval",
    "segue-lsa",
    "segue-lyrics",
    "segue-model",
    "segue-pca",
    "segue-sessions",
    "segue-tags",
    "segue-vae",
    "segue-word2vec",
];

fn main() {
    // In the workspace the stage crates are this crate's siblings. Outside it (a published
    // package) they are not: their version then stands for their sources.
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for name in STAGE_CRATES {
        let var = name.to_uppercase().replace('-', "_");
        let src = crates.join(name).join("src");
        if !crates.join(name).join("Cargo.toml").exists() {
            let version = env!("CARGO_PKG_VERSION");
            println!("cargo:rustc-env=SEGUE_SRC_{var}=version-{version}");
            continue;
        }
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
        println!("cargo:rustc-env=SEGUE_SRC_{var}={hash:016x}");
    }
}
