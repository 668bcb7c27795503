"""Discriminators of the improved RVQGAN (DAC): multi-period, multi-band complex STFT and (optional) multi-scale.

Every discriminator returns a list of feature maps; the last one is the logits. ``Discriminator`` returns a list
with one such list per sub-discriminator. Tensors are channels-last: waveforms ``(B, T, 1)``, 2-D feature maps
``(B, H, W, C)`` (period discriminator: ``(B, T / p / 3^k, p, C)``; band discriminator: ``(B, frames, freq, C)``),
scale discriminator feature maps ``(B, T', C)``.

Backend-neutral (``keras.ops`` only); the layouts differ from DAC's channels-first tensors only by a transpose,
so DAC's discriminator weights map one to one (kernel ``(out, in, kh, kw)`` -> ``(kh, kw, in, out)``).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from ..nn.layers import TorchUniform, weight_norm_initializers
from ..nn.spectral import stft

__all__ = [
    "BANDS",
    "WNConv2d",
    "PeriodDiscriminator",
    "MultiPeriodDiscriminator",
    "BandDiscriminator",
    "MultiBandSTFTDiscriminator",
    "ScaleDiscriminator",
    "Discriminator",
    "preprocess_audio",
    "SMALL_DISCRIMINATOR",
]

_PKG = "ml_audio_encoder"
BANDS = ((0.0, 0.1), (0.1, 0.25), (0.25, 0.5), (0.5, 0.75), (0.75, 1.0))
MPD_CHANNELS = (32, 128, 512, 1024, 1024)
MSD_CHANNELS = (16, 64, 256, 1024, 1024, 1024)
LEAK = 0.1

# Suggested reduced discriminator for quick GPU runs: all widths / 4 (about 1/16 of the parameters).
SMALL_DISCRIMINATOR = {"width_scale": 0.25}


def _pair(v):
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
        return (int(v[0]), int(v[1]))
    return (int(v), int(v))


def _scaled(width, scale, multiple=1):
    """Round ``width * scale`` to a positive multiple of ``multiple``."""
    return max(multiple, int(round(width * scale / multiple)) * multiple)


@keras.saving.register_keras_serializable(package=_PKG)
class WNConv2d(keras.layers.Layer):
    """Weight-normalised 2-D convolution, channels-last, with PyTorch padding semantics.

    ``w = g * v / ||v||`` with the norm over ``(kh, kw, in)`` per output channel (``torch weight_norm`` with
    ``dim=0``); ``g`` is initialised to ``||v||`` so the initial kernel equals ``v``. Padding is explicit and
    symmetric (``padding=(ph, pw)`` zeros on both sides, as ``torch.nn.Conv2d(padding=...)``) followed by a
    'valid' convolution. ``groups`` as in PyTorch. ``activation="leaky_relu"`` applies leaky ReLU with
    slope ``negative_slope``.
    """

    def __init__(self, filters, kernel_size, strides=1, padding=0, dilation_rate=1, groups=1, use_bias=True,
                 activation=None, negative_slope=LEAK, **kwargs):
        super().__init__(**kwargs)
        self.filters = int(filters)
        self.kernel_size = _pair(kernel_size)
        self.strides = _pair(strides)
        self.padding = _pair(padding)
        self.dilation_rate = _pair(dilation_rate)
        self.groups = int(groups)
        self.use_bias = bool(use_bias)
        if activation not in (None, "leaky_relu"):
            raise ValueError(f"activation must be None or 'leaky_relu', got {activation!r}")
        self.activation = activation
        self.negative_slope = float(negative_slope)
        if self.filters % self.groups:
            raise ValueError(f"filters={filters} is not divisible by groups={groups}")

    def build(self, input_shape):
        in_channels = input_shape[-1]
        if in_channels is None or in_channels % self.groups:
            raise ValueError(f"input channels {in_channels} must be known and divisible by groups={self.groups}")
        kh, kw = self.kernel_size
        fan_in = kh * kw * (in_channels // self.groups)
        init = TorchUniform(fan_in)
        shape = (kh, kw, in_channels // self.groups, self.filters)
        v_init, g_init = weight_norm_initializers(shape, fan_in, (0, 1, 2))
        self.weight_v = self.add_weight(name="weight_v", shape=shape, initializer=v_init)
        self.weight_g = self.add_weight(name="weight_g", shape=(self.filters,), initializer=g_init)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer=init)
        else:
            self.bias = None

    @staticmethod
    def _v_norm(v):
        v = ops.convert_to_tensor(v)
        return ops.sqrt(ops.sum(ops.square(v), axis=(0, 1, 2)))

    def kernel(self):
        """The effective kernel ``g * v / ||v||`` of shape ``(kh, kw, in / groups, filters)``."""
        v = ops.convert_to_tensor(self.weight_v)
        norm = self._v_norm(v)
        return v * (ops.convert_to_tensor(self.weight_g) / ops.maximum(norm, 1e-12))

    def call(self, x):
        ph, pw = self.padding
        if ph or pw:
            x = ops.pad(x, [(0, 0), (ph, ph), (pw, pw), (0, 0)])
        y = ops.conv(x, ops.cast(self.kernel(), x.dtype), strides=self.strides, padding="valid",
                     data_format="channels_last", dilation_rate=self.dilation_rate)
        if self.bias is not None:
            y = y + ops.cast(self.bias, y.dtype)
        if self.activation == "leaky_relu":
            y = ops.leaky_relu(y, negative_slope=self.negative_slope)
        return y

    def compute_output_shape(self, input_shape):
        b, h, w, _ = input_shape
        out = []
        for n, k, s, p, d in zip((h, w), self.kernel_size, self.strides, self.padding, self.dilation_rate):
            out.append(None if n is None else (n + 2 * p - d * (k - 1) - 1) // s + 1)
        return (b, out[0], out[1], self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
                      padding=self.padding, dilation_rate=self.dilation_rate, groups=self.groups,
                      use_bias=self.use_bias, activation=self.activation, negative_slope=self.negative_slope)
        return config


def _build_chain(convs, in_channels):
    """Build a chain of WNConv2d layers from channel counts alone (weights do not depend on spatial sizes)."""
    for conv in convs:
        if not conv.built:
            conv.build((None, None, None, in_channels))
        in_channels = conv.filters
    return in_channels


def preprocess_audio(audio):
    """DAC's discriminator input normalisation: remove DC, then peak-normalise each item to 0.8.

    ``(B, T, 1)`` -> ``(B, T, 1)``; statistics are taken over time per item (and channel).
    """
    audio = ops.convert_to_tensor(audio)
    audio = audio - ops.mean(audio, axis=1, keepdims=True)
    peak = ops.max(ops.abs(audio), axis=1, keepdims=True)
    return 0.8 * audio / (peak + 1e-9)


@keras.saving.register_keras_serializable(package=_PKG)
class PeriodDiscriminator(keras.layers.Layer):
    """One MPD branch: reflect-pad the waveform to a multiple of ``period`` (as DAC: by ``period - T % period``
    samples, i.e. a whole extra period when T already divides), view it as ``(T / p, p)`` and run 2-D convs over
    the time axis. Input ``(B, T, 1)``; returns 6 feature maps ``(B, H_k, period, C_k)``, the last ``C=1`` logits.
    """

    def __init__(self, period, channels=MPD_CHANNELS, **kwargs):
        super().__init__(**kwargs)
        self.period = int(period)
        self.channels = tuple(int(c) for c in channels)
        n = len(self.channels)
        self.convs = [
            WNConv2d(c, (5, 1), strides=(3, 1) if i < n - 1 else (1, 1), padding=(2, 0), activation="leaky_relu",
                     name=f"conv{i}")
            for i, c in enumerate(self.channels)
        ]
        self.conv_post = WNConv2d(1, (3, 1), padding=(1, 0), name="conv_post")

    def build(self, input_shape=None):
        _build_chain(self.convs + [self.conv_post], 1)
        self.built = True

    def call(self, audio):
        x = ops.convert_to_tensor(audio)
        if len(x.shape) == 3:
            x = ops.squeeze(x, axis=-1)
        # The length may be unknown while tracing (keras feeds a PyDataset's batches as (None, None, 1)): the pad
        # and the folded length are then tensors, and the reshape infers the folded length.
        t = ops.shape(x)[1]
        pad = self.period - t % self.period
        x = ops.pad(x, [(0, 0), (0, pad)], mode="reflect")
        x = ops.reshape(ops.cast(x, self.compute_dtype), (ops.shape(x)[0], -1, self.period, 1))
        fmap = []
        for conv in self.convs:
            x = conv(x)
            fmap.append(x)
        fmap.append(self.conv_post(x))
        return fmap

    def get_config(self):
        config = super().get_config()
        config.update(period=self.period, channels=self.channels)
        return config


class _DiscriminatorGroup(keras.layers.Layer):
    """Several sub-discriminators on the same audio; ``call`` returns one list of feature maps per member."""

    discriminators: list

    def build(self, input_shape=None):
        for d in self.discriminators:
            d.build(input_shape)
        self.built = True

    def call(self, audio):
        return [d(audio) for d in self.discriminators]


@keras.saving.register_keras_serializable(package=_PKG)
class MultiPeriodDiscriminator(_DiscriminatorGroup):
    """A ``PeriodDiscriminator`` per period; returns a list (per period) of lists of feature maps."""

    def __init__(self, periods=(2, 3, 5, 7, 11), channels=MPD_CHANNELS, **kwargs):
        super().__init__(**kwargs)
        self.periods = tuple(int(p) for p in periods)
        self.channels = tuple(int(c) for c in channels)
        self.discriminators = [PeriodDiscriminator(p, self.channels, name=f"mpd_{p}") for p in self.periods]

    def get_config(self):
        config = super().get_config()
        config.update(periods=self.periods, channels=self.channels)
        return config


def _band_edges(window_length, bands):
    n_freq = window_length // 2 + 1
    return [(int(lo * n_freq), int(hi * n_freq)) for lo, hi in bands]


@keras.saving.register_keras_serializable(package=_PKG)
class BandDiscriminator(keras.layers.Layer):
    """One MRD branch (DAC's complex multi-band STFT discriminator) for one window length.

    Complex STFT (periodic Hann, hop ``window_length * hop_factor``, DAC's ``match_stride`` framing so
    ``frames = ceil(T / hop)``) as 2 channels ``(B, frames, freq, 2)`` [real, imag]; split along frequency into
    ``bands`` (fractions of ``window_length // 2 + 1`` bins); per band Conv2d 2->ch (3,9) | ch->ch (3,9) stride
    (1,2) x3 | ch->ch (3,3), leaky ReLU 0.1; band outputs concatenated along frequency; a (3,3) conv to 1 channel.
    Returns ``5 * len(bands) + 1`` feature maps (band-major order, as DAC), the last being the logits.
    """

    def __init__(self, window_length, hop_factor=0.25, bands=BANDS, channels=32, **kwargs):
        super().__init__(**kwargs)
        self.window_length = int(window_length)
        self.hop_factor = float(hop_factor)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)
        self.channels = int(channels)
        self.hop_length = int(self.window_length * self.hop_factor)
        self.band_edges = _band_edges(self.window_length, self.bands)
        ch = self.channels

        def stack(b):
            return [
                WNConv2d(ch, (3, 9), padding=(1, 4), activation="leaky_relu", name=f"band{b}_conv0"),
                WNConv2d(ch, (3, 9), strides=(1, 2), padding=(1, 4), activation="leaky_relu", name=f"band{b}_conv1"),
                WNConv2d(ch, (3, 9), strides=(1, 2), padding=(1, 4), activation="leaky_relu", name=f"band{b}_conv2"),
                WNConv2d(ch, (3, 9), strides=(1, 2), padding=(1, 4), activation="leaky_relu", name=f"band{b}_conv3"),
                WNConv2d(ch, (3, 3), padding=(1, 1), activation="leaky_relu", name=f"band{b}_conv4"),
            ]

        self.band_convs = [stack(b) for b in range(len(self.bands))]
        self.conv_post = WNConv2d(1, (3, 3), padding=(1, 1), name="conv_post")

    def build(self, input_shape=None):
        for stack in self.band_convs:
            _build_chain(stack, 2)
        _build_chain([self.conv_post], self.channels)
        self.built = True

    def spectrogram(self, audio):
        """``(B, T, 1)`` -> list of band tensors ``(B, frames, band_bins, 2)``."""
        real, imag = stft(audio, self.window_length, self.hop_length,
                          match_stride=self.hop_length == self.window_length // 4)
        x = ops.stack([real, imag], axis=-1)
        return [x[:, :, lo:hi, :] for lo, hi in self.band_edges]

    def call(self, audio):
        dtype = self.compute_dtype
        fmap, outs = [], []
        for band, stack in zip(self.spectrogram(audio), self.band_convs):
            band = ops.cast(band, dtype)
            for conv in stack:
                band = conv(band)
                fmap.append(band)
            outs.append(band)
        x = ops.concatenate(outs, axis=2)
        fmap.append(self.conv_post(x))
        return fmap

    def get_config(self):
        config = super().get_config()
        config.update(window_length=self.window_length, hop_factor=self.hop_factor, bands=self.bands,
                      channels=self.channels)
        return config


@keras.saving.register_keras_serializable(package=_PKG)
class MultiBandSTFTDiscriminator(_DiscriminatorGroup):
    """A ``BandDiscriminator`` per STFT window length; returns a list (per window) of lists of feature maps."""

    def __init__(self, window_lengths=(2048, 1024, 512), hop_factor=0.25, bands=BANDS, channels=32, **kwargs):
        super().__init__(**kwargs)
        self.window_lengths = tuple(int(w) for w in window_lengths)
        self.hop_factor = float(hop_factor)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)
        self.channels = int(channels)
        self.discriminators = [BandDiscriminator(w, self.hop_factor, self.bands, self.channels, name=f"mrd_{w}")
                               for w in self.window_lengths]

    def get_config(self):
        config = super().get_config()
        config.update(window_lengths=self.window_lengths, hop_factor=self.hop_factor, bands=self.bands,
                      channels=self.channels)
        return config


def _lowpass_taps(factor, zeros=24, rolloff=0.99):
    """Hann-windowed sinc low-pass for decimation by ``factor`` (cut-off ``rolloff * new Nyquist``)."""
    cutoff = rolloff / factor  # 2 * f_c in cycles per (old) sample; ideal response cutoff * sinc(cutoff * n)
    half = int(math.ceil(zeros / cutoff))
    n = np.arange(-half, half + 1, dtype=np.float64)
    taps = cutoff * np.sinc(cutoff * n) * np.hanning(2 * half + 3)[1:-1]
    return (taps / taps.sum()).astype(np.float32)


@keras.saving.register_keras_serializable(package=_PKG)
class ScaleDiscriminator(keras.layers.Layer):
    """MSD branch (MelGAN-style waveform discriminator) at ``sample_rate // rate``.

    ``rate`` is an integer decimation factor (DAC: ``resample(sample_rate // rate)``); for ``rate > 1`` the audio
    is low-passed with a windowed-sinc FIR and decimated (DAC uses julius' sinc resampler). 1-D grouped convs are
    run as 2-D convs with a width-1 axis. Returns 7 feature maps ``(B, T', C)``, the last ``C=1`` logits.
    """

    def __init__(self, rate=1, sample_rate=44100, channels=MSD_CHANNELS, **kwargs):
        super().__init__(**kwargs)
        self.rate = int(rate)
        self.sample_rate = int(sample_rate)
        self.channels = tuple(int(c) for c in channels)
        if len(self.channels) != 6:
            raise ValueError("ScaleDiscriminator needs 6 channel widths")
        kernels = (15, 41, 41, 41, 41, 5)
        strides = (1, 4, 4, 4, 4, 1)
        # DAC's grouped convs use 4 input channels per group (16/4, 64/16, 256/64, 1024/256); keep that and make
        # the group count divide both widths so any channel tuple works.
        ins = (1,) + self.channels[:-1]
        self.groups = tuple(
            1 if i in (0, 5) else math.gcd(math.gcd(c_in, c_out), max(1, c_in // 4))
            for i, (c_in, c_out) in enumerate(zip(ins, self.channels))
        )
        self.convs = [
            WNConv2d(c, (k, 1), strides=(s, 1), padding=(k // 2, 0), groups=g, activation="leaky_relu",
                     name=f"conv{i}")
            for i, (c, k, s, g) in enumerate(zip(self.channels, kernels, strides, self.groups))
        ]
        self.conv_post = WNConv2d(1, (3, 1), padding=(1, 0), name="conv_post")
        self._taps = _lowpass_taps(self.rate) if self.rate > 1 else None

    def build(self, input_shape=None):
        _build_chain(self.convs + [self.conv_post], 1)
        self.built = True

    def call(self, audio):
        x = ops.convert_to_tensor(audio)
        if len(x.shape) == 2:
            x = x[..., None]
        x = ops.cast(x[:, :, None, :], self.compute_dtype)  # (B, T, 1, 1)
        if self._taps is not None:
            half = len(self._taps) // 2
            x = ops.pad(x, [(0, 0), (half, half), (0, 0), (0, 0)])
            taps = ops.cast(ops.convert_to_tensor(self._taps.reshape(-1, 1, 1, 1)), x.dtype)
            x = ops.conv(x, taps, strides=(self.rate, 1), padding="valid", data_format="channels_last")
        fmap = []
        for conv in self.convs:
            x = conv(x)
            fmap.append(ops.squeeze(x, axis=2))
        fmap.append(ops.squeeze(self.conv_post(x), axis=2))
        return fmap

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, sample_rate=self.sample_rate, channels=self.channels)
        return config


@keras.saving.register_keras_serializable(package=_PKG)
class Discriminator(keras.Model):
    """DAC's combined discriminator: MPD (``periods``) + MSD (``rates``, off by default) + MRD (``fft_sizes``).

    ``call(audio)`` with ``audio`` ``(B, T, 1)`` applies DAC's preprocessing (remove DC, peak-normalise to 0.8)
    and returns a list with one entry per sub-discriminator (periods, then rates, then fft sizes - DAC's order),
    each a list of feature maps whose last element is the logits.

    Widths: ``width_scale`` multiplies every channel count (``width_scale=0.25`` gives a discriminator with about
    1/16 of the parameters for fast runs); ``mpd_channels`` / ``mrd_channels`` / ``msd_channels`` override the
    (unscaled) defaults explicitly.
    """

    def __init__(self, rates=(), periods=(2, 3, 5, 7, 11), fft_sizes=(2048, 1024, 512), sample_rate=44100,
                 bands=BANDS, hop_factor=0.25, width_scale=1.0, mpd_channels=None, mrd_channels=None,
                 msd_channels=None, **kwargs):
        super().__init__(**kwargs)
        self.rates = tuple(int(r) for r in rates)
        self.periods = tuple(int(p) for p in periods)
        self.fft_sizes = tuple(int(f) for f in fft_sizes)
        self.sample_rate = int(sample_rate)
        self.bands = tuple((float(lo), float(hi)) for lo, hi in bands)
        self.hop_factor = float(hop_factor)
        self.width_scale = float(width_scale)
        self.mpd_channels = None if mpd_channels is None else tuple(int(c) for c in mpd_channels)
        self.mrd_channels = None if mrd_channels is None else int(mrd_channels)
        self.msd_channels = None if msd_channels is None else tuple(int(c) for c in msd_channels)

        s = self.width_scale
        mpd_ch = self.mpd_channels or tuple(_scaled(c, s) for c in MPD_CHANNELS)
        mrd_ch = self.mrd_channels or _scaled(32, s)
        msd_ch = self.msd_channels or tuple(_scaled(c, s, 4) for c in MSD_CHANNELS)
        self.discriminators = (
            [PeriodDiscriminator(p, mpd_ch, name=f"mpd_{p}") for p in self.periods]
            + [ScaleDiscriminator(r, self.sample_rate, msd_ch, name=f"msd_{r}") for r in self.rates]
            + [BandDiscriminator(f, self.hop_factor, self.bands, mrd_ch, name=f"mrd_{f}") for f in self.fft_sizes]
        )

    def build(self, input_shape=None):
        # Weights depend on channel counts only, so everything can be built without running a forward pass
        # (needed before JAX stateless training and before loading weights). ``input_shape`` is not used.
        for d in self.discriminators:
            d.build(input_shape)
        self.built = True

    def preprocess(self, audio):
        return preprocess_audio(audio)

    def call(self, audio):
        x = ops.convert_to_tensor(audio)
        if len(x.shape) == 2:
            x = x[..., None]
        x = self.preprocess(ops.cast(x, "float32"))
        return [d(x) for d in self.discriminators]

    def get_config(self):
        config = super().get_config()
        config.update(rates=self.rates, periods=self.periods, fft_sizes=self.fft_sizes,
                      sample_rate=self.sample_rate, bands=self.bands, hop_factor=self.hop_factor,
                      width_scale=self.width_scale, mpd_channels=self.mpd_channels,
                      mrd_channels=self.mrd_channels, msd_channels=self.msd_channels)
        return config
