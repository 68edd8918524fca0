//! Statistical tests used by validation.
pub mod ks;
