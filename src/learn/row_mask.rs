//! Masks of the rows of a block, one bit per row, which a batch walk carries down a tree
//! (see [`super::compiled`]). A step of the walk costs a few mask operations whatever the
//! number of rows, so the wider a mask is for the same instructions, the more rows share each
//! step: on a CPU with AVX-512, a mask is one 512-bit register, eight times the rows of a
//! 64-bit word for the same operations.

/// The rows of a block that reach a node. Bit `r` is row `r`.
pub trait RowMask: Copy {
    /// Rows the mask holds.
    const ROWS: usize;

    /// The mask of the rows whose bits are set in `words` (64 rows per word, `ROWS / 64` words).
    fn from_words(words: &[u64]) -> Self;

    fn and(self, other: Self) -> Self;

    /// The rows of `self` that are not in `other`.
    fn and_not(self, other: Self) -> Self;

    fn is_empty(self) -> bool;

    /// Calls `f` with each row of the mask, in increasing order.
    fn for_each_row(self, f: impl FnMut(usize));

    /// Adds `value` to `acc[r]` for each row `r` of the mask. `acc` holds `ROWS` values.
    #[inline(always)]
    fn add_to(self, acc: &mut [f64], value: f64) {
        self.for_each_row(|r| acc[r] += value);
    }
}

/// `W` words of 64 rows, in general-purpose registers: the mask for any CPU.
impl<const W: usize> RowMask for [u64; W] {
    const ROWS: usize = 64 * W;

    fn from_words(words: &[u64]) -> Self {
        std::array::from_fn(|w| words[w])
    }

    #[inline(always)]
    fn and(self, other: Self) -> Self {
        std::array::from_fn(|w| self[w] & other[w])
    }

    #[inline(always)]
    fn and_not(self, other: Self) -> Self {
        std::array::from_fn(|w| self[w] & !other[w])
    }

    #[inline(always)]
    fn is_empty(self) -> bool {
        self.iter().all(|&w| w == 0)
    }

    #[inline(always)]
    fn for_each_row(self, mut f: impl FnMut(usize)) {
        for (w, &word) in self.iter().enumerate() {
            for_each_bit(word, |bit| f(w * 64 + bit));
        }
    }
}

/// Calls `f` with the index of each set bit of `word`, lowest first.
#[inline(always)]
pub fn for_each_bit(mut word: u64, mut f: impl FnMut(usize)) {
    while word != 0 {
        f(word.trailing_zeros() as usize);
        word &= word - 1;
    }
}

#[cfg(target_arch = "x86_64")]
pub use avx512::{available as wide_available, Wide};

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m512i, _mm512_and_si512, _mm512_andnot_si512, _mm512_loadu_pd, _mm512_loadu_si512, _mm512_mask_add_pd,
        _mm512_or_si512, _mm512_set1_pd, _mm512_setzero_si512, _mm512_storeu_pd, _mm512_test_epi64_mask,
    };

    use super::{for_each_bit, RowMask};

    /// `512 * V` rows in `V` AVX-512 registers.
    ///
    /// A `Wide` exists only on a CPU that has AVX-512F: [`RowMask::from_words`], its only
    /// constructor, checks. [`available`] says whether this CPU has it; the walks that use a
    /// `Wide` are compiled with the feature enabled, so that its mask operations are inlined
    /// into them, an instruction per register.
    #[derive(Clone, Copy)]
    pub struct Wide<const V: usize>([__m512i; V]);

    pub fn available() -> bool {
        std::arch::is_x86_feature_detected!("avx512f")
    }

    impl<const V: usize> RowMask for Wide<V> {
        const ROWS: usize = 512 * V;

        fn from_words(words: &[u64]) -> Self {
            assert_eq!(words.len(), 8 * V, "the words of {} rows", Self::ROWS);
            // The one way to make a `Wide`: checked here, every other method may count on it.
            assert!(available(), "a mask of AVX-512 registers on a CPU without AVX-512F");
            // SAFETY: unaligned loads of 64 bytes each, within `words`; AVX-512F is present.
            Wide(std::array::from_fn(|v| unsafe { _mm512_loadu_si512(words[8 * v..].as_ptr().cast()) }))
        }

        #[inline(always)]
        fn and(self, other: Self) -> Self {
            // SAFETY: AVX-512F is present wherever a `Wide` is made.
            Wide(std::array::from_fn(|v| unsafe { _mm512_and_si512(self.0[v], other.0[v]) }))
        }

        #[inline(always)]
        fn and_not(self, other: Self) -> Self {
            // SAFETY: as for `and`. The intrinsic negates its first operand.
            Wide(std::array::from_fn(|v| unsafe { _mm512_andnot_si512(other.0[v], self.0[v]) }))
        }

        #[inline(always)]
        fn is_empty(self) -> bool {
            // SAFETY: as for `and`.
            let any = self.0.iter().fold(unsafe { _mm512_setzero_si512() }, |a, &v| unsafe { _mm512_or_si512(a, v) });
            unsafe { _mm512_test_epi64_mask(any, any) == 0 }
        }

        #[inline(always)]
        fn for_each_row(self, mut f: impl FnMut(usize)) {
            self.for_each_word(|first, word| for_each_bit(word, |bit| f(first + bit)));
        }

        /// By eight rows at a time, in a masked vector add: the same instructions however many
        /// of a word's rows are in the mask, where a loop over the rows would end in a
        /// mispredicted branch at most leaves.
        #[inline(always)]
        fn add_to(self, acc: &mut [f64], value: f64) {
            assert_eq!(acc.len(), Self::ROWS, "a value per row of the mask");
            // SAFETY: as for `and`.
            let value = unsafe { _mm512_set1_pd(value) };
            self.for_each_word(|first, word| {
                for (eight, lanes) in acc[first..first + 64].chunks_exact_mut(8).enumerate() {
                    let rows = (word >> (8 * eight)) as u8;
                    // SAFETY: `lanes` is 8 values, read and written whole; AVX-512F as for
                    // `and`.
                    unsafe {
                        let sums = _mm512_loadu_pd(lanes.as_ptr());
                        _mm512_storeu_pd(lanes.as_mut_ptr(), _mm512_mask_add_pd(sums, rows, sums, value));
                    }
                }
            });
        }
    }

    impl<const V: usize> Wide<V> {
        /// Calls `f` with each 64-bit word of the mask that holds rows, and the row of its
        /// first bit: at the leaves most words hold none.
        #[inline(always)]
        fn for_each_word(self, mut f: impl FnMut(usize, u64)) {
            for (v, &register) in self.0.iter().enumerate() {
                // SAFETY: as for `and`.
                let nonzero = unsafe { _mm512_test_epi64_mask(register, register) };
                // SAFETY: both are 64 plain bytes; every bit pattern is valid for either.
                let words = unsafe { std::mem::transmute::<__m512i, [u64; 8]>(register) };
                for_each_bit(u64::from(nonzero), |w| f(v * 512 + w * 64, words[w]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of<M: RowMask>(mask: M) -> Vec<usize> {
        let mut rows = Vec::new();
        mask.for_each_row(|r| rows.push(r));
        rows
    }

    /// Every operation, on words with rows at both ends and in between.
    fn operations_hold<M: RowMask>() {
        let words = M::ROWS / 64;
        let a: Vec<u64> = (0..words as u64).map(|w| 0x8000_0000_0000_0001 | (w * 0x1234_5678) << 8).collect();
        let b: Vec<u64> = (0..words as u64).map(|w| 0xF0F0_F0F0_F0F0_F0F0 ^ w).collect();
        let expect = |op: &dyn Fn(u64, u64) -> u64| -> Vec<usize> {
            (0..M::ROWS).filter(|&r| op(a[r / 64], b[r / 64]) >> (r % 64) & 1 == 1).collect()
        };
        let (ma, mb) = (M::from_words(&a), M::from_words(&b));
        assert_eq!(rows_of(ma), expect(&|x, _| x));
        assert_eq!(rows_of(ma.and(mb)), expect(&|x, y| x & y));
        assert_eq!(rows_of(ma.and_not(mb)), expect(&|x, y| x & !y));
        assert!(!ma.is_empty() && ma.and_not(ma).is_empty());
        assert!(M::from_words(&vec![0; words]).is_empty());
        let last = M::from_words(&(0..words).map(|w| u64::from(w == words - 1) << 63).collect::<Vec<_>>());
        assert_eq!(rows_of(last), vec![M::ROWS - 1]);
    }

    #[test]
    fn word_masks_hold_their_rows() {
        operations_hold::<[u64; 1]>();
        operations_hold::<[u64; 4]>();
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn wide_masks_hold_their_rows_where_the_cpu_has_avx512() {
        if wide_available() {
            operations_hold::<Wide<1>>();
            operations_hold::<Wide<2>>();
        }
    }
}
