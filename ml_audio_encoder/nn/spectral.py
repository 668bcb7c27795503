"""Spectral front end shared by the discriminators, the training losses and the metrics.

One STFT helper (``stft``) with the conventions of DAC / audiotools: periodic Hann window, centered frames with
reflect padding, hop ``window_length // 4`` by default, and the ``match_stride`` option DAC uses for the
multi-band discriminator (frames = ceil(T / hop)). Mel filterbanks are librosa's (Slaney scale and norm, as
audiotools) and are built once in numpy.

Backend-neutral: ``keras.ops`` only. Audio is channels-last ``(batch, samples, 1)`` (``(batch, samples)`` is
accepted too); spectrograms are ``(batch, frames, freq)``.
"""

from __future__ import annotations

import contextlib
import functools

import keras
import numpy as np
from keras import ops

__all__ = [
    "as_batch_time", "stft", "magnitude", "mel_filters", "mel_spectrogram",
    "hann_window", "dft_matrices", "audio_to_frames", "overlap_add", "frames_to_audio", "rfft_frames", "irfft_frames",
    "float16_exact_analysis",
]

# Set while a float16 LiteRT export traces the model (:func:`float16_exact_analysis`).
_SPLIT_ANALYSIS = False
_LO_SCALE = 2.0**11  # float16 has 11 significant bits: the rounding error of the high part, scaled back to normal


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
        # ceil(T / hop) * hop - T; a tensor while tracing with an unknown length (a PyDataset's (None, None, 1))
        right_pad = (-ops.shape(x)[-1]) % hop_length
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


# -- A framed DFT pair as matrix products (frame-rate codecs) ---------------------------------------------------
# The frame-rate encoder and decoder work on an STFT with ``n_fft = r · hop``. Written as reshape + matmul +
# overlap-add instead of ``ops.stft``/``ops.istft`` because the inverse FFT does not convert to LiteRT builtins
# (``tf.Complex``/``tf.IRFFT`` need TensorFlow at run time; ../shared/notes/istft_on_litert.md) while the matmul
# form lowers to FULLY_CONNECTED, RESHAPE, PAD and ADD on every runtime. At n_fft 1280 and 75 frames/s the matmul
# costs ~0.12 G multiply-adds per second of audio, small next to the ConvNeXt blocks.
#
# "same" framing (Vocos's ``padding="same"``): ``T = F · hop`` samples give ``F`` frames; frame t covers samples
# ``[t·hop − p, t·hop − p + n_fft)`` with ``p = (n_fft − hop) / 2`` zeros beyond each end, i.e. it is centred on the
# middle of its own hop. The inverse overlap-adds the windowed frames, crops p on each side and divides by the
# summed squared window, so ``frames_to_audio(audio_to_frames(x)) == x`` and the output length equals the input's.


def _check_same_framing(n_fft, hop):
    n_fft, hop = int(n_fft), int(hop)
    if n_fft % hop or (n_fft - hop) % 2:
        raise ValueError(f"n_fft ({n_fft}) must be a multiple of hop ({hop}) with (n_fft - hop) even")
    return n_fft, hop


def hann_window(n):
    """Periodic Hann window (as ``torch.hann_window`` / ``scipy.signal.get_window('hann')``), float64 numpy."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


@functools.lru_cache(maxsize=8)
def dft_matrices(n_fft):
    """``(forward, inverse)`` real DFT matrices with the periodic Hann window folded in, float32 numpy.

    ``frames @ forward`` gives ``[Re, Im]`` of the windowed rfft ``(…, 2 · (n_fft // 2 + 1))``; ``[Re, Im] @ inverse``
    gives the windowed irfft ``(…, n_fft)`` (Hermitian weights 1, 2, …, 2, 1 over n_fft; the imaginary parts of the
    DC and Nyquist bins drop out, as in irfft).
    """
    n_fft = int(n_fft)
    n_bins = n_fft // 2 + 1
    window = hann_window(n_fft)
    angle = 2.0 * np.pi * np.outer(np.arange(n_fft), np.arange(n_bins)) / n_fft  # (n_fft, n_bins)
    forward = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1) * window[:, None]
    weights = np.full(n_bins, 2.0)
    weights[0] = 1.0
    if n_fft % 2 == 0:
        weights[-1] = 1.0
    inverse = np.concatenate([np.cos(angle.T), -np.sin(angle.T)], axis=0) * np.tile(weights, 2)[:, None]
    inverse = inverse * window[None, :] / n_fft
    out = np.ascontiguousarray(forward, np.float32), np.ascontiguousarray(inverse, np.float32)
    for a in out:
        a.setflags(write=False)
    return out


def audio_to_frames(audio, n_fft, hop):
    """``(B, F · hop)`` audio -> ``(B, F, n_fft)`` "same" frames (not windowed; see :func:`dft_matrices`)."""
    n_fft, hop = _check_same_framing(n_fft, hop)
    pad = (n_fft - hop) // 2
    x = ops.pad(audio, [(0, 0), (pad, pad)])
    # After padding the length is (F + r − 1) · hop: frame t is hop-blocks t .. t + r − 1.
    blocks = ops.reshape(x, (ops.shape(x)[0], -1, hop))
    r = n_fft // hop
    n_frames = ops.shape(blocks)[1] - (r - 1)
    pieces = [blocks[:, k : k + n_frames, :] for k in range(r)]
    return ops.concatenate(pieces, axis=-1)


def overlap_add(frames, hop):
    """Sum ``(B, F, n_fft)`` frames placed ``hop`` apart -> ``(B, (F + r − 1) · hop)``, ``r = n_fft / hop``."""
    n_fft = frames.shape[-1]
    r = n_fft // hop
    out = None
    for k in range(r):
        piece = frames[:, :, k * hop : (k + 1) * hop]  # the k-th hop-block of every frame lands on block t + k
        piece = ops.pad(piece, [(0, 0), (k, r - 1 - k), (0, 0)])
        out = piece if out is None else out + piece
    return ops.reshape(out, (ops.shape(out)[0], -1))


def frames_to_audio(frames, hop):
    """Windowed "same" frames ``(B, F, n_fft)`` -> ``(B, F · hop)`` audio: overlap-add, crop, divide by the window
    envelope (its exact value at every sample, so the first and last ``p`` samples come back right too)."""
    n_fft, hop = _check_same_framing(frames.shape[-1], hop)
    pad = (n_fft - hop) // 2
    window_sq = ops.convert_to_tensor(np.square(hann_window(n_fft)).astype(np.float32))
    envelope = overlap_add(ops.zeros_like(frames[:1, :, :1]) + window_sq, hop)
    y = overlap_add(frames, hop)
    length = ops.shape(y)[1] - 2 * pad
    y = ops.slice(y, (0, pad), (ops.shape(y)[0], length))
    envelope = ops.slice(envelope, (0, pad), (1, length))
    return y / ops.maximum(envelope, 1e-8)


@contextlib.contextmanager
def float16_exact_analysis():
    """While active, :func:`rfft_frames` computes ``frames @ forward`` as ``frames @ hi + (frames @ lo) · 2^-11``
    with ``hi`` the float16 rounding of the DFT matrix and ``lo`` its rounding error times 2^11, both exact in
    float16: what a float16 LiteRT export (which stores every constant in half precision) must trace.

    Why: the float16 DFT matrix (errors ~2^-12 of each entry) leaks every strong partial into every bin ~100 dB
    down. A Keras model sees the 1e-10 power floor there (log-magnitude -11.5); the float16 export saw ~-8.5 on a
    pure tone, features that training never showed, and coded tones and chirps differently from the Keras model
    (0-60% of the codes of each level agreeing). Split, the matrix is exact to ~2^-22, for twice this matmul's work
    in the exported encoder. The Keras model computes as before (the split is only traced by an export)."""
    global _SPLIT_ANALYSIS
    before, _SPLIT_ANALYSIS = _SPLIT_ANALYSIS, True
    try:
        yield
    finally:
        _SPLIT_ANALYSIS = before


@functools.lru_cache(maxsize=8)
def _split_forward(n_fft):
    """``(hi, lo)`` float32 numpy: ``hi`` = the forward DFT matrix rounded to float16, ``lo`` = its error · 2^11,
    rounded to float16 (from the float32 matrix, in float64: both parts exact in float16)."""
    forward = dft_matrices(n_fft)[0].astype(np.float64)
    hi = forward.astype(np.float16).astype(np.float64)
    lo = ((forward - hi) * _LO_SCALE).astype(np.float16).astype(np.float64)
    out = hi.astype(np.float32), lo.astype(np.float32)
    for a in out:
        a.setflags(write=False)
    return out


def rfft_frames(audio, n_fft, hop):
    """``(B, F · hop)`` -> ``(Re, Im)`` of the Hann-windowed "same" STFT, each ``(B, F, n_fft // 2 + 1)``."""
    frames = audio_to_frames(audio, n_fft, hop)
    if _SPLIT_ANALYSIS:
        hi, lo = _split_forward(n_fft)
        spec = ops.matmul(frames, ops.convert_to_tensor(hi)) + ops.matmul(frames, ops.convert_to_tensor(lo)) * (
            1.0 / _LO_SCALE)
    else:
        spec = ops.matmul(frames, ops.convert_to_tensor(dft_matrices(n_fft)[0]))
    n_bins = n_fft // 2 + 1
    return spec[..., :n_bins], spec[..., n_bins:]


def irfft_frames(real, imag, hop):
    """Inverse of :func:`rfft_frames`: ``(Re, Im)`` ``(B, F, n_fft // 2 + 1)`` -> ``(B, F · hop)`` audio."""
    n_fft = 2 * (real.shape[-1] - 1)
    _, inverse = dft_matrices(n_fft)
    frames = ops.matmul(ops.concatenate([real, imag], axis=-1), ops.convert_to_tensor(inverse))
    return frames_to_audio(frames, hop)
