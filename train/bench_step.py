#!/usr/bin/env python
"""Time GAN training steps of a config: steps/s, seconds of audio per second, accelerator memory.

    KERAS_BACKEND=jax python train/bench_step.py --config train/conf/thesis_44khz.yml --steps 40

Uses random audio (timing does not depend on content) so it runs anywhere; prints one Markdown table row.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")  # as train/train.py: no fresh kernel pages every step

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ml_audio_encoder.training.callbacks import _peak_device_mb, machine_description  # noqa: E402
from ml_audio_encoder.training.config import build, load_config  # noqa: E402


class _Timer(keras.callbacks.Callback):
    def __init__(self, warmup):
        super().__init__()
        self.warmup, self.times = warmup, []

    def on_train_batch_end(self, batch, logs=None):
        if logs:  # forces the step to finish (JAX dispatches asynchronously)
            float(next(iter(logs.values())))
        self.times.append(time.perf_counter())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True)
    p.add_argument("--set", nargs="*", default=[])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5, help="steps excluded from timing (compilation)")
    p.add_argument("--no-gan", action="store_true", help="time reconstruction-only steps")
    args = p.parse_args(argv)

    config = load_config(args.config, args.set)
    trainer = build(config)
    trainer.set_adversarial(not args.no_gan)
    g = trainer.generator
    batch = config["data"].get("batch_size", 16)
    excerpt = int(round(config["data"].get("excerpt_seconds", 0.38) * g.sample_rate / g.hop_length)) * g.hop_length
    n = batch * (args.steps + args.warmup)
    x = (np.random.RandomState(0).randn(n, excerpt, 1) * 0.1).astype("float32")
    timer = _Timer(args.warmup)
    t0 = time.perf_counter()
    trainer.fit(x, batch_size=batch, epochs=1, verbose=0, callbacks=[timer], shuffle=False)
    compile_s = timer.times[args.warmup - 1] - t0
    steady = timer.times[-1] - timer.times[args.warmup - 1]
    steps_per_s = args.steps / steady
    audio_per_s = steps_per_s * batch * excerpt / g.sample_rate
    print("| config | backend / device | G params | D params | batch × s | GAN | steps/s | audio s/s | "
          "first steps s | peak MB |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {config['name']} | {machine_description()} | {g.count_params() / 1e6:.1f}M | "
          f"{trainer.discriminator.count_params() / 1e6:.1f}M | {batch} × {excerpt / g.sample_rate:.2f} | "
          f"{'yes' if not args.no_gan else 'no'} | {steps_per_s:.2f} | {audio_per_s:.1f} | {compile_s:.0f} | "
          f"{_peak_device_mb()} |")


if __name__ == "__main__":
    main()
