"""A fast, fixed dev check for training curves: mel distance and ViSQOL at a fixed number of levels on a small,
deterministic set of dev clips, averaged per clip and per domain, beside Opus on the same clips.

``mlae bench`` scores every level against several Opus rates and takes many minutes; a learning curve needs one
number per few CPU-minutes that does not swing with the batch. The clips are fixed (the validation builder is
deterministic), each clip is coded on its own (no padding shared across a batch), and the score is the mean over
clips, so two evaluations of the same weights give the same numbers.
"""

from __future__ import annotations

import json
import os
import time

import keras
import numpy as np

from . import metrics


def _visqol_mode(domain):
    return "speech" if domain == "speech" else "audio"


def score_clips(decode, clips, domains, sample_rate, visqol=True):
    """Per-domain and overall means of mel distance (and ViSQOL) of ``decode(clip) -> audio`` over ``clips``.

    ``clips``: float32 ``(N, T, 1)`` or ``(N, T)``; ``domains``: N labels. Returns a flat dict such as
    ``{"mel": ..., "mel/speech": ..., "visqol/speech": ...}``.
    """
    per = {}
    for clip, domain in zip(np.asarray(clips), domains):
        ref = np.asarray(clip, dtype=np.float32).reshape(-1)
        est = np.asarray(decode(ref), dtype=np.float32).reshape(-1)[: len(ref)]
        per.setdefault(("mel", domain), []).append(metrics.mel_distance(ref, est, sample_rate))
        if visqol and metrics.visqol_available():
            score = metrics.visqol(ref, est, sample_rate, _visqol_mode(domain))
            per.setdefault(("visqol", domain), []).append(score.moslqo)
    out = {}
    for kind in ("mel", "visqol"):
        values = [v for (k, _), vs in per.items() if k == kind for v in vs]
        if values:
            out[kind] = float(np.mean(values))
        for (k, domain), vs in sorted(per.items()):
            if k == kind:
                out[f"{kind}/{domain}"] = float(np.mean(vs))
    return out


def codec_decoder(model, n_quantizers):
    """``clip -> audio`` through a model's codes at ``n_quantizers`` levels (anything with encode/decode_codes)."""
    from keras import ops

    def decode(ref):
        codes = model.encode_codes(ref[None, :, None], n_quantizers=n_quantizers)
        return ops.convert_to_numpy(model.decode_codes(codes))

    return decode


def opus_reference(clips, domains, sample_rate, kbps=6.0, cache_path=None):
    """Opus at ``kbps`` on the same clips, scored the same way (cached in ``cache_path`` as JSON)."""
    if cache_path and os.path.exists(cache_path):
        with open(cache_path) as f:
            cached = json.load(f)
        if cached.get("kbps") == kbps and cached.get("n_clips") == len(clips):
            return cached["scores"]
    from . import peers

    def decode(ref):
        return peers.opus_roundtrip(ref, sample_rate, kbps).audio

    scores = score_clips(decode, clips, domains, sample_rate)
    if cache_path:
        with open(cache_path, "w") as f:
            json.dump({"kbps": kbps, "n_clips": len(clips), "scores": scores}, f, indent=1)
    return scores


class DevCheck(keras.callbacks.Callback):
    """Every ``every_cpu_minutes`` of training CPU time
    (and at the end of training) score ``trainer.generator`` at ``n_quantizers`` levels on the fixed clips, add
    the numbers to the epoch's logs as ``dev/...`` and append a row to ``csv_path``.

    ``clock`` (anything with ``train_seconds()`` and ``exclude(seconds)``, e.g. ``training.callbacks.CPUClock``)
    gives the training CPU time and is told
    the check's own CPU time, which is not training.
    """

    def __init__(self, clips, domains, sample_rate, clock, csv_path=None, n_quantizers=8, every_cpu_minutes=5.0,
                 visqol=True):
        super().__init__()
        self.clips, self.domains, self.sample_rate = clips, list(domains), int(sample_rate)
        self.clock, self.csv_path = clock, csv_path
        self.n_quantizers, self.every = int(n_quantizers), 60.0 * float(every_cpu_minutes)
        self.visqol = visqol
        self.next_at = None

    def on_train_begin(self, logs=None):
        if self.next_at is None:
            self.next_at = self.clock.train_seconds() + self.every

    def on_epoch_end(self, epoch, logs=None):
        if self.clock.train_seconds() >= self.next_at or getattr(self.model, "stop_training", False):
            self.next_at = self.clock.train_seconds() + self.every
            scores = self.run()
            if logs is not None:
                logs.update({f"dev/{k}": v for k, v in scores.items()})

    def run(self):
        t0 = time.process_time()
        generator = self.model.generator
        scores = score_clips(codec_decoder(generator, self.n_quantizers), self.clips, self.domains,
                             self.sample_rate, visqol=self.visqol)
        self.clock.exclude(time.process_time() - t0)
        if self.csv_path:
            it = self.model.optimizer.iterations
            row = {"step": int(it.numpy() if hasattr(it, "numpy") else it),
                   "cpu_hours": round(self.clock.train_seconds() / 3600.0, 4), "levels": self.n_quantizers,
                   **{k: round(v, 4) for k, v in scores.items()}, "time": time.strftime("%Y-%m-%dT%H:%M:%S")}
            append_csv(self.csv_path, row)
        return scores


def append_csv(path, row):
    """Append ``row`` to a CSV file, widening its header when a new column appears (older rows keep blanks)."""
    import csv

    fields = list(row)
    if os.path.exists(path):
        with open(path) as f:
            rows = list(csv.DictReader(f))
        header = list(rows[0].keys()) if rows else []
        if not header:
            with open(path) as f:
                header = next(csv.reader(f), [])
        fields = header + [k for k in row if k not in header]
        if fields != header:
            with open(path, "w", newline="") as f:
                w = csv.DictWriter(f, fields)
                w.writeheader()
                w.writerows(rows)
    new = not os.path.exists(path)
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fields)
        if new:
            w.writeheader()
        w.writerow(row)
