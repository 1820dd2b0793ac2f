#!/usr/bin/env bash
# Debian packages of the hearth daemon, for amd64 and for arm64 (Raspberry Pi 4/5), built with
# cargo-deb; then checked: the binary's architecture, the unit, the conffile and the maintainer
# scripts in each, `systemd-analyze verify` (and its security score) on the unit, and the amd64
# binary run from the unpacked package against the packaged configuration. Nothing is
# installed system-wide except the build tools.
#
#   scripts/package.sh            # both; the .debs land in target/debian/
#   ARCHES=amd64 scripts/package.sh
#
# The arm64 build uses Debian's cross toolchain (gcc-aarch64-linux-gnu as the linker). Release
# builds go to target dirs under ${HEARTH_CACHE:-~/.cache/hearth}, so that a later run (CI) only
# rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

cache="${HEARTH_CACHE:-$HOME/.cache/hearth}"
# The workspace's release profile keeps line tables for profiling; cargo-deb strips them from
# the package anyway, and not generating them makes the two release builds faster.
export CARGO_PROFILE_RELEASE_DEBUG=false
out="$(pwd)/target/debian"
arches="${ARCHES:-amd64 arm64}"
mkdir -p "$cache" "$out"

say() { printf '%s\n' "$*" >&2; }
die() { say "package.sh: $*"; exit 1; }
# quiet <command...>: a step's output only when it fails.
source scripts/quiet.sh

# Build tools. `file` and systemd-analyze may be missing on a minimal Debian.
missing=()
command -v file >/dev/null || missing+=(file)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [[ " $arches " == *" arm64 "* ]]; then
  command -v aarch64-linux-gnu-gcc >/dev/null || missing+=(gcc-aarch64-linux-gnu)
  [[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ]] || missing+=(libc6-dev-arm64-cross)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  quiet $SUDO apt-get update -qq
  quiet env DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo-deb >/dev/null; then
  say "installing cargo-deb (cargo install --locked, once per machine)"
  quiet cargo install --locked cargo-deb
fi

# deb <arch>: build one package and print its path.
deb() {
  local arch="$1" t0 deb_file
  t0=$(date +%s)
  local args=(-p hearth --locked --output "$out")
  case "$arch" in
    amd64) export CARGO_TARGET_DIR="$cache/target-release" ;;
    arm64)
      export CARGO_TARGET_DIR="$cache/target-aarch64"
      quiet rustup target add aarch64-unknown-linux-gnu
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
      args+=(--target aarch64-unknown-linux-gnu)
      ;;
    *) die "unknown architecture $arch" ;;
  esac
  say "building the $arch package (release, target dir $CARGO_TARGET_DIR)"
  local log
  log="$(mktemp)"
  if ! cargo deb "${args[@]}" >"$log" 2>&1; then
    tail -40 "$log" >&2
    die "cargo deb for $arch failed"
  fi
  # cargo-deb prints the path of the package it wrote as its last line.
  deb_file="$(grep -E '\.deb$' "$log" | tail -1)"
  rm -f "$log"
  [[ -f "$deb_file" ]] || die "cargo deb for $arch wrote no package"
  say "  $(basename "$deb_file"): $(du -k "$deb_file" | cut -f1) KiB in $(( $(date +%s) - t0 ))s"
  printf '%s\n' "$deb_file"
}

# check <arch> <deb>: what is inside, and that it is what the package says it is.
check() {
  local arch="$1" deb_file="$2" dir info contents
  dir="$(mktemp -d)"
  trap 'rm -rf "$dir"' RETURN
  info="$(dpkg-deb --info "$deb_file")"
  contents="$(dpkg-deb --contents "$deb_file")"
  grep -q "Architecture: $arch\$" <<<"$info" || die "$deb_file: not Architecture: $arch"
  grep -q "Depends:.*adduser" <<<"$info" || die "$deb_file: does not depend on adduser"
  for f in ./usr/bin/hearth ./etc/hearth/hearth.toml ./usr/share/doc/hearth/README.md \
    ./usr/share/doc/hearth/examples/hearth.example.toml; do
    grep -q " $f\$" <<<"$contents" || die "$deb_file: $f is missing"
  done
  grep -qE ' \./(usr/)?lib/systemd/system/hearth\.service$' <<<"$contents" \
    || die "$deb_file: hearth.service is missing"
  dpkg-deb -x "$deb_file" "$dir/root"
  dpkg-deb -e "$deb_file" "$dir/control"
  grep -qx /etc/hearth/hearth.toml "$dir/control/conffiles" || die "$deb_file: the configuration is not a conffile"
  for s in postinst postrm; do
    [[ -x "$dir/control/$s" ]] || die "$deb_file: no $s"
    sh -n "$dir/control/$s" || die "$deb_file: $s does not parse"
  done
  grep -q 'adduser --system --group' "$dir/control/postinst" || die "$deb_file: postinst creates no user"
  local want
  case "$arch" in amd64) want='ELF 64-bit LSB .*x86-64' ;; arm64) want='ELF 64-bit LSB .*ARM aarch64' ;; esac
  local what
  what="$(file -b "$dir/root/usr/bin/hearth")"
  grep -qE "$want" <<<"$what" || die "$deb_file: usr/bin/hearth is $what"
  say "  $arch: ${what%%, BuildID*}"
  say "  $arch: $(grep -c . <<<"$contents") entries: binary, unit, conffile, docs; postinst, postrm"

  local unit
  unit="$(find "$dir/root" -name hearth.service -path '*systemd/system*' | head -1)"
  if [[ "$arch" == amd64 ]]; then
    # Run the packaged binary from the unpacked tree.
    local bin="$dir/root/usr/bin/hearth"
    "$bin" --version >/dev/null || die "hearth --version failed"
    local help
    help="$("$bin" --help)" || die "hearth --help failed"
    grep -q -- '--log-format' <<<"$help" || die "hearth --help does not list --log-format"
    # The packaged configuration is valid for this binary once an address is filled in.
    sed 's/^address = "bc1q\.\.\."/address = "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq"/' \
      "$dir/root/etc/hearth/hearth.toml" >"$dir/hearth.toml"
    "$bin" config check --offline --config "$dir/hearth.toml" >/dev/null \
      || die "the packaged configuration does not validate"
    say "  amd64: $("$bin" --version); the packaged configuration validates (offline)"

    # systemd-analyze checks that ExecStart= is executable: point it at the unpacked binary.
    mkdir "$dir/unit"
    sed "s|/usr/bin/hearth|$bin|" "$unit" >"$dir/unit/hearth.service"
    local v
    if ! v="$(systemd-analyze verify "$dir/unit/hearth.service" 2>&1)" || [[ -n "$v" ]]; then
      say "$v"
      die "systemd-analyze verify: hearth.service has problems"
    fi
    say "  systemd-analyze verify hearth.service: clean"
    local score
    if score="$(systemd-analyze security --offline=true "$dir/unit/hearth.service" 2>/dev/null \
      | grep -o 'Overall exposure level.*')"; then
      say "  systemd-analyze security: $score"
    else
      say "  systemd-analyze security: not available here"
    fi
  fi
}

for arch in $arches; do
  deb_file="$(deb "$arch")"
  check "$arch" "$deb_file"
done
say "packages in $out"
