"""Benchmark of the codec against Opus (and Codec2): sizes, mel distance, ViSQOL, SI-SDR, speed, memory.

`mlae bench ...` (see `ml_audio_encoder.bench.cli`) or, from Python::

    from ml_audio_encoder.bench import BenchConfig, run_benchmark, resolve_dataset, write_report
    result = run_benchmark("small_24khz", resolve_dataset("dev", kind="speech", limit=10), BenchConfig(kind="speech"))
    write_report(result, "bench_out/speech")
"""
from ml_audio_encoder.bench.datasets import BenchItem, resolve_dataset
from ml_audio_encoder.bench.report import markdown_summary, summarize, write_report
from ml_audio_encoder.bench.runner import BenchConfig, BenchResult, load_model, run_benchmark

__all__ = ["BenchConfig", "BenchItem", "BenchResult", "load_model", "markdown_summary", "resolve_dataset",
           "run_benchmark", "summarize", "write_report"]
