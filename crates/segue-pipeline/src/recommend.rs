//! `cargo xtask recommend`: the next tracks for a session, from a trained model in the cache.
//!
//! The session is given as "artist - title" lines (arguments or a file) or taken from the data
//! (`--user U --last N`: the last N plays of the user's latest session). Tracks are matched to
//! the vocabulary through the same normalisation as ingest; those not in it are reported and
//! left out of the input.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use segue_core::{TrackId, Vocab};
use segue_model::{Network, Variant};
use serde::Serialize;

use crate::cache::Check;
use crate::model_stages::{Inputs, network};
use crate::pipeline::Pipeline;
use crate::stages::{Runner, closure};

/// Where the session comes from.
#[derive(Debug, Clone)]
pub enum SessionSource {
    /// "artist - title" lines, with where each came from (for messages).
    Lines(Vec<(String, String)>),
    /// The last `last` plays of a user's latest session in the data.
    User {
        /// The user's name in the data.
        user: String,
        /// How many of the session's last plays make the input.
        last: usize,
    },
}

/// A trained model ready to score sessions, with the vocabulary it ranks.
#[derive(Debug)]
pub struct Recommender {
    /// The model's variant.
    pub variant: Variant,
    /// The model's training seed.
    pub seed: u64,
    /// The weights file it was loaded from.
    pub model_file: PathBuf,
    /// The longest input the model reads (`model.max_input_len`): a longer session is cut to
    /// its last tracks.
    pub max_input_len: usize,
    net: Network,
    vocab: Vocab,
    inputs: Inputs,
}

/// One track of the input session.
#[derive(Debug, Serialize)]
pub struct InputTrack {
    pub given: String,
    pub track: u32,
    pub artist: String,
    pub title: String,
    pub seen_in_train: bool,
}

/// A line of the input that names no track of the vocabulary.
#[derive(Debug, Serialize)]
pub struct Unknown {
    pub given: String,
    pub place: String,
}

/// One recommended track.
#[derive(Debug, Serialize)]
pub struct Recommendation {
    pub rank: usize,
    pub track: u32,
    pub artist: String,
    pub title: String,
    /// The model's logit.
    pub score: f32,
    /// The softmax over the whole catalogue.
    pub probability: f64,
    pub seen_in_train: bool,
    /// Whether the track is in the input session.
    pub in_session: bool,
}

/// What `recommend` prints.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// The variant's id.
    pub variant: String,
    /// The model's training seed.
    pub seed: u64,
    /// The weights file.
    pub model: PathBuf,
    /// The input session's tracks, as matched.
    pub session: Vec<InputTrack>,
    /// Input lines that match no track of the vocabulary.
    pub unknown: Vec<Unknown>,
    /// The top tracks, best first.
    pub recommendations: Vec<Recommendation>,
    /// What the reader should know (cut inputs, tracks outside training, ...).
    pub notes: Vec<String>,
}

impl Recommender {
    /// The test split's sessions of the data the model was trained on.
    pub fn test_sessions(&self) -> &segue_sessions::SplitCorpus {
        &self.inputs.test
    }

    /// The number of tracks the model ranks.
    pub fn catalogue_len(&self) -> usize {
        self.inputs.tracks
    }

    /// Loads the trained model of `variant` (seed `seed`, else the pipeline's first) from the
    /// cache. A model not trained with the pipeline's current settings is an error that says
    /// which command trains it.
    pub fn load(p: &Pipeline, variant: Variant, seed: Option<u64>) -> Result<Recommender> {
        let seeds = p.model.seed_list();
        let seed = seed.unwrap_or(seeds[0]);
        if !seeds.contains(&seed) {
            bail!(
                "seed {seed} is not among the pipeline's model seeds ({})",
                seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        let train = format!("train-{}", variant.id());
        let log = segue_core::NoProgress;
        let mut runner = Runner::new(p, &log);
        for stage in closure(&train) {
            for instance in runner.instances(stage) {
                let key = runner.recipe(&instance)?.key();
                runner.note_key(&instance, &key);
                if !matches!(runner.cache.check(stage, &key), Check::Fresh(_)) {
                    bail!(
                        "{instance} is not in the cache with this pipeline's settings: `cargo xtask run {train} --pipeline {}` trains it first",
                        p.path.display()
                    );
                }
            }
        }
        let seeded = p.for_model_seed(Some(seed));
        let instance = format!("{train}/seed-{seed}");
        let dir_of = |s: &str| -> Result<PathBuf> {
            if crate::model_stages::variant_of(s).is_some() {
                runner.dir(&format!("{s}/seed-{seed}"))
            } else {
                runner.dir(s)
            }
        };
        let sessions_dir = runner.dir("sessionize")?;
        let inputs = Inputs::read(&sessions_dir)?;
        let vocab = segue_sessions::read_vocab(&sessions_dir.join(crate::files::TRACKS))?;
        let net = network(&seeded, variant, &inputs, &dir_of)?;
        let model_file = runner.dir(&instance)?.join("model.safetensors");
        net.load(&model_file)?;
        Ok(Recommender {
            variant,
            seed,
            net,
            vocab,
            inputs,
            model_file,
            max_input_len: p.model.max_input_len,
        })
    }

    /// The session of a source: known tracks in order, and the lines that name none.
    pub fn session(&self, source: &SessionSource) -> Result<(Vec<InputTrack>, Vec<Unknown>)> {
        let mut known = Vec::new();
        let mut unknown = Vec::new();
        match source {
            SessionSource::Lines(lines) => {
                for (line, place) in lines {
                    match self.lookup(line) {
                        Some(id) => known.push(self.input_track(line, id)),
                        None => unknown.push(Unknown { given: line.clone(), place: place.clone() }),
                    }
                }
            }
            SessionSource::User { user, last } => {
                let tracks = self.latest_session(user)?;
                let from = tracks.len().saturating_sub(*last);
                for &t in &tracks[from..] {
                    let e = self
                        .vocab
                        .get(TrackId(t))
                        .context("a session track outside the vocabulary")?;
                    let given = format!("{} - {}", e.artist, e.title);
                    known.push(self.input_track(&given, TrackId(t)));
                }
            }
        }
        Ok((known, unknown))
    }

    fn input_track(&self, given: &str, id: TrackId) -> InputTrack {
        let e = self.vocab.get(id).expect("an id of the vocabulary");
        InputTrack {
            given: given.to_string(),
            track: id.0,
            artist: e.artist.clone(),
            title: e.title.clone(),
            seen_in_train: self.inputs.counts.seen_in_train(id.index()),
        }
    }

    /// "Artist - Title": every " - " is tried as the separator (titles and artists may hold
    /// one), the first that names a track wins.
    fn lookup(&self, line: &str) -> Option<TrackId> {
        let mut from = 0;
        while let Some(i) = line[from..].find(" - ") {
            let at = from + i;
            if let Some(id) = self.vocab.lookup(&line[..at], &line[at + 3..]) {
                return Some(id);
            }
            from = at + 3;
        }
        None
    }

    /// The tracks of `user`'s latest session (any split).
    fn latest_session(&self, user: &str) -> Result<Vec<u32>> {
        let mut best: Option<(i64, Vec<u32>)> = None;
        for c in [&self.inputs.train, &self.inputs.valid, &self.inputs.test] {
            for s in 0..c.users.len() {
                if c.user_names[c.users[s] as usize] == user
                    && best.as_ref().is_none_or(|(end, _)| c.ends[s] > *end)
                {
                    best = Some((c.ends[s], c.flat[c.offsets[s]..c.offsets[s + 1]].to_vec()));
                }
            }
        }
        match best {
            Some((_, tracks)) => Ok(tracks),
            None => bail!(
                "user {user:?} has no session in this dataset; the users are: {}",
                self.inputs.test.user_names.join(", ")
            ),
        }
    }

    /// The top `k` next tracks after `session` (its last `max_input_len` tracks are read).
    pub fn top(&self, session: &[u32], k: usize) -> Result<Vec<Recommendation>> {
        if session.is_empty() {
            bail!("the session has no track of the vocabulary: nothing to recommend from");
        }
        let from = session.len().saturating_sub(self.max_input_len);
        let input = &session[from..];
        let batch = segue_model::Batch::new(&[input], vec![0]);
        let scores: Vec<f32> = self
            .net
            .scores(&batch)?
            .flatten_all()
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| anyhow::anyhow!("scoring: {e}"))?;
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let total: f64 = scores.iter().map(|&s| f64::from(s - max).exp()).sum();
        let mut order: Vec<u32> = (0..scores.len() as u32).collect();
        let k = k.min(order.len());
        // Highest score first; equal scores by id, so the list is fixed.
        let by_score =
            |a: &u32, b: &u32| scores[*b as usize].total_cmp(&scores[*a as usize]).then(a.cmp(b));
        if k < order.len() {
            order.select_nth_unstable_by(k, by_score);
            order.truncate(k);
        }
        order.sort_by(by_score);
        Ok(order
            .into_iter()
            .enumerate()
            .map(|(i, t)| {
                let e = self.vocab.get(TrackId(t)).expect("a scored track is in the vocabulary");
                Recommendation {
                    rank: i + 1,
                    track: t,
                    artist: e.artist.clone(),
                    title: e.title.clone(),
                    score: scores[t as usize],
                    probability: f64::from(scores[t as usize] - max).exp() / total,
                    seen_in_train: self.inputs.counts.seen_in_train(t as usize),
                    in_session: session.contains(&t),
                }
            })
            .collect())
    }

    /// The whole answer for a source.
    pub fn answer(&self, source: &SessionSource, k: usize) -> Result<Answer> {
        let (session, unknown) = self.session(source)?;
        let ids: Vec<u32> = session.iter().map(|t| t.track).collect();
        let recommendations = self.top(&ids, k)?;
        let mut notes = Vec::new();
        if ids.len() > self.max_input_len {
            notes.push(format!(
                "the model reads the last {} of the session's {} tracks (model.max_input_len)",
                self.max_input_len,
                ids.len()
            ));
        }
        let outside = session.iter().filter(|t| !t.seen_in_train).count();
        if outside > 0 {
            let content: Vec<&str> = self.variant.modalities().iter().map(|m| m.name()).collect();
            notes.push(if content.is_empty() {
                format!(
                    "{outside} of the session's tracks were never played in training: {} knows them only by an untrained embedding row",
                    self.variant.paper_name()
                )
            } else {
                format!(
                    "{outside} of the session's tracks were never played in training: {} still reads them through their {} rows (untrained embedding rows beside them)",
                    self.variant.paper_name(),
                    content.join(" and ")
                )
            });
        }
        if !unknown.is_empty() {
            notes.push(format!(
                "{} line(s) name no track of the vocabulary and were left out (give \"artist - title\" as the listening data spells them)",
                unknown.len()
            ));
        }
        Ok(Answer {
            variant: self.variant.id().to_string(),
            seed: self.seed,
            model: self.model_file.clone(),
            session,
            unknown,
            recommendations,
            notes,
        })
    }
}

/// The session lines of the command line: tracks given as arguments, then a file's lines
/// (`-`: standard input); blank lines and `#` comments skipped.
pub fn read_lines(tracks: &[String], file: Option<&Path>) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = tracks
        .iter()
        .enumerate()
        .map(|(i, t)| (t.trim().to_string(), format!("argument {}", i + 1)))
        .collect();
    if let Some(f) = file {
        let text = if f == Path::new("-") {
            std::io::read_to_string(std::io::stdin())
                .context("reading the session from standard input")?
        } else {
            std::fs::read_to_string(f)
                .with_context(|| format!("reading the session file {}", f.display()))?
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                out.push((line.to_string(), format!("{} line {}", f.display(), i + 1)));
            }
        }
    }
    Ok(out)
}

/// The paper's model, or the first applicable stand-in (as Table IV chooses it), when its
/// modality stages are in the cache.
pub fn default_variant(p: &Pipeline) -> Result<Variant> {
    let log = segue_core::NoProgress;
    let mut runner = Runner::new(p, &log);
    for stage in ["ingest", "sessionize", "word2vec", "acoustic", "lyrics"] {
        let key = runner.recipe(stage)?.key();
        runner.note_key(stage, &key);
        if !matches!(runner.cache.check(stage, &key), Check::Fresh(_)) {
            bail!(
                "stage {stage} is not in the cache with this pipeline's settings: name a variant with --variant, or run `cargo xtask reproduce --pipeline {}` first",
                p.path.display()
            );
        }
    }
    for v in crate::user_study::CANDIDATES {
        if crate::model_stages::not_applicable(v, &|s: &str| runner.dir(s))?.is_none() {
            return Ok(v);
        }
    }
    bail!("no fusion variant is applicable to this dataset: name one with --variant")
}
