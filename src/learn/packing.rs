//! Packs of few-bin features sharing one joint code, so that one histogram update per row
//! serves every feature of the pack: with binary and ternary features (the phishing data)
//! a row costs about a quarter of the updates, and the per-feature histograms are recovered by
//! summing the pack's cells.

/// Most cells (product of the packed features' bin counts) of a pack: enough to pack five
/// binary or three ternary features, few enough that summing cells stays cheap (measured
/// best on the phishing data among 16, 32 and 64).
const MAX_CELLS: usize = 32;

/// Features with one joint code: `code = sum(bin_f * stride_f)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Pack {
    pub features: Vec<usize>,
    pub strides: Vec<usize>,
    pub radices: Vec<usize>,
    /// Number of codes.
    pub cells: usize,
}

impl Pack {
    /// Which bin of its `k`-th feature a code stands for.
    pub fn digit(&self, k: usize, code: usize) -> usize {
        code / self.strides[k] % self.radices[k]
    }
}

/// Every feature's pack and every merged row's codes.
#[derive(Clone, Debug, PartialEq)]
pub struct Packing {
    packs: Vec<Pack>,
    /// Pack and position in it of each feature.
    place: Vec<(usize, usize)>,
    /// Column-major codes: pack `p` of row `r` is `codes[p * n + r]`.
    codes: Vec<u8>,
    n: usize,
}

impl Packing {
    /// Packs consecutive features greedily, given each feature's bin count and the
    /// column-major bins of `n` rows.
    pub fn new(n_bins: &[usize], bins: &[u8], n: usize) -> Self {
        let mut packs: Vec<Pack> = Vec::new();
        let mut place = Vec::with_capacity(n_bins.len());
        for (f, &nb) in n_bins.iter().enumerate() {
            match packs.last_mut() {
                Some(p) if p.cells * nb <= MAX_CELLS => {
                    p.features.push(f);
                    p.strides.push(p.cells);
                    p.radices.push(nb);
                    p.cells *= nb;
                }
                _ => packs.push(Pack { features: vec![f], strides: vec![1], radices: vec![nb], cells: nb }),
            }
            let p = packs.len() - 1;
            place.push((p, packs[p].features.len() - 1));
        }
        let mut codes = vec![0u8; packs.len() * n];
        for (p, pack) in packs.iter().enumerate() {
            let column = &mut codes[p * n..(p + 1) * n];
            for (&f, &stride) in pack.features.iter().zip(&pack.strides) {
                for (c, &b) in column.iter_mut().zip(&bins[f * n..(f + 1) * n]) {
                    *c += b * stride as u8;
                }
            }
        }
        Packing { packs, place, codes, n }
    }

    pub fn packs(&self) -> &[Pack] {
        &self.packs
    }

    /// The pack of feature `f` and its position in the pack.
    pub fn place(&self, f: usize) -> (usize, usize) {
        self.place[f]
    }

    /// The codes of pack `p` for every merged row.
    pub fn codes(&self, p: usize) -> &[u8] {
        &self.codes[p * self.n..(p + 1) * self.n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_hold_every_packed_bin() {
        // Features with 2, 3, 2, 20 bins over three rows.
        let n_bins = [2, 3, 2, 20];
        let bins = [0, 1, 1, 2, 0, 1, 1, 1, 0, 19, 3, 0];
        let p = Packing::new(&n_bins, &bins, 3);
        assert_eq!(p.packs().len(), 2);
        assert_eq!(p.packs()[0].features, vec![0, 1, 2]);
        assert_eq!(p.packs()[0].cells, 12);
        for f in 0..4 {
            let (pi, k) = p.place(f);
            for r in 0..3 {
                let code = usize::from(p.codes(pi)[r]);
                assert_eq!(p.packs()[pi].digit(k, code), usize::from(bins[f * 3 + r]));
            }
        }
    }
}
