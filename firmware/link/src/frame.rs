//! Framing: version byte, postcard body, CRC-32C, COBS, `0x00` delimiter.

use crc::{CRC_32_ISCSI, Crc};
use serde::{Serialize, de::DeserializeOwned};

use crate::PROTOCOL_VERSION;

/// Largest payload (version + postcard body + CRC) before COBS: room for the largest message,
/// a telemetry frame of 16 chips with every field at its widest (pinned by a test).
pub const MAX_PAYLOAD: usize = 512;
/// Largest frame on the wire: COBS adds one byte per 254, plus the delimiter.
pub const MAX_FRAME: usize = MAX_PAYLOAD + MAX_PAYLOAD / 254 + 2;

const CRC32C: Crc<u32> = Crc::<u32>::new(&CRC_32_ISCSI);

/// Why a message could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The message does not fit in [`MAX_PAYLOAD`].
    TooLarge,
    /// The output buffer is smaller than the frame.
    BufferTooSmall,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::TooLarge => write!(f, "message larger than {MAX_PAYLOAD} bytes"),
            Self::BufferTooSmall => f.write_str("output buffer too small for the frame"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Encode `message` as one frame into `out`; returns the frame (delimiter included).
pub fn encode<'a, M: Serialize>(message: &M, out: &'a mut [u8]) -> Result<&'a [u8], EncodeError> {
    let mut payload = [0u8; MAX_PAYLOAD];
    payload[0] = PROTOCOL_VERSION;
    let body_len = postcard::to_slice(message, &mut payload[1..MAX_PAYLOAD - 4])
        .map_err(|_| EncodeError::TooLarge)?
        .len();
    let len = 1 + body_len;
    let crc = CRC32C.checksum(&payload[..len]);
    payload[len..len + 4].copy_from_slice(&crc.to_le_bytes());
    let len = len + 4;
    if out.len() < cobs::max_encoding_length(len) + 1 {
        return Err(EncodeError::BufferTooSmall);
    }
    let n = cobs::encode(&payload[..len], out);
    out[n] = 0;
    Ok(&out[..n + 1])
}

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Longer than [`MAX_FRAME`]; bytes were dropped until the next delimiter.
    Oversize,
    /// Not valid COBS.
    Cobs,
    /// Too short to hold version and CRC.
    Short,
    /// CRC-32C mismatch.
    Crc,
    /// A protocol version this side does not speak.
    Version {
        /// Version in the frame.
        found: u8,
    },
    /// The body is not a message of the expected type.
    Message,
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Oversize => write!(f, "frame longer than {MAX_FRAME} bytes"),
            Self::Cobs => f.write_str("frame is not valid COBS"),
            Self::Short => f.write_str("frame too short"),
            Self::Crc => f.write_str("frame CRC-32C mismatch"),
            Self::Version { found } => {
                write!(
                    f,
                    "frame speaks link protocol {found}, this side speaks {PROTOCOL_VERSION}: update the firmware or the daemon"
                )
            }
            Self::Message => f.write_str("frame body is not a known message"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// Accumulates bytes from the link and yields messages, resynchronising at every `0x00`.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    buf: [u8; MAX_FRAME],
    len: usize,
    overflow: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        FrameDecoder {
            buf: [0; MAX_FRAME],
            len: 0,
            overflow: false,
        }
    }

    /// Forget a partial frame (after a reconnect).
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    /// Feed bytes; `on_frame` gets each complete frame's result. Returns the number of bytes
    /// consumed (always all of them).
    pub fn feed<M: DeserializeOwned>(
        &mut self,
        bytes: &[u8],
        mut on_frame: impl FnMut(Result<M, DecodeError>),
    ) -> usize {
        for &byte in bytes {
            if byte == 0 {
                if self.overflow {
                    on_frame(Err(DecodeError::Oversize));
                } else if self.len > 0 {
                    on_frame(self.decode_current());
                }
                self.reset();
                continue;
            }
            if self.len == self.buf.len() {
                self.overflow = true;
                continue;
            }
            self.buf[self.len] = byte;
            self.len += 1;
        }
        bytes.len()
    }

    fn decode_current<M: DeserializeOwned>(&mut self) -> Result<M, DecodeError> {
        let mut payload = [0u8; MAX_FRAME];
        let n = cobs::decode(&self.buf[..self.len], &mut payload)
            .map_err(|_| DecodeError::Cobs)?
            .frame_size();
        if n < 1 + 4 {
            return Err(DecodeError::Short);
        }
        let (data, crc) = payload[..n].split_at(n - 4);
        let expected = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if CRC32C.checksum(data) != expected {
            return Err(DecodeError::Crc);
        }
        if data[0] != PROTOCOL_VERSION {
            return Err(DecodeError::Version { found: data[0] });
        }
        postcard::from_bytes(&data[1..]).map_err(|_| DecodeError::Message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BoardToHost, HostToBoard, NonceReport};

    #[test]
    fn a_frame_round_trips_and_has_no_inner_zero() {
        let msg = HostToBoard::Ping { seq: 0 };
        let mut out = [0u8; MAX_FRAME];
        let frame = encode(&msg, &mut out).unwrap().to_vec();
        assert_eq!(frame.last(), Some(&0));
        assert!(!frame[..frame.len() - 1].contains(&0));
        let mut d = FrameDecoder::new();
        let mut got = None;
        d.feed(&frame, |r: Result<HostToBoard, _>| got = Some(r));
        assert_eq!(got, Some(Ok(msg)));
    }

    #[test]
    fn the_largest_message_fits() {
        use crate::{BoardState, ChipCounters, Telemetry};
        let wide = ChipCounters {
            nonces: u32::MAX,
            errors: u32::MAX,
            hash_counter: u32::MAX,
            error_counter: u32::MAX,
        };
        let t = BoardToHost::Telemetry(Telemetry {
            uptime_ms: u32::MAX,
            state: BoardState::Throttled,
            asic_temp_mc: Some(i32::MIN),
            board_temp_mc: Some(i32::MIN),
            vr_temp_mc: Some(i32::MIN),
            fan_percent: 100,
            fan_rpm: Some(u32::MAX),
            vcore_mv: Some(u16::MAX),
            vcore_ma: Some(u32::MAX),
            input_mv: Some(u32::MAX),
            input_ma: Some(u32::MAX),
            input_mw: Some(u32::MAX),
            frequency_khz: u32::MAX,
            queued: u8::MAX,
            chips: heapless::Vec::from_slice(&[wide; 16]).unwrap(),
        });
        let mut out = [0u8; MAX_FRAME];
        let frame = encode(&t, &mut out).unwrap();
        assert!(frame.len() <= MAX_FRAME);
    }

    #[test]
    fn garbage_costs_at_most_the_frame_it_hits() {
        let nonce = BoardToHost::Nonce(NonceReport {
            work_id: 7,
            version: 0x2000_0000,
            nonce: 5,
            chip: 0,
            zero_bits: 40,
        });
        let mut out = [0u8; MAX_FRAME];
        let frame = encode(&nonce, &mut out).unwrap().to_vec();
        let mut stream = vec![0x13, 0x37, 0xFF];
        stream.extend_from_slice(&frame);
        let mut bad = frame.clone();
        bad[3] ^= 0x40;
        stream.extend_from_slice(&bad);
        stream.extend_from_slice(&frame);
        let mut d = FrameDecoder::new();
        let mut results = Vec::new();
        d.feed(&stream, |r: Result<BoardToHost, _>| results.push(r));
        // Garbage + first frame are one "frame" up to the first delimiter: lost. Then the bad
        // one fails its check, and the last one is fine.
        assert_eq!(results.len(), 3);
        assert!(results[0].is_err() && results[1].is_err());
        assert_eq!(results[2], Ok(nonce));
    }
}
