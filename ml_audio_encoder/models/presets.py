"""Named model configurations and the weights shipped with them.

``thesis_44khz`` is DAC's 44.1 kHz model as the thesis ports it (~76M parameters). ``small_24khz`` is the default
codec: narrow enough to run faster than real time on a 2-core CPU, 75 frames/s, 12 levels (9 kbps at full depth,
6 kbps at 8). ``tiny_test`` exists for unit tests only.
"""

from __future__ import annotations

import hashlib
import os

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

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "pretrained")

# Shipped weights, written by ``train/ship.py``: preset -> the weights' fingerprint (``MLAudioEncoder.fingerprint``,
# the SHA-256 that ``.mlae`` files carry) and each file inside ``pretrained/`` with its SHA-256. ``PRESET.npz`` is
# for Keras; ``PRESET.encoder.tflite``/``.decoder.tflite``/``.json`` are the same weights for the LiteRT runtime.
# BEGIN PRETRAINED
PRETRAINED = {
    "small_24khz": {
        "files": {
            "small_24khz.decoder.tflite": "f59e4f05e394bfc6e287c453aac99ded1fc207421fd272fe657a3d037c9207ae",
            "small_24khz.encoder.tflite": "bb8140e0998ce2d2317284d082450b37e6e2c3c529d17c0525713dfa9b63567a",
            "small_24khz.json": "8fbbe2f6792177c312913f1114ba508da2469cf7de1f9396f42d61bcd2468dc6",
            "small_24khz.npz": "185ba0ad880e747ef32d7234887292ab119885557d0710a31df4f97de9d31ad1"
        },
        "fingerprint": "180604ba8b5074b7906669fbce8240802464df05b93fb1c752238aa7dc0350b5",
        "step": 150
    }
}
# END PRETRAINED


def _entry(name):
    if name not in PRETRAINED:
        raise FileNotFoundError(
            f"no pretrained weights ship for preset {name!r}; pass a weights file (--model PATH) instead"
        )
    return PRETRAINED[name]


def sha256_file(path):
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path, expected):
    """Raise ``OSError`` unless the file at ``path`` has SHA-256 ``expected``; returns ``path``."""
    actual = sha256_file(path)
    if actual != expected:
        raise OSError(f"{path} is corrupted: SHA-256 {actual[:12]}… expected {expected[:12]}…")
    return path


def pretrained_path(name):
    """Path of the shipped Keras weights of preset ``name``, verified against the recorded SHA-256."""
    files = _entry(name)["files"]
    filename = f"{name}.npz"
    return verify_sha256(os.path.join(PRETRAINED_DIR, filename), files[filename])


def pretrained_fingerprint(name):
    """The recorded fingerprint of preset ``name``'s shipped weights."""
    return _entry(name)["fingerprint"]


def pretrained_lite_prefix(name):
    """``(prefix, sha256 by file name)`` of preset ``name``'s shipped LiteRT files, or ``None`` if none ship."""
    files = _entry(name)["files"]
    prefix = os.path.join(PRETRAINED_DIR, name)
    from ..export import lite_paths

    if not all(os.path.basename(p) in files for p in lite_paths(prefix).values()):
        return None
    return prefix, files


def load(name, pretrained=False, **overrides):
    """Build preset ``name`` (with config ``overrides``), loading the shipped weights if ``pretrained``."""
    from .codec import MLAudioEncoder

    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    model = MLAudioEncoder(**{**PRESETS[name], **overrides}, preset=name)
    if pretrained:
        from ..weights import load_weights

        load_weights(model, pretrained_path(name))
        if model.fingerprint() != pretrained_fingerprint(name):
            raise OSError(f"shipped weights of {name!r} do not give the recorded fingerprint "
                          f"{pretrained_fingerprint(name)[:12]}…")
    return model
