"""Regenerates the KiCad projects in schematics/ from the design descriptions here.

    cd schematics && /usr/bin/python3 -m generate            # every board
    cd schematics && /usr/bin/python3 -m generate hearth-bridge

Needs KiCad 9 (scripts/kicad.sh): kicad-cli exports the netlist the PCB is built from, and
the PCB is written by KiCad's own `pcbnew` module (Debian's python3, not a virtualenv's).
"""

import os
import sys

from . import bridge, hashboard
from .footprints import write_footprints
from .project import export_netlist, write_lib_tables, write_project
from .sch import write_schematic, write_symbol_lib

BOARDS = {m.TITLE: m for m in (bridge, hashboard)}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(name):
    module = BOARDS[name]
    design = module.design()
    design.check()
    layout = module.layout() if hasattr(module, "layout") else None
    directory = os.path.join(ROOT, name)
    os.makedirs(directory, exist_ok=True)
    write_lib_tables(directory)
    sch = os.path.join(directory, f"{name}.kicad_sch")
    write_schematic(design, sch, name)
    write_project(os.path.join(directory, f"{name}.kicad_pro"), name, layout)
    raw = export_netlist(sch, os.path.join(directory, f"{name}.netlist.xml"))
    if layout is not None:
        from .pcb import build_board  # needs pcbnew

        pro = os.path.join(directory, f"{name}.kicad_pro")
        build_board(design, layout, raw, os.path.join(directory, f"{name}.kicad_pcb"), lambda: write_project(pro, name, layout))
        # SaveBoard rewrites the project file with its defaults: put the rules back.
        write_project(os.path.join(directory, f"{name}.kicad_pro"), name, layout)
    os.remove(raw)
    print(f"{name}: {len(design.parts)} parts" + (", PCB routed" if layout else ", schematic only"))


def main(argv):
    names = argv or list(BOARDS)
    symbols = {}
    for module in BOARDS.values():
        for s in module.design().symbols():
            symbols.setdefault(s.name, s)
    os.makedirs(os.path.join(ROOT, "lib"), exist_ok=True)
    write_symbol_lib(symbols.values(), os.path.join(ROOT, "lib", "hearth.kicad_sym"))
    write_footprints(os.path.join(ROOT, "lib", "hearth.pretty"))
    for name in names:
        if name not in BOARDS:
            sys.exit(f"unknown board {name!r}: one of {', '.join(BOARDS)}")
        generate(name)


if __name__ == "__main__":
    main(sys.argv[1:])
