//! The data schema: which feature columns the model takes, in which order, and their codes.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::error::InputError;

/// The schema shipped with the binary (`data_schema/schema.yaml`), so it runs from anywhere.
pub const EMBEDDED_SCHEMA: &str = include_str!("../data_schema/schema.yaml");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schema {
    /// Feature columns in model order.
    pub columns: Vec<Column>,
    /// The label; its `values` are the classes in encoded order (first → 0, second → 1).
    pub target: Column,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Column {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: ColumnType,
    /// The codes this column may hold.
    pub values: Vec<i64>,
}

impl Column {
    /// Whether `v` is one of this column's codes (a whole number the schema lists).
    pub fn holds(&self, v: f64) -> bool {
        v.fract() == 0.0 && self.values.contains(&(v as i64))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    Int,
}

impl Schema {
    /// A small schema for unit tests: features `a` (codes -1, 0, 1) and `b` (-1, 1), target `y`.
    #[cfg(test)]
    pub fn two_feature_example() -> Schema {
        let column = |name: &str, values: Vec<i64>| Column { name: name.into(), kind: ColumnType::Int, values };
        Schema {
            columns: vec![column("a", vec![-1, 0, 1]), column("b", vec![-1, 1])],
            target: column("y", vec![-1, 1]),
        }
    }

    pub fn embedded() -> Schema {
        Schema::parse(EMBEDDED_SCHEMA, Path::new("data_schema/schema.yaml (embedded)"))
            .expect("the embedded schema is valid")
    }

    pub fn load(path: &Path) -> anyhow::Result<Schema> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the schema {}", path.display()))?;
        Ok(Schema::parse(&text, path)?)
    }

    fn parse(text: &str, path: &Path) -> Result<Schema, InputError> {
        let schema: Schema = serde_yaml::from_str(text).map_err(|e| InputError::in_file(path, e.to_string()))?;
        schema.check().map_err(|problem| InputError::in_file(path, problem))?;
        Ok(schema)
    }

    fn check(&self) -> Result<(), String> {
        if self.columns.is_empty() {
            return Err("the schema lists no feature columns".into());
        }
        if self.target.values.len() != 2 {
            return Err("the target must have exactly two values (a binary classifier)".into());
        }
        let mut names = std::collections::HashSet::new();
        for column in self.columns.iter().chain([&self.target]) {
            if !names.insert(column.name.as_str()) {
                return Err(format!("column `{}` is listed twice", column.name));
            }
            if column.values.is_empty() {
                return Err(format!("column `{}` allows no values", column.name));
            }
        }
        Ok(())
    }

    pub fn n_features(&self) -> usize {
        self.columns.len()
    }

    pub fn feature_names(&self) -> Vec<String> {
        self.columns.iter().map(|c| c.name.clone()).collect()
    }

    /// The encoded class (0 or 1) of a label value, if it is one of the target's values.
    pub fn encode_label(&self, value: i64) -> Option<u8> {
        self.target.values.iter().position(|&v| v == value).map(|i| i as u8)
    }

    /// The label value of an encoded class.
    pub fn decode_label(&self, class: u8) -> i64 {
        self.target.values[class as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_schema_has_thirty_ternary_features_and_a_binary_target() {
        let schema = Schema::embedded();
        assert_eq!(schema.n_features(), 30);
        assert!(schema.columns.iter().all(|c| c.values == [-1, 0, 1]));
        assert_eq!(schema.target.name, "Result");
        assert_eq!(schema.encode_label(-1), Some(0));
        assert_eq!(schema.encode_label(1), Some(1));
        assert_eq!(schema.encode_label(0), None);
        assert_eq!(schema.decode_label(0), -1);
    }

    #[test]
    fn unknown_keys_and_duplicate_columns_are_refused() {
        let path = Path::new("s.yaml");
        let unknown = "columns: []\ntarget: {name: R, type: int, values: [0, 1]}\nextra: 1\n";
        assert!(Schema::parse(unknown, path).unwrap_err().problem.contains("extra"));
        let twice = "columns: [{name: a, type: int, values: [0]}, {name: a, type: int, values: [0]}]\ntarget: {name: R, type: int, values: [0, 1]}\n";
        assert!(Schema::parse(twice, path).unwrap_err().problem.contains("twice"));
    }
}
