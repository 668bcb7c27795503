"""Training losses: multi-scale mel / STFT distances against a numpy reference, their behaviour under distortion,
waveform L1, SI-SDR, and the least-squares GAN and feature-matching losses on hand-made inputs."""

import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
from conftest import sweep

from ml_audio_encoder.nn.spectral import mel_filters
from ml_audio_encoder.training import losses as L
from ml_audio_encoder.training.discriminator import Discriminator

SR = 16000


def _x(seconds=0.2):
    return sweep(seconds, SR, 60.0, 7500.0)[None, :, None]


def _noise(shape, level, seed=0):
    return (np.random.RandomState(seed).randn(*shape) * level).astype("float32")


def _lowpass(x, cutoff):
    spec = np.fft.rfft(x, axis=1)
    spec[:, np.fft.rfftfreq(x.shape[1], 1 / SR) > cutoff] = 0
    return np.fft.irfft(spec, n=x.shape[1], axis=1).astype("float32")


def _np_stft_mag(x, n_fft):
    """Centred (reflect-padded) periodic-Hann STFT magnitude, hop n_fft // 4, frames = T // hop + 1: (frames, freq)."""
    hop = n_fft // 4
    padded = np.pad(x.astype(np.float64), n_fft // 2, mode="reflect")
    window = np.hanning(n_fft + 1)[:-1]
    frames = [padded[i * hop : i * hop + n_fft] * window for i in range(len(x) // hop + 1)]
    return np.abs(np.fft.rfft(np.stack(frames), axis=1))


def _f(v):
    return float(np.asarray(v))


def test_default_loss_weights_are_dacs():
    assert L.DEFAULT_LOSS_WEIGHTS == {
        "mel": 15.0, "adv/feat": 2.0, "adv/gen": 1.0, "vq/commitment": 0.25, "vq/codebook": 1.0,
    }
    from ml_audio_encoder.training.trainer import DEFAULT_LOSS_WEIGHTS, CodecTrainer

    assert DEFAULT_LOSS_WEIGHTS == L.DEFAULT_LOSS_WEIGHTS
    # Every weighted term is one the trainer produces (a misspelt key would be silently ignored).
    assert set(L.DEFAULT_LOSS_WEIGHTS) <= set(CodecTrainer.TRAIN_METRICS)
    from train.train import CONF_DIR, load_config

    for name in sorted(os.listdir(CONF_DIR)):
        if name.endswith(".yml"):
            weights = load_config(os.path.join(CONF_DIR, name)).get("loss_weights") or {}
            assert set(weights) <= set(CodecTrainer.TRAIN_METRICS), (name, weights)


# -- mel / STFT --------------------------------------------------------------------------------------------------


def test_mel_loss_defaults_are_dacs_seven_scales():
    loss = L.MelSpectrogramLoss(sample_rate=SR)
    assert loss.window_lengths == (32, 64, 128, 256, 512, 1024, 2048)
    assert loss.n_mels == (5, 10, 20, 40, 80, 160, 320)
    assert loss.clamp_eps == 1e-5 and loss.mag_weight == 0.0 and loss.log_weight == 1.0 and loss.pow == 1.0
    assert loss.mel_fmin == (0.0,) * 7 and loss.mel_fmax == (None,) * 7
    config = loss.get_config()
    assert L.MelSpectrogramLoss.from_config(config).get_config() == config


def test_mel_loss_is_zero_for_identical_audio_and_grows_with_noise_and_low_pass():
    loss = L.MelSpectrogramLoss(sample_rate=SR)
    x = _x()
    assert _f(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    noisy = [_f(loss(x, x + _noise(x.shape, level))) for level in (1e-4, 1e-3, 1e-2, 1e-1)]
    assert noisy[0] > 0 and all(a < b for a, b in itertools.pairwise(noisy)), noisy
    lowpassed = [_f(loss(x, _lowpass(x, cutoff))) for cutoff in (6000, 3000, 1000)]
    assert lowpassed[0] > 0 and all(a < b for a, b in itertools.pairwise(lowpassed)), lowpassed


def test_mel_loss_matches_a_numpy_reference_and_sums_over_scales():
    x = _x()
    y = x + _noise(x.shape, 0.02)
    scales = list(zip((32, 64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160, 320)))
    singles = []
    for w, m in scales:
        fb = mel_filters(SR, w, m).astype(np.float64)
        ref, est = _np_stft_mag(x[0, :, 0], w) @ fb, _np_stft_mag(y[0, :, 0], w) @ fb
        expected = np.mean(np.abs(np.log10(np.maximum(est, 1e-5)) - np.log10(np.maximum(ref, 1e-5))))
        single = _f(L.MelSpectrogramLoss(sample_rate=SR, n_mels=(m,), window_lengths=(w,))(x, y))
        assert single == pytest.approx(expected, rel=2e-3, abs=1e-5), (w, m)
        singles.append(single)
    assert _f(L.MelSpectrogramLoss(sample_rate=SR)(x, y)) == pytest.approx(sum(singles), rel=1e-4)


def test_stft_loss_matches_a_numpy_reference():
    loss = L.MultiScaleSTFTLoss()
    assert loss.window_lengths == (2048, 512) and loss.mag_weight == 1.0 and loss.log_weight == 1.0
    assert loss.pow == 2.0 and loss.clamp_eps == 1e-5
    x = _x()
    y = x * 0.7 + _noise(x.shape, 0.01)
    expected = 0.0
    for w in (2048, 512):
        ref, est = _np_stft_mag(x[0, :, 0], w), _np_stft_mag(y[0, :, 0], w)
        log_l1 = np.mean(np.abs(np.log10(np.maximum(est, 1e-5) ** 2) - np.log10(np.maximum(ref, 1e-5) ** 2)))
        expected += log_l1 + np.mean(np.abs(est - ref))
    assert _f(loss(x, y)) == pytest.approx(expected, rel=2e-3)


def test_stft_loss_is_zero_for_identical_audio_and_grows_with_distortion():
    loss = L.MultiScaleSTFTLoss()
    x = _x()
    assert _f(loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    noisy = [_f(loss(x, x + _noise(x.shape, level))) for level in (1e-4, 1e-3, 1e-2, 1e-1)]
    assert all(a < b for a, b in itertools.pairwise(noisy)), noisy
    lowpassed = [_f(loss(x, _lowpass(x, cutoff))) for cutoff in (6000, 3000, 1000)]
    assert all(a < b for a, b in itertools.pairwise(lowpassed)), lowpassed


def test_reconstruction_losses_average_per_item_losses_over_the_batch():
    x = np.concatenate([_x(), _x() * 0.5], axis=0)
    y = x + _noise(x.shape, 0.01)
    for loss in (L.MelSpectrogramLoss(sample_rate=SR, n_mels=(20, 80), window_lengths=(128, 512)),
                 L.MultiScaleSTFTLoss(window_lengths=(512,)), L.L1Loss()):
        per_item = [_f(loss(x[i : i + 1], y[i : i + 1])) for i in range(2)]
        assert _f(loss(x, y)) == pytest.approx(np.mean(per_item), rel=1e-4), loss.name
        # (B, T) is accepted as well as (B, T, 1).
        assert _f(loss(x[..., 0], y[..., 0])) == pytest.approx(_f(loss(x, y)), rel=1e-6)


def test_l1_loss():
    x = np.zeros((2, 100, 1), "float32")
    assert _f(L.L1Loss()(x, x + 0.5)) == pytest.approx(0.5)
    a, b = _noise((3, 50, 1), 1.0, 1), _noise((3, 50, 1), 1.0, 2)
    assert _f(L.L1Loss()(a, b)) == pytest.approx(np.mean(np.abs(a - b)), rel=1e-6)


def test_losses_reject_multichannel_audio():
    with pytest.raises(ValueError, match="mono"):
        L.L1Loss()(np.zeros((1, 10, 2), "float32"), np.zeros((1, 10, 2), "float32"))


# -- SI-SDR ------------------------------------------------------------------------------------------------------


def test_si_sdr_of_identical_and_scaled_signals_is_very_high():
    x = _x()
    assert _f(L.si_sdr(x, x)[0]) > 60.0
    for gain in (0.1, 0.5, 3.0):
        assert _f(L.si_sdr(x, gain * x)[0]) > 60.0


def test_si_sdr_hand_computed_and_scale_invariant():
    ref = _x()[0, :, 0].astype(np.float64)
    ref -= ref.mean()
    noise = np.random.RandomState(3).randn(len(ref))
    noise -= noise.mean()
    noise -= noise @ ref / (ref @ ref) * ref  # orthogonal to the reference
    noise *= np.sqrt(0.01 * (ref @ ref) / (noise @ noise))  # 20 dB below it
    est = (ref + noise).astype("float32")[None, :, None]
    ref32 = ref.astype("float32")[None, :, None]
    assert _f(L.si_sdr(ref32, est)[0]) == pytest.approx(20.0, abs=0.01)
    for gain in (0.05, 0.5, 4.0):
        assert _f(L.si_sdr(ref32, gain * est)[0]) == pytest.approx(20.0, abs=0.01)
    # Without scaling it is the plain SNR: a gain error counts as noise.
    assert _f(L.si_sdr(ref32, 2.0 * ref32, scaling=False)[0]) == pytest.approx(0.0, abs=1e-4)
    # The loss is the negative (mean over the batch), optionally clipped from below.
    assert _f(L.SISDRLoss()(ref32, est)) == pytest.approx(-20.0, abs=0.01)
    assert _f(L.SISDRLoss(clip_min=-10.0)(ref32, est)) == pytest.approx(-10.0)


def test_si_sdr_per_item():
    x = np.concatenate([_x(), _x()], axis=0)
    y = x + np.concatenate([_noise(_x().shape, 0.001), _noise(_x().shape, 0.1)], axis=0)
    values = np.asarray(L.si_sdr(x, y))
    assert values.shape == (2,) and values[0] > values[1] + 30


# -- GAN losses --------------------------------------------------------------------------------------------------


def _logits(value, shape=(2, 4, 3, 1)):
    return np.full(shape, value, "float32")


def test_discriminator_loss_least_squares():
    fmap = np.zeros((2, 4, 3, 8), "float32")
    perfect_real = [[fmap, _logits(1.0)], [_logits(1.0, (2, 5, 1))]]
    perfect_fake = [[fmap, _logits(0.0)], [_logits(0.0, (2, 5, 1))]]
    assert _f(L.discriminator_loss(perfect_fake, perfect_real)) == 0.0
    # Fooled completely: (1 - 0)^2 + 1^2 per sub-discriminator, summed over two.
    assert _f(L.discriminator_loss(perfect_real, perfect_fake)) == pytest.approx(4.0)
    half = [[fmap, _logits(0.5)], [_logits(0.5, (2, 5, 1))]]
    assert _f(L.discriminator_loss(half, half)) == pytest.approx(2 * (0.25 + 0.25))
    # Only the logits count, and a mean is taken per sub-discriminator.
    mixed_fake = [[fmap + 7, np.array([0.0, 1.0], "float32").reshape(2, 1, 1, 1)]]
    mixed_real = [[fmap, np.array([1.0, 0.0], "float32").reshape(2, 1, 1, 1)]]
    assert _f(L.discriminator_loss(mixed_fake, mixed_real)) == pytest.approx(0.5 + 0.5)


def test_generator_adversarial_loss_least_squares():
    real = [[_logits(1.0)], [_logits(1.0)]]
    adv, feat = L.generator_loss([[_logits(1.0)], [_logits(1.0)]], real)
    assert _f(adv) == 0.0 and _f(feat) == 0.0
    adv, _ = L.generator_loss([[_logits(0.0)], [_logits(0.25)]], real)
    assert _f(adv) == pytest.approx(1.0 + 0.5625)


def test_feature_matching_is_the_sum_of_per_layer_mean_l1():
    a1, b1 = np.ones((2, 3, 1), "float32"), np.zeros((2, 3, 1), "float32")  # mean |a - b| = 1
    a2 = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")[None, :, :, None]
    b2 = np.ones_like(a2)  # mean of |0, 1, 2, 3| = 1.5
    a3, b3 = np.full((1, 4, 1), 0.5, "float32"), np.zeros((1, 4, 1), "float32")  # 0.5
    fake = [[a1, a2, _logits(-3.0)], [a3, _logits(9.0)]]
    real = [[b1, b2, _logits(1.0)], [b3, _logits(-9.0)]]  # logits differ: not part of feature matching
    _, feat = L.generator_loss(fake, real)
    assert _f(feat) == pytest.approx(1.0 + 1.5 + 0.5)


def test_feature_matching_does_not_backpropagate_into_real_features():
    fake = tf.Variable(np.ones((1, 3, 2), "float32"))
    real = tf.Variable(np.zeros((1, 3, 2), "float32"))
    with tf.GradientTape(persistent=True) as tape:
        _, feat = L.generator_loss([[fake, _logits(0.0)]], [[real, _logits(1.0)]])
    assert tape.gradient(feat, real) is None
    np.testing.assert_allclose(tape.gradient(feat, fake).numpy(), np.full((1, 3, 2), 1 / 6), rtol=1e-6)


def test_gan_loss_wrapper_batches_fake_and_real_and_stops_gradient_for_the_discriminator():
    d = Discriminator(periods=[2], fft_sizes=[128], width_scale=0.125, sample_rate=SR)
    d.build((None, None, 1))
    gan = L.GANLoss(d)
    real = _x(0.1)
    fake = tf.Variable(real + _noise(real.shape, 0.05))
    d_fake, d_real = gan.forward(fake, real)
    separate_fake, separate_real = d(fake), d(real)
    for joint, alone in ((d_fake, separate_fake), (d_real, separate_real)):
        for j, a in zip(joint, alone):
            np.testing.assert_allclose(np.asarray(j[-1]), np.asarray(a[-1]), rtol=1e-4, atol=1e-5)
    expected_d = L.discriminator_loss(separate_fake, separate_real)
    with tf.GradientTape(persistent=True) as tape:
        d_loss = gan.discriminator_loss(fake, real)
        adv, feat = gan.generator_loss(fake, real)
        g_loss = adv + feat
    assert _f(d_loss) == pytest.approx(_f(expected_d), rel=1e-4)
    assert tape.gradient(d_loss, fake) is None  # the discriminator step must not reach the generator
    d_grads = tape.gradient(d_loss, d.trainable_variables)
    assert all(g is not None for g in d_grads)
    assert np.abs(tape.gradient(g_loss, fake).numpy()).sum() > 0


def test_phase_loss_is_wrap_aware_and_sees_gliding_harmonics():
    sr, n = 24000, 24000
    t = np.arange(n) / sr
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype("float32")[None, :, None]
    loss = L.PhaseLoss(1280, 320)
    assert float(loss.call(x, x)[0]) == pytest.approx(0.0, abs=1e-4)
    # A polarity flip is a phase error of pi everywhere: IP costs ~2, its derivatives nothing.
    assert float(L.PhaseLoss(1280, 320, gd_weight=0, iaf_weight=0).call(x, -x)[0]) == pytest.approx(2.0, abs=1e-2)
    assert float(L.PhaseLoss(1280, 320, ip_weight=0).call(x, -x)[0]) == pytest.approx(0.0, abs=1e-2)
    # A shift by one full period (2*pi in every bin of this tone) costs (almost) nothing: anti-wrapping.
    shifted = np.roll(x, 24000 // 440 * 0 + 600, axis=1)  # 600 samples = 11 periods of 440 Hz (+~0.0 rad)
    assert float(loss.call(x[:, 2000:-2000], shifted[:, 2000:-2000])[0]) < 0.1
    # A tone at a wrong frequency (the 75 Hz comb the mel loss leaves) is penalised by the IAF term.
    wrong = (0.3 * np.sin(2 * np.pi * 450 * t)).astype("float32")[None, :, None]
    iaf = L.PhaseLoss(1280, 320, ip_weight=0, gd_weight=0)
    assert float(iaf.call(x, wrong)[0]) > 0.3
