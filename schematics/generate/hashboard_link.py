"""The board-to-board connector between hearth-bridge (J2, a socket underneath) and a
hashboard (J1, a header on top): one pin map for both sides, so the two cannot drift.
boards/*.toml name the pair, and the Rust cross-check joins their nets pin by pin.

Odd pins (the outer row) carry power, even pins (the inner row) the signals, each signal
next to a ground or a quiet line. Four pins per rail carry the 5 A.
"""

V5 = "+5V"
V3V3 = "+3V3"
VIO = "VIO_1V2"  # the chips' IO rail, made on the hashboard; the translator's A side
SDA = "I2C_SDA"
SCL = "I2C_SCL"
CHAIN_CI = "CHAIN_CI"  # to the first chip's CI (command in)
CHAIN_RO = "CHAIN_RO"  # from the first chip's RO (response out)
CHAIN_NRST = "CHAIN_NRST"  # chip reset, active low
VREG_EN = "VREG_EN"  # core regulator enable, high = on
FAN_TACH = "FAN_TACH"

PIN_MAP = {
    1: V5, 3: V5, 5: V5, 7: V5,
    9: "GND", 11: "GND", 13: "GND", 15: "GND", 17: "GND", 19: "GND",
    2: V3V3, 4: SDA, 6: SCL, 8: "GND", 10: CHAIN_CI,
    12: CHAIN_RO, 14: CHAIN_NRST, 16: VIO, 18: VREG_EN, 20: FAN_TACH,
}


def pins(overrides=None):
    """The connector's pins as {number: net}; a board may rename a net on its side."""
    names = dict(overrides or {})
    return {str(n): names.get(net, net) for n, net in PIN_MAP.items()}
