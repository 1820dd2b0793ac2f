#!/usr/bin/env bash
# Build the board firmware for the RP2040 (thumbv6m-none-eabi, release) and a UF2 file to drag
# onto the board's BOOTSEL drive. The cargo target dir is cached outside the work tree.
#
#   scripts/firmware.sh                      # board hearth-bm1370-r1
#   HEARTH_BOARD=<id> scripts/firmware.sh    # another boards/<id>.toml
#
# Prints the ELF path on stdout; the UF2 and ELF are copied to target/firmware/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
board="${HEARTH_BOARD:-hearth-bm1370-r1}"
log() { echo "[firmware] $*" >&2; }

rustup target add thumbv6m-none-eabi >/dev/null 2>&1
if ! command -v elf2uf2-rs >/dev/null; then
  log "installing elf2uf2-rs (UF2 converter, crates.io, ~30 s once)"
  cargo install --locked --quiet elf2uf2-rs --no-default-features >&2
fi
export CARGO_TARGET_DIR="${HEARTH_CACHE:-$HOME/.cache/hearth}/target-rp2040"
log "building for board $board (first build about 2 minutes)"
(cd firmware/rp2040 && HEARTH_BOARD="$board" cargo build --release --locked --quiet >&2)
elf="$CARGO_TARGET_DIR/thumbv6m-none-eabi/release/hearth-rp2040"
out="$root/target/firmware"
mkdir -p "$out"
cp "$elf" "$out/$board.elf"
elf2uf2-rs "$elf" "$out/$board.uf2" >&2
# Sizes: flash = everything loaded into XIP flash; RAM = .data + .bss (the stack is the rest).
flash=0; ram=0
while read -r name size; do
  case "$name" in
    .boot2|.vector_table|.text|.rodata) flash=$((flash + 16#$size)) ;;
    .data) flash=$((flash + 16#$size)); ram=$((ram + 16#$size)) ;;
    .bss|.uninit) ram=$((ram + 16#$size)) ;;
  esac
done < <(readelf -SW "$elf" | sed -n 's/^ *\[ *[0-9]*\] *\([^ ]*\) *[A-Z_]* *[0-9a-f]* *[0-9a-f]* *\([0-9a-f]*\) .*/\1 \2/p')
log "flash $((flash / 1024)) KiB ($flash bytes) of 2048 KiB, static RAM $((ram / 1024)) KiB ($ram bytes) of 264 KiB"
log "UF2 for the BOOTSEL drive: $out/$board.uf2"
echo "$out/$board.elf"
