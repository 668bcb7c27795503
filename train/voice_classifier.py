#!/usr/bin/env python
"""Male-vs-female voice classification from codec codes, evaluated on held-out speakers.

    python train/voice_classifier.py [--model SPEC] [--quick] [--clips-per-speaker 30] [--folds 4] [--epochs 12]

Takes the speech clips of ``data/manifest.csv`` whose speaker has a gender (M/F), at most ``--clips-per-speaker``
clips per speaker, center-cropped to ``--crop`` seconds, loudness-normalized. Each clip is coded by the codec
(``--model``, as ``mlae --model``: default the shipped ``small_24khz`` if there is one, else
``random:small_24khz``) and the first ``--n-levels`` RVQ levels go to
:class:`ml_audio_encoder.experiments.classifier.CodeVoiceClassifier`. Baselines: the majority class of the training
speakers, logistic regression on clip-level log-mel statistics (mean and standard deviation per mel bin), and the
same small Transformer on log-mel frames (:class:`~ml_audio_encoder.experiments.classifier.MelVoiceClassifier`).

Evaluation is speaker k-fold (:func:`~ml_audio_encoder.experiments.classifier.speaker_folds`): every speaker is held out
exactly once and never trains the model that scores it. Codes and mel features are cached in
``--cache-dir`` (git-ignored ``runs_local/``), keyed by the codec's weight fingerprint, so a second run (or a full run
after ``--quick``) only encodes the clips it has not seen.

Prints a Markdown table, writes ``results.json`` into the cache folder, the attention plot (``--plot``) and, unless
``--no-doc`` or ``--quick``, the results section of ``--doc`` (between its ``<!-- results:begin -->`` /
``<!-- results:end -->`` markers). ``--band-limit 8000`` low-passes every clip to the telephone band first (a
control for the bandwidth cue of the 8 kHz speakers).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from ml_audio_encoder.experiments.classifier import (  # noqa: E402
    MEL_PAD,
    CodeVoiceClassifier,
    MelVoiceClassifier,
    log_mel,
    pad_codes,
    pad_frames,
    pooled_stats,
    speaker_folds,
)
from ml_audio_encoder.runtime import audio_io  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ("F", "M")  # class 0, class 1
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def default_model_spec(preset="small_24khz"):
    from ml_audio_encoder.models.presets import has_pretrained

    return preset if has_pretrained(preset) else f"random:{preset}"


def describe_model(spec, model):
    if spec.startswith("random:"):
        return f"`{spec}` (random initial weights, not a trained codec; weights fingerprint {model.fingerprint()[:12]})"
    return f"`{spec}` (weights fingerprint {model.fingerprint()[:12]})"


# -- clips ------------------------------------------------------------------------------------------------------
def select_clips(manifest, data_root, per_speaker, min_duration, seed):
    """Speech rows with gender M/F and duration >= min_duration, at most ``per_speaker`` per speaker (seeded)."""
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["gender"] in LABELS and r["domain"] == "speech"]
    by_speaker = defaultdict(list)
    for r in rows:
        if float(r["duration_s"]) >= min_duration:
            by_speaker[r["speaker"]].append(r)
    chosen = []
    for speaker in sorted(by_speaker):
        rng = np.random.default_rng([seed, int(hashlib.sha256(speaker.encode()).hexdigest()[:8], 16)])
        group = sorted(by_speaker[speaker], key=lambda r: r["path"])
        take = rng.permutation(len(group))[:per_speaker]  # a prefix: smaller runs pick a subset of larger ones
        chosen += [group[i] for i in sorted(take)]
    for r in chosen:
        r["abspath"] = os.path.join(data_root, r["path"])
    return chosen


def prepare_audio(path, sample_rate, crop, band_limit):
    """Mono, center crop of ``crop`` s, optional band limit, RMS -> -20 dBFS (peak kept under 0.99)."""
    audio, _ = audio_io.load(path, sample_rate)
    audio = audio_io.to_mono(audio)
    n = int(round(crop * sample_rate))
    if len(audio) > n:
        start = (len(audio) - n) // 2
        audio = audio[start:start + n]
    if band_limit:
        length = len(audio)
        audio = audio_io.resample(audio_io.resample(audio[None], sample_rate, band_limit), band_limit, sample_rate)
        audio = np.pad(audio[0], (0, max(0, length - audio.shape[1])))[:length]
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    gain = 0.1 / max(rms, 1e-6)
    gain = min(gain, 0.99 / max(float(np.abs(audio).max()), 1e-9))
    return (audio * gain).astype(np.float32)


def make_encoder(model, n_levels):
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([None, None, 1], tf.float32)], reduce_retracing=True)
        def encode(x):
            return model.encode(x, n_quantizers=n_levels)[1]

        return encode
    return lambda x: model.encode(x, n_quantizers=n_levels)[1]


def features(clips, model, args, cache_path):
    """Codes ``(N, n_levels, frames)`` (padded) and log-mel ``(N, frames, n_mels)`` (padded), from the cache where
    it has them; newly encoded clips are added to the cache."""
    fingerprint = model.fingerprint()
    cached = {}
    if os.path.exists(cache_path):
        with np.load(cache_path, allow_pickle=False) as z:
            if str(z["fingerprint"]) == fingerprint and int(z["n_mels"]) == args.n_mels:
                for i, p in enumerate(z["paths"].tolist()):
                    t = int(z["frames"][i])
                    cached[p] = (z["codes"][i, :, :t], z["mel"][i, :t])
            else:
                print(f"cache {cache_path} is for other weights or settings: recomputing")
    todo = [c for c in clips if c["path"] not in cached]
    print(f"features: {len(clips) - len(todo)} clips cached, {len(todo)} to encode")
    if todo:
        encode = make_encoder(model, args.n_levels)
        sr, hop = model.sample_rate, model.hop_length
        t0, done = time.time(), 0
        audios = {}
        for c in todo:
            audios[c["path"]] = prepare_audio(c["abspath"], sr, args.crop, args.band_limit)
        order = sorted(todo, key=lambda c: len(audios[c["path"]]))
        for b in range(0, len(order), args.encode_batch):
            batch = order[b:b + args.encode_batch]
            longest = math.ceil(max(len(audios[c["path"]]) for c in batch) / hop) * hop
            x = np.stack([np.pad(audios[c["path"]], (0, longest - len(audios[c["path"]]))) for c in batch])
            codes = keras.ops.convert_to_numpy(encode(x[..., None]))
            for c, code in zip(batch, codes):
                a = audios[c["path"]]
                t = math.ceil(len(a) / hop)
                cached[c["path"]] = (code[:, :t].astype(np.int32), log_mel(a, sr, hop, n_mels=args.n_mels))
            done += len(batch)
            elapsed = time.time() - t0
            left = elapsed / done * (len(todo) - done)
            print(f"  encoded {done}/{len(todo)} clips, {elapsed:.0f} s, ~{left:.0f} s left", flush=True)
        save_cache(cache_path, cached, fingerprint, args.n_mels)
    codes = pad_codes([cached[c["path"]][0] for c in clips])
    mel = pad_frames([cached[c["path"]][1] for c in clips])
    frames = np.array([cached[c["path"]][0].shape[1] for c in clips])
    return codes, mel, frames


def save_cache(path, cached, fingerprint, n_mels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    paths = sorted(cached)
    frames = np.array([cached[p][0].shape[1] for p in paths])
    tmp = path + ".tmp.npz"
    np.savez_compressed(
        tmp, paths=np.array(paths), frames=frames, fingerprint=np.array(fingerprint), n_mels=np.array(n_mels),
        codes=pad_codes([cached[p][0] for p in paths]), mel=pad_frames([cached[p][1] for p in paths]),
    )
    os.replace(tmp, path)


# -- models -----------------------------------------------------------------------------------------------------
def fit_logistic_regression(x, y, c=1.0):
    """L2 logistic regression (sklearn's objective ``0.5 |w|^2 + C sum log-loss``) on standardized ``x``;
    returns ``predict_proba(x_new) -> P(class 1)``."""
    from scipy.optimize import minimize

    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = (x - mean) / std
    sign = np.where(y == 1, 1.0, -1.0)

    def loss(params):
        w, b = params[:-1], params[-1]
        margin = sign * (xs @ w + b)
        value = 0.5 * w @ w + c * np.logaddexp(0.0, -margin).sum()
        g = -c * sign / (1.0 + np.exp(margin))
        return value, np.concatenate([w + xs.T @ g, [g.sum()]])

    params = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B").x
    return lambda x_new: 1.0 / (1.0 + np.exp(-(((x_new - mean) / std) @ params[:-1] + params[-1])))


def class_weights(y):
    counts = np.bincount(y, minlength=2)
    return {k: len(y) / (2.0 * max(counts[k], 1)) for k in range(2)}


def train_keras(model, x, y, args, seed):
    keras.utils.set_random_seed(seed)
    model.compile(keras.optimizers.AdamW(args.lr, weight_decay=1e-2),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, verbose=0, shuffle=True,
              class_weight=class_weights(y))
    return model


def probability(model, x):
    logits = keras.ops.convert_to_numpy(model.predict(x, batch_size=64, verbose=0))
    return keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))[:, 1]


def standardize_mel(mel, frames, train):
    valid = np.arange(mel.shape[1])[None, :] < frames[:, None]
    ref = mel[train][valid[train]]
    mean, std = ref.mean(0), ref.std(0) + 1e-6
    return np.where(valid[..., None], (mel - mean) / std, MEL_PAD).astype(np.float32)


# -- experiment -------------------------------------------------------------------------------------------------
def run_folds(codes, mel, frames, y, speakers, args):
    n = len(y)
    methods = ("majority", "mel_logreg", "mel_transformer", "code_transformer")
    prob = {m: np.full(n, np.nan) for m in methods}
    fold_of = np.full(n, -1)
    attention = np.full((n, args.n_levels), np.nan)
    stats = pooled_stats(mel, frames)
    for k, (train, test) in enumerate(speaker_folds(speakers, y, args.folds, args.seed)):
        t0 = time.time()
        assert not set(speakers[train]) & set(speakers[test])
        fold_of[test] = k
        prob["majority"][test] = float(np.bincount(y[train], minlength=2).argmax())
        prob["mel_logreg"][test] = fit_logistic_regression(stats[train], y[train])(stats[test])

        mel_std = standardize_mel(mel, frames, train)
        mel_model = MelVoiceClassifier(n_mels=args.n_mels, **model_args(args, mel.shape[1]))
        train_keras(mel_model, mel_std[train], y[train], args, args.seed + 100 + k)
        prob["mel_transformer"][test] = probability(mel_model, mel_std[test])

        code_model = CodeVoiceClassifier(n_levels=args.n_levels, codebook_size=args.codebook_size,
                                         **model_args(args, codes.shape[2]))
        train_keras(code_model, codes[train], y[train], args, args.seed + 200 + k)
        prob["code_transformer"][test] = probability(code_model, codes[test])
        attention[test] = code_model.level_attention(codes[test])
        held = ", ".join(sorted(set(speakers[test])))
        accs = "  ".join(f"{m} {np.mean((prob[m][test] > 0.5) == y[test]):.3f}" for m in methods)
        print(f"fold {k + 1}/{args.folds} ({time.time() - t0:.0f} s) held out [{held}]: {accs}", flush=True)
    return prob, fold_of, attention


def model_args(args, max_frames):
    return dict(d_model=args.d_model, num_heads=args.heads, ff_dim=2 * args.d_model, num_blocks=args.blocks,
                max_frames=max(max_frames, 1), dropout=args.dropout, pool=args.pool)


def summarize(prob, fold_of, y, speakers, n_folds):
    rows = {}
    for method, p in prob.items():
        correct = (p > 0.5) == y
        per_fold = [correct[fold_of == k].mean() for k in range(n_folds)]
        spk_correct = []
        for s in sorted(set(speakers)):
            idx = speakers == s
            spk_correct.append((p[idx].mean() > 0.5) == (y[idx].mean() > 0.5))
        rows[method] = dict(
            clip_accuracy=float(correct.mean()),
            fold_mean=float(np.mean(per_fold)),
            fold_std=float(np.std(per_fold)),
            speakers_correct=int(np.sum(spk_correct)),
            speakers=len(spk_correct),
        )
    return rows


NAMES = {
    "majority": "majority class (of the training speakers)",
    "mel_logreg": "log-mel mean+std, logistic regression",
    "mel_transformer": "log-mel frames, same small Transformer",
    "code_transformer": "RVQ codes (8 levels), per-level Transformer + level attention",
}


def markdown_table(summary, n_clips, n_speakers):
    lines = [
        (f"| features / model | clip accuracy (all {n_clips} held-out clips) | mean ± sd over folds "
         f"| speakers right (mean P over clips) |"),
        "|---|---|---|---|",
    ]
    for method, r in summary.items():
        lines.append(f"| {NAMES[method]} | {r['clip_accuracy']:.3f} | {r['fold_mean']:.3f} ± {r['fold_std']:.3f} "
                     f"| {r['speakers_correct']}/{r['speakers']} |")
    return "\n".join(lines)


def speaker_table(prob, y, speakers, clips):
    source = {}
    for c in clips:
        source.setdefault(c["speaker"], set()).add(f"{c['source']} ({c['sample_rate']} Hz)")
    lines = ["| speaker | gender | source | clips | codes | mel Transformer | mel LR |", "|---" * 7 + "|"]
    for s in sorted(set(speakers)):
        idx = speakers == s
        acc = {m: np.mean((prob[m][idx] > 0.5) == y[idx]) for m in prob}
        lines.append(f"| {s} | {LABELS[int(y[idx][0])]} | {', '.join(sorted(source[s]))} | {idx.sum()} "
                     f"| {acc['code_transformer']:.2f} | {acc['mel_transformer']:.2f} | {acc['mel_logreg']:.2f} |")
    return "\n".join(lines)


def plot_attention(attention, fold_of, y, n_folds, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = np.arange(1, attention.shape[1] + 1)
    per_fold = np.stack([attention[fold_of == k].mean(0) for k in range(n_folds)])
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ax.bar(levels, attention.mean(0), color="#4c72b0", label="all held-out clips", zorder=2)
    ax.errorbar(levels, attention.mean(0), yerr=per_fold.std(0), fmt="none", ecolor="k", capsize=3,
                label="± sd over folds", zorder=3)
    for label, marker in ((0, "o"), (1, "s")):
        ax.plot(levels, attention[y == label].mean(0), marker, ms=4, color="#dd8452" if label else "#55a868",
                label=f"{LABELS[label]} clips", zorder=4)
    ax.axhline(1.0 / attention.shape[1], ls=":", color="gray", label="uniform")
    ax.set_xlabel("RVQ level")
    ax.set_ylabel("mean attention weight")
    ax.set_xticks(levels)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def write_doc(path, section):
    text = "# Voice classifier on codec codes\n\n"
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    block = f"{BEGIN}\n{section.strip()}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="codec: preset, random:PRESET or weights file (as mlae --model); "
                   "default small_24khz if it ships weights, else random:small_24khz")
    p.add_argument("--manifest", default=os.path.join(ROOT, "data", "manifest.csv"))
    p.add_argument("--data-root", default=os.path.join(ROOT, "data"))
    p.add_argument("--quick", action="store_true", help="few clips, folds and epochs: a smoke run")
    p.add_argument("--clips-per-speaker", type=int, default=None, help="default 30 (quick: 8)")
    p.add_argument("--crop", type=float, default=2.0, help="seconds per clip (center crop; shorter clips stay short)")
    p.add_argument("--min-duration", type=float, default=0.5)
    p.add_argument("--band-limit", type=int, default=0,
                   help="low-pass every clip to this sample rate first (e.g. 8000: hides the telephone-band cue)")
    p.add_argument("--n-levels", type=int, default=8)
    p.add_argument("--n-mels", type=int, default=64)
    p.add_argument("--folds", type=int, default=None, help="speaker folds (default 4; quick: 2)")
    p.add_argument("--epochs", type=int, default=None, help="default 12 (quick: 4)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--pool", type=int, default=3, help="frames averaged before the Transformers (75/s -> 25/s)")
    p.add_argument("--encode-batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", default=os.path.join(ROOT, "runs_local", "voice_classifier"))
    p.add_argument("--doc", default=os.path.join(ROOT, "docs", "voice_classifier.md"))
    p.add_argument("--plot", default=None, help="default docs/img/voice_level_attention.png (quick: in --cache-dir)")
    p.add_argument("--no-doc", action="store_true", help="do not touch --doc (default with --quick)")
    args = p.parse_args(argv)
    args.clips_per_speaker = args.clips_per_speaker or (8 if args.quick else 30)
    args.folds = args.folds or (2 if args.quick else 4)
    args.epochs = args.epochs or (4 if args.quick else 12)
    args.plot = args.plot or (os.path.join(args.cache_dir, "voice_level_attention_quick.png") if args.quick
                              else os.path.join(ROOT, "docs", "img", "voice_level_attention.png"))
    write_to_doc = not (args.no_doc or args.quick)
    t_start = time.time()

    from ml_audio_encoder import load_model

    spec = args.model or default_model_spec()
    keras.utils.set_random_seed(args.seed)  # random:PRESET weights are then reproducible (the cache checks anyway)
    codec = load_model(spec, engine="keras")
    args.codebook_size = codec.codebook_size
    if args.n_levels > codec.n_codebooks:
        raise SystemExit(f"--n-levels {args.n_levels} > the codec's {codec.n_codebooks} levels")
    weights_line = describe_model(spec, codec)
    print(f"codec: {weights_line}, {codec.sample_rate} Hz, {codec.frame_rate:g} frames/s")

    clips = select_clips(args.manifest, args.data_root, args.clips_per_speaker, args.min_duration, args.seed)
    speakers = np.array([c["speaker"] for c in clips])
    y = np.array([LABELS.index(c["gender"]) for c in clips])
    genders = {s: LABELS[int(y[speakers == s][0])] for s in sorted(set(speakers))}
    n_f = sum(g == "F" for g in genders.values())
    print(f"clips: {len(clips)} from {len(genders)} speakers ({n_f} F, {len(genders) - n_f} M), "
          f"{Counter(LABELS[i] for i in y)}")

    tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{spec}_crop{args.crop:g}_bl{args.band_limit}_q{args.n_levels}")
    tag += "_" + hashlib.sha256(codec.fingerprint().encode()).hexdigest()[:8]
    cache = os.path.join(args.cache_dir, f"features_{tag}.npz")
    codes, mel, frames = features(clips, codec, args, cache)
    del codec
    t_features = time.time() - t_start
    print(f"features ready in {t_features:.0f} s: codes {codes.shape}, log-mel {mel.shape}")

    prob, fold_of, attention = run_folds(codes, mel, frames, y, speakers, args)
    summary = summarize(prob, fold_of, y, speakers, args.folds)
    table = markdown_table(summary, len(y), len(genders))
    spk_table = speaker_table(prob, y, speakers, clips)
    mean_attention = attention.mean(0)
    wall = time.time() - t_start
    setup = (
        f"codec {weights_line}; {len(y)} clips ({args.clips_per_speaker} max per speaker, center crop "
        f"{args.crop:g} s, clips ≥ {args.min_duration:g} s"
        + (f", band-limited to {args.band_limit} Hz sampling" if args.band_limit else "")
        + f") from {len(genders)} speakers ({n_f} F, {len(genders) - n_f} M); {args.folds}-fold speaker "
        f"cross-validation (seed {args.seed}); {args.epochs} epochs, d_model {args.d_model}, {args.blocks} block(s), "
        f"{args.heads} heads, frames pooled by {args.pool}; wall time {wall / 60:.1f} min on the shared 2-core CPU "
        f"(features {t_features / 60:.1f} min)."
    )
    print()
    print(table)
    print()
    print(f"mean across-level attention (levels 1..{args.n_levels}): {np.round(mean_attention, 3).tolist()}")
    print(setup)

    title = f"Across-level attention, held-out speakers ({spec}, {args.folds} folds)"
    plot_attention(attention, fold_of, y, args.folds, args.plot, title)
    result = dict(
        args={k: v for k, v in vars(args).items()}, model=spec, summary=summary, table=table, speaker_table=spk_table,
        mean_attention=mean_attention.tolist(), setup=setup,
        speakers={s: genders[s] for s in genders}, wall_s=wall,
    )
    os.makedirs(args.cache_dir, exist_ok=True)
    name = "results" + ("_quick" if args.quick else "") + (f"_bl{args.band_limit}" if args.band_limit else "")
    out_json = os.path.join(args.cache_dir, name + ".json")
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {out_json} and {args.plot}")
    if write_to_doc:
        rel_plot = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.doc)))
        section = "\n\n".join([
            "### Results (written by `train/voice_classifier.py`)",
            setup,
            table,
            "Per held-out speaker (fraction of that speaker's clips classified correctly):",
            spk_table,
            f"Mean across-level attention of the code model on held-out clips, RVQ levels 1–{args.n_levels}: "
            + ", ".join(f"{a:.3f}" for a in mean_attention) + ".",
            f"![mean attention per RVQ level]({rel_plot})",
        ])
        write_doc(args.doc, section)
        print(f"updated {args.doc}")


if __name__ == "__main__":
    main()
