"""Compact, committable training state, so that training adds up across sessions and fresh checkouts.

Full checkpoints (``callbacks.Checkpointer``: float32 weights and both optimizers' moments, ~200 MB) stay out of
git. What a fresh checkout needs to continue is much smaller (``train/state/<run>/``):

* ``state.json``: step, epoch, cumulative training CPU seconds, whether the GAN phase has begun, the config;
* the generator's weights in float16 — or, when they are the shipped weights of a preset (same fingerprint), a
  pointer to those, so the repository does not hold them twice;
* the discriminator's weights in float16, once the GAN phase has trained it (before that it is still at its
  seeded initialization and is not stored).

Optimizer moments are not stored: the run continues with fresh moments and a short learning-rate warm-up
(``trainer.WarmupExponentialDecay``) from the stored step, so the decay schedule keeps its position.
"""

from __future__ import annotations

import json
import os
import time

STATE_FILE = "state.json"


def _step(trainer):
    it = trainer.g_optimizer.iterations
    return int(it.numpy() if hasattr(it, "numpy") else it)


def _shipped_fingerprint(preset):
    from ..models import presets

    try:
        return presets.pretrained_fingerprint(preset)
    except (FileNotFoundError, KeyError, OSError):
        return None


def _write_record(folder, record):
    """Write ``state.json`` atomically: a kill mid-write leaves the previous record, never half of one."""
    tmp = os.path.join(folder, STATE_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, os.path.join(folder, STATE_FILE))


def save_state(trainer, folder, epoch, cpu_seconds, config_path=None, extra=None):
    """Write the compact state of ``trainer`` to ``folder`` (atomically per file); returns the record."""
    from ..weights import save_weights

    os.makedirs(folder, exist_ok=True)
    generator = trainer.generator
    fingerprint = generator.fingerprint(dtype="float16")  # what the stored float16 weights will give
    record = {
        "step": _step(trainer),
        "epoch": int(epoch),
        "cpu_seconds": round(float(cpu_seconds), 1),
        "adversarial": bool(trainer.adversarial),
        "preset": generator.preset,
        "config": config_path,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **(extra or {}),
    }
    gen_path = os.path.join(folder, "generator.npz")
    if _shipped_fingerprint(generator.preset) == fingerprint:
        record["generator"] = {"shipped": generator.preset, "fingerprint": fingerprint}
        if os.path.exists(gen_path):
            os.remove(gen_path)
    else:
        save_weights(generator, gen_path, dtype="float16")
        record["generator"] = {"file": "generator.npz", "fingerprint": fingerprint}
    disc_path = os.path.join(folder, "discriminator.npz")
    if trainer.adversarial or os.path.exists(disc_path):
        save_weights(trainer.discriminator, disc_path, dtype="float16")
        record["discriminator"] = {"file": "discriminator.npz"}
    else:
        record["discriminator"] = None
    _write_record(folder, record)
    return record


def read_state(folder):
    """The ``state.json`` record of ``folder``, or ``None`` if there is none."""
    path = os.path.join(folder, STATE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_generator(model, folder):
    """Load the generator weights of the state in ``folder`` (its own file, or the shipped weights it points at)
    into ``model``, checked against the recorded fingerprint; returns the record."""
    from ..models import presets
    from ..weights import load_weights

    record = read_state(folder)
    if record is None:
        raise FileNotFoundError(f"no {STATE_FILE} in {folder}")
    gen = record["generator"]
    if "shipped" in gen:
        load_weights(model, presets.pretrained_path(gen["shipped"]))
    else:
        load_weights(model, os.path.join(folder, gen["file"]))
    if model.fingerprint() != gen["fingerprint"]:
        raise ValueError(f"generator weights for {folder} do not give the recorded fingerprint "
                         f"{gen['fingerprint'][:12]}… (shipped weights replaced since the state was written?)")
    return record


def load_state(trainer, folder):
    """Load generator (and discriminator) weights of the state in ``folder`` into ``trainer`` and set both
    optimizers' step counters to the stored step; returns the record.

    Build the trainer with ``training.config.build(config, start_step=record["step"], warmup_steps=...)`` so the
    learning rate ramps up from there.
    """
    from ..weights import load_weights

    record = load_generator(trainer.generator, folder)
    if record.get("discriminator"):
        load_weights(trainer.discriminator, os.path.join(folder, record["discriminator"]["file"]))
    for optimizer in (trainer.g_optimizer, trainer.d_optimizer):
        optimizer.iterations.assign(record["step"])
    return record


def state_from_checkpoint(checkpoint_dir, folder, which="latest", dtype="float16"):
    """Write a compact state in ``folder`` from a full checkpoint (``<run_dir>/checkpoints``, ``which`` pointer):
    the generator's weights (in ``dtype``), step, epoch and CPU time; no discriminator, no optimizer moments.

    This is how runs branch: each arm of an experiment continues from the same state with ``--init-from``, whatever
    its discriminator or losses. Returns the record.
    """
    import numpy as np

    from ..models.codec import fingerprint_arrays
    from ..weights import load_arrays, save_arrays

    with open(os.path.join(checkpoint_dir, f"{which}.json")) as f:
        pointer = json.load(f)
    arrays, meta = load_arrays(os.path.join(checkpoint_dir, pointer["folder"], "generator.npz"))
    arrays = [np.asarray(a, dtype=dtype) for a in arrays]
    os.makedirs(folder, exist_ok=True)
    save_arrays(os.path.join(folder, "generator.npz"), arrays, meta=meta)
    record = {
        "step": int(pointer["step"]),
        "epoch": int(pointer["epoch"]),
        "cpu_seconds": round(float(pointer.get("cpu_seconds", 0.0)), 1),
        "adversarial": False,
        "preset": (meta or {}).get("config", {}).get("preset"),
        "config": None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "from_checkpoint": os.path.join(checkpoint_dir, pointer["folder"]),
        "generator": {"file": "generator.npz", "fingerprint": fingerprint_arrays(arrays)},
        "discriminator": None,
    }
    _write_record(folder, record)
    return record


def point_at_shipped(folder):
    """Replace the state's ``generator.npz`` by a pointer to the shipped weights of its preset when they are the
    same weights (same fingerprint), so the repository does not hold them twice; returns True if it did.

    ``train/ship.py --state DIR`` calls this after shipping the run whose state ``DIR`` is.
    """
    record = read_state(folder)
    if record is None:
        raise FileNotFoundError(f"no {STATE_FILE} in {folder}")
    gen = record["generator"]
    if "shipped" in gen:
        return True
    if _shipped_fingerprint(record.get("preset")) != gen["fingerprint"]:
        return False
    record["generator"] = {"shipped": record["preset"], "fingerprint": gen["fingerprint"]}
    _write_record(folder, record)
    os.remove(os.path.join(folder, gen["file"]))
    return True
