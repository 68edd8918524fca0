//! Histograms of per-row statistics by (feature, bin): the only pass over the rows that split
//! search needs. Entries hold `L` lanes of sums (see [`super::criterion`] for what the lanes
//! mean). Large nodes fill them through packs of features ([`super::packing`]): one update
//! per row and pack, then each feature's bins are summed from the pack's cells.

use rayon::prelude::*;

use super::data::Prepared;

/// A histogram entry: `L` lanes of sums.
pub type Entry<const L: usize> = [f64; L];

/// One feature's (or pack's) histogram. It has room for every possible u8 bin so that
/// indexing by a bin needs no bounds check; only the used bins are ever written or read.
pub type FeatureHist<const L: usize> = [Entry<L>; 256];

/// A node's histogram: one [`FeatureHist`] per feature.
pub type Hist<const L: usize> = Vec<FeatureHist<L>>;

/// Below this many row-column updates a histogram is built on one thread: splitting the work
/// costs more than it saves.
const PARALLEL_MIN_WORK: usize = 1 << 17;

/// Below this many rows a node's histogram is built feature by feature: summing pack cells
/// would cost more than the updates it saves.
const PACK_MIN_ROWS: usize = 64;

/// Columns handled together in one pass over the rows, so that several independent
/// accumulations hide each other's store-to-load latency.
const GROUP: usize = 4;

/// A zeroed histogram for every feature of `data`.
pub fn zeroed<const L: usize>(data: &Prepared) -> Hist<L> {
    vec![[[0.0; L]; 256]; data.n_features()]
}

/// Scratch space for the cells of every pack of `data`.
pub fn pack_scratch<const L: usize>(data: &Prepared) -> Hist<L> {
    vec![[[0.0; L]; 256]; data.packing().packs().len()]
}

/// The used part of feature `f`'s histogram.
pub fn bins<'h, const L: usize>(data: &Prepared, hist: &'h Hist<L>, f: usize) -> &'h [Entry<L>] {
    &hist[f][..data.feature_bins(f).len()]
}

/// Fills the histograms of features `feats` (strictly increasing) from the rows `rows` with
/// per-row statistics `vals` (same length); other features are left untouched. `scratch`
/// comes from [`pack_scratch`].
pub fn accumulate<const L: usize>(
    data: &Prepared,
    feats: &[usize],
    rows: &[u32],
    vals: &[Entry<L>],
    hist: &mut Hist<L>,
    scratch: &mut Hist<L>,
) {
    debug_assert!(feats.windows(2).all(|w| w[0] < w[1]));
    if rows.len() < PACK_MIN_ROWS {
        let size = |f: usize| data.feature_bins(f).len();
        return scatter(hist, feats, &|f| data.column(f), &size, rows, vals);
    }
    let packing = data.packing();
    let mut packs: Vec<usize> = feats.iter().map(|&f| packing.place(f).0).collect();
    packs.dedup();
    let cells = |p: usize| packing.packs()[p].cells;
    scatter(scratch, &packs, &|p| packing.codes(p), &cells, rows, vals);
    for &f in feats {
        let (p, k) = packing.place(f);
        let pack = &packing.packs()[p];
        let out = &mut hist[f];
        out[..pack.radices[k]].fill([0.0; L]);
        for (code, cell) in scratch[p][..pack.cells].iter().enumerate() {
            let e = &mut out[pack.digit(k, code)];
            *e = std::array::from_fn(|l| e[l] + cell[l]);
        }
    }
}

/// Zeroes the first `size(c)` entries of each histogram `which` (strictly increasing) of
/// `hist`, then adds each row's statistics to the entry of its code in `column(c)`:
/// `GROUP` columns per pass, in parallel for large work.
fn scatter<'d, const L: usize>(
    hist: &mut [FeatureHist<L>],
    which: &[usize],
    column: &(dyn Fn(usize) -> &'d [u8] + Sync),
    size: &(dyn Fn(usize) -> usize + Sync),
    rows: &[u32],
    vals: &[Entry<L>],
) {
    if rows.len() * which.len() >= PARALLEL_MIN_WORK {
        let mut outs: Vec<&mut FeatureHist<L>> = Vec::with_capacity(which.len());
        let (mut rest, mut base) = (hist, 0);
        for &c in which {
            outs.push(take_one(&mut rest, &mut base, c, size(c)));
        }
        outs.par_chunks_mut(GROUP).zip(which.par_chunks(GROUP)).for_each(|(outs, cs)| {
            let cols: Vec<&[u8]> = cs.iter().map(|&c| column(c)).collect();
            match outs.len() {
                4 => kernel::<4, L>(&cols, outs.try_into().expect("4 columns"), rows, vals),
                3 => kernel::<3, L>(&cols, outs.try_into().expect("3 columns"), rows, vals),
                2 => kernel::<2, L>(&cols, outs.try_into().expect("2 columns"), rows, vals),
                _ => kernel::<1, L>(&cols, outs.try_into().expect("1 column"), rows, vals),
            }
        });
        return;
    }
    // The sequential path allocates nothing: deep trees have many small nodes.
    let (mut rest, mut base) = (hist, 0);
    for cs in which.chunks(GROUP) {
        match cs.len() {
            4 => group::<4, L>(&mut rest, &mut base, cs, column, size, rows, vals),
            3 => group::<3, L>(&mut rest, &mut base, cs, column, size, rows, vals),
            2 => group::<2, L>(&mut rest, &mut base, cs, column, size, rows, vals),
            _ => group::<1, L>(&mut rest, &mut base, cs, column, size, rows, vals),
        }
    }
}

/// One sequential pass over `K` columns, split off the front of `rest`.
fn group<'d, const K: usize, const L: usize>(
    rest: &mut &mut [FeatureHist<L>],
    base: &mut usize,
    cs: &[usize],
    column: &(dyn Fn(usize) -> &'d [u8] + Sync),
    size: &(dyn Fn(usize) -> usize + Sync),
    rows: &[u32],
    vals: &[Entry<L>],
) {
    let mut outs: [&mut FeatureHist<L>; K] = std::array::from_fn(|j| take_one(rest, base, cs[j], size(cs[j])));
    let cols: [&[u8]; K] = std::array::from_fn(|j| column(cs[j]));
    kernel::<K, L>(&cols, &mut outs, rows, vals);
}

/// Splits histogram `c` (at or after `base`) off the front of `rest`, its first `size`
/// entries zeroed.
fn take_one<'h, const L: usize>(
    rest: &mut &'h mut [FeatureHist<L>],
    base: &mut usize,
    c: usize,
    size: usize,
) -> &'h mut FeatureHist<L> {
    let (_, tail) = std::mem::take(rest).split_at_mut(c - *base);
    let (h, tail) = tail.split_first_mut().expect("a histogram per column");
    *rest = tail;
    *base = c + 1;
    h[..size].fill([0.0; L]);
    h
}

/// Turns a parent's histogram into its larger child's by subtracting the smaller child's
/// (features `feats`): the parent-minus-sibling trick that halves the passes over rows.
pub fn subtract<const L: usize>(data: &Prepared, feats: &[usize], parent: &mut Hist<L>, child: &Hist<L>) {
    for &f in feats {
        let n = data.feature_bins(f).len();
        for (p, c) in parent[f][..n].iter_mut().zip(&child[f][..n]) {
            *p = std::array::from_fn(|l| p[l] - c[l]);
        }
    }
}

/// One pass over the rows accumulating `K` columns at once.
fn kernel<const K: usize, const L: usize>(
    cols: &[&[u8]],
    outs: &mut [&mut FeatureHist<L>; K],
    rows: &[u32],
    vals: &[Entry<L>],
) {
    let cols: [&[u8]; K] = std::array::from_fn(|j| cols[j]);
    for (&r, v) in rows.iter().zip(vals) {
        let (r, v) = (r as usize, *v);
        for j in 0..K {
            let e = &mut outs[j][usize::from(cols[j][r])];
            *e = std::array::from_fn(|l| e[l] + v[l]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::data::Samples;

    #[test]
    fn histograms_sum_rows_per_bin_and_subtract_to_the_sibling() {
        // Three features with 2, 3 and 2 bins.
        let rows = [0.0, 0.0, 5.0, 1.0, 1.0, 5.0, 0.0, 2.0, 6.0, 1.0, 2.0, 6.0];
        let p = Prepared::new(&Samples::new(&rows, 3, &[0, 1, 1, 0]).unwrap()).unwrap();
        let all: Vec<u32> = (0..p.n_unique() as u32).collect();
        let vals: Vec<[f64; 2]> = all.iter().map(|&u| [1.0, f64::from(u)]).collect();
        let mut scratch = pack_scratch::<2>(&p);
        let mut parent = zeroed::<2>(&p);
        accumulate(&p, &[0, 1, 2], &all, &vals, &mut parent, &mut scratch);
        for f in 0..3 {
            let w: f64 = bins(&p, &parent, f).iter().map(|e| e[0]).sum();
            assert_eq!(w, 4.0);
        }
        let mut child = zeroed::<2>(&p);
        accumulate(&p, &[0, 1, 2], &all[..1], &vals[..1], &mut child, &mut scratch);
        let mut sibling = zeroed::<2>(&p);
        accumulate(&p, &[0, 1, 2], &all[1..], &vals[1..], &mut sibling, &mut scratch);
        subtract(&p, &[0, 1, 2], &mut parent, &child);
        for f in 0..3 {
            assert_eq!(bins(&p, &parent, f), bins(&p, &sibling, f));
        }
    }

    #[test]
    fn packed_histograms_equal_direct_sums() {
        // 200 rows of features with 2, 3, 2, 2, 3 bins: large enough for the packed path.
        let n = 200;
        let rows: Vec<f32> = (0..n * 5).map(|i| ((i * 7 + i / 5 * 3) % (2 + i % 5 % 2)) as f32).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 3 == 0) as u8).collect();
        let p = Prepared::new(&Samples::new(&rows, 5, &labels).unwrap()).unwrap();
        let all: Vec<u32> = (0..p.n_unique() as u32).collect();
        let vals: Vec<[f64; 2]> = all.iter().map(|&u| [1.0 + f64::from(u), f64::from(u % 7)]).collect();
        let (mut hist, mut scratch) = (zeroed::<2>(&p), pack_scratch::<2>(&p));
        accumulate(&p, &[0, 1, 2, 3, 4], &all, &vals, &mut hist, &mut scratch);
        for f in 0..5 {
            let mut want = vec![[0.0; 2]; p.feature_bins(f).len()];
            for (&u, v) in all.iter().zip(&vals) {
                let b = usize::from(p.column(f)[u as usize]);
                want[b] = [want[b][0] + v[0], want[b][1] + v[1]];
            }
            assert_eq!(bins(&p, &hist, f), &want[..]);
        }
    }
}
