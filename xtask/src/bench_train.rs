//! `bench train`: the models beside the PyTorch peer (`pipeline.py train` and `eval`) on the
//! same sessions, the paper's protocol (no validation split, fixed epochs), 2 threads each:
//! HitRatio@10..50 averaged over seeds, and training examples per second.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use segue_model::Variant;

use crate::bench_embed::peer_stage;
use crate::pipeline::Pipeline;
use segue_pipeline::{Runner, closure};

/// Settings of `bench train`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Use the small synthetic preset (pipelines/synth-small.toml) instead of the built-in data.
    #[arg(long)]
    pub small: bool,
    /// Variants to compare (the peer has gru4rec, ann, ann-lsa, annw, annw-acoustic, ...).
    #[arg(long, value_delimiter = ',', default_value = "ann,annw")]
    pub variants: Vec<String>,
    /// Seeds per side; HitRatio is their mean.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Epochs (fixed: no early stopping on either side).
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    #[arg(long, default_value_os_t = crate::bench::default_python())]
    pub python: PathBuf,
    #[arg(long, default_value_os_t = crate::workspace_root().join("../shared/peers"))]
    pub peers: PathBuf,
}

#[derive(Default)]
struct Side {
    hr: Vec<Vec<f64>>,
    examples_per_second: Vec<f64>,
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

pub fn run(args: TrainArgs) -> Result<()> {
    let variants: Vec<Variant> =
        args.variants.iter().map(|v| Variant::from_id(v)).collect::<segue_core::Result<_>>()?;
    let root = crate::workspace_root();
    let (pipeline_file, listens, tracks_csv, lyrics_csv) = if args.small {
        let data = root.join(".segue/synth-data/small-0");
        (
            root.join("pipelines/synth-small.toml"),
            data.join("listens.tsv"),
            Some(data.join("audio_features.csv")),
            Some(data.join("lyrics.csv")),
        )
    } else {
        (
            root.join("pipelines/default.toml"),
            crate::bench::builtin_tsv(&args.python, &args.peers)?,
            None,
            None,
        )
    };
    let mut p = Pipeline::load(&pipeline_file)?;
    segue_pipeline::ensure_synth(&p, &crate::progress::Bars::default())?;
    // The paper's protocol, as the peer runs it: no validation split, fixed epochs.
    p.sessionize.validation_share = 0.0;
    p.model.epochs = args.epochs;
    p.model.patience = 0;
    // One model per `--seeds` iteration below (the pipeline's own seed list would train more).
    p.model.seeds = None;
    // The paper's model, as the peer builds it: none of segue's options beyond the paper.
    p.model.repeat = false;
    p.model.pretrained_scale = segue_model::PretrainedScale::None;
    p.pipeline.name = format!("{}-bench-train", p.pipeline.name);
    p.pipeline.cache_dir = Some(crate::bench::bench_dir().join("train-cache"));

    // Before anything runs: the peer reads audio features and lyrics from the small preset's
    // CSV files only (the built-in data has no lyrics, and its audio features have no
    // artist_name/track_name columns).
    let uses = |m: segue_model::Modality| variants.iter().any(|v| v.modalities().contains(&m));
    if !args.small && (uses(segue_model::Modality::Acoustic) || uses(segue_model::Modality::Lyrics))
    {
        bail!(
            "on the built-in data the peer has no acoustic or lyric inputs: compare ann, ann-lsa, annw or gru4rec there, or use --small"
        );
    }

    let work = crate::bench::bench_dir()
        .join(format!("train-peer-{}", if args.small { "small" } else { "builtin" }));
    let inputs = PeerInputs { listens: &listens, tracks_csv: &tracks_csv, lyrics_csv: &lyrics_csv };
    inputs.prepare(&args, &p, &variants, &work)?;
    let mut peer: BTreeMap<Variant, Side> = BTreeMap::new();
    let mut ours: BTreeMap<Variant, Side> = BTreeMap::new();
    for &v in &variants {
        for seed in 0..args.seeds {
            let (hr, eps, predictions) = peer_seed(&args, &work, v, seed)?;
            eprintln!("peer  {} seed {seed}: HR@10 {:.2}, {eps:.0} examples/s", v.id(), hr[0]);
            let side = peer.entry(v).or_default();
            side.examples_per_second.push(eps);
            side.hr.push(hr);
            p.model.seed = seed;
            let (hr, eps, ranked) = segue_seed(&p, v)?;
            eprintln!("segue {} seed {seed}: HR@10 {:.2}, {eps:.0} examples/s", v.id(), hr[0]);
            let side = ours.entry(v).or_default();
            side.examples_per_second.push(eps);
            side.hr.push(hr);
            if ranked != predictions {
                bail!(
                    "segue ranks {ranked} test predictions, the peer {predictions}: not the same protocol"
                );
            }
        }
    }
    print_table(&args, &variants, &ours, &peer);
    Ok(())
}

/// One seed of the peer: HR@10..50 (%), examples per second, test predictions ranked.
fn peer_seed(
    args: &TrainArgs,
    work: &std::path::Path,
    v: Variant,
    seed: u64,
) -> Result<(Vec<f64>, f64, u64)> {
    let (py, peers) = (&args.python, &args.peers);
    let (epochs, s) = (args.epochs.to_string(), seed.to_string());
    let train = ["train", "--variant", v.id(), "--epochs", &epochs, "--seed", &s];
    let t = peer_stage(py, peers, work, &[&train[..], &["--threads", "2"]].concat())?;
    let e = peer_stage(py, peers, work, &["eval", "--variant", v.id(), "--threads", "2"])?;
    let hr = segue_eval::PAPER_KS
        .iter()
        .map(|k| e[format!("hr@{k}")].as_f64().unwrap_or(f64::NAN))
        .collect();
    let eps = t["examples_per_second"].as_f64().unwrap_or(0.0);
    Ok((hr, eps, e["predictions"].as_u64().unwrap_or(0)))
}

/// One seed of segue (the pipeline's `model.seed`): HR@10..50 (%), examples per second, test
/// predictions ranked.
fn segue_seed(p: &Pipeline, v: Variant) -> Result<(Vec<f64>, f64, u64)> {
    let bars = crate::progress::Bars::default();
    let mut runner = Runner::new(p, &bars);
    let target = format!("evaluate-{}", v.id());
    for stage in closure(&target) {
        runner.run(stage, false)?;
    }
    // Model stages run one instance per seed (`train-ID/seed-N`): this pipeline has one.
    let instance = |stage: String| runner.instances(&stage).into_iter().next().unwrap_or(stage);
    let train: segue_pipeline::TrainReport = segue_pipeline::load_json(
        &runner.dir(&instance(format!("train-{}", v.id())))?.join(segue_pipeline::TRAIN_REPORT),
    )?;
    let metrics: segue_eval::Report =
        segue_pipeline::load_json(&runner.dir(&instance(target))?.join("metrics.json"))?;
    let hr = metrics.all.hit.iter().map(|h| 100.0 * h).collect();
    let eps = train.examples_per_second;
    Ok((hr, eps, metrics.all.count))
}

/// The side-by-side table: each variant's mean HR@k and examples/s per side, their
/// difference and speed ratio.
fn print_table(
    args: &TrainArgs,
    variants: &[Variant],
    ours: &BTreeMap<Variant, Side>,
    peer: &BTreeMap<Variant, Side>,
) {
    println!(
        "\n## Training beside the PyTorch peer ({}, {} epochs, {} seeds, 2 threads, no validation split)\n",
        if args.small { "small synthetic preset" } else { "built-in data" },
        args.epochs,
        args.seeds
    );
    println!("| variant | side | HR@10 | HR@20 | HR@30 | HR@40 | HR@50 | examples/s |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for v in variants {
        for (name, side) in [("segue", &ours[v]), ("peer", &peer[v])] {
            let hr: Vec<String> = (0..segue_eval::PAPER_KS.len())
                .map(|k| format!("{:.2}", mean(&side.hr.iter().map(|h| h[k]).collect::<Vec<_>>())))
                .collect();
            println!(
                "| {} | {name} | {} | {:.0} |",
                v.paper_name(),
                hr.join(" | "),
                mean(&side.examples_per_second)
            );
        }
        let diff: Vec<String> = (0..segue_eval::PAPER_KS.len())
            .map(|k| {
                let m = |s: &Side| mean(&s.hr.iter().map(|h| h[k]).collect::<Vec<_>>());
                format!("{:+.2}", m(&ours[v]) - m(&peer[v]))
            })
            .collect();
        println!(
            "| {} | difference / ratio | {} | {:.2}x |",
            v.paper_name(),
            diff.join(" | "),
            mean(&ours[v].examples_per_second) / mean(&peer[v].examples_per_second)
        );
    }
}

/// The peer's inputs: the log and, on the small preset, its audio features and lyrics.
struct PeerInputs<'a> {
    listens: &'a PathBuf,
    tracks_csv: &'a Option<PathBuf>,
    lyrics_csv: &'a Option<PathBuf>,
}

impl PeerInputs<'_> {
    /// The peer's ingest and the embeddings its variants need, in `work`.
    fn prepare(
        &self,
        args: &TrainArgs,
        p: &Pipeline,
        variants: &[Variant],
        work: &std::path::Path,
    ) -> Result<()> {
        let uses = |m: segue_model::Modality| variants.iter().any(|v| v.modalities().contains(&m));
        let (listens, tracks_csv, lyrics_csv) = (self.listens, self.tracks_csv, self.lyrics_csv);
        std::fs::create_dir_all(work)?;
        let (py, peers) = (&args.python, &args.peers);
        let listens_arg = listens.display().to_string();
        eprintln!("peer: ingest {}", listens.display());
        peer_stage(py, peers, work, &["ingest", "--listens", &listens_arg])?;
        if variants.iter().any(|v| v.e1() == segue_model::E1Start::Word2Vec) {
            peer_stage(py, peers, work, &["word2vec", "--w2v-workers", "2"])?;
        }
        if variants.contains(&Variant::AnnLsa) {
            peer_stage(py, peers, work, &["lsa"])?;
        }
        if uses(segue_model::Modality::Acoustic) {
            let csv = tracks_csv
                .as_ref()
                .context("the peer's VAE needs artist_name/track_name columns: use --small")?;
            peer_stage(
                py,
                peers,
                work,
                &["vae", "--tracks-csv", &csv.display().to_string(), "--threads", "2"],
            )?;
        }
        if uses(segue_model::Modality::Lyrics) {
            let csv =
                lyrics_csv.as_ref().context("the built-in data has no lyrics: use --small")?;
            // The same Sentence-BERT folder segue's lyrics stage loads.
            let (model_dir, _) = p.lyrics.source().resolve()?;
            peer_stage(
                py,
                peers,
                work,
                &[
                    "lyrics",
                    "--lyrics-csv",
                    &csv.display().to_string(),
                    "--sbert-model",
                    &model_dir.display().to_string(),
                    "--threads",
                    "2",
                ],
            )?;
        }
        Ok(())
    }
}
