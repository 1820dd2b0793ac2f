#!/usr/bin/env bash
# Installs KiCad 9 (kicad-cli, the symbol and footprint libraries; not the 4.6 GB 3D models)
# from Debian's bookworm-backports, then prints the path of kicad-cli. Bookworm's own KiCad is
# 6.0, which cannot open KiCad 9 files (docs/hardware.md). Idempotent: a machine that has
# kicad-cli 9 already prints it and exits.
#
#   scripts/kicad.sh            # install if needed, print the kicad-cli path
# Exits 2, with the reason on stderr, when the package source cannot be reached.
set -euo pipefail

have_kicad9() {
  command -v kicad-cli >/dev/null && [[ "$(kicad-cli version 2>/dev/null)" == 9.* ]] \
    && [[ -d /usr/share/kicad/footprints && -d /usr/share/kicad/symbols ]]
}

if ! have_kicad9; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  list=/etc/apt/sources.list.d/hearth-bookworm-backports.list
  if [[ ! -f $list ]]; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$list" >/dev/null
  fi
  echo "kicad: apt-get update (bookworm-backports)" >&2
  if ! $SUDO apt-get update -qq >/dev/null 2>&1; then
    echo "kicad: apt-get update failed: Debian's package mirror is unreachable" >&2
    exit 2
  fi
  echo "kicad: installing kicad, kicad-symbols, kicad-footprints 9.x (~110 MB, about a minute)" >&2
  # kicad/bookworm-backports takes only KiCad itself from backports (its libraries follow).
  if ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
      -t bookworm-backports kicad kicad-symbols kicad-footprints >/dev/null 2>&1; then
    echo "kicad: could not install KiCad 9 from bookworm-backports (is the mirror reachable?)" >&2
    exit 2
  fi
  have_kicad9 || { echo "kicad: installed, but kicad-cli is not version 9: $(kicad-cli version 2>&1)" >&2; exit 2; }
fi

# kicad-cli reads the global library tables from the user's config; seed them once.
config="${XDG_CONFIG_HOME:-$HOME/.config}/kicad/9.0"
mkdir -p "$config"
for table in sym-lib-table fp-lib-table; do
  [[ -f $config/$table ]] || cp "/usr/share/kicad/template/$table" "$config/$table"
done
command -v kicad-cli
