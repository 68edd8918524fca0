//! The in-memory table every stage works on: a row-major feature matrix and raw labels.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::io::Write;

use rayon::prelude::*;

/// Rows of features (row-major, `f32::NAN` = missing) with their labels as the source wrote
/// them (for example -1 and 1), or no labels at all for rows to score. f32 keeps a million
/// rows of 30 features at 120 MB.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub features: Vec<String>,
    pub target: String,
    pub x: Vec<f32>,
    pub labels: Vec<i64>,
}

impl Dataset {
    pub fn new(features: Vec<String>, target: String) -> Dataset {
        Dataset { features, target, x: Vec::new(), labels: Vec::new() }
    }

    pub fn n_rows(&self) -> usize {
        self.x.len() / self.n_features().max(1)
    }

    /// Whether the rows carry labels (every row does, or none).
    pub fn is_labelled(&self) -> bool {
        !self.labels.is_empty()
    }

    pub fn n_features(&self) -> usize {
        self.features.len()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        let n = self.n_features();
        &self.x[i * n..(i + 1) * n]
    }

    /// The present (non-missing) values of column `j`, for statistics.
    pub fn column_values(&self, j: usize) -> Vec<f64> {
        self.x.chunks_exact(self.n_features()).map(|row| row[j]).filter(|v| !v.is_nan()).map(f64::from).collect()
    }

    /// Missing cells per column.
    pub fn missing_per_column(&self) -> Vec<usize> {
        let mut missing = vec![0; self.n_features()];
        for row in self.x.chunks_exact(self.n_features()) {
            for (count, v) in missing.iter_mut().zip(row) {
                *count += v.is_nan() as usize;
            }
        }
        missing
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let mut out = Dataset::new(self.features.clone(), self.target.clone());
        out.x.reserve(indices.len() * self.n_features());
        out.labels.reserve(indices.len());
        for &i in indices {
            out.x.extend_from_slice(self.row(i));
            out.labels.push(self.labels[i]);
        }
        out
    }

    /// Every row's identity for duplicate detection (features only, or features and label),
    /// hashed once, in parallel.
    pub fn row_keys(&self, with_label: bool) -> Vec<RowKey<'_>> {
        (0..self.n_rows())
            .into_par_iter()
            .map(|i| {
                let (values, label) = (self.row(i), with_label.then_some(self.labels[i]));
                RowKey { hash: row_hash(values, label), values, label }
            })
            .collect()
    }

    /// How many rows repeat an earlier row exactly (features and label).
    pub fn duplicate_rows(&self) -> usize {
        let mut seen = RowSet::with_capacity_and_hasher(self.n_rows(), Default::default());
        self.row_keys(true).into_iter().filter(|key| !seen.insert(*key)).count()
    }

    /// Groups of identical feature vectors: the group id of every row, in first-seen order,
    /// and the number of groups.
    pub fn feature_groups(&self) -> (Vec<usize>, usize) {
        group_ids(self.row_keys(false))
    }

    /// Writes the table as CSV: a header, integer codes as integers, missing cells empty.
    pub fn write_csv(&self, out: &mut dyn Write) -> std::io::Result<()> {
        self.write_csv_with(out, &[], |_, _| Ok(()))
    }

    /// Writes the table as CSV with `extra` columns after the label, filled by `fill` per row.
    pub fn write_csv_with(
        &self,
        out: &mut dyn Write,
        extra: &[&str],
        mut fill: impl FnMut(usize, &mut Vec<u8>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let target = self.is_labelled().then_some(self.target.as_str());
        let header: Vec<&str> =
            self.features.iter().map(String::as_str).chain(target).chain(extra.iter().copied()).collect();
        writeln!(out, "{}", header.join(","))?;
        let mut line = Vec::with_capacity(8 * (self.n_features() + 1));
        for i in 0..self.n_rows() {
            line.clear();
            for &v in self.row(i) {
                write_value(&mut line, v);
                line.push(b',');
            }
            if let Some(label) = self.labels.get(i) {
                write!(line, "{label},")?;
            }
            fill(i, &mut line)?;
            if line.last() == Some(&b',') {
                line.pop();
            }
            line.push(b'\n');
            out.write_all(&line)?;
        }
        Ok(())
    }
}

/// Groups of identical rows of a row-major matrix (see [`Dataset::feature_groups`]).
pub fn row_groups(x: &[f32], n_features: usize) -> (Vec<usize>, usize) {
    let keys = x
        .par_chunks_exact(n_features)
        .map(|values| RowKey { hash: row_hash(values, None), values, label: None })
        .collect();
    group_ids(keys)
}

fn group_ids(keys: Vec<RowKey<'_>>) -> (Vec<usize>, usize) {
    let mut ids = RowMap::with_capacity_and_hasher(keys.len(), Default::default());
    let groups = keys
        .into_iter()
        .map(|key| {
            let next = ids.len();
            *ids.entry(key).or_insert(next)
        })
        .collect();
    (groups, ids.len())
}

/// Codes are small integers: write the common ones without going through the formatter.
fn write_value(line: &mut Vec<u8>, v: f32) {
    match v {
        v if v.is_nan() => {}
        -1.0 => line.extend_from_slice(b"-1"),
        0.0 => line.push(b'0'),
        1.0 => line.push(b'1'),
        v => {
            let _ = write!(line, "{v}");
        }
    }
}

/// A row compared by the bits of its values, so rows can be hashed without copying them.
/// The hash is computed once ([`Dataset::row_keys`]); maps of keys only pass it through.
#[derive(Debug, Clone, Copy)]
pub struct RowKey<'a> {
    hash: u64,
    values: &'a [f32],
    label: Option<i64>,
}

pub type RowSet<'a> = HashSet<RowKey<'a>, BuildHasherDefault<PassThroughHasher>>;
pub type RowMap<'a, V> = HashMap<RowKey<'a>, V, BuildHasherDefault<PassThroughHasher>>;

/// FxHash-style mixing of the values' bits with a final avalanche: several times faster than
/// SipHash over millions of rows, and rows are not attacker-chosen keys here.
fn row_hash(values: &[f32], label: Option<i64>) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let mut h = label.map_or(0, |l| l as u64 ^ 0x9e37_79b9);
    for v in values {
        h = (h.rotate_left(5) ^ u64::from(v.to_bits())).wrapping_mul(K);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// A hasher for keys that carry their own hash.
#[derive(Default)]
pub struct PassThroughHasher(u64);

impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("only RowKey, which writes a u64, is hashed with this")
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

impl PartialEq for RowKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.label == other.label
            && self.values.iter().map(|v| v.to_bits()).eq(other.values.iter().map(|v| v.to_bits()))
    }
}

impl Eq for RowKey<'_> {}

impl Hash for RowKey<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[[f32; 2]], labels: &[i64]) -> Dataset {
        let mut d = Dataset::new(vec!["a".into(), "b".into()], "y".into());
        d.x = rows.iter().flatten().copied().collect();
        d.labels = labels.to_vec();
        d
    }

    #[test]
    fn duplicates_and_groups() {
        let d = table(&[[1., 0.], [1., 0.], [1., 0.], [0., -1.]], &[1, 1, -1, 1]);
        assert_eq!(d.duplicate_rows(), 1);
        assert_eq!(d.feature_groups(), (vec![0, 0, 0, 1], 2));
    }

    #[test]
    fn csv_writes_codes_and_leaves_missing_cells_empty() {
        let d = table(&[[1., f32::NAN], [0.5, -1.]], &[1, -1]);
        let mut out = Vec::new();
        d.write_csv(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a,b,y\n1,,1\n0.5,-1,-1\n");
        assert_eq!(d.missing_per_column(), vec![0, 1]);
        assert_eq!(d.column_values(1), vec![-1.0]);
        assert_eq!(d.select(&[1]).labels, vec![-1]);
    }
}
