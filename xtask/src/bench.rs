//! Benchmarks side by side with the Python peers in ../shared/peers, in one run, on the same
//! file. Each side runs in its own process so its peak memory (VmHWM / ru_maxrss) is its own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Subcommand;

use crate::bench_embed::Embedding;
use segue_core::NoProgress;
use segue_sessions::{Format, IngestOptions, SessionOptions, SourceSpec, ingest};

/// The corpus and peers of an embedding benchmark.
#[derive(clap::Args)]
pub struct EmbeddingArgs {
    /// A Last.fm 1K log; by default the paper-size synthetic log (with its truth.csv).
    #[arg(long)]
    pub listens: Option<PathBuf>,
    /// Use the built-in data, converted for the peer by spotify_to_lastfm1k.py.
    #[arg(long, conflicts_with = "listens")]
    pub builtin: bool,
    /// Planted genres (gen_synthetic's truth.csv) for the neighbour-genre measure.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    #[arg(long, default_value_os_t = default_python())]
    pub python: PathBuf,
    #[arg(long, default_value_os_t = crate::workspace_root().join("../shared/peers"))]
    pub peers: PathBuf,
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Ingest + sessionize a Last.fm 1K log, segue beside the pandas peer (`pipeline.py ingest`).
    Sessions {
        /// The log to read; by default the paper-size synthetic log, generated on first use with
        /// the peers' gen_synthetic.py (541 users, 414,000 tracks, 5.5 million events).
        #[arg(long)]
        listens: Option<PathBuf>,
        /// Use the built-in data (data/listens), converted for the peer by its
        /// spotify_to_lastfm1k.py.
        #[arg(long, conflicts_with = "listens")]
        builtin: bool,
        /// Runs per side; the median is reported.
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// The peers' Python (a venv with requirements.txt installed).
        #[arg(long, default_value_os_t = default_python())]
        python: PathBuf,
        /// The peers' folder.
        #[arg(long, default_value_os_t = crate::workspace_root().join("../shared/peers"))]
        peers: PathBuf,
    },
    /// CBOW Word2Vec beside gensim on the same training sessions: speed and quality.
    Word2vec(EmbeddingArgs),
    /// Truncated SVD (LSA) beside scikit-learn on the same training sessions: speed, singular
    /// values and quality.
    Lsa(EmbeddingArgs),
    /// The models beside the PyTorch peer: HitRatio@10..50 (mean over seeds) and training
    /// examples per second, same sessions, no validation split, fixed epochs.
    Train(crate::bench_train::TrainArgs),
    /// Sentence-BERT beside sentence-transformers on the same texts: speed, per-text cosine,
    /// PCA explained variance beside scikit-learn's. Threads on each side: the global
    /// `--threads`, else 2.
    Lyrics(crate::bench_lyrics::LyricsArgs),
    /// The acoustic VAE beside the PyTorch peer's on the same tracks: held-out reconstruction.
    Vae(crate::bench_vae::VaeArgs),
    /// `recommend`'s latency on a trained model: loading it, one session's top 10, the whole
    /// command.
    Recommend(crate::bench_recommend::RecommendArgs),
    /// Ingest + sessionize at 0.5, 5.5 and 50 million synthetic listens (one structure,
    /// scaled): seconds and peak memory per size, each in its own process.
    Scale(crate::bench_scale::ScaleArgs),
    /// Training steps of the fused model at catalogue sizes up to millions of tracks: dense
    /// beside lazy Adam, sampled (and full) softmax; step time and peak memory.
    Catalogue(crate::bench_catalogue::CatalogueArgs),
    /// (internal) one configuration of `bench catalogue` in this process; prints a JSON line.
    #[command(hide = true)]
    CatalogueWorker(crate::bench_catalogue::CatalogueWorkerArgs),
    /// (internal) one timed segue run in this process; prints a JSON line.
    #[command(hide = true)]
    SessionsWorker {
        #[arg(long)]
        listens: PathBuf,
        #[arg(long)]
        format: String,
        #[arg(long)]
        out: PathBuf,
    },
}

pub fn default_python() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".venvs/peers/bin/python")
}

pub fn bench_dir() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    home.join(".cache/segue/bench")
}

/// Peak resident memory of this process in bytes (Linux).
pub(crate) fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Threads on each side of a benchmark: the global `--threads` (a count or `auto`), else
/// `default`.
fn side_threads(threads: Option<&str>, default: usize) -> Result<usize> {
    match threads.map(str::trim) {
        None => Ok(default),
        Some("auto") => Ok(std::thread::available_parallelism().map_or(1, |n| n.get())),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("--threads {t:?}: give a positive count or `auto`"),
        },
    }
}

/// Runs one benchmark; `threads` is the global `--threads` (used where a benchmark says).
pub fn run(cmd: BenchCommand, threads: Option<&str>) -> Result<()> {
    match cmd {
        BenchCommand::SessionsWorker { listens, format, out } => worker(&listens, &format, &out),
        BenchCommand::Word2vec(args) => embedding(Embedding::Word2vec, args),
        BenchCommand::Lsa(args) => embedding(Embedding::Lsa, args),
        BenchCommand::Train(args) => crate::bench_train::run(args),
        BenchCommand::Lyrics(args) => crate::bench_lyrics::run(args, side_threads(threads, 2)?),
        BenchCommand::Vae(args) => crate::bench_vae::run(args),
        BenchCommand::Recommend(args) => crate::bench_recommend::run(args),
        BenchCommand::Catalogue(args) => crate::bench_catalogue::run(args),
        BenchCommand::Scale(args) => crate::bench_scale::run(args),
        BenchCommand::CatalogueWorker(args) => crate::bench_catalogue::worker(args),
        BenchCommand::Sessions { listens, builtin, repeat, python, peers } => {
            sessions(listens, builtin, repeat.max(1), &python, &peers)
        }
    }
}

fn embedding(which: Embedding, args: EmbeddingArgs) -> Result<()> {
    let EmbeddingArgs { listens, builtin, truth, python, peers } = args;
    let (listens, truth) = match (listens, builtin) {
        (_, true) => (builtin_tsv(&python, &peers)?, truth),
        (Some(l), false) => (l, truth),
        (None, false) => {
            let d = paper_log(&python, &peers)?;
            (d.join("listens.tsv"), truth.or(Some(d.join("truth.csv"))))
        }
    };
    crate::bench_embed::run(which, listens, truth, &python, &peers)
}

fn worker(listens: &Path, format: &str, out: &Path) -> Result<()> {
    let started = Instant::now();
    let (sources, base) = match format {
        "lastfm-1k" => {
            (vec![SourceSpec::new(Format::Lastfm1k, [listens.display().to_string()])], ".".into())
        }
        "builtin" => {
            let p = crate::pipeline::Pipeline::load(
                &crate::workspace_root().join("pipelines/default.toml"),
            )?;
            (p.dataset.sources.clone(), p.base_dir().to_path_buf())
        }
        other => bail!("unknown worker format {other}"),
    };
    let mut ingested = ingest(&sources, &base, &IngestOptions::default(), &NoProgress)?;
    finish_worker(&mut ingested, out, started)
}

fn finish_worker(
    ingested: &mut segue_sessions::Ingested,
    out: &Path,
    started: Instant,
) -> Result<()> {
    let t_read = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(out)?;
    // As the stages do: the events written, then sessionized (from the events in memory,
    // which are what the stage reads back from the file).
    ingested.write(out)?;
    let events = std::mem::take(&mut ingested.events);
    let mut s =
        segue_sessions::sessionize_owned(events, &ingested.keys, &SessionOptions::default())?;
    let t_sessionize = started.elapsed().as_secs_f64();
    s.write(out)?;
    let t_write_sessions = started.elapsed().as_secs_f64();
    eprintln!(
        "phases: read+normalise {t_read:.2} s, write events and sessionize {:.2} s, write sessions {:.2} s",
        t_sessionize - t_read,
        t_write_sessions - t_sessionize
    );
    let st = &s.stats;
    println!(
        "{}",
        serde_json::json!({
            "seconds": started.elapsed().as_secs_f64(), "peak_rss": peak_rss(),
            "users": st.users, "sessions": st.sessions, "unique_songs": st.unique_songs, "events": st.events,
            "mean_session_length": st.mean_session_length,
        })
    );
    Ok(())
}

pub(crate) fn last_json_line(stdout: &[u8]) -> Result<serde_json::Value> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .context("no JSON line in the output")?;
    Ok(serde_json::from_str(line)?)
}

/// The built-in data as the Last.fm 1K TSV the peer reads (its spotify_to_lastfm1k.py).
pub fn builtin_tsv(python: &Path, peers: &Path) -> Result<PathBuf> {
    let tsv = bench_dir().join("builtin-listens.tsv");
    std::fs::create_dir_all(bench_dir())?;
    let folders: Vec<PathBuf> = std::fs::read_dir(crate::workspace_root().join("data/listens"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    let status = Command::new(python)
        .arg(peers.join("spotify_to_lastfm1k.py"))
        .arg("--out")
        .arg(&tsv)
        .args(&folders)
        .status()?;
    if !status.success() {
        bail!("the peer's spotify_to_lastfm1k.py failed");
    }
    Ok(tsv)
}

/// The folder of the paper-size synthetic log (gen_synthetic.py, generated once).
pub fn paper_log(python: &Path, peers: &Path) -> Result<PathBuf> {
    let d = bench_dir().join("paper");
    if !d.join("listens.tsv").exists() {
        eprintln!("generating the paper-size log with the peers' gen_synthetic.py (once) ...");
        let status = Command::new(python)
            .arg(peers.join("gen_synthetic.py"))
            .args([
                "--users", "541", "--tracks", "414000", "--events", "5500000", "--seed", "0",
                "--out",
            ])
            .arg(&d)
            .status()?;
        if !status.success() {
            bail!("gen_synthetic.py failed");
        }
    }
    Ok(d)
}

fn report_run(side: &str, i: usize, r: &serde_json::Value) {
    let seconds = r["seconds"].as_f64().unwrap_or(0.0);
    let peak = r["peak_rss"].as_f64().unwrap_or(0.0) / 1e6;
    eprintln!("  {side} run {}: {seconds:.2} s, peak {peak:.0} MB", i + 1);
}

/// The median (the upper middle value of an even count).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn sessions(
    listens: Option<PathBuf>,
    builtin: bool,
    repeat: usize,
    python: &Path,
    peers: &Path,
) -> Result<()> {
    if !python.exists() {
        bail!(
            "the peers' Python {} does not exist; set it up as ../shared/peers/README.md says, or pass --python",
            python.display()
        );
    }
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let (peer_listens, worker_args): (PathBuf, Vec<String>) = if builtin {
        let tsv = builtin_tsv(python, peers)?;
        (tsv, vec!["--format".into(), "builtin".into(), "--listens".into(), "-".into()])
    } else {
        let file = match listens {
            Some(f) => f,
            None => paper_log(python, peers)?.join("listens.tsv"),
        };
        let args = vec![
            "--format".into(),
            "lastfm-1k".into(),
            "--listens".into(),
            file.display().to_string(),
        ];
        (file, args)
    };
    let size = std::fs::metadata(&peer_listens).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "bench sessions: {} ({:.0} MB), {repeat} run(s) per side",
        peer_listens.display(),
        size as f64 / 1e6
    );
    let exe = std::env::current_exe()?;
    let peer_wrapper = "import resource, runpy, sys, json, io, contextlib\n\
        sys.argv = sys.argv[1:]\n\
        try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n\
        finally:\n    print(json.dumps({'peak_rss': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}), flush=True)\n";
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for i in 0..repeat {
        let out = dir.join("segue-work");
        let _ = std::fs::remove_dir_all(&out);
        let t = Instant::now();
        let o = Command::new(&exe)
            .args(["bench", "sessions-worker", "--out"])
            .arg(&out)
            .args(&worker_args)
            .output()?;
        if !o.status.success() {
            bail!("segue worker failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let mut r = last_json_line(&o.stdout)?;
        r["process_seconds"] = serde_json::json!(t.elapsed().as_secs_f64());
        report_run("segue", i, &r);
        ours.push(r);

        let work = dir.join("peer-work");
        let _ = std::fs::remove_dir_all(&work);
        let t = Instant::now();
        let o = Command::new(python)
            .current_dir(peers)
            .env("PYTHONHASHSEED", "0")
            .args(["-c", peer_wrapper, "pipeline.py", "ingest", "--work"])
            .arg(&work)
            .arg("--listens")
            .arg(&peer_listens)
            .output()?;
        if !o.status.success() {
            bail!("peer failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let text = String::from_utf8_lossy(&o.stdout);
        let mut stage: serde_json::Value = text
            .lines()
            .find(|l| l.contains("\"stage\""))
            .map(serde_json::from_str)
            .transpose()?
            .context("peer printed no stage line")?;
        stage["peak_rss"] = last_json_line(&o.stdout)?["peak_rss"].clone();
        stage["process_seconds"] = serde_json::json!(t.elapsed().as_secs_f64());
        report_run("peer ", i, &stage);
        theirs.push(stage);
    }
    let med = |v: &[serde_json::Value], k: &str| {
        median(v.iter().map(|r| r[k].as_f64().unwrap_or(f64::NAN)).collect())
    };
    let (s_ours, s_theirs) = (med(&ours, "seconds"), med(&theirs, "seconds"));
    let (m_ours, m_theirs) = (med(&ours, "peak_rss"), med(&theirs, "peak_rss"));
    let (p_ours, p_theirs) = (med(&ours, "process_seconds"), med(&theirs, "process_seconds"));
    println!(
        "## bench sessions: ingest + sessionize, {} ({:.0} MB)\n",
        peer_listens.display(),
        size as f64 / 1e6
    );
    println!("| | segue | pandas peer | ratio |\n|---|---:|---:|---:|");
    println!(
        "| stage wall time (s, median of {repeat}) | {s_ours:.2} | {s_theirs:.2} | {:.1}x faster |",
        s_theirs / s_ours
    );
    println!(
        "| process wall time incl. start-up (s) | {p_ours:.2} | {p_theirs:.2} | {:.1}x faster |",
        p_theirs / p_ours
    );
    println!(
        "| peak memory (MB) | {:.0} | {:.0} | {:.1}x less |",
        m_ours / 1e6,
        m_theirs / 1e6,
        m_theirs / m_ours
    );
    let (a, b) = (&ours[0], &theirs[0]);
    println!("\n| Table I | segue | peer | equal |\n|---|---:|---:|---|");
    for k in ["users", "sessions", "unique_songs", "events", "mean_session_length"] {
        let (x, y) = (a[k].as_f64().unwrap_or(f64::NAN), b[k].as_f64().unwrap_or(f64::NAN));
        println!("| {k} | {x} | {y} | {} |", if (x - y).abs() < 1e-3 { "yes" } else { "NO" });
    }
    Ok(())
}
