//! The served model and its hot reload: the store's `current` is polled; a new version is
//! read (sha256 against the store's record), decoded (envelope and consistency checks) and
//! tried on two rows before it replaces the old one in one atomic swap. A version failing any
//! of that is refused and the old model keeps serving.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use axum::body::Bytes;

use super::routes::AppState;
use crate::dataset::Dataset;
use crate::model_file::ModelFile;
use crate::store::ModelStore;

/// A refused version is tried again after this long (its file may have been repaired).
const RETRY_REFUSED: Duration = Duration::from_secs(60);

/// A model ready to serve, with what requests need precomputed once per load.
pub struct ServedModel {
    pub version: String,
    pub file: ModelFile,
    /// Feature name → position in the model's rows (for JSON objects).
    pub feature_index: HashMap<String, usize>,
    /// The label value whose probability the model gives.
    pub positive: i64,
    /// GET /model's body.
    pub description: Bytes,
    /// The `x-model-version` header of prediction answers.
    pub version_header: Option<axum::http::HeaderValue>,
}

impl ServedModel {
    pub fn new(version: &str, file: ModelFile) -> ServedModel {
        let feature_index = file.schema.columns.iter().enumerate().map(|(j, c)| (c.name.clone(), j)).collect();
        let positive = file.preprocessor.classes[1];
        let description = Bytes::from(describe(version, &file).to_string());
        let version_header = axum::http::HeaderValue::from_str(version).ok();
        ServedModel { version: version.into(), file, feature_index, positive, description, version_header }
    }
}

fn describe(version: &str, file: &ModelFile) -> serde_json::Value {
    let column = |c: &crate::schema::Column| serde_json::json!({"name": c.name, "values": c.values});
    serde_json::json!({
        "version": version,
        "family": file.family,
        "params": file.params,
        "test_f1": file.test_f1(),
        "metrics": file.metrics,
        "created_at": file.created_at,
        "run_id": file.run_id,
        "data_sha256": file.data_sha256,
        "netsec_version": file.netsec_version,
        "git_revision": file.git_revision,
        "loaded_at": crate::model_file::now_rfc3339(),
        "classes": file.preprocessor.classes,
        "positive_class": file.preprocessor.classes[1],
        "schema": {
            "features": file.schema.columns.iter().map(column).collect::<Vec<_>>(),
            "target": column(&file.schema.target),
        },
    })
}

/// The model being served, swapped atomically; requests hold their own `Arc` of it.
#[derive(Default)]
pub struct ModelSlot {
    current: ArcSwapOption<ServedModel>,
    refused: Mutex<Option<(String, Instant)>>,
    pub loads: AtomicU64,
    pub refusals: AtomicU64,
    /// Notified at every load: the listener waits for the first one before it opens the
    /// service port (with a probe port, see `listener::Listeners`).
    pub loaded: tokio::sync::Notify,
}

impl ModelSlot {
    pub fn get(&self) -> Option<Arc<ServedModel>> {
        self.current.load_full()
    }

    pub fn version(&self) -> Option<String> {
        self.current.load().as_ref().map(|m| m.version.clone())
    }

    fn install(&self, model: ServedModel) {
        let version = model.version.clone();
        let previous = self.current.swap(Some(Arc::new(model)));
        self.loads.fetch_add(1, Ordering::Relaxed);
        // notify_one keeps the wake-up for a listener that is not waiting yet.
        self.loaded.notify_one();
        let previous = previous.map(|m| m.version.clone());
        tracing::info!(version, previous = previous.as_deref().unwrap_or("none"), "now serving model");
    }

    fn refuse(&self, version: String, error: &anyhow::Error) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            version,
            serving = self.version().as_deref().unwrap_or("none"),
            error = format!("{error:#}"),
            "refused the store's current model; the model already loaded keeps serving"
        );
        *self.refused.lock().expect("not poisoned") = Some((version, Instant::now()));
    }

    /// The version refused recently enough not to be tried again yet.
    fn recently_refused(&self) -> Option<String> {
        let refused = self.refused.lock().expect("not poisoned");
        refused.as_ref().filter(|(_, at)| at.elapsed() < RETRY_REFUSED).map(|(v, _)| v.clone())
    }
}

enum Outcome {
    Unchanged,
    Loaded(Box<ServedModel>),
    Refused(String, anyhow::Error),
    StoreUnreadable(anyhow::Error),
}

/// Looks at the store once and loads its current version if it is new and passes.
pub async fn reload_once(state: &AppState, store: &Arc<ModelStore>) {
    let (loaded, skip) = (state.model.version(), state.model.recently_refused());
    let store = store.clone();
    // Store reads and model decoding are file I/O and CPU: keep them off the async workers.
    let outcome = tokio::task::spawn_blocking(move || next_model(store.as_ref(), loaded, skip)).await;
    match outcome {
        Ok(Outcome::Unchanged) => {}
        Ok(Outcome::Loaded(model)) => state.model.install(*model),
        Ok(Outcome::Refused(version, error)) => state.model.refuse(version, &error),
        Ok(Outcome::StoreUnreadable(error)) => {
            tracing::warn!(error = format!("{error:#}"), "cannot read the model store's current version");
        }
        Err(join) => tracing::error!(%join, "loading a model panicked"),
    }
}

fn next_model(store: &ModelStore, loaded: Option<String>, skip: Option<String>) -> Outcome {
    let version = match store.current() {
        Ok(Some(version)) => version,
        Ok(None) => return Outcome::Unchanged,
        Err(error) => return Outcome::StoreUnreadable(error),
    };
    if Some(&version) == loaded.as_ref() || Some(&version) == skip.as_ref() {
        return Outcome::Unchanged;
    }
    match load_checked(store, &version) {
        Ok(model) => Outcome::Loaded(Box::new(model)),
        Err(error) => Outcome::Refused(version, error),
    }
}

/// Reads a version through the store's checks, then predicts two rows with it (every cell
/// missing, and every cell at its first code): a model that cannot do that is not served.
pub fn load_checked(store: &ModelStore, version: &str) -> anyhow::Result<ServedModel> {
    let file = store.get(version)?;
    let schema = &file.schema;
    let mut rows = Dataset::new(schema.feature_names(), schema.target.name.clone());
    rows.x.extend(std::iter::repeat_n(f32::NAN, schema.n_features()));
    rows.x.extend(schema.columns.iter().map(|c| c.values[0] as f32));
    let predictions = file.predict_dataset(&rows)?;
    let sane = |&(label, p): &(i64, f64)| schema.target.values.contains(&label) && (0.0..=1.0).contains(&p);
    anyhow::ensure!(
        predictions.len() == 2 && predictions.iter().all(sane),
        "the model predicts nonsense: {predictions:?}"
    );
    Ok(ServedModel::new(version, file))
}

/// Polls the store every `poll_interval` (or at once when asked, after a training run) until
/// `stop` turns true.
pub async fn poll(state: Arc<AppState>, store: Arc<ModelStore>, mut stop: tokio::sync::watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(state.options.poll_interval) => {}
            () = state.reload_now.notified() => {}
            _ = stop.changed() => return,
        }
        reload_once(&state, &store).await;
    }
}
