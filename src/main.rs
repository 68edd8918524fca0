use std::process::ExitCode;

use clap::Parser;
use netsec::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.verbose, cli.log_format);
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(netsec::error::exit_code(&error) as u8)
        }
    }
}
