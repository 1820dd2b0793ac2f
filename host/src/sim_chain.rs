//! `hearth sim-chain`: the BM13xx chain emulator on a TCP port.
//!
//! Anything that can open a TCP connection can wire a UART to it: the rp2040js firmware harness,
//! a test, or a PTY through `socat pty,raw,echo=0,link=/tmp/ttyCHAIN tcp:127.0.0.1:PORT`. Each
//! connection gets a freshly powered chain. The TCP link carries no baud rate, so the emulator
//! assumes the host follows the chips' baud changes.

use std::time::Duration;

use anyhow::{Context, bail};
use bm13xx::ChipModel;
use bm13xx::sim::{LineFaults, SimConfig, serve_tcp};
use clap::Args;

/// Arguments of `hearth sim-chain`.
#[derive(Debug, Clone, Args)]
pub struct SimChainArgs {
    /// Address to listen on; port 0 picks a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Chip model: BM1366, BM1368, BM1370 or BM1397.
    #[arg(long, default_value = "BM1370")]
    pub model: String,
    /// Chips on the chain.
    #[arg(long, default_value_t = 4)]
    pub chips: u16,
    /// sha256d computations per second per chip (0 = as fast as the CPU allows).
    #[arg(long, default_value_t = 0.0)]
    pub hashrate: f64,
    /// Leading zero bits a chip requires before its ticket mask (32 on silicon).
    #[arg(long, default_value_t = 12)]
    pub floor_bits: u32,
    /// Delay before each reply, milliseconds.
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,
    /// Probability that a byte has a bit flipped (both directions).
    #[arg(long, default_value_t = 0.0)]
    pub byte_error_rate: f64,
    /// Probability that a byte is lost (both directions).
    #[arg(long, default_value_t = 0.0)]
    pub byte_drop_rate: f64,
    /// Chain position of a dead chip (repeatable).
    #[arg(long)]
    pub dead_chip: Vec<u16>,
    /// `POSITION:CHIP_ID` of a chip that reports another id, e.g. `1:0x1368` (repeatable).
    #[arg(long)]
    pub wrong_chip_id: Vec<String>,
    /// Hashing threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Pace replies at the chips' baud rate.
    #[arg(long)]
    pub pace: bool,
}

impl SimChainArgs {
    /// The emulator configuration these arguments describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let Some(model) = ChipModel::from_name(&self.model) else {
            bail!(
                "unknown chip model {:?}: use BM1366, BM1368, BM1370 or BM1397",
                self.model
            );
        };
        if self.chips == 0 || self.chips > 256 {
            bail!("--chips must be 1..=256, got {}", self.chips);
        }
        for (name, rate) in [
            ("--byte-error-rate", self.byte_error_rate),
            ("--byte-drop-rate", self.byte_drop_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                bail!("{name} must be a probability between 0 and 1, got {rate}");
            }
        }
        if self.floor_bits > 64 {
            bail!("--floor-bits must be at most 64, got {}", self.floor_bits);
        }
        let mut config = SimConfig::new(model, self.chips);
        config.hashrate_per_chip = self.hashrate.max(0.0);
        config.floor_bits = self.floor_bits;
        config.latency = Duration::from_millis(self.latency_ms);
        config.faults = LineFaults {
            byte_error_rate: self.byte_error_rate,
            byte_drop_rate: self.byte_drop_rate,
        };
        config.dead_chips = self.dead_chip.clone();
        config.threads = self.threads.max(1);
        config.pace_line = self.pace;
        for spec in &self.wrong_chip_id {
            let parsed = spec.split_once(':').and_then(|(pos, id)| {
                let id = id.trim_start_matches("0x").trim_start_matches("0X");
                Some((pos.parse::<u16>().ok()?, u16::from_str_radix(id, 16).ok()?))
            });
            let Some(pair) = parsed else {
                bail!("--wrong-chip-id {spec:?} is not POSITION:CHIP_ID (for example 1:0x1368)");
            };
            config.wrong_chip_ids.push(pair);
        }
        Ok(config)
    }
}

/// Run the emulator until interrupted.
pub fn run(args: SimChainArgs) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener.local_addr().context("reading the bound address")?;
        // Machine-readable first line: scripts read the port from it.
        println!("listening on {local}");
        tracing::info!(%local, model = %config.model, chips = config.chips, "chain emulator ready");
        tokio::select! {
            result = serve_tcp(listener, config) => result.context("chain emulator stopped"),
            _ = tokio::signal::ctrl_c() => Ok(()),
        }
    })
}
