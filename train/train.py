#!/usr/bin/env python
"""Train the codec with ``model.fit``: ``python train/train.py --config train/conf/small_24khz.yml [--resume]``.

Overrides: ``--set data.batch_size=8 train.epochs=2`` (dotted keys, YAML values). Runs are resumable: with
``--resume`` the latest checkpoint in ``<run_dir>/checkpoints`` is loaded (weights and both optimizers) and training
continues from its epoch. ``--max-minutes`` stops cleanly (checkpoint included) before a wall-clock limit, which is
how runs on a time-limited GPU machine are chained.

Backend: TensorFlow by default; ``KERAS_BACKEND=jax`` for GPU machines without TensorFlow. With TensorFlow,
``--distribute mirrored`` trains under ``tf.distribute.MirroredStrategy`` on every local GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import sys
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from ml_audio_encoder.training import callbacks as cb  # noqa: E402
from ml_audio_encoder import data as D  # noqa: E402
from ml_audio_encoder.training.discriminator import Discriminator  # noqa: E402
from ml_audio_encoder.models.presets import load as load_preset  # noqa: E402
from ml_audio_encoder.training.trainer import CodecTrainer, make_optimizer  # noqa: E402

CONF_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")


def load_config(path, overrides=()):
    """Read a YAML config (``base:`` names another config file to start from) and apply ``key.sub=value`` pairs."""
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    if "base" in config:
        base = load_config(os.path.join(os.path.dirname(path), config.pop("base")))
        config = _merge(base, config)
    for item in overrides:
        key, _, value = item.partition("=")
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = _parse_value(value)
    return config


def _parse_value(text):
    # YAML 1.1 reads "1e-3" (no dot) as a string; on a command line that is always meant as a number.
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def _merge(base, update):
    out = copy.deepcopy(base)
    for k, v in update.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class StopAfter(keras.callbacks.Callback):
    """End training after ``minutes`` of wall time; the epoch still ends normally, so it is checkpointed."""

    def __init__(self, minutes):
        super().__init__()
        self.deadline = time.time() + 60 * minutes

    def on_train_batch_end(self, batch, logs=None):
        if time.time() > self.deadline:
            self.model.stop_training = True


def build(config):
    """Generator, discriminator and compiled trainer from a config dict."""
    generator = load_preset(config["preset"], **config.get("model", {}))
    disc_conf = dict(config.get("discriminator", {}))
    disc_conf.setdefault("sample_rate", generator.sample_rate)
    discriminator = Discriminator(**disc_conf)
    discriminator.build((None, None, 1))
    opt = config.get("optim", {})
    trainer = CodecTrainer(generator, discriminator, adversarial=True)
    trainer.compile(
        g_optimizer=make_optimizer(opt.get("lr", 1e-4), tuple(opt.get("betas", (0.8, 0.99))),
                                   opt.get("gamma", 0.999996), opt.get("weight_decay", 0.01),
                                   opt.get("g_clipnorm", 1000.0)),
        d_optimizer=make_optimizer(opt.get("d_lr", opt.get("lr", 1e-4)), tuple(opt.get("betas", (0.8, 0.99))),
                                   opt.get("gamma", 0.999996), opt.get("weight_decay", 0.01),
                                   opt.get("d_clipnorm", 10.0)),
        loss_weights=config.get("loss_weights"),
        jit_compile=config.get("train", {}).get("jit_compile", "auto"),
    )
    return trainer


def make_data(config, generator):
    dc = config["data"]
    hop = generator.hop_length
    excerpt = int(round(dc.get("excerpt_seconds", 0.38) * generator.sample_rate / hop)) * hop
    train = D.AudioDataset(
        dc["source"], generator.sample_rate, excerpt_samples=excerpt, batch_size=dc.get("batch_size", 16),
        steps_per_epoch=config["train"].get("steps_per_epoch", 500), seed=config["train"].get("seed", 0),
        split=dc.get("train_split", "train"), domains=dc.get("domains"), preload=dc.get("preload", True),
        workers=dc.get("workers", 2), max_queue_size=dc.get("max_queue_size", 16),
        full_band_weight=dc.get("full_band_weight", 1.0), progress=True,
    )
    val = D.build_validation_set(
        dc.get("val_source", dc["source"]), generator.sample_rate, excerpt_samples=dc.get("val_excerpt", excerpt * 4),
        n_per_domain=dc.get("val_per_domain", 8), split=dc.get("val_split", "dev"), domains=dc.get("domains"),
    )
    return train, val


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(CONF_DIR, "small_24khz.yml"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--run-dir", help="where checkpoints, logs and TensorBoard go (default train/runs/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--max-minutes", type=float, help="stop cleanly after this much wall time")
    parser.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none")
    args = parser.parse_args(argv)

    config = load_config(args.config, args.set)
    tc = config.setdefault("train", {})
    run_dir = args.run_dir or os.path.join(os.path.dirname(CONF_DIR), "runs", config["name"])
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(tc.get("seed", 0))

    scope = contextlib.nullcontext()
    if args.distribute != "none":
        import tensorflow as tf

        strategy = (tf.distribute.MirroredStrategy() if args.distribute == "mirrored"
                    else tf.distribute.MultiWorkerMirroredStrategy())
        scope = strategy.scope()
    with scope:
        trainer = build(config)
    train_data, val = make_data(config, trainer.generator)
    print(f"generator {trainer.generator.count_params():,} params, discriminator "
          f"{trainer.discriminator.count_params():,}; {len(val)} validation clips; backend {keras.backend.backend()}")

    checkpointer = cb.Checkpointer(os.path.join(run_dir, "checkpoints"), trainer)
    initial_epoch = 0
    if args.resume:
        record = checkpointer.restore("latest")
        if record:
            initial_epoch = int(record["epoch"])
            print(f"resumed from step {record['step']} (epoch {initial_epoch})")

    steps = tc.get("steps_per_epoch", 500)
    warmup_epochs = -(-int(tc.get("warmup_steps", 0)) // steps)
    callbacks = [
        cb.NaNGuard(),
        cb.CheckpointCallback(checkpointer, keep_optimizer=tc.get("checkpoint_optimizer", True)),
        cb.CSVLog(os.path.join(run_dir, "log.csv"), extra={"config": os.path.basename(args.config)}),
        cb.AudioSummary(os.path.join(run_dir, "tensorboard"), val.audio[: min(4, len(val))],
                        trainer.generator.sample_rate),
    ]
    if args.max_minutes:
        callbacks.append(StopAfter(args.max_minutes))
    epochs = tc.get("epochs", 100)
    val_data = val.as_py_dataset(config["data"].get("val_batch_size", 8))
    verbose = 2 if os.environ.get("CI") or not sys.stdout.isatty() else 1
    phases = [(False, min(warmup_epochs, epochs)), (True, epochs)]
    for adversarial, end_epoch in phases:
        if initial_epoch >= end_epoch:
            continue
        trainer.set_adversarial(adversarial)
        print(f"{'GAN' if adversarial else 'reconstruction-only warm-up'} phase: epochs {initial_epoch}..{end_epoch}")
        history = trainer.fit(train_data, epochs=end_epoch, initial_epoch=initial_epoch, steps_per_epoch=steps,
                              validation_data=val_data, callbacks=callbacks, verbose=verbose)
        initial_epoch = initial_epoch + len(history.epoch)
        if trainer.stop_training or initial_epoch < end_epoch:
            break
    return trainer


if __name__ == "__main__":
    main()
