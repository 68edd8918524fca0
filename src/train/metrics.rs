//! Binary classification metrics, equal to scikit-learn 1.9.1's for labels 0/1 with
//! `pos_label=1`.
//!
//! * precision, recall, F1 (`precision_recall_fscore_support(average="binary")`): a zero
//!   denominator gives 0.0, as `zero_division="warn"` does;
//! * accuracy (`accuracy_score`);
//! * ROC-AUC (`roc_auc_score`): the trapezoid rule over `roc_curve(drop_intermediate=True)`,
//!   whose points are the distinct scores, so tied scores make one step; NaN when `y_true`
//!   holds one class only (scikit-learn 1.9.1 warns and returns NaN too; older versions raise);
//! * log loss (`log_loss(labels=[0, 1])`): probabilities clipped to `[eps, 1 - eps]` with
//!   `eps = f64::EPSILON` (`np.finfo(float64).eps`). The explicit labels only matter when one
//!   class is absent from `y_true`, where scikit-learn without them raises;
//! * the confusion matrix (`confusion_matrix(labels=[0, 1])`, so always 2 × 2).
//!
//! Sums over rows use numpy's pairwise summation, so the floats are numpy's, not only close.

use serde::{Deserialize, Serialize};

/// The metrics of one set of predictions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub f1: f64,
    pub precision: f64,
    pub recall: f64,
    /// NaN when there are no rows (stored as `null` in JSON).
    #[serde(with = "nan_as_null")]
    pub accuracy: f64,
    /// NaN when `y_true` holds one class only (stored as `null` in JSON).
    #[serde(with = "nan_as_null")]
    pub roc_auc: f64,
    /// NaN when there are no rows (stored as `null` in JSON).
    #[serde(with = "nan_as_null")]
    pub log_loss: f64,
    /// `confusion[true class][predicted class]`, as scikit-learn's `confusion_matrix`.
    pub confusion: [[u64; 2]; 2],
    /// The number of rows evaluated (the positives are `confusion[1][0] + confusion[1][1]`).
    pub support: u64,
}

impl Metrics {
    /// All metrics of `y_pred` (the model's decisions) and `proba` (its probabilities of
    /// class 1) against `y_true`.
    ///
    /// # Panics
    /// When the lengths differ, a label is not 0 or 1, or a probability is outside [0, 1]
    /// (scikit-learn raises on all of these).
    pub fn compute(y_true: &[u8], y_pred: &[u8], proba: &[f64]) -> Metrics {
        assert_eq!(y_true.len(), proba.len(), "{} labels but {} probabilities", y_true.len(), proba.len());
        check_proba(proba);
        let counts = Counts::of(y_true, y_pred);
        Metrics {
            f1: counts.f1(),
            precision: ratio(counts.tp, counts.tp + counts.fp),
            recall: ratio(counts.tp, counts.tp + counts.fn_),
            accuracy: (counts.tp + counts.tn) as f64 / y_true.len() as f64,
            roc_auc: roc_auc(y_true, proba),
            log_loss: log_loss(y_true, proba),
            confusion: [[counts.tn, counts.fp], [counts.fn_, counts.tp]],
            support: y_true.len() as u64,
        }
    }
}

/// F1 of the positive class, as `f1_score(y_true, y_pred)`: one pass, no allocation.
///
/// # Panics
/// When the lengths differ or a label is not 0 or 1.
pub fn f1(y_true: &[u8], y_pred: &[u8]) -> f64 {
    Counts::of(y_true, y_pred).f1()
}

/// The ROC curve as `roc_curve(y_true, proba)` with `drop_intermediate=True`: points
/// `(fpr, tpr, threshold)` by decreasing threshold, the first being `(0, 0, +inf)`. fpr (tpr)
/// is NaN throughout when there is no negative (positive) row, as scikit-learn's; no rows
/// give no points (scikit-learn raises).
///
/// # Panics
/// When the lengths differ, a label is not 0 or 1, or a probability is not finite.
pub fn roc_curve(y_true: &[u8], proba: &[f64]) -> Vec<(f64, f64, f64)> {
    assert_eq!(y_true.len(), proba.len(), "{} labels but {} probabilities", y_true.len(), proba.len());
    if y_true.is_empty() {
        return Vec::new();
    }
    let steps = drop_intermediate(threshold_steps(y_true, proba));
    let (last_fps, last_tps) = steps.last().map_or((0.0, 0.0), |s| (s.fps, s.tps));
    let rate = |count: f64, total: f64| if total <= 0.0 { f64::NAN } else { count / total };
    let start = Step { fps: 0.0, tps: 0.0, threshold: f64::INFINITY };
    std::iter::once(start).chain(steps).map(|s| (rate(s.fps, last_fps), rate(s.tps, last_tps), s.threshold)).collect()
}

/// The confusion counts; the labels are checked here, in the one pass every metric makes.
struct Counts {
    tn: u64,
    fp: u64,
    fn_: u64,
    tp: u64,
}

impl Counts {
    fn of(y_true: &[u8], y_pred: &[u8]) -> Counts {
        assert_eq!(y_true.len(), y_pred.len(), "{} labels but {} predictions", y_true.len(), y_pred.len());
        let mut c = Counts { tn: 0, fp: 0, fn_: 0, tp: 0 };
        for (&t, &p) in y_true.iter().zip(y_pred) {
            match (t, p) {
                (0, 0) => c.tn += 1,
                (0, 1) => c.fp += 1,
                (1, 0) => c.fn_ += 1,
                (1, 1) => c.tp += 1,
                _ => panic!("labels must be 0 or 1, got true {t} and predicted {p}"),
            }
        }
        c
    }

    /// scikit-learn's form `(1 + β²)·tp / (β²·(tp + fn) + (tp + fp))` with β = 1, not the
    /// harmonic mean of precision and recall, which rounds differently.
    fn f1(&self) -> f64 {
        let denominator = (self.tp + self.fn_) as f64 + (self.tp + self.fp) as f64;
        if denominator == 0.0 {
            0.0
        } else {
            2.0 * self.tp as f64 / denominator
        }
    }
}

/// `numerator / denominator`, 0.0 when the denominator is 0 (`zero_division="warn"`).
fn ratio(numerator: u64, denominator: u64) -> f64 {
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

fn check_proba(proba: &[f64]) {
    if let Some(p) = proba.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        panic!("probabilities must be within [0, 1], got {p}");
    }
}

fn roc_auc(y_true: &[u8], proba: &[f64]) -> f64 {
    let has = |class: u8| y_true.contains(&class);
    if !(has(0) && has(1)) {
        return f64::NAN;
    }
    let curve = roc_curve(y_true, proba);
    // scipy's `trapezoid`: `sum(dx * (y[1:] + y[:-1]) / 2.0)`, evaluated in that order.
    let terms: Vec<f64> = curve.windows(2).map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0).collect();
    0.0 + pairwise_sum(&terms)
}

fn log_loss(y_true: &[u8], proba: &[f64]) -> f64 {
    const EPS: f64 = f64::EPSILON;
    // scikit-learn builds the columns [1 - p, p] first and clips both, so the complement is
    // taken before clipping.
    let losses: Vec<f64> = y_true
        .iter()
        .zip(proba)
        .map(|(&t, &p)| -(if t == 1 { p } else { 1.0 - p }).clamp(EPS, 1.0 - EPS).ln())
        .collect();
    (0.0 + pairwise_sum(&losses)) / losses.len() as f64
}

/// One point of the ROC curve before normalisation: counts at or above `threshold`.
struct Step {
    fps: f64,
    tps: f64,
    threshold: f64,
}

/// `confusion_matrix_at_thresholds`: the scores sorted decreasingly, and the counts at the
/// last row of every run of equal scores (ties are one threshold, so their order is moot).
fn threshold_steps(y_true: &[u8], proba: &[f64]) -> Vec<Step> {
    if let Some(p) = proba.iter().find(|p| !p.is_finite()) {
        panic!("probabilities must be finite, got {p}");
    }
    let mut order: Vec<usize> = (0..proba.len()).collect();
    // partial_cmp (not total_cmp) so that -0.0 and 0.0 tie, as numpy's `diff` sees them.
    order.sort_by(|&a, &b| proba[b].partial_cmp(&proba[a]).expect("finite"));
    let mut steps = Vec::new();
    let mut tps = 0u64;
    for (i, &row) in order.iter().enumerate() {
        tps += match y_true[row] {
            0 => 0,
            1 => 1,
            t => panic!("labels must be 0 or 1, got {t}"),
        };
        let run_ends = order.get(i + 1).is_none_or(|&next| proba[next] != proba[row]);
        if run_ends {
            steps.push(Step { fps: (1 + i as u64 - tps) as f64, tps: tps as f64, threshold: proba[row] });
        }
    }
    steps
}

/// Drops the points collinear with their neighbours (zero second difference of both fps and
/// tps), keeping the first and last, as `roc_curve(drop_intermediate=True)`.
fn drop_intermediate(steps: Vec<Step>) -> Vec<Step> {
    if steps.len() <= 2 {
        return steps;
    }
    let corner = |i: usize| {
        let second = |f: fn(&Step) -> f64| (f(&steps[i + 1]) - f(&steps[i])) - (f(&steps[i]) - f(&steps[i - 1]));
        second(|s| s.fps) != 0.0 || second(|s| s.tps) != 0.0
    };
    let last = steps.len() - 1;
    let keep: Vec<bool> = (0..steps.len()).map(|i| i == 0 || i == last || corner(i)).collect();
    steps.into_iter().zip(keep).filter_map(|(s, k)| k.then_some(s)).collect()
}

/// numpy's `DOUBLE_pairwise_sum`, the inner loop of `np.add.reduce` on a contiguous float64
/// array (the reduction starts from the identity 0.0, which callers add). Reproducing it
/// makes means and areas bit-identical to numpy's rather than merely close.
pub(crate) fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        a.iter().fold(-0.0, |acc, v| acc + v)
    } else if n <= BLOCK {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for chunk in a[8..whole].chunks_exact(8) {
            for (acc, v) in r.iter_mut().zip(chunk) {
                *acc += v;
            }
        }
        let head = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        a[whole..].iter().fold(head, |acc, v| acc + v)
    } else {
        let half = n / 2 - (n / 2) % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// JSON has no NaN: serde_json would write `null` and then refuse to read it back as f64.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        if value.is_nan() {
            serializer.serialize_none()
        } else {
            serializer.serialize_some(value)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perfect_predictions_score_one() {
        let y = [0, 1, 1, 0, 1];
        let proba = [0.1, 0.9, 0.8, 0.3, 0.6];
        let m = Metrics::compute(&y, &y, &proba);
        assert_eq!((m.f1, m.precision, m.recall, m.accuracy, m.roc_auc), (1.0, 1.0, 1.0, 1.0, 1.0));
        assert_eq!(m.confusion, [[2, 0], [0, 3]]);
        assert_eq!(m.support, 5);
    }

    #[test]
    fn no_positive_prediction_gives_zero_not_nan() {
        let m = Metrics::compute(&[0, 1, 1], &[0, 0, 0], &[0.1, 0.2, 0.3]);
        assert_eq!((m.precision, m.recall, m.f1), (0.0, 0.0, 0.0));
        assert_eq!(f1(&[0, 0], &[0, 0]), 0.0);
    }

    #[test]
    fn f1_is_the_count_form() {
        // tp = 2, fp = 1, fn = 1: 4 / 6.
        assert_eq!(f1(&[1, 1, 1, 0, 0], &[1, 1, 0, 1, 0]), 4.0 / 6.0);
    }

    #[test]
    fn all_tied_scores_give_half_auc() {
        let m = Metrics::compute(&[0, 1, 0, 1], &[1, 1, 1, 1], &[0.7; 4]);
        assert_eq!(m.roc_auc, 0.5);
        assert_eq!(m.precision, 0.5);
        assert_eq!(m.recall, 1.0);
    }

    #[test]
    fn one_class_has_no_auc_but_a_log_loss() {
        let m = Metrics::compute(&[1, 1], &[1, 0], &[0.9, 0.4]);
        assert!(m.roc_auc.is_nan());
        assert!(((m.log_loss) - (-(0.9f64.ln() + 0.4f64.ln()) / 2.0)).abs() < 1e-15);
    }

    #[test]
    fn log_loss_clips_certain_mistakes() {
        let m = Metrics::compute(&[1, 0], &[0, 1], &[0.0, 1.0]);
        // A positive at 0 and a negative at 1 both clip to eps: each row loses -ln(eps).
        assert_eq!(m.log_loss, -f64::EPSILON.ln());
    }

    #[test]
    fn roc_curve_drops_collinear_points() {
        // scikit-learn's docstring example, with labels 1/2 recoded 0/1.
        let curve = roc_curve(&[0, 0, 1, 1], &[0.1, 0.4, 0.35, 0.8]);
        let expected = [(0.0, 0.0, f64::INFINITY), (0.0, 0.5, 0.8), (0.5, 0.5, 0.4), (0.5, 1.0, 0.35), (1.0, 1.0, 0.1)];
        assert_eq!(curve, expected);
        // Evenly spaced thresholds on one class's side are collinear: only the ends stay.
        let straight = roc_curve(&[1, 1, 1, 0], &[0.9, 0.8, 0.7, 0.1]);
        assert_eq!(straight, [(0.0, 0.0, f64::INFINITY), (0.0, 1.0 / 3.0, 0.9), (0.0, 1.0, 0.7), (1.0, 1.0, 0.1)]);
    }

    #[test]
    fn roc_curve_of_one_class_is_nan_on_the_missing_axis() {
        let curve = roc_curve(&[1, 1], &[0.2, 0.6]);
        assert!(curve.iter().all(|p| p.0.is_nan()));
        assert_eq!(curve.iter().map(|p| p.1).collect::<Vec<_>>(), [0.0, 0.5, 1.0]);
        assert!(roc_curve(&[], &[]).is_empty());
    }

    #[test]
    fn pairwise_sum_is_exact_on_integers() {
        for n in [0, 1, 7, 8, 9, 127, 128, 129, 1000] {
            let a: Vec<f64> = (0..n).map(|i| (i % 13) as f64).collect();
            assert_eq!(pairwise_sum(&a) + 0.0, a.iter().sum::<f64>());
        }
    }

    #[test]
    fn nan_auc_survives_json() {
        let m = Metrics::compute(&[0, 0], &[0, 1], &[0.2, 0.7]);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("\"roc_auc\":null"));
        let back: Metrics = serde_json::from_str(&json).unwrap();
        assert!(back.roc_auc.is_nan());
        assert_eq!(back.confusion, m.confusion);
        assert_eq!(back.log_loss, m.log_loss);
    }

    #[test]
    #[should_panic(expected = "labels must be 0 or 1")]
    fn other_labels_are_refused() {
        f1(&[2], &[1]);
    }

    #[test]
    #[should_panic(expected = "within [0, 1]")]
    fn probabilities_above_one_are_refused() {
        Metrics::compute(&[1], &[1], &[1.5]);
    }
}
