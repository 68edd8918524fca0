//! Permutation importance, as scikit-learn's `permutation_importance(scoring="f1")`: how much
//! F1 drops on held-out rows when one feature's column is shuffled, which breaks its link to
//! the label and leaves everything else as it was. It needs nothing from the model but
//! predictions, so every family (trees and logistic regression alike) gets the same measure.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::metrics;
use crate::learn::Classifier;

/// How many shuffles each feature's drop is averaged over (scikit-learn's default is 5; one
/// keeps the tracker fast, and on a thousand rows the ranking is already stable).
pub const REPEATS: usize = 1;

/// The mean F1 drop per feature over [`REPEATS`] shuffles of its column in `x` (row-major,
/// `n_features` columns). Deterministic for a seed; features run in parallel.
pub fn permutation_importance<M: Classifier + Sync + ?Sized>(
    model: &M,
    x: &[f32],
    y: &[u8],
    n_features: usize,
    seed: u64,
) -> Vec<f64> {
    if y.is_empty() || n_features == 0 {
        return vec![0.0; n_features];
    }
    let base = metrics::f1(y, &model.predict(x));
    (0..n_features)
        .into_par_iter()
        .map(|j| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (j as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut shuffled = x.to_vec();
            let mut column: Vec<f32> = x.chunks_exact(n_features).map(|row| row[j]).collect();
            let drops: f64 = (0..REPEATS)
                .map(|_| {
                    column.shuffle(&mut rng);
                    for (row, &v) in shuffled.chunks_exact_mut(n_features).zip(&column) {
                        row[j] = v;
                    }
                    base - metrics::f1(y, &model.predict(&shuffled))
                })
                .sum();
            drops / REPEATS as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Predicts the first feature; ignores the second.
    struct First;

    impl Classifier for First {
        fn n_features(&self) -> usize {
            2
        }
        fn predict_proba(&self, rows: &[f32]) -> Vec<f64> {
            rows.chunks_exact(2).map(|r| f64::from(r[0])).collect()
        }
        fn predict(&self, rows: &[f32]) -> Vec<u8> {
            rows.chunks_exact(2).map(|r| u8::from(r[0] > 0.5)).collect()
        }
    }

    #[test]
    fn only_the_feature_the_model_uses_matters() {
        let x: Vec<f32> = (0..400).flat_map(|i| [(i % 2) as f32, ((i / 2) % 2) as f32]).collect();
        let y: Vec<u8> = (0..400).map(|i| (i % 2) as u8).collect();
        let importance = permutation_importance(&First, &x, &y, 2, 7);
        assert!(importance[0] > 0.3, "{importance:?}");
        assert_eq!(importance[1], 0.0);
        assert_eq!(importance, permutation_importance(&First, &x, &y, 2, 7), "deterministic");
    }
}
