"""Entropy priors of one model's codes: a static distribution per RVQ level and a context model with backoff.

A :class:`Priors` holds, per level ``q`` of ``n_levels`` (the model's codebooks), with ``K`` codes per codebook:

* **static**: the code counts of level ``q`` (add-``alpha`` smoothed): ``p_q(c)``;
* **context** stages, sparse count tables keyed by a context of the code ``c = codes[q, t]`` that the decoder already
  knows, each backing off to the distribution built so far (the stages and their order are in the metadata; the
  shipped priors use ``coarse`` at levels >= 1, then ``prev`` at every level)::

      b = codes[q-1, t]                                     "coarse" (the coarser level, same frame; K at level 0)
      a = codes[q, t-1]    (K before a lane's first frame)   "prev"   (the previous frame, same level)
      a * (K + 1) + b                                       "pair"   (both)

      p <- (n(ctx, c) + beta_q * p) / (n(ctx) + beta_q)      for each stage whose table holds ctx, in stage order

  so an unseen context leaves the distribution as it was.

The coder codes each code as two symbols: its block ``c // B`` (one of ``A``, :func:`block_size`: 32 x 32 for 1024
codes), then its place ``c % B`` in the block, from the same distribution summed over blocks and restricted to the
block. The range coder's work per symbol grows with the row (~2 µs for 1024 entries, ~0.05 µs for 32), so this is
what makes context coding cost a few percent of a fast model's time instead of a third.

Every row handed to the range coder is first made integer: ``w = floor(p · 2^24) + 1`` (every symbol stays
codable, at most ~24 bits), and the largest weight is capped at 11/12 of the row (:data:`CAP`), so no symbol costs
less than ``log2(12/11)`` ≈ 0.126 bit. That floor is what bounds how many codes a payload of a given size can hold
(``docs/mlae_format.md``). The rows are built with elementwise IEEE operations and integer-valued sums only (no
``exp``/``log``, no order-dependent float reductions), so every machine builds the same bits and decodes what another
encoded.

Stored as ``priors.npz`` (numpy arrays, ``allow_pickle=False``) beside the weights; its ``meta`` names the weights'
fingerprint, and the **prior id** that ``.mlae`` files carry is the first 16 bytes of the file's SHA-256.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import math
import os
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from . import _kernels

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


def _compiled():
    """The compiled kernels (``_kernels.pyx``, built by ``pip install``), imported when context rows are first
    needed: a source tree used without an install (``PYTHONPATH``, as on a training machine) still trains, reads
    bit-packed files and fits priors."""
    try:
        from . import _kernels
    except ImportError as exc:
        raise ImportError(f"the entropy coder's compiled kernels are not built ({exc}): install the package with "
                          "pip (it compiles ml_audio_encoder/runtime/entropy/_kernels.pyx; needs a C compiler)"
                          ) from None
    return _kernels


class PriorsError(ValueError):
    """A priors file that is damaged, of another format, or inconsistent."""


def quantize_rows(rows: np.ndarray) -> np.ndarray:
    """Integer-valued float64 weights (exact) for probability rows ``(n, K)``: ``floor(p · 2^24) + 1``, the
    largest capped at ``CAP`` of its row. Every step is exact or elementwise, so the result is the same bits on
    every machine."""
    return quantize_scaled(rows * QUANT_SCALE)


def quantize_scaled(w: np.ndarray, whole: bool = True) -> np.ndarray:
    """:func:`quantize_rows` of rows already multiplied by ``2^24`` (in place). ``whole``: the rows are whole
    distributions (each sums to ~2^24), for which a cheap test usually shows that no weight needs the cap."""
    np.floor(w, out=w)
    w += 1.0
    total = w @ _ones(w.shape[1])  # integers below 2^53: exact in any summation order (a BLAS dot is fastest)
    # a weight above 11/12 of its row is the row's largest (and the only one); only such rows are changed. None can
    # be when even the largest weight of all is at most 11/12 of the smallest row. Else each row's largest: argmax
    # along short rows is several times faster than max in numpy (the first of equal largest weights is as good).
    if not w.size or (whole and w.max() * CAP[1] <= CAP[0] * total.min()):
        return w
    at = w.argmax(axis=1)
    top = w[np.arange(w.shape[0]), at]
    idx = np.flatnonzero(top * CAP[1] > CAP[0] * total)
    if idx.size:
        w[idx, at[idx]] = CAP[0] * (total[idx] - top[idx])
    return w


@functools.lru_cache(maxsize=8)
def _ones(n: int) -> np.ndarray:
    ones = np.ones(n)
    ones.flags.writeable = False
    return ones


def block_size(codebook_size: int) -> tuple[int, int]:
    """``(B, A)``: a code ``c`` is coded as its block ``c // B`` (one of ``A``) and then ``c % B``. ``B`` is the
    power of two nearest below ``sqrt(K)`` (32 for 1024 codes), and both are at least 2, so that no coded row has a
    single entry (the cap could not leave it any weight)."""
    b = 1 << max(1, (int(codebook_size) - 1).bit_length() // 2)
    return b, max(2, -(-int(codebook_size) // b))


class Chain(NamedTuple):
    """:meth:`Priors.chain` of n symbols: their levels, the static part's factor, and per stage ``(stage, each
    symbol's row, coef · 2^24)`` (the stage's missing-context row, coefficient times zero counts, where it has none).
    ``rows`` and ``coefs`` are the same per-stage values as ``(stages, n)`` arrays, and ``hi`` the block weights
    (:meth:`Priors.hi_weights`), which the compiled kernel makes in the same pass as the chain."""

    levels: np.ndarray
    post: np.ndarray
    stages: list
    rows: np.ndarray
    coefs: np.ndarray
    hi: np.ndarray


def _ints(values: np.ndarray) -> np.ndarray:
    """``values`` as a contiguous int64 array (a copy only when needed), the kernels' type of codes and indices."""
    return np.ascontiguousarray(values, np.int64)


def _chosen(w: np.ndarray, rows: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    return w[rows, symbols] / w.sum(axis=1)


def _exact_type(values: np.ndarray) -> type:
    """The smallest type that holds every (non-negative integer) value exactly: uint16, float32 (below 2^24) or
    float64 (the coder multiplies them by float64 coefficients: the same products whichever it is)."""
    top = float(values.max()) if values.size else 0.0
    return np.uint16 if top < 2.0**16 else np.float32 if top < 2.0**24 else np.float64


def stage_keys(stage: str, levels: np.ndarray, prev: np.ndarray, coarse: np.ndarray, codebook_size: int) -> np.ndarray:
    """The table keys of symbols at ``levels`` with previous-frame codes ``prev`` and coarser-level codes ``coarse``
    (both ``K`` where absent) in stage ``stage``'s table: ``level · (K+1)² + context``."""
    k1 = int(codebook_size) + 1
    ctx = {"prev": prev, "coarse": coarse, "pair": prev * k1 + coarse}[stage]
    return levels * (k1 * k1) + ctx


class _Stage:
    """One sparse count table: rows keyed by ``level * M + context``, each a run of (code, count) entries.

    For the coder it also holds dense views made once at load (:meth:`index_rows`, :meth:`index_blocks`), each with a
    last all-zero row that every symbol whose context the table lacks is pointed at: ``beta / (0 + beta) = 1`` leaves
    its distribution as it was, and adding zero counts is exact, so the rows are the same bits as skipping the
    symbol, and the coder makes them with the same few array operations whatever hits (its cost is per operation)."""

    def __init__(self, name: str, keys: np.ndarray, ptr: np.ndarray, codes: np.ndarray, counts: np.ndarray,
                 beta: np.ndarray):
        self.name = name
        self.keys, self.ptr = keys.astype(np.int64), ptr.astype(np.int64)
        self.codes, self.counts = codes, counts  # as stored (validated integers): the coder reads the dense views
        self.beta = beta.astype(np.float64)
        cum = np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])
        self.totals = (cum[self.ptr[1:]] - cum[self.ptr[:-1]]).astype(np.float64)  # exact integers

    @property
    def n_rows(self) -> int:
        return int(self.keys.size)

    def index_rows(self, codebook_size: int) -> None:
        """Made once: per row ``denom = n(ctx) + beta`` and ``factor = beta / denom`` (the missing-context row last:
        factor 1); for a stage whose context is one code, a direct table from ``level · (K+1) + context`` to the row
        (the missing row where none), ``levels · (K+1)`` entries, which :meth:`find` reads instead of searching."""
        k1 = int(codebook_size) + 1
        level, ctx = np.divmod(self.keys, k1 * k1)  # keys are validated below levels · (K+1)²
        self.denom = np.append(self.totals + self.beta[level], 1.0)
        self.factor = np.append(self.beta[level] / self.denom[:-1], 1.0)
        self.direct = None
        if self.name != "pair":
            self.direct = np.full(self.beta.size * k1, self.n_rows, np.int32)
            self.direct[level * k1 + ctx] = np.arange(self.n_rows)

    @property
    def n_entries(self) -> int:
        return int(self.codes.size)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The row of each key (:attr:`n_rows`, the missing-context row, where the table has none)."""
        if not self.keys.size:
            return np.zeros(keys.shape, np.int64)
        i = np.minimum(np.searchsorted(self.keys, keys), self.keys.size - 1)
        return np.where(self.keys[i] == keys, i, self.n_rows)

    def find(self, levels: np.ndarray, prev: np.ndarray, coarse: np.ndarray, codebook_size: int) -> np.ndarray:
        """:meth:`lookup` of symbols by their contexts (through the direct table where the stage has one)."""
        if self.direct is None:
            return self.lookup(stage_keys(self.name, levels, prev, coarse, codebook_size))
        return self.direct[levels * (codebook_size + 1) + (prev if self.name == "prev" else coarse)]

    def index_blocks(self, b: int, a: int) -> None:
        """Made once: per row and block of ``b`` codes the summed counts, ``block_counts`` ``(rows + 1, a)``; and
        the counts of each non-empty (row, block) cell as a dense ``b``-wide row, ``cells`` ``(cells + 1, b)``,
        found through ``cell_of[row · a + block]`` (the last, all-zero cell where empty). Counts are kept in the
        smallest type that holds them exactly (each product with a float64 coefficient is the same float64)."""
        rows = self.n_rows
        row = np.repeat(np.arange(rows), np.diff(self.ptr))
        cell = row * a + self.codes // b  # non-decreasing: a row's codes increase
        block_counts = np.bincount(cell, self.counts.astype(np.float64), (rows + 1) * a)  # exact integer sums
        self.block_counts = block_counts.reshape(rows + 1, a).astype(_exact_type(self.totals))
        first = np.ones(cell.size, bool)
        first[1:] = cell[1:] != cell[:-1]
        index = np.cumsum(first) - 1  # each entry's cell
        n_cells = int(first.sum())
        self.cell_of = np.full((rows + 1) * a, n_cells, np.int32 if n_cells < 2**31 else np.int64)
        self.cell_of[cell[first]] = np.arange(n_cells)
        self.cells = np.zeros((n_cells + 1, b), _exact_type(self.counts))
        self.cells[index, self.codes % b] = self.counts


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
        # the two coded parts of a code (block, then code within the block): static rows for each, zero-padded
        self.block, self.n_blocks = block_size(k)
        for stage in self.stages:
            stage.index_rows(k)
            stage.index_blocks(self.block, self.n_blocks)
        padded = np.zeros((self.n_levels, self.n_blocks * self.block))
        padded[:, :k] = self.static_counts
        block_totals = padded.reshape(self.n_levels, self.n_blocks, self.block).sum(axis=2)  # exact integers
        block_sizes = np.clip(k - self.block * np.arange(self.n_blocks), 0, self.block)
        self._static_hi_scaled = (block_totals + self.alpha * block_sizes) / (totals + self.alpha * k) * QUANT_SCALE
        padded[:, :k] = self._static_scaled
        self._static_lo_scaled = padded.reshape(self.n_levels, self.n_blocks, self.block)
        self._tables = self._kernel_tables()
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
            # a one-code context is at most K (the direct tables of _Stage.index_rows rely on it)
            ok = ok and (s == "pair" or not keys.size or int((keys.astype(np.int64) % span).max()) <= k)
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
        return stage_keys(stage, levels, prev, coarse, self.codebook_size)

    def _kernel_tables(self) -> _kernels.Tables:
        """The stages' tables as the kernels take them (:class:`._kernels.Tables`, which checks every index it will
        read with). Counts of different stages are brought to one type (the widest exact one: every value stays the
        same integer, so every product with a float64 coefficient stays the same); the stage keeps the promoted
        array, so nothing is held twice."""
        stages = self.stages
        if stages:
            for name in ("block_counts", "cells", "cell_of"):
                dtype = np.result_type(*(getattr(st, name).dtype for st in stages))
                for st in stages:
                    setattr(st, name, np.ascontiguousarray(getattr(st, name), dtype))
        return _compiled().Tables(
            self.codebook_size, [STAGES.index(st.name) for st in stages],  # _kernels.PREV, COARSE, PAIR
            [st.direct for st in stages], [st.keys for st in stages], [st.denom for st in stages],
            [st.factor for st in stages], [st.block_counts for st in stages], [st.cell_of for st in stages],
            [st.cells for st in stages], self._static_hi_scaled, self._static_lo_scaled)

    def chain(self, levels: np.ndarray, prev: np.ndarray, coarse: np.ndarray) -> Chain:
        """The backoff chain of symbols at ``levels`` (integer arrays of length n) with these contexts, in its
        affine form: with ``f_s = beta / (n(ctx) + beta)`` for each stage that holds the context,
        ``p = (prod_s f_s) · static + sum_s (prod_{s' after s} f_s') · n_s(ctx, ·) / (n_s(ctx) + beta)``; both coded
        parts of a code (:meth:`hi_weights`, :meth:`lo_weights`) are read from it. A stage without the context has
        ``f_s = 1`` and no counts (:class:`_Stage`). One compiled pass (:meth:`._kernels.Tables.chain_hi`) makes the
        chain and the block weights; ``ValueError`` if a level or context code is out of range."""
        levels = _ints(levels)
        rows, coefs, post, hi = self._tables.chain_hi(levels, _ints(prev), _ints(coarse))
        return Chain(levels, post, [(stage, rows[i], coefs[i]) for i, stage in enumerate(self.stages)], rows, coefs,
                     hi)

    def hi_weights(self, chain: Chain) -> np.ndarray:
        """Integer weights ``(n, A)`` (float64, exact integers) of each symbol's block ``code // B``: the chain's
        probabilities summed over each block of :attr:`block` codes, then quantized as :func:`quantize_scaled`
        does. Made with the chain (the array is the chain's: not to be changed in place)."""
        return chain.hi

    def lo_weights(self, chain: Chain, hi: np.ndarray) -> np.ndarray:
        """Integer weights ``(n, B)`` of each symbol's code within its block ``hi`` (the chain's probabilities of
        codes ``hi · B .. hi · B + B - 1``; codes past ``K`` have probability 0, so weight 1), one compiled pass
        (:meth:`._kernels.Tables.lo_rows`); ``ValueError`` if a block is out of range."""
        return self._tables.lo_rows(chain.levels, _ints(hi), chain.rows, chain.coefs, chain.post)

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
            chain = self.chain(levels[s:s + _BATCH], prev[s:s + _BATCH], coarse[s:s + _BATCH])
            hi, lo = np.divmod(symbols[s:s + _BATCH], self.block)
            rows = np.arange(hi.size)
            bits += np.bincount(chain.levels, -np.log2(_chosen(self.hi_weights(chain), rows, hi))
                                - np.log2(_chosen(self.lo_weights(chain, hi), rows, lo)), q)
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
           "context_arrays", "quantize_rows", "stage_keys"]
