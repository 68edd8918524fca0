//! The pipeline's stages. Each reads the previous stage's output (in memory when the
//! pipeline runs them together, from the run folder when run alone) and writes its own.

pub mod evaluate;
pub mod ingest;
pub mod push;
pub mod train;
pub mod transform;
pub mod validate;

use crate::config::Config;
use crate::schema::Schema;

/// What every stage needs: the effective configuration and the schema it names.
pub struct Settings {
    pub config: Config,
    pub schema: Schema,
}

impl Settings {
    pub fn new(config: Config) -> anyhow::Result<Settings> {
        let schema = match &config.schema {
            Some(path) => Schema::load(path)?,
            None => Schema::embedded(),
        };
        Ok(Settings { config, schema })
    }
}
