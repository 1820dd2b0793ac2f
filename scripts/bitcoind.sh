#!/usr/bin/env bash
# Build Bitcoin Core's bitcoind + bitcoin-cli once per machine and cache it outside the work tree.
#
# Source: the crates.io package libbitcoinkernel-sys 0.4.1 ships the Bitcoin Core tree (v31.99)
# under bitcoin/. Flags follow docs/design.md (no wallet, no ZMQ, daemon + cli only).
# Prints the path of the cached bitcoind on stdout; progress goes to stderr.
set -euo pipefail

CACHE="${HEARTH_CACHE:-$HOME/.cache/hearth}"
VERSION=0.4.1
PREFIX="$CACHE/bitcoind-kernel-sys-$VERSION"
BIN="$PREFIX/bin/bitcoind"

if [[ -x "$BIN" && -x "$PREFIX/bin/bitcoin-cli" ]]; then
  echo "$BIN"
  exit 0
fi

log() { echo "[bitcoind] $*" >&2; }

need_pkgs=()
command -v cmake >/dev/null || need_pkgs+=(cmake)
command -v pkg-config >/dev/null || need_pkgs+=(pkg-config)
dpkg -s libboost-dev >/dev/null 2>&1 || need_pkgs+=(libboost-dev)
dpkg -s libevent-dev >/dev/null 2>&1 || need_pkgs+=(libevent-dev)
command -v g++ >/dev/null || need_pkgs+=(g++)
if ((${#need_pkgs[@]})); then
  log "installing Debian packages: ${need_pkgs[*]}"
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  # apt's own output only when it fails (stdout carries the binary's path).
  aptlog="$(mktemp)"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      --no-install-recommends "${need_pkgs[@]}"; } >"$aptlog" 2>&1; then
    tail -30 "$aptlog" >&2
    log "apt-get could not install ${need_pkgs[*]}"
    exit 1
  fi
  rm -f "$aptlog"
fi

WORK="$CACHE/build-bitcoind-$VERSION"
mkdir -p "$WORK"
if [[ ! -d "$WORK/src/bitcoin" ]]; then
  log "downloading libbitcoinkernel-sys $VERSION from crates.io"
  curl -fsSL --retry 3 -o "$WORK/crate.tar.gz" \
    "https://static.crates.io/crates/libbitcoinkernel-sys/libbitcoinkernel-sys-$VERSION.crate"
  rm -rf "$WORK/src" && mkdir -p "$WORK/src"
  tar -xzf "$WORK/crate.tar.gz" -C "$WORK/src" --strip-components=1
fi

log "configuring (CMake)"
cmake -S "$WORK/src/bitcoin" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$PREFIX" \
  -DENABLE_WALLET=OFF -DWITH_ZMQ=OFF -DWITH_EMBEDDED_ASMAP=OFF -DBUILD_GUI=OFF -DENABLE_IPC=OFF \
  -DBUILD_TESTS=OFF -DBUILD_BENCH=OFF -DBUILD_TX=OFF -DBUILD_UTIL=OFF -DBUILD_WALLET_TOOL=OFF \
  -DBUILD_KERNEL_LIB=OFF -DBUILD_FUZZ_BINARY=OFF -DBUILD_DAEMON=ON -DBUILD_CLI=ON >"$WORK/configure.log" 2>&1 \
  || { log "CMake configure failed; see $WORK/configure.log"; tail -30 "$WORK/configure.log" >&2; exit 1; }

log "building bitcoind (about 13 minutes on 2 cores, once per machine; log: $WORK/build.log)"
JOBS="$(nproc)"

# One line for the build's last step ("[ 45%] Building CXX object ..." from make, "[312/690]
# ..." from ninja): percent done, minutes so far, minutes left at the rate so far, the file.
progress() { # <build log> <seconds so far>
  local line pct step left=""
  line=$(grep -aE '^\[ *[0-9]+(%|/[0-9]+)\]' "$1" | tail -1 || true)
  if [[ $line =~ ^\[\ *([0-9]+)%\] ]]; then
    pct=${BASH_REMATCH[1]}
  elif [[ $line =~ ^\[([0-9]+)/([0-9]+)\] ]]; then
    pct=$(( BASH_REMATCH[1] * 100 / BASH_REMATCH[2] ))
  fi
  pct=${pct:-0}
  ((pct > 0 && pct < 100)) && left=", about $(( ($2 * (100 - pct) / pct + 59) / 60 )) min left"
  step=$(sed -E 's/^\[[^]]*\] //; s/^Building CXX object //; s#CMakeFiles/[^/]*\.dir/##; s/\.o$//' <<<"$line")
  echo "building: ${pct}% after $(( $2 / 60 )) min${left}${step:+ ($step)}"
}

( cmake --build "$WORK/build" -j "$JOBS" --target bitcoind bitcoin-cli >"$WORK/build.log" 2>&1 ) &
pid=$!
start=$(date +%s)
last=$start
# Checked every 2 s (a quick rebuild is not held up), said once a minute.
while kill -0 "$pid" 2>/dev/null; do
  sleep 2
  now=$(date +%s)
  ((now - last >= 60)) || continue
  last=$now
  log "$(progress "$WORK/build.log" $((now - start)))"
done
wait "$pid" || { log "build failed; see $WORK/build.log"; tail -40 "$WORK/build.log" >&2; exit 1; }

mkdir -p "$PREFIX/bin"
install -m 0755 "$WORK/build/bin/bitcoind" "$WORK/build/bin/bitcoin-cli" "$PREFIX/bin/"
log "cached at $PREFIX/bin ($(( $(date +%s) - start ))s)"
rm -rf "$WORK/build"
echo "$BIN"
