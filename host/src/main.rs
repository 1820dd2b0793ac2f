//! `hearth`: parse the command line, set up logging, run, map errors to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = hearth::cli::Cli::parse();
    let quiet = matches!(cli.command, hearth::cli::Command::Demo(_));
    hearth::logging::init(cli.verbose, quiet);
    match hearth::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
