//! The bring-up I²C scan against a fake bus: who answers, NACKs skipped, a hung bus stops it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use embedded_hal_async::i2c::{ErrorKind, ErrorType, I2c, NoAcknowledgeSource, Operation};
use hearth_board::i2c_scan::scan;

/// A bus where `present` addresses acknowledge, `hung` times out, and the rest NACK.
struct Bus {
    present: Vec<u8>,
    hung: Option<u8>,
    probed: Vec<u8>,
}

#[derive(Debug)]
struct BusError(ErrorKind);

impl embedded_hal_async::i2c::Error for BusError {
    fn kind(&self) -> ErrorKind {
        self.0
    }
}

impl ErrorType for Bus {
    type Error = BusError;
}

impl I2c for Bus {
    async fn transaction(
        &mut self,
        address: u8,
        operations: &mut [Operation<'_>],
    ) -> Result<(), Self::Error> {
        self.probed.push(address);
        assert!(
            matches!(operations, [Operation::Read(b)] if b.len() == 1),
            "a probe is a one-byte read"
        );
        if self.hung == Some(address) {
            return Err(BusError(ErrorKind::Other));
        }
        if self.present.contains(&address) {
            Ok(())
        } else {
            Err(BusError(ErrorKind::NoAcknowledge(
                NoAcknowledgeSource::Address,
            )))
        }
    }
}

#[test]
fn every_usable_address_is_probed_and_the_ones_that_answer_are_listed() {
    let mut bus = Bus {
        present: vec![0x4C, 0x24, 0x40, 0x03, 0x7A],
        hung: None,
        probed: Vec::new(),
    };
    let found = embassy_futures::block_on(scan(&mut bus));
    assert_eq!(found.acked.as_slice(), &[0x24, 0x40, 0x4C]);
    assert_eq!(found.stopped_at, None);
    assert_eq!(bus.probed, (0x08..=0x77).collect::<Vec<u8>>());
}

#[test]
fn a_bus_that_hangs_stops_the_scan_at_that_address() {
    let mut bus = Bus {
        present: vec![0x24, 0x40],
        hung: Some(0x30),
        probed: Vec::new(),
    };
    let found = embassy_futures::block_on(scan(&mut bus));
    assert_eq!(found.acked.as_slice(), &[0x24]);
    assert_eq!(found.stopped_at, Some(0x30));
    assert_eq!(bus.probed.last(), Some(&0x30));
}

#[test]
fn a_bus_where_everything_answers_fits() {
    let mut bus = Bus {
        present: (0..=0x7F).collect(),
        hung: None,
        probed: Vec::new(),
    };
    let found = embassy_futures::block_on(scan(&mut bus));
    assert_eq!(found.acked.len(), 112);
}
