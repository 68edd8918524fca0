//! The model file: everything prediction and serving need in one binary file (the fitted
//! preprocessor, the model, the schema) and everything a reader needs to trust it (which run,
//! which data, which build, which parameters and how well it scored).
//!
//! It travels in the [`codec`] envelope (kind `netsec model`), so a truncated, altered,
//! foreign or newer file is refused instead of misread.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::artifacts::{write_atomic, FileRecord};
use crate::codec::{self, CodecError};
use crate::dataset::Dataset;
use crate::error::InputError;
use crate::learn::{Classifier, Model};
use crate::preprocess::Preprocessor;
use crate::schema::Schema;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelFile {
    /// Equal to the envelope's version; kept inside too so that a decoded value says what it is.
    pub format_version: u32,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub run_id: String,
    pub netsec_version: String,
    pub git_revision: String,
    /// sha256 of the input data the model was trained from.
    pub data_sha256: String,
    /// The model family, as in the training config (e.g. `random_forest`).
    pub family: String,
    /// The chosen grid point.
    #[serde(with = "json_value")]
    pub params: serde_json::Value,
    pub model: Model,
    pub preprocessor: Preprocessor,
    pub schema: Schema,
    /// Train and test metrics, as the trainer records them (the test F1 is read from
    /// `test.f1`, see [`ModelFile::test_f1`]).
    #[serde(with = "json_value")]
    pub metrics: serde_json::Value,
}

/// Why bytes are not a usable model file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelFileError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("the model file is inconsistent: {0}")]
    Inconsistent(String),
}

impl ModelFile {
    pub const KIND: &'static str = "netsec model";
    /// 2: the ensembles keep only their trees (prediction compiles them; see learn::compiled).
    pub const FORMAT_VERSION: u32 = 2;
    /// Where [`ModelFile::test_f1`] looks in `metrics`.
    pub const TEST_F1_POINTER: &'static str = "/test/f1";

    /// A model file stamped with this build and the current time. The trainer fills in
    /// `run_id`, `data_sha256` and `metrics` (empty and null here).
    pub fn new(
        family: &str,
        params: serde_json::Value,
        model: Model,
        preprocessor: Preprocessor,
        schema: Schema,
    ) -> ModelFile {
        ModelFile {
            format_version: Self::FORMAT_VERSION,
            created_at: now_rfc3339(),
            run_id: String::new(),
            netsec_version: env!("CARGO_PKG_VERSION").into(),
            git_revision: crate::artifacts::GIT_REVISION.into(),
            data_sha256: String::new(),
            family: family.into(),
            params,
            model,
            preprocessor,
            schema,
            metrics: serde_json::Value::Null,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(Self::KIND, Self::FORMAT_VERSION, self)
    }

    /// Decodes and checks that the parts fit together (a file assembled from parts of
    /// different runs would otherwise predict garbage, or panic on a row-length mismatch).
    pub fn from_bytes(bytes: &[u8]) -> Result<ModelFile, ModelFileError> {
        let file: ModelFile = codec::decode(Self::KIND, Self::FORMAT_VERSION, bytes)?;
        file.check().map_err(ModelFileError::Inconsistent)?;
        Ok(file)
    }

    /// Reads a model file; anything wrong with it is the user's to fix, so an [`InputError`].
    pub fn load(path: &Path) -> anyhow::Result<ModelFile> {
        let bytes = std::fs::read(path).map_err(|e| {
            InputError::in_file(path, format!("cannot read the model file: {e}"))
                .hint("give the path of a model file (model.bin) written by `netsec`")
        })?;
        Ok(ModelFile::from_bytes(&bytes).map_err(|e| load_error(path, &e))?)
    }

    /// Writes the file atomically (absent or complete), returning its hash and size.
    pub fn save(&self, path: &Path) -> anyhow::Result<FileRecord> {
        let bytes = self.to_bytes();
        write_atomic(path, |w| w.write_all(&bytes))
    }

    /// The test F1 score from `metrics`, if the trainer recorded one.
    pub fn test_f1(&self) -> Option<f64> {
        self.metrics.pointer(Self::TEST_F1_POINTER).and_then(serde_json::Value::as_f64)
    }

    /// For each row: the predicted label value (e.g. -1 or 1) and the probability of the
    /// positive class, the target's second value (`preprocessor.classes[1]`). The probability
    /// is always of the same class, whatever the prediction, so that callers can threshold,
    /// rank or plot it.
    pub fn predict_dataset(&self, data: &Dataset) -> anyhow::Result<Vec<(i64, f64)>> {
        if data.features != self.preprocessor.features {
            let problem = column_difference(&self.preprocessor.features, &data.features);
            return Err(InputError::new(format!("the rows do not have the model's columns: {problem}"))
                .hint("give rows with the columns of the schema the model was trained with")
                .into());
        }
        if data.n_rows() == 0 {
            return Ok(Vec::new());
        }
        let rows = self.preprocessor.transform(data)?;
        let classes = self.model.predict(&rows);
        let probabilities = self.model.predict_proba(&rows);
        Ok(classes.into_iter().map(|c| self.preprocessor.classes[c as usize]).zip(probabilities).collect())
    }

    fn check(&self) -> Result<(), String> {
        if self.format_version != Self::FORMAT_VERSION {
            return Err(format!(
                "it says format version {} inside an envelope of version {}",
                self.format_version,
                Self::FORMAT_VERSION
            ));
        }
        let features = &self.preprocessor.features;
        if *features != self.schema.feature_names() || self.preprocessor.classes != self.schema.target.values {
            return Err("its preprocessor and its schema have different columns or classes".into());
        }
        if self.model.n_features() != features.len() || self.preprocessor.classes.len() != 2 {
            return Err(format!(
                "its model takes {} features but its preprocessor gives {} (with {} classes)",
                self.model.n_features(),
                features.len(),
                self.preprocessor.classes.len()
            ));
        }
        Ok(())
    }
}

/// The message for a model file that does not load, with what to do about it.
pub(crate) fn load_error(path: &Path, error: &ModelFileError) -> InputError {
    let hint = match error {
        ModelFileError::Codec(CodecError::NotNetsec | CodecError::WrongKind { .. }) => {
            "give the path of a model file (model.bin), not of another file"
        }
        ModelFileError::Codec(CodecError::UnsupportedVersion { .. }) => {
            "load it with the netsec version that wrote it, or train the model again with this one"
        }
        _ => "the file is damaged: copy it again from the model store, or train the model again",
    };
    InputError::in_file(path, format!("not a usable model file: {error}")).hint(hint)
}

/// The first difference between the expected and the given columns, for the error message.
fn column_difference(expected: &[String], given: &[String]) -> String {
    if let Some(missing) = expected.iter().find(|c| !given.contains(c)) {
        return format!("column `{missing}` is missing");
    }
    if let Some(extra) = given.iter().find(|c| !expected.contains(c)) {
        return format!("column `{extra}` is not one of the model's");
    }
    "the columns are in another order".into()
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).expect("a UTC time formats")
}

/// Free-form JSON inside a binary file. postcard is not self-describing, so it cannot decode
/// a `serde_json::Value` (which needs `deserialize_any`); binary formats get the JSON text
/// instead, while human-readable formats (a JSON dump of the file) keep the value as is.
mod json_value {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use serde_json::Value;

    pub fn serialize<S: Serializer>(value: &Value, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            value.serialize(serializer)
        } else {
            serializer.serialize_str(&value.to_string())
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        if deserializer.is_human_readable() {
            Value::deserialize(deserializer)
        } else {
            let text = String::deserialize(deserializer)?;
            serde_json::from_str(&text).map_err(D::Error::custom)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::learn::{ModelConfig, Samples};
    use crate::synth::{generate, SynthOptions};

    /// A decision tree and its preprocessor fitted on a few synthetic rows, some cells missing.
    pub(crate) fn tiny_model_file() -> ModelFile {
        let schema = Schema::embedded();
        let mut train = generate(&schema, SynthOptions { rows: 120, ..SynthOptions::default() });
        train.x.iter_mut().step_by(37).for_each(|v| *v = f32::NAN);
        let preprocessor = Preprocessor::fit(&schema, &train, 3).unwrap();
        let rows = preprocessor.transform(&train).unwrap();
        let labels = preprocessor.encode_labels(&train.labels);
        let params = serde_json::json!({"max_depth": 4});
        let config: ModelConfig = serde_json::from_value(serde_json::json!({"decision_tree": params})).unwrap();
        let model = config.fit(&Samples::new(&rows, train.n_features(), &labels).unwrap()).unwrap();
        let mut file = ModelFile::new(config.family(), params, model, preprocessor, schema);
        file.run_id = "20261124T053500-123Z".into();
        file.data_sha256 = "ab".repeat(32);
        file.metrics = serde_json::json!({"train": {"f1": 0.97}, "test": {"f1": 0.9125, "accuracy": 0.9}});
        file
    }

    #[test]
    fn round_trips_with_free_form_params_and_metrics() {
        let file = tiny_model_file();
        let back = ModelFile::from_bytes(&file.to_bytes()).unwrap();
        assert_eq!(back.model, file.model);
        assert_eq!((&back.params, &back.metrics), (&file.params, &file.metrics));
        assert_eq!(back.schema, file.schema);
        assert_eq!(back.preprocessor.to_bytes(), file.preprocessor.to_bytes());
        assert_eq!(back.to_bytes(), file.to_bytes());
        assert_eq!(back.test_f1(), Some(0.9125));
        // In JSON the free-form parts stay JSON, not strings holding JSON.
        let json = serde_json::to_value(&file).unwrap();
        assert_eq!(json["params"]["max_depth"], 4);
    }

    #[test]
    fn predicts_label_values_and_the_positive_class_probability() {
        let file = tiny_model_file();
        let data = generate(&file.schema, SynthOptions { rows: 25, seed: 7, ..SynthOptions::default() });
        let predictions = file.predict_dataset(&data).unwrap();
        assert_eq!(predictions.len(), 25);
        for (label, p) in predictions {
            assert!((0.0..=1.0).contains(&p));
            // A single tree predicts the more probable class.
            assert_eq!(label, if p > 0.5 { 1 } else { -1 }, "p = {p}");
        }
    }

    #[test]
    fn rows_with_other_columns_are_refused_by_name() {
        let file = tiny_model_file();
        let mut data = generate(&file.schema, SynthOptions { rows: 3, ..SynthOptions::default() });
        data.features[2] = "Shortening".into();
        let error = file.predict_dataset(&data).unwrap_err().to_string();
        assert!(error.contains(&format!("`{}` is missing", file.schema.columns[2].name)), "{error}");
    }

    #[test]
    fn inconsistent_files_are_refused() {
        let mut file = tiny_model_file();
        file.format_version = ModelFile::FORMAT_VERSION + 1;
        let error = ModelFile::from_bytes(&file.to_bytes()).unwrap_err();
        let expected = format!(
            "format version {} inside an envelope of version {}",
            file.format_version,
            ModelFile::FORMAT_VERSION
        );
        assert!(error.to_string().contains(&expected), "{error}");
        let mut file = tiny_model_file();
        file.preprocessor.features.pop();
        assert!(matches!(ModelFile::from_bytes(&file.to_bytes()), Err(ModelFileError::Inconsistent(_))));
    }

    #[test]
    fn load_names_the_file_and_says_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.bin");
        std::fs::write(&path, crate::preprocess::Preprocessor::KIND).unwrap();
        let error = ModelFile::load(&path).unwrap_err().to_string();
        assert!(error.starts_with(&path.display().to_string()) && error.contains("hint: give the path"), "{error}");
        let missing = ModelFile::load(&dir.path().join("none.bin")).unwrap_err();
        assert_eq!(crate::error::exit_code(&missing), 2);
    }
}
