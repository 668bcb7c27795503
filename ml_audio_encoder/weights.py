"""Portable weight files: ``.npz`` archives of plain arrays, optionally float16 and split into parts.

Keras' own ``.weights.h5`` works too and is accepted everywhere a weights path is; this format exists because
checkpoints have to travel between machines in small pieces (a GPU machine that returns at most 16 MiB a file) and
because it is trivially safe to read: ``np.load(allow_pickle=False)`` never executes code from a file.

Variables are stored by position (the model's ``weights`` order, identical across backends and processes) with
their shapes recorded, and a shape mismatch on load is an error rather than a silent misassignment.
"""

from __future__ import annotations

import glob
import json
import os
import re
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np

M = TypeVar("M")

_PART = re.compile(r"\.part(\d+)of(\d+)\.npz$")


def _atomic_savez(path, arrays):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)  # a kill mid-write leaves the previous file intact


def save_arrays(path: str, arrays: Sequence[Any], dtype: Any = None, max_part_bytes: int | None = None,
                meta: dict[str, Any] | None = None) -> list[str]:
    """Write a list of arrays to ``path`` (``.npz``), cast to ``dtype`` if given, split into parts if too big.

    Parts are named ``<stem>.partKofN.npz`` and written before a stale set is removed, so a reader never sees a
    mix of two checkpoints' parts that claims to be complete.
    """
    arrays = [np.asarray(a) for a in arrays]
    if dtype is not None:
        arrays = [a.astype(dtype) if a.dtype.kind == "f" else a for a in arrays]
    meta = dict(meta or {}, shapes=[list(a.shape) for a in arrays], count=len(arrays))
    groups, size = [[]], 0
    for i, a in enumerate(arrays):
        if max_part_bytes and groups[-1] and size + a.nbytes > max_part_bytes:
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += a.nbytes
    stem = path[:-4] if path.endswith(".npz") else path
    for old in glob.glob(glob.escape(stem) + ".part*of*.npz"):
        os.remove(old)
    if len(groups) == 1:
        _atomic_savez(stem + ".npz", {"__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8),
                                      **{f"a{i:05d}": arrays[i] for i in groups[0]}})
        return [stem + ".npz"]
    paths = []
    for k, group in enumerate(groups):
        part = f"{stem}.part{k + 1}of{len(groups)}.npz"
        content = {f"a{i:05d}": arrays[i] for i in group}
        if k == 0:
            content["__meta__"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        _atomic_savez(part, content)
        paths.append(part)
    if os.path.exists(stem + ".npz"):
        os.remove(stem + ".npz")
    return paths


def load_arrays(path: str) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Read what :func:`save_arrays` wrote (one file or all parts) -> ``(arrays, meta)``."""
    stem = _PART.sub("", path) if _PART.search(path) else (path[:-4] if path.endswith(".npz") else path)
    files = [stem + ".npz"] if os.path.exists(stem + ".npz") else sorted(
        glob.glob(glob.escape(stem) + ".part*of*.npz"), key=lambda p: int(_PART.search(p).group(1))
    )
    if not files:
        raise FileNotFoundError(f"no weights at {path}")
    expected = int(_PART.search(files[0]).group(2)) if _PART.search(files[0]) else 1
    if len(files) != expected:
        raise OSError(f"{stem}: found {len(files)} of {expected} parts")
    found, meta = {}, None
    for file in files:
        with np.load(file, allow_pickle=False) as archive:
            for key in archive.files:
                if key == "__meta__":
                    meta = json.loads(archive[key].tobytes().decode())
                else:
                    found[int(key[1:])] = archive[key]
    if meta is None or len(found) != meta["count"]:
        raise OSError(f"{stem}: incomplete weight file")
    return [found[i] for i in range(meta["count"])], meta


def assign(variables: Sequence[Any], arrays: Sequence[np.ndarray], what: str = "weights") -> None:
    """Assign ``arrays`` to ``variables`` by position, checking counts and shapes."""
    if len(variables) != len(arrays):
        raise ValueError(f"{what}: file has {len(arrays)} arrays, model has {len(variables)} variables")
    for v, a in zip(variables, arrays):
        if tuple(v.shape) != tuple(a.shape):
            raise ValueError(f"{what}: shape {tuple(a.shape)} in file, {tuple(v.shape)} in model ({v.path})")
        v.assign(a.astype(v.dtype))


def save_weights(model: Any, path: str, dtype: Any = None, max_part_bytes: int | None = None) -> list[str]:
    """Save ``model.weights`` as portable ``.npz`` (see module docstring)."""
    meta = {"config": model.get_config()} if hasattr(model, "get_config") else {}
    return save_arrays(path, [np.asarray(w) for w in model.weights], dtype, max_part_bytes, meta)


def load_weights(model: M, path: str) -> M:
    """Load weights from ``.npz`` (this module), ``.weights.h5`` or ``.keras`` into an existing ``model``."""
    if path.endswith(".weights.h5"):
        model.load_weights(path)
    elif path.endswith(".keras"):
        import keras

        model.set_weights(keras.models.load_model(path, compile=False).get_weights())
    else:
        arrays, _ = load_arrays(path)
        assign(model.weights, arrays, what=os.path.basename(path))
    return model
