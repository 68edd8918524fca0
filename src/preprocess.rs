//! The fitted preprocessor: what turns a table of raw codes into the model's input matrix.
//! Fitted by the transform stage, saved in the run folder, and loaded by prediction and
//! serving, so that training and serving transform rows identically.

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::codec;
use crate::dataset::Dataset;
use crate::error::InputError;
use crate::impute::KnnImputer;
use crate::schema::Schema;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Preprocessor {
    /// Feature columns, in the order the model takes them.
    pub features: Vec<String>,
    pub target: String,
    /// Label values in encoded order: `classes[0]` is encoded 0.
    pub classes: Vec<i64>,
    pub imputer: KnnImputer,
}

impl Preprocessor {
    pub const KIND: &'static str = "netsec preprocessor";
    pub const FORMAT_VERSION: u32 = 1;

    /// Fits the KNN imputer on the training rows.
    pub fn fit(schema: &Schema, train: &Dataset, k: usize) -> anyhow::Result<Preprocessor> {
        let imputer = KnnImputer::fit(&train.x, train.n_features(), k)
            .map_err(|e| InputError::new(format!("cannot fit the imputer on the training rows: {e}")))?;
        Ok(Preprocessor {
            features: schema.feature_names(),
            target: schema.target.name.clone(),
            classes: schema.target.values.clone(),
            imputer,
        })
    }

    /// The model input: every missing cell imputed.
    pub fn transform(&self, data: &Dataset) -> anyhow::Result<Vec<f32>> {
        if data.features != self.features {
            anyhow::bail!("the rows' columns differ from the preprocessor's");
        }
        Ok(self.imputer.transform(&data.x)?)
    }

    /// Labels as classes 0 and 1 (for example -1 → 0, 1 → 1).
    pub fn encode_labels(&self, labels: &[i64]) -> Vec<u8> {
        labels
            .iter()
            .map(|l| self.classes.iter().position(|c| c == l).expect("labels were checked against the schema") as u8)
            .collect()
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(Self::KIND, Self::FORMAT_VERSION, self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Preprocessor, codec::CodecError> {
        codec::decode(Self::KIND, Self::FORMAT_VERSION, bytes)
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Preprocessor> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Preprocessor::from_bytes(&bytes).map_err(|e| InputError::in_file(path, e.to_string()).into())
    }
}
