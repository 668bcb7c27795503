"""Training batches for ``model.fit``: :class:`AudioDataset` (a ``keras.utils.PyDataset``, both Keras backends)
and :func:`as_tf_dataset` (the same batches as a ``tf.data.Dataset``, for ``tf.distribute``; TensorFlow is imported
lazily). Batch ``i`` is a pure function of ``(seed, i)``, balanced across the domains present.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np

from .excerpts import AudioCache, ExcerptSampler
from .manifest import require_items

__all__ = ["ArrayDataset", "AudioDataset", "as_tf_dataset"]


def _domain_slots(domains: Sequence[str], batch_size: int, offset: int) -> list[str]:
    """Equal shares per domain; the remainder rotates with ``offset`` so that over batches shares stay equal."""
    k = len(domains)
    slots = []
    for j in range(batch_size):
        slots.append(domains[(j + offset) % k])
    return sorted(slots, key=lambda d: domains.index(d))


class AudioDataset(keras.utils.PyDataset):
    """Infinite-style random excerpt batches for ``model.fit`` (both Keras backends).

    ``items``: anything :func:`load_items` accepts (manifest, folder, pack, list of items).
    Each batch is float32 ``(batch_size, excerpt_samples, 1)`` (or ``(x, x)`` with ``return_targets``), with equal
    shares of every domain present (or of ``domain_weights`` if given). Batch ``i`` of epoch ``e`` is a pure function
    of ``(seed, e * steps_per_epoch + i)``, so results do not depend on worker scheduling.

    ``workers``/``use_multiprocessing``/``max_queue_size`` go to ``PyDataset`` (threads share the RAM cache; use
    threads). ``preload=True`` decodes every file into the cache up front (parallel)."""

    def __init__(self, items, sample_rate: int, excerpt_samples: int | None = None, batch_size: int = 16,
                 steps_per_epoch: int = 1000, seed: int = 0, split: str | Sequence[str] | None = "train",
                 domains: Sequence[str] | None = None, domain_weights: dict | None = None,
                 hop_length: int | None = None, excerpt_seconds: float = 0.38, target_lufs: float | None = -24.0,
                 silence_lufs: float = -40.0, polarity_flip: float = 0.5, weighting: str = "duration",
                 full_band_weight: float = 1.0, cache: AudioCache | bool = True, cache_dtype: str = "int16",
                 preload: bool = False, preload_workers: int | None = None, return_targets: bool = False,
                 max_tries: int = 16, workers: int = 1, use_multiprocessing: bool = False, max_queue_size: int = 10,
                 progress: bool = False, silence: float = 0.0):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        items = require_items(items, split=split, domains=domains, what="audio items")
        if excerpt_samples is None:
            excerpt_samples = int(round(excerpt_seconds * sample_rate))
            if hop_length:
                excerpt_samples = max(hop_length, excerpt_samples // hop_length * hop_length)
        elif hop_length and excerpt_samples % hop_length:
            raise ValueError(f"excerpt_samples={excerpt_samples} is not a multiple of hop_length={hop_length}")
        self.sample_rate = int(sample_rate)
        self.excerpt_samples = int(excerpt_samples)
        self.batch_size = int(batch_size)
        self.steps_per_epoch = int(steps_per_epoch)
        self.seed = int(seed)
        self.return_targets = bool(return_targets)
        self.epoch = 0
        self.sampler = ExcerptSampler(items, sample_rate, self.excerpt_samples, target_lufs=target_lufs,
                                      silence_lufs=silence_lufs, polarity_flip=polarity_flip, weighting=weighting,
                                      full_band_weight=full_band_weight, cache=cache, cache_dtype=cache_dtype,
                                      max_tries=max_tries, silence=silence)
        self.items = self.sampler.items
        self.domains = self.sampler.domains
        self.domain_weights = None
        if domain_weights:
            w = np.array([float(domain_weights.get(d, 0.0)) for d in self.domains])
            if w.sum() <= 0:
                raise ValueError("domain_weights give zero weight to every present domain")
            self.domain_weights = w / w.sum()
        if preload and self.sampler.cache is not None:
            self.sampler.cache.preload([it.path for it in self.items], workers=preload_workers, progress=progress)

    @property
    def cache(self) -> AudioCache | None:
        return self.sampler.cache

    def __len__(self) -> int:
        return self.steps_per_epoch

    def slots(self, index: int) -> list[str]:
        """The domain of each row of batch ``index`` (global index)."""
        if self.domain_weights is None:
            return _domain_slots(self.domains, self.batch_size, index * self.batch_size)
        counts = np.floor(self.domain_weights * self.batch_size).astype(int)
        rest = self.batch_size - counts.sum()
        order = np.argsort(-(self.domain_weights * self.batch_size - counts) + 1e-9 * np.arange(len(counts)))
        for j in range(rest):
            counts[order[(j + index) % len(order)]] += 1
        return [d for d, c in zip(self.domains, counts) for _ in range(c)]

    def get_batch(self, index: int, return_info: bool = False):
        """Batch for a global index (deterministic). ``return_info`` adds a list of per-row dicts."""
        rng = np.random.default_rng([self.seed, int(index)])
        slots = self.slots(int(index))
        out = np.empty((self.batch_size, self.excerpt_samples, 1), dtype=np.float32)
        infos = []
        for j, dom in enumerate(slots):
            x, info = self.sampler.sample(dom, rng, return_info=True)
            out[j, :, 0] = x
            infos.append(info)
        if return_info:
            return out, infos
        return out

    def __getitem__(self, idx: int):
        if idx >= self.steps_per_epoch:
            raise IndexError(idx)
        x = self.get_batch(self.epoch * self.steps_per_epoch + idx)
        return (x, x) if self.return_targets else x

    def on_epoch_end(self):
        self.epoch += 1


class ArrayDataset(keras.utils.PyDataset):
    """Fixed arrays (a validation set) as batches of ``batch_size`` rows, ``(x, x)`` with ``return_targets``."""

    def __init__(self, audio, batch_size, return_targets):
        super().__init__()
        self.audio, self.batch_size, self.return_targets = audio, int(batch_size), return_targets

    def __len__(self):
        return int(math.ceil(self.audio.shape[0] / self.batch_size))

    def __getitem__(self, idx):
        x = self.audio[idx * self.batch_size:(idx + 1) * self.batch_size]
        return (x, x) if self.return_targets else x


def as_tf_dataset(dataset: AudioDataset, steps: int | None = None, start: int = 0, num_parallel_calls=None,
                  prefetch=None, return_targets: bool | None = None, deterministic: bool = True):
    """Wrap an :class:`AudioDataset` as a ``tf.data.Dataset`` of global batches (for ``tf.distribute``).

    Batch ``k`` of the result equals ``dataset.get_batch(start + k)``; ``steps=None`` makes it infinite (use
    ``steps_per_epoch`` in ``fit``). Batches are built in parallel threads (``num_parallel_calls``, default AUTOTUNE)
    and prefetched."""
    import tensorflow as tf

    auto = tf.data.AUTOTUNE
    ret = dataset.return_targets if return_targets is None else return_targets
    shape = (dataset.batch_size, dataset.excerpt_samples, 1)
    if steps is None:
        idx = tf.data.Dataset.counter(start=start, dtype=tf.int64)
    else:
        idx = tf.data.Dataset.range(start, start + int(steps))

    def _py(i):
        return dataset.get_batch(int(i))

    def _map(i):
        x = tf.numpy_function(_py, [i], tf.float32, stateful=False)
        x = tf.ensure_shape(x, shape)
        return (x, x) if ret else x

    ds = idx.map(_map, num_parallel_calls=num_parallel_calls or auto, deterministic=deterministic)
    return ds.prefetch(prefetch or auto)
