//! Statistical tests used by validation.
pub mod drift;
pub mod ks;
pub mod special;
