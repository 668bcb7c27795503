"""Training and evaluation data: manifests, decoding, excerpts, loudness, domain-balanced batches.

Library code only (no training loop). The sampler is numpy-based so it serves both Keras backends:

* :class:`AudioDataset` is a ``keras.utils.PyDataset``; pass it to ``model.fit`` under TensorFlow or JAX.
* :func:`as_tf_dataset` wraps the same sampler in a ``tf.data.Dataset`` (TensorFlow is imported lazily, so this
  module works on machines without TensorFlow).
* :func:`build_validation_set` gives fixed, seeded excerpts from the development split.

Sources are either a manifest CSV (columns ``path, domain, source, speaker, gender, language, duration_s,
sample_rate, channels, full_band, split``; only ``path`` is required, relative paths are relative to the CSV's
folder), a folder of audio files (domain from a ``speech``/``music``/``general`` path component, or given), or a
folder holding ``manifest.csv`` / ``pack_manifest.csv`` (a data pack made by ``train/make_pack.py``).

Each excerpt is: decoded (soundfile: WAV, FLAC, Ogg Vorbis/Opus, ...), mixed to mono, resampled to the model rate
(scipy polyphase), cut at a random position (zero-padded if the file is shorter), loudness-normalized to -24 LUFS
(pyloudnorm; excerpts shorter than 0.5 s are zero-padded to 0.5 s for the measurement only, as DAC's audiotools
does), rejected and re-drawn when quieter than ``silence_lufs``, and polarity-flipped with probability 0.5.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Iterable, Sequence

import keras
import numpy as np
import soundfile as sf

__all__ = [
    "DOMAINS",
    "AUDIO_EXTENSIONS",
    "iter_audio_files",
    "MANIFEST_COLUMNS",
    "AudioItem",
    "load_manifest",
    "write_manifest",
    "scan_folder",
    "load_items",
    "filter_items",
    "summarize_items",
    "stable_hash",
    "assign_splits",
    "decode_audio",
    "resample",
    "to_mono",
    "measure_loudness",
    "normalize_loudness",
    "AudioCache",
    "ExcerptSampler",
    "AudioDataset",
    "ValidationSet",
    "build_validation_set",
    "as_tf_dataset",
]

DOMAINS = ("speech", "music", "general")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".au", ".caf", ".w64", ".mp3")
MANIFEST_COLUMNS = (
    "path", "domain", "source", "speaker", "gender", "language",
    "duration_s", "sample_rate", "channels", "full_band", "split",
)
_DOMAIN_ALIASES = {
    "speech": "speech", "voice": "speech", "voices": "speech", "vocal": "speech",
    "music": "music", "songs": "music",
    "general": "general", "sound": "general", "sounds": "general", "effects": "general", "sfx": "general",
    "noise": "general", "environment": "general",
}
_PACK_MANIFESTS = ("pack_manifest.csv", "manifest.csv")


# ----------------------------------------------------------------------------------------------------------------
# Items and manifests
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AudioItem:
    """One audio file and its labels. ``path`` is absolute once loaded."""

    path: str
    domain: str = "general"
    source: str = ""
    speaker: str = ""
    gender: str = ""
    language: str = ""
    duration_s: float = float("nan")
    sample_rate: int = 0
    channels: int = 0
    full_band: bool = True
    split: str = "train"

    def to_row(self, relative_to: str | None = None) -> dict:
        row = asdict(self)
        if relative_to is not None:
            row["path"] = os.path.relpath(self.path, relative_to).replace(os.sep, "/")
        row["full_band"] = "true" if self.full_band else "false"
        row["duration_s"] = "" if not math.isfinite(self.duration_s) else f"{self.duration_s:.3f}"
        row["sample_rate"] = str(int(self.sample_rate)) if self.sample_rate else ""
        row["channels"] = str(int(self.channels)) if self.channels else ""
        return row


def _parse_bool(value, default=True) -> bool:
    if value is None:
        return default
    v = str(value).strip().lower()
    if v == "":
        return default
    if v in ("1", "true", "t", "yes", "y"):
        return True
    if v in ("0", "false", "f", "no", "n"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_float(value, default=float("nan")) -> float:
    try:
        return float(value) if value not in (None, "") else default
    except ValueError:
        return default


def _parse_int(value, default=0) -> int:
    try:
        return int(float(value)) if value not in (None, "") else default
    except ValueError:
        return default


def _norm_domain(value: str | None, default: str = "general") -> str:
    if not value:
        return default
    return _DOMAIN_ALIASES.get(str(value).strip().lower(), str(value).strip().lower())


def _norm_gender(value: str | None) -> str:
    v = (value or "").strip().upper()
    if v in ("F", "FEMALE", "W", "WOMAN"):
        return "F"
    if v in ("M", "MALE", "MAN"):
        return "M"
    return ""


def load_manifest(path: str | os.PathLike, split: str | Sequence[str] | None = None,
                  domains: Sequence[str] | None = None, full_band_only: bool = False) -> list[AudioItem]:
    """Read a manifest CSV. Relative paths are resolved against the CSV's folder.

    ``split`` / ``domains`` filter the rows (``split=None`` keeps all); ``full_band_only`` drops band-limited sources.
    """
    path = os.fspath(path)
    root = os.path.dirname(os.path.abspath(path))
    items = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise ValueError(f"{path}: a manifest needs a 'path' column (has {reader.fieldnames})")
        for row in reader:
            p = (row.get("path") or "").strip()
            if not p:
                continue
            if not os.path.isabs(p):
                p = os.path.normpath(os.path.join(root, p))
            items.append(AudioItem(
                path=p,
                domain=_norm_domain(row.get("domain")),
                source=(row.get("source") or "").strip(),
                speaker=(row.get("speaker") or "").strip(),
                gender=_norm_gender(row.get("gender")),
                language=(row.get("language") or "").strip(),
                duration_s=_parse_float(row.get("duration_s")),
                sample_rate=_parse_int(row.get("sample_rate")),
                channels=_parse_int(row.get("channels")),
                full_band=_parse_bool(row.get("full_band"), True),
                split=(row.get("split") or "train").strip() or "train",
            ))
    return filter_items(items, split=split, domains=domains, full_band_only=full_band_only)


def write_manifest(items: Iterable[AudioItem], path: str | os.PathLike, relative: bool = True,
                   extra_columns: Sequence[str] = ()) -> None:
    """Write items as a manifest CSV (paths relative to the CSV's folder when ``relative``); atomic."""
    path = os.fspath(path)
    root = os.path.dirname(os.path.abspath(path))
    cols = list(MANIFEST_COLUMNS) + [c for c in extra_columns if c not in MANIFEST_COLUMNS]
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for it in items:
            w.writerow(it.to_row(root if relative else None) if isinstance(it, AudioItem) else it)
    os.replace(tmp, path)


def iter_audio_files(folder, extensions=AUDIO_EXTENSIONS):
    """Paths of the audio files under ``folder``, recursively, in a deterministic order (sorted per folder)."""
    extensions = tuple(extensions)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(extensions):
                yield os.path.join(dirpath, name)


def scan_folder(folder: str | os.PathLike, domain: str | None = None, split: str = "train",
                probe: bool = False) -> list[AudioItem]:
    """All audio files under ``folder`` (sorted). The domain is ``domain`` when given, else the first path component
    (below ``folder``) naming a domain (``speech``/``music``/``general`` or aliases such as ``sfx``), else
    ``general``. The source is the first sub-folder name. With ``probe`` the header is read for duration/rate."""
    folder = os.path.abspath(os.fspath(folder))
    items = []
    for full in iter_audio_files(folder):
        parts = os.path.relpath(full, folder).split(os.sep)
        dom = domain
        if dom is None:
            for comp in parts[:-1]:
                if comp.lower() in _DOMAIN_ALIASES:
                    dom = _DOMAIN_ALIASES[comp.lower()]
                    break
        kw = {}
        if probe:
            try:
                info = sf.info(full)
                kw = dict(duration_s=info.frames / info.samplerate, sample_rate=info.samplerate,
                          channels=info.channels)
            except Exception:  # noqa: BLE001 - unreadable files are skipped
                continue
        items.append(AudioItem(path=full, domain=_norm_domain(dom), source=parts[0] if len(parts) > 1 else "",
                               split=split, **kw))
    return items


def load_items(source, split: str | Sequence[str] | None = None, domains: Sequence[str] | None = None,
               domain: str | None = None, full_band_only: bool = False) -> list[AudioItem]:
    """Items from a manifest CSV, a pack folder (holding ``pack_manifest.csv`` or ``manifest.csv``), a plain folder of
    audio, a list of such sources, or a list of :class:`AudioItem`. ``split`` applies to manifests only (a plain
    folder has no split: all its files are used)."""
    if isinstance(source, (list, tuple)):
        if all(isinstance(s, AudioItem) for s in source):
            return filter_items(list(source), split=split, domains=domains, full_band_only=full_band_only)
        out = []
        for s in source:
            out.extend(load_items(s, split=split, domains=domains, domain=domain, full_band_only=full_band_only))
        return out
    source = os.fspath(source)
    if os.path.isfile(source):
        items = load_manifest(source, split=split, domains=domains, full_band_only=full_band_only)
    elif os.path.isdir(source):
        for name in _PACK_MANIFESTS:
            if os.path.isfile(os.path.join(source, name)):
                return load_manifest(os.path.join(source, name), split=split, domains=domains,
                                     full_band_only=full_band_only)
        items = filter_items(scan_folder(source, domain=domain), domains=domains, full_band_only=full_band_only)
    else:
        raise FileNotFoundError(source)
    if domain is not None:
        items = [replace(it, domain=_norm_domain(domain)) for it in items]
    return items


def filter_items(items: Sequence[AudioItem], split=None, domains=None, full_band_only=False) -> list[AudioItem]:
    if isinstance(split, str):
        split = (split,)
    doms = None if domains is None else {_norm_domain(d) for d in domains}
    return [it for it in items
            if (split is None or it.split in split)
            and (doms is None or it.domain in doms)
            and (not full_band_only or it.full_band)]


def summarize_items(items: Sequence[AudioItem]) -> dict:
    """Minutes and file counts per (split, domain); durations must be known (NaN counts as 0)."""
    out: dict = {}
    for it in items:
        d = out.setdefault(it.split, {}).setdefault(it.domain, {"files": 0, "minutes": 0.0})
        d["files"] += 1
        if math.isfinite(it.duration_s):
            d["minutes"] += it.duration_s / 60.0
    return out


# ----------------------------------------------------------------------------------------------------------------
# Deterministic splits
# ----------------------------------------------------------------------------------------------------------------
def stable_hash(key: str, salt: str = "") -> float:
    """A number in [0, 1) from SHA-1 of ``salt + key``: stable across machines, Python versions and runs."""
    h = hashlib.sha1((salt + key).encode("utf-8")).hexdigest()
    return int(h[:15], 16) / float(16 ** 15)


def _get(rec, name, default=""):
    if isinstance(rec, dict):
        return rec.get(name, default)
    return getattr(rec, name, default)


def assign_splits(records: Sequence, dev_fraction: float = 0.1, dev_speakers_per_class: int = 1,
                  salt: str = "mlae-split-v1") -> list[str]:
    """Deterministic ``train``/``dev`` split; returns one label per record (dicts or :class:`AudioItem`).

    * Records are grouped: by ``speaker`` when known (all clips of a speaker fall on one side), else by ``group``
      (e.g. a drum kit folder) when the record has one, else by ``path``.
    * Speakers with a gender label: within each (gender, full_band) class that has at least two speakers, the
      ``dev_speakers_per_class`` speakers with the lowest hash among the smaller half of the class (by total
      ``duration_s``, when known) go to dev, the others to train. So dev and train both hold speech of both genders
      wherever the labels allow, dev stays small, and no speaker is on both sides.
    * Every other group goes to dev when ``stable_hash(group) < dev_fraction``.
    ``path`` should be stable (relative to the data folder), so that the split does not depend on where data lives.
    """
    keys = []
    for r in records:
        spk = str(_get(r, "speaker", "") or "")
        grp = str(_get(r, "group", "") or "")
        keys.append(("spk:" + spk) if spk else ("grp:" + grp) if grp else ("path:" + str(_get(r, "path"))))
    # speaker -> (gender, full_band) by majority over its clips
    votes: dict[str, dict] = {}
    minutes: dict[str, float] = {}
    for r, k in zip(records, keys):
        if not k.startswith("spk:"):
            continue
        dur = _parse_float(_get(r, "duration_s", ""), 0.0)
        minutes[k] = minutes.get(k, 0.0) + (dur if math.isfinite(dur) else 0.0)
        g = _norm_gender(_get(r, "gender", ""))
        fb = _get(r, "full_band", True)
        fb = _parse_bool(fb, True) if not isinstance(fb, bool) else fb
        v = votes.setdefault(k, {})
        v[(g, fb)] = v.get((g, fb), 0) + 1
    spk_class = {k: max(v.items(), key=lambda kv: (kv[1], kv[0]))[0] for k, v in votes.items()}
    classes: dict[tuple, list[str]] = {}
    for k, c in spk_class.items():
        if c[0]:
            classes.setdefault(c, []).append(k)
    decided: dict[str, str] = {}
    for c, spks in classes.items():
        if len(spks) < 2:
            decided.update({s: "train" for s in spks})
            continue
        by_size = sorted(spks, key=lambda s: (minutes.get(s, 0.0), s))
        n_dev = min(dev_speakers_per_class, len(spks) - 1)
        pool = by_size[:max(n_dev, (len(spks) + 1) // 2)]
        chosen = set(sorted(pool, key=lambda s: (stable_hash(s, salt), s))[:n_dev])
        for s in spks:
            decided[s] = "dev" if s in chosen else "train"
    out = []
    for k in keys:
        if k not in decided:
            decided[k] = "dev" if stable_hash(k, salt) < dev_fraction else "train"
        out.append(decided[k])
    return out


# ----------------------------------------------------------------------------------------------------------------
# Decoding, resampling, loudness
# ----------------------------------------------------------------------------------------------------------------
def to_mono(audio: np.ndarray) -> np.ndarray:
    """(T,) or (T, C) -> (T,) float32 by averaging channels."""
    audio = np.asarray(audio)
    if audio.ndim == 2:
        audio = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    return np.ascontiguousarray(audio, dtype=np.float32)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along axis 0 (scipy ``resample_poly``; no librosa needed)."""
    orig_sr, target_sr = int(orig_sr), int(target_sr)
    if orig_sr == target_sr:
        return np.asarray(audio, dtype=np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(orig_sr, target_sr)
    up, down = target_sr // g, orig_sr // g
    return resample_poly(np.asarray(audio, dtype=np.float32), up, down, axis=0).astype(np.float32, copy=False)


def decode_audio(path: str | os.PathLike, sample_rate: int | None = None, mono: bool = True,
                 start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """Decode with soundfile; optional [start, start+frames) at the file's own rate; mono mix; resample.

    Returns ``(audio, rate)``: ``audio`` is float32 (T,) when ``mono`` else (T, C)."""
    data, sr = sf.read(os.fspath(path), dtype="float32", always_2d=True, start=start, frames=frames)
    audio = to_mono(data) if mono else data
    if sample_rate is not None and sr != sample_rate:
        audio = resample(audio, sr, sample_rate)
        sr = int(sample_rate)
    return audio, int(sr)


_METERS: dict = {}
_METER_LOCK = threading.Lock()


def _meter(rate: int):
    m = _METERS.get(rate)
    if m is None:
        import pyloudnorm

        with _METER_LOCK:
            m = _METERS.setdefault(rate, pyloudnorm.Meter(rate))
    return m


def measure_loudness(audio: np.ndarray, sample_rate: int, min_duration_s: float = 0.5) -> float:
    """Integrated loudness (LUFS, ITU-R BS.1770 via pyloudnorm). Signals shorter than ``min_duration_s`` are
    zero-padded to it for the measurement (pyloudnorm needs >= one 0.4 s block), as DAC's audiotools does.
    Returns ``-inf`` for digital silence."""
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    need = int(math.ceil(min_duration_s * sample_rate))
    if x.shape[0] < need:
        pad = [(0, need - x.shape[0])] + [(0, 0)] * (x.ndim - 1)
        x = np.pad(x, pad)
    if not np.any(x):
        return float("-inf")
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(_meter(int(sample_rate)).integrated_loudness(x))
    return value if math.isfinite(value) else float("-inf")


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


# ----------------------------------------------------------------------------------------------------------------
# RAM cache and excerpt sampling
# ----------------------------------------------------------------------------------------------------------------
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
                 cache_dtype: str = "int16", max_tries: int = 16, peak_limit: float | None = 1.0):
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
        w = np.array([0.0 if it.path in self._dead else wi for it, wi in zip(items, w)])
        s = w.sum()
        return w / s if s > 0 else np.full(len(items), 1.0 / len(items))

    def _mark_dead(self, item_index: int) -> None:
        it = self.items[item_index]
        with self._lock:
            if it.path in self._dead:
                return
            self._dead.add(it.path)
            d = it.domain
            self._weights[d] = self._domain_weights(self._by_domain[d])

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
        if return_info:
            return x, dict(path=self.items[item_index].path, domain=domain, start=start, loudness=loud,
                           flipped=flipped, tries=t + 1)
        return x


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
                 progress: bool = False):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing, max_queue_size=max_queue_size)
        if not (isinstance(items, (list, tuple)) and items and all(isinstance(i, AudioItem) for i in items)):
            items = load_items(items, split=split, domains=domains)
        else:
            items = filter_items(items, split=split, domains=domains)
        if not items:
            raise ValueError("no audio items after filtering (check split/domains)")
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
                                      max_tries=max_tries)
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


# ----------------------------------------------------------------------------------------------------------------
# Validation set
# ----------------------------------------------------------------------------------------------------------------
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

    def batches(self, batch_size: int):
        for i in range(0, len(self), batch_size):
            yield self.audio[i:i + batch_size]

    def as_py_dataset(self, batch_size: int, return_targets: bool = False) -> keras.utils.PyDataset:
        return _ArrayDataset(self.audio, batch_size, return_targets)


class _ArrayDataset(keras.utils.PyDataset):
    def __init__(self, audio, batch_size, return_targets):
        super().__init__()
        self.audio, self.batch_size, self.return_targets = audio, int(batch_size), return_targets

    def __len__(self):
        return int(math.ceil(self.audio.shape[0] / self.batch_size))

    def __getitem__(self, idx):
        x = self.audio[idx * self.batch_size:(idx + 1) * self.batch_size]
        return (x, x) if self.return_targets else x


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
    if not (isinstance(items, (list, tuple)) and items and all(isinstance(i, AudioItem) for i in items)):
        items = load_items(items, split=split, domains=domains)
    else:
        items = filter_items(items, split=split, domains=domains)
    if not items:
        raise ValueError("no items for the validation set")
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


# ----------------------------------------------------------------------------------------------------------------
# tf.data wrapper (TensorFlow imported lazily)
# ----------------------------------------------------------------------------------------------------------------
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

