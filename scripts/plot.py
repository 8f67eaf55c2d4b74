#!/usr/bin/python3
"""Charts of a contactmap report (schema contactmap/1) or experiment
(contactmap-experiment/1).

    scripts/plot.py REPORT.json [--diff OTHER.json] -o DIR [--format png,svg]
    scripts/plot.py EXPERIMENT.json -o DIR [--format png,svg]

Writes into DIR, for a report:
  contact_map.FMT      shares of the wall time by subsystem
  ledger_threads.FMT   per-thread stacked ledger: on-CPU user / on-CPU in syscalls /
                       run queue / off-CPU by its top causes / unattributed
  syscall_latency.FMT  log2 latency histograms of the 6 syscalls with the most time
  runq_latency.FMT     run-queue latency histogram per process
  contact_map_diff.FMT with --diff: REPORT (before) and OTHER (after) side by side
for an experiment (`contactmap experiment -o EXPERIMENT.json`):
  experiment_runs.FMT    each run's metric (--metric), or its window, in run order
                         by side, with each side's mean
  experiment_shares.FMT  each run's contact-map shares, stacked, runs grouped by side
and prints the path of each file it wrote, one per line.

Needs only Debian's python3 and python3-matplotlib (Agg backend, no display).
Errors are one line, "plot.py: error: ...", with exit status 1.
"""
import argparse
import json
import math
import os
import sys

SCHEMA = "contactmap/1"
EXPERIMENT_SCHEMA = "contactmap-experiment/1"
TOP_SHARES = 7
SIDE_COLORS = ["#8c8c8c", "#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b2", "#937860"]
FORMATS = ("png", "svg", "pdf")
TOP_SYSCALLS = 6
TOP_THREADS = 30
TOP_CAUSES = 5
TOP_PROCS = 9
NSLOTS = 40

SUBSYSTEM_LABELS = {
    "cpu_user": "CPU (user)", "runq": "run queue", "memory": "memory", "sync": "sync (futex)",
    "file_io": "file I/O", "network": "network", "block_io": "block I/O wait",
    "sleep": "sleep/timers", "poll": "poll/wait", "process": "process mgmt", "other": "other",
    "unattributed": "unattributed", "gpu": "GPU",
}


class PlotError(Exception):
    pass


def die(msg):
    print(f"plot.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- reading ------------------------------------------------------------------

def load_report(path, experiment_ok=False):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PlotError(f"cannot read {path}: {e.strerror}")
    try:
        r = json.loads(data.decode("utf-8", errors="replace"))
    except ValueError as e:
        raise PlotError(f"{path} is not JSON: {e}")
    if not isinstance(r, dict) or "schema" not in r:
        raise PlotError(f"{path} is not a contactmap report: no \"schema\" key")
    if experiment_ok and r.get("schema") == EXPERIMENT_SCHEMA:
        return r
    if r.get("schema") != SCHEMA:
        raise PlotError(f"{path} has schema {r.get('schema')!r}, expected {SCHEMA!r}"
                        + (f" or {EXPERIMENT_SCHEMA!r}" if experiment_ok else ""))
    return r


def num(o, key):
    """Every number is optional: absent, null or not a number reads as 0."""
    v = o.get(key) if isinstance(o, dict) else None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        return 0
    return v


def lst(o, key):
    v = o.get(key) if isinstance(o, dict) else None
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def dct(o, key):
    v = o.get(key) if isinstance(o, dict) else None
    return v if isinstance(v, dict) else {}


def hist(o, key):
    h = o.get(key) if isinstance(o, dict) else None
    if not isinstance(h, list):
        return [0] * NSLOTS
    h = [x if isinstance(x, (int, float)) and not isinstance(x, bool) else 0 for x in h]
    return (h + [0] * NSLOTS)[:max(NSLOTS, len(h))]


# ---- formatting -----------------------------------------------------------------

def fmt_ns(ns):
    ns = float(ns)
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= div:
            v = ns / div
            return f"{v:.3g} {unit}" if abs(v) < 1000 else f"{v:.0f} {unit}"
    return f"{ns:.0f} ns"


def bucket_label(i):
    """Lower bound of log2 bucket i, 2^i ns, in a short unit."""
    v = 2 ** i
    for unit, div in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if v >= div:
            return f"{v / div:.3g}{unit}"
    return f"{v}ns"


def subsystem_label(row):
    return row.get("label") or SUBSYSTEM_LABELS.get(row.get("subsystem"), str(row.get("subsystem")))


def title_of(r, path):
    t = dct(r, "target")
    if isinstance(t.get("command"), list):
        what = " ".join(str(x) for x in t["command"])
    elif isinstance(t.get("pids"), list):
        what = "pid " + ",".join(str(x) for x in t["pids"])
    else:
        what = os.path.basename(path)
    if len(what) > 60:
        what = what[:57] + "..."
    return f"{what}  ({fmt_ns(num(dct(r, 'window'), 'duration_ns'))} window)"


# ---- charts -----------------------------------------------------------------------

def no_data(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_xticks([])
    ax.set_yticks([])


def chart_contact_map(plt, r, path):
    rows = [x for x in lst(r, "contact_map") if num(x, "time_ns") > 0]
    rows.sort(key=lambda x: num(x, "time_ns"))
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.4 * len(rows) + 1.2)))
    if not rows:
        no_data(ax, "no time recorded")
    else:
        shares = [100 * num(x, "share") for x in rows]
        bars = ax.barh([subsystem_label(x) for x in rows], shares, color="#4c72b0")
        for b, x in zip(bars, rows):
            ax.text(b.get_width(), b.get_y() + b.get_height() / 2,
                    f" {100 * num(x, 'share'):.1f}%  {fmt_ns(num(x, 'time_ns'))}",
                    va="center", fontsize=8)
        ax.set_xlabel("share of wall time (thread-seconds), %")
        ax.set_xlim(0, max(shares) * 1.35 + 1)
    ax.set_title("OS contact map: " + title_of(r, path), fontsize=10)
    fig.tight_layout()
    return fig


def chart_ledger(plt, r, path):
    threads = []
    for p in lst(r, "processes"):
        for t in lst(p, "threads"):
            L = dct(t, "ledger")
            name = f"{p.get('comm', '?')}[{p.get('pid', '?')}]"
            if t.get("tid") != p.get("pid") or t.get("comm") != p.get("comm"):
                name += f" {t.get('comm', '?')}/{t.get('tid', '?')}"
            threads.append((name, L))
    threads.sort(key=lambda x: num(x[1], "wall_ns"), reverse=True)
    more = len(threads) - TOP_THREADS
    threads = threads[:TOP_THREADS][::-1]
    causes = {}
    for _, L in threads:
        for c, v in dct(L, "offcpu_by_cause").items():
            if isinstance(v, (int, float)):
                causes[c] = causes.get(c, 0) + v
    top = [c for c, _ in sorted(causes.items(), key=lambda x: -x[1])[:TOP_CAUSES]]
    segments = [("on-CPU user", lambda L: num(L, "oncpu_user_ns"), "#4c72b0"),
                ("on-CPU in syscalls", lambda L: num(L, "oncpu_syscall_ns"), "#8172b2"),
                ("run queue", lambda L: num(L, "runq_ns"), "#c44e52")]
    palette = ["#dd8452", "#55a868", "#937860", "#da8bc3", "#8c8c8c"]
    for i, c in enumerate(top):
        segments.append((f"off-CPU {c}", lambda L, c=c: num(dct(L, "offcpu_by_cause"), c),
                         palette[i % len(palette)]))
    segments.append(("off-CPU other causes",
                     lambda L: sum(v for c, v in dct(L, "offcpu_by_cause").items()
                                   if c not in top and isinstance(v, (int, float))), "#ccb974"))
    segments.append(("unattributed", lambda L: num(L, "unattributed_ns"), "#000000"))

    fig, ax = plt.subplots(figsize=(10, max(3, 0.32 * len(threads) + 1.8)))
    if not threads:
        no_data(ax, "no threads recorded")
    else:
        names = [n if len(n) <= 40 else n[:37] + "..." for n, _ in threads]
        left = [0.0] * len(threads)
        for label, fn, color in segments:
            vals = [fn(L) / 1e6 for _, L in threads]
            if not any(vals):
                continue
            ax.barh(names, vals, left=left, label=label, color=color)
            left = [a + b for a, b in zip(left, vals)]
        ax.set_xlabel("ms of the thread's wall time")
        ax.legend(fontsize=7, loc="lower right")
        ax.tick_params(axis="y", labelsize=7)
    title = "per-thread ledger: " + title_of(r, path)
    if more > 0:
        title += f"  (top {TOP_THREADS}, {more} more threads)"
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def hist_axes(ax, h, color):
    nz = [i for i, x in enumerate(h) if x]
    lo, hi = max(0, nz[0] - 1), min(len(h) - 1, nz[-1] + 1)
    xs = list(range(lo, hi + 1))
    ax.bar(xs, [h[i] for i in xs], width=0.9, color=color)
    step = max(1, math.ceil(len(xs) / 6))
    ticks = xs[::step]
    ax.set_xticks(ticks)
    ax.set_xticklabels([bucket_label(i) for i in ticks], fontsize=7, rotation=30)
    ax.tick_params(axis="y", labelsize=7)
    from matplotlib.ticker import MaxNLocator  # matplotlib is loaded by now (main)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def small_multiples(plt, items, n_max, title, empty):
    n = max(1, min(len(items), n_max))
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(8, 4 * ncols), 2.8 * nrows + 0.9), squeeze=False)
    flat = [a for row in axes for a in row]
    if not items:
        no_data(flat[0], empty)
    for ax, (name, h, sub, color) in zip(flat, items):
        hist_axes(ax, h, color)
        ax.set_title(f"{name}\n{sub}", fontsize=8)
    for ax in flat[len(items):] if items else flat[1:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("latency, log2 buckets [2^i, 2^(i+1)) ns", fontsize=8)
    fig.tight_layout()
    return fig


def chart_syscalls(plt, r, path):
    merged = {}
    for p in lst(r, "processes"):
        for s in lst(p, "syscalls"):
            name = str(s.get("name", f"syscall_{s.get('nr', '?')}"))
            m = merged.setdefault(name, {"count": 0, "total_ns": 0, "hist": [0] * NSLOTS})
            m["count"] += num(s, "count")
            m["total_ns"] += num(s, "total_ns")
            m["hist"] = [a + b for a, b in zip(m["hist"], hist(s, "hist_log2_ns"))]
    top = sorted(merged.items(), key=lambda x: -x[1]["total_ns"])[:TOP_SYSCALLS]
    items = [(name, m["hist"], f"{m['count']:,} calls, {fmt_ns(m['total_ns'])} total", "#55a868")
             for name, m in top if any(m["hist"])]
    return small_multiples(plt, items, TOP_SYSCALLS,
                           "syscall latency (top by total time)\n" + title_of(r, path),
                           "no syscalls recorded")


def chart_runq(plt, r, path):
    procs = [p for p in lst(r, "processes") if any(hist(dct(p, "sched"), "runq_hist_log2_ns"))]
    procs.sort(key=lambda p: -sum(hist(dct(p, "sched"), "runq_hist_log2_ns")))
    items = []
    for p in procs[:TOP_PROCS]:
        sc = dct(p, "sched")
        h = hist(sc, "runq_hist_log2_ns")
        items.append((f"{p.get('comm', '?')} [{p.get('pid', '?')}]", h,
                      f"{sum(h):,} waits, p99 {fmt_ns(num(sc, 'runq_p99_ns'))}", "#c44e52"))
    return small_multiples(plt, items, TOP_PROCS, "run-queue latency per process\n" + title_of(r, path),
                           "no run-queue waits recorded")


def chart_diff(plt, a, pa, b, pb):
    rows = {}
    for side, r in ((0, a), (1, b)):
        for x in lst(r, "contact_map"):
            key = x.get("subsystem")
            e = rows.setdefault(key, {"label": subsystem_label(x), "share": [0, 0], "time": [0, 0]})
            e["share"][side] += 100 * num(x, "share")
            e["time"][side] += num(x, "time_ns")
    keys = [k for k, e in rows.items() if e["time"][0] or e["time"][1]]
    keys.sort(key=lambda k: max(rows[k]["time"]))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, max(3, 0.45 * len(keys) + 1.5)), sharey=True)
    na, nb = os.path.basename(pa), os.path.basename(pb)
    if not keys:
        no_data(ax1, "no time recorded")
    else:
        ys = list(range(len(keys)))
        h = 0.38
        for ax, field, xlabel, conv in ((ax1, "share", "share of wall time, %", 1),
                                        (ax2, "time", "time, ms", 1e6)):
            va = [rows[k][field][0] / conv for k in keys]
            vb = [rows[k][field][1] / conv for k in keys]
            ax.barh([y + h / 2 for y in ys], va, height=h, label=f"before: {na}", color="#8c8c8c")
            ax.barh([y - h / 2 for y in ys], vb, height=h, label=f"after: {nb}", color="#4c72b0")
            ax.set_xlabel(xlabel)
        ax1.set_yticks(ys)
        ax1.set_yticklabels([rows[k]["label"] for k in keys])
        for y, k in zip(ys, keys):
            d = rows[k]["time"][1] - rows[k]["time"][0]
            ax2.text(max(rows[k]["time"]) / 1e6, y, f" {'+' if d >= 0 else '-'}{fmt_ns(abs(d))}",
                     va="center", fontsize=7)
        ax2.set_xlim(0, max(max(rows[k]["time"]) for k in keys) / 1e6 * 1.3 + 1e-9)
        ax1.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"contact map: {title_of(a, pa)}\nvs {title_of(b, pb)}", fontsize=9)
    fig.tight_layout()
    return fig


# ---- experiments ---------------------------------------------------------------------

def experiment_runs(e):
    """The completed runs that count (warm-up runs left out), in run order."""
    return [r for r in lst(e, "runs") if r.get("done") and not r.get("warmup")]


def side_label(e, name):
    for s in lst(e, "sides"):
        if s.get("name") == name:
            knobs = " ".join(str(k.get("spec", "?")) for k in lst(s, "knobs"))
            text = f"{name}: {knobs or 'baseline'}"
            return text if len(text) <= 60 else text[:57] + "..."
    return str(name)


def experiment_title(e):
    cmd = " ".join(str(x) for x in e.get("command", [])) if isinstance(e.get("command"), list) else "?"
    if len(cmd) > 70:
        cmd = cmd[:67] + "..."
    return f"experiment: {cmd}"


def chart_experiment_runs(plt, e):
    runs = experiment_runs(e)
    metric = isinstance(e.get("metric"), dict)
    fig, ax = plt.subplots(figsize=(9, 4.2))
    names = [s.get("name") for s in lst(e, "sides")]
    pts = {}
    for i, r in enumerate(runs, 1):
        v = num(dct(r, "metric"), "value") if metric else num(r, "window_ns") / 1e6
        if metric and not isinstance(dct(r, "metric").get("value"), (int, float)):
            continue
        pts.setdefault(r.get("side"), []).append((i, v))
    if not pts:
        no_data(ax, "no completed runs" if not runs else "no run printed the metric")
    for k, name in enumerate(names):
        if name not in pts:
            continue
        xs, ys = zip(*pts[name])
        color = SIDE_COLORS[k % len(SIDE_COLORS)]
        ax.plot(xs, ys, "o", color=color, label=side_label(e, name))
        mean = sum(ys) / len(ys)
        ax.axhline(mean, color=color, linewidth=1, linestyle="--")
    if pts:
        ax.set_xlabel("run, in the order they ran (interleaved)")
        ax.set_ylabel(f"metric /{dct(e, 'metric').get('regex', '')}/" if metric else "window, ms")
        ax.legend(fontsize=7, loc="best")
    ax.set_title(experiment_title(e) + "\n" + ("the command's metric per run" if metric
                                              else "each run's window (no --metric given)"), fontsize=9)
    fig.tight_layout()
    return fig


def chart_experiment_shares(plt, e):
    runs = experiment_runs(e)
    names = [s.get("name") for s in lst(e, "sides")]
    runs.sort(key=lambda r: (names.index(r.get("side")) if r.get("side") in names else 99,
                             num(r, "round")))
    totals = {}
    for r in runs:
        for x in lst(r, "contact_map"):
            totals[x.get("subsystem")] = totals.get(x.get("subsystem"), 0) + num(x, "share")
    top = [k for k, v in sorted(totals.items(), key=lambda kv: -kv[1]) if v > 0][:TOP_SHARES]
    fig, ax = plt.subplots(figsize=(max(8, 0.45 * len(runs) + 3), 4.8))
    if not runs:
        no_data(ax, "no completed runs")
    else:
        labels = [f"{r.get('side')}{int(num(r, 'round'))}" for r in runs]
        bottom = [0.0] * len(runs)
        palette = ["#4c72b0", "#c44e52", "#dd8452", "#55a868", "#8172b2", "#937860", "#da8bc3"]
        for i, key in enumerate(top + ["(rest)"]):
            vals = []
            for r in runs:
                rows = lst(r, "contact_map")
                if key == "(rest)":
                    vals.append(100 * sum(num(x, "share") for x in rows if x.get("subsystem") not in top))
                else:
                    vals.append(100 * sum(num(x, "share") for x in rows if x.get("subsystem") == key))
            if not any(vals):
                continue
            label = key if key == "(rest)" else subsystem_label({"subsystem": key})
            ax.bar(labels, vals, bottom=bottom, label=label,
                   color=palette[i] if key != "(rest)" else "#cccccc")
            bottom = [a + b for a, b in zip(bottom, vals)]
        ax.set_ylabel("share of the run's wall time, %")
        ax.set_xlabel("run (side and round)")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax.tick_params(axis="x", labelsize=7)
    sides = "; ".join(side_label(e, n) for n in names)
    ax.set_title(experiment_title(e) + "\n" + (sides if len(sides) <= 110 else sides[:107] + "..."),
                 fontsize=8)
    fig.tight_layout()
    return fig


# ---- main ---------------------------------------------------------------------------

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog="plot.py", description="Charts of a contactmap report (contactmap/1).")
    ap.add_argument("report", help="contactmap JSON report")
    ap.add_argument("--diff", metavar="OTHER.json",
                    help="also chart REPORT (before) against OTHER (after)")
    ap.add_argument("-o", "--output", metavar="DIR", required=True, help="directory for the charts")
    ap.add_argument("--format", default="png", help="comma-separated: png, svg, pdf (default png)")

    # argparse's own errors print usage plus a line and exit 2; keep them one line, exit 1
    def error(msg):
        die(f"{msg} (see plot.py --help)")
    ap.error = error
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    formats = [f.strip().lower() for f in args.format.split(",") if f.strip()]
    bad = [f for f in formats if f not in FORMATS]
    if not formats or bad:
        die(f"unknown format {', '.join(bad) or repr(args.format)}: choose from {', '.join(FORMATS)}")
    try:
        report = load_report(args.report, experiment_ok=True)
        if report.get("schema") == EXPERIMENT_SCHEMA and args.diff:
            raise PlotError(f"{args.report} is an experiment: it holds its own comparison; "
                            "--diff takes two reports")
        other = load_report(args.diff) if args.diff else None
    except PlotError as e:
        die(str(e))
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        die("matplotlib is missing: apt-get install python3-matplotlib")
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        die(f"cannot create {args.output}: {e.strerror}")

    charts = [("contact_map", lambda: chart_contact_map(plt, report, args.report)),
              ("ledger_threads", lambda: chart_ledger(plt, report, args.report)),
              ("syscall_latency", lambda: chart_syscalls(plt, report, args.report)),
              ("runq_latency", lambda: chart_runq(plt, report, args.report))]
    if report.get("schema") == EXPERIMENT_SCHEMA:
        charts = [("experiment_runs", lambda: chart_experiment_runs(plt, report)),
                  ("experiment_shares", lambda: chart_experiment_shares(plt, report))]
    if other is not None:
        charts.append(("contact_map_diff",
                       lambda: chart_diff(plt, report, args.report, other, args.diff)))
    for name, make in charts:
        fig = make()
        try:
            for fmt in formats:
                out = os.path.join(args.output, f"{name}.{fmt}")
                try:
                    fig.savefig(out, format=fmt, dpi=110)
                except OSError as e:
                    die(f"cannot write {out}: {e.strerror}")
                print(out)
        finally:
            plt.close(fig)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `plot.py ... | head`: the reader left, the files are written
        sys.exit(0)
