"""The design description both writers read: symbols, parts, nets and their placement."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pin:
    number: str
    name: str
    # KiCad electrical type: input, output, bidirectional, tri_state, passive, free,
    # unspecified, power_in, power_out, open_collector, open_emitter, no_connect.
    etype: str
    side: str = "L"  # L or R on box symbols
    hidden: bool = False


@dataclass
class Symbol:
    name: str
    pins: list
    kind: str = "box"  # box, or a two-pin drawing: R, C, CP, D, TVS, F, L
    ref_prefix: str = "U"
    description: str = ""
    datasheet: str = ""
    power: bool = False


def box(name, ref_prefix, left, right, description="", datasheet=""):
    """A box symbol. `left` and `right` are lists of (number, name, etype); None leaves a gap."""
    pins = []
    for side, spec in (("L", left), ("R", right)):
        for number, pname, etype in spec:
            pins.append(Pin(number, pname, etype, side))
    return Symbol(name, pins, "box", ref_prefix, description, datasheet)


def two_pin(name, kind, ref_prefix, description="", names=("~", "~"), etype="passive"):
    return Symbol(
        name,
        [Pin("1", names[0], etype), Pin("2", names[1], etype)],
        kind,
        ref_prefix,
        description,
    )


@dataclass
class Part:
    ref: str
    symbol: Symbol
    value: str
    block: str
    pins: dict  # pin number -> net name
    footprint: str = ""
    fields: dict = field(default_factory=dict)  # MPN, Manufacturer, DigiKey, LCSC, Alternate
    dnp: bool = False
    # PCB placement: (x mm, y mm, rotation degrees, "F" or "B"); None = not placed.
    at: tuple = None


PWR_FLAG = Symbol(
    "PWR_FLAG",
    [Pin("1", "pwr", "power_out")],
    "flag",
    "#FLG",
    "Marks a net as powered, for ERC (a connector or a passive part feeds it)",
    power=True,
)


@dataclass
class Design:
    title: str
    revision: str
    licence: str
    parts: list
    power_flags: list  # nets fed through a connector or passive part
    page: str = "A3"
    pwr_flag: Symbol = field(default_factory=lambda: PWR_FLAG)

    def net_of(self, part: Part, number: str):
        return part.pins.get(number)

    def symbols(self):
        seen = {}
        for p in self.parts:
            seen.setdefault(p.symbol.name, p.symbol)
        if self.power_flags:
            seen.setdefault(PWR_FLAG.name, PWR_FLAG)
        return list(seen.values())

    def check(self):
        """Mistakes a writer would otherwise turn into a wrong board."""
        problems = []
        refs = set()
        nets = {}
        for p in self.parts:
            if p.ref in refs:
                problems.append(f"{p.ref} is used twice")
            refs.add(p.ref)
            numbers = {pin.number for pin in p.symbol.pins}
            for number, net in p.pins.items():
                if number not in numbers:
                    problems.append(f"{p.ref}: symbol {p.symbol.name} has no pin {number}")
                nets.setdefault(net, []).append(f"{p.ref}.{number}")
        for net, members in nets.items():
            if len(members) < 2 and net not in self.power_flags:
                problems.append(f"net {net} has one pin only ({members[0]}): a typo?")
        if problems:
            raise ValueError(f"{self.title}:\n  " + "\n  ".join(problems))
        return nets


@dataclass
class Layout:
    """How the PCB is laid out and routed (mm)."""

    size: tuple  # (width, height)
    clearance: float
    track: float  # the narrowest (signal) track
    via: tuple  # (diameter, drill)
    edge_clearance: float
    grid: float = 0.25
    net_widths: dict = field(default_factory=dict)  # net -> track width
    route_first: list = field(default_factory=list)
    # Poured nets {"net", "layer": "F"|"B", "polygon"?}: not routed; each pad off the pour's
    # layer gets a via down to it.
    zones: list = field(default_factory=list)
    holes: list = field(default_factory=list)  # M3 mounting holes (x, y)
    texts: list = field(default_factory=list)  # (text, (x, y), size) on the top silkscreen
    keepouts: list = field(default_factory=list)  # ((layers), (x0, y0, x1, y1)): no tracks there
    references: dict = field(default_factory=dict)  # ref -> (x, y) of its silkscreen reference
    # Parts packed too closely for a readable silkscreen reference: theirs goes on the
    # fabrication layer (the assembly drawing) instead.
    fab_references: list = field(default_factory=list)
    # A board routed only in part (nets left for a person to route): unconnected items are
    # expected, so generation does not fail on them. `route_only` names the nets routed.
    partial: bool = False
    route_only: list = None
    copper_layers: int = 2
    bottom_cost: float = 1.5  # extra cost of a grid step on the bottom layer (the bridge pours it)
    annular: float = 0.25  # minimum via annular ring
    # Holes plated by a PCB fab: a through-hole pin joins every layer. Without plating (the
    # milled bridge) a pin is reached only on the side opposite its part's body.
    plated: bool = False
    # {"outer_um", "inner_um", "finish", "dielectrics": [(name, type, mm), ...]}: written
    # into the board's setup, where KiCad keeps the stack-up.
    stackup: dict = None
    positions: dict = field(default_factory=dict)  # ref -> (x, y, rot[, "B"]), for parts without `at`
    # Areas kept free of tracks and vias, shown in KiCad as rule areas: (name, (x0, y0, x1,
    # y1)) on every copper layer, or (name, rect, "below") on all but the top.
    reserved: list = field(default_factory=list)
    # Outlines for a person, on User.Drawings: (label, (x0, y0, x1, y1)).
    drawings: list = field(default_factory=list)
