"""ConvNeXt blocks at the frame rate (Vocos's backbone, from ConvNeXt: Liu et al. 2022; Siuzdak 2023).

A frame-rate codec spends its compute at 75 frames/s instead of at 3-24 kHz as DAC's upsampling convolutions do:
a stack of these blocks over ``(B, frames, dim)`` replaces DAC's strided encoder and decoder, which is what makes
the model trainable on a CPU (../shared/notes/frame_rate_prototype.md: ~7x more training per CPU-second).

Every op is per-frame except the depthwise convolution (kernel 7, zero "same" padding), so a stack of ``n`` blocks
sees ``3 · n`` frames on each side; :attr:`ConvNeXtBackbone.context_frames` reports it for chunked coding.
"""

from __future__ import annotations

import keras
from keras import ops

from .layers import register


@register
class ConvNeXtBlock(keras.layers.Layer):
    """Depthwise conv (k=7) → LayerNorm → Linear(dim → mult·dim) → GELU → Linear(→ dim) → layer scale, + input.

    The layer scale γ starts at ``layer_scale`` (Vocos: 1 / number of blocks) so that a deep stack starts close to
    the identity and trains stably without warm-up.
    """

    def __init__(self, dim, intermediate_dim=None, kernel_size=7, layer_scale=None, **kwargs):
        super().__init__(**kwargs)
        self.dim = int(dim)
        self.intermediate_dim = int(intermediate_dim or 3 * dim)
        self.kernel_size = int(kernel_size)
        self.layer_scale = None if layer_scale is None else float(layer_scale)
        self.dwconv = keras.layers.DepthwiseConv1D(self.kernel_size, padding="same", name="dwconv")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.pwconv1 = keras.layers.Dense(self.intermediate_dim, name="pwconv1")
        self.pwconv2 = keras.layers.Dense(self.dim, name="pwconv2")

    def build(self, input_shape):
        shape = tuple(input_shape[:-1]) + (self.dim,)
        self.dwconv.build(shape)
        self.norm.build(shape)
        self.pwconv1.build(shape)
        self.pwconv2.build(tuple(input_shape[:-1]) + (self.intermediate_dim,))
        if self.layer_scale is not None:
            self.gamma = self.add_weight(
                name="gamma", shape=(self.dim,), initializer=keras.initializers.Constant(self.layer_scale)
            )

    def call(self, x):
        y = self.pwconv2(ops.gelu(self.pwconv1(self.norm(self.dwconv(x))), approximate=True))
        if self.layer_scale is not None:
            y = y * ops.cast(self.gamma, y.dtype)
        return x + y

    @property
    def context_frames(self):
        return (self.kernel_size - 1) // 2

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "intermediate_dim": self.intermediate_dim,
                "kernel_size": self.kernel_size, "layer_scale": self.layer_scale}


@register
class ConvNeXtBackbone(keras.layers.Layer):
    """Embedding conv → LayerNorm → ``n_blocks`` :class:`ConvNeXtBlock` → LayerNorm, ``(B, F, C_in) -> (B, F, dim)``.

    As Vocos's ``VocosBackbone``; ``embed_kernel`` is 7 there (a mel input of 100 channels). A wide input, such as
    an STFT front end's 1.9k features, uses ``embed_kernel=1``: the blocks provide the temporal context.
    """

    def __init__(self, dim=384, n_blocks=8, intermediate_dim=None, embed_kernel=7, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.n_blocks = int(dim), int(n_blocks)
        self.intermediate_dim = int(intermediate_dim or 3 * self.dim)
        self.embed_kernel = int(embed_kernel)
        self.embed = keras.layers.Conv1D(self.dim, self.embed_kernel, padding="same", name="embed")
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.blocks = [
            ConvNeXtBlock(self.dim, self.intermediate_dim, layer_scale=1.0 / max(1, self.n_blocks), name=f"block_{i}")
            for i in range(self.n_blocks)
        ]
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")

    def build(self, input_shape):
        self.embed.build(input_shape)
        shape = tuple(input_shape[:-1]) + (self.dim,)
        self.norm.build(shape)
        for block in self.blocks:
            block.build(shape)
        self.final_norm.build(shape)

    def call(self, x):
        x = self.norm(self.embed(x))
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    @property
    def context_frames(self):
        """Frames on each side that one output frame depends on."""
        return (self.embed_kernel - 1) // 2 + sum(b.context_frames for b in self.blocks)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "n_blocks": self.n_blocks,
                "intermediate_dim": self.intermediate_dim, "embed_kernel": self.embed_kernel}
