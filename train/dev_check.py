#!/usr/bin/env python
"""Run training's fixed dev check on saved weights: a compact state, a run's checkpoint, or a shipped preset.

    python train/dev_check.py train/state/fast_24khz                 # the committed state
    python train/dev_check.py train/runs/fast_24khz/checkpoints      # a run's latest full checkpoint
    python train/dev_check.py train/runs/fast_24khz/checkpoints/step-00068243
    python train/dev_check.py fast_24khz                             # the shipped weights of a preset
    python train/dev_check.py train/state/fast_24khz --append train/runs/fast_24khz/dev.csv

The same clips, levels and scores as the check that ``train/train.py`` runs every ``dev.every_cpu_minutes``
(``eval/devcheck.py``; the config is the state's, else ``--config``), beside Opus on the same clips. A run stopped
between two checks (killed at a warm restart's end, say) gets its last row this way: ``--append`` adds the row to a
``dev.csv`` with the weights' step and cumulative CPU-hours, and says in its ``weights`` column what was scored (a
compact state holds float16 weights, a checkpoint float32: their scores differ in the third decimal).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, ROOT)

DEFAULT_CONFIG = os.path.join(HERE, "conf", "default_cpu.yml")


def _checkpoint_folder(path):
    """``(folder, pointer record)`` of a checkpoint path: a ``step-*`` folder, or a ``checkpoints/`` folder (its
    latest), or ``None`` if ``path`` is neither."""
    pointer_path = os.path.join(path, "latest.json")
    if os.path.exists(pointer_path):
        with open(pointer_path) as f:
            pointer = json.load(f)
        return os.path.join(path, pointer["folder"]), pointer
    parent, name = os.path.split(os.path.normpath(path))
    if name.startswith("step-") and os.path.exists(os.path.join(path, "generator.npz")):
        pointer = {}
        for which in ("latest", "best"):  # the step, epoch and CPU time live in the pointer that named it
            try:
                with open(os.path.join(parent, f"{which}.json")) as f:
                    record = json.load(f)
            except (OSError, ValueError):
                continue
            if record.get("folder") == name:
                pointer = record
        return path, pointer or {"step": int(name[len("step-"):])}
    return None


def load_generator(source):
    """``(model, info)``: the generator saved at ``source`` and what it is (``info``: preset, step, cpu_hours,
    weights, config). ``source``: a compact state folder, a checkpoint (``checkpoints/`` or a ``step-*`` folder),
    or a preset name (its shipped weights)."""
    from ml_audio_encoder import MLAudioEncoder
    from ml_audio_encoder.training.state import load_generator as load_state_generator
    from ml_audio_encoder.training.state import read_state
    from ml_audio_encoder.weights import assign, load_arrays

    if os.path.isdir(source) and (record := read_state(source)) is not None:
        model = MLAudioEncoder.from_preset(record["preset"], pretrained=False)
        try:
            load_state_generator(model, source)
        except ValueError as exc:
            raise SystemExit(f"{source}: {exc}") from None
        gen = record["generator"]
        config = record.get("config")
        return model, {"preset": record["preset"], "step": record["step"],
                       "cpu_hours": record["cpu_seconds"] / 3600.0,
                       "weights": "shipped" if "shipped" in gen else "float16 state",
                       "config": os.path.join(ROOT, config) if config else None}
    if os.path.isdir(source) and (found := _checkpoint_folder(source)) is not None:
        folder, pointer = found
        arrays, meta = load_arrays(os.path.join(folder, "generator.npz"))
        config = (meta or {}).get("config")
        if not config:
            raise SystemExit(f"{folder}: the checkpoint names no generator config")
        model = MLAudioEncoder.from_config(config)
        assign(model.weights, arrays, "generator")
        return model, {"preset": config.get("preset"), "step": pointer.get("step"),
                       "cpu_hours": float(pointer["cpu_seconds"]) / 3600.0 if "cpu_seconds" in pointer else None,
                       "weights": "float32 checkpoint", "config": None}
    if os.path.exists(source):
        raise SystemExit(f"{source}: neither a compact state (state.json) nor a checkpoint (latest.json, step-*)")
    try:
        model = MLAudioEncoder.from_preset(source, pretrained=True)
    except (KeyError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"{source}: not a state, a checkpoint or a preset with shipped weights ({exc})") from None
    return model, {"preset": source, "step": None, "cpu_hours": None, "weights": "shipped", "config": None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="a compact state folder, a checkpoint (checkpoints/ or step-*), or a preset name")
    p.add_argument("--config", help="the training config whose dev check to run (default: the state's, else "
                   "train/conf/default_cpu.yml)")
    p.add_argument("--levels", type=int, help="RVQ levels to decode (default: the config's dev.levels)")
    p.add_argument("--no-visqol", action="store_true", help="mel distance only (seconds instead of minutes)")
    p.add_argument("--opus-cache", help="Opus's scores on the same clips, as the run cached them (default: the "
                   "dev_opus.json beside --append, else in train/runs/<config name>/; none if absent)")
    p.add_argument("--append", metavar="DEV_CSV", help="add the scores as a row of this dev.csv")
    p.add_argument("--threads", type=int, help="TensorFlow threads (default: all cores)")
    args = p.parse_args(argv)

    from train.train import _set_threads, dev_clips

    _set_threads(args.threads)
    from ml_audio_encoder.eval.devcheck import append_csv, codec_decoder, opus_reference, score_clips
    from ml_audio_encoder.training.config import load_config

    model, info = load_generator(args.source)
    config = load_config(args.config or info["config"] or DEFAULT_CONFIG)
    levels = args.levels or config.get("dev", {}).get("levels", 8)
    clips, domains = dev_clips(config, model)
    t0 = time.process_time()
    scores = score_clips(codec_decoder(model, levels), clips, domains, model.sample_rate, visqol=not args.no_visqol)
    cpu = time.process_time() - t0
    cache = args.opus_cache or os.path.join(os.path.dirname(args.append) if args.append else
                                            os.path.join(HERE, "runs", config["name"]), "dev_opus.json")
    ref = {}
    if cache and os.path.exists(cache):
        ref = opus_reference(clips, domains, model.sample_rate, config.get("dev", {}).get("opus_kbps", 6.0),
                             cache_path=cache)

    step = "?" if info["step"] is None else f"{info['step']:,}"
    print(f"{args.source}: {info['preset']} step {step}, {info['weights']}; {len(clips)} clips at {levels} levels "
          f"({cpu:.0f} CPU-s)")
    print(f"{'score':<16}{'model':>9}{'Opus':>9}")
    for key, value in scores.items():
        opus = f"{ref[key]:9.4f}" if key in ref else f"{'':>9}"
        print(f"{key:<16}{value:9.4f}{opus}")
    if args.append:
        if info["step"] is None or info["cpu_hours"] is None:
            raise SystemExit(f"{args.source}: no step or CPU time to log (append rows only from a state or a "
                             "checkpoint)")
        row = {"step": int(info["step"]), "cpu_hours": round(info["cpu_hours"], 4), "levels": levels,
               **{k: round(v, 4) for k, v in scores.items()}, "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
               "weights": info["weights"]}
        append_csv(args.append, row)
        print(f"appended to {args.append}")
    return scores


if __name__ == "__main__":
    main()
