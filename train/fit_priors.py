#!/usr/bin/env python
"""Fit the entropy priors of a model's codes on the training split, and ship them beside its weights.

    python train/fit_priors.py --preset fast_24khz [--min-count 5]
    python train/fit_priors.py --preset fast_24khz --manifest data/pack/pack_manifest.csv [--seconds-per-source S]
        [--shifts 0,0.25,0.5,0.75]

Encodes training audio (:data:`DEFAULT_DATA`: the data pack's training split at eight offsets, and the music of
``data/manifest.csv``'s training split at four; with ``--manifest``, that manifest's training split only, at
``--shifts``) with the preset's **shipped** weights: the training audio of every source (all of it, or the first
``--seconds-per-source`` seconds of each source; in manifest order, excerpts of at most 60 s, mono,
loudness-normalized as ``mlae compress`` does), once per offset (fractions of a hop: a file can start anywhere, so
the codes of the same audio a fraction of a frame later are as likely, and they are other codes). Then it fits
:class:`~ml_audio_encoder.runtime.entropy.Priors` to all levels of those codes
(:func:`~ml_audio_encoder.runtime.entropy.fit.fit_priors`), writes ``pretrained/PRESET/priors.npz``
and records it in that folder's ``metadata.json`` (file name under ``priors``, SHA-256 under ``files``). The priors
name the weights' fingerprint, so they are refused with any other weights; re-run this after the weights change
(``train/ship.py`` does it by itself when it ships).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from ml_audio_encoder.models import presets  # noqa: E402
from ml_audio_encoder.runtime.entropy import PRIORS_FILE, Priors  # noqa: E402
from ml_audio_encoder.runtime.entropy.coder import block_layout  # noqa: E402
from ml_audio_encoder.runtime.entropy.fit import MIN_COUNT, fit_priors  # noqa: E402

DEFAULT_MANIFEST = os.path.join(ROOT, "data", "pack", "pack_manifest.csv")
# The whole training split of the pack (101 minutes): with fast_24khz's near-uniform codes, fitting on 9.3 minutes
# (20 s per source) saved 8-12% on the dev split, on all of it 20% (docs/entropy_coding.md). Encoding it through
# LiteRT takes ~2 minutes.
SECONDS_PER_SOURCE = float("inf")
MAX_EXCERPT = 60.0
# Each excerpt coded at eight offsets, an eighth of a hop apart: eight times the (context, code) counts from the same
# audio. On the dev split, 12 levels, speech: one offset 14.6%, four 18.0% saved (step-29,781 codes); four 16.0%,
# eight 17.0% with pairs seen fewer than 4 times pruned instead of 3 (step-61,742 codes; docs/entropy_coding.md).
# ~8 minutes of encoding.
SHIFTS = tuple(i / 8 for i in range(8))
# The pack holds 45 minutes of music, the manifest's training split 129 (each file's first 60 s): with those added at
# four offsets, music at 12 levels saved 16.6% instead of 15.5% on the dev split for 11.6 MiB of priors instead of
# 9.6 (pairs seen fewer than 5 times pruned instead of 4; speech 16.2% either way; step-74,715 codes,
# docs/entropy_coding.md). ~11 minutes more encoding. The pack's music segments are cut from these files, so
# some audio is fitted twice.
FULL_MANIFEST = os.path.join(ROOT, "data", "manifest.csv")
MUSIC_SHIFTS = (0.0, 0.25, 0.5, 0.75)


@dataclasses.dataclass(frozen=True)
class FitData:
    """One part of the audio the priors are fitted on: ``split`` of ``manifest`` (only its ``domains`` when given,
    ``seconds_per_source`` of each source), each excerpt coded at each offset of ``shifts`` (fractions of a hop)."""

    manifest: str
    shifts: tuple[float, ...] = SHIFTS
    domains: tuple[str, ...] | None = None
    split: str = "train"
    seconds_per_source: float = SECONDS_PER_SOURCE

    def __post_init__(self):
        shifts = tuple(float(x) for x in self.shifts) or (0.0,)
        if any(not 0.0 <= x < 1.0 for x in shifts):
            raise ValueError(f"shifts are fractions of a hop in [0, 1), not {shifts}")
        object.__setattr__(self, "shifts", shifts)

    def excerpts(self) -> list[dict]:
        chosen = select_excerpts(self.manifest, self.split, self.seconds_per_source)
        return [ex for ex in chosen if self.domains is None or ex["domain"] in self.domains]

    def describe(self) -> dict:
        path = os.path.abspath(self.manifest)
        return {"manifest": os.path.relpath(path, ROOT) if path.startswith(ROOT) else self.manifest,
                "split": self.split, "domains": list(self.domains) if self.domains else None,
                "seconds_per_source": self.seconds_per_source, "shifts": list(self.shifts)}


DEFAULT_DATA = (FitData(DEFAULT_MANIFEST), FitData(FULL_MANIFEST, MUSIC_SHIFTS, ("music",)))


def choose_data(manifest: str | None = None, split: str = "train", seconds_per_source: float | None = None,
                shifts: tuple[float, ...] = SHIFTS) -> tuple[FitData, ...]:
    """What to fit on: ``manifest``'s ``split`` alone, each excerpt at ``shifts``, or else :data:`DEFAULT_DATA`'s
    parts (their ``split``); ``seconds_per_source`` of each source (default: all)."""
    parts = (FitData(manifest, shifts),) if manifest else DEFAULT_DATA
    return tuple(dataclasses.replace(part, split=split, seconds_per_source=seconds_per_source or SECONDS_PER_SOURCE)
                 for part in parts)


def missing_manifests(data: tuple[FitData, ...]) -> list[str]:
    return [part.manifest for part in data if not os.path.exists(part.manifest)]


def select_excerpts(manifest: str, split: str = "train", seconds_per_source: float = SECONDS_PER_SOURCE,
                    max_excerpt: float = MAX_EXCERPT) -> list[dict]:
    """``{"path", "seconds", "domain", "source"}`` per excerpt: the start of each file, in manifest order, until
    each (domain, source) has ``seconds_per_source`` seconds."""
    from ml_audio_encoder.training.data.manifest import load_manifest

    used: dict[tuple[str, str], float] = collections.defaultdict(float)
    out = []
    for item in load_manifest(manifest, split=split):
        key = (item.domain, item.source or os.path.dirname(item.path))
        room = seconds_per_source - used[key]
        if room <= 0.05:
            continue
        duration = item.duration_s if np.isfinite(item.duration_s) and item.duration_s > 0 else max_excerpt
        seconds = min(room, max_excerpt, duration)
        used[key] += seconds
        out.append({"path": item.path, "seconds": float(seconds), "domain": item.domain, "source": key[1]})
    return out


def encode_excerpts(model, excerpts: list[dict], verbose: bool = False,
                    shifts: tuple[float, ...] = (0.0,)) -> tuple[list[np.ndarray], list[int]]:
    """All-level codes ``(levels, frames)`` of each excerpt (mono), coded as ``mlae compress`` codes a file, once
    per offset in ``shifts`` (fractions of the model's hop; the excerpt starts that much later), excerpt-major, and
    the index of the excerpt each sequence came from. An offset that leaves less than one hop of audio is skipped:
    such a slice is mostly the coder's padding, and an empty one is not audio at all (game sound effects of a few
    milliseconds, and files holding fewer samples than the manifest lists, are in the training split)."""
    import soundfile as sf

    from ml_audio_encoder.runtime import audio_io
    from ml_audio_encoder.runtime.compress import compress

    out, groups = [], []
    for i, ex in enumerate(excerpts):
        with sf.SoundFile(ex["path"]) as f:  # read once: the excerpt and as much past it as the largest offset
            sr = f.samplerate
            offsets = [int(round(shift * model.hop_length * sr / model.sample_rate)) for shift in shifts]
            length = int(round(ex["seconds"] * sr))
            audio = audio_io.to_mono(f.read(length + max(offsets), dtype="float32", always_2d=True).T)
        hop = model.hop_length * sr / model.sample_rate
        for offset in offsets:
            piece = audio[None, offset : offset + length]
            if piece.shape[-1] < hop:
                continue
            f = compress(model, piece, sample_rate=sr, entropy="none")
            out.append(np.asarray(f.codes[0]))
            groups.append(i)
        if verbose:
            print(f"  [{i + 1}/{len(excerpts)}] {os.path.relpath(ex['path'], ROOT)} {ex['seconds']:.1f} s", flush=True)
    return out, groups


def fit_model_priors(model, data: tuple[FitData, ...] = DEFAULT_DATA, verbose: bool = False,
                     min_count: int = MIN_COUNT) -> Priors:
    """Priors of ``model``'s codes (any :class:`~ml_audio_encoder.protocol.Codec`) on the parts of ``data``; the
    offsets of one excerpt share a cross-validation fold, and ``min_count`` prunes rare (context, code) pairs
    (:func:`.fit.fit_priors`)."""
    t0 = time.perf_counter()
    parts = tuple(data)
    codes, groups, described, by_domain = [], [], [], collections.Counter()
    for part in parts:
        excerpts = part.excerpts()
        if not excerpts:
            raise ValueError(f"{part.manifest}: no {part.split} audio to fit priors on"
                             + (f" in {', '.join(part.domains)}" if part.domains else ""))
        got, which = encode_excerpts(model, excerpts, verbose, part.shifts)
        first = 1 + max(groups, default=-1)  # excerpts of different parts never share a fold label
        codes += got
        groups += [first + g for g in which]
        for ex in excerpts:
            by_domain[ex["domain"]] += ex["seconds"]
        described.append({**part.describe(), "excerpts": len(excerpts),
                          "seconds": round(sum(ex["seconds"] for ex in excerpts), 1)})
    if not codes:
        raise ValueError("no training excerpt is a hop long")
    info = {
        "split": parts[0].split if len({p.split for p in parts}) == 1 else "mixed",
        "excerpts": sum(d["excerpts"] for d in described),
        "seconds": round(sum(d["seconds"] for d in described), 1),
        "seconds_by_domain": {k: round(v, 1) for k, v in sorted(by_domain.items())},
        "parts": described,
        "min_count": int(min_count),
        "seconds_encoding": round(time.perf_counter() - t0, 1),
    }
    return fit_priors(codes, model.codebook_size, model.fingerprint(), getattr(model, "preset", ""),
                      lane_frames=block_layout(model.frame_rate)[0], fit_info=info, groups=groups,
                      min_count=min_count)


def record_priors(folder: str, priors: Priors) -> dict:
    """Write ``priors`` into a shipped preset folder and record them in its ``metadata.json``; returns the
    metadata. Refuses priors of weights other than the folder's."""
    path = os.path.join(folder, presets.METADATA_FILE)
    with open(path) as f:
        meta = json.load(f)
    if meta.get("fingerprint") != priors.fingerprint:
        raise ValueError(f"{folder}: priors for weights {priors.fingerprint[:12]}, but the folder ships "
                         f"{str(meta.get('fingerprint'))[:12]}")
    priors.save(os.path.join(folder, PRIORS_FILE))
    meta["files"][PRIORS_FILE] = presets.sha256_file(os.path.join(folder, PRIORS_FILE))
    meta["priors"] = PRIORS_FILE
    tmp = path + ".part"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
    return meta


def summary(priors: Priors) -> str:
    bits = priors.expected_bits
    k = priors.codebook_size
    full = (k - 1).bit_length()
    lines = [priors.describe()]
    for kind in ("static", "context"):
        b = bits.get(kind, [])
        for n in (8, len(b)):
            if 0 < n <= len(b):
                lines.append(f"  {kind:7s} {n:2d} levels: {sum(b[:n]) / n:.2f} bits per code expected "
                             f"({100 * (1 - sum(b[:n]) / (n * full)):.1f}% below bit-packing)")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default=presets.DEFAULT_PRESET)
    p.add_argument("--manifest", default=None,
                   help="fit on this manifest's split only (default: the pack's training split at eight offsets and "
                        "the music of data/manifest.csv's training split at four)")
    p.add_argument("--split", default="train")
    p.add_argument("--seconds-per-source", type=float, default=SECONDS_PER_SOURCE)
    p.add_argument("--shifts", default=",".join(f"{x:g}" for x in SHIFTS),
                   help="with --manifest: offsets (fractions of a hop) at which each excerpt is coded, comma-separated")
    p.add_argument("--min-count", type=int, default=MIN_COUNT,
                   help=f"prune (context, code) pairs seen fewer times (default {MIN_COUNT})")
    p.add_argument("--engine", default="auto", choices=("auto", "lite", "keras"))
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    from ml_audio_encoder.runtime.loading import load_model

    shifts = tuple(float(x) for x in args.shifts.split(",") if x.strip())
    data = choose_data(args.manifest, args.split, args.seconds_per_source, shifts)
    missing = missing_manifests(data)
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: run train/get_data.py and train/make_pack.py first")
    model = load_model(args.preset, engine=args.engine)
    if model.fingerprint() != presets.pretrained_fingerprint(args.preset):
        raise SystemExit(f"{args.preset}: the loaded weights are not the shipped ones")
    priors = fit_model_priors(model, data, verbose=not args.quiet, min_count=args.min_count)
    meta = record_priors(presets.pretrained_dir(args.preset), priors)
    print(summary(priors))
    print(f"wrote {os.path.join(presets.pretrained_dir(args.preset), PRIORS_FILE)} "
          f"(sha256 {meta['files'][PRIORS_FILE][:12]}, prior id {priors.id[:12]})")


if __name__ == "__main__":
    main()
