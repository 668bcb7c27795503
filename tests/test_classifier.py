"""Voice classifier on codec codes: shapes, attention weights, serialization, a learnable toy task, the speaker
split. Small models and few steps: the whole file runs in well under 30 s on a CPU."""

import keras
import numpy as np
import pytest

from ml_audio_encoder.experiments.classifier import (
    MEL_PAD,
    PAD_CODE,
    CodeVoiceClassifier,
    MelVoiceClassifier,
    log_mel,
    pad_codes,
    pad_frames,
    pooled_stats,
    speaker_folds,
)

SMALL = dict(n_levels=3, codebook_size=32, d_model=16, num_heads=2, ff_dim=32, num_blocks=1, max_frames=40)


def random_codes(rng, n, levels=3, frames=20, size=32):
    return rng.integers(0, size, (n, levels, frames)).astype("int32")


def test_shapes_and_attention_weights_sum_to_one():
    rng = np.random.default_rng(0)
    model = CodeVoiceClassifier(**SMALL)
    codes = random_codes(rng, 5)
    codes[1, :, 12:] = PAD_CODE  # a shorter clip
    assert tuple(model(codes).shape) == (5, 2)
    weights = model.level_attention(codes)
    assert weights.shape == (5, 3)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    assert (weights > 0).all()
    # padding is masked: the padded clip scores exactly as its unpadded 12 frames
    short = model(codes[1:2, :, :12])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(codes[1:2])), keras.ops.convert_to_numpy(short),
                               atol=1e-5)
    with pytest.raises(ValueError):
        model(codes[:, :2])  # fewer levels than the model reads


def test_pooled_frames_mask_padding():
    """With ``pool`` frames averaged before attention, padding is still masked (12 = 4 pooled frames of 3)."""
    rng = np.random.default_rng(3)
    model = CodeVoiceClassifier(**SMALL, pool=3)
    codes = random_codes(rng, 2, frames=20)
    codes[0, :, 12:] = PAD_CODE
    assert tuple(model(codes).shape) == (2, 2)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(codes[:1])),
                               keras.ops.convert_to_numpy(model(codes[:1, :, :12])), atol=1e-5)
    np.testing.assert_allclose(model.level_attention(codes).sum(axis=1), 1.0, atol=1e-5)


def test_config_round_trip_and_keras_file(tmp_path):
    rng = np.random.default_rng(1)
    codes = random_codes(rng, 4)
    model = CodeVoiceClassifier(**SMALL, positional=False, pool=2)
    expected = keras.ops.convert_to_numpy(model(codes))
    clone = CodeVoiceClassifier.from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(codes)), expected, atol=1e-6)

    path = tmp_path / "voice.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, CodeVoiceClassifier)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loaded(codes)), expected, atol=1e-6)
    np.testing.assert_allclose(loaded.level_attention(codes), model.level_attention(codes), atol=1e-6)

    mel_model = MelVoiceClassifier(n_mels=8, d_model=16, ff_dim=16, max_frames=40)
    feats = rng.normal(size=(2, 10, 8)).astype("float32")
    mel_clone = MelVoiceClassifier.from_config(mel_model.get_config())
    mel_clone.set_weights(mel_model.get_weights())
    np.testing.assert_allclose(keras.ops.convert_to_numpy(mel_clone(feats)),
                               keras.ops.convert_to_numpy(mel_model(feats)), atol=1e-6)


def test_fit_learns_a_separable_code_task():
    """The class decides which half of the codebook level 0 draws from; level 1 is noise."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)

    def task(n):
        y = rng.integers(0, 2, n)
        codes = random_codes(rng, n, levels=2, frames=8)
        codes[:, 0, :] = rng.integers(0, 16, (n, 8)) + 16 * y[:, None]
        return codes, y

    codes, y = task(64)
    model = CodeVoiceClassifier(**{**SMALL, "n_levels": 2}, dropout=0.0)
    # eager: a handful of steps of a tiny model is cheaper than tracing the train step
    model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=True)
    model.fit(codes, y, batch_size=16, epochs=2, verbose=0)
    test, test_y = task(64)
    accuracy = (np.argmax(keras.ops.convert_to_numpy(model(test)), axis=1) == test_y).mean()
    assert accuracy >= 0.9
    np.testing.assert_allclose(model.level_attention(test).sum(axis=1), 1.0, atol=1e-5)


def test_mel_classifier_masks_padding():
    rng = np.random.default_rng(2)
    model = MelVoiceClassifier(n_mels=8, d_model=16, ff_dim=16, max_frames=40)
    clips = [rng.normal(size=(t, 8)).astype("float32") for t in (6, 10)]
    batch = pad_frames(clips)
    assert batch.shape == (2, 10, 8) and (batch[0, 6:] == MEL_PAD).all()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(batch))[0],
                               keras.ops.convert_to_numpy(model(clips[0][None]))[0], atol=1e-5)


def test_feature_helpers():
    codes = pad_codes([np.ones((4, 5), int), np.zeros((4, 3), int)], n_levels=2)
    assert codes.shape == (2, 2, 5) and codes.dtype == np.int32
    assert (codes[1, :, 3:] == PAD_CODE).all() and (codes[1, :, :3] == 0).all()
    frames = np.array([[[1.0], [3.0], [100.0]], [[2.0], [2.0], [2.0]]])
    np.testing.assert_allclose(pooled_stats(frames, [2, 3]), [[2.0, 1.0], [2.0, 0.0]])
    sr, hop = 16000, 160
    t = np.arange(4000) / sr
    mel = log_mel(0.5 * np.sin(2 * np.pi * 440 * t), sr, hop, n_mels=16, window_length=512)
    assert mel.shape == (25, 16) and np.isfinite(mel).all()


@pytest.mark.parametrize("n_folds,seed", [(2, 0), (4, 1), (5, 3)])
def test_speaker_folds_never_share_a_speaker(n_folds, seed):
    rng = np.random.default_rng(seed)
    speakers, labels = [], []
    for s in range(17):  # 9 "F" speakers, 8 "M", uneven clip counts
        k = int(rng.integers(3, 9))
        speakers += [f"spk{s}"] * k
        labels += ["F" if s < 9 else "M"] * k
    speakers, labels = np.array(speakers), np.array(labels)
    folds = speaker_folds(speakers, labels, n_folds=n_folds, seed=seed)
    assert len(folds) == n_folds
    tested = []
    for train, test in folds:
        assert len(np.intersect1d(train, test)) == 0
        assert len(train) + len(test) == len(speakers)
        assert not set(speakers[train]) & set(speakers[test])
        assert set(labels[test]) == {"F", "M"}  # stratified: both labels in every held-out fold
        tested += sorted(set(speakers[test]))
    assert sorted(tested) == sorted(set(speakers))  # each speaker held out exactly once
    assert folds[0][1].tolist() == speaker_folds(speakers, labels, n_folds, seed)[0][1].tolist()
    with pytest.raises(ValueError):
        speaker_folds(speakers, labels, n_folds=18)
