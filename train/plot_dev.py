#!/usr/bin/env python
"""Plot dev-check curves (``dev.csv``, written by ``train/train.py``) of one or more runs against training
CPU-hours, beside Opus on the same clips (``dev_opus.json``), and print them as a Markdown table.

    python train/plot_dev.py train/runs/ab_cpu/small_24khz train/runs/ab_cpu/fast_24khz \\
        --labels small_24khz fast_24khz --out docs/img/ab_cpu.png

Four panels: mel distance and ViSQOL, for speech and for music (lower mel, higher ViSQOL is better). The x axis is
cumulative training CPU time, so runs that shared a machine or continued over sessions compare fairly.

It also prints how much the dev mel fell over the last ``--trend`` CPU-hours (issue 11's rule: a curve less than 2%
better over the last 3 CPU-hours is flat), as the best check up to then against the best check so far: warm restarts
make the curve a saw (each cycle's first checks are ~2% worse, its last the best), so a mean of the checks at a
given time says more about where in its cycle the run was than about how far it has come.
"""

from __future__ import annotations

import argparse
import csv
import json
import os

PANELS = (("mel/speech", "mel distance, speech"), ("mel/music", "mel distance, music"),
          ("visqol/speech", "ViSQOL, speech (16 kHz)"), ("visqol/music", "ViSQOL, music (48 kHz)"))


TEXT_COLUMNS = ("time", "weights")  # when the check ran; what train/dev_check.py scored


def read_dev(run_dir):
    """``(rows, Opus reference)`` of a run's ``dev.csv``, rows in order of CPU-hours (``train/dev_check.py`` may
    append a stopped run's last check after rows of the run that went on)."""
    with open(os.path.join(run_dir, "dev.csv")) as f:
        rows = [{k: float(v) for k, v in r.items() if v not in ("", None) and k not in TEXT_COLUMNS}
                for r in csv.DictReader(f)]
    rows.sort(key=lambda r: r["cpu_hours"])
    ref_path = os.path.join(run_dir, "dev_opus.json")
    ref = None
    if os.path.exists(ref_path):
        with open(ref_path) as f:
            ref = json.load(f)
    return rows, ref


def trend(rows, hours=3.0, key="mel"):
    """``(then, now, change)``: the best (lowest) ``key`` of one run's dev checks up to ``hours`` CPU-hours before
    its last check, the best of all its checks, and the relative change (negative: better). ``None`` when the run
    is not ``hours`` long."""
    pts = [(r["cpu_hours"], r[key]) for r in rows if key in r]
    if not pts or pts[-1][0] - pts[0][0] < hours:
        return None
    then = min(v for h, v in pts if h <= pts[-1][0] - hours)
    now = min(v for _, v in pts)
    return then, now, now / then - 1.0


def table(runs, labels):
    lines = ["| run | step | CPU-hours | " + " | ".join(t for _, t in PANELS) + " |",
             "|---|---:|---:|" + "---:|" * len(PANELS)]
    for (rows, ref), label in zip(runs, labels):
        for r in rows:
            lines.append(f"| {label} | {int(r['step'])} | {r['cpu_hours']:.2f} | "
                         + " | ".join(f"{r.get(k, float('nan')):.3f}" for k, _ in PANELS) + " |")
        if ref:
            s = ref["scores"]
            lines.append(f"| Opus {ref['kbps']:g} kbps | | | " + " | ".join(f"{s.get(k, float('nan')):.3f}"
                                                                      for k, _ in PANELS) + " |")
    return "\n".join(lines)


def plot(runs, labels, out, title=None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    ref_drawn = set()
    for (rows, ref), label in zip(runs, labels):
        for ax, (key, name) in zip(axes.flat, PANELS):
            pts = [(60 * r["cpu_hours"], r[key]) for r in rows if key in r]
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, label=label)
            if ref and key not in ref_drawn and key in ref["scores"]:
                ax.axhline(ref["scores"][key], color="k", ls="--", lw=1, label=f"Opus {ref['kbps']:g} kbps")
                ref_drawn.add(key)
            ax.set_title(name, fontsize=10)
            ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("training CPU-minutes (process CPU time)")
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    fig.savefig(out, dpi=110)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders holding dev.csv")
    p.add_argument("--labels", nargs="*")
    p.add_argument("--out", help="PNG to write")
    p.add_argument("--title")
    p.add_argument("--trend", type=float, default=3.0, metavar="HOURS",
                   help="print the dev mel's change over the last HOURS CPU-hours (default 3)")
    args = p.parse_args(argv)
    labels = args.labels or [os.path.basename(os.path.normpath(r)) for r in args.runs]
    runs = [read_dev(r) for r in args.runs]
    print(table(runs, labels))
    for (rows, _), label in zip(runs, labels):
        t = trend(rows, args.trend)
        if t:
            print(f"{label}: best dev mel {t[0]:.4f} -> {t[1]:.4f} ({100 * t[2]:+.1f}%) over the last "
                  f"{args.trend:g} CPU-hours")
    if args.out:
        plot(runs, labels, args.out, args.title)


if __name__ == "__main__":
    main()
