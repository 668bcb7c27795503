"""Chunked compress / decompress of whole audio files on top of a :class:`~ml_audio_encoder.protocol.Codec`,
``audio_io`` and ``codec_file``.

Chunking is overlap-discard on the frame grid (not DAC's valid-padding windows, which send the codes of the
overlaps twice). The signal at the model rate is cut into windows of ``W`` frames; each window is encoded together
with ``C`` frames of context on each side, where ``C`` covers the model's receptive field, and only the central
``W`` frames' codes are kept. Windows start on multiples of ``hop_length`` samples, so every strided layer sees the
same grid as in a whole-file pass and the kept codes equal the whole-file codes (up to float noise flipping a
near-tie). At the file's start and end the window stops at the signal edge instead of adding context, which is
exactly what a whole-file pass sees there. Decoding mirrors this: each ``W``-frame block is decoded with ``C``
context frames of codes each side and only its central ``W · hop`` samples are kept. No code or sample is sent or
produced twice, and memory depends on ``W + 2C``, not on the file's length.

``model`` is any :class:`~ml_audio_encoder.protocol.Codec`: an :class:`~ml_audio_encoder.models.codec.MLAudioEncoder`
or a :class:`~ml_audio_encoder.runtime.lite.LiteCodec`. This module imports neither Keras nor TensorFlow itself.

Level handling: the input's integrated loudness is measured (a first streaming pass), the resampled signal is
scaled to ``normalize_db`` LUFS and, if that would push a peak above 1, attenuated further. The total gain is
stored and decoding divides it out exactly, restoring the input's level.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import AudioInputError, CodecFileError
from ..protocol import Codec, check_levels
from . import audio_io, codec_file
from .codec_file import MLAEFile

DEFAULT_WIN_DURATION = 5.0  # seconds per window (as DAC); the 2C context frames cost a few percent on top


def default_win_duration(model: Codec) -> float:
    """Seconds per window when the caller gives none: the model's own choice (``LiteCodec`` picks shorter
    windows, its interpreter's memory grows with the window), else :data:`DEFAULT_WIN_DURATION`."""
    return float(getattr(model, "default_win_duration", DEFAULT_WIN_DURATION))


def frame_period(model: Codec) -> int:
    """Windows must start on multiples of this many frames (a model's ``frame_period``, e.g. an iSTFT head's phase
    rotation; 1 when the model has none)."""
    return max(1, int(getattr(model, "frame_period", 1)))


def _round_up(n: int, period: int) -> int:
    return -(-n // period) * period


def context_frames(model: Codec) -> int:
    """Frames of context ``C`` each side of a window: enough to cover the receptive field, plus one for rounding
    (then up to a multiple of :func:`frame_period`, so that window starts ``W·i − C`` stay on it)."""
    return _round_up(math.ceil(model.receptive_field / model.hop_length) + 1, frame_period(model))


def window_frames(model: Codec, win_duration: float) -> int:
    """Frames ``W`` per window for ``win_duration`` seconds at the model's rate (at least one; a multiple of
    :func:`frame_period`)."""
    if not win_duration or win_duration <= 0:
        raise ValueError(f"win_duration must be positive, got {win_duration}")
    return _round_up(max(1, math.ceil(win_duration * model.sample_rate / model.hop_length)), frame_period(model))


def _frame_windows(n_frames: int, window: int, context: int) -> Iterator[tuple[int, int, int, int]]:
    """``(start, count, lo, hi)`` per window: keep frames ``[start, start+count)``, computed from ``[lo, hi)``."""
    for start in range(0, n_frames, window):
        count = min(window, n_frames - start)
        yield start, count, max(0, start - context), min(n_frames, start + window + context)


def resolve_entropy(model: Codec, entropy: str | None = "auto", priors=None):
    """``(kind, priors)`` for coding ``model``'s codes: ``"auto"`` is ``"context"`` when priors ship for the
    model's weights (or are given) and ``"none"`` (bit-packed) otherwise; ``"static"``/``"context"`` need priors,
    and priors of other weights are refused (``ValueError``)."""
    from . import entropy as ent

    kind = "auto" if entropy is None else entropy
    if kind not in ent.ENTROPY_CHOICES:
        raise ValueError(f"entropy must be one of {', '.join(ent.ENTROPY_CHOICES)}, got {entropy!r}")
    if kind == "none":
        return "none", None
    priors = priors if priors is not None else ent.priors_for(model)
    if priors is None:
        if kind == "auto":
            return "none", None
        raise ValueError(f"no entropy priors for {model.preset} weights {model.fingerprint()[:12]}: "
                         "use entropy 'none' (--entropy none), or fit them (train/fit_priors.py)")
    ent.check_priors(priors, model.fingerprint(), model.codebook_size, 1, "model")
    return ("context" if kind == "auto" else kind), priors


def n_quantizers_for_kbps(model: Codec, kbps: float, entropy: str | None = "auto", priors=None) -> int:
    """Largest level count whose per-channel code bitrate is at most ``kbps`` (``mlae compress --kbps``): the
    *expected* entropy-coded rate (the priors' held-out bits per code of each level) when the codes will be
    entropy-coded, else the bit-packed rate."""
    kind, priors = resolve_entropy(model, entropy, priors)
    per_level = [model.bitrate(1) / 1000.0] * model.n_codebooks
    if kind != "none" and priors.expected_bits.get(kind):
        per_level = [b * model.frame_rate / 1000.0 for b in priors.expected_bits[kind][: model.n_codebooks]]
    rates = np.cumsum(per_level)
    n = int(np.searchsorted(rates, kbps + 1e-9, side="right"))
    if n < 1:
        raise ValueError(f"--kbps {kbps:g} is below this model's lowest bitrate ({rates[0]:.3g} kbps at 1 level"
                         f"{', entropy-coded' if kind != 'none' else ''})")
    return min(n, model.n_codebooks)


def _progress(total: int, desc: str, verbose: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="chunk", disable=not verbose, leave=False)


# -- input ------------------------------------------------------------------------------------------------------
class _Source:
    """A path or an array behind one interface: rate, channels, and a re-iterable stream of blocks."""

    def __init__(self, path_or_array: str | os.PathLike | np.ndarray, sample_rate: int | None):
        if isinstance(path_or_array, (str, os.PathLike)):
            if sample_rate is not None:
                raise AudioInputError("sample_rate is for array input only; a file's own rate is used")
            self.path = path_or_array
            self.name = os.fspath(path_or_array)
            header = audio_io.info(path_or_array)
            self.rate, self.channels = header.sample_rate, header.channels
            self._array = None
        else:
            if sample_rate is None:
                raise AudioInputError("array input needs sample_rate")
            self.name = "audio array"
            self._array = audio_io.as_channels_first(path_or_array, self.name)
            self.rate, self.channels = int(sample_rate), self._array.shape[0]
        if self.channels > 0xFFFF:
            raise AudioInputError(f"{self.name}: {self.channels} channels is more than the format holds")

    def blocks(self) -> Iterator[np.ndarray]:
        if self._array is not None:
            return audio_io.iter_array_blocks(self._array)
        return audio_io.iter_blocks(self.path)


def _measure(source: _Source, model_rate: int) -> tuple[int, float, float]:
    """First pass: (length in samples, integrated loudness at the input rate, peak after resampling)."""
    meter = audio_io.LoudnessMeter(source.rate, source.channels)
    resampler = audio_io.StreamResampler(source.rate, model_rate)
    length, peak = 0, 0.0
    for block in source.blocks():
        meter.process(block)
        length += block.shape[1]
        peak = max(peak, float(np.abs(resampler.process(block)).max(initial=0.0)))
    peak = max(peak, float(np.abs(resampler.flush()).max(initial=0.0)))
    if length == 0:
        raise AudioInputError(f"{source.name}: no audio samples")
    return length, meter.integrated(), peak


def _gain_db(loudness: float, peak: float, normalize_db: float | None) -> float:
    """Loudness gain to ``normalize_db`` (none for silence or when disabled), lowered so the peak stays <= 1.

    Rounded to float32 here because that is what the header stores, and decode must divide out exactly the
    gain that was applied.
    """
    gain = 0.0
    if normalize_db is not None and math.isfinite(loudness):
        gain = float(normalize_db) - loudness
    if peak > 0 and peak * 10 ** (gain / 20) > 1.0:
        gain -= 20 * math.log10(peak * 10 ** (gain / 20))
        # float32 rounding could leave the peak a hair above 1; nudge down by the rounding step if so.
        while peak * 10 ** (float(np.float32(gain)) / 20) > 1.0:
            gain = float(np.nextafter(np.float32(gain), np.float32(-np.inf)))
    return float(np.float32(gain))


def _sample_windows(
    blocks: Iterable[np.ndarray], channels: int, n_frames: int, hop: int, window: int, context: int
) -> Iterator[tuple[int, int, int, np.ndarray]]:
    """Cut a block stream into ``(start, count, lo, samples[lo·hop : hi·hop])`` windows, zero-padding past the
    end to whole frames (as ``model.preprocess`` does for a whole file). Holds at most one window plus one block."""
    blocks = iter(blocks)
    pending: list[np.ndarray] = []
    buf = np.zeros((channels, 0), np.float32)
    buf_start = 0  # sample index of buf[:, 0]
    exhausted = False
    for start, count, lo, hi in _frame_windows(n_frames, window, context):
        need = hi * hop
        have = buf_start + buf.shape[1] + sum(b.shape[1] for b in pending)
        while not exhausted and have < need:
            try:
                block = next(blocks)
            except StopIteration:
                exhausted = True
                break
            pending.append(block)
            have += block.shape[1]
        if pending:
            buf = np.concatenate([buf, *pending], axis=1)
            pending = []
        x = buf[:, lo * hop - buf_start : need - buf_start]
        if x.shape[1] < (hi - lo) * hop:
            x = np.pad(x, [(0, 0), (0, (hi - lo) * hop - x.shape[1])])
        yield start, count, lo, x
        keep = max(0, start + window - context) * hop  # the next window's first sample
        buf = buf[:, max(0, keep - buf_start) :]
        buf_start = max(buf_start, keep)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, np.ndarray):  # the LiteRT runtime returns numpy; Keras is then never imported
        return x
    import keras

    return keras.ops.convert_to_numpy(x)


# -- compress ---------------------------------------------------------------------------------------------------
def compress(
    model: Codec,
    path_or_array: str | os.PathLike | np.ndarray,
    sample_rate: int | None = None,
    win_duration: float | None = None,
    n_quantizers: int | None = None,
    normalize_db: float | None = -16.0,
    verbose: bool = False,
    entropy: str | None = "auto",
    priors=None,
) -> MLAEFile:
    """Code an audio file (any libsndfile/librosa format) or a ``(channels, samples)`` array into an ``MLAEFile``.

    Each channel is coded separately at the model's rate; ``n_quantizers`` levels are coded and stored (all by
    default), in windows of ``win_duration`` seconds (default: :func:`default_win_duration`). ``entropy`` picks how
    the file will store the codes (:func:`resolve_entropy`): ``"auto"`` range-codes them with the context prior
    when priors ship for the model's weights (``priors`` gives others), ``"none"`` bit-packs them.
    ``normalize_db=None`` disables loudness normalisation (peak protection still applies). Files are
    streamed twice (measure, then encode) and never held whole in memory. Raises :class:`AudioInputError` for
    unusable input (including a level no ``.mlae`` header can hold: a peak above 10^6, 120 dB over full scale)
    and ``FileNotFoundError`` for a missing file.
    """
    n_q = check_levels(n_quantizers, model.n_codebooks)
    kind, priors = resolve_entropy(model, entropy, priors)
    source = _Source(path_or_array, sample_rate)
    hop, model_rate = model.hop_length, model.sample_rate

    length, loudness, peak = _measure(source, model_rate)
    gain_db = _gain_db(loudness, peak, normalize_db)
    if abs(gain_db) > codec_file.MAX_GAIN_DB:
        raise AudioInputError(f"{source.name}: level out of range (peak {peak:.3g}, loudness {loudness:.1f} LUFS: "
                              f"a gain of {gain_db:.0f} dB is beyond the ±{codec_file.MAX_GAIN_DB:g} dB a file holds)")
    gain = np.float32(10 ** (gain_db / 20))

    n_frames = math.ceil(audio_io.resampled_length(length, source.rate, model_rate) / hop)
    if win_duration is None:
        win_duration = default_win_duration(model)
    window, context = window_frames(model, win_duration), context_frames(model)
    codes = np.zeros((source.channels, n_q, n_frames), np.int32)
    scaled = (block * gain for block in audio_io.resample_blocks(source.blocks(), source.rate, model_rate))
    with _progress(math.ceil(n_frames / window), f"compress {source.name}", verbose) as bar:
        for start, count, lo, x in _sample_windows(scaled, source.channels, n_frames, hop, window, context):
            window_codes = _to_numpy(model.encode_codes(x[:, :, None], n_quantizers=n_q))
            codes[:, :, start : start + count] = window_codes[:, :, start - lo : start - lo + count]
            bar.update(1)

    return MLAEFile(
        sample_rate=source.rate,
        original_length=length,
        preset=model.preset,
        fingerprint=model.fingerprint(),
        model_sample_rate=model_rate,
        hop_length=hop,
        codebook_size=model.codebook_size,
        chunk_length=window,
        input_loudness_db=loudness,
        applied_gain_db=gain_db,
        codes=codes,
        entropy=kind,
        priors=priors,
    )


# -- decompress -------------------------------------------------------------------------------------------------
def check_model(model: Codec, f: MLAEFile, name: str = "file") -> None:
    """Raise :class:`CodecFileError` unless ``model`` is the model that wrote ``f`` (or an identical one)."""
    ours = {
        "preset": model.preset,
        "sample rate": model.sample_rate,
        "hop length": model.hop_length,
        "codebook size": model.codebook_size,
    }
    theirs = {
        "preset": f.preset,
        "sample rate": f.model_sample_rate,
        "hop length": f.hop_length,
        "codebook size": f.codebook_size,
    }
    if f.fingerprint:  # an empty fingerprint means the writer did not know its weights; nothing to compare
        ours["weights fingerprint"] = model.fingerprint()[:16]
        theirs["weights fingerprint"] = f.fingerprint[:16]
    diffs = [f"{key} {theirs[key]} vs {ours[key]}" for key in ours if str(ours[key]) != str(theirs[key])]
    if diffs:
        raise CodecFileError(f"{name}: written by a different model than the one decoding it (file vs model: "
                             + "; ".join(diffs) + ")")
    if f.n_quantizers > model.n_codebooks:
        raise CodecFileError(f"{name}: has {f.n_quantizers} quantizer levels but the model has {model.n_codebooks}")


def decompress(
    model: Codec,
    mlae_file_or_path: MLAEFile | str | os.PathLike,
    out_path: str | os.PathLike | None = None,
    verbose: bool = False,
    subtype: str | None = None,
    priors=None,
) -> np.ndarray | str:
    """Decode an ``MLAEFile`` (or a ``.mlae`` path) back to audio at the original rate, channels and length.

    An entropy-coded path is read with ``priors`` (or those shipped for its weights).

    Returns the ``(channels, samples)`` float32 array, or, when ``out_path`` is given, streams the audio to that
    file (format from its extension, 16-bit PCM for WAV unless ``subtype`` says otherwise) and returns the path.
    Raises :class:`CodecFileError` for an unusable file or a model that differs from the writer.
    """
    if isinstance(mlae_file_or_path, MLAEFile):
        f, name = mlae_file_or_path, "file"
    else:
        name = os.fspath(mlae_file_or_path)
        f = codec_file.read(name, priors=priors)
    check_model(model, f, name)
    codec_file.check_header(f, name)  # a file read from disk passed this already; an in-memory one may not have
    hop = model.hop_length
    model_length = audio_io.resampled_length(f.original_length, f.sample_rate, f.model_sample_rate)
    # Any window decodes to the same samples (each gets the full receptive field as context), so the decoder's
    # own window bounds memory even for a file written with long chunks.
    window = f.chunk_length if f.chunk_length > 0 else max(1, f.n_frames)
    window = min(window, window_frames(model, default_win_duration(model)))
    period = frame_period(model)
    window = max(period, window // period * period)
    context = context_frames(model)
    inverse_gain = np.float32(10 ** (-f.applied_gain_db / 20))

    def model_rate_blocks():
        produced = 0
        with _progress(math.ceil(f.n_frames / window), f"decompress {name}", verbose) as bar:
            for start, count, lo, hi in _frame_windows(f.n_frames, window, context):
                audio = _to_numpy(model.decode_codes(f.codes[:, :, lo:hi]))[:, :, 0]
                audio = audio[:, (start - lo) * hop : (start - lo + count) * hop]
                audio = audio[:, : model_length - produced]  # drop the padding to whole frames
                produced += audio.shape[1]
                bar.update(1)
                yield audio * inverse_gain

    def output_blocks():
        remaining = f.original_length
        for block in audio_io.resample_blocks(model_rate_blocks(), f.model_sample_rate, f.sample_rate):
            block = block[:, :remaining]
            remaining -= block.shape[1]
            if block.shape[1]:
                yield block

    if out_path is None:
        blocks = list(output_blocks())
        return np.concatenate(blocks, axis=1) if blocks else np.zeros((f.channels, 0), np.float32)
    out_path = os.fspath(out_path)
    with audio_io.AudioWriter(out_path, f.sample_rate, f.channels, subtype) as writer:
        for block in output_blocks():
            writer.write(block)
    return out_path
