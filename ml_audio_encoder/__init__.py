"""ml_audio_encoder: a neural audio codec (improved RVQGAN) in Keras 3.

    from ml_audio_encoder import MLAudioEncoder
    model = MLAudioEncoder.from_preset("small_24khz", pretrained=True)
    mlae = model.compress("speech.wav")          # -> MLAEFile (write with codec_file.write)
    audio = model.decompress(mlae)               # (channels, samples) at the input's rate
"""

from .model import MLAudioEncoder
from .presets import PRESETS

__version__ = "0.1.0"

__all__ = ["MLAudioEncoder", "PRESETS", "__version__"]
