//! JSON rows for POST /predict/json, read straight into a [`Dataset`] (no intermediate
//! `serde_json::Value`, so a large body costs its table and not ten times more).
//!
//! The body is an array of rows, or `{"rows": [...]}`. A row is an object keyed by feature
//! name (the target column may be present and is ignored) or an array of the features in
//! schema order. A cell is one of its column's codes, or `null` for missing.

use std::collections::HashMap;
use std::fmt;

use axum::http::StatusCode;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::ApiError;
use crate::dataset::Dataset;
use crate::schema::Schema;

/// Parses `bytes` with the model's `schema` (`index` maps feature names to positions).
pub fn parse(
    schema: &Schema,
    index: &HashMap<String, usize>,
    bytes: &[u8],
    max_rows: usize,
) -> Result<Dataset, ApiError> {
    let mut reader = Reader { schema, index, max_rows, x: Vec::new(), rows: 0, failure: None, seen: Vec::new() };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let result = Body(&mut reader).deserialize(&mut deserializer).and_then(|()| deserializer.end());
    if let Err(error) = result {
        return Err(reader.error(&error));
    }
    if reader.rows == 0 {
        return Err(ApiError::bad_request("the body holds no rows").hint(EXPECTED));
    }
    let mut dataset = Dataset::new(schema.feature_names(), schema.target.name.clone());
    dataset.x = reader.x;
    Ok(dataset)
}

const EXPECTED: &str = "send an array of rows (or {\"rows\": [...]}); a row is an object keyed by feature name, \
                        or an array of the features in schema order; a cell is a code or null";

/// What went wrong, recorded where it was found (serde's own error only carries a message).
enum Failure {
    Cell { field: String, problem: String, allowed: Vec<i64> },
    Columns { field: String, missing: Vec<String>, extra: Vec<String> },
    Shape { field: String, problem: String },
    TooManyRows,
}

struct Reader<'a> {
    schema: &'a Schema,
    index: &'a HashMap<String, usize>,
    max_rows: usize,
    x: Vec<f32>,
    rows: usize,
    failure: Option<Failure>,
    /// Which features the current object row has named.
    seen: Vec<bool>,
}

impl Reader<'_> {
    fn fail<E: de::Error>(&mut self, failure: Failure) -> E {
        let message = match &failure {
            Failure::Cell { field, problem, .. } | Failure::Shape { field, problem } => format!("{field}: {problem}"),
            Failure::Columns { field, .. } => format!("{field}: wrong columns"),
            Failure::TooManyRows => "too many rows".into(),
        };
        self.failure = Some(failure);
        E::custom(message)
    }

    /// The answer for a failed parse: what was recorded, located by serde_json's position.
    fn error(&mut self, error: &serde_json::Error) -> ApiError {
        let (line, column) = (Some(error.line() as u64), Some(error.column().to_string()));
        let located = |mut e: ApiError, field: String| {
            (e.line, e.column, e.field) = (line, column.clone(), Some(field));
            e
        };
        match self.failure.take() {
            None => {
                let mut e = ApiError::bad_request(format!("malformed JSON: {error}")).hint(EXPECTED);
                (e.line, e.column) = (line, column);
                e
            }
            Some(Failure::TooManyRows) => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("more than {} rows in one request", self.max_rows))
                    .hint("split the rows over several requests")
            }
            Some(Failure::Cell { field, problem, allowed }) => {
                let allowed: Vec<String> = allowed.iter().map(i64::to_string).collect();
                let hint = format!("this column holds one of {}; null means missing", allowed.join(", "));
                located(ApiError::bad_request(format!("{field}: {problem}")).hint(hint), field)
            }
            Some(Failure::Shape { field, problem }) => {
                located(ApiError::bad_request(format!("{field}: {problem}")).hint(EXPECTED), field)
            }
            Some(Failure::Columns { field, missing, extra }) => {
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!("missing columns: {}", missing.join(", ")));
                }
                if !extra.is_empty() {
                    parts.push(format!("unknown columns: {}", extra.join(", ")));
                }
                let problem = format!("{field}: {}", parts.join("; "));
                let hint = "name every feature of the model's schema (GET /model), and nothing else";
                let mut e = located(ApiError::bad_request(problem).hint(hint), field);
                (e.missing_columns, e.extra_columns) = (missing, extra);
                e
            }
        }
    }

    fn start_row<E: de::Error>(&mut self) -> Result<(), E> {
        if self.rows == self.max_rows {
            return Err(self.fail(Failure::TooManyRows));
        }
        self.x.extend(std::iter::repeat_n(f32::NAN, self.schema.n_features()));
        Ok(())
    }

    /// Checks a cell against column `j` and stores it in the current row.
    fn store<E: de::Error>(&mut self, j: usize, cell: Cell, field: impl FnOnce() -> String) -> Result<(), E> {
        let column = &self.schema.columns[j];
        let value = match cell {
            Cell::Missing => f32::NAN,
            Cell::Code(v) if column.values.contains(&v) => v as f32,
            Cell::Code(v) => {
                let problem = format!("{v} is not an allowed value");
                return Err(self.fail(Failure::Cell { field: field(), problem, allowed: column.values.clone() }));
            }
            Cell::Other(what) => {
                let problem = format!("{what} is not a code");
                return Err(self.fail(Failure::Cell { field: field(), problem, allowed: column.values.clone() }));
            }
        };
        let start = self.rows * self.schema.n_features();
        self.x[start + j] = value;
        Ok(())
    }

    fn row_field(&self) -> String {
        format!("rows[{}]", self.rows)
    }
}

/// The top level: an array of rows or `{"rows": [...]}`.
struct Body<'r, 'a>(&'r mut Reader<'a>);

impl<'de> DeserializeSeed<'de> for Body<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Body<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows or an object {\"rows\": [...]}")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Rows(self.0).visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "rows" || found {
                let problem = format!("unexpected key `{key}`: the object holds only `rows`");
                return Err(self.0.fail(Failure::Shape { field: key.into_owned(), problem }));
            }
            map.next_value_seed(Rows(&mut *self.0))?;
            found = true;
        }
        if !found {
            return Err(self
                .0
                .fail(Failure::Shape { field: "rows".into(), problem: "the key `rows` is missing".into() }));
        }
        Ok(())
    }
}

struct Rows<'r, 'a>(&'r mut Reader<'a>);

impl<'de> DeserializeSeed<'de> for Rows<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Rows<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of rows")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Row(&mut *self.0))?.is_some() {
            self.0.rows += 1;
        }
        Ok(())
    }
}

/// One row, as an object or an array.
struct Row<'r, 'a>(&'r mut Reader<'a>);

impl<'de> DeserializeSeed<'de> for Row<'_, '_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Row<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a row: an object keyed by feature name or an array of codes")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let reader = self.0;
        reader.start_row()?;
        let n = reader.schema.n_features();
        let mut j = 0;
        while let Some(cell) = seq.next_element::<Cell>()? {
            if j == n {
                let problem = format!("the row has more than the {n} features of the schema");
                return Err(reader.fail(Failure::Shape { field: reader.row_field(), problem }));
            }
            let row = reader.rows;
            reader.store(j, cell, || format!("rows[{row}][{j}]"))?;
            j += 1;
        }
        if j < n {
            let problem = format!("the row has {j} values but the schema has {n} features");
            return Err(reader.fail(Failure::Shape { field: reader.row_field(), problem }));
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let reader = self.0;
        reader.start_row()?;
        reader.seen.clear();
        reader.seen.resize(reader.schema.n_features(), false);
        let mut extra = Vec::new();
        while let Some(key) = map.next_key_seed(Key { index: reader.index, target: &reader.schema.target.name })? {
            match key {
                Slot::Feature(j) => {
                    let cell = map.next_value::<Cell>()?;
                    let (row, schema) = (reader.rows, reader.schema);
                    let field = || format!("rows[{row}].{}", schema.columns[j].name);
                    if std::mem::replace(&mut reader.seen[j], true) {
                        let problem = "the feature is given twice".to_string();
                        return Err(reader.fail(Failure::Shape { field: field(), problem }));
                    }
                    reader.store(j, cell, field)?;
                }
                Slot::Target => {
                    map.next_value::<IgnoredAny>()?;
                }
                Slot::Unknown(name) => {
                    map.next_value::<IgnoredAny>()?;
                    extra.push(name);
                }
            }
        }
        let missing: Vec<String> = reader
            .seen
            .iter()
            .zip(&reader.schema.columns)
            .filter(|(seen, _)| !**seen)
            .map(|(_, c)| c.name.clone())
            .collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(reader.fail(Failure::Columns { field: reader.row_field(), missing, extra }));
        }
        Ok(())
    }
}

enum Slot {
    Feature(usize),
    Target,
    Unknown(String),
}

/// A row's key, looked up without allocating (unless it is unknown).
struct Key<'a> {
    index: &'a HashMap<String, usize>,
    target: &'a str,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Slot;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Slot, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Slot;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a feature name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Slot, E> {
        Ok(match self.index.get(key) {
            Some(&j) => Slot::Feature(j),
            None if key == self.target => Slot::Target,
            None => Slot::Unknown(key.to_string()),
        })
    }
}

/// A cell as sent: a code, missing, or something that is not a code (kept for the message).
enum Cell {
    Missing,
    Code(i64),
    Other(String),
}

impl<'de> de::Deserialize<'de> for Cell {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Cell, D::Error> {
        deserializer.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a code or null")
    }

    fn visit_unit<E>(self) -> Result<Cell, E> {
        Ok(Cell::Missing)
    }

    fn visit_none<E>(self) -> Result<Cell, E> {
        Ok(Cell::Missing)
    }

    fn visit_i64<E>(self, v: i64) -> Result<Cell, E> {
        Ok(Cell::Code(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Cell, E> {
        Ok(i64::try_from(v).map_or_else(|_| Cell::Other(v.to_string()), Cell::Code))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Cell, E> {
        // 1.0 is the code 1, as in CSV; 0.5 is not a code.
        Ok(if v.fract() == 0.0 && v.abs() < 1e15 { Cell::Code(v as i64) } else { Cell::Other(v.to_string()) })
    }

    fn visit_bool<E>(self, v: bool) -> Result<Cell, E> {
        Ok(Cell::Other(v.to_string()))
    }

    fn visit_str<E>(self, v: &str) -> Result<Cell, E> {
        Ok(Cell::Other(format!("the string {v:?}")))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Cell, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Other("an array".into()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Cell, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Other("an object".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::two_feature_example()
    }

    fn read(text: &str) -> Result<Dataset, ApiError> {
        let schema = schema();
        let index = schema.columns.iter().enumerate().map(|(j, c)| (c.name.clone(), j)).collect();
        parse(&schema, &index, text.as_bytes(), 3)
    }

    #[test]
    fn objects_and_arrays_in_either_envelope() {
        let d = read(r#"[{"b": 1, "a": null, "y": -1}, [0, -1.0]]"#).unwrap();
        assert!(d.x[0].is_nan());
        assert_eq!(&d.x[1..], &[1.0, 0.0, -1.0]);
        assert_eq!(d.n_rows(), 2);
        assert!(!d.is_labelled());
        assert_eq!(read(r#"{"rows": [[1, 1]]}"#).unwrap().x, vec![1.0, 1.0]);
    }

    #[test]
    fn mistakes_name_the_field_and_position() {
        let e = read("[{\"a\": 1,\n \"b\": 0}]").unwrap_err();
        assert_eq!((e.field.as_deref(), e.line), (Some("rows[0].b"), Some(2)));
        assert!(
            e.problem.contains("0 is not an allowed value") && e.hint.as_deref().unwrap().contains("-1, 1"),
            "{}",
            e.problem
        );
        let e = read(r#"[[1, "x"]]"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("rows[0][1]"));
        assert!(e.problem.contains("the string \"x\" is not a code"));
        let e = read(r#"[{"a": 1, "c": 1, "d": 2}]"#).unwrap_err();
        assert_eq!(
            (&e.missing_columns[..], &e.extra_columns[..]),
            (&["b".to_string()][..], &["c".to_string(), "d".into()][..])
        );
        assert!(read("[[1]]").unwrap_err().problem.contains("1 values but the schema has 2"));
        assert!(read("[[1, 1, 1]]").unwrap_err().problem.contains("more than the 2 features"));
        assert!(read(r#"[{"a": 1, "a": 1, "b": 1}]"#).unwrap_err().problem.contains("twice"));
        assert!(read(r#"{"rowz": []}"#).unwrap_err().problem.contains("unexpected key `rowz`"));
    }

    #[test]
    fn syntax_errors_empty_bodies_and_too_many_rows() {
        let e = read("[[1, 1],").unwrap_err();
        assert!(e.problem.starts_with("malformed JSON") && e.line == Some(1), "{}", e.problem);
        assert!(read("[]").unwrap_err().problem.contains("no rows"));
        assert!(read("7").unwrap_err().problem.starts_with("malformed JSON"));
        assert!(read("[[1, 1]] x").unwrap_err().problem.starts_with("malformed JSON"));
        assert_eq!(read("[[1,1],[1,1],[1,1],[1,1]]").unwrap_err().status, StatusCode::PAYLOAD_TOO_LARGE);
    }
}
