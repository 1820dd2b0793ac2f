//! Command line: subcommands and their arguments.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
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
    /// Mine against your node with the devices in the configuration file.
    Mine {
        /// Configuration file.
        #[arg(long, default_value = "hearth.toml")]
        config: PathBuf,
    },
    /// Start a throwaway regtest bitcoind and a simulated board, and mine real blocks.
    Demo(crate::demo::DemoArgs),
    /// Configuration tools.
    Config {
        /// What to do with the configuration.
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Serve an emulated BM13xx chip chain on a TCP port (for the firmware emulator and tests).
    SimChain(crate::sim_chain::SimChainArgs),
    /// List the Hearth boards and USB serial adapters plugged in, each with the `[[device]]`
    /// section that mines with it.
    Devices,
    /// The running daemon's state (node, work, hash rate, blocks, devices), from its API.
    Status(crate::status_cli::StatusArgs),
    /// A Hearth pool (`[pool.coordinator]`, `[pool.member]`): audit its ledger, print this
    /// member's key.
    Pool {
        /// What to do.
        #[command(subcommand)]
        command: PoolCommand,
    },
    /// Hearth board tools.
    Board {
        /// What to do with the board.
        #[command(subcommand)]
        command: BoardCommand,
    },
}

/// `hearth board ...`.
#[derive(Debug, Subcommand)]
pub enum BoardCommand {
    /// Bring-up check of a freshly assembled board: I2C parts at their addresses, the chip
    /// chain, temperatures and voltages against boards/<id>.toml. Exits non-zero unless every
    /// check passes.
    Selftest(crate::selftest::SelftestArgs),
}

/// `hearth pool ...`.
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Fetch the coordinator's ledger and check all of it: the hash chain, every share's proof
    /// of work, every round's payout list recomputed, every coinbase against its round. Exits
    /// 0 only if every check passes.
    Audit(crate::pool::cli::AuditArgs),
    /// Print this member's public key (for the coordinator's member list), making it if needed.
    Key(crate::pool::cli::KeyArgs),
}

/// `hearth config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file, and (unless --offline) that the node agrees with it.
    Check {
        /// Configuration file.
        #[arg(long, default_value = "hearth.toml")]
        config: PathBuf,
        /// Do not contact the node, nor send the webhook a test notification.
        #[arg(long)]
        offline: bool,
    },
}

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::SimChain(args) => crate::sim_chain::run(args),
        Command::Mine { config } => {
            let validated = crate::config::Config::load(&config)?.validate()?;
            runtime()?.block_on(async move {
                let daemon = crate::daemon::Daemon::start(validated).await?;
                daemon.run_until_signal().await
            })
        }
        Command::Demo(args) => runtime()?.block_on(crate::demo::run(args)),
        Command::Status(args) => runtime()?.block_on(crate::status_cli::run(args)),
        Command::Devices => {
            let ports = crate::device_list::ports()?;
            print!(
                "{}",
                crate::device_list::report(&ports, &hearth_boards::builtin_usb_ids())
            );
            Ok(())
        }
        Command::Board {
            command: BoardCommand::Selftest(args),
        } => runtime()?.block_on(crate::selftest::run(args)),
        Command::Pool {
            command: PoolCommand::Key(args),
        } => crate::pool::cli::key(args),
        Command::Pool {
            command: PoolCommand::Audit(args),
        } => {
            if runtime()?.block_on(crate::pool::cli::audit(args))? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Config {
            command: ConfigCommand::Check { config, offline },
        } => {
            let validated = crate::config::Config::load(&config)?.validate()?;
            println!("{}: syntax and values OK", config.display());
            println!("  network  {}", validated.network);
            println!("  node     {}", crate::api::redact_url(&validated.rpc_url));
            println!(
                "  payout   {} (script {})",
                validated.address,
                hex::encode(validated.payout.as_bytes())
            );
            println!("  devices  {}", validated.config.devices.len());
            if let Some(stratum) = &validated.stratum {
                let longest = crate::template::coinbase::longest_coinbase_len(
                    &validated.payout,
                    validated.config.payout.tag.as_bytes(),
                )?;
                println!(
                    "  stratum  {} (start difficulty {}, coinbase at most {longest} of {} bytes)",
                    stratum.listen,
                    stratum.vardiff.start,
                    validated
                        .config
                        .stratum
                        .as_ref()
                        .map_or(0, |s| s.max_coinbase_bytes)
                );
            }
            for pool in &validated.pools {
                println!(
                    "  pool     {} at {}:{} as {}{}",
                    pool.name,
                    pool.host,
                    pool.port,
                    pool.user,
                    pool.socks5
                        .as_ref()
                        .map(|p| format!(" through SOCKS5 {p}"))
                        .unwrap_or_default()
                );
            }
            if !validated.pools.is_empty() {
                let order: Vec<&str> = validated
                    .sources
                    .iter()
                    .map(|s| s.map_or("node", |i| validated.pools[i].name.as_str()))
                    .collect();
                println!("  work     {}", order.join(", then "));
            }
            if let Some(c) = &validated.pool_coordinator {
                println!(
                    "  pool     coordinator on {} for {} member(s), ledger {}",
                    c.listen,
                    c.members.len(),
                    c.ledger.display()
                );
            }
            if let Some(m) = &validated.pool_member {
                println!(
                    "  pool     member of {}:{}{}, solo after {:?} without it",
                    m.host,
                    m.port,
                    m.socks5
                        .as_ref()
                        .map(|p| format!(" through SOCKS5 {p}"))
                        .unwrap_or_default(),
                    m.solo_after
                );
            }
            // Local checks: no node needed.
            let mut warnings = Vec::new();
            if let Some(addr) = validated.api_listen {
                for found in [
                    crate::preflight::check_api_listen(addr)?,
                    crate::preflight::check_token_file(&validated.api_token_file)?,
                ] {
                    found.ok.iter().for_each(|line| println!("  {line}"));
                    warnings.extend(found.warnings);
                }
            } else {
                println!("  api      off");
            }
            if let Some(url) = &validated.webhook_url {
                crate::notify::check_url(url)?;
                println!("  notify   {}", crate::api::redact_url(url));
            }
            // Loud, and last before the node's checks, so that they are not scrolled away.
            for warning in &warnings {
                eprintln!("WARNING: {warning}");
            }
            if offline {
                return Ok(());
            }
            runtime()?.block_on(async move {
                let cancel = tokio_util::sync::CancellationToken::new();
                let rpc = crate::daemon::rpc_client(&validated, &cancel).await?;
                let info = crate::node::ready::wait_ready(
                    &rpc,
                    validated.network,
                    Duration::from_secs(10),
                )
                .await?;
                println!("  node is on {} at height {}", info.chain, info.blocks);
                if validated.network == bitcoin::Network::Signet {
                    crate::node::ready::check_signet_challenge(&info)?;
                    println!("  the signet's block challenge needs no signature");
                }
                crate::node::ready::check_payout(&rpc, &validated.address, &validated.payout)
                    .await?;
                println!("  the node derives the same payout script");
                if let Some(endpoint) = &validated.config.node.zmq_hashblock {
                    crate::node::ready::check_zmq(&rpc, endpoint).await?;
                    println!("  the node publishes hashblock on {endpoint}");
                }
                crate::submit::Journal::open(&validated.config.journal.dir)?;
                println!(
                    "  journal {} is writable",
                    validated.config.journal.dir.display()
                );
                if let Some(url) = &validated.webhook_url {
                    let answer = crate::preflight::test_webhook(url, validated.network).await?;
                    println!("  {answer}");
                }
                println!("configuration OK");
                Ok(())
            })
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
