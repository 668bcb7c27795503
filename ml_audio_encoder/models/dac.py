"""DAC's convolutional encoder and decoder (Improved RVQGAN): strided Snake/weight-norm conv stacks.

Shapes are channels-last. Every convolution is padded so that ``frames = T / hop`` and the decoder returns
``frames · hop`` samples. The helpers at the end walk the conv chains to find the exact receptive field, which
chunked coding needs (``MLAudioEncoder.context_frames``).
"""

from __future__ import annotations

import math

import keras
from keras import ops

from ..nn.layers import ResidualUnit, Snake1d, WNConv1d, WNConvTranspose1d, register


@register
class EncoderBlock(keras.layers.Layer):
    """Three dilated residual units at ``dim // 2`` channels, then a strided conv that doubles the channels."""

    def __init__(self, dim, stride, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.stride = int(dim), int(stride)
        self.units = [ResidualUnit(self.dim // 2, dilation=d) for d in (1, 3, 9)]
        self.snake = Snake1d()
        self.conv = WNConv1d(self.dim, 2 * self.stride, strides=self.stride, padding=math.ceil(self.stride / 2))

    def call(self, x):
        for unit in self.units:
            x = unit(x)
        return self.conv(self.snake(x))

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "stride": self.stride}


@register
class Encoder(keras.layers.Layer):
    """Waveform ``(B, T, 1)`` -> latent ``(B, T / prod(strides), d_latent)``."""

    def __init__(self, d_model=64, strides=(2, 4, 8, 8), d_latent=64, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.strides, self.d_latent = int(d_model), [int(s) for s in strides], int(d_latent)
        self.stem = WNConv1d(self.d_model, 7, padding=3)
        dim = self.d_model
        self.blocks = []
        for stride in self.strides:
            dim *= 2
            self.blocks.append(EncoderBlock(dim, stride))
        self.snake = Snake1d()
        self.head = WNConv1d(self.d_latent, 3, padding=1)

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(self.snake(x))

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "strides": self.strides, "d_latent": self.d_latent}


@register
class DecoderBlock(keras.layers.Layer):
    """Snake, transposed conv that upsamples by ``stride`` to ``output_dim`` channels, three residual units."""

    def __init__(self, output_dim, stride, **kwargs):
        super().__init__(**kwargs)
        self.output_dim, self.stride = int(output_dim), int(stride)
        self.snake = Snake1d()
        self.conv = WNConvTranspose1d(
            self.output_dim,
            2 * self.stride,
            strides=self.stride,
            padding=math.ceil(self.stride / 2),
            output_padding=self.stride % 2,
        )
        self.units = [ResidualUnit(self.output_dim, dilation=d) for d in (1, 3, 9)]

    def call(self, x):
        x = self.conv(self.snake(x))
        for unit in self.units:
            x = unit(x)
        return x

    def get_config(self):
        return {**super().get_config(), "output_dim": self.output_dim, "stride": self.stride}


@register
class Decoder(keras.layers.Layer):
    """Latent ``(B, frames, d)`` -> waveform ``(B, frames · prod(rates), d_out)`` in [-1, 1] (tanh output)."""

    def __init__(self, channels=1536, rates=(8, 8, 4, 2), d_out=1, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.rates, self.d_out = int(channels), [int(r) for r in rates], int(d_out)
        self.stem = WNConv1d(self.channels, 7, padding=3)
        self.blocks = [DecoderBlock(self.channels // 2 ** (i + 1), r) for i, r in enumerate(self.rates)]
        self.snake = Snake1d()
        self.head = WNConv1d(self.d_out, 7, padding=3)

    def call(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return ops.tanh(self.head(self.snake(x)))

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "rates": self.rates, "d_out": self.d_out}


def conv_layers(layer):
    """The conv layers under ``layer`` in forward order: depth-first over sub-layers in the order they were set,
    which is the order every ``call`` here applies them in."""
    found = []
    for child in layer._layers:
        if isinstance(child, (WNConv1d, WNConvTranspose1d)):
            found.append(child)
        else:
            found.extend(conv_layers(child))
    return found


def input_interval(convs, first, last):
    """Input positions that outputs ``first..last`` of a conv chain depend on, as ``(lo, hi)`` (inclusive).

    Walks the chain backwards with PyTorch's index arithmetic. Residual branches never reach further than the
    conv chain they wrap, so the chain alone gives the exact support.
    """
    lo, hi = first, last
    for conv in reversed(convs):
        k_span, s, p = conv.dilation_rate * (conv.kernel_size - 1), conv.strides, conv.padding
        if isinstance(conv, WNConvTranspose1d):
            lo, hi = -((-(lo + p - k_span)) // s), (hi + p) // s
        else:
            lo, hi = lo * s - p, hi * s - p + k_span
    return lo, hi
