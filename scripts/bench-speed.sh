#!/usr/bin/env bash
# The speed comparisons of issue 14, side by side, with their ratios:
#
#   1. servers:   server CPU per message of every event-loop echo server against the C epoll
#                 echo (echo-c, labs/12-c), at 50 and 1,000 connections, 512-byte messages.
#   2. client:    the load generator's client CPU per message against the public
#                 `tcp-echo-benchmark` crate (tokio), both loading the same echo-c in the same run.
#   3. fileserve: fileserve's server CPU per GiB against nginx for 1 MiB files
#                 (scripts/compare-fileserve.sh does the work; this script reads its table).
#
#   scripts/bench-speed.sh                              # everything: 3 rounds x 5 s per row
#   ROUNDS=1 DURATION=2s PARTS=servers MODELS=c,epoll-lt scripts/bench-speed.sh
#
# Run it alone, e.g. `flock /tmp/netlab-bench.lock scripts/bench-speed.sh`: on a 2-core machine
# anything else running moves the figures. Servers run on core SERVER_CORE, clients on
# CLIENT_CORE (taskset), both at nice NICE when allowed. Every row is the median of ROUNDS
# interleaved rounds (round r runs the rows in an order rotated by r-1: ABC, BCA, CAB, ...), with
# min..max; a ratio is "within noise" (~) when the two rows' min..max ranges overlap, and marked
# ? when a row has a single round (no spread to judge by).
#
# Env: ROUNDS (3), DURATION (5s), WARMUP (1s), CONNECTIONS ("50 1000"), SIZE (512),
# MODELS (every event loop: c,epoll-lt,epoll-et,mio,uring,tokio,reuseport,select,poll),
# PARTS (servers,client,fileserve), SERVER_CORE (1), CLIENT_CORE (0), NICE (-10),
# NGINX_PORT (nginx's port; by default the first free one from 18080 on; everything else binds
# port 0),
# FILESERVE_CONNECTIONS (8 keep-alive connections), TIMEOUT (5s: loadgen's echo timeout),
# BENCH_TOOLS (target/bench-tools: where tcp-echo-benchmark is installed).
#
# Everything it starts is stopped by pid when it exits (trap on EXIT). Only loopback is used.
# jq and nginx come from the distribution's packages (scripts/setup.sh --bench, when missing).
# tcp-echo-benchmark is installed once with `cargo install --locked` into target/bench-tools;
# without network that row says skipped. A missing server binary or an echo-c built without a
# C compiler (it exits 69) makes its row say skipped, with why.
set -euo pipefail

case "${1:-}" in
-h | --help) sed -n '2,/^set -euo/{/^# \{0,1\}/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
"") ;;
*) echo "bench-speed: takes no arguments ('$1'); settings come from the environment, see --help" >&2; exit 2 ;;
esac

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
CONNECTIONS=${CONNECTIONS:-50 1000}
SIZE=${SIZE:-512}
MODELS=${MODELS:-c,epoll-lt,epoll-et,mio,uring,tokio,reuseport,select,poll}
PARTS=${PARTS:-servers,client,fileserve}
SERVER_CORE=${SERVER_CORE:-1}
CLIENT_CORE=${CLIENT_CORE:-0}
NICE=${NICE:--10}
NGINX_PORT=${NGINX_PORT:-}
TIMEOUT=${TIMEOUT:-5s}
FILESERVE_CONNECTIONS=${FILESERVE_CONNECTIONS:-8}

cd "$(dirname "$0")/.."
REPO=$PWD
BIN="${CARGO_TARGET_DIR:-target}/release"
TOOLS=${BENCH_TOOLS:-$REPO/target/bench-tools} # cargo install --root: project-local, ignored with target/

say() { echo "bench-speed: $*" >&2; }
die() { say "$*"; exit 1; }

seconds() { # 5s, 500ms, 2m -> seconds (awk number)
    case "$1" in
    *ms) awk -v v="${1%ms}" 'BEGIN { print v / 1000 }' ;;
    *s) echo "${1%s}" ;;
    *m) awk -v v="${1%m}" 'BEGIN { print v * 60 }' ;;
    *) die "DURATION/WARMUP must look like 5s, 500ms or 2m, not '$1'" ;;
    esac
}
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive whole number, not '$ROUNDS'"
DUR_S=$(seconds "$DURATION")
WARM_S=$(seconds "$WARMUP")
IFS=, read -r -a MODEL_LIST <<<"$MODELS"
read -r -a CONN_LIST <<<"$CONNECTIONS"
has_part() { [[ ",$PARTS," == *",$1,"* ]]; }
for part in ${PARTS//,/ }; do
    case "$part" in servers | client | fileserve) ;; *) die "PARTS: unknown part '$part' (servers, client, fileserve)" ;; esac
done
command -v taskset >/dev/null || die "needs taskset (util-linux)"
# A failed install of an optional tool (perf, tcpdump) is no reason to stop: only jq is needed
# here, and nginx only by the fileserve part, whose row says so when it is missing.
scripts/setup.sh --bench || say "scripts/setup.sh --bench failed; going on with what is installed"
command -v jq >/dev/null || die "needs jq (scripts/setup.sh --bench installs it, as root or with sudo)"

PRIO=()
if nice -n "$NICE" true 2>/dev/null; then PRIO=(nice -n "$NICE"); fi

# --- the estimate ---------------------------------------------------------------------------
n_models=${#MODEL_LIST[@]}
n_conns=${#CONN_LIST[@]}
estimate=0
if has_part servers; then estimate=$(awk -v a="$estimate" -v n=$((n_models * n_conns * ROUNDS)) -v d="$DUR_S" -v w="$WARM_S" 'BEGIN { print a + n * (d + w + 1) }'); fi
if has_part client; then estimate=$(awk -v a="$estimate" -v n=$((2 * n_conns * ROUNDS)) -v d="$DUR_S" -v w="$WARM_S" 'BEGIN { print a + n * (d + w + 1) }'); fi
if has_part fileserve; then estimate=$(awk -v a="$estimate" -v n=$((6 * ROUNDS)) -v d="$DUR_S" -v w="$WARM_S" 'BEGIN { print a + n * (d + w + 0.5) + 40 }'); fi
say "about $(awk -v s="$estimate" 'BEGIN { printf "%d min %02d s", s / 60, s % 60 }') of runs (parts: $PARTS; $ROUNDS rounds x $DURATION after $WARMUP warmup), plus builds and installs"

say "building the workspace's binaries (release)"
cargo build --release -q --bins --workspace

TMP=$(mktemp -d /tmp/bench-speed.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

# A pid that was waited for leaves PIDS, so the exit trap never signals a reused one.
forget_pid() {
    local live=() pid
    for pid in "${PIDS[@]}"; do [ "$pid" = "$1" ] || live+=("$pid"); done
    PIDS=("${live[@]}")
}

# --- starting and stopping one echo server --------------------------------------------------
# start_server MODEL: starts target/release/echo-MODEL on 127.0.0.1:0, pinned to SERVER_CORE, and
# waits for its "listening on ADDR pid=N" line; sets ADDR, SPID. On failure returns 1 and sets
# WHY (a missing binary, exit 69 = built without a C compiler, or its last line of stderr).
start_server() {
    local model=$1 exe="$BIN/echo-$1" out="$TMP/server.out" err="$TMP/server.err" extra=()
    ADDR="" SPID="" WHY=""
    [ -x "$exe" ] || { WHY="no binary $exe"; return 1; }
    # One core for the server: a loop per core would be two threads fighting over it.
    [ "$model" = reuseport ] && extra=(--threads 1)
    : >"$out"
    "${PRIO[@]}" taskset -c "$SERVER_CORE" "$exe" --addr 127.0.0.1:0 "${extra[@]}" >"$out" 2>"$err" &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        grep -q '^listening on' "$out" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    ADDR=$(awk '/^listening on/ {print $3}' "$out")
    SPID=$(awk '/^listening on/ {sub("pid=", "", $4); print $4}' "$out")
    if [ -z "$ADDR" ]; then
        local rc=0
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || rc=$?
        forget_pid "$pid"
        if [ "$rc" = 69 ]; then WHY="built without a C compiler (exit 69)"; else WHY="did not start: $(tail -1 "$err")"; fi
        return 1
    fi
}
stop_server() {
    kill "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
    forget_pid "$SPID"
}

# Median, min and max of the numbers on each line's fields 3.. (key key v1 v2 ...), in awk.
STATS_AWK='
    function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
    function median(a, n) { return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    function overlap(lo1, hi1, lo2, hi2) { return lo1 <= hi2 && lo2 <= hi1 }
    # The mark after a ratio: " ?" when a side has one round (no spread to judge noise by),
    # " ~" when the min..max ranges overlap, nothing when they are apart.
    function noise(lo1, hi1, n1, lo2, hi2, n2) { return (n1 < 2 || n2 < 2) ? " ?" : overlap(lo1, hi1, lo2, hi2) ? " ~" : "" }
'

# --- 1. servers: CPU per message against C --------------------------------------------------
SERVERS_TSV="$TMP/servers.tsv" # conns model round status srv_us_per_msg msg/s errors client_bound
: >"$SERVERS_TSV"
run_servers() {
    local conns round k model json
    for conns in "${CONN_LIST[@]}"; do
        for round in $(seq 1 "$ROUNDS"); do
            for k in $(seq 0 $((n_models - 1))); do
                model=${MODEL_LIST[$(((k + round - 1) % n_models))]}
                if ! start_server "$model"; then
                    printf '%s\t%s\t%s\tskipped: %s\tnan\tnan\t0\t-\n' "$conns" "$model" "$round" "$WHY" >>"$SERVERS_TSV"
                    say "  $conns conns round $round $model: skipped: $WHY"
                    continue
                fi
                json="$TMP/run.json"
                "${PRIO[@]}" taskset -c "$CLIENT_CORE" "$BIN/loadgen" "$ADDR" -c "$conns" --size "$SIZE" \
                    -d "$DURATION" --warmup "$WARMUP" --timeout "$TIMEOUT" --server-pid "$SPID" \
                    --format json >"$json" 2>"$TMP/loadgen.err" || true
                stop_server
                jq -r --arg c "$conns" --arg m "$model" --arg r "$round" '.[0] as $x
                    | [$c, $m, $r, "ok", ($x.server.cpu_us_per_msg | if . == null then "nan" else . * 1000 | round / 1000 end),
                       ($x.msgs_per_s | round),
                       ([$x.errors[]] | add), $x.client.bound] | @tsv' "$json" >>"$SERVERS_TSV" 2>/dev/null ||
                    printf '%s\t%s\t%s\tfailed: %s\tnan\tnan\t1\t-\n' "$conns" "$model" "$round" \
                        "$(tail -1 "$TMP/loadgen.err")" >>"$SERVERS_TSV"
                tail -1 "$SERVERS_TSV" | awk -F'\t' '{printf "  %5s conns round %s %-9s %s  %6s us/msg  %8s msg/s  errors %s  bound %s\n", $1, $3, $2, $4, $5, $6, $7, $8}' >&2
            done
        done
    done
}

print_servers() {
    echo
    echo "1. Server CPU per message (user+system, us) against C's epoll echo: $SIZE-byte messages, server on core $SERVER_CORE, loadgen on core $CLIENT_CORE, ${PRIO[*]:-default priority}, median of $ROUNDS interleaved rounds of $DURATION (min..max)"
    awk -F'\t' -v models="$MODELS" -v conns="$CONNECTIONS" "$STATS_AWK"'
        {
            key = $1 SUBSEP $2
            if ($4 == "ok" && $5 != "nan" && $5 != "null") { n[key]++; v[key, n[key]] = $5 + 0; rate[key] = rate[key] " " $6 }
            else if (!(key in why)) why[key] = $4
            err[key] += $7
            if ($8 == "client" || $8 == "both") cb[key]++
        }
        END {
            nm = split(models, m, ","); nc = split(conns, c, " ")
            printf "%-10s", "model"
            for (j = 1; j <= nc; j++) printf "  %-38s", c[j] " conns: us/msg (min..max), x C"
            printf "\n"
            for (i = 1; i <= nm; i++) {
                printf "%-10s", m[i]
                for (j = 1; j <= nc; j++) {
                    key = c[j] SUBSEP m[i]; base = c[j] SUBSEP "c"
                    if (n[key] == 0) { printf "  %-38s", (key in why) ? why[key] : "no rounds"; continue }
                    delete a; for (r = 1; r <= n[key]; r++) a[r] = v[key, r]; sort(a, n[key])
                    med = median(a, n[key]); lo = a[1]; hi = a[n[key]]
                    cell = sprintf("%6.2f (%.2f..%.2f)", med, lo, hi)
                    if (n[base] > 0 && m[i] != "c") {
                        delete b; for (r = 1; r <= n[base]; r++) b[r] = v[base, r]; sort(b, n[base])
                        bm = median(b, n[base])
                        cell = cell sprintf(" %5.2fx%s", med / bm, noise(lo, hi, n[key], b[1], b[n[base]], n[base]))
                    } else if (m[i] == "c") cell = cell "  1.00x"
                    else cell = cell "   (no C)"
                    if (err[key] > 0) cell = cell " ERR" err[key]
                    printf "  %-38s", cell
                }
                printf "\n"
            }
        }' "$SERVERS_TSV"
    echo "x C: the median's ratio to C's median; ~ = within noise (the min..max ranges overlap); ? = one round, no spread to judge by. ERRn: n echo errors over the rounds."
    awk -F'\t' '$8 == "client" || $8 == "both" { n++ } END { if (n) printf "loadgen reported its thread busy (bound client/both) in %d of %d runs: msg/s is shared by both cores; CPU per message is the figure to read.\n", n, NR }' "$SERVERS_TSV"
}

# --- 2. client: loadgen against tcp-echo-benchmark ------------------------------------------
# Both load the same echo server (echo-c; echo-epoll-lt if echo-c cannot run), one after the
# other, CONNECTIONS connections, SIZE-byte messages, one in flight per connection, TCP_NODELAY
# (tcp-echo-benchmark sets it; so does loadgen by default). tcp-echo-benchmark counts whole
# seconds and has no warmup, so both run for the same whole seconds with no warmup, and both
# are measured the same way: the client process's user+system CPU from /usr/bin/time (10 ms
# resolution), over the messages it reports (loadgen: echoes received and checked byte for
# byte; tcp-echo-benchmark: responses read, not checked). loadgen gets no --server-pid here, so
# it spends nothing on /proc samples.
CLIENT_TSV="$TMP/client.tsv" # conns client round status cpu_s messages us_per_msg
: >"$CLIENT_TSV"
CLIENT_SERVER=""
CLIENT_SKIP=""
TEB="$TOOLS/bin/tcp-echo-benchmark"
install_teb() {
    [ -x "$TEB" ] && return 0
    say "installing tcp-echo-benchmark (cargo install --locked --root $TOOLS; needs crates.io)"
    mkdir -p "$TOOLS"
    if ! cargo install --locked --root "$TOOLS" tcp-echo-benchmark >"$TMP/install.log" 2>&1; then
        CLIENT_SKIP="cargo install tcp-echo-benchmark failed: $(grep -m1 -i error "$TMP/install.log" || tail -1 "$TMP/install.log")"
        return 1
    fi
}
run_client() {
    local whole conns round k client out tm
    whole=$(awk -v d="$DUR_S" 'BEGIN { w = int(d); if (w < d) w++; if (w < 1) w = 1; print w }')
    install_teb || return 0
    for CLIENT_SERVER in c epoll-lt; do
        start_server "$CLIENT_SERVER" && break
        say "client part: echo-$CLIENT_SERVER: $WHY"
        CLIENT_SERVER=""
    done
    [ -n "$CLIENT_SERVER" ] || { CLIENT_SKIP="no echo server would start"; return 0; }
    local clients=(loadgen tcp-echo-benchmark)
    for conns in "${CONN_LIST[@]}"; do
        for round in $(seq 1 "$ROUNDS"); do
            for k in 0 1; do
                client=${clients[$(((k + round - 1) % 2))]}
                out="$TMP/client.out" tm="$TMP/client.time"
                : >"$tm"
                if [ "$client" = loadgen ]; then
                    "${PRIO[@]}" taskset -c "$CLIENT_CORE" /usr/bin/time -f '%U %S' -o "$tm" "$BIN/loadgen" "$ADDR" \
                        -c "$conns" --size "$SIZE" -d "${whole}s" --warmup 0s --timeout "$TIMEOUT" --format json \
                        >"$out" 2>"$TMP/client.err" || true
                    msgs=$(jq -r '.[0] | if ([.errors[]] | add) == 0 then .messages else "errors: \([.errors[]] | add) echo errors" end' "$out" 2>/dev/null || echo "failed: $(tail -1 "$TMP/client.err")")
                else
                    "${PRIO[@]}" taskset -c "$CLIENT_CORE" /usr/bin/time -f '%U %S' -o "$tm" "$TEB" -a "$ADDR" \
                        -c "$conns" -l "$SIZE" -t "$whole" >"$out" 2>"$TMP/client.err" || true
                    msgs=$(awk '/^Total:/ {print $4}' "$out")
                    [ -n "$msgs" ] || msgs="failed: $(tail -1 "$TMP/client.err")"
                fi
                awk -v c="$conns" -v n="$client" -v r="$round" -v m="$msgs" '
                    NF == 2 && $1 ~ /^[0-9.]+$/ { cpu = $1 + $2 }
                    END {
                        if (m ~ /^[0-9]+$/ && m > 0 && cpu != "") printf "%s\t%s\t%s\tok\t%.2f\t%s\t%.3f\n", c, n, r, cpu, m, cpu * 1e6 / m
                        else printf "%s\t%s\t%s\t%s\tnan\tnan\tnan\n", c, n, r, (m ~ /^[0-9]+$/) ? "failed: no CPU figure" : m
                    }' "$tm" >>"$CLIENT_TSV"
                tail -1 "$CLIENT_TSV" | awk -F'\t' '{printf "  %5s conns round %s %-18s %s  %s s CPU  %s msgs  %s us/msg\n", $1, $3, $2, $4, $5, $6, $7}' >&2
            done
        done
    done
    stop_server
}

print_client() {
    echo
    if [ -n "$CLIENT_SKIP" ]; then echo "2. Client CPU per message, loadgen vs tcp-echo-benchmark: skipped: $CLIENT_SKIP"; return; fi
    echo "2. Client CPU per message (user+system, us; /usr/bin/time of the client process), loadgen vs tcp-echo-benchmark $(sed -n 's/^"tcp-echo-benchmark \([^ ]*\) .*/\1/p' "$TOOLS/.crates.toml" 2>/dev/null) (tokio), both against the same echo-$CLIENT_SERVER, $SIZE-byte messages, client on core $CLIENT_CORE, median of $ROUNDS interleaved rounds (min..max)"
    awk -F'\t' -v conns="$CONNECTIONS" "$STATS_AWK"'
        $4 == "ok" { key = $1 SUBSEP $2; n[key]++; v[key, n[key]] = $7 + 0 }
        $4 != "ok" { bad[$1 SUBSEP $2] = $4 }
        END {
            nc = split(conns, c, " ")
            printf "%-12s %-30s %-30s %s\n", "connections", "loadgen us/msg (min..max)", "tcp-echo-benchmark", "loadgen x tcp-echo-benchmark"
            for (j = 1; j <= nc; j++) {
                for (s = 1; s <= 2; s++) {
                    key = c[j] SUBSEP (s == 1 ? "loadgen" : "tcp-echo-benchmark")
                    if (n[key] == 0) { cell[s] = (key in bad) ? bad[key] : "no rounds"; med[s] = ""; continue }
                    delete a; for (r = 1; r <= n[key]; r++) a[r] = v[key, r]; sort(a, n[key])
                    med[s] = median(a, n[key]); lo[s] = a[1]; hi[s] = a[n[key]]; cnt[s] = n[key]
                    cell[s] = sprintf("%.2f (%.2f..%.2f)", med[s], lo[s], hi[s])
                    if (key in bad) cell[s] = cell[s] " +failed"
                }
                ratio = (med[1] != "" && med[2] != "") ? sprintf("%.2fx%s", med[1] / med[2], noise(lo[1], hi[1], cnt[1], lo[2], hi[2], cnt[2])) : "-"
                printf "%-12s %-30s %-30s %s\n", c[j], cell[1], cell[2], ratio
            }
        }' "$CLIENT_TSV"
    echo "~ = within noise (the min..max ranges overlap); ? = one round, no spread to judge by. Target (issue 14): loadgen at most 0.85x. loadgen checks every echoed byte; tcp-echo-benchmark does not."
}

# --- 3. fileserve against nginx, 1 MiB files ------------------------------------------------
FILESERVE_OUT="$TMP/fileserve.out"
FILESERVE_SKIP=""
run_fileserve() {
    say "fileserve part: scripts/compare-fileserve.sh (ROUNDS=$ROUNDS DURATION=$DURATION, nginx on 127.0.0.1:${NGINX_PORT:-the first free port from 18080})"
    # CONNECTIONS is set explicitly: when the caller exported this script's CONNECTIONS ("50 1000"),
    # compare-fileserve.sh would read it as its own keep-alive connection count.
    if ! ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP SERVER_CORE=$SERVER_CORE CLIENT_CORE=$CLIENT_CORE \
        NICE=$NICE NGINX_PORT=$NGINX_PORT CONNECTIONS=$FILESERVE_CONNECTIONS scripts/compare-fileserve.sh >"$FILESERVE_OUT" 2>"$TMP/fileserve.err"; then
        FILESERVE_SKIP="scripts/compare-fileserve.sh failed: $(grep -v '^  round' "$TMP/fileserve.err" | tail -1)"
    fi
    grep '^  round .* 1MiB ' "$TMP/fileserve.err" >&2 || true
}
print_fileserve() {
    echo
    if [ -n "$FILESERVE_SKIP" ]; then echo "3. fileserve vs nginx, 1 MiB files: skipped: $FILESERVE_SKIP"; return; fi
    echo "3. Server CPU per GiB served, 1 MiB files, fileserve vs nginx (from scripts/compare-fileserve.sh: $(sed -n 's/^fileserve vs nginx //p' "$FILESERVE_OUT"))"
    # The per-round figures come from its progress lines (stderr); the medians agree with its table.
    awk "$STATS_AWK"'
        /^  round .* 1MiB / { s = $4; n[s]++; v[s, n[s]] = $(NF - 4) + 0 }
        END {
            printf "%-20s %-28s %s\n", "server", "CPU ms/GiB (min..max)", "CPU x nginx"
            split("sendfile copy nginx", order, " ")
            for (i = 1; i <= 3; i++) {
                s = order[i]
                if (n[s] == 0) { printf "%-20s no rounds\n", s; continue }
                delete a; for (r = 1; r <= n[s]; r++) a[r] = v[s, r]; sort(a, n[s])
                med[s] = median(a, n[s]); lo[s] = a[1]; hi[s] = a[n[s]]
            }
            for (i = 1; i <= 3; i++) {
                s = order[i]; if (n[s] == 0) continue
                ratio = (s == "nginx") ? "1.00x" : (n["nginx"] ? sprintf("%.2fx%s", med[s] / med["nginx"], noise(lo[s], hi[s], n[s], lo["nginx"], hi["nginx"], n["nginx"])) : "-")
                printf "%-20s %-28s %s\n", (s == "nginx" ? "nginx (sendfile on)" : "fileserve " s), sprintf("%.1f (%.1f..%.1f)", med[s], lo[s], hi[s]), ratio
            }
        }' "$TMP/fileserve.err"
    echo "~ = within noise (the min..max ranges overlap); ? = one round, no spread to judge by. Target (issue 14): fileserve sendfile at most 0.9x nginx."
}

# --- the runs, then the tables --------------------------------------------------------------
say "servers on core $SERVER_CORE, clients on core $CLIENT_CORE, ${PRIO[*]:-default priority}; load average $(cut -d' ' -f1-3 /proc/loadavg)"
started=$(date +%s)
load_at_start=$(cut -d' ' -f1-3 /proc/loadavg)
if has_part servers; then run_servers; fi
if has_part client; then run_client; fi
if has_part fileserve; then run_fileserve; fi

echo "bench-speed: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r), $(nproc) cores, load average $load_at_start at the start and $(cut -d' ' -f1-3 /proc/loadavg) at the end, $(($(date +%s) - started)) s of runs"
if has_part servers; then print_servers; fi
if has_part client; then print_client; fi
if has_part fileserve; then print_fileserve; fi
