"""Range coding of a file's codes with :class:`~.priors.Priors`, block by block (``constriction``'s range coder).

The frames are cut into **lanes** of ``lane_frames`` frames, and the lanes into **blocks** of ``block_lanes`` lanes
(the last of each shorter). The payload of an entropy-coded ``.mlae`` file is one record per block: a uint32 word
count ``n`` and then ``n`` little-endian uint32 words of one ``constriction.stream.queue.RangeEncoder``. Within a
block the codes go in this order:

* ``static``: level by level, then channel, then frame; each level has one fixed distribution;
* ``context``: by anti-diagonal ``d = u + q`` (``u`` the frame within its lane, ``q`` the level), then lane, then
  channel, then level. A code's contexts (the previous frame at its level, none at a lane's first frame; the coarser
  level at its frame) lie on an earlier diagonal, so the decoder decodes a whole diagonal of every lane at once
  (up to ``block_lanes · channels · levels`` codes per call): ``lane_frames + levels - 1`` calls per block.

Blocks are independent, so they cost only their length word and the coder's final flush, and a lane start costs
the previous-frame context of one frame. Memory is one block of codes and one batch of ``K``-wide rows, whatever the
file's length. Decoding reads exactly the announced number of codes (so it always ends) and checks that each
block's words were used up; every failure is a :class:`~ml_audio_encoder.errors.CodecFileError`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

import numpy as np

from ...errors import CodecFileError
from .priors import Priors

LANE_SECONDS = 0.5  # a writer's lane length: one frame in 38 (at 75 frames/s) loses its previous-frame context
BLOCK_SECONDS = 5.0  # a writer's block length: a length word and a flush per 5 s
CODES_PER_WORD = 256  # a block of n words holds at most 256 · (n + 1) codes: each costs >= log2(12/11) > 1/8 bit
_WORD = struct.Struct("<I")
_BATCH = 1024  # encoder rows per batch (1024 x K float64 = 8 MB at K = 1024)


class EntropyBoundError(ValueError):
    """A block would hold more codes than :data:`CODES_PER_WORD` allows (never for priors made by ``fit_priors``)."""


def max_codes(n_words: int) -> int:
    """The most codes a block of ``n_words`` words may hold (``docs/mlae_format.md``)."""
    return CODES_PER_WORD * (int(n_words) + 1)


def _constriction():
    try:
        import constriction
    except ImportError as exc:  # an install without it can still read and write bit-packed files
        raise CodecFileError(f"entropy-coded .mlae files need the 'constriction' package ({exc})") from None
    return constriction


def block_layout(frame_rate: float) -> tuple[int, int]:
    """``(lane_frames, block_lanes)`` a writer uses at ``frame_rate``: lanes of :data:`LANE_SECONDS`, blocks of
    :data:`BLOCK_SECONDS`."""
    lane = max(1, math.ceil(LANE_SECONDS * frame_rate))
    return lane, max(1, round(BLOCK_SECONDS / LANE_SECONDS))


def _blocks(n_frames: int, lane_frames: int, block_lanes: int) -> Iterator[tuple[int, int]]:
    step = lane_frames * block_lanes
    for start in range(0, n_frames, step):
        yield start, min(step, n_frames - start)


def diagonal_order(channels: int, levels: int, frames: int, lane_frames: int):
    """``(channel, level, frame, prev_ok, bounds)`` of a block's codes in context-coding order (``frame`` within the
    block; ``prev_ok``: the code has a previous frame in its lane); diagonal ``d`` is ``[bounds[d], bounds[d+1])``."""
    c, q, t = (a.reshape(-1) for a in np.meshgrid(np.arange(channels), np.arange(levels), np.arange(frames),
                                                  indexing="ij"))
    lane, u = t // lane_frames, t % lane_frames
    order = np.lexsort((q, c, lane, u + q))
    c, q, t, u = c[order], q[order], t[order], u[order]
    bounds = np.searchsorted(u + q, np.arange(min(lane_frames, frames) + levels), side="left")
    return c, q, t, u > 0, bounds


def _contexts(buf: np.ndarray, c: np.ndarray, q: np.ndarray, t: np.ndarray, prev_ok: np.ndarray, k: int):
    """(levels, prev, coarse) of codes at (c, q, t) of the block ``buf`` ``(channels, levels, frames)``."""
    prev = np.where(prev_ok, buf[c, q, t - 1], k)
    coarse = np.where(q > 0, buf[c, np.maximum(q - 1, 0), t], k)
    return q, prev, coarse


def _static_models(priors: Priors, levels: int):
    model = _constriction().stream.model.Categorical
    return [model(priors.static_weights[i], perfect=False) for i in range(levels)]


def encode(codes: np.ndarray, priors: Priors, kind: str, lane_frames: int, block_lanes: int) -> bytes:
    """The payload for ``codes`` ``(channels, levels, frames)`` (see the module docstring).

    Raises :class:`EntropyBoundError` if a block would break the :func:`max_codes` rule (the caller falls back to
    bit-packing)."""
    cst = _constriction()
    codes = np.asarray(codes, np.int64)
    channels, levels, n_frames = codes.shape
    k = priors.codebook_size
    statics = _static_models(priors, levels) if kind == "static" else None
    model = cst.stream.model.Categorical(perfect=False)
    out = []
    for start, n in _blocks(n_frames, lane_frames, block_lanes):
        block = codes[:, :, start : start + n]
        encoder = cst.stream.queue.RangeEncoder()
        if kind == "static":
            for level in range(levels):
                encoder.encode(block[:, level, :].reshape(-1).astype(np.int32), statics[level])
        else:
            c, q, t, prev_ok, _ = diagonal_order(channels, levels, n, lane_frames)
            lv, prev, coarse = _contexts(block, c, q, t, prev_ok, k)
            symbols = block[c, q, t].astype(np.int32)
            for s in range(0, symbols.size, _BATCH):
                w = priors.weights(lv[s : s + _BATCH], prev[s : s + _BATCH], coarse[s : s + _BATCH])
                encoder.encode(symbols[s : s + _BATCH], model, w)
        words = np.asarray(encoder.get_compressed(), np.uint32)
        if block.size > max_codes(words.size):
            raise EntropyBoundError(f"a block of {block.size} codes coded into {words.size} words")
        out.append(_WORD.pack(words.size) + words.astype("<u4").tobytes())
    return b"".join(out)


def block_words(payload: bytes, channels: int, levels: int, n_frames: int, lane_frames: int, block_lanes: int,
                name: str = "file") -> list[tuple[int, int]]:
    """``(offset, n_words)`` of each block, after checking the payload's structure: the block count fits the
    payload, each block's words lie inside it, its codes obey :func:`max_codes`, and nothing follows the last.
    Touches only the length words, so nothing is allocated for codes before the sizes are known to be sound."""
    n_blocks = -(-n_frames // (lane_frames * block_lanes))
    if 4 * n_blocks > len(payload):
        raise CodecFileError(f"{name}: corrupted .mlae file ({n_blocks} coded blocks cannot fit in {len(payload)} "
                             "payload bytes)")
    spans, offset = [], 0
    for _, n in _blocks(n_frames, lane_frames, block_lanes):
        if offset + 4 > len(payload):
            raise CodecFileError(f"{name}: corrupted .mlae file (payload ends inside block {len(spans)})")
        (n_words,) = _WORD.unpack_from(payload, offset)
        offset += 4
        if offset + 4 * n_words > len(payload):
            raise CodecFileError(f"{name}: corrupted .mlae file (block {len(spans)} announces {n_words} words past "
                                 "the payload's end)")
        if channels * levels * n > max_codes(n_words):
            raise CodecFileError(f"{name}: invalid .mlae file (block {len(spans)} claims {channels * levels * n} "
                                 f"codes in {n_words} words; at most {max_codes(n_words)})")
        spans.append((offset, n_words))
        offset += 4 * n_words
    if offset != len(payload):
        raise CodecFileError(f"{name}: corrupted .mlae file ({len(payload) - offset} bytes after the last block)")
    return spans


def decode(payload: bytes, shape: tuple[int, int, int], priors: Priors, kind: str, lane_frames: int,
           block_lanes: int, name: str = "file") -> np.ndarray:
    """Inverse of :func:`encode`: int32 codes ``shape`` = ``(channels, levels, frames)``."""
    cst = _constriction()
    channels, levels, n_frames = shape
    spans = block_words(payload, channels, levels, n_frames, lane_frames, block_lanes, name)
    k = priors.codebook_size
    statics = _static_models(priors, levels) if kind == "static" else None
    model = cst.stream.model.Categorical(perfect=False)
    codes = np.empty(shape, np.int32)
    orders: dict[int, tuple] = {}
    for (start, n), (offset, n_words) in zip(_blocks(n_frames, lane_frames, block_lanes), spans):
        words = np.frombuffer(payload, "<u4", n_words, offset).astype(np.uint32)
        try:
            decoder = cst.stream.queue.RangeDecoder(words)
            if kind == "static":
                for level in range(levels):
                    symbols = decoder.decode(statics[level], channels * n)
                    codes[:, level, start : start + n] = symbols.reshape(channels, n)
            else:
                if n not in orders:
                    orders[n] = diagonal_order(channels, levels, n, lane_frames)
                c, q, t, prev_ok, bounds = orders[n]
                buf = np.zeros((channels, levels, n), np.int64)
                for d in range(bounds.size - 1):
                    for lo in range(bounds[d], bounds[d + 1], _BATCH):  # a diagonal's codes do not depend on each other
                        hi = min(lo + _BATCH, bounds[d + 1])
                        lv, prev, coarse = _contexts(buf, c[lo:hi], q[lo:hi], t[lo:hi], prev_ok[lo:hi], k)
                        buf[c[lo:hi], q[lo:hi], t[lo:hi]] = decoder.decode(model, priors.weights(lv, prev, coarse))
                codes[:, :, start : start + n] = buf
            exhausted = decoder.maybe_exhausted()
        except Exception as exc:  # whatever the coder raises on a crafted stream is a bad file, not a crash
            raise CodecFileError(f"{name}: corrupted .mlae file (entropy decoding failed: {exc})") from None
        if not exhausted:
            raise CodecFileError(f"{name}: corrupted .mlae file (coded block at frame {start} has words left over)")
    return codes


__all__ = ["BLOCK_SECONDS", "CODES_PER_WORD", "EntropyBoundError", "LANE_SECONDS", "block_layout", "block_words",
           "decode", "diagonal_order", "encode", "max_codes"]
