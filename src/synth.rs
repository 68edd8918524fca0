//! SYNTHETIC data with the schema's shape, for scale tests, drift tests and offline demos.
//! It is not phishing data: features are drawn independently and the label follows a noisy
//! linear rule, tuned only so that the class balance is near the real set's (55.7% class 1).

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dataset::Dataset;
use crate::schema::Schema;

/// Share of rows labelled with the target's second value, as in the real data set.
const POSITIVE_SHARE: f64 = 0.557;
/// Seed of the per-column distributions and label weights: fixed, so that every seed draws
/// rows from the same population and only the rows differ.
const PROFILE_SEED: u64 = 0x5eed_da7a;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthOptions {
    pub rows: usize,
    pub seed: u64,
    /// In [0, 1]: the share of cells in the last `drift_tail` of rows that take their column's
    /// highest code instead of a draw (the distribution's mass moves up). 0 = no drift.
    pub drift: f64,
    pub drift_tail: f64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        SynthOptions { rows: 11_055, seed: 42, drift: 0.0, drift_tail: 0.2 }
    }
}

struct Profile {
    /// Per column: cumulative probabilities of its allowed values.
    cumulative: Vec<Vec<f64>>,
    weights: Vec<f64>,
}

impl Profile {
    fn new(schema: &Schema) -> Profile {
        let mut rng = ChaCha8Rng::seed_from_u64(PROFILE_SEED);
        let cumulative = schema
            .columns
            .iter()
            .map(|column| {
                let raw: Vec<f64> = column.values.iter().map(|_| 0.2 + rng.random::<f64>()).collect();
                let total: f64 = raw.iter().sum();
                raw.iter()
                    .scan(0.0, |acc, p| {
                        Some({
                            *acc += p / total;
                            *acc
                        })
                    })
                    .collect()
            })
            .collect();
        // A few strong signals and many weak ones, like the real set's feature importances.
        let weights = (0..schema.n_features())
            .map(|j| if j % 6 == 1 { 2.0 } else { 0.3 } * (rng.random::<f64>() - 0.3))
            .collect();
        Profile { cumulative, weights }
    }

    fn draw(&self, schema: &Schema, j: usize, u: f64, drifted: bool) -> f32 {
        let values = &schema.columns[j].values;
        let k = self.cumulative[j].iter().position(|&c| u <= c).unwrap_or(values.len() - 1);
        let k = if drifted { values.len() - 1 } else { k };
        values[k] as f32
    }
}

/// Draws `options.rows` synthetic rows.
pub fn generate(schema: &Schema, options: SynthOptions) -> Dataset {
    let profile = Profile::new(schema);
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let n_features = schema.n_features();
    let drift_from = options.rows - (options.rows as f64 * options.drift_tail).round() as usize;
    let mut data = Dataset::new(schema.feature_names(), schema.target.name.clone());
    data.x.reserve(options.rows * n_features);
    let mut scores = Vec::with_capacity(options.rows);
    for i in 0..options.rows {
        let mut score = 0.0;
        for j in 0..n_features {
            let drifted = i >= drift_from && rng.random::<f64>() < options.drift;
            let v = profile.draw(schema, j, rng.random::<f64>(), drifted);
            score += profile.weights[j] * f64::from(v);
            data.x.push(v);
        }
        // Logistic noise makes the rule noisy: some rows are "mislabelled".
        let u: f64 = rng.random::<f64>().clamp(1e-12, 1.0 - 1e-12);
        scores.push(score + 0.5 * (u / (1.0 - u)).ln());
    }
    let threshold = quantile(&scores, 1.0 - POSITIVE_SHARE);
    let [negative, positive] = [schema.target.values[0], schema.target.values[1]];
    data.labels = scores.iter().map(|&s| if s > threshold { positive } else { negative }).collect();
    data
}

fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable_by(f64::total_cmp);
    sorted.get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1))).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_schema_and_the_class_balance() {
        let schema = Schema::embedded();
        let data = generate(&schema, SynthOptions { rows: 5000, ..Default::default() });
        assert_eq!(data.n_rows(), 5000);
        assert!(data.x.iter().all(|v| [-1.0, 0.0, 1.0].contains(v)));
        let positive = data.labels.iter().filter(|&&l| l == 1).count() as f64 / 5000.0;
        assert!((positive - POSITIVE_SHARE).abs() < 0.01, "{positive}");
    }

    #[test]
    fn the_seed_decides_the_rows() {
        let schema = Schema::embedded();
        let options = SynthOptions { rows: 100, ..Default::default() };
        assert_eq!(generate(&schema, options), generate(&schema, options));
        assert_ne!(generate(&schema, options), generate(&schema, SynthOptions { seed: 7, ..options }));
    }
}
