//! Refresh-ahead: probabilistic early refresh of fresh entries ("XFetch", Vattani,
//! Chierichetti and Lowenstein, *Optimal Probabilistic Cache Stampede Prevention*, VLDB 2015).
//!
//! On a fresh hit with `ttl` seconds of freshness left, the engine refreshes the entry in the
//! background (a conditional request, as for stale-while-revalidate) when
//! `delta × beta × X ≥ ttl`, where `delta` is how long fetching it took (at least
//! `refresh_ahead.min_delta_ms`), `beta` the configured eagerness and `X` an exponential
//! random draw. Hot keys are so refreshed shortly before they expire, at a moment that differs
//! from instance to instance (the jitter that keeps instances from refetching together),
//! and never go stale; cold keys almost never refresh early. RFC 9111 §4.3.1 lets a cache
//! validate a stored response whenever it chooses; clients still get the fresh copy at once.

/// A small, fast pseudo-random generator (xorshift64*): the draws need no more than to be
/// independent of request timing.
#[derive(Clone, Copy, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15 | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `-ln(u)` for `u` in (0, 1] given as the 53 top bits of `bits`: an exponential draw of
/// mean 1. `core` has no `ln` without `std`; this evaluates it from the float's exponent
/// and a short `atanh` series for the mantissa (error below 1e-6, ample for a coin flip).
pub fn exponential(bits: u64) -> f64 {
    // (bits >> 11) + 1 is in [1, 2^53]: u in (0, 1], never 0.
    let u = ((bits >> 11) + 1) as f64 / (1u64 << 53) as f64;
    -ln(u)
}

/// Natural logarithm of a positive, finite `x`.
fn ln(x: f64) -> f64 {
    const LN_2: f64 = core::f64::consts::LN_2;
    let bits = x.to_bits();
    let exponent = ((bits >> 52) & 0x7ff) as i64 - 1023;
    // The mantissa as a number in [1, 2).
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    // ln m = 2 atanh(s), s = (m - 1) / (m + 1) in [0, 1/3).
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = s
        * (1.0
            + s2 * (1.0 / 3.0
                + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0))))));
    exponent as f64 * LN_2 + 2.0 * series
}

/// Whether a hit with `ttl_secs` of freshness left should refresh now (XFetch), for an
/// entry whose fetch took `delta_ms`, with eagerness `beta_percent` (100 = the paper's
/// beta 1) and random `bits`.
pub fn refresh_early(ttl_secs: i64, delta_ms: u64, beta_percent: u32, bits: u64) -> bool {
    if beta_percent == 0 || ttl_secs < 0 {
        return false;
    }
    let reach_ms = delta_ms as f64 * f64::from(beta_percent) / 100.0 * exponential(bits);
    reach_ms >= ttl_secs as f64 * 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_is_accurate_across_the_unit_interval() {
        for (x, expected) in [
            (1.0, 0.0),
            (0.5, -core::f64::consts::LN_2),
            (0.1, -core::f64::consts::LN_10),
            (1e-9, -20.723_265_836_946_41),
            (0.999_999, -1.000_000_5e-6),
        ] {
            let got = ln(x);
            assert!(
                (got - expected).abs() < 1e-6,
                "ln({x}) = {got}, not {expected}"
            );
        }
    }

    #[test]
    fn exponential_draws_have_mean_one_and_are_never_infinite() {
        let mut rng = Rng::new(7);
        let n = 200_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let x = exponential(rng.next_u64());
            assert!(x.is_finite() && x >= 0.0);
            sum += x;
        }
        let mean = sum / f64::from(n);
        assert!((mean - 1.0).abs() < 0.01, "mean {mean}");
        assert_eq!(exponential(u64::MAX), -ln(1.0));
        assert!(exponential(0) < 37.0, "u is never 0");
    }

    #[test]
    fn refresh_gets_likely_only_near_expiry() {
        // delta 1 s, beta 1: P(refresh) = e^(-ttl).
        let mut rng = Rng::new(42);
        let rate = |ttl: i64, rng: &mut Rng| {
            let n = 20_000;
            let hits = (0..n)
                .filter(|_| refresh_early(ttl, 1_000, 100, rng.next_u64()))
                .count();
            hits as f64 / f64::from(n)
        };
        let at_0 = rate(0, &mut rng);
        let at_1 = rate(1, &mut rng);
        let at_5 = rate(5, &mut rng);
        let at_60 = rate(60, &mut rng);
        assert!(at_0 > 0.999, "{at_0}");
        assert!((at_1 - 0.368).abs() < 0.02, "{at_1}");
        assert!((at_5 - 0.0067).abs() < 0.003, "{at_5}");
        assert_eq!(at_60, 0.0);
    }

    #[test]
    fn off_or_stale_never_refreshes_early() {
        assert!(!refresh_early(0, 1_000, 0, 0));
        assert!(!refresh_early(-1, 1_000, 100, 0));
        // A larger beta reaches further ahead.
        let bits = 1u64 << 62; // u = 0.25: X = ln 4 = 1.386
        assert!(!refresh_early(2, 1_000, 100, bits));
        assert!(refresh_early(2, 1_000, 200, bits));
    }
}
