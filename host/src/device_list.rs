//! `hearth devices`: the boards and adapters on USB and serial, each with the `[[device]]`
//! section that mines with it. Listing is I/O; what to print is the pure [`report`].

use std::fmt::Write;

/// A serial port as the listing sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Port {
    /// `/dev/ttyACM0`, `COM3`.
    pub name: String,
    /// USB details, when the port is a USB device.
    pub usb: Option<Usb>,
}

/// A USB serial device's identity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Usb {
    /// Vendor id.
    pub vid: u16,
    /// Product id.
    pub pid: u16,
    /// Serial number.
    pub serial_number: Option<String>,
    /// Manufacturer string.
    pub manufacturer: Option<String>,
    /// Product string.
    pub product: Option<String>,
}

/// The serial ports of this machine.
pub fn ports() -> anyhow::Result<Vec<Port>> {
    let ports = serialport::available_ports().map_err(|e| {
        anyhow::anyhow!("cannot list serial ports: {e} (on Linux, is /sys mounted?)")
    })?;
    Ok(ports
        .into_iter()
        .map(|p| Port {
            name: p.port_name,
            usb: match p.port_type {
                serialport::SerialPortType::UsbPort(u) => Some(Usb {
                    vid: u.vid,
                    pid: u.pid,
                    serial_number: u.serial_number,
                    manufacturer: u.manufacturer,
                    product: u.product,
                }),
                _ => None,
            },
        })
        .collect())
}

/// The listing: Hearth boards (USB ids of the built-in board definitions, `known` as
/// `(vid, pid, board id)`), other USB serial adapters, other serial ports; a `[[device]]`
/// snippet for each board and adapter.
pub fn report(ports: &[Port], known: &[(u16, u16, String)]) -> String {
    let mut out = String::new();
    let board_of = |u: &Usb| {
        known
            .iter()
            .find(|(vid, pid, _)| *vid == u.vid && *pid == u.pid)
            .map(|(_, _, id)| id.as_str())
    };
    let boards: Vec<(&Port, &Usb, &str)> = ports
        .iter()
        .filter_map(|p| {
            let u = p.usb.as_ref()?;
            Some((p, u, board_of(u)?))
        })
        .collect();
    let adapters: Vec<(&Port, &Usb)> = ports
        .iter()
        .filter_map(|p| {
            p.usb
                .as_ref()
                .filter(|u| board_of(u).is_none())
                .map(|u| (p, u))
        })
        .collect();
    let others: Vec<&str> = ports
        .iter()
        .filter(|p| p.usb.is_none())
        .map(|p| p.name.as_str())
        .collect();

    if boards.is_empty() && adapters.is_empty() {
        out.push_str(
            "No Hearth board and no USB serial adapter found.\n\
             - Plug the board in: it shows up as /dev/ttyACM*; a USB-UART adapter as /dev/ttyUSB* or /dev/ttyACM*.\n\
             - `dmesg | tail` (or `journalctl -k | tail`) says whether the kernel saw it; try another cable (some carry only power).\n\
             - A board in BOOTSEL mode is a USB drive, not a serial port: flash it first (docs/board-bring-up.md).\n",
        );
    }
    if !boards.is_empty() {
        out.push_str("Hearth boards (kind = \"link\"):\n");
        for (port, usb, board) in &boards {
            let serial = usb.serial_number.as_deref().filter(|s| !s.is_empty());
            let _ = writeln!(
                out,
                "  {}  {board}, serial number {}  (USB {:04x}:{:04x})",
                port.name,
                serial.unwrap_or("(none)"),
                usb.vid,
                usb.pid
            );
            out.push_str("\n    [[device]]\n    kind = \"link\"\n");
            match serial {
                // Found by serial number wherever it is plugged in.
                Some(s) => {
                    let _ = writeln!(out, "    serial_number = \"{}\"", toml_escape(s));
                }
                None => {
                    let _ = writeln!(out, "    port = \"{}\"", toml_escape(&port.name));
                }
            }
            out.push('\n');
        }
    }
    if !adapters.is_empty() {
        out.push_str(
            "Other USB serial adapters (a BM13xx chain wired to one mines as kind = \"serial\"):\n",
        );
        for (port, usb) in &adapters {
            let words: Vec<&str> = [&usb.manufacturer, &usb.product, &usb.serial_number]
                .into_iter()
                .filter_map(|s| s.as_deref().filter(|s| !s.is_empty()))
                .collect();
            let _ = writeln!(
                out,
                "  {}  USB {:04x}:{:04x}  {}",
                port.name,
                usb.vid,
                usb.pid,
                words.join(", ")
            );
            let _ = writeln!(
                out,
                "\n    [[device]]\n    kind = \"serial\"\n    path = \"{}\"\n    model = \"BM1370\"   # the chips: BM1366, BM1368, BM1370 or BM1397\n    chips = 1           # chips on the chain\n",
                toml_escape(&port.name)
            );
        }
    }
    if !others.is_empty() {
        let _ = writeln!(
            out,
            "Other serial ports (not USB; a chain on one is kind = \"serial\" with its path): {}",
            others.join(", ")
        );
    }
    out
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb(vid: u16, pid: u16, serial: Option<&str>, manufacturer: &str, product: &str) -> Usb {
        Usb {
            vid,
            pid,
            serial_number: serial.map(String::from),
            manufacturer: Some(manufacturer.into()),
            product: Some(product.into()),
        }
    }

    #[test]
    fn boards_adapters_and_other_ports_each_with_their_snippet() {
        let known = vec![(0x2e8a, 0x000a, "hearth-bm1370-r1".to_string())];
        let ports = vec![
            Port {
                name: "/dev/ttyACM0".into(),
                usb: Some(usb(0x2e8a, 0x000a, Some("E6614103E7"), "Hearth", "bridge")),
            },
            Port {
                name: "/dev/ttyACM1".into(),
                usb: Some(usb(0x2e8a, 0x000a, None, "Hearth", "bridge")),
            },
            Port {
                name: "/dev/ttyUSB0".into(),
                usb: Some(usb(0x1a86, 0x7523, None, "QinHeng", "USB Serial")),
            },
            Port {
                name: "/dev/ttyS0".into(),
                usb: None,
            },
        ];
        let text = report(&ports, &known);
        assert_eq!(
            text,
            r#"Hearth boards (kind = "link"):
  /dev/ttyACM0  hearth-bm1370-r1, serial number E6614103E7  (USB 2e8a:000a)

    [[device]]
    kind = "link"
    serial_number = "E6614103E7"

  /dev/ttyACM1  hearth-bm1370-r1, serial number (none)  (USB 2e8a:000a)

    [[device]]
    kind = "link"
    port = "/dev/ttyACM1"

Other USB serial adapters (a BM13xx chain wired to one mines as kind = "serial"):
  /dev/ttyUSB0  USB 1a86:7523  QinHeng, USB Serial

    [[device]]
    kind = "serial"
    path = "/dev/ttyUSB0"
    model = "BM1370"   # the chips: BM1366, BM1368, BM1370 or BM1397
    chips = 1           # chips on the chain

Other serial ports (not USB; a chain on one is kind = "serial" with its path): /dev/ttyS0
"#
        );
        // Every snippet is valid TOML for a device.
        for snippet in text.split("[[device]]").skip(1) {
            let body: String = snippet
                .lines()
                .skip(1)
                .take_while(|l| !l.trim().is_empty())
                .map(|l| format!("{}\n", l.trim()))
                .collect();
            let parsed: Result<toml::Table, _> = toml::from_str(&body);
            assert!(parsed.is_ok(), "{body}");
        }
    }

    #[test]
    fn nothing_found_says_what_to_try() {
        let text = report(&[], &[]);
        assert!(text.starts_with("No Hearth board and no USB serial adapter found."));
        assert!(text.contains("dmesg"));
        let only_uart = report(
            &[Port {
                name: "/dev/ttyS0".into(),
                usb: None,
            }],
            &[],
        );
        assert!(only_uart.starts_with("No Hearth board"), "{only_uart}");
        assert!(only_uart.contains("/dev/ttyS0"));
    }
}
