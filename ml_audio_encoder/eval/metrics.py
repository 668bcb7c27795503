"""Benchmark metrics: compression ratio, bitrate, mel / STFT distance, SI-SDR and ViSQOL.

Mel and STFT distance are DAC's definitions (the same as the training losses
`ml_audio_encoder.training.losses.MelSpectrogramLoss` / `MultiScaleSTFTLoss` with their default settings, which a test
checks), built on the shared spectral front end `ml_audio_encoder.nn.spectral` so that evaluation does not import
training; SI-SDR is computed in numpy. Keras is imported lazily so that ViSQOL worker processes (see `runner`) stay
light.

Audio arguments are numpy arrays in the package's one layout (`ml_audio_encoder.runtime.audio_io`): 1-D mono, or
channels-first `(channels, samples)`, which is averaged to mono.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ml_audio_encoder.protocol import bits_per_code
from ml_audio_encoder.runtime.audio_io import resample, to_mono

# DAC's settings (and the training losses' defaults): 7-scale log-mel L1, and 2-scale STFT log + magnitude L1.
MEL_WINDOWS = (32, 64, 128, 256, 512, 1024, 2048)
MEL_BANDS = (5, 10, 20, 40, 80, 160, 320)
STFT_WINDOWS = (2048, 512)
CLAMP_EPS = 1e-5

PCM_BYTES_PER_SAMPLE = 2  # the reference for every compression ratio is 16-bit PCM

VISQOL_AUDIO_RATE = 48000
VISQOL_SPEECH_RATE = 16000


# --------------------------------------------------------------------------------------------------------------------
# sizes and bitrates
# --------------------------------------------------------------------------------------------------------------------
def pcm16_bytes(n_samples: int, channels: int = 1) -> int:
    """Bytes of `n_samples` frames as raw 16-bit PCM (no WAV header)."""
    return int(n_samples) * int(channels) * PCM_BYTES_PER_SAMPLE


def compression_ratio(n_samples: int, sample_rate: int, channels: int, compressed_bytes: int) -> float:
    """16-bit PCM bytes of the input (its own rate and channel count) / compressed bytes.

    `sample_rate` is accepted for symmetry with `kbps` (the PCM size depends on it only through `n_samples`).
    """
    del sample_rate
    if compressed_bytes <= 0:
        return float("inf")
    return pcm16_bytes(n_samples, channels) / float(compressed_bytes)


def kbps(n_bytes: int | float, duration_s: float) -> float:
    """Achieved bitrate in kbit/s (1 kbit = 1000 bit)."""
    if duration_s <= 0:
        return float("nan")
    return float(n_bytes) * 8.0 / float(duration_s) / 1000.0


def codes_payload_bytes(n_frames: int, n_q: int, codebook_size: int, channels: int = 1) -> int:
    """Bytes of the bit-packed codes alone: channels * n_q * frames * ceil(log2(K)) bits, rounded up to bytes."""
    bits = int(channels) * int(n_frames) * int(n_q) * bits_per_code(codebook_size)
    return (bits + 7) // 8


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------
def match_length(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop or zero-pad `est` to the length of `ref` (decoders pad to whole frames)."""
    n = ref.shape[0]
    if est.shape[0] >= n:
        return ref, est[:n]
    pad = [(0, n - est.shape[0])] + [(0, 0)] * (est.ndim - 1)
    return ref, np.pad(est, pad)


def _prepare(ref, est, sample_rate=None, est_sample_rate=None):
    ref = to_mono(ref)
    est = to_mono(est)
    if est_sample_rate is not None and sample_rate is not None and est_sample_rate != sample_rate:
        est = resample(est, est_sample_rate, sample_rate)
    return match_length(ref, est)


def _log_l1(ref, est, power: float = 1.0):
    """Mean |log10(clamp(est) ** power) - log10(clamp(ref) ** power)| (DAC's spectral log term)."""
    from keras import ops

    diff = ops.log10(ops.maximum(est, CLAMP_EPS)) - ops.log10(ops.maximum(ref, CLAMP_EPS))
    return ops.mean(ops.abs(diff)) * abs(power)


def _pair(ref: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Reference and estimate stacked as a batch of two, `(2, samples)`, so each STFT runs once per scale."""
    return np.stack([ref, est]).astype(np.float32)


def _scalar(v) -> float:
    import keras

    return float(np.asarray(keras.ops.convert_to_numpy(v)).reshape(-1).mean())


# --------------------------------------------------------------------------------------------------------------------
# distances
# --------------------------------------------------------------------------------------------------------------------
def mel_distance(ref, est, sample_rate: int, est_sample_rate: int | None = None) -> float:
    """DAC's mel distance: the sum over 7 scales (windows 32..2048, 5..320 Slaney mel bands, hop w/4) of the mean
    |log10 mel(est) - log10 mel(ref)| (magnitudes clamped at 1e-5), at the reference's rate.

    `est` is resampled to `sample_rate` when `est_sample_rate` differs, then cropped/padded to the reference length.
    """
    from keras import ops

    from ml_audio_encoder.nn.spectral import magnitude, mel_filters, stft

    ref, est = _prepare(ref, est, sample_rate, est_sample_rate)
    both = _pair(ref, est)
    total = 0.0
    for window, bands in zip(MEL_WINDOWS, MEL_BANDS):
        real, imag = stft(both, window, window // 4)
        mel = ops.matmul(magnitude(real, imag), ops.convert_to_tensor(mel_filters(int(sample_rate), window, bands)))
        total = total + _log_l1(mel[:1], mel[1:])
    return _scalar(total)


def stft_distance(ref, est, sample_rate: int | None = None, est_sample_rate: int | None = None) -> float:
    """Multi-scale STFT distance (DDSP / DAC's `MultiScaleSTFTLoss`): per window (2048, 512; hop w/4), the mean
    |log10 |X_est|^2 - log10 |X_ref|^2| plus the mean | |X_est| - |X_ref| |, summed; at the reference's rate."""
    from keras import ops

    from ml_audio_encoder.nn.spectral import magnitude, stft

    ref, est = _prepare(ref, est, sample_rate, est_sample_rate)
    both = _pair(ref, est)
    total = 0.0
    for window in STFT_WINDOWS:
        real, imag = stft(both, window, window // 4)
        mag = magnitude(real, imag)
        total = total + _log_l1(mag[:1], mag[1:], power=2.0) + ops.mean(ops.abs(mag[1:] - mag[:1]))
    return _scalar(total)


def si_sdr(ref, est, sample_rate: int | None = None, est_sample_rate: int | None = None, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB (zero-mean, optimal scaling of the reference), higher is better."""
    ref, est = _prepare(ref, est, sample_rate, est_sample_rate)
    ref = ref.astype(np.float64) - ref.mean()
    est = est.astype(np.float64) - est.mean()
    scale = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = scale * ref
    noise = est - target
    return float(10.0 * np.log10((np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)))


# --------------------------------------------------------------------------------------------------------------------
# ViSQOL (visqol-python, pure Python port of Google's ViSQOL v3)
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VisqolScore:
    moslqo: float
    mode: str  # "audio@48k (SVR)" or "speech@16k (lattice)" / "speech@16k (polynomial)"


def visqol_available() -> bool:
    try:
        import visqol  # noqa: F401
    except Exception:
        return False
    return True


def lattice_available() -> bool:
    try:
        import ai_edge_litert  # noqa: F401
    except Exception:
        return False
    return True


def visqol_mode_for_kind(kind: str) -> str:
    """'speech' for speech, 'audio' for music and general sound."""
    return "speech" if str(kind).lower() == "speech" else "audio"


def visqol_mode_label(mode: str) -> str:
    if mode == "speech":
        return "speech@16k (lattice)" if lattice_available() else "speech@16k (polynomial)"
    return "audio@48k (SVR)"


@functools.lru_cache(maxsize=4)
def _visqol_api(mode: str):
    import logging

    from visqol import VisqolApi

    logging.getLogger("visqol").setLevel(logging.ERROR)
    api = VisqolApi()
    if mode == "speech":
        api.create(mode="speech", use_lattice_model=lattice_available())
    else:
        api.create(mode="audio")
    return api


def visqol(ref, est, sample_rate: int, mode: str = "audio", est_sample_rate: int | None = None) -> VisqolScore:
    """ViSQOL MOS-LQO of `est` against `ref`.

    mode="audio": both signals resampled to 48 kHz, SVR model (max ~4.73), for music and general sound.
    mode="speech": both resampled to 16 kHz, lattice model when `ai-edge-litert` is installed (the
    `visqol-python[lattice]` extra; max ~4.6 on clean input), else the polynomial mapper; the label says which.
    """
    if mode not in ("audio", "speech"):
        raise ValueError(f"mode must be 'audio' or 'speech', got {mode!r}")
    if not visqol_available():
        raise ImportError("ViSQOL needs `pip install visqol-python[accel,lattice]==3.8.0` (the [bench] extra)")
    ref, est = _prepare(ref, est, sample_rate, est_sample_rate)
    target = VISQOL_SPEECH_RATE if mode == "speech" else VISQOL_AUDIO_RATE
    ref = resample(ref, sample_rate, target).astype(np.float64)
    est = resample(est, sample_rate, target).astype(np.float64)
    result = _visqol_api(mode).measure_from_arrays(ref, est, target)
    return VisqolScore(float(result.moslqo), visqol_mode_label(mode))


def visqol_job(args) -> tuple[float, str] | tuple[None, str]:
    """Process-pool entry point: (ref, est, sample_rate, mode) -> (moslqo, mode label); errors become (None, msg)."""
    ref, est, sample_rate, mode = args
    try:
        s = visqol(ref, est, sample_rate, mode)
        return s.moslqo, s.mode
    except Exception as e:  # a failed score must not kill the whole benchmark
        return None, f"error: {type(e).__name__}: {e}"
