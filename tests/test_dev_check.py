"""train/dev_check.py: training's fixed dev check on saved weights (a compact state, a checkpoint, a preset)."""

import csv
import json

import numpy as np
import pytest

from ml_audio_encoder.weights import save_arrays
from train import dev_check


def _checkpoints(tmp_path, model, step=4200, cpu_seconds=7200.0):
    ckpt = tmp_path / "checkpoints"
    folder = ckpt / f"step-{step:08d}"
    folder.mkdir(parents=True)
    save_arrays(str(folder / "generator.npz"), [np.asarray(w) for w in model.weights],
                meta={"config": model.get_config()})
    pointer = {"folder": folder.name, "step": step, "epoch": 84, "cpu_seconds": cpu_seconds}
    (ckpt / "latest.json").write_text(json.dumps(pointer))
    return ckpt


def _same_weights(a, b, dtype="float32"):
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y).astype(dtype).astype("float32"))


def test_loads_a_checkpoint_its_step_folder_and_a_compact_state(tiny_model, tmp_path):
    from ml_audio_encoder.training.state import state_from_checkpoint

    ckpt = _checkpoints(tmp_path, tiny_model)
    model, info = dev_check.load_generator(str(ckpt))
    _same_weights(model, tiny_model)
    assert (info["step"], info["cpu_hours"], info["weights"]) == (4200, 2.0, "float32 checkpoint")
    model, info = dev_check.load_generator(str(ckpt / "step-00004200"))  # a copied-out step folder
    assert (info["step"], info["cpu_hours"]) == (4200, 2.0)

    state = tmp_path / "state"
    state_from_checkpoint(str(ckpt), str(state))
    model, info = dev_check.load_generator(str(state))
    _same_weights(model, tiny_model, "float16")
    assert (info["step"], info["cpu_hours"], info["weights"], info["preset"]) == (4200, 2.0, "float16 state",
                                                                                  "tiny_test")


def test_what_is_neither_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="neither a compact state"):
        dev_check.load_generator(str(tmp_path))
    with pytest.raises(SystemExit, match="not a state, a checkpoint or a preset"):
        dev_check.load_generator("no_such_preset")


def test_scores_and_appends_a_row_with_the_weights_step(tiny_model, tmp_path, monkeypatch, capsys):
    import train.train

    clips = np.stack([np.sin(np.linspace(0, 400 * np.pi, tiny_model.sample_rate))[:, None] * 0.3,
                      np.random.default_rng(0).normal(0, 0.1, (tiny_model.sample_rate, 1))]).astype("float32")
    monkeypatch.setattr(train.train, "dev_clips", lambda config, model: (clips, ["music", "speech"]))
    ckpt = _checkpoints(tmp_path, tiny_model)
    dev_csv = tmp_path / "dev.csv"
    dev_csv.write_text("step,cpu_hours,levels,mel,time\n100,0.1,8,3.0,2026-01-01T00:00:00\n")
    (tmp_path / "dev_opus.json").write_text(json.dumps({"kbps": 6.0, "n_clips": 2, "scores": {"mel": 2.5}}))
    scores = dev_check.main([str(ckpt), "--no-visqol", "--levels", "2", "--append", str(dev_csv)])
    assert set(scores) == {"mel", "mel/music", "mel/speech"}
    out = capsys.readouterr().out
    assert "step 4,200" in out and "2.5000" in out  # beside Opus's cached score
    rows = list(csv.DictReader(dev_csv.open()))
    assert [r["step"] for r in rows] == ["100", "4200"]
    assert rows[1]["levels"] == "2" and rows[1]["weights"] == "float32 checkpoint" and rows[0]["weights"] == ""
    assert float(rows[1]["mel"]) == pytest.approx(scores["mel"], abs=1e-4)
    assert float(rows[1]["cpu_hours"]) == 2.0
