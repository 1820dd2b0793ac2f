//! Command line: subcommands and their arguments.

use clap::{Parser, Subcommand};

/// Solo Bitcoin mining against your own node, on home-built BM13xx boards.
#[derive(Debug, Parser)]
#[command(name = "hearth", version, about)]
pub struct Cli {
    /// More log output (debug level). `HEARTH_LOG` overrides the filter.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve an emulated BM13xx chip chain on a TCP port (for the firmware emulator and tests).
    SimChain(crate::sim_chain::SimChainArgs),
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::SimChain(args) => crate::sim_chain::run(args),
    }
}
