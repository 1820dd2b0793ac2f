"""hearth-bridge r1: the controller board. A Raspberry Pi Pico drives the hashboard's chain
(through a level translator), its I2C bus, its regulator enable and the fan; 5 V comes in
through a fuse, a reverse-polarity MOSFET and a TVS, and goes on to the hashboard.

Two layers, 1206 passives, SOIC/SOT-23 parts and 0.3 mm clearances, so that a fab lab can
mill it (with a 0.2-0.3 mm V-bit) and assemble it by hand; vias are 0.8 mm holes for rivets
or wire.
"""

from . import hashboard_link as link
from .design import Design, Layout
from .parts import (
    CONN_2X10, DIODE, FAN_4PIN, FUSE, LVC1G07, PICO, PMOS_SO8, TERMINAL_2, TVS, TXB0104, _passive, cap, ic, r1206,
)

TITLE = "hearth-bridge"
REVISION = "1"

# Pico pins (module pin numbers) for the GPIOs in boards/hearth-bm1370-r1.toml.
PICO_PIN = {8: "11", 9: "12", 10: "14", 11: "15", 14: "19", 15: "20", 16: "21"}


def pico_pins():
    pins = {
        PICO_PIN[8]: "MCU_TX",
        PICO_PIN[9]: "MCU_RX",
        PICO_PIN[10]: link.VREG_EN,
        PICO_PIN[11]: "MCU_RST_N",
        PICO_PIN[14]: link.SDA,
        PICO_PIN[15]: link.SCL,
        PICO_PIN[16]: "FAN_PWM_3V3",
        "36": link.V3V3,
        "39": "VSYS",
    }
    for gnd in ("3", "8", "13", "18", "23", "28", "33", "38"):
        pins[gnd] = "GND"
    return pins


def design() -> Design:
    parts = [
        # Power in: fuse, reverse-polarity P-MOSFET (its body diode starts it, the gate held
        # at ground turns it fully on), TVS clamp, bulk capacitance.
        ic("J1", TERMINAL_2, "5V in", "Power input: 5 V, up to 5 A",
           {"1": "VIN_RAW", "2": "GND"},
           "TerminalBlock_Phoenix:TerminalBlock_Phoenix_MKDS-1,5-2-5.08_1x02_P5.08mm_Horizontal",
           "1729128", "Phoenix Contact", "277-1247-ND", at=(5.0, 7.0, 0)),
        _passive("F1", FUSE, "7A", "Power input: 5 V, up to 5 A", "VIN_RAW", "VIN_FUSED",
                 "Fuse:Fuse_Littelfuse-NANO2-451_453", "0451007.MRL", "Littelfuse", "F2331CT-ND",
                 at=(19.5, 7.0, 0), Alternate="0451005.MRL (5 A, DigiKey F5760CT-ND)"),
        ic("Q1", PMOS_SO8, "AO4407A", "Power input: 5 V, up to 5 A",
           {"1": link.V5, "2": link.V5, "3": link.V5, "4": "Q1_GATE",
            "5": "VIN_FUSED", "6": "VIN_FUSED", "7": "VIN_FUSED", "8": "VIN_FUSED"},
           "Package_SO:SOIC-8_3.9x4.9mm_P1.27mm", "AO4407A", "Alpha & Omega Semiconductor", "785-1094-1-ND",
           at=(29.5, 7.5, 180), Alternate="Vishay SI4435DDY-T1-GE3 (DigiKey SI4435DDY-T1-GE3CT-ND)"),
        r1206("R1", "10k", "Power input: 5 V, up to 5 A", "Q1_GATE", "GND", at=(29.5, 13.5, 0)),
        # The TVS's standoff must cover the highest input the board accepts:
        # boards/hearth-bm1370-r1.toml allows up to 5.5 V (power.input_voltage_mv.max). The
        # SMBJ5.0A stands off only 5.0 V; the SMBJ6.0A (same SMB package) stands off 6.0 V,
        # breaks down at 6.67 V min and clamps at 10.3 V at 58.3 A (Littelfuse SMBJ series
        # datasheet, electrical characteristics table).
        _passive("D1", TVS, "SMBJ6.0A", "Power input: 5 V, up to 5 A", link.V5, "GND",
                 "Diode_SMD:D_SMB", "SMBJ6.0A", "Littelfuse", "SMBJ6.0ALFCT-ND", at=(40.0, 6.5, 0)),
        cap("C1", "100u/elec", "Power input: 5 V, up to 5 A", link.V5, "GND", at=(51.0, 6.5, 0)),
        cap("C2", "10u/1206", "Power input: 5 V, up to 5 A", link.V5, "GND", at=(40.0, 12.5, 0)),
        # The Pico runs from VSYS through a Schottky (Pico datasheet §4.5), so USB and the
        # board's 5 V can both be connected.
        _passive("D2", DIODE, "SS14", "Power input: 5 V, up to 5 A", "VSYS", link.V5,
                 "Diode_SMD:D_SMA", "SS14", "onsemi", "SS14FSCT-ND", at=(66.0, 8.0, 180)),
        # The controller.
        ic("U1", PICO, "Raspberry Pi Pico", "Controller", pico_pins(),
           "Module:RaspberryPi_Pico_Common_THT", "SC0915", "Raspberry Pi", "2648-SC0915CT-ND",
           at=(78.0, 3.0, 0), Alternate="SC0917 (Pico H, headers fitted)"),
        # Chain UART and reset to the chips' 1.2 V IO. The unused A4 is held low through
        # 100k (TXB0104 I/Os take pulls of 50k and up): an input must not float.
        ic("U2", TXB0104, "TXB0104", "Chain UART and reset, 3.3 V to 1.2 V",
           {"1": link.VIO, "2": link.CHAIN_CI, "3": link.CHAIN_RO, "4": link.CHAIN_NRST, "5": "U2_A4",
            "7": "GND", "8": link.VIO, "14": link.V3V3, "13": "MCU_TX", "12": "MCU_RX", "11": "MCU_RST_N"},
           "Package_SO:SOIC-14_3.9x8.7mm_P1.27mm", "TXB0104DR", "Texas Instruments", "296-21929-1-ND",
           at=(32.0, 30.0, 0), Alternate="TXB0104D (tube)"),
        r1206("R6", "100k", "Chain UART and reset, 3.3 V to 1.2 V", "U2_A4", "GND", at=(25.0, 38.0, 90)),
        cap("C3", "100n/1206", "Chain UART and reset, 3.3 V to 1.2 V", link.VIO, "GND", at=(24.0, 24.0, 90)),
        cap("C4", "100n/1206", "Chain UART and reset, 3.3 V to 1.2 V", link.V3V3, "GND", at=(38.5, 24.0, 90)),
        # I2C pull-ups (the hashboard's devices run from this 3.3 V) and the regulator
        # enable's pull-down: the core rail stays off whenever the Pico is not driving it high.
        r1206("R2", "4.7k", "I2C and regulator enable", link.SDA, link.V3V3, at=(62.0, 44.0, 90)),
        r1206("R3", "4.7k", "I2C and regulator enable", link.SCL, link.V3V3, at=(66.0, 44.0, 90)),
        r1206("R4", "10k", "I2C and regulator enable", link.VREG_EN, "GND", at=(70.0, 38.0, 90)),
        # The hashboard connector, a socket on the underside: the bridge sits on the
        # hashboard's header like a hat.
        ic("J2", CONN_2X10, "Hashboard", "Hashboard connector", link.pins(),
           "Connector_PinSocket_2.54mm:PinSocket_2x10_P2.54mm_Vertical", "PPTC102LFBN-RC", "Sullins Connector Solutions",
           "S7116-ND", at=(8.0, 19.0, 0, "B"), Alternate="Samtec SSW-110-01-G-D"),
        # The fan: 5 V 4-pin PWM. The Pico's 3.3 V PWM drives it through an open-drain buffer
        # (the fan pulls its PWM input up to 5 V itself); the tach goes to the EMC2101 on
        # the hashboard, pulled up here.
        ic("U3", LVC1G07, "SN74LVC1G07", "Fan",
           {"2": "FAN_PWM_3V3", "3": "GND", "5": link.V3V3, "4": "FAN_PWM"},
           "Package_TO_SOT_SMD:SOT-23-5", "SN74LVC1G07DBVR", "Texas Instruments", "296-8486-1-ND", at=(76.0, 57.0, 0)),
        cap("C5", "100n/1206", "Fan", link.V3V3, "GND", at=(82.0, 57.0, 90)),
        r1206("R5", "10k", "Fan", link.FAN_TACH, link.V3V3, at=(52.0, 52.0, 0)),
        ic("J3", FAN_4PIN, "Fan", "Fan",
           {"1": "GND", "2": link.V5, "3": link.FAN_TACH, "4": "FAN_PWM"},
           "Connector:FanPinHeader_1x04_P2.54mm_Vertical", "47053-1000", "Molex", "WM4330-ND", at=(56.0, 57.5, 0)),
    ]
    return Design(
        title=TITLE,
        revision=REVISION,
        licence="CERN-OHL-S-2.0",
        parts=parts,
        # Nets that a connector or a passive part feeds, so ERC sees them driven.
        power_flags=["GND", link.V5, "VSYS", link.VIO],
    )


def layout() -> Layout:
    return Layout(
        size=(100.0, 62.0),
        clearance=0.3,
        track=0.4,
        via=(1.6, 0.8),
        edge_clearance=0.5,
        grid=0.25,
        net_widths={"/VIN_RAW": 2.0, "/VIN_FUSED": 2.0, "/" + link.V5: 2.0, "/GND": 0.8, "/" + link.V3V3: 0.6, "/VSYS": 0.6},
        route_first=["/VIN_RAW", "/VIN_FUSED", "/" + link.V5],
        zones=[{"net": "/GND", "layer": "B"}],
        holes=[(4.0, 58.0), (44.0, 58.0), (96.5, 58.0)],
        texts=[("hearth-bridge r1", (14.0, 50.0), 1.5)],
        # No copper on the top under the Pico (its test pads are underneath), nor on the
        # body's side of any through-hole part: pcb.py blocks every courtyard on that side.
        references={"U1": (86.9, 26.0), "Q1": (24.5, 11.0)},
    )
