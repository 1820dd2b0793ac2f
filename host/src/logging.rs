//! Logging: `tracing` to stderr, filtered by `HEARTH_LOG` (then `RUST_LOG`), default `info`.

use tracing_subscriber::EnvFilter;

/// Install the global subscriber. `verbose` raises the default level to debug; `quiet` lowers it
/// to warnings (the demo prints its own lines).
pub fn init(verbose: bool, quiet: bool) {
    let default = if verbose {
        "hearth=debug,bm13xx=debug,info"
    } else if quiet {
        "warn"
    } else {
        "info"
    };
    let filter = std::env::var("HEARTH_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
