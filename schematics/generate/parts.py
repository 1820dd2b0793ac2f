"""Symbols and orderable parts for Hearth's boards.

Pin numbers and names come from the manufacturers' datasheets (cited per symbol); where a part
has no public datasheet (the BM1370), from the pin names used in public designs (Bitaxe
Gamma), read for facts only. Every part carries its manufacturer part number and at least one
distributor number; check stock and the exact number when ordering.
"""

from .design import Part, Pin, Symbol, box, two_pin

# ---------------------------------------------------------------- two-pin parts

RES = two_pin("R", "R", "R", "Resistor")
CAP = two_pin("C", "C", "C", "Capacitor")
CAP_POL = two_pin("C_Polarized", "CP", "C", "Polarised capacitor", names=("+", "-"))
# Diodes: pin 1 is the cathode, as in KiCad's diode footprints (pad 1 = K).
DIODE = two_pin("D_Schottky", "D", "D", "Schottky diode", names=("K", "A"))
TVS = two_pin("D_TVS", "TVS", "D", "Unidirectional TVS diode", names=("K", "A"))
FUSE = two_pin("Fuse", "F", "F", "Fuse")
INDUCTOR = two_pin("L", "L", "L", "Inductor")


def _passive(ref, symbol, value, block, net1, net2, footprint, mpn, manufacturer, digikey, at=None, dnp=False, **extra):
    fields = {"MPN": mpn, "Manufacturer": manufacturer, "DigiKey": digikey}
    fields.update(extra)
    return Part(ref, symbol, value, block, {"1": net1, "2": net2}, footprint, fields, dnp, at)


R1206 = "Resistor_SMD:R_1206_3216Metric"
C1206 = "Capacitor_SMD:C_1206_3216Metric"
R0402 = "Resistor_SMD:R_0402_1005Metric"
C0402 = "Capacitor_SMD:C_0402_1005Metric"
C0805 = "Capacitor_SMD:C_0805_2012Metric"

# Yageo RC1206FR-07 series, 1 %, 1/4 W; DigiKey numbers follow Yageo's "311-<value>FRCT-ND".
YAGEO_1206 = {
    "1k": ("RC1206FR-071KL", "311-1.00KFRCT-ND"),
    "4.7k": ("RC1206FR-074K7L", "311-4.70KFRCT-ND"),
    "10k": ("RC1206FR-0710KL", "311-10.0KFRCT-ND"),
    "100k": ("RC1206FR-07100KL", "311-100KFRCT-ND"),
}
# Yageo RC0402FR-07 series, 1 %, 1/16 W; the 0 Ω link is the RC0402JR-07 jumper.
YAGEO_0402 = {
    "0": ("RC0402JR-070RL", "311-0.0JRCT-ND"),
    "1k": ("RC0402FR-071KL", "311-1.00KLRCT-ND"),
    "8.25k": ("RC0402FR-078K25L", "311-8.25KLRCT-ND"),
    "10k": ("RC0402FR-0710KL", "311-10.0KLRCT-ND"),
    "14.7k": ("RC0402FR-0714K7L", "311-14.7KLRCT-ND"),
    "68.1k": ("RC0402FR-0768K1L", "311-68.1KLRCT-ND"),
}


def r1206(ref, value, block, a, b, at=None):
    mpn, dk = YAGEO_1206[value]
    return _passive(ref, RES, value, block, a, b, R1206, mpn, "Yageo", dk, at)


def r0402(ref, value, block, a, b, at=None, dnp=False):
    mpn, dk = YAGEO_0402[value]
    return _passive(ref, RES, value, block, a, b, R0402, mpn, "Yageo", dk, at, dnp)


CAPS = {
    # value/size: (MPN, manufacturer, DigiKey, footprint)
    "100n/1206": ("CC1206KRX7R9BB104", "Yageo", "311-1179-1-ND", C1206),
    "10u/1206": ("CL31B106KOHNNNE", "Samsung Electro-Mechanics", "1276-2874-1-ND", C1206),
    "100u/elec": ("EEE-FK1C101P", "Panasonic", "PCE3908CT-ND", "Capacitor_SMD:CP_Elec_6.3x7.7"),
    "100n/0402": ("CL05A104KO5NNNC", "Samsung Electro-Mechanics", "1276-1001-1-ND", C0402),
    "1u/0402": ("EMK105BJ105MV-F", "Taiyo Yuden", "587-3247-1-ND", C0402),
    "2.2n/0402": ("GRM155R61H222KA01D", "Murata", "490-1291-1-ND", C0402),
    "4.7u/0402": ("GRM155R60J475ME47D", "Murata", "490-10475-1-ND", C0402),
    "22u/0805": ("GRM21BR61A226ME44L", "Murata", "490-3886-1-ND", C0805),
    "100u/1206": ("CL31A107MQHNNNE", "Samsung Electro-Mechanics", "1276-1782-1-ND", C1206),
    "47u/1210": ("CL32A476KOJNNNE", "Samsung Electro-Mechanics", "1276-3376-1-ND", "Capacitor_SMD:C_1210_3225Metric"),
}


def cap(ref, kind, block, a, b, at=None):
    mpn, manufacturer, dk, footprint = CAPS[kind]
    value = kind.split("/")[0] + "F"
    symbol = CAP_POL if kind.endswith("elec") else CAP
    return _passive(ref, symbol, value, block, a, b, footprint, mpn, manufacturer, dk, at)


# ---------------------------------------------------------------- modules and ICs

# Raspberry Pi Pico, pins in the module's physical order (Pico datasheet §2.1, Fig. 2):
# 1-20 down the left edge, 21-40 up the right edge, USB at the top.
_PICO_LEFT = [
    "GP0", "GP1", "GND", "GP2", "GP3", "GP4", "GP5", "GND", "GP6", "GP7",
    "GP8", "GP9", "GND", "GP10", "GP11", "GP12", "GP13", "GND", "GP14", "GP15",
]
_PICO_RIGHT = [
    "GP16", "GP17", "GND", "GP18", "GP19", "GP20", "GP21", "GND", "GP22", "RUN",
    "GP26_A0", "GP27_A1", "AGND", "GP28_A2", "ADC_VREF", "3V3(OUT)", "3V3_EN", "GND", "VSYS", "VBUS",
]


def _pico_type(name):
    if name in ("GND", "AGND"):
        return "power_in"
    return {
        "3V3(OUT)": "power_out",
        "VBUS": "power_out",
        "VSYS": "power_in",
        "ADC_VREF": "power_in",
        "RUN": "input",
        "3V3_EN": "input",
    }.get(name, "bidirectional")


PICO = box(
    "RaspberryPi_Pico",
    "U",
    [(str(i + 1), n, _pico_type(n)) for i, n in enumerate(_PICO_LEFT)],
    [(str(40 - i), n, _pico_type(n)) for i, n in enumerate(reversed(_PICO_RIGHT))],
    "Raspberry Pi Pico (RP2040) module",
    "https://datasheets.raspberrypi.com/pico/pico-datasheet.pdf",
)

# TI TXB0104 (SCES650, D package pin table). A port follows VCCA, B port VCCB; VCCA <= VCCB.
TXB0104 = box(
    "TXB0104D",
    "U",
    [("1", "VCCA", "power_in"), ("2", "A1", "bidirectional"), ("3", "A2", "bidirectional"),
     ("4", "A3", "bidirectional"), ("5", "A4", "bidirectional"), ("8", "OE", "input"),
     ("7", "GND", "power_in"), ("6", "NC", "no_connect")],
    [("14", "VCCB", "power_in"), ("13", "B1", "bidirectional"), ("12", "B2", "bidirectional"),
     ("11", "B3", "bidirectional"), ("10", "B4", "bidirectional"), ("9", "NC", "no_connect")],
    "4-bit auto-direction level translator",
    "https://www.ti.com/lit/ds/symlink/txb0104.pdf",
)

# TI SN74LVC1G07 (SCES296, DBV package): open-drain buffer, output tolerates 5.5 V.
LVC1G07 = box(
    "SN74LVC1G07DBV",
    "U",
    [("2", "A", "input"), ("3", "GND", "power_in"), ("1", "NC", "no_connect")],
    [("5", "VCC", "power_in"), ("4", "Y", "open_collector")],
    "Single buffer with open-drain output",
    "https://www.ti.com/lit/ds/symlink/sn74lvc1g07.pdf",
)

# A single P-channel MOSFET in SO-8, the AOS/Vishay pinout: 1-3 source, 4 gate, 5-8 drain.
PMOS_SO8 = box(
    "PMOS_SO8",
    "Q",
    [("1", "S", "passive"), ("2", "S", "passive"), ("3", "S", "passive"), ("4", "G", "input")],
    [("5", "D", "passive"), ("6", "D", "passive"), ("7", "D", "passive"), ("8", "D", "passive")],
    "P-channel MOSFET, SO-8",
)

# Connectors.
TERMINAL_2 = box("Screw_Terminal_01x02", "J", [("1", "1", "passive"), ("2", "2", "passive")], [],
                 "2-pole screw terminal")
# Intel 4-wire PWM fan pinout: 1 GND, 2 supply, 3 tach (open collector in the fan), 4 PWM.
FAN_4PIN = box("Fan_4pin", "J",
               [("1", "GND", "passive"), ("2", "+V", "passive"), ("3", "TACH", "passive"), ("4", "PWM", "passive")],
               [], "4-pin PWM fan header")
CONN_2X10 = box(
    "Conn_02x10_Odd_Even",
    "J",
    [(str(n), str(n), "passive") for n in range(1, 21, 2)],
    [(str(n), str(n), "passive") for n in range(2, 21, 2)],
    "2x10 board-to-board connector, 2.54 mm",
)

# Bitmain BM1370. No public datasheet: the pin names are those of public designs (Bitaxe
# Gamma's symbol and footprint), read for facts. VDDx_y pins are taps of the core's internal
# domains, fed only by the capacitor ladder (passive); 31 and 32 are the exposed pads.
BM1370 = box(
    "BM1370",
    "U",
    [("31", "VDD", "power_in"), ("3", "VDD1_0", "passive"), ("2", "VDD2_0", "passive"), ("1", "VDD3_0", "passive"),
     ("28", "VDD1_1", "passive"), ("29", "VDD2_1", "passive"), ("30", "VDD3_1", "passive"),
     ("15", "VDDIO_12_0", "power_in"), ("16", "VDDIO_12_1", "passive"),
     ("14", "VDDIO_08_0", "power_in"), ("17", "VDDIO_08_1", "passive"),
     ("4", "VSS", "power_in"), ("18", "VSS", "power_in"), ("27", "VSS", "power_in"), ("32", "VSS", "power_in"),
     ("13", "PLL_VSS", "power_in")],
    [("8", "CLKI", "input"), ("6", "CI", "input"), ("7", "RO", "output"), ("5", "NRSTI", "input"),
     ("9", "BI", "input"), ("24", "RI", "input"), ("25", "CO", "output"), ("22", "BO", "output"),
     ("23", "CLKO", "output"), ("26", "NRSTO", "output"), ("20", "TEMP_P", "passive"), ("21", "TEMP_N", "passive"),
     ("10", "ROSC_SEL", "passive"), ("11", "LITE_PAD", "passive"), ("12", "INV_CLKO", "passive"),
     ("19", "PIN_MODE", "input")],
    "Bitmain BM1370 SHA-256 ASIC",
)

# TI TPS546D24A (SLUSDJ0, RVF0040A). Exposed pad 41 is ground.
TPS546D24A = box(
    "TPS546D24A",
    "U",
    [("21", "PVIN", "power_in"), ("22", "PVIN", "passive"), ("23", "PVIN", "passive"), ("24", "PVIN", "passive"),
     ("25", "PVIN", "passive"), ("26", "AVIN", "power_in"), ("27", "EN/UVLO", "input"),
     ("2", "PMB_DATA", "bidirectional"), ("3", "PMB_CLK", "input"), ("6", "SMB_ALRT", "open_collector"),
     ("1", "PGD/RST_B", "open_collector"), ("32", "MSEL1", "passive"), ("29", "MSEL2", "passive"),
     ("30", "VSEL", "passive"), ("31", "ADRSEL", "passive"), ("38", "SYNC", "bidirectional"),
     ("39", "BCX_CLK", "bidirectional"), ("40", "BCX_DAT", "bidirectional"), ("35", "VSHARE", "passive"),
     ("36", "NC", "no_connect")],
    [("8", "SW", "power_out"), ("9", "SW", "passive"), ("10", "SW", "passive"), ("11", "SW", "passive"),
     ("12", "SW", "passive"), ("7", "BOOT", "passive"), ("33", "VOSNS", "input"), ("34", "GOSNS", "input"),
     ("4", "BP1V5", "power_out"), ("28", "VDD5", "power_out"), ("5", "DRTN", "power_in"), ("37", "AGND", "power_in"),
     ("13", "PGND", "power_in"), ("14", "PGND", "passive"), ("15", "PGND", "passive"), ("16", "PGND", "passive"),
     ("17", "PGND", "passive"), ("18", "PGND", "passive"), ("19", "PGND", "passive"), ("20", "PGND", "passive"),
     ("41", "PAD", "passive")],
    "PMBus synchronous buck converter, 2.95-16 V in, 40 A",
    "https://www.ti.com/lit/ds/symlink/tps546d24a.pdf",
)

# Microchip EMC2101 (DS20002215, MSOP-8). Fixed SMBus address 0x4C. Pin 6 is ALERT# or,
# with CONFIG bit 2 set (the firmware sets it), the fan tachometer input.
EMC2101 = box(
    "EMC2101",
    "U",
    [("1", "VDD", "power_in"), ("2", "DP", "passive"), ("3", "DN", "passive"), ("5", "GND", "power_in")],
    [("7", "SMDATA", "bidirectional"), ("8", "SMCLK", "input"), ("6", "ALERT/TACH", "input"), ("4", "FAN", "output")],
    "Fan controller with remote-diode temperature sensor",
    "https://ww1.microchip.com/downloads/en/DeviceDoc/2101.pdf",
)

# TI INA260 (SBOS656, PW package): 2 mOhm integrated shunt between IN+ and IN-. A1/A0 straps
# select the address (both to GND = 0x40).
INA260 = box(
    "INA260",
    "U",
    [("1", "IN+", "passive"), ("2", "IN+", "passive"), ("3", "IN+", "passive"),
     ("14", "IN-", "passive"), ("15", "IN-", "passive"), ("16", "IN-", "passive"),
     ("12", "VBUS", "input"), ("10", "VS", "power_in"), ("6", "GND", "power_in"), ("11", "GND", "passive")],
    [("8", "SDA", "bidirectional"), ("9", "SCL", "input"), ("7", "ALERT", "open_collector"),
     ("4", "A1", "input"), ("5", "A0", "input"), ("13", "NC", "no_connect")],
    "Current, voltage and power monitor with integrated shunt",
    "https://www.ti.com/lit/ds/symlink/ina260.pdf",
)

# Microchip MCP1824 (DS22070, SOT-23-5): 1 VIN, 2 GND, 3 EN, 4 PG, 5 VOUT.
LDO_MCP1824 = box(
    "MCP1824_SOT23-5",
    "U",
    [("1", "VIN", "power_in"), ("3", "EN", "input"), ("2", "GND", "power_in")],
    [("5", "VOUT", "power_out"), ("4", "PG", "open_collector")],
    "300 mA LDO, fixed output",
    "https://ww1.microchip.com/downloads/en/DeviceDoc/22070a.pdf",
)

# A 4-pin 3.2 x 2.5 mm clock oscillator: 1 EN, 2 GND, 3 OUT, 4 VDD.
OSC_4PIN = box(
    "Oscillator_4pin",
    "X",
    [("4", "VDD", "power_in"), ("1", "EN", "input"), ("2", "GND", "power_in")],
    [("3", "OUT", "output")],
    "Clock oscillator, CMOS output",
)


def ic(ref, symbol, value, block, pins, footprint, mpn, manufacturer, digikey, at=None, **extra):
    fields = {"MPN": mpn, "Manufacturer": manufacturer, "DigiKey": digikey}
    fields.update(extra)
    return Part(ref, symbol, value, block, pins, footprint, fields, False, at)


__all__ = [name for name in dir() if not name.startswith("_")] + ["Part", "Pin", "Symbol"]
