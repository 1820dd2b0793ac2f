#!/usr/bin/env bash
# The main job. With a hearth.toml in the repository root (or HEARTH_CONFIG), mine with it.
# Without one, run the demo: a throwaway regtest bitcoind (built once and cached by
# scripts/bitcoind.sh) and an emulated 4-chip BM1370 board mining real regtest blocks.
#
#   scripts/run.sh                 # demo, 20 blocks
#   scripts/run.sh --blocks 0      # demo until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."
config="${HEARTH_CONFIG:-hearth.toml}"
if [[ -f "$config" ]]; then
  exec cargo run --release --locked -q -p hearth -- mine --config "$config"
fi
HEARTH_BITCOIND="$(scripts/bitcoind.sh)"
export HEARTH_BITCOIND
exec cargo run --release --locked -q -p hearth -- demo "$@"
