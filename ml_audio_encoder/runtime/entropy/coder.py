"""Range coding of a file's codes with :class:`~.priors.Priors`, block by block (``constriction``'s range coder).

The frames are cut into **lanes** of ``lane_frames`` frames, and the lanes into **blocks** of ``block_lanes`` lanes
(the last of each shorter). The payload of an entropy-coded ``.mlae`` file is one record per block: a uint32 word
count ``n`` and then ``n`` little-endian uint32 words of one ``constriction.stream.queue.RangeEncoder``. Within a
block the codes go in this order:

* ``static``: level by level, then channel, then frame; each level has one fixed distribution;
* ``context``: by anti-diagonal ``d = u + q`` (``u`` the frame within its lane, ``q`` the level), then lane, then
  channel, then level. A code's contexts (the previous frame at its level, none at a lane's first frame; the coarser
  level at its frame) lie on an earlier diagonal, so the decoder decodes a whole diagonal of every lane at once
  (up to ``block_lanes · channels · levels`` codes per step, in batches of at most :data:`_BATCH`):
  ``lane_frames + levels - 1`` steps per block. Within a batch, the blocks ``c // B`` of its codes go first, then
  their places ``c % B`` (:mod:`.priors`: two short rows per code instead of one ``K``-wide row).

Blocks are independent, so they cost only their length word and the coder's final flush, and a lane start costs
the previous-frame context of one frame. Memory is one block of codes and a few batches of ``B``-wide rows,
whatever the file's length. Decoding reads exactly the announced number of codes (so it always ends) and checks
that each block's words were used up; every failure is a :class:`~ml_audio_encoder.errors.CodecFileError`.
"""

from __future__ import annotations

import functools
import math
import struct
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from ...errors import CodecFileError
from .priors import Priors

LANE_SECONDS = 1 / 6  # a writer's lane length: one frame in 13 (at 75 frames/s) loses its previous-frame context
# a writer's block length: a length word and a flush per 30 s. The decoder steps through all lanes of a block together,
# so longer blocks mean fewer, larger steps (its cost is mostly per step); memory stays a block's codes (~100 KB).
BLOCK_SECONDS = 30.0
CODES_PER_WORD = 256  # a block of n words holds at most 256 · (n + 1) codes: each costs >= log2(12/11) > 1/8 bit
_WORD = struct.Struct("<I")
_BATCH = 1024  # codes coded together: at most this many of a diagonal
_ROWS = 8192  # codes whose probability rows the encoder makes at once (2 x 8192 x 32 float64 = 4 MB at K = 1024)


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


class Order(NamedTuple):
    """A block's codes in context-coding order, as flat indices into the block ``(channels, levels, frames)``
    followed by one slot that holds ``K`` (the "no context" code): where each code goes, where its ``prev`` and
    ``coarse`` contexts are (that slot when absent), its level; diagonal ``d`` is ``[bounds[d], bounds[d+1])``."""

    at: np.ndarray
    prev_at: np.ndarray
    coarse_at: np.ndarray
    levels: np.ndarray
    bounds: np.ndarray


@functools.lru_cache(maxsize=8)  # a file's blocks share one order (its last may differ), as do files of one length
def diagonal_order(channels: int, levels: int, frames: int, lane_frames: int) -> Order:
    """The :class:`Order` of a block of ``frames`` frames (see the module docstring); read-only arrays."""
    c, q, t = (a.reshape(-1) for a in np.meshgrid(np.arange(channels), np.arange(levels), np.arange(frames),
                                                  indexing="ij"))
    lane, u = t // lane_frames, t % lane_frames
    order = np.lexsort((q, c, lane, u + q))
    c, q, t, u = c[order], q[order], t[order], u[order]
    at = (c * levels + q) * frames + t
    none = channels * levels * frames
    bounds = np.searchsorted(u + q, np.arange(min(lane_frames, frames) + levels), side="left")
    order = Order(at, np.where(u > 0, at - 1, none), np.where(q > 0, at - frames, none), q, bounds)
    for a in order:
        a.flags.writeable = False  # shared through the cache
    return order


def _batches(bounds: np.ndarray) -> Iterator[tuple[int, int]]:
    """``[lo, hi)`` spans of context-ordered codes coded together: each diagonal, in pieces of at most
    :data:`_BATCH` (a diagonal's codes do not depend on each other; the next diagonal's contexts lie on it)."""
    for d in range(bounds.size - 1):
        for lo in range(int(bounds[d]), int(bounds[d + 1]), _BATCH):
            yield lo, min(lo + _BATCH, int(bounds[d + 1]))


def _spans(bounds: np.ndarray, most: int) -> Iterator[tuple[int, int, list[tuple[int, int]]]]:
    """``(a, z, batches)``: runs ``[a, z)`` of whole :func:`_batches` holding at most ``most`` codes (or a single
    batch), with those batches."""
    batches: list[tuple[int, int]] = []
    for lo, hi in _batches(bounds):
        if batches and hi - batches[0][0] > most:
            yield batches[0][0], batches[-1][1], batches
            batches = []
        batches.append((lo, hi))
    if batches:
        yield batches[0][0], batches[-1][1], batches


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
            order = diagonal_order(channels, levels, n, lane_frames)
            flat = np.append(block.reshape(-1), k)
            # the encoder knows every context: rows for up to _ROWS codes at once, coded in the decoder's batches
            for a, z, batches in _spans(order.bounds, _ROWS):
                chain = priors.chain(order.levels[a:z], flat[order.prev_at[a:z]], flat[order.coarse_at[a:z]])
                first, rest = np.divmod(flat[order.at[a:z]].astype(np.int32), priors.block)
                w_first, w_rest = priors.hi_weights(chain), priors.lo_weights(chain, first)
                for lo, hi in batches:
                    encoder.encode(first[lo - a : hi - a], model, w_first[lo - a : hi - a])
                    encoder.encode(rest[lo - a : hi - a], model, w_rest[lo - a : hi - a])
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
    for (start, n), (offset, n_words) in zip(_blocks(n_frames, lane_frames, block_lanes), spans):
        words = np.frombuffer(payload, "<u4", n_words, offset).astype(np.uint32)
        try:
            decoder = cst.stream.queue.RangeDecoder(words)
            if kind == "static":
                for level in range(levels):
                    symbols = decoder.decode(statics[level], channels * n)
                    codes[:, level, start : start + n] = symbols.reshape(channels, n)
            else:
                order = diagonal_order(channels, levels, n, lane_frames)
                flat = np.full(channels * levels * n + 1, k, np.int64)
                for lo, hi in _batches(order.bounds):
                    chain = priors.chain(order.levels[lo:hi], flat[order.prev_at[lo:hi]],
                                         flat[order.coarse_at[lo:hi]])
                    first = decoder.decode(model, priors.hi_weights(chain)).astype(np.int64)
                    rest = decoder.decode(model, priors.lo_weights(chain, first))
                    flat[order.at[lo:hi]] = first * priors.block + rest
                if int(flat[:-1].max(initial=0)) >= k:
                    raise CodecFileError(f"{name}: corrupted .mlae file (code {int(flat[:-1].max())} of {k} in the "
                                         f"block at frame {start})")
                codes[:, :, start : start + n] = flat[:-1].reshape(channels, levels, n)
            exhausted = decoder.maybe_exhausted()
        except CodecFileError:
            raise
        except Exception as exc:  # whatever the coder raises on a crafted stream is a bad file, not a crash
            raise CodecFileError(f"{name}: corrupted .mlae file (entropy decoding failed: {exc})") from None
        if not exhausted:
            raise CodecFileError(f"{name}: corrupted .mlae file (coded block at frame {start} has words left over)")
    return codes


__all__ = ["BLOCK_SECONDS", "CODES_PER_WORD", "EntropyBoundError", "LANE_SECONDS", "block_layout", "block_words",
           "decode", "diagonal_order", "encode", "max_codes"]
