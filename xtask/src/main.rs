//! `cargo xtask`: segue's orchestrator. Runs pipeline stages with an artifact cache, reproduces
//! the paper's tables, reports what is fresh or stale, and benchmarks against the Python peers.

mod bench;
mod bench_catalogue;
mod bench_embed;
mod bench_lyrics;
mod bench_recommend;
mod bench_scale;
mod bench_train;
mod bench_vae;
mod progress;
mod recommend;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Parser, Subcommand};
// The pipeline, its stages, cache and report live in the segue-pipeline library; xtask is
// its command line and the benchmarks.
pub(crate) use segue_pipeline::pipeline;
use segue_pipeline::{Pipeline, Runner, check_stage, closure, ensure_synth};

use crate::progress::Bars;

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

#[derive(Parser)]
#[command(name = "cargo xtask", about = "segue's pipeline orchestrator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Threads of every stage: a count or `auto` (every core). Default: the pipeline's
    /// `pipeline.threads`, unless SEGUE_THREADS says otherwise.
    #[arg(long, global = true, value_name = "N|auto")]
    threads: Option<String>,
}

/// Loads a pipeline with `--set` overrides, then the thread count of `--threads` or
/// SEGUE_THREADS where one is given.
fn load(pipeline: &Path, set: &[String], threads: Option<&str>) -> Result<Pipeline> {
    let from_env = std::env::var("SEGUE_THREADS").ok();
    let mut sets = set.to_vec();
    if let Some(t) = threads.or(from_env.as_deref()).map(str::trim).filter(|t| !t.is_empty()) {
        if t != "auto" && t.parse::<usize>().map_or(true, |n| n == 0) {
            anyhow::bail!("--threads / SEGUE_THREADS = {t:?}: give a positive count or `auto`");
        }
        sets.push(format!("pipeline.threads={t}"));
    }
    Pipeline::load(pipeline)?.with_sets(&sets)
}

#[derive(Subcommand)]
enum Command {
    /// Run one stage and whatever it needs (fresh artifacts are reused).
    Run {
        /// The stage (the list below; `status` shows the same).
        stage: String,
        #[arg(long, default_value_os_t = default_pipeline())]
        pipeline: PathBuf,
        /// Recompute this stage even if its artifact is fresh.
        #[arg(long)]
        force: bool,
        /// Override a pipeline key: `--set model.lr=0.003` (TOML value; a bare word is a
        /// string). Repeatable. `--set pipeline.name=X` keeps the run's cache apart.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Run every stage, then write the paper's tables and the report.
    Reproduce {
        #[arg(long, default_value_os_t = default_pipeline())]
        pipeline: PathBuf,
        /// Recompute every stage, or only the one named.
        #[arg(long, num_args = 0..=1, default_missing_value = "all", value_name = "STAGE")]
        force: Option<String>,
        /// Override a pipeline key: `--set model.lr=0.003` (TOML value; a bare word is a
        /// string). Repeatable. `--set pipeline.name=X` keeps the run's cache apart.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Choose settings on the validation share: train (or fit) each method at every point of a
    /// grid and tabulate its validation HR@10 (report/tuning.md). Test sessions are not read.
    Tune {
        #[arg(long, default_value_os_t = default_pipeline())]
        pipeline: PathBuf,
        /// Methods to tune, comma-separated: model variants (ann, annw, sasrec, ...) and rules
        /// (sknn, vsknn, sr, ...).
        #[arg(long, value_delimiter = ',', required = true)]
        methods: Vec<String>,
        /// An axis of the grid: `section.key=value,value,...` (TOML values; quote strings).
        /// Several axes give every combination.
        #[arg(long)]
        grid: Vec<String>,
    },
    /// Read listening files as ingest would, without a pipeline: which reader each file gets
    /// and why, what was kept and skipped, and the first plays.
    Inspect {
        /// Files, folders or globs.
        #[arg(required = true)]
        paths: Vec<String>,
        /// The format (default auto: each file sniffed).
        #[arg(long, default_value = "auto", value_parser = parse_format)]
        format: segue_sessions::Format,
        /// Stop at the first malformed record.
        #[arg(long)]
        strict: bool,
        /// Plays shown.
        #[arg(long, default_value_t = 5)]
        show: usize,
    },
    /// The next tracks for a session, from a trained model in the cache: tracks as
    /// "artist - title" (arguments, or a file with one per line), or a user's latest plays.
    Recommend {
        #[arg(long, default_value_os_t = default_pipeline())]
        pipeline: PathBuf,
        /// The trained variant (ann, annw-acoustic, sasrec, ...); default: the paper's fusion
        /// model, or the first of its stand-ins this dataset allows (as Table IV chooses).
        #[arg(long, value_parser = parse_variant)]
        variant: Option<segue_model::Variant>,
        /// Which seed's model (default: the pipeline's first model seed).
        #[arg(long)]
        seed: Option<u64>,
        /// Tracks of the session, oldest first, each "artist - title".
        tracks: Vec<String>,
        /// A file of "artist - title" lines, oldest first (`-`: standard input).
        #[arg(long)]
        file: Option<PathBuf>,
        /// Take the session from the data: this user's latest session ...
        #[arg(long, conflicts_with_all = ["tracks", "file"])]
        user: Option<String>,
        /// ... its last N plays.
        #[arg(long, default_value_t = 20, requires = "user")]
        last: usize,
        /// How many tracks to recommend.
        #[arg(long, default_value_t = 10)]
        k: usize,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
        /// Override a pipeline key: `--set model.lr=0.003` (TOML value; a bare word is a
        /// string). Repeatable. `--set pipeline.name=X` keeps the run's cache apart.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Show each stage as fresh, stale (and why) or missing.
    Status {
        #[arg(long, default_value_os_t = default_pipeline())]
        pipeline: PathBuf,
        /// Override a pipeline key: `--set model.lr=0.003` (TOML value; a bare word is a
        /// string). Repeatable. `--set pipeline.name=X` keeps the run's cache apart.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Write a synthetic dataset with planted structure (segue-synth).
    Synth {
        /// tiny (unit tests), small (~100,000 listens), paper (~5.5 million) or large (~50 million).
        #[arg(long)]
        preset: segue_synth::Preset,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Benchmarks beside the Python peers (../shared/peers).
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
}

fn parse_variant(text: &str) -> std::result::Result<segue_model::Variant, String> {
    segue_model::Variant::from_id(text).map_err(|e| e.to_string())
}

fn parse_format(text: &str) -> std::result::Result<segue_sessions::Format, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| {
        format!(
            "unknown format `{text}`; the formats are: {}",
            segue_sessions::Format::ALL.map(|f| f.name()).join(", ")
        )
    })
}

/// `inspect`: one source over `paths`, read and summarised.
fn inspect(
    paths: Vec<String>,
    format: segue_sessions::Format,
    strict: bool,
    show: usize,
) -> Result<()> {
    let source = segue_sessions::SourceSpec::new(format, paths);
    let options = segue_sessions::IngestOptions { strict, ..Default::default() };
    let bars = Bars::default();
    let out = segue_sessions::ingest(&[source], Path::new("."), &options, &bars)?;
    for line in segue_pipeline::reader_lines(&out.choices) {
        println!("{line}");
    }
    for w in &out.warnings {
        println!("warning: {w}");
    }
    for n in &out.notes {
        println!("note: {n}");
    }
    segue_pipeline::print_skips(&out.skips, out.records, &bars);
    use segue_sessions::parquet::str_column;
    let events = &out.events;
    let (artists, titles) = (str_column(&out.keys, "artist")?, str_column(&out.keys, "title")?);
    let users = (1..events.len()).filter(|&i| events.user(i) != events.user(i - 1)).count()
        + usize::from(!events.is_empty());
    println!("{} plays of {users} users; the first {}:", events.len(), show.min(events.len()));
    for i in 0..show.min(events.len()) {
        let k = events.key(i) as usize;
        println!(
            "  {}  {}  {} - {}",
            events.user_name(i),
            segue_core::format_utc(events.ts(i)),
            artists[k],
            titles[k]
        );
    }
    Ok(())
}

/// `./segue.toml` where there is one; else, inside the source checkout xtask was built from,
/// its `pipelines/default.toml` (the built-in data); else `./segue.toml`, whose absence the
/// loader reports.
fn default_pipeline() -> PathBuf {
    let local = PathBuf::from("segue.toml");
    let checkout = workspace_root().join("pipelines").join("default.toml");
    if local.exists() || !checkout.exists() { local } else { checkout }
}

fn main() {
    keep_freed_memory();
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// glibc hands every freed block above 128 KiB back to the system and maps the next one
/// afresh; candle's graphs (a new tensor per operation, megabytes each) then spend most of a
/// SASRec or GRU4Rec step in page faults and TLB shootdowns (profiled: 400 -> 170 ms per SASRec
/// step with these settings). Blocks up to 64 MiB are reused from the heap instead, and up to
/// 256 MiB of free heap is kept; the catalogue-sized tables above that stay mapped.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator thresholds; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn real_main() -> Result<()> {
    use clap::{CommandFactory, FromArgMatches};
    // `run --help` lists the stages from the registry, so help and `status` cannot drift.
    let command = Cli::command().mut_subcommand("run", |c| {
        c.after_long_help(segue_pipeline::registry_help())
            .after_help(segue_pipeline::registry_help())
    });
    let cli = Cli::from_arg_matches(&command.get_matches())?;
    let threads = cli.threads.as_deref();
    match cli.command {
        Command::Run { stage, pipeline, force, set } => {
            check_stage(&stage)?;
            let p = load(&pipeline, &set, threads)?;
            let bars = Bars::default();
            ensure_synth(&p, &bars)?;
            let mut runner = Runner::new(&p, &bars);
            for s in closure(&stage) {
                runner.run(s, force && s == stage)?;
            }
            if closure(&stage).contains(&"sessionize") {
                // Table I, whenever the run reached the sessions.
                let md = segue_pipeline::table1(
                    &p.pipeline.name,
                    &runner.dir("ingest")?,
                    &runner.dir("sessionize")?,
                    &p.cache_dir().join("report"),
                )?;
                print!("{md}");
            }
            for instance in runner.instances(&stage) {
                let shown = runner.shown(&instance);
                eprintln!("artifacts of {shown}: {}", runner.dir(&instance)?.display());
            }
        }
        Command::Reproduce { pipeline, force, set } => {
            if let Some(f) = force.as_deref().filter(|f| *f != "all") {
                check_stage(f)?;
            }
            let p = load(&pipeline, &set, threads)?;
            let bars = Bars::default();
            ensure_synth(&p, &bars)?;
            let done = segue_pipeline::reproduce(&p, force.as_deref(), &bars)?;
            println!("{}", done.tables);
            println!("{}", done.timing);
        }
        Command::Status { pipeline, set } => {
            for line in segue_pipeline::status(&load(&pipeline, &set, threads)?)? {
                println!("{line}");
            }
        }
        Command::Inspect { paths, format, strict, show } => inspect(paths, format, strict, show)?,
        Command::Recommend { pipeline, variant, seed, tracks, file, user, last, k, json, set } => {
            let p = load(&pipeline, &set, threads)?;
            let source = match user {
                Some(user) => segue_pipeline::SessionSource::User { user, last },
                None => {
                    let lines = segue_pipeline::read_lines(&tracks, file.as_deref())?;
                    if lines.is_empty() {
                        anyhow::bail!(
                            "no session given: name tracks (\"artist - title\"), --file, or --user"
                        );
                    }
                    segue_pipeline::SessionSource::Lines(lines)
                }
            };
            recommend::run(&p, variant, seed, source, k, json)?;
        }
        Command::Tune { pipeline, methods, grid } => {
            let p = load(&pipeline, &[], threads)?;
            let bars = Bars::default();
            ensure_synth(&p, &bars)?;
            let axes =
                grid.iter().map(|g| segue_pipeline::Axis::parse(g)).collect::<Result<Vec<_>>>()?;
            let (_, table) = segue_pipeline::tune(&p, &methods, &axes, &bars)?;
            println!("{table}");
        }
        Command::Bench { what } => bench::run(what, threads)?,
        Command::Synth { preset, seed, out } => {
            let cfg = segue_synth::SynthConfig::preset(preset, seed);
            segue_pipeline::synth(&cfg, &out, &Bars::default())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    /// Every subcommand that needs no argument parses into its settings, with and without the
    /// global `--threads`: a subcommand's own option of the same name but another type made
    /// clap panic at run time (`bench lyrics` did).
    #[test]
    fn every_subcommand_parses_with_the_global_threads() {
        fn leaves(c: &clap::Command, path: Vec<String>, out: &mut Vec<Vec<String>>) {
            if c.get_subcommands().next().is_none() {
                out.push(path);
                return;
            }
            for sub in c.get_subcommands() {
                let mut p = path.clone();
                p.push(sub.get_name().to_string());
                leaves(sub, p, out);
            }
        }
        let mut commands = Vec::new();
        leaves(&Cli::command(), vec!["cargo-xtask".into()], &mut commands);
        let mut parsed = 0;
        for args in commands {
            for threads in [None, Some("3")] {
                let mut line = args.clone();
                line.extend(
                    threads.map(|t| ["--threads".to_string(), t.to_string()]).into_iter().flatten(),
                );
                // Subcommands with required arguments are refused by clap, not parsed.
                let Ok(matches) = Cli::command().try_get_matches_from(&line) else { continue };
                let cli = Cli::from_arg_matches(&matches).expect("parsed matches convert");
                assert_eq!(cli.threads.as_deref(), threads, "{line:?}");
                parsed += 1;
            }
        }
        assert!(parsed >= 20, "only {parsed} command lines parsed");
    }
}
