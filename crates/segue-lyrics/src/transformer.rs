//! The transformer encoder (BERT or MPNet) run on one unpadded token sequence at a time: no
//! padding and no attention mask to apply, and one sequence per thread keeps every matrix
//! product single-threaded and cache-sized.
//!
//! Activations are token-major (`tokens x features`, row-major). Each linear layer computes
//! `Y^T = W X^T`: the weight, stored transposed at load (`[in, out]`, i.e. column-major
//! `out x in`), is gemm's left operand, which it reads without repacking, and the tokens are
//! the right operand, read in place; the result is written straight into token-major `Y`.
//! Measured on this crate's profile, this order ran the products about twice as fast as
//! `Y = X W^T`, where gemm transposes X into panels and streams all of W per panel.

use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use segue_core::{Error, Result};

use crate::config::{Architecture, ModelConfig};
use crate::kernels::{self, View};

/// One encoder layer; `*_w` are transposed weights, `[in, out]` row-major.
struct Layer {
    /// q, k and v weights side by side: `[d, 3 d]`.
    qkv_w: Packed,
    qkv_b: Vec<f32>,
    out_w: Packed,
    out_b: Vec<f32>,
    ln1_g: Vec<f32>,
    ln1_b: Vec<f32>,
    ff1_w: Packed,
    ff1_b: Vec<f32>,
    ff2_w: Packed,
    ff2_b: Vec<f32>,
    ln2_g: Vec<f32>,
    ln2_b: Vec<f32>,
}

/// Weights of a BERT or MPNet encoder.
pub(crate) struct Transformer {
    pub config: ModelConfig,
    word: Vec<f32>,
    position: Vec<f32>,
    /// BERT's token-type 0 row (every token of a single text has type 0).
    token_type: Option<Vec<f32>>,
    emb_ln_g: Vec<f32>,
    emb_ln_b: Vec<f32>,
    layers: Vec<Layer>,
    /// MPNet: per head, the bias of every relative offset `j - i` in
    /// `-(L-1)..=(L-1)` (L = max_seq_length), at index `j - i + L - 1`.
    relative_bias: Option<Vec<Vec<f32>>>,
    vocab: usize,
}

/// Per-thread buffers, grown to the longest sequence seen.
#[derive(Default)]
pub(crate) struct Scratch {
    x: Aligned,
    qkv: Aligned,
    scores: Aligned,
    ctx: Aligned,
    ff: Aligned,
}

/// One cache line of f32 values, on its boundary.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; 16]);

/// f32 values starting on a cache line: an AVX-512 load or store of 16 values that is not
/// aligned touches two lines, and the gemm microkernel does one per 16 values of a weight
/// panel and of the output.
#[derive(Default)]
struct Aligned(Vec<Line>);

impl Aligned {
    /// `len` zeros.
    fn zeros(len: usize) -> Aligned {
        Aligned(vec![Line::default(); len.div_ceil(16)])
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: a Line is 16 f32 values with no padding (repr C, size 64 = 16 x 4).
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast(), self.0.len() * 16) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as in `as_slice`, through the unique borrow.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 16) }
    }
}

/// The first `len` values of `v`, grown with zeros where it is shorter.
fn grow(v: &mut Aligned, len: usize) -> &mut [f32] {
    if v.0.len() * 16 < len {
        v.0.resize(len.div_ceil(16), Line::default());
    }
    &mut v.as_mut_slice()[..len]
}

struct Reader<'a> {
    st: SafeTensors<'a>,
    path: &'a Path,
    prefix: String,
}

impl Reader<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let full = format!("{}{name}", self.prefix);
        let t = self
            .st
            .tensor(&full)
            .map_err(|_| Error::artifact(self.path, format!("tensor `{full}` is missing")))?;
        if t.shape() != shape {
            return Err(Error::artifact(
                self.path,
                format!("tensor `{full}` has shape {:?}, expected {shape:?}", t.shape()),
            ));
        }
        if t.dtype() != Dtype::F32 {
            return Err(Error::artifact(
                self.path,
                format!("tensor `{full}` is {:?}; only F32 weights are supported", t.dtype()),
            ));
        }
        Ok(t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
    }
}

/// Output rows of one panel of a [`Packed`] weight: the height of gemm's AVX-512 f32
/// microkernel (4 x 16 lanes), and a multiple of its AVX2 one's lanes.
const PANEL: usize = 64;

/// Tokens per gemm call on a panel: at most gemm's single-thread packing threshold (8) times
/// its microkernel's width (6 with AVX-512, 4 otherwise), so gemm reads the panel where it is
/// instead of copying it again; a multiple of that width, so no call ends in a narrow kernel.
fn tokens_per_call() -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return 48;
    }
    32
}

/// A linear layer's weight `W` (`out x in`), packed once as gemm packs its left operand for
/// every call: panels of [`PANEL`] output rows, each stored input-major (`PANEL` contiguous
/// values per input). gemm copied each weight into that layout on every sequence, a fifth of
/// the encoder's time.
struct Packed {
    data: Aligned,
    out: usize,
    inp: usize,
}

impl Packed {
    /// Packs `w` (`out x inp`, row-major as PyTorch stores `Linear.weight`); the last panel
    /// is padded with zero rows.
    fn new(w: &[f32], out: usize, inp: usize) -> Packed {
        assert_eq!(w.len(), out * inp);
        let panels = out.div_ceil(PANEL);
        let mut data = Aligned::zeros(panels * PANEL * inp);
        for (r, row) in w.chunks_exact(inp).enumerate() {
            let panel = &mut data.as_mut_slice()[r / PANEL * PANEL * inp..];
            for (k, &v) in row.iter().enumerate() {
                panel[k * PANEL + r % PANEL] = v;
            }
        }
        Packed { data, out, inp }
    }
}

/// `Y (n x out, token-major) [+]= X (n x in, token-major) W^T`, panel by panel of `W`.
fn linear(x: &[f32], w: &Packed, y: &mut [f32], n: usize, accumulate: bool) {
    let (out, inp) = (w.out, w.inp);
    assert!(x.len() >= n * inp && y.len() >= n * out);
    let per_call = tokens_per_call();
    for (p, panel) in w.data.as_slice().chunks_exact(PANEL * inp).enumerate() {
        let rows = PANEL.min(out - p * PANEL);
        for t in (0..n).step_by(per_call) {
            let tokens = per_call.min(n - t);
            // SAFETY: the panel is rows x inp with unit row stride and column stride PANEL;
            // x's tokens t.. are inp-long rows; y's rows t.. have out columns, of which this
            // panel writes p * PANEL .. p * PANEL + rows (asserted sizes above).
            unsafe {
                kernels::gemm(
                    rows,
                    tokens,
                    inp,
                    y.as_mut_ptr().add(t * out + p * PANEL),
                    1,
                    out as isize,
                    accumulate,
                    View { ptr: panel.as_ptr(), rs: 1, cs: PANEL as isize },
                    View::transposed(&x[t * inp..], inp),
                    1.0,
                )
            }
        }
    }
}

pub(crate) fn relative_bucket(relative: i64, buckets: usize) -> usize {
    let half = (buckets / 2) as i64;
    let n = -relative;
    let mut ret = if n < 0 { half } else { 0 };
    let n = n.abs();
    let max_exact = half / 2;
    if n < max_exact {
        ret += n;
    } else {
        let scale = (128f64 / max_exact as f64).ln() as f32;
        let large = max_exact
            + ((n as f32 / max_exact as f32).ln() / scale * (half - max_exact) as f32) as i64;
        ret += large.min(half - 1);
    }
    ret as usize
}

impl Transformer {
    /// Loads `model.safetensors` of `config`'s folder.
    pub fn load(config: ModelConfig) -> Result<Transformer> {
        let path = config.dir.join("model.safetensors");
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::artifact(&path, format!("not a safetensors file: {e}")))?;
        let base = match config.architecture {
            Architecture::Bert => "bert.",
            Architecture::MpNet => "mpnet.",
        };
        let prefix = if st.tensor("embeddings.word_embeddings.weight").is_ok() {
            String::new()
        } else {
            base.to_string()
        };
        let r = Reader { st, path: &path, prefix };
        let (d, ff) = (config.hidden, config.intermediate);
        let word_rows =
            r.st.tensor(&format!("{}embeddings.word_embeddings.weight", r.prefix))
                .map_err(|_| {
                    Error::artifact(&path, "tensor `embeddings.word_embeddings.weight` is missing")
                })?
                .shape()
                .first()
                .copied()
                .unwrap_or(0);
        let word = r.get("embeddings.word_embeddings.weight", &[word_rows, d])?;
        let position =
            r.get("embeddings.position_embeddings.weight", &[config.max_position_embeddings, d])?;
        let token_type = match config.architecture {
            Architecture::Bert => {
                let t =
                    r.st.tensor(&format!("{}embeddings.token_type_embeddings.weight", r.prefix));
                let rows = t.map(|t| t.shape()[0]).unwrap_or(1);
                let all = r.get("embeddings.token_type_embeddings.weight", &[rows, d])?;
                Some(all[..d].to_vec())
            }
            Architecture::MpNet => None,
        };
        let emb_ln_g = r.get("embeddings.LayerNorm.weight", &[d])?;
        let emb_ln_b = r.get("embeddings.LayerNorm.bias", &[d])?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let l = format!("encoder.layer.{i}.");
            let (q, k, v, o, ln1) = match config.architecture {
                Architecture::Bert => (
                    "attention.self.query",
                    "attention.self.key",
                    "attention.self.value",
                    "attention.output.dense",
                    "attention.output.LayerNorm",
                ),
                Architecture::MpNet => (
                    "attention.attn.q",
                    "attention.attn.k",
                    "attention.attn.v",
                    "attention.attn.o",
                    "attention.LayerNorm",
                ),
            };
            let w = |n: &str, shape: &[usize]| r.get(&format!("{l}{n}"), shape);
            // PyTorch's [out, in] weights, transposed to [in, out].
            let packed = |n: &str, out: usize, inp: usize| -> Result<Packed> {
                Ok(Packed::new(&w(n, &[out, inp])?, out, inp))
            };
            let mut stacked = w(&format!("{q}.weight"), &[d, d])?;
            stacked.extend(w(&format!("{k}.weight"), &[d, d])?);
            stacked.extend(w(&format!("{v}.weight"), &[d, d])?);
            let qkv_w = Packed::new(&stacked, 3 * d, d);
            let mut qkv_b = w(&format!("{q}.bias"), &[d])?;
            qkv_b.extend(w(&format!("{k}.bias"), &[d])?);
            qkv_b.extend(w(&format!("{v}.bias"), &[d])?);
            layers.push(Layer {
                qkv_w,
                qkv_b,
                out_w: packed(&format!("{o}.weight"), d, d)?,
                out_b: w(&format!("{o}.bias"), &[d])?,
                ln1_g: w(&format!("{ln1}.weight"), &[d])?,
                ln1_b: w(&format!("{ln1}.bias"), &[d])?,
                ff1_w: packed("intermediate.dense.weight", ff, d)?,
                ff1_b: w("intermediate.dense.bias", &[ff])?,
                ff2_w: packed("output.dense.weight", d, ff)?,
                ff2_b: w("output.dense.bias", &[d])?,
                ln2_g: w("output.LayerNorm.weight", &[d])?,
                ln2_b: w("output.LayerNorm.bias", &[d])?,
            });
        }
        let relative_bias = match config.architecture {
            Architecture::Bert => None,
            Architecture::MpNet => {
                let (b, h) = (config.relative_buckets, config.heads);
                let table = r.get("encoder.relative_attention_bias.weight", &[b, h])?;
                let l = config.max_seq_length as i64;
                Some(
                    (0..h)
                        .map(|head| {
                            (-(l - 1)..l)
                                .map(|rel| table[relative_bucket(rel, b) * h + head])
                                .collect()
                        })
                        .collect(),
                )
            }
        };
        Ok(Transformer {
            config,
            word,
            position,
            token_type,
            emb_ln_g,
            emb_ln_b,
            layers,
            relative_bias,
            vocab: word_rows,
        })
    }

    /// Rows of the token table.
    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    /// The last layer's token vectors of `ids` (`ids.len() x hidden`, row-major), into
    /// `scratch.x`; `ids` must be at most `max_seq_length` long and within the vocabulary.
    pub fn forward<'s>(&self, ids: &[u32], s: &'s mut Scratch) -> &'s [f32] {
        let c = &self.config;
        let (n, d, ffw, heads) = (ids.len(), c.hidden, c.intermediate, c.heads);
        let dh = d / heads;
        assert!(n >= 1 && n <= c.max_seq_length, "sequence of {n} tokens");
        let x = grow(&mut s.x, n * d);
        let first_position = match c.architecture {
            Architecture::Bert => 0,
            Architecture::MpNet => c.pad_token_id as usize + 1,
        };
        for (i, (row, &id)) in x.chunks_exact_mut(d).zip(ids).enumerate() {
            let w = &self.word[id as usize * d..(id as usize + 1) * d];
            let p = &self.position[(first_position + i) * d..(first_position + i + 1) * d];
            for ((o, a), b) in row.iter_mut().zip(w).zip(p) {
                *o = a + b;
            }
            if let Some(t) = &self.token_type {
                row.iter_mut().zip(t).for_each(|(o, t)| *o += t);
            }
        }
        kernels::layer_norm(x, &self.emb_ln_g, &self.emb_ln_b, c.layer_norm_eps);
        let scale = 1.0 / (dh as f32).sqrt();
        let l = c.max_seq_length;
        for layer in &self.layers {
            let x = &mut s.x.as_mut_slice()[..n * d];
            let qkv = grow(&mut s.qkv, n * 3 * d);
            linear(x, &layer.qkv_w, qkv, n, false);
            kernels::add_bias(qkv, &layer.qkv_b);
            let scores = grow(&mut s.scores, n * n);
            let ctx = grow(&mut s.ctx, n * d);
            let row = 3 * d as isize;
            for h in 0..heads {
                // Token-major views of this head's q, k and v (n x dh, row stride 3d).
                let (q, k, v) = (&qkv[h * dh..], &qkv[d + h * dh..], &qkv[2 * d + h * dh..]);
                // SAFETY (both products): the views stay inside qkv, scores and ctx.
                // scores^T = K Q^T, written query-major: row i of `scores` is query i.
                unsafe {
                    kernels::gemm(
                        n,
                        n,
                        dh,
                        scores.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        View { ptr: k.as_ptr(), rs: row, cs: 1 },
                        View { ptr: q.as_ptr(), rs: 1, cs: row },
                        scale,
                    )
                };
                let bias = self.relative_bias.as_ref().map(|b| &b[h][l - n..l + n - 1]);
                kernels::softmax_rows(scores, n, bias);
                // ctx_h^T = V^T P^T, written token-major into ctx's columns of head h.
                unsafe {
                    kernels::gemm(
                        dh,
                        n,
                        n,
                        ctx[h * dh..].as_mut_ptr(),
                        1,
                        d as isize,
                        false,
                        View { ptr: v.as_ptr(), rs: 1, cs: row },
                        View::transposed(scores, n),
                        1.0,
                    )
                };
            }
            // x = LayerNorm(x + ctx W_o^T + b_o)
            linear(ctx, &layer.out_w, x, n, true);
            kernels::add_bias(x, &layer.out_b);
            kernels::layer_norm(x, &layer.ln1_g, &layer.ln1_b, c.layer_norm_eps);
            let ff = grow(&mut s.ff, n * ffw);
            linear(x, &layer.ff1_w, ff, n, false);
            kernels::add_bias_gelu(ff, &layer.ff1_b);
            linear(ff, &layer.ff2_w, x, n, true);
            kernels::add_bias(x, &layer.ff2_b);
            kernels::layer_norm(x, &layer.ln2_g, &layer.ln2_b, c.layer_norm_eps);
        }
        &s.x.as_slice()[..n * d]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The packed layer equals `Y [+]= X W^T` by definition: a last panel of fewer rows, more
    /// tokens than one gemm call takes, and accumulation.
    #[test]
    fn packed_linear_is_x_times_w_transposed() {
        let (out, inp, n) = (PANEL + 13, 37, 2 * tokens_per_call() + 5);
        let w: Vec<f32> = (0..out * inp).map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0).collect();
        let x: Vec<f32> = (0..n * inp).map(|i| ((i * 104_729) % 17) as f32 / 8.0 - 1.0).collect();
        let packed = Packed::new(&w, out, inp);
        let start: Vec<f32> = (0..n * out).map(|i| (i % 5) as f32).collect();
        for accumulate in [false, true] {
            let mut y = start.clone();
            linear(&x, &packed, &mut y, n, accumulate);
            for t in 0..n {
                for o in 0..out {
                    let dot: f64 = (0..inp)
                        .map(|k| f64::from(x[t * inp + k]) * f64::from(w[o * inp + k]))
                        .sum();
                    let want = dot + if accumulate { f64::from(start[t * out + o]) } else { 0.0 };
                    let got = f64::from(y[t * out + o]);
                    assert!((got - want).abs() < 1e-4, "({t}, {o}): {got} vs {want}");
                }
            }
        }
    }
}
