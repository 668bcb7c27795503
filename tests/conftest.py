import os
import sys

# Tests run on the TensorFlow backend unless a test spawns a JAX subprocess explicitly.
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model():
    from ml_audio_encoder import MLAudioEncoder

    return MLAudioEncoder.from_preset("tiny_test")


def sweep(seconds, sr, f0=100.0, f1=4000.0, amp=0.5):
    """A logarithmic sine sweep: broadband, deterministic, cheap."""
    t = np.arange(int(seconds * sr)) / sr
    k = np.log(f1 / f0) / seconds
    return (amp * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)).astype("float32")
