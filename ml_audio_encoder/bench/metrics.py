"""Benchmark metrics: compression ratio, bitrate, mel / STFT distance, SI-SDR and ViSQOL.

Every quality metric has exactly one implementation in the project. Mel and STFT distance *are* the training
losses (`ml_audio_encoder.training.losses.MelSpectrogramLoss` / `MultiScaleSTFTLoss`, DAC's definitions) evaluated eagerly
on numpy input through `keras.ops`; SI-SDR is `ml_audio_encoder.training.losses.si_sdr`. This module imports keras lazily so
that ViSQOL worker processes (see `runner`) stay light.

Audio arguments are numpy arrays: 1-D mono, or channels-last `(samples, channels)`, which is averaged to mono.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

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
    bits_per_code = max(1, (int(codebook_size) - 1).bit_length())
    bits = int(channels) * int(n_frames) * int(n_q) * bits_per_code
    return (bits + 7) // 8


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------
def to_mono(x: np.ndarray) -> np.ndarray:
    """1-D float32 mono. `(samples, channels)` is averaged over channels."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        return x
    if x.ndim == 2:
        return x.mean(axis=1)
    raise ValueError(f"expected 1-D or (samples, channels) audio, got shape {x.shape}")


def resample(x: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with the codec's own resampler (`audio_io.resample`, polyphase)."""
    x = np.asarray(x, dtype=np.float32)
    if int(orig_sr) == int(target_sr):
        return x
    from ml_audio_encoder.audio_io import resample as _resample

    return _resample(x, int(orig_sr), int(target_sr))


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


def _as_batch(x: np.ndarray) -> np.ndarray:
    return x.reshape(1, -1, 1).astype(np.float32)


def _scalar(v) -> float:
    import keras

    return float(np.asarray(keras.ops.convert_to_numpy(v)).reshape(-1).mean())


# --------------------------------------------------------------------------------------------------------------------
# distances (the training losses, evaluated once)
# --------------------------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)
def _mel_loss(sample_rate: int):
    from ml_audio_encoder.training.losses import MelSpectrogramLoss

    return MelSpectrogramLoss(sample_rate=int(sample_rate))


@functools.lru_cache(maxsize=4)
def _stft_loss():
    from ml_audio_encoder.training.losses import MultiScaleSTFTLoss

    return MultiScaleSTFTLoss()


def mel_distance(ref, est, sample_rate: int, est_sample_rate: int | None = None) -> float:
    """DAC's mel distance (7-scale log10-mel L1, `losses.MelSpectrogramLoss`) at the reference's rate.

    `est` is resampled to `sample_rate` when `est_sample_rate` differs, then cropped/padded to the reference length.
    """
    ref, est = _prepare(ref, est, sample_rate, est_sample_rate)
    return _scalar(_mel_loss(int(sample_rate))(_as_batch(ref), _as_batch(est)))


def stft_distance(ref, est, sample_rate: int | None = None, est_sample_rate: int | None = None) -> float:
    """Multi-scale STFT distance (`losses.MultiScaleSTFTLoss`) at the reference's rate."""
    ref, est = _prepare(ref, est, sample_rate, est_sample_rate)
    return _scalar(_stft_loss()(_as_batch(ref), _as_batch(est)))


def si_sdr(ref, est, sample_rate: int | None = None, est_sample_rate: int | None = None) -> float:
    """Scale-invariant SDR in dB (`losses.si_sdr`), higher is better."""
    from ml_audio_encoder.training.losses import si_sdr as _si_sdr

    ref, est = _prepare(ref, est, sample_rate, est_sample_rate)
    return _scalar(_si_sdr(_as_batch(ref), _as_batch(est)))


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
