"""Peak resident memory of compressing one file, measured in a fresh child process.

Ours: `python -m ml_audio_encoder.eval.memprobe ours --model SPEC --input WAV --output OUT.mlae` loads the model,
notes its peak RSS so far (the baseline: Python + Keras/TF + weights), compresses the file through the public
file API (`compress.compress` on the path, so the codec may stream it) and prints one JSON line with the peak RSS
(`VmHWM` of `/proc/self/status`, which, unlike `ru_maxrss`, does not inherit the parent's peak).

Opus: `peak_rss_of_command(cmd)` runs the encoder under a tiny Python wrapper that reports
`RUSAGE_CHILDREN.ru_maxrss`, i.e. the peak of the ffmpeg process alone (the wrapper's own memory is not counted).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from ml_audio_encoder.runtime.loading import ENGINES

_WRAPPER = r"""
import json, resource, subprocess, sys, time
cmd = json.loads(sys.argv[1])
t = time.perf_counter()
rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode
dt = time.perf_counter() - t
print(json.dumps({"rc": rc, "peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0,
                  "seconds": dt}))
"""


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"memory probe printed no result: {text[-800:]}")


def peak_rss_of_command(cmd: list[str], timeout: float | None = None) -> dict:
    """Run `cmd` in a child; return {"peak_rss_mb", "seconds"} of that command alone (Linux ru_maxrss in KiB)."""
    proc = subprocess.run(
        [sys.executable, "-c", _WRAPPER, json.dumps(cmd)], capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    out = _last_json(proc.stdout)
    if out.get("rc", 1) != 0:
        raise RuntimeError(f"{cmd[0]} failed under the memory probe: {proc.stderr[-800:]}")
    return out


def peak_rss_ours(model_spec: str, input_path: str, output_path: str, n_quantizers: int | None = None,
                  timeout: float | None = None, decode_to: str | None = None,
                  engine: str = "auto") -> dict:  # fmt: skip
    """Compress `input_path` with the model in a fresh interpreter; {"peak_rss_mb", "baseline_mb", "seconds"}."""
    cmd = [sys.executable, "-m", "ml_audio_encoder.eval.memprobe", "ours", "--model", model_spec,
           "--input", input_path, "--output", output_path, "--engine", engine]  # fmt: skip
    if n_quantizers:
        cmd += ["--n-quantizers", str(n_quantizers)]
    if decode_to:
        cmd += ["--decode-to", decode_to]
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # the child must import this very package, installed or not
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"memory probe failed ({proc.returncode}): {proc.stderr[-1500:]}")
    return _last_json(proc.stdout)


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB: ``VmHWM`` of ``/proc/self/status`` where there is one.

    ``getrusage().ru_maxrss`` survives ``execve``: a child started from a parent that holds a long test signal
    inherits the parent's peak (measured: 772 MB reported for a 1200 s file whose coding peaked at 345 MB). The
    high-water mark of ``/proc`` belongs to the memory map, which ``execve`` replaces.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _main_ours(args) -> None:
    from ml_audio_encoder.runtime.compress import compress
    from ml_audio_encoder.runtime.loading import load_model

    model = load_model(args.model, engine=args.engine)
    baseline = _peak_rss_mb()
    t = time.perf_counter()
    f = compress(model, args.input, n_quantizers=args.n_quantizers)
    f.save(args.output)
    dt = time.perf_counter() - t
    result = {"peak_rss_mb": _peak_rss_mb(), "baseline_mb": baseline,
              "seconds": dt}
    if args.decode_to:
        from ml_audio_encoder.runtime.compress import decompress

        t = time.perf_counter()
        decompress(model, args.output, args.decode_to)
        result["decode_seconds"] = time.perf_counter() - t
        result["peak_rss_mb"] = _peak_rss_mb()
    print(json.dumps(result))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m ml_audio_encoder.eval.memprobe")
    sub = p.add_subparsers(dest="codec", required=True)
    o = sub.add_parser("ours")
    o.add_argument("--model", required=True)
    o.add_argument("--input", required=True)
    o.add_argument("--output", required=True)
    o.add_argument("--n-quantizers", type=int, default=None)
    o.add_argument("--engine", choices=ENGINES, default="auto")
    o.add_argument("--decode-to", help="also decompress the .mlae into this audio file (timed; peak covers both)")
    args = p.parse_args(argv)
    if args.codec == "ours":
        _main_ours(args)


if __name__ == "__main__":
    main()
