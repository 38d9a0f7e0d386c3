#!/usr/bin/env bash
# Server CPU per message of echo-uring and echo-epoll-lt against a minimal C epoll echo
# (benches/c/epoll_echo.c), in interleaved rounds, and the ratios of the medians: the figures
# issue 14 asks for. Each run: the server pinned to core 1, `loadgen` to core 0, 512-byte
# messages, one in flight per connection, the server's CPU from /proc (loadgen --server-pid).
#
#   benches/uring-vs-c.sh                    # 3 rounds of 5 s at 1000 connections
#   benches/uring-vs-c.sh 5 5s 50            # ROUNDS DURATION CONNECTIONS
#   EXTRA=--syscalls benches/uring-vs-c.sh   # extra loadgen flags (counting costs CPU itself)
#
# Takes /tmp/netlab-bench.lock for the whole measurement, so runs never overlap. Servers listen
# on port 0 (any free port) and are stopped by pid; the C binary is built in a temporary folder
# that is removed at exit. Needs cc and 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
duration=${2:-5s}
connections=${3:-1000}
case $rounds in '' | *[!0-9]* | 0) echo "uring-vs-c.sh: ROUNDS must be a positive number" >&2; exit 2 ;; esac

cargo build --release --quiet --bin echo-uring --bin echo-epoll-lt --bin loadgen
work=$(mktemp -d)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -Wall -o "$work/c-epoll" benches/c/epoll_echo.c

exec 9>/tmp/netlab-bench.lock
flock 9

bin=target/release
servers=("c-epoll:$work/c-epoll 0" "epoll-lt:$bin/echo-epoll-lt --addr 127.0.0.1:0" "uring:$bin/echo-uring --addr 127.0.0.1:0")
echo "round,server,msgs_per_s,server_us_per_msg,server_rss_kib_per_conn,syscalls_per_msg" >"$work/runs.csv"
for round in $(seq 1 "$rounds"); do
    for spec in "${servers[@]}"; do
        name=${spec%%:*}
        # shellcheck disable=SC2086 # the command line is split on purpose
        taskset -c 1 ${spec#*:} >"$work/server.out" 2>/dev/null &
        server_pid=$!
        for _ in $(seq 200); do grep -q '^listening on' "$work/server.out" && break; sleep 0.05; done
        read -r _ _ addr _ <"$work/server.out"
        # shellcheck disable=SC2086
        taskset -c 0 "$bin/loadgen" "$addr" -c "$connections" -d "$duration" --server-pid "$server_pid" \
            --format csv ${EXTRA:-} >"$work/run.csv" 2>/dev/null || true
        kill "$server_pid"
        wait "$server_pid" 2>/dev/null || true
        server_pid=
        # Columns by name from loadgen's CSV header.
        awk -F, -v round="$round" -v name="$name" '
            NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
            { printf "%s,%s,%.0f,%.3f,%s,%s\n", round, name, $col["msgs_per_s"],
                $col["server_cpu_us_per_msg"], $col["server_rss_kib_per_conn"], $col["syscalls_per_msg"] }
        ' "$work/run.csv" | tee -a "$work/runs.csv"
    done
done

echo
echo "medians over $rounds rounds, $connections connections, $duration each (server us/msg; ratio to c-epoll):"
python3 - "$work/runs.csv" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cpu = {}
for r in rows:
    if r["server_us_per_msg"] not in ("", "nan"):
        cpu.setdefault(r["server"], []).append(float(r["server_us_per_msg"]))
if "c-epoll" not in cpu:
    sys.exit("uring-vs-c.sh: no C figure came out; nothing to compare")
base = statistics.median(cpu["c-epoll"])
for name, values in cpu.items():
    m = statistics.median(values)
    print(f"  {name:<9} {m:6.2f} us/msg   {m / base:5.2f}x   (runs: {', '.join(f'{v:.2f}' for v in values)})")
EOF
