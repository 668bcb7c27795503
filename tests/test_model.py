import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from ml_audio_encoder import PRESETS, MLAudioEncoder
from ml_audio_encoder.weights import load_arrays, load_weights, save_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_thesis_preset_matches_dac_size():
    model = MLAudioEncoder.from_preset("thesis_44khz")
    enc = sum(int(np.prod(w.shape)) for w in model.encoder.weights)
    dec = sum(int(np.prod(w.shape)) for w in model.decoder.weights)
    assert 75e6 < model.count_params() < 78e6  # DAC 44 kHz: ~76M
    assert 21e6 < enc < 23e6 and 53e6 < dec < 55e6
    assert model.hop_length == 512 and model.sample_rate == 44100
    assert model.bitrate() == pytest.approx(9 * 10 * 44100 / 512)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_hop_and_lengths(name):
    cfg = PRESETS[name]
    hop = math.prod(cfg["encoder_rates"])
    if name == "thesis_44khz":  # built in the test above; arithmetic only here
        assert hop == math.prod(cfg["decoder_rates"]) == 512
        return
    model = MLAudioEncoder.from_preset(name)
    assert model.hop_length == hop
    for n in (hop, 3 * hop + 1, 5 * hop - 1):
        x = np.zeros((1, n, 1), "float32")
        out = model(x)
        frames = math.ceil(n / hop)
        assert out["codes"].shape == (1, model.n_codebooks, frames)
        assert out["audio"].shape == (1, n, 1)
        assert model.decode(out["z"]).shape == (1, frames * hop, 1)
        assert model.get_output_length(n) == frames * hop
    assert model.delay > 0 and model.receptive_field % hop == 0


def test_small_preset_bitrates():
    cfg = PRESETS["small_24khz"]
    assert math.prod(cfg["encoder_rates"]) == 320 and cfg["n_codebooks"] == 12
    frame_rate = cfg["sample_rate"] / 320
    assert 12 * 10 * frame_rate == 9000 and 8 * 10 * frame_rate == 6000


def test_context_frames_cover_the_true_receptive_field(tiny_model):
    """Perturb one input sample: every latent frame that changes lies within the computed context."""
    m, hop = tiny_model, tiny_model.hop_length
    x = np.random.RandomState(0).randn(1, hop * 120, 1).astype("float32") * 0.1
    x2 = x.copy()
    x2[0, hop * 60 + 7, 0] += 1.0
    changed = np.where(np.abs(np.asarray(m.encoder(x)) - np.asarray(m.encoder(x2))).max(-1)[0] > 0)[0]
    assert changed.min() >= 60 - m.context_frames and changed.max() <= 60 + m.context_frames
    z = np.random.RandomState(1).randn(1, 120, m.latent_dim).astype("float32")
    z2 = z.copy()
    z2[0, 60] += 1.0
    diff = np.abs(np.asarray(m.decoder(z)) - np.asarray(m.decoder(z2)))[0, :, 0]
    hit = np.where(diff > 0)[0] // hop
    assert hit.min() >= 60 - m.context_frames and hit.max() <= 60 + m.context_frames


def test_n_quantizers_lowers_bitrate_and_every_level_is_used(tiny_model):
    x = np.random.RandomState(0).randn(2, 4000, 1).astype("float32") * 0.3
    for n in range(1, tiny_model.n_codebooks + 1):
        codes = np.asarray(tiny_model.encode(x, n_quantizers=n)[1])
        assert codes.shape[1] == n
        assert all(len(np.unique(codes[:, i])) > 1 for i in range(n))
        assert tiny_model.bitrate(n) < tiny_model.bitrate(n + 1) if n < tiny_model.n_codebooks else True


def test_gradients_reach_encoder_through_straight_through(tiny_model):
    x = np.random.RandomState(0).randn(2, 800, 1).astype("float32") * 0.3
    with tf.GradientTape() as tape:
        out = tiny_model(x, training=True)
        loss = tf.reduce_mean(tf.abs(out["audio"] - x)) + out["vq/commitment_loss"] + out["vq/codebook_loss"]
    grads = tape.gradient(loss, tiny_model.encoder.trainable_variables)
    assert all(g is not None for g in grads)
    assert sum(float(tf.reduce_sum(tf.abs(g))) for g in grads) > 0


def test_keras_file_and_weights_round_trip(tmp_path, tiny_model):
    import keras

    x = np.random.RandomState(0).randn(1, 800, 1).astype("float32") * 0.3
    ref = np.asarray(tiny_model(x)["audio"])
    path = str(tmp_path / "m.keras")
    tiny_model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, MLAudioEncoder) and loaded.get_config()["preset"] == "tiny_test"
    np.testing.assert_allclose(np.asarray(loaded(x)["audio"]), ref, atol=1e-6)

    fresh = MLAudioEncoder.from_preset("tiny_test")
    tiny_model.save_weights(str(tmp_path / "m.weights.h5"))
    fresh.load_weights(str(tmp_path / "m.weights.h5"))
    assert fresh.fingerprint() == tiny_model.fingerprint()

    fresh = MLAudioEncoder.from_preset("tiny_test")
    assert fresh.fingerprint() != tiny_model.fingerprint()
    parts = save_weights(tiny_model, str(tmp_path / "w.npz"), max_part_bytes=20_000)
    assert len(parts) > 1
    load_weights(fresh, parts[0])
    assert fresh.fingerprint() == tiny_model.fingerprint()
    arrays, meta = load_arrays(str(tmp_path / "w.npz"))
    assert meta["config"]["preset"] == "tiny_test" and len(arrays) == len(tiny_model.weights)

    half = MLAudioEncoder.from_preset("tiny_test")
    load_weights(half, save_weights(tiny_model, str(tmp_path / "h.npz"), dtype="float16")[0])
    for a, b in zip(half.weights, tiny_model.weights):  # float16 keeps ~3 significant digits
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-4)


def test_weights_shape_mismatch_is_an_error(tmp_path, tiny_model):
    other = MLAudioEncoder.from_preset("tiny_test", n_codebooks=3)
    path = save_weights(other, str(tmp_path / "o.npz"))[0]
    with pytest.raises(ValueError):
        load_weights(tiny_model, path)


def test_tensorflow_and_jax_give_the_same_output(tmp_path, tiny_model):
    """A model saved under TensorFlow loads under JAX with the same weights and outputs.

    Compared stage by stage: a random-init codebook has near-ties that 1e-6 of float noise can flip, so the full
    pipeline is compared on the same codes rather than hoping no argmax lands on a tie.
    """
    x = np.random.RandomState(0).randn(1, 1600, 1).astype("float32") * 0.3
    np.save(tmp_path / "x.npy", x)
    tiny_model.save(str(tmp_path / "m.keras"))
    codes = np.asarray(tiny_model.encode(x)[1])
    np.save(tmp_path / "codes.npy", codes)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, keras
        sys.path.insert(0, {ROOT!r})
        import ml_audio_encoder
        m = keras.models.load_model({str(tmp_path / 'm.keras')!r})
        x = np.load({str(tmp_path / 'x.npy')!r})
        np.save({str(tmp_path / 'latent.npy')!r}, np.asarray(m.encoder(x)))
        np.save({str(tmp_path / 'c.npy')!r}, np.asarray(m.encode(x)[1]))
        np.save({str(tmp_path / 'y.npy')!r}, np.asarray(m.decode_codes(np.load({str(tmp_path / 'codes.npy')!r}))))
        print(keras.backend.backend(), m.fingerprint())
        """
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    backend, fingerprint = res.stdout.split()[-2:]
    assert backend == "jax" and fingerprint == tiny_model.fingerprint()
    np.testing.assert_allclose(np.load(tmp_path / "latent.npy"), np.asarray(tiny_model.encoder(x)), atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.asarray(tiny_model.decode_codes(codes)), atol=1e-4)
    assert (np.load(tmp_path / "c.npy") == codes).mean() > 0.95
