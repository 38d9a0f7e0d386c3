#!/usr/bin/env bash
# A thin wrapper over the strace stepper (crates/netlab-trace): builds it in release if needed and
# runs it. Everything after the script's name goes to `trace`:
#
#   scripts/trace.sh epoll-et                  # interactive on a terminal: Enter runs the next step
#   scripts/trace.sh epoll-et --all            # every step, no pauses
#   scripts/trace.sh poll epoll-et             # the same steps for two models
#   scripts/trace.sh --list                    # models and scenarios
#
# The old names still work (`scripts/trace.sh echo-poll`: the stepper drops the `echo-`).
# $NETLAB_BIN_DIR, if set, names a folder of ready server binaries (passed as --bin-dir).
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
if [ -n "${NETLAB_BIN_DIR:-}" ]; then
  args+=(--bin-dir "$NETLAB_BIN_DIR")
fi
exec cargo run --release --quiet --bin trace -- "${args[@]}"
