#!/usr/bin/env bash
# contactmap on a real GPU: builds tests/gpu/real_app.cu with nvcc (shared and
# static cudart) and runs it under contactmap in every GPU tier, checking the
# report against the program's own plan (tests/gpu/verdicts.py). Not part of
# `make test` (CI has no GPU); tests/gpu/check.sh runs it with the rest of the
# real-GPU check. Needs root, an NVIDIA driver and `make all`; nvcc, or
# real_app binaries already built in $OUT (a machine without the toolkit).
#
#   tests/gpu/run.sh            all scenarios; reports, text maps and timelines go
#                               to $OUT (.output/gpu_real), results to
#                               $OUT/results.jsonl and a summary to results.txt
#
# Scenarios:
#   cupti        wrap mode, CUPTI tier: exact kernel, copy, API and sync counts,
#                graph kernels, kernel time against CUDA events, every kernel in
#                its process's lifetime (timeline), nothing dropped
#   blocking     cudaDeviceScheduleBlockingSync: GPU wait is mostly blocked
#   uprobes      --gpu uprobes with the shared cudart: exact runtime API counts
#   static       --gpu uprobes with the static cudart: seen through the driver
#   two_procs    two processes under one contactmap, each with its own rows
#   attach       contactmap -p on a running program: uprobes, exact counts
#   duration     -d 3 on a 10 s program: device rows inside the window
#   fork         a forked child exits at once; its parent's rows are exact
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
OUT=${OUT_DIR:-.output/gpu_real}
CM=${CONTACTMAP:-./contactmap}
[ -x "$CM" ] || CM=.output/contactmap
PY=${PYTHON:-python3}
mkdir -p "$OUT"
RES=$OUT/results.txt
JRES=${RESULTS:-$OUT/results.jsonl}
: > "$RES"

die() { echo "gpu/run.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (BPF)"
[ -x "$CM" ] || die "build contactmap first: make all"
[ -f .output/libcontactmap-cupti.so ] || die "the CUPTI agent is not built: make all (with $CUDA_HOME)"
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$RES" || echo "(no nvidia-smi)" | tee -a "$RES"

NVCC=${NVCC:-$CUDA_HOME/bin/nvcc}
[ -x "$NVCC" ] || NVCC=$(command -v nvcc || true)
NVCC_ARCH=${NVCC_ARCH:--gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=[sm_90,compute_90]}
if [ -n "$NVCC" ] && [ -x "$NVCC" ]; then
	echo "building real_app with $NVCC" >&2
	"$NVCC" -O2 $NVCC_ARCH --cudart shared -o $OUT/real_app tests/gpu/real_app.cu \
		-Xlinker -rpath -Xlinker '$ORIGIN' -Xlinker -rpath -Xlinker "$CUDA_HOME/lib64" || die "nvcc failed"
	"$NVCC" -O2 $NVCC_ARCH --cudart static -o $OUT/real_app_static tests/gpu/real_app.cu \
		|| die "nvcc failed"
	# the runtime next to it: $OUT runs on a machine without the toolkit too
	rt=$(ldd $OUT/real_app | awk '/libcudart/ { print $3; exit }')
	if [ -n "$rt" ] && [ -f "$rt" ] && [ "$(realpath "$rt")" != "$(realpath -m "$OUT/$(basename "$rt")")" ]; then
		cp -L "$rt" "$OUT/$(basename "$rt")"
	fi
elif [ -x $OUT/real_app ] && [ -x $OUT/real_app_static ]; then
	echo "no nvcc: using the real_app binaries already in $OUT" | tee -a "$RES"
else
	die "no nvcc (set NVCC or CUDA_HOME) and no real_app built in $OUT"
fi

PLAN=(--launches 20 --kernel-us 500 --copies 4 --bytes $((16 << 20)) --graphs 3 --graph-kernels 10 --syncs 5)
fail=0

jrecord() {   # jrecord NAME CHECK DETAIL: a failure found here, not by verdicts.py
	"$PY" -c 'import json, sys; print(json.dumps({"scenario": sys.argv[1], "check": sys.argv[2],
	    "ok": False, "detail": sys.argv[3]}))' "$1" "$2" "$3" >> "$JRES"
}

why() {       # why FILE: the lines that say what went wrong
	{ grep -m3 -E '^(real_app|contactmap|contactmap-cupti):' "$1" || tail -3 "$1"; } 2>/dev/null | tr '\n' ' '
}

verdict() {   # verdict NAME MODE [--trace FILE]: the report against the program's truth
	local name=$1 mode=$2; shift 2
	"$PY" tests/gpu/verdicts.py real "$name" "$mode" "$OUT/$name.json" "$OUT/$name.out" \
		--results "$JRES" "$@" | tee -a "$RES"
	return "${PIPESTATUS[0]}"
}

run() {   # run NAME MODE [contactmap options] -- PROGRAM ARGS
	local name=$1 mode=$2 rc; shift 2
	local rep=$OUT/$name.json trace=()
	echo "== $name" | tee -a "$RES"
	rm -f "$rep" "$OUT/$name.trace.json"
	[ "$mode" = cupti ] && trace=(--trace "$OUT/$name.trace.json")
	timeout -k 5 120 "$CM" -o "$rep" ${trace[@]+"${trace[@]}"} "$@" > "$OUT/$name.out" 2> "$OUT/$name.txt"
	rc=$?
	if [ $rc != 0 ]; then
		echo "FAIL $name: contactmap exited $rc" | tee -a "$RES"; tail -5 "$OUT/$name.txt"
		jrecord "$name" "contactmap and the program exit 0" "exit $rc: $(why "$OUT/$name.txt")"
		fail=1; return
	fi
	if [ "$mode" = cupti ]; then
		verdict "$name" "$mode" --trace "$OUT/$name.trace.json" || fail=1
	else
		verdict "$name" "$mode" || fail=1
	fi
	grep -A12 "^  GPU  tier" "$OUT/$name.txt" | head -14 >> "$RES"
}

run cupti cupti -- $OUT/real_app "${PLAN[@]}"
run blocking blocking -- $OUT/real_app "${PLAN[@]}" --blocking
run uprobes uprobes --gpu uprobes -- $OUT/real_app "${PLAN[@]}"
run static static --gpu uprobes -- $OUT/real_app_static "${PLAN[@]}"
run two_procs two_procs -- sh -c "$OUT/real_app ${PLAN[*]} & $OUT/real_app ${PLAN[*]}; wait"
run duration duration -d 3 -- $OUT/real_app --seconds 10 --kernel-us 200
run fork fork -- $OUT/real_app "${PLAN[@]}" --fork

# attach mode: real_app sets CUDA up (libcudart opens libcuda at its first
# call), says ready; contactmap -p probes both; then the plan runs
echo "== attach" | tee -a "$RES"
rm -f $OUT/attach.json
coproc APP { exec $OUT/real_app --wait-stdin "${PLAN[@]}"; }
app_pid=$APP_PID
# copies: bash drops APP[] once the program has exited
exec {app_out}<&"${APP[0]}" {app_in}>&"${APP[1]}"
read -t 60 -r line <&$app_out
if [ "${line:-}" != ready ]; then
	echo "FAIL attach: app said '${line:-}'" | tee -a "$RES"; fail=1
	jrecord attach "real_app --wait-stdin says ready" "'${line:-}'"
	kill "$app_pid" 2>/dev/null
else
	timeout -k 5 120 "$CM" -v -p "$app_pid" -o $OUT/attach.json 2> $OUT/attach.txt &
	cm=$!
	probed=0
	for _ in $(seq 300); do
		grep -q "probed in .*libcuda\.so" $OUT/attach.txt && { probed=1; break; }
		sleep 0.1
	done
	[ $probed = 1 ] || { echo "attach: no 'probed in ...libcuda.so' from contactmap -v after 30 s" | tee -a "$RES"
		jrecord attach "contactmap -p probes libcuda before the plan runs" "$(why $OUT/attach.txt)"; }
	echo go >&$app_in
	cat <&$app_out > $OUT/attach.out
	wait "$cm"; rc=$?
	if [ $rc != 0 ]; then
		echo "FAIL attach: contactmap exited $rc" | tee -a "$RES"; fail=1
		jrecord attach "contactmap -p exits 0" "exit $rc: $(why $OUT/attach.txt)"
	else
		verdict attach attach || fail=1
	fi
fi

echo "summary: $(grep -c '^PASS' "$RES") passed, $(grep -c '^FAIL' "$RES") failed; details in $RES"
exit $fail
