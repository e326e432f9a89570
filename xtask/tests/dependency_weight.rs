//! The crates other projects reuse alone stay light: a project that depends only on segue-eval
//! or only on segue-word2vec builds this many crates (the crate itself included), counted by
//! `cargo tree` from the workspace's lock file.

use std::process::Command;

fn crates_in_tree(package: &str) -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["tree", "--locked", "--offline", "-e", "normal", "--prefix", "none", "-p", package])
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut crates: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim_end_matches(" (*)").to_string())
        .collect();
    crates.sort();
    crates.dedup();
    crates
}

#[test]
fn segue_eval_and_segue_word2vec_build_with_at_most_15_crates() {
    for package in ["segue-eval", "segue-word2vec"] {
        let crates = crates_in_tree(package);
        assert!(crates.len() <= 15, "{package}: {} crates\n{}", crates.len(), crates.join("\n"));
        // The heavy parts of segue-core stay behind its `tables` feature.
        assert!(!crates.iter().any(|c| c.starts_with("blake3 ") || c.starts_with("safetensors ")));
    }
}
