"""The STFT ends of a frame-rate codec: :class:`STFTStem` (audio → per-frame spectral features) and
:class:`ISTFTHead` (per-frame features → STFT log-magnitude and phase → audio, as Vocos's ``ISTFTHead``).

Both use the matmul DFT of :mod:`.spectral` with "same" framing, so ``F · hop`` samples give ``F`` frames and
``F`` frames give back exactly ``F · hop`` samples, and both convert to LiteRT builtins.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from .layers import register
from .spectral import irfft_frames, rfft_frames

_POWER_FLOOR = 1e-10  # under the STFT power, so that silence has a finite log-magnitude (-11.5)
_FLOOR_SCALE = 2.0**15  # the largest power of two below float16's maximum (65504)


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
        # power + 1e-10, written as (power · 2^15 + 1e-10 · 2^15) · 2^-15: the same float32 bits (scaling by a power
        # of two is exact), but with no constant below float16's range. A float16 LiteRT export stores every constant
        # in half precision and flushed a bare 1e-10 to zero: log(0) on digital silence, NaN features, code 0.
        power = (ops.square(real) + ops.square(imag)) * _FLOOR_SCALE + _POWER_FLOOR * _FLOOR_SCALE
        power = power * (1.0 / _FLOOR_SCALE)
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

    ``phase_rotation``: the predicted phase is read as the phase *at a fixed time origin* and turned into each frame's
    own (what the inverse DFT of a frame needs) by adding ``2π · k · hop · t / n_fft`` for bin ``k`` of frame ``t``.
    The backbone is translation-equivariant: fed steady input, it predicts the same numbers for every frame, and a
    frame-relative phase that never advances makes a signal periodic in the hop, i.e. a comb at multiples of the
    frame rate (75 Hz), whatever the magnitudes say; read as fixed-origin phase, the same output is a steady tone at
    each bin's frequency. The rotation repeats every :attr:`frame_period` frames (``n_fft / gcd(n_fft, hop)``, 4 for
    hop = n_fft / 4), so decoding in pieces must start pieces on multiples of it (``runtime/compress.py`` does).
    """

    def __init__(self, n_fft=1280, hop_length=320, phase_rotation=False, **kwargs):
        super().__init__(**kwargs)
        self.n_fft, self.hop_length = int(n_fft), int(hop_length)
        self.phase_rotation = bool(phase_rotation)
        self.out = keras.layers.Dense(self.n_fft + 2, name="out")
        if self.phase_rotation:  # e^{i 2π k hop t / n_fft} for t in one period: exact (multiples of 2π / period)
            t, k = np.arange(self.frame_period)[:, None], np.arange(self.n_fft // 2 + 1)
            turns = (t * k * self.hop_length) % self.n_fft
            angle = 2 * np.pi * turns / self.n_fft
            self._cos = np.round(np.cos(angle), 12).astype("float32")
            self._sin = np.round(np.sin(angle), 12).astype("float32")

    def build(self, input_shape):
        self.out.build(input_shape)

    def call(self, x):
        n_bins = self.n_fft // 2 + 1
        h = self.out(x)
        log_mag, phase = h[..., :n_bins], h[..., n_bins:]
        mag = ops.exp(ops.minimum(log_mag, 4.605170185988091))  # log(100)
        real, imag = mag * ops.cos(phase), mag * ops.sin(phase)
        if self.phase_rotation:
            real, imag = self._rotate(real, imag)
        y = irfft_frames(real, imag, self.hop_length)
        return y[..., None]

    @property
    def frame_period(self):
        """Frames after which the phase rotation repeats (1 without it)."""
        return self.n_fft // math.gcd(self.n_fft, self.hop_length) if self.phase_rotation else 1

    def _rotate(self, real, imag):
        """``(real + i·imag) · e^{i 2π k hop t / n_fft}``: the constant (period, bins) tables tiled over the frames
        (for period 4 the factors are 0 and ±1)."""
        frames = ops.shape(real)[1]
        reps = (frames + self.frame_period - 1) // self.frame_period
        cos = ops.tile(ops.convert_to_tensor(self._cos), [reps, 1])[:frames]
        sin = ops.tile(ops.convert_to_tensor(self._sin), [reps, 1])[:frames]
        return real * cos - imag * sin, real * sin + imag * cos

    @property
    def context_frames(self):
        """Frames on each side that overlap a frame's samples after the overlap-add."""
        return -(-(self.n_fft + self.hop_length) // 2 // self.hop_length) - 1 if self.n_fft > self.hop_length else 0

    def get_config(self):
        return {**super().get_config(), "n_fft": self.n_fft, "hop_length": self.hop_length,
                "phase_rotation": self.phase_rotation}
