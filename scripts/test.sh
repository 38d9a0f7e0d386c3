#!/usr/bin/env bash
# The test command: installs the system tools the tests need (scripts/setup.sh), then runs every
# test in the workspace, `cargo test --workspace --no-fail-fast`, and ends with the total over all
# test binaries. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The harness opens a few thousand sockets at once: use the hard limit for open files.
ulimit -n "$(ulimit -Hn)"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# Each test binary prints "test result: ok. N passed; N failed; N ignored; ...": add them up.
awk '/^test result:/ { passed += $4; failed += $6; ignored += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$log"
exit "$status"
