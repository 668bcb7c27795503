"""Codebooks that start alive: k-means initialization from real audio, dead-code restarts, usage counting."""

import os

import numpy as np
import pytest

from ml_audio_encoder import MLAudioEncoder
from ml_audio_encoder.nn.quantize import ResidualVectorQuantize, kmeans_cosine

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _np(x):
    import keras

    return np.asarray(keras.ops.convert_to_numpy(x))


def _real_audio(sample_rate):
    from ml_audio_encoder.runtime import audio_io

    clips = []
    for name in ("speech_female.ogg", "speech_male.ogg", "music.ogg", "general.ogg"):
        audio, sr = audio_io.load(os.path.join(DATA, name))
        mono = audio.mean(axis=0)
        clips.append(audio_io.resample(mono, sr, sample_rate) if sr != sample_rate else mono)
    return np.concatenate(clips).astype("float32")


def test_kmeans_is_deterministic_and_uses_every_centroid():
    x = np.random.default_rng(0).standard_normal((2000, 8)).astype("float32")
    a, b = kmeans_cosine(x, 64, iters=10, seed=3), kmeans_cosine(x, 64, iters=10, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, kmeans_cosine(x, 64, iters=10, seed=4))
    unit = lambda v: v / np.linalg.norm(v, axis=-1, keepdims=True)  # noqa: E731
    assign = np.argmax(unit(x) @ unit(a).T, axis=1)
    assert len(np.unique(assign)) == 64


def test_kmeans_init_on_real_audio_puts_every_level_in_use():
    """The shipped architecture (1024 codes per level) on ~21 s of real speech, music and sound."""
    import keras

    keras.utils.set_random_seed(0)
    model = MLAudioEncoder.from_preset("fast_24khz")
    x = _real_audio(24000)
    x = x[: len(x) // 320 * 320][None, :, None]
    z = _np(model.encoder(x))
    before = [len(np.unique(c)) / 1024 for c in _np(model.encode_codes(x))[0]]
    used = model.quantizer.init_codebooks(z, iters=10, seed=0)
    assert min(used) >= 0.9, used
    after = [len(np.unique(c)) / 1024 for c in _np(model.encode_codes(x))[0]]
    assert after == pytest.approx(used) and min(after) > max(before), (before, after)


def test_kmeans_init_is_deterministic_with_a_seed():
    import keras

    z = np.random.default_rng(1).standard_normal((1, 3000, 16)).astype("float32")
    books = []
    for _ in range(2):
        keras.utils.set_random_seed(0)
        rvq = ResidualVectorQuantize(16, 3, 64, 4)
        rvq.build((None, None, 16))
        rvq.init_codebooks(z, iters=5, seed=7)
        books.append([_np(q.codebook) for q in rvq.quantizers])
    for a, b in zip(*books):
        np.testing.assert_array_equal(a, b)


def test_restarted_codes_are_picked_again():
    import keras

    keras.utils.set_random_seed(0)
    rvq = ResidualVectorQuantize(16, 1, 64, 4)
    rvq.build((None, None, 16))
    q = rvq.quantizers[0]
    z = np.random.default_rng(2).standard_normal((1, 4000, 16)).astype("float32")
    inputs = rvq.level_inputs(z)[0]
    # Kill half the codebook: point 32 codes away from every input, so no frame picks them.
    book = _np(q.codebook)
    book[:32] = -inputs.mean(axis=0) * 100.0
    q.codebook.assign(book)
    assert set(np.unique(_np(rvq(z)[1]))).isdisjoint(range(1, 32))
    q.restart_codes(np.arange(32), inputs, seed=5)
    first = _np(q.codebook)
    used = np.unique(_np(rvq(z)[1]))
    assert len(set(used) & set(range(32))) >= 28
    q.codebook.assign(book)
    q.restart_codes(np.arange(32), inputs, seed=5)
    np.testing.assert_array_equal(_np(q.codebook), first)  # deterministic for a seed


def test_usage_metric_and_dead_code_restart_during_fit():
    import keras

    from ml_audio_encoder.training.codebooks import CodeUsage, DeadCodeRestart
    from ml_audio_encoder.training.discriminator import Discriminator
    from ml_audio_encoder.training.trainer import CodecTrainer

    usage = CodeUsage(2, 8)
    usage.update_state(np.array([[[0, 1, 1], [2, 2, 2]]]))
    assert float(usage.result()) == pytest.approx((2 / 8 + 1 / 8) / 2)

    keras.utils.set_random_seed(0)
    generator = MLAudioEncoder.from_preset("tiny_test")
    disc = Discriminator(sample_rate=16000, periods=[2], fft_sizes=[128], bands=[(0.0, 1.0)], width_scale=0.125)
    disc.build((None, None, 1))
    trainer = CodecTrainer(generator, disc, adversarial=False)
    trainer.compile()

    class Batches:
        def get_batch(self, index):
            return np.random.default_rng(index).standard_normal((4, 4000, 1)).astype("float32") * 0.1

    restart = DeadCodeRestart(Batches(), restart_after=1, check_every=2, seed=0)
    data = np.random.default_rng(0).standard_normal((16, 4000, 1)).astype("float32") * 0.1
    history = trainer.fit(data, batch_size=4, epochs=1, callbacks=[restart], verbose=0)
    assert history.history["codes/restarted"][0] > 0
    assert 0.0 < history.history["codes/used"][0] <= 1.0
