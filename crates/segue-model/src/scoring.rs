//! Scores of a batch as a state computed once ([`Hidden`]) and any block of the catalogue
//! scored from it: full rows for small catalogues, blocks for millions of tracks.

use std::ops::Range;

use candle_core::{Device, Tensor};
use segue_core::{Error, Result};

use crate::err;

/// A batch's features and the output layer they are scored against:
/// `scores[r][i] = features[r] . output[i] (+ bias[i])`, plus sparse additions (the fused
/// model's repeat path over the session's own tracks).
#[derive(Debug)]
pub struct Hidden {
    features: Tensor,
    output: Tensor,
    bias: Option<Tensor>,
    /// `(row, track, value)` added after the product, in this order.
    extra: Vec<(usize, u32, f32)>,
}

impl Hidden {
    /// `features` is `B x d`, `output` is `tracks x d`, `bias` (if any) has `tracks` entries.
    pub(crate) fn new(features: Tensor, output: Tensor, bias: Option<Tensor>) -> Self {
        Hidden { features, output, bias, extra: Vec::new() }
    }

    /// Adds `value` to the score of `track` in `row`, after the product.
    pub(crate) fn with_extra(mut self, extra: Vec<(usize, u32, f32)>) -> Self {
        self.extra = extra;
        self
    }

    /// Rows in the batch.
    pub fn rows(&self) -> usize {
        self.features.dims().first().copied().unwrap_or(0)
    }

    /// The catalogue size.
    pub fn tracks(&self) -> usize {
        self.output.dims().first().copied().unwrap_or(0)
    }

    /// Scores of tracks `items` for every row, row-major (`rows x items.len()`).
    pub fn scores(&self, items: Range<usize>) -> Result<Vec<f32>> {
        let tensor = self.scores_tensor(items)?;
        tensor.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(err)
    }

    /// [`Hidden::scores`] as a `rows x items.len()` tensor.
    pub fn scores_tensor(&self, items: Range<usize>) -> Result<Tensor> {
        let tracks = self.tracks();
        if items.start > items.end || items.end > tracks {
            return Err(Error::OutOfRange {
                what: format!("tracks {items:?} of a catalogue"),
                index: items.end,
                len: tracks,
            });
        }
        let n = items.len();
        let run = || -> candle_core::Result<Tensor> {
            let w = self.output.narrow(0, items.start, n)?;
            let mut out = self.features.matmul(&w.t()?)?;
            if let Some(b) = &self.bias {
                out = out.broadcast_add(&b.narrow(0, items.start, n)?)?;
            }
            if self.extra.iter().all(|&(_, t, _)| !items.contains(&(t as usize))) {
                return Ok(out);
            }
            let mut scores = out.flatten_all()?.to_vec1::<f32>()?;
            for &(row, track, value) in &self.extra {
                if items.contains(&(track as usize)) {
                    scores[row * n + track as usize - items.start] += value;
                }
            }
            Tensor::from_vec(scores, (self.rows(), n), &Device::Cpu)
        };
        run().map_err(err)
    }
}
