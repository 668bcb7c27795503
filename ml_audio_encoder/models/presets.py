"""Named model configurations (plain data) and the store of shipped weights, ``pretrained/<preset>/``.

``thesis_44khz`` is DAC's 44.1 kHz model as the thesis ports it (~76M parameters). ``small_24khz`` is a narrow DAC
codec and ``fast_24khz`` a frame-rate one (STFT encoder, ConvNeXt blocks, inverse-STFT head, after Vocos) with the
same contract: 24 kHz, 75 frames/s, 12 levels (9 kbps at full depth, 6 kbps at 8). ``fast_24khz`` is the default
(``DEFAULT_PRESET``): it learned far more per CPU-minute in the equal-budget A/B (README). ``tiny_test`` exists for
unit tests only.

A preset is the keyword arguments of :class:`~ml_audio_encoder.models.codec.MLAudioEncoder`; nothing here depends on
which keys there are, and this module never imports the model (building one is
:meth:`MLAudioEncoder.from_preset <ml_audio_encoder.models.codec.MLAudioEncoder.from_preset>` /
:func:`ml_audio_encoder.models.loading.build_preset`).

Shipped weights live in ``pretrained/<preset>/``, written by ``train/ship.py`` (as keras-hub's preset folders):

``config.json``    the constructor config the weights belong to (used instead of :data:`PRESETS` when loading them)
``metadata.json``  :data:`METADATA_FORMAT`: ``fingerprint`` (``MLAudioEncoder.fingerprint()``, the SHA-256 that
                   ``.mlae`` files carry), ``step``, ``keras_weights`` (file name), ``lite_prefix`` (LiteRT files'
                   prefix, or null), ``files`` (name -> SHA-256 of every other file), ``training`` (a summary)
``weights.npz``    the Keras weights (:mod:`ml_audio_encoder.weights`, float16)
``lite.*``         the same weights for the LiteRT runtime (``lite.encoder.tflite``, ``lite.decoder.tflite``,
                   ``lite.json``)

Every file is checked against its SHA-256 before use.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

PRESETS = {
    "thesis_44khz": dict(
        sample_rate=44100,
        encoder_dim=64,
        encoder_rates=(2, 4, 8, 8),
        latent_dim=1024,
        decoder_dim=1536,
        decoder_rates=(8, 8, 4, 2),
        n_codebooks=9,
        codebook_size=1024,
        codebook_dim=8,
        quantizer_dropout=0.5,
    ),
    "small_24khz": dict(
        sample_rate=24000,
        encoder_dim=32,
        encoder_rates=(2, 4, 5, 8),
        latent_dim=512,
        decoder_dim=512,
        decoder_rates=(8, 5, 4, 2),
        n_codebooks=12,
        codebook_size=1024,
        codebook_dim=8,
        quantizer_dropout=0.5,
    ),
    # The frame-rate codec (Vocos-style decoder, STFT + ConvNeXt encoder): the same 24 kHz / 75 frames/s / 12 x 1024
    # x dim 8 contract as small_24khz. encoder_dim/encoder_rates serve the conv-encoder variant
    # (model.encoder_type=conv) that the equal-budget A/B measured; the rates also fix the hop (320).
    "fast_24khz": dict(
        sample_rate=24000,
        encoder_dim=32,
        encoder_rates=(2, 4, 5, 8),
        latent_dim=256,
        decoder_dim=384,
        decoder_rates=(8, 5, 4, 2),
        n_codebooks=12,
        codebook_size=1024,
        codebook_dim=8,
        quantizer_dropout=0.5,
        encoder_type="stft",
        decoder_type="istft",
        convnext_dim=384,
        encoder_blocks=8,
        decoder_blocks=8,
        n_fft=1280,
        phase_rotation=False,  # measured against the control in issue 11 (README, "Phase rotation"): not kept
    ),
    "tiny_test": dict(
        sample_rate=16000,
        encoder_dim=4,
        encoder_rates=(2, 4, 5),
        latent_dim=16,
        decoder_dim=32,
        decoder_rates=(5, 4, 2),
        n_codebooks=4,
        codebook_size=64,
        codebook_dim=4,
        quantizer_dropout=0.5,
    ),
}

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pretrained")
# The model `mlae` and `load_model()` use without --model: the winner of the equal-CPU A/B of issue 11 (README).
DEFAULT_PRESET = "fast_24khz"
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
METADATA_FORMAT = "ml_audio_encoder.pretrained"


def preset_config(name: str, pretrained: bool = False, **overrides: Any) -> dict[str, Any]:
    """The constructor config of preset ``name`` with ``overrides`` applied (a new dict).

    With ``pretrained`` it is the shipped ``config.json`` (verified), so the weights always meet the architecture
    they were trained as, whatever :data:`PRESETS` says now.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    if pretrained:
        with open(pretrained_file(name, CONFIG_FILE)) as f:
            config = json.load(f)
    else:
        config = dict(PRESETS[name])
    config.pop("preset", None)
    return {**config, **overrides}


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> str:
    """Raise ``OSError`` unless the file at ``path`` has SHA-256 ``expected``; returns ``path``."""
    actual = sha256_file(path)
    if actual != expected:
        raise OSError(f"{os.fspath(path)} is corrupted: SHA-256 {actual[:12]}… expected {expected[:12]}…")
    return os.fspath(path)


def pretrained_dir(name: str) -> str:
    """Folder of preset ``name``'s shipped files (whether or not any ship)."""
    return os.path.join(PRETRAINED_DIR, name)


def shipped_presets() -> list[str]:
    """Presets whose weights ship with the package (a ``pretrained/<preset>/metadata.json`` exists), sorted."""
    if not os.path.isdir(PRETRAINED_DIR):
        return []
    return sorted(n for n in os.listdir(PRETRAINED_DIR) if os.path.isfile(os.path.join(PRETRAINED_DIR, n,
                                                                                           METADATA_FILE)))


def has_pretrained(name: str) -> bool:
    """Whether weights ship for preset ``name``."""
    return os.path.isfile(os.path.join(pretrained_dir(name), METADATA_FILE))


def read_metadata(name: str) -> dict[str, Any]:
    """``pretrained/<name>/metadata.json``; ``FileNotFoundError`` (saying what to do instead) when none ships."""
    path = os.path.join(pretrained_dir(name), METADATA_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"no pretrained weights ship for preset {name!r}; pass a weights file (--model PATH) instead"
        )
    with open(path) as f:
        meta = json.load(f)
    if meta.get("format") != METADATA_FORMAT:
        raise OSError(f"{path}: not pretrained-weights metadata (format {meta.get('format')!r})")
    return meta


def pretrained_file(name: str, filename: str) -> str:
    """Path of one shipped file of preset ``name``, verified against the SHA-256 in its metadata."""
    files = read_metadata(name)["files"]
    if filename not in files:
        raise FileNotFoundError(f"preset {name!r} ships no {filename}")
    return verify_sha256(os.path.join(pretrained_dir(name), filename), files[filename])


def pretrained_path(name: str) -> str:
    """Path of preset ``name``'s shipped Keras weights, every part of them verified against the metadata."""
    meta = read_metadata(name)
    weights = meta["keras_weights"]
    stem = weights[: -len(".npz")] if weights.endswith(".npz") else weights
    parts = [f for f in meta["files"] if f == weights or (f.startswith(stem + ".part") and f.endswith(".npz"))]
    if not parts:
        raise FileNotFoundError(f"preset {name!r}: metadata lists no Keras weights file")
    for filename in parts:
        pretrained_file(name, filename)
    return os.path.join(pretrained_dir(name), weights)


def pretrained_fingerprint(name: str) -> str:
    """The recorded fingerprint of preset ``name``'s shipped weights."""
    return read_metadata(name)["fingerprint"]


def pretrained_lite_prefix(name: str) -> tuple[str, dict[str, str]] | None:
    """``(prefix, sha256 by file name)`` of preset ``name``'s shipped LiteRT files, or ``None`` if none ship.

    Raises ``FileNotFoundError`` when nothing at all ships for ``name``.
    """
    meta = read_metadata(name)
    if not meta.get("lite_prefix"):
        return None
    return os.path.join(pretrained_dir(name), meta["lite_prefix"]), dict(meta["files"])
