"""Spectral front end shared by the discriminators, the training losses and the metrics.

One STFT helper (``stft``) with the conventions of DAC / audiotools: periodic Hann window, centered frames with
reflect padding, hop ``window_length // 4`` by default, and the ``match_stride`` option DAC uses for the
multi-band discriminator (frames = ceil(T / hop)). Mel filterbanks are librosa's (Slaney scale and norm, as
audiotools) and are built once in numpy.

Backend-neutral: ``keras.ops`` only. Audio is channels-last ``(batch, samples, 1)`` (``(batch, samples)`` is
accepted too); spectrograms are ``(batch, frames, freq)``.
"""

from __future__ import annotations

import functools
import math

import keras
import numpy as np
from keras import ops

__all__ = ["as_batch_time", "stft", "magnitude", "mel_filters", "mel_spectrogram"]


def as_batch_time(audio):
    """``(B, T, 1)`` or ``(B, T)`` -> float32 ``(B, T)``."""
    audio = ops.convert_to_tensor(audio)
    if len(audio.shape) == 3:
        if audio.shape[-1] != 1:
            raise ValueError(f"expected mono audio (batch, samples, 1), got shape {tuple(audio.shape)}")
        audio = ops.squeeze(audio, axis=-1)
    elif len(audio.shape) != 2:
        raise ValueError(f"expected audio of shape (batch, samples, 1) or (batch, samples), got {tuple(audio.shape)}")
    if keras.backend.standardize_dtype(audio.dtype) != "float32":
        audio = ops.cast(audio, "float32")
    return audio


def stft(audio, window_length, hop_length=None, match_stride=False, window="hann"):
    """Complex STFT of ``audio`` as ``(real, imag)``, each ``(batch, frames, window_length // 2 + 1)`` float32.

    Args:
        audio: ``(B, T, 1)`` or ``(B, T)``.
        window_length: FFT size and window length.
        hop_length: hop in samples; default ``window_length // 4``.
        match_stride: DAC/audiotools ``match_stride``: reflect-pad so that ``frames == ceil(T / hop)`` (requires
            ``hop == window_length // 4``). Otherwise plain centered frames: ``frames == T // hop + 1``.
        window: "hann" (periodic, as torch/scipy) or "hamming", or a 1-D window array of ``window_length``.

    Reflect padding needs ``T > window_length // 2`` (and more with ``match_stride``), exactly like torch.stft.
    """
    window_length = int(window_length)
    hop_length = int(hop_length) if hop_length else window_length // 4
    x = as_batch_time(audio)
    if match_stride:
        if hop_length != window_length // 4:
            raise ValueError("match_stride requires hop_length == window_length // 4")
        length = x.shape[-1]
        if length is None:
            raise ValueError("match_stride needs a static number of samples")
        right_pad = math.ceil(length / hop_length) * hop_length - length
        pad = (window_length - hop_length) // 2
        x = ops.pad(x, [(0, 0), (pad, pad + right_pad)], mode="reflect")
    real, imag = ops.stft(x, window_length, hop_length, window_length, window=window, center=True)
    if match_stride:
        # The extra padding adds two frames on each side; dropping them leaves frames * hop == padded length.
        real, imag = real[:, 2:-2, :], imag[:, 2:-2, :]
    return real, imag


def magnitude(real, imag, floor=1e-20):
    """``|X|`` with a gradient that stays finite at zero: ``sqrt(max(re^2 + im^2, floor))``."""
    return ops.sqrt(ops.maximum(ops.square(real) + ops.square(imag), floor))


def _hz_to_mel(f):
    # Slaney's scale: linear below 1 kHz, logarithmic above (librosa's htk=False).
    f = np.asarray(f, dtype=np.float64)
    mel = f / (200.0 / 3)
    log_part = 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log_part, mel)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)), (200.0 / 3) * m)


@functools.lru_cache(maxsize=64)
def _mel_filters_cached(sample_rate, n_fft, n_mels, fmin, fmax):
    # Written out in numpy (it equals librosa.filters.mel(htk=False, norm="slaney")) because the GPU training
    # machine has no librosa; a test checks the two agree.
    fmax = sample_rate / 2.0 if fmax is None else fmax
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]  # Slaney: equal area per filter
    fb = np.ascontiguousarray(weights.T.astype(np.float32))  # (n_fft // 2 + 1, n_mels)
    fb.setflags(write=False)
    return fb


def mel_filters(sample_rate, n_fft, n_mels, fmin=0.0, fmax=None):
    """Slaney mel filterbank as a read-only numpy array of shape ``(n_fft // 2 + 1, n_mels)`` (cached)."""
    return _mel_filters_cached(int(sample_rate), int(n_fft), int(n_mels), float(fmin or 0.0),
                               None if fmax is None else float(fmax))


def mel_spectrogram(audio, sample_rate, window_length, n_mels, hop_length=None, fmin=0.0, fmax=None,
                    window="hann"):
    """Mel magnitude spectrogram ``(batch, frames, n_mels)`` as audiotools' ``AudioSignal.mel_spectrogram``."""
    real, imag = stft(audio, window_length, hop_length, window=window)
    fb = ops.convert_to_tensor(mel_filters(sample_rate, window_length, n_mels, fmin, fmax))
    return ops.matmul(magnitude(real, imag), fb)
