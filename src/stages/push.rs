//! Push: an accepted model becomes a new version in the store and is promoted to current;
//! a rejected one is recorded as not pushed.

use serde::{Deserialize, Serialize};

use super::evaluate::Decision;
use crate::artifacts::Run;
use crate::model_file::ModelFile;
use crate::store::ModelStore;

pub const RESULT: &str = "push/result.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResult {
    pub pushed: bool,
    pub store: String,
    pub version: Option<String>,
}

pub fn run(run: &mut Run, store: &dyn ModelStore, model: &ModelFile, decision: &Decision) -> anyhow::Result<PushResult> {
    let started = std::time::Instant::now();
    let version = if decision.accepted {
        let version = store.put(model)?;
        store.promote(&version)?;
        Some(version)
    } else {
        None
    };
    let result = PushResult { pushed: version.is_some(), store: store.describe(), version };
    let json = serde_json::to_vec_pretty(&result)?;
    run.write(RESULT, |w| w.write_all(&json))?;
    run.finish_stage("push", started.elapsed().as_secs_f64())?;
    Ok(result)
}
