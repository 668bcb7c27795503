"""Building a preset's model, with or without its shipped weights.

:func:`build_preset` is what ``MLAudioEncoder.from_preset`` (:mod:`ml_audio_encoder.models.codec`) does: the
preset's constructor config (:func:`~ml_audio_encoder.models.presets.preset_config`; the shipped
``config.json`` when ``pretrained``), then :func:`load_pretrained`: the shipped Keras weights, every file verified
against its SHA-256 and the result against the recorded weights fingerprint.

The model class is passed in rather than imported, so this module sits below ``models.codec`` and ``from_preset``
can call it without an import cycle. Every other kind of model spec (LiteRT exports, ``.keras`` files, weights
files, ``random:PRESET``) is resolved by :func:`ml_audio_encoder.runtime.loading.load_model`, the one entry point
that also picks the runtime.
"""

from __future__ import annotations

from typing import Any, TypeVar

from .. import weights as weight_files
from .presets import preset_config, pretrained_fingerprint, pretrained_path

M = TypeVar("M")


def load_pretrained(model: M, name: str) -> M:
    """Load preset ``name``'s shipped Keras weights into ``model`` (verified files; the weights must then give the
    recorded fingerprint, else ``OSError``). Returns ``model``."""
    weight_files.load_weights(model, pretrained_path(name))
    expected = pretrained_fingerprint(name)
    if model.fingerprint() != expected:
        raise OSError(f"shipped weights of {name!r} do not give the recorded fingerprint {expected[:12]}…")
    return model


def build_preset(name: str, pretrained: bool = False, *, model_class: type[M], **overrides: Any) -> M:
    """``model_class(**config, preset=name)`` for preset ``name`` with config ``overrides``, loading the shipped
    weights when ``pretrained`` (``FileNotFoundError`` when none ship, ``OSError`` when they are damaged)."""
    model = model_class(**preset_config(name, pretrained=pretrained, **overrides), preset=name)
    return load_pretrained(model, name) if pretrained else model


__all__ = ["build_preset", "load_pretrained"]
