"""ml_audio_encoder: a neural audio codec (improved RVQGAN) in Keras 3.

    from ml_audio_encoder import MLAEFile, MLAudioEncoder, load_model
    model = MLAudioEncoder.from_preset("fast_24khz", pretrained=True)
    f = model.compress("speech.wav")             # -> MLAEFile; f.save("speech.mlae"), MLAEFile.load("speech.mlae")
    audio, sample_rate = model.decompress(f)     # (channels, samples) at the input's rate
    codec = load_model("fast_24khz")            # the same weights on LiteRT, without TensorFlow

Subpackages, each importing only the floors below it (``pyproject.toml`` holds the import-linter contract):
``cli`` → ``eval`` (benchmark, codebook analysis) | ``training`` (losses, discriminators, trainer, data) |
``experiments`` → ``runtime`` (audio I/O, ``.mlae``, compress, LiteRT, export, ``load_model``) → ``models``
(the generator, presets) → ``nn`` (layers, quantizer, spectral helpers) → ``errors``, ``protocol``, ``weights``.

``import ml_audio_encoder`` alone does not load Keras/TensorFlow (the LiteRT runtime needs neither): the names below
are imported on first use. The model classes register with Keras when ``MLAudioEncoder`` is first used, or at import
if Keras is loaded already, which is what ``keras.saving.load_model("m.keras")`` needs.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from .errors import AudioInputError, CodecFileError
from .models.presets import PRESETS
from .protocol import Codec

if TYPE_CHECKING:
    from .models.codec import MLAudioEncoder
    from .runtime.codec_file import MLAEFile
    from .runtime.loading import load_model

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "AudioInputError", "Codec", "CodecFileError", "MLAEFile", "MLAudioEncoder", "__version__", "load_model",
]

# name -> (module, attribute), imported on first access
_LAZY = {
    "MLAudioEncoder": ("ml_audio_encoder.models.codec", "MLAudioEncoder"),
    "MLAEFile": ("ml_audio_encoder.runtime.codec_file", "MLAEFile"),
    "load_model": ("ml_audio_encoder.runtime.loading", "load_model"),
}

if "keras" in sys.modules:  # Keras is loaded anyway: register the layers now, so keras.saving.load_model finds them
    from .models.codec import MLAudioEncoder  # noqa: F401


def __getattr__(name: str) -> Any:
    # Keras (and with it TensorFlow, ~730 MB resident) loads on first use of the model, not on import, so the
    # LiteRT path of `mlae compress`/`decompress` (ml_audio_encoder.runtime.lite) never pays for it.
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
