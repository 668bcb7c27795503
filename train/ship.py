#!/usr/bin/env python
"""Ship a run's checkpoint as a preset's pretrained weights inside the package.

    python train/ship.py train/runs/small_24khz [--which best|latest] [--preset small_24khz] [--float32]

Writes into ``ml_audio_encoder/pretrained/``: ``PRESET.npz`` (the generator, float16 by default, for Keras) and the
same weights for the TensorFlow-free runtime (``PRESET.encoder.tflite``, ``PRESET.decoder.tflite``,
``PRESET.json``; :func:`ml_audio_encoder.export.export_lite`). Then records in ``presets.py`` (between the
``BEGIN/END PRETRAINED`` markers) the weights' fingerprint, the step shipped and each file's SHA-256, which
``MLAudioEncoder.from_preset(..., pretrained=True)`` and the LiteRT loader verify before use.

The float16 rounding is applied to the Keras model too (weights go float32 -> float16 -> float32 before the
fingerprint is taken), so the fingerprint names exactly the values both runtimes compute with.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from ml_audio_encoder.models import presets  # noqa: E402
from ml_audio_encoder.weights import assign, load_arrays, save_weights  # noqa: E402

PRESETS_PY = os.path.join(ROOT, "ml_audio_encoder", "models", "presets.py")
_BLOCK = re.compile(r"(# BEGIN PRETRAINED\n).*?(# END PRETRAINED\n)", re.S)


def record_pretrained(preset, entry, presets_py=PRESETS_PY):
    """Rewrite the ``PRETRAINED`` literal in ``presets.py`` with ``entry`` for ``preset`` (others kept)."""
    table = {**presets.PRETRAINED, preset: entry}
    with open(presets_py) as f:
        source = f.read()
    if not _BLOCK.search(source):
        raise RuntimeError(f"{presets_py}: no '# BEGIN PRETRAINED' / '# END PRETRAINED' block")
    literal = "PRETRAINED = " + json.dumps(table, indent=4, sort_keys=True) + "\n"  # JSON is a Python literal here
    with open(presets_py, "w") as f:
        f.write(_BLOCK.sub(lambda m: m.group(1) + literal + m.group(2), source))


def ship(run_dir, preset="small_24khz", which="best", float16=True, out_dir=presets.PRETRAINED_DIR,
         presets_py=PRESETS_PY):
    from ml_audio_encoder import MLAudioEncoder
    from ml_audio_encoder.export import export_lite

    ckpt = os.path.join(run_dir, "checkpoints")
    with open(os.path.join(ckpt, f"{which}.json")) as f:
        record = json.load(f)
    arrays, _ = load_arrays(os.path.join(ckpt, record["folder"], "generator.npz"))
    dtype = np.float16 if float16 else np.float32
    model = MLAudioEncoder.from_preset(preset)
    assign(model.weights, [a.astype(dtype).astype(np.float32) for a in arrays], what="checkpoint")

    os.makedirs(out_dir, exist_ok=True)
    prefix = os.path.join(out_dir, preset)
    written = save_weights(model, prefix + ".npz", dtype="float16" if float16 else None)
    written += list(export_lite(model, prefix, float16=float16).values())
    entry = {
        "fingerprint": model.fingerprint(),
        "step": int(record["step"]),
        "files": {os.path.basename(p): presets.sha256_file(p) for p in written},
    }
    record_pretrained(preset, entry, presets_py)
    return entry, written


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--preset", default="small_24khz")
    p.add_argument("--which", default="best", choices=["best", "latest"])
    p.add_argument("--float32", action="store_true", help="keep float32 weights (twice the size)")
    args = p.parse_args(argv)
    entry, written = ship(args.run_dir, args.preset, args.which, not args.float32)
    size = sum(os.path.getsize(p) for p in written) / 2**20
    print(f"shipped {args.which} checkpoint (step {entry['step']}) of {args.preset}: {len(written)} files, "
          f"{size:.1f} MiB, weights {entry['fingerprint'][:12]}")


if __name__ == "__main__":
    main()
