//! Logistic regression, fitted by smartcore and kept as plain coefficients.
//!
//! scikit-learn's `LogisticRegression(C)` minimises `C * sum(log-loss) + ||w||^2 / 2`;
//! smartcore minimises `sum(log-loss) + alpha * ||w||^2 / 2` (intercept unpenalised in both),
//! so `alpha = 1 / C` gives the same optimum.

use serde::{Deserialize, Serialize};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression as SmartLogistic, LogisticRegressionParameters};

use super::data::Prepared;
use super::error::{LearnError, Result};
use super::params::param;
use super::predict::{check_rows, sigmoid};

/// Parameters, with scikit-learn's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogisticRegressionParams {
    /// Inverse of the L2 regularisation strength, as scikit-learn's `C`.
    #[serde(rename = "C", alias = "c")]
    pub c: f64,
}

impl Default for LogisticRegressionParams {
    fn default() -> Self {
        LogisticRegressionParams { c: 1.0 }
    }
}

/// A fitted logistic regression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    coefficients: Vec<f64>,
    intercept: f64,
}

impl Logistic {
    /// Fits on every original row (smartcore takes no sample weights, so weighted data is
    /// refused).
    pub fn fit(params: &LogisticRegressionParams, data: &Prepared) -> Result<Self> {
        if !(params.c > 0.0 && params.c.is_finite()) {
            return Err(param("C must be positive"));
        }
        let raw = data.raw();
        if raw.weights().is_some_and(|w| w.iter().any(|&x| x != w[0])) {
            return Err(param("logistic regression takes no unequal sample weights"));
        }
        // Equal weights w scale the loss, as C * w would.
        let scale = raw.weights().map_or(1.0, |w| w[0]);
        data.positive_share().ok_or(LearnError::SingleClass)?;
        let nf = raw.n_features();
        let means = column_means(raw.rows(), nf);
        // Centred features: the same optimum (the unpenalised intercept absorbs the shift),
        // reached in fewer solver iterations.
        let x: Vec<f64> = raw.rows().iter().enumerate().map(|(i, &v)| f64::from(v) - means[i % nf]).collect();
        let x = DenseMatrix::new(raw.n_rows(), nf, x, false).map_err(fit_error)?;
        let y: Vec<u32> = raw.labels().iter().map(|&l| u32::from(l)).collect();
        let smart_params = LogisticRegressionParameters::default().with_alpha(1.0 / (params.c * scale));
        let model = SmartLogistic::fit(&x, &y, smart_params).map_err(fit_error)?;
        let coefficients: Vec<f64> = (0..nf).map(|f| *model.coefficients().get((0, f))).collect();
        let shift: f64 = coefficients.iter().zip(&means).map(|(w, m)| w * m).sum();
        let intercept = *model.intercept().get((0, 0)) - shift;
        Ok(Logistic { coefficients, intercept })
    }

    pub fn n_features(&self) -> usize {
        self.coefficients.len()
    }

    pub fn coefficients(&self) -> &[f64] {
        &self.coefficients
    }

    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// Raw scores `x . w + b`.
    pub fn decision_function(&self, rows: &[f32]) -> Vec<f64> {
        check_rows(rows, self.n_features());
        rows.chunks(self.n_features())
            .map(|row| {
                let dot: f64 = row.iter().zip(&self.coefficients).map(|(&x, w)| f64::from(x) * w).sum();
                dot + self.intercept
            })
            .collect()
    }

    pub fn predict_proba(&self, rows: &[f32]) -> Vec<f64> {
        self.decision_function(rows).into_iter().map(sigmoid).collect()
    }

    /// Class 1 where the raw score is positive.
    pub fn predict(&self, rows: &[f32]) -> Vec<u8> {
        self.decision_function(rows).into_iter().map(|d| u8::from(d > 0.0)).collect()
    }
}

fn column_means(rows: &[f32], nf: usize) -> Vec<f64> {
    let n = (rows.len() / nf) as f64;
    let mut sums = vec![0.0; nf];
    for row in rows.chunks(nf) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    sums.into_iter().map(|s| s / n).collect()
}

fn fit_error(e: smartcore::error::Failed) -> LearnError {
    LearnError::Fit(format!("smartcore: {e}"))
}
