//! Cross-validation folds, as scikit-learn 1.9.1 assigns them.
//!
//! * [`stratified_k_fold`] ports `StratifiedKFold(shuffle=False)._make_test_folds`;
//! * [`stratified_group_k_fold`] ports `StratifiedGroupKFold`'s greedy assignment with a
//!   seeded order of groups (our own draws, not numpy's), and
//!   [`stratified_group_k_fold_unshuffled`] is `StratifiedGroupKFold(shuffle=False)` exactly.
//!
//! Both return the test fold of every row; [`fold_indices`] turns that into row lists.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use thiserror::Error;

use super::metrics::pairwise_sum;

/// Why folds cannot be made (scikit-learn raises `ValueError` in the same cases).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FoldError {
    #[error("cross-validation needs at least 2 folds, got {k}")]
    TooFewFolds { k: usize },
    #[error("cannot make {k} folds of {rows} rows: every fold needs at least one row")]
    MoreFoldsThanRows { k: usize, rows: usize },
    #[error("cannot make {k} folds: no class has {k} members (the largest has {largest})")]
    ClassesTooSmall { k: usize, largest: usize },
    #[error("cannot make {k} folds of {groups} groups: every fold needs at least one group")]
    MoreFoldsThanGroups { k: usize, groups: usize },
    #[error("{rows} labels but {groups} group ids: every row needs one")]
    GroupsLength { rows: usize, groups: usize },
}

/// The test fold (0..k) of every row, as `StratifiedKFold(n_splits=k, shuffle=False)`:
/// classes are numbered by first appearance, every class is spread over the folds by a round
/// robin on the sorted labels, and each class's rows fill the folds in row order, in blocks.
///
/// A class with fewer than `k` members is allowed (scikit-learn warns); some folds then lack
/// it. It is an error only when every class has fewer than `k` members.
pub fn stratified_k_fold(y: &[u8], k: usize) -> Result<Vec<usize>, FoldError> {
    check_folds(k, y.len())?;
    let (encoded, counts) = encode_by_first_appearance(y);
    check_class_sizes(&counts, k)?;
    let allocation = allocate(&counts, k);
    let mut assignment = vec![0; y.len()];
    for (class, per_fold) in allocation.iter().enumerate() {
        let folds = per_fold.iter().enumerate().flat_map(|(fold, &n)| std::iter::repeat_n(fold, n));
        let rows = (0..y.len()).filter(|&row| encoded[row] == class);
        for (row, fold) in rows.zip(folds) {
            assignment[row] = fold;
        }
    }
    Ok(assignment)
}

/// The test fold of every row with every group inside one fold and the class balance kept as
/// well as the groups allow: scikit-learn's `StratifiedGroupKFold(shuffle=True)` greedy
/// algorithm with the order of groups drawn from `seed` (ChaCha8), so deterministic for a seed
/// but not equal to scikit-learn's numpy draws.
pub fn stratified_group_k_fold(y: &[u8], groups: &[usize], k: usize, seed: u64) -> Result<Vec<usize>, FoldError> {
    group_folds(y, groups, k, Some(seed))
}

/// As [`stratified_group_k_fold`] without shuffling: equal to scikit-learn's
/// `StratifiedGroupKFold(n_splits=k, shuffle=False)` (groups taken in increasing id order).
pub fn stratified_group_k_fold_unshuffled(y: &[u8], groups: &[usize], k: usize) -> Result<Vec<usize>, FoldError> {
    group_folds(y, groups, k, None)
}

/// (training rows, validation rows) of every fold, each in increasing row order.
///
/// # Panics
/// When a row's fold is not below `k`.
pub fn fold_indices(assignment: &[usize], k: usize) -> Vec<(Vec<usize>, Vec<usize>)> {
    if let Some(fold) = assignment.iter().find(|&&fold| fold >= k) {
        panic!("fold {fold} of {k} folds");
    }
    (0..k).map(|fold| (0..assignment.len()).partition::<Vec<usize>, _>(|&row| assignment[row] != fold)).collect()
}

/// `_BaseKFold`'s checks: at least two folds, and no more folds than rows.
fn check_folds(k: usize, rows: usize) -> Result<(), FoldError> {
    if k < 2 {
        return Err(FoldError::TooFewFolds { k });
    }
    if k > rows {
        return Err(FoldError::MoreFoldsThanRows { k, rows });
    }
    Ok(())
}

/// scikit-learn raises only when *every* class is smaller than `k`.
fn check_class_sizes(counts: &[usize], k: usize) -> Result<(), FoldError> {
    let largest = counts.iter().copied().max().unwrap_or(0);
    if largest < k {
        return Err(FoldError::ClassesTooSmall { k, largest });
    }
    Ok(())
}

/// Class numbers by order of first appearance (`StratifiedKFold` keeps the data's order that
/// way), and the size of every class.
fn encode_by_first_appearance(y: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let mut number: [Option<usize>; 256] = [None; 256];
    let mut counts = Vec::new();
    let encoded = y
        .iter()
        .map(|&label| {
            let class = *number[label as usize].get_or_insert_with(|| {
                counts.push(0);
                counts.len() - 1
            });
            counts[class] += 1;
            class
        })
        .collect();
    (encoded, counts)
}

/// `allocation[class][fold]`: how many rows of the class go to the fold, from a round robin
/// over the labels sorted by class (`np.bincount(y_order[i::k])`).
fn allocate(counts: &[usize], k: usize) -> Vec<Vec<usize>> {
    let mut allocation = vec![vec![0; k]; counts.len()];
    let sorted = counts.iter().enumerate().flat_map(|(class, &n)| std::iter::repeat_n(class, n));
    for (position, class) in sorted.enumerate() {
        allocation[class][position % k] += 1;
    }
    allocation
}

/// The rows as `StratifiedGroupKFold` sees them: classes and groups numbered in increasing
/// value order (`np.unique`), and the class counts of every group.
struct GroupTable {
    class_sizes: Vec<f64>,
    group_of_row: Vec<usize>,
    /// `class_counts[group][class]`.
    class_counts: Vec<Vec<f64>>,
}

fn group_folds(y: &[u8], groups: &[usize], k: usize, seed: Option<u64>) -> Result<Vec<usize>, FoldError> {
    if groups.len() != y.len() {
        return Err(FoldError::GroupsLength { rows: y.len(), groups: groups.len() });
    }
    check_folds(k, y.len())?;
    let table = GroupTable::new(y, groups);
    check_class_sizes(&table.class_sizes.iter().map(|&n| n as usize).collect::<Vec<_>>(), k)?;
    let n_groups = table.class_counts.len();
    if k > n_groups {
        return Err(FoldError::MoreFoldsThanGroups { k, groups: n_groups });
    }
    let fold_of_group = table.assign(k, group_order(&table.class_counts, seed));
    Ok(table.group_of_row.iter().map(|&group| fold_of_group[group]).collect())
}

impl GroupTable {
    fn new(y: &[u8], groups: &[usize]) -> GroupTable {
        let class_of_row = rank_values(y);
        let group_of_row = rank_values(groups);
        let n_classes = class_of_row.iter().max().map_or(0, |&c| c + 1);
        let n_groups = group_of_row.iter().max().map_or(0, |&g| g + 1);
        let mut class_sizes = vec![0.0; n_classes];
        let mut class_counts = vec![vec![0.0; n_classes]; n_groups];
        for (&class, &group) in class_of_row.iter().zip(&group_of_row) {
            class_sizes[class] += 1.0;
            class_counts[group][class] += 1.0;
        }
        GroupTable { class_sizes, group_of_row, class_counts }
    }

    /// The greedy pass: each group, in `order`, goes to the fold where it best evens out the
    /// class proportions.
    fn assign(&self, k: usize, order: Vec<usize>) -> Vec<usize> {
        let mut per_fold = vec![vec![0.0; self.class_sizes.len()]; k];
        let mut fold_of_group = vec![0; self.class_counts.len()];
        for group in order {
            let counts = &self.class_counts[group];
            let best = find_best_fold(&mut per_fold, &self.class_sizes, counts);
            add(&mut per_fold[best], counts, 1.0);
            fold_of_group[group] = best;
        }
        fold_of_group
    }
}

/// The rank of every value among the distinct values (`np.unique(.., return_inverse=True)`).
fn rank_values<T: Ord + Copy>(values: &[T]) -> Vec<usize> {
    let mut distinct = values.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    values.iter().map(|v| distinct.binary_search(v).expect("present")).collect()
}

/// Groups by decreasing spread of their class counts, most one-sided first (a stable sort, so
/// equal spreads keep the shuffled order, or the id order when not shuffled).
fn group_order(class_counts: &[Vec<f64>], seed: Option<u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..class_counts.len()).collect();
    if let Some(seed) = seed {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    }
    let spread: Vec<f64> = class_counts.iter().map(|counts| std_contiguous(counts)).collect();
    order.sort_by(|&a, &b| spread[b].total_cmp(&spread[a]));
    order
}

/// `_find_best_fold`: the fold whose addition of the group gives the smallest mean over
/// classes of the std over folds of the class proportions; near-ties (`np.isclose`) go to the
/// fold with fewer rows, exact ties to the first fold.
fn find_best_fold(per_fold: &mut [Vec<f64>], class_sizes: &[f64], group: &[f64]) -> usize {
    let mut best = 0;
    let (mut min_eval, mut min_samples) = (f64::INFINITY, f64::INFINITY);
    for fold in 0..per_fold.len() {
        add(&mut per_fold[fold], group, 1.0);
        let eval = imbalance(per_fold, class_sizes);
        add(&mut per_fold[fold], group, -1.0);
        let samples = 0.0 + pairwise_sum(&per_fold[fold]);
        if eval < min_eval || (is_close(eval, min_eval) && samples < min_samples) {
            (best, min_eval, min_samples) = (fold, eval, samples);
        }
    }
    best
}

fn add(target: &mut [f64], counts: &[f64], sign: f64) {
    for (t, c) in target.iter_mut().zip(counts) {
        *t += sign * c;
    }
}

/// `np.mean(np.std(per_fold / class_sizes, axis=0))`. numpy sums along the folds axis (not
/// the contiguous one) element by element in fold order, and along the classes pairwise; the
/// strict `<` in the caller makes the last bit matter, so the order is reproduced.
fn imbalance(per_fold: &[Vec<f64>], class_sizes: &[f64]) -> f64 {
    let k = per_fold.len() as f64;
    let stds: Vec<f64> = (0..class_sizes.len())
        .map(|class| {
            let share = |fold: &Vec<f64>| fold[class] / class_sizes[class];
            let mean = per_fold.iter().fold(0.0, |acc, fold| acc + share(fold)) / k;
            let squares = per_fold.iter().fold(0.0, |acc, fold| acc + (share(fold) - mean) * (share(fold) - mean));
            (squares / k).sqrt()
        })
        .collect();
    (0.0 + pairwise_sum(&stds)) / stds.len() as f64
}

/// `np.std` of a contiguous row (population std, pairwise sums).
fn std_contiguous(values: &[f64]) -> f64 {
    let n = values.len() as f64;
    let mean = (0.0 + pairwise_sum(values)) / n;
    let squares: Vec<f64> = values.iter().map(|v| (v - mean) * (v - mean)).collect();
    ((0.0 + pairwise_sum(&squares)) / n).sqrt()
}

/// `np.isclose(a, b)` with its defaults (rtol 1e-5, atol 1e-8), `b` the reference.
fn is_close(a: f64, b: f64) -> bool {
    ((a - b).abs() <= 1e-8 + 1e-5 * b.abs() && b.is_finite()) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stratified_matches_the_docstring_example() {
        assert_eq!(stratified_k_fold(&[0, 0, 1, 1], 2).unwrap(), [0, 1, 0, 1]);
    }

    #[test]
    fn classes_are_numbered_by_first_appearance() {
        // Label 1 is seen first, so it is class 0 of the round robin: its four rows get folds
        // 0, 0, 1, 2 (in row order), label 0's three rows folds 0, 1, 2.
        assert_eq!(stratified_k_fold(&[1, 1, 1, 0, 0, 0, 1], 3).unwrap(), [0, 0, 1, 0, 1, 2, 2]);
    }

    #[test]
    fn a_small_class_is_allowed_unless_all_are() {
        assert_eq!(stratified_k_fold(&[0, 0, 0, 0, 0, 1], 3).unwrap(), [0, 0, 1, 1, 2, 2]);
        assert_eq!(stratified_k_fold(&[0, 1, 0, 1], 3), Err(FoldError::ClassesTooSmall { k: 3, largest: 2 }));
        assert_eq!(stratified_k_fold(&[1, 1, 1], 3).unwrap(), [0, 1, 2]);
    }

    #[test]
    fn fold_counts_are_checked() {
        assert_eq!(stratified_k_fold(&[0, 1], 1), Err(FoldError::TooFewFolds { k: 1 }));
        assert_eq!(stratified_k_fold(&[0, 1], 3), Err(FoldError::MoreFoldsThanRows { k: 3, rows: 2 }));
        assert_eq!(stratified_k_fold(&[], 2), Err(FoldError::MoreFoldsThanRows { k: 2, rows: 0 }));
        let err = stratified_group_k_fold(&[0, 0, 0, 1, 1, 1], &[1, 1, 1, 2, 2, 2], 3, 0).unwrap_err();
        assert_eq!(err, FoldError::MoreFoldsThanGroups { k: 3, groups: 2 });
        let err = stratified_group_k_fold(&[0, 1], &[1], 2, 0).unwrap_err();
        assert_eq!(err.to_string(), "2 labels but 1 group ids: every row needs one");
    }

    /// scikit-learn's `StratifiedGroupKFold` docstring example.
    const DOC_Y: [u8; 17] = [0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    const DOC_GROUPS: [usize; 17] = [1, 1, 2, 2, 3, 3, 3, 4, 5, 5, 5, 5, 6, 6, 7, 8, 8];

    #[test]
    fn unshuffled_groups_match_the_docstring_example() {
        let folds = stratified_group_k_fold_unshuffled(&DOC_Y, &DOC_GROUPS, 3).unwrap();
        assert_eq!(folds, [1, 1, 1, 1, 0, 0, 0, 2, 2, 2, 2, 2, 0, 0, 0, 1, 1]);
    }

    #[test]
    fn shuffled_groups_stay_whole_and_repeat_for_a_seed() {
        let a = stratified_group_k_fold(&DOC_Y, &DOC_GROUPS, 3, 7).unwrap();
        assert_eq!(a, stratified_group_k_fold(&DOC_Y, &DOC_GROUPS, 3, 7).unwrap());
        for (row, &group) in DOC_GROUPS.iter().enumerate() {
            let first = DOC_GROUPS.iter().position(|&g| g == group).unwrap();
            assert_eq!(a[row], a[first], "group {group} split");
        }
        assert!((0..3).all(|fold| a.contains(&fold)));
    }

    #[test]
    fn fold_indices_partition_the_rows() {
        let folds = fold_indices(&[1, 0, 1, 2, 0], 3);
        assert_eq!(folds[0], (vec![0, 2, 3], vec![1, 4]));
        assert_eq!(folds[1], (vec![1, 3, 4], vec![0, 2]));
        assert_eq!(folds[2], (vec![0, 1, 2, 4], vec![3]));
    }

    #[test]
    fn is_close_is_numpys() {
        assert!(is_close(1.0, 1.0 + 1e-6));
        assert!(!is_close(1.0, 1.0 + 1e-4));
        assert!(!is_close(1.0, f64::INFINITY));
        assert!(is_close(f64::INFINITY, f64::INFINITY));
    }
}
