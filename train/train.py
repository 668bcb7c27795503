#!/usr/bin/env python
"""Train the codec with ``model.fit``: ``python train/train.py --config train/conf/default_cpu.yml``.

Overrides: ``--set data.batch_size=8 train.epochs=2`` (dotted keys, YAML values).

Three ways to continue a run:
* ``--resume``: the latest full checkpoint in ``<run_dir>/checkpoints`` (weights and both optimizers; git-ignored),
  for restarts on the same machine.
* ``--init-from train/state/<run>``: the compact committed state (``ml_audio_encoder/training/state.py``):
  weights, step, epoch and cumulative CPU time, with fresh optimizer moments and a short learning-rate warm-up.
  This is how a fresh checkout continues where the last session stopped; ``log.csv`` and ``dev.csv`` keep growing
  with cumulative CPU-hours.
* ``--save-state DIR`` (default ``train/state/<name>``) writes that compact state when the run ends.

``--max-minutes`` (wall) and ``--max-cpu-minutes`` (this process's training CPU time) stop cleanly at the end of an
epoch. From scratch the codebooks are initialized by k-means on the first batches (``codebooks.kmeans_batches``)
and dead codes are restarted during training (``codebooks.restart_after``). Every ``dev.every_cpu_minutes`` the
fixed dev check (``ml_audio_encoder/eval/devcheck.py``) scores mel distance and ViSQOL at ``dev.levels`` levels.

Backend: TensorFlow by default; ``KERAS_BACKEND=jax`` for GPU machines without TensorFlow. With TensorFlow,
``--distribute mirrored`` trains under ``tf.distribute.MirroredStrategy`` on every local GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

# TensorFlow's CPU allocator keeps its buffers (BFC) instead of taking fresh pages from the kernel every step: 1.9x
# less CPU per small_24khz step, 1.24x per fast_24khz step (docs/training_on_cpu.md). Read when TF starts.
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

import keras  # noqa: E402

from ml_audio_encoder.eval.devcheck import DevCheck, opus_reference  # noqa: E402
from ml_audio_encoder.training import callbacks as cb  # noqa: E402
from ml_audio_encoder.training import data as D  # noqa: E402
from ml_audio_encoder.training import keep_freed_memory  # noqa: E402
from ml_audio_encoder.training.codebooks import DeadCodeRestart, init_codebooks_from_data  # noqa: E402
from ml_audio_encoder.training.config import build, load_config, make_data, training_phases  # noqa: E402
from ml_audio_encoder.training.state import load_state, read_state, save_state  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CONF_DIR = os.path.join(HERE, "conf")


def _set_threads(n):
    if not n or keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(n)
    tf.config.threading.set_inter_op_parallelism_threads(n)


def dev_clips(config, generator):
    """The fixed dev-check clips of a config: ``(audio (N, T, 1), domains)``."""
    dc, dev = config["data"], config.get("dev", {})
    seconds = dev.get("seconds", 4.0)
    hop = generator.hop_length
    excerpt = int(round(seconds * generator.sample_rate / hop)) * hop
    val = D.build_validation_set(dc.get("val_source", dc["source"]), generator.sample_rate, excerpt_samples=excerpt,
                                 n_per_domain=dev.get("n_per_domain", 6), split=dc.get("val_split", "dev"),
                                 domains=dev.get("domains", ["speech", "music"]), seed=dev.get("seed", 1))
    return val.audio, list(val.domains)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=os.path.join(CONF_DIR, "default_cpu.yml"))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument("--run-dir", help="where checkpoints, logs and TensorBoard go (default train/runs/<name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the latest full checkpoint")
    parser.add_argument("--init-from", metavar="DIR", help="continue from a compact state (train/state/<run>)")
    parser.add_argument("--save-state", metavar="DIR", help="write the compact state here at the end "
                        "(default train/state/<name>; 'none' to skip)")
    parser.add_argument("--max-minutes", type=float, help="stop cleanly after this much wall time")
    parser.add_argument("--max-cpu-minutes", type=float, help="stop cleanly after this much training CPU time")
    parser.add_argument("--threads", type=int, help="TensorFlow intra/inter-op threads (default: all cores)")
    parser.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none")
    args = parser.parse_args(argv)
    keep_freed_memory()

    config = load_config(args.config, args.set)
    tc = config.setdefault("train", {})
    run_dir = args.run_dir or os.path.join(HERE, "runs", config["name"])
    state_dir = args.save_state or os.path.join(HERE, "state", config["name"])
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(tc.get("seed", 0))
    _set_threads(args.threads)

    record = read_state(args.init_from) if args.init_from else None
    if args.init_from and record is None:
        raise SystemExit(f"--init-from {args.init_from}: no state.json there")
    start_step = record["step"] if record else 0
    warmup = tc.get("restart_warmup_steps", 200) if record else 0

    scope = contextlib.nullcontext()
    if args.distribute != "none":
        import tensorflow as tf

        strategy = (tf.distribute.MirroredStrategy() if args.distribute == "mirrored"
                    else tf.distribute.MultiWorkerMirroredStrategy())
        scope = strategy.scope()
    with scope:
        trainer = build(config, start_step=start_step, warmup_steps=warmup)
    generator = trainer.generator
    train_data, val = make_data(config, generator)
    print(f"generator {generator.count_params():,} params, discriminator "
          f"{trainer.discriminator.count_params():,}; {len(val)} validation clips; backend {keras.backend.backend()}")

    checkpointer = cb.Checkpointer(os.path.join(run_dir, "checkpoints"), trainer)
    initial_epoch, cpu_offset = 0, 0.0
    if args.resume and (ckpt := checkpointer.restore("latest")):
        initial_epoch = int(ckpt["epoch"])
        cpu_offset = float(ckpt.get("cpu_seconds", 0.0))
        print(f"resumed from step {ckpt['step']} (epoch {initial_epoch})")
    elif record:
        load_state(trainer, args.init_from)
        initial_epoch, cpu_offset = int(record["epoch"]), float(record["cpu_seconds"])
        print(f"continued from {args.init_from}: step {record['step']}, epoch {initial_epoch}, "
              f"{cpu_offset / 3600:.2f} CPU-hours so far; learning rate warm-up over {warmup} steps")
    else:
        cbc = config.get("codebooks", {})
        if cbc.get("kmeans_batches", 0):
            used = init_codebooks_from_data(generator, train_data, n_batches=cbc["kmeans_batches"],
                                            first_batch=10_000_000, seed=tc.get("seed", 0))
            print("k-means codebook init: codes in use per level " + " ".join(f"{u:.2f}" for u in used))
    train_data.epoch = initial_epoch  # batches of a continued run differ from the ones already seen

    clock = cb.CPUClock(cpu_offset)
    cbc = config.get("codebooks", {})
    callbacks = [clock, cb.NaNGuard()]
    if cbc.get("restart_after", 0):
        callbacks.append(DeadCodeRestart(train_data, cbc["restart_after"], cbc.get("check_every", 10),
                                         seed=tc.get("seed", 0)))
    dev = config.get("dev", {})
    if dev.get("every_cpu_minutes", 0):
        clips, domains = dev_clips(config, generator)
        ref = opus_reference(clips, domains, generator.sample_rate, dev.get("opus_kbps", 6.0),
                             cache_path=os.path.join(run_dir, "dev_opus.json"))
        print("dev check: " + ", ".join(f"{d}: {domains.count(d)}" for d in sorted(set(domains)))
              + f" clips; Opus {dev.get('opus_kbps', 6.0):g} kbps: "
              + " ".join(f"{k} {v:.3f}" for k, v in ref.items()))
        callbacks.append(DevCheck(clips, domains, generator.sample_rate, clock,
                                  csv_path=os.path.join(run_dir, "dev.csv"), n_quantizers=dev.get("levels", 8),
                                  every_cpu_minutes=dev["every_cpu_minutes"]))
    callbacks += [
        cb.CheckpointCallback(checkpointer, keep_optimizer=tc.get("checkpoint_optimizer", True), clock=clock),
        cb.CSVLog(os.path.join(run_dir, "log.csv"), extra={"config": os.path.basename(args.config)}, clock=clock),
        cb.AudioSummary(os.path.join(run_dir, "tensorboard"), val.audio[: min(4, len(val))], generator.sample_rate),
    ]
    if args.max_minutes is not None or args.max_cpu_minutes is not None:
        callbacks.append(cb.StopAfter(args.max_minutes, args.max_cpu_minutes, clock))

    steps = tc.get("steps_per_epoch", 500)
    val_data = val.as_py_dataset(config["data"].get("val_batch_size", 8))
    verbose = 2 if os.environ.get("CI") or not sys.stdout.isatty() else 1
    phases, current = training_phases(tc, initial_epoch)
    # The trainer is built adversarial; a run with no epoch left must still save the state of the phase it is in
    # (an untrained discriminator marked adversarial would otherwise go into the compact state).
    trainer.set_adversarial(current)
    if not phases:
        print(f"the schedule is complete: epoch {initial_epoch} of {tc.get('epochs', 100)} (raise train.epochs "
              "to train on)")
    for adversarial, end_epoch in phases:
        trainer.set_adversarial(adversarial)
        print(f"{'GAN' if adversarial else 'reconstruction-only warm-up'} phase: epochs {initial_epoch}..{end_epoch}")
        history = trainer.fit(train_data, epochs=end_epoch, initial_epoch=initial_epoch, steps_per_epoch=steps,
                              validation_data=val_data, callbacks=callbacks, verbose=verbose)
        initial_epoch = initial_epoch + len(history.epoch)
        if trainer.stop_training or initial_epoch < end_epoch:
            break
    if state_dir != "none":
        saved = save_state(trainer, state_dir, initial_epoch, clock.train_seconds(),
                           config_path=os.path.relpath(args.config, os.path.dirname(HERE)))
        print(f"compact state written to {state_dir}: step {saved['step']}, "
              f"{saved['cpu_seconds'] / 3600:.2f} CPU-hours")
    return trainer


if __name__ == "__main__":
    main()
