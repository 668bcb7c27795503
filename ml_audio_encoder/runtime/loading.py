"""``load_model(spec, engine)``: every kind of model spec to a :class:`~ml_audio_encoder.protocol.Codec`.

The one place that turns a spec into a model; the CLI, the benchmark, the notebooks and the README call it. Kinds
of spec, each with one small resolver below:

=========================  ==========================================================================================
``PRESET``                 the preset's shipped weights (:func:`_shipped`): LiteRT where its files ship and the
                           engine allows, else Keras
``PREFIX.json``            a LiteRT export (``mlae export --format lite``) (:func:`_lite_export`)
``random:PRESET``          the preset with seeded random weights, for trying the pipeline (:func:`_random`)
``PRESET:PATH``            the preset's architecture with weights from PATH (:func:`_preset_weights`)
``model.keras``            a whole saved Keras model (:func:`_keras_file`)
``weights.npz``            portable weights (:mod:`ml_audio_encoder.weights`), which record their config (:func:`_npz`)
``PATH`` + ``preset=P``    weights (``.npz``, ``.weights.h5``, ``.keras``) for preset P's architecture
=========================  ==========================================================================================

``engine`` picks the runtime: ``lite`` (:class:`~.lite.LiteCodec`, no TensorFlow, ~1/3 of the memory), ``keras``
(:class:`~ml_audio_encoder.models.codec.MLAudioEncoder`, needed for training and for the model's internals), or
``auto``: LiteRT where its files and ``ai-edge-litert`` are there, else Keras. Files written by one runtime decode
with the other (both carry the Keras weights' fingerprint). Keras is imported only by the resolvers that need it.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from ..models import presets
from ..protocol import Codec
from . import lite

ENGINES = ("auto", "keras", "lite")
DEFAULT_PRESET = presets.DEFAULT_PRESET

MODEL_HELP = (
    "a preset name (with its shipped weights), random:PRESET (random weights, for testing), a .keras model file, "
    "a weights file (.weights.h5 or .npz; give the architecture with --preset, or PRESET:PATH), or the .json of a "
    "LiteRT export (mlae export --format lite)"
)


def load_model(spec: Any = None, preset: str | None = None, engine: str = "auto") -> Codec:
    """Resolve a model spec (see the module docstring; ``None``: the ``preset``, default ``fast_24khz``) to a codec.

    A model object passes through. ``preset`` gives the architecture of a bare weights file. Raises ``ValueError``
    (bad spec or engine), ``FileNotFoundError`` (no such file, no shipped weights) or ``OSError`` (damaged files).
    """
    if spec is not None and not isinstance(spec, (str, os.PathLike)):
        return spec
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if spec is None:
        return _shipped(preset or DEFAULT_PRESET, engine)
    spec = os.fspath(spec)
    if spec in presets.PRESETS:
        return _shipped(spec, engine)
    if spec.endswith(".json") and os.path.exists(spec):
        return _lite_export(spec, engine)
    if engine == "lite":
        raise ValueError(f"{spec}: the LiteRT runtime runs shipped presets and LiteRT exports (PREFIX.json) only")
    if spec.startswith("random:"):
        return _random(spec.split(":", 1)[1])
    head, _, tail = spec.partition(":")
    if head in presets.PRESETS and tail:
        preset, spec = head, tail
    split_npz = spec.endswith(".npz") and glob.glob(glob.escape(spec[:-4]) + ".part1of*.npz")
    if not os.path.exists(spec) and not split_npz:
        raise FileNotFoundError(f"{spec}: no such model file, and not a preset (presets: {', '.join(presets.PRESETS)})")
    if spec.endswith(".keras"):
        return _keras_file(spec)
    if preset is not None:
        return _preset_weights(preset, spec)
    if spec.endswith(".npz"):
        return _npz(spec)
    raise ValueError(f"{spec}: a weights file needs the architecture: pass --preset PRESET")


def _use_lite(what: str, engine: str) -> bool:
    if engine == "keras":
        return False
    if lite.available():
        return True
    if engine == "lite":
        raise ValueError(f"{what}: the LiteRT runtime is not installed (pip install ai-edge-litert)")
    return False


# -- one resolver per kind of spec --------------------------------------------------------------------------------
def _shipped(name: str, engine: str) -> Codec:
    """A preset's shipped weights, on LiteRT when they ship for it and the engine allows."""
    if name not in presets.PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(presets.PRESETS)}")
    shipped_lite = presets.pretrained_lite_prefix(name)  # fails fast, with what to do, when nothing ships
    if shipped_lite and _use_lite(name, engine):
        return lite.LiteCodec.load(*shipped_lite)
    if engine == "lite":
        raise ValueError(f"no LiteRT files ship for preset {name!r}")
    return _model_class().from_preset(name, pretrained=True)


def _lite_export(path: str, engine: str) -> Codec:
    """``PREFIX.json`` of ``mlae export --format lite``."""
    if not _use_lite(path, engine):
        raise ValueError(f"{path}: a LiteRT export runs with --engine lite or auto, not keras")
    return lite.LiteCodec.load(path[: -len(".json")])


def _random(name: str) -> Codec:
    """Seeded random weights: every process draws the same ones, so a file compressed with ``random:PRESET``
    decompresses (the fingerprint matches) and the pipeline can be tried before any training."""
    import keras

    keras.utils.set_random_seed(0)
    return _model_class().from_preset(name, pretrained=False)


def _preset_weights(name: str, path: str) -> Codec:
    """A preset's architecture with weights from ``path`` (``.npz``, ``.weights.h5`` or ``.keras``)."""
    from .. import weights as weight_files

    return weight_files.load_weights(_model_class().from_preset(name, pretrained=False), path)


def _keras_file(path: str) -> Codec:
    """A whole ``.keras`` model; ``safe_mode`` stays on, so no code from the file runs."""
    import keras

    _model_class()  # registers the package's layers with Keras
    return keras.saving.load_model(path, compile=False)


def _npz(path: str) -> Codec:
    """Portable weights, which record the model config (no ``--preset`` needed)."""
    from .. import weights as weight_files

    arrays, meta = weight_files.load_arrays(path)
    if "config" not in meta:
        raise ValueError(f"{path}: weights file without a model config; pass --preset")
    model = _model_class().from_config(meta["config"])
    weight_files.assign(model.weights, arrays, what=os.path.basename(path))
    return model


def _model_class():
    from ..models.codec import MLAudioEncoder  # Keras (and TensorFlow) load here, on first need

    return MLAudioEncoder


__all__ = ["DEFAULT_PRESET", "ENGINES", "MODEL_HELP", "load_model"]
