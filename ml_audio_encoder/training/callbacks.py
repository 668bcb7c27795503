"""Callbacks for :class:`~ml_audio_encoder.training.trainer.CodecTrainer`: resumable checkpoints, logs, a NaN guard.

Checkpoints must survive a kill at any moment: each one is written into its own ``step-NNNNNNN/`` folder and only
then published by atomically replacing ``latest.json`` (and ``best.json``). A half-written folder is never pointed
to, and stale folders are pruned only after the pointer moved.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import shutil
import socket
import time

import keras
import numpy as np

from ..weights import assign, load_arrays, save_arrays


def _write_json_atomic(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def machine_description():
    """Which machine ran a step: host, backend and accelerator (for the training log)."""
    device = "cpu"
    try:
        if keras.backend.backend() == "jax":
            import jax

            device = jax.devices()[0].device_kind
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
            device = f"{len(gpus)}xGPU" if gpus else "cpu"
    except Exception:  # a description must never stop training
        pass
    return f"{socket.gethostname()}/{platform.machine()}/{keras.backend.backend()}/{device}"


class Checkpointer:
    """Save/restore generator, discriminator and both optimizers' state for a :class:`CodecTrainer`."""

    def __init__(self, directory, trainer):
        self.directory = directory
        self.trainer = trainer
        os.makedirs(directory, exist_ok=True)

    def _pointer(self, which):
        return os.path.join(self.directory, f"{which}.json")

    def read_pointer(self, which="latest"):
        try:
            with open(self._pointer(which)) as f:
                return json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def save(self, state, best=False, keep_optimizer=True):
        """Write a checkpoint for ``state`` (a dict with at least ``step``) and publish it as latest (and best)."""
        name = f"step-{int(state['step']):08d}"
        folder = os.path.join(self.directory, name)
        os.makedirs(folder, exist_ok=True)
        t = self.trainer
        save_arrays(os.path.join(folder, "generator.npz"), [np.asarray(w) for w in t.generator.weights],
                    meta={"config": t.generator.get_config()})
        save_arrays(os.path.join(folder, "discriminator.npz"), [np.asarray(w) for w in t.discriminator.weights])
        if keep_optimizer:
            save_arrays(os.path.join(folder, "optimizer.npz"), [np.asarray(v) for v in t.optimizer.variables])
        record = {**state, "folder": name, "time": time.time()}
        _write_json_atomic(self._pointer("latest"), record)
        if best:
            _write_json_atomic(self._pointer("best"), record)
        self._prune()
        return folder

    def _prune(self):
        keep = {p["folder"] for p in (self.read_pointer("latest"), self.read_pointer("best")) if p}
        for entry in os.listdir(self.directory):
            if entry.startswith("step-") and entry not in keep:
                shutil.rmtree(os.path.join(self.directory, entry), ignore_errors=True)

    def restore(self, which="latest", optimizer=True):
        """Load the published checkpoint into the trainer; returns its state dict or ``None`` if there is none."""
        record = self.read_pointer(which)
        if record is None:
            return None
        folder = os.path.join(self.directory, record["folder"])
        t = self.trainer
        assign(t.generator.weights, load_arrays(os.path.join(folder, "generator.npz"))[0], "generator")
        assign(t.discriminator.weights, load_arrays(os.path.join(folder, "discriminator.npz"))[0], "discriminator")
        opt_path = os.path.join(folder, "optimizer.npz")
        if optimizer and os.path.exists(opt_path):
            assign(t.optimizer.variables, load_arrays(opt_path)[0], "optimizer")
        return record


class CheckpointCallback(keras.callbacks.Callback):
    """Checkpoint at the end of every epoch (an epoch is ``steps_per_epoch`` steps); track the best val mel."""

    def __init__(self, checkpointer, monitor="val_mel", keep_optimizer=True, clock=None):
        super().__init__()
        self.clock = clock
        self.checkpointer = checkpointer
        self.monitor = monitor
        self.keep_optimizer = keep_optimizer
        best = checkpointer.read_pointer("best")
        self.best = best.get(monitor, math.inf) if best else math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        is_best = value is not None and float(value) < self.best
        if is_best:
            self.best = float(value)
        state = {"epoch": epoch + 1, "step": int(self.model.optimizer.iterations.numpy()
                                                  if hasattr(self.model.optimizer.iterations, "numpy")
                                                  else self.model.optimizer.iterations)}
        state.update({k: float(v) for k, v in logs.items()})
        if self.clock is not None:
            state["cpu_seconds"] = self.clock.train_seconds()
        self.checkpointer.save(state, best=is_best, keep_optimizer=self.keep_optimizer)


class NaNGuard(keras.callbacks.Callback):
    """Stop at the first non-finite loss with a message naming the batch and the term, instead of training on."""

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            try:
                value = float(value)
            except (TypeError, ValueError):
                continue
            if not math.isfinite(value):
                self.model.stop_training = True
                raise FloatingPointError(
                    f"non-finite {name} = {value} at batch {batch}: training stopped. Lower the learning rate or "
                    "check the data (silent or clipped excerpts); resume from the last checkpoint with --resume."
                )


class CPUClock(keras.callbacks.Callback):
    """Training CPU time of this process plus the runs before it: the budget that equal-budget comparisons use.

    ``time.process_time()`` counts every thread of the process (the data workers too), so two runs sharing a
    machine are still measured fairly. Validation passes and anything reported through :meth:`exclude` (the dev
    check) are not training and are subtracted. ``offset_seconds`` carries the total over restarts
    (``training/state.py`` stores it).
    """

    def __init__(self, offset_seconds=0.0):
        super().__init__()
        self.offset = float(offset_seconds)
        self.start = time.process_time()
        self.excluded = 0.0
        self._test_t0 = None

    def train_seconds(self):
        return self.offset + time.process_time() - self.start - self.excluded

    def exclude(self, seconds):
        self.excluded += float(seconds)

    def on_test_begin(self, logs=None):
        self._test_t0 = time.process_time()

    def on_test_end(self, logs=None):
        if self._test_t0 is not None:
            self.exclude(time.process_time() - self._test_t0)
            self._test_t0 = None


class StopAfter(keras.callbacks.Callback):
    """End training after ``minutes`` of wall time or ``cpu_minutes`` of training CPU time (``clock``, a
    :class:`CPUClock`); the epoch still ends normally, so it is checkpointed."""

    def __init__(self, minutes=None, cpu_minutes=None, clock=None):
        super().__init__()
        if cpu_minutes is not None and clock is None:
            raise ValueError("cpu_minutes needs a CPUClock")
        self.deadline = time.time() + 60 * minutes if minutes is not None else None
        self.cpu_deadline = clock.train_seconds() + 60 * cpu_minutes if cpu_minutes is not None else None
        self.clock = clock

    def on_train_batch_end(self, batch, logs=None):
        if self.deadline is not None and time.time() > self.deadline:
            self.model.stop_training = True
        if self.cpu_deadline is not None and self.clock.train_seconds() > self.cpu_deadline:
            self.model.stop_training = True


class CSVLog(keras.callbacks.Callback):
    """Append one row per epoch to ``log.csv``: step, wall time, machine and every logged loss.

    Appending (not rewriting) keeps the history of earlier, resumed runs — also ones from other machines.
    """

    def __init__(self, path, extra=None, clock=None):
        super().__init__()
        self.path = path
        self.extra = extra or {}
        self.clock = clock
        self.machine = machine_description()
        self.t0 = None

    def on_train_begin(self, logs=None):
        self.t0 = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_t0, self.epoch_batches = time.time(), 0

    def on_train_batch_end(self, batch, logs=None):
        self.epoch_batches, self.batch_t = batch + 1, time.time()

    def on_epoch_end(self, epoch, logs=None):
        it = self.model.optimizer.iterations
        train_s = max(getattr(self, "batch_t", time.time()) - self.epoch_t0, 1e-9)
        row = {
            "step": int(it.numpy() if hasattr(it, "numpy") else it),
            "epoch": epoch + 1,
            "wall_s": round(time.time() - self.t0, 1),
            # includes the first epoch's compilation; later epochs give the steady rate
            "steps_per_s": round(self.epoch_batches / train_s, 3),
            "peak_device_mb": _peak_device_mb(),
            # cumulative training CPU time over every run that wrote this log (the x axis of equal-budget curves)
            "cpu_hours": round(self.clock.train_seconds() / 3600.0, 4) if self.clock else "",
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "machine": self.machine,
            **self.extra,
            **{k: round(float(v), 5) for k, v in (logs or {}).items()},
        }
        new = not os.path.exists(self.path)
        fields = list(row)
        if not new:
            with open(self.path) as f:
                header = next(csv.reader(f), [])
            fields = header + [k for k in row if k not in header]
            if fields != header:  # a new column appeared: rewrite with the wider header
                with open(self.path) as f:
                    rows = list(csv.DictReader(f))
                with open(self.path, "w", newline="") as f:
                    w = csv.DictWriter(f, fields)
                    w.writeheader()
                    w.writerows(rows)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fields)
            if new:
                w.writeheader()
            w.writerow(row)


def _peak_device_mb():
    """Peak accelerator memory in MB where the backend reports it (JAX on GPU), else empty."""
    try:
        if keras.backend.backend() == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                return round(stats["peak_bytes_in_use"] / 2**20)
    except Exception:
        pass
    return ""


class AudioSummary(keras.callbacks.Callback):
    """TensorBoard scalars, audio and spectrogram images of a few validation clips (TensorFlow installs only).

    The GPU training machine has no TensorFlow; there the CSV log is the record and this callback is a no-op.
    """

    def __init__(self, log_dir, clips, sample_rate, every_epochs=1):
        super().__init__()
        self.clips = clips
        self.sample_rate = sample_rate
        self.every = every_epochs
        try:
            import tensorflow as tf

            self.tf = tf
            self.writer = tf.summary.create_file_writer(log_dir)
        except ImportError:
            self.tf = None

    def on_epoch_end(self, epoch, logs=None):
        if self.tf is None or (epoch + 1) % self.every:
            return
        tf = self.tf
        it = self.model.optimizer.iterations
        step = int(it.numpy() if hasattr(it, "numpy") else it)
        recon = np.asarray(self.model.generator(self.clips, training=False)["audio"])
        with self.writer.as_default(step=step):
            for k, v in (logs or {}).items():
                tf.summary.scalar(k, float(v))
            tf.summary.audio("original", self.clips, self.sample_rate, max_outputs=len(self.clips))
            tf.summary.audio("reconstruction", recon, self.sample_rate, max_outputs=len(recon))
            tf.summary.image("spectrogram", _spectrogram_images(self.clips, recon), max_outputs=len(recon))
        self.writer.flush()


def _spectrogram_images(original, recon):
    """Stack original over reconstruction log-magnitude spectrograms as grey images ``(N, H, W, 1)``."""
    import scipy.signal

    images = []
    for a, b in zip(original[..., 0], recon[..., 0]):
        pair = []
        for x in (a, b):
            _, _, spec = scipy.signal.stft(x, nperseg=512, noverlap=384)
            db = 20 * np.log10(np.abs(spec) + 1e-5)
            pair.append(np.flipud(np.clip((db + 100) / 100, 0, 1)))
        images.append(np.concatenate(pair, axis=0)[..., None])
    return np.stack(images).astype("float32")
