#!/usr/bin/env bash
# Installs the system tools netlab's tests and scripts use, from Debian's packages, when missing:
# strace (the trace walkthrough and its test), curl (the file server's tests), nc (the servers'
# "try:" hints), lsof (lab 07's unlinked hint and its test), perf (syscall counts in the load
# generator's reports; optional, the reports say when it is absent), ip/ss/nstat (iproute2: lab
# 10's namespaces and socket states), tcpdump (lab 10 prints the handshake's packets where it is
# installed; optional).
# Needs root or sudo for apt-get; prints what it would install otherwise.
# `scripts/setup.sh --browser` also installs chromium, to look at a report folder's index.html
# headless (nothing else needs it); `--bench` also installs jq and nginx, for
# scripts/bench-speed.sh and scripts/compare-fileserve.sh.
set -euo pipefail

declare -A package_of=([strace]=strace [curl]=curl [nc]=netcat-openbsd [lsof]=lsof [perf]=linux-perf [ip]=iproute2 [ss]=iproute2 [tcpdump]=tcpdump)
tools=(strace curl nc lsof perf ip ss tcpdump)
for arg in "$@"; do
  case "$arg" in
  --browser) package_of[chromium]=chromium; tools+=(chromium) ;;
  --bench) package_of[jq]=jq; package_of[nginx]=nginx; tools+=(jq nginx) ;;
  *) echo "setup: unknown option '$arg' (--browser, --bench)" >&2; exit 2 ;;
  esac
done

missing=()
for tool in "${tools[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
  echo "setup: not root and no sudo: install ${missing[*]} yourself" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
# perf is optional: a machine without a linux-perf package still runs every test.
required=(); for p in "${missing[@]}"; do [ "$p" = linux-perf ] || [ "$p" = tcpdump ] || required+=("$p"); done
[ ${#required[@]} -eq 0 ] || $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${required[@]}"
if [[ " ${missing[*]} " == *" linux-perf "* ]]; then
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends linux-perf || echo "setup: linux-perf not available; reports will mark syscall counts absent" >&2
fi
if [[ " ${missing[*]} " == *" tcpdump "* ]]; then
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends tcpdump || echo "setup: tcpdump not available; lab 10 will say so instead of printing packets" >&2
fi
