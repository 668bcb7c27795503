"""Excerpt sampling: decoding (mono, at the model rate), loudness normalization, a RAM cache, and the seeded sampler
behind the training batches and the validation set. No Keras: the sampler is numpy-based and serves both backends.

Each excerpt is: decoded (soundfile: WAV, FLAC, Ogg Vorbis/Opus, ...), mixed to mono and resampled to the model rate
(``runtime.audio_io.to_mono`` / ``resample``, the package's one audio layer), cut at a random position (zero-padded
if the file is shorter), loudness-normalized to -24 LUFS (``runtime.audio_io``'s ITU-R BS.1770 meter, which agrees
with pyloudnorm; excerpts shorter than 0.5 s are zero-padded to 0.5 s for the measurement only, as DAC's audiotools
does), rejected and re-drawn when quieter than ``silence_lufs``, and polarity-flipped with probability 0.5.

With ``silence`` > 0, that share of excerpts gets a span of digital silence (zeros; a quarter of them the whole
excerpt, the others a random start and length). Rejecting quiet excerpts means a model otherwise never sees exact
zeros, and a codec meets them at the start and end of most files: measured on ``fast_24khz`` before this existed,
all-zero input decoded to noise at -22 dB.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import soundfile as sf

from ...runtime import audio_io
from .manifest import DOMAINS, AudioItem

__all__ = [
    "decode_audio",
    "measure_loudness",
    "normalize_loudness",
    "AudioCache",
    "ExcerptSampler",
]


def decode_audio(path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True,
                 start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """Decode with soundfile; optional [start, start+frames) at the file's own rate; mono mix; resample.

    Returns ``(audio, rate)``: ``audio`` is float32 ``(T,)`` when ``mono`` else channels-first ``(C, T)`` (the
    package's layout, :mod:`ml_audio_encoder.runtime.audio_io`)."""
    data, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True, start=start, frames=frames)
    audio = data.T
    if mono:
        audio = audio_io.to_mono(audio)
    if sample_rate is not None and sr != sample_rate:
        audio = audio_io.resample(audio, sr, sample_rate)
        sr = int(sample_rate)
    return np.ascontiguousarray(audio, dtype=np.float32), int(sr)


def measure_loudness(audio: np.ndarray, sample_rate: int, min_duration_s: float = 0.5) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770, :func:`ml_audio_encoder.runtime.audio_io.integrated_loudness`) of
    mono audio. Signals shorter than ``min_duration_s`` are zero-padded to it for the measurement (BS.1770 needs at
    least one 0.4 s block), as DAC's audiotools does. Returns ``-inf`` for digital silence or non-finite audio."""
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    need = int(math.ceil(min_duration_s * sample_rate))
    if x.shape[0] < need:
        x = np.pad(x, (0, need - x.shape[0]))
    if not np.any(x) or not np.all(np.isfinite(x)):
        return float("-inf")
    return audio_io.integrated_loudness(x, int(sample_rate))


def normalize_loudness(audio: np.ndarray, sample_rate: int, target_lufs: float = -24.0,
                       loudness: float | None = None, max_gain_db: float = 60.0,
                       peak_limit: float | None = 1.0) -> tuple[np.ndarray, float]:
    """Scale to ``target_lufs``. Returns ``(scaled, measured_loudness)``. Silence is returned unchanged.
    ``peak_limit``: if the scaled peak would exceed it, the gain is lowered so that it does not (no clipping)."""
    if loudness is None:
        loudness = measure_loudness(audio, sample_rate)
    if not math.isfinite(loudness):
        return np.asarray(audio, dtype=np.float32), loudness
    gain = 10.0 ** (min(target_lufs - loudness, max_gain_db) / 20.0)
    if peak_limit is not None:
        peak = float(np.max(np.abs(audio))) if np.size(audio) else 0.0
        if peak * gain > peak_limit and peak > 0:
            gain = peak_limit / peak
    return (np.asarray(audio, dtype=np.float32) * np.float32(gain)).astype(np.float32, copy=False), loudness


class AudioCache:
    """Decodes each file once (mono, at ``sample_rate``) and keeps it in memory as int16 (default) or float32.

    Thread-safe; a file is decoded by one thread while others wanting it wait. Files that fail to decode or are
    digitally silent (peak below ``silence_peak``) are remembered as ``None``."""

    def __init__(self, sample_rate: int, dtype: str = "int16", silence_peak: float = 1e-4):
        if dtype not in ("int16", "float32"):
            raise ValueError("dtype must be 'int16' or 'float32'")
        self.sample_rate = int(sample_rate)
        self.dtype = dtype
        self.silence_peak = float(silence_peak)
        self._data: dict[str, np.ndarray | None] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()
        self.errors: dict[str, str] = {}

    def __contains__(self, path: str) -> bool:
        return path in self._data

    def __len__(self) -> int:
        return len(self._data)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._data.values() if a is not None)

    def _encode(self, x: np.ndarray) -> np.ndarray | None:
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        if peak < self.silence_peak:
            return None
        if peak > 1.0:  # resampling overshoot or hot masters; the level is normalized later anyway
            x = x / peak
        if self.dtype == "int16":
            return np.round(x * 32767.0).astype(np.int16)
        return x.astype(np.float32, copy=False)

    def get(self, path: str) -> np.ndarray | None:
        """Mono audio at the cache rate (int16 or float32 array), or None for silent/unreadable files."""
        if path in self._data:
            return self._data[path]
        with self._lock:
            lock = self._locks.setdefault(path, threading.Lock())
        with lock:
            if path not in self._data:
                try:
                    x, _ = decode_audio(path, self.sample_rate)
                    self._data[path] = self._encode(x)
                except Exception as e:  # noqa: BLE001 - a bad file must not stop training
                    self.errors[path] = f"{type(e).__name__}: {e}"
                    self._data[path] = None
        return self._data[path]

    def preload(self, paths: Iterable[str], workers: int | None = None, progress: bool = False) -> None:
        """Decode many files in parallel threads (libsndfile and scipy release the GIL)."""
        paths = [p for p in dict.fromkeys(paths) if p not in self._data]
        if not paths:
            return
        workers = workers or min(32, os.cpu_count() or 1)
        bar = None
        if progress:
            try:
                from tqdm import tqdm

                bar = tqdm(total=len(paths), desc="decode", unit="file")
            except ImportError:
                pass
        with ThreadPoolExecutor(max_workers=workers) as ex:
            for _ in ex.map(self.get, paths):
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()

    @staticmethod
    def as_float(x: np.ndarray) -> np.ndarray:
        if x.dtype == np.int16:
            return x.astype(np.float32) * np.float32(1.0 / 32767.0)
        return np.asarray(x, dtype=np.float32)


def _pad_or_place(x: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Zero-pad a short signal to ``n`` at a random offset; returns (padded, offset of the signal)."""
    off = int(rng.integers(0, n - x.shape[0] + 1))
    out = np.zeros(n, dtype=np.float32)
    out[off:off + x.shape[0]] = x
    return out, -off


class ExcerptSampler:
    """Draws loudness-normalized random excerpts from items, optionally from a RAM cache.

    Sampling weights within a domain: ``weighting="duration"`` (uniform over audio time), ``"file"`` (uniform over
    files) or ``"source"`` (each source gets an equal share, by duration inside it); full-band items are up-weighted
    by ``full_band_weight`` (e.g. 2.0, so the model is not taught that everything stops at 8 kHz). Set
    ``full_band_weight=0`` to use full-band items only where a domain has any."""

    def __init__(self, items: Sequence[AudioItem], sample_rate: int, excerpt_samples: int,
                 target_lufs: float | None = -24.0, silence_lufs: float = -40.0, polarity_flip: float = 0.5,
                 weighting: str = "duration", full_band_weight: float = 1.0, cache: AudioCache | bool | None = True,
                 cache_dtype: str = "int16", max_tries: int = 16, peak_limit: float | None = 1.0,
                 silence: float = 0.0):
        if not items:
            raise ValueError("no audio items")
        if weighting not in ("duration", "file", "source"):
            raise ValueError("weighting must be 'duration', 'file' or 'source'")
        self.items = list(items)
        self.sample_rate = int(sample_rate)
        self.excerpt_samples = int(excerpt_samples)
        self.target_lufs = target_lufs
        self.silence_lufs = silence_lufs
        self.polarity_flip = float(polarity_flip)
        self.silence = float(silence)
        self.weighting = weighting
        self.full_band_weight = float(full_band_weight)
        self.max_tries = int(max_tries)
        self.peak_limit = peak_limit
        if cache is True:
            cache = AudioCache(self.sample_rate, dtype=cache_dtype)
        elif cache is False:
            cache = None
        if cache is not None and cache.sample_rate != self.sample_rate:
            raise ValueError("cache sample rate differs from the sampler's")
        self.cache = cache
        self._info: dict[str, tuple[int, int] | None] = {}
        self._dead: set[str] = set()
        self._lock = threading.Lock()
        self.domains = tuple(d for d in DOMAINS if any(it.domain == d for it in self.items)) + tuple(
            sorted({it.domain for it in self.items} - set(DOMAINS)))
        self._by_domain = {d: [i for i, it in enumerate(self.items) if it.domain == d] for d in self.domains}
        self._weights = {d: self._domain_weights(idx) for d, idx in self._by_domain.items()}

    # -- weights ---------------------------------------------------------------------------------------------
    def _duration(self, it: AudioItem) -> float:
        if math.isfinite(it.duration_s) and it.duration_s > 0:
            return it.duration_s
        info = self._file_info(it.path)
        return info[1] / info[0] if info else 0.0

    def _domain_weights(self, idx: list[int]) -> np.ndarray:
        items = [self.items[i] for i in idx]
        if self.weighting == "file":
            w = np.ones(len(items))
        else:
            w = np.array([max(self._duration(it), 1e-3) for it in items])
            if self.weighting == "source":
                totals: dict[str, float] = {}
                for it, wi in zip(items, w):
                    totals[it.source] = totals.get(it.source, 0.0) + wi
                w = np.array([wi / totals[it.source] for it, wi in zip(items, w)])
        fb = np.array([it.full_band for it in items])
        if self.full_band_weight != 1.0:
            if self.full_band_weight == 0 and fb.any():
                w = w * fb
            elif self.full_band_weight > 0:
                w = w * np.where(fb, self.full_band_weight, 1.0)
        s = w.sum()
        return w / s if s > 0 else np.full(len(items), 1.0 / len(items))

    def _mark_dead(self, item_index: int) -> None:
        # The draw weights stay as they were: re-weighting here made a batch depend on which batches came before it
        # (and, with tf.data's parallel calls, on thread timing), so get_batch(index) was no longer a function of
        # the index. A dead file drawn again is skipped at once by _raw_excerpt, from the same per-batch RNG.
        with self._lock:
            self._dead.add(self.items[item_index].path)

    # -- reading ---------------------------------------------------------------------------------------------
    def _file_info(self, path: str):
        if path not in self._info:
            try:
                info = sf.info(path)
                self._info[path] = (int(info.samplerate), int(info.frames))
            except Exception:  # noqa: BLE001
                self._info[path] = None
        return self._info[path]

    def _raw_excerpt(self, item_index: int, rng: np.random.Generator) -> tuple[np.ndarray, int] | None:
        """A random excerpt (float32, excerpt_samples) before loudness normalization, and its start sample."""
        it = self.items[item_index]
        if it.path in self._dead:
            return None
        n = self.excerpt_samples
        if self.cache is not None:
            x = self.cache.get(it.path)
            if x is None:
                self._mark_dead(item_index)
                return None
            if x.shape[0] >= n:
                start = int(rng.integers(0, x.shape[0] - n + 1))
                return AudioCache.as_float(x[start:start + n]), start
            return _pad_or_place(AudioCache.as_float(x), n, rng)
        info = self._file_info(it.path)
        if info is None or info[1] == 0:
            self._mark_dead(item_index)
            return None
        sr, frames = info
        need = int(math.ceil(n * sr / self.sample_rate)) + (0 if sr == self.sample_rate else 64)
        try:
            if frames > need:
                start = int(rng.integers(0, frames - need + 1))
                x, _ = decode_audio(it.path, self.sample_rate, start=start, frames=need)
                x = x[:n]
                start = int(round(start * self.sample_rate / sr))
            else:
                x, _ = decode_audio(it.path, self.sample_rate)
                start = 0
        except Exception:  # noqa: BLE001
            self._mark_dead(item_index)
            return None
        if x.shape[0] >= n:
            return x[:n], start
        return _pad_or_place(x, n, rng)

    def sample(self, domain: str, rng: np.random.Generator, return_info: bool = False):
        """One processed excerpt (float32, (excerpt_samples,)) from ``domain``; with ``return_info`` also a dict
        (path, domain, start, loudness, flipped, tries)."""
        idx = self._by_domain[domain]
        best = None
        item_index = None
        for t in range(self.max_tries):
            if t % 4 == 0 or item_index is None:  # a few positions per file, then another file
                item_index = idx[int(rng.choice(len(idx), p=self._weights[domain]))]
            got = self._raw_excerpt(item_index, rng)
            if got is None:
                item_index = None
                continue
            x, start = got
            loud = measure_loudness(x, self.sample_rate)
            if best is None or loud > best[2]:
                best = (x, start, loud, item_index)
            if loud >= self.silence_lufs:
                break
        if best is None:
            raise RuntimeError(f"no readable audio in domain {domain!r}")
        x, start, loud, item_index = best
        if self.target_lufs is not None:
            x, _ = normalize_loudness(x, self.sample_rate, self.target_lufs, loudness=loud,
                                      peak_limit=self.peak_limit)
        flipped = bool(rng.random() < self.polarity_flip)
        if flipped:
            x = -x
        silent = (0, 0)
        if self.silence > 0 and rng.random() < self.silence:  # no draw at all when off: the batches stay as they were
            n = x.shape[0]
            # a quarter of them silence the whole excerpt: a model's receptive field (0.39 s for fast_24khz) is
            # about an excerpt, and spans inside one did not teach it what all-zero input decodes to
            length = n if rng.random() < 0.25 else int(rng.integers(1, n + 1))
            begin = int(rng.integers(0, n - length + 1))
            x = x.copy()
            x[begin:begin + length] = 0.0
            silent = (begin, begin + length)
        if return_info:
            return x, dict(path=self.items[item_index].path, domain=domain, start=start, loudness=loud,
                           flipped=flipped, tries=t + 1, silent=silent)
        return x
