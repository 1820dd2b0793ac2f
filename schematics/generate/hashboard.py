"""hearth-single-1370 r1: one BM1370 with its core regulator, IO rails, clock and sensors,
under a hearth-bridge (through J1). The schematic is complete and ERC clean; the PCB is
placed and its low-current signals routed, without the power stage (U2 and L1 have no
footprint yet) and its copper (see the board's README for what is missing and why).

Reference circuits: TI TPS546D24A datasheet (application section), Microchip EMC2101 and
MCP1824, TI INA260 datasheets; the BM1370's pin use follows public single-chip designs
(Bitaxe Gamma), read for facts.
"""

from . import hashboard_link as link
from .design import Design, Layout
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
        # AGND (37), DRTN (5) and PGND are all on GND here; they meet under U2 in the layout.
        ic("U2", TPS546D24A, "TPS546D24A", b_vr,
           {**{p: V5 for p in ("21", "22", "23", "24", "25", "26")},
            "27": link.VREG_EN, "2": link.SDA, "3": link.SCL,
            "32": "VR_MSEL1", "29": "VR_MSEL2", "30": "VR_VSEL",
            **{p: "VR_SW" for p in ("8", "9", "10", "11", "12")},
            "7": "VR_BOOT", "33": VCORE, "34": "GND", "4": "VR_BP1V5", "28": "VR_VDD5",
            **{p: "GND" for p in ("5", "37", "13", "14", "15", "16", "17", "18", "19", "20", "41")}},
           "", "TPS546D24ARVFR", "Texas Instruments", "296-TPS546D24ARVFRCT-ND"),
        # EN/UVLO is pulled down here as well as on the bridge: the core stays off with the
        # bridge unplugged.
        r0402("R1", "10k", b_vr, link.VREG_EN, "GND"),
        cap("C2", "100n/0402", b_vr, "VR_BOOT", "VR_SW"),
        cap("C3", "1u/0402", b_vr, "VR_BP1V5", "GND"),  # BP1V5's own bypass (>= 1 uF, SLUSDJ0)
        # Pin straps, read once at power-up (TI TPS546D24S datasheet SLUSF26, pin strapping,
        # the TPS546D24A's scheme; ti.com/document-viewer/TPS546D24S/datasheet): each pin
        # reads a resistor to AGND for one code and a divider to BP1V5 for another. Values as
        # in the public Bitaxe Gamma (TPS546D24ARVFR; the same in the Bitaxe Supra's BOM),
        # read for facts; no design file copied.
        # - MSEL1 sets FREQUENCY_SWITCH and COMPENSATION_CONFIG: 8.25k to BP1V5 over 14.7k
        #   to AGND (0.640 of BP1V5) is divider code 9, 650 kHz with the odd-code
        #   compensation set. The firmware, like ESP-Miner (bitaxeorg/ESP-Miner,
        #   main/power/TPS546.c), writes the frequency over PMBus but never
        #   COMPENSATION_CONFIG, so the loop's compensation comes from this strap.
        #   Whether it suits L1 and C9-C15 is unchecked: check it with TI's tools.
        r0402("R4", "8.25k", b_vr, "VR_BP1V5", "VR_MSEL1"),
        r0402("R5", "14.7k", b_vr, "VR_MSEL1", "GND"),
        # - MSEL2 sets STACK_CONFIG, TON_RISE and the IOUT_OC limits. Shorted to AGND: one
        #   chip, stand-alone. It must not float (open may select a 2-phase stack: the
        #   TPSM8S6B24S module's MSEL2 table, SLUSF87). A 0 Ω part, not copper, so that
        #   another code can be fitted.
        r0402("R6", "0", b_vr, "VR_MSEL2", "GND"),
        # - VSEL sets VOUT_COMMAND, VOUT_SCALE_LOOP, VOUT_MIN and VOUT_MAX at boot: 68.1k to
        #   AGND boots at 1.2 V in the 0.5 V VOSL range; the firmware rewrites them over PMBus
        #   before it enables the output.
        r0402("R7", "68.1k", b_vr, "VR_VSEL", "GND"),
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


# ---------------------------------------------------------------- the PCB, as far as it goes
#
# Coordinates (mm) share hearth-bridge's frame: the bridge lies over (0, 0)-(100, 62), its J2
# over this board's J1, its three M3 holes over H1-H3 here. The chip sits below the bridge's
# outline, so its 40 x 40 mm heatsink and the fan have open air. It is turned so that its
# signal pins (1-15) face the connector and its VDD pad (31) faces the power stage on the
# right, where U2 and L1 (no footprint yet) will go.

# This board's J1 mates with the bridge's J2, which stacks over it (checked when generating).
STACKED_UNDER = ("J1", "hearth-bridge", "J2")

HEATSINK = (36.0, 68.0, 76.0, 108.0)  # 40 x 40 mm, centred on U1
POWER_STAGE = (77.0, 63.0, 99.0, 106.0)
VDD_SIDE = (60.0, 78.0, 77.0, 98.0)  # L1 to U1's VDD pad, with its capacitors: free for the core copper
UNDER_CHIP = (52.0, 84.0, 60.0, 92.0)  # the body: vias from the exposed pads into the planes

ROUTED = [  # the low-current signals; power, ground and the chip's rails are left to route
    link.SDA, link.SCL, link.CHAIN_CI, link.CHAIN_RO, link.CHAIN_NRST, link.VREG_EN, link.FAN_TACH,
    link.V3V3, "TEMP_DP", "TEMP_DN", "ASIC_CLK", "ASIC_BI", "ASIC_LITE",
]

# The power stage's passives, staged in its area in functional rows until U2 and L1 are
# drawn; their final places follow U2's pins (input capacitors at PVIN/PGND, C2 at BOOT/SW,
# C3 at BP1V5, C4 at VDD5, the strap resistors R4-R7 at MSEL1/MSEL2/VSEL, output capacitors
# between L1 and U1).
STAGED = {
    "C5": (80.0, 70.0, 0), "C6": (86.0, 70.0, 0), "C7": (92.0, 70.0, 0), "C8": (97.0, 70.0, 0),
    "C2": (80.0, 76.0, 0), "C3": (84.0, 76.0, 0), "C4": (88.0, 76.0, 0),
    "R4": (80.0, 81.0, 0), "R5": (83.0, 81.0, 0), "R6": (86.0, 81.0, 0), "R7": (89.0, 81.0, 0),
    "C9": (80.0, 96.0, 0), "C10": (84.5, 96.0, 0), "C11": (89.0, 96.0, 0),
    "C12": (80.0, 101.0, 0), "C13": (85.5, 101.0, 0), "C14": (91.0, 101.0, 0), "C15": (96.5, 101.0, 0),
}

PLACED = {
    # The connector, mated with the bridge's J2 (pcb.check_mating proves it pin for pin).
    "J1": (8.0, 19.0, 0),
    # Next to the connector: the input monitor (its shunt in the 5 V path, IN+ on pins 1-3
    # toward J1), its 3.3 V decoupling, and the enable's pull-down.
    "U4": (24.0, 27.0, 0), "C1": (30.0, 31.0, 90), "R1": (16.0, 39.3, 0),
    # The chip: pins 1-15 along its upper edge, VDD to the right.
    "U1": (56.0, 88.0, 270),
    # At its pins, 0402 parts only (the only ones inside the heatsink's outline): the core
    # ladders at the VDDn taps (pins 1-3 above, 28-30 below), core decoupling at the VDD
    # side, IO decoupling at pins 14/15 and 16/17, the BI and LITE_PAD resistors.
    "CL1": (60.5, 80.5, 90), "CL2": (62.0, 80.5, 90), "CL3": (63.5, 80.5, 90), "CL4": (65.0, 80.5, 90),
    "CR1": (60.5, 95.5, 90), "CR2": (62.0, 95.5, 90), "CR3": (63.5, 95.5, 90), "CR4": (65.0, 95.5, 90),
    "C16": (63.0, 84.5, 0), "C17": (63.0, 86.0, 0), "C18": (63.0, 90.0, 0), "C19": (63.0, 91.5, 0),
    "C22": (51.5, 81.0, 90), "C23": (50.0, 81.0, 90), "C20": (51.5, 95.0, 90), "C21": (50.0, 95.0, 90),
    "R3": (48.5, 81.0, 90), "R2": (47.0, 81.0, 90),
    # Left of the heatsink: the clock (its CLKI line beside the chain lines, not across
    # them), the IO LDOs with their input capacitors, and the fan controller with the diode
    # filter at DP/DN (turned so DP/DN face the chip).
    "X1": (33.0, 66.0, 0), "C27": (29.0, 66.0, 90),
    "U5": (28.0, 76.0, 0), "C25": (28.0, 72.5, 0),
    "U6": (28.0, 84.0, 0), "C26": (28.0, 80.5, 0),
    "U3": (28.0, 96.0, 180), "C28": (28.0, 92.5, 0), "C24": (32.2, 96.0, 90),
}


def layout() -> Layout:
    return Layout(
        size=(100.0, 112.0),
        # A PCB fab's 4-layer service (not milled): 0.15 mm (6 mil) track and space, 0.3 mm
        # drills, as the public single-chip boards use.
        clearance=0.15,
        track=0.15,
        via=(0.6, 0.3),
        annular=0.15,
        edge_clearance=0.3,
        grid=0.125,  # fine enough for the 0.5 and 0.65 mm pitches
        copper_layers=4,
        plated=True,
        # 2 oz (70 um) outer copper for the core current, 1 oz inner; the dielectrics are a
        # common 1.6 mm build, to be replaced by the fab's own (nothing here is impedance
        # controlled).
        stackup={"outer_um": 70, "inner_um": 35, "finish": "ENIG",
                 "dielectrics": [("prepreg", 0.2), ("core", 0.97), ("prepreg", 0.2)]},
        net_widths={"/" + link.V3V3: 0.3},
        bottom_cost=0.3,  # no pour on the outer layers yet: the bottom is as good as the top
        route_first=["/" + n for n in (link.CHAIN_CI, link.CHAIN_RO, link.CHAIN_NRST, link.V3V3, "TEMP_DP", "TEMP_DN")],
        route_only=["/" + n for n in ROUTED],
        partial=True,
        positions={**PLACED, **STAGED},
        holes=[(4.0, 58.0), (44.0, 58.0), (96.5, 58.0), (4.0, 108.0), (96.0, 108.0)],
        reserved=[("power stage: U2, L1 not drawn yet; parts staged", POWER_STAGE),
                  ("VCORE to U1 and its capacitors", VDD_SIDE),
                  ("under U1: its exposed pads' via array", UNDER_CHIP, "below")],
        drawings=[("heatsink 40 x 40 mm", HEATSINK), ("hearth-bridge above (standoffs on H1-H3)", (0.0, 0.0, 100.0, 62.0))],
        texts=[("hearth-single-1370 r1", (40.0, 109.0), 1.5)],
        # The 0402 parts around the chip: references on the assembly drawing (F.Fab).
        fab_references=[r for r in PLACED if r[:2] in ("CL", "CR") or r in (
            "C16", "C17", "C18", "C19", "C20", "C21", "C22", "C23", "C24", "R2", "R3")],
        references={"U1": (56.0, 78.0)},
    )
