//! `cargo xtask bench word2vec`: segue's CBOW beside gensim (the peer's `pipeline.py word2vec`)
//! on the same training sessions and parameters, 2 threads each, with two quality measures:
//! the share of a track's 10 nearest neighbours in its planted genre (synthetic data with a
//! truth.csv), and how often the next track of a test session is among the previous track's
//! 50 nearest neighbours.

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

pub fn run(listens: PathBuf, truth: Option<PathBuf>, python: &Path, peers: &Path) -> Result<()> {
    let dir = crate::bench::bench_dir().join("w2v");
    std::fs::create_dir_all(&dir)?;
    // Peer: ingest then word2vec (gensim, 2 workers).
    let work = dir.join("peer-work");
    let _ = std::fs::remove_dir_all(&work);
    let peer = |args: &[&str]| -> Result<serde_json::Value> {
        let o = Command::new(python)
            .current_dir(peers)
            .env("PYTHONHASHSEED", "0")
            .arg("pipeline.py")
            .args(args)
            .arg("--work")
            .arg(&work)
            .output()?;
        if !o.status.success() {
            bail!("peer {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
        }
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let line = text.lines().rev().find(|l| l.contains("\"stage\"")).context("no stage line")?;
        Ok(serde_json::from_str(line)?)
    };
    peer(&["ingest", "--listens", &listens.display().to_string()])?;
    let theirs = peer(&["word2vec", "--w2v-workers", "2"])?;

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
    let params = segue_word2vec::Params { threads: 2, ..segue_word2vec::Params::default() };
    let model = segue_word2vec::train(
        &segue_word2vec::Corpus::new(&corpus.flat, &corpus.offsets, vocab.len())?,
        &params,
    )?;
    let table = model.to_table(vocab.len(), &vocab.hash())?;

    // Quality on the same tracks and test transitions.
    let genre: Option<Vec<i32>> = match &truth {
        Some(t) => {
            let text = std::fs::read_to_string(t)?;
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
            Some(
                vocab
                    .entries()
                    .iter()
                    .map(|e| {
                        *by_key.get(&(e.artist_key.clone(), e.title_key.clone())).unwrap_or(&-1)
                    })
                    .collect(),
            )
        }
        None => None,
    };
    let test = segue_sessions::read_split(&ours_dir.join("sessions.parquet"), Split::Test)?;
    let mut pairs: Vec<(u32, u32)> = Vec::new();
    for w in test.offsets.windows(2) {
        for i in w[0] + 1..w[1] {
            pairs.push((test.flat[i - 1], test.flat[i]));
        }
    }
    let (peer_m, _, dim) = read_npy_f32(&work.join("w2v.npy"))?;
    let (peer_mask, _, _) = read_npy_f32(&work.join("w2v_mask.npy"))?;
    let peer_mask: Vec<bool> = peer_mask.iter().map(|&v| v > 0.5).collect();
    let our_mask: Vec<bool> =
        (0..vocab.len()).map(|i| table.is_present(segue_core::TrackId(i as u32))).collect();
    let step = (pairs.len() / 2000).max(1);
    let pairs: Vec<(u32, u32)> = pairs
        .into_iter()
        .filter(|(a, _)| our_mask[*a as usize] && peer_mask[*a as usize])
        .step_by(step)
        .collect();
    let q_ours = quality(table.as_slice(), dim, &our_mask, genre.as_deref(), &pairs);
    let q_theirs = quality(&peer_m, dim, &peer_mask, genre.as_deref(), &pairs);

    let ours_wps = model.stats.words_per_second();
    let theirs_wps = theirs["raw_words_per_second"].as_f64().unwrap_or(f64::NAN);
    println!(
        "## bench word2vec: {} ({} training sessions, {} tokens, 5 epochs, 2 threads)\n",
        listens.display(),
        corpus.offsets.len() - 1,
        corpus.flat.len()
    );
    println!("| | segue | gensim | ratio |\n|---|---:|---:|---:|");
    println!(
        "| train seconds | {:.2} | {:.2} | {:.2}x faster |",
        model.stats.seconds,
        theirs["train_seconds"].as_f64().unwrap_or(f64::NAN),
        ours_wps / theirs_wps
    );
    println!(
        "| raw words / s | {:.0} | {theirs_wps:.0} | {:.2}x |",
        ours_wps,
        ours_wps / theirs_wps
    );
    if let (Some(a), Some(b)) = (q_ours.genre_share, q_theirs.genre_share) {
        println!(
            "| 10-NN in the planted genre | {:.3} | {b:.3} | {:+.1} points |",
            a,
            100.0 * (a - b)
        );
    }
    println!(
        "| next track in the last track's 50 NN ({} test transitions) | {:.3} | {:.3} | {:+.1} points |",
        pairs.len(),
        q_ours.next_hit50,
        q_theirs.next_hit50,
        100.0 * (q_ours.next_hit50 - q_theirs.next_hit50)
    );
    Ok(())
}
