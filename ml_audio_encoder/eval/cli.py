"""`mlae bench`: benchmark a model against Opus (and Codec2) on a dataset; prints and writes the summary.

    mlae bench --model fast_24khz --data dev --kind speech --limit 20 --seconds 10 --out bench_out/speech
    mlae bench --model random:tiny_test --data GTZAN_DIR --kind music --opus-kbps 6,12,24 --no-visqol

`--data`: "dev" (default: the dev split of data/manifest.csv, domain = --kind), a GTZAN or RAVDESS folder, any
folder of audio, a manifest CSV (or "manifest:PATH[:SPLIT]"), or one audio file.
`--model`: a preset with shipped weights, "random:PRESET" (random weights), or a .keras / weights file.
"""
from __future__ import annotations

import argparse
import sys
import time

from ml_audio_encoder.runtime.loading import DEFAULT_PRESET, ENGINES, load_model


def _floats(text: str) -> tuple:
    return tuple(float(t) for t in text.split(",") if t.strip()) if text else ()


def _ints(text: str) -> list | None:
    if not text or text == "all":
        return None
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part.strip():
            out.append(int(part))
    return out


def build_parser(prog: str = "mlae bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=DEFAULT_PRESET,
                   help=f"preset name, random:PRESET, or a .keras / weights file (default: {DEFAULT_PRESET})")
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="runtime for shipped weights: lite (LiteRT), keras, or auto (lite when installed)")
    p.add_argument("--data", default="dev", help="dev | DIR (GTZAN, RAVDESS, any) | manifest.csv | file")
    p.add_argument("--kind", choices=("speech", "music", "general"), default="general",
                   help="picks the ViSQOL mode (speech: 16 kHz lattice; else audio 48 kHz) and the manifest domain")
    p.add_argument("--limit", type=int, default=None, help="first N files only")
    p.add_argument("--seconds", type=float, default=None, help="crop each file to S seconds (centred)")
    p.add_argument("--out", default=None, help="output folder (default bench_out/<kind>-<time>)")
    p.add_argument("--jobs", type=int, default=1, help="processes for ViSQOL")
    p.add_argument("--opus-kbps", default="6,12,16,24,32", help="Opus bitrates, comma-separated ('' for none)")
    p.add_argument("--levels", default="all", help="our n_quantizers to run: all | 1,2,4 | 1-8")
    p.add_argument("--codec2", default="", help="Codec2 modes for speech, e.g. 3200,2400,1300 (needs c2enc)")
    p.add_argument("--no-visqol", action="store_true", help="skip ViSQOL (fast)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    p.add_argument("--memory-seconds", type=float, default=600.0, help="length of the memory-probe file (s)")
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ml_audio_encoder.eval.datasets import resolve_dataset
    from ml_audio_encoder.eval.report import markdown_summary, summarize, write_report
    from ml_audio_encoder.eval.runner import BenchConfig, run_benchmark

    try:
        items = resolve_dataset(args.data, kind=args.kind, limit=args.limit)
    except (FileNotFoundError, ValueError) as e:
        print(f"mlae bench: {e}", file=sys.stderr)
        return 2
    if not items:
        print(f"mlae bench: no files in {args.data!r} for kind {args.kind}", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model, engine=args.engine)
    except (FileNotFoundError, ValueError, OSError) as e:
        print(f"mlae bench: {e}", file=sys.stderr)
        return 2
    config = BenchConfig(
        kind=args.kind,
        engine=args.engine,
        levels=_ints(args.levels),
        opus_kbps=_floats(args.opus_kbps),
        codec2_modes=tuple(m for m in args.codec2.split(",") if m.strip()),
        seconds=args.seconds,
        visqol=not args.no_visqol,
        jobs=max(1, args.jobs),
        memory=not args.no_memory,
        memory_seconds=args.memory_seconds,
        progress=not args.quiet,
    )
    out = args.out or f"bench_out/{args.kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    result = run_benchmark(model, items, config, model_spec=args.model)
    paths = write_report(result, out, title=f"mlae bench ({args.data})", figures=not args.no_figures)
    print(markdown_summary(result, summarize(result.rows, result.memory), title=f"mlae bench ({args.data})"))
    print(f"wrote {', '.join(sorted(paths.values()))}")
    return 0 if result.n_files > 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
