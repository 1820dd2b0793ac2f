//! `hearth`: parse the command line, set up logging, run, map errors to an exit code.

use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches};

fn main() -> ExitCode {
    // The logging options belong to logging, not to any subcommand: they are added here to the
    // command line that cli.rs defines, as global options.
    let matches = hearth::logging::LogArgs::augment_args(hearth::cli::Cli::command()).get_matches();
    let (cli, log) = match hearth::cli::Cli::from_arg_matches(&matches)
        .and_then(|cli| Ok((cli, hearth::logging::LogArgs::from_arg_matches(&matches)?)))
    {
        Ok(parsed) => parsed,
        Err(e) => e.exit(),
    };
    let quiet = matches!(cli.command, hearth::cli::Command::Demo(_));
    hearth::logging::init(log.log_format, cli.verbose, quiet);
    match hearth::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
