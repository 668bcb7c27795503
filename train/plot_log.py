#!/usr/bin/env python
"""Plot a run's ``log.csv``: training and validation mel loss, validation SI-SDR, against steps.

    python train/plot_log.py train/runs/small_24khz/log.csv docs/img/train_small_24khz.png

Rows come from every (resumed) run appended to the log; the machine column colours the points, so the figure
shows which machine trained which steps. Also prints the log as a Markdown table (one row per ``--every`` steps).
"""

from __future__ import annotations

import argparse
import csv


def read_log(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out = []
    for row in rows:
        parsed = {}
        for key, value in row.items():
            try:
                parsed[key] = float(value)
            except (TypeError, ValueError):
                parsed[key] = value
        out.append(parsed)
    return out


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_mel, ax_sdr) = plt.subplots(1, 2, figsize=(10, 3.4))
    machines = sorted({r.get("machine", "?") for r in rows})
    for machine in machines:
        sel = [r for r in rows if r.get("machine", "?") == machine]
        steps = [r["step"] for r in sel]
        ax_mel.plot(steps, [r.get("mel") for r in sel], alpha=0.5, label=f"train mel ({machine})")
        ax_mel.plot(steps, [r.get("val_mel") for r in sel], marker="o", ms=3, label=f"validation mel ({machine})")
        ax_sdr.plot(steps, [r.get("val_si_sdr") for r in sel], marker="o", ms=3, label=machine)
    ax_mel.set(xlabel="step", ylabel="7-scale log-mel L1", title=title)
    ax_sdr.set(xlabel="step", ylabel="SI-SDR (dB)", title="validation SI-SDR")
    ax_mel.grid(alpha=0.3)
    ax_sdr.grid(alpha=0.3)
    ax_mel.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(rows, every=100):
    lines = ["| step | wall time (min) | train mel | val mel | val SI-SDR (dB) | val STFT | machine |",
             "|---:|---:|---:|---:|---:|---:|---|"]
    picked = [r for r in rows if int(r["step"]) % every == 0] or rows
    if rows and picked[-1] is not rows[-1]:
        picked.append(rows[-1])
    for r in picked:
        lines.append(f"| {int(r['step'])} | {r.get('wall_s', 0) / 60:.0f} | {r.get('mel', float('nan')):.3f} | "
                     f"{r.get('val_mel', float('nan')):.3f} | {r.get('val_si_sdr', float('nan')):.1f} | "
                     f"{r.get('val_stft', float('nan')):.3f} | {r.get('machine', '?')} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log")
    p.add_argument("out")
    p.add_argument("--title", default="small_24khz training")
    p.add_argument("--every", type=int, default=200, help="steps between the printed table's rows")
    args = p.parse_args(argv)
    rows = read_log(args.log)
    plot(rows, args.out, args.title)
    print(markdown(rows, args.every))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
