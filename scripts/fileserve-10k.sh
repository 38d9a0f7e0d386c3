#!/usr/bin/env bash
# fileserve with 10,000 keep-alive connections, two ways, under the bench lock:
#
# 1. the ignored test `ten_thousand_keep_alive_connections` (tests/fileserve.rs): 10,000
#    connections each make a request and stay open, 100 of them keep asking for 2 s, then each
#    asks once more; every answer is checked, and it prints the server's RSS per connection;
# 2. `loadgen http` with 10,000 connections in an open loop (RATE requests/s in total, so
#    most connections are idle at any moment), with the server's cost and peak RSS.
#
#   scripts/fileserve-10k.sh                  # RATE=5000 DURATION=5s
#
# Needs RLIMIT_NOFILE above 10,000 for the client (fileserve raises its own to the hard limit).
# The server it starts is stopped by pid when it exits; the temporary root is removed.
set -euo pipefail

RATE=${RATE:-5000}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-10000}
cd "$(dirname "$0")/.."

ulimit -n "$(ulimit -Hn)"
if (($(ulimit -n) <= CONNECTIONS + 100)); then
    echo "fileserve-10k: the open files limit ($(ulimit -n)) is too low for $CONNECTIONS connections" >&2
    exit 1
fi
cargo build --release --bin fileserve --bin loadgen
cargo test --release --test fileserve --no-run
target=${CARGO_TARGET_DIR:-target}/release

root=$(mktemp -d)
server_pid=
cleanup() {
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
    rm -rf "$root"
}
trap cleanup EXIT
head -c 4096 /dev/urandom >"$root/4k.bin"

exec 9>/tmp/netlab-bench.lock
flock 9

echo "== the test (release): 10,000 connections, 100 busy, every one checked"
if ! cargo test --release --test fileserve ten_thousand_keep_alive_connections -- --ignored \
    --nocapture >"$root/test.out" 2>&1; then
    grep -v '^ *[0-9]*: \|^ *at ' "$root/test.out" >&2
    exit 1
fi
grep -E 'connections opened|test result' "$root/test.out"

echo "== loadgen http: $CONNECTIONS connections, open loop at $RATE requests/s, $DURATION"
"$target/fileserve" --root "$root" --addr 127.0.0.1:0 --keepalive-timeout 120s \
    >"$root/server.out" 2>/dev/null &
server_pid=$!
for _ in $(seq 50); do
    grep -q '^listening on' "$root/server.out" && break
    sleep 0.1
done
addr=$(awk '/^listening on/ {print $3}' "$root/server.out")
idle_rss=$(awk '/^VmRSS/ {print $2}' "/proc/$server_pid/status")
"$target/loadgen" http "http://$addr/4k.bin" -c "$CONNECTIONS" -R "$RATE" -d "$DURATION" \
    --connect-rate 5000 --server-pid "$server_pid"
kill "$server_pid"
wait "$server_pid" || true
server_pid=
grep '^stopped' "$root/server.out"
echo "server RSS before the connections: $idle_rss KiB (compare the peak RSS above)"
