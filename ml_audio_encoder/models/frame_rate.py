"""Encoder and decoder that run at the frame rate: an STFT front end or iSTFT head around ConvNeXt blocks.

``STFTEncoder``: audio → :class:`~ml_audio_encoder.nn.heads.STFTStem` → :class:`ConvNeXtBackbone` → linear to the
latent. ``ISTFTDecoder``: latent → :class:`ConvNeXtBackbone` → :class:`~ml_audio_encoder.nn.heads.ISTFTHead` →
audio (Vocos's generator, fed with quantized latents instead of mel frames). Both keep the contract of DAC's
convolutional pair (``models/dac.py``): ``(B, F · hop, 1) <-> (B, F, latent_dim)``.
"""

from __future__ import annotations

import keras

from ..nn.convnext import ConvNeXtBackbone
from ..nn.heads import ISTFTHead, STFTStem
from ..nn.layers import register


@register
class STFTEncoder(keras.layers.Layer):
    """Waveform ``(B, F · hop, 1)`` -> latent ``(B, F, d_latent)``."""

    def __init__(self, hop_length=320, n_fft=1280, dim=384, n_blocks=8, d_latent=256, **kwargs):
        super().__init__(**kwargs)
        self.hop_length, self.n_fft = int(hop_length), int(n_fft)
        self.dim, self.n_blocks, self.d_latent = int(dim), int(n_blocks), int(d_latent)
        self.stem = STFTStem(self.n_fft, self.hop_length, name="stem")
        self.backbone = ConvNeXtBackbone(self.dim, self.n_blocks, embed_kernel=1, name="backbone")
        self.proj = keras.layers.Dense(self.d_latent, name="proj")

    def build(self, input_shape):
        shape = self.stem.compute_output_shape(input_shape)
        self.backbone.build(shape)
        self.proj.build(tuple(shape[:-1]) + (self.dim,))

    def call(self, x):
        return self.proj(self.backbone(self.stem(x)))

    @property
    def context_frames(self):
        return self.stem.context_frames + self.backbone.context_frames

    def get_config(self):
        return {**super().get_config(), "hop_length": self.hop_length, "n_fft": self.n_fft, "dim": self.dim,
                "n_blocks": self.n_blocks, "d_latent": self.d_latent}


@register
class ISTFTDecoder(keras.layers.Layer):
    """Latent ``(B, F, d)`` -> waveform ``(B, F · hop, 1)`` (not bounded: no tanh, whose flat ends stall the
    magnitude's gradient; compress clips on output)."""

    def __init__(self, hop_length=320, n_fft=1280, dim=384, n_blocks=8, phase_rotation=False, **kwargs):
        super().__init__(**kwargs)
        self.hop_length, self.n_fft = int(hop_length), int(n_fft)
        self.dim, self.n_blocks = int(dim), int(n_blocks)
        self.backbone = ConvNeXtBackbone(self.dim, self.n_blocks, embed_kernel=7, name="backbone")
        self.head = ISTFTHead(self.n_fft, self.hop_length, phase_rotation, name="head")

    def build(self, input_shape):
        self.backbone.build(input_shape)
        self.head.build(tuple(input_shape[:-1]) + (self.dim,))

    def call(self, z):
        return self.head(self.backbone(z))

    @property
    def context_frames(self):
        return self.backbone.context_frames + self.head.context_frames

    @property
    def frame_period(self):
        return self.head.frame_period

    def get_config(self):
        return {**super().get_config(), "hop_length": self.hop_length, "n_fft": self.n_fft, "dim": self.dim,
                "n_blocks": self.n_blocks, "phase_rotation": self.head.phase_rotation}
