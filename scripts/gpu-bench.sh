#!/usr/bin/env bash
# The per-event cost of contactmap's two GPU transports, on this machine,
# without a GPU (the fake driver and fake CUPTI of tests/gpu_fakes):
#   hook     the agent's contactmap_gpu_hook() with 1 and with 64 records per
#            call: bare (a no-op call) and under contactmap (uprobe + BPF);
#   uprobes  a driver call (cuLaunchKernel, cuCtxSynchronize of the fake
#            driver, which do nothing): bare and under --gpu uprobes
#            (uprobe + uretprobe + BPF).
# Also prints the BPF programs' own average run time (BPF run-time stats).
# Usage: scripts/gpu-bench.sh [N]   (as root, after `make all test-bins`)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-200000}
F=.output/gpu_fakes
AGENT=$PWD/.output/libcontactmap-cupti.so
[ -x $F/hookbench ] && [ -f "$AGENT" ] || { echo "gpu-bench: run 'make all test-bins' first" >&2; exit 1; }
export LD_LIBRARY_PATH=$PWD/$F FAKE_CUDA_SPIN_US=0 FAKE_CUDA_BLOCK_US=0 CONTACTMAP_GPU_WAIT_MS=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])['$1'])"; }
prog_avg() { python3 -c "
import json; r=json.load(open('$1'))
for p in r['observer']['programs']:
    if p['name'] in ('$2',): print(p['avg_ns'], p['run_cnt'])" ; }

echo "== bare (no contactmap), $N calls each"
CUDA_INJECTION64_PATH=$AGENT CONTACTMAP_GPU=cupti $F/hookbench "$N" > "$tmp/bare_cupti"
CUDA_INJECTION64_PATH=$AGENT CONTACTMAP_GPU=uprobes $F/hookbench "$N" > "$tmp/bare_up" 2>/dev/null
echo "== contactmap, CUPTI tier (hook uprobe)"
./contactmap -o "$tmp/cupti.json" -- $F/hookbench "$N" > "$tmp/cm_cupti" 2>/dev/null
echo "== contactmap --gpu uprobes (driver uprobes)"
./contactmap --gpu uprobes -o "$tmp/up.json" -- $F/hookbench "$N" > "$tmp/cm_up" 2>/dev/null

python3 - "$tmp" <<'PY'
import json, sys, os
d = sys.argv[1]
L = lambda f: json.loads(open(os.path.join(d, f)).read().strip().splitlines()[-1])
bc, bu, cc, cu = L("bare_cupti"), L("bare_up"), L("cm_cupti"), L("cm_up")
def avg(rep, name):
    r = json.load(open(os.path.join(d, rep)))
    for p in r["observer"]["programs"]:
        if p["name"] == name and p["run_cnt"]:
            return p["avg_ns"], p["run_cnt"]
    return 0, 0
print(f"hook call, 1 record:        bare {bc['hook_call_1_ns']:8.0f} ns   traced {cc['hook_call_1_ns']:8.0f} ns"
      f"   -> {cc['hook_call_1_ns'] - bc['hook_call_1_ns']:6.0f} ns per call")
per = (cc['hook_call_64_ns'] - bc['hook_call_64_ns'])
print(f"hook call, 64 records:      bare {bc['hook_call_64_ns']:8.0f} ns   traced {cc['hook_call_64_ns']:8.0f} ns"
      f"   -> {per:6.0f} ns per call, {per / 64:5.0f} ns per record")
a, n = avg("cupti.json", "gpu_hook")
print(f"  gpu_hook BPF program alone: {a} ns per call on average ({n} calls, both sizes)")
for k in ("cuLaunchKernel_ns", "cuCtxSynchronize_ns"):
    print(f"{k[:-3]:<26}  bare {bu[k]:8.0f} ns   traced {cu[k]:8.0f} ns   -> {cu[k] - bu[k]:6.0f} ns per call"
          " (uprobe + uretprobe)")
for prog in ("gpu_api_enter", "gpu_api_exit"):
    a, n = avg("up.json", prog)
    print(f"  {prog} BPF program alone: {a} ns per call ({n} calls)")
print(f"(no uprobe: the agent's callbacks plus the fake CUPTI's dispatch add {bc['cuLaunchKernel_ns'] - bu['cuLaunchKernel_ns']:.0f} ns per launch)")
PY
