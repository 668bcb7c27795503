#!/usr/bin/env python
"""Overfit the tiny config on one short real clip on the CPU: proof that the GAN training loop learns.

    python train/overfit.py CLIP.ogg [--steps 400] [--out train/runs/overfit]

Writes ``log.csv`` (step, mel loss, ...) and ``overfit.png`` (the curve) into ``--out``. The clip is resampled to
the tiny model's 16 kHz; batches are random excerpts of it. With ``--gan`` the smoke config's tiny discriminators
train too.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ml_audio_encoder.runtime import audio_io  # noqa: E402
from ml_audio_encoder.training.callbacks import machine_description  # noqa: E402
from train.train import CONF_DIR, build, load_config  # noqa: E402


def excerpts(clip, n, length, rng):
    starts = rng.randint(0, max(1, len(clip) - length), size=n)
    batch = np.stack([clip[s:s + length] for s in starts])[..., None]
    return batch * rng.choice([-1.0, 1.0], size=(n, 1, 1))  # polarity flip, as the real pipeline does


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("clip")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=20, help="steps between log rows")
    p.add_argument("--seconds", type=float, default=3.0, help="length of the clip to keep")
    p.add_argument("--out", default=os.path.join(os.path.dirname(CONF_DIR), "runs", "overfit"))
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--gan", action="store_true", help="train with the discriminators (default: reconstruction only)")
    args = p.parse_args(argv)

    config = load_config(os.path.join(CONF_DIR, "smoke.yml"), ["optim.lr=1e-3", "optim.gamma=1.0", *args.set])
    keras.utils.set_random_seed(0)
    trainer = build(config)
    trainer.set_adversarial(args.gan)
    g = trainer.generator
    audio, sr = audio_io.load(args.clip)
    clip = audio_io.resample(audio_io.to_mono(audio), sr, g.sample_rate)[: int(args.seconds * g.sample_rate)]
    clip = (clip / (np.abs(clip).max() + 1e-9) * 0.7).astype("float32")
    batch = config["data"]["batch_size"]
    length = int(round(0.4 * g.sample_rate / g.hop_length)) * g.hop_length  # the mel loss needs > 2048 samples
    rng = np.random.RandomState(0)
    whole = keras.ops.convert_to_tensor(clip[None, : len(clip) // g.hop_length * g.hop_length, None])

    os.makedirs(args.out, exist_ok=True)
    rows, t0 = [], time.time()
    for step in range(0, args.steps + 1, args.every):
        if step:
            x = excerpts(clip, batch * args.every, length, rng).astype("float32")
            logs = trainer.fit(x, batch_size=batch, epochs=1, verbose=0, shuffle=False).history
            logs = {k: v[-1] for k, v in logs.items()}
        else:
            logs = {}
        val = trainer.evaluate(whole, whole, batch_size=1, verbose=0, return_dict=True)
        rows.append({"step": step, "wall_s": round(time.time() - t0, 1), "machine": machine_description(),
                     **{k: round(float(v), 4) for k, v in logs.items()},
                     **{f"clip_{k}": round(float(v), 4) for k, v in val.items()}})
        print(f"step {step:4d}  train mel {logs.get('mel', float('nan')):.3f}  whole-clip mel {val['mel']:.3f}  "
              f"si-sdr {val['si_sdr']:.1f} dB", flush=True)
    with open(os.path.join(args.out, "log.csv"), "w", newline="") as f:
        fields = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    plot(rows, os.path.join(args.out, "overfit.png"), os.path.basename(args.clip))


def plot(rows, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["clip_mel"] for r in rows], marker="o", ms=3, label="mel loss, whole clip")
    if any("mel" in r for r in rows):
        ax.plot([r["step"] for r in rows if "mel" in r], [r["mel"] for r in rows if "mel" in r], alpha=0.6,
                label="mel loss, training batches")
    ax.set_xlabel("step")
    ax.set_ylabel("7-scale log-mel L1")
    ax.set_title(f"tiny_test overfitting one clip ({title}), CPU", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
