#!/usr/bin/env bash
# Every check CI runs, from a clean checkout: the KiCad designs (scripts/hardware.sh),
# formatting, lints, the no_std crates and the firmware image for the RP2040
# (thumbv6m-none-eabi), all tests (including the ones against a
# real bitcoind, built once and cached by scripts/bitcoind.sh, and the firmware running in the
# rp2040js emulator), and short fuzz runs of the two wire decoders.
#
#   scripts/test.sh            # everything
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzz smoke run (it is reported, not hidden)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
# quiet <command...>: a set-up command's output only when it fails (one line per step otherwise).
source scripts/quiet.sh
start=$(date +%s)

step "toolchain: rustfmt, clippy, thumbv6m-none-eabi"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
quiet rustup target add thumbv6m-none-eabi

step "Debian packages for the tests: socat (serial-port tests over a PTY), tor (a private Tor network)"
missing=()
command -v socat >/dev/null || missing+=(socat)
{ command -v tor >/dev/null && command -v tor-gencert >/dev/null; } || missing+=(tor)
if [[ ${#missing[@]} -gt 0 ]]; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  quiet $SUDO apt-get update -qq
  quiet $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

step "bitcoind for the regtest tests (built once per machine, cached in ~/.cache/hearth)"
HEARTH_BITCOIND="$(scripts/bitcoind.sh)"
export HEARTH_BITCOIND
echo "$HEARTH_BITCOIND"

step "headless Chromium for the dashboard's browser test (Debian's chromium, installed once)"
HEARTH_CHROMIUM="$(scripts/chromium.sh)"
export HEARTH_CHROMIUM
echo "$HEARTH_CHROMIUM"

step "KiCad 9 (from bookworm-backports): ERC, DRC, netlists and fab outputs of schematics/"
# scripts/hardware.sh exits 75 only when Debian's mirror cannot be reached to install KiCad;
# any other non-zero status (a failed check, a failed install, a kicad-cli crash) fails CI.
hardware=0
scripts/hardware.sh || hardware=$?
if [[ $hardware -eq 75 ]]; then
  printf '\n%s\n%s\n%s\n%s\n\n' \
    '!!!!!!!! Debian mirror UNREACHABLE: KiCad 9 not installed. ERC, DRC, the netlist    !!!!!!!!' \
    '!!!!!!!! comparison and the fab exports were NOT checked. The board/netlist         !!!!!!!!' \
    '!!!!!!!! cross-check still runs in cargo test (hearth-boards). Check the network to !!!!!!!!' \
    '!!!!!!!! deb.debian.org, then run scripts/hardware.sh.                              !!!!!!!!' >&2
elif [[ $hardware -ne 0 ]]; then
  exit "$hardware"
fi

step "cargo fmt --check (workspace and the firmware image)"
cargo fmt --all --check
(cd firmware/rp2040 && cargo fmt --check)

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "no_std crates for thumbv6m-none-eabi"
cargo build --locked -p bm13xx --target thumbv6m-none-eabi
cargo build --locked -p bm13xx -p hearth-link -p hearth-board --target thumbv6m-none-eabi

step "firmware image for the RP2040 (release, UF2), and its lints"
HEARTH_FIRMWARE_IMAGE="$(scripts/firmware.sh)"
export HEARTH_FIRMWARE_IMAGE
(cd firmware/rp2040 && CARGO_TARGET_DIR="${HEARTH_CACHE:-$HOME/.cache/hearth}/target-rp2040" \
  cargo clippy --release --locked -- -D warnings)

step "firmware emulator packages (rp2040js, pinned)"
(cd firmware/emu && npm ci --no-audit --no-fund --loglevel=error)

step "cargo test (workspace, including the regtest and emulator end-to-end tests)"
cargo test --workspace --locked

step "firmware scenarios in the emulator (node --test)"
HEARTH_BIN="$(pwd)/target/debug/hearth"
export HEARTH_BIN
(cd firmware/emu && npm test)

step "Debian packages: amd64 and arm64 (cross-built), each checked; the unit through systemd-analyze"
scripts/package.sh

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
if [[ "$FUZZ_SECONDS" -gt 0 ]]; then
  if ! command -v cargo-fuzz >/dev/null; then
    echo "installing cargo-fuzz (cargo install --locked, once per machine)"
    cargo install --locked --quiet cargo-fuzz
  fi
  for target in firmware/bm13xx/fuzz:response_decoder firmware/link/fuzz:frame_decoder; do
    dir="${target%%:*}"; name="${target##*:}"
    step "fuzz $name for ${FUZZ_SECONDS}s"
    # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
    log="$(mktemp)"
    if ! (cd "$dir" && RUSTC_BOOTSTRAP=1 cargo fuzz run "$name" -- -max_total_time="$FUZZ_SECONDS" >"$log" 2>&1); then
      tail -40 "$log" >&2
      echo "fuzzing failed; any crash input is in $dir/artifacts/$name/" >&2
      exit 1
    fi
    grep -E '^Done' "$log"
    rm -f "$log"
  done
else
  step "fuzz run skipped: FUZZ_SECONDS=0"
fi

printf '\nall checks passed in %ss\n' "$(( $(date +%s) - start ))"
