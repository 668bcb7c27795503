#!/usr/bin/env python3
"""Build a small, portable data pack for a GPU machine that has no internet and no TensorFlow.

From ``data/manifest.csv`` (``train/get_data.py``) this writes ``data/pack/``::

    pack_manifest.csv    path (relative), domain, source, speaker, gender, language, duration_s, sample_rate,
                         channels, full_band, split
    train/<domain>/...   the TRAIN split: 24 kHz mono Ogg Vorbis segments of <= 30 s
    dev/<domain>/...     a small DEV pack (~3 min, <= 10 s segments)
    PACK.md              what is inside (minutes per domain/source, size, options)

Selection (deterministic): per domain a target of minutes (default 45 % speech, 45 % music, 10 % general of
``--train-minutes``), shared equally across sources and, inside a source, across speakers ("water-filling": a unit
with less material than its share gives the rest to the others). Long files are cut into <= 30 s chunks taken
round-robin over files; short clips of one speaker/source are concatenated (edges trimmed, 0.1 s gaps) into <= 30 s
segments. Each piece is loudness-normalized to -20 LUFS (peak <= -0.3 dBFS) before encoding. Segments whose level
is below -50 LUFS (silence) are dropped. If the pack exceeds ``--max-mb`` the Vorbis quality is lowered and the
pack re-encoded.

``ml_audio_encoder.training.data`` loads the result like any manifest:
``AudioDataset("data/pack", ..., split="train")``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import re
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from ml_audio_encoder.training.data.excerpts import (  # noqa: E402  (no Keras: TensorFlow never loads here)
    decode_audio,
    measure_loudness,
    normalize_loudness,
)
from ml_audio_encoder.training.data.manifest import AudioItem, load_manifest, write_manifest  # noqa: E402
from ml_audio_encoder.training.data.splits import stable_hash  # noqa: E402

SHARES = {"speech": 0.45, "music": 0.45, "general": 0.10}


def log(*a):
    print(*a, flush=True)


def source_group(source: str) -> str:
    """Sources that are one collection for allocation purposes (the five Asterisk languages)."""
    return "asterisk" if source.startswith("asterisk-core-sounds-") else source


def water_fill(budget: float, avail: dict) -> dict:
    """Split ``budget`` equally over keys, capped by ``avail[key]``; leftover goes to the others."""
    alloc = {k: 0.0 for k in avail}
    left = dict(avail)
    remaining = budget
    while remaining > 1e-9 and left:
        share = remaining / len(left)
        done = [k for k, a in left.items() if a <= share]
        if not done:
            for k in left:
                alloc[k] += share
            break
        for k in done:
            alloc[k] += left[k]
            remaining -= left[k]
            del left[k]
    return alloc


def trim_edges(x: np.ndarray, sr: int, rel_db: float = -45.0, margin_s: float = 0.05) -> np.ndarray:
    """Cut leading/trailing parts quieter than ``rel_db`` below the loudest 10 ms frame."""
    hop = max(1, int(0.01 * sr))
    n = x.shape[0] // hop
    if n < 3:
        return x
    rms = np.sqrt(np.mean(x[:n * hop].reshape(n, hop) ** 2, axis=1) + 1e-20)
    thr = rms.max() * 10 ** (rel_db / 20)
    idx = np.nonzero(rms > thr)[0]
    if idx.size == 0:
        return x[:0]
    m = int(margin_s * sr)
    return x[max(0, idx[0] * hop - m):min(x.shape[0], (idx[-1] + 1) * hop + m)]


def unit_key(it: AudioItem) -> tuple:
    return (it.domain, source_group(it.source), it.source, it.speaker, it.gender, it.full_band)


def plan_pieces(items: list[AudioItem], seg_s: float) -> list[tuple[AudioItem, float, float]]:
    """Pieces (item, start_s, end_s) of one unit, ordered round-robin over files (file order by hash)."""
    files = sorted(items, key=lambda it: stable_hash(it.path, "pack"))
    per_file = []
    for it in files:
        d = it.duration_s
        if d <= seg_s:
            per_file.append([(it, 0.0, d)])
            continue
        n = int(math.ceil(d / seg_s))
        chunks = [(it, i * seg_s, min(d, (i + 1) * seg_s)) for i in range(n)]
        chunks = [c for c in chunks if c[2] - c[1] >= 2.0]
        # the chunk order inside a file is a seeded shuffle, so a small budget still samples the whole track
        order = np.random.default_rng(int(stable_hash(it.path, "chunks") * 2 ** 32)).permutation(len(chunks))
        per_file.append([chunks[i] for i in order])
    out = []
    depth = max((len(p) for p in per_file), default=0)
    for j in range(depth):
        for p in per_file:
            if j < len(p):
                out.append(p[j])
    return out


def build_segments(items: list[AudioItem], budget_s: float, sr: int, seg_s: float, gap_s: float = 0.1,
                   target_lufs: float = -20.0, silence_lufs: float = -50.0):
    """Decode pieces in plan order until ``budget_s`` seconds are collected; return [(audio, labels, sources)]."""
    pieces = plan_pieces(items, seg_s)
    segs, cur, cur_len, total = [], [], 0, 0.0
    gap = np.zeros(int(gap_s * sr), np.float32)

    def flush():
        nonlocal cur, cur_len
        if cur:
            audio = np.concatenate([p for c in cur for p in (c, gap)][:-1])
            segs.append(audio)
        cur, cur_len = [], 0

    for it, a, b in pieces:
        if total >= budget_s:
            break
        try:
            info = sf.info(it.path)
            start = int(round(a * info.samplerate))
            frames = int(round((b - a) * info.samplerate))
            x, _ = decode_audio(it.path, sr, start=start, frames=frames)
        except Exception as e:  # noqa: BLE001
            log(f"  skip {it.path}: {e}")
            continue
        short = it.duration_s <= seg_s
        if short:
            x = trim_edges(x, sr)
        if x.shape[0] < int(0.05 * sr):
            continue
        loud = measure_loudness(x, sr)
        if loud < silence_lufs:
            continue
        x, _ = normalize_loudness(x, sr, target_lufs, loudness=loud, peak_limit=10 ** (-0.3 / 20))
        x = x[: int(seg_s * sr)]
        room = int((budget_s - total) * sr)
        if not short and x.shape[0] > room:  # the last long chunk of a unit is cut to the unit's budget
            if room < int(2.0 * sr):
                break
            x = x[:room]
        if not short or cur_len + x.shape[0] + gap.shape[0] > seg_s * sr:
            flush()
        cur.append(x)
        cur_len += x.shape[0] + gap.shape[0]
        total += (x.shape[0] + (gap.shape[0] if short else 0)) / sr  # gaps count: they are in the files
        if not short:
            flush()
    flush()
    return segs, total


def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_") or "x"


def select(items: list[AudioItem], minutes: float, shares: dict, sr: int, seg_s: float, jobs: int):
    """Returns a list of (unit_key, [segments]) and a report dict."""
    plan = []
    doms = [d for d in shares if any(it.domain == d for it in items)]
    wsum = sum(shares[d] for d in doms)
    for d in doms:
        dom_items = [it for it in items if it.domain == d]
        budget = minutes * 60 * shares[d] / wsum
        groups: dict = {}
        for it in dom_items:
            groups.setdefault(source_group(it.source), []).append(it)
        g_alloc = water_fill(budget, {g: sum(i.duration_s for i in v) * 0.9 for g, v in groups.items()})
        for g, g_items in sorted(groups.items()):
            units: dict = {}
            for it in g_items:
                units.setdefault(unit_key(it), []).append(it)
            u_alloc = water_fill(g_alloc[g], {u: sum(i.duration_s for i in v) * 0.9 for u, v in units.items()})
            for u, u_items in sorted(units.items()):
                if u_alloc[u] >= 1.0:
                    plan.append((u, u_items, u_alloc[u]))

    def run(p):
        u, u_items, budget_s = p
        segs, got = build_segments(u_items, budget_s, sr, seg_s)
        return u, segs, got, budget_s

    with ThreadPoolExecutor(jobs) as ex:
        results = list(ex.map(run, plan))
    return results


def encode(audio: np.ndarray, sr: int, level: float) -> bytes:
    b = io.BytesIO()
    sf.write(b, audio, sr, format="OGG", subtype="VORBIS", compression_level=level)
    return b.getvalue()


def update_data_md(path: str, pack_lines: list[str], args) -> None:
    """Replace (or append) the section between ``<!-- pack -->`` markers in train/DATA.md."""
    body = ["<!-- pack -->", "## GPU data pack (`data/pack/`, made by `train/make_pack.py`)", "",
            "For GPU machines without internet or TensorFlow: carry `data/pack/` and load it with "
            "`AudioDataset(\"data/pack\", sample_rate, split=\"train\")` / "
            "`build_validation_set(\"data/pack\", ..., split=\"dev\")`. Options: "
            f"train {args.train_minutes:g} min, dev {args.dev_minutes:g} min, shares {args.shares}, "
            f"segments <= {args.segment_seconds:g} s (dev {args.dev_segment_seconds:g} s).", ""]
    body += [ln if not ln.startswith("Licences:") else "Licences: as in the Sources table above."
             for ln in pack_lines[2:]] + ["<!-- /pack -->", ""]
    text = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    block = "\n".join(body)
    if "<!-- pack -->" in text:
        text = re.sub(r"<!-- pack -->.*?<!-- /pack -->\n?", lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--manifest", default=os.path.join(REPO, "data", "manifest.csv"))
    ap.add_argument("--out", default=os.path.join(REPO, "data", "pack"))
    ap.add_argument("--sample-rate", type=int, default=24000)
    ap.add_argument("--train-minutes", type=float, default=100.0)
    ap.add_argument("--dev-minutes", type=float, default=3.0)
    ap.add_argument("--shares", default="speech=0.45,music=0.45,general=0.10")
    ap.add_argument("--segment-seconds", type=float, default=30.0)
    ap.add_argument("--dev-segment-seconds", type=float, default=10.0)
    ap.add_argument("--vorbis-level", type=float, default=0.4,
                    help="soundfile compression_level for Vorbis (0 = best quality, 1 = smallest); "
                         "raised automatically while the pack exceeds --max-mb")
    ap.add_argument("--max-mb", type=float, default=45.0, help="size cap of the whole pack (MB = 1e6 bytes)")
    ap.add_argument("--jobs", type=int, default=max(2, os.cpu_count() or 2))
    ap.add_argument("--data-md", default=os.path.join(HERE, "DATA.md"),
                    help="committed summary whose 'GPU data pack' section is updated; '' to skip")
    args = ap.parse_args(argv)

    shares = {k: float(v) for k, v in (kv.split("=") for kv in args.shares.split(","))}
    sr = args.sample_rate
    all_items = load_manifest(args.manifest)
    results = {}
    for split, minutes, seg_s in (("train", args.train_minutes, args.segment_seconds),
                                  ("dev", args.dev_minutes, args.dev_segment_seconds)):
        items = [it for it in all_items if it.split == split and math.isfinite(it.duration_s)]
        if not items or minutes <= 0:
            continue
        log(f"select {split}: {minutes} min from {len(items)} files")
        results[split] = select(items, minutes, shares, sr, seg_s, args.jobs)

    langs = {unit_key(it): it.language for it in all_items}  # a unit's language (first seen; units are one voice)
    flat = [(split, u, k, seg) for split, res in results.items() for (u, segs, _, _) in res
            for k, seg in enumerate(segs)]
    level = args.vorbis_level
    while True:
        with ThreadPoolExecutor(args.jobs) as ex:
            blobs = list(ex.map(lambda f, level=level: encode(f[3], sr, level), flat))
        size = sum(len(b) for b in blobs)
        log(f"encoded {len(blobs)} segments at Vorbis level {level:.2f}: {size / 1e6:.1f} MB")
        if size <= args.max_mb * 1e6 or level >= 0.9:
            break
        level = round(level + 0.05, 2)

    tmp = args.out + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    rows = []
    for (split, u, k, seg), blob in zip(flat, blobs):
        domain, _, source, speaker, gender, full_band = u
        rel = f"{split}/{domain}/{slug(source)}/{slug(speaker or 'any')}{'' if full_band else '_bl'}_{k:03d}.ogg"
        path = os.path.join(tmp, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as fh:
            fh.write(blob)
        rows.append(AudioItem(path=path, domain=domain, source=source, speaker=speaker, gender=gender,
                              language=langs.get(u, ""), duration_s=seg.shape[0] / sr, sample_rate=sr, channels=1,
                              full_band=full_band, split=split))
    # paths are written relative to the manifest's folder, so they stay valid after the rename below
    write_manifest(rows, os.path.join(tmp, "pack_manifest.csv"))

    # report
    rep: dict = {}
    for r, blob in zip(rows, blobs):
        d = rep.setdefault(r.split, {}).setdefault(r.domain, {"minutes": 0.0, "bytes": 0, "files": 0, "sources": {}})
        d["minutes"] += r.duration_s / 60
        d["bytes"] += len(blob)
        d["files"] += 1
        d["sources"][r.source] = d["sources"].get(r.source, 0.0) + r.duration_s / 60
    gend = {}
    for r in rows:
        if r.gender:
            key = f"{r.split}/{r.gender}"
            gend[key] = gend.get(key, 0.0) + r.duration_s / 60
    stats = dict(sample_rate=sr, vorbis_level=level, total_bytes=size,
                 total_minutes=sum(r.duration_s for r in rows) / 60, splits=rep, gender_minutes=gend,
                 options=vars(args))
    with open(os.path.join(tmp, "pack_stats.json"), "w") as fh:
        json.dump(stats, fh, indent=1, default=str)
    lines = ["# Data pack", "", f"Made by `train/make_pack.py` from `{os.path.relpath(args.manifest, REPO)}`: "
             f"{sr} Hz mono Ogg Vorbis (soundfile compression_level {level:.2f}), "
             f"{size / 1e6:.1f} MB, {stats['total_minutes']:.1f} minutes.", "",
             "| split | domain | minutes | files | MB | kbit/s |", "|---|---|---:|---:|---:|---:|"]
    for sp, doms in rep.items():
        for d, v in doms.items():
            kbps = v["bytes"] * 8 / (v["minutes"] * 60) / 1000 if v["minutes"] else 0
            lines.append(f"| {sp} | {d} | {v['minutes']:.1f} | {v['files']} | {v['bytes'] / 1e6:.1f} | {kbps:.0f} |")
    lines += ["", "Minutes per source:", ""]
    for sp, doms in rep.items():
        for d, v in doms.items():
            lines.append(f"- {sp}/{d}: " + ", ".join(f"{s} {m:.1f}" for s, m in sorted(v["sources"].items())))
    lines += ["", "Labelled-gender minutes: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(gend.items())), "",
              "Licences: see train/DATA.md (all sources are Debian main packages under free licences).", ""]

    with open(os.path.join(tmp, "PACK.md"), "w") as fh:
        fh.write("\n".join(lines))
    shutil.rmtree(args.out, ignore_errors=True)
    os.replace(tmp, args.out)
    if args.data_md:
        update_data_md(args.data_md, lines, args)
    log("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
