#!/bin/sh
# Regenerate vmlinux/<arch>/vmlinux.h from a kernel's BTF.
# CO-RE relocates field offsets at load time, so one header built from a full
# (non-tinyconfig) kernel serves every kernel with BTF; it only needs every type
# the BPF code names (struct request and the block tracepoints included).
# Usage: scripts/gen-vmlinux.sh [BTF_FILE] [ARCH]
set -eu
btf=${1:-/sys/kernel/btf/vmlinux}
arch=${2:-x86}
out=$(dirname "$0")/../vmlinux/$arch/vmlinux.h
mkdir -p "$(dirname "$out")"
bpftool btf dump file "$btf" format c > "$out.tmp"
grep -q '^struct request {' "$out.tmp" || { echo "gen-vmlinux: $btf lacks struct request (tinyconfig kernel?)" >&2; rm -f "$out.tmp"; exit 1; }
mv "$out.tmp" "$out"
echo "wrote $out from $btf ($(uname -r))"
