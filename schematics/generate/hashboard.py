"""hearth-single-1370 r1: one BM1370 with its core regulator, IO rails, clock and sensors,
under a hearth-bridge (through J1). The schematic is complete and ERC clean; the PCB is
not drawn yet (see the board's README for what is missing and why).

Reference circuits: TI TPS546D24A datasheet (application section), Microchip EMC2101 and
MCP1824, TI INA260 datasheets; the BM1370's pin use follows public single-chip designs
(Bitaxe Gamma), read for facts.
"""

from . import hashboard_link as link
from .design import Design
from .parts import (
    BM1370, CAP, CONN_2X10, EMC2101, INA260, INDUCTOR, LDO_MCP1824, OSC_4PIN, TPS546D24A, _passive, cap, ic, r0402,
)

TITLE = "hearth-single-1370"
REVISION = "1"

VIN = "VIN_5V"  # 5 V from the bridge, before the INA260's shunt
V5 = "+5V"  # after the shunt: the regulator and the LDOs
V1V2 = "+1V2"
V0V8 = "+0V8"
VCORE = "VCORE"


def ladder(prefix, side, taps, block):
    """The BM1370's core taps: VCORE -C- VDD3 -C- VDD2 -C- VDD1 -C- GND on each side (the
    chip stacks its internal domains; every rung needs its capacitor)."""
    nets = [VCORE] + taps + ["GND"]
    return [
        cap(f"{prefix}{side}{i + 1}", "1u/0402", block, a, b)
        for i, (a, b) in enumerate(zip(nets, nets[1:]))
    ]


def design() -> Design:
    b_conn = "Connector to hearth-bridge"
    b_mon = "Input power monitor (INA260, 0x40)"
    b_vr = "Core regulator (TPS546D24A, 0x24)"
    b_asic = "BM1370"
    b_io = "IO rails and clock"
    b_fan = "Chip temperature and fan tach (EMC2101, 0x4C)"
    parts = [
        ic("J1", CONN_2X10, "Bridge", b_conn, link.pins({link.V5: VIN, link.VIO: V1V2}),
           "Connector_PinHeader_2.54mm:PinHeader_2x10_P2.54mm_Vertical", "TSW-110-07-G-D", "Samtec",
           "SAM1035-10-ND", Alternate="Sullins PEC10DAAN (DigiKey S2011E-10-ND)"),
        # Input power: the INA260 measures what the hashboard draws. A1 = A0 = GND: 0x40.
        ic("U4", INA260, "INA260", b_mon,
           {"1": VIN, "2": VIN, "3": VIN, "14": V5, "15": V5, "16": V5, "12": V5, "10": link.V3V3,
            "6": "GND", "11": "GND", "8": link.SDA, "9": link.SCL, "4": "GND", "5": "GND"},
           "Package_SO:TSSOP-16_4.4x5mm_P0.65mm", "INA260AIPWR", "Texas Instruments", "296-47458-1-ND"),
        cap("C1", "100n/0402", b_mon, link.V3V3, "GND"),
        # Core regulator. PMBus on the shared I2C bus; ADRSEL left open selects the address
        # stored in its NVM, 0x24 from the factory. The output is sensed at the chip
        # (VOSNS/GOSNS) with no external divider: VOUT_SCALE_LOOP (0.25, written by the
        # firmware before enabling) selects the internal divider, whose range is 1-3 V.
        ic("U2", TPS546D24A, "TPS546D24A", b_vr,
           {**{p: V5 for p in ("21", "22", "23", "24", "25", "26")},
            "27": link.VREG_EN, "2": link.SDA, "3": link.SCL,
            **{p: "VR_SW" for p in ("8", "9", "10", "11", "12")},
            "7": "VR_BOOT", "33": VCORE, "34": "GND", "4": "VR_BP1V5", "28": "VR_VDD5",
            **{p: "GND" for p in ("5", "37", "13", "14", "15", "16", "17", "18", "19", "20", "41")}},
           "", "TPS546D24ARVFR", "Texas Instruments", "296-TPS546D24ARVFRCT-ND"),
        # EN/UVLO is pulled down here as well as on the bridge: the core stays off with the
        # bridge unplugged.
        r0402("R1", "10k", b_vr, link.VREG_EN, "GND"),
        cap("C2", "100n/0402", b_vr, "VR_BOOT", "VR_SW"),
        cap("C3", "1u/0402", b_vr, "VR_BP1V5", "GND"),
        cap("C4", "4.7u/0402", b_vr, "VR_VDD5", "GND"),
        cap("C5", "47u/1210", b_vr, V5, "GND"),
        cap("C6", "47u/1210", b_vr, V5, "GND"),
        cap("C7", "47u/1210", b_vr, V5, "GND"),
        cap("C8", "1u/0402", b_vr, V5, "GND"),
        _passive("L1", INDUCTOR, "300nH", b_vr, "VR_SW", VCORE, "", "SLC1175-301MEC", "Coilcraft",
                 "2457-SLC1175-301MECCT-ND", Alternate="Coilcraft XAL1010-301MEB"),
        cap("C9", "22u/0805", b_vr, VCORE, "GND"),
        cap("C10", "22u/0805", b_vr, VCORE, "GND"),
        cap("C11", "22u/0805", b_vr, VCORE, "GND"),
        cap("C12", "100u/1206", b_vr, VCORE, "GND"),
        cap("C13", "100u/1206", b_vr, VCORE, "GND"),
        cap("C14", "100u/1206", b_vr, VCORE, "GND"),
        cap("C15", "100u/1206", b_vr, VCORE, "GND"),
        # The chip: last (and only) in its chain, so the chain outputs stay open.
        ic("U1", BM1370, "BM1370", b_asic,
           {"31": VCORE, "3": "VDD1_0", "2": "VDD2_0", "1": "VDD3_0", "28": "VDD1_1", "29": "VDD2_1",
            "30": "VDD3_1", "15": V1V2, "16": "VDDIO_12_1", "14": V0V8, "17": "VDDIO_08_1",
            "4": "GND", "18": "GND", "27": "GND", "32": "GND", "13": "GND",
            "8": "ASIC_CLK", "6": link.CHAIN_CI, "7": link.CHAIN_RO, "5": link.CHAIN_NRST,
            "9": "ASIC_BI", "11": "ASIC_LITE", "20": "TEMP_DP", "21": "TEMP_DN"},
           "hearth:BM1370", "BM1370", "Bitmain", "none: from an Antminer S21 Pro hashboard (see README)"),
        *ladder("C", "L", ["VDD3_0", "VDD2_0", "VDD1_0"], b_asic),
        *ladder("C", "R", ["VDD3_1", "VDD2_1", "VDD1_1"], b_asic),
        cap("C16", "100n/0402", b_asic, VCORE, "GND"),
        cap("C17", "100n/0402", b_asic, VCORE, "GND"),
        cap("C18", "1u/0402", b_asic, VCORE, "GND"),
        cap("C19", "1u/0402", b_asic, VCORE, "GND"),
        cap("C20", "1u/0402", b_asic, "VDDIO_12_1", "GND"),
        cap("C21", "1u/0402", b_asic, "VDDIO_08_1", "GND"),
        cap("C22", "1u/0402", b_asic, V1V2, "GND"),
        cap("C23", "1u/0402", b_asic, V0V8, "GND"),
        r0402("R2", "10k", b_asic, "ASIC_BI", "GND"),
        r0402("R3", "1k", b_asic, "ASIC_LITE", "GND"),
        cap("C24", "2.2n/0402", b_asic, "TEMP_DP", "TEMP_DN"),
        # IO rails (the chip's 1.2 V IO, also the translator's A side on the bridge) and the
        # 25 MHz clock, which runs from the 1.2 V rail.
        ic("U5", LDO_MCP1824, "MCP1824T-1202E/OT", b_io, {"1": V5, "3": V5, "2": "GND", "5": V1V2},
           "Package_TO_SOT_SMD:SOT-23-5", "MCP1824T-1202E/OT", "Microchip", "MCP1824T-1202E/OTCT-ND",
           Alternate="ST LDK120M12R"),
        ic("U6", LDO_MCP1824, "MCP1824T-0802E/OT", b_io, {"1": V5, "3": V5, "2": "GND", "5": V0V8},
           "Package_TO_SOT_SMD:SOT-23-5", "MCP1824T-0802E/OT", "Microchip", "MCP1824T-0802E/OTCT-ND",
           Alternate="ST LDK120M08R"),
        cap("C25", "1u/0402", b_io, V5, "GND"),
        cap("C26", "1u/0402", b_io, V5, "GND"),
        ic("X1", OSC_4PIN, "25MHz", b_io, {"4": V1V2, "1": V1V2, "2": "GND", "3": "ASIC_CLK"},
           "Oscillator:Oscillator_SMD_Abracon_ASE-4Pin_3.2x2.5mm", "SX3M25.000E20F30THN", "Shenzhen SCTF",
           "none (DigiKey does not carry it: see LCSC)", LCSC="C5137262"),
        cap("C27", "100n/0402", b_io, V1V2, "GND"),
        # Chip temperature (the BM1370's diode) and the fan tach; the fan itself is driven
        # from the bridge.
        ic("U3", EMC2101, "EMC2101", b_fan,
           {"1": link.V3V3, "2": "TEMP_DP", "3": "TEMP_DN", "5": "GND", "6": link.FAN_TACH,
            "7": link.SDA, "8": link.SCL},
           "Package_SO:MSOP-8_3x3mm_P0.65mm", "EMC2101-R-ACZL-TR", "Microchip", "EMC2101-R-ACZL-CT-ND"),
        cap("C28", "100n/0402", b_fan, link.V3V3, "GND"),
    ]
    return Design(
        title=TITLE,
        revision=REVISION,
        licence="CERN-OHL-S-2.0",
        parts=parts,
        power_flags=["GND", VIN, link.V3V3, V5, VCORE],
    )
