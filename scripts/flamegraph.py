#!/usr/bin/python3
"""Draw a flame graph from contactmap's folded stacks, with Debian's matplotlib.

    scripts/flamegraph.py IN.folded -o OUT.png [--title T] [--width IN]

On-CPU stacks (samples) are drawn in warm colours, off-CPU stacks (ending in
an [off-cpu:CAUSE] frame, weighted in microseconds) in blue. Since the two
units differ, give --only oncpu or --only offcpu for a graph in one unit.
"""
import argparse
import sys
import zlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402


def die(msg):
    print(f"flamegraph.py: error: {msg}", file=sys.stderr)
    sys.exit(1)


def parse(path, only):
    root = {"name": "all", "w": 0, "kids": {}, "off": False}
    try:
        lines = open(path, encoding="utf-8", errors="replace").read().splitlines()
    except OSError as e:
        die(f"cannot read {path}: {e.strerror}")
    for n, line in enumerate(lines, 1):
        frames, _, w = line.rpartition(" ")
        if not frames or not w.isdigit():
            die(f"{path}:{n}: not a folded line (frames COUNT)")
        stack = frames.split(";")
        off = stack[-1].startswith("[off-cpu:")
        if (only == "oncpu" and off) or (only == "offcpu" and not off):
            continue
        node = root
        node["w"] += int(w)
        for f in stack:
            node = node["kids"].setdefault(f, {"name": f, "w": 0, "kids": {}, "off": off})
            node["w"] += int(w)
            node["off"] = node["off"] or off
    if not root["w"]:
        die(f"{path}: no stacks to draw")
    return root


def colour(node):
    h = zlib.crc32(node["name"].encode()) % 1000 / 1000
    if node["off"]:
        return (0.35 + 0.2 * h, 0.55 + 0.2 * h, 0.95)
    return (0.95, 0.35 + 0.5 * h, 0.15 + 0.2 * h)


def draw(root, out, title, width, dpi):
    depth = [0]

    def walk(node, x, d, rects):
        depth[0] = max(depth[0], d)
        rects.append((x, d, node))
        for k in sorted(node["kids"].values(), key=lambda k: k["name"]):
            walk(k, x, d + 1, rects)
            x += k["w"]

    rects = []
    walk(root, 0, 0, rects)
    total = root["w"]
    fig_h = max(3, 0.22 * (depth[0] + 2))
    fig, ax = plt.subplots(figsize=(width, fig_h))
    px_per_unit = width * 72 / total
    for x, d, node in rects:
        ax.add_patch(Rectangle((x, d), node["w"], 0.95, facecolor=colour(node),
                               edgecolor="white", linewidth=0.3))
        chars = int(node["w"] * px_per_unit / 5.5)
        if chars >= 4:
            label = node["name"] if len(node["name"]) <= chars else node["name"][:chars - 2] + ".."
            ax.text(x + total * 0.002, d + 0.45, label, fontsize=6, va="center",
                    clip_on=True)
    ax.set_xlim(0, total)
    ax.set_ylim(0, depth[0] + 1)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=dpi)
    print(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folded")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--title", default="contactmap: on-CPU and off-CPU stacks")
    ap.add_argument("--only", choices=["oncpu", "offcpu"])
    ap.add_argument("--width", type=float, default=14)
    ap.add_argument("--dpi", type=int, default=110)
    a = ap.parse_args()
    draw(parse(a.folded, a.only), a.output, a.title, a.width, a.dpi)


if __name__ == "__main__":
    main()
