"""The training data pipeline, in five parts:

``manifest``    which files there are and their labels (CSV manifests, folders, data packs); no Keras
``splits``      deterministic, speaker-disjoint train/dev splits; no Keras
``excerpts``    decoding, loudness, the RAM cache and the seeded excerpt sampler; no Keras
``validation``  the fixed validation set from the dev split
``pipeline``    :class:`AudioDataset` (``keras.utils.PyDataset``) and :func:`as_tf_dataset` (``tf.data``)

``from ml_audio_encoder.training import data as D`` gives every public name (``D.AudioDataset``,
``D.build_validation_set``, ``D.load_items``, ...). Keras loads only when ``AudioDataset``, ``as_tf_dataset`` or a
validation set's ``as_py_dataset`` is used, so a script that only writes manifests (``train/get_data.py``) imports
``ml_audio_encoder.training.data.manifest`` without TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import Any

from .excerpts import AudioCache, ExcerptSampler, decode_audio, measure_loudness, normalize_loudness
from .manifest import (
    AUDIO_EXTENSIONS,
    DOMAINS,
    MANIFEST_COLUMNS,
    AudioItem,
    filter_items,
    iter_audio_files,
    load_items,
    load_manifest,
    require_items,
    scan_folder,
    summarize_items,
    write_manifest,
)
from .splits import assign_splits, stable_hash
from .validation import ValidationSet, build_validation_set

_KERAS = {"AudioDataset": ".pipeline", "as_tf_dataset": ".pipeline"}

__all__ = [
    "AUDIO_EXTENSIONS", "DOMAINS", "MANIFEST_COLUMNS", "AudioCache", "AudioDataset", "AudioItem", "ExcerptSampler",
    "ValidationSet", "as_tf_dataset", "assign_splits", "build_validation_set", "decode_audio", "filter_items",
    "iter_audio_files", "load_items", "load_manifest", "measure_loudness", "normalize_loudness", "require_items",
    "scan_folder", "stable_hash", "summarize_items", "write_manifest",
]


def __getattr__(name: str) -> Any:
    if name in _KERAS:  # keras.utils.PyDataset subclasses: Keras loads here, not on import
        value = getattr(importlib.import_module(_KERAS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_KERAS))
