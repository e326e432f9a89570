//! Uncertainty: intervals over seeds and paired tests between two methods on the same
//! predictions.

use segue_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The mean of some runs (seeds) with a 95% interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Number of runs.
    pub n: usize,
    /// Their mean.
    pub mean: f64,
    /// Half the width of the 95% interval: `t(0.975, n - 1) * sd / sqrt(n)` (0 for one run,
    /// which has no spread to measure).
    pub half_width: f64,
}

impl Interval {
    /// The lower end.
    pub fn low(&self) -> f64 {
        self.mean - self.half_width
    }

    /// The upper end.
    pub fn high(&self) -> f64 {
        self.mean + self.half_width
    }
}

/// Two-sided 97.5% quantiles of Student's t for 1 to 30 degrees of freedom.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];

/// The mean of `values` (one per seed) and its 95% t-interval.
pub fn mean_interval(values: &[f64]) -> Result<Interval> {
    if values.is_empty() {
        return Err(Error::Config("an interval needs at least one run".into()));
    }
    if let Some(v) = values.iter().find(|v| !v.is_finite()) {
        return Err(Error::Config(format!("an interval over a value of {v}")));
    }
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return Ok(Interval { n, mean, half_width: 0.0 });
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let t = T975.get(n - 2).copied().unwrap_or(1.960);
    Ok(Interval { n, mean, half_width: t * (var / n as f64).sqrt() })
}

/// The result of a paired bootstrap test of `a - b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedTest {
    /// The mean of `a` minus the mean of `b` over all predictions.
    pub difference: f64,
    /// 95% percentile interval of the difference.
    pub low: f64,
    /// See `low`.
    pub high: f64,
    /// Two-sided p-value of "no difference": the share of resampled differences at least as
    /// far from the observed one as the observed one is from 0 (centred bootstrap), with the
    /// usual +1 correction so it is never 0.
    pub p_value: f64,
    /// Resamples drawn.
    pub resamples: usize,
    /// Clusters resampled (test sessions).
    pub clusters: usize,
}

/// A paired bootstrap over clusters: `a[i]` and `b[i]` are two methods' scores of prediction `i`
/// (e.g. hit@10, or its mean over seeds), `cluster[i]` the test session it belongs to.
/// Predictions of one session are not independent, so whole sessions are drawn with
/// replacement, `resamples` times, from a generator seeded with `seed`.
pub fn paired_bootstrap(
    a: &[f64],
    b: &[f64],
    cluster: &[u32],
    resamples: usize,
    seed: u64,
) -> Result<PairedTest> {
    if a.len() != b.len() || a.len() != cluster.len() {
        return Err(Error::ShapeMismatch {
            what: "paired scores and their clusters".into(),
            expected: a.len(),
            found: if b.len() != a.len() { b.len() } else { cluster.len() },
        });
    }
    if a.is_empty() || resamples == 0 {
        return Err(Error::Config("a paired test needs predictions and resamples".into()));
    }
    // Per cluster: the summed difference and its number of predictions.
    let mut ids: Vec<u32> = cluster.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let mut sum = vec![0f64; ids.len()];
    let mut count = vec![0f64; ids.len()];
    for ((x, y), c) in a.iter().zip(b).zip(cluster) {
        let k = ids.binary_search(c).expect("every cluster is listed");
        sum[k] += x - y;
        count[k] += 1.0;
    }
    let n = a.len() as f64;
    let observed = sum.iter().sum::<f64>() / n;
    let mut rng = SplitMix64(seed);
    let m = ids.len();
    let mut diffs: Vec<f64> = (0..resamples)
        .map(|_| {
            let (mut s, mut c) = (0.0, 0.0);
            for _ in 0..m {
                let k = rng.below(m as u64) as usize;
                s += sum[k];
                c += count[k];
            }
            s / c
        })
        .collect();
    let extreme = diffs.iter().filter(|d| (*d - observed).abs() >= observed.abs()).count();
    diffs.sort_by(f64::total_cmp);
    let at = |q: f64| diffs[((q * resamples as f64) as usize).min(resamples - 1)];
    Ok(PairedTest {
        difference: observed,
        low: at(0.025),
        high: at(0.975),
        p_value: (extreme + 1) as f64 / (resamples + 1) as f64,
        resamples,
        clusters: m,
    })
}

/// SplitMix64 (Steele, Lea, Flood 2014): a small, fixed generator, so a test's resamples are the
/// same on every platform and in every version.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2^-32 for these sizes).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next()) * u128::from(n)) >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_by_hand() {
        let i = mean_interval(&[1.0, 2.0, 3.0]).unwrap();
        // sd = 1, t(0.975, 2) = 4.303: 2 +- 4.303 / sqrt(3).
        assert!((i.mean - 2.0).abs() < 1e-12 && (i.half_width - 4.303 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(mean_interval(&[5.0]).unwrap().half_width, 0.0);
        assert!(mean_interval(&[]).is_err() && mean_interval(&[f64::NAN]).is_err());
    }

    /// A known answer: b is a with every hit of a set of whole sessions removed, so a is better by
    /// a known amount; the same scores give no difference.
    #[test]
    fn paired_bootstrap_known_cases() {
        let sessions = 200u32;
        let cluster: Vec<u32> = (0..sessions).flat_map(|s| [s; 10]).collect();
        let a: Vec<f64> = (0..cluster.len()).map(|i| f64::from(i % 3 == 0)).collect();
        // b misses every hit of the first 60 sessions.
        let b: Vec<f64> =
            a.iter().zip(&cluster).map(|(&x, &c)| if c < 60 { 0.0 } else { x }).collect();
        let t = paired_bootstrap(&a, &b, &cluster, 2000, 7).unwrap();
        let expected = a.iter().zip(&b).map(|(x, y)| x - y).sum::<f64>() / a.len() as f64;
        assert!((t.difference - expected).abs() < 1e-12);
        assert!(t.p_value < 0.001, "{t:?}");
        assert!(t.low > 0.0 && t.low < expected && t.high > expected, "{t:?}");
        assert_eq!(t.clusters, 200);
        let same = paired_bootstrap(&a, &a, &cluster, 2000, 7).unwrap();
        assert_eq!(same.difference, 0.0);
        assert_eq!(same.p_value, 1.0);
        // Noise alone: a difference made of a coin flip per session is not significant.
        let mut rng = SplitMix64(3);
        let coins: Vec<(f64, f64)> =
            (0..sessions).map(|_| ((rng.next() & 1) as f64, (rng.next() & 1) as f64)).collect();
        let c: Vec<f64> = cluster.iter().map(|&s| coins[s as usize].0).collect();
        let d: Vec<f64> = cluster.iter().map(|&s| coins[s as usize].1).collect();
        let t = paired_bootstrap(&c, &d, &cluster, 2000, 7).unwrap();
        assert!(t.p_value > 0.05, "{t:?}");
        // Same seed, same answer.
        assert_eq!(t, paired_bootstrap(&c, &d, &cluster, 2000, 7).unwrap());
        assert!(paired_bootstrap(&a, &b[1..], &cluster, 10, 0).is_err());
    }
}
