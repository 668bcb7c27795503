"""Building blocks of the generator: Snake activation, weight-normalised convolutions, residual units.

Everything here is written with backend-neutral ``keras.ops`` so the same layers train under JAX on a GPU
machine without TensorFlow and export as a TensorFlow SavedModel. Tensors are channels-last ``(B, T, C)``.

Padding is explicit (``ops.pad`` then a 'valid' convolution) so that lengths follow PyTorch's arithmetic, which
the hop/receptive-field bookkeeping in :mod:`ml_audio_encoder.models.codec` relies on.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

register = keras.saving.register_keras_serializable(package="ml_audio_encoder")

# PyTorch's default conv init (kaiming-uniform with a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)); DAC trains
# from it because its trunc-normal init never reaches weight-normed kernels. Matching it keeps DAC's recipe valid.
class TorchUniform(keras.initializers.Initializer):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default conv init (kaiming_uniform with a=sqrt(5)), as DAC.

    Drawn with numpy (its global RNG, which ``keras.utils.set_random_seed`` seeds, or ``seed``): the models build
    themselves symbolically, where variable initialization is deferred into a stateless scope that Keras' own RNG
    cannot run in, and per-shape ``keras.random`` draws cost one XLA compilation each under JAX.
    """

    def __init__(self, fan_in, seed=None):
        self.fan_in = int(fan_in)
        self.seed = seed

    def sample(self, shape):
        bound = 1.0 / math.sqrt(max(1, self.fan_in))
        rng = np.random if self.seed is None else np.random.default_rng(self.seed)
        return rng.uniform(-bound, bound, size=tuple(shape)).astype(np.float32)

    def __call__(self, shape, dtype=None):
        return ops.convert_to_tensor(self.sample(shape).astype(keras.backend.standardize_dtype(dtype or "float32")))

    def get_config(self):
        return {"fan_in": self.fan_in, "seed": self.seed}


def weight_norm_initializers(shape, fan_in, norm_axes):
    """Initializers ``(v, g)`` for a weight-normalized kernel: ``v ~ TorchUniform(fan_in)``, ``g = ||v||``.

    Both come from one numpy draw, so the initial kernel ``g · v / ||v||`` equals ``v`` exactly. (Assigning g in
    ``build`` does not work: inside the symbolic build the assignment is silently dropped, g stayed 1, every conv
    got unit-norm filters, activations grew ~3x per block and the tanh output saturated.)
    """
    v = TorchUniform(fan_in).sample(shape)
    g = np.sqrt(np.sum(np.square(v.astype(np.float64)), axis=tuple(norm_axes))).astype(np.float32)

    def constant(value):
        def init(shape, dtype=None):
            return ops.convert_to_tensor(value.astype(keras.backend.standardize_dtype(dtype or "float32")))

        return init

    return constant(v), constant(g)


@register
class Snake1d(keras.layers.Layer):
    """Snake activation ``x + sin²(αx) / α`` with one learned α per channel.

    A periodic inductive bias suits audio: it lets the generator produce harmonics without the aliasing that
    leaky ReLU's kinks create. The ``1e-9`` keeps a channel whose α collapses to 0 finite.
    """

    def build(self, input_shape):
        self.alpha = self.add_weight(
            name="alpha", shape=(input_shape[-1],), initializer="ones", trainable=True
        )

    def call(self, x):
        alpha = ops.cast(self.alpha, x.dtype)
        return x + ops.reciprocal(alpha + 1e-9) * ops.square(ops.sin(alpha * x))

    def compute_output_shape(self, input_shape):
        return input_shape


class _WeightNorm(keras.layers.Layer):
    """Shared weight-norm machinery: kernel ``w = g · v / ‖v‖`` with the norm taken per output channel.

    Decoupling direction (v) from magnitude (g) is what DAC uses to stabilise GAN training of deep conv stacks.
    ``g`` starts at ``‖v‖`` so the initial kernel equals ``v``. tensorflow-addons' WeightNormalization is
    end-of-life and incompatible with Keras 3, hence this small own implementation.
    """

    _norm_axes: tuple  # axes of the kernel reduced for the per-output-channel norm

    def __init__(self, filters, kernel_size, strides=1, dilation_rate=1, padding=0, use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.dilation_rate = int(dilation_rate)
        self.padding = int(padding)
        self.use_bias = bool(use_bias)

    def _kernel_shape(self, in_channels):
        raise NotImplementedError

    def build(self, input_shape):
        in_channels = input_shape[-1]
        shape = self._kernel_shape(in_channels)
        # PyTorch's fan_in: in·k for a conv, out·k for a transposed conv (its weight is (in, out, k)).
        fan_in = shape[0] * shape[1]
        v_init, g_init = weight_norm_initializers(shape, fan_in, self._norm_axes)
        self.kernel_v = self.add_weight(name="kernel_v", shape=shape, initializer=v_init)
        self.kernel_g = self.add_weight(name="kernel_g", shape=(self.filters,), initializer=g_init)
        if self.use_bias:
            # Zero, not PyTorch's U(±1/√fan_in): with random biases the encoder's output is mostly a constant offset
            # (time-mean 5x its variation over time for small_24khz), every frame picks the same few codes and the
            # codebooks collapse before training can spread them (measured on dev clips: 15 codes of 1024 used at
            # level 1 at init, 1 after 200 CPU steps; with zero biases 810 at init).
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def kernel(self, dtype):
        v = ops.cast(self.kernel_v, dtype)
        g = ops.cast(self.kernel_g, dtype)
        norm = ops.sqrt(ops.sum(ops.square(v), axis=self._norm_axes, keepdims=True) + 1e-12)
        shape = [1, 1, 1]
        shape[self._out_axis] = self.filters
        return v * (ops.reshape(g, shape) / norm)

    def _add_bias(self, y):
        if self.use_bias:
            y = y + ops.cast(self.bias, y.dtype)
        return y

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            dilation_rate=self.dilation_rate,
            padding=self.padding,
            use_bias=self.use_bias,
        )
        return config


@register
class WNConv1d(_WeightNorm):
    """Weight-normalised 1-D convolution with PyTorch-style symmetric integer ``padding``."""

    _norm_axes = (0, 1)  # kernel is (k, in, out)
    _out_axis = 2

    def _kernel_shape(self, in_channels):
        return (self.kernel_size, in_channels, self.filters)

    def call(self, x):
        if self.padding:
            x = ops.pad(x, [[0, 0], [self.padding, self.padding], [0, 0]])
        y = ops.conv(
            x,
            self.kernel(x.dtype),
            strides=self.strides,
            padding="valid",
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )
        return self._add_bias(y)

    def output_length(self, length):
        span = self.dilation_rate * (self.kernel_size - 1) + 1
        return (length + 2 * self.padding - span) // self.strides + 1


@register
class WNConvTranspose1d(_WeightNorm):
    """Weight-normalised transposed 1-D convolution with PyTorch's ``padding``/``output_padding`` semantics.

    The full ('valid') transposed output is cropped by ``padding`` on the left and ``padding - output_padding``
    on the right, which is exactly what PyTorch computes. For odd strides (5 in the 24 kHz preset)
    ``output_padding = stride % 2`` keeps ``frames · stride`` samples out.
    """

    _norm_axes = (0, 2)  # kernel is (k, out, in)
    _out_axis = 1

    def __init__(self, filters, kernel_size, strides=1, dilation_rate=1, padding=0, output_padding=0, **kwargs):
        super().__init__(filters, kernel_size, strides, dilation_rate, padding, **kwargs)
        self.output_padding = int(output_padding)
        if self.output_padding > self.padding:
            raise ValueError("output_padding must not exceed padding")

    def _kernel_shape(self, in_channels):
        return (self.kernel_size, self.filters, in_channels)

    def call(self, x):
        y = ops.conv_transpose(
            x,
            self.kernel(x.dtype),
            strides=self.strides,
            padding="valid",
            data_format="channels_last",
            dilation_rate=self.dilation_rate,
        )
        right = self.padding - self.output_padding
        if self.padding or right:
            y = y[:, self.padding : ops.shape(y)[1] - right, :]
        return self._add_bias(y)

    def output_length(self, length):
        span = self.dilation_rate * (self.kernel_size - 1) + 1
        return (length - 1) * self.strides - 2 * self.padding + span + self.output_padding

    def get_config(self):
        config = super().get_config()
        config["output_padding"] = self.output_padding
        return config


@register
class ResidualUnit(keras.layers.Layer):
    """Snake → dilated k=7 conv → Snake → 1×1 conv, added to the input.

    Dilations 1, 3, 9 in an encoder/decoder block widen the receptive field cheaply. When the branch comes out
    shorter than the input (only with unpadded convolutions) the input is centre-cropped to match.
    """

    def __init__(self, dim, dilation=1, kernel_size=7, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.dilation = int(dilation)
        self.kernel_size = int(kernel_size)
        pad = ((kernel_size - 1) * dilation) // 2
        self.snake1 = Snake1d()
        self.conv1 = WNConv1d(dim, kernel_size, dilation_rate=dilation, padding=pad)
        self.snake2 = Snake1d()
        self.conv2 = WNConv1d(dim, 1)

    def call(self, x):
        y = self.conv2(self.snake2(self.conv1(self.snake1(x))))
        crop = (x.shape[1] - y.shape[1]) // 2 if (x.shape[1] and y.shape[1]) else 0
        if crop > 0:
            x = x[:, crop:-crop, :]
        return x + y

    def get_config(self):
        config = super().get_config()
        config.update(dim=self.dim, dilation=self.dilation, kernel_size=self.kernel_size)
        return config
