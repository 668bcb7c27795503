"""The ``.mlae`` file: a fixed little-endian header, bit-packed codes and a CRC32. Read/write only.

The byte layout is specified in ``docs/mlae_format.md``; this module is its only implementation. Reading parses
bytes with ``struct`` and ``numpy`` only -- nothing is ever unpickled -- and every way a file can be unusable
(truncated, corrupted, wrong magic, future version, inconsistent header, a field value no writer produces) raises
:class:`CodecFileError`. The writer applies the same header rules (:func:`check_header`), so it never writes a file
the reader would refuse.

    f = MLAEFile.load("song.mlae")     # or codec_file.read(path_or_fileobj)
    f.save("copy.mlae")                # or codec_file.write(path_or_fileobj, f)
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
import zlib
from typing import BinaryIO

import numpy as np

from ..errors import CodecFileError
from ..protocol import bits_per_code

MAGIC = b"MLAE"
FORMAT_VERSION = 1

# magic, version | sample_rate, channels, original_length | model_sample_rate, hop_length, codebook_size,
# n_quantizers, chunk_length, n_frames | input_loudness_db, applied_gain_db | fingerprint length, preset length.
# All numeric fields sit at fixed offsets; the two variable-length strings follow them.
_PREAMBLE = struct.Struct("<4sH")
_FIXED = struct.Struct("<4sH IHQ IIIHIQ ff BH")
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
    version: int = FORMAT_VERSION

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
        """Bitrate of the codes alone (all channels), excluding header and CRC."""
        return self.channels * self.n_quantizers * self.bits_per_code * self.frame_rate / 1000.0

    def save(self, path_or_fileobj: str | os.PathLike | BinaryIO) -> None:
        """Write this file (see :func:`write`)."""
        write(path_or_fileobj, self)

    @classmethod
    def load(cls, path_or_fileobj: str | os.PathLike | BinaryIO) -> MLAEFile:
        """Read a ``.mlae`` file (see :func:`read`)."""
        return read(path_or_fileobj)

    def describe(self, size: int | None = None) -> list[str]:
        """Human-readable lines about this file (``size``: its size in bytes, for the true bitrate); ``mlae info``."""
        lines = [
            f"format version  {self.version}",
            f"audio           {self.sample_rate} Hz, {self.channels} channel{'s' if self.channels != 1 else ''}, "
            f"{self.original_length} samples ({self.duration:.2f} s)",
            f"model           {self.preset} (weights {self.fingerprint[:12] or 'unknown'}), "
            f"{self.model_sample_rate} Hz, hop {self.hop_length} ({self.frame_rate:.2f} frames/s)",
            f"codes           {self.n_quantizers} levels x {self.bits_per_code} bits (codebook {self.codebook_size}), "
            f"{self.n_frames} frames, chunks of {self.chunk_length} frames",
            f"loudness        input {self.input_loudness_db:.1f} LUFS, applied gain {self.applied_gain_db:+.2f} dB",
            f"bitrate         {self.bitrate_kbps / self.channels:.2f} kbps per channel, "
            f"{self.bitrate_kbps:.2f} kbps codes",
        ]
        if size is not None:
            pcm = self.original_length * self.channels * 2
            lines[-1] += f", {size * 8 / max(self.duration, 1e-9) / 1000:.2f} kbps file"
            lines.append(f"compression     {pcm / size:.1f} : 1 vs 16-bit PCM at {self.sample_rate} Hz x "
                         f"{self.channels} ch ({pcm} -> {size} bytes)")
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


def to_bytes(f: MLAEFile) -> bytes:
    """Serialise ``f`` to the ``.mlae`` byte layout."""
    _validate(f)
    codes = np.asarray(f.codes)
    preset = f.preset.encode("utf-8")
    fingerprint = bytes.fromhex(f.fingerprint)
    header = _FIXED.pack(
        MAGIC, FORMAT_VERSION,
        f.sample_rate, codes.shape[0], f.original_length,
        f.model_sample_rate, f.hop_length, f.codebook_size, codes.shape[1], f.chunk_length, codes.shape[2],
        f.input_loudness_db, f.applied_gain_db,
        len(fingerprint), len(preset),
    )  # fmt: skip
    # Frame-major on disk (frame, channel, level): a writer can append frames as they are encoded.
    payload = pack_codes(codes.transpose(2, 0, 1), f.bits_per_code)
    body = header + fingerprint + preset + payload
    return body + _CRC.pack(zlib.crc32(body))


def from_bytes(data: bytes, name: str = "<bytes>") -> MLAEFile:
    """Parse a whole ``.mlae`` file; ``name`` only labels error messages.

    Checks in this order: magic, version, the fixed header's length, the announced total length (header, strings,
    codes, CRC: nothing is allocated for codes before the file is known to hold them), the CRC, the header values
    (:func:`check_header`), the zero padding after the last code, and each code against the codebook size.
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
    if len(data) < _FIXED.size:
        raise CodecFileError(f"{name}: truncated .mlae file ({len(data)} bytes, header needs {_FIXED.size})")
    (
        _, _, sample_rate, channels, original_length,
        model_sample_rate, hop_length, codebook_size, n_quantizers, chunk_length, n_frames,
        input_loudness_db, applied_gain_db, fingerprint_len, preset_len,
    ) = _FIXED.unpack_from(data)  # fmt: skip
    bits = bits_per_code(codebook_size)
    offset = _FIXED.size + fingerprint_len + preset_len
    expected = offset + _payload_size(channels, n_quantizers, n_frames, bits) + _CRC.size
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
    fingerprint = data[_FIXED.size : _FIXED.size + fingerprint_len].hex()
    try:
        preset = data[_FIXED.size + fingerprint_len : offset].decode("utf-8")
    except UnicodeDecodeError:
        raise CodecFileError(f"{name}: corrupted .mlae file (preset name is not UTF-8)") from None
    if min(channels, n_quantizers, sample_rate, model_sample_rate, hop_length, codebook_size) < 1:
        raise CodecFileError(f"{name}: corrupted .mlae header (a size or rate field is zero)")
    header = MLAEFile(
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
        codes=np.broadcast_to(np.int32(0), (channels, n_quantizers, n_frames)),  # the shape only, no memory
        version=version,
    )
    check_header(header, name)
    count = channels * n_quantizers * n_frames
    payload = data[offset : expected - _CRC.size]
    spare_bits = len(payload) * 8 - count * bits
    if spare_bits and payload[-1] & ((1 << spare_bits) - 1):
        raise CodecFileError(f"{name}: corrupted .mlae file (padding bits after the last code are not zero)")
    flat = unpack_codes(payload, count, bits)
    if count and flat.max() >= codebook_size:
        raise CodecFileError(f"{name}: corrupted .mlae file (code {flat.max()} >= codebook size {codebook_size})")
    codes = flat.astype(np.int32).reshape(n_frames, channels, n_quantizers).transpose(1, 2, 0)
    return MLAEFile(
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
        codes=np.ascontiguousarray(codes),
        version=version,
    )


def write(path_or_fileobj: str | os.PathLike | BinaryIO, f: MLAEFile) -> None:
    """Write ``f`` to a path or a binary file object. A path is written to a temporary name first and renamed,
    so an interrupted write never leaves a half-written file under the final name."""
    data = to_bytes(f)
    if hasattr(path_or_fileobj, "write"):
        path_or_fileobj.write(data)
        return
    path = os.fspath(path_or_fileobj)
    tmp = path + ".part"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def read(path_or_fileobj: str | os.PathLike | BinaryIO) -> MLAEFile:
    """Read a ``.mlae`` file from a path or a binary file object."""
    if hasattr(path_or_fileobj, "read"):
        return from_bytes(path_or_fileobj.read(), name=getattr(path_or_fileobj, "name", "<file>"))
    path = os.fspath(path_or_fileobj)
    with open(path, "rb") as fh:
        head = fh.read(_PREAMBLE.size)
        # Check the magic before reading the rest, so pointing at a huge non-.mlae file fails fast.
        if len(head) >= 4 and head[:4] != MAGIC:
            raise CodecFileError(f"{path}: not an .mlae file (bad magic bytes {head[:4]!r})")
        return from_bytes(head + fh.read(), name=path)


__all__ = [
    "MAGIC", "FORMAT_VERSION", "MAX_GAIN_DB", "MAX_LOUDNESS_DB", "MLAEFile", "bits_per_code", "check_header",
    "expected_frames", "pack_codes", "unpack_codes", "to_bytes", "from_bytes", "write", "read",
]
