//! The I²C bus scan behind `hearth board selftest`: which addresses answer, so that a maker can
//! see a part that is missing, or strapped to another address, on a freshly assembled board.
//!
//! Each address gets a one-byte read, as the Pico SDK's `bus_scan` and `i2cdetect -r` probe:
//! the RP2040's I²C controller cannot send the zero-length write of an SMBus quick command, and
//! a read changes nothing in the parts this board carries (a PMBus regulator may at most set
//! its CML status bit, which the firmware does not count as a fault).

use embedded_hal_async::i2c::{Error as _, ErrorKind, I2c};
use hearth_link::I2cScan;

/// First address probed: 0x00..=0x07 are reserved (general call, CBUS, HS-mode codes).
pub const FIRST_ADDRESS: u8 = 0x08;
/// Last address probed: 0x78..=0x7F are reserved (10-bit addressing, device id).
pub const LAST_ADDRESS: u8 = 0x77;

/// Probes [`FIRST_ADDRESS`]..=[`LAST_ADDRESS`] in order. A NACK means nobody is there; any other
/// error (the bus held low, a transaction timed out) stops the scan at that address, so a hung
/// bus costs one timeout rather than one per address (the watchdog would not wait for 112).
pub async fn scan<I: I2c>(bus: &mut I) -> I2cScan {
    let mut found = I2cScan {
        acked: heapless::Vec::new(),
        stopped_at: None,
    };
    let mut byte = [0u8; 1];
    for address in FIRST_ADDRESS..=LAST_ADDRESS {
        match bus.read(address, &mut byte).await {
            // 112 addresses fit the 112-entry list: the push cannot fail.
            Ok(()) => {
                let _ = found.acked.push(address);
            }
            Err(e) if matches!(e.kind(), ErrorKind::NoAcknowledge(_)) => {}
            Err(_) => {
                found.stopped_at = Some(address);
                break;
            }
        }
    }
    found
}
