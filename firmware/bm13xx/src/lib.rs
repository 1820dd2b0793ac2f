//! Bitmain BM13xx chip-chain protocol and driver, `no_std`, no allocation.
//!
//! Layers, from the wire up:
//! * [`crc`], [`command`], [`job`], [`response`]: frames, byte-exact and CRC-checked;
//! * [`model`], [`register`], [`pll`]: what differs between BM1366, BM1368, BM1370 and BM1397;
//! * [`sequence`]: bring-up as pure steps (command, delay, host baud change);
//! * [`chain`]: the only I/O, over `embedded-io-async` and `embedded-hal-async`;
//! * [`tracker`], `verify` (feature `verify`): job ids in flight, duplicates, nonce checks;
//! * `sim` (feature `sim`, std): a chain emulator answering the same protocol from the chips'
//!   side, which really hashes.
//!
//! The protocol facts and their sources are in `docs/bm13xx-protocol.md`.
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(missing_docs)]

pub mod chain;
pub mod command;
pub mod crc;
pub mod job;
pub mod model;
pub mod pll;
pub mod register;
pub mod response;
pub mod sequence;
pub mod tracker;
#[cfg(feature = "verify")]
pub mod verify;

#[cfg(feature = "sim")]
pub mod sim;

pub use chain::{
    Chain, ChainError, ChainEvent, ChainInfo, ChainOptions, ChainRx, ChainTx, FixedBaud, HostBaud,
};
pub use command::{Command, Destination};
pub use job::{FullHeaderJob, MidstateJob};
pub use model::{ChainBaud, ChipModel, NonceReply};
