#!/usr/bin/env bash
# netlab's comparisons, thin over `loadgen` (crates/netlab-loadgen). Run from anywhere in the
# repository; the first run builds loadgen and the echo servers (release profile).
#
#   scripts/compare.sh            every echo server model, side by side    (loadgen compare)
#   scripts/compare.sh idle       the cost of idle connections, per model  (loadgen sweep --idle)
#   scripts/compare.sh c10k       10,000 connections (1,000 active + 9,000 idle) on the epoll servers
#   scripts/compare.sh memory     10,000 connections (100 active + 9,900 idle): what a connection
#                                 costs in memory, RSS/conn (touched) and VmSize/conn (reserved),
#                                 for threads, processes, tokio tasks and the epoll loops. fork
#                                 makes 10,000 processes: about 2 GB of memory while it runs.
#
# Anything after the mode goes to loadgen, e.g. `scripts/compare.sh -d 10s --syscalls`.
# Each run prints its table and the folder where it wrote results.json, results.csv and charts.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=compare
case "${1:-}" in
  compare|idle|c10k|memory) mode=$1; shift ;;
esac

loadgen=(cargo run --quiet --release --bin loadgen --)
case "$mode" in
  compare) exec "${loadgen[@]}" compare "$@" ;;
  idle)    exec "${loadgen[@]}" sweep --idle 0,100,1000,10000 "$@" ;;
  c10k)    exec "${loadgen[@]}" compare --models epoll-lt,epoll-et -c 1000 --idle 9000 \
             --connect-rate 20k "$@" ;;
  memory)  exec "${loadgen[@]}" compare --models blocking,fork,tokio,epoll-lt,epoll-et,mio,c \
             -c 100 --idle 9900 --connect-rate 20k --max-processes 10000 --rounds 1 "$@" ;;
esac
