//! Training and test examples: every position `t >= 1` of a session (or `t >= n` with
//! [`Sessions::with_min_input`]), its input the previous `min(t, L)` tracks of that session,
//! its target track `t` (DESIGN.md "Protocol").

use segue_core::{Error, Result};

/// The sessions of one split: `flat[offsets[i]..offsets[i + 1]]` is session `i`, played by
/// `users[i]`.
#[derive(Debug, Clone, Copy)]
pub struct Sessions<'a> {
    /// Track ids, session after session.
    pub flat: &'a [u32],
    /// Session boundaries into `flat` (one more than there are sessions).
    pub offsets: &'a [usize],
    /// The user of each session.
    pub users: &'a [u32],
    /// The first position predicted (at least 1): examples have targets at `t >= min_input`.
    pub min_input: usize,
    /// At most this many examples, drawn at random with the seed (`None`: every example).
    pub sample: Option<(usize, u64)>,
}

/// One prediction: position `t` of the session starting at `flat[start]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Example {
    /// Index into `flat` of the session's first track.
    pub start: usize,
    /// The target's position in its session (at least 1).
    pub t: u32,
    /// The session's user.
    pub user: u32,
}

impl<'a> Sessions<'a> {
    /// Checks the boundaries and the users against the track ids.
    pub fn new(flat: &'a [u32], offsets: &'a [usize], users: &'a [u32]) -> Result<Self> {
        if offsets.first() != Some(&0) || offsets.last() != Some(&flat.len()) {
            return Err(Error::InvalidArgument(format!(
                "session offsets must run from 0 to {} (the number of tracks)",
                flat.len()
            )));
        }
        if offsets.windows(2).any(|w| w[0] > w[1]) {
            return Err(Error::InvalidArgument("session offsets must not decrease".into()));
        }
        if users.len() + 1 != offsets.len() {
            return Err(Error::ShapeMismatch {
                what: format!("users (one per session; {} sessions)", offsets.len() - 1),
                expected: offsets.len() - 1,
                found: users.len(),
            });
        }
        Ok(Sessions { flat, offsets, users, min_input: 1, sample: None })
    }

    /// Only targets with at least `n` tracks before them in their session are predicted, in
    /// training and evaluation alike (the authors' code predicts the 4th track of pieces of 4:
    /// `n = 3`). `n = 0` counts as 1.
    pub fn with_min_input(self, n: usize) -> Self {
        Sessions { min_input: n.max(1), ..self }
    }

    /// Every example of every session, sessions in order.
    /// At most `n` examples (`0`: every one), drawn uniformly without replacement with `seed`
    /// and kept in their order: evaluation on a catalogue and a test split too large to rank
    /// whole (the large synthetic preset has millions of test predictions over a million tracks).
    pub fn with_max_examples(self, n: usize, seed: u64) -> Self {
        Sessions { sample: (n > 0).then_some((n, seed)), ..self }
    }

    /// Every example, session after session and position after position (or the sample of
    /// [`Sessions::with_max_examples`], in that order).
    pub fn examples(&self) -> Vec<Example> {
        let mut out = Vec::with_capacity(self.flat.len());
        for (s, w) in self.offsets.windows(2).enumerate() {
            for t in self.min_input..w[1] - w[0] {
                out.push(Example { start: w[0], t: t as u32, user: self.users[s] });
            }
        }
        match self.sample {
            Some((n, seed)) if n < out.len() => {
                let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
                let mut keep = rand::seq::index::sample(&mut rng, out.len(), n).into_vec();
                keep.sort_unstable();
                keep.into_iter().map(|i| out[i]).collect()
            }
            _ => out,
        }
    }

    /// The target of an example.
    pub fn target(&self, e: &Example) -> u32 {
        self.flat[e.start + e.t as usize]
    }

    /// The input window of an example: at most `max_len` tracks before the target.
    pub fn input(&self, e: &Example, max_len: usize) -> &[u32] {
        let end = e.start + e.t as usize;
        &self.flat[end - (e.t as usize).min(max_len)..end]
    }

    /// A batch of examples, inputs left-aligned and padded to the longest.
    pub fn batch(&self, examples: &[Example], max_len: usize) -> Batch {
        let inputs: Vec<&[u32]> = examples.iter().map(|e| self.input(e, max_len)).collect();
        let targets = examples.iter().map(|e| self.target(e)).collect();
        Batch::new(&inputs, targets)
    }
}

/// Model input: `B` sequences left-aligned in a `B x T` grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Track ids, row-major `B x T`; padding holds track 0 and is masked.
    pub ids: Vec<u32>,
    /// Real length of each row (at least 1).
    pub lengths: Vec<usize>,
    /// Width of the grid.
    pub width: usize,
    /// The track to predict for each row (empty when only scoring).
    pub targets: Vec<u32>,
}

impl Batch {
    /// Lays out `inputs` (each non-empty) with their targets.
    pub fn new(inputs: &[&[u32]], targets: Vec<u32>) -> Self {
        let width = inputs.iter().map(|s| s.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![0u32; inputs.len() * width];
        for (row, s) in ids.chunks_exact_mut(width).zip(inputs) {
            row[..s.len()].copy_from_slice(s);
        }
        let lengths = inputs.iter().map(|s| s.len()).collect();
        Batch { ids, lengths, width, targets }
    }

    /// The track ids at real (not padding) positions, row after row.
    pub fn real_ids(&self) -> Vec<u32> {
        self.ids
            .chunks_exact(self.width)
            .zip(&self.lengths)
            .flat_map(|(row, &l)| row[..l].iter().copied())
            .collect()
    }

    /// For each grid position, the index of its real position in [`Batch::real_ids`]
    /// (padding points at 0: its value is never used).
    pub fn grid_to_real(&self) -> Vec<u32> {
        let mut next = 0u32;
        let mut out = Vec::with_capacity(self.ids.len());
        for &l in &self.lengths {
            for p in 0..self.width {
                if p < l {
                    out.push(next);
                    next += 1;
                } else {
                    out.push(0);
                }
            }
        }
        out
    }

    /// Rows in the batch.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }
}
