//! Turns a header and text records, from any text format, into a schema-checked [`Dataset`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::Labels;
use crate::dataset::Dataset;
use crate::error::InputError;
use crate::schema::Schema;

/// Where an input column goes.
#[derive(Debug, Clone, Copy)]
enum Slot {
    Feature(usize),
    Target,
    Dropped,
}

pub struct TableBuilder<'s> {
    schema: &'s Schema,
    file: PathBuf,
    slots: Vec<Slot>,
    extra_columns: Vec<String>,
    dataset: Dataset,
    row: Vec<f32>,
}

impl<'s> TableBuilder<'s> {
    /// Maps the header's columns, in any order, onto the schema's.
    pub fn new(
        schema: &'s Schema,
        file: &Path,
        header: &[&str],
        header_line: u64,
        labels: Labels,
    ) -> Result<Self, InputError> {
        let at = |problem: String| InputError::in_file(file, problem).line(header_line);
        let mut positions: HashMap<&str, usize> = HashMap::new();
        for (i, name) in header.iter().enumerate() {
            if let Some(first) = positions.insert(name, i) {
                return Err(at(format!("the header names column `{name}` twice (fields {} and {})", first + 1, i + 1))
                    .hint("rename or remove one of them"));
            }
        }
        let missing: Vec<&str> =
            schema.columns.iter().map(|c| c.name.as_str()).filter(|name| !positions.contains_key(name)).collect();
        if labels == Labels::Required && !positions.contains_key(schema.target.name.as_str()) {
            return Err(at(format!("the target column `{}` is missing", schema.target.name))
                .hint("every training row needs its label; the schema is data_schema/schema.yaml"));
        }
        if !missing.is_empty() {
            return Err(at(format!("missing columns: {}", missing.join(", ")))
                .hint("the header must name every feature of the schema (data_schema/schema.yaml)"));
        }
        let feature_index: HashMap<&str, usize> =
            schema.columns.iter().enumerate().map(|(j, c)| (c.name.as_str(), j)).collect();
        let mut extra_columns = Vec::new();
        let slots = header
            .iter()
            .map(|name| match feature_index.get(name) {
                Some(&j) => Slot::Feature(j),
                None if *name == schema.target.name => Slot::Target,
                None => {
                    extra_columns.push(name.to_string());
                    Slot::Dropped
                }
            })
            .collect();
        Ok(TableBuilder {
            schema,
            file: file.to_path_buf(),
            slots,
            extra_columns,
            dataset: Dataset::new(schema.feature_names(), schema.target.name.clone()),
            row: vec![f32::NAN; schema.n_features()],
        })
    }

    pub fn n_columns(&self) -> usize {
        self.slots.len()
    }

    /// Adds one record; `fields` must hold one field per header column.
    pub fn push<'f>(&mut self, line: u64, fields: impl ExactSizeIterator<Item = &'f [u8]>) -> Result<(), InputError> {
        if fields.len() != self.slots.len() {
            return Err(InputError::in_file(
                &self.file,
                format!("the row has {} fields but the header has {}", fields.len(), self.slots.len()),
            )
            .line(line)
            .hint("every row needs one value per header column (an empty field means missing)"));
        }
        let mut label = None;
        for (slot, field) in self.slots.iter().zip(fields) {
            match *slot {
                Slot::Feature(j) => self.row[j] = self.feature(line, j, field)?,
                Slot::Target => label = Some(self.label(line, field)?),
                Slot::Dropped => {}
            }
        }
        self.dataset.x.extend_from_slice(&self.row);
        self.dataset.labels.extend(label);
        Ok(())
    }

    fn feature(&self, line: u64, j: usize, field: &[u8]) -> Result<f32, InputError> {
        let column = &self.schema.columns[j];
        match parse_code(field) {
            Code::Missing => Ok(f32::NAN),
            Code::Value(v) if column.values.contains(&v) => Ok(v as f32),
            code => Err(self.bad_code(line, &column.name, field, code, &column.values)),
        }
    }

    fn label(&self, line: u64, field: &[u8]) -> Result<i64, InputError> {
        let target = &self.schema.target;
        match parse_code(field) {
            Code::Value(v) if target.values.contains(&v) => Ok(v),
            Code::Missing => Err(InputError::in_file(&self.file, "the label is missing")
                .line(line)
                .column(&target.name)
                .hint("every training row needs a label; drop the row or fill it in")),
            code => Err(self.bad_code(line, &target.name, field, code, &target.values)),
        }
    }

    fn bad_code(&self, line: u64, column: &str, field: &[u8], code: Code, allowed: &[i64]) -> InputError {
        let shown = String::from_utf8_lossy(field);
        let problem = match code {
            Code::NotInteger => format!("`{}` is not an integer", shown.trim()),
            _ => format!("{} is not an allowed value", shown.trim()),
        };
        let allowed: Vec<String> = allowed.iter().map(i64::to_string).collect();
        InputError::in_file(&self.file, problem).line(line).column(column).hint(format!(
            "this column holds one of {}; leave the cell empty or write `na` if it is unknown",
            allowed.join(", ")
        ))
    }

    /// The table, once every record is in; a table without rows is an error.
    pub fn finish(self) -> Result<(Dataset, Vec<String>), InputError> {
        if self.dataset.n_rows() == 0 {
            return Err(InputError::in_file(&self.file, "the file has a header but no data rows")
                .hint("add at least one row of data"));
        }
        Ok((self.dataset, self.extra_columns))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Code {
    Missing,
    Value(i64),
    NotInteger,
}

/// Parses one cell: empty, `na`, `nan` and `?` (ARFF) are missing; `1` and `1.0` are 1.
fn parse_code(field: &[u8]) -> Code {
    match field.trim_ascii() {
        b"-1" => Code::Value(-1),
        b"0" => Code::Value(0),
        b"1" => Code::Value(1),
        b"" | b"?" => Code::Missing,
        other => {
            let Ok(text) = std::str::from_utf8(other) else { return Code::NotInteger };
            if text.eq_ignore_ascii_case("na") || text.eq_ignore_ascii_case("nan") {
                return Code::Missing;
            }
            if let Ok(v) = text.parse::<i64>() {
                return Code::Value(v);
            }
            match text.parse::<f64>() {
                Ok(v) if v.fract() == 0.0 && v.abs() < 1e15 => Code::Value(v as i64),
                _ => Code::NotInteger,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_parse_as_codes_or_missing() {
        assert_eq!(parse_code(b" 1 "), Code::Value(1));
        assert_eq!(parse_code(b"-1.0"), Code::Value(-1));
        assert_eq!(parse_code(b"NA"), Code::Missing);
        assert_eq!(parse_code(b""), Code::Missing);
        assert_eq!(parse_code(b"7"), Code::Value(7));
        assert_eq!(parse_code(b"0.5"), Code::NotInteger);
        assert_eq!(parse_code(b"yes"), Code::NotInteger);
    }
}
