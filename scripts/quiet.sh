# Sourced by the set-up scripts (test.sh, package.sh): one line per step, not the package
# manager's or cargo's progress.
#
# quiet <command...>: runs the command with its output kept aside; when it fails, shows the last
# 40 lines of it and "<script>: failed: <command>" on stderr, and exits with status 1.
quiet() {
  local log
  log="$(mktemp)"
  if ! "$@" >"$log" 2>&1; then
    tail -40 "$log" >&2
    rm -f "$log"
    printf '%s: failed: %s\n' "${0##*/}" "$*" >&2
    exit 1
  fi
  rm -f "$log"
}
