"""Codebook statistics of a residual vector quantizer, from its integer codes.

Per RVQ level: entropy in bits, entropy / log2(codebook_size), perplexity (2**entropy_bits = exp(entropy in nats):
the number of equally likely codes with the same entropy), utilization (share of the codebook used at least once)
and dead codes. For the whole quantizer: bitrate efficiency = sum of the level entropies / bits spent, which is
what DAC's `scripts/compute_entropy.py` reports as the "effective percentage". Also: mel distance as a function of
the number of levels decoded, and matplotlib (Agg) plots of all of it.

Codes are numpy-like integer arrays `(n_q, frames)`, `(batch, n_q, frames)` or `(channels, n_q, frames)`
(an `MLAEFile.codes`), or lists of those (e.g. one per file; concatenated along time).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ml_audio_encoder.eval.metrics import mel_distance
from ml_audio_encoder.protocol import bitrate
from ml_audio_encoder.runtime.audio_io import resample, to_mono


def _as_level_major(codes) -> np.ndarray:
    """Any accepted codes input -> int64 `(n_q, total_frames)`."""
    if isinstance(codes, (list, tuple)):
        parts = [_as_level_major(c) for c in codes]
        if not parts:
            raise ValueError("empty list of codes")
        n_q = {p.shape[0] for p in parts}
        if len(n_q) != 1:
            # mixed depths (e.g. files coded at different n_quantizers): keep the levels all of them have
            k = min(n_q)
            parts = [p[:k] for p in parts]
        return np.concatenate(parts, axis=1)
    arr = np.asarray(codes)
    if arr.ndim == 2:
        return arr.astype(np.int64)
    if arr.ndim == 3:  # (batch|channels, n_q, frames) -> (n_q, batch*frames)
        return np.transpose(arr, (1, 0, 2)).reshape(arr.shape[1], -1).astype(np.int64)
    raise ValueError(f"codes must be (n_q, frames) or (batch, n_q, frames), got shape {arr.shape}")


def code_counts(codes, codebook_size: int) -> np.ndarray:
    """Histogram of code usage, `(n_q, codebook_size)` int64."""
    c = _as_level_major(codes)
    if c.size and (c.min() < 0 or c.max() >= codebook_size):
        raise ValueError(f"codes outside [0, {codebook_size}) (min {c.min()}, max {c.max()})")
    return np.stack([np.bincount(level, minlength=codebook_size) for level in c]) if len(c) else np.zeros(
        (0, codebook_size), np.int64
    )


def entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy in bits of each row of a count matrix (0 log 0 = 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(axis=-1, keepdims=True)
    p = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=-1)


@dataclass
class CodebookStats:
    codebook_size: int
    n_frames: int  # frames counted per level
    counts: np.ndarray  # (n_q, codebook_size)
    entropy_bits: np.ndarray  # (n_q,)
    normalized_entropy: np.ndarray  # entropy / log2(codebook_size)
    perplexity: np.ndarray  # 2 ** entropy_bits
    utilization: np.ndarray  # share of codes used at least once
    dead_codes: np.ndarray  # codes never used, per level
    bits_per_code: int  # ceil(log2(codebook_size)): what the file spends
    efficiency: float  # sum(entropy_bits) / (n_q * log2(codebook_size)), DAC's compute_entropy
    extra: dict = field(default_factory=dict)

    @property
    def n_q(self) -> int:
        return int(self.counts.shape[0])

    @property
    def entropy_per_frame_bits(self) -> float:
        return float(self.entropy_bits.sum())

    def entropy_kbps(self, frame_rate: float) -> float:
        """Bitrate an ideal entropy coder of the (independent) levels would need, in kbps."""
        return self.entropy_per_frame_bits * frame_rate / 1000.0

    def rows(self) -> list[dict]:
        """One dict per level (for CSV / DataFrame / Markdown)."""
        return [
            {
                "level": i + 1,
                "entropy_bits": float(self.entropy_bits[i]),
                "normalized_entropy": float(self.normalized_entropy[i]),
                "perplexity": float(self.perplexity[i]),
                "utilization": float(self.utilization[i]),
                "dead_codes": int(self.dead_codes[i]),
            }
            for i in range(self.n_q)
        ]

    def to_markdown(self) -> str:
        head = (
            f"Codebook size {self.codebook_size} (log2 = {math.log2(self.codebook_size):.2f} bits), "
            f"{self.n_frames} frames per level, bitrate efficiency {100 * self.efficiency:.1f}%\n\n"
        )
        lines = ["| level | entropy (bits) | entropy / log2(K) | perplexity | utilization | dead codes |",
                 "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
        for r in self.rows():
            lines.append(
                f"| {r['level']} | {r['entropy_bits']:.2f} | {r['normalized_entropy']:.3f} | {r['perplexity']:.1f} "
                f"| {100 * r['utilization']:.1f}% | {r['dead_codes']} |"
            )
        return head + "\n".join(lines) + "\n"


def codebook_stats(codes, codebook_size: int) -> CodebookStats:
    """All per-level statistics and the overall bitrate efficiency of `codes` (see module docstring)."""
    codebook_size = int(codebook_size)
    counts = code_counts(codes, codebook_size)
    ent = entropy_bits(counts)
    max_bits = math.log2(codebook_size)
    used = (counts > 0).sum(axis=1)
    n_q = counts.shape[0]
    return CodebookStats(
        codebook_size=codebook_size,
        n_frames=int(counts[0].sum()) if n_q else 0,
        counts=counts,
        entropy_bits=ent,
        normalized_entropy=ent / max_bits if max_bits > 0 else np.zeros_like(ent),
        perplexity=np.power(2.0, ent),
        utilization=used / codebook_size,
        dead_codes=(codebook_size - used).astype(np.int64),
        bits_per_code=max(1, (codebook_size - 1).bit_length()),
        efficiency=float(ent.sum() / (n_q * max_bits)) if n_q and max_bits > 0 else float("nan"),
    )


def bitrate_efficiency(codes, codebook_size: int) -> float:
    """sum of per-level entropies / bits spent (n_q * log2(codebook_size)), as DAC's compute_entropy."""
    return codebook_stats(codes, codebook_size).efficiency


# ------------------------------------------------------------------------------------------------------------------
# with a model
# ------------------------------------------------------------------------------------------------------------------
def _to_batch(audio) -> np.ndarray:
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim in (1, 2):  # mono, or (channels, samples) mixed to mono
        return to_mono(x)[None, :, None]
    if x.ndim == 3:
        return x
    raise ValueError(f"audio must be 1-D, (channels, samples) or (batch, samples, 1); got {x.shape}")


def _model_input(model, audio, sample_rate):
    x = _to_batch(audio)
    if sample_rate is not None and int(sample_rate) != int(model.sample_rate):
        x = np.stack([resample(b[:, 0], sample_rate, model.sample_rate) for b in x])[..., None]
    return x


def encode_codes(model, audio, sample_rate: int | None = None, n_quantizers: int | None = None) -> np.ndarray:
    """Codes `(n_q, frames)` of one mono signal (resampled to the model's rate when `sample_rate` differs)."""
    import keras

    x = _model_input(model, audio, sample_rate)
    codes = model.encode(x, n_quantizers=n_quantizers, training=False)[1]
    return np.asarray(keras.ops.convert_to_numpy(codes))[0]


def collect_codes(model, audios, sample_rate: int | None = None, n_quantizers: int | None = None) -> list[np.ndarray]:
    """`encode_codes` over an iterable of signals; feed the list to `codebook_stats`."""
    return [encode_codes(model, a, sample_rate, n_quantizers) for a in audios]


def mel_distance_vs_levels(model, audio, sample_rate: int | None = None, levels=None) -> list[dict]:
    """How much each added RVQ level lowers the mel distance.

    Encodes once with all levels, then decodes the first n levels (RVQ codes of n levels are the prefix of the
    full codes) for each n in `levels` (default 1..n_codebooks). The mel distance is the benchmark's
    (`eval.metrics.mel_distance`, DAC's definition) at the model's rate. Returns
    [{"n_quantizers", "kbps", "mel_distance"}, ...].
    """
    import keras

    x = _model_input(model, audio, sample_rate)
    n_samples = x.shape[1]
    codes = model.encode(x, training=False)[1]
    codes = np.asarray(keras.ops.convert_to_numpy(codes))
    levels = list(range(1, codes.shape[1] + 1)) if levels is None else [int(n) for n in levels]
    out = []
    for n in levels:
        y = model.decode_codes(codes[:, :n, :]) if hasattr(model, "decode_codes") else model.decode(
            model.quantizer.from_codes(codes[:, :n, :])[0]
        )
        y = np.asarray(keras.ops.convert_to_numpy(y))
        dists = [mel_distance(x[b, :, 0], y[b, :n_samples, 0], model.sample_rate) for b in range(x.shape[0])]
        out.append(
            {
                "n_quantizers": n,
                "kbps": bitrate(n, model.n_codebooks, model.codebook_size, model.sample_rate / model.hop_length)
                / 1000.0,
                "mel_distance": float(np.mean(dists)),
            }
        )
    return out


# ------------------------------------------------------------------------------------------------------------------
# plots (matplotlib, Agg backend; each returns the Figure and saves it when `path` is given)
# ------------------------------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return fig


def plot_code_usage(stats: CodebookStats, path=None, max_levels: int | None = None, sort: bool = True):
    """Code-usage histograms, one panel per level (codes sorted by frequency when `sort`)."""
    plt = _plt()
    n = stats.n_q if max_levels is None else min(stats.n_q, max_levels)
    cols = min(4, max(1, n))
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False)
    for i in range(rows * cols):
        ax = axes[i // cols][i % cols]
        if i >= n:
            ax.axis("off")
            continue
        c = stats.counts[i].astype(float)
        p = c / max(c.sum(), 1.0)
        if sort:
            p = np.sort(p)[::-1]
        ax.bar(np.arange(len(p)), p, width=1.0, color="tab:blue")
        ax.set_title(f"level {i + 1}: ppl {stats.perplexity[i]:.0f}, used {100 * stats.utilization[i]:.0f}%",
                     fontsize=8)  # fmt: skip
        ax.set_xlabel("code rank" if sort else "code", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"Code usage per RVQ level (K={stats.codebook_size})", fontsize=10)
    fig.tight_layout()
    return _finish(fig, path)


def plot_perplexity(stats: CodebookStats, path=None):
    """Perplexity per level against the codebook size, with utilization on a second axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    lv = np.arange(1, stats.n_q + 1)
    ax.bar(lv, stats.perplexity, color="tab:blue", label="perplexity")
    ax.axhline(stats.codebook_size, color="gray", ls="--", lw=1, label=f"codebook size {stats.codebook_size}")
    ax.set_xlabel("RVQ level")
    ax.set_ylabel("perplexity (2^entropy)")
    ax2 = ax.twinx()
    ax2.plot(lv, 100 * stats.utilization, "o-", color="tab:orange", label="utilization %")
    ax2.set_ylabel("utilization (%)")
    ax2.set_ylim(0, 105)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="lower left")
    ax.set_title(f"Perplexity per level (bitrate efficiency {100 * stats.efficiency:.1f}%)")
    fig.tight_layout()
    return _finish(fig, path)


def plot_mel_vs_levels(results: list[dict], path=None, label: str | None = None, ax=None):
    """Mel distance against the number of RVQ levels decoded (output of `mel_distance_vs_levels`)."""
    plt = _plt()
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 3.5))
    n = [r["n_quantizers"] for r in results]
    ax.plot(n, [r["mel_distance"] for r in results], "o-", label=label)
    ax.set_xlabel("RVQ levels decoded")
    ax.set_ylabel("mel distance ↓")
    ax.set_xticks(n)
    ax.grid(alpha=0.3)
    if label:
        ax.legend(fontsize=8)
    fig = fig or ax.figure
    fig.tight_layout()
    return _finish(fig, path)
