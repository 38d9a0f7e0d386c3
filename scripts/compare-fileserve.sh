#!/usr/bin/env bash
# Serves the same files from `fileserve --mode sendfile`, `fileserve --mode copy` and nginx
# (sendfile on), loads each with `loadgen http` (keep-alive GET, 8 connections), and prints one
# table: requests/s, GB/s, server CPU per GiB served (user + system), and the ratios against
# nginx. Servers run on core SERVER_CORE, the load generator on CLIENT_CORE (taskset).
#
#   scripts/compare-fileserve.sh                 # 3 rounds x 5 s per server and file size
#   ROUNDS=1 DURATION=3s scripts/compare-fileserve.sh
#
# Files: one 1 GiB file, and 16 files of 1 MiB (loadgen takes one URL, so each run fetches
# one of them: round r fetches m<(r-1) mod 16>.bin). All are read once first, so every server is served
# from the page cache. Servers are measured in a rotating order each round, and the table shows
# the median of the rounds: on a shared 2-core machine single runs are noisy.
#
# On loopback the client is often the bottleneck (it copies every byte out of its socket), so
# GB/s may be the client's limit; CPU per GiB is the figure that tells the server modes apart.
#
# Needs: cargo, taskset (util-linux), nginx and jq (scripts/setup.sh --bench installs them when
# missing; root or sudo).
# Everything it starts (two fileserve processes, one nginx) is killed by pid when it exits.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNECTIONS=${CONNECTIONS:-8}
SERVER_CORE=${SERVER_CORE:-1}
CLIENT_CORE=${CLIENT_CORE:-0}
NGINX_PORT=${NGINX_PORT:-} # empty: the first free port from 18080 on (nginx cannot report a port 0)
# Servers and clients run at this nice level (when allowed: root), so compiles and tests of
# other processes on the same cores take less of their time. All three servers get the same.
NICE=${NICE:--10}

cd "$(dirname "$0")/.."
BIN="${CARGO_TARGET_DIR:-target}/release"

say() { echo "compare-fileserve: $*" >&2; }

PRIO=()
if nice -n "$NICE" true 2>/dev/null; then PRIO=(nice -n "$NICE"); fi

# nginx and jq from the distribution's packages, when missing. A failed install of an optional
# tool (perf, tcpdump) is no reason to stop; a missing nginx or jq is.
scripts/setup.sh --bench || say "scripts/setup.sh --bench failed; going on with what is installed"
for tool in nginx jq taskset; do
    command -v "$tool" >/dev/null || { say "needs $tool (scripts/setup.sh --bench installs nginx and jq; taskset is util-linux)"; exit 1; }
done

say "building fileserve and loadgen (release)"
cargo build --release -q -p netlab --bin fileserve
cargo build --release -q -p netlab-loadgen --bin loadgen

TMP=$(mktemp -d /tmp/compare-fileserve.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
chmod 755 "$TMP" # nginx's worker runs as nobody and must read the files

ROOT="$TMP/root"
mkdir -p "$ROOT" "$TMP/nginx"
say "writing the files (1 GiB + 16 x 1 MiB of random bytes) in $ROOT"
head -c 1G /dev/urandom >"$ROOT/big.bin"
for i in $(seq 0 15); do head -c 1M /dev/urandom >"$ROOT/m$i.bin"; done
chmod -R a+rX "$ROOT"
cat "$ROOT"/*.bin >/dev/null # into the page cache

# --- the servers ------------------------------------------------------------------------
# Starts fileserve in a mode; sets ADDR and PID from its "listening on ... pid=N" line.
start_fileserve() {
    local mode=$1 out="$TMP/fileserve-$1.out"
    "${PRIO[@]}" taskset -c "$SERVER_CORE" "$BIN/fileserve" --root "$ROOT" --addr 127.0.0.1:0 --mode "$mode" \
        >"$out" 2>/dev/null &
    PIDS+=($!)
    for _ in $(seq 50); do
        grep -q '^listening on' "$out" && break
        sleep 0.1
    done
    ADDR=$(awk '/^listening on/ {print $3}' "$out")
    PID=$(awk '/^listening on/ {sub("pid=", "", $4); print $4}' "$out")
    [ -n "$ADDR" ] || { say "fileserve --mode $mode did not start"; exit 1; }
}

declare -A URL_BASE SERVER_PID
start_fileserve sendfile
URL_BASE[sendfile]="http://$ADDR"
SERVER_PID[sendfile]=$PID
start_fileserve copy
URL_BASE[copy]="http://$ADDR"
SERVER_PID[copy]=$PID

if [ -z "$NGINX_PORT" ]; then
    for port in $(seq 18080 18179); do
        ss -Htln "sport = :$port" | grep -q . || { NGINX_PORT=$port; break; }
    done
    [ -n "$NGINX_PORT" ] || { say "no free port in 18080-18179 for nginx; set NGINX_PORT"; exit 1; }
fi

# nginx, configured here: loopback only, sendfile on, no access log, one worker, everything
# it writes inside $TMP, in the foreground (daemon off) so this script owns its pid.
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $ROOT;
    }
}
EOF
"${PRIO[@]}" taskset -c "$SERVER_CORE" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" 2>"$TMP/nginx/stderr" &
NGINX_MASTER=$!
PIDS+=("$NGINX_MASTER")
WORKER=""
for _ in $(seq 50); do
    WORKER=$(pgrep -P "$NGINX_MASTER" | head -1 || true)
    [ -n "$WORKER" ] && curl -s -o /dev/null "http://127.0.0.1:$NGINX_PORT/m0.bin" && break
    sleep 0.1
done
[ -n "$WORKER" ] || { say "nginx did not start:"; cat "$TMP/nginx/stderr" "$TMP/nginx/error.log" >&2; exit 1; }
URL_BASE[nginx]="http://127.0.0.1:$NGINX_PORT"
SERVER_PID[nginx]=$WORKER # the worker serves; the master only waits

say "nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') on 127.0.0.1:$NGINX_PORT, worker pid $WORKER; fileserve sendfile pid ${SERVER_PID[sendfile]}, copy pid ${SERVER_PID[copy]}"
say "servers on core $SERVER_CORE, clients on core $CLIENT_CORE, ${PRIO[*]:-default priority}; $ROUNDS rounds x $DURATION per server and size"

# --- the runs ---------------------------------------------------------------------------
RESULTS="$TMP/results.tsv" # server size round req/s GB/s cpu_ms/GiB user_ms/GiB sys_ms/GiB server_busy client_busy errors
: >"$RESULTS"

# loadgen http, $CONNECTIONS keep-alive connections for $DURATION after $WARMUP; it counts body
# bytes as they arrive inside its window (so a 1 GiB reply that spans the window's edges counts
# what arrived) and reads the server's CPU (schedstat, split user/system by the tick ratio).
# Prints one row of $RESULTS; a run that produced no report is a row with an error and no figures.
run_loadgen() { # server url size round
    local json="$TMP/run.json"
    "${PRIO[@]}" taskset -c "$CLIENT_CORE" "$BIN/loadgen" http "$2" -c "$CONNECTIONS" -d "$DURATION" \
        --warmup "$WARMUP" --server-pid "${SERVER_PID[$1]}" --format json >"$json" || true
    # cpu_user_s / cpu_system_s are null when no clock tick fell in the window to split by.
    jq -r --arg s "$1" --arg z "$3" --arg r "$4" '.[0] as $x
        | ($x.mb_per_s * 1e6 * $x.window_s / 1073741824) as $gib
        | [$s, $z, $r, $x.msgs_per_s, $x.mb_per_s / 1000, $x.server.cpu_ms_per_gib,
           ($x.server.cpu_user_s | if . == null then "nan" else . * 1e3 / $gib end),
           ($x.server.cpu_system_s | if . == null then "nan" else . * 1e3 / $gib end),
           $x.server.cpu_busy, $x.client.busiest_thread, ([$x.errors[]] | add)] | @tsv' "$json" 2>/dev/null ||
        printf '%s\t%s\t%s\tnan\tnan\tnan\tnan\tnan\tnan\tnan\t1\n' "$1" "$3" "$4"
}

SERVERS=(sendfile copy nginx)
for round in $(seq 1 "$ROUNDS"); do
    for size in 1GiB 1MiB; do
        # Rotate the order so no server always runs first (or right after the heaviest one).
        for k in 0 1 2; do
            server=${SERVERS[$(((k + round - 1) % 3))]}
            if [ "$size" = 1GiB ]; then file=big.bin; else file=m$(((round - 1) % 16)).bin; fi
            run_loadgen "$server" "${URL_BASE[$server]}/$file" "$size" "$round" >>"$RESULTS"
            tail -1 "$RESULTS" | awk -F'\t' '{printf "  round %s %-5s %-8s %8.1f req/s %6.2f GB/s %7.1f ms CPU/GiB  errors %s\n", $3, $2, $1, $4, $5, $6, $11}' >&2
        done
    done
done

# --- the table: medians over rounds, ratios against nginx -------------------------------
echo
echo "fileserve vs nginx $(nginx -v 2>&1 | sed 's/.*nginx\///') (sendfile on): $CONNECTIONS keep-alive connections, servers on core $SERVER_CORE, clients on core $CLIENT_CORE, ${PRIO[*]:-default priority}, median of $ROUNDS rounds of $DURATION loadgen runs"
awk -F'\t' '
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
        key = $1 SUBSEP $2
        rps[key] = rps[key] " " $4; gbs[key] = gbs[key] " " $5; cpu[key] = cpu[key] " " $6
        usr[key] = usr[key] " " $7; sys[key] = sys[key] " " $8
        sbusy[key] = sbusy[key] " " $9; err[key] += $11
        if ($10 != "nan") cbusy[key] = cbusy[key] " " $10
    }
    END {
        printf "%-6s %-18s %9s %7s %11s %9s %9s %10s %12s %9s %9s %6s\n", "file", "server", "req/s", "GB/s",
            "CPU ms/GiB", "user", "sys", "x nginx", "CPU x nginx", "srv busy", "cli busy", "errors"
        nsizes = split("1GiB 1MiB", sizes, " "); nservers = split("sendfile copy nginx", servers, " ")
        for (z = 1; z <= nsizes; z++) {
            base = "nginx" SUBSEP sizes[z]
            bg = median(gbs[base]); bc = median(cpu[base])
            for (s = 1; s <= nservers; s++) {
                key = servers[s] SUBSEP sizes[z]
                name = (servers[s] == "nginx") ? "nginx (sendfile on)" : "fileserve " servers[s]
                g = median(gbs[key]); c = median(cpu[key])
                cli = (cbusy[key] == "") ? "-" : sprintf("%.0f%%", 100 * median(cbusy[key]))
                printf "%-6s %-18s %9.0f %7.2f %11.1f %9.1f %9.1f %9.2fx %11.2fx %8.0f%% %9s %6d\n", sizes[z], name,
                    median(rps[key]), g, c, median(usr[key]), median(sys[key]),
                    (bg > 0 ? g / bg : 0), (bc > 0 ? c / bc : 0),
                    100 * median(sbusy[key]), cli, err[key]
            }
        }
    }' "$RESULTS"
echo "x nginx: GB/s against nginx (target >= 0.95 for sendfile); CPU x nginx: server CPU per GiB against nginx (target <= 1.00 for sendfile)."
echo "busy: share of one core the server / loadgen's busiest thread used; a client near 100% means the client, not the server, set the pace."
