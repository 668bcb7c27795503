"""Entropy coding of RVQ codes: priors fitted to a model's codes, and a range coder (``constriction``) that spends
fewer bits on the codes those priors expect. Lossless: the decoded codes are the bit-packed ones.

``priors``   :class:`Priors` (static distribution per level + context model with backoff), ``priors.npz``
``fit``      :func:`fit_priors`: counts and cross-validated backoff strengths from code sequences
``coder``    block-wise :func:`~.coder.encode` / :func:`~.coder.decode` of a ``.mlae`` payload

This module is the store: the priors that ship beside a preset's weights (``pretrained/<preset>/priors.npz``, named
in its ``metadata.json`` and verified by SHA-256), found by model (:func:`priors_for`) or by the prior id a file
carries (:func:`find_priors`). numpy, constriction and its own compiled kernels (:mod:`._kernels`, Cython) only: no
Keras, no TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ...models import presets
from .priors import ID_BYTES, KINDS, PRIORS_FILE, Priors, PriorsError

ENTROPY_CHOICES = ("auto", "context", "static", "none")
_CACHE: dict[tuple[str, str], Priors] = {}


def shipped_priors(preset: str) -> Priors | None:
    """The priors shipped for ``preset``'s weights, or ``None`` when none ship (verified against metadata.json)."""
    if preset not in presets.PRESETS or not presets.has_pretrained(preset):
        return None
    meta = presets.read_metadata(preset)
    filename = meta.get("priors")
    if not filename:
        return None
    sha = meta["files"].get(filename)
    key = (os.path.join(presets.pretrained_dir(preset), filename), sha or "")
    if key not in _CACHE:
        path = presets.pretrained_file(preset, filename)  # OSError when damaged
        priors = Priors.load(path)
        if priors.fingerprint != meta.get("fingerprint"):
            raise OSError(f"{path}: priors for weights {priors.fingerprint[:12]}, but {preset} ships "
                          f"{str(meta.get('fingerprint'))[:12]}")
        _CACHE[key] = priors
    return _CACHE[key]


def priors_for(model) -> Priors | None:
    """The shipped priors of ``model``'s weights (a :class:`~ml_audio_encoder.protocol.Codec`), or ``None``."""
    priors = shipped_priors(getattr(model, "preset", ""))
    if priors is not None and priors.fingerprint == model.fingerprint():
        return priors
    return None


def find_priors(prior_id: str, preset: str = "", extra: Iterable[Priors] | None = None) -> Priors | None:
    """The priors whose id is ``prior_id`` (hex): among ``extra``, then those shipped for ``preset``, then any
    shipped preset's."""
    for priors in extra or ():
        if priors.id == prior_id:
            return priors
    names = [preset] if preset in presets.PRESETS else []
    names += [n for n in presets.shipped_presets() if n != preset]
    for name in names:
        try:
            priors = shipped_priors(name)
        except (OSError, PriorsError):
            continue
        if priors is not None and priors.id == prior_id:
            return priors
    return None


def check_priors(priors: Priors, fingerprint: str, codebook_size: int, levels: int, name: str = "file") -> None:
    """Raise ``ValueError`` (:class:`~ml_audio_encoder.errors.CodecFileError` from the reader) unless ``priors``
    belong to these weights and cover ``levels`` levels of ``codebook_size`` codes."""
    from ...errors import CodecFileError

    if priors.fingerprint != fingerprint:
        raise CodecFileError(f"{name}: entropy priors {priors.id[:12]} belong to other weights "
                             f"({priors.fingerprint[:12]}, not {fingerprint[:12] or 'unknown'}); refused")
    if priors.codebook_size != codebook_size or levels > priors.n_levels:
        raise CodecFileError(f"{name}: entropy priors cover {priors.n_levels} levels x {priors.codebook_size} codes, "
                             f"not {levels} x {codebook_size}")


__all__ = ["ENTROPY_CHOICES", "ID_BYTES", "KINDS", "PRIORS_FILE", "Priors", "PriorsError", "check_priors",
           "find_priors", "priors_for", "shipped_priors"]
