"""Writes a KiCad 9 schematic (.kicad_sch) from a design description.

Every part is drawn as a symbol of its own (no global library needed: the symbols are
embedded in the file, as KiCad does), and every connected pin carries a net label at its
end, so the sheet reads like a netlist drawn by hand: blocks of parts, each pin named by its
net. Unused pins get a no-connect flag, so ERC can tell "unused" from "forgotten".
"""

import math
import uuid

from .design import Design, Part, Symbol

GRID = 1.27
PIN_LEN = 2.54
FONT = "(effects (font (size 1.27 1.27)))"
FONT_HIDDEN = "(effects (font (size 1.27 1.27)) (hide yes))"


def uid(*names: str) -> str:
    """A stable UUID, so that regenerating a design does not churn the files."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "hearth:" + "/".join(names)))


def q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def mm(v: float) -> str:
    s = f"{v:.4f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


# ---------------------------------------------------------------- symbol geometry


class Placed:
    """A symbol's pins in symbol coordinates (y up), with the body outline."""

    def __init__(self, sym: Symbol):
        self.sym = sym
        self.pins = {}  # number -> (x, y, angle) of the connection point
        self.graphics = []
        if sym.kind == "box":
            self._box()
        elif sym.kind == "flag":
            self._flag()
        else:
            self._two_pin()

    def _box(self):
        sym = self.sym
        left = [p for p in sym.pins if p.side == "L"]
        right = [p for p in sym.pins if p.side == "R"]
        rows = max(len(left), len(right), 1)
        longest_l = max((len(p.name) for p in left), default=0)
        longest_r = max((len(p.name) for p in right), default=0)
        width = max(10.16, math.ceil(((longest_l + longest_r) * 1.3 + 5.0) / 2.54) * 2.54)
        half_w = width / 2
        # Pins are 2.54 apart from the top row down, centred on the origin: every pin end
        # lands on KiCad's 1.27 mm connection grid.
        top = (rows - 1) * 2.54 / 2
        for side, pins in (("L", left), ("R", right)):
            y = top
            for p in pins:
                x = -half_w - PIN_LEN if side == "L" else half_w + PIN_LEN
                self.pins[p.number] = (x, y, 0 if side == "L" else 180)
                y -= 2.54
        lowest = min((v[1] for v in self.pins.values()), default=0)
        self.body = (-half_w, top + 2.54, half_w, lowest - 2.54)
        self.graphics.append(
            f"(rectangle (start {mm(-half_w)} {mm(top + 2.54)}) (end {mm(half_w)} {mm(lowest - 2.54)})"
            " (stroke (width 0.254) (type default)) (fill (type background)))"
        )

    def _flag(self):
        number = self.sym.pins[0].number
        self.pins[number] = (0, 0, 90)
        self.body = (-1.27, 2.54, 1.27, 0)
        self.graphics.append(
            "(polyline (pts (xy 0 0) (xy 0 1.27) (xy -1.016 1.905) (xy 0 2.54) (xy 1.016 1.905) (xy 0 1.27))"
            " (stroke (width 0) (type default)) (fill (type none)))"
        )

    def _two_pin(self):
        kind = self.sym.kind
        a, b = self.sym.pins[0].number, self.sym.pins[1].number
        self.pins[a] = (0, 3.81, 270)
        self.pins[b] = (0, -3.81, 90)
        self.body = (-1.27, 2.54, 1.27, -2.54)
        stroke = "(stroke (width 0.254) (type default))"
        if kind in ("R", "F"):
            self.graphics.append(
                f"(rectangle (start -1.016 2.54) (end 1.016 -2.54) {stroke} (fill (type none)))"
            )
            if kind == "F":
                self.graphics.append(f"(polyline (pts (xy 0 2.54) (xy 0 -2.54)) {stroke} (fill (type none)))")
        elif kind in ("C", "CP"):
            self.graphics.append(f"(polyline (pts (xy -2.032 0.762) (xy 2.032 0.762)) {stroke} (fill (type none)))")
            self.graphics.append(f"(polyline (pts (xy -2.032 -0.762) (xy 2.032 -0.762)) {stroke} (fill (type none)))")
            self.graphics.append(f"(polyline (pts (xy 0 2.54) (xy 0 0.762)) {stroke} (fill (type none)))")
            self.graphics.append(f"(polyline (pts (xy 0 -2.54) (xy 0 -0.762)) {stroke} (fill (type none)))")
            if kind == "CP":
                self.graphics.append(f"(polyline (pts (xy -1.778 1.778) (xy -0.762 1.778)) {stroke} (fill (type none)))")
                self.graphics.append(f"(polyline (pts (xy -1.27 2.286) (xy -1.27 1.27)) {stroke} (fill (type none)))")
        elif kind in ("D", "TVS"):
            # Pin 1 (top) is the cathode: the bar is at the top, the triangle points up.
            self.graphics.append(f"(polyline (pts (xy -1.27 1.016) (xy 1.27 1.016)) {stroke} (fill (type none)))")
            self.graphics.append(
                f"(polyline (pts (xy 0 1.016) (xy -1.27 -1.016) (xy 1.27 -1.016) (xy 0 1.016)) {stroke} (fill (type none)))"
            )
            self.graphics.append(f"(polyline (pts (xy 0 2.54) (xy 0 -2.54)) {stroke} (fill (type none)))")
        elif kind == "L":
            for i in range(3):
                y = 1.524 - i * 1.524
                self.graphics.append(
                    f"(arc (start 0 {mm(y + 0.762)}) (mid 0.762 {mm(y)}) (end 0 {mm(y - 0.762)}) {stroke} (fill (type none)))"
                )
            self.graphics.append(f"(polyline (pts (xy 0 2.54) (xy 0 2.286)) {stroke} (fill (type none)))")
            self.graphics.append(f"(polyline (pts (xy 0 -2.54) (xy 0 -2.286)) {stroke} (fill (type none)))")
        else:
            raise ValueError(f"unknown two-pin kind {kind}")


def lib_symbol(lib: str, placed: Placed, indent: str = "\t\t") -> str:
    """The symbol's definition; `lib` prefixes its name when embedded in a schematic."""
    sym = placed.sym
    name = f"{lib}:{sym.name}" if lib else sym.name
    out = [f"\t\t(symbol {q(name)}"]
    if sym.power:
        out.append("\t\t\t(power)")
    if sym.kind != "box" or sym.power:
        out.append("\t\t\t(pin_numbers (hide yes))")
    out.append(f"\t\t\t(pin_names (offset {'0' if sym.kind != 'box' else '1.016'})" + (" (hide yes))" if sym.kind != "box" or sym.power else ")"))
    out.append("\t\t\t(exclude_from_sim no)")
    out.append(f"\t\t\t(in_bom {'no' if sym.power else 'yes'})")
    out.append(f"\t\t\t(on_board {'no' if sym.power else 'yes'})")
    x0, y0, x1, y1 = placed.body
    ref_at = f"{mm(x0)} {mm(y0 + 1.27)} 0" if sym.kind == "box" else "2.54 1.27 0"
    val_at = f"{mm(x0)} {mm(y1 - 1.27)} 0" if sym.kind == "box" else "2.54 -1.27 0"
    props = [
        ("Reference", sym.ref_prefix, ref_at, False),
        ("Value", sym.name, val_at, False),
        ("Footprint", "", "0 0 0", True),
        ("Datasheet", sym.datasheet or "~", "0 0 0", True),
        ("Description", sym.description, "0 0 0", True),
    ]
    for key, value, at, hidden in props:
        eff = FONT_HIDDEN if hidden else "(effects (font (size 1.27 1.27)) (justify left))"
        out.append(f"\t\t\t(property {q(key)} {q(value)} (at {at}) {eff})")
    out.append(f"\t\t\t(symbol {q(sym.name + '_0_1')}")
    for g in placed.graphics:
        out.append("\t\t\t\t" + g)
    out.append("\t\t\t)")
    out.append(f"\t\t\t(symbol {q(sym.name + '_1_1')}")
    for p in sym.pins:
        x, y, angle = placed.pins[p.number]
        length = PIN_LEN if sym.kind == "box" else (0 if sym.kind == "flag" else 1.27)
        style = "line"
        pname = p.name if p.name else "~"
        hide = " (hide yes)" if p.hidden else ""
        out.append(
            f"\t\t\t\t(pin {p.etype} {style} (at {mm(x)} {mm(y)} {angle}) (length {mm(length)}){hide}"
            f" (name {q(pname)} {FONT}) (number {q(p.number)} {FONT}))"
        )
    out.append("\t\t\t)")
    out.append("\t\t\t(embedded_fonts no)")
    out.append("\t\t)")
    text = "\n".join(out)
    if indent != "\t\t":
        text = "\n".join(indent + line[2:] for line in text.split("\n"))
    return text


def write_symbol_lib(symbols, path: str) -> None:
    """The project's symbol library: the same definitions the schematics embed."""
    out = [
        "(kicad_symbol_lib",
        "\t(version 20241209)",
        '\t(generator "kicad_symbol_editor")',
        '\t(generator_version "9.0")',
    ]
    for s in sorted(symbols, key=lambda s: s.name):
        out.append(lib_symbol("", Placed(s), indent="\t"))
    out.append(")")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


# ---------------------------------------------------------------- the sheet


def write_schematic(design: Design, path: str, project: str) -> None:
    lib = "hearth"
    root = uid(project, "root")
    placed = {s.name: Placed(s) for s in design.symbols()}
    parts = design.parts
    body = []
    flag_n = 0

    # Layout: each block is a column group; parts flow left to right, rows wrap at the
    # page width. Room is left around each part for its labels.
    page_w, page_h = (420.0, 297.0) if design.page == "A3" else (594.0, 420.0)
    margin = 20.32
    x, y = margin, margin + 10.16
    row_h = 0.0
    current_block = None
    positions = {}
    for part in parts:
        pl = placed[part.symbol.name]
        x0, y0, x1, y1 = pl.body
        label_room_l = 2.54 + 1.0 * max((len(design.net_of(part, p.number) or "") for p in part.symbol.pins if pl.pins[p.number][2] == 0), default=0)
        label_room_r = 2.54 + 1.0 * max((len(design.net_of(part, p.number) or "") for p in part.symbol.pins if pl.pins[p.number][2] == 180), default=0)
        label_room_v = 2.54 + 1.0 * max((len(design.net_of(part, p.number) or "") for p in part.symbol.pins if pl.pins[p.number][2] in (90, 270)), default=0)
        if part.symbol.kind == "box":
            w = (x1 - x0) + 2 * PIN_LEN + label_room_l + label_room_r + 10.16
            h = (y0 - y1) + 10.16
            ox = label_room_l + PIN_LEN - x0
            oy = y0 + 5.08
        else:
            w = 12.7 + max(len(part.value), 4) * 1.0
            h = 7.62 + 2 * label_room_v + 5.08
            ox = 2.54
            oy = 3.81 + label_room_v + 2.54
        new_block = part.block != current_block
        if new_block and current_block is not None:
            x += 10.16
        if x + w > page_w - margin:
            x = margin
            y += row_h + 10.16
            row_h = 0.0
        if new_block:
            body.append(
                f"\t(text {q(part.block)} (exclude_from_sim no) (at {mm(snap(x))} {mm(snap(y - 2.54))} 0)"
                f" (effects (font (size 2.54 2.54) (thickness 0.508) (bold yes)) (justify left bottom)) (uuid {q(uid(project, 'block', part.block))}))"
            )
            current_block = part.block
        positions[part.ref] = (snap(x + ox), snap(y + oy))
        x += w
        row_h = max(row_h, h)
    if y + row_h > page_h - margin - 20.32:
        raise ValueError(f"{project}: the parts do not fit on an {design.page} sheet; use a bigger page")

    for part in parts:
        pl = placed[part.symbol.name]
        sx, sy = positions[part.ref]
        body.append(symbol_instance(lib, project, root, part, pl, sx, sy))
        for p in part.symbol.pins:
            px, py, angle = pl.pins[p.number]
            ax, ay = sx + px, sy - py
            net = design.net_of(part, p.number)
            if net is None:
                if p.etype != "no_connect":
                    body.append(f"\t(no_connect (at {mm(ax)} {mm(ay)}) (uuid {q(uid(project, 'nc', part.ref, p.number))}))")
                continue
            body.append(net_label(project, net, ax, ay, angle, part.ref, p.number))
    # Power flags: one per net that is fed from a connector or a passive part, which ERC
    # cannot see as a source.
    for net in design.power_flags:
        flag_n += 1
        ref = f"#FLG{flag_n:02d}"
        fx, fy = snap(margin + (flag_n - 1) * 22.86), snap(page_h - margin - 12.7)
        pl = placed["PWR_FLAG"]
        flag = Part(ref=ref, symbol=design.pwr_flag, value="PWR_FLAG", block="", pins={"1": net})
        body.append(symbol_instance(lib, project, root, flag, pl, fx, fy))
        px, py, angle = pl.pins["1"]
        body.append(net_label(project, net, fx + px, fy - py, angle, ref, "1"))

    out = [
        "(kicad_sch",
        "\t(version 20250114)",
        '\t(generator "eeschema")',
        '\t(generator_version "9.0")',
        f"\t(uuid {q(root)})",
        f"\t(paper {q(design.page)})",
        "\t(title_block",
        f"\t\t(title {q(design.title)})",
        f"\t\t(rev {q(design.revision)})",
        '\t\t(company "Hearth")',
        f"\t\t(comment 1 {q('Generated by schematics/generate (python3 -m generate); edit the design there')})",
        f"\t\t(comment 2 {q(design.licence)})",
        "\t)",
        "\t(lib_symbols",
    ]
    for s in design.symbols():
        out.append(lib_symbol(lib, placed[s.name]))
    out.append("\t)")
    out.extend(body)
    out.append("\t(sheet_instances")
    out.append('\t\t(path "/" (page "1"))')
    out.append("\t)")
    out.append("\t(embedded_fonts no)")
    out.append(")")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(out) + "\n")


def snap(v: float) -> float:
    return round(v / GRID) * GRID


def symbol_instance(lib, project, root, part: Part, pl: Placed, sx, sy) -> str:
    sym = part.symbol
    x0, y0, x1, y1 = pl.body
    power = sym.power
    if sym.kind == "box":
        ref_at = (sx + x0, sy - y0 - 1.27)
        val_at = (sx + x0, sy - y1 + 1.27)
    else:
        ref_at = (sx + 2.54, sy - 1.27)
        val_at = (sx + 2.54, sy + 1.27)
    fields = [
        ("Reference", part.ref, ref_at, power),
        ("Value", part.value, val_at, power),
        ("Footprint", part.footprint or "", (sx, sy), True),
        ("Datasheet", sym.datasheet or "~", (sx, sy), True),
        ("Description", sym.description, (sx, sy), True),
    ]
    for key in ("MPN", "Manufacturer", "DigiKey", "LCSC", "Alternate"):
        value = part.fields.get(key)
        if value:
            fields.append((key, value, (sx, sy), True))
    dnp = "yes" if part.dnp else "no"
    out = [
        f"\t(symbol (lib_id {q(lib + ':' + sym.name)}) (at {mm(sx)} {mm(sy)} 0) (unit 1)",
        f"\t\t(exclude_from_sim no) (in_bom {'no' if power else 'yes'}) (on_board {'no' if power else 'yes'}) (dnp {dnp})",
        f"\t\t(uuid {q(uid(project, 'sym', part.ref))})",
    ]
    for key, value, (fx, fy), hidden in fields:
        eff = FONT_HIDDEN if hidden else "(effects (font (size 1.27 1.27)) (justify left))"
        out.append(f"\t\t(property {q(key)} {q(value)} (at {mm(fx)} {mm(fy)} 0) {eff})")
    for p in sym.pins:
        out.append(f"\t\t(pin {q(p.number)} (uuid {q(uid(project, 'pin', part.ref, p.number))}))")
    out.append(f"\t\t(instances (project {q(project)} (path {q('/' + root)} (reference {q(part.ref)}) (unit 1))))")
    out.append("\t)")
    return "\n".join(out)


def net_label(project, net, ax, ay, angle, ref, pin) -> str:
    # The label's text runs away from the symbol: left of left pins, right of right pins,
    # up from top pins and down from bottom pins.
    if angle == 0:
        rot, just = 180, "right"
    elif angle == 180:
        rot, just = 0, "left"
    elif angle == 270:
        rot, just = 90, "left"
    else:
        rot, just = 270, "right"
    return (
        f"\t(label {q(net)} (at {mm(ax)} {mm(ay)} {rot})"
        f" (effects (font (size 1.27 1.27)) (justify {just} bottom)) (uuid {q(uid(project, 'label', ref, pin))}))"
    )
