"""Evaluating the codec: the benchmark against Opus (and Codec2) and codebook statistics.

``metrics``   compression ratio, bitrate, mel / STFT distance, SI-SDR, ViSQOL
``peers``     Opus (ffmpeg libopus, or libsndfile) and Codec2 round trips, Ogg page accounting
``datasets``  GTZAN, RAVDESS, any folder, a manifest's dev split
``runner``    the benchmark run; ``report``: tables, CSVs and figures; ``cli``: ``mlae bench``
``memprobe``, ``speed``   peak memory and real-time factor of whole-file coding, in fresh processes
``analysis``  per-level codebook statistics (entropy, perplexity, utilization, bitrate efficiency)

`mlae bench ...` or, from Python::

    from ml_audio_encoder.eval import BenchConfig, resolve_dataset, run_benchmark, write_report
    result = run_benchmark("fast_24khz", resolve_dataset("dev", kind="speech", limit=10), BenchConfig(kind="speech"))
    write_report(result, "bench_out/speech")
"""

from ml_audio_encoder.eval.datasets import BenchItem, resolve_dataset
from ml_audio_encoder.eval.report import markdown_summary, summarize, write_report
from ml_audio_encoder.eval.runner import BenchConfig, BenchResult, run_benchmark

__all__ = ["BenchConfig", "BenchItem", "BenchResult", "markdown_summary", "resolve_dataset", "run_benchmark",
           "summarize", "write_report"]
