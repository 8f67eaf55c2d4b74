#!/usr/bin/env bash
# contactmap on a real GPU: builds tests/gpu/real_app.cu with nvcc (shared and
# static cudart) and runs it under contactmap in every GPU tier, checking the
# report against the program's own plan. Not part of `make test` (CI has no
# GPU). Needs root, an NVIDIA driver, the CUDA toolkit and `make all`.
#
#   tests/gpu/run.sh            all scenarios; reports and text maps go to
#                               .output/gpu_real/, a summary to results.txt
#
# Scenarios:
#   cupti        wrap mode, CUPTI tier: exact kernel, copy, API and sync counts;
#                pinned vs pageable bandwidth; GPU wait spinning
#   blocking     cudaDeviceScheduleBlockingSync: GPU wait is mostly blocked
#   uprobes      --gpu uprobes with the shared cudart: exact runtime API counts
#   static       --gpu uprobes with the static cudart: seen through the driver
#   two_procs    two processes under one contactmap, each with its own rows
#   attach       contactmap -p on a running program: uprobes, exact counts
set -uo pipefail
cd "$(dirname "$0")/../.."
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
OUT=.output/gpu_real
CM=./contactmap
mkdir -p "$OUT"
RES=$OUT/results.txt
: > "$RES"

die() { echo "gpu/run.sh: $*" >&2; exit 2; }
[ "$(id -u)" = 0 ] || die "needs root (BPF)"
[ -x "$CM" ] || die "build contactmap first: make all"
[ -f .output/libcontactmap-cupti.so ] || die "the CUPTI agent is not built: make all (with $CUDA_HOME)"
[ -x "$CUDA_HOME/bin/nvcc" ] || die "no nvcc in $CUDA_HOME/bin"
command -v nvidia-smi >/dev/null && nvidia-smi -L | tee -a "$RES" || echo "(no nvidia-smi)" | tee -a "$RES"

NVCC_ARCH=${NVCC_ARCH:--gencode arch=compute_75,code=[sm_75,compute_75] -gencode arch=compute_90,code=[sm_90,compute_90]}
echo "building real_app with nvcc" >&2
"$CUDA_HOME/bin/nvcc" -O2 $NVCC_ARCH --cudart shared -o $OUT/real_app tests/gpu/real_app.cu \
	-Xlinker -rpath -Xlinker "$CUDA_HOME/lib64" || die "nvcc failed"
"$CUDA_HOME/bin/nvcc" -O2 $NVCC_ARCH --cudart static -o $OUT/real_app_static tests/gpu/real_app.cu \
	|| die "nvcc failed"

PLAN=(--launches 20 --kernel-us 500 --copies 4 --bytes $((16 << 20)) --graphs 3 --graph-kernels 10 --syncs 5)
fail=0

check() {   # check NAME REPORT STDOUT MODE: python asserts; prints PASS/FAIL lines
	python3 - "$@" <<'PY'
import json, sys
name, rep_path, out_path, mode = sys.argv[1:5]
rep = json.load(open(rep_path))
truths = [json.loads(l) for l in open(out_path) if l.startswith("{")]
ok = True
def expect(cond, what):
    global ok
    print(f"  {'ok  ' if cond else 'FAIL'} {what}")
    ok &= bool(cond)
def note(what):
    print(f"  note {what}")
procs = {p["pid"]: p for p in rep["processes"]}
for t in truths:
    p = procs.get(t["pid"])
    expect(p is not None and "gpu" in p, f"pid {t['pid']} has a gpu object")
    if not p or "gpu" not in p:
        continue
    g = p["gpu"]
    api = {a["name"]: a for a in g["api"]}
    n_memcpy = 4 * t["copies"] + 1
    B = t["bytes"]
    cp = {(c["kind"], c["memory"]): c for c in g["copies"]}
    s = g["sync"]
    want_tier = "cupti" if mode in ("cupti", "blocking", "two_procs") else "uprobes"
    expect(g["tier"] == want_tier, f"tier {g['tier']} == {want_tier}")
    if want_tier == "cupti":
        kern = sum(k["count"] for k in g["kernels"])
        graphk = sum(k["count"] for k in g["kernels"] if k["graph"])
        expect(kern == t["launches"] + t["graphs"] * t["graph_kernels"], f"kernels {kern}")
        expect(graphk == t["graphs"] * t["graph_kernels"], f"graph kernels {graphk}")
        ktime = sum(k["total_ns"] for k in g["kernels"] if not k["graph"])
        expect(ktime >= 0.8 * t["launches"] * t["kernel_us"] * 1000, f"kernel time {ktime} ns")
        expect(api.get("cudaLaunchKernel", {}).get("count") == t["launches"], "cudaLaunchKernel count")
        expect(api.get("cudaGraphLaunch", {}).get("count") == t["graphs"], "cudaGraphLaunch count")
        expect(api.get("cudaMemcpy", {}).get("count") == n_memcpy, "cudaMemcpy count")
        expect("cuLaunchKernel" not in api, "driver launches not counted twice")
        for kind in ("HtoD", "DtoH"):
            for mem in ("pinned", "pageable"):
                c = cp.get((kind, mem))
                expect(c and c["count"] == t["copies"] and c["bytes"] == t["copies"] * B,
                       f"{kind} {mem}: {c and (c['count'], c['bytes'], c['bandwidth_bytes_per_s'])}")
        pin, pag = cp.get(("HtoD", "pinned")), cp.get(("HtoD", "pageable"))
        if pin and pag:
            note(f"HtoD bandwidth pinned {pin['bandwidth_bytes_per_s']/1e9:.1f} GB/s, "
                f"pageable {pag['bandwidth_bytes_per_s']/1e9:.1f} GB/s")
        expect(s["count"] == t["device_syncs"] + t["stream_syncs"], f"sync calls {s['count']}")
        expect(g["dropped_records"] == 0, f"dropped {g['dropped_records']}")
        expect(g["agent"]["clock"] in ("monotonic", "calibrated"), f"clock {g['agent']['clock']}")
    else:
        if mode == "static":
            expect(not any(n.startswith("cuda") for n in api), "no runtime rows (static cudart)")
            note("driver rows: " + ", ".join(f"{n} {a['count']}" for n, a in sorted(api.items())))
            expect(api.get("cuGraphLaunch", {}).get("count") == t["graphs"], "cuGraphLaunch count")
        else:
            expect(api.get("cudaLaunchKernel", {}).get("count") == t["launches"], "cudaLaunchKernel count")
            expect(api.get("cudaGraphLaunch", {}).get("count") == t["graphs"], "cudaGraphLaunch count")
            m = api.get("cudaMemcpy", {})
            expect(m.get("count") == n_memcpy and m.get("bytes") == n_memcpy * B, f"cudaMemcpy {m.get('count')} {m.get('bytes')}")
            for mem in ("pinned", "pageable"):
                c = cp.get(("HtoD", mem))
                expect(c and c["count"] == t["copies"], f"HtoD {mem} (uprobes) {c and c['count']}")
            expect(s["count"] == t["device_syncs"] + t["stream_syncs"], f"sync calls {s['count']}")
        expect(g["kernels"] == [], "no device times from uprobes")
    wait = s["spin_ns"] + s["blocked_ns"]
    expect(wait > 0, f"GPU wait {wait} ns (spin {s['spin_ns']}, blocked {s['blocked_ns']})")
    if mode == "blocking":
        expect(s["blocked_ns"] > s["spin_ns"], "blocking sync: mostly blocked")
    elif mode == "cupti":
        note(f"default sync: spin {s['spin_ns']} ns, blocked {s['blocked_ns']} ns")
    row = [c for c in p["contact_map"] if c["subsystem"] == "gpu"]
    expect(row and row[0]["time_ns"] >= wait, "GPU wait row in the contact map")
    note(f"driver ioctls {g['driver_ioctls']}, {g['driver_ioctl_ns']} ns")
expect(len(truths) == (2 if mode == "two_procs" else 1), f"{len(truths)} program(s) reported")
print(f"{'PASS' if ok else 'FAIL'} {name}")
sys.exit(0 if ok else 1)
PY
}

run() {   # run NAME MODE [contactmap options] -- PROGRAM ARGS
	local name=$1 mode=$2; shift 2
	local rep=$OUT/$name.json
	echo "== $name" | tee -a "$RES"
	if ! "$CM" -o "$rep" "$@" > "$OUT/$name.out" 2> "$OUT/$name.txt"; then
		echo "FAIL $name: contactmap exited $?" | tee -a "$RES"; tail -5 "$OUT/$name.txt"; fail=1; return
	fi
	check "$name" "$rep" "$OUT/$name.out" "$mode" | tee -a "$RES" || fail=1
	grep -A12 "^  GPU  tier" "$OUT/$name.txt" | head -14 >> "$RES"
}

run cupti cupti -- $OUT/real_app "${PLAN[@]}"
run blocking blocking -- $OUT/real_app "${PLAN[@]}" --blocking
run uprobes uprobes --gpu uprobes -- $OUT/real_app "${PLAN[@]}"
run static static --gpu uprobes -- $OUT/real_app_static "${PLAN[@]}"
run two_procs two_procs -- sh -c "$OUT/real_app ${PLAN[*]} & $OUT/real_app ${PLAN[*]}; wait"

# attach mode: start, attach, then let it go once the driver is probed
echo "== attach" | tee -a "$RES"
coproc APP { exec $OUT/real_app --wait-stdin "${PLAN[@]}"; }
read -r line <&"${APP[0]}"
[ "$line" = ready ] || { echo "FAIL attach: app said '$line'" | tee -a "$RES"; fail=1; }
"$CM" -v -p "$APP_PID" -o $OUT/attach.json 2> $OUT/attach.txt &
cm=$!
for _ in $(seq 100); do grep -q "probed in .*libcuda" $OUT/attach.txt && break; sleep 0.1; done
echo go >&"${APP[1]}"
cat <&"${APP[0]}" > $OUT/attach.out
wait "$cm" || { echo "FAIL attach: contactmap exited $?" | tee -a "$RES"; fail=1; }
check attach attach $OUT/attach.json $OUT/attach.out attach | tee -a "$RES" || fail=1

echo "summary: $(grep -c '^PASS' "$RES") passed, $(grep -c '^FAIL' "$RES") failed; details in $RES"
exit $fail
