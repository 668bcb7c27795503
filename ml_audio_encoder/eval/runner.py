"""Run the benchmark: our codec at every n_quantizers and Opus (and optionally Codec2) on every file.

Per file and setting it records sizes (whole file and payload; ours as written, entropy-coded when the model's priors
ship, and bit-packed), compression ratios vs 16-bit PCM, achieved kbps,
mel / STFT distance, SI-SDR, ViSQOL (with the mode it came from) and encode/decode real-time factors. Once per run
it measures the peak resident memory of compressing one long file (default 10 minutes) in a child process, for ours
and for Opus. Files that cannot be decoded are skipped with a warning and counted.

All audio is benchmarked as mono (the codec is a mono model; stereo input is averaged), and the PCM reference of
every compression ratio is 16-bit mono at the file's own sample rate.
"""
from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing as mp
import os
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from ml_audio_encoder.eval import metrics, peers
from ml_audio_encoder.eval.datasets import BenchItem
from ml_audio_encoder.protocol import Codec
from ml_audio_encoder.runtime import audio_io
from ml_audio_encoder.runtime.loading import load_model

KINDS = ("speech", "music", "general")


@dataclass
class BenchConfig:
    kind: str = "general"  # speech | music | general: picks the ViSQOL mode and the manifest domain
    levels: list | None = None  # n_quantizers to run; None = 1..n_codebooks
    opus_kbps: tuple = peers.DEFAULT_OPUS_KBPS
    codec2_modes: tuple = ()  # e.g. ("3200", "2400", "1300"); speech only
    seconds: float | None = None  # crop each file to this many seconds (centred)
    visqol: bool = True
    jobs: int = 1  # processes for ViSQOL
    memory: bool = True
    memory_seconds: float = 600.0  # length of the file whose compression peak RSS is measured
    progress: bool = True
    spectrogram_kbps: float | None = None  # Opus bitrate of the spectrogram figure (None: closest pair)
    engine: str = "auto"  # runtime of the memory probe's child (see runtime.loading.load_model)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")


@dataclass
class BenchResult:
    rows: list  # one dict per (file, codec, setting)
    skipped: list  # (path, reason)
    memory: dict  # codec -> {"peak_rss_mb", ...}
    config: BenchConfig
    model_info: dict
    n_files: int
    visqol_mode: str | None
    examples: dict = field(default_factory=dict)  # for the spectrogram figure: label -> (audio, sample_rate)
    codebook: object = None  # analysis.CodebookStats of our codes at the deepest level run

    def config_dict(self) -> dict:
        return asdict(self.config)


# ------------------------------------------------------------------------------------------------------------------
# the model
# ------------------------------------------------------------------------------------------------------------------
def model_info(model: Codec) -> dict:
    return {
        "preset": getattr(model, "preset", "?"),
        "sample_rate": int(model.sample_rate),
        "hop_length": int(model.hop_length),
        "n_codebooks": int(model.n_codebooks),
        "codebook_size": int(model.codebook_size),
        "fingerprint": model.fingerprint()[:16] if hasattr(model, "fingerprint") else "",
        "params": int(model.count_params()) if hasattr(model, "count_params") else 0,
    }


# ------------------------------------------------------------------------------------------------------------------
# audio
# ------------------------------------------------------------------------------------------------------------------
def load_mono(path: str, seconds: float | None = None) -> tuple[np.ndarray, int, int]:
    """(mono float32, sample_rate, original channel count), centre-cropped to `seconds` when given."""
    audio, sr = audio_io.load(path)  # (channels, samples)
    x = audio_io.to_mono(audio)
    if seconds is not None and seconds > 0:
        n = int(round(seconds * sr))
        if x.shape[0] > n:
            start = (x.shape[0] - n) // 2
            x = x[start : start + n]
    if x.shape[0] == 0:
        raise ValueError("no samples")
    return x, int(sr), int(audio.shape[0])


# ------------------------------------------------------------------------------------------------------------------
# our codec
# ------------------------------------------------------------------------------------------------------------------
@dataclass
class OursResult:
    setting: int
    file_bytes: int
    payload_bytes: int
    audio: np.ndarray
    encode_seconds: float
    decode_seconds: float
    codes: np.ndarray | None = None  # (channels, n_q, frames)
    entropy: str = "none"  # how the file stored the codes: none (bit-packed), static or context (range-coded)
    file_bytes_packed: int = 0  # the same file with bit-packed codes
    payload_bytes_packed: int = 0


def ours_roundtrip(model: Codec, x: np.ndarray, sr: int, n_quantizers: int, entropy: str = "auto") -> OursResult:
    """compress -> .mlae bytes -> decompress through the public file API. The times include the entropy coding of
    the file written (``entropy``: auto = the context prior when the model's priors ship) and its decoding."""
    from ml_audio_encoder.runtime.codec_file import from_bytes, to_bytes
    from ml_audio_encoder.runtime.compress import compress, decompress

    t0 = time.perf_counter()
    f = compress(model, x[None, :], sample_rate=sr, n_quantizers=n_quantizers, entropy=entropy)
    data = to_bytes(f)
    t1 = time.perf_counter()
    g = from_bytes(data, priors=f.priors)
    y = np.asarray(decompress(model, g), dtype=np.float32)
    t2 = time.perf_counter()
    y = audio_io.to_mono(y)
    y_sr = int(getattr(f, "sample_rate", sr))
    y = audio_io.resample(y, y_sr, sr)
    _, y = metrics.match_length(x, y)
    packed = metrics.codes_payload_bytes(f.n_frames, f.n_quantizers, f.codebook_size, f.channels)
    file_packed = len(to_bytes(f, "none")) if f.entropy != "none" else len(data)
    return OursResult(int(n_quantizers), len(data), int(g.payload_bytes), y, t1 - t0, t2 - t1, np.asarray(f.codes),
                      f.entropy, file_packed, packed)


def _warm_up(model, sr: int) -> None:
    """One short round trip so graph tracing is not billed to the first file's RTF."""
    try:
        ours_roundtrip(model, np.zeros(int(sr), np.float32), sr, model.n_codebooks)
    except Exception as e:  # the real call will raise with a better context
        warnings.warn(f"warm-up failed: {e}", stacklevel=2)


# ------------------------------------------------------------------------------------------------------------------
# the run
# ------------------------------------------------------------------------------------------------------------------
def _packed_columns(r: OursResult, n: int, sr: int) -> dict:
    """Our row's sizes with bit-packed codes (what the file would be without entropy coding)."""
    dur = n / sr
    return {
        "entropy": r.entropy,
        "file_bytes_packed": r.file_bytes_packed,
        "payload_bytes_packed": r.payload_bytes_packed,
        "ratio_file_packed": metrics.compression_ratio(n, sr, 1, r.file_bytes_packed),
        "ratio_payload_packed": metrics.compression_ratio(n, sr, 1, r.payload_bytes_packed),
        "kbps_file_packed": metrics.kbps(r.file_bytes_packed, dur),
        "kbps_payload_packed": metrics.kbps(r.payload_bytes_packed, dur),
    }


def _row(item: BenchItem, codec: str, setting, target_kbps, x, sr, channels, file_bytes, payload_bytes,
         enc_s, dec_s, backend) -> dict:  # fmt: skip
    n = x.shape[0]
    dur = n / sr
    return {
        "file": item.path,
        "name": item.name,
        "dataset": item.dataset,
        "domain": item.domain,
        "label": item.label,
        "speaker": item.speaker,
        "gender": item.gender,
        "codec": codec,
        "setting": str(setting),
        "backend": backend,
        "target_kbps": float(target_kbps),
        "duration_s": dur,
        "sample_rate": sr,
        "source_channels": channels,
        "pcm_bytes": metrics.pcm16_bytes(n, 1),
        "file_bytes": int(file_bytes),
        "payload_bytes": int(payload_bytes),
        "ratio_file": metrics.compression_ratio(n, sr, 1, file_bytes),
        "ratio_payload": metrics.compression_ratio(n, sr, 1, payload_bytes),
        "kbps_file": metrics.kbps(file_bytes, dur),
        "kbps_payload": metrics.kbps(payload_bytes, dur),
        "enc_rtf": enc_s / dur,
        "dec_rtf": dec_s / dur,
    }


def _quality(row: dict, x: np.ndarray, y: np.ndarray, sr: int) -> None:
    row["mel_distance"] = metrics.mel_distance(x, y, sr)
    row["stft_distance"] = metrics.stft_distance(x, y, sr)
    row["si_sdr"] = metrics.si_sdr(x, y, sr)
    row["visqol"] = float("nan")
    row["visqol_mode"] = ""


def _visqol_pool(jobs: int):
    if jobs <= 1:
        return None
    # spawn: never fork a process that holds TensorFlow's thread pools
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"))


def _write_wav(path: str, x: np.ndarray, sr: int) -> None:
    import soundfile as sf

    sf.write(path, x, sr, subtype="PCM_16")


def _long_signal(x: np.ndarray, sr: int, seconds: float) -> np.ndarray:
    n = int(round(seconds * sr))
    reps = int(math.ceil(n / max(1, x.shape[0])))
    return np.tile(x, reps)[:n]


def measure_memory(model, model_spec: str | None, x: np.ndarray, sr: int, seconds: float, opus_kbps: float,
                   tmpdir: str, engine: str = "auto") -> dict:  # fmt: skip
    """Peak RSS of compressing one `seconds`-long file (the first file tiled), ours and Opus, each in a child."""
    from ml_audio_encoder.eval.memprobe import peak_rss_of_command, peak_rss_ours

    long_path = os.path.join(tmpdir, "memory_probe.wav")
    _write_wav(long_path, _long_signal(x, sr, seconds), sr)
    out: dict = {}
    spec = model_spec
    if spec is None or not isinstance(spec, str):
        from ml_audio_encoder.weights import save_weights

        spec = save_weights(model, os.path.join(tmpdir, "model.npz"))[0]
    try:
        r = peak_rss_ours(spec, long_path, os.path.join(tmpdir, "memory_probe.mlae"), engine=engine)
        out["ours"] = {**r, "audio_seconds": seconds, "rtf": r["seconds"] / seconds}
    except Exception as e:
        warnings.warn(f"memory probe (ours) failed: {e}", stacklevel=2)
        out["ours"] = {"error": str(e)}
    if peers.ffmpeg_available():
        try:
            r = peak_rss_of_command(peers.ffmpeg_opus_command(long_path, os.path.join(tmpdir, "m.opus"), opus_kbps))
            out["opus"] = {**r, "audio_seconds": seconds, "rtf": r["seconds"] / seconds}
        except Exception as e:
            warnings.warn(f"memory probe (opus) failed: {e}", stacklevel=2)
            out["opus"] = {"error": str(e)}
    return out


def run_benchmark(model: Codec | str, items: list[BenchItem], config: BenchConfig | None = None,
                  model_spec: str | None = None) -> BenchResult:  # fmt: skip
    """Benchmark `model` (an MLAudioEncoder or a `--model` spec) and the peers on `items`."""
    config = config or BenchConfig()
    if isinstance(model, (str, os.PathLike)):
        model_spec = model_spec or os.fspath(model)
        model = load_model(model, engine=config.engine)
    levels = config.levels or list(range(1, int(model.n_codebooks) + 1))
    levels = [n for n in levels if 1 <= n <= model.n_codebooks]
    do_visqol = bool(config.visqol)
    if do_visqol and not metrics.visqol_available():
        warnings.warn("visqol-python is not installed: ViSQOL skipped (pip install 'visqol-python[accel,lattice]')",
                      stacklevel=2)
        do_visqol = False
    vmode = metrics.visqol_mode_for_kind(config.kind)
    opus_ok = peers.opus_backend() is not None
    if config.opus_kbps and not opus_ok:
        warnings.warn("no Opus encoder (ffmpeg or libsndfile with Opus): Opus skipped", stacklevel=2)
    codec2_modes = tuple(config.codec2_modes) if config.kind == "speech" and peers.codec2_available() else ()

    rows: list[dict] = []
    skipped: list[tuple[str, str]] = []
    examples: dict = {}
    pending = []  # (row, future or args)
    pool = _visqol_pool(config.jobs) if do_visqol else None
    first_audio = None
    warmed = False
    all_codes = []  # our codes at the deepest level, per file

    iterator = items
    if config.progress:
        from tqdm.auto import tqdm

        iterator = tqdm(items, desc="bench", unit="file")
    try:
        for item in iterator:
            try:
                x, sr, channels = load_mono(item.path, config.seconds)
            except Exception as e:
                msg = f"{type(e).__name__}: {e}"
                warnings.warn(f"skipping undecodable file {item.path}: {msg}", stacklevel=2)
                skipped.append((item.path, msg))
                continue
            if first_audio is None:
                first_audio = (x, sr)
            if not warmed:
                _warm_up(model, sr)
                warmed = True
            decoded = []  # (row, y)
            for n in levels:
                r = ours_roundtrip(model, x, sr, n)
                row = _row(item, "ours", n, model.bitrate(n) / 1000.0 if hasattr(model, "bitrate") else math.nan,
                           x, sr, channels, r.file_bytes, r.payload_bytes, r.encode_seconds, r.decode_seconds,
                           getattr(model, "preset", "model"))  # fmt: skip
                row.update(_packed_columns(r, x.shape[0], sr))
                decoded.append((row, r.audio))
                if n == max(levels) and r.codes is not None:
                    all_codes.append(r.codes)
            if opus_ok:
                for k in config.opus_kbps:
                    r = peers.opus_roundtrip(x, sr, k)
                    row = _row(item, "opus", r.setting, k, x, sr, channels, r.file_bytes, r.payload_bytes,
                               r.encode_seconds, r.decode_seconds, r.backend)  # fmt: skip
                    decoded.append((row, r.audio))
            for mode in codec2_modes:
                r = peers.codec2_roundtrip(x, sr, mode)
                row = _row(item, "codec2", mode, r.target_kbps, x, sr, channels, r.file_bytes, r.payload_bytes,
                           r.encode_seconds, r.decode_seconds, r.backend)  # fmt: skip
                decoded.append((row, r.audio))
            for row, y in decoded:
                _quality(row, x, y, sr)
                rows.append(row)
                if do_visqol:
                    args = (x, y, sr, vmode)
                    pending.append((row, pool.submit(metrics.visqol_job, args) if pool else args))
            if not examples:
                examples = {"original": (x, sr)}
                for row, y in decoded:
                    examples[f"{row['codec']}:{row['setting']}"] = (y, sr)
                examples["_rows"] = [dict(r) for r, _ in decoded]
            if pool is None and do_visqol:  # score inline, file by file, so progress stays honest
                for row, args in pending:
                    row["visqol"], row["visqol_mode"] = _unpack_visqol(metrics.visqol_job(args))
                pending = []
        if pending:
            waiting = pending
            if config.progress:
                from tqdm.auto import tqdm

                waiting = tqdm(pending, desc="visqol", unit="pair")
            for row, fut in waiting:
                row["visqol"], row["visqol_mode"] = _unpack_visqol(fut.result())
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    memory: dict = {}
    if config.memory and first_audio is not None:
        with tempfile.TemporaryDirectory(prefix="mlae_mem_") as tmp:
            x, sr = first_audio
            kbps = min(config.opus_kbps, key=lambda k: abs(k - 6.0)) if config.opus_kbps else 6.0
            memory = measure_memory(model, model_spec, x, sr, config.memory_seconds, kbps, tmp, config.engine)

    codebook = None
    if all_codes:
        from ml_audio_encoder.eval.analysis import codebook_stats

        codebook = codebook_stats(all_codes, int(model.codebook_size))

    return BenchResult(
        codebook=codebook,
        rows=rows,
        skipped=skipped,
        memory=memory,
        config=config,
        model_info=model_info(model),
        n_files=len(items) - len(skipped),
        visqol_mode=metrics.visqol_mode_label(vmode) if do_visqol else None,
        examples=examples,
    )


def _unpack_visqol(res) -> tuple[float, str]:
    score, mode = res
    if score is None:
        warnings.warn(f"ViSQOL failed: {mode}", stacklevel=2)
        return float("nan"), mode
    return float(score), mode
