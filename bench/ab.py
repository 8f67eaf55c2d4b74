#!/usr/bin/python3
"""Quick A/B of the per-syscall cost of a few tracer commands, getpid loop only.

    sudo bench/ab.py [--reps 6] [--n 1500000] LABEL=CMD [LABEL=CMD ...]

Each CMD is a shell-split command line; {wrap} forms wrap the loop:

    cm=./contactmap -o /tmp/ab.json --      wraps the loop (traced) and, for the
                                            bystander row, a `sleep` beside it
    floor=@bench/.output/floor              '@': a system-wide daemon that prints
                                            "attached" when live (traced = bystander)

Every traced run sits between untraced runs (A B A C A ...); "added" is the
median over runs of (traced - mean of its two untraced neighbours), in ns per
syscall, printed twice: from the loop's median over its 256-call chunks, and from
their 10th percentile (host interference only adds time, so the low percentile is
the steadier estimate of a cost paid on every call). The full comparison is run.py.
"""
import argparse, json, os, shlex, signal, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
LOOP = os.path.join(HERE, ".output", "getpid_loop")


def loop_cmd(n):
    return [LOOP, str(n)]


STATS = ("ns_per_op", "p10_ns_per_op")


def value(out):
    for line in out.splitlines():
        if line.startswith("{"):
            j = json.loads(line)
            return {k: j[k] for k in STATS}
    raise RuntimeError("no JSON line: " + out[-300:])


def daemon(cmd):
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in p.stdout:
        if "attached" in line or "tracing" in line:
            return p
    raise RuntimeError(f"{cmd[0]} did not attach")


def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        p.kill()


def run(tool, n, bystander):
    if tool is None:
        return value(subprocess.run(loop_cmd(n), capture_output=True, text=True).stdout)
    if tool.startswith("@"):
        d = daemon(shlex.split(tool[1:]))
        try:
            return value(subprocess.run(loop_cmd(n), capture_output=True, text=True).stdout)
        finally:
            stop(d)
    argv = shlex.split(tool)
    if not bystander:
        out = subprocess.run(argv + loop_cmd(n), capture_output=True, text=True)
        return value(out.stdout)
    t = subprocess.Popen(argv + ["sleep", "60"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(0.6)	# attached and settled
    try:
        return value(subprocess.run(loop_cmd(n), capture_output=True, text=True).stdout)
    finally:
        try:
            with open(f"/proc/{t.pid}/task/{t.pid}/children") as f:
                kids = [int(k) for k in f.read().split()]
        except OSError:
            kids = []
        for k in kids:	# the sleep: contactmap ends when its command does
            os.kill(k, signal.SIGKILL)
        try:
            t.wait(timeout=30)
        except subprocess.TimeoutExpired:
            t.kill()
            t.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--n", type=int, default=1500000)
    ap.add_argument("--no-bystander", action="store_true")
    ap.add_argument("--only-bystander", action="store_true")

    ap.add_argument("tools", nargs="+", metavar="LABEL=CMD")
    a = ap.parse_args()
    tools = [t.partition("=")[::2] for t in a.tools]
    modes = [False] if a.no_bystander else [True] if a.only_bystander else [False, True]
    for by in modes:
        added = {(l, st): [] for l, _ in tools for st in STATS}
        for rep in range(a.reps):
            k = rep % len(tools)
            order = tools[k:] + tools[:k]
            prev = run(None, a.n, by)
            for label, cmd in order:
                v = run(cmd, a.n, by)
                nxt = run(None, a.n, by)
                for st in STATS:
                    added[(label, st)].append(v[st] - (prev[st] + nxt[st]) / 2)
                prev = nxt
        for st in STATS:
            print(("bystander" if by else "traced") + f" ({st}, {a.reps} reps): added ns per "
                  "syscall, median [min..max]")
            for label, _ in tools:
                xs = added[(label, st)]
                print(f"  {label:14} {statistics.median(xs):+7.0f}  [{min(xs):+.0f}..{max(xs):+.0f}]")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
