//! Stratum V1: the miners people already own (Bitaxe and NerdQAxe on ESP-Miner, NerdMiner,
//! cgminer devices, Antminers) mine through Hearth as devices of its own. Each connection is a
//! device with its own counters; its shares go to the same share checker, and its blocks to the
//! same journal and submitter, as the daemon's boards. The payout is always the daemon's.
//!
//! * [`protocol`]: the wire format (pure);
//! * [`difficulty`]: difficulty to 256-bit target, and vardiff (pure);
//! * [`job`]: jobs cut from the daemon's work and the judgement of a submission (pure);
//! * [`server`]: the listener, connection limits, and one task per session;
//! * [`client`]: Hearth as a miner of an upstream pool (directly or through SOCKS5 / Tor).

pub mod client;
pub mod difficulty;
pub mod job;
mod lines;
pub mod protocol;
pub mod server;
mod session;

pub use server::{StratumServer, StratumSettings};
