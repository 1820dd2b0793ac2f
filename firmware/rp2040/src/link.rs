//! The host link: USB CDC-ACM carrying `hearth-link` frames.

use embassy_executor::Spawner;
use embassy_rp::peripherals::USB;
use embassy_rp::usb::Driver;
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use embassy_sync::channel::Channel;
use embassy_usb::class::cdc_acm::{CdcAcmClass, Receiver, Sender, State};
use embassy_usb::{Builder, UsbDevice};
use heapless::String;
use hearth_link::{BoardToHost, FrameDecoder, HostToBoard, MAX_FRAME, encode};
use static_cell::StaticCell;

use crate::board;

/// Messages from the host, decoded.
pub static HOST_RX: Channel<CriticalSectionRawMutex, HostToBoard, 8> = Channel::new();
/// Messages for the host.
static HOST_TX: Channel<CriticalSectionRawMutex, BoardToHost, 32> = Channel::new();

/// Queue a message for the host. Never blocks the main loop: when the host is not reading and
/// the queue is full, the message is dropped (telemetry and logs are periodic; nonces for work
/// the host no longer reads are worthless).
pub fn send(message: BoardToHost) {
    let _ = HOST_TX.try_send(message);
}

/// Serial number: the flash chip's unique id when the boot ROM is there to read it; the build's
/// `HEARTH_SERIAL` (or a fixed one) otherwise, e.g. in an emulator without a boot ROM.
pub fn serial_number(
    flash: embassy_rp::Peri<'static, embassy_rp::peripherals::FLASH>,
) -> String<24> {
    let mut serial = String::new();
    if embassy_rp::rom_data::rom_version_number() != 0 {
        let mut flash = embassy_rp::flash::Flash::<
            _,
            embassy_rp::flash::Blocking,
            { 2 * 1024 * 1024 },
        >::new_blocking(flash);
        let mut uid = [0u8; 8];
        if flash.blocking_unique_id(&mut uid).is_ok() {
            for b in uid {
                let hex = b"0123456789ABCDEF";
                let _ = serial.push(char::from(hex[usize::from(b >> 4)]));
                let _ = serial.push(char::from(hex[usize::from(b & 0xF)]));
            }
            return serial;
        }
    }
    let fallback = if board::BUILD_SERIAL.is_empty() {
        "NOROM0000001"
    } else {
        board::BUILD_SERIAL
    };
    for c in fallback.chars() {
        if serial.push(c).is_err() {
            break;
        }
    }
    serial
}

type UsbDriver = Driver<'static, USB>;

/// Build the USB device and start its tasks.
pub fn start(spawner: Spawner, driver: UsbDriver, serial: &String<24>) {
    static SERIAL: StaticCell<String<24>> = StaticCell::new();
    let serial: &'static String<24> = SERIAL.init(serial.clone());
    let mut config = embassy_usb::Config::new(board::USB_VID, board::USB_PID);
    config.manufacturer = Some(board::USB_MANUFACTURER);
    config.product = Some(board::USB_PRODUCT);
    config.serial_number = Some(serial.as_str());
    config.max_power = 100;
    config.max_packet_size_0 = 64;

    static CONFIG_DESC: StaticCell<[u8; 256]> = StaticCell::new();
    static BOS_DESC: StaticCell<[u8; 256]> = StaticCell::new();
    static CONTROL_BUF: StaticCell<[u8; 64]> = StaticCell::new();
    static STATE: StaticCell<State> = StaticCell::new();
    let mut builder = Builder::new(
        driver,
        config,
        CONFIG_DESC.init([0; 256]),
        BOS_DESC.init([0; 256]),
        &mut [],
        CONTROL_BUF.init([0; 64]),
    );
    let class = CdcAcmClass::new(&mut builder, STATE.init(State::new()), 64);
    let usb = builder.build();
    let (sender, receiver) = class.split();
    // Each task has a pool of one and is spawned once, here: spawning cannot fail.
    if let Ok(task) = usb_task(usb) {
        spawner.spawn(task);
    }
    if let Ok(task) = rx_task(receiver) {
        spawner.spawn(task);
    }
    if let Ok(task) = tx_task(sender) {
        spawner.spawn(task);
    }
}

#[embassy_executor::task]
async fn usb_task(mut usb: UsbDevice<'static, UsbDriver>) -> ! {
    usb.run().await
}

#[embassy_executor::task]
async fn rx_task(mut receiver: Receiver<'static, UsbDriver>) -> ! {
    let mut decoder = FrameDecoder::new();
    let mut packet = [0u8; 64];
    loop {
        receiver.wait_connection().await;
        decoder.reset();
        while let Ok(n) = receiver.read_packet(&mut packet).await {
            // A 64-byte packet holds at most a dozen of the smallest frames.
            let mut decoded: heapless::Vec<HostToBoard, 16> = heapless::Vec::new();
            decoder.feed(&packet[..n], |result: Result<HostToBoard, _>| {
                // Bad frames (garbage, a version we do not speak) are dropped; the decoder is
                // already synchronised again at the next delimiter.
                if let Ok(message) = result {
                    let _ = decoded.push(message);
                }
            });
            // Wait for room rather than drop: work items must not be lost. USB flow control
            // holds the host back meanwhile.
            for message in decoded {
                HOST_RX.send(message).await;
            }
        }
    }
}

#[embassy_executor::task]
async fn tx_task(mut sender: Sender<'static, UsbDriver>) -> ! {
    let mut frame = [0u8; MAX_FRAME];
    loop {
        sender.wait_connection().await;
        // Connected: write until a transfer fails (host gone), then wait for it again.
        loop {
            let message = HOST_TX.receive().await;
            let Ok(bytes) = encode(&message, &mut frame) else {
                continue;
            };
            let mut failed = false;
            for chunk in bytes.chunks(64) {
                if sender.write_packet(chunk).await.is_err() {
                    failed = true;
                    break;
                }
            }
            // A transfer that ends on a full packet needs a zero-length packet to finish.
            if !failed && bytes.len() % 64 == 0 && sender.write_packet(&[]).await.is_err() {
                failed = true;
            }
            if failed {
                break;
            }
        }
    }
}
