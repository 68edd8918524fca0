//! netsec: a phishing-website classifier from raw data to a running service.
//!
//! See ARCHITECTURE.md for the bird's-eye view and the code map.

pub mod artifacts;
pub mod cli;
pub mod codec;
pub mod config;
pub mod dataset;
pub mod error;
pub mod html;
pub mod impute;
pub mod learn;
pub mod model_file;
pub mod npy;
pub mod onnx;
pub mod pipeline;
pub mod predict;
pub mod preprocess;
pub mod schema;
pub mod serve;
pub mod source;
pub mod split;
pub mod stages;
pub mod stats;
pub mod store;
pub mod synth;
pub mod tracking;
pub mod train;

/// `%XX` escapes undone (URI user info, for instance); invalid UTF-8 becomes U+FFFD.
pub fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}
