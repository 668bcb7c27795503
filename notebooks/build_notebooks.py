#!/usr/bin/env python
"""Write the notebooks of this folder from the cell sources below (outputs empty).

    python notebooks/build_notebooks.py            # rewrite all three .ipynb files
    python notebooks/build_notebooks.py --check    # exit 1 if a .ipynb differs from its source here

This file is the source of the notebooks: edit a cell here and rerun, so that the committed notebooks stay small
(no outputs, no embedded audio) and reviewable as Python. ``tests/test_notebooks.py`` runs every notebook with
``QUICK=1`` and checks that the .ipynb files match this file.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

FIRST_CELL = '''import os

QUICK = os.environ.get("QUICK") == "1"  # QUICK=1: a small smoke run on the clips in tests/data (CI, tests)
'''

# ------------------------------------------------------------------------------------------------------------------
# compression_vs_opus.ipynb
# ------------------------------------------------------------------------------------------------------------------
COMPRESSION = [
    ("md", '''# Compression vs Opus

Real speech and music compressed at several bitrates by our codec (different numbers of RVQ levels,
`n_quantizers`) and by Opus (libopus through ffmpeg, constrained VBR), with everything measured by the project's
benchmark (`ml_audio_encoder.eval`): file and payload sizes, compression ratio against 16-bit PCM, mel distance
(DAC's definition, lower is better), SI-SDR and ViSQOL (higher is better).

* `QUICK=1` (what the tests run): a 1.5 s excerpt of each of the shipped clips `tests/data/speech_male.ogg` and
  `tests/data/music.ogg`, two depths of our codec (2 and 8 levels) and two Opus bitrates (6 and 12 kbps). ViSQOL is
  kept because the excerpts are short.
* Otherwise: up to `N_FILES` files per domain of the dev split of `data/manifest.csv` (built by
  `train/get_data.py`; never trained on), each cropped to `SECONDS`, all 12 depths and five Opus bitrates; without
  `data/` the four shipped clips are used whole.

The same numbers for a whole dataset come from the command line: `mlae bench --kind speech --data dev`.'''),
    ("code", FIRST_CELL + '''
import math

import _common as C
from IPython.display import Markdown, display

from ml_audio_encoder.eval import (
    BenchConfig,
    markdown_summary,
    peers,
    report,
    resolve_dataset,
    run_benchmark,
    summarize,
    write_report,
)

print("QUICK" if QUICK else "full run", "| data/manifest.csv:", "present" if C.have_manifest() else "absent")
print("Opus backend:", peers.opus_backend())'''),
    ("code", '''spec, model = C.load_codec()'''),
    ("md", '''## Settings and data

Our codec spends `10 bits x 75 frames/s = 0.75 kbps` per RVQ level, so 2, 4 and 8 levels are 1.5, 3 and 6 kbps.
Opus is run at 6 kbps and up (its lowest useful rate for wideband audio).'''),
    ("code", '''if QUICK:
    SECONDS = 1.5  # ViSQOL is slow: in QUICK mode it runs on 1.5 s of audio per file
    LEVELS = [2, 8]
    OPUS_KBPS = (6, 12)
    VISQOL = True
    datasets = {
        "speech": resolve_dataset(C.CLIPS["speech_male"], kind="speech"),
        "music": resolve_dataset(C.CLIPS["music"], kind="music"),
    }
else:
    SECONDS = 10.0
    LEVELS = None  # all of 1..n_codebooks
    OPUS_KBPS = (6, 12, 16, 24, 32)
    VISQOL = True
    N_FILES = 10
    if C.have_manifest():
        datasets = {kind: resolve_dataset("dev", kind=kind, limit=N_FILES) for kind in ("speech", "music")}
    else:
        print("no data/manifest.csv: using the shipped clips in tests/data")
        datasets = {
            "speech": resolve_dataset(C.CLIPS["speech_male"], kind="speech")
            + resolve_dataset(C.CLIPS["speech_female"], kind="speech"),
            "music": resolve_dataset(C.CLIPS["music"], kind="music"),
        }
for kind, items in datasets.items():
    names = ", ".join(item.name for item in items[:5]) + (", ..." if len(items) > 5 else "")
    print(f"{kind}: {len(items)} file(s): {names}")'''),
    ("md", '''## Run the benchmark

One run per domain (the domain picks the ViSQOL mode: speech at 16 kHz, audio at 48 kHz). The peak-memory probe of
`mlae bench` is switched off here: it compresses a 10-minute file.'''),
    ("code", '''results = {}
for kind, items in datasets.items():
    config = BenchConfig(kind=kind, levels=LEVELS, opus_kbps=OPUS_KBPS, seconds=SECONDS, visqol=VISQOL,
                         memory=False, progress=False)
    results[kind] = run_benchmark(model, items, config, model_spec=spec)
    paths = write_report(results[kind], C.out_dir("compression_vs_opus", kind), title=f"Compression vs Opus ({spec})")
    print(f"{kind}: {len(results[kind].rows)} rows, report in {os.path.dirname(paths['summary_md'])}")'''),
    ("md", '''## Listen

The first file of each domain: the original, our codec at each depth, Opus at each bitrate.'''),
    ("code", '''for kind, result in results.items():
    examples = result.examples
    rows = {f"{r['codec']}:{r['setting']}": r for r in examples.get("_rows", [])}
    display(Markdown(f"### {kind}: `{result.rows[0]['name']}`"))
    x, sr = examples["original"]
    C.player(x, sr, f"original ({len(x) / sr:.1f} s, {sr} Hz)")
    for key, row in rows.items():
        codec, setting = key.split(":")
        what = f"ours, {setting} levels" if codec == "ours" else f"Opus {setting}"
        y, sr = examples[key]
        C.player(y, sr, f"{what}: {row['kbps_payload']:.1f} kbps payload, ratio {row['ratio_file']:.0f}:1, "
                        f"mel distance {row['mel_distance']:.3f}")'''),
    ("md", '''## Spectrograms

Original, our codec and Opus at about the same payload bitrate (the closest pair), first file of each domain.'''),
    ("code", '''from collections import OrderedDict

for kind, result in results.items():
    examples = result.examples
    pair = report.matched_pair(examples.get("_rows", []))
    if pair is None:
        print(f"{kind}: no Opus rows (no Opus encoder?)")
        continue
    ours, opus = pair
    signals = OrderedDict()
    signals[f"{kind}: original"] = examples["original"]
    signals[f"ours, {ours['setting']} levels ({ours['kbps_payload']:.1f} kbps)"] = examples[f"ours:{ours['setting']}"]
    signals[f"Opus {opus['setting']} ({opus['kbps_payload']:.1f} kbps payload)"] = examples[f"opus:{opus['setting']}"]
    C.show(report.plot_spectrograms(signals))'''),
    ("md", '''## Compression ratio, mel distance, ViSQOL

Means per codec and setting. *Bitrate* and *ratio* count the whole file (the `.mlae` header and CRC; Ogg pages and
Opus headers); *payload* counts the codes / Opus packets only. Mel distance is lower-better, ViSQOL (MOS-LQO,
1-5) and SI-SDR higher-better.'''),
    ("code", '''COLUMNS = [("codec", "codec"), ("setting", "setting"), ("kbps_file", "kbps (file)"),
           ("kbps_payload", "kbps (payload)"), ("ratio_file", "ratio (file)"), ("ratio_payload", "ratio (payload)"),
           ("mel_distance", "mel distance ↓"), ("visqol", "ViSQOL ↑"), ("si_sdr", "SI-SDR dB ↑")]
DIGITS = {"mel_distance": 3, "visqol": 2, "ratio_file": 0, "ratio_payload": 0}


def cell(key, value):
    if isinstance(value, str):
        return value
    return f"{value:.{DIGITS.get(key, 1)}f}" if math.isfinite(value) else "–"  # NaN: e.g. no ViSQOL


summaries = {kind: summarize(result.rows) for kind, result in results.items()}
for kind, summary in summaries.items():
    lines = [f"### {kind} (ViSQOL {results[kind].visqol_mode or 'not computed'})", "",
             "| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(key, s.get(key)) for key, _ in COLUMNS) + " |" for s in summary]
    display(Markdown("\\n".join(lines)))'''),
    ("md", '''The benchmark's full Markdown report (also written, with its CSVs and figures, to
`runs_local/notebooks/compression_vs_opus/<kind>/`):'''),
    ("code", '''for kind, result in results.items():
    display(Markdown(markdown_summary(result, summaries[kind], title=f"Compression vs Opus ({spec})")))'''),
    ("md", '''## Quality vs bitrate

One line per codec against the achieved payload bitrate (log scale).'''),
    ("code", '''for kind, summary in summaries.items():
    fig = report.plot_quality_vs_kbps(summary)
    fig.suptitle(kind, y=1.02)
    C.show(fig)'''),
    ("code", '''if spec.startswith("random:"):
    print("Reminder: the codec above has random weights; its rows show the plumbing, not the codec's quality.")'''),
]

# ------------------------------------------------------------------------------------------------------------------
# codebook_statistics.ipynb
# ------------------------------------------------------------------------------------------------------------------
CODEBOOKS = [
    ("md", '''# Codebook statistics

How the residual vector quantizer (RVQ) uses its codebooks, level by level, with the library code in
`ml_audio_encoder.eval.analysis`:

* **entropy** of the code distribution per level, against `log2(codebook size)` (10 bits: what the file spends);
* **perplexity** `2^entropy`: the number of equally likely codes with the same entropy;
* **utilization** (share of the codebook used at least once) and **dead codes**;
* **bitrate efficiency**: sum of the level entropies / bits spent (DAC's `compute_entropy.py` "effective percentage");
* **mel distance vs number of levels**: what each added level buys.

`QUICK=1` (tests): the four shipped clips in `tests/data`, at most 3 s each (~830 frames per level, so at most
~830 of the 1,024 codes can show up: utilization is bounded by the sample, and entropy and perplexity are biased low
on so few frames). Otherwise up to `N_FILES` files per
domain of the dev split of `data/manifest.csv`, or the shipped clips whole when there is no `data/`.'''),
    ("code", FIRST_CELL + '''
import _common as C
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

from ml_audio_encoder.eval import analysis, resolve_dataset
from ml_audio_encoder.eval.runner import load_mono

print("QUICK" if QUICK else "full run", "| data/manifest.csv:", "present" if C.have_manifest() else "absent")'''),
    ("code", '''spec, model = C.load_codec()
K, FRAME_RATE = int(model.codebook_size), float(model.frame_rate)'''),
    ("md", '''## Audio'''),
    ("code", '''if QUICK:
    SECONDS, MEL_SECONDS, MEL_LEVELS, USAGE_LEVELS = 3.0, 1.5, [1, 8, 12], 4
    items = {name: (path, C.CLIP_DOMAIN[name]) for name, path in C.CLIPS.items()}
elif C.have_manifest():
    SECONDS, MEL_SECONDS, MEL_LEVELS, USAGE_LEVELS, N_FILES = 5.0, 5.0, None, None, 30
    items = {}
    for kind in ("speech", "music", "general"):
        for item in resolve_dataset("dev", kind=kind, limit=N_FILES):
            items[item.path] = (item.path, kind)
else:
    print("no data/manifest.csv: using the shipped clips in tests/data")
    SECONDS, MEL_SECONDS, MEL_LEVELS, USAGE_LEVELS = None, 5.0, None, None
    items = {name: (path, C.CLIP_DOMAIN[name]) for name, path in C.CLIPS.items()}

clips = []  # (name, domain, mono audio, sample rate)
for name, (path, domain) in items.items():
    try:
        x, sr, _ = load_mono(path, SECONDS)  # centre crop to SECONDS
    except (OSError, ValueError, RuntimeError) as e:  # an undecodable file is reported, not silently dropped
        print(f"skipping {path}: {type(e).__name__}: {e}")
        continue
    clips.append((os.path.basename(name), domain, x, sr))
for domain in sorted({c[1] for c in clips}):
    seconds = sum(len(c[2]) / c[3] for c in clips if c[1] == domain)
    print(f"{domain}: {sum(c[1] == domain for c in clips)} clip(s), {seconds:.1f} s")'''),
    ("md", '''## Codes of every level

`analysis.encode_codes` runs the encoder and quantizer at full depth (all levels) on each clip (resampled to the
model's rate if needed); `analysis.codebook_stats` counts the codes per level.'''),
    ("code", '''codes = [analysis.encode_codes(model, x, sr) for _, _, x, sr in clips]  # each (n_q, frames)
stats = analysis.codebook_stats(codes, K)
display(Markdown(stats.to_markdown()))'''),
    ("code", '''bits = stats.n_q * stats.bits_per_code * FRAME_RATE / 1000
print(f"bitrate efficiency: {100 * stats.efficiency:.1f}% "
      f"(sum of level entropies {stats.entropy_per_frame_bits:.1f} bits per frame of {stats.n_q * np.log2(K):.0f})")
print(f"an ideal entropy coder of independent levels would need {stats.entropy_kbps(FRAME_RATE):.2f} kbps "
      f"instead of the {bits:.2f} kbps the file spends at {stats.n_q} levels")
print(f"dead codes: {int(stats.dead_codes.sum())} of {stats.n_q * K} ({stats.n_frames} frames per level)")
for n in (2, 4, 8, stats.n_q):  # the file at fewer levels keeps the first n levels of these codes
    s = analysis.codebook_stats([c[:n] for c in codes], K)
    print(f"  first {n:2d} levels ({n * stats.bits_per_code * FRAME_RATE / 1000:.2f} kbps): efficiency "
          f"{100 * s.efficiency:.1f}%, entropy-coded {s.entropy_kbps(FRAME_RATE):.2f} kbps")'''),
    ("md", '''## Code usage per level

Codes sorted by frequency; a flat histogram over all 1,024 codes is the ideal (maximum entropy). In QUICK mode only
the first `USAGE_LEVELS` levels are drawn (1,024 bars per panel take seconds each to draw on a small CPU).'''),
    ("code", '''C.show(analysis.plot_code_usage(stats, max_levels=USAGE_LEVELS))'''),
    ("md", '''## Perplexity, utilization and entropy per level'''),
    ("code", '''C.show(analysis.plot_perplexity(stats))'''),
    ("code", '''levels = np.arange(1, stats.n_q + 1)
fig, ax = plt.subplots(figsize=(6, 3.5))
ax.bar(levels, stats.entropy_bits, color="tab:green", label="entropy (bits)")
ax.axhline(np.log2(K), color="gray", ls="--", lw=1, label=f"log2({K}) = {np.log2(K):.0f} bits")
ax.axhline(np.log2(stats.n_frames), color="gray", ls=":", lw=1, label=f"log2(frames) = {np.log2(stats.n_frames):.1f}")
ax.set_xlabel("RVQ level")
ax.set_ylabel("bits per code")
ax.set_xticks(levels)
ax.set_title("Entropy per level vs bits spent")
ax.legend(fontsize=8, loc="lower right")
C.show(fig)'''),
    ("md", '''## By domain

The same statistics for speech, music and general sound separately (frames per domain differ, so compare the
shapes rather than the absolute perplexities).'''),
    ("code", '''by_domain = {}
for domain in sorted({c[1] for c in clips}):
    by_domain[domain] = analysis.codebook_stats([c for c, clip in zip(codes, clips) if clip[1] == domain], K)
fig, ax = plt.subplots(figsize=(6, 3.5))
for domain, s in by_domain.items():
    ax.plot(levels, s.perplexity, "o-", label=f"{domain} ({s.n_frames} frames, eff. {100 * s.efficiency:.0f}%)")
ax.set_xlabel("RVQ level")
ax.set_ylabel("perplexity")
ax.set_xticks(levels)
ax.legend(fontsize=8)
ax.grid(alpha=0.3)
C.show(fig)'''),
    ("md", '''## Mel distance vs number of levels

Each clip is encoded once at full depth and decoded from the first *n* levels (RVQ codes of *n* levels are a prefix of
the full codes): `analysis.mel_distance_vs_levels`. One speech and one music clip (centre `MEL_SECONDS`).'''),
    ("code", '''fig, ax = plt.subplots(figsize=(6, 3.5))
for domain in ("speech", "music"):
    name, _, x, sr = next(c for c in clips if c[1] == domain)
    n = int(MEL_SECONDS * sr)
    start = max(0, (len(x) - n) // 2)
    curve = analysis.mel_distance_vs_levels(model, x[start:start + n], sr, levels=MEL_LEVELS)
    analysis.plot_mel_vs_levels(curve, label=f"{domain}: {name}", ax=ax)
    print(domain, ", ".join(f"{r['n_quantizers']} levels ({r['kbps']:.2f} kbps): {r['mel_distance']:.3f}"
                            for r in curve))
ax.set_title("Mel distance vs RVQ levels decoded")
C.show(fig)'''),
    ("code", '''if spec.startswith("random:"):
    print("Reminder: random weights. An untrained RVQ typically uses few codes per level; trained weights should "
          "show high perplexity at every level and a mel distance that falls with each level.")'''),
]

# ------------------------------------------------------------------------------------------------------------------
# voice_classifier_on_codes.ipynb
# ------------------------------------------------------------------------------------------------------------------
VOICE = [
    ("md", '''# Male / female voice classifier on codec codes

Can the discrete codes of the first 8 RVQ levels tell a male from a female voice, and which levels does the
classifier look at? The model is `ml_audio_encoder.experiments.classifier.CodeVoiceClassifier`: one embedding table and
one small Transformer per RVQ level, mean pooling over time, then a learned attention across the 8 levels (its weights,
one per level and summing to 1, are shown at the end) and a linear classifier. The experiment itself is
`train/voice_classifier.py` (log-mel baselines, speaker k-fold cross-validation, cached features).

* **Full run** (no `QUICK`, `data/manifest.csv` present): the speech clips of the labelled speakers (M/F) in
  `data/manifest.csv`, evaluated by speaker: every speaker is held out in exactly one fold and never trains the
  model that scores it. This calls `train/voice_classifier.py` and shows its table and attention plot.
* **Smoke run** (`QUICK=1`, or no `data/`): only the two shipped speech clips, `tests/data/speech_male.ogg` and
  `tests/data/speech_female.ogg` (one speaker each). It exercises the same code path end to end, but with one
  speaker per class **its accuracy means nothing** (see below).'''),
    ("code", FIRST_CELL + '''
import _common as C
import keras
import numpy as np
from IPython.display import Image, Markdown, display

from ml_audio_encoder.eval import analysis
from ml_audio_encoder.experiments.classifier import CodeVoiceClassifier
from train import voice_classifier as vc

N_LEVELS = 8  # RVQ levels the classifier reads
SMOKE = QUICK or not C.have_manifest()
if SMOKE and not QUICK:
    print("no data/manifest.csv: falling back to the smoke run on the shipped clips")
print("smoke run (two shipped clips)" if SMOKE else "full run (data/manifest.csv, speaker k-fold)")'''),
    ("code", '''spec, model = C.load_codec()'''),
    ("md", '''## Full run: labelled speakers of `data/manifest.csv`, split by speaker

Skipped in the smoke run. The settings are the script's defaults; the run encodes `CLIPS_PER_SPEAKER` clips of every
labelled speaker (minutes on a small CPU; the codes are cached in `CACHE_DIR`, keyed by the codec's weights) and
trains 2 Transformers per fold. Point `CACHE_DIR` at `runs_local/voice_classifier` to reuse the script's cache (its
`results.json` is then overwritten).'''),
    ("code", '''CLIPS_PER_SPEAKER, FOLDS, EPOCHS = 30, 4, 12
CACHE_DIR = C.out_dir("voice_classifier")
PLOT = os.path.join(CACHE_DIR, "voice_level_attention.png")
if not SMOKE:
    import json

    vc.main(["--model", spec, "--n-levels", str(N_LEVELS), "--clips-per-speaker", str(CLIPS_PER_SPEAKER),
             "--folds", str(FOLDS), "--epochs", str(EPOCHS), "--cache-dir", CACHE_DIR, "--plot", PLOT, "--no-doc"])
    with open(os.path.join(CACHE_DIR, "results.json")) as f:
        full = json.load(f)
    lines = ["| features / model | clip accuracy | mean ± sd over folds | speakers right |", "|---|---|---|---|"]
    lines += [f"| {vc.NAMES.get(m, m)} | {r['clip_accuracy']:.3f} | {r['fold_mean']:.3f} ± {r['fold_std']:.3f} "
              f"| {r['speakers_correct']}/{r['speakers']} |" for m, r in full["summary"].items()]
    display(Markdown("\\n".join(lines)))
    print("mean attention per RVQ level (held-out clips):", [round(float(a), 3) for a in full["mean_attention"]])
    display(Image(filename=PLOT))'''),
    ("md", '''## Smoke run: two shipped clips

**Read this before the numbers.** There is one male and one female speaker, one recording each. The clips are cut
into overlapping 0.8 s windows; the first 60 % of each recording trains, windows from the last 40 % test
(disjoint in time, never overlapping the training windows). Every test window comes from a speaker the model has
trained on, and the two classes also differ by language, recording and content, so the model can be right for
reasons that have nothing to do with gender. **The accuracy printed here means nothing**: this cell only shows
that codes -> classifier -> attention run end to end. The real evaluation is the full run above.'''),
    ("code", '''if SMOKE:
    WINDOW, HOP, TRAIN_SHARE = 60, 10, 0.6  # frames (75 per second), train share of each recording
    sr = int(model.sample_rate)
    windows, labels, is_train = [], [], []
    for name, gender in (("speech_female", "F"), ("speech_male", "M")):
        audio = vc.prepare_audio(C.CLIPS[name], sr, crop=30.0, band_limit=0)  # the script's loudness normalization
        codes = analysis.encode_codes(model, audio, sr, n_quantizers=N_LEVELS)  # (8, frames)
        frames = codes.shape[1]
        boundary = int(TRAIN_SHARE * frames)
        n = {True: 0, False: 0}
        for start in range(0, frames - WINDOW + 1, HOP):
            if start + WINDOW <= boundary or start >= boundary:  # drop windows that straddle the boundary
                windows.append(codes[:, start:start + WINDOW])
                labels.append(vc.LABELS.index(gender))
                is_train.append(start + WINDOW <= boundary)
                n[is_train[-1]] += 1
        print(f"{name} ({gender}): {len(audio) / sr:.1f} s, {frames} frames -> "
              f"{n[True]} train / {n[False]} test windows")
    x, y, train = np.stack(windows).astype("int32"), np.array(labels), np.array(is_train)
    print("codes:", x.shape, "(windows, levels, frames)")'''),
    ("code", '''if SMOKE:
    keras.utils.set_random_seed(0)
    clf = CodeVoiceClassifier(n_levels=N_LEVELS, codebook_size=model.codebook_size, n_classes=2, d_model=32,
                              num_heads=2, ff_dim=64, num_blocks=1, max_frames=WINDOW, dropout=0.1)
    clf.compile(keras.optimizers.AdamW(1e-3, weight_decay=1e-2),
                keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    clf.fit(x[train], y[train], batch_size=8, epochs=6, shuffle=True, verbose=0)
    accuracy = {split: float(np.mean(np.argmax(clf.predict(x[m], verbose=0), -1) == y[m]))
                for split, m in (("train", train), ("test", ~train))}
    print(f"SMOKE RUN, MEANINGLESS: train accuracy {accuracy['train']:.2f}, test accuracy {accuracy['test']:.2f} "
          f"on {int((~train).sum())} windows of the same two speakers")'''),
    ("md", '''## Attention across RVQ levels

`CodeVoiceClassifier.level_attention` gives, per clip, the softmax weights of the 8 levels in the pooled vector
(1/8 each is uniform). Plotted with the script's `plot_attention` (bars: mean over held-out clips; markers: per
class). In the full run the plot above is the real result; in the smoke run these are the weights of a model
trained on two recordings, which show the mechanism and nothing about which levels carry gender.'''),
    ("code", '''if SMOKE:
    attention = clf.level_attention(x[~train])  # (test windows, levels), rows sum to 1
    assert np.allclose(attention.sum(axis=1), 1.0, atol=1e-4)
    path = os.path.join(C.out_dir("voice_classifier"), "voice_level_attention_smoke.png")
    vc.plot_attention(attention, np.zeros(len(attention), int), y[~train], 1, path,
                      f"SMOKE RUN (two shipped clips, {spec}): attention across levels")
    display(Image(filename=path))
    print("mean attention per level:", [round(float(a), 3) for a in attention.mean(axis=0)])'''),
    ("code", '''if spec.startswith("random:"):
    print("Reminder: the codec has random weights, so its codes are not the trained codec's codes.")
if SMOKE:
    print("Reminder: smoke run on two recordings of one speaker each; the accuracy above means nothing.")'''),
]

NOTEBOOKS = {
    "compression_vs_opus.ipynb": COMPRESSION,
    "codebook_statistics.ipynb": CODEBOOKS,
    "voice_classifier_on_codes.ipynb": VOICE,
}


def build(name: str):
    """The notebook ``name`` as an nbformat object, without outputs and with stable cell ids."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    nb = new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    stem = name.rsplit(".", 1)[0].replace("_", "-")
    for i, (kind, source) in enumerate(NOTEBOOKS[name]):
        cell = new_markdown_cell(source) if kind == "md" else new_code_cell(source)
        cell["id"] = f"{stem}-{i:02d}"
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def main(argv=None) -> int:
    import nbformat

    argv = sys.argv[1:] if argv is None else argv
    check = "--check" in argv
    stale = []
    for name in NOTEBOOKS:
        path = os.path.join(HERE, name)
        text = nbformat.writes(build(name)) + "\n"
        if check:
            if not os.path.exists(path):
                stale.append(name)
                continue
            with open(path) as f:
                if f.read() != text:
                    stale.append(name)
            continue
        with open(path, "w") as f:
            f.write(text)
        print(f"wrote {path}")
    if stale:
        print("out of date (run python notebooks/build_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
