//! The host ↔ board wire contract, shared by the firmware and the `hearth` daemon and nothing
//! else.
//!
//! A frame on the USB CDC link is
//!
//! ```text
//! COBS( version:u8 ‖ postcard(message) ‖ crc32c(version ‖ postcard):u32 LE ) ‖ 0x00
//! ```
//!
//! * COBS (Consistent Overhead Byte Stuffing) removes every zero byte from the frame, so `0x00`
//!   only ever means "end of frame": after garbage, a line glitch or a reconnect the decoder
//!   resynchronises at the next `0x00`, losing at most the frame it was in.
//! * postcard is a compact, no_std serde format made for exactly this kind of MCU link.
//! * CRC-32C catches what USB's own CRC cannot (buffer mix-ups in either firmware).
//! * The version byte lets either side refuse frames of a protocol it does not speak, with an
//!   error that says so, instead of misreading them.
//!
//! Sizes are bounded: no frame exceeds [`MAX_FRAME`] bytes on the wire; the decoder drops longer
//! ones. See `docs/link-protocol.md` for the message reference.
#![cfg_attr(not(any(feature = "std", test)), no_std)]
#![deny(missing_docs)]

mod frame;
mod messages;

pub use frame::{DecodeError, EncodeError, FrameDecoder, MAX_FRAME, MAX_PAYLOAD, encode};
pub use messages::*;

/// Version of the message set; bump on any incompatible change.
pub const PROTOCOL_VERSION: u8 = 1;
