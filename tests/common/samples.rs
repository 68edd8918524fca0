//! Samples for the KS statistic: the shared data set's columns and generated ones (the oracle
//! test and `benches/ks.rs` use the same).

use super::SplitMix as Rng;

/// The 30 feature columns of the phishing data set, split deterministically: every 5th row
/// (row index % 5 == 4) goes to the test side, the others to the train side.
pub fn phishing_columns() -> Vec<(String, Vec<f64>, Vec<f64>)> {
    let mut reader = csv::Reader::from_path(super::phishing_csv()).expect("open phishing.csv");
    let headers = reader.headers().expect("header row").clone();
    let n_features = headers.len() - 1;
    assert_eq!(n_features, 30);
    assert_eq!(&headers[n_features], "Result");
    let mut train = vec![Vec::new(); n_features];
    let mut test = vec![Vec::new(); n_features];
    for (row, record) in reader.records().enumerate() {
        let record = record.expect("CSV record");
        for (column, field) in record.iter().take(n_features).enumerate() {
            let value: f64 = field.trim().parse().expect("numeric feature");
            assert!([-1.0, 0.0, 1.0].contains(&value), "non-ternary value {value}");
            if row % 5 == 4 {
                test[column].push(value);
            } else {
                train[column].push(value);
            }
        }
    }
    assert_eq!((train[0].len(), test[0].len()), (8844, 2211));
    headers
        .iter()
        .take(n_features)
        .zip(train.into_iter().zip(test))
        .map(|(name, (a, b))| (name.to_string(), a, b))
        .collect()
}

/// `n` ternary values: -1 with probability `p_neg`, 0 with `p_zero`, else 1.
pub fn ternary(seed: u64, n: usize, p_neg: f64, p_zero: f64) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let u = rng.uniform();
            if u < p_neg {
                -1.0
            } else if u < p_neg + p_zero {
                0.0
            } else {
                1.0
            }
        })
        .collect()
}

/// `n` continuous values (many distinct: the sorting path), uniform on [shift, shift + 1).
pub fn continuous(seed: u64, n: usize, shift: f64) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..n).map(|_| shift + rng.uniform()).collect()
}
