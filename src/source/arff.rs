//! ARFF files, the format of the UCI distribution of the phishing data set: `@attribute`
//! lines name the columns, rows follow `@data` as comma-separated values, `?` is missing.

use std::path::{Path, PathBuf};

use super::{read_file, sha256_hex, Labels, Loaded, Source, TableBuilder};
use crate::dataset::Dataset;
use crate::error::InputError;
use crate::schema::Schema;

pub struct ArffFile {
    pub path: PathBuf,
}

impl Source for ArffFile {
    fn describe(&self) -> String {
        format!("ARFF file {}", self.path.display())
    }

    fn load(&self, schema: &Schema, labels: Labels) -> anyhow::Result<Loaded> {
        let bytes = read_file(&self.path)?;
        let sha256 = sha256_hex(&bytes);
        let text =
            std::str::from_utf8(&bytes).map_err(|e| InputError::in_file(&self.path, format!("not UTF-8 text: {e}")))?;
        let (dataset, extra_columns) = parse(schema, &self.path, text, labels)?;
        Ok(Loaded { dataset, extra_columns, sha256 })
    }
}

fn parse(schema: &Schema, path: &Path, text: &str, labels: Labels) -> Result<(Dataset, Vec<String>), InputError> {
    let mut attributes: Vec<String> = Vec::new();
    let mut lines = text.lines().enumerate().map(|(i, l)| (i as u64 + 1, l.trim()));
    let data_line = loop {
        let Some((number, line)) = lines.next() else {
            return Err(InputError::in_file(path, "no `@data` section")
                .hint("an ARFF file lists its rows after a `@data` line"));
        };
        let keyword = line.split_whitespace().next().unwrap_or("").to_ascii_lowercase();
        match keyword.as_str() {
            "@attribute" => attributes.push(attribute_name(path, number, line)?),
            "@data" => break number,
            _ => {}
        }
    };
    let names: Vec<&str> = attributes.iter().map(String::as_str).collect();
    let mut table = TableBuilder::new(schema, path, &names, data_line, labels)?;
    for (number, line) in lines {
        if line.is_empty() || line.starts_with('%') {
            continue;
        }
        if line.starts_with('{') {
            return Err(InputError::in_file(path, "sparse ARFF rows are not supported")
                .line(number)
                .hint("write the rows out in full (dense ARFF) or as CSV"));
        }
        let fields = line.split(',').map(|f| f.trim().trim_matches(['\'', '"']).as_bytes());
        table.push(number, fields.collect::<Vec<_>>().into_iter())?;
    }
    table.finish()
}

/// The name in `@attribute NAME TYPE`; the name may be quoted.
fn attribute_name(path: &Path, number: u64, line: &str) -> Result<String, InputError> {
    let rest = line["@attribute".len()..].trim_start();
    let name = match rest.chars().next() {
        Some(quote @ ('\'' | '"')) => rest[1..].split(quote).next(),
        _ => rest.split_whitespace().next(),
    };
    name.filter(|n| !n.is_empty())
        .map(str::to_string)
        .ok_or_else(|| InputError::in_file(path, "an `@attribute` line without a name").line(number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Column, ColumnType};

    #[test]
    fn reads_the_uci_layout() {
        let column = |name: &str| Column { name: name.into(), kind: ColumnType::Int, values: vec![-1, 0, 1] };
        let schema = Schema {
            columns: vec![column("a"), column("b")],
            target: Column { values: vec![-1, 1], ..column("Result") },
        };
        let text = "@relation phishing\n% comment\n@attribute a { -1,0,1 }\n@attribute 'b' { -1,1 }\n@attribute Result { -1,1 }\n\n@data\n-1,1,1\n0,?,-1\n";
        let (d, extra) = parse(&schema, Path::new("p.arff"), text, Labels::Required).unwrap();
        assert!(extra.is_empty());
        assert_eq!(d.labels, vec![1, -1]);
        assert_eq!(d.x[..3], [-1.0, 1.0, 0.0]);
        assert!(d.x[3].is_nan());
        let e = parse(
            &schema,
            Path::new("p.arff"),
            "@attribute a x\n@attribute b x\n@attribute Result x\n@data\n1,1\n",
            Labels::Required,
        )
        .unwrap_err();
        assert_eq!(e.line, Some(5));
    }
}
