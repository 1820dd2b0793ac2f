#!/usr/bin/env bash
# A private Tor network on loopback for tests: makes sure Debian's `tor` (tor + tor-gencert) is
# installed, then runs scripts/tor-net.py with the same arguments. See docs/tor.md.
#
#   scripts/tor-net.sh --target 127.0.0.1:3333      # prints onion=..., socks=..., ready
#   scripts/tor-net.sh --self-test                  # echo round trips through an onion service
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"   # no cd: relative paths in the arguments stay the caller's

if ! command -v tor >/dev/null || ! command -v tor-gencert >/dev/null; then
  echo "[tor-net] installing the Debian package tor (tor, tor-gencert)" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  aptlog="$(mktemp)"
  if ! $SUDO apt-get update -qq >/dev/null 2>"$aptlog" \
    || ! DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends tor \
      >/dev/null 2>>"$aptlog" \
    || ! command -v tor >/dev/null || ! command -v tor-gencert >/dev/null; then
    tail -n 15 "$aptlog" >&2
    rm -f "$aptlog"
    cat >&2 <<'MSG'

############################################################################
# tor-net: FAILED to install the Debian package `tor` (apt could not reach
# its package source, or the package is not available there; apt's last
# messages are above).
#
# The launcher needs `tor` and `tor-gencert` on PATH. Get them with one of:
#   - with network access:  sudo apt-get update && sudo apt-get install tor
#   - the Tor Project's own apt repository (https://deb.torproject.org),
#     package `tor`
#   - a tor build of your own whose `tor` and `tor-gencert` are on PATH
# then rerun this script.
############################################################################
MSG
    exit 1
  fi
  rm -f "$aptlog"
fi

exec python3 "$here/tor-net.py" "$@"
