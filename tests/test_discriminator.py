"""Discriminators (DAC's MPD + MRD, optional MSD): structure at full width from the layer configs alone, feature-map
shapes on tiny inputs, and serialization. Everything that runs a forward pass uses tiny widths and ~0.1 s of audio."""

import math

import keras
import numpy as np
import pytest

from ml_audio_encoder.training.discriminator import (
    BANDS,
    BandDiscriminator,
    Discriminator,
    MultiBandSTFTDiscriminator,
    MultiPeriodDiscriminator,
    PeriodDiscriminator,
    WNConv2d,
    preprocess_audio,
)

SR = 16000
T = 1600  # 0.1 s


def _audio(b=2, t=T, seed=0):
    return (np.random.RandomState(seed).randn(b, t, 1) * 0.1).astype("float32")


def _ceil_div(n, d, times=1):
    for _ in range(times):
        n = -(-n // d)
    return n


def _shapes(fmaps):
    return [tuple(int(s) for s in f.shape) for f in fmaps]


def tiny_discriminator(**kw):
    kw = {"periods": [2, 3], "fft_sizes": [256, 128], "width_scale": 0.125, "sample_rate": SR, **kw}
    d = Discriminator(**kw)
    d.build((None, None, 1))
    return d


# -- structure at DAC's full width (no weights are created) -----------------------------------------------------


def test_default_discriminator_is_dacs_mpd_plus_mrd_without_msd():
    d = Discriminator()  # not built: configs only
    assert d.rates == () and d.periods == (2, 3, 5, 7, 11) and d.fft_sizes == (2048, 1024, 512)
    names = [sub.name for sub in d.discriminators]
    assert names == ["mpd_2", "mpd_3", "mpd_5", "mpd_7", "mpd_11", "mrd_2048", "mrd_1024", "mrd_512"]
    assert not any(isinstance(sub, BandDiscriminator) for sub in d.discriminators[:5])
    # The multi-scale discriminator is opt-in and sits between the periods and the STFT ones (DAC's order).
    with_msd = Discriminator(rates=[1, 2])
    assert [sub.name for sub in with_msd.discriminators][5:7] == ["msd_1", "msd_2"]


def test_period_discriminator_channels_kernels_and_strides_at_full_width():
    d = Discriminator()
    for sub, period in zip(d.discriminators[:5], (2, 3, 5, 7, 11)):
        assert isinstance(sub, PeriodDiscriminator) and sub.period == period
        configs = [c.get_config() for c in sub.convs]
        assert [c["filters"] for c in configs] == [32, 128, 512, 1024, 1024]
        assert all(c["kernel_size"] == (5, 1) and c["padding"] == (2, 0) for c in configs)
        assert [c["strides"] for c in configs] == [(3, 1)] * 4 + [(1, 1)]
        assert all(c["activation"] == "leaky_relu" and c["negative_slope"] == pytest.approx(0.1) for c in configs)
        post = sub.conv_post.get_config()
        assert post["filters"] == 1 and post["kernel_size"] == (3, 1) and post["activation"] is None


def test_band_discriminator_channels_and_band_edges_at_full_width():
    d = Discriminator()
    for sub, n_fft in zip(d.discriminators[5:], (2048, 1024, 512)):
        assert isinstance(sub, BandDiscriminator)
        assert sub.window_length == n_fft and sub.hop_length == n_fft // 4
        assert sub.bands == BANDS == ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
        n_freq = n_fft // 2 + 1
        assert sub.band_edges == [(int(lo * n_freq), int(hi * n_freq)) for lo, hi in BANDS]
        assert sub.band_edges[0][0] == 0 and sub.band_edges[-1][1] == n_freq
        assert all(a[1] == b[0] for a, b in zip(sub.band_edges, sub.band_edges[1:]))  # contiguous, no gap/overlap
        for stack in sub.band_convs:
            configs = [c.get_config() for c in stack]
            assert [c["filters"] for c in configs] == [32] * 5
            assert [c["kernel_size"] for c in configs] == [(3, 9)] * 4 + [(3, 3)]
            assert [c["strides"] for c in configs] == [(1, 1), (1, 2), (1, 2), (1, 2), (1, 1)]
        assert sub.conv_post.filters == 1 and sub.conv_post.kernel_size == (3, 3)
    assert Discriminator().discriminators[5].band_edges == [(0, 102), (102, 256), (256, 512), (512, 768), (768, 1025)]


def test_width_scale_scales_every_channel_count():
    d = Discriminator(width_scale=0.25)
    assert [c.filters for c in d.discriminators[0].convs] == [8, 32, 128, 256, 256]
    assert d.discriminators[-1].channels == 8
    explicit = Discriminator(mpd_channels=[4, 8, 16, 32, 32], mrd_channels=6)
    assert [c.filters for c in explicit.discriminators[0].convs] == [4, 8, 16, 32, 32]
    assert explicit.discriminators[-1].channels == 6


# -- feature maps on tiny inputs ---------------------------------------------------------------------------------


def test_multi_period_discriminator_shapes():
    mpd = MultiPeriodDiscriminator(periods=(2, 3), channels=(4, 8, 16, 16, 16))
    x = _audio()
    out = mpd(x)
    assert len(out) == 2
    for period, fmaps in zip((2, 3), out):
        assert len(fmaps) == 6
        # DAC pads by period - T % period (a whole period when T divides), then views (T / p, p).
        h = (T + period - T % period) // period
        expected = [(2, _ceil_div(h, 3, min(k + 1, 4)), period, c) for k, c in enumerate((4, 8, 16, 16, 16))]
        expected.append((2, expected[-1][1], period, 1))
        assert _shapes(fmaps) == expected


def test_period_discriminator_views_time_as_rows_of_period_samples():
    """The first conv has a (5, 1) kernel: each column (phase within the period) is filtered independently."""
    pd = PeriodDiscriminator(3, channels=(2, 2, 2, 2, 2))
    pd.build()
    x = np.zeros((1, 300, 1), "float32")
    x[0, 150, 0] = 1.0  # phase 0 of row 50
    first = np.asarray(pd(x)[0])
    # Only column 0 differs from the bias-only response.
    bias_only = np.asarray(pd(np.zeros_like(x))[0])
    changed = np.abs(first - bias_only).sum(axis=(0, 1, 3))
    assert changed[0] > 0 and np.all(changed[1:] == 0)


def test_multi_band_stft_discriminator_shapes():
    mrd = MultiBandSTFTDiscriminator(window_lengths=(256, 128), channels=4)
    out = mrd(_audio())
    assert len(out) == 2
    for n_fft, fmaps in zip((256, 128), out):
        assert len(fmaps) == 5 * len(BANDS) + 1
        frames = math.ceil(T / (n_fft // 4))  # DAC's match_stride framing
        widths = []
        for b, (lo, hi) in enumerate(_band_edges(n_fft)):
            band = fmaps[5 * b : 5 * b + 5]
            n = hi - lo
            expected = [(2, frames, n, 4), (2, frames, _ceil_div(n, 2), 4), (2, frames, _ceil_div(n, 2, 2), 4),
                        (2, frames, _ceil_div(n, 2, 3), 4), (2, frames, _ceil_div(n, 2, 3), 4)]
            assert _shapes(band) == expected
            widths.append(expected[-1][2])
        assert _shapes(fmaps[-1:]) == [(2, frames, sum(widths), 1)]  # bands concatenated along frequency


def _band_edges(n_fft):
    n = n_fft // 2 + 1
    return [(int(lo * n), int(hi * n)) for lo, hi in BANDS]


def test_band_spectrogram_is_the_complex_stft_split_into_bands():
    bd = BandDiscriminator(128, channels=2)
    x = _audio(1)
    bands = bd.spectrogram(x)
    full = np.concatenate([np.asarray(b) for b in bands], axis=2)
    assert full.shape == (1, math.ceil(T / 32), 65, 2)
    # Real and imaginary parts of a periodic-Hann STFT. With match_stride (audiotools) the signal is padded by
    # (n_fft - hop) // 2, framed centred, and the first two frames dropped: frame k starts at k * hop - 48 here.
    window = np.hanning(129)[:-1]
    k = 10
    seg = x[0, k * 32 - 48 : k * 32 + 80, 0]
    ref = np.fft.rfft(seg * window)
    np.testing.assert_allclose(full[0, k, :, 0], ref.real, atol=1e-4)
    np.testing.assert_allclose(full[0, k, :, 1], ref.imag, atol=1e-4)


def test_combined_discriminator_returns_lists_of_feature_maps_with_logits_last():
    d = tiny_discriminator()
    out = d(_audio())
    assert isinstance(out, list) and len(out) == 4
    assert all(isinstance(fmaps, list) for fmaps in out)
    assert [len(f) for f in out] == [6, 6, 26, 26]
    for fmaps in out:
        assert fmaps[-1].shape[-1] == 1  # logits
        assert all(f.shape[0] == 2 for f in fmaps)
        assert all(np.isfinite(np.asarray(f)).all() for f in fmaps)
    # (B, T) input is accepted and equals (B, T, 1).
    x = _audio()
    np.testing.assert_allclose(np.asarray(d(x[..., 0])[0][-1]), np.asarray(d(x)[0][-1]), atol=1e-6)


def test_discriminator_is_per_item_and_gain_invariant():
    """DAC's preprocessing (remove DC, peak-normalise to 0.8) makes the output independent of gain, DC offset and
    of the other items in the batch (so fake and real may share a batch)."""
    d = tiny_discriminator()
    x = _audio(2)
    both = d(x)
    alone = d(x[1:] * 3.0 + 0.05)
    for fb, fa in zip(both, alone):
        np.testing.assert_allclose(np.asarray(fb[-1])[1:], np.asarray(fa[-1]), rtol=1e-3, atol=1e-4)


def test_preprocess_audio_removes_dc_and_peak_normalises():
    x = _audio(3) + np.array([0.5, -0.2, 0.0], "float32")[:, None, None]
    y = np.asarray(preprocess_audio(x))
    np.testing.assert_allclose(y.mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.abs(y).max(axis=1), 0.8, rtol=1e-5)


def test_scale_discriminator_option():
    d = tiny_discriminator(periods=[], fft_sizes=[], rates=[1, 2])
    out = d(_audio())
    assert [len(f) for f in out] == [7, 7]
    for rate, fmaps in zip((1, 2), out):
        assert all(len(f.shape) == 3 for f in fmaps)
        assert fmaps[-1].shape[-1] == 1
        n = T // rate
        assert fmaps[0].shape[1] == n and fmaps[-1].shape[1] == _ceil_div(n, 4, 4)


def test_wnconv2d_starts_at_v_and_pads_like_pytorch():
    conv = WNConv2d(3, (3, 5), strides=(1, 2), padding=(1, 2))
    x = np.random.RandomState(1).randn(2, 7, 9, 2).astype("float32")
    y = np.asarray(conv(x))
    assert y.shape == (2, 7, 5, 3) == conv.compute_output_shape(x.shape)
    kernel = np.asarray(conv.kernel())
    np.testing.assert_allclose(kernel, np.asarray(conv.weight_v), rtol=1e-5, atol=1e-7)  # g = ||v|| at init
    padded = np.pad(x, [(0, 0), (1, 1), (2, 2), (0, 0)])
    ref = np.zeros_like(y)
    for i in range(7):
        for j in range(5):
            patch = padded[:, i : i + 3, 2 * j : 2 * j + 5, :]
            ref[:, i, j, :] = np.einsum("bhwc,hwcf->bf", patch, kernel) + np.asarray(conv.bias)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


# -- serialization -----------------------------------------------------------------------------------------------


def test_get_config_from_config_round_trip(tmp_path):
    d = tiny_discriminator(periods=[3], fft_sizes=[128], rates=[2])
    config = d.get_config()
    clone = Discriminator.from_config(config)
    assert clone.get_config() == config
    clone.build((None, None, 1))
    assert [w.shape for w in clone.weights] == [w.shape for w in d.weights]
    clone.set_weights(d.get_weights())
    x = _audio()
    for a, b in zip(d(x), clone(x)):
        np.testing.assert_allclose(np.asarray(a[-1]), np.asarray(b[-1]), atol=1e-6)
    # Registered classes: a .keras file restores the same model without custom_objects.
    path = str(tmp_path / "d.keras")
    d.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, Discriminator) and loaded.get_config() == config
    np.testing.assert_allclose(np.asarray(loaded(x)[-1][-1]), np.asarray(d(x)[-1][-1]), atol=1e-6)
    for cls, layer in ((MultiPeriodDiscriminator, MultiPeriodDiscriminator(periods=(2,), channels=(2,) * 5)),
                       (MultiBandSTFTDiscriminator, MultiBandSTFTDiscriminator(window_lengths=(128,), channels=2))):
        assert cls.from_config(layer.get_config()).get_config() == layer.get_config()


def test_traced_with_an_unknown_length_gives_the_eager_outputs():
    """``model.fit`` on a PyDataset traces the train step with audio of shape (None, None, 1): the period fold and the
    match_stride padding must then work on tensors (the GAN phase failed at its first step before)."""
    import tensorflow as tf

    disc = Discriminator(sample_rate=16000, periods=[2, 3], fft_sizes=[256], width_scale=0.125)
    traced = tf.function(disc, input_signature=[tf.TensorSpec((None, None, 1), tf.float32)])
    for seed, shape in ((0, (2, 4000, 1)), (1, (3, 4001, 1))):
        x = np.random.default_rng(seed).standard_normal(shape).astype("float32")
        for a, b in zip(tf.nest.flatten(disc(x)), tf.nest.flatten(traced(x))):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
