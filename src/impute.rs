//! K-nearest-neighbour imputation of missing feature values.
//!
//! [`KnnImputer`] reproduces scikit-learn 1.9.1's
//! `KNNImputer(n_neighbors=k, weights="uniform", metric="nan_euclidean")` value for value:
//!
//! * **Distance** (`sklearn.metrics.pairwise.nan_euclidean_distances`): over the coordinates
//!   present in both rows, `sqrt(sum_sq_diff / n_present_both * n_features)`, evaluated in f64 in
//!   that order (divide, then multiply, then square root) so that tied distances compare equal
//!   exactly as they do in sklearn; `NaN` when the rows share no coordinate.
//! * **Donors** for a column are the fit rows in which that column is present, in fit-row order.
//! * A receiver whose distances to *all* donors of a column are `NaN` gets the column mean of
//!   the fit data.
//! * Otherwise sklearn picks `np.argpartition(dist, k' - 1)[:k']` with `k' = min(k, n_donors)`
//!   and averages the donors' values, giving weight 0 to donors at `NaN` distance. With many
//!   equal distances (the phishing data is ternary) *which* donors are picked depends on
//!   numpy's selection algorithm, so `argpartition` below ports numpy's portable
//!   `introselect_` (`numpy/_core/src/npysort/selection.cpp`, numpy 2.4.6) step for step,
//!   swaps included: for `kth < 3` that is `dumb_select_`, a selection sort that swaps the first
//!   strict minimum into each place; otherwise median-of-3 quickselect with a median-of-medians
//!   fallback. numpy builds for x86-64 also ship an x86-simd-sort `ArgQSelect` (X86_V3 = AVX2
//!   and X86_V4 = AVX-512 dispatch targets) that breaks ties differently; numpy takes it
//!   whenever the CPU supports it unless `NPY_DISABLE_CPU_FEATURES` switches those targets off.
//!   This module follows the portable algorithm, the one numpy runs on any CPU without those
//!   extensions; the oracle test (`tests/impute_oracle.rs`) pins numpy to it.
//! * Columns with no present value at fit time: sklearn silently drops them from the output
//!   (`keep_empty_features=False`); that would break the feature schema, so [`KnnImputer::fit`]
//!   returns [`ImputeError::EmptyColumn`] instead.
//!
//! Exactness: for data whose values are small integers (such as {-1, 0, 1}) every value
//! computed here is bit-identical to sklearn's. For arbitrary reals, sklearn evaluates the
//! squared distance through the expanded form `|x|^2 + |y|^2 - 2 x.y` with BLAS, so the last
//! bits of a distance can differ and exact ties may resolve differently; the imputation rule
//! itself is the same.
//!
//! Cost: rows without a missing value are only scanned (and copied into the output). Each row
//! with missing values costs one pass over the fit matrix plus one selection over the donors
//! per missing column; rows are processed in parallel with rayon, each independently of the
//! others, so the output does not depend on the number of threads.

use std::fmt;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Errors from fitting or applying a [`KnnImputer`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImputeError {
    /// `n_features` was 0.
    #[error("n_features must be at least 1")]
    NoFeatures,
    /// `k` (the number of neighbours) was 0.
    #[error("the number of neighbours k must be at least 1")]
    NoNeighbours,
    /// The input length is not a whole number of rows.
    #[error("input has {len} values, which is not a multiple of n_features = {n_features}")]
    Shape { len: usize, n_features: usize },
    /// `fit` was given no rows.
    #[error("cannot fit a KNN imputer on zero rows")]
    NoRows,
    /// `fit` was given more rows than the imputer can index.
    #[error("cannot fit a KNN imputer on {rows} rows (at most {max})", max = u32::MAX)]
    TooManyRows { rows: usize },
    /// A column has no present value in the fit data, so it has no donors and no mean.
    #[error("column {column} is missing in every fit row: there is nothing to impute it from")]
    EmptyColumn { column: usize },
    /// A value is infinite (only NaN marks a missing value).
    #[error("value at row {row}, column {column} is infinite")]
    Infinite { row: usize, column: usize },
    /// A deserialised imputer is internally inconsistent.
    #[error("inconsistent stored KNN imputer: {0}")]
    Corrupt(String),
}

/// A fitted KNN imputer (uniform weights, nan-euclidean distance); see the module docs.
///
/// Serialises as `k`, `n_features`, the fit matrix (row-major, `null` for a missing value, so
/// the format is valid JSON) and the column means. Deserialisation validates the shapes and
/// rebuilds the internal donor layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "StoredImputer")]
pub struct KnnImputer {
    k: usize,
    n_features: usize,
    /// The fit matrix, row-major, NaN for a missing value (stored as `null`).
    #[serde(serialize_with = "serialize_cells")]
    fit: Vec<f32>,
    /// Mean of the present values of each column, computed as numpy's masked `mean()` does.
    column_means: Vec<f64>,
    /// Column-major copy of `fit` and the donor lists (derived, not serialised), built the
    /// first time a row needs imputing: data without missing values never pays for it.
    #[serde(skip)]
    layout: std::sync::OnceLock<DonorLayout>,
}

/// The fit matrix as a sequence of optional values, without copying it first.
fn serialize_cells<S: serde::Serializer>(cells: &[f32], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(cells.iter().map(|v| (!v.is_nan()).then_some(*v)))
}

/// The serialised form of [`KnnImputer`] (same field names), validated by `TryFrom`.
#[derive(Deserialize)]
struct StoredImputer {
    k: usize,
    n_features: usize,
    fit: Vec<Option<f32>>,
    column_means: Vec<f64>,
}

impl TryFrom<StoredImputer> for KnnImputer {
    type Error = ImputeError;

    fn try_from(stored: StoredImputer) -> Result<Self, ImputeError> {
        let fit = stored.fit.into_iter().map(|v| v.unwrap_or(f32::NAN)).collect();
        let imputer = KnnImputer::from_matrix(stored.k, stored.n_features, fit)?;
        if stored.column_means.len() != imputer.n_features {
            return Err(ImputeError::Corrupt(format!(
                "{} column means for {} features",
                stored.column_means.len(),
                imputer.n_features
            )));
        }
        // The means are derived from the fit matrix; recomputing them catches edited files.
        if stored.column_means.iter().zip(&imputer.column_means).any(|(a, b)| a.to_bits() != b.to_bits()) {
            return Err(ImputeError::Corrupt("column means do not match the fit matrix".into()));
        }
        Ok(imputer)
    }
}

/// numpy: `np.ma.array(col, mask=missing).mean()` is `filled(0).sum() * 1. / count`, the sum a
/// float64 reduction that starts from 0.0. A column with no present value cannot be imputed.
fn column_mean(fit: &[f32], n_features: usize, col: usize) -> Result<f64, ImputeError> {
    let filled: Vec<f64> =
        fit.chunks_exact(n_features).map(|row| if row[col].is_nan() { 0.0 } else { f64::from(row[col]) }).collect();
    let present = fit.chunks_exact(n_features).filter(|row| !row[col].is_nan()).count();
    if present == 0 {
        return Err(ImputeError::EmptyColumn { column: col });
    }
    Ok((0.0 + pairwise_sum(&filled)) * 1.0 / present as f64)
}

/// Fit data in the layout the distance kernel wants.
#[derive(Clone, Default)]
struct DonorLayout {
    n_rows: usize,
    /// Column-major values (`values[col * n_rows + row]`), NaN where missing.
    values: Vec<f32>,
    /// For each column, the fit rows where it is present, ascending: sklearn's potential donors.
    donors: Vec<Vec<u32>>,
}

impl fmt::Debug for DonorLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DonorLayout")
            .field("n_rows", &self.n_rows)
            .field("n_columns", &self.donors.len())
            .finish_non_exhaustive()
    }
}

/// Fit rows per group in the distance kernel: the group's sums and counts stay in registers
/// while the kernel sweeps the receiver's present columns.
const DISTANCE_LANES: usize = 8;

/// Per-thread buffers for imputing one row.
#[derive(Default)]
struct Scratch {
    /// Distance from the current row to every fit row.
    dist: Vec<f64>,
    /// Present columns of the current row: (offset of the column in `values`, value).
    present: Vec<(usize, f64)>,
    /// Missing columns of the current row.
    missing: Vec<usize>,
    /// Distances of the current column's donors, permuted by the selection with `order`.
    donor_dist: Vec<f64>,
    /// Fit-row indices of the current column's donors, permuted by the selection.
    order: Vec<u32>,
    /// Terms of the weighted average.
    terms: Vec<f64>,
}

impl KnnImputer {
    /// Fits the imputer on `x`, a row-major matrix with `n_features` columns in which NaN marks
    /// a missing value; `k` is the number of neighbours (sklearn's `n_neighbors`).
    ///
    /// Fails if the shape is invalid, `k` is 0, a value is infinite, or a column is missing in
    /// every row ([`ImputeError::EmptyColumn`]).
    pub fn fit(x: &[f32], n_features: usize, k: usize) -> Result<Self, ImputeError> {
        check_shape(x.len(), n_features)?;
        if let Some(pos) = x.iter().position(|v| v.is_infinite()) {
            return Err(ImputeError::Infinite { row: pos / n_features, column: pos % n_features });
        }
        Self::from_matrix(k, n_features, x.to_vec())
    }

    /// Builds the imputer from its stored parts, validating them.
    fn from_matrix(k: usize, n_features: usize, fit: Vec<f32>) -> Result<Self, ImputeError> {
        if k == 0 {
            return Err(ImputeError::NoNeighbours);
        }
        check_shape(fit.len(), n_features)?;
        let n_rows = fit.len() / n_features;
        if n_rows == 0 {
            return Err(ImputeError::NoRows);
        }
        if u32::try_from(n_rows).is_err() {
            return Err(ImputeError::TooManyRows { rows: n_rows });
        }
        if let Some(pos) = fit.iter().position(|v| v.is_infinite()) {
            return Err(ImputeError::Corrupt(format!(
                "non-finite value at row {}, column {}",
                pos / n_features,
                pos % n_features
            )));
        }
        let column_means = (0..n_features).map(|col| column_mean(&fit, n_features, col)).collect::<Result<_, _>>()?;
        Ok(KnnImputer { k, n_features, fit, column_means, layout: std::sync::OnceLock::new() })
    }

    /// The column-major layout and donor lists, built on first use.
    fn layout(&self) -> &DonorLayout {
        self.layout.get_or_init(|| {
            let n_rows = self.fit.len() / self.n_features;
            let mut values = vec![f32::NAN; self.fit.len()];
            let mut donors = vec![Vec::new(); self.n_features];
            for (row, cells) in self.fit.chunks_exact(self.n_features).enumerate() {
                for (col, &v) in cells.iter().enumerate() {
                    if !v.is_nan() {
                        values[col * n_rows + row] = v;
                        donors[col].push(row as u32);
                    }
                }
            }
            DonorLayout { n_rows, values, donors }
        })
    }

    /// Number of features (columns) the imputer was fitted on.
    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// The number of neighbours averaged.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The fit rows (the donors), row-major, NaN where missing.
    pub fn fit_matrix(&self) -> &[f32] {
        &self.fit
    }

    /// Each column's mean over the fit rows, for receivers that share no coordinate with any
    /// donor.
    pub fn column_means(&self) -> &[f64] {
        &self.column_means
    }

    /// Returns `x` (row-major, `n_features` columns, NaN = missing) with every missing value
    /// imputed. Rows without missing values are copied unchanged.
    ///
    /// Fails on a shape mismatch or an infinite value.
    pub fn transform(&self, x: &[f32]) -> Result<Vec<f32>, ImputeError> {
        let n_features = self.n_features;
        check_shape(x.len(), n_features)?;
        let mut out = vec![0.0f32; x.len()];
        // One pass: copy each row and, only if it holds a NaN, impute it in place.
        let result = out.par_chunks_mut(n_features).zip(x.par_chunks(n_features)).try_for_each_init(
            Scratch::default,
            |scratch, (row, input)| {
                row.copy_from_slice(input);
                // No short-circuit: this form vectorises, and the row is short.
                if row.iter().fold(true, |ok, v| ok & v.is_finite()) {
                    return Ok(());
                }
                if row.iter().any(|v| v.is_infinite()) {
                    return Err(());
                }
                self.impute_row(row, scratch);
                Ok(())
            },
        );
        if result.is_err() {
            // Report the first infinite value, whichever thread stumbled on one.
            let pos = x.par_iter().position_first(|v| v.is_infinite()).expect("an infinite value was seen");
            return Err(ImputeError::Infinite { row: pos / n_features, column: pos % n_features });
        }
        Ok(out)
    }

    /// Imputes the NaN cells of one row in place (sklearn's `transform` for one receiver).
    fn impute_row(&self, row: &mut [f32], scratch: &mut Scratch) {
        let layout = self.layout();
        let n_rows = layout.n_rows;
        self.distances(row, scratch);
        let Scratch { dist, missing, donor_dist, order, terms, .. } = scratch;

        for &col in missing.iter() {
            let donors = &layout.donors[col];
            order.clear();
            order.extend_from_slice(donors);
            donor_dist.clear();
            donor_dist.resize(donors.len(), 0.0);
            let (gathered, from, all): (&mut [f64], &[u32], &[f64]) = (donor_dist, donors, dist);
            let mut i = 0;
            while i < from.len() {
                gathered[i] = all[from[i] as usize];
                i += 1;
            }
            let k = self.k.min(donors.len());
            argpartition(donor_dist, order, k - 1);
            // NaN sorts last, so the k picked donors are all at NaN distance only if every
            // donor is (sklearn checks the whole row and skips the selection then).
            let value = if donor_dist[..k].iter().all(|d| d.is_nan()) {
                // "receivers with all nan distances impute with mean"
                self.column_means[col]
            } else {
                // np.ma.average(donor values, weights = 1, or 0 for a NaN distance):
                // sum(w * v) / sum(w), both float64 reductions over the k picked donors.
                let values = &layout.values[col * n_rows..(col + 1) * n_rows];
                terms.clear();
                terms.extend(order[..k].iter().zip(&donor_dist[..k]).map(|(&i, d)| {
                    let w = if d.is_nan() { 0.0 } else { 1.0 };
                    f64::from(values[i as usize]) * w
                }));
                let weighted = 0.0 + pairwise_sum(terms);
                terms.clear();
                terms.extend(donor_dist[..k].iter().map(|d| if d.is_nan() { 0.0 } else { 1.0 }));
                let weight = 0.0 + pairwise_sum(terms);
                weighted / weight
            };
            row[col] = value as f32;
        }
    }

    /// Fills `scratch.dist` with the nan_euclidean distance from `row` to every fit row and
    /// `scratch.missing` with the row's missing columns.
    ///
    /// For each fit row the squared differences are summed over the columns in ascending order;
    /// a column missing in the fit row (NaN) contributes exactly 0. sklearn gets the same sum
    /// through `|x|^2 + |y|^2 - 2 x.y` minus the missing-coordinate corrections, which is exact
    /// (and so equal) for small-integer data. The kernel takes `DISTANCE_LANES` fit rows at a
    /// time (contiguous in the column-major layout), so it vectorises across fit rows with each
    /// row's sum still accumulated column by column.
    fn distances(&self, row: &[f32], scratch: &mut Scratch) {
        let layout = self.layout();
        let n_rows = layout.n_rows;
        let Scratch { dist, present, missing, .. } = scratch;

        missing.clear();
        missing.extend((0..row.len()).filter(|&col| row[col].is_nan()));
        present.clear();
        present
            .extend(row.iter().enumerate().filter(|(_, x)| !x.is_nan()).map(|(col, &x)| (col * n_rows, f64::from(x))));
        dist.clear();
        dist.resize(n_rows, f64::NAN);
        let n_features = self.n_features as f64;
        // Slices, not `Vec`s: indexing a slice is a built-in operation even without optimisation.
        let values: &[f32] = &layout.values;
        let dist: &mut [f64] = dist;
        // sklearn: `distances[present_count == 0] = nan; distances /= present_count;
        // distances *= n_features; np.sqrt(distances)`.
        let finish = |sum: f64, shared: f64| {
            if shared == 0.0 {
                f64::NAN
            } else {
                (sum / shared * n_features).sqrt()
            }
        };
        // Plain `while` loops with direct indexing: they vectorise in release builds and, unlike
        // iterator chains, stay reasonably fast in unoptimised (test) builds too.
        let mut first = 0;
        while first + DISTANCE_LANES <= n_rows {
            let mut sum = [0.0f64; DISTANCE_LANES];
            let mut shared = [0.0f64; DISTANCE_LANES];
            for &(offset, x) in present.iter() {
                let base = offset + first;
                let column: &[f32; DISTANCE_LANES] =
                    values[base..base + DISTANCE_LANES].try_into().expect("a whole group");
                let mut lane = 0;
                while lane < DISTANCE_LANES {
                    let diff = x - f64::from(column[lane]);
                    let sq = diff * diff;
                    // NaN exactly when the fit value is missing; otherwise >= 0.
                    let both = sq >= 0.0;
                    sum[lane] += if both { sq } else { 0.0 };
                    shared[lane] += if both { 1.0 } else { 0.0 };
                    lane += 1;
                }
            }
            let mut lane = 0;
            while lane < DISTANCE_LANES {
                dist[first + lane] = finish(sum[lane], shared[lane]);
                lane += 1;
            }
            first += DISTANCE_LANES;
        }
        while first < n_rows {
            let (mut sum, mut shared) = (0.0f64, 0.0f64);
            for &(offset, x) in present.iter() {
                let diff = x - f64::from(values[offset + first]);
                let sq = diff * diff;
                if sq >= 0.0 {
                    sum += sq;
                    shared += 1.0;
                }
            }
            dist[first] = finish(sum, shared);
            first += 1;
        }
    }
}

fn check_shape(len: usize, n_features: usize) -> Result<(), ImputeError> {
    if n_features == 0 {
        return Err(ImputeError::NoFeatures);
    }
    if !len.is_multiple_of(n_features) {
        return Err(ImputeError::Shape { len, n_features });
    }
    Ok(())
}

/// numpy's `DOUBLE_pairwise_sum` (the inner loop of `np.add.reduce` on float64; the reduction
/// itself starts from the identity 0.0, which callers add).
fn pairwise_sum(a: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = a.len();
    if n < 8 {
        let mut res = -0.0;
        for &v in a {
            res += v;
        }
        res
    } else if n <= BLOCK {
        let mut r = [0.0; 8];
        r.copy_from_slice(&a[..8]);
        let mut i = 8;
        while i < n - n % 8 {
            for (j, acc) in r.iter_mut().enumerate() {
                *acc += a[i + j];
            }
            i += 8;
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[i..] {
            res += v;
        }
        res
    } else {
        let mut n2 = n / 2;
        n2 -= n2 % 8;
        pairwise_sum(&a[..n2]) + pairwise_sum(&a[n2..])
    }
}

// ---------------------------------------------------------------------------------------------
// numpy's portable argpartition for float64 (`introselect_<npy::double_tag, arg = true>`).
//
// numpy's arg mode compares `v[tosort[i]]` and swaps `tosort` entries. Here `v[i]` holds the
// value `tosort[i]` points at and every swap moves both arrays, which is the same algorithm
// with contiguous reads. Index arithmetic is signed like numpy's `npy_intp` (the
// median-of-medians branch steps one outside its range before the partition moves back in).
// ---------------------------------------------------------------------------------------------

/// numpy's `Tag::less` for floating point: NaN sorts after every number.
#[inline]
fn less(a: f64, b: f64) -> bool {
    a < b || (b.is_nan() && !a.is_nan())
}

/// Partitions `t` (with its values `v`, `v[i]` belonging to `t[i]`) exactly as
/// `np.argpartition(values, kth)` permutes its index array on a CPU without SIMD dispatch: on
/// return `v[kth]` is the kth smallest value, `v[..kth]` holds no larger and `v[kth + 1..]` no
/// smaller ones, and ties are broken as numpy's portable code breaks them.
fn argpartition(v: &mut [f64], t: &mut [u32], kth: usize) {
    assert_eq!(v.len(), t.len());
    assert!(kth < t.len(), "kth {kth} out of bounds for {} values", t.len());
    introselect(v, t, kth as isize);
}

#[inline]
fn swap(v: &mut [f64], t: &mut [u32], a: isize, b: isize) {
    v.swap(a as usize, b as usize);
    t.swap(a as usize, b as usize);
}

/// `introselect_` with `pivots == NULL`: numpy's single-`kth` call never pops a stored pivot, and
/// storing pivots does not move elements.
fn introselect(v: &mut [f64], t: &mut [u32], kth: isize) {
    let num = v.len() as isize;
    let mut low: isize = 0;
    let mut high = num - 1;
    let at = |v: &[f64], i: isize| v[i as usize];

    // "use a faster O(n*kth) algorithm for very small kth"
    if kth - low < 3 {
        let range = low as usize..=high as usize;
        dumb_select(&mut v[range.clone()], &mut t[range], kth - low);
        return;
    }
    if kth == num - 1 {
        // "useful to check if NaN present via partition(d, (x, -1))"
        let mut maxidx = low;
        let mut maxval = at(v, low);
        for k in low + 1..num {
            if !less(at(v, k), maxval) {
                maxidx = k;
                maxval = at(v, k);
            }
        }
        swap(v, t, kth, maxidx);
        return;
    }

    let mut depth_limit = msb(num) * 2;
    // guarantee three elements
    while low + 1 < high {
        let mut ll = low + 1;
        let mut hh = high;
        if depth_limit > 0 || hh - ll < 5 {
            let mid = low + (high - low) / 2;
            median3_swap(v, t, low, mid, high);
        } else {
            let range = ll as usize..hh as usize;
            let mid = ll + median_of_median5(&mut v[range.clone()], &mut t[range]);
            swap(v, t, mid, low);
            // adapt for the larger partition than med3 pivot
            ll -= 1;
            hh += 1;
        }
        depth_limit -= 1;

        let pivot = at(v, low);
        unguarded_partition(v, t, pivot, &mut ll, &mut hh);
        // move pivot into position
        swap(v, t, low, hh);

        if hh >= kth {
            high = hh - 1;
        }
        if hh <= kth {
            low = ll;
        }
    }
    // two elements
    if high == low + 1 && less(at(v, high), at(v, low)) {
        swap(v, t, high, low);
    }
}

/// `npy_get_msb`: index of the most significant set bit (0 for 0 and 1).
fn msb(mut n: isize) -> isize {
    let mut depth = 0;
    loop {
        n >>= 1;
        if n == 0 {
            return depth;
        }
        depth += 1;
    }
}

/// `dumb_select_`: selection sort of positions `0..=kth`, each time swapping the first strict
/// minimum (under [`less`]) of the remaining positions into place.
///
/// numpy scans once per position, replacing the candidate whenever `less(x, candidate)`. The
/// position that scan settles on is the first one holding a smallest value: no later value
/// equal to it is strictly less, and NaN is strictly greater than every number; if every value
/// is NaN, nothing is less than the first one. So each step here finds the smallest value with
/// a vectorisable reduction and then its first position, which is the same position.
fn dumb_select(v: &mut [f64], t: &mut [u32], kth: isize) {
    let num = v.len();
    for i in 0..=kth as usize {
        let min = nan_last_min(&v[i..]);
        // `==` also equates -0.0 and 0.0, which `less` does not order either. An all-NaN
        // remainder gives +inf and, unless +inf is present, no match: the candidate stays `i`.
        let mut minidx = i;
        let mut k = i;
        while k < num {
            if v[k] == min {
                minidx = k;
                break;
            }
            k += 1;
        }
        v.swap(i, minidx);
        t.swap(i, minidx);
    }
}

/// The smallest non-NaN value of `v`, or +inf if there is none (or it is +inf).
fn nan_last_min(v: &[f64]) -> f64 {
    const LANES: usize = 8;
    let mut lanes = [f64::INFINITY; LANES];
    let mut i = 0;
    while i + LANES <= v.len() {
        let mut lane = 0;
        while lane < LANES {
            // A NaN compares false and leaves the lane as it is.
            let x = v[i + lane];
            lanes[lane] = if x < lanes[lane] { x } else { lanes[lane] };
            lane += 1;
        }
        i += LANES;
    }
    let mut min = f64::INFINITY;
    for &x in lanes.iter().chain(&v[i..]) {
        if x < min {
            min = x;
        }
    }
    min
}

/// `median3_swap_`: moves the median of `low`, `mid`, `high` to `low` and the smallest to
/// `low + 1`.
fn median3_swap(v: &mut [f64], t: &mut [u32], low: isize, mid: isize, high: isize) {
    let at = |v: &[f64], i: isize| v[i as usize];
    if less(at(v, high), at(v, mid)) {
        swap(v, t, high, mid);
    }
    if less(at(v, high), at(v, low)) {
        swap(v, t, high, low);
    }
    // move pivot to low
    if less(at(v, low), at(v, mid)) {
        swap(v, t, low, mid);
    }
    // move 3-lowest element to low + 1
    swap(v, t, mid, low + 1);
}

/// `median5_`: partially sorts positions `0..5` and returns the position of the median.
fn median5(v: &mut [f64], t: &mut [u32]) -> isize {
    if less(v[1], v[0]) {
        swap(v, t, 1, 0);
    }
    if less(v[4], v[3]) {
        swap(v, t, 4, 3);
    }
    if less(v[3], v[0]) {
        swap(v, t, 3, 0);
    }
    if less(v[4], v[1]) {
        swap(v, t, 4, 1);
    }
    if less(v[2], v[1]) {
        swap(v, t, 2, 1);
    }
    if less(v[3], v[2]) {
        if less(v[3], v[1]) {
            1
        } else {
            3
        }
    } else {
        // v[1] and v[2] swapped into order above
        2
    }
}

/// `median_of_median5_`: moves the medians of the blocks of five to the front, selects their
/// median and returns its position.
fn median_of_median5(v: &mut [f64], t: &mut [u32]) -> isize {
    let num = v.len() as isize;
    let nmed = num / 5;
    let mut subleft: isize = 0;
    for i in 0..nmed {
        let s = subleft as usize;
        let m = median5(&mut v[s..], &mut t[s..]);
        swap(v, t, subleft + m, i);
        subleft += 5;
    }
    if nmed > 2 {
        let n = nmed as usize;
        introselect(&mut v[..n], &mut t[..n], nmed / 2);
    }
    nmed / 2
}

/// `unguarded_partition_`: Hoare partition around `pivot`. numpy omits bounds checks because the
/// pivot placement guarantees sentinels; Rust's indexing still checks.
fn unguarded_partition(v: &mut [f64], t: &mut [u32], pivot: f64, ll: &mut isize, hh: &mut isize) {
    loop {
        loop {
            *ll += 1;
            if !less(v[*ll as usize], pivot) {
                break;
            }
        }
        loop {
            *hh -= 1;
            if !less(pivot, v[*hh as usize]) {
                break;
            }
        }
        if *hh < *ll {
            break;
        }
        swap(v, t, *ll, *hh);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAN: f32 = f32::NAN;

    /// Runs the selection on `values` with the identity index array, checks that the values
    /// moved with their indices and that the result is a partition around `kth`, and returns
    /// the index array.
    fn arg(values: &[f64], kth: usize) -> Vec<u32> {
        let mut v = values.to_vec();
        let mut t: Vec<u32> = (0..values.len() as u32).collect();
        argpartition(&mut v, &mut t, kth);
        for (x, &i) in v.iter().zip(&t) {
            assert_eq!(x.to_bits(), values[i as usize].to_bits());
        }
        for x in &v[..kth] {
            assert!(!less(v[kth], *x));
        }
        for x in &v[kth + 1..] {
            assert!(!less(*x, v[kth]));
        }
        let mut sorted = t.clone();
        sorted.sort_unstable();
        assert!(sorted.iter().copied().eq(0..t.len() as u32));
        t
    }

    // Expected index arrays below are numpy 2.4.6's `np.argpartition(d, kth)` on its portable
    // path (NPY_DISABLE_CPU_FEATURES="X86_V3 X86_V4 AVX512_ICL AVX512_SPR").

    #[test]
    fn dumb_select_takes_first_strict_minimum_with_swaps() {
        let v = [1.0, 0., 1., 0., 0., 1., 0., 0., 1., 0.];
        // First strict minima in the current order are swapped in; the displaced elements
        // move to the vacated slots.
        assert_eq!(arg(&v, 2), vec![1, 3, 4, 0, 2, 5, 6, 7, 8, 9]);
    }

    #[test]
    fn introselect_ties_match_numpy() {
        let d = [1.0, 0., 1., 0., 0., 1., 0., 0., 1., 0., 0., 0., 1., 0., 0., 1., 0., 0., 0., 1.].repeat(3);
        assert_eq!(&arg(&d, 2)[..3], &[1, 3, 4]);
        assert_eq!(&arg(&d, 4)[..5], &[26, 50, 49, 27, 30]);
    }

    #[test]
    fn median_of_medians_fallback_matches_numpy() {
        // A "mountain" exhausts the median-of-3 depth limit once.
        let d: Vec<f64> = (0..40).chain((0..39).rev()).map(f64::from).collect();
        let expected = [
            78, 0, 2, 77, 1, 76, 3, 75, 5, 6, 74, 73, 72, 71, 70, 7, 4, 8, 10, 64, 65, 66, 67, 68, 9, 69, 14, 13, 12,
            11, 15, 17, 62, 63, 16, 61, 18, 19, 60, 59, 58, 57, 20, 21, 56, 23, 22, 55, 54, 25, 24, 53, 26, 52, 51, 50,
            49, 30, 29, 28, 27, 48, 31, 47, 46, 45, 44, 43, 42, 37, 36, 35, 34, 33, 32, 41, 40, 38, 39,
        ];
        assert_eq!(arg(&d, 39), expected);
    }

    /// numpy's `dumb_select_` loop, literally.
    #[allow(clippy::needless_range_loop)] // a transcription of numpy's C loop
    fn dumb_select_reference(v: &mut [f64], t: &mut [u32], kth: usize) {
        for i in 0..=kth {
            let mut minidx = i;
            let mut minval = v[i];
            for k in i + 1..v.len() {
                if less(v[k], minval) {
                    minidx = k;
                    minval = v[k];
                }
            }
            v.swap(i, minidx);
            t.swap(i, minidx);
        }
    }

    #[test]
    fn dumb_select_equals_numpys_loop() {
        let pool = [f64::NAN, -0.0, 0.0, 1.0, 2.0, f64::INFINITY];
        let mut state = 12345_u64;
        for n in 1..120usize {
            for round in 0..4 {
                let v: Vec<f64> = (0..n)
                    .map(|_| {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        // Some rounds use only NaN and +inf, the edge cases of the reduction.
                        let r = (state >> 33) as usize;
                        if round == 0 {
                            [f64::NAN, f64::INFINITY][r % 2]
                        } else {
                            pool[r % pool.len()]
                        }
                    })
                    .collect();
                for kth in 0..n.min(3) {
                    let (mut a, mut ta) = (v.clone(), (0..n as u32).collect::<Vec<_>>());
                    let (mut b, mut tb) = (v.clone(), ta.clone());
                    dumb_select(&mut a, &mut ta, kth as isize);
                    dumb_select_reference(&mut b, &mut tb, kth);
                    assert_eq!(ta, tb, "{v:?} kth {kth}");
                }
            }
        }
    }

    #[test]
    fn argpartition_puts_nan_last_and_partitions() {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for n in 1..300usize {
            let v: Vec<f64> = (0..n)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    match state >> 61 {
                        0 => f64::NAN,
                        r => (r % 3) as f64,
                    }
                })
                .collect();
            for kth in [0, 1, 2, 3, 4, n / 2, n - 1] {
                if kth < n {
                    arg(&v, kth);
                }
            }
        }
    }

    #[test]
    fn receiver_sharing_no_coordinate_gets_the_column_mean() {
        // Column 0 present in rows 0 and 1 only; the receiver has only column 1, which rows 0
        // and 1 lack, so every distance to a donor of column 0 is NaN.
        let x = [1.0, NAN, 3.0, NAN, NAN, 5.0];
        let imp = KnnImputer::fit(&x, 2, 1).unwrap();
        let out = imp.transform(&[NAN, 7.0]).unwrap();
        assert_eq!(out, vec![2.0, 7.0]);
        // A row with nothing present gets every mean.
        assert_eq!(imp.transform(&[NAN, NAN]).unwrap(), vec![2.0, 5.0]);
    }

    #[test]
    fn k_larger_than_donor_count_averages_all_donors() {
        // Column 1 has two donors; k = 5 averages both.
        let x = [0.0, 1.0, 1.0, NAN, 2.0, 4.0];
        let imp = KnnImputer::fit(&x, 2, 5).unwrap();
        assert_eq!(imp.transform(&[1.0, NAN]).unwrap(), vec![1.0, 2.5]);
    }

    #[test]
    fn nan_distance_donors_get_zero_weight() {
        // Donors of column 2: rows 0, 1, 2. Row 2 shares no coordinate with the receiver
        // (NaN distance), so with k = 3 only rows 0 and 1 count.
        let x = [
            0.0, NAN, 10.0, //
            1.0, NAN, 20.0, //
            NAN, 5.0, 90.0, //
        ];
        let imp = KnnImputer::fit(&x, 3, 3).unwrap();
        let out = imp.transform(&[0.0, NAN, NAN]).unwrap();
        assert_eq!(out[2], 15.0);
        // Column 1 has a single donor (row 2) at NaN distance: mean.
        assert_eq!(out[1], 5.0);
    }

    #[test]
    fn distance_scales_by_present_coordinates() {
        // Receiver [0, 0, NaN, NaN]. Row 0 = [1, 1, 100, 7]: shares 2 coords, ssd 2,
        // d^2 = 2/2*4 = 4. Row 1 = [2, NaN, 50, 8]: shares 1 coord, ssd 4, d^2 = 4/1*4 = 16.
        // Row 2 = [NaN, 1, 0, 9]: shares 1 coord, ssd 1, d^2 = 4. k = 1 in column 2: rows 0 and
        // 2 tie at distance 2; the first strict minimum in index order (row 0) wins.
        let x = [
            1.0, 1.0, 100.0, 7.0, //
            2.0, NAN, 50.0, 8.0, //
            NAN, 1.0, 0.0, 9.0, //
        ];
        let imp = KnnImputer::fit(&x, 4, 1).unwrap();
        let out = imp.transform(&[0.0, 0.0, NAN, NAN]).unwrap();
        assert_eq!(out, vec![0.0, 0.0, 100.0, 7.0]);
        // With k = 2 the two nearest are rows 0 and 2.
        let imp = KnnImputer::fit(&x, 4, 2).unwrap();
        let out = imp.transform(&[0.0, 0.0, NAN, NAN]).unwrap();
        assert_eq!(out, vec![0.0, 0.0, 50.0, 8.0]);
    }

    #[test]
    fn ties_pick_the_first_rows_in_index_order() {
        // All donors at the same distance: dumb_select keeps the first k in fit order.
        let x = [
            1.0, 1.0, //
            1.0, 2.0, //
            1.0, 3.0, //
            1.0, 4.0, //
        ];
        let imp = KnnImputer::fit(&x, 2, 2).unwrap();
        assert_eq!(imp.transform(&[1.0, NAN]).unwrap(), vec![1.0, 1.5]);
        // A strictly closer donor later in the order is swapped to the front and the element it
        // displaces moves to its slot: values [1, 1, 0, 1] -> order [2, 1, 0, 3] after k = 2.
        let x = [
            1.0, 10.0, //
            1.0, 20.0, //
            0.0, 30.0, //
            1.0, 40.0, //
        ];
        let imp = KnnImputer::fit(&x, 2, 2).unwrap();
        assert_eq!(imp.transform(&[0.0, NAN]).unwrap(), vec![0.0, 25.0]);
    }

    #[test]
    fn complete_rows_are_untouched() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let imp = KnnImputer::fit(&x, 2, 3).unwrap();
        assert_eq!(imp.transform(&[9.0, -9.0, 0.5, 0.25]).unwrap(), vec![9.0, -9.0, 0.5, 0.25]);
        assert_eq!(imp.transform(&[]).unwrap(), Vec::<f32>::new());
        assert_eq!(imp.n_features(), 2);
    }

    #[test]
    fn errors() {
        assert_eq!(KnnImputer::fit(&[1.0, NAN, 2.0, NAN], 2, 1).unwrap_err(), ImputeError::EmptyColumn { column: 1 });
        assert_eq!(KnnImputer::fit(&[1.0], 0, 1).unwrap_err(), ImputeError::NoFeatures);
        assert_eq!(KnnImputer::fit(&[1.0], 1, 0).unwrap_err(), ImputeError::NoNeighbours);
        assert_eq!(KnnImputer::fit(&[], 1, 1).unwrap_err(), ImputeError::NoRows);
        assert_eq!(KnnImputer::fit(&[1.0, 2.0, 3.0], 2, 1).unwrap_err(), ImputeError::Shape { len: 3, n_features: 2 });
        assert_eq!(
            KnnImputer::fit(&[1.0, f32::INFINITY], 2, 1).unwrap_err(),
            ImputeError::Infinite { row: 0, column: 1 }
        );
        let imp = KnnImputer::fit(&[1.0, 2.0], 2, 1).unwrap();
        assert_eq!(imp.transform(&[1.0]).unwrap_err(), ImputeError::Shape { len: 1, n_features: 2 });
        assert_eq!(
            imp.transform(&[1.0, 2.0, NAN, f32::NEG_INFINITY]).unwrap_err(),
            ImputeError::Infinite { row: 1, column: 1 }
        );
        // A column missing in some (not all) rows is fine.
        assert!(KnnImputer::fit(&[1.0, NAN, 2.0, 3.0], 2, 1).is_ok());
    }

    #[test]
    fn serde_round_trip_keeps_behaviour_and_validates() {
        let x = [1.0, NAN, 0.0, 3.0, -1.0, 1.0, NAN, 0.0];
        let imp = KnnImputer::fit(&x, 2, 2).unwrap();
        let json = serde_json::to_string(&imp).unwrap();
        let back: KnnImputer = serde_json::from_str(&json).unwrap();
        let probe = [NAN, 1.0, 0.5, NAN, NAN, NAN];
        let a = imp.transform(&probe).unwrap();
        let b = back.transform(&probe).unwrap();
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        assert!(a.iter().all(|v| v.is_finite()));

        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["fit"].as_array_mut().unwrap().pop();
        assert!(serde_json::from_value::<KnnImputer>(value).is_err());
        let mut value: serde_json::Value = serde_json::from_str(&json).unwrap();
        value["column_means"][0] = serde_json::json!(123.0);
        assert!(serde_json::from_value::<KnnImputer>(value).is_err());
    }

    #[test]
    fn result_does_not_depend_on_thread_count() {
        let mut state = 99_u64;
        let x: Vec<f32> = (0..400 * 6)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                match (state >> 59) % 8 {
                    0 => NAN,
                    r => (r % 3) as f32 - 1.0,
                }
            })
            .collect();
        let imp = KnnImputer::fit(&x[..200 * 6], 6, 3).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let out = pool.install(|| imp.transform(&x).unwrap());
            out.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        };
        let one = run(1);
        assert!(one.iter().all(|&b| f32::from_bits(b).is_finite()));
        assert_eq!(one, run(3));
        assert_eq!(one, run(4));
    }

    #[test]
    fn pairwise_sum_matches_sequential_on_integers() {
        for n in [0, 1, 7, 8, 9, 127, 128, 129, 1000] {
            let a: Vec<f64> = (0..n).map(|i| ((i * 7) % 3) as f64 - 1.0).collect();
            assert_eq!(pairwise_sum(&a), a.iter().sum::<f64>() + 0.0);
        }
    }
}
