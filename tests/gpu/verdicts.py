#!/usr/bin/env python3
"""What contactmap's report must show on a real GPU, scenario by scenario.

Used by tests/gpu/run.sh (real_app.cu scenarios) and tests/gpu/check.sh
(torch_probe.py scenarios and the summary). Each call checks one scenario's
report against the program's own ground truth (the last JSON lines of its
stdout), prints ok/FAIL lines, appends one JSON object per check to a results
file (JSON lines) and exits 1 if any check failed.

  verdicts.py real  NAME MODE REPORT STDOUT [--trace T] [--results R]
  verdicts.py torch NAME MODE REPORT STDOUT [--trace T] [--results R]
  verdicts.py summary RESULTS SUMMARY [--host HOST.json] [--elapsed S]
"""
import argparse
import json
import sys
from pathlib import Path

LAUNCH_APIS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cudaLaunchCooperativeKernel",
               "cuLaunchKernel", "cuLaunchKernelEx", "cuLaunchCooperativeKernel")
DRIVER_LAUNCHES = ("cuLaunchKernel", "cuLaunchKernelEx", "cuLaunchCooperativeKernel")


class Verdicts:
    def __init__(self, scenario, results):
        self.scenario = scenario
        self.results = results
        self.ok = True

    def _write(self, obj):
        if self.results:
            with open(self.results, "a") as f:
                f.write(json.dumps(obj) + "\n")

    def expect(self, cond, what, detail=None):
        cond = bool(cond)
        print(f"  {'ok  ' if cond else 'FAIL'} {what}" + (f"  ({detail})" if detail is not None else ""))
        self.ok &= cond
        self._write({"scenario": self.scenario, "check": what, "ok": cond,
                     "detail": None if detail is None else str(detail)})
        return cond

    def note(self, what):
        print(f"  note {what}")
        self._write({"scenario": self.scenario, "note": what})

    def done(self):
        print(f"{'PASS' if self.ok else 'FAIL'} {self.scenario}")
        self._write({"scenario": self.scenario, "passed": self.ok})
        return 0 if self.ok else 1


def load(report, stdout):
    rep = json.loads(Path(report).read_text())
    truths = []
    for line in Path(stdout).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                truths.append(json.loads(line))
            except ValueError:
                pass
    return rep, truths


def api_of(g):
    return {a["name"]: a for a in g.get("api", [])}


def count(api, *names):
    return sum(api.get(n, {}).get("count", 0) for n in names)


def kernels(g, graph):
    return [k for k in g.get("kernels", []) if bool(k.get("graph")) == graph]


def gpu_lost(rep):
    return {k: v for k, v in rep.get("lost", {}).items() if k.startswith("gpu_") and v}


def lifetime_check(v, trace, pid):
    """Every GPU slice of pid lies inside the span of its threads' own slices
    (one clock: the timeline's)."""
    if not trace or not Path(trace).exists():
        v.note("no timeline: kernels against the process lifetime not checked")
        return
    tl = json.loads(Path(trace).read_text())
    mine = [e for e in tl.get("traceEvents", []) if e.get("pid") == pid and e.get("ph") == "X"]
    gpu = [e for e in mine if e.get("cat") == "gpu"]
    host = [e for e in mine if e.get("cat") != "gpu"]
    if not v.expect(gpu and host, "timeline has GPU and host slices", f"{len(gpu)} GPU, {len(host)} host"):
        return
    first = min(e["ts"] for e in host)
    last = max(e["ts"] + e.get("dur", 0) for e in host)
    out = [e for e in gpu if e["ts"] < first or e["ts"] + e.get("dur", 0) > last]
    v.expect(not out, "every GPU slice inside its process's lifetime",
             f"{len(out)} of {len(gpu)} outside [{first:.0f}, {last:.0f}] us"
             + (f", first {out[0]}" if out else ""))
    tl_dropped = tl.get("otherData", {}).get("dropped_in_kernel", 0)
    if tl_dropped:
        v.note(f"{tl_dropped} timeline events dropped (rate limit or ring buffer): slices missing")


def trace_base_ns(tl, pid, start_ns):
    """The timeline's origin on CLOCK_MONOTONIC, from the process's first slice
    (its threads start where the process does)."""
    host = [e["ts"] for e in tl.get("traceEvents", [])
            if e.get("pid") == pid and e.get("ph") == "X" and e.get("cat") != "gpu"]
    return start_ns - min(host) * 1000 if host else None


def common_cupti(v, rep, p, g, final=True):
    a = g.get("agent", {})
    v.expect(g.get("tier") == "cupti", "tier cupti", g.get("tier"))
    v.expect(a.get("status") == "cupti", "agent status cupti", a.get("status"))
    v.expect(a.get("clock") == "monotonic", "clock monotonic", a.get("clock"))
    v.expect(a.get("clock_offset_ns") == 0, "no clock offset", a.get("clock_offset_ns"))
    v.expect(a.get("clock_check") == "agrees", "sync records agree with their calls", a.get("clock_check"))
    v.note(f"CUPTI {a.get('cupti_version')}, driver {a.get('driver_version')}")
    v.expect(g.get("dropped_records") == 0, "no records dropped by CUPTI", g.get("dropped_records"))
    v.expect(g.get("bad_records") == 0, "no bad records", g.get("bad_records"))
    v.expect(g.get("untimed_records") == 0, "no records without timestamps", g.get("untimed_records"))
    v.expect(not gpu_lost(rep), "nothing lost in the GPU maps", gpu_lost(rep))
    if final:
        v.expect(a.get("final_flush") is True, "the agent's final flush arrived", a.get("final_flush"))


def no_probe_rows(v, p):
    rows = [s["name"] for s in p.get("syscalls", []) if s["name"] in ("uretprobe", "uprobe")]
    v.expect(not rows, "no uprobe trampoline syscalls in the program's syscalls", rows)


# ---- real_app.cu -------------------------------------------------------------------

def check_real(v, name, mode, rep, truths, trace, report):
    procs = {p["pid"]: p for p in rep.get("processes", [])}
    want_n = 2 if mode == "two_procs" else 1
    v.expect(len(truths) == want_n, f"{want_n} program(s) reported", len(truths))
    for t in truths:
        p = procs.get(t["pid"])
        if not v.expect(p is not None and "gpu" in p, f"pid {t['pid']} has a gpu object"):
            continue
        g = p["gpu"]
        api = api_of(g)
        s = g.get("sync", {})
        B = t["bytes"]
        n_memcpy = 4 * t["copies"] + 1
        launches = t["launches"] + t.get("captured_launches", 0)
        graph_k = t["graphs"] * t["graph_kernels"]
        cp = {(c.get("kind"), c.get("memory")): c for c in g.get("copies", [])}
        no_probe_rows(v, p)
        cupti = mode in ("cupti", "blocking", "two_procs", "duration", "fork")
        if cupti:
            common_cupti(v, rep, p, g, final=mode != "duration")
            plain = sum(k["count"] for k in kernels(g, False))
            ktime = sum(k["total_ns"] for k in kernels(g, False))
            if mode == "duration":
                # -d 3 of a 10 s run: device rows inside the window, not at exit
                v.expect(plain >= 0.15 * t["launches"], "device rows within a -d window",
                         f"{plain} of {t['launches']} kernels (window {rep['window']['duration_ns'] / 1e9:.1f} s)")
                v.expect(count(api, "cudaLaunchKernel") > 0, "API rows within a -d window")
                continue
            v.expect(plain == t["launches"], "kernels (not graph) == launches", f"{plain} vs {t['launches']}")
            kg = sum(k["count"] for k in kernels(g, True))
            v.expect(kg == graph_k and g.get("graph_kernels") == graph_k, "graph kernels == N x K",
                     f"{kg} rows, {g.get('graph_kernels')} counted, want {graph_k}")
            ev = t["event_ms"] * 1e6
            v.expect(ev > 0 and 0.85 <= ktime / ev <= 1.02, "kernel time ~ CUDA-event time",
                     f"{ktime / 1e6:.3f} ms vs events {ev / 1e6:.3f} ms")
            v.note(f"nominal kernel time {t['launches'] * t['kernel_us'] / 1e3:.3f} ms")
            v.expect(count(api, "cudaLaunchKernel") == launches,
                     "cudaLaunchKernel == launches + captured", f"{count(api, 'cudaLaunchKernel')} vs {launches}")
            v.expect(count(api, *DRIVER_LAUNCHES) == 0, "driver launches not counted again",
                     {n: api[n]["count"] for n in DRIVER_LAUNCHES if n in api})
            v.expect(count(api, *LAUNCH_APIS) == plain + t.get("captured_launches", 0),
                     "launch calls == kernels + captured", f"{count(api, *LAUNCH_APIS)}")
            v.expect(count(api, "cudaGraphLaunch") == t["graphs"], "cudaGraphLaunch count")
            m = api.get("cudaMemcpy", {})
            v.expect(m.get("count") == n_memcpy and m.get("bytes") == n_memcpy * B, "cudaMemcpy count and bytes",
                     f"{m.get('count')} {m.get('bytes')}")
            for kind in ("HtoD", "DtoH"):
                for mem in ("pinned", "pageable"):
                    c = cp.get((kind, mem))
                    v.expect(c and c["count"] == t["copies"] and c["bytes"] == t["copies"] * B,
                             f"{kind} {mem} copies",
                             c and (c["count"], c["bytes"], c["bandwidth_bytes_per_s"]))
            pin, pag = cp.get(("HtoD", "pinned")), cp.get(("HtoD", "pageable"))
            if pin and pag:
                v.note(f"HtoD bandwidth pinned {pin['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, "
                       f"pageable {pag['bandwidth_bytes_per_s'] / 1e9:.1f} GB/s")
            v.expect(count(api, "cudaDeviceSynchronize") == t["device_syncs"], "cudaDeviceSynchronize count")
            v.expect(count(api, "cudaStreamSynchronize") == t["stream_syncs"], "cudaStreamSynchronize count")
            v.expect(s.get("count", 0) >= t["device_syncs"] + t["stream_syncs"],
                     "synchronize calls in the ledger", s.get("count"))
            lifetime_check(v, trace, t["pid"])
            if mode == "fork":
                v.expect(t["child_status"] == 0, "the forked child exits 0", t["child_status"])
                v.expect(0 <= t["child_ms"] < 5000, "the forked child does not hang", f"{t['child_ms']:.0f} ms")
                c = procs.get(t["child_pid"])
                v.expect(c is None or not api_of(c.get("gpu", {})), "no GPU rows under the child's pid",
                         c and c.get("gpu", {}).get("api"))
        else:
            a = g.get("agent", {})
            v.expect(g.get("tier") == "uprobes", "tier uprobes", g.get("tier"))
            v.expect(g.get("kernels") == [], "no device times from uprobes")
            if mode == "static":
                v.expect(not any(n.startswith("cuda") for n in api), "no runtime rows (static cudart)")
                v.note("driver rows: " + ", ".join(f"{n} {a['count']}" for n, a in sorted(api.items())))
                v.expect(count(api, *DRIVER_LAUNCHES) == launches, "cuLaunchKernel* == launches + captured",
                         {n: api[n]["count"] for n in DRIVER_LAUNCHES if n in api})
                v.expect(count(api, "cuGraphLaunch") == t["graphs"], "cuGraphLaunch count")
            else:
                if mode == "uprobes":
                    v.expect(a.get("status") == "forced_uprobes", "agent asked for uprobes", a.get("status"))
                v.expect(count(api, "cudaLaunchKernel") == launches, "cudaLaunchKernel == launches + captured",
                         f"{count(api, 'cudaLaunchKernel')} vs {launches}")
                v.expect(count(api, *DRIVER_LAUNCHES) == 0, "driver launches inside runtime calls not counted",
                         {n: api[n]["count"] for n in DRIVER_LAUNCHES if n in api})
                v.expect(count(api, "cudaGraphLaunch") == t["graphs"], "cudaGraphLaunch count")
                m = api.get("cudaMemcpy", {})
                v.expect(m.get("count") == n_memcpy and m.get("bytes") == n_memcpy * B,
                         "cudaMemcpy count and bytes", f"{m.get('count')} {m.get('bytes')}")
                for mem in ("pinned", "pageable"):
                    c = cp.get(("HtoD", mem))
                    v.expect(c and c["count"] == t["copies"], f"HtoD {mem} (uprobes)", c and c["count"])
                v.expect(count(api, "cudaDeviceSynchronize") == t["device_syncs"], "cudaDeviceSynchronize count")
        wait = s.get("spin_ns", 0) + s.get("blocked_ns", 0)
        v.expect(wait > 0, "GPU wait in the ledger", f"spin {s.get('spin_ns')}, blocked {s.get('blocked_ns')}")
        if mode == "blocking":
            v.expect(s.get("blocked_ns", 0) > s.get("spin_ns", 0), "blocking sync: mostly blocked")
        elif mode == "cupti":
            v.note(f"default sync: spin {s.get('spin_ns')} ns, blocked {s.get('blocked_ns')} ns")
        row = [c for c in p.get("contact_map", []) if c["subsystem"] == "gpu"]
        v.expect(row and row[0]["time_ns"] >= wait, "GPU wait row in the contact map")
        v.note(f"driver ioctls {g.get('driver_ioctls')}, {g.get('driver_ioctl_ns')} ns")


# ---- torch_probe.py ------------------------------------------------------------------

def check_torch(v, name, mode, rep, truths, trace, report):
    if not v.expect(len(truths) >= 1, "torch_probe printed its ground truth"):
        return
    t = truths[-1]
    p = {q["pid"]: q for q in rep.get("processes", [])}.get(t["pid"])
    if not v.expect(p is not None and "gpu" in p, f"pid {t['pid']} has a gpu object"):
        return
    g = p["gpu"]
    api = api_of(g)
    v.note(f"torch {t.get('torch')}, CUDA {t.get('cuda')}, {t.get('device')}")
    no_probe_rows(v, p)
    if mode == "uprobes":
        v.expect(g.get("tier") == "uprobes", "tier uprobes", g.get("tier"))
        v.expect(count(api, *DRIVER_LAUNCHES) > 0, "cuLaunchKernel* rows for cuBLAS work",
                 {n: api[n]["count"] for n in DRIVER_LAUNCHES if n in api})
        v.note("launch rows: " + ", ".join(f"{n} {api[n]['count']}" for n in LAUNCH_APIS if n in api))
        return
    a = g.get("agent", {})
    if mode == "profiler":
        v.expect(g.get("tier") == "cupti", "tier cupti", g.get("tier"))
        v.note(f"profiler saw {t.get('profiler_cuda_events')} CUDA events")
        if a.get("status") == "taken_over":
            # noticed during the run or, at the latest, at the process's exit
            end = p.get("end_ns") or rep.get("window", {}).get("end_ns", 0)
            v.expect(t["profiler_start_ns"] <= a.get("taken_over_ns", 0) <= end,
                     "taken over during or after the profiler block",
                     f"{(a.get('taken_over_ns', 0) - t['profiler_start_ns']) / 1e9:.3f} s after its start")
            v.expect("CUPTI taken over" in Path(report).with_suffix(".txt").read_text()
                     if Path(report).with_suffix(".txt").exists() else True,
                     "the text report says CUPTI was taken over")
            return
        v.expect(a.get("status") == "cupti", "agent status cupti or taken_over", a.get("status"))
        if not trace or not Path(trace).exists():
            v.expect(False, "timeline to find the kernels after the profiler block")
            return
        tl = json.loads(Path(trace).read_text())
        base = trace_base_ns(tl, t["pid"], p["start_ns"])
        end_us = (t["profiler_end_ns"] - base) / 1000 if base is not None else float("inf")
        after = [e for e in tl["traceEvents"] if e.get("pid") == t["pid"] and e.get("cat") == "gpu"
                 and e.get("name", "").startswith("kernel") and e["ts"] > end_us]
        v.expect(len(after) >= t["after_kernels"], "kernels after the profiler block present",
                 f"{len(after)} after it, {t['after_kernels']} launched")
        return
    common_cupti(v, rep, p, g)
    plain = sum(k["count"] for k in kernels(g, False))
    if "graph" in t.get("parts", []):
        want = t["graph_replays"] * t["graph_kernels"]
        v.expect(g.get("graph_kernels") == want, "graph kernels == N x K",
                 f"{g.get('graph_kernels')} vs {t['graph_replays']} x {t['graph_kernels']} "
                 f"(K from {t['graph_kernels_from']})")
    if "compute" in t.get("parts", []):
        ev = (t["matmul_event_ms"] + t["conv_event_ms"]) * 1e6
        ktime = sum(k["total_ns"] for k in kernels(g, False))
        v.expect(ev > 0 and 0.85 <= ktime / ev <= 1.15, "kernel time ~ CUDA-event time",
                 f"{ktime / 1e6:.2f} ms of kernels vs {ev / 1e6:.2f} ms of events "
                 f"(matmul {t['matmul_event_ms']:.2f}, conv {t['conv_event_ms']:.2f})")
    captured = t.get("captured_launches", 0)
    v.expect(count(api, *LAUNCH_APIS) == plain + captured, "launches not double-counted",
             f"{count(api, *LAUNCH_APIS)} launch calls, {plain} kernels, {captured} captured; "
             + ", ".join(f"{n} {api[n]['count']}" for n in LAUNCH_APIS if n in api))
    lifetime_check(v, trace, t["pid"])
    if "fork" in t.get("parts", []):
        v.expect(t["child_status"] == 0, "the forked child exits 0", t["child_status"])
        v.expect(0 <= t["child_ms"] < 5000, "the forked child does not hang", f"{t['child_ms']:.0f} ms")


# ---- the summary ----------------------------------------------------------------------

def summary(results, out, host, elapsed):
    checks, notes, scenarios = [], [], {}
    if Path(results).exists():
        for line in Path(results).read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if "check" in r:
                checks.append(r)
            elif "note" in r:
                notes.append(r)
            elif "passed" in r:
                scenarios[r["scenario"]] = r["passed"]
            elif "skipped" in r:
                scenarios.setdefault(r["scenario"], None)
                notes.append({"scenario": r["scenario"], "note": "skipped: " + r["skipped"]})
    failed = [c for c in checks if not c["ok"]]
    doc = {
        "schema": "contactmap-gpu-check/1",
        "host": json.loads(Path(host).read_text()) if host and Path(host).exists() else {},
        "elapsed_s": elapsed,
        "passed": not failed and all(v is not False for v in scenarios.values()) and bool(checks),
        "scenarios": scenarios,
        "checks": len(checks),
        "failed": failed,
        "notes": notes,
    }
    Path(out).write_text(json.dumps(doc, indent=1) + "\n")
    print(f"summary: {len(scenarios)} scenarios, {len(checks)} checks, {len(failed)} failed "
          f"-> {out}")
    for c in failed:
        print(f"  FAIL {c['scenario']}: {c['check']} ({c['detail']})")
    return 0 if doc["passed"] else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("real", "torch", "summary"))
    ap.add_argument("args", nargs="*")
    ap.add_argument("--trace")
    ap.add_argument("--results")
    ap.add_argument("--host")
    ap.add_argument("--elapsed", type=float)
    o = ap.parse_args()
    if o.what == "summary":
        if len(o.args) != 2:
            ap.error("summary RESULTS SUMMARY")
        return summary(o.args[0], o.args[1], o.host, o.elapsed)
    if len(o.args) != 4:
        ap.error(f"{o.what} NAME MODE REPORT STDOUT")
    name, mode, report, stdout = o.args
    v = Verdicts(name, o.results)
    try:
        rep, truths = load(report, stdout)
    except (OSError, ValueError) as e:
        v.expect(False, "the report and the ground truth read", e)
        return v.done()
    try:
        (check_real if o.what == "real" else check_torch)(v, name, mode, rep, truths, o.trace, report)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as e:
        v.expect(False, "the report has the keys the check reads", f"{type(e).__name__}: {e}")
    return v.done()


if __name__ == "__main__":
    sys.exit(main())
