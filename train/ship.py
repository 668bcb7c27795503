#!/usr/bin/env python
"""Ship a run's checkpoint (or a compact training state) as a preset's pretrained weights inside the package.

    python train/ship.py train/runs/fast_24khz [--which best|latest] [--preset fast_24khz] [--float32] [--no-lite]
                         [--no-priors] [--priors-manifest data/pack/pack_manifest.csv] [--priors-seconds S]
                         [--state train/state/fast_24khz]
    python train/ship.py train/state/fast_24khz         # the committed state's weights, in a fresh checkout

Writes the folder ``ml_audio_encoder/pretrained/PRESET/`` (replacing the previous one only once the new one is
complete), as data (see :mod:`ml_audio_encoder.models.presets`):

* ``weights.npz``: the generator, float16 by default, for Keras;
* ``lite.encoder.tflite``, ``lite.decoder.tflite``, ``lite.json``: the same weights for the TensorFlow-free runtime
  (:func:`ml_audio_encoder.runtime.export.export_lite`); skipped with ``--no-lite``, or with a warning when the
  model does not convert;
* ``priors.npz``: the entropy priors of the shipped weights' codes (:mod:`ml_audio_encoder.runtime.entropy`), fitted
  by ``train/fit_priors.py`` with the model being shipped, on its default data (the data pack's training split and
  the music of ``data/manifest.csv``'s) or on the training split of ``--priors-manifest`` only; skipped with
  ``--no-priors``, or with a warning when that data is missing
  (``mlae compress`` then writes bit-packed files until ``train/fit_priors.py --preset PRESET`` is run);
* ``config.json``: the constructor config of the checkpoint's model (any preset, any set of config keys);
* ``metadata.json``: the weights' fingerprint, the step shipped, the SHA-256 of every other file and a training
  summary (the checkpoint record and its row of ``log.csv``), which ``MLAudioEncoder.from_preset(...,
  pretrained=True)`` and the LiteRT loader verify before use.

The float16 rounding is applied to the Keras model too (weights go float32 -> float16 -> float32 before the
fingerprint is taken), so the fingerprint names exactly the values both runtimes compute with.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import warnings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from ml_audio_encoder.models import presets  # noqa: E402
from ml_audio_encoder.weights import assign, load_arrays, save_weights  # noqa: E402

WEIGHTS_FILE = "weights.npz"
LITE_PREFIX = "lite"
# Keras bookkeeping in get_config() that is not part of the architecture
_NOT_CONFIG = ("name", "trainable", "dtype", "preset")


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    if value != value:  # NaN stays text: metadata.json is strict JSON
        return text
    return int(value) if value.is_integer() and "." not in str(text) else value


def log_row(run_dir, step):
    """The row of ``RUN_DIR/log.csv`` for ``step`` (numbers parsed), or ``None``."""
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if str(row.get("step")) == str(step):
                return {k: _number(v) for k, v in row.items() if v not in ("", None)}
    return None


def training_summary(run_dir, record, which):
    """What ``metadata.json`` says about how the weights were trained."""
    run = os.path.abspath(run_dir)
    return {
        "run": os.path.relpath(run, ROOT) if run.startswith(ROOT + os.sep) else os.path.basename(run),
        "checkpoint": which,
        "record": {k: v for k, v in record.items() if k not in ("folder", "time")},
        "log": log_row(run_dir, record["step"]),
    }


def write_metadata(folder, preset, fingerprint, step, training=None, lite_prefix=LITE_PREFIX,
                   keras_weights=WEIGHTS_FILE, float16=True, priors=None):
    """Write ``folder/metadata.json`` recording the SHA-256 of every other file in ``folder``; returns the dict."""
    files = {name: presets.sha256_file(os.path.join(folder, name)) for name in sorted(os.listdir(folder))
             if name != presets.METADATA_FILE and os.path.isfile(os.path.join(folder, name))}
    if lite_prefix and not all(f"{lite_prefix}{suffix}" in files for suffix in (".encoder.tflite", ".decoder.tflite",
                                                                                 ".json")):
        lite_prefix = None
    meta = {
        "format": presets.METADATA_FORMAT,
        "format_version": 1,
        "preset": preset,
        "fingerprint": fingerprint,
        "step": int(step),
        "float16": bool(float16),
        "keras_weights": keras_weights,
        "lite_prefix": lite_prefix,
        "priors": priors if priors in files else None,
        "files": files,
        "training": training or {},
    }
    with open(os.path.join(folder, presets.METADATA_FILE), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    return meta


def constructor_config(model):
    """The model's constructor config without Keras bookkeeping (what ``config.json`` holds)."""
    return {k: v for k, v in model.get_config().items() if k not in _NOT_CONFIG}


def fit_shipped_priors(model, folder, manifest=None, seconds_per_source=None):
    """Fit the entropy priors of ``model`` (the LiteRT files just written to ``folder`` when there are any: the same
    weights, faster) and write them to ``folder``; returns the file name, or ``None`` (with a warning) when there is
    no fitting data. ``manifest``: fit on its training split only, instead of ``fit_priors.DEFAULT_DATA``."""
    from ml_audio_encoder.runtime import lite as lite_runtime
    from ml_audio_encoder.runtime.entropy import PRIORS_FILE
    from train import fit_priors

    data = fit_priors.choose_data(manifest, seconds_per_source=seconds_per_source)
    missing = fit_priors.missing_manifests(data)
    if missing:
        warnings.warn(f"no entropy priors shipped: {', '.join(missing)} missing (run train/fit_priors.py later)",
                      stacklevel=2)
        return None
    codec = model
    if os.path.exists(os.path.join(folder, LITE_PREFIX + ".json")) and lite_runtime.available():
        codec = lite_runtime.LiteCodec.load(os.path.join(folder, LITE_PREFIX))
    priors = fit_priors.fit_model_priors(codec, data)
    priors.save(os.path.join(folder, PRIORS_FILE))
    print(fit_priors.summary(priors))
    return PRIORS_FILE


def _source(path, which):
    """``(record, generator arrays, their meta, run folder of the log, which)`` of what is shipped: checkpoint
    ``which`` of a run folder (``path/checkpoints``), or the weights of a compact training state (``path/state.json``,
    ``train/state/<run>``: what a fresh checkout has, since checkpoints are not committed). A state's log is that of
    its config's run, ``train/runs/<name>``."""
    from ml_audio_encoder.training.config import load_config
    from ml_audio_encoder.training.state import read_state

    state = read_state(path)
    if state is None:
        ckpt = os.path.join(path, "checkpoints")
        with open(os.path.join(ckpt, f"{which}.json")) as f:
            record = json.load(f)
        arrays, meta = load_arrays(os.path.join(ckpt, record["folder"], "generator.npz"))
        return record, arrays, meta, path, which
    generator = state["generator"]
    if "shipped" in generator:
        raise SystemExit(f"{path}: its generator already is the shipped {generator['shipped']} weights")
    arrays, meta = load_arrays(os.path.join(path, generator["file"]))
    config = state.get("config")
    name = load_config(os.path.join(ROOT, config))["name"] if config else state.get("preset")
    record = {k: v for k, v in state.items() if k not in ("generator", "discriminator")}
    return record, arrays, meta, os.path.join(ROOT, "train", "runs", str(name)), "state"


def ship(run_dir, preset="small_24khz", which="best", float16=True, out_dir=None, lite=True, priors=True,
         priors_manifest=None, priors_seconds=None):
    """Ship checkpoint ``which`` of ``run_dir`` (or the compact state in ``run_dir``) as preset ``preset``; returns
    ``(metadata, written paths)``.

    ``priors``: also fit the entropy priors (see :func:`fit_shipped_priors`) on ``priors_manifest``'s training
    split, ``priors_seconds`` per source."""
    from ml_audio_encoder import MLAudioEncoder

    out_dir = out_dir or presets.PRETRAINED_DIR
    record, arrays, meta, log_dir, which = _source(run_dir, which)
    dtype = np.float16 if float16 else np.float32
    config = {k: v for k, v in meta.get("config", {}).items() if k not in _NOT_CONFIG}
    # The checkpoint records the architecture it trained (overrides included); older checkpoints fall back to the
    # preset's config.
    model = MLAudioEncoder(**(config or presets.preset_config(preset)), preset=preset)
    assign(model.weights, [a.astype(dtype).astype(np.float32) for a in arrays], what="checkpoint")

    final = os.path.join(out_dir, preset)
    tmp = final + ".shipping"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    save_weights(model, os.path.join(tmp, WEIGHTS_FILE), dtype="float16" if float16 else None)
    if lite:
        from ml_audio_encoder.runtime.export import export_lite

        try:
            export_lite(model, os.path.join(tmp, LITE_PREFIX), float16=float16)
        except RuntimeError as exc:  # e.g. an architecture the TFLite converter cannot lower: ship Keras only
            warnings.warn(f"no LiteRT files shipped for {preset}: {exc}", stacklevel=2)
            for name in os.listdir(tmp):
                if name.startswith(LITE_PREFIX + "."):
                    os.remove(os.path.join(tmp, name))
    with open(os.path.join(tmp, presets.CONFIG_FILE), "w") as f:
        json.dump(constructor_config(model), f, indent=2, sort_keys=True)
        f.write("\n")
    priors_file = fit_shipped_priors(model, tmp, priors_manifest, priors_seconds) if priors else None
    metadata = write_metadata(tmp, preset, model.fingerprint(), record["step"],
                              training_summary(log_dir, record, which), float16=float16, priors=priors_file)

    old = final + ".old"
    shutil.rmtree(old, ignore_errors=True)
    if os.path.exists(final):
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    written = [os.path.join(final, name) for name in sorted(os.listdir(final))]
    return metadata, written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir", help="a run folder (its checkpoint --which) or a compact state (train/state/<run>)")
    p.add_argument("--preset", default=presets.DEFAULT_PRESET)
    p.add_argument("--which", default="best", choices=["best", "latest"])
    p.add_argument("--float32", action="store_true", help="keep float32 weights (twice the size)")
    p.add_argument("--no-lite", action="store_true", help="ship the Keras weights only (no LiteRT export)")
    p.add_argument("--no-priors", action="store_true", help="ship no entropy priors (files stay bit-packed)")
    p.add_argument("--priors-manifest", default=None,
                   help="fit the priors on this manifest's training split only (default: the pack's training split "
                        "and the music of data/manifest.csv's)")
    p.add_argument("--priors-seconds", type=float, default=None,
                   help="seconds of audio per source for the priors (default: all of the training split)")
    p.add_argument("--state", metavar="DIR", action="append", default=[],
                   help="a compact training state (train/state/<run>) of the shipped weights: its generator.npz "
                        "becomes a pointer to the shipped folder (repeatable)")
    args = p.parse_args(argv)
    meta, written = ship(args.run_dir, args.preset, args.which, not args.float32, lite=not args.no_lite,
                         priors=not args.no_priors, priors_manifest=args.priors_manifest,
                         priors_seconds=args.priors_seconds)
    size = sum(os.path.getsize(p) for p in written) / 2**20
    print(f"shipped {meta['training'].get('checkpoint', args.which)} (step {meta['step']}) of {args.preset}: "
          f"{len(written)} files, "
          f"{size:.1f} MiB, weights {meta['fingerprint'][:12]}, LiteRT {'yes' if meta['lite_prefix'] else 'no'}, "
          f"entropy priors {'yes' if meta['priors'] else 'no'}")
    for folder in args.state:
        from ml_audio_encoder.training.state import point_at_shipped

        linked = point_at_shipped(folder)
        print(f"{folder}: " + ("generator now points at the shipped weights" if linked else
                               "kept its own generator.npz (not the shipped weights)"))


if __name__ == "__main__":
    main()
