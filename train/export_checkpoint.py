#!/usr/bin/env python
"""Copy a run's published checkpoint into small travelling files (and optionally into the package).

    python train/export_checkpoint.py RUN_DIR OUT_DIR [--which best|latest] [--generator-dtype float32]
           [--part-mb 15] [--no-optimizer]

Writes ``generator.npz`` (split into parts of at most ``--part-mb`` MiB), ``discriminator.npz`` (float16),
optionally ``optimizer.npz`` (float16) and ``checkpoint.json`` — what ``train.py --resume`` reads when OUT_DIR is
later laid out as ``<run>/checkpoints/step-N/``. Only numpy is needed, so it runs on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ml_audio_encoder.weights import load_arrays, save_arrays  # noqa: E402


def export(run_dir, out_dir, which="latest", generator_dtype=None, part_mb=15, optimizer=False):
    ckpt = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(ckpt, f"{which}.json")) as f:
        record = json.load(f)
    folder = os.path.join(ckpt, record["folder"])
    os.makedirs(out_dir, exist_ok=True)
    limit = int(part_mb * 2**20)
    arrays, meta = load_arrays(os.path.join(folder, "generator.npz"))
    save_arrays(os.path.join(out_dir, "generator.npz"), arrays, generator_dtype, limit, meta)
    arrays, meta = load_arrays(os.path.join(folder, "discriminator.npz"))
    save_arrays(os.path.join(out_dir, "discriminator.npz"), arrays, "float16", limit, meta)
    if optimizer and os.path.exists(os.path.join(folder, "optimizer.npz")):
        arrays, meta = load_arrays(os.path.join(folder, "optimizer.npz"))
        save_arrays(os.path.join(out_dir, "optimizer.npz"), arrays, "float16", limit, meta)
    with open(os.path.join(out_dir, "checkpoint.json"), "w") as f:
        json.dump(record, f, indent=1)
    log = os.path.join(run_dir, "log.csv")
    if os.path.exists(log):
        shutil.copy(log, os.path.join(out_dir, "log.csv"))
    return record


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("out_dir")
    p.add_argument("--which", default="latest", choices=["latest", "best"])
    p.add_argument("--generator-dtype", default=None, help="e.g. float16 (default: keep float32)")
    p.add_argument("--part-mb", type=float, default=15)
    p.add_argument("--optimizer", action="store_true", help="also export optimizer state (float16)")
    args = p.parse_args(argv)
    record = export(args.run_dir, args.out_dir, args.which, args.generator_dtype, args.part_mb, args.optimizer)
    print(f"exported {args.which} checkpoint at step {record['step']} to {args.out_dir}")


if __name__ == "__main__":
    main()
