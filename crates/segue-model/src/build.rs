//! The paper's logic for assembling a variant's network from its settings and pretrained rows:
//! `E1` from Word2Vec or LSA rows (only where the caller allows a track to keep its vector),
//! the content tables of its modalities, the row scaling of `model.pretrained_scale`.

use rand::SeedableRng;
use segue_core::{Error, Result};

use crate::{
    E1Start, Fusion, FusionConfig, FusionInit, Gru4Rec, Gru4RecConfig, ModelParams, Network,
    PretrainedScale, SasRec, SasRecConfig, Variant,
};

/// One pretrained table as a network takes it: `present.len()` rows of `dim` values, row
/// after row, and which rows hold a vector.
#[derive(Debug, Clone, Copy)]
pub struct PretrainedRows<'a> {
    /// `tracks x dim` values.
    pub rows: &'a [f32],
    /// Row width.
    pub dim: usize,
    /// Rows that hold a vector; the others are ignored.
    pub present: &'a [bool],
}

/// The pretrained rows a variant is built from.
#[derive(Debug, Clone, Default)]
pub struct Pretrained<'a> {
    /// Word2Vec or LSA rows for `E1`, as [`Variant::e1`] says (unused for a random start).
    /// `present` must mark only the tracks allowed to keep their vector: leak-free, those
    /// played in training.
    pub e1: Option<PretrainedRows<'a>>,
    /// One table per modality, in [`Variant::modalities`] order.
    pub content: Vec<PretrainedRows<'a>>,
}

impl PretrainedRows<'_> {
    fn check(&self, what: &str, tracks: usize) -> Result<()> {
        if self.present.len() != tracks {
            return Err(Error::ShapeMismatch {
                what: format!("{what}: row flags (one per track)"),
                expected: tracks,
                found: self.present.len(),
            });
        }
        if self.rows.len() != tracks * self.dim {
            return Err(Error::ShapeMismatch {
                what: format!("{what}: values ({tracks} tracks x {})", self.dim),
                expected: tracks * self.dim,
                found: self.rows.len(),
            });
        }
        Ok(())
    }
}

impl Variant {
    /// The variant's network over `tracks` tracks, initialised from `m.seed`: GRU4Rec and
    /// SASRec from their settings alone; the ANN family with `E1` random or from
    /// `pretrained.e1` (scaled by `m.pretrained_scale`) and one content table per modality
    /// (rescaled too under the authors' `row-min-max`).
    pub fn build(self, m: &ModelParams, tracks: usize, pretrained: &Pretrained) -> Result<Network> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(m.seed);
        match self {
            Variant::Gru4Rec => {
                let config = Gru4RecConfig {
                    tracks,
                    embedding_dim: m.embedding_dim,
                    hidden: m.hidden,
                    dropout: m.dropout,
                    negatives: m.gru4rec_negatives,
                };
                return Ok(Network::Gru4Rec(Gru4Rec::new(config, &mut rng)?));
            }
            Variant::SasRec => {
                let config =
                    SasRecConfig { tracks, max_len: m.max_input_len, params: m.sasrec.clone() };
                return Ok(Network::SasRec(SasRec::new(config, &mut rng)?));
            }
            _ => {}
        }
        let e1 = match (self.e1(), &pretrained.e1) {
            (E1Start::Random, _) => None,
            (start, None) => {
                return Err(Error::Config(format!(
                    "{} starts E1 from {start:?} rows, and none were given",
                    self.paper_name()
                )));
            }
            (_, Some(t)) => {
                t.check("E1's pretrained rows", tracks)?;
                if t.dim != m.embedding_dim {
                    return Err(Error::Config(format!(
                        "the pretrained rows are {}-d but model.embedding_dim = {}: make them equal",
                        t.dim, m.embedding_dim
                    )));
                }
                let mut rows = t.rows.to_vec();
                m.pretrained_scale.apply(&mut rows, t.present, t.dim);
                Some((rows, t.present.to_vec()))
            }
        };
        if pretrained.content.len() != self.modalities().len() {
            return Err(Error::Config(format!(
                "{} pools {} content tables; {} were given",
                self.paper_name(),
                self.modalities().len(),
                pretrained.content.len()
            )));
        }
        let mut content = Vec::new();
        for (t, modality) in pretrained.content.iter().zip(self.modalities()) {
            t.check(&format!("the {modality:?} rows"), tracks)?;
            let mut rows = t.rows.to_vec();
            if m.pretrained_scale == PretrainedScale::RowMinMax {
                // The authors' code rescales content rows as it does Word2Vec's.
                m.pretrained_scale.apply(&mut rows, t.present, t.dim);
            }
            content.push(rows);
        }
        let content_dims = pretrained.content.iter().map(|t| t.dim).collect();
        let config = FusionConfig::from_params(tracks, m, content_dims);
        Ok(Network::Fusion(Fusion::new(config, FusionInit { e1, content }, &mut rng)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Batch;

    fn params() -> ModelParams {
        ModelParams { embedding_dim: 4, hidden: 4, fc: 8, ..ModelParams::default() }
    }

    fn scores(net: &Network) -> Vec<f32> {
        let batch = Batch::new(&[&[0, 1, 2]], vec![3]);
        net.scores(&batch).unwrap().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn pretrained_rows_reach_e1_only_where_present() {
        let tracks = 5;
        let rows: Vec<f32> = (0..tracks * 4).map(|i| i as f32 / 10.0).collect();
        let all = vec![true; tracks];
        let some = vec![true, true, false, false, false];
        let m = params();
        let build = |present: &[bool]| {
            let e1 = PretrainedRows { rows: &rows, dim: 4, present };
            let pretrained = Pretrained { e1: Some(e1), content: vec![] };
            Variant::Annw.build(&m, tracks, &pretrained).unwrap()
        };
        // Same inputs, same network; another mask, another E1.
        assert_eq!(scores(&build(&some)), scores(&build(&some)));
        assert_ne!(scores(&build(&some)), scores(&build(&all)));
        // ANN ignores pretrained rows: its E1 is random whatever is given.
        let e1 = PretrainedRows { rows: &rows, dim: 4, present: &all };
        let ann = Variant::Ann.build(&m, tracks, &Pretrained { e1: Some(e1), content: vec![] });
        let plain = Variant::Ann.build(&m, tracks, &Pretrained::default());
        assert_eq!(scores(&ann.unwrap()), scores(&plain.unwrap()));
    }

    #[test]
    fn missing_or_misshapen_tables_are_errors() {
        let m = params();
        let e = Variant::Annw.build(&m, 3, &Pretrained::default()).unwrap_err();
        assert!(e.to_string().contains("none were given"), "{e}");
        let rows = vec![0.0f32; 3 * 4];
        let present = vec![true; 2];
        let e1 = PretrainedRows { rows: &rows, dim: 4, present: &present };
        let e = Variant::Annw.build(&m, 3, &Pretrained { e1: Some(e1), content: vec![] });
        assert!(matches!(e, Err(Error::ShapeMismatch { expected: 3, found: 2, .. })));
        let present = vec![true; 3];
        let e1 = PretrainedRows { rows: &rows, dim: 4, present: &present };
        let e = Variant::AnnwAcoustic.build(&m, 3, &Pretrained { e1: Some(e1), content: vec![] });
        assert!(e.unwrap_err().to_string().contains("pools 1 content tables; 0 were given"));
        let wide = PretrainedRows { rows: &rows[..9], dim: 3, present: &present };
        let e = Variant::Annw.build(&m, 3, &Pretrained { e1: Some(wide), content: vec![] });
        assert!(e.unwrap_err().to_string().contains("model.embedding_dim = 4"));
    }
}
