#!/usr/bin/env bash
# Checks that building one workspace member resolves every dependency with the same features as
# building the whole workspace (issue 12). When they differ, `cargo build --release` and the
# `cargo build --release --bins -p netlab` that `loadgen compare` runs each link their own variant
# of target/release/echo-*, replacing the other's on every alternation. It reads `cargo tree`
# only (no build, well under a second per member) and prints every disagreement.
#
# usage: scripts/check-features.sh        exit 0 when every member agrees with the workspace
set -euo pipefail
cd "$(dirname "$0")/.."

# "name version enabled,features" for every package in the graph (normal and build edges: what
# `cargo build` compiles; dev edges only matter to `cargo test`).
features() {
    cargo tree --offline -e normal,build,features --prefix none -f '{p}|{f}' "$@" 2>/dev/null |
        grep -v ' feature "' | grep '|' | sed -e 's/ (\*)$//' -e 's/ ([^)]*)//' | sort -u
}

workspace=$(features --workspace)
members=$(cargo metadata --offline --no-deps --format-version 1 |
    python3 -c 'import json,sys; print("\n".join(p["name"] for p in json.load(sys.stdin)["packages"]))')
status=0
for member in $members; do
    # A package present in both graphs must have the same features in both.
    disagree=$(join -t '|' <(features -p "$member") <(echo "$workspace") |
        awk -F'|' '$2 != $3 { printf "  %s: alone [%s], in the workspace [%s]\n", $1, $2, $3 }')
    if [ -n "$disagree" ]; then
        echo "check-features: building $member alone resolves differently from the workspace:"
        echo "$disagree"
        status=1
    fi
done
if [ "$status" -eq 0 ]; then
    echo "check-features: every member resolves its dependencies as the workspace does ($(echo "$members" | wc -w) members)"
fi
exit "$status"
