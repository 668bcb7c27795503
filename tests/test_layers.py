import keras
import numpy as np
import pytest

from ml_audio_encoder.nn.layers import ResidualUnit, Snake1d, WNConv1d, WNConvTranspose1d


def test_snake_formula():
    layer = Snake1d()
    x = np.linspace(-3, 3, 24, dtype="float32").reshape(1, 8, 3)
    layer.build(x.shape)
    layer.alpha.assign(np.array([0.5, 1.0, 2.0], "float32"))
    a = np.array([0.5, 1.0, 2.0])
    expected = x + np.sin(a * x) ** 2 / (a + 1e-9)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("k,s,d,p", [(7, 1, 1, 3), (7, 1, 9, 27), (4, 2, 1, 1), (10, 5, 1, 3), (16, 8, 1, 4)])
def test_wnconv_lengths_match_pytorch_arithmetic(k, s, d, p):
    conv = WNConv1d(6, k, strides=s, dilation_rate=d, padding=p)
    x = np.random.randn(2, 80, 3).astype("float32")
    y = conv(x)
    assert y.shape == (2, conv.output_length(80), 6)
    assert conv.output_length(80) == (80 + 2 * p - d * (k - 1) - 1) // s + 1


@pytest.mark.parametrize("s", [2, 4, 5, 8])
def test_transposed_conv_upsamples_by_stride(s):
    import math

    conv = WNConvTranspose1d(4, 2 * s, strides=s, padding=math.ceil(s / 2), output_padding=s % 2)
    y = conv(np.random.randn(1, 7, 3).astype("float32"))
    assert y.shape == (1, 7 * s, 4) == (1, conv.output_length(7), 4)


def test_weight_norm_starts_at_v_and_decouples_scale():
    conv = WNConv1d(5, 3, padding=1)
    x = np.random.randn(1, 10, 2).astype("float32")
    conv.build(x.shape)
    np.testing.assert_allclose(np.asarray(conv.kernel("float32")), np.asarray(conv.kernel_v), rtol=1e-5, atol=1e-6)
    y1 = np.asarray(conv(x)) - np.asarray(conv.bias)
    conv.kernel_g.assign(2 * np.asarray(conv.kernel_g))
    y2 = np.asarray(conv(x)) - np.asarray(conv.bias)
    np.testing.assert_allclose(y2, 2 * y1, rtol=1e-4, atol=1e-5)
    # scaling v changes nothing: only its direction counts
    conv.kernel_v.assign(3 * np.asarray(conv.kernel_v))
    np.testing.assert_allclose(np.asarray(conv(x)) - np.asarray(conv.bias), y2, rtol=1e-4, atol=1e-5)


def test_residual_unit_keeps_shape_and_serializes():
    unit = ResidualUnit(4, dilation=3)
    x = np.random.randn(2, 50, 4).astype("float32")
    assert unit(x).shape == x.shape
    clone = ResidualUnit.from_config(unit.get_config())
    assert clone.get_config() == unit.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(unit))
    assert isinstance(restored, ResidualUnit) and restored.dilation == 3


def test_weight_norm_starts_with_g_equal_to_the_norm_of_v_inside_a_built_model():
    # Regression: an assign() of g inside the model's symbolic build was silently dropped (g stayed 1).
    from ml_audio_encoder import MLAudioEncoder

    model = MLAudioEncoder.from_preset("tiny_test")
    convs = [layer for layer in model._flatten_layers() if hasattr(layer, "kernel_g")]
    assert convs
    for layer in convs:
        v = np.asarray(layer.kernel_v)
        norm = np.sqrt((v.astype(np.float64) ** 2).sum(axis=layer._norm_axes))
        np.testing.assert_allclose(np.asarray(layer.kernel_g), norm, rtol=1e-5)
    # ...so activations keep their scale through the encoder instead of growing block after block.
    x = np.random.RandomState(0).randn(1, 1600, 1).astype("float32") * 0.1
    z = np.asarray(model.encoder(x))
    assert np.std(z) < 1.0


def test_generator_biases_start_at_zero_so_codes_spread():
    """Random conv biases made the latent a constant offset and collapsed the codebooks (one code per level)."""
    import keras

    from ml_audio_encoder import MLAudioEncoder

    keras.utils.set_random_seed(1)
    model = MLAudioEncoder.from_preset("tiny_test")
    biases = [w for w in model.weights if w.path.endswith("bias")]
    assert biases and all(not np.any(keras.ops.convert_to_numpy(b)) for b in biases)
    t = np.arange(16000) / 16000
    x = (0.3 * np.sin(2 * np.pi * (200 + 600 * t) * t) * np.hanning(16000)).astype("float32")[None, :, None]
    codes = keras.ops.convert_to_numpy(model.encode_codes(x))
    assert len(np.unique(codes[0, 0])) > 16  # of 64
