#!/usr/bin/env bash
# Runs netlab-http's property tests (crates/netlab-http/tests/fuzz*) in release mode with
# enough cases for TOTAL in all (default 1,000,000), then prints how many each property ran
# and what was found. `cargo test` runs the same properties with 256 cases each.
#
#   scripts/fuzz-http.sh            # a million cases
#   scripts/fuzz-http.sh 50000      # a quick look
#
# A failure is saved by proptest in crates/netlab-http/tests/fuzz/*.proptest-regressions and
# replayed first on every later run (commit that file with the fix and a unit test).
set -euo pipefail

usage() { sed -n '2,10s/^# \{0,1\}//p' "$0"; }
case "${1:-}" in
-h | --help) usage; exit 0 ;;
esac
total="${1:-1000000}"
if ! [[ "$total" =~ ^[1-9][0-9]*$ ]]; then
    echo "fuzz-http.sh: TOTAL must be a positive whole number, not '$total'" >&2
    exit 2
fi

cd "$(dirname "$0")/.."
test_args=(--release -p netlab-http --test fuzz)
cargo test "${test_args[@]}" --no-run 2>&1 | tail -1
properties=$(cargo test -q "${test_args[@]}" -- --list 2>/dev/null | grep -c ': test$')
per_property=$(((total + properties - 1) / properties))
echo "fuzz-http: $properties properties x $per_property cases (PROPTEST_CASES), release"

log=$(mktemp /tmp/fuzz-http.XXXXXX.log)
start=$(date +%s)
status=0
PROPTEST_CASES=$per_property cargo test -q "${test_args[@]}" -- --nocapture >"$log" 2>&1 || status=$?
elapsed=$(($(date +%s) - start))

# `cargo test -q` prints its progress dots on the same line, so the counts are cut out.
counts=$(grep -o 'fuzz: .*: [0-9]* cases.*' "$log" || true)
[[ -n "$counts" ]] && sed 's/^fuzz: /  /' <<<"$counts"
ran=$(sed -n 's/^fuzz: .*: \([0-9][0-9]*\) cases.*/\1/p' <<<"$counts" | awk '{ n += $1 } END { print n + 0 }')
passed=$(grep -c . <<<"$counts" || true)
echo "fuzz-http: ${ran:-0} cases ran in ${elapsed} s; $passed of $properties properties passed"

if [[ $status -ne 0 ]]; then
    echo "fuzz-http: FOUND a failure (full output: $log):"
    grep -E -A4 "panicked at|Test failed|minimal failing input" "$log" | head -60
    git status --short -- 'crates/netlab-http/tests/fuzz/*.proptest-regressions'
    exit 1
fi
echo "fuzz-http: found nothing new (saved regression cases replayed first, all pass)"
rm -f "$log"
