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
        let cols: Vec<&[u8]> = feats.iter().map(|&f| data.column(f)).collect();
        let sizes: Vec<usize> = feats.iter().map(|&f| data.feature_bins(f).len()).collect();
        let mut outs = pick(hist, feats, &sizes);
        scatter(&cols, &mut outs, rows, vals);
        return;
    }
    let packing = data.packing();
    let mut packs: Vec<usize> = feats.iter().map(|&f| packing.place(f).0).collect();
    packs.dedup();
    let cols: Vec<&[u8]> = packs.iter().map(|&p| packing.codes(p)).collect();
    let sizes: Vec<usize> = packs.iter().map(|&p| packing.packs()[p].cells).collect();
    let mut outs = pick(scratch, &packs, &sizes);
    scatter(&cols, &mut outs, rows, vals);
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

/// The histograms `which` (strictly increasing) of `hist`, with their first `sizes` entries
/// zeroed.
fn pick<'h, const L: usize>(
    hist: &'h mut Hist<L>,
    which: &[usize],
    sizes: &[usize],
) -> Vec<&'h mut FeatureHist<L>> {
    let mut wanted = which.iter().zip(sizes).peekable();
    let mut out = Vec::with_capacity(which.len());
    for (i, h) in hist.iter_mut().enumerate() {
        if let Some((_, &n)) = wanted.next_if(|(&w, _)| w == i) {
            h[..n].fill([0.0; L]);
            out.push(h);
        }
    }
    out
}

/// Adds each row's statistics to the entry of its code in every column, `GROUP` columns per
/// pass, in parallel for large work.
fn scatter<const L: usize>(
    cols: &[&[u8]],
    outs: &mut [&mut FeatureHist<L>],
    rows: &[u32],
    vals: &[Entry<L>],
) {
    let work = |(outs, cols): (&mut [&mut FeatureHist<L>], &[&[u8]])| match cols.len() {
        4 => kernel::<4, L>(cols, outs, rows, vals),
        3 => kernel::<3, L>(cols, outs, rows, vals),
        2 => kernel::<2, L>(cols, outs, rows, vals),
        _ => kernel::<1, L>(cols, outs, rows, vals),
    };
    if rows.len() * cols.len() >= PARALLEL_MIN_WORK {
        outs.par_chunks_mut(GROUP).zip(cols.par_chunks(GROUP)).for_each(work);
    } else {
        outs.chunks_mut(GROUP).zip(cols.chunks(GROUP)).for_each(work);
    }
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
    outs: &mut [&mut FeatureHist<L>],
    rows: &[u32],
    vals: &[Entry<L>],
) {
    let cols: [&[u8]; K] = std::array::from_fn(|j| cols[j]);
    let outs: &mut [&mut FeatureHist<L>; K] = outs.try_into().expect("a group of K columns");
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
