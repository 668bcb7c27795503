"""The STFT ends of a frame-rate codec: :class:`STFTStem` (audio → per-frame spectral features) and
:class:`ISTFTHead` (per-frame features → STFT log-magnitude and phase → audio, as Vocos's ``ISTFTHead``).

Both use the matmul DFT of :mod:`.spectral` with "same" framing, so ``F · hop`` samples give ``F`` frames and
``F`` frames give back exactly ``F · hop`` samples, and both convert to LiteRT builtins.
"""

from __future__ import annotations

import keras
from keras import ops

from .layers import register
from .spectral import irfft_frames, rfft_frames


@register
class STFTStem(keras.layers.Layer):
    """``(B, F · hop, 1)`` audio -> ``(B, F, 3 · (n_fft // 2 + 1))``: log-magnitude and power-law compressed
    real and imaginary parts (``|X|^0.3 · e^{iφ}``) of a Hann-windowed STFT.

    The log-magnitude spans the dynamic range an ear hears; the compressed complex part carries the phase, which a
    magnitude-only front end would leave the decoder to invent. No weights: the backbone after it learns.
    """

    def __init__(self, n_fft=1280, hop_length=320, compress=0.3, **kwargs):
        super().__init__(**kwargs)
        self.n_fft, self.hop_length, self.compress = int(n_fft), int(hop_length), float(compress)

    def call(self, audio):
        x = ops.squeeze(audio, axis=-1) if len(audio.shape) == 3 else audio
        real, imag = rfft_frames(x, self.n_fft, self.hop_length)
        power = ops.square(real) + ops.square(imag) + 1e-10
        log_mag = 0.5 * ops.log(power)
        scale = ops.power(power, 0.5 * (self.compress - 1.0))  # |X|^(c − 1): turns X into |X|^c · e^{iφ}
        return ops.concatenate([log_mag, real * scale, imag * scale], axis=-1)

    @property
    def context_frames(self):
        """Frames on each side whose samples a frame's window reaches ("same" framing: ``(n_fft − hop) / 2``)."""
        return -(-(self.n_fft - self.hop_length) // 2 // self.hop_length)

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[1] is None else input_shape[1] // self.hop_length
        return (input_shape[0], frames, 3 * (self.n_fft // 2 + 1))

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop_length": self.hop_length, "compress": self.compress}


@register
class ISTFTHead(keras.layers.Layer):
    """``(B, F, dim)`` -> audio ``(B, F · hop, 1)``: a linear layer predicts log-magnitude and phase of each frame's
    spectrum, ``X = exp(m) · (cos p + i sin p)``, and an inverse STFT turns them into samples (Vocos).

    The magnitude is capped at ``exp(m) <= 100`` as in Vocos, which keeps an early, untrained layer from producing
    huge samples. Predicting the phase angle directly (through cos and sin) leaves it free to wrap.
    """

    def __init__(self, n_fft=1280, hop_length=320, **kwargs):
        super().__init__(**kwargs)
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.out = keras.layers.Dense(self.n_fft + 2, name="out")

    def build(self, input_shape):
        self.out.build(input_shape)

    def call(self, x):
        n_bins = self.n_fft // 2 + 1
        h = self.out(x)
        log_mag, phase = h[..., :n_bins], h[..., n_bins:]
        mag = ops.exp(ops.minimum(log_mag, 4.605170185988091))  # log(100)
        y = irfft_frames(mag * ops.cos(phase), mag * ops.sin(phase), self.hop_length)
        return y[..., None]

    @property
    def context_frames(self):
        """Frames on each side that overlap a frame's samples after the overlap-add."""
        return -(-(self.n_fft + self.hop_length) // 2 // self.hop_length) - 1 if self.n_fft > self.hop_length else 0

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop_length": self.hop_length}
