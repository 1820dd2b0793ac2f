#!/usr/bin/env bash
# Every check CI runs, from a clean checkout: formatting, lints, all tests (including the ones
# against a real bitcoind, built once and cached by scripts/bitcoind.sh), the no_std crates built
# for the RP2040's thumbv6m-none-eabi target, and a short fuzz run of the chip-response decoder.
#
#   scripts/test.sh            # everything
#   FUZZ_SECONDS=0 scripts/test.sh   # skip the fuzz smoke run (it is reported, not hidden)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
start=$(date +%s)

step "toolchain: rustfmt, clippy, thumbv6m-none-eabi"
rustup component add rustfmt clippy >/dev/null 2>&1 || true
rustup target add thumbv6m-none-eabi >/dev/null

step "Debian packages for the tests: socat (serial-port tests over a PTY)"
if ! command -v socat >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends socat >/dev/null
fi

step "bitcoind for the regtest tests (built once per machine, cached in ~/.cache/hearth)"
HEARTH_BITCOIND="$(scripts/bitcoind.sh)"
export HEARTH_BITCOIND
echo "$HEARTH_BITCOIND"

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test (workspace)"
cargo test --workspace --locked

step "no_std crates for thumbv6m-none-eabi"
cargo build --locked -p bm13xx --target thumbv6m-none-eabi
cargo build --locked -p bm13xx --target thumbv6m-none-eabi --features verify

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
if [[ "$FUZZ_SECONDS" -gt 0 ]]; then
  step "fuzz the chip-response decoder for ${FUZZ_SECONDS}s"
  command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz
  # cargo-fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
  log="$(mktemp)"
  if ! (cd firmware/bm13xx/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run response_decoder -- \
        -max_total_time="$FUZZ_SECONDS" >"$log" 2>&1); then
    tail -40 "$log" >&2
    echo "fuzzing failed; any crash input is in firmware/bm13xx/fuzz/artifacts/response_decoder/" >&2
    exit 1
  fi
  grep -E '^Done' "$log"
  rm -f "$log"
else
  step "fuzz run skipped: FUZZ_SECONDS=0"
fi

printf '\nall checks passed in %ss\n' "$(( $(date +%s) - start ))"
