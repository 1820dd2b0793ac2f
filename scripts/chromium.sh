#!/usr/bin/env bash
# Headless Chromium for the dashboard's browser test (host/tests/dashboard_browser.rs), from
# Debian's `chromium` package. Installs it once (quietly; apt's output only when it fails) and
# prints the path of the binary on stdout; progress goes to stderr.
set -euo pipefail

if bin="$(command -v chromium)"; then
  echo "$bin"
  exit 0
fi

echo "[chromium] installing Debian's chromium package (once per machine)" >&2
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
aptlog="$(mktemp)"
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends chromium fonts-dejavu-core; } >"$aptlog" 2>&1; then
  tail -30 "$aptlog" >&2
  echo "[chromium] apt-get could not install chromium; check the network to deb.debian.org" >&2
  exit 1
fi
rm -f "$aptlog"
command -v chromium
