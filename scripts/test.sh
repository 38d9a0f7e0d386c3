#!/usr/bin/env bash
# The test command: installs the system tools the tests need (scripts/setup.sh), then runs every
# test in the workspace: `cargo test --workspace`. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The harness opens a few thousand sockets at once: use the hard limit for open files.
ulimit -n "$(ulimit -Hn)"
exec cargo test --workspace "$@"
