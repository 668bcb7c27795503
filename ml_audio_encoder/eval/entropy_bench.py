"""Benchmark of entropy-coded ``.mlae`` payloads (issue 13's gates): lossless, bytes saved per prior kind, time added.

    python -m ml_audio_encoder.eval.entropy_bench [--model fast_24khz] [--manifest data/pack/pack_manifest.csv]
        [--split dev] [--kinds speech,music] [--levels 8,12] [--out docs/entropy_bench.md]

For every file of the split (each domain in ``--kinds``) it compresses once with the model at all levels
(``mlae compress``'s path, bit-packed) and decompresses that file (the model's time), then for each number of levels
(the leading levels of the same codes, which is what coding at fewer levels gives) writes the file bit-packed and
with each prior kind, reads each back, checks the decoded codes equal the bit-packed ones, and records payload bytes
and coding times. Prints (and writes with ``--out``) Markdown tables; the numbers in ``docs/entropy_coding.md``
come from here.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

import numpy as np

from ml_audio_encoder.eval.datasets import resolve_dataset
from ml_audio_encoder.runtime import codec_file, entropy
from ml_audio_encoder.runtime.compress import compress, decompress
from ml_audio_encoder.runtime.loading import DEFAULT_PRESET, ENGINES, load_model

PAYLOAD_KINDS = ("none", "static", "context")


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def measure_file(model, path: str, levels: list[int], priors) -> dict:
    """One file: model times, and per level count and payload kind: payload bytes, coding times, lossless."""
    f, t_compress = _timed(compress, model, path, entropy="none")
    data = codec_file.to_bytes(f)
    _, t_decompress = _timed(decompress, model, codec_file.from_bytes(data))
    out = {"path": path, "seconds": f.duration, "frames": f.n_frames, "compress_s": t_compress,
           "decompress_s": t_decompress, "levels": {}}
    for n in levels:
        part = codec_file.MLAEFile(**{**{k: getattr(f, k) for k in (
            "sample_rate", "original_length", "preset", "fingerprint", "model_sample_rate", "hop_length",
            "codebook_size", "chunk_length", "input_loudness_db", "applied_gain_db")}, "codes": f.codes[:, :n]},
            priors=priors)
        row = {}
        for kind in PAYLOAD_KINDS:
            blob, t_enc = _timed(codec_file.to_bytes, part, kind)
            back, t_dec = _timed(codec_file.from_bytes, blob, priors=priors)
            row[kind] = {"payload": int(back.payload_bytes), "file": len(blob), "encode_s": t_enc, "decode_s": t_dec,
                         "lossless": bool(np.array_equal(back.codes, part.codes))}
        out["levels"][n] = row
    return out


def run(model_spec: str = DEFAULT_PRESET, manifest: str = "data/pack/pack_manifest.csv", split: str = "dev",
        kinds=("speech", "music"), levels=(8, 12), engine: str = "auto", limit: int | None = None,
        verbose: bool = True) -> dict:
    model = load_model(model_spec, engine=engine)
    priors = entropy.priors_for(model)
    if priors is None:
        raise SystemExit(f"{model_spec}: no entropy priors ship for these weights (train/fit_priors.py)")
    warm = compress(model, np.zeros((1, model.sample_rate), np.float32), sample_rate=model.sample_rate)  # warm-up
    # the coder's one-time cost per process (the range coder's import, the first touch of the priors' tables) is
    # reported apart from the per-file times, as the model's warm-up is
    _, first_call = _timed(lambda: codec_file.from_bytes(codec_file.to_bytes(warm, "context"), priors=priors))
    results = defaultdict(list)
    for kind in kinds:
        items = resolve_dataset(f"manifest:{manifest}:{split}", kind=kind, limit=limit)
        for i, item in enumerate(items):
            results[kind].append(measure_file(model, item.path, list(levels), priors))
            if verbose:
                r = results[kind][-1]
                print(f"  {kind} {i + 1}/{len(items)} {os.path.basename(item.path)} {r['seconds']:.1f} s", flush=True)
    return {"model": model_spec, "engine": type(model).__name__, "priors": priors, "split": split,
            "manifest": manifest, "results": dict(results), "levels": list(levels), "first_call_s": first_call}


def markdown(report: dict) -> str:
    priors = report["priors"]
    fit = priors.meta.get("fit", {})
    lines = [
        f"Model `{report['model']}` ({report['engine']}), priors `{priors.id[:12]}` ({priors.size_bytes / 1024:.0f} "
        f"KiB, {priors.n_entries} context entries, fitted on {fit.get('seconds', 0) / 60:.1f} min of the training "
        f"split); files: the `{report['split']}` split of `{report['manifest']}`.",
        "",
        "| audio | levels | files | minutes | lossless | bit-packed payload B | static B (saved) | context B (saved) "
        "| context bits/code |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    timing = []
    for kind, rows in report["results"].items():
        minutes = sum(r["seconds"] for r in rows) / 60
        for n in report["levels"]:
            tot = {k: sum(r["levels"][n][k]["payload"] for r in rows) for k in PAYLOAD_KINDS}
            ok = all(r["levels"][n][k]["lossless"] for r in rows for k in PAYLOAD_KINDS)
            codes = sum(r["frames"] * n for r in rows)
            lines.append(
                f"| {kind} | {n} | {len(rows)} | {minutes:.1f} | {'yes' if ok else '**NO**'} | {tot['none']} | "
                f"{tot['static']} ({100 * (1 - tot['static'] / tot['none']):.1f}%) | {tot['context']} "
                f"({100 * (1 - tot['context'] / tot['none']):.1f}%) | {8 * tot['context'] / codes:.2f} |")
            model_s = sum(r["compress_s"] + r["decompress_s"] for r in rows)
            coding = {k: sum(r["levels"][n][k]["encode_s"] + r["levels"][n][k]["decode_s"] for r in rows)
                      for k in PAYLOAD_KINDS}
            timing.append(
                f"| {kind} | {n} | {model_s:.1f} | {coding['none']:.2f} | {coding['static']:.2f} | "
                f"{coding['context']:.2f} | {100 * coding['static'] / model_s:.1f}% | "
                f"{100 * coding['context'] / model_s:.1f}% |")
    lines += [
        "",
        "Time (seconds, all files): compress + decompress with the model (bit-packed file), and writing + reading "
        "the `.mlae` bytes with each payload kind; *added* = the entropy-coded write + read as a share of compress + "
        "decompress (conservative: the bit-packed write + read it replaces is not subtracted). Not included: the "
        f"first context-coded write + read of the process (the range coder's import, cold tables), "
        f"{report.get('first_call_s', float('nan')):.2f} s.",
        "",
        "| audio | levels | compress + decompress s | bit-packed write + read s | static s | context s "
        "| static added | context added |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *timing,
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m ml_audio_encoder.eval.entropy_bench", description=__doc__)
    p.add_argument("--model", default=DEFAULT_PRESET)
    p.add_argument("--engine", choices=ENGINES, default="auto")
    p.add_argument("--manifest", default="data/pack/pack_manifest.csv")
    p.add_argument("--split", default="dev")
    p.add_argument("--kinds", default="speech,music")
    p.add_argument("--levels", default="8,12")
    p.add_argument("--limit", type=int, default=None, help="first N files per kind")
    p.add_argument("--out", default=None, help="also write the tables to this Markdown file")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    report = run(args.model, args.manifest, args.split, tuple(k for k in args.kinds.split(",") if k),
                 tuple(int(n) for n in args.levels.split(",")), args.engine, args.limit, not args.quiet)
    text = markdown(report)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
