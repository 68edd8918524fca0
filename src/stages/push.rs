//! Push: an accepted model becomes a new version in the store and is promoted to current;
//! a rejected one is recorded as not pushed. A store that keeps runs (S3) then receives the
//! run folder, accepted or not, as the Python original's `aws s3 sync` did ([`upload`]; the
//! pipeline calls it last, after the tracker has written its files into the run).

use serde::{Deserialize, Serialize};

use super::evaluate::Decision;
use crate::artifacts::Run;
use crate::model_file::ModelFile;
use crate::store::ModelStore;
use crate::store::SyncReport;

pub const RESULT: &str = "push/result.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResult {
    pub pushed: bool,
    pub store: String,
    pub version: Option<String>,
    /// The run folder's upload, for stores that keep runs. Not in `push/result.json`: the
    /// upload follows the stage, so that the manifest it sends is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<SyncReport>,
}

pub fn run(run: &mut Run, store: &ModelStore, model: &ModelFile, decision: &Decision) -> anyhow::Result<PushResult> {
    let started = std::time::Instant::now();
    let version = if decision.accepted {
        let version = store.put(model)?;
        store.promote(&version)?;
        Some(version)
    } else {
        None
    };
    let result = PushResult { pushed: version.is_some(), store: store.describe(), version, artifacts: None };
    let json = serde_json::to_vec_pretty(&result)?;
    run.write(RESULT, |w| w.write_all(&json))?;
    run.finish_stage("push", started.elapsed().as_secs_f64())?;
    Ok(result)
}

/// Uploads the run folder to a store that keeps runs (S3), with its manifest final.
pub fn upload(run: &Run, store: &ModelStore, result: &mut PushResult) -> anyhow::Result<()> {
    result.artifacts = store.upload_run(&run.dir, run.id())?;
    Ok(())
}
