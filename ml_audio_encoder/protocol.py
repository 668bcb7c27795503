"""What every codec runtime offers: the :class:`Codec` protocol, and the facts derived from its four numbers.

:class:`~ml_audio_encoder.models.codec.MLAudioEncoder` (Keras) and :class:`~ml_audio_encoder.runtime.lite.LiteCodec`
(LiteRT, no TensorFlow) both satisfy :class:`Codec`; :mod:`ml_audio_encoder.runtime.compress`, the CLI and the
benchmark are written against it and never ask which one they hold.

A bottom-floor module: it imports nothing from the package, so the models and every runtime can share the helpers
(:func:`bits_per_code`, :func:`check_levels`, :func:`bitrate`) instead of each keeping a copy.

Array layout of the codec API (channels-last, as the networks use): audio ``(batch, samples, 1)`` float32 at
``sample_rate``; codes ``(batch, n_quantizers, frames)`` integers in ``0..codebook_size - 1`` with
``frames = ceil(samples / hop_length)``; decoded audio ``(batch, frames · hop_length, 1)``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


def bits_per_code(codebook_size: int) -> int:
    """Bits one code takes when bit-packed: ``ceil(log2(codebook_size))``, at least 1 (exact integer arithmetic)."""
    return max(1, (int(codebook_size) - 1).bit_length())


def check_levels(n_quantizers: int | None, n_codebooks: int) -> int:
    """``n_quantizers`` as an int in ``1..n_codebooks`` (``None`` means all levels); ``ValueError`` otherwise."""
    n = int(n_codebooks) if n_quantizers is None else int(n_quantizers)
    if not 1 <= n <= int(n_codebooks):
        raise ValueError(f"n_quantizers must be in 1..{n_codebooks}, got {n_quantizers}")
    return n


def bitrate(n_quantizers: int | None, n_codebooks: int, codebook_size: int, frame_rate: float) -> float:
    """Bits per second of one channel's codes at ``n_quantizers`` levels (all by default)."""
    n = int(n_codebooks) if n_quantizers is None else int(n_quantizers)
    return n * bits_per_code(codebook_size) * float(frame_rate)


@runtime_checkable
class Codec(Protocol):
    """A neural audio codec as the runtime sees it: code audio, decode codes, and say which weights it is.

    ``fingerprint()`` is the SHA-256 of the Keras weights (``.mlae`` files carry it, and decoding with other weights
    is refused); ``receptive_field`` is the context in samples each side of a position that chunked coding must give
    so that chunks equal a whole-file pass; an optional ``frame_period`` (frames; 1 when absent) is where chunks of
    a decoder whose output depends on the frame index modulo it must start. Any object with these members works
    (structural typing).
    """

    preset: str
    sample_rate: int
    hop_length: int
    n_codebooks: int
    codebook_size: int

    @property
    def frame_rate(self) -> float: ...

    @property
    def receptive_field(self) -> int: ...

    def fingerprint(self) -> str: ...

    def bitrate(self, n_quantizers: int | None = None) -> float: ...

    def encode_codes(self, audio: Any, n_quantizers: int | None = None) -> Any:
        """``(B, T, 1)`` float audio -> integer codes ``(B, n_q, ceil(T / hop_length))``."""
        ...

    def decode_codes(self, codes: Any) -> Any:
        """Integer codes ``(B, n_q, frames)`` -> audio ``(B, frames · hop_length, 1)``."""
        ...


__all__ = ["Codec", "bitrate", "bits_per_code", "check_levels"]
