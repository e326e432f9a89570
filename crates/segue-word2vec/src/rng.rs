//! The seeded generator of the initial vectors and of each job's first draw: ChaCha with 8
//! rounds, seeded from a `u64` as rand_core's `SeedableRng::seed_from_u64` does (PCG32 words
//! as the key), giving exactly the stream of rand_chacha's `ChaCha8Rng` (tested against it)
//! without its dependencies.

/// ChaCha8 over a 64-bit block counter, stream 0.
pub(crate) struct ChaCha8 {
    key: [u32; 8],
    counter: u64,
    block: [u32; 16],
    /// Next unread word of `block` (16: none left).
    index: usize,
}

impl ChaCha8 {
    /// rand_core's `seed_from_u64`: each key word is one PCG32 output.
    pub(crate) fn seed_from_u64(mut state: u64) -> Self {
        const MUL: u64 = 6_364_136_223_846_793_005;
        const INC: u64 = 11_634_580_027_462_260_723;
        let mut key = [0u32; 8];
        for word in &mut key {
            state = state.wrapping_mul(MUL).wrapping_add(INC);
            let xorshifted = (((state >> 18) ^ state) >> 27) as u32;
            *word = xorshifted.rotate_right((state >> 59) as u32);
        }
        ChaCha8 { key, counter: 0, block: [0; 16], index: 16 }
    }

    /// The next 32-bit word.
    pub(crate) fn next_u32(&mut self) -> u32 {
        if self.index == 16 {
            self.refill();
        }
        self.index += 1;
        self.block[self.index - 1]
    }

    /// Two words, the first in the low half (rand's `BlockRng::next_u64`).
    pub(crate) fn next_u64(&mut self) -> u64 {
        let lo = u64::from(self.next_u32());
        (u64::from(self.next_u32()) << 32) | lo
    }

    /// rand's `StandardUniform` f32 in `[0, 1)`: the top 24 bits of a word, scaled.
    pub(crate) fn next_f32(&mut self) -> f32 {
        const SCALE: f32 = 1.0 / (1u32 << 24) as f32;
        SCALE * (self.next_u32() >> 8) as f32
    }

    fn refill(&mut self) {
        // "expand 32-byte k", the key, the block counter, the stream (0).
        let mut input = [0u32; 16];
        input[..4].copy_from_slice(&[0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574]);
        input[4..12].copy_from_slice(&self.key);
        input[12] = self.counter as u32;
        input[13] = (self.counter >> 32) as u32;
        let mut x = input;
        for _ in 0..4 {
            quarter_round(&mut x, 0, 4, 8, 12);
            quarter_round(&mut x, 1, 5, 9, 13);
            quarter_round(&mut x, 2, 6, 10, 14);
            quarter_round(&mut x, 3, 7, 11, 15);
            quarter_round(&mut x, 0, 5, 10, 15);
            quarter_round(&mut x, 1, 6, 11, 12);
            quarter_round(&mut x, 2, 7, 8, 13);
            quarter_round(&mut x, 3, 4, 9, 14);
        }
        for (out, (a, b)) in self.block.iter_mut().zip(x.iter().zip(&input)) {
            *out = a.wrapping_add(*b);
        }
        self.counter = self.counter.wrapping_add(1);
        self.index = 0;
    }
}

#[inline(always)]
fn quarter_round(x: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(16);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(12);
    x[a] = x[a].wrapping_add(x[b]);
    x[d] = (x[d] ^ x[a]).rotate_left(8);
    x[c] = x[c].wrapping_add(x[d]);
    x[b] = (x[b] ^ x[c]).rotate_left(7);
}

#[cfg(test)]
mod tests {
    use rand::{Rng, RngCore, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::ChaCha8;

    #[test]
    fn the_stream_is_rand_chachas_chacha8() {
        for seed in [0, 1, 42, 0x9E37_79B9_7F4A_7C15, u64::MAX] {
            let (mut ours, mut theirs) =
                (ChaCha8::seed_from_u64(seed), ChaCha8Rng::seed_from_u64(seed));
            // Several blocks (rand_chacha buffers four at a time), then mixed widths.
            for i in 0..300 {
                assert_eq!(ours.next_u32(), theirs.next_u32(), "seed {seed}, word {i}");
            }
            for i in 0..200 {
                assert_eq!(ours.next_f32(), theirs.random::<f32>(), "seed {seed}, f32 {i}");
                // An odd number of words before each u64: it straddles blocks too.
                assert_eq!(ours.next_u64(), theirs.next_u64(), "seed {seed}, u64 {i}");
            }
        }
    }
}
