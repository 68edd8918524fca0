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
    let mut records = Records::new(body);
    let mut table = {
        let Some((header_line, fields)) = records.next() else {
            return Err(InputError::in_file(path, "the file is empty"));
        };
        let header: Vec<&str> =
            fields
                .map(|name| std::str::from_utf8(name).map(str::trim))
                .collect::<Result<_, _>>()
                .map_err(|_| InputError::in_file(path, "the header is not valid UTF-8").line(header_line))?;
        TableBuilder::new(schema, path, &header, header_line, labels)?
    };
    while let Some((line, fields)) = records.next() {
        if fields.len() == 1 && fields.data.trim_ascii().is_empty() && table.n_columns() > 1 {
            continue; // a blank line
        }
        table.push(line, fields)?;
    }
    table.finish()
}

thread_local! {
    static TOKENIZER: std::cell::Cell<Option<Box<csv_core::Reader>>> = const { std::cell::Cell::new(None) };
}

/// The records of a body, from csv_core: the tokenizer the `csv` crate wraps, with the same
/// (default) dialect, which is lenient and never fails. Building its state machine costs
/// about 20 µs, more than parsing a one-row upload to the server, so each thread keeps one and
/// resets it for the next body.
struct Records<'b> {
    tokenizer: Option<Box<csv_core::Reader>>,
    input: &'b [u8],
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl<'b> Records<'b> {
    fn new(input: &'b [u8]) -> Records<'b> {
        let mut tokenizer = TOKENIZER.take().unwrap_or_else(|| Box::new(csv_core::Reader::new()));
        tokenizer.reset();
        Records { tokenizer: Some(tokenizer), input, data: vec![0; 1024], ends: vec![0; 64] }
    }

    /// The next record and the line it starts on.
    fn next(&mut self) -> Option<(u64, Fields<'_>)> {
        let tokenizer = self.tokenizer.as_mut().expect("held until drop");
        let line = tokenizer.line();
        let (mut data_len, mut ends_len) = (0, 0);
        loop {
            let (result, read, written, ended) =
                tokenizer.read_record(self.input, &mut self.data[data_len..], &mut self.ends[ends_len..]);
            self.input = &self.input[read..];
            (data_len, ends_len) = (data_len + written, ends_len + ended);
            match result {
                // Called again with the input exhausted, the tokenizer ends the last record.
                csv_core::ReadRecordResult::InputEmpty => {}
                csv_core::ReadRecordResult::OutputFull => self.data.resize(self.data.len() * 2, 0),
                csv_core::ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                csv_core::ReadRecordResult::Record => {
                    let fields = Fields { data: &self.data[..data_len], ends: self.ends[..ends_len].iter(), start: 0 };
                    return Some((line, fields));
                }
                csv_core::ReadRecordResult::End => return None,
            }
        }
    }
}

impl Drop for Records<'_> {
    fn drop(&mut self) {
        TOKENIZER.set(self.tokenizer.take());
    }
}

/// The fields of one record.
struct Fields<'r> {
    data: &'r [u8],
    ends: std::slice::Iter<'r, usize>,
    start: usize,
}

impl<'r> Iterator for Fields<'r> {
    type Item = &'r [u8];

    fn next(&mut self) -> Option<&'r [u8]> {
        let end = *self.ends.next()?;
        let field = &self.data[self.start..end];
        self.start = end;
        Some(field)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ends.size_hint()
    }
}

impl ExactSizeIterator for Fields<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::two_feature_example()
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
    fn records_and_lines_equal_the_csv_crates() {
        let body = "a,\"b\nc\",d\r\n\r\n\n1,\"x\"\"y\",3\n  \n\"unclosed,4\n5\nlast,no newline";
        let mut oracle = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(body.as_bytes());
        let mut expected = Vec::new();
        for record in oracle.byte_records() {
            let record = record.unwrap();
            let fields: Vec<Vec<u8>> = record.iter().map(<[u8]>::to_vec).collect();
            expected.push((record.position().unwrap().line(), fields));
        }
        for _ in 0..2 {
            // Twice: the second body reuses the thread's tokenizer.
            let mut records = Records::new(body.as_bytes());
            let mut got = Vec::new();
            while let Some((line, fields)) = records.next() {
                got.push((line, fields.map(<[u8]>::to_vec).collect::<Vec<_>>()));
            }
            assert_eq!(got, expected);
        }
    }

    #[test]
    fn bytes_parse_like_a_file_under_the_given_name() {
        let (d, _) = parse_bytes(&schema(), "upload.csv", b"\xEF\xBB\xBFa,b\n1,-1\n", Labels::Optional).unwrap();
        assert_eq!((d.x.as_slice(), d.is_labelled()), (&[1.0, -1.0][..], false));
        let e = parse_bytes(&schema(), "upload.csv", b"a,b\n1,5\n", Labels::Optional).unwrap_err();
        assert_eq!(e.to_string().lines().next(), Some("upload.csv, line 2, column `b`: 5 is not an allowed value"));
    }
}
