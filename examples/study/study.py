#!/usr/bin/env python3
"""The study: which OS subsystems sit on the critical path of inference latency,
in three concurrency models of one inference service.

    examples/study/study.py            # ~4-5 min: 3 modes x 3 loads x 15 s, controls
    examples/study/study.py --quick    # ~1 min: 3 modes x 1 load x 5 s
    make study / make study-quick      # the same, after building contactmap

For each concurrency model of examples/server/server.py (threads, processes,
asyncio) and each offered load, it starts the server, warms it up, attaches
`contactmap -p <server and worker pids>` for exactly the load window, drives
examples/server/loadgen.py (open-loop Poisson arrivals), stops both, and keeps
everything under the results directory (.output/study/ by default):

    <mode>-<rate>.json      contactmap's report          .txt  its text map (-t)
    <mode>-<rate>.load.json the load generator's result  .server.json the server's own figures
    diff-<a>-vs-<b>.txt     `contactmap diff` between modes (when diff is implemented)

Then it prints the contact maps' headline rows side by side, runs `contactmap
diff` between the modes and scripts/plot.py (each when available, with a note
when not), draws its own plots, and writes docs/study.md (--quick writes into
the results directory instead, leaving the committed study alone).

Everything runs on 127.0.0.1; every child is bounded in time and stopped on
exit, error or Ctrl-C.
"""
import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SERVER = REPO / "examples" / "server" / "server.py"
LOADGEN = REPO / "examples" / "server" / "loadgen.py"
PYTHON = "/usr/bin/python3"          # Debian's, with python3-torch
MODES = ("threads", "processes", "asyncio")
MIX = "mlp=0.5,cnn=0.25,lstm=0.25"
BATCH = "1-8"                          # items per request, drawn uniformly
RATES, QUICK_RATE = "30,80,140", "80"
# The allocator-churn control run: glibc malloc with trimming and mmap'd
# chunks effectively off (freed memory stays in the heap, nothing is handed
# back to the kernel and faulted in again).
NO_TRIM_ENV = {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1073741824:"
                                 "glibc.malloc.mmap_threshold=1073741824:"
                                 "glibc.malloc.top_pad=67108864"}

# Off-CPU causes that mean "waiting for work", per thread role (the server
# names its threads so that these are tell-apart). Time in them is not on any
# request's critical path; everything else a serving thread does is.
IDLE_CAUSES = {
    "http": {"syscall:accept4", "syscall:accept"},     # pre-threaded accept
    "worker": {"syscall:read"},                        # process worker: next request on its pipe
    "infer": {"syscall:read"},                         # asyncio's executor: doorbell pipe
    "loop": {"syscall:epoll_wait", "syscall:epoll_pwait"},
    # threads the server did not start itself (a library's pool, e.g. OpenMP
    # for torch when its thread count is not set per thread) wait for work in futex
    "lib": {"syscall:futex"},
}
ROLE_LABELS = {"http": "HTTP threads", "worker": "worker processes", "infer": "inference threads",
               "loop": "event loop", "main": "main thread (waits for signals)",
               "lib": "threads started by libraries"}
SUBSYSTEM_LABELS = {"cpu_user": "CPU (user)", "cpu_syscall": "syscalls (on-CPU)",
                    "runq": "run queue", "sync": "sync (futex)", "file_io": "file I/O",
                    "network": "network", "memory": "memory", "poll": "poll/wait",
                    "sleep": "sleep", "process": "process mgmt", "other": "other",
                    "block_io": "block I/O wait", "unattributed": "unattributed", "gpu": "GPU"}


def log(msg):
    print(f"study: {msg}", file=sys.stderr, flush=True)


def role_of(tid, proc, named):
    """A thread's role: by the name the server gave it (NAMED: tid -> name,
    from the server's stop line); a worker process's own thread; else 'lib'."""
    name = named.get(str(tid))
    if name is None and proc["comm"].startswith("worker-") and tid == proc["pid"]:
        name = proc["comm"]
    for prefix, role in (("http-", "http"), ("worker-", "worker"), ("infer-", "infer"),
                         ("srv-asyncio", "loop"), ("srv-", "main")):
        if name and name.startswith(prefix):
            return role
    return "lib"


def syscall_groups():
    groups = {}
    for line in (REPO / "maps" / "syscalls_x86_64.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        _nr, name, group = line.split("\t")[:3]
        groups[name] = group
    return groups


# ----------------------------------------------------------------------------
# running one case

class Child:
    """A child process with its stdout/stderr in files; stopped on close()."""

    def __init__(self, argv, out, err, env=None):
        self.argv = argv
        self.out_path, self.err_path = Path(out), Path(err)
        self.proc = subprocess.Popen(argv, stdout=open(out, "w"), stderr=open(err, "w"),
                                     stdin=subprocess.DEVNULL, cwd=REPO,
                                     env=dict(os.environ, **env) if env else None)

    def wait_for(self, path, needle, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in Path(path).read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{what} exited ({self.proc.returncode}) before it was ready: "
                                   f"{self.tail()}")
            time.sleep(0.05)
        raise RuntimeError(f"{what} not ready after {timeout} s: {self.tail()}")

    def tail(self):
        return (self.err_path.read_text(errors="replace")[-1500:] or
                self.out_path.read_text(errors="replace")[-1500:])

    def stop(self, sig=signal.SIGINT, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def json_lines(path):
    out = []
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def run_case(args, mode, rate, res, variant=None):
    """Server + warm-up + contactmap attached over one load window. VARIANT:
    None, or 'no-trim' (glibc malloc never gives memory back: NO_TRIM_ENV)."""
    name = f"{mode}-{rate:g}" if not variant else f"{mode}-{variant}-{rate:g}"
    srv = Child([PYTHON, str(SERVER), "--mode", mode, "--max-seconds",
                 str(int(args.duration * 3 + 120))],
                res / f"{name}.server.out", res / f"{name}.server.err",
                env=NO_TRIM_ENV if variant == "no-trim" else None)
    cm = None
    try:
        srv.wait_for(srv.out_path, '"ready"', 120, f"server ({mode})")
        ready = json_lines(srv.out_path)[0]
        port, pids = ready["port"], [ready["pid"]] + ready["worker_pids"]
        # warm-up, untraced: first connections, allocator arenas, lazy init
        subprocess.run([PYTHON, str(LOADGEN), "--port", str(port), "--rate", "40",
                        "--duration", "1.5", "--mix", MIX, "--batch", BATCH, "--seed", "99"],
                       check=True, capture_output=True, timeout=60)
        _reset(port)
        report = res / f"{name}.json"
        if report.exists():
            report.unlink()
        cm = Child([str(args.contactmap), "-v", "-p", ",".join(map(str, pids)), "-o", str(report)],
                   res / f"{name}.cm.out", res / f"{name}.cm.err")
        cm.wait_for(cm.err_path, "tracing", 60, "contactmap")
        cpu0 = cpu_sample()
        load = subprocess.run([PYTHON, str(LOADGEN), "--port", str(port), "--rate", f"{rate:g}",
                               "--duration", str(args.duration), "--mix", MIX, "--batch", BATCH,
                               "--grace", "5", "-o", str(res / f"{name}.load.json")],
                              check=True, capture_output=True, text=True,
                              timeout=args.duration + 60)
        cpu1 = cpu_sample()
        rc = cm.stop(signal.SIGINT)
        if rc != 0 or not report.exists():
            raise RuntimeError(f"contactmap exited {rc} without a report: {cm.tail()}")
        cm = None
        srv.stop(signal.SIGINT)
        stopped = [d for d in json_lines(srv.out_path) if d.get("event") == "stopped"]
        server_stats = stopped[-1] if stopped else {}
        (res / f"{name}.server.json").write_text(json.dumps(server_stats) + "\n")
        text = subprocess.run([str(args.contactmap), "report", "-t", str(report)],
                              capture_output=True, text=True, timeout=60)
        (res / f"{name}.txt").write_text(text.stdout + text.stderr)
        meta = {"mode": mode, "rate": rate, "name": name, "ready": ready, "variant": variant,
                "cpu": {k: cpu1[k] - cpu0[k] for k in cpu0}}
        (res / f"{name}.case.json").write_text(json.dumps(meta) + "\n")
        return load_case(res, meta)
    finally:
        if cm:
            cm.stop(signal.SIGINT)
        srv.stop(signal.SIGINT)


def load_case(res, meta):
    """A case from its files in the results directory (also for --reuse)."""
    name = meta["name"]
    return dict(meta, load=json.loads((res / f"{name}.load.json").read_text()),
                server=json.loads((res / f"{name}.server.json").read_text()),
                report=json.loads((res / f"{name}.json").read_text()))


def cpu_sample():
    """Machine-wide busy CPU time (/proc/stat) and the CPU time of reaped
    children (the load generator), in ns, with a monotonic timestamp."""
    import resource
    hz = os.sysconf("SC_CLK_TCK")
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = f[3] + (f[4] if len(f) > 4 else 0)          # idle + iowait
    busy = sum(f[:8]) - idle                           # guest time is inside user
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"t": time.monotonic_ns(), "busy": busy * 1e9 / hz,
            "children": (ru.ru_utime + ru.ru_stime) * 1e9}


def machine_facts(seconds=2.0):
    """Before the runs: how busy the machine already is, and what the
    microbenchmarks (untraced) say a syscall, a switch and a fault cost here."""
    a = cpu_sample()
    time.sleep(seconds)
    b = cpu_sample()
    facts = {"background_cpus": (b["busy"] - a["busy"]) / (b["t"] - a["t"])}
    mb = REPO / ".output" / "microbenches"
    for key, argv in (("syscall", ["syscall_cost", "20000", "0"]),
                      ("ctx_switch", ["ctx_switch", "2000"]),
                      ("fault", ["page_faults", "4096", "4k"])):
        try:
            out = subprocess.run([str(mb / argv[0])] + argv[1:], capture_output=True,
                                 text=True, timeout=60)
            facts[key] = json.loads(out.stdout.strip().splitlines()[-1])
        except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
            log(f"note: microbenchmark {argv[0]} not run (make test-bins builds it)")
    return facts


def churn_ab(pairs):
    """examples/study/churn.py with glibc's defaults and with NO_TRIM_ENV,
    alternating, PAIRS times each (background load drifts: alternate, then
    take medians)."""
    runs = {"default": [], "no-trim": []}
    for i in range(pairs):
        for kind, env in (("default", None), ("no-trim", NO_TRIM_ENV)):
            try:
                out = subprocess.run([PYTHON, str(REPO / "examples" / "study" / "churn.py"),
                                      "--requests", "200", "--reps", "3"],
                                     capture_output=True, text=True, timeout=300,
                                     env=dict(os.environ, **env) if env else None)
                runs[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as e:
                log(f"note: churn.py ({kind}) failed: {e}")
    return runs


def _reset(port):
    """POST /stats/reset (the server's figures then cover the traced window)."""
    import urllib.request
    req = urllib.request.Request(f"http://127.0.0.1:{port}/stats/reset", data=b"", method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()


# ----------------------------------------------------------------------------
# analysis

def cause_group(cause, groups):
    if cause == "page_fault":
        return "memory"
    if cause.startswith("syscall:"):
        return groups.get(cause[8:], "other")
    return "other"


def analyse(case, groups):
    """The figures of one case: headline rows, serving view, per-request counts."""
    rep, load = case["report"], case["load"]
    n = max(1, load["completed"])
    roles = {}
    serving = {}            # subsystem -> ns of serving (non-idle) thread time
    idle_ns = 0
    offcpu_causes = {}      # non-idle cause -> ns
    for p in rep["processes"]:
        # on-CPU time in syscalls, split by group in the proportions of this process's rows
        sc_on = {}
        for s in p["syscalls"]:
            g = s.get("group") or groups.get(s["name"], "other")
            sc_on[g] = sc_on.get(g, 0) + s["oncpu_ns"]
        sc_total = sum(sc_on.values()) or 1
        for t in p["threads"]:
            role = role_of(t["tid"], p, case["server"].get("threads", {}))
            L = t["ledger"]
            r = roles.setdefault(role, {"threads": 0, "wall": 0, "idle": 0, "oncpu": 0,
                                        "runq": 0, "waits": {}})
            r["threads"] += 1
            r["wall"] += L["wall_ns"]
            if role == "main":
                r["idle"] += L["wall_ns"]
                idle_ns += L["wall_ns"]
                continue
            r["oncpu"] += L["oncpu_ns"]
            r["runq"] += L["runq_ns"]
            serving["cpu_user"] = serving.get("cpu_user", 0) + L["oncpu_user_ns"]
            for g, v in sc_on.items():
                serving[g] = serving.get(g, 0) + L["oncpu_syscall_ns"] * v / sc_total
            serving["runq"] = serving.get("runq", 0) + L["runq_ns"]
            serving["unattributed"] = serving.get("unattributed", 0) + L["unattributed_ns"]
            for cause, ns in L["offcpu_by_cause"].items():
                if cause in IDLE_CAUSES.get(role, ()):
                    r["idle"] += ns
                    idle_ns += ns
                    continue
                r["waits"][cause] = r["waits"].get(cause, 0) + ns
                offcpu_causes[cause] = offcpu_causes.get(cause, 0) + ns
                g = cause_group(cause, groups)
                serving[g] = serving.get(g, 0) + ns
    serving = {k: v for k, v in serving.items() if v > 0}
    busy = sum(serving.values())

    def sc(name):
        return sum(s["count"] for p in rep["processes"] for s in p["syscalls"] if s["name"] == name)

    def sc_group(group):
        return sum(s["count"] for p in rep["processes"] for s in p["syscalls"]
                   if (s.get("group") or groups.get(s["name"])) == group)

    procs = rep["processes"]
    counts = {
        "syscalls": sum(s["count"] for p in procs for s in p["syscalls"]),
        "futex": sc("futex"),
        "read+write": sc("read") + sc("write"),
        "socket": sc_group("network"),
        "memory syscalls": sc_group("memory"),
        "minor faults": sum(p["faults"]["minor"] for p in procs),
        "switches": sum(p["sched"]["voluntary_switches"] + p["sched"]["involuntary_switches"]
                        for p in procs),
        "run-queue waits": sum(p["sched"]["runq_waits"] for p in procs),
    }
    mem_calls = {}
    for p in procs:
        for s_ in p["syscalls"]:
            if (s_.get("group") or groups.get(s_["name"])) == "memory":
                mem_calls[s_["name"]] = mem_calls.get(s_["name"], 0) + s_["count"]
    cpu = case.get("cpu") or {}
    t_ns = cpu.get("t") or 1
    server_cpus = rep["totals"]["oncpu_ns"] / max(1, rep["window"]["duration_ns"])
    loadgen_cpus = cpu.get("children", 0) / t_ns
    busy_cpus = cpu.get("busy", 0) / t_ns
    obs = rep.get("observer", {})
    return {
        "cpus": {"busy": busy_cpus, "server": server_cpus, "loadgen": loadgen_cpus,
                 "rest": max(0.0, busy_cpus - server_cpus - loadgen_cpus),
                 "n": rep["host"].get("cpus", 0)},
        "mem_calls": {k: v / n for k, v in sorted(mem_calls.items(), key=lambda kv: -kv[1])},
        "n": n, "wall": rep["totals"]["wall_ns"], "window": rep["window"]["duration_ns"],
        "headline": rep["contact_map"], "serving": serving, "busy": busy, "idle": idle_ns,
        "roles": roles, "causes": offcpu_causes,
        "per_req": {k: v / n for k, v in counts.items()},
        "counts": counts,
        "observer_share": obs.get("cpu_share"),
        "lost": {k: v for k, v in rep.get("lost", {}).items() if v},
    }


# ----------------------------------------------------------------------------
# output helpers

def ms(ns):
    return ns / 1e6


def fmt_t(ns):
    if ns >= 1e9:
        return f"{ns / 1e9:.2f} s"
    if ns >= 1e6:
        return f"{ns / 1e6:.1f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.0f} us"
    return f"{ns:.0f} ns"


def headline_rows(a, k=5):
    return [(SUBSYSTEM_LABELS.get(r["subsystem"], r.get("label", r["subsystem"])),
             r["time_ns"], r["share"]) for r in a["headline"][:k]]


def serving_rows(a, k=6):
    rows = sorted(a["serving"].items(), key=lambda kv: -kv[1])[:k]
    return [(SUBSYSTEM_LABELS.get(g, g), v, v / a["busy"] if a["busy"] else 0) for g, v in rows]


def print_side_by_side(cases, title, rows_fn):
    cols = [(f"{c['mode']} @ {c['rate']:g}/s", rows_fn(c["a"])) for c in cases]
    w = 34
    print(f"\n{title}")
    print("".join(f"{h:<{w}}" for h, _ in cols))
    for i in range(max(len(r) for _, r in cols)):
        line = ""
        for _, rows in cols:
            if i < len(rows):
                lab, t, sh = rows[i]
                line += f"{lab:<17}{fmt_t(t):>9}{sh * 100:6.1f}%  "
            else:
                line += " " * w
        print(line)


def try_diff(args, cases, res):
    """contactmap diff between the modes at each load; a note when not implemented."""
    outs, note = [], None
    by = {(c["mode"], c["rate"]): c for c in cases}
    for rate in args.rates:
        for a, b in (("threads", "processes"), ("threads", "asyncio")):
            if (a, rate) not in by or (b, rate) not in by:
                continue
            ca, cb = by[(a, rate)], by[(b, rate)]
            p = subprocess.run([str(args.contactmap), "diff", str(res / f"{ca['name']}.json"),
                                str(res / f"{cb['name']}.json")],
                               capture_output=True, text=True, timeout=60)
            if p.returncode != 0:
                note = (f"`contactmap diff` is not available in this build "
                        f"({(p.stderr or p.stdout).strip().splitlines()[-1] if (p.stderr or p.stdout).strip() else 'exit ' + str(p.returncode)}); "
                        f"the side-by-side tables here are the study's own")
                return [], note
            path = res / f"diff-{ca['name']}-vs-{cb['name']}.txt"
            path.write_text(p.stdout)
            outs.append((ca["name"], cb["name"], path, p.stdout))
    return outs, note


def try_plot_script(args, cases, res):
    script = REPO / "scripts" / "plot.py"
    if not script.exists():
        return None, "scripts/plot.py is not in this tree yet: its plots were skipped"
    made = []
    for c in cases:
        png = res / f"{c['name']}.plot.png"
        p = subprocess.run([PYTHON, str(script), str(res / f"{c['name']}.json"), "-o", str(png)],
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0 or not png.exists():
            return made, (f"scripts/plot.py failed ({(p.stderr or '').strip()[-200:]!r}); "
                          f"its plots were skipped")
        made.append(png)
    return made, None


# ----------------------------------------------------------------------------
# plots (matplotlib, small PNGs)

CAT_ORDER = ["cpu_user", "cpu_syscall", "runq", "sync", "file_io", "network", "memory",
             "poll", "process", "sleep", "other", "block_io", "unattributed"]
CAT_COLORS = {"cpu_user": "#4c72b0", "runq": "#dd8452", "sync": "#c44e52", "file_io": "#55a868",
              "network": "#8172b3", "memory": "#937860", "poll": "#da8bc3", "process": "#8c8c8c",
              "sleep": "#ccb974", "other": "#64b5cd", "block_io": "#2f4b7c",
              "unattributed": "#000000", "cpu_syscall": "#9fb6d9"}


def plots(cases, outdir, rates):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (apt-get install python3-matplotlib): no plots")
        return []
    outdir.mkdir(parents=True, exist_ok=True)
    made = []
    colors = {"threads": "#4c72b0", "processes": "#dd8452", "asyncio": "#55a868"}

    # 1. latency percentiles vs offered load
    fig, axes = plt.subplots(1, 3, figsize=(9, 3), sharey=True)
    for ax, q in zip(axes, ("p50_ms", "p95_ms", "p99_ms")):
        for mode in MODES:
            pts = [(c["rate"], c["load"]["latency_ms"][q]) for c in cases
                   if c["mode"] == mode and c["load"]["latency_ms"][q] is not None]
            if pts:
                ax.plot(*zip(*pts), marker="o", label=mode, color=colors[mode])
        ax.set_title(q.replace("_ms", ""))
        ax.set_xlabel("offered load (req/s)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("latency (ms)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    p = outdir / "latency.png"
    fig.savefig(p, dpi=80)
    plt.close(fig)
    made.append(p)

    # 2. serving time per request by subsystem (stacked bars)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    labels = [f"{c['mode']}\n{c['rate']:g}/s" for c in cases]
    bottoms = [0.0] * len(cases)
    for cat in CAT_ORDER:
        vals = [ms(c["a"]["serving"].get(cat, 0)) / c["a"]["n"] for c in cases]
        if not any(v > 0.005 for v in vals):
            continue
        ax.bar(labels, vals, bottom=bottoms, label=SUBSYSTEM_LABELS[cat], color=CAT_COLORS[cat])
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax.set_ylabel("thread-ms per request")
    ax.set_title("Serving time per request by OS subsystem (waiting-for-work excluded)")
    ax.legend(fontsize=7, ncol=1, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    p = outdir / "serving.png"
    fig.savefig(p, dpi=80)
    plt.close(fig)
    made.append(p)

    # 3. contact maps (all thread time, contactmap's own rows), shares
    fig, ax = plt.subplots(figsize=(9, 3.6))
    bottoms = [0.0] * len(cases)
    subs = []
    for c in cases:
        for r in c["a"]["headline"]:
            if r["subsystem"] not in subs:
                subs.append(r["subsystem"])
    for sub in sorted(subs, key=lambda s: CAT_ORDER.index(s) if s in CAT_ORDER else 99):
        vals = [100 * sum(r["share"] for r in c["a"]["headline"] if r["subsystem"] == sub)
                for c in cases]
        if not any(v > 0.2 for v in vals):
            continue
        ax.bar(labels, vals, bottom=bottoms, label=SUBSYSTEM_LABELS.get(sub, sub),
               color=CAT_COLORS.get(sub, "#cccccc"))
        bottoms = [b + v for b, v in zip(bottoms, vals)]
    ax.set_ylabel("% of thread time")
    ax.set_title("contactmap's contact maps (all thread time, idle waits included)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    p = outdir / "contact-maps.png"
    fig.savefig(p, dpi=80)
    plt.close(fig)
    made.append(p)
    return made


# ----------------------------------------------------------------------------
# docs/study.md

def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def f1(x):
    return "-" if x is None else f"{x:.1f}"


def f2(x):
    return "-" if x is None else f"{x:.2f}"


def write_doc(args, cases, doc, plot_paths, diffs, diff_note, plot_note, facts, control):
    host = cases[0]["report"]["host"]
    mid = sorted(args.rates)[len(args.rates) // 2]
    hi = max(args.rates)
    lo = min(args.rates)
    by = {(c["mode"], c["rate"]): c for c in cases}
    rel = os.path.relpath
    L = []
    L.append("# Study: which parts of the OS are on the critical path of inference latency?")
    L.append("")
    L.append(f"Generated by `{' '.join(['examples/study/study.py'] + args.argv)}` "
             f"on {datetime.date.today().isoformat()}: Linux {host.get('kernel')}, "
             f"{host.get('cpus')} CPUs ({host.get('cpu_model')}), "
             f"{host.get('memory_bytes', 0) / 2**30:.1f} GiB; a VM shared with other work, so "
             f"absolute figures carry its noise. Every number below comes from that run "
             f"(raw reports in `{rel(args.results, REPO)}/`).")
    L.append("")
    L.append("## Set-up")
    L.append("")
    L.append(f"- **Service** (`examples/server/`): three small PyTorch models with random weights "
             f"(MLP ~0.3 ms, CNN ~1.6 ms, LSTM ~1.9 ms of one core), one `infer(name, payload)` "
             f"code path, served over HTTP on 127.0.0.1 in three concurrency models: **threads** "
             f"(4 threads, each accepting and serving whole requests), **processes** (4 HTTP "
             f"threads handing requests to 2 forked worker processes over pipes), **asyncio** "
             f"(one event loop, inference in 4 threads off the loop). torch runs each "
             f"inference on 1 thread.")
    L.append(f"- **Load** (`loadgen.py`): open-loop Poisson arrivals at {', '.join(f'{r:g}' for r in args.rates)} "
             f"requests/s for {args.duration:g} s each, mix {MIX}, {BATCH} items per request "
             f"(uniform), one connection per request; "
             f"latency from each request's scheduled arrival to its reply. The generator runs on "
             f"the same 2 CPUs.")
    L.append("- **Tracing**: after an untraced warm-up, `contactmap -p <server and worker pids>` "
             "is attached for exactly the load window.")
    L.append("- **Serving time** vs **waiting for work**: the server names its threads so that "
             "idle waits are told apart: HTTP threads idle in `accept4`, worker processes and "
             "asyncio's inference threads in `read` on their pipe, the event loop in "
             "`epoll_wait`, main threads in `rt_sigtimedwait`. contactmap's contact map counts "
             "all thread time (idle included); the *serving view* below drops those idle waits, "
             "leaving the time threads spent on requests: the critical path, summed over threads.")
    mb = []
    if "syscall" in facts:
        mb.append(f"a `getpid` round trip {facts['syscall']['getpid']['ns_per_call']:.0f} ns")
    if "ctx_switch" in facts:
        mb.append(f"a pipe ping-pong between two threads on one CPU "
                  f"{facts['ctx_switch']['ns_per_round_trip'] / 1000:.1f} us (two switches)")
    if "fault" in facts:
        mb.append(f"a first-touch 4 KiB page fault {facts['fault']['ns_per_fault'] / 1000:.1f} us")
    L.append(f"- **This machine**: before the runs {facts['background_cpus']:.2f} of "
             f"{host.get('cpus')} CPUs were already busy with other work"
             + (f"; the microbenchmarks (untraced) measured {', '.join(mb)}" if mb else "")
             + ".")
    L.append("")

    # latency
    L.append("## Latency and throughput")
    L.append("")
    rows = []
    for c in cases:
        ld, sv = c["load"], c["server"]
        lag = sv.get("loop_lag", {})
        cp = c["a"]["cpus"]
        rows.append([c["mode"], f"{c['rate']:g}", f"{ld['throughput_rps']:.0f}",
                     f1(ld["latency_ms"]["p50_ms"]), f1(ld["latency_ms"]["p95_ms"]),
                     f1(ld["latency_ms"]["p99_ms"]), ld["errors"] + ld["shed"],
                     f2(sv.get("infer", {}).get("p50_ms")),
                     f2(sv.get("outside_infer", {}).get("p50_ms")),
                     f1(lag.get("p99_ms")) if lag else "-",
                     f"{cp['busy']:.2f} = {cp['server']:.2f} + {cp['loadgen']:.2f} + {cp['rest']:.2f}"])
    L.append(md_table(["mode", "offered/s", "done/s", "p50 ms", "p95 ms", "p99 ms",
                       "failed", "infer p50 ms", "outside infer p50 ms", "loop lag p99 ms",
                       "CPUs busy = server + loadgen + rest"], rows))
    L.append("")
    L.append("*done/s, p50..p99, failed*: the load generator. *infer*: inside `infer()` "
             "(wall); *outside infer*: the rest of the server's time for the request (HTTP, "
             "queueing, IPC, GIL). *loop lag*: how late asyncio's loop fires a 5 ms timer. "
             "*CPUs busy*: the whole machine (/proc/stat) during the load, split into the "
             "traced server (contactmap's on-CPU), the load generator (its rusage) and the "
             "rest (the tracer's user space, kernel threads, other work on the VM).")
    L.append("")
    for p in plot_paths:
        if p.name == "latency.png":
            L.append(f"![latency]({rel(p, doc.parent)})")
            L.append("")

    # headline rows
    L.append("## The three contact maps: headline rows")
    L.append("")
    L.append(f"contactmap's own contact map at {mid:g} requests/s (top rows, shares of all "
             f"thread time in the window, idle waits included):")
    L.append("")
    for mode in MODES:
        c = by.get((mode, mid))
        if not c:
            continue
        a = c["a"]
        L.append(f"**{mode}** ({a['wall'] / 1e9:.1f} thread-seconds over "
                 f"{a['window'] / 1e9:.1f} s, {a['n']} requests):")
        L.append("")
        L.append(md_table(["subsystem", "time", "share"],
                          [[lab, fmt_t(t), f"{sh * 100:.1f}%"] for lab, t, sh in headline_rows(a)]))
        L.append("")
    L.append("Read raw, these maps are dominated by threads waiting for work (network = "
             "`accept4`, file I/O = pipe `read`, poll = `epoll_wait`, process mgmt = the main "
             "thread's `rt_sigtimedwait`). The serving view removes exactly those waits:")
    L.append("")
    L.append(md_table(["mode @ load"] + [f"#{i + 1}" for i in range(5)],
                      [[f"{c['mode']} @ {c['rate']:g}"] +
                       [f"{lab} {ms(t) / c['a']['n']:.2f} ms ({sh * 100:.0f}%)"
                        for lab, t, sh in serving_rows(c["a"], 5)]
                       for c in cases]))
    L.append("")
    L.append("Cells: thread-ms per request and share of serving time. In processes mode "
             "*file I/O* is the HTTP threads blocked in `read` on the worker pipe, waiting "
             "for the reply: IPC plus the worker's own time, which the workers' rows count "
             "again (serving time adds up threads, see Caveats).")
    L.append("")
    for p in plot_paths:
        if p.name in ("serving.png", "contact-maps.png"):
            L.append(f"![{p.stem}]({rel(p, doc.parent)})")
            L.append("")

    # per request counts
    L.append("## OS work per request")
    L.append("")
    keys = ["syscalls", "futex", "read+write", "socket", "memory syscalls", "minor faults",
            "switches", "run-queue waits"]
    L.append(md_table(["mode @ load"] + keys,
                      [[f"{c['mode']} @ {c['rate']:g}"] +
                       [f"{c['a']['per_req'][k]:.1f}" for k in keys] for c in cases]))
    L.append("")
    L.append("Counts from contactmap's per-process syscall, fault and scheduler rows, divided "
             "by completed requests.")
    L.append("")

    # the markers' requests: the critical path at the median and in the tail
    L.append(f"## The critical path of a request at p50 and p99 ({hi:g} requests/s)")
    L.append("")
    L.append("Each request is marked (`contactmap_mark.request`) on the thread that serves it; "
             "its critical path is that thread's time, where every wait that another traced "
             "thread ended (a worker answering, the event loop's executor) is replaced by what "
             "that thread did meanwhile, recursively (README, \"Requests and the critical "
             "path\"). Shares of the band's critical-path time, for the requests in the band "
             "p0-p50 and p99-p100; the latency is contactmap's, from the markers.")
    L.append("")
    rows = []
    for mode in MODES:
        c = by.get((mode, hi))
        rq = c and c["report"].get("requests")
        if not rq or not rq.get("count"):
            continue
        for band in rq["bands"]:
            if band["band"] not in ("p0-p50", "p99-p100") or not band["count"]:
                continue
            cp = band["critical_path"]
            tot = sum(r["time_ns"] for r in cp) or 1
            top = ", ".join(f"{r['label']} {100 * r['time_ns'] / tot:.0f}%" for r in cp[:4])
            rows.append([mode, band["band"], str(band["count"]),
                         f"{band['latency_ns']['from'] / 1e6:.2f}-{band['latency_ns']['to'] / 1e6:.2f}",
                         f"{tot / band['count'] / 1e6:.2f}", top])
    if rows:
        L.append(md_table(["mode", "band", "requests", "latency ms", "critical path ms/req",
                           "critical path, largest shares"], rows))
    else:
        L.append("(no marked requests in these reports)")
    L.append("")

    # roles
    L.append(f"## Where each kind of thread spends its serving time ({hi:g} requests/s)")
    L.append("")
    rows = []
    for mode in MODES:
        c = by.get((mode, hi))
        if not c:
            continue
        a = c["a"]
        for role, r in sorted(a["roles"].items()):
            if role == "main":
                continue
            waits = sorted(r["waits"].items(), key=lambda kv: -kv[1])[:3]
            rows.append([mode, f"{ROLE_LABELS.get(role, role)} ({r['threads']})",
                         f"{ms(r['oncpu']) / a['n']:.2f}", f"{ms(r['runq']) / a['n']:.2f}",
                         ", ".join(f"{k.replace('syscall:', '')} {ms(v) / a['n']:.2f}"
                                   for k, v in waits) or "-",
                         f"{100 * r['idle'] / r['wall']:.0f}%" if r["wall"] else "-"])
    L.append(md_table(["mode", "threads", "on-CPU ms/req", "run queue ms/req",
                       "top blocking causes, ms/req", "idle share"], rows))
    L.append("")

    # answers
    L.append("## Answers")
    L.append("")
    L += answers(cases, by, lo, mid, hi, facts, control)
    L.append("")

    # diffs and plots
    L.append("## Diffs between the models")
    L.append("")
    if diffs:
        for a_name, b_name, path, text in diffs:
            L.append(f"`contactmap diff {a_name}.json {b_name}.json` "
                     f"(full output: `{rel(path, REPO)}`):")
            L.append("")
            L.append("```")
            L += text.splitlines()[:30]
            L.append("```")
            L.append("")
    else:
        L.append(f"{diff_note}.")
        L.append("")
    if plot_note:
        L.append(f"Note: {plot_note}.")
        L.append("")
    L.append("## Caveats")
    L.append("")
    shares = [c["a"]["observer_share"] for c in cases if c["a"]["observer_share"] is not None]
    if shares:
        L.append(f"- Tracing cost: contactmap's BPF programs used {min(shares) * 100:.1f}% to "
                 f"{max(shares) * 100:.1f}% of one CPU during the windows (its observer cost); "
                 "every syscall and context switch pays a few hundred ns more while traced.")
    lost = {c["name"]: c["a"]["lost"] for c in cases if c["a"]["lost"]}
    L.append(f"- Lost events: {lost if lost else 'none in any run'}.")
    L.append("- Serving time is thread time summed over threads, not one request's latency: "
             "two requests served at once count twice. It shows *what the OS was doing for "
             "requests*; latency percentiles come from the load generator.")
    L.append("- A futex wait is a futex wait: the GIL (CPython 3.11 hands it over with a "
             "condition variable) and other locks look the same to the kernel. In threads mode "
             "and in the asyncio inference threads nothing else blocks on futexes on the "
             "request path; in the process-mode front end a futex wait is the GIL or a wait for "
             "a free worker.")
    L.append("- The load generator, contactmap and the other users of this VM compete for the "
             "same 2 CPUs: run-queue figures include that competition (the *rest* column "
             "above), as a co-located production service's would.")
    L.append("- `recvfrom` waits of the HTTP threads are the client's: the load generator "
             "connects, then sends its request a little later (it shares the CPUs too).")
    L.append("- The server's own instrumentation is visible in the maps: two `clock_gettime` "
             "(thread CPU time) per inference, and in asyncio mode the lag monitor's 5 ms "
             "timer (200 `epoll_wait` wake-ups a second).")
    L.append("")
    L.append("## Reproduce")
    L.append("")
    L.append("    make study          # this document, ~4-5 minutes")
    L.append("    make study-quick    # one load level, 5 s each, ~1 minute, into .output/study-quick/")
    L.append("    examples/study/study.py --reuse   # rewrite this from the saved runs")
    L.append("")
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(L) + "\n")


def answers(cases, by, lo, mid, hi, facts, control):
    """The findings, each computed from the runs; the wording follows the data."""
    out = []
    rates = sorted({c["rate"] for c in cases})

    def a(mode, rate):
        c = by.get((mode, rate))
        return c["a"] if c else None

    def per(x, an):
        return ms(x) / an["n"]

    def share(x, an):
        return 100 * x / an["busy"] if an["busy"] else 0

    def over_loads(mode, fn):
        return ", ".join(f"{fn(a(mode, r))} at {r:g}/s" for r in rates if a(mode, r))

    def role(an, name):
        return an["roles"].get(name, {"waits": {}, "oncpu": 0, "runq": 0, "threads": 0,
                                      "wall": 0, "idle": 0})

    t, p, s = a("threads", hi), a("processes", hi), a("asyncio", hi)
    futex_rank = sorted((a(m, hi)["per_req"]["futex"], m) for m in MODES if a(m, hi))
    if t:
        fut = t["causes"].get("syscall:futex", 0)
        out.append(
            f"1. **Threads: GIL waits (futex) and the run queue.** The HTTP threads, which "
            f"do all the work, are blocked in `futex` per request "
            + over_loads("threads", lambda x: f"{per(x['causes'].get('syscall:futex', 0), x):.2f} ms")
            + f": CPython's GIL, which torch releases around its kernels and every thread "
            f"must take back ({t['per_req']['futex']:.1f} futex calls per request at "
            f"{hi:g}/s). They wait for a CPU "
            + over_loads("threads", lambda x: f"{per(x['serving'].get('runq', 0), x):.2f} ms")
            + f". At {hi:g}/s that is {share(fut, t):.0f}% (futex) and "
            f"{share(t['serving'].get('runq', 0), t):.0f}% (run queue) of their serving time, "
            f"next to {share(t['serving'].get('cpu_user', 0), t):.0f}% on-CPU in user code.")
    if p:
        http, wk = role(p, "http"), role(p, "worker")
        rw = p["per_req"]["read+write"]
        out.append(
            f"2. **Processes: IPC.** A request crosses the pipe twice (the pickled input to a "
            f"worker, the pickled reply back): {rw:.1f} `read`/`write` calls per request "
            f"(front end and workers together) and "
            f"{p['per_req']['switches']:.1f} context switches per request, against "
            + (f"{t['per_req']['switches']:.1f} in threads mode" if t else "the other modes")
            + f". The front end's HTTP threads are blocked in `read` on the worker pipe (shown "
            f"as file I/O) per request "
            + over_loads("processes", lambda x: f"{per(role(x, 'http')['waits'].get('syscall:read', 0), x):.2f} ms")
            + f": the worker's time plus the hand-offs. At {hi:g}/s the workers are on-CPU "
            f"{per(wk['oncpu'], p):.2f} ms and wait {per(wk['runq'], p):.2f} ms for a CPU per "
            f"request, and the front end adds {per(http['oncpu'], p):.2f} ms on-CPU "
            f"(HTTP, pickling) and {per(http['waits'].get('syscall:futex', 0), p):.2f} ms in "
            f"`futex` (its own GIL, and waits for a free worker). The input is copied from "
            f"the socket into the front end, into the pipe, out of it in the worker, and "
            f"into a tensor.")
    if s:
        loop, inf = role(s, "loop"), role(s, "infer")
        most = futex_rank and futex_rank[-1][1] == "asyncio"
        out.append(
            f"3. **Asyncio: event-loop stalls.** Inference runs in threads off the loop, but "
            f"under the loop's GIL: the event-loop thread is blocked in `futex` per request "
            + over_loads("asyncio", lambda x: f"{per(role(x, 'loop')['waits'].get('syscall:futex', 0), x):.2f} ms")
            + ", and waits for a CPU "
            + over_loads("asyncio", lambda x: f"{per(role(x, 'loop')['runq'], x):.2f} ms")
            + "; while it waits, no connection moves. The loop's own 5 ms timer fired late by "
            + ", ".join(f"{by[('asyncio', r)]['server'].get('loop_lag', {}).get('p99_ms', 0):.1f} ms (p99) at {r:g}/s"
                        for r in rates if ("asyncio", r) in by)
            + f". The inference threads are blocked in `futex` "
            f"{per(inf['waits'].get('syscall:futex', 0), s):.2f} ms per request at {hi:g}/s; "
            f"{s['per_req']['futex']:.1f} futex calls per request in all"
            + (", the most of the three models." if most else "."))
    pf = []
    fault_ns = facts.get("fault", {}).get("ns_per_fault")
    for mode in MODES:
        x = a(mode, hi)
        if x:
            mem = x["serving"].get("memory", 0)
            top = ", ".join(f"{k} {v:.1f}" for k, v in list(x["mem_calls"].items())[:3])
            est = (f", up to ~{x['per_req']['minor faults'] * fault_ns / 1000:.0f} us of "
                   f"handling at the first-touch cost" if fault_ns else "")
            pf.append(f"{mode}: {x['per_req']['minor faults']:.1f} faults{est}; "
                      f"{x['per_req']['memory syscalls']:.1f} memory syscalls ({top or 'none'}); "
                      f"{per(mem, x) * 1000:.0f} us blocked or in memory syscalls "
                      f"({share(mem, x):.1f}% of serving time)")
    if pf:
        out.append(
            f"4. **Page faults from allocator churn** happen on every request; their cost "
            f"hides in user CPU time. Per request at {hi:g}/s: " + "; ".join(pf) + ". "
            f"contactmap counts every fault, but charges a fault's on-CPU handling to the user "
            f"time it interrupts; only blocking in a fault shows as memory time. Batches of 1 "
            f"to 8 items make tensors of changing sizes (the CNN's first activation alone is "
            f"64 KiB per item); glibc's malloc gives the freed top of a heap back to the "
            f"kernel (`brk` in the main arena, `madvise` in the threads' arenas) and the next "
            f"large tensor faults those pages in again, so one such call costs tens of faults. "
            f"The microbenchmark's cost is for fresh memory; refaulting freed memory may be "
            f"cheaper, so the estimate is an upper bound.")
        ch = facts.get("churn") or {}
        if ch.get("default") and ch.get("no-trim"):
            def med(kind, key):
                xs = sorted(r[key] for r in ch[kind])
                return xs[len(xs) // 2]
            cd, cn = med("default", "cpu_ms_per_request"), med("no-trim", "cpu_ms_per_request")
            fd, fn = med("default", "faults_per_request"), med("no-trim", "faults_per_request")
            saved = cd - cn
            out.append(
                f"   Measured directly, in one process without the server "
                f"(`examples/study/churn.py`, the same mix, {len(ch['default'])} alternating "
                f"run{'s' if len(ch['default']) > 1 else ''} each"
                f"{', medians' if len(ch['default']) > 1 else ''}): with glibc's defaults a "
                f"request takes {fd:.1f} faults and "
                f"{cd:.2f} ms of CPU; with malloc told never to give memory back "
                f"(`GLIBC_TUNABLES={NO_TRIM_ENV['GLIBC_TUNABLES']}`) {fn:.1f} faults and "
                f"{cn:.2f} ms"
                + (f": the churn costs {saved * 1000:.0f} us per request, "
                   f"{100 * saved / cd:.0f}% of its CPU, {saved * 1000 / (fd - fn):.1f} us per "
                   f"fault." if saved > 0 and fd > fn else
                   ": no difference measurable against the noise of this machine."))
        if control and a("threads", control["rate"]):
            base, ctl = a("threads", control["rate"]), control["a"]
            cpu_b = per(base["serving"].get("cpu_user", 0), base)
            cpu_c = per(ctl["serving"].get("cpu_user", 0), ctl)
            lb, lc = by[("threads", control["rate"])]["load"], control["load"]
            saved = cpu_b - cpu_c
            fewer = base["per_req"]["minor faults"] - ctl["per_req"]["minor faults"]
            out.append(
                f"   Served the same way (threads mode at {control['rate']:g}/s, under "
                f"contactmap) with those tunables, the service takes "
                f"{ctl['per_req']['minor faults']:.1f} faults per request instead of "
                f"{base['per_req']['minor faults']:.1f}, and its user CPU per request is "
                f"{cpu_c:.2f} ms instead of {cpu_b:.2f} ms"
                + (f": {saved * 1000:.0f} us less, {saved * 1000 / fewer:.1f} us per fault "
                   f"avoided" if saved > 0 and fewer > 0 else
                   ": no saving measurable against this run's noise")
                + f". Latency p50/p99: {lc['latency_ms']['p50_ms']:.1f}/"
                f"{lc['latency_ms']['p99_ms']:.1f} ms against "
                f"{lb['latency_ms']['p50_ms']:.1f}/{lb['latency_ms']['p99_ms']:.1f} ms (one run "
                f"each, {ctl['cpus']['rest']:.2f} against {base['cpus']['rest']:.2f} CPUs of "
                f"other work on the machine).")
    rq = []
    for mode in MODES:
        if any(a(mode, r) for r in rates):
            rq.append(f"{mode} " + over_loads(mode, lambda x: f"{per(x['serving'].get('runq', 0), x):.2f} ms "
                                                             f"({share(x['serving'].get('runq', 0), x):.0f}%)"))
    cpu_lines = []
    for r in rates:
        xs = [a(m, r) for m in MODES if a(m, r)]
        if xs:
            busy = sum(x["cpus"]["busy"] for x in xs) / len(xs)
            rest = sum(x["cpus"]["rest"] for x in xs) / len(xs)
            cpu_lines.append(f"{busy:.2f} of {xs[0]['cpus']['n']} CPUs busy at {r:g}/s "
                             f"({rest:.2f} of them outside the study)")
    if rq:
        def rq_series(m):
            return [per(a(m, r)["serving"].get("runq", 0), a(m, r)) for r in rates if a(m, r)]
        grows = len(rates) > 1 and all(
            all(x < y for x, y in zip(rq_series(m), rq_series(m)[1:]))
            for m in MODES if rq_series(m))
        out.append(
            ("5. **Run-queue wait grows with load** in every model" if grows else
             "5. **Run-queue wait**") + ", per request and as a share of serving "
            "time: " + "; ".join(rq) + ". The machine was on average " + "; ".join(cpu_lines)
            + ": the service, its load generator, the tracer and whatever else runs on the "
            "VM share 2 CPUs, and a request that is ready to run waits for one of them.")
    lines = []
    for mode in MODES:
        x = a(mode, hi)
        if not x:
            continue
        top = [(g, v) for g, v in sorted(x["serving"].items(), key=lambda kv: -kv[1])
               if g not in ("cpu_user", "cpu_syscall")][:3]
        lines.append(f"   - **{mode}**: " + ", ".join(
            f"{SUBSYSTEM_LABELS.get(g, g)} {share(v, x):.0f}%" for g, v in top)
            + f" (user CPU {share(x['serving'].get('cpu_user', 0), x):.0f}%)")
    if lines:
        out.append(f"6. **In short**, the OS subsystems on the critical path at {hi:g} "
                   f"requests/s, beside the CPU work itself (shares of serving time):")
        out += lines
        ch = facts.get("churn") or {}
        if ch.get("default") and ch.get("no-trim"):
            cd = sorted(r["cpu_ms_per_request"] for r in ch["default"])[len(ch["default"]) // 2]
            cn = sorted(r["cpu_ms_per_request"] for r in ch["no-trim"])[len(ch["no-trim"]) // 2]
            if cd > cn:
                out.append(f"   - and, inside *CPU (user)* in every model, page-fault handling "
                           f"from allocator churn: about {100 * (cd - cn) / cd:.0f}% of a "
                           f"request's CPU (item 4).")
    return out


# ----------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="one load level, 5 s per run (~1 min); writes into the results dir")
    ap.add_argument("--rates", help=f"offered loads, req/s, comma-separated (default {RATES}; "
                                    f"quick: {QUICK_RATE})")
    ap.add_argument("--duration", type=float, help="seconds of load per run (default 15)")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--results", type=Path, help="default .output/study (or study-quick)")
    ap.add_argument("--doc", type=Path, help="default docs/study.md (quick: <results>/study.md)")
    ap.add_argument("--contactmap", type=Path, default=REPO / "contactmap")
    ap.add_argument("--reuse", action="store_true",
                    help="run nothing: re-analyse the runs saved in the results directory "
                         "and write the document and plots again")
    ap.add_argument("--no-control", action="store_true",
                    help="skip the control run (threads, glibc malloc trimming off)")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    args.rates = [float(x) for x in (args.rates or (QUICK_RATE if args.quick else RATES)).split(",")]
    args.duration = args.duration or (5.0 if args.quick else 15.0)
    modes = [m for m in args.modes.split(",") if m]
    if any(m not in MODES for m in modes) or not modes:
        ap.error(f"--modes: choose from {','.join(MODES)}")
    if not (0 < args.duration <= 120) or any(not (0 < r <= 2000) for r in args.rates):
        ap.error("--duration must be in (0, 120] s and rates in (0, 2000] req/s")
    args.results = args.results or REPO / ".output" / ("study-quick" if args.quick else "study")
    doc = args.doc or (args.results / "study.md" if args.quick else REPO / "docs" / "study.md")
    plot_dir = args.results / "plots" if args.quick and not args.doc else doc.parent / "study"
    if os.geteuid() != 0:
        sys.exit("study: contactmap needs root (BPF): run it as root")
    if not os.access(args.contactmap, os.X_OK):
        sys.exit(f"study: {args.contactmap} is not built: run `make` first")
    args.results.mkdir(parents=True, exist_ok=True)
    groups = syscall_groups()

    t0 = time.monotonic()
    if args.reuse:
        # re-analyse a finished run: same figures, the current analysis and text
        run = json.loads((args.results / "study.json").read_text())
        facts, args.rates, args.duration = run["facts"], run["rates"], run["duration"]
        args.argv = run["argv"]
        cases = [load_case(args.results, m) for m in run["cases"]]
        control = load_case(args.results, run["control"]) if run.get("control") else None
        for c in cases + ([control] if control else []):
            c["a"] = analyse(c, groups)
    else:
        facts = machine_facts()
        log(f"background load before the runs: {facts['background_cpus']:.2f} CPUs busy")
        if facts["background_cpus"] > 0.5:
            log("note: the machine is busy; run-queue figures will include that contention")
        cases = []
        for mode in modes:
            for rate in args.rates:
                log(f"{mode} at {rate:g} req/s for {args.duration:g} s "
                    f"({time.monotonic() - t0:.0f} s so far)")
                c = run_case(args, mode, rate, args.results)
                c["a"] = analyse(c, groups)
                ld = c["load"]
                log(f"  {ld['completed']} done, {ld['throughput_rps']:.0f}/s, p50 "
                    f"{ld['latency_ms']['p50_ms']} ms, p99 {ld['latency_ms']['p99_ms']} ms")
                cases.append(c)
        control = None
        if not args.no_control:
            rate = sorted(args.rates)[len(args.rates) // 2]
            log(f"control: threads at {rate:g} req/s with glibc malloc trimming off "
                f"({time.monotonic() - t0:.0f} s so far)")
            control = run_case(args, "threads", rate, args.results, variant="no-trim")
            control["a"] = analyse(control, groups)
        if not args.no_control:
            log(f"control: allocator churn in one process, glibc defaults vs trimming off "
                f"({time.monotonic() - t0:.0f} s so far)")
            facts["churn"] = churn_ab(1 if args.quick else 3)
        keys = ("mode", "rate", "name", "ready", "variant", "cpu")
        (args.results / "study.json").write_text(json.dumps({
            "facts": facts, "rates": args.rates, "duration": args.duration, "argv": args.argv,
            "cases": [{k: c[k] for k in keys} for c in cases],
            "control": {k: control[k] for k in keys} if control else None}) + "\n")

    for rate in args.rates:
        sel = [c for c in cases if c["rate"] == rate]
        print_side_by_side(sel, f"== contact maps at {rate:g} req/s: headline rows "
                                f"(all thread time) ==", headline_rows)
        print_side_by_side(sel, f"== serving view at {rate:g} req/s (waiting-for-work "
                                f"excluded) ==", serving_rows)
    diffs, diff_note = try_diff(args, cases, args.results)
    if diff_note:
        log(f"note: {diff_note}")
    for _, _, path, _ in diffs:
        log(f"diff written: {path}")
    _, plot_note = try_plot_script(args, cases, args.results)
    if plot_note:
        log(f"note: {plot_note}")
    plot_paths = plots(cases, plot_dir, args.rates)
    write_doc(args, cases, doc, plot_paths, diffs, diff_note, plot_note, facts, control)
    log(f"wrote {doc} and {len(plot_paths)} plots in {plot_dir}; results in {args.results} "
        f"({time.monotonic() - t0:.0f} s in all)")


if __name__ == "__main__":
    main()
