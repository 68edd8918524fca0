//! A MongoDB collection as a source (the Python original's `list(collection.find())`), read
//! through a streaming cursor: a task on a worker thread fetches batches while this thread
//! turns the previous one into rows, so only a couple of batches of BSON documents exist at
//! a time.
//!
//! Each document becomes a text record for [`TableBuilder`], so that codes are checked by the
//! same rules, with the same messages, as in a file. `_id` is dropped, as are fields the schema
//! does not name (reported); `null`, `"na"` and NaN are missing values. Rows come in the
//! collection's natural order, which for a collection `netsec load-data` wrote is the file's.
//!
//! What the source and the loader share (`client.rs`: the URI, the client, the messages) and
//! the loader itself (`load.rs`, `netsec load-data`) live here, beside the reader.

pub mod client;
pub mod load;

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

use mongodb::bson::{RawBsonRef, RawDocument, RawDocumentBuf};
use sha2::{Digest, Sha256};

use super::{Labels, Loaded, Source, TableBuilder};
use crate::config::MongoConfig;
use crate::dataset::Dataset;
use crate::error::InputError;
use crate::schema::Schema;
use client::Target;

/// Batches fetched ahead of the one being turned into rows. The server is the bottleneck
/// (a local one is a Python process): one batch ahead keeps it busy.
const BATCHES_IN_FLIGHT: usize = 1;

pub struct MongoSource {
    target: Target,
    batch_size: u32,
}

impl MongoSource {
    /// The collection the settings name on the server `uri` names.
    pub fn new(uri: String, settings: &MongoConfig) -> MongoSource {
        MongoSource { target: Target::new(uri, settings), batch_size: settings.batch_size }
    }

    async fn read(&self, schema: &Schema, labels: Labels) -> anyhow::Result<Loaded> {
        let target = &self.target;
        let client = target.connect().await?;
        if !target.collections(&client).await?.contains(&target.collection) {
            return Err(InputError::new(format!(
                "no collection `{}` in database `{}` on {}",
                target.collection,
                target.database,
                target.server()
            ))
            .hint("check the collection name (--collection or mongo.collection), or load it with netsec load-data")
            .into());
        }
        // No count first: a server may count by scanning, which costs as much as the read.
        let collection = client.database(&target.database).collection::<RawDocumentBuf>(&target.collection);
        let find = collection.find(mongodb::bson::doc! {}).batch_size(self.batch_size);
        let cursor = find.await.map_err(|e| target.explain(e))?;
        let (sender, mut batches) = tokio::sync::mpsc::channel(BATCHES_IN_FLIGHT);
        tokio::spawn(fetch(cursor, sender, target.clone(), self.batch_size as usize));
        let mut reader = DocumentReader::new(schema, labels, &target.namespace())?;
        while let Some(batch) = batches.recv().await {
            for document in batch? {
                reader.push(&document)?;
            }
        }
        reader.finish(target)
    }
}

/// Sends the cursor's documents in batches until it ends, fails, or nobody listens.
async fn fetch(
    mut cursor: mongodb::Cursor<RawDocumentBuf>,
    sender: tokio::sync::mpsc::Sender<anyhow::Result<Vec<RawDocumentBuf>>>,
    target: Target,
    batch_size: usize,
) {
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        match cursor.advance().await {
            Ok(true) => {
                batch.push(cursor.current().to_owned());
                if batch.len() == batch_size && sender.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                    return;
                }
            }
            Ok(false) => {
                if !batch.is_empty() {
                    let _ = sender.send(Ok(batch)).await;
                }
                return;
            }
            Err(e) => {
                let _ = sender.send(Err(target.explain(e))).await;
                return;
            }
        }
    }
}

impl Source for MongoSource {
    fn describe(&self) -> String {
        format!("MongoDB collection {} on {}", self.target.namespace(), self.target.server())
    }

    fn load(&self, schema: &Schema, labels: Labels) -> anyhow::Result<Loaded> {
        // One worker thread for the fetching task; the rows are made on this thread.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        runtime.block_on(self.read(schema, labels))
    }
}

/// Turns documents into rows: finds each schema column's field, writes its value as text,
/// and hands the record to the table.
struct DocumentReader<'s> {
    table: TableBuilder<'s>,
    /// The header given to the table: the schema's features, then the target.
    names: Vec<String>,
    slot_of: HashMap<String, usize>,
    /// The slots of the previous document's fields, in its order: documents usually share
    /// one field order, so most fields are found without hashing.
    last_order: Vec<Option<usize>>,
    /// Where each slot's text is in `text` for the current document (None: absent).
    spans: Vec<Option<(usize, usize)>>,
    text: Vec<u8>,
    extra_fields: BTreeSet<String>,
    namespace: String,
    documents: u64,
}

impl<'s> DocumentReader<'s> {
    fn new(schema: &'s Schema, labels: Labels, namespace: &str) -> Result<DocumentReader<'s>, InputError> {
        let mut names = schema.feature_names();
        if labels == Labels::Required {
            names.push(schema.target.name.clone());
        }
        let header: Vec<&str> = names.iter().map(String::as_str).collect();
        let table = TableBuilder::new(schema, Path::new(namespace), &header, 0, labels)?;
        let slot_of = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        Ok(DocumentReader {
            table,
            spans: vec![None; names.len()],
            names,
            slot_of,
            last_order: Vec::new(),
            text: Vec::new(),
            extra_fields: BTreeSet::new(),
            namespace: namespace.to_string(),
            documents: 0,
        })
    }

    fn push(&mut self, document: &RawDocument) -> anyhow::Result<()> {
        self.documents += 1;
        self.text.clear();
        self.spans.fill(None);
        for (position, element) in document.iter().enumerate() {
            let (key, value) = element.map_err(|e| self.bad_document(document, format!("unreadable BSON: {e}")))?;
            let Some(slot) = self.slot(position, key) else { continue };
            let start = self.text.len();
            write_text(&mut self.text, value);
            self.spans[slot] = Some((start, self.text.len()));
        }
        if let Some(missing) = self.spans.iter().position(Option::is_none) {
            let problem = format!("has no field `{}`", self.names[missing]);
            return Err(self
                .bad_document(document, problem)
                .hint("every document needs every schema column; write null or \"na\" for a missing value")
                .into());
        }
        let fields = self.spans.iter().map(|span| span.map_or(&[][..], |(a, b)| &self.text[a..b]));
        self.table.push(self.documents, fields).map_err(|e| self.at_document(document, e))?;
        Ok(())
    }

    /// The slot of the field `key` at `position`, None for `_id` and fields not in the schema.
    fn slot(&mut self, position: usize, key: &str) -> Option<usize> {
        if let Some(Some(slot)) = self.last_order.get(position) {
            if self.names[*slot] == key {
                return Some(*slot);
            }
        }
        let slot = self.slot_of.get(key).copied();
        if slot.is_none() && key != "_id" && !self.extra_fields.contains(key) {
            self.extra_fields.insert(key.to_string());
        }
        if position >= self.last_order.len() {
            self.last_order.resize(position + 1, None);
        }
        self.last_order[position] = slot;
        slot
    }

    fn finish(self, target: &Target) -> anyhow::Result<Loaded> {
        if self.documents == 0 {
            return Err(InputError::new(format!(
                "collection `{}` in database `{}` on {} is empty",
                target.collection,
                target.database,
                target.server()
            ))
            .hint("load the data first: netsec load-data --input FILE")
            .into());
        }
        let (dataset, _) = self.table.finish()?;
        let sha256 = table_sha256(&dataset);
        Ok(Loaded { dataset, extra_columns: self.extra_fields.into_iter().collect(), sha256 })
    }

    /// Where a document is, for messages: its place in the cursor and its `_id`.
    fn locate(&self, document: &RawDocument) -> String {
        let id = match document.get("_id") {
            Ok(Some(RawBsonRef::ObjectId(id))) => format!("ObjectId(\"{id}\")"),
            Ok(Some(RawBsonRef::String(id))) => format!("{id:?}"),
            Ok(Some(RawBsonRef::Int32(id))) => id.to_string(),
            Ok(Some(RawBsonRef::Int64(id))) => id.to_string(),
            Ok(Some(other)) => format!("{:?}", other.element_type()),
            _ => "(none)".into(),
        };
        format!("{}, document {} (_id {id})", self.namespace, self.documents)
    }

    fn bad_document(&self, document: &RawDocument, problem: String) -> InputError {
        InputError::new(format!("{}: {problem}", self.locate(document)))
    }

    /// A table error (which names a line and a column) restated for a document and a field.
    fn at_document(&self, document: &RawDocument, error: InputError) -> InputError {
        let field = error.column.map(|c| format!(", field `{c}`")).unwrap_or_default();
        let mut restated = InputError::new(format!("{}{field}: {}", self.locate(document), error.problem));
        restated.hint = error.hint;
        restated
    }
}

/// A BSON value as the text a CSV cell would hold: numbers as integers where they are,
/// missing values empty, and anything else as something the table will refuse by name.
fn write_text(out: &mut Vec<u8>, value: RawBsonRef<'_>) {
    match value {
        RawBsonRef::Int32(v) => write_integer(out, i64::from(v)),
        RawBsonRef::Int64(v) => write_integer(out, v),
        RawBsonRef::Double(v) if v.is_nan() => {}
        RawBsonRef::Double(v) if v.fract() == 0.0 && v.abs() < 1e15 => write_integer(out, v as i64),
        RawBsonRef::Double(v) => _ = write!(out, "{v}"),
        RawBsonRef::String(s) => out.extend_from_slice(s.as_bytes()),
        RawBsonRef::Null | RawBsonRef::Undefined => {}
        RawBsonRef::Boolean(b) => _ = write!(out, "{b}"),
        other => _ = write!(out, "<{:?}>", other.element_type()),
    }
}

fn write_integer(out: &mut Vec<u8>, v: i64) {
    match v {
        -1 => out.extend_from_slice(b"-1"),
        0 => out.push(b'0'),
        1 => out.push(b'1'),
        _ => _ = write!(out, "{v}"),
    }
}

/// sha256 of the table as read (features as little-endian f32, then labels as i64), which
/// stands for the source's bytes: a collection has no file to hash.
fn table_sha256(dataset: &Dataset) -> String {
    let mut hasher = Sha256::new();
    for chunk in dataset.x.chunks(1 << 16) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
        hasher.update(&bytes);
    }
    for label in &dataset.labels {
        hasher.update(label.to_le_bytes());
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, oid::ObjectId};

    fn schema() -> Schema {
        Schema::two_feature_example()
    }

    fn raw(document: mongodb::bson::Document) -> RawDocumentBuf {
        RawDocumentBuf::from_document(&document).unwrap()
    }

    #[test]
    fn documents_become_rows_in_any_field_order_with_missing_values() {
        let schema = schema();
        let mut reader = DocumentReader::new(&schema, Labels::Required, "db.c").unwrap();
        let id = ObjectId::new();
        reader.push(&raw(doc! { "_id": id, "a": 1, "b": -1_i64, "y": 1.0, "note": "x" })).unwrap();
        reader.push(&raw(doc! { "y": -1, "b": 1, "a": "na" })).unwrap();
        reader.push(&raw(doc! { "a": mongodb::bson::Bson::Null, "b": "1", "y": 1 })).unwrap();
        assert_eq!(reader.extra_fields.iter().collect::<Vec<_>>(), ["note"]);
        let (data, _) = reader.table.finish().unwrap();
        assert_eq!(data.labels, [1, -1, 1]);
        assert_eq!(data.x[..2], [1.0, -1.0]);
        assert!(data.x[2].is_nan() && data.x[4].is_nan());
    }

    #[test]
    fn a_bad_document_is_named_by_its_place_id_and_field() {
        let schema = schema();
        let mut reader = DocumentReader::new(&schema, Labels::Required, "db.c").unwrap();
        let error = reader.push(&raw(doc! { "_id": 7, "a": 1, "y": 1 })).unwrap_err().to_string();
        assert!(error.starts_with("db.c, document 1 (_id 7): has no field `b`"), "{error}");
        let error = reader.push(&raw(doc! { "_id": "k", "a": 2, "b": 1, "y": 1 })).unwrap_err().to_string();
        assert!(error.starts_with("db.c, document 2 (_id \"k\"), field `a`: 2 is not an allowed value"), "{error}");
        let error = reader.push(&raw(doc! { "a": 0.5, "b": true, "y": 1 })).unwrap_err().to_string();
        assert!(error.contains("field `a`: `0.5` is not an integer"), "{error}");
    }
}
