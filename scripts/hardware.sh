#!/usr/bin/env bash
# KiCad 9 checks and fab outputs for every design in schematics/ (docs/hardware.md):
#   - the files are in KiCad 9's format (no newer: CI's KiCad could not open them);
#   - ERC, and DRC with schematic parity for routed boards: any error fails;
#   - the committed files are what schematics/generate produces from the descriptions;
#   - a fresh netlist export equals the committed <board>.netlist.xml, which the Rust
#     cross-check (cargo test -p hearth-boards --test schematics) reads;
#   - Gerbers, drill, position, BOM and schematic PDF into schematics/out/<board>/;
#   - every BOM line has a manufacturer part number and a distributor number.
#
#   scripts/hardware.sh              # all boards
#   scripts/hardware.sh hearth-bridge
# KiCad comes from scripts/kicad.sh. If Debian's mirror cannot be reached, this says so and
# exits 2; scripts/test.sh then carries on with the Rust checks.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! kicad_cli="$(scripts/kicad.sh)"; then
  echo "KiCad 9 is not available (see above): ERC, DRC and fab exports were NOT run" >&2
  exit 2
fi

boards=("$@")
if [[ ${#boards[@]} -eq 0 ]]; then
  for dir in schematics/*/; do
    name="$(basename "$dir")"
    [[ -f "$dir/$name.kicad_sch" ]] && boards+=("$name")
  done
fi

normalise() { sed -E '/<(date|source|tool)>/d; s#<uri>[^<]*/([^/<]+)</uri>#<uri>\1</uri>#' "$1"; }

violations() { # report.json -> "errors warnings"
  python3 - "$1" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
items = [v for s in d.get("sheets", []) for v in s["violations"]]
items += d.get("violations", []) + d.get("unconnected_items", []) + d.get("schematic_parity", [])
for v in items:
    if v["severity"] == "error":
        where = "; ".join(i["description"] for i in v["items"])
        print(f"    {v['type']}: {v['description']} ({where})", file=sys.stderr)
print(sum(v["severity"] == "error" for v in items), sum(v["severity"] == "warning" for v in items))
EOF
}

failed=0
# The committed schematics, netlists and README BOMs are what the descriptions generate.
(cd schematics && /usr/bin/python3 -m generate --check) || failed=1

for name in "${boards[@]}"; do
  dir="schematics/$name"
  out="schematics/out/$name"
  rm -rf "$out" && mkdir -p "$out/gerbers"
  start=$(date +%s)
  sch="$dir/$name.kicad_sch"
  pcb="$dir/$name.kicad_pcb"

  v=$(grep -m1 -o '(version [0-9]*' "$sch" | tr -dc 0-9)
  [[ $v -le 20250114 ]] || { echo "$sch: saved by a KiCad newer than 9 (format $v)" >&2; failed=1; }

  "$kicad_cli" sch erc --severity-all --format json -o "$out/erc.json" "$sch" >/dev/null
  read -r errors warnings < <(violations "$out/erc.json")
  echo "$name: ERC $errors errors, $warnings warnings"
  [[ $errors -eq 0 ]] || failed=1

  if [[ -f $pcb ]]; then
    v=$(grep -m1 -o '(version [0-9]*' "$pcb" | tr -dc 0-9)
    [[ $v -le 20241229 ]] || { echo "$pcb: saved by a KiCad newer than 9 (format $v)" >&2; failed=1; }
    "$kicad_cli" pcb drc --schematic-parity --severity-all --format json -o "$out/drc.json" "$pcb" >/dev/null
    read -r errors warnings < <(violations "$out/drc.json")
    echo "$name: DRC (with schematic parity) $errors errors, $warnings warnings"
    [[ $errors -eq 0 ]] || failed=1
  else
    echo "$name: no PCB yet (schematic only); see $dir/README.md"
  fi

  "$kicad_cli" sch export netlist --format kicadxml -o "$out/$name.netlist.xml" "$sch" >/dev/null
  if ! diff -u "$dir/$name.netlist.xml" <(normalise "$out/$name.netlist.xml") >"$out/netlist.diff"; then
    echo "$name: the committed $name.netlist.xml is stale (diff in $out/netlist.diff);" \
      "regenerate with: cd schematics && /usr/bin/python3 -m generate $name" >&2
    failed=1
  else
    echo "$name: committed netlist matches the schematic"
  fi

  "$kicad_cli" sch export bom --fields 'Reference,Value,Footprint,MPN,Manufacturer,DigiKey,LCSC,Alternate,${QUANTITY},${DNP}' \
    --labels 'Refs,Value,Footprint,MPN,Manufacturer,DigiKey,LCSC,Alternate,Qty,DNP' \
    --group-by 'Value,Footprint,MPN' --exclude-dnp -o "$out/$name-bom.csv" "$sch" >/dev/null
  python3 - "$out/$name-bom.csv" <<'EOF' || failed=1
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
bad = [r["Refs"] for r in rows if not (r["MPN"] and r["Manufacturer"] and (r["DigiKey"] or r["LCSC"]))]
if bad:
    print(f"  BOM lines without an MPN, manufacturer or distributor number: {', '.join(bad)}", file=sys.stderr)
    sys.exit(1)
print(f"  BOM: {len(rows)} lines, {sum(int(r['Qty']) for r in rows)} parts, each with MPN and distributor")
EOF
  "$kicad_cli" sch export pdf -o "$out/$name-schematic.pdf" "$sch" >/dev/null

  if [[ -f $pcb ]]; then
    "$kicad_cli" pcb export gerbers --board-plot-params -o "$out/gerbers/" "$pcb" >/dev/null
    "$kicad_cli" pcb export drill --excellon-separate-th --excellon-units mm -o "$out/gerbers/" "$pcb" >/dev/null
    "$kicad_cli" pcb export pos --format csv --units mm --side both --exclude-dnp -o "$out/$name-pos.csv" "$pcb" >/dev/null
    echo "  fab outputs: $(ls "$out/gerbers" | wc -l) Gerber/drill files, $(($(wc -l <"$out/$name-pos.csv") - 1)) placements"
  fi
  echo "  outputs in $out ($(($(date +%s) - start)) s)"
done

if [[ $failed -ne 0 ]]; then
  echo "hardware checks FAILED" >&2
  exit 1
fi
echo "hardware checks passed: ${boards[*]}"
