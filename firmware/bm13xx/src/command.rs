//! Command frames, host → chip: set address, register write/read, chain inactive.
//!
//! Layout (docs/bm13xx-protocol.md §1.2): `55 AA | HDR | LEN | payload | CRC5`, where HDR bits 6..5
//! are the type (2 = command), bit 4 is "all chips", bits 1..0 the command, LEN counts every byte
//! after the preamble including the CRC, register values travel most-significant byte first, and the
//! CRC5 covers HDR..payload.

use crate::crc::crc5;

/// Preamble of every host → chip frame.
pub const COMMAND_PREAMBLE: [u8; 2] = [0x55, 0xAA];

/// HDR type field value for commands (`0b010 << 5`).
const TYPE_COMMAND: u8 = 0x40;
/// HDR bit 4: the command goes to every chip.
const ALL_CHIPS: u8 = 0x10;
const CMD_SET_ADDRESS: u8 = 0;
const CMD_WRITE_REGISTER: u8 = 1;
const CMD_READ_REGISTER: u8 = 2;
const CMD_CHAIN_INACTIVE: u8 = 3;

/// Which chips a register command addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Destination {
    /// Every chip on the chain (HDR bit 4 set, chip byte 0).
    All,
    /// The one chip with this address.
    Chip(u8),
}

/// A command frame, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// `55 AA 40 05 <addr> 00 <crc>`: the first chip without an address takes this one.
    SetChipAddress(u8),
    /// `55 AA 41|51 09 <chip> <reg> <value BE32> <crc>`.
    WriteRegister {
        /// Chips addressed.
        to: Destination,
        /// Register address.
        register: u8,
        /// Value, sent most-significant byte first.
        value: u32,
    },
    /// `55 AA 42|52 05 <chip> <reg> <crc>`; every addressed chip answers with a register reply.
    ReadRegister {
        /// Chips addressed.
        to: Destination,
        /// Register address.
        register: u8,
    },
    /// `55 AA 53 05 00 00 03`: every chip forgets its address and waits for `SetChipAddress`.
    ChainInactive,
}

/// An encoded command frame: 7 or 11 bytes, CRC included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandFrame {
    bytes: [u8; CommandFrame::MAX_LEN],
    len: u8,
}

impl CommandFrame {
    /// Longest command frame (a register write).
    pub const MAX_LEN: usize = 11;

    /// The bytes to put on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    fn build(header: u8, payload: &[u8]) -> Self {
        let mut bytes = [0u8; Self::MAX_LEN];
        let len = 2 + 2 + payload.len() + 1;
        bytes[..2].copy_from_slice(&COMMAND_PREAMBLE);
        bytes[2] = header;
        // LEN counts HDR, LEN, payload and CRC (everything after the preamble).
        bytes[3] = (len - 2) as u8;
        bytes[4..4 + payload.len()].copy_from_slice(payload);
        bytes[len - 1] = crc5(&bytes[2..len - 1]);
        CommandFrame {
            bytes,
            len: len as u8,
        }
    }
}

impl AsRef<[u8]> for CommandFrame {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// Why a byte sequence is not a valid command frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandDecodeError {
    /// Fewer bytes than the frame needs.
    Truncated,
    /// The frame does not start with `55 AA`.
    BadPreamble,
    /// HDR is not a command header this crate knows.
    UnknownHeader(u8),
    /// LEN does not match the command.
    BadLength(u8),
    /// The CRC5 byte is wrong.
    BadCrc {
        /// CRC computed over the frame.
        expected: u8,
        /// CRC byte received.
        found: u8,
    },
}

impl core::fmt::Display for CommandDecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Truncated => f.write_str("command frame truncated"),
            Self::BadPreamble => f.write_str("command frame does not start with 55 AA"),
            Self::UnknownHeader(h) => write!(f, "unknown command header 0x{h:02X}"),
            Self::BadLength(l) => {
                write!(f, "command length byte 0x{l:02X} does not match the header")
            }
            Self::BadCrc { expected, found } => {
                write!(
                    f,
                    "command CRC5 0x{found:02X} wrong, expected 0x{expected:02X}"
                )
            }
        }
    }
}

impl core::error::Error for CommandDecodeError {}

impl Command {
    /// Encode to wire bytes with CRC5.
    ///
    /// ```
    /// use bm13xx::command::{Command, Destination};
    /// let read_chip_id = Command::ReadRegister { to: Destination::All, register: 0x00 };
    /// assert_eq!(read_chip_id.encode().as_bytes(), [0x55, 0xAA, 0x52, 0x05, 0x00, 0x00, 0x0A]);
    /// let version_rolling = Command::WriteRegister { to: Destination::All, register: 0xA4, value: 0x9000_FFFF };
    /// assert_eq!(
    ///     version_rolling.encode().as_bytes(),
    ///     [0x55, 0xAA, 0x51, 0x09, 0x00, 0xA4, 0x90, 0x00, 0xFF, 0xFF, 0x1C]
    /// );
    /// ```
    pub fn encode(&self) -> CommandFrame {
        match *self {
            Command::SetChipAddress(address) => {
                CommandFrame::build(TYPE_COMMAND | CMD_SET_ADDRESS, &[address, 0x00])
            }
            Command::WriteRegister {
                to,
                register,
                value,
            } => {
                let (all, chip) = split_destination(to);
                let v = value.to_be_bytes();
                CommandFrame::build(
                    TYPE_COMMAND | all | CMD_WRITE_REGISTER,
                    &[chip, register, v[0], v[1], v[2], v[3]],
                )
            }
            Command::ReadRegister { to, register } => {
                let (all, chip) = split_destination(to);
                CommandFrame::build(TYPE_COMMAND | all | CMD_READ_REGISTER, &[chip, register])
            }
            Command::ChainInactive => {
                CommandFrame::build(TYPE_COMMAND | ALL_CHIPS | CMD_CHAIN_INACTIVE, &[0x00, 0x00])
            }
        }
    }

    /// Decode a complete command frame (preamble included), checking LEN and CRC5.
    pub fn decode(frame: &[u8]) -> Result<Command, CommandDecodeError> {
        if frame.len() < 4 {
            return Err(CommandDecodeError::Truncated);
        }
        if frame[..2] != COMMAND_PREAMBLE {
            return Err(CommandDecodeError::BadPreamble);
        }
        let header = frame[2];
        let expected_len =
            command_frame_len(header).ok_or(CommandDecodeError::UnknownHeader(header))?;
        if usize::from(frame[3]) + 2 != expected_len {
            return Err(CommandDecodeError::BadLength(frame[3]));
        }
        if frame.len() < expected_len {
            return Err(CommandDecodeError::Truncated);
        }
        let frame = &frame[..expected_len];
        let expected = crc5(&frame[2..expected_len - 1]);
        let found = frame[expected_len - 1];
        if expected != found {
            return Err(CommandDecodeError::BadCrc { expected, found });
        }
        let to = if header & ALL_CHIPS != 0 {
            Destination::All
        } else {
            Destination::Chip(frame[4])
        };
        Ok(match header & 0x03 {
            CMD_SET_ADDRESS => Command::SetChipAddress(frame[4]),
            CMD_WRITE_REGISTER => Command::WriteRegister {
                to,
                register: frame[5],
                value: u32::from_be_bytes([frame[6], frame[7], frame[8], frame[9]]),
            },
            CMD_READ_REGISTER => Command::ReadRegister {
                to,
                register: frame[5],
            },
            _ => Command::ChainInactive,
        })
    }
}

/// Total frame length (preamble included) of a command frame with this header byte, or `None`
/// when the header is not a command.
pub fn command_frame_len(header: u8) -> Option<usize> {
    match header {
        0x40 | 0x42 | 0x52 | 0x53 => Some(7),
        0x41 | 0x51 => Some(11),
        _ => None,
    }
}

fn split_destination(to: Destination) -> (u8, u8) {
    match to {
        Destination::All => (ALL_CHIPS, 0x00),
        Destination::Chip(address) => (0, address),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_inactive_and_addresses_match_captures() {
        assert_eq!(
            Command::ChainInactive.encode().as_bytes(),
            [0x55, 0xAA, 0x53, 0x05, 0x00, 0x00, 0x03]
        );
        assert_eq!(
            Command::SetChipAddress(0x04).encode().as_bytes(),
            [0x55, 0xAA, 0x40, 0x05, 0x04, 0x00, 0x03]
        );
    }

    #[test]
    fn decode_rejects_a_bad_crc() {
        // MUJ REFERENCE.md prints `55 AA 40 05 04 00 15`; the correct CRC is 0x03.
        assert_eq!(
            Command::decode(&[0x55, 0xAA, 0x40, 0x05, 0x04, 0x00, 0x15]),
            Err(CommandDecodeError::BadCrc {
                expected: 0x03,
                found: 0x15
            })
        );
    }
}
