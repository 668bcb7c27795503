"""The codec without TensorFlow: the encoder and decoder as LiteRT (TFLite) flatbuffers, run by ``ai_edge_litert``.

Importing TensorFlow alone takes ~730 MB of resident memory (its shared library is ~415 MB of that), more than the
whole budget for coding a file on a small machine. LiteRT's interpreter is ~35 MB. :class:`LiteCodec` is a
drop-in for :class:`~ml_audio_encoder.models.codec.MLAudioEncoder` wherever a :class:`~ml_audio_encoder.protocol.Codec`
is used (:mod:`~ml_audio_encoder.runtime.compress`, the CLI, the benchmark), and neither this module nor ``compress``
imports Keras or TensorFlow, so ``mlae compress``/``decompress`` with the shipped model stays light.

The files come from :func:`ml_audio_encoder.runtime.export.export_lite` (needs TensorFlow, once, where the model is
trained). Their ``.json`` carries the fingerprint of the Keras weights they were made from, so a ``.mlae`` file
written by either runtime decodes with the other, and with nothing else.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .. import protocol
from ..models.presets import verify_sha256

LITE_FORMAT = "ml_audio_encoder.lite"


def available() -> bool:
    """Whether the LiteRT interpreter is installed."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


class _Runner:
    """One flatbuffer with a dynamic time axis: resizes its inputs when the chunk shape changes."""

    def __init__(self, path: str | os.PathLike, num_threads: int):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=os.fspath(path), num_threads=num_threads)
        self.inputs = {d["name"]: d for d in self.interpreter.get_input_details()}
        self.output = self.interpreter.get_output_details()[0]
        self._shapes = None

    def _input(self, key):
        for name, detail in self.inputs.items():
            if key in name:
                return detail
        raise KeyError(f"flatbuffer has no input named like {key!r}: {sorted(self.inputs)}")

    def __call__(self, **arrays):
        details = {key: self._input(key) for key in arrays}
        shapes = tuple((key, arrays[key].shape) for key in sorted(arrays))
        if shapes != self._shapes:
            for key, array in arrays.items():
                self.interpreter.resize_tensor_input(details[key]["index"], list(array.shape), strict=False)
            self.interpreter.allocate_tensors()
            self._shapes = shapes
        for key, array in arrays.items():
            self.interpreter.set_tensor(details[key]["index"], np.asarray(array, details[key]["dtype"]))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output["index"])



def lite_paths(prefix: str | os.PathLike) -> dict[str, str]:
    """The three files of a LiteRT codec written with prefix ``prefix``."""
    prefix = os.fspath(prefix)
    return {"encoder": prefix + ".encoder.tflite", "decoder": prefix + ".decoder.tflite", "metadata": prefix + ".json"}


class LiteCodec:
    """Encode/decode with LiteRT flatbuffers written by :func:`~ml_audio_encoder.runtime.export.export_lite`; a
    :class:`~ml_audio_encoder.protocol.Codec`.

    XNNPACK plans memory for a whole call with little reuse between the Snake and conv intermediates: for
    ``small_24khz`` about 1.2 MB per frame in the encoder and 1.75 MB per frame in the decoder (measured), so a
    5 s window with its context would need ~1 GB. Windows of 1.5 s keep both interpreters near 400 MB together,
    for ~20% more compute on the context frames (:attr:`default_win_duration`).

    ``LiteCodec.load(prefix)`` reads ``PREFIX.json``, ``PREFIX.encoder.tflite`` and ``PREFIX.decoder.tflite``;
    ``sha256`` (file name -> digest) makes it verify the files first, as shipped weights are.
    """

    default_win_duration = 1.5  # seconds; read by compress.default_win_duration; an export may set its own

    def __init__(self, encoder_path: str | os.PathLike, decoder_path: str | os.PathLike, metadata: dict[str, Any],
                 num_threads: int | None = None):
        if metadata.get("format") != LITE_FORMAT:
            raise ValueError(f"not LiteRT codec metadata (format {metadata.get('format')!r})")
        self.metadata = dict(metadata)
        self.preset = metadata["preset"]
        self.sample_rate = int(metadata["sample_rate"])
        self.hop_length = int(metadata["hop_length"])
        self.n_codebooks = int(metadata["n_codebooks"])
        self.codebook_size = int(metadata["codebook_size"])
        # Frame-rate models plan little memory per frame: their export asks for longer windows (less context
        # recomputed per second of audio).
        self.default_win_duration = float(metadata.get("win_duration", LiteCodec.default_win_duration))
        threads = num_threads or os.cpu_count() or 1
        self._encoder = _Runner(encoder_path, threads)
        self._decoder = _Runner(decoder_path, threads)

    @classmethod
    def load(cls, prefix: str | os.PathLike, sha256: dict[str, str] | None = None,
             num_threads: int | None = None) -> LiteCodec:
        paths = lite_paths(prefix)
        for path in paths.values():
            if not os.path.exists(path):
                raise FileNotFoundError(f"{path}: missing LiteRT codec file")
            expected = (sha256 or {}).get(os.path.basename(path))
            if expected:
                verify_sha256(path, expected)
        with open(paths["metadata"]) as f:
            metadata = json.load(f)
        return cls(paths["encoder"], paths["decoder"], metadata, num_threads)

    # -- the facts of the Codec protocol (the helpers MLAudioEncoder's are built from) ------------------------
    @property
    def bits_per_code(self) -> int:
        return protocol.bits_per_code(self.codebook_size)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def context_frames(self) -> int:
        return int(self.metadata["context_frames"])

    @property
    def frame_period(self) -> int:
        return int(self.metadata.get("frame_period", 1))

    @property
    def receptive_field(self) -> int:
        return self.context_frames * self.hop_length

    def fingerprint(self) -> str:
        """The fingerprint of the Keras weights these flatbuffers were converted from."""
        return self.metadata["fingerprint"]

    def bitrate(self, n_quantizers: int | None = None) -> float:
        """Bits per second of the codes at ``n_quantizers`` levels (all by default)."""
        return protocol.bitrate(n_quantizers, self.n_codebooks, self.codebook_size, self.frame_rate)

    # -- tensor API --------------------------------------------------------------------------------------------
    def encode_codes(self, audio: np.ndarray, n_quantizers: int | None = None) -> np.ndarray:
        """``(B, T, 1)`` float audio -> int32 codes ``(B, n_q, ceil(T / hop))`` (all levels by default)."""
        n_q = protocol.check_levels(n_quantizers, self.n_codebooks)
        audio = np.asarray(audio, np.float32)
        pad = (-audio.shape[1]) % self.hop_length
        if pad:
            audio = np.pad(audio, [(0, 0), (0, pad), (0, 0)])
        return np.stack([self._encoder(audio=item[None])[0, :n_q] for item in audio])

    def decode_codes(self, codes: np.ndarray) -> np.ndarray:
        """int32 codes ``(B, n_q, frames)`` (any ``1 <= n_q <= n_codebooks``) -> audio ``(B, frames · hop, 1)``."""
        codes = np.asarray(codes)
        n_q = protocol.check_levels(codes.shape[1], self.n_codebooks)
        if codes.size and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codes must be in 0..{self.codebook_size - 1}")
        padded = np.zeros((codes.shape[0], self.n_codebooks, codes.shape[2]), np.int32)
        padded[:, :n_q] = codes
        n = np.asarray(n_q, np.int32)
        return np.stack([self._decoder(codes=item[None], n_quantizers=n)[0] for item in padded])

