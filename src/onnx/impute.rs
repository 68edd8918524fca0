//! The fitted KNN imputer as standard ONNX operators, value for value what
//! [`crate::impute::KnnImputer`] (and so scikit-learn's `KNNImputer`) computes.
//!
//! The graph only does work for rows that hold a NaN: an `If` passes a batch without one
//! through unchanged; otherwise those rows are taken out (`Compress`), imputed and put back
//! (`ScatterND`). For them:
//!
//! * **Distances** to every fit row by the expanded form of the nan-euclidean distance
//!   (`|x|² ⋅ m_y + m_x ⋅ |y|² − 2 x ⋅ y` over the coordinates present in both, with matrix
//!   products), divided by the number of shared coordinates. The square root and the factor
//!   `n_features` are left out: they do not change the order, and only the order is used. No
//!   shared coordinate gives +inf (NaN in scikit-learn, which sorts last either way). For data
//!   of small integers, such as the {-1, 0, 1} codes, every step is exact in f32, so ties are
//!   ties exactly as in scikit-learn.
//! * **Donors** of a column are the fit rows where it is present; columns with the same donor
//!   list share one selection.
//! * **Selection** reproduces numpy's `argpartition` for `kth < 3` (`dumb_select_`), which is
//!   what scikit-learn runs for k ≤ 3: k times, the first strict minimum of the remaining
//!   positions is swapped into the next place (`ArgMin` takes the first index of the minimum;
//!   `ScatterElements` moves the displaced value into the vacated slot). With the phishing
//!   data's many equal distances, *which* tied donors are picked decides the value, so the
//!   swaps matter. Larger k needs numpy's quickselect, which has no ONNX form: the export
//!   refuses it.
//! * **Values**: the mean of the picked donors' values, in f64, with weight 0 for a donor at
//!   +inf; the column mean when every picked donor is at +inf.

use std::collections::BTreeMap;

use super::graph::{Attr, Dim, Elem, Graph};
use crate::impute::KnnImputer;

/// The largest k the export reproduces exactly (numpy's `dumb_select_` range).
pub const MAX_K: usize = 3;

/// Adds the imputation of `x` (float [N, F], NaN = missing) to `graph`; returns the imputed
/// tensor's name.
pub fn impute(graph: &mut Graph, imputer: &KnnImputer, x: &str) -> String {
    let nan = graph.op("IsNaN", &[x], vec![]);
    let nan_float = graph.op("Cast", &[&nan], vec![("to", Attr::Int(Elem::Float as i64))]);
    let any_float = graph.op("ReduceMax", &[&nan_float], vec![("keepdims", Attr::Int(0))]);
    let any = graph.op("Cast", &[&any_float], vec![("to", Attr::Int(Elem::Bool as i64))]);

    let mut pass = Graph::new("no_missing_cell", "pass/");
    pass.node("", "Identity", &[x], &["pass/features"], vec![]);
    pass.output("pass/features", Elem::Float, &[Dim::Named("N"), Dim::Fixed(imputer.n_features() as i64)]);

    // The branch takes only `x` from this scope: ONNX Runtime's optimiser warns when it
    // cannot rename an implicit input of a subgraph (it tried with the outer casts).
    let then = impute_rows(imputer, x);
    let features = "features";
    graph.node(
        "",
        "If",
        &[&any],
        &[features],
        vec![("then_branch", Attr::Graph(then)), ("else_branch", Attr::Graph(pass))],
    );
    features.into()
}

/// The `If` branch for a batch with missing cells: imputes the rows that have one.
fn impute_rows(imputer: &KnnImputer, x: &str) -> Graph {
    let n_features = imputer.n_features() as i64;
    let mut g = Graph::new("impute_missing_cells", "impute/");
    let nan = g.op("IsNaN", &[x], vec![]);
    let nan_float = g.op("Cast", &[&nan], vec![("to", Attr::Int(Elem::Float as i64))]);
    let row_has_nan = g.op("ReduceMax", &[&nan_float], vec![("axes", Attr::Ints(vec![1])), ("keepdims", Attr::Int(0))]);
    let row_has_nan = g.op("Cast", &[&row_has_nan], vec![("to", Attr::Int(Elem::Bool as i64))]);
    let rows = g.op("NonZero", &[&row_has_nan], vec![]);
    let rows = g.op("Transpose", &[&rows], vec![("perm", Attr::Ints(vec![1, 0]))]);
    let axis0 = || vec![("axis", Attr::Int(0))];
    let receivers = g.op("Compress", &[x, &row_has_nan], axis0());
    let receivers_nan = g.op("Compress", &[&nan, &row_has_nan], axis0());

    let distances = Distances::add(&mut g, imputer, &receivers, &receivers_nan);
    let mut imputed = receivers;
    for (donors, columns) in donor_groups(imputer) {
        let values = distances.impute_group(&mut g, imputer, &donors);
        let mut in_group = vec![false; imputer.n_features()];
        columns.iter().for_each(|&c| in_group[c] = true);
        let in_group = g.bools("group_columns", &[n_features], &in_group);
        let take = g.op("And", &[&receivers_nan, &in_group], vec![]);
        imputed = g.op("Where", &[&take, &values, &imputed], vec![]);
    }
    g.node("", "ScatterND", &[x, &rows, &imputed], &["impute/features"], vec![]);
    g.output("impute/features", Elem::Float, &[Dim::Named("N"), Dim::Fixed(n_features)]);
    g
}

/// Columns grouped by their donor list (the fit rows where the column is present), in the
/// order of each group's first column.
fn donor_groups(imputer: &KnnImputer) -> Vec<(Vec<i64>, Vec<usize>)> {
    let n_features = imputer.n_features();
    let fit = imputer.fit_matrix();
    let mut groups: BTreeMap<Vec<i64>, Vec<usize>> = BTreeMap::new();
    for column in 0..n_features {
        let donors: Vec<i64> = fit
            .chunks_exact(n_features)
            .enumerate()
            .filter(|(_, row)| !row[column].is_nan())
            .map(|(i, _)| i as i64)
            .collect();
        groups.entry(donors).or_default().push(column);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by_key(|(_, columns)| columns[0]);
    groups
}

/// The receivers' distance keys to every fit row, and the fit rows as f64 for the averages.
struct Distances {
    /// float [R, M]: squared distance over shared coordinates / their number; +inf if none.
    keys: String,
    /// double [M, F]: the fit rows, 0 where missing.
    fit_values: String,
    n_fit_rows: usize,
}

impl Distances {
    fn add(g: &mut Graph, imputer: &KnnImputer, receivers: &str, receivers_nan: &str) -> Distances {
        let n_features = imputer.n_features();
        let fit_matrix = imputer.fit_matrix();
        let n_fit_rows = fit_matrix.len() / n_features;
        let fit = g.floats("fit_rows", &[n_fit_rows as i64, n_features as i64], fit_matrix);
        let zero = g.floats("zero", &[], &[0.0]);
        let to_float = || vec![("to", Attr::Int(Elem::Float as i64))];

        // Receivers: values with 0 for missing, and presence as 1/0.
        let x = g.op("Where", &[receivers_nan, &zero, receivers], vec![]);
        let x_present = g.op("Not", &[receivers_nan], vec![]);
        let x_present = g.op("Cast", &[&x_present], to_float());
        // Fit rows, transposed to [F, M] for the products.
        let fit_t = g.op("Transpose", &[&fit], vec![("perm", Attr::Ints(vec![1, 0]))]);
        let fit_t_nan = g.op("IsNaN", &[&fit_t], vec![]);
        let y = g.op("Where", &[&fit_t_nan, &zero, &fit_t], vec![]);
        let y_present = g.op("Not", &[&fit_t_nan], vec![]);
        let y_present = g.op("Cast", &[&y_present], to_float());

        let x_squared = g.op("Mul", &[&x, &x], vec![]);
        let y_squared = g.op("Mul", &[&y, &y], vec![]);
        let x_part = g.op("MatMul", &[&x_squared, &y_present], vec![]);
        let y_part = g.op("MatMul", &[&x_present, &y_squared], vec![]);
        let cross = g.op("MatMul", &[&x, &y], vec![]);
        let two = g.floats("two", &[], &[2.0]);
        let cross = g.op("Mul", &[&cross, &two], vec![]);
        let sum = g.op("Add", &[&x_part, &y_part], vec![]);
        let sum = g.op("Sub", &[&sum, &cross], vec![]);
        // scikit-learn clips the expanded form's rounding below zero.
        let sum = g.op("Max", &[&sum, &zero], vec![]);
        let shared = g.op("MatMul", &[&x_present, &y_present], vec![]);
        let none_shared = g.op("Equal", &[&shared, &zero], vec![]);
        let ratio = g.op("Div", &[&sum, &shared], vec![]);
        let infinity = g.floats("infinity", &[], &[f32::INFINITY]);
        let keys = g.op("Where", &[&none_shared, &infinity, &ratio], vec![]);

        let fit_nan = g.op("IsNaN", &[&fit], vec![]);
        let fit_zeroed = g.op("Where", &[&fit_nan, &zero, &fit], vec![]);
        let fit_values = g.op("Cast", &[&fit_zeroed], vec![("to", Attr::Int(Elem::Double as i64))]);
        Distances { keys, fit_values, n_fit_rows }
    }

    /// The imputed value of every column for the donors of one group (float [R, F]); the
    /// caller keeps the group's columns.
    fn impute_group(&self, g: &mut Graph, imputer: &KnnImputer, donors: &[i64]) -> String {
        let n_donors = donors.len() as i64;
        // A group whose donors are all the fit rows (every group, when the fit data has no
        // missing cell) needs no mapping between donor positions and fit rows.
        let subset = (donors.len() != self.n_fit_rows).then(|| g.ints("donors", &[n_donors], donors));
        let keys = match &subset {
            None => self.keys.clone(),
            Some(rows) => g.op("Gather", &[&self.keys, rows], vec![("axis", Attr::Int(1))]),
        };
        let positions: Vec<i64> = (0..n_donors).collect();
        let positions = g.ints("positions", &[n_donors], &positions);
        let shape = g.op("Shape", &[&keys], vec![]);
        let positions = g.op("Expand", &[&positions, &shape], vec![]);
        let k = imputer.k().min(donors.len());
        let (picked, picked_keys) = dumb_select(g, keys, positions, k);
        let picked = match &subset {
            None => picked,
            Some(rows) => g.op("Gather", &[rows, &picked], vec![("axis", Attr::Int(0))]),
        };
        self.average(g, imputer, &picked, &picked_keys)
    }

    /// The weighted mean of the picked donors' values (weight 0 at +inf), or the column mean
    /// when every weight is 0; as float.
    fn average(&self, g: &mut Graph, imputer: &KnnImputer, picked: &str, picked_keys: &str) -> String {
        let infinite = g.op("IsInf", &[picked_keys], vec![]);
        let finite = g.op("Not", &[&infinite], vec![]);
        let weights = g.op("Cast", &[&finite], vec![("to", Attr::Int(Elem::Double as i64))]);
        let values = g.op("Gather", &[&self.fit_values, picked], vec![("axis", Attr::Int(0))]);
        let axis2 = g.ints("axis2", &[1], &[2]);
        let weights3 = g.op("Unsqueeze", &[&weights, &axis2], vec![]);
        let weighted = g.op("Mul", &[&values, &weights3], vec![]);
        let axis1 = g.ints("axis1", &[1], &[1]);
        let total = g.op("ReduceSum", &[&weighted, &axis1], vec![("keepdims", Attr::Int(0))]);
        let weight = g.op("ReduceSum", &[&weights, &axis1], vec![("keepdims", Attr::Int(1))]);
        let mean = g.op("Div", &[&total, &weight], vec![]);
        let zero = g.doubles("zero_weight", &[], &[0.0]);
        let no_weight = g.op("Equal", &[&weight, &zero], vec![]);
        let means = imputer.column_means();
        let means = g.doubles("column_means", &[means.len() as i64], means);
        let value = g.op("Where", &[&no_weight, &means, &mean], vec![]);
        g.op("Cast", &[&value], vec![("to", Attr::Int(Elem::Float as i64))])
    }
}

/// numpy's `dumb_select_` on each row of `keys` (float [R, M]) carrying `positions`
/// (int64 [R, M]); returns the `k` picked positions and their keys, each [R, k].
fn dumb_select(g: &mut Graph, mut keys: String, mut positions: String, k: usize) -> (String, String) {
    let axis1 = || vec![("axis", Attr::Int(1))];
    let (start, end, axes) = (g.ints("start", &[1], &[0]), g.ints("end", &[1], &[1]), g.ints("axes", &[1], &[1]));
    let rest = g.ints("rest", &[1], &[i64::MAX]);
    let (mut picked, mut picked_keys) = (Vec::new(), Vec::new());
    for step in 0..k {
        let at = g.op(
            "ArgMin",
            &[&keys],
            vec![("axis", Attr::Int(1)), ("keepdims", Attr::Int(1)), ("select_last_index", Attr::Int(0))],
        );
        picked_keys.push(g.op("GatherElements", &[&keys, &at], axis1()));
        picked.push(g.op("GatherElements", &[&positions, &at], axis1()));
        if step + 1 == k {
            break;
        }
        // Swap the first remaining slot with the minimum's, then drop the first slot.
        for tensor in [&mut keys, &mut positions] {
            let first = g.op("Slice", &[tensor, &start, &end, &axes], vec![]);
            let swapped = g.op("ScatterElements", &[tensor, &at, &first], axis1());
            *tensor = g.op("Slice", &[&swapped, &end, &rest, &axes], vec![]);
        }
    }
    let picked: Vec<&str> = picked.iter().map(String::as_str).collect();
    let picked_keys: Vec<&str> = picked_keys.iter().map(String::as_str).collect();
    (g.op("Concat", &picked, axis1()), g.op("Concat", &picked_keys, axis1()))
}
