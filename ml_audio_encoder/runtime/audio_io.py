"""Audio in and out of the codec: reading, writing, resampling, mono mixing and loudness, all usable as streams.

The package's one audio layer: every other module (the data pipeline, the benchmark, the notebooks) calls the
``resample``, ``to_mono`` and loudness meter here instead of keeping its own.

Array layout: channels-first ``(channels, samples)`` float32 -- the layout a codec treats as a batch of mono
signals -- or 1-D ``(samples,)`` for mono. Functions that take audio accept both and work along the last axis.
(The networks themselves take channels-last ``(batch, samples, 1)``; :mod:`~ml_audio_encoder.runtime.compress`
converts.) Every stream operation (block reading, :class:`StreamResampler`, :class:`LoudnessMeter`,
:class:`AudioWriter`) gives the same result as its whole-array counterpart, so long files are processed in bounded
memory without changing the output.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Iterable, Iterator

import numpy as np
import scipy.signal
import soundfile as sf

from ..errors import AudioInputError

DEFAULT_BLOCK = 1 << 16  # samples per channel per block when streaming from a file
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".au", ".caf", ".w64", ".mp3")


# -- finding and reading ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AudioInfo:
    """What a file's header says. ``frames`` is samples per channel; a truncated file may hold fewer."""

    path: str
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate


def iter_audio_files(folder: str | os.PathLike, extensions: Iterable[str] = AUDIO_EXTENSIONS) -> Iterator[str]:
    """Paths of the audio files under ``folder``, recursively, in a deterministic order (sorted per folder)."""
    extensions = tuple(extensions)
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(extensions):
                yield os.path.join(dirpath, name)


def _name(path) -> str:
    return os.fspath(path) if isinstance(path, (str, os.PathLike)) else repr(path)


def _check_exists(path) -> None:
    # FileNotFoundError stays itself (not AudioInputError): "no such file" is a different fix than "bad audio".
    if isinstance(path, (str, os.PathLike)) and not os.path.exists(path):
        raise FileNotFoundError(f"{_name(path)}: no such file")


def _librosa_load(path) -> tuple[np.ndarray, int]:
    """Whole-file fallback for formats libsndfile cannot read (e.g. m4a through audioread/ffmpeg)."""
    import librosa

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa warns that it falls back to audioread; we already know
            audio, sr = librosa.load(os.fspath(path), sr=None, mono=False, dtype=np.float32)
    except Exception as exc:  # audioread/ffmpeg raise many unrelated types; all mean "cannot decode"
        raise AudioInputError(f"{_name(path)}: cannot read audio ({type(exc).__name__}: {exc})".strip()) from None
    audio = np.atleast_2d(audio)
    if audio.shape[-1] == 0:
        raise AudioInputError(f"{_name(path)}: file holds no audio samples")
    return audio, int(sr)


def _open(path) -> sf.SoundFile | None:
    """Open with libsndfile, or return None when libsndfile does not know the format."""
    _check_exists(path)
    try:
        return sf.SoundFile(os.fspath(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None


def info(path) -> AudioInfo:
    """Sample rate, channels and length of an audio file, reading only its header when libsndfile can."""
    handle = _open(path)
    if handle is None:
        audio, sr = _librosa_load(path)
        return AudioInfo(_name(path), sr, audio.shape[0], audio.shape[1])
    with handle:
        return AudioInfo(_name(path), int(handle.samplerate), int(handle.channels), int(handle.frames))


def check_finite(block: np.ndarray, name: str = "audio") -> np.ndarray:
    """Raise :class:`AudioInputError` if ``block`` holds NaN or inf; NaN would otherwise poison every code."""
    if not np.all(np.isfinite(block)):
        raise AudioInputError(f"{name}: audio contains NaN or infinite samples")
    return block


def _check_riff_size(path, name: str) -> None:
    """libsndfile silently shortens a truncated WAV to the bytes present; the RIFF size field still tells."""
    if not isinstance(path, (str, os.PathLike)):
        return
    with open(path, "rb") as fh:
        head = fh.read(12)
    if len(head) == 12 and head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        riff_size = int.from_bytes(head[4:8], "little")
        # 0 and 0xFFFFFFFF are what streaming writers leave when they cannot seek back: size unknown, not wrong.
        if riff_size not in (0, 0xFFFFFFFF) and riff_size + 8 > os.path.getsize(path):
            raise AudioInputError(
                f"{name}: truncated WAV file ({os.path.getsize(path)} bytes, header announces {riff_size + 8})"
            )


def iter_blocks(path, block_frames: int = DEFAULT_BLOCK) -> Iterator[np.ndarray]:
    """Yield ``(channels, n)`` float32 blocks of ``path`` in order; only one block is in memory at a time.

    Raises :class:`AudioInputError` (naming the file) for unreadable, truncated-mid-stream, empty or non-finite
    audio. Formats libsndfile cannot read are decoded whole by librosa and then sliced.
    """
    name = _name(path)
    handle = _open(path)
    if handle is None:
        audio, _ = _librosa_load(path)
        for start in range(0, audio.shape[1], block_frames):
            yield check_finite(audio[:, start : start + block_frames], name)
        return
    total = 0
    with handle:
        _check_riff_size(path, name)
        announced, fuzzy = handle.frames, str(handle.format).startswith("MPEG")
        while True:
            try:
                block = handle.read(block_frames, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError) as exc:
                raise AudioInputError(f"{name}: truncated or corrupted audio after {total} samples ({exc})") from None
            if block.shape[0] == 0:
                break
            total += block.shape[0]
            yield check_finite(np.ascontiguousarray(block.T), name)
    if total == 0:
        raise AudioInputError(f"{name}: file holds no audio samples")
    # MP3 lengths in the header are estimates, so only a large shortfall means truncation there.
    if total < (0.98 * announced if fuzzy else announced):
        raise AudioInputError(f"{name}: truncated audio (header announces {announced} samples, {total} readable)")


def iter_array_blocks(audio: np.ndarray, block_frames: int = DEFAULT_BLOCK) -> Iterator[np.ndarray]:
    """The array counterpart of :func:`iter_blocks` (views, no copies)."""
    for start in range(0, audio.shape[-1], block_frames):
        yield audio[:, start : start + block_frames]


def as_channels_first(audio, name: str = "audio") -> np.ndarray:
    """Validate an in-memory signal: 1-D mono or ``(channels, samples)``, finite, non-empty -> float32 2-D."""
    audio = np.asarray(audio)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2:
        raise AudioInputError(f"{name}: expected shape (samples,) or (channels, samples), got {audio.shape}")
    if not (np.issubdtype(audio.dtype, np.floating) or np.issubdtype(audio.dtype, np.integer)):
        raise AudioInputError(f"{name}: expected a numeric array, got dtype {audio.dtype}")
    if audio.shape[0] > audio.shape[1] and audio.shape[0] > 16:
        raise AudioInputError(
            f"{name}: shape {audio.shape} looks like (samples, channels); pass (channels, samples) (transpose it)"
        )
    if audio.shape[1] == 0:
        raise AudioInputError(f"{name}: no audio samples")
    if np.issubdtype(audio.dtype, np.integer):  # PCM integers -> [-1, 1)
        audio = audio / float(2 ** (8 * audio.dtype.itemsize - 1))
    return check_finite(audio.astype(np.float32, copy=False), name)


def load(path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Whole file as ``(channels, samples)`` float32, resampled to ``sample_rate`` if given. Small files only;
    long files should go through :func:`iter_blocks`."""
    rate = info(path).sample_rate
    blocks = list(iter_blocks(path))
    audio = np.concatenate(blocks, axis=1)
    if sample_rate is not None and sample_rate != rate:
        return resample(audio, rate, sample_rate), int(sample_rate)
    return audio, rate


def to_mono(audio: np.ndarray) -> np.ndarray:
    """1-D float32 mono: a 1-D signal as it is, ``(channels, samples)`` averaged over the channels."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        return audio
    if audio.ndim == 2:
        return np.ascontiguousarray(audio[0] if audio.shape[0] == 1 else audio.mean(axis=0))
    raise AudioInputError(f"expected audio of shape (samples,) or (channels, samples), got {audio.shape}")


# -- resampling -------------------------------------------------------------------------------------------------
def _ratio(orig_sr: int, target_sr: int) -> tuple[int, int]:
    if orig_sr <= 0 or target_sr <= 0 or int(orig_sr) != orig_sr or int(target_sr) != target_sr:
        raise AudioInputError(f"sample rates must be positive integers, got {orig_sr} -> {target_sr}")
    g = math.gcd(int(orig_sr), int(target_sr))
    return int(target_sr) // g, int(orig_sr) // g


def _design_filter(up: int, down: int) -> np.ndarray:
    """The low-pass ``resample_poly`` designs by default (Kaiser, beta 5), computed once per rate pair.

    Passing it explicitly lets the whole-array and streaming paths share one filter and one dtype rule.
    """
    max_rate = max(up, down)
    return scipy.signal.firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))


def resampled_length(n: int, orig_sr: int, target_sr: int) -> int:
    """Samples that resampling ``n`` samples gives: ceil(n * target / orig)."""
    up, down = _ratio(orig_sr, target_sr)
    return -(-n * up // down)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Polyphase resampling along the last axis (``scipy.signal.resample_poly``, Kaiser-windowed low-pass), float32
    out; ``ceil(n · target / orig)`` samples for ``n`` in. 1-D or ``(channels, samples)``."""
    up, down = _ratio(orig_sr, target_sr)
    audio = np.asarray(audio, dtype=np.float32)
    if up == down:
        return audio.copy()
    h = _design_filter(up, down).astype(np.float32)
    return scipy.signal.resample_poly(audio, up, down, axis=-1, window=h).astype(np.float32, copy=False)


class StreamResampler:
    """Resample a signal arriving in blocks; the concatenated output equals :func:`resample` of the whole signal.

    Overlap-discard: an output sample depends on the input within ``margin`` samples of its position, so each call
    emits only outputs whose support has fully arrived, and keeps just enough past input for the next outputs. The
    kept input always starts at a multiple of ``down`` so a segment's output grid coincides with the whole signal's.
    """

    def __init__(self, orig_sr: int, target_sr: int):
        self.up, self.down = _ratio(orig_sr, target_sr)
        self.identity = self.up == self.down
        if not self.identity:
            self._h = _design_filter(self.up, self.down).astype(np.float32)
            self.margin = math.ceil(10 * max(self.up, self.down) / self.up) + 2
        self._buf = None  # (channels, n) input not yet fully consumed
        self._buf_start = 0  # global index of _buf[:, 0]; multiple of down
        self._n_in = 0
        self._n_out = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, dtype=np.float32)
        if self.identity:
            return block
        self._buf = block if self._buf is None else np.concatenate([self._buf, block], axis=1)
        self._n_in += block.shape[1]
        # Outputs n with n * down / up + margin <= n_in have all the input they depend on.
        ready = (self._n_in - self.margin) * self.up // self.down + 1
        return self._emit(max(ready, self._n_out))

    def flush(self) -> np.ndarray:
        """Emit the tail (zero-padded past the end, exactly as whole-signal resampling does)."""
        if self.identity or self._buf is None:
            return np.zeros((0 if self._buf is None else self._buf.shape[0], 0), np.float32)
        return self._emit(-(-self._n_in * self.up // self.down))

    def _emit(self, end: int) -> np.ndarray:
        channels = self._buf.shape[0]
        if end <= self._n_out:
            return np.zeros((channels, 0), np.float32)
        y = scipy.signal.resample_poly(self._buf, self.up, self.down, axis=-1, window=self._h)
        offset = self._buf_start * self.up // self.down  # exact: _buf_start is a multiple of down
        out = y[:, self._n_out - offset : end - offset].astype(np.float32, copy=False)
        self._n_out = end
        # Keep input from (a multiple of down at or before) the leftmost sample the next output needs.
        need = (self._n_out * self.down) // self.up - self.margin
        keep = max(self._buf_start, (need // self.down) * self.down)
        self._buf = self._buf[:, keep - self._buf_start :]
        self._buf_start = keep
        return out


def resample_blocks(blocks: Iterable[np.ndarray], orig_sr: int, target_sr: int) -> Iterator[np.ndarray]:
    """Generator form of :class:`StreamResampler` (skips empty outputs)."""
    resampler = StreamResampler(orig_sr, target_sr)
    for block in blocks:
        out = resampler.process(block)
        if out.shape[-1]:
            yield out
    out = resampler.flush()
    if out.shape[-1]:
        yield out


# -- loudness (ITU-R BS.1770-4) ---------------------------------------------------------------------------------
def _k_weighting(rate: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-weighting as two RBJ-cookbook biquads (high shelf +4 dB at 1.5 kHz, high pass at 38 Hz), with the same
    parameters pyloudnorm uses so integrated loudness agrees with ``pyloudnorm.Meter`` at any sample rate."""
    # High shelf: G = 4 dB, Q = 1/sqrt(2), fc = 1500 Hz.
    a_gain = 10 ** (4.0 / 40.0)
    w0 = 2 * np.pi * 1500.0 / rate
    alpha = np.sin(w0) / (2 * (1 / np.sqrt(2)))
    cos, sq = np.cos(w0), 2 * np.sqrt(a_gain) * alpha
    shelf_b = a_gain * np.array([(a_gain + 1) + (a_gain - 1) * cos + sq, -2 * ((a_gain - 1) + (a_gain + 1) * cos),
                                 (a_gain + 1) + (a_gain - 1) * cos - sq])
    shelf_a = np.array([(a_gain + 1) - (a_gain - 1) * cos + sq, 2 * ((a_gain - 1) - (a_gain + 1) * cos),
                        (a_gain + 1) - (a_gain - 1) * cos - sq])
    # High pass: Q = 0.5, fc = 38 Hz.
    w0 = 2 * np.pi * 38.0 / rate
    alpha = np.sin(w0) / (2 * 0.5)
    cos = np.cos(w0)
    hp_b = np.array([(1 + cos) / 2, -(1 + cos), (1 + cos) / 2])
    hp_a = np.array([1 + alpha, -2 * cos, 1 - alpha])
    return [(shelf_b / shelf_a[0], shelf_a / shelf_a[0]), (hp_b / hp_a[0], hp_a / hp_a[0])]


class LoudnessMeter:
    """Integrated loudness (LUFS) of a signal fed in blocks, per ITU-R BS.1770-4.

    K-weighting runs with ``lfilter`` state carried across blocks, so block boundaries change nothing. Gating
    blocks are 400 ms with 75 % overlap; the absolute gate is -70 LUFS and the relative gate -10 LU. Block bounds
    and normalisation follow ``pyloudnorm.Meter.integrated_loudness`` so the two agree. Memory: the last 400 ms
    of weighted signal plus one energy per channel per 100 ms.
    """

    BLOCK_S = 0.4
    STEP = 0.25  # fraction of a block between block starts (75 % overlap)
    ABS_GATE = -70.0
    REL_GATE = -10.0

    def __init__(self, rate: int, channels: int):
        self.rate, self.channels = rate, channels
        self._filters = _k_weighting(rate)
        self._zi = [np.zeros((channels, 2)) for _ in self._filters]
        self._sq = np.zeros((channels, 0))  # squared weighted signal from global index _sq_start on
        self._sq_start = 0
        self._n = 0
        self._energies = []  # mean square per channel of each completed gating block
        self.weights = np.array([1.0, 1.0, 1.0, 1.41, 1.41] + [1.0] * max(0, channels - 5))[:channels]

    def _bounds(self, j: int) -> tuple[int, int]:
        # Same float expression as pyloudnorm, so integer truncation lands on the same samples.
        lo = int(self.BLOCK_S * (j * self.STEP) * self.rate)
        hi = int(self.BLOCK_S * (j * self.STEP + 1) * self.rate)
        return lo, hi

    def process(self, block: np.ndarray) -> None:
        x = np.asarray(block, dtype=np.float64)
        if x.shape[0] != self.channels:
            raise AudioInputError(f"expected {self.channels} channels, got a block of shape {x.shape}")
        for i, (b, a) in enumerate(self._filters):
            x, self._zi[i] = scipy.signal.lfilter(b, a, x, axis=-1, zi=self._zi[i])
        self._sq = np.concatenate([self._sq, x * x], axis=1)
        self._n += x.shape[1]
        j = len(self._energies)
        while True:
            lo, hi = self._bounds(j)
            if hi > self._n:
                break
            self._energies.append(self._block_energy(lo, hi))
            j += 1
        lo, _ = self._bounds(j)
        self._sq = self._sq[:, lo - self._sq_start :]
        self._sq_start = lo

    def _block_energy(self, lo: int, hi: int) -> np.ndarray:
        segment = self._sq[:, lo - self._sq_start : hi - self._sq_start]
        return segment.sum(axis=1) / (self.BLOCK_S * self.rate)

    def integrated(self) -> float:
        """Gated integrated loudness in LUFS; ``-inf`` when no block passes the gates (silence)."""
        if self._n == 0:
            return float("-inf")
        energies = list(self._energies)
        if self._n < self.BLOCK_S * self.rate:
            # Shorter than one gating block (pyloudnorm refuses): use the mean square of what there is.
            energies = [self._sq.sum(axis=1) / self._n]
        else:
            n_blocks = int(np.round((self._n / self.rate - self.BLOCK_S) / (self.BLOCK_S * self.STEP))) + 1
            energies = energies[:n_blocks]
            for j in range(len(energies), n_blocks):  # blocks reaching past the end (pyloudnorm keeps them)
                lo, hi = self._bounds(j)
                energies.append(self._block_energy(lo, min(hi, self._n)))
        z = np.array(energies)  # (blocks, channels)
        with np.errstate(divide="ignore"):
            block_lufs = -0.691 + 10 * np.log10(z @ self.weights)
            gated = z[block_lufs >= self.ABS_GATE]
            if len(gated) == 0:
                return float("-inf")
            relative = -0.691 + 10 * np.log10(gated.mean(axis=0) @ self.weights) + self.REL_GATE
            gated = z[(block_lufs > relative) & (block_lufs > self.ABS_GATE)]
            if len(gated) == 0:
                return float("-inf")
            return float(-0.691 + 10 * np.log10(gated.mean(axis=0) @ self.weights))


def integrated_loudness(audio: np.ndarray, rate: int) -> float:
    """BS.1770 integrated loudness of a ``(channels, samples)`` (or 1-D) array; ``-inf`` for silence."""
    audio = np.atleast_2d(np.asarray(audio))
    check_finite(audio)
    meter = LoudnessMeter(rate, audio.shape[0])
    meter.process(audio)
    return meter.integrated()


# -- writing ----------------------------------------------------------------------------------------------------
def _default_subtype(path: str) -> str | None:
    ext = os.path.splitext(path)[1].lower()
    return "PCM_16" if ext in (".wav", ".wave", ".aif", ".aiff") else None


class AudioWriter:
    """Write ``(channels, n)`` blocks to an audio file as they come. Format from the extension; WAV/AIFF default
    to 16-bit PCM. Integer formats are clipped to [-1, 1] first, since libsndfile would otherwise wrap around.
    If the ``with`` body raises, the partial file is removed."""

    def __init__(self, path, sample_rate: int, channels: int, subtype: str | None = None):
        self.path = os.fspath(path)
        subtype = subtype or _default_subtype(self.path)
        try:
            self._file = sf.SoundFile(self.path, "w", samplerate=int(sample_rate), channels=int(channels),
                                      subtype=subtype)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioInputError(f"{self.path}: cannot write audio here ({exc})") from None
        self._clip = not str(self._file.subtype).startswith(("FLOAT", "DOUBLE"))

    def write(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.float32)
        if self._clip:
            block = np.clip(block, -1.0, 1.0)
        self._file.write(block.T)

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close()
        if exc_type is not None and os.path.exists(self.path):
            os.remove(self.path)


def save(path, audio: np.ndarray, sample_rate: int, subtype: str | None = None) -> None:
    """Write a ``(channels, samples)`` (or 1-D) array; see :class:`AudioWriter` for format rules."""
    audio = np.atleast_2d(np.asarray(audio))
    with AudioWriter(path, sample_rate, audio.shape[0], subtype) as writer:
        writer.write(audio)
