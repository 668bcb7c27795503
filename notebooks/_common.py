"""Small helpers shared by the notebooks in this folder (model choice, paths, figure display).

Import it from a notebook whose working directory is ``notebooks/`` (Jupyter's default for a notebook opened from
here, and what ``tests/test_notebooks.py`` sets).
"""

from __future__ import annotations

import io
import os
import sys

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

NOTEBOOKS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(NOTEBOOKS)
TEST_DATA = os.path.join(ROOT, "tests", "data")
MANIFEST = os.path.join(ROOT, "data", "manifest.csv")
OUT = os.path.join(ROOT, "runs_local", "notebooks")  # git-ignored
PRESET = "fast_24khz"  # the default model (ml_audio_encoder.models.presets.DEFAULT_PRESET)

# the shipped clips (tests/data/README.md): 24 kHz mono Ogg Vorbis, a few seconds each
CLIPS = {
    "speech_male": os.path.join(TEST_DATA, "speech_male.ogg"),
    "speech_female": os.path.join(TEST_DATA, "speech_female.ogg"),
    "music": os.path.join(TEST_DATA, "music.ogg"),
    "general": os.path.join(TEST_DATA, "general.ogg"),
}
CLIP_DOMAIN = {"speech_male": "speech", "speech_female": "speech", "music": "music", "general": "general"}

# `train/` (the voice-classifier script) is a package of the repository, not installed
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def have_manifest() -> bool:
    """Whether the git-ignored data pack (``data/manifest.csv``, built by ``train/get_data.py``) is here."""
    return os.path.exists(MANIFEST)


def model_spec(preset: str = PRESET) -> str:
    """``preset`` when its trained weights ship with the package, else ``random:preset``."""
    from ml_audio_encoder.models.presets import has_pretrained

    return preset if has_pretrained(preset) else f"random:{preset}"


def load_codec(preset: str = PRESET, seed: int = 0):
    """(spec, model): the shipped weights of ``preset`` if there are any, else random weights with a loud note."""
    import keras

    from ml_audio_encoder import load_model

    spec = model_spec(preset)
    keras.utils.set_random_seed(seed)  # random weights are then the same on every run
    model = load_model(spec, engine="keras")  # the notebooks read the model's internals
    print(f"codec {spec!r}: {model.sample_rate} Hz, {model.frame_rate:g} frames/s, {model.n_codebooks} RVQ levels "
          f"x {model.codebook_size} codes ({model.bitrate(model.n_codebooks) / 1000:g} kbps at full depth), "
          f"{model.count_params():,} parameters, weights {model.fingerprint()[:12]}")
    if spec.startswith("random:"):
        print("NOTE: no trained weights ship for this preset yet, so the codec has RANDOM weights. Every number and "
              "sound below shows the plumbing, not the codec's quality; rerun once trained weights ship.")
    return spec, model


def show(fig, dpi: int = 100):
    """Display a matplotlib figure as a PNG and close it (independent of the active backend: the library's
    plotting helpers select Agg, which turns off inline display)."""
    import matplotlib.pyplot as plt
    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    display(Image(data=buf.getvalue()))


def player(audio, sample_rate: int, label: str):
    """A labelled audio player (not normalized, so levels compare across players)."""
    import numpy as np
    from IPython.display import Audio, Markdown, display

    display(Markdown(f"**{label}**"))
    display(Audio(np.clip(np.asarray(audio, np.float32), -1.0, 1.0), rate=int(sample_rate), normalize=False))


def out_dir(*parts: str) -> str:
    path = os.path.join(OUT, *parts)
    os.makedirs(path, exist_ok=True)
    return path
