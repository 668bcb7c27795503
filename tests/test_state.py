"""Compact training state (``--init-from``): weights, step, epoch, CPU time and the learning-rate position."""

import json
import os

import numpy as np
import pytest

from ml_audio_encoder.training.config import build, load_config
from ml_audio_encoder.training.state import load_state, read_state, save_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config():
    return load_config(os.path.join(ROOT, "train", "conf", "smoke.yml"),
                       ["optim.lr=1e-3", "optim.gamma=0.99"])


def _lr(optimizer):
    return float(np.asarray(optimizer.learning_rate))


def test_init_from_round_trip(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    config = _config()
    trainer = build(config)
    trainer.set_adversarial(False)  # the mel-only phase
    trainer.g_optimizer.iterations.assign(120)
    trainer.d_optimizer.iterations.assign(120)
    record = save_state(trainer, str(tmp_path), epoch=6, cpu_seconds=4321.0, config_path="train/conf/smoke.yml")
    assert record["step"] == 120 and record["discriminator"] is None  # no GAN phase yet: nothing to store
    on_disk = read_state(str(tmp_path))
    assert on_disk == json.loads(json.dumps(record)) and on_disk["generator"]["file"] == "generator.npz"

    keras.utils.set_random_seed(1)  # other random weights
    fresh = build(config, start_step=record["step"], warmup_steps=10)
    assert fresh.generator.fingerprint() != trainer.generator.fingerprint()
    loaded = load_state(fresh, str(tmp_path))
    assert loaded["epoch"] == 6 and loaded["cpu_seconds"] == 4321.0
    # float16 storage: the continued run starts from the rounded weights the state recorded
    expected = record["generator"]["fingerprint"]
    assert fresh.generator.fingerprint() == trainer.generator.fingerprint(dtype="float16") == expected
    assert int(np.asarray(fresh.g_optimizer.iterations)) == 120 == int(np.asarray(fresh.d_optimizer.iterations))
    # the schedule keeps its position (1e-3 · 0.99^step) and ramps up over 10 steps from there
    assert _lr(fresh.g_optimizer) == pytest.approx(1e-3 * 0.99**120 / 10, rel=1e-4)
    fresh.g_optimizer.iterations.assign(200)
    assert _lr(fresh.g_optimizer) == pytest.approx(1e-3 * 0.99**200, rel=1e-4)
    assert _lr(trainer.g_optimizer) == pytest.approx(1e-3 * 0.99**120, rel=1e-4)


def test_discriminator_is_stored_once_the_gan_phase_began(tmp_path):
    trainer = build(_config())
    trainer.set_adversarial(True)
    record = save_state(trainer, str(tmp_path), epoch=1, cpu_seconds=1.0)
    assert record["discriminator"] == {"file": "discriminator.npz"}
    other = build(_config())
    load_state(other, str(tmp_path))
    for a, b in zip(other.discriminator.weights, trainer.discriminator.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)


def test_state_points_at_shipped_weights_instead_of_copying_them(tmp_path, monkeypatch):
    from ml_audio_encoder.models import presets

    trainer = build(_config())
    trainer.set_adversarial(False)
    monkeypatch.setattr(presets, "pretrained_fingerprint",
                        lambda name: trainer.generator.fingerprint(dtype="float16"))
    record = save_state(trainer, str(tmp_path), epoch=1, cpu_seconds=1.0)
    assert record["generator"]["shipped"] == trainer.generator.preset
    assert not os.path.exists(tmp_path / "generator.npz")


def test_missing_state_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_state(build(_config()), str(tmp_path))


def test_state_from_a_full_checkpoint(tmp_path):
    from ml_audio_encoder.training.callbacks import Checkpointer
    from ml_audio_encoder.training.state import state_from_checkpoint

    trainer = build(_config())
    trainer.g_optimizer.iterations.assign(40)
    Checkpointer(str(tmp_path / "ckpt"), trainer).save({"epoch": 3, "step": 40, "cpu_seconds": 99.0})
    record = state_from_checkpoint(str(tmp_path / "ckpt"), str(tmp_path / "state"))
    assert (record["step"], record["epoch"], record["cpu_seconds"]) == (40, 3, 99.0)
    other = build(_config(), start_step=40, warmup_steps=5)
    load_state(other, str(tmp_path / "state"))
    assert other.generator.fingerprint() == trainer.generator.fingerprint(dtype="float16")


def test_a_state_written_before_shipping_then_points_at_the_shipped_weights(tmp_path, monkeypatch):
    from ml_audio_encoder.models import presets
    from ml_audio_encoder.training.state import point_at_shipped

    trainer = build(_config())
    trainer.set_adversarial(False)
    save_state(trainer, str(tmp_path), epoch=1, cpu_seconds=1.0)  # nothing shipped yet: its own copy
    assert os.path.exists(tmp_path / "generator.npz")
    monkeypatch.setattr(presets, "pretrained_fingerprint", lambda name: "something else")
    assert not point_at_shipped(str(tmp_path)) and os.path.exists(tmp_path / "generator.npz")
    monkeypatch.setattr(presets, "pretrained_fingerprint",  # then train/ship.py ships these weights
                        lambda name: trainer.generator.fingerprint(dtype="float16"))
    assert point_at_shipped(str(tmp_path))
    assert read_state(str(tmp_path))["generator"]["shipped"] == trainer.generator.preset
    assert not os.path.exists(tmp_path / "generator.npz")


def test_a_warm_restart_anneals_anew_from_its_step():
    """``optim.decay_from`` (a warm restart late in a run): the learning rate is ``lr`` at that step, times the
    warm-up ramp of a continued run (which runs alongside), and decays from there; the schedule survives
    serialisation (checkpoints)."""
    import keras

    config = _config()
    config["optim"].update(lr=1e-4, gamma=0.9, decay_from=300)
    trainer = build(config, start_step=300, warmup_steps=10)
    for step, expected in ((300, 1e-4 / 10), (304, 1e-4 * 0.9**4 / 2), (309, 1e-4 * 0.9**9), (330, 1e-4 * 0.9**30)):
        trainer.g_optimizer.iterations.assign(step)
        assert _lr(trainer.g_optimizer) == pytest.approx(expected, rel=1e-4)
    held = build(config)  # before the restart step the rate is held at lr, not raised above it
    held.g_optimizer.iterations.assign(100)
    assert _lr(held.g_optimizer) == pytest.approx(1e-4, rel=1e-4)
    schedule = trainer.g_optimizer._learning_rate
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert restored.get_config() == schedule.get_config() and schedule.get_config()["decay_from"] == 300
    assert float(restored(320)) == pytest.approx(1e-4 * 0.9**20, rel=1e-4)


def test_periodic_warm_restarts_repeat_the_cycle():
    """``optim.restart_every``: after ``decay_from`` the rate returns to ``lr`` every N steps and anneals anew, so one
    run goes through several cycles; the period survives serialisation."""
    import keras

    config = _config()
    config["optim"].update(lr=1e-4, gamma=0.9, decay_from=300, restart_every=50)
    trainer = build(config)
    for step, expected in ((100, 1e-4), (300, 1e-4), (349, 1e-4 * 0.9**49), (350, 1e-4), (362, 1e-4 * 0.9**12)):
        trainer.g_optimizer.iterations.assign(step)
        assert _lr(trainer.g_optimizer) == pytest.approx(expected, rel=1e-4)
    schedule = trainer.g_optimizer._learning_rate
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert restored.get_config()["restart_every"] == 50
    assert float(restored(420)) == pytest.approx(1e-4 * 0.9**20, rel=1e-4)
