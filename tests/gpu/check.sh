#!/usr/bin/env bash
# The real-GPU check: one command that proves contactmap's GPU rows on a
# machine with an NVIDIA GPU (H100/H200 class, CUDA 12 or 13 driver) in under
# ten minutes, writes one JSON summary and exits non-zero on any failure.
#
#   sudo tests/gpu/check.sh [OUT_DIR]        (default .output/gpu_check)
#
# It builds what it needs (contactmap and its agent with `make all` unless
# they are built already; real_app.cu with nvcc, or real_app binaries already
# in OUT_DIR/real when the machine has no toolkit), then runs
#   - tests/gpu/run.sh: real_app.cu in every GPU tier (CUPTI, blocking sync,
#     uprobes with shared and static cudart, two processes, attach, -d 3 on a
#     10 s run, a forked child);
#   - tests/gpu/torch_probe.py, where PyTorch with CUDA imports: cuBLAS and
#     cuDNN on two streams against CUDA-event times, a CUDA graph replayed N
#     times, a fork-and-exit child (CUPTI tier, with a timeline); a
#     torch.profiler block and kernels after it; cuBLAS under --gpu uprobes.
# Every check lands in OUT_DIR/results.jsonl; OUT_DIR/summary.json
# ("schema": "contactmap-gpu-check/1") has the host, every scenario's verdict
# and every failed check with its detail. Exit status: 0 all passed, 1 a
# check failed, 2 the check could not run (the summary says why).
#
# Environment: CHECK_BUDGET_S (570: steps that would not fit are failed, not
# started), TORCH_PYTHON (a python with torch+CUDA; else python3, then
# /usr/bin/python3), CUDA_HOME, NVCC, NVCC_ARCH (passed to run.sh).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
OUT=${1:-.output/gpu_check}
BUDGET=${CHECK_BUDGET_S:-570}
T0=$(date +%s)
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
HOST=$OUT/host.json
: > "$RESULTS"
PY=$(command -v python3 || echo /usr/bin/python3)
CM=${CONTACTMAP:-./contactmap}
[ -x "$CM" ] || CM=.output/contactmap

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( BUDGET - $(elapsed) )); }
record() {   # record SCENARIO CHECK OK DETAIL: a check made here, not by verdicts.py
	"$PY" -c 'import json, sys; print(json.dumps({"scenario": sys.argv[1], "check": sys.argv[2],
	    "ok": sys.argv[3] == "1", "detail": sys.argv[4]}))' "$1" "$2" "$3" "$4" >> "$RESULTS"
	[ "$3" = 1 ] || echo "FAIL $1: $2 ($4)" >&2
}
skip() { "$PY" -c 'import json, sys; print(json.dumps({"scenario": sys.argv[1], "skipped": sys.argv[2]}))' "$1" "$2" >> "$RESULTS"; echo "skip $1: $2" >&2; }
finish() {
	"$PY" tests/gpu/verdicts.py summary "$RESULTS" "$OUT/summary.json" --host "$HOST" --elapsed "$(elapsed)"
	local rc=$?
	[ "${1:-}" = setup ] && exit 2
	exit $rc
}
fits() {     # fits STEP SECONDS: enough of the budget left to start it?
	if [ "$(left)" -lt "$2" ]; then
		record "$1" "started within the check's time budget" 0 "$(left) s left, needs $2 s"
		return 1
	fi
}

# ---- the machine ----------------------------------------------------------------
"$PY" - "$HOST" <<'PY'
import json, os, platform, shutil, subprocess, sys

def out(*cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None

h = {"kernel": platform.release(), "machine": platform.machine(), "user": os.geteuid()}
smi = out("nvidia-smi", "--query-gpu=name,driver_version,memory.total,compute_cap", "--format=csv,noheader")
h["gpus"] = [l.strip() for l in smi.splitlines()] if smi else []
cuda = out("nvidia-smi")
if cuda:
    for w in cuda.split("|"):
        if "CUDA Version" in w:
            h["driver_cuda"] = w.split("CUDA Version:")[-1].strip()
nvcc = os.environ.get("NVCC") or shutil.which("nvcc") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"), "bin/nvcc")
h["nvcc"] = (out(nvcc, "--version") or "").splitlines()[-1:] if os.path.exists(nvcc) else None
h["devices"] = sorted(d for d in os.listdir("/dev") if d.startswith("nvidia"))
json.dump(h, open(sys.argv[1], "w"), indent=1)
print("host:", json.dumps(h))
PY

[ "$(id -u)" = 0 ] || { record setup "runs as root" 0 "uid $(id -u)"; finish setup; }
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
	record setup "an NVIDIA GPU is visible (nvidia-smi -L)" 0 "$(nvidia-smi -L 2>&1 | head -2)"
	finish setup
fi
record setup "an NVIDIA GPU is visible (nvidia-smi -L)" 1 "$(nvidia-smi -L | head -1)"

# ---- contactmap and its agent ------------------------------------------------------
if [ -x "$CM" ] && [ -f .output/libcontactmap-cupti.so ]; then
	echo "contactmap already built: not rebuilt" >&2
	missing=$(ldd "$CM" 2>/dev/null | awk '/not found/ { print $1 }' | tr '\n' ' ')
	if [ -n "$missing" ]; then
		record build "contactmap's libraries are installed (scripts/setup-debian.sh)" 0 "missing: $missing"
		finish setup
	fi
elif fits build 300; then
	echo "building contactmap (make all)" >&2
	if ! timeout 300 make -j"$(nproc)" all > "$OUT/build.log" 2>&1; then
		record build "make all" 0 "$(tail -3 "$OUT/build.log" | tr '\n' ' ')"
		finish setup
	fi
else
	finish setup
fi
if [ ! -f .output/libcontactmap-cupti.so ]; then
	record build "the CUPTI agent is built (CUDA headers at build time)" 0 "no .output/libcontactmap-cupti.so"
	finish setup
fi
timeout 60 "$CM" check > "$OUT/contactmap-check.txt" 2>&1
rc=$?
record build "contactmap check runs" "$([ $rc = 0 ] && echo 1 || echo 0)" \
	"$(grep -i -E 'cupti|uprobe' "$OUT/contactmap-check.txt" | head -3 | tr '\n' ' ')"

# ---- real_app.cu in every tier ---------------------------------------------------------
if fits real_app 120; then
	# what is left, less ~150 s for PyTorch, 380 s at most
	limit=$(( $(left) - 150 ))
	[ $limit -gt 380 ] && limit=380
	[ $limit -lt 100 ] && limit=100
	OUT_DIR=$OUT/real RESULTS=$RESULTS PYTHON=$PY timeout -k 10 $limit tests/gpu/run.sh > "$OUT/run.log" 2>&1
	rc=$?
	tail -3 "$OUT/run.log" >&2
	# 1: a check failed (recorded); 2: it could not run; 124: out of time
	record real_app "tests/gpu/run.sh runs to its end" "$([ $rc -le 1 ] && echo 1 || echo 0)" \
		"exit $rc in $limit s at most (see $OUT/run.log)"
fi

# ---- PyTorch ------------------------------------------------------------------------------
TPY=
for p in ${TORCH_PYTHON:-} python3 /usr/bin/python3 python; do
	command -v "$p" >/dev/null 2>&1 || continue
	if timeout 120 "$p" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
		TPY=$(command -v "$p"); break
	fi
done
if [ -z "$TPY" ]; then
	skip torch "no python with torch and CUDA (TORCH_PYTHON, python3, /usr/bin/python3)"
else
	# PyTorch's wheels bring their own libcupti: the agent must use that one
	if [ -z "${CONTACTMAP_CUPTI_LIB:-}" ]; then
		lib=$("$TPY" - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia.cuda_cupti as c
    roots = list(c.__path__)
except Exception:
    roots = []
for r in roots:
    for f in sorted(glob.glob(os.path.join(r, "lib", "libcupti.so*"))):
        print(f)
        raise SystemExit
PY
)
		[ -n "$lib" ] && export CONTACTMAP_CUPTI_LIB=$lib && echo "torch's libcupti: $lib" >&2
	fi
	torch_run() {   # torch_run NAME MODE TRACE(0/1) [contactmap options] -- ARGS
		local name=$1 mode=$2 tr=$3 rc; shift 3
		local topt=()
		[ "$tr" = 1 ] && topt=(--trace "$OUT/$name.trace.json")
		fits "$name" 60 || return
		echo "== $name" >&2
		timeout -k 5 150 "$CM" -o "$OUT/$name.json" ${topt[@]+"${topt[@]}"} "$@" \
			> "$OUT/$name.out" 2> "$OUT/$name.txt"
		rc=$?
		if [ $rc != 0 ]; then
			record "$name" "contactmap and torch_probe exit 0" 0 "exit $rc: $( { grep -m3 -E 'Error|^(contactmap|contactmap-cupti|torch_probe):' "$OUT/$name.txt" || tail -3 "$OUT/$name.txt"; } | tr '\n' ' ')"
			return
		fi
		if [ "$tr" = 1 ]; then
			"$PY" tests/gpu/verdicts.py torch "$name" "$mode" "$OUT/$name.json" "$OUT/$name.out" \
				--results "$RESULTS" --trace "$OUT/$name.trace.json" >&2
		else
			"$PY" tests/gpu/verdicts.py torch "$name" "$mode" "$OUT/$name.json" "$OUT/$name.out" \
				--results "$RESULTS" >&2
		fi
	}
	torch_run torch_cupti cupti 1 -- "$TPY" tests/gpu/torch_probe.py --parts compute,graph,fork
	torch_run torch_profiler profiler 1 -- "$TPY" tests/gpu/torch_probe.py --parts profiler
	torch_run torch_uprobes uprobes 0 --gpu uprobes -- "$TPY" tests/gpu/torch_probe.py --parts cublas
fi

finish
