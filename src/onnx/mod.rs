//! ONNX export: a model file as one ONNX graph that does the whole prediction, from raw rows
//! with missing cells (NaN) to the label and the class probabilities, so that ONNX Runtime,
//! MLflow's `onnx` flavor or any ONNX server scores exactly as `netsec predict` does.
//!
//! * Input `input`: float [N, F], the schema's features in the model's order, NaN = missing.
//! * Outputs `label` (int64 [N], the source's label values, e.g. -1 and 1) and
//!   `probabilities` (float [N, 2], in the order of the labels).
//!
//! The graph is the fitted imputer ([`impute`]) followed by the classifier ([`classifier`]).
//! Versions are pinned: IR 8, opsets ai.onnx 17 and ai.onnx.ml 3, read by ONNX Runtime since
//! 1.11 and by the `onnx` checker since 1.12.

mod classifier;
mod graph;
mod impute;
mod proto;

use crate::error::InputError;
use crate::model_file::ModelFile;
use graph::{Dim, Elem, Graph, ModelInfo};

pub use classifier::{LABEL, PROBABILITIES};
pub const INPUT: &str = "input";
pub const IR_VERSION: i64 = 8;
pub const OPSET: i64 = 17;
pub const ML_OPSET: i64 = 3;

/// What the graph gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outputs {
    /// `label` [N] and `probabilities` [N, 2]: the form ONNX tools expect (skl2onnx's, with
    /// its zipmap off).
    Tensors,
    /// `label` and one [`probability_column`] [N] per class: one value per row in every output,
    /// which is what MLflow's `onnx` flavor can turn into a DataFrame's columns (it flattens
    /// each output, so an [N, 2] one would not fit beside the labels).
    Columns,
}

/// The name of the output (and MLflow column) with the probability of `class`.
pub fn probability_column(class: i64) -> String {
    format!("probability_{class}")
}

/// The ONNX model (`ModelProto` bytes) of a model file, with [`Outputs::Tensors`]. The same
/// model file always gives the same bytes.
pub fn export(model: &ModelFile) -> Result<Vec<u8>, InputError> {
    export_with(model, Outputs::Tensors)
}

/// The ONNX model of a model file with the given outputs.
pub fn export_with(model: &ModelFile, outputs: Outputs) -> Result<Vec<u8>, InputError> {
    let imputer = &model.preprocessor.imputer;
    if imputer.k() > impute::MAX_K {
        return Err(InputError::new(format!(
            "the model's imputer averages k = {} neighbours; the ONNX export reproduces the imputation \
             only for k <= {} (numpy's selection for larger k has no ONNX form)",
            imputer.k(),
            impute::MAX_K
        ))
        .hint("train with `transform.imputer_k` of 3 or less to export this model"));
    }
    let n_features = model.preprocessor.features.len() as i64;
    let mut graph = Graph::new("netsec", "");
    let input = graph.input(INPUT, Elem::Float, &[Dim::Named("N"), Dim::Fixed(n_features)]);
    let features = impute::impute(&mut graph, imputer, &input);
    classifier::classify(&mut graph, &model.model, &model.preprocessor.classes, &features);
    graph.output(LABEL, Elem::Int64, &[Dim::Named("N")]);
    match outputs {
        Outputs::Tensors => graph.output(PROBABILITIES, Elem::Float, &[Dim::Named("N"), Dim::Fixed(2)]),
        Outputs::Columns => {
            for (i, &class) in model.preprocessor.classes.iter().enumerate() {
                let index = graph.ints("class_index", &[], &[i as i64]);
                let column = probability_column(class);
                graph.node("", "Gather", &[PROBABILITIES, &index], &[&column], vec![("axis", graph::Attr::Int(1))]);
                graph.output(&column, Elem::Float, &[Dim::Named("N")]);
            }
        }
    }

    let classes = &model.preprocessor.classes;
    let probabilities = match outputs {
        Outputs::Tensors => format!("`{PROBABILITIES}` (float [N, 2], in that order)"),
        Outputs::Columns => {
            let columns: Vec<String> = classes.iter().map(|&c| format!("`{}`", probability_column(c))).collect();
            format!("{} (float [N] each)", columns.join(" and "))
        }
    };
    let doc = format!(
        "netsec {} model of run {}: input `{INPUT}` float [N, {n_features}] (the features {}, NaN for a missing cell); \
         outputs `{LABEL}` (int64 [N], one of {classes:?}) and {probabilities}",
        model.family,
        model.run_id,
        model.preprocessor.features.join(", "),
    );
    let metadata = vec![
        ("netsec.run_id", model.run_id.clone()),
        ("netsec.family", model.family.clone()),
        ("netsec.features", serde_json::to_string(&model.preprocessor.features).expect("strings serialise")),
        ("netsec.classes", serde_json::to_string(&model.preprocessor.classes).expect("numbers serialise")),
        ("netsec.target", model.preprocessor.target.clone()),
        ("netsec.data_sha256", model.data_sha256.clone()),
        ("netsec.created_at", model.created_at.clone()),
        ("netsec.netsec_version", model.netsec_version.clone()),
        ("netsec.git_revision", model.git_revision.clone()),
    ];
    let info = ModelInfo {
        ir_version: IR_VERSION,
        opsets: &[("", OPSET), ("ai.onnx.ml", ML_OPSET)],
        producer_version: env!("CARGO_PKG_VERSION"),
        doc: &doc,
        metadata,
    };
    Ok(graph::encode_model(graph, &info))
}
