//! CSV files: a header row, columns in any order; quoted fields, CRLF and a UTF-8 BOM are fine.

use std::path::PathBuf;

use super::{read_file, sha256_hex, Labels, Loaded, Source, TableBuilder};
use crate::error::InputError;
use crate::schema::Schema;

pub struct CsvFile {
    pub path: PathBuf,
}

impl Source for CsvFile {
    fn describe(&self) -> String {
        format!("CSV file {}", self.path.display())
    }

    fn load(&self, schema: &Schema, labels: Labels) -> anyhow::Result<Loaded> {
        let bytes = read_file(&self.path)?;
        let sha256 = sha256_hex(&bytes);
        let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
        let (dataset, extra_columns) = parse(schema, &self.path, body, labels)?;
        Ok(Loaded { dataset, extra_columns, sha256 })
    }
}

/// Parses CSV held in memory (an upload), with the same rules and messages as a file; `name`
/// stands for the file in messages. A UTF-8 BOM is skipped.
pub fn parse_bytes(
    schema: &Schema,
    name: &str,
    bytes: &[u8],
    labels: Labels,
) -> Result<(crate::dataset::Dataset, Vec<String>), InputError> {
    let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    parse(schema, std::path::Path::new(name), body, labels)
}

fn parse(
    schema: &Schema,
    path: &std::path::Path,
    body: &[u8],
    labels: Labels,
) -> Result<(crate::dataset::Dataset, Vec<String>), InputError> {
    let malformed = |e: csv::Error| {
        let line = e.position().map(|p| p.line()).unwrap_or(0);
        InputError::in_file(path, format!("malformed CSV: {e}")).line(line).hint("check the quoting on that line")
    };
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(body);
    let mut record = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut record).map_err(malformed)? {
        return Err(InputError::in_file(path, "the file is empty"));
    }
    let header_line = record.position().map_or(1, |p| p.line());
    let header: Vec<&str> = record
        .iter()
        .map(|name| std::str::from_utf8(name).map(str::trim))
        .collect::<Result<_, _>>()
        .map_err(|_| InputError::in_file(path, "the header is not valid UTF-8").line(header_line))?;
    let mut table = TableBuilder::new(schema, path, &header, header_line, labels)?;
    while reader.read_byte_record(&mut record).map_err(malformed)? {
        let line = record.position().map_or(0, |p| p.line());
        if record.len() == 1 && record[0].trim_ascii().is_empty() && table.n_columns() > 1 {
            continue; // a blank line
        }
        table.push(line, record.iter())?;
    }
    table.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, ColumnType};

    fn schema() -> Schema {
        let column = |name: &str, values: Vec<i64>| Column { name: name.into(), kind: ColumnType::Int, values };
        Schema {
            columns: vec![column("a", vec![-1, 0, 1]), column("b", vec![-1, 1])],
            target: column("y", vec![-1, 1]),
        }
    }

    fn load(text: &str) -> Result<(crate::dataset::Dataset, Vec<String>), InputError> {
        parse(&schema(), std::path::Path::new("t.csv"), text.as_bytes(), Labels::Required)
    }

    #[test]
    fn columns_in_any_order_extra_dropped_quotes_and_crlf() {
        let (d, extra) = load("\"y\",note,\"b\",a\r\n1,\"x, y\",-1,0\r\n-1,z,1,na\r\n").unwrap();
        assert_eq!(extra, vec!["note"]);
        assert_eq!(d.labels, vec![1, -1]);
        assert_eq!(d.x[..2], [0.0, -1.0]);
        assert!(d.x[2].is_nan());
        assert_eq!(d.x[3], 1.0);
    }

    #[test]
    fn each_mistake_names_its_line_and_column() {
        let e = load("a,b,y\n1,1,1\n1,1\n").unwrap_err();
        assert_eq!((e.line, e.problem.as_str()), (Some(3), "the row has 2 fields but the header has 3"));
        let e = load("a,b,y\n1,x,1\n").unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("b")));
        let e = load("a,b,y\n1,0,1\n").unwrap_err();
        assert!(e.problem.contains("0 is not an allowed value"), "{e}");
        let e = load("a,b,y\n1,1,\n").unwrap_err();
        assert_eq!(e.problem, "the label is missing");
        assert!(load("a,b\n1,1\n").unwrap_err().problem.contains("target column `y`"));
        assert!(load("a,y\n1,1\n").unwrap_err().problem.contains("missing columns: b"));
        assert!(load("a,b,y,a\n").unwrap_err().problem.contains("twice"));
        assert!(load("a,b,y\n").unwrap_err().problem.contains("no data rows"));
    }

    #[test]
    fn bytes_parse_like_a_file_under_the_given_name() {
        let (d, _) = parse_bytes(&schema(), "upload.csv", b"\xEF\xBB\xBFa,b\n1,-1\n", Labels::Optional).unwrap();
        assert_eq!((d.x.as_slice(), d.is_labelled()), (&[1.0, -1.0][..], false));
        let e = parse_bytes(&schema(), "upload.csv", b"a,b\n1,5\n", Labels::Optional).unwrap_err();
        assert_eq!(e.to_string().lines().next(), Some("upload.csv, line 2, column `b`: 5 is not an allowed value"));
    }
}
