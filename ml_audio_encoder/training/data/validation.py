"""The validation set: fixed, seeded excerpts from the development split (the same array on every machine)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .excerpts import AudioCache, ExcerptSampler, measure_loudness, normalize_loudness
from .manifest import require_items

if TYPE_CHECKING:
    import keras

__all__ = ["ValidationSet", "build_validation_set"]


@dataclass
class ValidationSet:
    """Fixed excerpts: ``audio`` float32 (N, excerpt_samples, 1) and per-row labels."""

    audio: np.ndarray
    domains: list
    paths: list
    starts: list
    speakers: list
    genders: list
    sample_rate: int

    def __len__(self) -> int:
        return int(self.audio.shape[0])

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        for i in range(0, len(self), batch_size):
            yield self.audio[i:i + batch_size]

    def as_py_dataset(self, batch_size: int, return_targets: bool = False) -> keras.utils.PyDataset:
        """The excerpts as a ``keras.utils.PyDataset`` of ``batch_size`` rows (Keras loads here)."""
        from .pipeline import ArrayDataset

        return ArrayDataset(self.audio, batch_size, return_targets)


def build_validation_set(items, sample_rate: int, excerpt_samples: int, n_per_domain: int = 16, seed: int = 0,
                         split: str | Sequence[str] | None = "dev", domains: Sequence[str] | None = None,
                         target_lufs: float | None = -24.0, silence_lufs: float = -40.0,
                         cache: AudioCache | None = None, max_tries: int = 16) -> ValidationSet:
    """Deterministic excerpts from the dev split: ``n_per_domain`` per domain, files chosen round-robin over sources
    (sorted) and, inside a source, by a seeded draw; positions seeded; silent excerpts re-drawn; no polarity flip.
    The same inputs always give the same array (independent of item order). Files are decoded whole at
    ``sample_rate`` into ``cache`` (default: a new float32 :class:`AudioCache`; an int16 cache gives the same
    excerpts up to 1 LSB)."""
    if cache is None:
        cache = AudioCache(sample_rate, dtype="float32")
    items = require_items(items, split=split, domains=domains, what="items for the validation set")
    items = sorted(items, key=lambda it: it.path)
    sampler = ExcerptSampler(items, sample_rate, excerpt_samples, target_lufs=target_lufs, silence_lufs=silence_lufs,
                             polarity_flip=0.0, weighting="file", cache=cache,
                             max_tries=max_tries)
    rows, doms, paths, starts, spks, gens = [], [], [], [], [], []
    for d_i, dom in enumerate(sampler.domains):
        by_src: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            if it.domain == dom:
                by_src.setdefault(it.source, []).append(i)
        sources = sorted(by_src)
        rng = np.random.default_rng([seed, d_i, 7919])
        orders = {s: list(rng.permutation(by_src[s])) for s in sources}
        got = 0
        attempt = 0
        while got < n_per_domain and attempt < n_per_domain * max_tries:
            src = sources[attempt % len(sources)]
            order = orders[src]
            i = int(order[(attempt // len(sources)) % len(order)])
            attempt += 1
            best = None
            for _ in range(max_tries):
                r = sampler._raw_excerpt(i, rng)
                if r is None:
                    break
                loud = measure_loudness(r[0], sample_rate)
                if best is None or loud > best[2]:
                    best = (r[0], r[1], loud)
                if loud >= silence_lufs:
                    break
            if best is None or best[2] < silence_lufs:
                continue
            x = best[0]
            if target_lufs is not None:
                x, _ = normalize_loudness(x, sample_rate, target_lufs, loudness=best[2])
            it = items[i]
            rows.append(x)
            doms.append(dom)
            paths.append(it.path)
            starts.append(best[1])
            spks.append(it.speaker)
            gens.append(it.gender)
            got += 1
    if not rows:
        raise ValueError("no non-silent validation excerpts")
    audio = np.stack(rows)[:, :, None].astype(np.float32)
    return ValidationSet(audio, doms, paths, starts, spks, gens, int(sample_rate))
