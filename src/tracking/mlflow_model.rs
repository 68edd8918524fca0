//! The accepted model as an MLflow Model directory, the source of its registered version, so
//! that `mlflow.pyfunc.load_model`, `mlflow models serve` and MLflow's deployment tools can
//! load it. The files are those `mlflow.onnx.save_model` (MLflow 3.17) writes:
//!
//! ```text
//! MLmodel                     flavors onnx and python_function (loader mlflow.onnx), signature
//! model.onnx                  the ONNX export with one output column per value (Outputs::Columns)
//! model.bin                   netsec's own model file, for netsec
//! input_example.json          two training rows, pandas "split" orient
//! serving_input_example.json  the same as an /invocations body
//! requirements.txt, python_env.yaml, conda.yaml   the flavor's environment, pinned
//! ```
//!
//! The signature declares the features as `double`, not `long`: MLflow's advice for integer
//! columns that may hold missing values (a NaN makes a pandas column float). `/invocations`
//! casts JSON numbers to the signature's types, so integers work there; in Python, a frame of
//! int64 columns must be cast (`frame.astype("float64")`), as MLflow refuses int64 → double.

use serde_json::json;

use crate::model_file::ModelFile;
use crate::onnx::{self, Outputs};

/// The directory's name in the run's artifacts.
pub const DIR: &str = "model";

/// The versions the files pin: those netsec's tests load the model with.
const MLFLOW: &str = "3.17.2";
const PYTHON: &str = "3.11";
const REQUIREMENTS: [&str; 5] =
    ["mlflow==3.17.2", "numpy==2.4.6", "onnx==1.23.2", "onnxruntime==1.31.1", "pandas==2.3.3"];
const ONNX_VERSION: &str = "1.23.2";

/// The directory's files, name and bytes.
pub fn files(model: &ModelFile) -> anyhow::Result<Vec<(&'static str, Vec<u8>)>> {
    let onnx = onnx::export_with(model, Outputs::Columns)?;
    let bin = model.to_bytes();
    let example = input_example(model);
    let mut files = vec![
        ("model.onnx", onnx),
        ("model.bin", bin),
        ("input_example.json", serde_json::to_vec(&example)?),
        ("serving_input_example.json", serde_json::to_vec_pretty(&json!({ "dataframe_split": example }))?),
        ("requirements.txt", REQUIREMENTS.iter().map(|r| format!("{r}\n")).collect::<String>().into_bytes()),
        ("python_env.yaml", python_env().into_bytes()),
        ("conda.yaml", conda().into_bytes()),
    ];
    let size: usize = files.iter().map(|(_, bytes)| bytes.len()).sum();
    files.insert(0, ("MLmodel", serde_yaml::to_string(&mlmodel(model, size)?)?.into_bytes()));
    Ok(files)
}

fn mlmodel(model: &ModelFile, size: usize) -> anyhow::Result<serde_json::Value> {
    let inputs: Vec<_> = model
        .preprocessor
        .features
        .iter()
        .map(|name| json!({ "type": "double", "name": name, "required": true }))
        .collect();
    let mut outputs = vec![json!({ "type": "long", "name": onnx::LABEL, "required": true })];
    outputs.extend(
        model
            .preprocessor
            .classes
            .iter()
            .map(|&c| json!({ "type": "float", "name": onnx::probability_column(c), "required": true })),
    );
    Ok(json!({
        "flavors": {
            "onnx": {
                "code": null,
                "data": "model.onnx",
                "onnx_session_options": null,
                "onnx_version": ONNX_VERSION,
                "providers": ["CPUExecutionProvider"],
            },
            "python_function": {
                "data": "model.onnx",
                "env": { "conda": "conda.yaml", "virtualenv": "python_env.yaml" },
                "loader_module": "mlflow.onnx",
                "python_version": PYTHON,
            },
        },
        "is_signature_from_type_hint": false,
        "mlflow_version": MLFLOW,
        "model_id": null,
        "model_size_bytes": size,
        "model_uuid": format!("{:032x}", rand::random::<u128>()),
        "prompts": null,
        "saved_input_example_info": {
            "artifact_path": "input_example.json",
            "pandas_orient": "split",
            "serving_input_path": "serving_input_example.json",
            "type": "dataframe",
        },
        "signature": {
            "inputs": serde_json::to_string(&inputs)?,
            "outputs": serde_json::to_string(&outputs)?,
            "params": null,
        },
        "type_hint_from_example": false,
        "utc_time_created": utc_now(),
    }))
}

/// The first two rows the imputer was fitted on (training rows), in the "split" orient.
fn input_example(model: &ModelFile) -> serde_json::Value {
    let features = &model.preprocessor.features;
    let rows: Vec<Vec<Option<f32>>> = model
        .preprocessor
        .imputer
        .fit_matrix()
        .chunks_exact(features.len())
        .take(2)
        .map(|row| row.iter().map(|v| (!v.is_nan()).then_some(*v)).collect())
        .collect();
    json!({ "columns": features, "data": rows })
}

fn python_env() -> String {
    format!(
        "python: {PYTHON}\nbuild_dependencies:\n- pip\n- setuptools\n- wheel\ndependencies:\n- -r requirements.txt\n"
    )
}

fn conda() -> String {
    let pip: String = REQUIREMENTS.iter().map(|r| format!("  - {r}\n")).collect();
    format!("channels:\n- conda-forge\ndependencies:\n- python={PYTHON}\n- pip\n- pip:\n{pip}name: mlflow-env\n")
}

/// MLflow's `utc_time_created` format: `2026-12-07 19:40:59.665199`.
fn utc_now() -> String {
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:6]");
    time::OffsetDateTime::now_utc().format(&format).expect("a UTC time formats")
}
