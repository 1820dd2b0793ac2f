//! Chip → host responses and a resynchronising frame decoder.
//!
//! A response is `AA 55 | 4 data bytes | b6 | b7 | [v_hi v_lo] | TTTccccc` (docs/bm13xx-protocol.md
//! §1.5): no length byte, 9 bytes on BM1397 and on a BM1366+ before version rolling is enabled,
//! 11 bytes otherwise. The last byte carries the type in bits 7..5 (bit 7 set = nonce) and CRC5 in
//! bits 4..0.
//!
//! The UART can slip (noise, a baud change, a reset in mid-frame), so the decoder never trusts
//! alignment: it scans for `AA 55`, waits for a whole frame, checks CRC5, and on failure drops
//! one byte and scans again (what mujina's `FrameCodec` does and ESP-Miner does not).

use crate::crc::response_crc_ok;

/// Preamble of every chip → host frame.
pub const RESPONSE_PREAMBLE: [u8; 2] = [0xAA, 0x55];
/// Longest response (BM1366/68/70 with version rolling on).
pub const MAX_RESPONSE_LEN: usize = 11;

/// A register value a chip sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RegisterReply {
    /// Register value (bytes 2..5, most-significant first).
    pub value: u32,
    /// Address of the chip that answered (byte 6).
    pub chip_address: u8,
    /// Register that was read (byte 7).
    pub register: u8,
}

/// A nonce reply before model-specific decoding (see [`crate::model::ChipModel::decode_nonce`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RawNonce {
    /// Bytes 2..5 exactly as received; the header nonce is their little-endian reading.
    pub nonce_bytes: [u8; 4],
    /// Byte 6.
    pub b6: u8,
    /// Byte 7.
    pub b7: u8,
    /// Bytes 8..9 read big-endian (rolled version field), on 11-byte responses.
    pub version_field: Option<u16>,
}

/// A response frame, CRC checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Response {
    /// Type 0: a register read reply.
    Register(RegisterReply),
    /// Type 4: a nonce.
    Nonce(RawNonce),
}

/// Why a byte slice is not a valid response frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseError {
    /// Length is not 9 or 11 bytes.
    BadLength(usize),
    /// Does not start with `AA 55`.
    BadPreamble,
    /// CRC5 does not check.
    BadCrc,
    /// The type bits name no known response type.
    BadType(u8),
}

impl core::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadLength(n) => write!(f, "response of {n} bytes: expected 9 or 11"),
            Self::BadPreamble => f.write_str("response does not start with AA 55"),
            Self::BadCrc => f.write_str("response CRC5 does not check"),
            Self::BadType(t) => {
                write!(f, "response type {t} is neither register (0) nor nonce (4)")
            }
        }
    }
}

impl core::error::Error for ResponseError {}

/// Parse one complete response frame (preamble included).
///
/// ```
/// use bm13xx::response::{parse_response, Response};
/// // BM1370 chip-id reply.
/// let r = parse_response(&[0xAA, 0x55, 0x13, 0x70, 0, 0, 0, 0, 0, 0, 0x10]).unwrap();
/// let Response::Register(reg) = r else { panic!() };
/// assert_eq!((reg.value >> 16, reg.register), (0x1370, 0x00));
/// ```
pub fn parse_response(frame: &[u8]) -> Result<Response, ResponseError> {
    if frame.len() != 9 && frame.len() != 11 {
        return Err(ResponseError::BadLength(frame.len()));
    }
    if frame[..2] != RESPONSE_PREAMBLE {
        return Err(ResponseError::BadPreamble);
    }
    if !response_crc_ok(&frame[2..]) {
        return Err(ResponseError::BadCrc);
    }
    let last = frame[frame.len() - 1];
    // Only two response types exist: 0 (register) and 4 (nonce). Rejecting the other six cuts
    // the frames that pass CRC5 by chance after a slip by a further factor of four.
    if last & 0x60 != 0 {
        return Err(ResponseError::BadType(last >> 5));
    }
    let data = [frame[2], frame[3], frame[4], frame[5]];
    if last & 0x80 != 0 {
        Ok(Response::Nonce(RawNonce {
            nonce_bytes: data,
            b6: frame[6],
            b7: frame[7],
            version_field: (frame.len() == 11).then(|| u16::from_be_bytes([frame[8], frame[9]])),
        }))
    } else {
        Ok(Response::Register(RegisterReply {
            value: u32::from_be_bytes(data),
            chip_address: frame[6],
            register: frame[7],
        }))
    }
}

/// Counters a decoder keeps about the stream it has seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecoderStats {
    /// Frames that passed CRC.
    pub frames: u64,
    /// Candidate frames (after an `AA 55`) that failed CRC.
    pub crc_errors: u64,
    /// Bytes thrown away while looking for a preamble or after a CRC failure.
    pub bytes_skipped: u64,
}

/// Incremental response decoder with resynchronisation. No allocation; 64-byte window.
#[derive(Debug, Clone)]
pub struct ResponseDecoder {
    buf: [u8; Self::CAPACITY],
    len: usize,
    frame_len: usize,
    stats: DecoderStats,
}

impl ResponseDecoder {
    /// Bytes buffered at most; [`ResponseDecoder::push`] takes no more than the free space.
    pub const CAPACITY: usize = 64;

    /// A decoder for fixed-length frames of `frame_len` bytes (9 or 11).
    pub fn new(frame_len: usize) -> Self {
        ResponseDecoder {
            buf: [0; Self::CAPACITY],
            len: 0,
            frame_len: if frame_len == 9 { 9 } else { MAX_RESPONSE_LEN },
            stats: DecoderStats::default(),
        }
    }

    /// Frame length currently expected.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Change the expected frame length (after enabling version rolling on BM1366+).
    pub fn set_frame_len(&mut self, frame_len: usize) {
        self.frame_len = if frame_len == 9 { 9 } else { MAX_RESPONSE_LEN };
    }

    /// Stream statistics so far.
    pub fn stats(&self) -> DecoderStats {
        self.stats
    }

    /// Forget buffered bytes (after a reset or a baud change).
    pub fn clear(&mut self) {
        self.stats.bytes_skipped += self.len as u64;
        self.len = 0;
    }

    /// Free space in the buffer.
    pub fn free(&self) -> usize {
        Self::CAPACITY - self.len
    }

    /// Append bytes; returns how many were taken (at most [`ResponseDecoder::free`]).
    /// Call [`ResponseDecoder::next_response`] until it returns `None` between pushes.
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.free());
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        n
    }

    /// Decode every frame in `bytes`, calling `on_response` for each; convenient when the input
    /// chunk may be larger than the buffer.
    pub fn feed(&mut self, mut bytes: &[u8], mut on_response: impl FnMut(Response)) {
        while !bytes.is_empty() {
            let n = self.push(bytes);
            bytes = &bytes[n..];
            while let Some(r) = self.next_response() {
                on_response(r);
            }
        }
    }

    /// The next complete, CRC-valid frame, or `None` if more bytes are needed.
    pub fn next_response(&mut self) -> Option<Response> {
        loop {
            // Seek the preamble.
            let start = match self.buf[..self.len]
                .windows(2)
                .position(|w| w == RESPONSE_PREAMBLE)
            {
                Some(at) => at,
                // No preamble yet; keep a trailing 0xAA, it may be the first half of one.
                None if self.len > 0 && self.buf[self.len - 1] == RESPONSE_PREAMBLE[0] => {
                    self.len - 1
                }
                None => self.len,
            };
            if start > 0 {
                self.consume(start);
                self.stats.bytes_skipped += start as u64;
            }
            if self.len < self.frame_len {
                return None;
            }
            match parse_response(&self.buf[..self.frame_len]) {
                Ok(response) => {
                    self.consume(self.frame_len);
                    self.stats.frames += 1;
                    return Some(response);
                }
                Err(_) => {
                    // Not a frame after all: drop the first preamble byte and look again.
                    self.stats.crc_errors += 1;
                    self.stats.bytes_skipped += 1;
                    self.consume(1);
                }
            }
        }
    }

    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.len, 0);
        self.len -= n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resynchronises_on_a_misaligned_stream() {
        // From ESP-Miner issue #268: 11-byte reads that straddle frames after a slip. Each tail
        // `AA 55 ...` is an incomplete frame; glued to a valid frame the decoder must find it.
        let valid = [
            0xAA, 0x55, 0x4C, 0x03, 0x52, 0x75, 0x0C, 0xD2, 0x05, 0xA2, 0x9C,
        ];
        let mut stream = heapless::Vec::<u8, 64>::new();
        stream
            .extend_from_slice(&[
                0x53, 0x04, 0x5E, 0x1B, 0x2E, 0x8F, 0xAA, 0x55, 0x6C, 0x00, 0x75,
            ])
            .unwrap();
        stream.extend_from_slice(&valid).unwrap();
        let mut d = ResponseDecoder::new(11);
        let mut got = heapless::Vec::<Response, 4>::new();
        d.feed(&stream, |r| got.push(r).unwrap());
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], Response::Nonce(n) if n.nonce_bytes == [0x4C, 0x03, 0x52, 0x75]));
        assert!(d.stats().bytes_skipped >= 11);
    }

    #[test]
    fn keeps_a_trailing_preamble_byte() {
        let mut d = ResponseDecoder::new(11);
        d.push(&[0x00, 0x01, 0xAA]);
        assert!(d.next_response().is_none());
        d.push(&[0x55, 0x4C, 0x03, 0x52, 0x75, 0x0C, 0xD2, 0x05, 0xA2, 0x9C]);
        assert!(d.next_response().is_some());
    }
}
