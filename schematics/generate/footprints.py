"""Footprints KiCad's library lacks, drawn from published dimensions.

BM1370: 8 x 8 mm body, 15 pads on each of two opposite sides at 0.5 mm pitch (0.792 x
0.221 mm), numbered counter-clockwise from the top left, and two exposed pads: 31 (VDD,
6.3 x 1.84 mm) and 32 (VSS, 6.3 x 5.52 mm). Bitmain publishes no drawing; these dimensions
are the land pattern of the public Bitaxe Gamma design (bitaxeorg/bitaxeGamma,
bitaxe.pretty/BM1370.kicad_mod), read for its numbers only.
"""

from .sch import GENERATOR, mm, q, uid


def _pad(number, x, y, w, h, extra=""):
    return (
        f'\t(pad "{number}" smd roundrect (at {mm(x)} {mm(y)}) (size {mm(w)} {mm(h)})'
        f' (layers "F.Cu" "F.Paste" "F.Mask") (roundrect_rratio 0.25){extra}'
        f' (uuid "{uid("fp", "BM1370", str(number), str(x), str(y))}"))'
    )


def _line(layer, a, b, width):
    return (
        f"\t(fp_line (start {mm(a[0])} {mm(a[1])}) (end {mm(b[0])} {mm(b[1])})"
        f' (stroke (width {mm(width)}) (type solid)) (layer "{layer}") (uuid "{uid("fp", "BM1370", layer, str(a), str(b))}"))'
    )


def bm1370():
    out = [
        '(footprint "BM1370"',
        "\t(version 20241229)",
        f"\t(generator {q(GENERATOR)})",
        '\t(generator_version "9.0")',
        '\t(layer "F.Cu")',
        f"\t(descr {q('Bitmain BM1370, 8x8 mm, 2x15 pads at 0.5 mm plus two exposed pads (dimensions: see schematics/generate/footprints.py)')})",
        '\t(tags "BM1370 ASIC")',
        '\t(property "Reference" "REF**" (at 0 -5.5 0) (layer "F.SilkS") (uuid "'
        + uid("fp", "BM1370", "ref")
        + '") (effects (font (size 1 1) (thickness 0.15))))',
        '\t(property "Value" "BM1370" (at 0 5.5 0) (layer "F.Fab") (uuid "'
        + uid("fp", "BM1370", "value")
        + '") (effects (font (size 1 1) (thickness 0.15))))',
        "\t(attr smd)",
    ]
    for i in range(15):
        y = -3.5 + 0.5 * i
        out.append(_pad(i + 1, -3.916, y, 0.792, 0.221))
    for i in range(15):
        y = 3.5 - 0.5 * i
        out.append(_pad(16 + i, 3.916, y, 0.792, 0.221))
    # Exposed pads: a reduced paste area keeps the chip from floating on the solder.
    paste = " (solder_paste_margin_ratio -0.25)"
    out.append(_pad(31, 0, -2.94, 6.3, 1.84, paste).replace("(roundrect_rratio 0.25)", "(roundrect_rratio 0.05)"))
    out.append(_pad(32, 0, 1.11, 6.3, 5.52, paste).replace("(roundrect_rratio 0.25)", "(roundrect_rratio 0.02)"))
    body = [(-4, -4), (4, -4), (4, 4), (-4, 4)]
    for a, b in zip(body, body[1:] + body[:1]):
        out.append(_line("F.Fab", a, b, 0.1))
    crt = [(-4.6, -4.4), (4.6, -4.4), (4.6, 4.4), (-4.6, 4.4)]
    for a, b in zip(crt, crt[1:] + crt[:1]):
        out.append(_line("F.CrtYd", a, b, 0.05))
    # Silk corners clear of the pads, and a pin-1 mark.
    for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
        out.append(_line("F.SilkS", (sx * 4.1, sy * 4.1), (sx * 3.0, sy * 4.1), 0.12))
    out.append(_line("F.SilkS", (-4.9, -3.5), (-4.9, -3.0), 0.2))
    out.append("\t(embedded_fonts no)")
    out.append(")")
    return "\n".join(out) + "\n"


def write_footprints(directory):
    import os

    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "BM1370.kicad_mod"), "w", encoding="utf-8") as f:
        f.write(bm1370())
