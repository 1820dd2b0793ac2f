//! The two checksums of the BM13xx serial protocol.
//!
//! * CRC5 (poly x⁵+x²+1, init 0b11111, MSB first, no reflection, no final XOR) protects command
//!   frames and chip responses.
//! * CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection) protects job frames.
//!
//! Both are the catalogue algorithms of the `crc` crate; only CRC5 needs a custom definition
//! because the BM13xx variant starts from 0x1F. Sources: docs/bm13xx-protocol.md §1.3–1.4 (ESP-Miner
//! `crc.c`, bm13xx-rs `crc.rs`, skot/BM1397 `protocol.md`, all agreeing).

use crc::{Algorithm, CRC_16_IBM_3740, Crc};

/// The BM13xx CRC5 parameters.
const CRC5_BM13XX: Algorithm<u8> = Algorithm {
    width: 5,
    poly: 0x05,
    init: 0x1F,
    refin: false,
    refout: false,
    xorout: 0x00,
    check: 0x00, // not used by the crate at run time
    residue: 0x00,
};

const CRC5: Crc<u8> = Crc::<u8>::new(&CRC5_BM13XX);
/// CRC-16/IBM-3740 is the catalogue name of CRC-16/CCITT-FALSE.
const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// CRC5 over whole bytes, as appended to command frames (`0b000ccccc`).
///
/// ```
/// // Chain enumeration: CRC over `52 05 00 00` is 0x0A (captured `55 AA 52 05 00 00 0A`).
/// assert_eq!(bm13xx::crc::crc5(&[0x52, 0x05, 0x00, 0x00]), 0x0A);
/// ```
pub fn crc5(bytes: &[u8]) -> u8 {
    CRC5.checksum(bytes)
}

/// Whether a chip response passes its CRC5: the CRC over every byte after the `AA 55` preamble,
/// including the last byte (3 type bits + 5 CRC bits), leaves a zero register.
///
/// ```
/// // BM1370 chip-id reply: `AA 55 13 70 00 00 00 00 00 00 10`.
/// assert!(bm13xx::crc::response_crc_ok(&[0x13, 0x70, 0, 0, 0, 0, 0, 0, 0x10]));
/// assert!(!bm13xx::crc::response_crc_ok(&[0x13, 0x70, 0, 0, 0, 0, 0, 0, 0x11]));
/// ```
pub fn response_crc_ok(after_preamble: &[u8]) -> bool {
    CRC5.checksum(after_preamble) == 0
}

/// The 5-bit CRC a chip puts in the low bits of a response's last byte: CRC5 over all bits after
/// the preamble except the 5 CRC bits themselves (so the 3 type bits are included).
pub fn response_crc(after_preamble_without_last: &[u8], type_bits: u8) -> u8 {
    let mut digest = CRC5.digest();
    digest.update(after_preamble_without_last);
    let partial = digest.finalize();
    // Feed the three type bits (bits 7..5 of the last byte) MSB first, by hand: the crate works
    // on whole bytes only.
    let mut crc = partial;
    for bit in (5..8).rev() {
        let input = (type_bits >> bit) & 1;
        let feedback = input ^ ((crc >> 4) & 1);
        crc = (crc << 1) & 0x1F;
        if feedback == 1 {
            crc ^= 0x05;
        }
    }
    crc
}

/// CRC-16/CCITT-FALSE, appended big-endian to job frames.
///
/// ```
/// assert_eq!(bm13xx::crc::crc16(b"123456789"), 0x29B1);
/// ```
pub fn crc16(bytes: &[u8]) -> u16 {
    CRC16.checksum(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc5_worked_examples_from_the_protocol_notes() {
        assert_eq!(crc5(&[0x52, 0x05, 0x00, 0x00]), 0x0A);
        assert_eq!(crc5(&[0x53, 0x05, 0x00, 0x00]), 0x03);
        assert_eq!(crc5(&[0x40, 0x05, 0x08, 0x00]), 0x07);
        assert_eq!(
            crc5(&[0x51, 0x09, 0x00, 0xA4, 0x90, 0x00, 0xFF, 0xFF]),
            0x1C
        );
    }

    #[test]
    fn response_crc_matches_captured_replies() {
        // `AA 55 13 62 03 00 00 00 00 00 1E` (bm13xx-rs doc-test).
        let body = [0x13, 0x62, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00];
        assert_eq!(response_crc(&body, 0x00), 0x1E);
        // Bitaxe BM1370 nonce `AA 55 4C 03 52 75 0C D2 05 A2 9C`: type bits 0x80, CRC 0x1C.
        let body = [0x4C, 0x03, 0x52, 0x75, 0x0C, 0xD2, 0x05, 0xA2];
        assert_eq!(response_crc(&body, 0x80), 0x1C);
        assert!(response_crc_ok(&[
            0x4C, 0x03, 0x52, 0x75, 0x0C, 0xD2, 0x05, 0xA2, 0x9C
        ]));
    }
}
