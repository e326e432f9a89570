//! `cargo xtask`: segue's orchestrator. Runs pipeline stages with an artifact cache, reproduces
//! the paper's tables, reports what is fresh or stale, and benchmarks against the Python peers.

mod baseline_stages;
mod bench;
mod bench_embed;
mod bench_lyrics;
mod bench_recommend;
mod bench_train;
mod bench_vae;
// The pipeline schema and the artifact cache live in the segue-pipeline library.
pub(crate) use segue_pipeline::{cache, pipeline};
mod content_stages;
mod html_report;
mod model_stages;
mod progress;
mod recommend;
mod report;
mod stages;
mod tune;
mod user_study;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use segue_sessions::Split;

use crate::cache::Check;
use crate::pipeline::Pipeline;
use crate::stages::{Runner, STAGES, check_stage, closure, split_instance};

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask has a parent").to_path_buf()
}

#[derive(Parser)]
#[command(name = "cargo xtask", about = "segue's pipeline orchestrator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        /// tiny (unit tests), small (~100,000 listens) or paper (~5.5 million).
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
    let out =
        segue_sessions::ingest(&[source], Path::new("."), &options, &progress::Bars::default())?;
    for line in stages::reader_lines(&out.choices) {
        println!("{line}");
    }
    for w in &out.warnings {
        println!("warning: {w}");
    }
    for n in &out.notes {
        println!("note: {n}");
    }
    stages::print_skips(&out.skips, out.records);
    use segue_sessions::parquet::{i64_column, str_column, u32_column};
    let users = str_column(&out.events, "user")?;
    let ts = i64_column(&out.events, "ts")?;
    let keys = u32_column(&out.events, "track_key")?;
    let (artists, titles) = (str_column(&out.keys, "artist")?, str_column(&out.keys, "title")?);
    println!(
        "{} plays of {} users; the first {}:",
        users.len(),
        {
            let mut u = users.clone();
            u.dedup();
            u.len()
        },
        show.min(users.len())
    );
    for i in 0..show.min(users.len()) {
        let k = keys[i] as usize;
        println!(
            "  {}  {}  {} - {}",
            users[i],
            segue_core::format_utc(ts[i]),
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
        c.after_long_help(stages::registry_help()).after_help(stages::registry_help())
    });
    let cli = Cli::from_arg_matches(&command.get_matches())?;
    match cli.command {
        Command::Run { stage, pipeline, force, set } => {
            check_stage(&stage)?;
            let p = Pipeline::load(&pipeline)?.with_sets(&set)?;
            ensure_synth(&p)?;
            let mut runner = Runner::new(&p);
            for s in closure(&stage) {
                runner.run(s, force && s == stage)?;
            }
            if closure(&stage).contains(&"sessionize") {
                // Table I, whenever the run reached the sessions.
                let md = report::table1(
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
            let p = Pipeline::load(&pipeline)?.with_sets(&set)?;
            ensure_synth(&p)?;
            reproduce(&p, force.as_deref())?;
        }
        Command::Status { pipeline, set } => status(&Pipeline::load(&pipeline)?.with_sets(&set)?)?,
        Command::Inspect { paths, format, strict, show } => inspect(paths, format, strict, show)?,
        Command::Recommend { pipeline, variant, seed, tracks, file, user, last, k, json, set } => {
            let p = Pipeline::load(&pipeline)?.with_sets(&set)?;
            let source = match user {
                Some(user) => recommend::SessionSource::User { user, last },
                None => {
                    let lines = recommend::read_lines(&tracks, file.as_deref())?;
                    if lines.is_empty() {
                        anyhow::bail!(
                            "no session given: name tracks (\"artist - title\"), --file, or --user"
                        );
                    }
                    recommend::SessionSource::Lines(lines)
                }
            };
            recommend::run(&p, variant, seed, source, k, json)?;
        }
        Command::Tune { pipeline, methods, grid } => {
            let p = Pipeline::load(&pipeline)?;
            ensure_synth(&p)?;
            let axes = grid.iter().map(|g| tune::Axis::parse(g)).collect::<Result<Vec<_>>>()?;
            tune::tune(&p, &methods, &axes)?;
        }
        Command::Bench { what } => bench::run(what)?,
        Command::Synth { preset, seed, out } => {
            synth(&segue_synth::SynthConfig::preset(preset, seed), &out)?;
        }
    }
    Ok(())
}

/// Generates and writes a synthetic dataset, reporting its size and time.
pub fn synth(cfg: &segue_synth::SynthConfig, out: &Path) -> Result<()> {
    let t = Instant::now();
    let data = segue_synth::generate(cfg);
    let generated = t.elapsed().as_secs_f64();
    let summary = data.write(out)?;
    eprintln!(
        "synth: {} listens of {} users over {} tracks ({} planted sessions) in {}: generated in {generated:.1} s, written in {:.1} s",
        summary.listens,
        cfg.users,
        cfg.tracks,
        data.planted_sessions,
        out.display(),
        t.elapsed().as_secs_f64() - generated
    );
    Ok(())
}

/// Makes sure a pipeline's synthetic dataset exists with its configuration.
pub fn ensure_synth(p: &Pipeline) -> Result<()> {
    let Some(spec) = &p.dataset.synth else { return Ok(()) };
    let out = segue_sessions::source::clean_path(&p.base_dir().join(&spec.out));
    let cfg = segue_synth::SynthConfig::preset(spec.preset, spec.seed);
    let meta = std::fs::read_to_string(out.join("synth.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
    if meta.is_some_and(|m| m["config"] == serde_json::to_value(&cfg).unwrap_or_default()) {
        return Ok(());
    }
    eprintln!(
        "synth: generating the {:?} preset (seed {}) into {}",
        spec.preset,
        spec.seed,
        out.display()
    );
    synth(&cfg, &out)
}

fn reproduce(p: &Pipeline, force: Option<&str>) -> Result<()> {
    let started = Instant::now();
    eprintln!(
        "reproduce: pipeline {} ({}), cache {}",
        p.pipeline.name,
        p.path.display(),
        p.cache_dir().display()
    );
    let mut runner = Runner::new(p);
    let mut times = Vec::new();
    let mut skipped: BTreeMap<segue_model::Variant, String> = BTreeMap::new();
    let mut study: Option<Result<segue_model::Variant, String>> = None;
    for stage in STAGES {
        if stages::is_study(stage) {
            let dir_of = |s: &str| runner.dir(s);
            let outcome = match &study {
                Some(o) => o.clone(),
                None => user_study::study_variant(&dir_of)?,
            };
            study = Some(outcome.clone());
            if let Err(why) = outcome {
                if *stage == "train-user-study" {
                    eprintln!("{stage:>31}: not applicable: {why}");
                }
                continue;
            }
        }
        if let Some((is_train, v)) = model_stages::variant_of(stage) {
            if is_train {
                let why = model_stages::not_applicable(v, &|s: &str| runner.dir(s))?;
                if let Some(why) = why {
                    eprintln!("{stage:>31}: not applicable: {why}");
                    skipped.insert(v, why);
                    continue;
                }
            } else if skipped.contains_key(&v) {
                continue;
            }
        }
        let forced = matches!(force, Some("all")) || force == Some(*stage);
        let t = Instant::now();
        let built: f64 = runner.run(stage, forced)?.iter().map(|m| m.seconds).sum();
        times.push((stage, t.elapsed().as_secs_f64(), built));
    }
    let report_dir = p.cache_dir().join("report");
    let mut md = report::table1(
        &p.pipeline.name,
        &runner.dir("ingest")?,
        &runner.dir("sessionize")?,
        &report_dir,
    )?;
    let mut results = BTreeMap::new();
    for v in segue_model::Variant::ALL {
        let stage = format!("evaluate-{}", v.id());
        let outcome = if let Some(why) = skipped.get(&v) {
            report::Outcome::NotApplicable(why.clone())
        } else if STAGES.contains(&stage.as_str()) {
            let mut runs = Vec::new();
            for instance in runner.instances(&stage) {
                runs.push(report::Run::load(&runner.dir(&instance)?, split_instance(&instance).1)?);
            }
            report::Outcome::Runs(runs)
        } else {
            let missing = v.modalities().iter().map(|m| m.name()).find(|m| !STAGES.contains(m));
            report::Outcome::NotApplicable(format!(
                "segue has no `{}` stage yet",
                missing.unwrap_or("?")
            ))
        };
        results.insert(report::Method::Model(v), outcome);
    }
    for r in segue_baselines::Rule::ALL {
        let stage = format!("evaluate-{}", r.id());
        let run = report::Run::load(&runner.dir(&stage)?, None)?;
        results.insert(report::Method::Rule(r), report::Outcome::Runs(vec![run]));
    }
    md.push('\n');
    let test = report::TestSessions::read(&runner.dir("sessionize")?)?;
    md.push_str(&report::model_tables(p, &results, &test, &report_dir)?);
    let table4 = match study {
        Some(Ok(v)) => {
            let mut evaluations = Vec::new();
            for instance in runner.instances("evaluate-user-study") {
                evaluations.push((runner.dir(&instance)?, split_instance(&instance).1));
            }
            user_study::Study::load(&runner.dir("user-groups")?, v, &evaluations)?
        }
        Some(Err(why)) => user_study::Study::NotApplicable(why),
        None => user_study::Study::NotApplicable("the study did not run".into()),
    };
    md.push_str(&user_study::table4(&table4, &report_dir)?);
    let mut timing = String::from(
        "## Stage times\n\n| stage | this run (s) | when built (s) |\n|---|---:|---:|\n",
    );
    for (stage, now, built) in &times {
        timing.push_str(&format!("| {stage} | {now:.2} | {built:.2} |\n"));
    }
    if let Ok(tuning) = std::fs::read_to_string(report_dir.join("tuning.md")) {
        md.push('\n');
        md.push_str(&tuning);
    }
    let report = format!("# segue report: {}\n\n{md}\n{timing}", p.pipeline.name);
    segue_core::fs::write_bytes_atomic(&report_dir.join("report.md"), report.as_bytes())?;
    let sessions = segue_sessions::read_splits(
        &runner.dir("sessionize")?.join("sessions.parquet"),
        &[Split::Train, Split::Valid, Split::Test],
    )?;
    let page = html_report::write(
        &report_dir,
        &html_report::Inputs {
            pipeline: &p.pipeline.name,
            markdown: &format!("{md}\n{timing}"),
            results: &results,
            histories: training_histories(&runner, &results)?,
            session_lengths: sessions.offsets.windows(2).map(|w| w[1] - w[0]).collect(),
            user_names: sessions.user_names,
            study: &table4,
        },
    )?;
    println!("{md}");
    println!("{timing}");
    eprintln!(
        "reproduce: done in {:.1} s; report in {} and {}",
        started.elapsed().as_secs_f64(),
        report_dir.join("report.md").display(),
        page.display()
    );
    Ok(())
}

/// Each trained model's epochs (train.jsonl), one list per seed.
fn training_histories(
    runner: &Runner,
    results: &BTreeMap<report::Method, report::Outcome>,
) -> Result<BTreeMap<report::Method, Vec<Vec<segue_model::Epoch>>>> {
    let mut out = BTreeMap::new();
    for (method, outcome) in results {
        let (report::Method::Model(v), report::Outcome::Runs(_)) = (method, outcome) else {
            continue;
        };
        let mut seeds = Vec::new();
        for instance in runner.instances(&format!("train-{}", v.id())) {
            let file = runner.dir(&instance)?.join("train.jsonl");
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let epochs = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<std::result::Result<Vec<segue_model::Epoch>, _>>()
                .with_context(|| format!("parsing {}", file.display()))?;
            seeds.push(epochs);
        }
        out.insert(*method, seeds);
    }
    Ok(out)
}

fn status(p: &Pipeline) -> Result<()> {
    let mut runner = Runner::new(p);
    println!(
        "pipeline {} ({}), cache {}",
        p.pipeline.name,
        p.path.display(),
        p.cache_dir().display()
    );
    if let Some(spec) = &p.dataset.synth
        && !p.base_dir().join(&spec.out).join("synth.json").exists()
    {
        println!(
            "     dataset: not generated yet (segue-synth {:?} preset, seed {}); `run` or `reproduce` generates it",
            spec.preset, spec.seed
        );
    }
    let mut upstream_ok = true;
    for stage in STAGES {
        for instance in runner.instances(stage) {
            let shown = runner.shown(&instance);
            let recipe = match runner.recipe(&instance) {
                Ok(r) => r,
                Err(e) => {
                    println!("{shown:>31}: missing: its inputs are unavailable ({e:#})");
                    return Ok(());
                }
            };
            let key = recipe.key();
            runner.note_key(&instance, &key);
            let line = match runner.cache.check(stage, &key) {
                Check::Fresh(m) if upstream_ok => {
                    format!("fresh (key {key}, built in {:.1} s)", m.seconds)
                }
                Check::Fresh(_) => format!("fresh (key {key})"),
                Check::Corrupt(why) => {
                    upstream_ok = false;
                    format!("stale: artifact damaged ({why})")
                }
                Check::Missing => {
                    upstream_ok = false;
                    let partial = runner.cache.stage_dir(stage, &format!("{key}.partial"));
                    let checkpointed = segue_model::checkpoint_epochs(&partial);
                    match runner.cache.last_recipe(recipe.last_name()) {
                        _ if checkpointed.is_some() => {
                            let done = checkpointed.unwrap_or(0);
                            format!(
                                "partial: interrupted after epoch {done}, resumable from epoch {} (`run {stage}` continues it)",
                                done + 1
                            )
                        }
                        Some(old) => {
                            format!("stale: {} (key {key})", recipe.differences(&old).join("; "))
                        }
                        None => format!("missing: never run (key {key})"),
                    }
                }
            };
            println!("{shown:>31}: {line}");
        }
    }
    Ok(())
}
