#!/usr/bin/env bash
# KiCad 9 checks and fab outputs for every design in schematics/ (docs/hardware.md):
#   - the files are in KiCad 9's format (no newer: CI's KiCad could not open them);
#   - ERC, and DRC with schematic parity for every PCB: any error fails (on a board listed in
#     PARTIAL below, the unrouted connections are counted and reported, not failed on);
#   - the committed files are what schematics/generate produces from the descriptions;
#   - a fresh netlist export equals the committed <board>.netlist.xml, which the Rust
#     cross-check (cargo test -p hearth-boards --test schematics) reads;
#   - Gerbers, drill, position, BOM and schematic PDF into schematics/out/<board>/, each
#     checked to exist and be non-empty (the Gerbers for every copper layer and the outline,
#     complete to their M02* end);
#   - every BOM line has a manufacturer part number and a well-formed distributor number
#     (DigiKey "...-ND" or LCSC "C<digits>"), save the harvested parts listed below.
#
#   scripts/hardware.sh              # all boards
#   scripts/hardware.sh hearth-bridge
#
# Exit status: 0 when every check passed; 75 (EX_TEMPFAIL) only when KiCad could not be
# installed because Debian's package mirror is unreachable (scripts/kicad.sh says which), in
# which case nothing was checked and scripts/test.sh says so loudly; 1 for every other failure.
set -euo pipefail
cd "$(dirname "$0")/.."

UNREACHABLE=75
# Only the unreachable-mirror exit below may leave with 75. Any other step that happens to
# exit 75 under `set -e` (kicad-cli, python) is turned into a plain failure here.
unreachable=0
trap 'rc=$?; if [[ $rc -eq $UNREACHABLE && $unreachable -eq 0 ]]; then echo "hardware checks FAILED (a step exited $rc)" >&2; exit 1; fi' EXIT

# Parts no distributor sells, bought as pulled chips. Their BOM lines carry "none..." in the
# DigiKey column and no LCSC number; every other line needs a real distributor number.
#   MPN      why
HARVESTED=(
  "BM1370"  # Bitmain sells it only inside Antminer S21 Pro hashboards (hearth-single-1370/README.md)
)

# PCBs taken only part of the way (their READMEs say what is left): DRC still fails on every
# error, but the unrouted connections (DRC's "unconnected items") are expected; their Gerbers
# go to a folder named so that nobody orders them.
#   board               why
PARTIAL=(
  "hearth-single-1370"  # the power stage (TPS546D24A, inductor) has no land pattern yet
)

kicad_rc=0
kicad_cli="$(scripts/kicad.sh)" || kicad_rc=$?
if [[ $kicad_rc -eq $UNREACHABLE ]]; then
  unreachable=1
  echo "!!! Debian's package mirror is UNREACHABLE, so KiCad 9 could not be installed:" >&2
  echo "!!! ERC, DRC, the netlist comparison and the fab exports were NOT run." >&2
  exit "$UNREACHABLE"
elif [[ $kicad_rc -ne 0 ]]; then
  echo "KiCad 9 could not be installed (scripts/kicad.sh exit $kicad_rc, see above)." >&2
  echo "The mirror was reachable: this is a failure, not a network problem." >&2
  exit 1
fi

boards=("$@")
if [[ ${#boards[@]} -eq 0 ]]; then
  for dir in schematics/*/; do
    name="$(basename "$dir")"
    [[ -f "$dir/$name.kicad_sch" ]] && boards+=("$name")
  done
fi

normalise() { sed -E '/<(date|source|tool)>/d; s#<uri>[^<]*/([^/<]+)</uri>#<uri>\1</uri>#' "$1"; }

violations() { # report.json [partial] -> "errors warnings unconnected"
  python3 - "$1" "${2:-0}" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
partial = sys.argv[2] == "1"
unconnected = d.get("unconnected_items", [])
items = [v for s in d.get("sheets", []) for v in s["violations"]]
items += d.get("violations", []) + d.get("schematic_parity", [])
if not partial:
    items += unconnected
for v in items:
    if v["severity"] == "error":
        where = "; ".join(i["description"] for i in v["items"])
        print(f"    {v['type']}: {v['description']} ({where})", file=sys.stderr)
print(sum(v["severity"] == "error" for v in items), sum(v["severity"] == "warning" for v in items),
      len(unconnected) if partial else 0)
EOF
}

is_partial() { local b; for b in "${PARTIAL[@]}"; do [[ $b == "$1" ]] && return 0; done; return 1; }

failed=0

# kicad-cli <what> <args...>: runs one export; a failure names the board and the step, shows
# kicad-cli's own message, and fails the run (the other steps and boards still run).
cli() {
  local what=$1
  shift
  if ! "$kicad_cli" "$@" >"$out/kicad-cli.log" 2>&1; then
    echo "$name: kicad-cli $what FAILED:" >&2
    tail -20 "$out/kicad-cli.log" >&2
    failed=1
    return 1
  fi
}

# need <file>: a fab output that must exist and not be empty.
need() {
  if [[ ! -s $1 ]]; then
    echo "$name: fab output missing or empty: $1" >&2
    failed=1
  fi
}

# file version: the "(version N" in a KiCad file's header, or 0 if it has none.
format_version() { { grep -m1 -o '(version [0-9]*' "$1" || true; } | tr -dc 0-9; }

# The committed schematics, netlists and README BOMs are what the descriptions generate.
(cd schematics && /usr/bin/python3 -m generate --check) || failed=1

for name in "${boards[@]}"; do
  dir="schematics/$name"
  out="schematics/out/$name"
  rm -rf "$out" && mkdir -p "$out/gerbers"
  start=$(date +%s)
  sch="$dir/$name.kicad_sch"
  pcb="$dir/$name.kicad_pcb"

  v=$(format_version "$sch")
  [[ -n $v && $v -le 20250114 ]] || { echo "$sch: not a KiCad 9 schematic (format '${v}')" >&2; failed=1; }

  if cli erc sch erc --severity-all --format json -o "$out/erc.json" "$sch"; then
    if counts=$(violations "$out/erc.json"); then
      read -r errors warnings _ <<<"$counts"
      echo "$name: ERC $errors errors, $warnings warnings"
      [[ $errors -eq 0 ]] || failed=1
    else
      echo "$name: could not read $out/erc.json" >&2
      failed=1
    fi
  fi

  partial=0
  gerbers="$out/gerbers"
  if is_partial "$name"; then
    partial=1
    gerbers="$out/gerbers-INCOMPLETE-do-not-order"
    mkdir -p "$gerbers"
  fi

  if [[ -f $pcb ]]; then
    v=$(format_version "$pcb")
    [[ -n $v && $v -le 20241229 ]] || { echo "$pcb: not a KiCad 9 board (format '${v}')" >&2; failed=1; }
    if cli drc pcb drc --schematic-parity --severity-all --format json -o "$out/drc.json" "$pcb"; then
      if counts=$(violations "$out/drc.json" "$partial"); then
        read -r errors warnings unconnected <<<"$counts"
        if [[ $partial -eq 1 ]]; then
          echo "$name: DRC (with schematic parity) $errors errors, $warnings warnings;" \
            "$unconnected connections left unrouted (a partial board: see $dir/README.md)"
        else
          echo "$name: DRC (with schematic parity) $errors errors, $warnings warnings"
        fi
        [[ $errors -eq 0 ]] || failed=1
      else
        echo "$name: could not read $out/drc.json" >&2
        failed=1
      fi
    fi
  else
    echo "$name: no PCB yet (schematic only); see $dir/README.md"
  fi

  if cli "netlist export" sch export netlist --format kicadxml -o "$out/$name.netlist.xml" "$sch"; then
    if ! diff -u "$dir/$name.netlist.xml" <(normalise "$out/$name.netlist.xml") >"$out/netlist.diff"; then
      echo "$name: the committed $name.netlist.xml is stale (diff in $out/netlist.diff);" \
        "regenerate with: cd schematics && /usr/bin/python3 -m generate $name" >&2
      failed=1
    else
      echo "$name: committed netlist matches the schematic"
    fi
  fi

  bom="$out/$name-bom.csv"
  if cli "BOM export" sch export bom \
    --fields 'Reference,Value,Footprint,MPN,Manufacturer,DigiKey,LCSC,Alternate,${QUANTITY},${DNP}' \
    --labels 'Refs,Value,Footprint,MPN,Manufacturer,DigiKey,LCSC,Alternate,Qty,DNP' \
    --group-by 'Value,Footprint,MPN' --exclude-dnp -o "$bom" "$sch"; then
    python3 - "$bom" "${HARVESTED[@]}" <<'EOF' || failed=1
import csv, re, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
harvested = set(sys.argv[2:])
DIGIKEY = re.compile(r"^[0-9A-Za-z][0-9A-Za-z./#+-]*-ND$")  # e.g. 296-47458-1-ND
LCSC = re.compile(r"^C[0-9]+$")                              # e.g. C5137262
bad = []
for r in rows:
    refs, mpn = r["Refs"], r["MPN"].strip()
    digikey, lcsc = r["DigiKey"].strip(), r["LCSC"].strip()
    if not mpn or not r["Manufacturer"].strip():
        bad.append(f"{refs}: no MPN or manufacturer")
        continue
    if digikey and not (DIGIKEY.match(digikey) or digikey.lower().startswith("none")):
        bad.append(f"{refs}: DigiKey {digikey!r} is not a DigiKey number (...-ND); "
                   "write 'none' there and the other distributor's number in its own column")
    if lcsc and not LCSC.match(lcsc):
        bad.append(f"{refs}: LCSC {lcsc!r} is not an LCSC number (C followed by digits)")
    has_number = bool(DIGIKEY.match(digikey) or LCSC.match(lcsc))
    if not has_number:
        if mpn in harvested and digikey.lower().startswith("none"):
            continue  # a harvested part: no distributor, said so in the DigiKey column
        bad.append(f"{refs} ({mpn}): no DigiKey or LCSC number, and not a harvested part "
                   f"(scripts/hardware.sh HARVESTED: {', '.join(sorted(harvested))})")
if bad:
    print("  BOM lines without a valid manufacturer part and distributor number:", file=sys.stderr)
    for b in bad:
        print(f"    {b}", file=sys.stderr)
    sys.exit(1)
print(f"  BOM: {len(rows)} lines, {sum(int(r['Qty']) for r in rows)} parts, each with MPN and "
      "a DigiKey or LCSC number (or harvested)")
EOF
  fi
  cli "schematic PDF" sch export pdf -o "$out/$name-schematic.pdf" "$sch" || true
  need "$bom"
  need "$out/$name-schematic.pdf"

  if [[ -f $pcb ]]; then
    cli Gerbers pcb export gerbers --board-plot-params -o "$gerbers/" "$pcb" || true
    cli drill pcb export drill --excellon-separate-th --excellon-units mm -o "$gerbers/" "$pcb" || true
    cli "position file" pcb export pos --format csv --units mm --side both --exclude-dnp \
      -o "$out/$name-pos.csv" "$pcb" || true
    # Every copper layer and the outline, as the Gerber job file lists them (KiCad writes
    # it with the Gerbers), each present, non-empty and ending in M02* (not cut short).
    python3 - "$gerbers" "$name" <<'EOF' || failed=1
import json, pathlib, sys
d, name = pathlib.Path(sys.argv[1]), sys.argv[2]
job = d / f"{name}-job.gbrjob"
if not job.is_file():
    print(f"{name}: fab output missing: {job}", file=sys.stderr)
    sys.exit(1)
spec = json.loads(job.read_text())
files = {f["FileFunction"]: d / f["Path"] for f in spec.get("FilesAttributes", [])}
layers = int(spec.get("GeneralSpecs", {}).get("LayerNumber", 0))
want = [(f"copper layer L{i}", lambda fn, i=i: fn.startswith(f"Copper,L{i},")) for i in range(1, layers + 1)]
want.append(("board outline (Edge.Cuts)", lambda fn: fn.startswith("Profile")))
problems = [] if layers >= 1 else [f"{job} gives no copper layer count"]
for what, match in want:
    paths = [p for fn, p in files.items() if match(fn)]
    if not paths:
        problems.append(f"no Gerber for the {what} in {job.name}")
    for p in paths:
        if not p.is_file() or p.stat().st_size == 0:
            problems.append(f"fab output missing or empty: {p} ({what})")
        elif not p.read_bytes().rstrip().endswith(b"M02*"):
            problems.append(f"Gerber cut short (no M02* at its end): {p}")
for p in problems:
    print(f"{name}: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
    need "$gerbers/$name-PTH.drl"
    need "$gerbers/$name-NPTH.drl"
    need "$out/$name-pos.csv"
    if [[ -s $out/$name-pos.csv ]]; then
      echo "  fab outputs: $(ls "$gerbers" | wc -l) Gerber/drill files in $(basename "$gerbers")/," \
        "$(($(wc -l <"$out/$name-pos.csv") - 1)) placements"
    fi
  fi
  echo "  outputs in $out ($(($(date +%s) - start)) s)"
done

if [[ $failed -ne 0 ]]; then
  echo "hardware checks FAILED" >&2
  exit 1
fi
echo "hardware checks passed: ${boards[*]}"
