"""The ``.mlae`` file: a fixed little-endian header, the codes (bit-packed or entropy-coded) and a CRC32.

The byte layout is specified in ``docs/mlae_format.md``; this module is its only implementation. Reading parses
bytes with ``struct`` and ``numpy`` only -- nothing is ever unpickled -- and every way a file can be unusable
(truncated, corrupted, wrong magic, future version, inconsistent header, a field value no writer produces) raises
:class:`CodecFileError`. The writer applies the same header rules (:func:`check_header`), so it never writes a file
the reader would refuse.

Version 1 files hold bit-packed codes. Version 2 adds a payload kind: bit-packed, or range-coded
(:mod:`~ml_audio_encoder.runtime.entropy`) with the ``static`` or ``context`` distribution of the priors whose id
the header carries. The writer writes bit-packed payloads as version 1 (every reader reads them) and entropy-coded
ones as version 2; ``MLAEFile.entropy`` says which, and ``save(path, entropy=...)`` switches.

    f = MLAEFile.load("song.mlae")     # or codec_file.read(path_or_fileobj); entropy-coded files need their priors
    f.save("copy.mlae")                # or codec_file.write(path_or_fileobj, f); f.save(p, entropy="none")
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import warnings
import zlib
from typing import Any, BinaryIO

import numpy as np

from ..errors import CodecFileError
from ..protocol import bits_per_code

ID_BYTES = 16  # prior id in a version 2 header: the first 16 bytes of the priors file's SHA-256

MAGIC = b"MLAE"
FORMAT_VERSION = 2  # the newest version this module reads; it writes 1 (bit-packed) or 2 (entropy-coded)
PAYLOAD_KINDS = {"none": 0, "static": 1, "context": 3}  # the payload kinds a writer offers, as numbered in a header
ENTROPY_KINDS = tuple(PAYLOAD_KINDS)
_KIND_NAMES = {number: name for name, number in PAYLOAD_KINDS.items()}
RETIRED_KINDS = {2: "context coding with whole-codebook rows (development builds before 2026-11-29)"}

# magic, version | sample_rate, channels, original_length | model_sample_rate, hop_length, codebook_size,
# n_quantizers, chunk_length, n_frames | input_loudness_db, applied_gain_db | fingerprint length, preset length.
# All numeric fields sit at fixed offsets; the two variable-length strings follow them.
_PREAMBLE = struct.Struct("<4sH")
_FIXED = struct.Struct("<4sH IHQ IIIHIQ ff BH")
# version 2 only, right after the version 1 fields: payload kind, prior id length, lane frames, lanes per block,
# payload length
_V2 = struct.Struct("<BBIHQ")
_CRC = struct.Struct("<I")

# Codes are packed in pieces of this many values (a multiple of 8, so every piece ends on a byte boundary)
# to bound the temporary bit matrix for long files.
_PACK_PIECE = 1 << 20

# Header values no writer produces (docs/mlae_format.md, "Validity"): the reader refuses them, the writer too.
MAX_GAIN_DB = 120.0  # |applied_gain_db|: the encoder refuses input whose level would need more (peak > 1e6)
MAX_LOUDNESS_DB = 200.0  # |input_loudness_db| when finite; -inf means silence
FINGERPRINT_BYTES = (0, 32)  # unknown, or SHA-256


@dataclasses.dataclass
class MLAEFile:
    """Everything a ``.mlae`` file holds. ``codes`` is an integer array ``(channels, n_quantizers, n_frames)``.

    ``channels``, ``n_quantizers`` and ``n_frames`` are read from ``codes.shape`` rather than stored twice, so
    they cannot disagree with the codes.
    """

    sample_rate: int  # rate of the original audio (restored on decode)
    original_length: int  # samples per channel of the original audio
    preset: str  # model preset name that wrote the codes
    fingerprint: str  # hex digest of the model weights ("" = unknown)
    model_sample_rate: int
    hop_length: int
    codebook_size: int
    chunk_length: int  # frames per coded window (W), informational for the decoder
    input_loudness_db: float  # integrated loudness of the input (LUFS), -inf for silence
    applied_gain_db: float  # gain applied before encoding; decode applies its negative
    codes: np.ndarray
    version: int = 1  # the version read from disk (a writer picks its own: 1 bit-packed, 2 entropy-coded)
    entropy: str = "none"  # payload kind: "none" (bit-packed), "static" or "context" (range-coded with `priors`)
    priors: Any = dataclasses.field(default=None, repr=False, compare=False)  # entropy.Priors of the weights
    payload_bytes: int | None = dataclasses.field(default=None, compare=False)  # as read from disk

    @property
    def channels(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_quantizers(self) -> int:
        return int(self.codes.shape[1])

    @property
    def n_frames(self) -> int:
        return int(self.codes.shape[2])

    @property
    def bits_per_code(self) -> int:
        return bits_per_code(self.codebook_size)

    @property
    def frame_rate(self) -> float:
        return self.model_sample_rate / self.hop_length

    @property
    def duration(self) -> float:
        """Duration of the original audio in seconds."""
        return self.original_length / self.sample_rate

    @property
    def bitrate_kbps(self) -> float:
        """Bitrate of the bit-packed codes (all channels), excluding header and CRC."""
        return self.channels * self.n_quantizers * self.bits_per_code * self.frame_rate / 1000.0

    @property
    def packed_bytes(self) -> int:
        """Bytes of the codes when bit-packed (the version 1 payload)."""
        return _payload_size(self.channels, self.n_quantizers, self.n_frames, self.bits_per_code)

    def save(self, path_or_fileobj: str | os.PathLike | BinaryIO, entropy: str | None = None) -> None:
        """Write this file (see :func:`write`); ``entropy`` overrides :attr:`entropy` (``"none"``: bit-packed)."""
        write(path_or_fileobj, self, entropy=entropy)

    @classmethod
    def load(cls, path_or_fileobj: str | os.PathLike | BinaryIO, priors: Any = None) -> MLAEFile:
        """Read a ``.mlae`` file (see :func:`read`)."""
        return read(path_or_fileobj, priors=priors)

    def describe(self, size: int | None = None) -> list[str]:
        """Human-readable lines about this file (``size``: its size in bytes, for the true bitrate); ``mlae info``."""
        codes_kbps = self.bitrate_kbps
        if self.entropy != "none" and self.payload_bytes is not None:
            codes_kbps = self.payload_bytes * 8 / max(self.duration, 1e-9) / 1000
        lines = [
            f"format version  {self.version}",
            f"audio           {self.sample_rate} Hz, {self.channels} channel{'s' if self.channels != 1 else ''}, "
            f"{self.original_length} samples ({self.duration:.2f} s)",
            f"model           {self.preset} (weights {self.fingerprint[:12] or 'unknown'}), "
            f"{self.model_sample_rate} Hz, hop {self.hop_length} ({self.frame_rate:.2f} frames/s)",
            f"codes           {self.n_quantizers} levels x {self.bits_per_code} bits (codebook {self.codebook_size}), "
            f"{self.n_frames} frames, chunks of {self.chunk_length} frames",
            f"loudness        input {self.input_loudness_db:.1f} LUFS, applied gain {self.applied_gain_db:+.2f} dB",
            f"bitrate         {codes_kbps / self.channels:.2f} kbps per channel, {codes_kbps:.2f} kbps codes"
            + (f" ({self.entropy}-coded; bit-packed {self.bitrate_kbps:.2f})" if self.entropy != "none" else ""),
        ]
        if size is not None:
            pcm = self.original_length * self.channels * 2
            lines[-1] += f", {size * 8 / max(self.duration, 1e-9) / 1000:.2f} kbps file"
            lines.append(f"compression     {pcm / size:.1f} : 1 vs 16-bit PCM at {self.sample_rate} Hz x "
                         f"{self.channels} ch ({pcm} -> {size} bytes)")
        return lines + _describe_payload(self)


_INFO_FRAMES = 4500  # `mlae info` measures bits per level on at most this many frames (60 s at 75 frames/s)


def _describe_payload(f: MLAEFile) -> list[str]:
    """``mlae info``'s lines on the payload: its kind and size, the saving over bit-packing, and bits per code per
    level (for a bit-packed file: what the context prior would spend, when the weights' priors ship)."""
    from . import entropy
    from .entropy import coder

    codes = max(1, f.channels * f.n_quantizers * f.n_frames)
    packed = f.packed_bytes
    if f.entropy == "none":
        lines = [f"payload         bit-packed, {packed} bytes ({f.bits_per_code} bits per code)"]
        try:
            priors = entropy.shipped_priors(f.preset)
        except (OSError, ValueError):
            priors = None
        if priors is None or priors.fingerprint != f.fingerprint or f.n_quantizers > priors.n_levels \
                or priors.codebook_size != f.codebook_size:
            return lines
        kind, what = "context", "if context-coded (mlae compress --entropy context)"
    else:
        size = f.payload_bytes if f.payload_bytes is not None else len(to_bytes(f)) - len(to_bytes(f, "none")) + packed
        lines = [f"payload         {f.entropy}-coded with priors {f.priors.id[:12]}: {size} bytes, "
                 f"{size * 8 / codes:.2f} bits per code; bit-packed {packed} bytes: {100 * (1 - size / packed):.1f}% "
                 "smaller"]
        priors, kind, what = f.priors, f.entropy, "ideal, under the file's prior"
    part = f.codes[:, :, :_INFO_FRAMES]
    bits = priors.code_lengths(part, kind, coder.block_layout(f.frame_rate)[0])
    lines.append("bits per code   " + " ".join(f"L{i + 1} {b:.2f}" for i, b in enumerate(bits)) + f" ({what}"
                 + (f", first {_INFO_FRAMES} frames" if f.n_frames > _INFO_FRAMES else "") + ")")
    if f.entropy == "none":
        lines.append(f"entropy coding  would save ~{100 * (1 - bits.sum() / (f.n_quantizers * f.bits_per_code)):.1f}%")
    return lines


def expected_frames(original_length: int, sample_rate: int, model_sample_rate: int, hop_length: int) -> int:
    """``F = ceil(ceil(original_length · model_sample_rate / sample_rate) / hop_length)``, in exact integers."""
    model_length = -(-int(original_length) * int(model_sample_rate) // int(sample_rate))
    return -(-model_length // int(hop_length))


def check_header(f: MLAEFile, name: str = "file") -> None:
    """Raise :class:`CodecFileError` for header values that no writer produces (the rules of the spec's "Validity").

    Rates, sizes, channels, levels and the original length are at least 1; the frame count matches the original
    length; the applied gain is finite and at most :data:`MAX_GAIN_DB` in magnitude (a NaN gain would decode to
    full-scale noise, 1e30 to silence); the input loudness is ``-inf`` (silence) or finite within
    :data:`MAX_LOUDNESS_DB`; the fingerprint is empty or a SHA-256 (32 bytes); the preset is a non-empty printable
    string.
    """
    sizes = {"sample_rate": f.sample_rate, "model_sample_rate": f.model_sample_rate, "hop_length": f.hop_length,
             "codebook_size": f.codebook_size, "channels": f.channels, "n_quantizers": f.n_quantizers,
             "original_length": f.original_length}
    zero = [key for key, value in sizes.items() if value < 1]
    if zero:
        raise CodecFileError(f"{name}: invalid .mlae header ({', '.join(zero)} must be at least 1)")
    frames = expected_frames(f.original_length, f.sample_rate, f.model_sample_rate, f.hop_length)
    if f.n_frames != frames:
        raise CodecFileError(f"{name}: invalid .mlae header ({f.n_frames} frames do not match an original length of "
                             f"{f.original_length} samples at {f.sample_rate} Hz, which gives {frames})")
    gain, loudness = float(f.applied_gain_db), float(f.input_loudness_db)
    if not (math.isfinite(gain) and abs(gain) <= MAX_GAIN_DB):
        raise CodecFileError(f"{name}: invalid .mlae header (applied gain {gain} dB; must be finite and within "
                             f"±{MAX_GAIN_DB:g} dB)")
    if not (loudness == -math.inf or (math.isfinite(loudness) and abs(loudness) <= MAX_LOUDNESS_DB)):
        raise CodecFileError(f"{name}: invalid .mlae header (input loudness {loudness} LUFS; must be -inf for "
                             f"silence or finite within ±{MAX_LOUDNESS_DB:g})")
    if len(f.fingerprint) // 2 not in FINGERPRINT_BYTES or len(f.fingerprint) % 2:
        raise CodecFileError(f"{name}: invalid .mlae header (weights fingerprint of {len(f.fingerprint) / 2:g} "
                             "bytes; must be empty or a 32-byte SHA-256)")
    if not f.preset or not f.preset.isprintable():
        raise CodecFileError(f"{name}: invalid .mlae header (preset name {f.preset!r} is empty or holds control "
                             "characters)")


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers (any shape, C order) MSB-first at ``bits`` bits each; pads the last byte with 0."""
    flat = np.ascontiguousarray(codes).reshape(-1).astype(np.uint64)
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint64)
    pieces = []
    for start in range(0, flat.size, _PACK_PIECE):
        part = flat[start : start + _PACK_PIECE]
        bit_matrix = ((part[:, None] >> shifts) & np.uint64(1)).astype(np.uint8)
        pieces.append(np.packbits(bit_matrix.reshape(-1)).tobytes())
    return b"".join(pieces)


def unpack_codes(payload: bytes, count: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack_codes`: ``count`` integers as a flat int64 array."""
    raw = np.frombuffer(payload, dtype=np.uint8)
    out = np.empty(count, dtype=np.int64)
    piece_bytes = _PACK_PIECE * bits // 8
    for i, start in enumerate(range(0, count, _PACK_PIECE)):
        n = min(_PACK_PIECE, count - start)
        bit_matrix = np.unpackbits(raw[i * piece_bytes : i * piece_bytes + (n * bits + 7) // 8])[: n * bits]
        bit_matrix = bit_matrix.reshape(n, bits)
        values = np.zeros(n, dtype=np.int64)
        for column in range(bits):  # loop over bit positions only; each step is vectorised over all codes
            values = (values << 1) | bit_matrix[:, column]
        out[start : start + n] = values
    return out


def _payload_size(channels: int, n_quantizers: int, n_frames: int, bits: int) -> int:
    return (channels * n_quantizers * n_frames * bits + 7) // 8


def _validate(f: MLAEFile) -> None:
    """Reject a header we could not read back unambiguously (a writer bug, so ValueError-style CodecFileError)."""
    codes = np.asarray(f.codes)
    if codes.ndim != 3:
        raise CodecFileError(f"codes must have shape (channels, n_quantizers, n_frames), got {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        raise CodecFileError(f"codes must be integers, got dtype {codes.dtype}")
    if f.codebook_size < 1 or f.codebook_size > 2**32 - 1:
        raise CodecFileError(f"codebook_size {f.codebook_size} out of range")
    if codes.size and (codes.min() < 0 or codes.max() >= f.codebook_size):
        raise CodecFileError(
            f"codes out of range [0, {f.codebook_size}): min {codes.min()}, max {codes.max()}"
        )
    if not 1 <= codes.shape[0] <= 0xFFFF or not 1 <= codes.shape[1] <= 0xFFFF:
        raise CodecFileError(f"channels and n_quantizers must be in 1..65535, got {codes.shape[:2]}")
    for name in ("sample_rate", "model_sample_rate", "hop_length"):
        if not 1 <= getattr(f, name) <= 2**32 - 1:
            raise CodecFileError(f"{name} must be in 1..2**32-1, got {getattr(f, name)}")
    if not 0 <= f.chunk_length <= 2**32 - 1:
        raise CodecFileError(f"chunk_length must be in 0..2**32-1, got {f.chunk_length}")
    if not 0 <= f.original_length < 2**64:
        raise CodecFileError(f"original_length out of range: {f.original_length}")
    if len(f.preset.encode("utf-8")) > 0xFFFF:
        raise CodecFileError("preset name too long")
    try:
        bytes.fromhex(f.fingerprint)
    except ValueError:
        raise CodecFileError(f"fingerprint must be a hex string, got {f.fingerprint!r}") from None
    check_header(dataclasses.replace(f, codes=codes), "cannot write .mlae file")


def _resolve_priors(f: MLAEFile, kind: str, priors: Any, name: str):
    from . import entropy

    priors = priors if priors is not None else f.priors
    if priors is None and f.fingerprint:
        found = entropy.shipped_priors(f.preset)
        priors = found if found is not None and found.fingerprint == f.fingerprint else None
    if priors is None:
        raise CodecFileError(f"{name}: no entropy priors for weights {f.fingerprint[:12] or '(unknown)'} of "
                             f"{f.preset}; write a bit-packed file (entropy='none', mlae compress --entropy none)")
    entropy.check_priors(priors, f.fingerprint, f.codebook_size, f.n_quantizers, name)
    return priors


def to_bytes(f: MLAEFile, entropy: str | None = None, priors: Any = None) -> bytes:
    """Serialise ``f`` to the ``.mlae`` byte layout: version 1 with bit-packed codes, or version 2 with codes
    range-coded under ``entropy`` (default ``f.entropy``) with ``priors`` (default ``f.priors``, else the priors
    shipped for ``f``'s weights). Priors of other weights are refused."""
    kind = f.entropy if entropy is None else entropy
    if kind not in ENTROPY_KINDS:
        raise CodecFileError(f"entropy must be one of {', '.join(ENTROPY_KINDS)}, got {kind!r}")
    _validate(f)
    codes = np.asarray(f.codes)
    preset = f.preset.encode("utf-8")
    fingerprint = bytes.fromhex(f.fingerprint)
    fixed = (f.sample_rate, codes.shape[0], f.original_length, f.model_sample_rate, f.hop_length, f.codebook_size,
             codes.shape[1], f.chunk_length, codes.shape[2], f.input_loudness_db, f.applied_gain_db,
             len(fingerprint), len(preset))
    if kind == "none":
        # Frame-major on disk (frame, channel, level): a writer can append frames as they are encoded.
        body = _FIXED.pack(MAGIC, 1, *fixed) + fingerprint + preset + pack_codes(codes.transpose(2, 0, 1),
                                                                                f.bits_per_code)
        return body + _CRC.pack(zlib.crc32(body))
    from .entropy import coder

    priors = _resolve_priors(f, kind, priors, "cannot write .mlae file")
    lane_frames, block_lanes = coder.block_layout(f.frame_rate)
    try:
        payload = coder.encode(codes, priors, kind, lane_frames, block_lanes)
    except coder.EntropyBoundError as exc:  # cannot happen with fitted priors; stay readable regardless
        warnings.warn(f"entropy coding refused ({exc}); writing bit-packed codes", stacklevel=2)
        return to_bytes(f, "none")
    prior_id = bytes.fromhex(priors.id)
    header = _FIXED.pack(MAGIC, 2, *fixed) + _V2.pack(PAYLOAD_KINDS[kind], len(prior_id), lane_frames,
                                                       block_lanes, len(payload))
    body = header + fingerprint + preset + prior_id + payload
    return body + _CRC.pack(zlib.crc32(body))


def _unpack_payload(payload: bytes, channels: int, n_quantizers: int, n_frames: int, codebook_size: int,
                    name: str) -> np.ndarray:
    """Bit-packed codes -> int32 ``(channels, n_quantizers, n_frames)``, refusing non-zero padding and codes >= K."""
    bits = bits_per_code(codebook_size)
    count = channels * n_quantizers * n_frames
    spare_bits = len(payload) * 8 - count * bits
    if spare_bits and payload[-1] & ((1 << spare_bits) - 1):
        raise CodecFileError(f"{name}: corrupted .mlae file (padding bits after the last code are not zero)")
    flat = unpack_codes(payload, count, bits)
    if count and flat.max() >= codebook_size:
        raise CodecFileError(f"{name}: corrupted .mlae file (code {flat.max()} >= codebook size {codebook_size})")
    return np.ascontiguousarray(flat.astype(np.int32).reshape(n_frames, channels, n_quantizers).transpose(1, 2, 0))


def from_bytes(data: bytes, name: str = "<bytes>", priors: Any = None) -> MLAEFile:
    """Parse a whole ``.mlae`` file; ``name`` only labels error messages; ``priors`` (a ``Priors`` or several)
    are searched for an entropy-coded file's prior id before the shipped ones.

    Checks in this order: magic, version, the fixed header's length, the announced total length (header, strings,
    codes, CRC: nothing is allocated for codes before the file is known to hold them), the CRC, the header values
    (:func:`check_header`), then the payload: for bit-packed codes the zero padding and each code against the
    codebook size; for entropy-coded codes the payload kind fields, the priors (found by id, of the same weights)
    and the block structure before any decoding.
    """
    data = bytes(data)
    if data[:4] != MAGIC[: len(data)] or (len(data) >= 4 and data[:4] != MAGIC):
        raise CodecFileError(f"{name}: not an .mlae file (bad magic bytes {data[:4]!r})")
    if len(data) < _PREAMBLE.size:
        raise CodecFileError(f"{name}: truncated .mlae file ({len(data)} bytes)")
    _, version = _PREAMBLE.unpack_from(data)
    if version > FORMAT_VERSION:
        raise CodecFileError(
            f"{name}: .mlae format version {version} is newer than this reader (version {FORMAT_VERSION}); "
            "upgrade ml_audio_encoder"
        )
    if version < 1:
        raise CodecFileError(f"{name}: invalid .mlae format version {version}")
    fixed_size = _FIXED.size + (_V2.size if version >= 2 else 0)
    if len(data) < fixed_size:
        raise CodecFileError(f"{name}: truncated .mlae file ({len(data)} bytes, header needs {fixed_size})")
    (
        _, _, sample_rate, channels, original_length,
        model_sample_rate, hop_length, codebook_size, n_quantizers, chunk_length, n_frames,
        input_loudness_db, applied_gain_db, fingerprint_len, preset_len,
    ) = _FIXED.unpack_from(data)  # fmt: skip
    packed = _payload_size(channels, n_quantizers, n_frames, bits_per_code(codebook_size))
    kind, id_len, lane_frames, block_lanes, payload_len = 0, 0, 0, 0, packed
    if version >= 2:
        kind, id_len, lane_frames, block_lanes, payload_len = _V2.unpack_from(data, _FIXED.size)
    offset = fixed_size + fingerprint_len + preset_len + id_len
    expected = offset + payload_len + _CRC.size
    if len(data) < expected:
        raise CodecFileError(
            f"{name}: truncated or corrupted .mlae file ({len(data)} bytes, header announces {expected})"
        )
    if len(data) > expected:
        raise CodecFileError(
            f"{name}: corrupted .mlae file ({len(data) - expected} unexpected bytes after the announced end)"
        )
    (stored_crc,) = _CRC.unpack_from(data, expected - _CRC.size)
    if zlib.crc32(data[: expected - _CRC.size]) != stored_crc:
        raise CodecFileError(f"{name}: corrupted .mlae file (CRC32 mismatch)")
    fingerprint = data[fixed_size : fixed_size + fingerprint_len].hex()
    try:
        preset = data[fixed_size + fingerprint_len : offset - id_len].decode("utf-8")
    except UnicodeDecodeError:
        raise CodecFileError(f"{name}: corrupted .mlae file (preset name is not UTF-8)") from None
    if min(channels, n_quantizers, sample_rate, model_sample_rate, hop_length, codebook_size) < 1:
        raise CodecFileError(f"{name}: corrupted .mlae header (a size or rate field is zero)")
    fields = dict(
        sample_rate=sample_rate,
        original_length=original_length,
        preset=preset,
        fingerprint=fingerprint,
        model_sample_rate=model_sample_rate,
        hop_length=hop_length,
        codebook_size=codebook_size,
        chunk_length=chunk_length,
        input_loudness_db=float(input_loudness_db),
        applied_gain_db=float(applied_gain_db),
        version=version,
    )
    shape = (channels, n_quantizers, n_frames)
    check_header(MLAEFile(codes=np.broadcast_to(np.int32(0), shape), **fields), name)  # the shape only, no memory
    payload = data[offset : expected - _CRC.size]
    if kind in RETIRED_KINDS:
        raise CodecFileError(f"{name}: payload kind {kind} ({RETIRED_KINDS[kind]}) is no longer read; compress the "
                             "audio again")
    if kind not in _KIND_NAMES or id_len != (0 if kind == 0 else ID_BYTES) or (kind == 0) != (block_lanes == 0) \
            or (kind == 0) != (lane_frames == 0) or (kind == 0 and payload_len != packed) \
            or (kind and fingerprint_len != 32):
        raise CodecFileError(f"{name}: invalid .mlae header (payload kind {kind} with prior id of {id_len} bytes, "
                             f"lanes of {lane_frames} frames, {block_lanes} per block, {payload_len} payload bytes)")
    if kind == 0:
        codes = _unpack_payload(payload, channels, n_quantizers, n_frames, codebook_size, name)
        return MLAEFile(codes=codes, payload_bytes=len(payload), **fields)
    from . import entropy
    from .entropy import coder

    prior_id = data[offset - id_len : offset].hex()
    extra = [priors] if isinstance(priors, entropy.Priors) else list(priors or ())
    found = entropy.find_priors(prior_id, preset, extra)
    if found is None:
        raise CodecFileError(f"{name}: entropy-coded with priors {prior_id[:12]} (weights {fingerprint[:12]} of "
                             f"{preset}), which this installation does not have")
    entropy.check_priors(found, fingerprint, codebook_size, n_quantizers, name)
    codes = coder.decode(payload, shape, found, _KIND_NAMES[kind], lane_frames, block_lanes, name)
    return MLAEFile(codes=codes, entropy=_KIND_NAMES[kind], priors=found, payload_bytes=len(payload), **fields)


def write(path_or_fileobj: str | os.PathLike | BinaryIO, f: MLAEFile, entropy: str | None = None) -> None:
    """Write ``f`` to a path or a binary file object (``entropy`` as in :func:`to_bytes`). A path is written to a
    temporary name first and renamed, so an interrupted write never leaves a half-written file under the final
    name."""
    data = to_bytes(f, entropy)
    if hasattr(path_or_fileobj, "write"):
        path_or_fileobj.write(data)
        return
    path = os.fspath(path_or_fileobj)
    tmp = path + ".part"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def read(path_or_fileobj: str | os.PathLike | BinaryIO, priors: Any = None) -> MLAEFile:
    """Read a ``.mlae`` file from a path or a binary file object (``priors`` as in :func:`from_bytes`)."""
    if hasattr(path_or_fileobj, "read"):
        return from_bytes(path_or_fileobj.read(), name=getattr(path_or_fileobj, "name", "<file>"), priors=priors)
    path = os.fspath(path_or_fileobj)
    with open(path, "rb") as fh:
        head = fh.read(_PREAMBLE.size)
        # Check the magic before reading the rest, so pointing at a huge non-.mlae file fails fast.
        if len(head) >= 4 and head[:4] != MAGIC:
            raise CodecFileError(f"{path}: not an .mlae file (bad magic bytes {head[:4]!r})")
        return from_bytes(head + fh.read(), name=path, priors=priors)


__all__ = [
    "ENTROPY_KINDS", "PAYLOAD_KINDS", "MAGIC", "FORMAT_VERSION", "MAX_GAIN_DB", "MAX_LOUDNESS_DB", "MLAEFile",
    "bits_per_code", "check_header", "expected_frames", "pack_codes", "unpack_codes", "to_bytes", "from_bytes",
    "write", "read",
]
