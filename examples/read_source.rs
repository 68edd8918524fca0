//! Reads a source into the feature matrix and nothing else, then prints the rows and the
//! seconds it took: what `cargo xtask bench mongo` times against pymongo + pandas.
//!
//! `cargo run --release --example read_source -- SOURCE [DATABASE COLLECTION]`

use std::time::Instant;

use netsec::config::Config;
use netsec::schema::Schema;
use netsec::source::{self, Labels};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = Config::default();
    match args.as_slice() {
        [source] => config.source = source.clone(),
        [source, database, collection] => {
            config.source = source.clone();
            config.mongo.database = database.clone();
            config.mongo.collection = collection.clone();
        }
        _ => anyhow::bail!("usage: read_source SOURCE [DATABASE COLLECTION]"),
    }
    let started = Instant::now();
    let loaded = source::open_configured(&config)?.load(&Schema::embedded(), Labels::Required)?;
    println!("{} {:.3}", loaded.dataset.n_rows(), started.elapsed().as_secs_f64());
    Ok(())
}
