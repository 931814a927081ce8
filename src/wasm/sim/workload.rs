//! Randomness for the simulator: a seeded SplitMix64 generator, Zipf-distributed keys and
//! exponential inter-arrival times (a Poisson request stream).

/// SplitMix64: small, fast, and the same sequence on every platform for a seed.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform float in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// An exponential variate with this mean (inter-arrival time of a Poisson process).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }
}

/// Keys `0..n` with probability proportional to `1 / (rank + 1)^s` (`s = 0` is uniform).
#[derive(Clone, Debug)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n >= 1` keys with exponent `s >= 0`.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut cdf = Vec::with_capacity(n.max(1));
        let mut total = 0.0;
        for rank in 0..n.max(1) {
            total += 1.0 / ((rank + 1) as f64).powf(s);
            cdf.push(total);
        }
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    /// A key.
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let i = self.cdf.partition_point(|&c| c < u);
        i.min(self.cdf.len() - 1) as u64
    }

    /// The probability of key `rank`.
    pub fn probability(&self, rank: usize) -> f64 {
        let hi = self.cdf.get(rank).copied().unwrap_or(0.0);
        let lo = if rank == 0 {
            0.0
        } else {
            self.cdf.get(rank - 1).copied().unwrap_or(0.0)
        };
        hi - lo
    }
}
