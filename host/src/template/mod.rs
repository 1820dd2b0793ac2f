//! Block templates from the node, and what Hearth builds from them: the coinbase, the merkle
//! branch, and per-extranonce jobs. Everything here is pure (no I/O) and consensus-critical.

pub mod coinbase;
pub mod gbt;

pub use coinbase::{CoinbaseTemplate, EXTRANONCE_SIZE, build_coinbase, coinbase_merkle_branch, merkle_root};
pub use gbt::{BlockTemplate, GbtError, TemplateTx, parse_template, parse_template_reply};
