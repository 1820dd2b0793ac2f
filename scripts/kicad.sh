#!/usr/bin/env bash
# Installs KiCad 9 (kicad-cli, the symbol and footprint libraries; not the 4.6 GB 3D models)
# from Debian's bookworm-backports, then prints the path of kicad-cli. Bookworm's own KiCad is
# 6.0, which cannot open KiCad 9 files (docs/hardware.md). Idempotent: a machine that has
# kicad-cli 9 already prints it and exits.
#
#   scripts/kicad.sh            # install if needed, print the kicad-cli path
#
# Exit status:
#   0   kicad-cli 9 is installed; its path is on stdout.
#   75  (EX_TEMPFAIL) the package source could not be reached: apt-get update or the package
#       download failed for network reasons. Only this case; scripts/hardware.sh passes it on
#       and scripts/test.sh reports it loudly and carries on with the Rust checks.
#   1   anything else (no sudo, a held dpkg lock, a dependency conflict, a broken package,
#       kicad-cli not version 9 afterwards). Those are failures, never "unreachable".
set -euo pipefail

UNREACHABLE=75

have_kicad9() {
  command -v kicad-cli >/dev/null && [[ "$(kicad-cli version 2>/dev/null)" == 9.* ]] \
    && [[ -d /usr/share/kicad/footprints && -d /usr/share/kicad/symbols ]]
}

# apt's messages when it cannot reach a mirror (name resolution, connection, HTTP fetch).
network_error() { # log
  grep -qE 'Failed to fetch|Unable to fetch some archives|Temporary failure resolving|Could not resolve|Could not connect|Unable to connect|Connection failed|Connection timed out|Network is unreachable|No route to host|Some index files failed to download' "$1"
}

if ! have_kicad9; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  log="$(mktemp)"
  trap 'rm -f "$log"' EXIT
  # Wait for a dpkg lock held by another apt run instead of failing at once.
  apt=(apt-get -o DPkg::Lock::Timeout=300)
  list=/etc/apt/sources.list.d/hearth-bookworm-backports.list
  if [[ ! -f $list ]]; then
    echo "deb http://deb.debian.org/debian bookworm-backports main" | $SUDO tee "$list" >/dev/null
  fi

  echo "kicad: apt-get update (bookworm-backports)" >&2
  update=0
  $SUDO "${apt[@]}" update -q >"$log" 2>&1 || update=$?
  # apt-get update exits 0 when some index files could not be downloaded (it only warns), so
  # success is judged by whether backports now offers KiCad 9. The policy is read whole before
  # grep looks at it: `apt-cache … | grep -q` under pipefail fails at random when grep exits at
  # the first match and apt-cache dies of SIGPIPE on its next write.
  policy="$(apt-cache policy kicad 2>/dev/null || true)"
  if [[ $update -ne 0 ]] || ! grep -q 'bookworm-backports' <<<"$policy"; then
    tail -20 "$log" >&2
    if network_error "$log"; then
      echo "kicad: Debian's package mirror (deb.debian.org) is UNREACHABLE: apt-get update could not fetch bookworm-backports" >&2
      exit "$UNREACHABLE"
    fi
    echo "kicad: apt-get update failed (exit $update) or bookworm-backports offers no kicad, and not for a network reason: see above" >&2
    exit 1
  fi

  echo "kicad: installing kicad, kicad-symbols, kicad-footprints 9.x (~110 MB, about a minute)" >&2
  # -t makes bookworm-backports the preferred release for this one transaction: KiCad and every
  # dependency with a newer version in backports come from there (on bookworm in 2025 that was
  # also libngspice0, libhwloc15 and the libwebp libraries). Other packages stay on bookworm:
  # backports keeps its default priority (100) for later upgrades.
  install=0
  DEBIAN_FRONTEND=noninteractive $SUDO "${apt[@]}" install -y -q --no-install-recommends \
    -t bookworm-backports kicad kicad-symbols kicad-footprints >"$log" 2>&1 || install=$?
  if [[ $install -ne 0 ]]; then
    tail -20 "$log" >&2
    if network_error "$log"; then
      echo "kicad: Debian's package mirror is UNREACHABLE: the KiCad packages could not be downloaded" >&2
      exit "$UNREACHABLE"
    fi
    echo "kicad: apt-get install of KiCad 9 failed (exit $install), and not for a network reason: see above" >&2
    exit 1
  fi
  have_kicad9 || { echo "kicad: installed, but kicad-cli is not version 9: $(kicad-cli version 2>&1)" >&2; exit 1; }
fi

# kicad-cli reads the global library tables from the user's config; seed them once.
config="${XDG_CONFIG_HOME:-$HOME/.config}/kicad/9.0"
mkdir -p "$config"
for table in sym-lib-table fp-lib-table; do
  [[ -f $config/$table ]] || cp "/usr/share/kicad/template/$table" "$config/$table"
done
command -v kicad-cli
