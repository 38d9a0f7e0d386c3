#!/usr/bin/env bash
# Step through one echo exchange in strace: start a lab server under strace, connect, send one
# line, read the echo, close, stop the server with SIGTERM, and print what the server did.
#
#   scripts/trace.sh echo-poll                 # any echo server; extra flags go to the server
#   scripts/trace.sh echo-epoll-et --broken-read-once
#
# The binary is built first (`cargo build --release`, quick when up to date) unless
# $NETLAB_BIN_DIR names a folder of ready binaries (the tests use that).
set -euo pipefail

usage="usage: scripts/trace.sh SERVER [server flags...]
SERVER: echo-blocking, echo-select, echo-poll, echo-epoll-lt, echo-epoll-et, echo-mio, echo-uring, echo-fork"
name=${1:-}
[ -n "$name" ] && [ "$name" != -h ] && [ "$name" != --help ] || { echo "$usage"; [ -n "$name" ]; exit; }
shift

# The syscalls that tell each model's story (the lists the servers print at start, plus, for
# io_uring, the calls that should NOT appear).
case $name in
  echo-blocking) calls=accept4,recvfrom,sendto,clone3,close ;;
  echo-select) calls=pselect6,accept4,recvfrom,sendto,close ;;
  echo-poll) calls=poll,accept4,recvfrom,sendto,close ;;
  echo-epoll-lt | echo-epoll-et | echo-mio) calls=epoll_wait,epoll_ctl,accept4,recvfrom,sendto,close ;;
  echo-uring) calls=io_uring_setup,io_uring_register,io_uring_enter,accept4,recvfrom,sendto,close ;;
  echo-fork) calls=accept4,clone,clone3,fork,wait4,recvfrom,sendto,close,exit_group ;;
  *) echo "trace.sh: unknown server '$name'" >&2; echo "$usage" >&2; exit 2 ;;
esac
command -v strace >/dev/null || { echo "trace.sh: strace is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
for flag in "$@"; do
  case $flag in
    --addr* | --unix*) echo "trace.sh: the trace runs the server on a free TCP port; leave out $flag" >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")/.."
if [ -n "${NETLAB_BIN_DIR:-}" ]; then
  bin_dir=$NETLAB_BIN_DIR
else
  cargo build --release --quiet --bin "$name"
  bin_dir=${CARGO_TARGET_DIR:-target}/release
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
strace -f -o "$work/trace" -e trace="$calls" "$bin_dir/$name" --addr 127.0.0.1:0 "$@" >"$work/stdout" 2>"$work/stderr" &
strace_pid=$!
for _ in $(seq 200); do
  grep -q '^listening on' "$work/stdout" 2>/dev/null && break
  kill -0 "$strace_pid" 2>/dev/null || { cat "$work/stderr" >&2; exit 1; }
  sleep 0.05
done
read -r _ _ addr pid_field _ <"$work/stdout"
port=${addr##*:}
server_pid=${pid_field#pid=}

# One client, using bash's /dev/tcp: connect, send a line, read the echo, pause, close. (The
# pause keeps the close apart from the echo, as with a person typing into nc.)
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'hello\n' >&3
read -r -t 5 reply <&3 || reply="(no echo within 5 s)"
sleep 0.2
exec 3>&-
sleep 0.3 # let the server see the close before the signal
kill -TERM "$server_pid"
wait "$strace_pid" || true

echo "# $name (pid $server_pid): a client sent 'hello', got '$reply' back, closed 0.2 s later; then SIGTERM."
echo "# Lines without [pid N] are the server's main thread; start-up is left out."
# Start at the first wait or accept (not the poll std makes on fds 0-2 before main); label other
# threads, drop the main thread's pid prefix.
awk -v main="$server_pid" '
  !started && $0 ~ /(pselect6|poll|epoll_ctl|epoll_wait|accept4|io_uring_setup)\(/ && $0 !~ /poll\(\[\{fd=0, events=0\}/ { started = 1 }
  started { pid = $1; sub(/^[0-9]+ +/, ""); print (pid == main ? "" : "[pid " pid "] ") $0 }
' "$work/trace"
echo "# server said: $(tail -n 1 "$work/stdout")"
