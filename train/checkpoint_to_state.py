#!/usr/bin/env python
"""Make a compact state (``train/state/...``, for ``train.py --init-from``) from a run's full checkpoint.

    python train/checkpoint_to_state.py train/runs/ab_cpu/fast_24khz/checkpoints runs_local/branch/fast45

Generator weights (float16 by default), step, epoch and cumulative CPU time; no discriminator and no optimizer
moments, so experiment arms with other discriminators or losses can all continue from the same point.
"""

from __future__ import annotations

import argparse

from ml_audio_encoder.training.state import state_from_checkpoint


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", help="a run's checkpoints/ folder")
    p.add_argument("out", help="the state folder to write")
    p.add_argument("--which", default="latest", choices=["latest", "best"])
    p.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    args = p.parse_args(argv)
    record = state_from_checkpoint(args.checkpoints, args.out, args.which, args.dtype)
    print(f"{args.out}: step {record['step']}, epoch {record['epoch']}, {record['cpu_seconds'] / 60:.1f} CPU-minutes")


if __name__ == "__main__":
    main()
