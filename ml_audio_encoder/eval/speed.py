"""CPU speed and memory of whole-file coding: ``python -m ml_audio_encoder.eval.speed [--model fast_24khz]``.

For each duration (default 60 s and 600 s) a file of real or synthesized audio is compressed to ``.mlae`` and
decompressed back to WAV in a fresh child process (``memprobe ours --decode-to``), which reports wall time and
peak resident memory. Prints a Markdown table: real-time factors (seconds of compute per second of audio; < 1 is
faster than real time) and whether memory stays flat as the file grows.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile

import numpy as np

from ml_audio_encoder.runtime import audio_io
from ml_audio_encoder.runtime.loading import DEFAULT_PRESET, ENGINES


def _test_signal(seconds: float, sr: int, source: str | None) -> np.ndarray:
    if source:
        x, _ = audio_io.load(source, sr)
        x = audio_io.to_mono(x)
    else:  # harmonics with a wandering pitch plus a little noise: busy enough for the codec, no data needed
        t = np.arange(int(sr * min(seconds, 30))) / sr
        f0 = 180 + 60 * np.sin(2 * np.pi * 0.3 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sr
        x = sum(0.2 / k * np.sin(k * phase) for k in range(1, 8)) + 0.01 * np.random.RandomState(0).randn(len(t))
    n = int(seconds * sr)
    return np.tile(x, -(-n // len(x)))[:n].astype(np.float32)


def measure(model_spec: str, seconds=(60.0, 600.0), sample_rate: int = 44100, source: str | None = None,
            n_quantizers: int | None = None, engine: str = "auto") -> list[dict]:  # fmt: skip
    import soundfile as sf

    from ml_audio_encoder.eval.memprobe import peak_rss_ours

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for s in seconds:
            wav = os.path.join(tmp, f"in_{int(s)}.wav")
            sf.write(wav, _test_signal(s, sample_rate, source), sample_rate, subtype="PCM_16")
            r = peak_rss_ours(model_spec, wav, os.path.join(tmp, "out.mlae"), n_quantizers,
                              decode_to=os.path.join(tmp, "back.wav"), engine=engine)
            rows.append({"seconds": s, "encode_rtf": r["seconds"] / s, "decode_rtf": r["decode_seconds"] / s,
                         "total_rtf": (r["seconds"] + r["decode_seconds"]) / s, "peak_rss_mb": r["peak_rss_mb"],
                         "baseline_mb": r["baseline_mb"]})
    return rows


def markdown(rows: list[dict], model_spec: str, engine: str = "auto") -> str:
    lines = [f"model `{model_spec}` (engine {engine}), {os.cpu_count()} CPU cores ({platform.machine()}), "
             "mono 44.1 kHz WAV in and out",
             "",
             "| audio | encode RTF | decode RTF | compress + decompress RTF | peak RSS MB | of which model loaded MB |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seconds']:.0f} s | {r['encode_rtf']:.3f} | {r['decode_rtf']:.3f} | {r['total_rtf']:.3f} | "
                     f"{r['peak_rss_mb']:.0f} | {r['baseline_mb']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m ml_audio_encoder.eval.speed", description=__doc__.splitlines()[0])
    p.add_argument("--model", default=DEFAULT_PRESET)
    p.add_argument("--seconds", default="60,600", help="comma-separated durations")
    p.add_argument("--source", help="audio file to tile (default: synthesized harmonics)")
    p.add_argument("-n", "--n-quantizers", type=int)
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="runtime: lite (LiteRT, shipped weights / LiteRT exports), keras, or auto")
    args = p.parse_args(argv)
    seconds = [float(s) for s in args.seconds.split(",")]
    rows = measure(args.model, seconds, source=args.source, n_quantizers=args.n_quantizers, engine=args.engine)
    print(markdown(rows, args.model, args.engine))


if __name__ == "__main__":
    main()
