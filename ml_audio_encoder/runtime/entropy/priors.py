"""Entropy priors of one model's codes: a static distribution per RVQ level and a context model with backoff.

A :class:`Priors` holds, per level ``q`` of ``n_levels`` (the model's codebooks), with ``K`` codes per codebook:

* **static**: the code counts of level ``q`` (add-``alpha`` smoothed): ``p_q(c)``;
* **context** stages, sparse count tables keyed by a context of the code ``c = codes[q, t]`` that the decoder already
  knows, each backing off to the distribution built so far::

      a = codes[q, t-1]    (K before the first frame)       "prev":   level 0   (the previous frame, same level)
      b = codes[q-1, t]                                     "coarse": levels >= 1 (the coarser level, same frame)
      a * (K + 1) + b                                       "pair":   levels >= 1 (both; rare pairs pruned)

      p <- (n(ctx, c) + beta_q * p) / (n(ctx) + beta_q)      for each stage whose table holds ctx, in stage order

  so an unseen context leaves the distribution as it was (the static one, or the coarse stage's).

Every distribution handed to the range coder is first made integer: ``w = floor(p · 2^24) + 1`` (every code stays
codable, at most ~24 bits), and the largest weight is capped at 11/12 of the row (:data:`CAP`), so no code costs
less than ``log2(12/11)`` ≈ 0.126 bit. That floor is what bounds how many codes a payload of a given size can hold
(``docs/mlae_format.md``). The rows are built with elementwise IEEE operations and integer-valued sums only (no
``exp``/``log``, no order-dependent float reductions), so every machine builds the same bits and decodes what another
encoded.

Stored as ``priors.npz`` (numpy arrays, ``allow_pickle=False``) beside the weights; its ``meta`` names the weights'
fingerprint, and the **prior id** that ``.mlae`` files carry is the first 16 bytes of the file's SHA-256.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from typing import Any

import numpy as np

PRIORS_FORMAT = "ml_audio_encoder.priors"
PRIORS_VERSION = 1
PRIORS_FILE = "priors.npz"
ID_BYTES = 16  # the prior id in a .mlae header: the first 16 bytes of the priors file's SHA-256
KINDS = ("static", "context")  # the entropy-coded payload kinds (docs/mlae_format.md); "none" = bit-packed
STAGES = ("prev", "coarse", "pair")  # context stages the runtime knows, keyed as in the module docstring
QUANT_SCALE = float(1 << 24)  # w = floor(p * 2^24) + 1
CAP = (11, 12)  # the largest weight of a row is at most 11/12 of the row: each code costs >= log2(12/11) bits
MAX_CODEBOOK = 1 << 16  # priors hold codes as uint16
_BATCH = 1024  # symbols per row batch (1024 x K float64 = 8 MB at K = 1024)


class PriorsError(ValueError):
    """A priors file that is damaged, of another format, or inconsistent."""


def quantize_rows(rows: np.ndarray) -> np.ndarray:
    """Integer-valued float64 weights (exact) for probability rows ``(n, K)``: ``floor(p · 2^24) + 1``, the
    largest capped at ``CAP`` of its row. Every step is exact or elementwise, so the result is the same bits on
    every machine."""
    return quantize_scaled(rows * QUANT_SCALE)


def quantize_scaled(w: np.ndarray) -> np.ndarray:
    """:func:`quantize_rows` of rows already multiplied by ``2^24`` (in place)."""
    np.floor(w, out=w)
    w += 1.0
    total = w.sum(axis=1)  # integers below 2^53: exact in any summation order
    top = np.argmax(w, axis=1)
    m = w[np.arange(w.shape[0]), top]
    over = m * CAP[1] > CAP[0] * total
    if over.any():
        idx = np.nonzero(over)[0]
        w[idx, top[idx]] = CAP[0] * (total[idx] - m[idx])
    return w


class _Stage:
    """One sparse count table: rows keyed by ``level * M + context``, each a run of (code, count) entries."""

    def __init__(self, name: str, keys: np.ndarray, ptr: np.ndarray, codes: np.ndarray, counts: np.ndarray,
                 beta: np.ndarray):
        self.name = name
        self.keys, self.ptr = keys.astype(np.int64), ptr.astype(np.int64)
        self.codes, self.counts = codes.astype(np.int64), counts.astype(np.float64)
        self.beta = beta.astype(np.float64)
        cum = np.concatenate([[0], np.cumsum(counts.astype(np.int64))])
        self.totals = (cum[self.ptr[1:]] - cum[self.ptr[:-1]]).astype(np.float64)  # exact integers

    @property
    def n_entries(self) -> int:
        return int(self.codes.size)

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices of the symbols whose key has a row, those rows)."""
        if not self.keys.size:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        i = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        sel = np.nonzero(self.keys[i] == keys)[0]
        return sel, i[sel]

    def entries(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(which of ``rows``, entry index) of every entry of these rows."""
        starts, lens = self.ptr[rows], self.ptr[rows + 1] - self.ptr[rows]
        total = int(lens.sum())
        which = np.repeat(np.arange(rows.size), lens)
        entry = np.arange(total) - np.repeat(np.cumsum(lens) - lens, lens) + np.repeat(starts, lens)
        return which, entry


class Priors:
    """The fitted priors of one model's codes (see the module docstring). ``Priors.load(path)``, ``p.save(path)``."""

    def __init__(self, meta: dict[str, Any], arrays: dict[str, np.ndarray], raw: bytes | None = None,
                 name: str = "priors"):
        self.meta = dict(meta)
        self.name = name
        self._validate(arrays)
        self.codebook_size = int(meta["codebook_size"])
        self.n_levels = int(meta["n_levels"])
        self.fingerprint = str(meta["fingerprint"])
        self.preset = str(meta.get("preset", ""))
        self.alpha = float(meta["alpha"])
        self.stage_names = list(meta["stages"])
        k = self.codebook_size
        self.static_counts = arrays["static_counts"].astype(np.int64)
        totals = self.static_counts.sum(axis=1, keepdims=True).astype(np.float64)
        self.static = (self.static_counts + self.alpha) / (totals + self.alpha * k)  # (Q, K) float64
        self.static_weights = quantize_rows(self.static)
        self._static_scaled = self.static * QUANT_SCALE
        self.stages = [_Stage(s, arrays[f"{s}_keys"], arrays[f"{s}_ptr"], arrays[f"{s}_codes"], arrays[f"{s}_counts"],
                              arrays[f"{s}_beta"]) for s in self.stage_names]
        self._arrays = arrays
        self._raw = raw
        self._id: str | None = None

    # -- identity and storage --------------------------------------------------------------------------------------
    @property
    def expected_bits(self) -> dict[str, list[float]]:
        """Mean bits per code of each level, per kind, measured on held-out fitting data (``--kbps`` uses it)."""
        return {k: [float(v) for v in vs] for k, vs in self.meta.get("expected_bits", {}).items()}

    def to_bytes(self) -> bytes:
        """The ``priors.npz`` bytes (the file as loaded, or a fresh deterministic serialisation)."""
        if self._raw is None:
            buf = io.BytesIO()
            meta = np.frombuffer(json.dumps(self.meta, sort_keys=True).encode("utf-8"), np.uint8)
            np.savez_compressed(buf, meta=meta, **self._arrays)
            self._raw = buf.getvalue()
        return self._raw

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()

    @property
    def id(self) -> str:
        """The prior id: hex of the first :data:`ID_BYTES` bytes of the file's SHA-256."""
        if self._id is None:
            self._id = self.sha256[: 2 * ID_BYTES]
        return self._id

    @property
    def size_bytes(self) -> int:
        return len(self.to_bytes())

    @property
    def n_entries(self) -> int:
        """Sparse (context, code) entries of all context stages together."""
        return sum(s.n_entries for s in self.stages)

    def save(self, path: str | os.PathLike) -> str:
        path = os.fspath(path)
        tmp = path + ".part"
        with open(tmp, "wb") as f:
            f.write(self.to_bytes())
        os.replace(tmp, path)
        return path

    @classmethod
    def from_bytes(cls, data: bytes, name: str = "priors") -> Priors:
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(bytes(arrays.pop("meta")).decode("utf-8"))
        except (OSError, ValueError, KeyError, UnicodeDecodeError) as exc:
            raise PriorsError(f"{name}: not a priors file ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != PRIORS_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else meta
            raise PriorsError(f"{name}: not a priors file (format {found!r})")
        if int(meta.get("format_version", 0)) > PRIORS_VERSION:
            raise PriorsError(f"{name}: priors format version {meta.get('format_version')} is newer than this reader")
        return cls(meta, arrays, raw=bytes(data), name=name)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Priors:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read(), name=os.fspath(path))

    def _validate(self, arrays: dict[str, np.ndarray]) -> None:
        meta, name = self.meta, self.name
        try:
            k, q = int(meta["codebook_size"]), int(meta["n_levels"])
            alpha = float(meta["alpha"])
            stages = list(meta["stages"])
            fingerprint = str(meta["fingerprint"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PriorsError(f"{name}: incomplete priors metadata ({exc})") from None
        if not (2 <= k <= MAX_CODEBOOK and 1 <= q <= 0xFFFF and alpha > 0 and math.isfinite(alpha)):
            raise PriorsError(f"{name}: priors for {q} levels x {k} codes (alpha {alpha}) are out of range")
        if len(fingerprint) != 64 or any(ch not in "0123456789abcdef" for ch in fingerprint):
            raise PriorsError(f"{name}: priors must name the weights' SHA-256 fingerprint")
        if any(s not in STAGES for s in stages) or len(set(stages)) != len(stages):
            raise PriorsError(f"{name}: unknown context stages {stages} (known: {', '.join(STAGES)})")
        static = arrays.get("static_counts")
        if static is None or static.shape != (q, k) or static.dtype.kind not in "iu" or (static < 0).any():
            raise PriorsError(f"{name}: static counts must be non-negative integers of shape ({q}, {k})")
        span = (k + 1) * (k + 1)
        for s in stages:
            try:
                keys, ptr, codes, counts, beta = (arrays[f"{s}_{part}"] for part in ("keys", "ptr", "codes", "counts",
                                                                                      "beta"))
            except KeyError as exc:
                raise PriorsError(f"{name}: stage {s} lacks {exc}") from None
            ok = (keys.ndim == 1 and ptr.shape == (keys.size + 1,) and codes.ndim == 1 and counts.shape == codes.shape
                  and beta.shape == (q,) and keys.dtype.kind in "iu" and ptr.dtype.kind in "iu"
                  and codes.dtype.kind in "iu" and counts.dtype.kind in "iu")
            ok = ok and (not keys.size or (int(keys.min()) >= 0 and int(keys.max()) < q * span
                                           and bool((np.diff(keys.astype(np.int64)) > 0).all())))
            rows_filled = bool((np.diff(ptr.astype(np.int64)) > 0).all()) if keys.size else True
            ok = ok and int(ptr[0]) == 0 and int(ptr[-1]) == codes.size and rows_filled
            ok = ok and (not codes.size or (int(codes.min()) >= 0 and int(codes.max()) < k and int(counts.min()) > 0))
            ok = ok and bool(np.isfinite(beta).all()) and bool((beta > 0).all())
            if ok and codes.size:  # codes strictly increasing within each row
                step = np.diff(codes.astype(np.int64)) > 0
                step[ptr[1:-1].astype(np.int64) - 1] = True
                ok = bool(step.all())
            if not ok:
                raise PriorsError(f"{name}: stage {s}'s table is inconsistent")

    # -- distributions ---------------------------------------------------------------------------------------------
    def stage_keys(self, stage: str, levels: np.ndarray, prev: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """The table keys of symbols at ``levels`` with previous-frame codes ``prev`` and coarser-level codes
        ``coarse`` (both ``K`` where absent)."""
        k1 = self.codebook_size + 1
        ctx = {"prev": prev, "coarse": coarse, "pair": prev * k1 + coarse}[stage]
        return levels * (k1 * k1) + ctx

    def weights(self, levels: np.ndarray, prev: np.ndarray, coarse: np.ndarray) -> np.ndarray:
        """The integer weights ``(n, K)`` (float64, exact integers) that the range coder uses for symbols at
        ``levels`` (int64 arrays of length n) with these contexts: :func:`quantize_rows` of the backoff chain.

        The chain is evaluated in its affine form: with ``f_s = beta / (n(ctx) + beta)`` for each stage that has the
        context, ``p = (prod_s f_s) · static + sum_s (prod_{s' after s} f_s') · n_s(ctx, ·) / (n_s(ctx) + beta)``,
        so the dense work per row is one scaled copy of the static row plus the sparse counts.
        """
        n = levels.size
        hits = []
        for stage in self.stages:
            sel, rows = stage.lookup(self.stage_keys(stage.name, levels, prev, coarse))
            if sel.size:
                beta = stage.beta[levels[sel]]
                denom = stage.totals[rows] + beta
                hits.append((stage, sel, rows, denom, beta / denom))
        post = np.ones(n)
        coefs = []
        for _, sel, _, denom, factor in reversed(hits):
            coefs.append(post[sel] / denom)
            post[sel] *= factor
        w = np.take(self._static_scaled, levels, axis=0)
        w *= post[:, None]
        for (stage, sel, rows, _, _), coef in zip(hits, reversed(coefs)):
            which, entry = stage.entries(rows)
            w[sel[which], stage.codes[entry]] += stage.counts[entry] * (coef[which] * QUANT_SCALE)
        return quantize_scaled(w)

    def code_lengths(self, codes: np.ndarray, kind: str = "context", lane_frames: int | None = None) -> np.ndarray:
        """Ideal bits per code of each level of ``codes`` ``(channels, levels, frames)`` under ``kind``'s
        quantized distributions (what the range coder spends, up to a few bytes per block)."""
        codes = np.asarray(codes, np.int64)
        c, q, f = codes.shape
        bits = np.zeros(q, np.float64)
        if kind == "static":
            w = self.static_weights[:q]
            p = np.take_along_axis(w, codes.transpose(1, 0, 2).reshape(q, -1), axis=1) / w.sum(axis=1, keepdims=True)
            return -np.log2(p).mean(axis=1) if f else bits
        levels, prev, coarse, symbols = context_arrays(codes, self.codebook_size, lane_frames)
        for s in range(0, symbols.size, _BATCH):
            w = self.weights(levels[s:s + _BATCH], prev[s:s + _BATCH], coarse[s:s + _BATCH])
            p = w[np.arange(w.shape[0]), symbols[s:s + _BATCH]] / w.sum(axis=1)
            np.add.at(bits, levels[s:s + _BATCH], -np.log2(p))
        return bits / max(1, c * f)

    def describe(self) -> str:
        fit = self.meta.get("fit", {})
        return (f"priors {self.id[:12]} for {self.preset or 'a model'} (weights {self.fingerprint[:12]}): "
                f"{self.n_levels} levels x {self.codebook_size} codes, {self.n_entries} context entries, "
                f"{self.size_bytes / 1024:.0f} KiB; fitted on {fit.get('seconds', float('nan')):.0f} s of audio")


def context_arrays(codes: np.ndarray, codebook_size: int,
                   lane_frames: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(levels, prev, coarse, symbols)`` of every code of ``codes`` ``(channels, levels, frames)``, flattened in C
    order. The previous-frame context is ``K`` (none) at frame 0 and at every multiple of ``lane_frames``, where the
    coder starts a lane (:mod:`.coder`)."""
    codes = np.asarray(codes, np.int64)
    c, q, f = codes.shape
    k = int(codebook_size)
    prev = np.concatenate([np.full((c, q, 1), k, np.int64), codes[:, :, :-1]], axis=2)
    if lane_frames:
        prev[:, :, ::lane_frames] = k
    coarse = np.concatenate([np.full((c, 1, f), k, np.int64), codes[:, :-1, :]], axis=1)
    levels = np.broadcast_to(np.arange(q, dtype=np.int64)[None, :, None], codes.shape)
    return levels.reshape(-1), prev.reshape(-1), coarse.reshape(-1), codes.reshape(-1)


__all__ = ["CAP", "ID_BYTES", "KINDS", "PRIORS_FILE", "PRIORS_FORMAT", "Priors", "PriorsError", "STAGES",
           "context_arrays", "quantize_rows"]
