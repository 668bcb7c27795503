"""ml_audio_encoder: a neural audio codec (improved RVQGAN) in Keras 3.

    from ml_audio_encoder import MLAudioEncoder
    model = MLAudioEncoder.from_preset("small_24khz", pretrained=True)
    mlae = model.compress("speech.wav")          # -> MLAEFile (write with codec_file.write)
    audio = model.decompress(mlae)               # (channels, samples) at the input's rate

``import ml_audio_encoder`` alone does not load Keras/TensorFlow (the LiteRT runtime, :mod:`.lite`, needs neither);
the model classes register with Keras when ``MLAudioEncoder`` is first used, or at import if Keras is loaded
already, which is what ``keras.saving.load_model("m.keras")`` needs.
"""

import sys

from .models.presets import PRESETS

__version__ = "0.1.0"

__all__ = ["MLAudioEncoder", "PRESETS", "__version__"]


if "keras" in sys.modules:  # Keras is loaded anyway: register the layers now, so keras.saving.load_model finds them
    from .models.codec import MLAudioEncoder  # noqa: F401


def __getattr__(name):
    # Keras (and with it TensorFlow, ~730 MB resident) loads on first use of the model, not on import, so the
    # LiteRT path of `mlae compress`/`decompress` (ml_audio_encoder.lite) never pays for it.
    if name == "MLAudioEncoder":
        from .models.codec import MLAudioEncoder

        return MLAudioEncoder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
