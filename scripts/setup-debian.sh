#!/usr/bin/env bash
# Installs what contactmap needs to build, test and run its example, from
# Debian 12's own packages (nothing is downloaded from anywhere else). Run as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
deps=(make gcc clang llvm libbpf-dev bpftool libelf-dev zlib1g-dev libjson-c-dev pkg-config
      libdw-dev libstdc++-12-dev libc6-dbg
      libprotobuf-c-dev protobuf-c-compiler libmicrohttpd-dev
      python3 python3-pytest python3-torch python3-matplotlib
      golang-go prometheus)
# golang-go (`go tool pprof`) and prometheus (its server and promtool) are
# test dependencies only: they read what --pprof and --serve produce. The
# prometheus package's own service is not wanted: the tests start their own.
missing=()
for p in "${deps[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
  if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
