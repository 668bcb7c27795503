"""The ``mlae`` command: argument parsing, then one library call per input. The work is in
:mod:`ml_audio_encoder.runtime` (``load_model``, ``compress``, ``codec_file``, ``export``) and
:mod:`ml_audio_encoder.eval`; nothing imports this module.

    mlae compress IN... [-o OUT_OR_DIR] [--kbps K | --n-quantizers N] [--entropy auto|context|static|none]
                  [--model PRESET_OR_PATH] [--win-duration S]
    mlae decompress IN.mlae... [-o OUT_OR_DIR] [--model PRESET_OR_PATH]
    mlae info FILE.mlae...
    mlae export [--format savedmodel|tflite] OUT [--model PRESET_OR_PATH] [--preset P] [--frames N]
    mlae bench ...            (see ``mlae bench --help``)

Bad input ends with one line ``mlae: error: ...`` on stderr and exit status 1 (argparse usage errors: 2).
"""

from __future__ import annotations

import argparse
import os
import sys

from .errors import AudioInputError, CodecFileError
from .runtime.entropy import ENTROPY_CHOICES
from .runtime.loading import ENGINES, MODEL_HELP, load_model


# -- output naming ----------------------------------------------------------------------------------------------
def _output_path(src: str, output: str | None, many: bool, suffix: str) -> str:
    """Where ``src``'s result goes: ``output`` itself (one input, not a folder), inside folder ``output``, or next
    to ``src`` with ``suffix``."""
    stem = os.path.splitext(os.path.basename(src))[0]
    if output is None:
        return os.path.join(os.path.dirname(src), stem + suffix)
    if many or os.path.isdir(output) or output.endswith(os.sep):
        os.makedirs(output, exist_ok=True)
        return os.path.join(output, stem + suffix)
    parent = os.path.dirname(output)
    if parent:
        os.makedirs(parent, exist_ok=True)
    return output


# -- commands ---------------------------------------------------------------------------------------------------
def _compress(args: argparse.Namespace) -> int:
    from .runtime.compress import compress, n_quantizers_for_kbps

    model = load_model(args.model, args.preset, args.engine)
    n_q = n_quantizers_for_kbps(model, args.kbps, args.entropy) if args.kbps is not None else args.n_quantizers
    normalize_db = None if args.no_normalize else args.normalize_db
    for src in args.inputs:
        f = compress(model, src, win_duration=args.win_duration, n_quantizers=n_q, normalize_db=normalize_db,
                     verbose=not args.quiet, entropy=args.entropy)
        dst = _output_path(src, args.output, len(args.inputs) > 1, ".mlae")
        f.save(dst)
        if not args.quiet:
            size = os.path.getsize(dst)
            coding = "bit-packed" if f.entropy == "none" else f"{f.entropy}-coded"
            print(f"{src} -> {dst} ({size} bytes, {f.n_quantizers} levels, {coding}, "
                  f"{size * 8 / max(f.duration, 1e-9) / 1000:.2f} kbps)")
    return 0


def _decompress(args: argparse.Namespace) -> int:
    from .runtime.codec_file import MLAEFile
    from .runtime.compress import decompress

    models = {}  # one model per preset named by the files, loaded on first use
    for src in args.inputs:
        f = MLAEFile.load(src)
        key = f.preset if args.model is None and args.preset is None else None
        if key not in models:
            models[key] = load_model(args.model, args.preset or key, args.engine)
        dst = _output_path(src, args.output, len(args.inputs) > 1, f"_decoded.{args.format}")
        decompress(models[key], f, out_path=dst, verbose=not args.quiet)
        if not args.quiet:
            print(f"{src} -> {dst}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from .runtime.codec_file import MLAEFile

    for i, path in enumerate(args.files):
        f = MLAEFile.load(path)
        if i:
            print()
        print(f"file            {path}")
        print("\n".join(f.describe(os.path.getsize(path))))
    return 0


# -- export (SavedModel / TFLite; see ml_audio_encoder.runtime.export) -------------------------------------------
def _export(args: argparse.Namespace) -> int:
    from .runtime import export

    model = load_model(args.model, args.preset, engine="keras")
    try:
        if args.format == "savedmodel":
            export.export_savedmodel(model, args.output)
            what = "SavedModel with signatures encode(audio, n_quantizers) and decode(codes)"
        elif args.format == "lite":
            prefix = args.output[: -len(".json")] if args.output.endswith(".json") else args.output
            paths = export.export_lite(model, prefix, float16=not args.float32)
            what = "LiteRT codec " + ", ".join(os.path.basename(p) for p in paths.values())
        else:
            export.export_tflite(model, args.output, frames=args.frames)
            frames = args.frames or round(model.frame_rate)
            what = f"TFLite decoder for codes (1, {model.n_codebooks}, {frames})"
    except RuntimeError as exc:  # wrong backend or a failed TFLite conversion: a user-facing error, not a crash
        raise ValueError(str(exc)) from exc
    if not args.quiet:
        print(f"{args.output}: {what}; model {model.preset} (weights {model.fingerprint()[:12]}), "
              f"{model.sample_rate} Hz, hop {model.hop_length}")
    return 0


def _bench(argv: list[str]) -> int:
    try:
        from .eval.cli import main as bench_main
    except ImportError as exc:
        raise ValueError(f"the benchmark is not available in this installation ({exc})") from None
    return bench_main(argv) or 0


# -- parser -----------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlae", description="Neural audio codec: compress audio to .mlae files.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{compress,decompress,info,export,bench}")

    def add_model_args(p: argparse.ArgumentParser, engine: bool = True) -> None:
        p.add_argument("--model", default=None, help=MODEL_HELP)
        p.add_argument("--preset", default=None, help="architecture for a weights file (or the preset to use)")
        if engine:
            p.add_argument("--engine", choices=ENGINES, default="auto",
                           help="runtime for shipped weights: lite (LiteRT, no TensorFlow, least memory), keras, "
                                "or auto: lite when installed (default)")
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summaries")

    c = sub.add_parser("compress", help="audio files -> .mlae")
    c.add_argument("inputs", nargs="+", metavar="IN", help="audio files (WAV, FLAC, OGG, MP3, ...)")
    c.add_argument("-o", "--output", help="output .mlae file (one input) or folder (default: next to each input)")
    rate = c.add_mutually_exclusive_group()
    rate.add_argument("--kbps", type=float,
                      help="highest bitrate per channel: picks the most levels that fit, judged by the expected "
                           "entropy-coded rate (the priors' bits per code per level, measured on held-out audio) "
                           "when the file will be entropy-coded, else by the bit-packed rate; a given file may "
                           "come out a little above or below")
    rate.add_argument("-n", "--n-quantizers", type=int, help="quantizer levels to code (default: all)")
    c.add_argument("--win-duration", type=float, default=None,
                   help="seconds per coding window; bounds memory (default: 5 with Keras, 1.5 with LiteRT)")
    c.add_argument("--normalize-db", type=float, default=-16.0, help="loudness to code at, LUFS (default -16)")
    c.add_argument("--no-normalize", action="store_true", help="code at the input's own loudness")
    c.add_argument("--entropy", choices=ENTROPY_CHOICES, default="auto",
                   help="how the file stores the codes: context (range-coded with the context model of the priors "
                        "shipped with the weights), static (per-level code frequencies), none (bit-packed, "
                        "log2(codebook) bits each, readable by every version), or auto: context when the model has "
                        "priors, else none (default)")
    add_model_args(c)
    c.set_defaults(func=_compress)

    d = sub.add_parser("decompress", help=".mlae -> audio files")
    d.add_argument("inputs", nargs="+", metavar="IN.mlae")
    d.add_argument("-o", "--output", help="output audio file (one input) or folder (default: IN_decoded.FORMAT)")
    d.add_argument("--format", default="wav", help="extension of automatically named outputs (default wav)")
    add_model_args(d)
    d.set_defaults(func=_decompress)

    i = sub.add_parser("info", help="describe .mlae files")
    i.add_argument("files", nargs="+", metavar="FILE.mlae")
    i.set_defaults(func=_info)

    e = sub.add_parser("export", help="write the model as a TensorFlow SavedModel, a LiteRT codec or a TFLite decoder")
    e.add_argument("output", metavar="OUT", help="SavedModel folder, LiteRT file prefix, or .tflite file")
    e.add_argument("--format", choices=("savedmodel", "lite", "tflite"), default="savedmodel",
                   help="savedmodel: encode + decode signatures, any length; lite: encoder + decoder flatbuffers "
                        "and OUT.json for --model OUT.json (any length, no TensorFlow needed to run); tflite: the "
                        "decoder only, fixed length (default savedmodel)")
    e.add_argument("--float32", action="store_true", help="lite only: keep float32 weights (default float16)")
    e.add_argument("--frames", type=int, default=None,
                   help="tflite only: code frames per decoder call (default: one second)")
    add_model_args(e, engine=False)
    e.set_defaults(func=_export)

    sub.add_parser("bench", help="benchmark against Opus/Codec2 (mlae bench --help)", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "bench":  # its own parser; forward everything untouched
            return _bench(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (CodecFileError, AudioInputError, FileNotFoundError, OSError, ValueError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__  # one line, whatever the exception held
        print(f"mlae: error: {message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mlae: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
