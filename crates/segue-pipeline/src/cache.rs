//! The artifact cache. A stage's artifacts live in `<cache>/<stage>/<key>/`, where the key hashes
//! the stage's code version, its parameters and its inputs (upstream keys, input file
//! contents). A `manifest.json` written last records each file's hash; a folder whose files do
//! not match it is recomputed, never used. Folders are built under a temporary name and renamed
//! into place, so an interrupted run leaves no half-written artifact.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Everything a stage's key is made of, kept to explain why a stage is stale.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recipe {
    /// The stage (`word2vec`, `train-ann`, ...).
    pub stage: String,
    /// The stage's code version (changes whenever the code that computes it does).
    pub code_version: String,
    /// The stage's parameters.
    pub params: serde_json::Value,
    /// Upstream stage -> its key.
    pub upstream: BTreeMap<String, String>,
    /// Input file -> content hash.
    pub files: BTreeMap<String, String>,
    /// The run of the stage this recipe is for, when a stage has several (one per seed:
    /// `train-ann/seed-1`); not part of the key (the parameters say the seed).
    #[serde(skip)]
    pub instance: Option<String>,
}

impl Recipe {
    /// The name its last run is remembered under (for "stale: why").
    pub fn last_name(&self) -> &str {
        self.instance.as_deref().unwrap_or(&self.stage)
    }

    /// The key of the artifacts this recipe makes: a hash of all of it.
    pub fn key(&self) -> String {
        let bytes = serde_json::to_vec(self).expect("a recipe serialises");
        blake3::hash(&bytes).to_hex()[..24].to_string()
    }

    /// Why `self` (now) differs from `old` (the last run), in words.
    pub fn differences(&self, old: &Recipe) -> Vec<String> {
        let mut why = Vec::new();
        if self.code_version != old.code_version {
            why.push(format!("code version {} -> {}", old.code_version, self.code_version));
        }
        diff_json("", &old.params, &self.params, &mut why);
        for (stage, key) in &self.upstream {
            if old.upstream.get(stage) != Some(key) {
                why.push(format!("upstream `{stage}` changed"));
            }
        }
        for (file, hash) in &self.files {
            match old.files.get(file) {
                None => why.push(format!("new input {file}")),
                Some(h) if h != hash => why.push(format!("input {file} changed")),
                _ => {}
            }
        }
        for file in old.files.keys().filter(|f| !self.files.contains_key(*f)) {
            why.push(format!("input {file} no longer used"));
        }
        why
    }
}

fn diff_json(
    prefix: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    out: &mut Vec<String>,
) {
    match (old, new) {
        (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_json(&p, x, y, out),
                    (x, y) => out.push(format!("{p}: {} -> {}", show(x), show(y))),
                }
            }
        }
        (a, b) if a != b => out.push(format!("{prefix}: {a} -> {b}")),
        _ => {}
    }
}

fn show(v: Option<&serde_json::Value>) -> String {
    v.map_or("(unset)".into(), |v| v.to_string())
}

/// What a finished stage folder records, written last: its recipe, key, files and their
/// hashes, run time and summary.
#[derive(Debug, Serialize, Deserialize)]
pub struct Manifest {
    /// What the artifacts were made from.
    pub recipe: Recipe,
    /// The recipe's key (the folder's name).
    pub key: String,
    /// File name -> blake3 of its bytes.
    pub files: BTreeMap<String, String>,
    /// How long the stage ran.
    pub seconds: f64,
    /// The stage's figures (coverage, rates, sizes), as it reported them.
    pub summary: serde_json::Value,
}

/// The blake3 of a file, read in blocks: memory stays small whatever the file (a memory map
/// would keep every page of a hostile 300 MB input resident).
pub fn hash_file(path: &Path) -> Result<String> {
    let mut h = blake3::Hasher::new();
    let file = std::fs::File::open(path).with_context(|| format!("hashing {}", path.display()))?;
    h.update_reader(std::io::BufReader::with_capacity(1 << 20, file))
        .with_context(|| format!("hashing {}", path.display()))?;
    Ok(h.finalize().to_hex().to_string())
}

/// The state of a stage's artifact folder.
#[derive(Debug)]
pub enum Check {
    /// Complete and verified.
    Fresh(Box<Manifest>),
    /// Never computed.
    Missing,
    /// The folder exists but a file is missing or does not match its recorded hash.
    Corrupt(String),
}

/// A pipeline's artifact cache.
#[derive(Debug, Clone)]
pub struct Cache {
    /// The cache folder (`<stage>/<key>/` below it).
    pub root: PathBuf,
}

impl Cache {
    /// The folder of a stage's artifacts under `key`.
    pub fn stage_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.root.join(stage).join(key)
    }

    fn last_path(&self, stage: &str) -> PathBuf {
        self.root.join(stage).join("last.json")
    }

    /// The recipe of the stage's last completed run, if any.
    pub fn last_recipe(&self, stage: &str) -> Option<Recipe> {
        let text = std::fs::read_to_string(self.last_path(stage)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the artifacts of `stage` under `key` are there and intact.
    pub fn check(&self, stage: &str, key: &str) -> Check {
        let dir = self.stage_dir(stage, key);
        let manifest_path = dir.join("manifest.json");
        if !dir.exists() {
            return Check::Missing;
        }
        let manifest: Manifest = match std::fs::read_to_string(&manifest_path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
        {
            Some(m) => m,
            None => return Check::Corrupt("its manifest.json is missing or unreadable".into()),
        };
        if manifest.key != key {
            return Check::Corrupt(format!("its manifest records key {}", manifest.key));
        }
        for (name, recorded) in &manifest.files {
            match hash_file(&dir.join(name)) {
                Ok(h) if &h == recorded => {}
                Ok(_) => return Check::Corrupt(format!("{name} does not match its recorded hash")),
                Err(_) => return Check::Corrupt(format!("{name} is missing")),
            }
        }
        Check::Fresh(Box::new(manifest))
    }

    /// Runs `build` into a temporary folder, records the manifest and moves it into place.
    pub fn build<F>(&self, recipe: &Recipe, build: F) -> Result<Manifest>
    where
        F: FnOnce(&Path) -> Result<serde_json::Value>,
    {
        let key = recipe.key();
        let final_dir = self.stage_dir(&recipe.stage, &key);
        let parent = final_dir.parent().expect("stage dir has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
        remove_leftovers(parent);
        let tmp = parent.join(format!(".tmp-{key}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let started = std::time::Instant::now();
        let summary = match build(&tmp) {
            Ok(s) => s,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let mut files = BTreeMap::new();
        for entry in std::fs::read_dir(&tmp)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            files.insert(name, hash_file(&entry.path())?);
        }
        let manifest = Manifest {
            recipe: recipe.clone(),
            key: key.clone(),
            files,
            seconds: started.elapsed().as_secs_f64(),
            summary,
        };
        std::fs::write(tmp.join("manifest.json"), serde_json::to_vec_pretty(&manifest)?)?;
        if final_dir.exists() {
            std::fs::remove_dir_all(&final_dir)
                .with_context(|| format!("removing {}", final_dir.display()))?;
        }
        std::fs::rename(&tmp, &final_dir)
            .with_context(|| format!("moving {} into place", final_dir.display()))?;
        let last = self.last_path(recipe.last_name());
        if let Some(folder) = last.parent() {
            std::fs::create_dir_all(folder)
                .with_context(|| format!("creating {}", folder.display()))?;
        }
        segue_core::fs::write_bytes_atomic(&last, &serde_json::to_vec_pretty(recipe)?)?;
        Ok(manifest)
    }
}

/// Removes what killed runs left in a stage's folder: build folders `.tmp-KEY-PID` and atomic
/// writes `NAME.PID.tmp` whose process is gone. Folders of live processes (another run building
/// now) are left alone.
fn remove_leftovers(stage_folder: &Path) {
    let Ok(entries) = std::fs::read_dir(stage_folder) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = if let Some(rest) = name.strip_prefix(".tmp-") {
            rest.rsplit('-').next()
        } else if let Some(rest) = name.strip_suffix(".tmp") {
            rest.rsplit('.').next()
        } else {
            None
        };
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid != std::process::id() && process_is_gone(pid) {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// True when no process `pid` runs. Where that cannot be known (no `/proc`), false: leftovers
/// are then kept rather than a live run's folder removed.
fn process_is_gone(pid: u32) -> bool {
    let proc = Path::new("/proc");
    proc.join("self").exists() && !proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipe(gap: i64) -> Recipe {
        Recipe {
            stage: "sessionize".into(),
            code_version: "1".into(),
            params: serde_json::json!({"gap_seconds": gap}),
            upstream: BTreeMap::from([("ingest".into(), "abc".into())]),
            files: BTreeMap::new(),
            instance: None,
        }
    }

    #[test]
    fn build_check_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache { root: dir.path().to_path_buf() };
        let r = recipe(7200);
        assert!(matches!(cache.check("sessionize", &r.key()), Check::Missing));
        cache
            .build(&r, |d| {
                std::fs::write(d.join("a.txt"), "hello")?;
                Ok(serde_json::json!({}))
            })
            .unwrap();
        assert!(matches!(cache.check("sessionize", &r.key()), Check::Fresh(_)));
        std::fs::write(cache.stage_dir("sessionize", &r.key()).join("a.txt"), "tampered").unwrap();
        assert!(matches!(cache.check("sessionize", &r.key()), Check::Corrupt(_)));
        let failed = cache.build(&recipe(1), |_| anyhow::bail!("boom"));
        assert!(failed.is_err());
        assert!(matches!(cache.check("sessionize", &recipe(1).key()), Check::Missing));
        let why = recipe(3600).differences(&cache.last_recipe("sessionize").unwrap());
        assert_eq!(why, vec!["gap_seconds: 7200 -> 3600".to_string()]);
    }

    /// Folders and files of a killed run are removed by the next build; a live process's are
    /// kept.
    #[test]
    fn leftovers_of_dead_runs_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache { root: dir.path().to_path_buf() };
        let stage = dir.path().join("sessionize");
        // A process id that is not running: one past the largest id the kernel hands out.
        let max: u32 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(4_194_304);
        let dead = max + 1;
        let live = std::process::id();
        let parent_pid = std::os::unix::process::parent_id();
        for name in [format!(".tmp-abc-{dead}"), format!(".tmp-def-{parent_pid}")] {
            std::fs::create_dir_all(stage.join(&name)).unwrap();
            std::fs::write(stage.join(&name).join("x"), "partial").unwrap();
        }
        std::fs::write(stage.join(format!("last.json.{dead}.tmp")), "{").unwrap();
        std::fs::create_dir_all(stage.join("abc.partial")).unwrap();
        cache.build(&recipe(7200), |_| Ok(serde_json::json!({}))).unwrap();
        assert!(!stage.join(format!(".tmp-abc-{dead}")).exists());
        assert!(!stage.join(format!("last.json.{dead}.tmp")).exists());
        assert!(stage.join(format!(".tmp-def-{parent_pid}")).exists(), "a live process's");
        assert!(stage.join("abc.partial").exists(), "a resumable training is kept");
        assert!(!stage.join(format!(".tmp-{}-{live}", recipe(7200).key())).exists());
    }
}
