//! `netsec predict`: score a CSV with the store's current model, as serving will.

use std::path::Path;

use crate::artifacts::write_atomic;
use crate::error::InputError;
use crate::source::{self, Labels};
use crate::store;

/// Reads `input` (same rules as ingest; the label column is optional), predicts with the
/// current model of the store at `location`, and writes the rows with `prediction` (a label
/// value of the source) and `probability` (the model's probability of that prediction).
pub fn run(location: &str, input: &Path, output: &Path) -> anyhow::Result<()> {
    let store = store::open(location)?;
    let version = store.current()?.ok_or_else(|| {
        InputError::new(format!("{} has no current model", store.describe()))
            .hint("train one with `netsec pipeline`, or promote a version with `netsec models promote`")
    })?;
    let model = store.get(&version)?;
    let source = source::open(input.to_str().ok_or_else(|| InputError::in_file(input, "the path is not UTF-8"))?)?;
    let data = source.load(&model.schema, Labels::Optional)?.dataset;
    let predictions = model.predict_dataset(&data)?;
    let positive = model.schema.target.values[1];
    write_atomic(output, |w| {
        data.write_csv_with(w, &["prediction", "probability"], |i, line| {
            let (label, p_positive) = predictions[i];
            let p = if label == positive { p_positive } else { 1.0 - p_positive };
            use std::io::Write;
            write!(line, "{label},{p:.6}")
        })
    })?;
    eprintln!("scored {} rows with model {version} into {}", data.n_rows(), output.display());
    Ok(())
}
