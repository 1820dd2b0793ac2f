//! Board definitions: `boards/<id>.toml` (one per board revision) and `boards/asics.toml` (the
//! envelope of each chip model).
//!
//! The same files feed the firmware (its `build.rs` turns them into constants with
//! [`Board::to_rust_consts`]) and the daemon (which reads them at run time), so pins, addresses
//! and limits live in one place. The types are plain data usable without `std`; loading,
//! validating and code generation need the `std` feature (default).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

#[cfg(feature = "std")]
mod load;
#[cfg(feature = "std")]
pub use load::*;
