//! Hearth: solo Bitcoin mining against your own node, on home-built BM13xx boards.
//!
//! The binary is a thin shell over this library; see `docs/architecture.md` for the data flow.

pub mod api;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod device;
pub mod device_list;
pub mod events;
pub mod logging;
pub mod node;
pub mod notify;
pub mod pool;
pub mod preflight;
pub mod regtest;
pub mod selftest;
pub mod share;
pub mod sim_chain;
pub mod sources;
pub mod status_cli;
pub mod stratum;
pub mod submit;
pub mod template;
pub mod work;
