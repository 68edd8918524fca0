//! Train/test splits.
//!
//! `random` reproduces scikit-learn's `train_test_split(test_size=r, random_state=seed)` row for
//! row (numpy's legacy MT19937 permutation), so our numbers compare with the Python original's.
//! `grouped` keeps every copy of a feature vector on one side: this data set holds thousands of
//! exact duplicates, and a random split puts copies of the same row in train and test.

use crate::config::SplitStrategy;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// Splits `n` rows; `groups` (a group id per row) is needed by the grouped strategy.
pub fn split(strategy: SplitStrategy, n: usize, test_ratio: f64, seed: u64, groups: &[usize]) -> Split {
    match strategy {
        SplitStrategy::Random => random(n, test_ratio, seed),
        SplitStrategy::Grouped => grouped(groups, test_ratio, seed),
        SplitStrategy::Ordered => {
            let n_test = test_size(n, test_ratio);
            Split { train: (0..n - n_test).collect(), test: (n - n_test..n).collect() }
        }
    }
}

/// scikit-learn's rounding: the test set gets ceil(ratio · n) rows.
fn test_size(n: usize, ratio: f64) -> usize {
    ((ratio * n as f64).ceil() as usize).min(n.saturating_sub(1)).max(1)
}

/// ShuffleSplit's first split: permutation[:n_test] is test, the next n_train rows train.
fn random(n: usize, ratio: f64, seed: u64) -> Split {
    let n_test = test_size(n, ratio);
    let permutation = Mt19937::new(seed as u32).permutation(n);
    Split { test: permutation[..n_test].to_vec(), train: permutation[n_test..].to_vec() }
}

/// Groups in a seeded random order fill the test set until it holds its share of rows.
fn grouped(groups: &[usize], ratio: f64, seed: u64) -> Split {
    let n_groups = groups.iter().max().map_or(0, |&g| g + 1);
    let mut sizes = vec![0usize; n_groups];
    for &g in groups {
        sizes[g] += 1;
    }
    let target = test_size(groups.len(), ratio);
    let mut in_test = vec![false; n_groups];
    let mut taken = 0;
    for g in Mt19937::new(seed as u32).permutation(n_groups) {
        if taken >= target {
            break;
        }
        in_test[g] = true;
        taken += sizes[g];
    }
    let (test, train) = (0..groups.len()).partition(|&i| in_test[groups[i]]);
    Split { train, test }
}

/// The Mersenne Twister as numpy's legacy `RandomState` seeds and draws it.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    /// numpy's legacy `random_interval`: a uniform integer in [0, max] by masked rejection.
    fn interval(&mut self, max: u32) -> u32 {
        if max == 0 {
            return 0;
        }
        let mask = u32::MAX >> max.leading_zeros();
        loop {
            let value = self.next_u32() & mask;
            if value <= max {
                return value;
            }
        }
    }

    /// `RandomState.permutation(n)`: Fisher–Yates from the end, as numpy's legacy shuffle.
    fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut items: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            let j = self.interval(i as u32) as usize;
            items.swap(i, j);
        }
        items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_reference_sequence() {
        // numpy.random.RandomState(5489).randint(0, 2**32, dtype=np.uint64) starts with the
        // reference implementation's first output for the default seed.
        assert_eq!(Mt19937::new(5489).next_u32(), 3_499_211_612);
    }

    #[test]
    fn grouped_split_keeps_groups_whole() {
        let groups = [0, 1, 0, 2, 3, 1, 4, 0, 5, 6];
        let split = grouped(&groups, 0.3, 1);
        for &t in &split.test {
            assert!(split.train.iter().all(|&r| groups[r] != groups[t]));
        }
        assert_eq!(split.train.len() + split.test.len(), groups.len());
        assert!(split.test.len() >= 3);
    }

    #[test]
    fn ordered_split_takes_the_tail() {
        let split = split(SplitStrategy::Ordered, 10, 0.2, 0, &[]);
        assert_eq!(split.test, vec![8, 9]);
    }
}
