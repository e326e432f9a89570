//! `cargo xtask bench word2vec` and `bench lsa`: segue's track embeddings beside the peer's
//! (`pipeline.py word2vec`: gensim; `pipeline.py lsa`: scikit-learn's TruncatedSVD) on the same
//! training sessions and parameters, 2 threads each, with two quality measures: the share of a
//! track's 10 nearest neighbours in its planted genre (synthetic data with a truth.csv), and
//! how often the next track of a test session is among the previous track's 50 nearest
//! neighbours. LSA also compares all singular values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use rayon::prelude::*;
use segue_core::NoProgress;
use segue_sessions::{
    Format, IngestOptions, SessionOptions, SourceSpec, Split, ingest, sessionize,
};

/// Rows of a float32 .npy matrix and its boolean mask, as the peer saves them.
fn read_npy_f32(path: &Path) -> Result<(Vec<f32>, usize, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !bytes.starts_with(b"\x93NUMPY") {
        bail!("{} is not a .npy file", path.display());
    }
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = String::from_utf8_lossy(&bytes[start..start + hlen]).to_string();
    let shape: Vec<usize> = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .context("npy header has no shape")?
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect();
    let data = &bytes[start + hlen..];
    let (rows, cols) = (shape[0], shape.get(1).copied().unwrap_or(1));
    if header.contains("'|b1'") {
        return Ok((data[..rows].iter().map(|&b| f32::from(b)).collect(), rows, 1));
    }
    if !header.contains("'<f4'") {
        bail!("{}: expected float32, header {header}", path.display());
    }
    Ok((
        data[..rows * cols * 4]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        rows,
        cols,
    ))
}

/// Unit-normalised rows (zero rows stay zero) for cosine nearest neighbours.
fn normalised(m: &[f32], dim: usize) -> Vec<f32> {
    let mut out = m.to_vec();
    out.par_chunks_mut(dim).for_each(|r| {
        let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
        if n > 0.0 {
            r.iter_mut().for_each(|v| *v /= n);
        }
    });
    out
}

/// The `k` rows nearest to row `q` among rows with `mask`, excluding `q`.
fn nearest(m: &[f32], dim: usize, mask: &[bool], q: usize, k: usize) -> Vec<usize> {
    let qv = &m[q * dim..(q + 1) * dim];
    let mut scored: Vec<(f32, usize)> = m
        .chunks(dim)
        .enumerate()
        .filter(|(i, _)| *i != q && mask[*i])
        .map(|(i, r)| (r.iter().zip(qv).map(|(a, b)| a * b).sum(), i))
        .collect();
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    scored.select_nth_unstable_by(k - 1, |a, b| b.0.total_cmp(&a.0));
    scored.truncate(k);
    scored.into_iter().map(|(_, i)| i).collect()
}

struct Quality {
    genre_share: Option<f64>,
    next_hit50: f64,
}

fn quality(
    m: &[f32],
    dim: usize,
    mask: &[bool],
    genre: Option<&[i32]>,
    pairs: &[(u32, u32)],
) -> Quality {
    let m = normalised(m, dim);
    let genre_share = genre.map(|g| {
        let queries: Vec<usize> = (0..mask.len())
            .filter(|&i| mask[i] && g[i] >= 0)
            .step_by((mask.len() / 1000).max(1))
            .collect();
        let hits: usize = queries
            .par_iter()
            .map(|&q| nearest(&m, dim, mask, q, 10).iter().filter(|&&n| g[n] == g[q]).count())
            .sum();
        hits as f64 / (10 * queries.len()).max(1) as f64
    });
    let hits = pairs
        .par_iter()
        .filter(|(a, b)| nearest(&m, dim, mask, *a as usize, 50).contains(&(*b as usize)))
        .count();
    Quality { genre_share, next_hit50: hits as f64 / pairs.len().max(1) as f64 }
}

/// Which embedding to compare.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Embedding {
    /// CBOW Word2Vec beside gensim.
    Word2vec,
    /// Truncated SVD beside scikit-learn.
    Lsa,
}

/// Runs a peer stage in `work`; returns its JSON summary line.
pub fn peer_stage(
    python: &Path,
    peers: &Path,
    work: &Path,
    args: &[&str],
) -> Result<serde_json::Value> {
    let o = Command::new(python)
        .current_dir(peers)
        .env("PYTHONHASHSEED", "0")
        .arg("pipeline.py")
        .args(args)
        .arg("--work")
        .arg(work)
        .output()?;
    if !o.status.success() {
        bail!("peer {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    }
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let line = text.lines().rev().find(|l| l.contains("\"stage\"")).context("no stage line")?;
    Ok(serde_json::from_str(line)?)
}

/// Planted genre per track id (-1 unknown) from gen_synthetic's truth.csv.
fn genres(truth: &Path, vocab: &segue_core::Vocab) -> Result<Vec<i32>> {
    let text = std::fs::read_to_string(truth)?;
    let mut by_key: HashMap<(String, String), i32> = HashMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.rsplitn(4, ',').collect();
        if f.len() == 4 {
            let (artist, title) = f[3].split_once(',').unwrap_or((f[3], ""));
            let key = (
                segue_core::normalize_name(artist.trim_matches('"')),
                segue_core::normalize_name(title.trim_matches('"')),
            );
            by_key.insert(key, f[2].parse().unwrap_or(-1));
        }
    }
    Ok(vocab
        .entries()
        .iter()
        .map(|e| *by_key.get(&(e.artist_key.clone(), e.title_key.clone())).unwrap_or(&-1))
        .collect())
}

pub fn run(
    which: Embedding,
    listens: PathBuf,
    truth: Option<PathBuf>,
    python: &Path,
    peers: &Path,
) -> Result<()> {
    let dir = crate::bench::bench_dir().join("embed");
    std::fs::create_dir_all(&dir)?;
    let work = dir.join("peer-work");
    let _ = std::fs::remove_dir_all(&work);
    peer_stage(python, peers, &work, &["ingest", "--listens", &listens.display().to_string()])?;

    // segue: the same sessions through its own ingest and sessionize.
    let src = SourceSpec::new(Format::Lastfm1k, [listens.display().to_string()]);
    let ing = ingest(&[src], Path::new("."), &IngestOptions::default(), &NoProgress)?;
    let opts = SessionOptions { validation_share: 0.0, ..SessionOptions::default() };
    let mut out = sessionize(&ing.events, &ing.keys, &opts)?;
    let ours_dir = dir.join("segue-work");
    std::fs::create_dir_all(&ours_dir)?;
    out.write(&ours_dir)?;
    let vocab = segue_sessions::read_vocab(&ours_dir.join("tracks.parquet"))?;
    let peer_tracks = segue_sessions::parquet::read(&work.join("tracks.parquet"))?;
    let peer_keys = segue_sessions::parquet::str_column(&peer_tracks, "artist_norm")?
        .into_iter()
        .zip(segue_sessions::parquet::str_column(&peer_tracks, "track_norm")?);
    let same_ids = peer_keys.enumerate().all(|(i, (a, t))| {
        vocab.entries().get(i).is_some_and(|e| e.artist_key == a && e.title_key == t)
    });
    if !same_ids || peer_tracks.height() != vocab.len() {
        bail!("segue's and the peer's track ids differ; the corpora would not be the same");
    }
    let corpus = segue_sessions::read_split(&ours_dir.join("sessions.parquet"), Split::Train)?;
    let genre = truth.as_deref().map(|t| genres(t, &vocab)).transpose()?;
    let test = segue_sessions::read_split(&ours_dir.join("sessions.parquet"), Split::Test)?;
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for w in test.offsets.windows(2) {
        for i in w[0] + 1..w[1] {
            pairs.push((test.flat[i - 1], test.flat[i]));
        }
    }
    let setting = format!(
        "{} ({} training sessions, {} tokens, 2 threads)",
        listens.display(),
        corpus.offsets.len() - 1,
        corpus.flat.len()
    );
    let side = Sides { vocab: &vocab, genre: genre.as_deref(), pairs };
    match which {
        Embedding::Word2vec => word2vec(&side, &corpus, python, peers, &work, &setting),
        Embedding::Lsa => lsa(&side, &corpus, python, peers, &work, &setting),
    }
}

/// What both sides are measured on.
struct Sides<'a> {
    vocab: &'a segue_core::Vocab,
    genre: Option<&'a [i32]>,
    pairs: Vec<(u32, u32)>,
}

impl Sides<'_> {
    /// Quality of both tables on the test transitions whose first track both sides embed
    /// (at most 2,000 of them, evenly spaced).
    fn qualities(
        &self,
        ours: &[f32],
        our_mask: &[bool],
        theirs: &[f32],
        their_mask: &[bool],
        dim: usize,
    ) -> (Quality, Quality, usize) {
        let step = (self.pairs.len() / 2000).max(1);
        let pairs: Vec<(u32, u32)> = self
            .pairs
            .iter()
            .copied()
            .filter(|(a, _)| our_mask[*a as usize] && their_mask[*a as usize])
            .step_by(step)
            .collect();
        (
            quality(ours, dim, our_mask, self.genre, &pairs),
            quality(theirs, dim, their_mask, self.genre, &pairs),
            pairs.len(),
        )
    }
}

fn print_quality(ours: &Quality, theirs: &Quality, transitions: usize) {
    if let (Some(a), Some(b)) = (ours.genre_share, theirs.genre_share) {
        println!(
            "| 10-NN in the planted genre | {a:.3} | {b:.3} | {:+.1} points |",
            100.0 * (a - b)
        );
    }
    println!(
        "| next track in the last track's 50 NN ({transitions} test transitions) | {:.3} | {:.3} | {:+.1} points |",
        ours.next_hit50,
        theirs.next_hit50,
        100.0 * (ours.next_hit50 - theirs.next_hit50)
    );
}

fn read_peer_table(work: &Path, name: &str) -> Result<(Vec<f32>, Vec<bool>, usize)> {
    let (m, _, dim) = read_npy_f32(&work.join(format!("{name}.npy")))?;
    let (mask, _, _) = read_npy_f32(&work.join(format!("{name}_mask.npy")))?;
    Ok((m, mask.iter().map(|&v| v > 0.5).collect(), dim))
}

fn word2vec(
    side: &Sides,
    corpus: &segue_sessions::SplitCorpus,
    python: &Path,
    peers: &Path,
    work: &Path,
    setting: &str,
) -> Result<()> {
    let theirs = peer_stage(python, peers, work, &["word2vec", "--w2v-workers", "2"])?;
    let vocab = side.vocab;
    let params = segue_word2vec::Params { threads: 2, ..segue_word2vec::Params::default() };
    let model = segue_word2vec::train(
        &segue_word2vec::Corpus::new(&corpus.flat, &corpus.offsets, vocab.len())?,
        &params,
    )?;
    let table = model.to_table(vocab.len(), &vocab.hash())?;
    let (peer_m, peer_mask, dim) = read_peer_table(work, "w2v")?;
    let our_mask: Vec<bool> =
        (0..vocab.len()).map(|i| table.is_present(segue_core::TrackId(i as u32))).collect();
    let (q_ours, q_theirs, n) =
        side.qualities(table.as_slice(), &our_mask, &peer_m, &peer_mask, dim);

    let ours_wps = model.stats().words_per_second();
    let theirs_wps = theirs["raw_words_per_second"].as_f64().unwrap_or(f64::NAN);
    println!("## bench word2vec: {setting}, 5 epochs\n");
    println!("| | segue | gensim | ratio |\n|---|---:|---:|---:|");
    println!(
        "| train seconds | {:.2} | {:.2} | {:.2}x faster |",
        model.stats().seconds,
        theirs["train_seconds"].as_f64().unwrap_or(f64::NAN),
        ours_wps / theirs_wps
    );
    println!("| raw words / s | {ours_wps:.0} | {theirs_wps:.0} | {:.2}x |", ours_wps / theirs_wps);
    print_quality(&q_ours, &q_theirs, n);
    Ok(())
}

fn lsa(
    side: &Sides,
    corpus: &segue_sessions::SplitCorpus,
    python: &Path,
    peers: &Path,
    work: &Path,
    setting: &str,
) -> Result<()> {
    // The peer prints only 5 singular values; with "sigma" its table is V Sigma, whose column
    // norms are all of them.
    let theirs = peer_stage(python, peers, work, &["lsa", "--lsa-scale", "sigma"])?;
    let vocab = side.vocab;
    let started = std::time::Instant::now();
    let train_tracks = corpus.flat.iter().max().map_or(0, |&m| m as usize + 1);
    let counts =
        segue_lsa::CountMatrix::from_sessions(&corpus.flat, &corpus.offsets, train_tracks)?;
    let build = started.elapsed().as_secs_f64();
    let params = segue_lsa::LsaParams::default();
    let svd = segue_lsa::randomized_svd(&counts, &params)?;
    let total = started.elapsed().as_secs_f64();
    let table = svd.to_table(vocab.len(), params.dim, &vocab.hash(), false)?;

    let (mut peer_m, peer_mask, dim) = read_peer_table(work, "lsa")?;
    let mut sigma = vec![0f64; dim];
    for row in peer_m.chunks(dim) {
        for (s, &x) in sigma.iter_mut().zip(row) {
            *s += f64::from(x) * f64::from(x);
        }
    }
    sigma.iter_mut().for_each(|s| *s = s.sqrt());
    for row in peer_m.chunks_mut(dim) {
        for (x, s) in row.iter_mut().zip(&sigma) {
            *x = (f64::from(*x) / s) as f32;
        }
    }
    let (worst, at) = svd
        .singular_values
        .iter()
        .zip(&sigma)
        .map(|(a, b)| (a - b).abs() / b)
        .enumerate()
        .fold((0f64, 0), |m, (i, d)| if d > m.0 { (d, i) } else { m });
    let sum_ratio = svd.singular_values.iter().sum::<f64>() / sigma.iter().sum::<f64>();
    let our_mask: Vec<bool> =
        (0..vocab.len()).map(|i| table.is_present(segue_core::TrackId(i as u32))).collect();
    let (q_ours, q_theirs, n) =
        side.qualities(table.as_slice(), &our_mask, &peer_m, &peer_mask, dim);

    let secs = |k: &str| theirs[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "## bench lsa: {setting}; {} x {} count matrix, {} entries, {} components, n_iter {}\n",
        counts.rows,
        counts.cols,
        counts.nnz(),
        params.dim,
        params.n_iter
    );
    println!("| | segue | scikit-learn | ratio |\n|---|---:|---:|---:|");
    println!(
        "| SVD seconds | {:.2} | {:.2} | {:.2}x faster |",
        total - build,
        secs("svd_seconds"),
        secs("svd_seconds") / (total - build)
    );
    println!(
        "| matrix + SVD seconds | {total:.2} | {:.2} | {:.2}x faster |",
        secs("build_seconds") + secs("svd_seconds"),
        (secs("build_seconds") + secs("svd_seconds")) / total
    );
    println!("| largest singular value | {:.3} | {:.3} | |", svd.singular_values[0], sigma[0]);
    println!(
        "| {}th singular value | {:.3} | {:.3} | |",
        dim,
        svd.singular_values[dim - 1],
        sigma[dim - 1]
    );
    println!(
        "| worst relative difference of the {dim} singular values | {:.4}% (component {}) | | |",
        100.0 * worst,
        at + 1
    );
    println!("| sum of singular values | | | {sum_ratio:.5} |");
    println!(
        "| explained variance ratio, sum | {:.4} | {:.4} | |",
        svd.explained_variance_ratio.iter().sum::<f64>(),
        secs("explained_variance_ratio_sum")
    );
    print_quality(&q_ours, &q_theirs, n);
    Ok(())
}
