"""Regenerates the KiCad projects in schematics/ from the design descriptions here.

    cd schematics && /usr/bin/python3 -m generate                 # every board
    cd schematics && /usr/bin/python3 -m generate hearth-bridge   # one
    cd schematics && /usr/bin/python3 -m generate --check         # committed files up to date?

Needs KiCad 9 (scripts/kicad.sh): kicad-cli exports the netlist the PCB is built from, and
the PCB is written by KiCad's own `pcbnew` module (Debian's python3, not a virtualenv's).
`--check` regenerates everything into a scratch copy and compares (item ids come from a
fixed seed, so an unchanged design gives byte-identical files).
"""

import filecmp
import fnmatch
import subprocess
import os
import shutil
import sys
import tempfile

from . import bridge, hashboard
from .footprints import write_footprints
from .project import export_netlist, write_lib_tables, write_project
from .readme import update_readme
from .sch import write_schematic, write_symbol_lib

BOARDS = {m.TITLE: m for m in (bridge, hashboard)}
# KiCad's per-user state, written as a side effect of saving a board and ignored by git
# (.gitignore): never part of what --check compares, or a clean checkout would fail it.
USER_STATE = ("out", "__pycache__", "*.kicad_prl", "fp-info-cache", "*-backups")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def generate(name, root):
    module = BOARDS[name]
    design = module.design()
    design.check()
    layout = module.layout() if hasattr(module, "layout") else None
    directory = os.path.join(root, name)
    os.makedirs(directory, exist_ok=True)
    write_lib_tables(directory)
    sch = os.path.join(directory, f"{name}.kicad_sch")
    pro = os.path.join(directory, f"{name}.kicad_pro")
    write_schematic(design, sch, name)
    write_project(pro, name, layout)
    raw = export_netlist(sch, os.path.join(directory, f"{name}.netlist.xml"))
    if layout is not None:
        from .pcb import build_board  # needs pcbnew

        build_board(design, layout, raw, os.path.join(directory, f"{name}.kicad_pcb"), lambda: write_project(pro, name, layout))
        # SaveBoard rewrites the project file with its defaults: put the rules back.
        write_project(pro, name, layout)
    os.remove(raw)
    if hasattr(module, "STACKED_UNDER"):
        from .pcb import check_mating

        ref, upper_name, upper_ref = module.STACKED_UNDER
        upper = BOARDS[upper_name]
        check_mating(design, layout, ref, upper.design(), upper.layout(), upper_ref)
    update_readme(os.path.join(directory, "README.md"), design)
    return design, layout


def generate_isolated(name, root):
    """generate() in a fresh interpreter: pcbnew caches footprint libraries per process, and
    a footprint taken from the cache gets different item ids than one read from its file, so
    a board built after another would not be byte-identical to the same board built alone."""
    code = "import sys; from generate.__main__ import generate; generate(sys.argv[1], sys.argv[2])"
    if subprocess.run([sys.executable, "-c", code, name, root], cwd=ROOT).returncode != 0:
        sys.exit(f"{name}: generation failed (see above)")
    module = BOARDS[name]
    return module.design(), (module.layout() if hasattr(module, "layout") else None)


def write_libraries(root):
    symbols = {}
    for module in BOARDS.values():
        for s in module.design().symbols():
            symbols.setdefault(s.name, s)
    os.makedirs(os.path.join(root, "lib"), exist_ok=True)
    write_symbol_lib(symbols.values(), os.path.join(root, "lib", "hearth.kicad_sym"))
    write_footprints(os.path.join(root, "lib", "hearth.pretty"))


def check():
    """Exit status 1, naming the files, when the committed files are not what the
    descriptions generate."""
    with tempfile.TemporaryDirectory() as scratch:
        copy = os.path.join(scratch, "schematics")
        shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(*USER_STATE, "*.kicad_pcb"))
        write_libraries(copy)
        for name in BOARDS:
            generate_isolated(name, copy)
        stale = []
        for directory, _, files in os.walk(copy):
            for f in files:
                if any(fnmatch.fnmatch(f, pattern) for pattern in USER_STATE):
                    continue
                fresh = os.path.join(directory, f)
                committed = os.path.join(ROOT, os.path.relpath(fresh, copy))
                if not os.path.exists(committed) or not filecmp.cmp(fresh, committed, shallow=False):
                    stale.append(os.path.relpath(committed, os.path.dirname(ROOT)))
    if stale:
        print("not what schematics/generate produces (run: cd schematics && /usr/bin/python3 -m generate):", file=sys.stderr)
        for s in sorted(stale):
            print(f"  {s}", file=sys.stderr)
        return 1
    print(f"generated files up to date: {', '.join(BOARDS)}")
    return 0


def main(argv):
    if argv == ["--check"]:
        return check()
    names = argv or list(BOARDS)
    for name in names:
        if name not in BOARDS:
            sys.exit(f"unknown board {name!r}: one of {', '.join(BOARDS)}")
    write_libraries(ROOT)
    for name in names:
        design, layout = generate_isolated(name, ROOT)
        state = "schematic only" if layout is None else "PCB placed, partly routed" if layout.partial else "PCB routed"
        print(f"{name}: {len(design.parts)} parts, {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
