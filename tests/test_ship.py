"""train/ship.py: a checkpoint becomes verified pretrained weights for both runtimes."""

import json
import os
import shutil

import numpy as np
import pytest

from ml_audio_encoder.models import presets
from ml_audio_encoder.weights import save_arrays
from train import ship

pytest.importorskip("ai_edge_litert")


@pytest.fixture(scope="module")
def shipped_once(tiny_model, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ship")
    run = tmp_path / "run"
    folder = run / "checkpoints" / "step-00000007"
    folder.mkdir(parents=True)
    save_arrays(str(folder / "generator.npz"), [np.asarray(w) for w in tiny_model.weights])
    (run / "checkpoints" / "best.json").write_text(json.dumps({"folder": "step-00000007", "step": 7}))
    presets_py = tmp_path / "presets.py"
    shutil.copy(presets.__file__, presets_py)
    out = tmp_path / "pretrained"
    entry, written = ship.ship(str(run), "tiny_test", out_dir=str(out), presets_py=str(presets_py))
    return entry, written, presets_py


@pytest.fixture
def shipped(shipped_once, tmp_path, monkeypatch):
    """The shipped files installed as the package's (a copy per test: tests may damage them)."""
    entry, written, presets_py = shipped_once
    out = tmp_path / "pretrained"
    shutil.copytree(os.path.dirname(written[0]), out)
    monkeypatch.setattr(presets, "PRETRAINED_DIR", str(out))
    monkeypatch.setattr(presets, "PRETRAINED", {"tiny_test": dict(entry)})
    return entry, written, presets_py


def test_ship_records_verified_files(shipped):
    entry, written, presets_py = shipped
    assert entry["step"] == 7
    assert sorted(entry["files"]) == sorted(os.path.basename(p) for p in written)
    assert {os.path.splitext(p)[1] for p in written} == {".npz", ".tflite", ".json"}
    namespace = {}
    exec(open(presets_py).read().split("# BEGIN PRETRAINED\n")[1].split("# END PRETRAINED")[0], namespace)
    assert namespace["PRETRAINED"]["tiny_test"] == entry


def test_both_runtimes_load_the_shipped_weights(shipped, tiny_model):
    from ml_audio_encoder import MLAudioEncoder
    from ml_audio_encoder.cli import load_model
    from ml_audio_encoder.lite import LiteCodec

    entry = shipped[0]
    keras_model = MLAudioEncoder.from_preset("tiny_test", pretrained=True)
    assert keras_model.fingerprint() == entry["fingerprint"]
    # float16 rounding: close to, not equal to, the float32 weights trained
    pairs = zip(keras_model.weights, tiny_model.weights)
    assert max(np.abs(np.asarray(a) - np.asarray(b)).max() for a, b in pairs) < 1e-2
    codec = load_model("tiny_test")
    assert isinstance(codec, LiteCodec) and codec.fingerprint() == entry["fingerprint"]
    assert not isinstance(load_model("tiny_test", engine="keras"), LiteCodec)


def test_corrupted_or_swapped_files_are_refused(shipped):
    from ml_audio_encoder import MLAudioEncoder
    from ml_audio_encoder.cli import load_model

    path = os.path.join(presets.PRETRAINED_DIR, "tiny_test.decoder.tflite")
    with open(path, "r+b") as f:
        f.seek(-3, os.SEEK_END)
        f.write(b"xyz")
    with pytest.raises(OSError, match="corrupted"):
        load_model("tiny_test")
    entry = dict(shipped[0], fingerprint="0" * 64)
    presets.PRETRAINED["tiny_test"] = entry
    with pytest.raises(OSError, match="fingerprint"):
        MLAudioEncoder.from_preset("tiny_test", pretrained=True)
