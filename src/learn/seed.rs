//! Seed derivation: every random stream (a forest's tree, a boosting stage) gets its own
//! seed computed from the model seed and its index, never from thread scheduling, so results
//! do not depend on how rayon spreads the work.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The generator used everywhere in the engine.
pub type Rng = ChaCha8Rng;

/// splitmix64's finaliser: a bijective mix so nearby inputs give unrelated outputs.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of stream `index` of purpose `stream` under `seed`.
pub fn derive(seed: u64, stream: u64, index: u64) -> u64 {
    mix(mix(mix(seed) ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15)) ^ index)
}

/// A generator for stream `index` of purpose `stream` under `seed`.
pub fn rng(seed: u64, stream: u64, index: u64) -> Rng {
    Rng::seed_from_u64(derive(seed, stream, index))
}

/// SplitMix64: a small, fast generator (passes BigCrush) for the bulk draws of bootstrap
/// and subsample, where ChaCha's cost per number would dominate the stage.
pub struct Fast(u64);

impl Fast {
    /// The generator for stream `index` of purpose `stream` under `seed`.
    pub fn new(seed: u64, stream: u64, index: u64) -> Self {
        Fast(derive(seed, stream, index))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) by Lemire's multiply-shift (bias below n / 2^64).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// Stream tags, so that two uses of the same index never share a stream.
pub mod stream {
    pub const TREE: u64 = 1;
    pub const BOOTSTRAP: u64 = 2;
    pub const SUBSAMPLE: u64 = 3;
}
