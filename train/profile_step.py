#!/usr/bin/env python
"""Profile the CPU training step of a config: its parts, TensorFlow vs JAX, XLA on/off, 1 vs 2 threads.

    nice -n 5 python train/profile_step.py --config train/conf/fast_24khz_cpu.yml --parts \\
        --backends tensorflow,jax --threads 1,2 --jit off,on --reps 3 --out /tmp/fast.md

Times are the PROCESS CPU time (``time.process_time()``: every thread of this process, nothing of the other jobs
on the machine) and wall time per call, median over ``--reps`` calls after ``--warmup`` untimed calls (tracing,
XLA compilation); cheap calls repeat until ``--min-seconds`` of wall time. Every setting runs in its own
subprocess, because TensorFlow's thread pools are fixed by the first op and the backend by the first Keras import.

``--parts`` (TensorFlow, ``--parts-threads`` threads, once per ``--jit`` value) times each piece of the step as its
own ``tf.function``: encoder, RVQ and decoder forward and forward+backward, each loss term and each discriminator
group forward+backward, AdamW's apply, the data pipeline (``make_data`` and ``get_batch``), and the full
reconstruction-only and GAN steps of the same process, so the shares add up. Without ``--parts`` only the full
steps (``CodecTrainer.train_step`` through ``train_on_batch``, as ``fit`` runs it) are timed, for every backend x
threads x jit setting. Step inputs are random audio (timing does not depend on content), as in ``bench_step.py``.

``--steps fit,fit-tfdata`` also times reconstruction-only steps inside ``fit`` on the config's data (the
``AudioDataset`` as ``train.py`` feeds it, or the same batches through ``as_tf_dataset``). Every measurement also
reports its kernel (system) CPU time and minor page faults per call and the peak RSS: after the first ``fit``,
TensorFlow's default CPU allocator faults its buffers in again every step. The workers inherit the environment,
so allocator settings are compared by prefixing the command (``TF_CPU_ALLOCATOR_USE_BFC=true``, glibc's
``MALLOC_*`` variables) or with ``--mallopt``.

Threads: TensorFlow sets its intra- and inter-op pools (as ``train.py --threads``); JAX has no such setting, so its
process is pinned to that many cores (``sched_setaffinity``) and, for one thread, XLA's Eigen pool is turned off.
Results: Markdown tables on stdout (and ``--out``), every record as JSON with ``--json``; ``--merge`` folds in
earlier records and skips the settings they cover. See docs/training_on_cpu.md for a full profile.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time

RESULT = "@@profile_step@@ "


# -- worker: one process, one setting ------------------------------------------------------------------------
def _emit(kind, **fields):
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak resident memory so far
    print(RESULT + json.dumps({"kind": kind, **fields, "peak_rss_mb": round(peak_mb)}), flush=True)


def _setup_threads(backend, threads):
    if backend == "jax":
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:threads]))
    else:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _finish(value):
    """Wait for a result (JAX dispatches asynchronously) by reading one scalar of it back."""
    import keras

    leaves = keras.tree.flatten(value)
    if leaves:
        float(keras.ops.convert_to_numpy(keras.ops.sum(leaves[0])))


def _usage():
    """``(process CPU s, wall s, kernel CPU s, minor page faults)`` of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.process_time(), time.perf_counter(), ru.ru_stime, ru.ru_minflt


def _stats(samples):
    """Medians of per-call ``_usage`` differences."""
    cpu, wall, sys_, faults = ([s[i] for s in samples] for i in range(4))
    return {"cpu": statistics.median(cpu), "wall": statistics.median(wall), "n": len(samples),
            "sys": statistics.median(sys_), "faults": statistics.median(faults),
            "cpu_all": [round(v, 4) for v in cpu], "wall_all": [round(v, 4) for v in wall]}


def _time(fn, reps, warmup, min_seconds):
    """``fn()`` timed: warm-up calls, then at least ``reps`` calls (more while under ``min_seconds`` of wall)."""
    start = _usage()
    for _ in range(warmup):
        _finish(fn())
    first = [b - a for a, b in zip(start, _usage())]
    samples = []
    while len(samples) < reps or (sum(s[1] for s in samples) < min_seconds and len(samples) < 50):
        before = _usage()
        _finish(fn())
        samples.append([b - a for a, b in zip(before, _usage())])
    return {**_stats(samples), "warmup_cpu": first[0], "warmup_wall": first[1]}


def _measure(kind, name, fn, args, **extra):
    if kind == "part" and args.only and not re.search(args.only, name):
        return
    try:
        result = _time(fn, args.reps, args.warmup, args.min_seconds)
    except Exception as e:  # a failing part (e.g. an op XLA cannot compile) must not lose the others
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        result = {"error": f"{type(e).__name__}: {lines[-1][:200] if lines else ''}"}
    _emit(kind, name=name, **result, **extra)


def _grad_checksum(grads):
    """One scalar that depends on every gradient, so that ``tf.function`` cannot prune any of them."""
    import tensorflow as tf

    total = tf.constant(0.0)
    for g in grads:
        if g is None:
            continue
        if isinstance(g, tf.IndexedSlices):
            g = g.values
        total += tf.reduce_sum(tf.cast(g, tf.float32))
    return total


# Factories, not default arguments: tf.function turns arguments (Keras variables too) into graph inputs.
def _loss_fb(loss):
    import tensorflow as tf
    from keras import ops

    def f(a, b):
        with tf.GradientTape() as tape:
            tape.watch(b)
            value = ops.mean(loss.call(a, b))
        return value + tf.reduce_sum(tape.gradient(value, b))
    return f


def _disc_fns(subs, variables):
    import tensorflow as tf
    from keras import ops

    from ml_audio_encoder.training.discriminator import preprocess_audio

    def d_loss(a):  # LSGAN on the logits + L1 of the feature maps: every feature map is on the gradient path
        fmaps = [d(preprocess_audio(a)) for d in subs]
        return sum(ops.mean(ops.square(1.0 - f[-1])) + sum(ops.mean(ops.abs(m)) for m in f[:-1]) for f in fmaps)

    def d_fb(a):
        with tf.GradientTape() as tape:
            tape.watch(a)
            value = d_loss(a)
        return value + _grad_checksum(tape.gradient(value, [a] + list(variables)))
    return d_loss, d_fb


def _apply_fn(opt, variables):
    def apply(grads):
        opt.apply_gradients(zip(grads, variables))
        return opt.iterations
    return apply


def _tf_parts(trainer, x, args, jit):
    """Each piece of the step as its own compiled function (TensorFlow only)."""
    import tensorflow as tf

    from ml_audio_encoder.training.discriminator import BandDiscriminator, PeriodDiscriminator, ScaleDiscriminator

    g, disc = trainer.generator, trainer.discriminator
    compiled = lambda f: tf.function(f, jit_compile=jit)  # noqa: E731
    rng = tf.random.Generator.from_seed(0)
    z = g.encoder(g.preprocess(x))
    z_q = g.quantizer(z, training=True)[0]
    y = g(x, training=True)["audio"]
    r_z, r_q, r_y = (rng.normal(t.shape) for t in (z, z_q, y))  # random cotangents

    def fwd_bwd(call, inp, cot, variables):
        def f(inp):
            with tf.GradientTape() as tape:
                tape.watch(inp)
                out, extra = call(inp)
                loss = tf.reduce_mean(out * cot) + extra
            return loss + _grad_checksum(tape.gradient(loss, [inp] + list(variables)))
        return compiled(f)

    enc_call = lambda a: (g.encoder(g.preprocess(a)), 0.0)  # noqa: E731
    dec_call = lambda a: (g.decoder(a), 0.0)  # noqa: E731

    def rvq_call(a):  # the VQ losses are what give the codebooks their gradient
        z_q, _, _, commitment, codebook = g.quantizer(a, training=True)
        return z_q, commitment + codebook
    parts = [
        ("encoder forward", compiled(enc_call), x),
        ("encoder forward+backward", fwd_bwd(enc_call, x, r_z, g.encoder.trainable_variables), x),
        ("RVQ forward (training, dropout)", compiled(lambda a: g.quantizer(a, training=True)), z),
        ("RVQ forward+backward", fwd_bwd(rvq_call, z, r_q, g.quantizer.trainable_variables), z),
        ("decoder forward", compiled(g.decoder), z_q),
        ("decoder forward+backward", fwd_bwd(dec_call, z_q, r_y, g.decoder.trainable_variables), z_q),
        ("generator forward (encoder+RVQ+decoder)", compiled(lambda a: g(a, training=True)["audio"]), x),
    ]
    for name, part, inp in parts:
        _measure("part", name, lambda part=part, inp=inp: part(inp), args, group="generator")

    for name, loss in (("multi-scale mel", trainer.mel_loss), ("multi-scale STFT", trainer.stft_loss),
                       ("waveform L1", trainer.waveform_loss)):
        f = compiled(_loss_fb(loss))
        _measure("part", f"loss: {name} forward+backward", lambda f=f: f(x, y), args, group="loss")

    groups = [("multi-period (MPD)", PeriodDiscriminator), ("multi-scale (MSD)", ScaleDiscriminator),
              ("multi-band STFT (MRD)", BandDiscriminator)]
    for name, cls in groups:
        subs = [d for d in disc.discriminators if isinstance(d, cls)]
        if not subs:
            continue
        variables = [v for d in subs for v in d.trainable_variables]
        label = f"{name}: {', '.join(d.name for d in subs)}"

        d_loss, d_fb = _disc_fns(subs, variables)
        fwd, fb = compiled(d_loss), compiled(d_fb)
        _measure("part", f"disc {label} forward", lambda fwd=fwd: fwd(y), args, group="discriminator")
        _measure("part", f"disc {label} forward+backward", lambda fb=fb: fb(y), args, group="discriminator")

    for who, opt, variables in (("generator", trainer.g_optimizer, g.trainable_variables),
                                ("discriminator", trainer.d_optimizer, disc.trainable_variables)):
        grads = [rng.normal(v.shape) * 1e-3 for v in variables]
        apply = compiled(_apply_fn(opt, variables))
        n = sum(int(v.numpy().size) for v in variables)
        _measure("part", f"AdamW apply, {who} ({n / 1e6:.1f}M params)", lambda apply=apply, grads=grads: apply(grads),
                 args, group="optimizer")


def _data_parts(config, generator, args):
    from ml_audio_encoder.training.config import make_data

    c, w = time.process_time(), time.perf_counter()
    train, val = make_data(config, generator)
    _emit("part", name=f"data: make_data (preload {len(train.items)} files, {len(val)} validation clips), once",
          cpu=time.process_time() - c, wall=time.perf_counter() - w, n=1, group="data")
    counter = iter(range(10**9))
    _measure("part", "data: get_batch (one training batch)", lambda: train.get_batch(next(counter)), args,
             group="data", workers=config["data"].get("workers", 2))


def _mallopt():
    """Keep freed memory in glibc's heap instead of handing it back to the kernel after every step (large blocks
    are mmap'ed and munmap'ed, and trimmed heaps are faulted in again: kernel time and page faults per step)."""
    import ctypes

    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: 1 GiB
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: 32 MiB, glibc's largest


def worker(spec):
    backend, threads, jit = spec["backend"], spec["threads"], spec["jit"]
    if spec.get("mallopt"):
        _mallopt()
    _setup_threads(backend, threads)
    import keras
    import numpy as np

    from ml_audio_encoder.training.config import build, excerpt_samples, load_config

    args = argparse.Namespace(**spec)
    config = load_config(spec["config"], spec["set"])
    config.setdefault("train", {})["jit_compile"] = jit
    keras.utils.set_random_seed(0)
    trainer = build(config)
    g = trainer.generator
    batch = config["data"].get("batch_size", 16)
    excerpt = excerpt_samples(config, g)
    versions = {"keras": keras.__version__, "numpy": np.__version__}
    if backend == "tensorflow":
        import tensorflow as tf

        versions["tensorflow"] = tf.__version__
    else:
        import jax

        versions["jax"] = jax.__version__
    _emit("setup", name=config["name"], preset=config["preset"], batch=batch, excerpt=excerpt,
          sample_rate=g.sample_rate, g_params=g.count_params(), d_params=trainer.discriminator.count_params(),
          versions=versions, jit_compile=trainer.jit_compile)
    x = (np.random.RandomState(0).randn(batch, excerpt, 1) * 0.1).astype("float32")
    if spec["data"] and (not args.only or re.search(args.only, "data: make_data")):
        _data_parts(config, g, args)
    if spec["parts"]:
        import tensorflow as tf

        _tf_parts(trainer, tf.constant(x), args, jit)
    for mode in spec["steps"]:
        if mode in ("fit", "fit-tfdata"):
            _fit_steps(trainer, config, args, tf_data=mode == "fit-tfdata")
            continue
        trainer.set_adversarial(mode == "gan")
        _measure("step", mode, lambda: trainer.train_on_batch(x, return_dict=True), args)


def _fit_steps(trainer, config, args, tf_data=False):
    """Reconstruction-only steps as ``train.py`` runs them: ``fit`` on the config's ``AudioDataset`` (a
    ``PyDataset`` with ``data.workers``), or with ``tf_data`` on the same batches through ``as_tf_dataset``
    (``tf.data``); timed per batch from one ``on_train_batch_end`` to the next."""
    import keras

    from ml_audio_encoder.training import data as D
    from ml_audio_encoder.training.config import make_data

    train, _ = make_data(config, trainer.generator)
    if tf_data:
        train = D.as_tf_dataset(train)
    marks = []

    class Marks(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            marks.append(_usage())

    warmup, n = max(args.warmup, 1), max(args.reps, 5)  # the first batch always traces
    trainer.set_adversarial(False)
    start = _usage()
    trainer.fit(train, epochs=1, steps_per_epoch=warmup + n, verbose=0, callbacks=[Marks()])
    samples = [[b - a for a, b in zip(m0, m1)] for m0, m1 in zip(marks[warmup - 1:], marks[warmup:])]
    extra = {} if tf_data else {"workers": config["data"].get("workers", 2)}
    _emit("step", name="fit-tfdata" if tf_data else "fit", **_stats(samples),
          warmup_cpu=marks[warmup - 1][0] - start[0], warmup_wall=marks[warmup - 1][1] - start[1], **extra)


# -- parent: run the settings, print the tables ---------------------------------------------------------------
def _run_job(spec, timeout):
    env = dict(os.environ, KERAS_BACKEND=spec["backend"], TF_CPP_MIN_LOG_LEVEL="2")
    if spec["backend"] == "jax" and spec["threads"] == 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    label = f"{spec['backend']} threads={spec['threads']} jit={'on' if spec['jit'] else 'off'}"
    print(f"[profile_step] {label}: {'parts + ' if spec['parts'] else ''}steps {spec['steps']}", file=sys.stderr,
          flush=True)
    records, deadline = [], time.monotonic() + timeout
    with tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err_file, text=True)
        timer = threading.Timer(timeout, proc.kill)  # a stuck setting must not stop the others
        timer.start()
        try:
            for line in proc.stdout:  # streamed, so that a killed setting keeps what it measured
                if line.startswith(RESULT):
                    records.append(json.loads(line[len(RESULT):]))
                    r = records[-1]
                    print(f"[profile_step]   {r.get('name')}: " + (r["error"] if "error" in r else
                          f"CPU {r.get('cpu', 0):.3f} s, wall {r.get('wall', 0):.3f} s" if "cpu" in r else "ok"),
                          file=sys.stderr, flush=True)
            rc = proc.wait()
        finally:
            timer.cancel()
        if time.monotonic() >= deadline and rc != 0:
            rc = f"killed after the {timeout:.0f} s timeout"
        err_file.seek(0)
        err = err_file.read()
    for r in records:
        r.update(backend=spec["backend"], threads=spec["threads"], jit=spec["jit"])
    if rc != 0:
        error = rc if isinstance(rc, str) else f"exit {rc}: " + (err.strip().splitlines() or ["?"])[-1][:300]
        print(f"[profile_step] {label}: {error}", file=sys.stderr)
        records.append({"kind": "failure", "backend": spec["backend"], "threads": spec["threads"],
                        "jit": spec["jit"], "error": error})
    return records


def _fmt(v, digits=3):
    if v is None:
        return "–"
    if v < 0.0005:
        return "0"
    return f"{v:.{digits}f}" if v < 10 else f"{v:.1f}"


def _on(jit):
    return "on" if jit else "off"


def tables(records, steps_order=None):
    """Markdown tables of the records (parts, steps, failures)."""
    if steps_order is None:
        present = list(dict.fromkeys(r["name"] for r in records if r["kind"] == "step"))
        known = ("recon", "gan", "fit", "fit-tfdata")
        steps_order = [m for m in known if m in present] + [m for m in present if m not in known]
    setup = next((r for r in records if r["kind"] == "setup"), None)
    lines = []
    if setup:
        audio_s = setup["batch"] * setup["excerpt"] / setup["sample_rate"]
        lines += [f"**{setup['name']}** (preset `{setup['preset']}`): generator {setup['g_params'] / 1e6:.2f}M "
                  f"params, discriminator {setup['d_params'] / 1e6:.2f}M; batch {setup['batch']} × "
                  f"{setup['excerpt'] / setup['sample_rate']:.3f} s = {audio_s:.2f} s of audio per step; "
                  + ", ".join(f"{k} {v}" for k, v in sorted({k: v for r in records if r['kind'] == 'setup'
                                                              for k, v in r['versions'].items()}.items())), ""]
    else:
        audio_s = None
    parts = [r for r in records if r["kind"] == "part"]
    steps = [r for r in records if r["kind"] == "step"]
    if parts:
        settings = sorted({(r["backend"], r["threads"], r["jit"]) for r in parts if r.get("group") != "data"},
                          key=lambda s: s[2])
        head = "| part | " + " | ".join(f"XLA {_on(s[2])}: CPU s | of it kernel | wall s | n" for s in settings) + " |"
        lines += [f"Parts (TensorFlow, {settings[0][1] if settings else '?'} thread(s); median per call; "
                  "'of it kernel' = system CPU s; `n` = timed calls after the warm-up):", "", head,
                  "|---|" + "---:|---:|---:|---:|" * len(settings)]
        names = list(dict.fromkeys(r["name"] for r in parts if r.get("group") != "data"))
        by = {(r["name"], r["jit"]): r for r in parts}
        step_by = {(r["name"], r["backend"], r["threads"], r["jit"]): r for r in steps}
        rows = [(n, [by.get((n, s[2])) for s in settings]) for n in names]
        for mode in steps_order:
            rows.append((f"**full step: {mode}**", [step_by.get((mode,) + s) for s in settings]))
        for name, cells in rows:
            cols = []
            for r in cells:
                if r is None or "error" in r:
                    cols.append(f"failed: {r['error'][:60]} | | | " if r else "– | – | – | –")
                else:
                    cols.append(f"{_fmt(r['cpu'])} | {_fmt(r.get('sys'))} | {_fmt(r['wall'])} | {r['n']}")
            lines.append(f"| {name} | " + " | ".join(cols) + " |")
        data = [r for r in parts if r.get("group") == "data"]
        if data:
            lines += ["", "Data pipeline (numpy, one thread):", "", "| data | CPU s | wall s | n |",
                      "|---|---:|---:|---:|"]
            for r in data:
                lines.append(f"| {r['name']} | {_fmt(r.get('cpu'))} | {_fmt(r.get('wall'))} | {r.get('n', '–')} |")
        lines.append("")
    if steps:
        lines += ["Full training steps (`CodecTrainer.train_step` via `train_on_batch`; median per step; "
                  "warm-up = first call incl. tracing/compilation):", "",
                  "| backend | threads | XLA | step | CPU s/step | of it kernel | minor faults | wall s/step | n "
                  "| warm-up CPU s | warm-up wall s | audio s per CPU s | audio s per wall s | peak RSS MB |",
                  "|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        order = {m: i for i, m in enumerate(steps_order)}
        for r in sorted(steps, key=lambda r: (order.get(r["name"], 9), r["backend"] != "tensorflow", r["threads"],
                                              r["jit"])):
            xla = _on(r["jit"]) if r["backend"] == "tensorflow" else "always"
            if "error" in r:
                lines.append(f"| {r['backend']} | {r['threads']} | {xla} | {r['name']} | failed: {r['error'][:80]} "
                             "| | | | | | | | | |")
                continue
            per_cpu = f"{audio_s / r['cpu']:.2f}" if audio_s else "–"
            per_wall = f"{audio_s / r['wall']:.2f}" if audio_s else "–"
            step = f"{r['name']} (data.workers={r['workers']})" if "workers" in r else r["name"]
            faults = f"{r['faults']:.0f}" if "faults" in r else "–"
            lines.append(f"| {r['backend']} | {r['threads']} | {xla} | {step} | {_fmt(r['cpu'])} | "
                         f"{_fmt(r.get('sys'))} | {faults} | {_fmt(r['wall'])} | {r['n']} | "
                         f"{_fmt(r['warmup_cpu'])} | {_fmt(r['warmup_wall'])} | "
                         f"{per_cpu} | {per_wall} | {r.get('peak_rss_mb', '–')} |")
        lines.append("")
    for r in records:
        if r["kind"] == "failure":
            lines.append(f"- {r['backend']} threads={r['threads']} XLA {_on(r['jit'])}: process failed: {r['error']}")
    return "\n".join(lines)


def _covered(job, records):
    """Whether earlier records already hold every measurement of ``job``."""
    mine = [r for r in records if (r.get("backend"), r.get("threads"), r.get("jit")) ==
            (job["backend"], job["threads"], job["jit"]) and "error" not in r]
    have_steps = {r["name"] for r in mine if r["kind"] == "step"}
    have_parts = any(r["kind"] == "part" and r.get("group") != "data" for r in mine)
    have_data = any(r.get("group") == "data" for r in records)
    return (set(job["steps"]) <= have_steps and (have_parts or not job["parts"])
            and (have_data or not job["data"]))


def _csv(text, cast=str):
    return [cast(v.strip()) for v in text.split(",") if v.strip()]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--parts", action="store_true", help="also time each part of the step (TensorFlow)")
    p.add_argument("--no-data", action="store_true", help="with --parts: skip the data pipeline")
    p.add_argument("--only", help="with --parts: only the parts whose name matches this regular expression")
    p.add_argument("--backends", default="tensorflow", help="comma list: tensorflow,jax")
    p.add_argument("--threads", default=str(len(os.sched_getaffinity(0))), help="comma list, e.g. 1,2")
    p.add_argument("--parts-threads", type=int, help="threads for --parts (default: the first of --threads)")
    p.add_argument("--jit", default="off", help="comma list of TensorFlow jit_compile settings: off,on")
    p.add_argument("--steps", default="recon,gan",
                   help="full steps to time: recon, gan (train_on_batch on random audio), fit (reconstruction-only "
                        "fit on the config's PyDataset, as train.py), fit-tfdata (the same batches through "
                        "as_tf_dataset); or 'none'")
    p.add_argument("--matrix-steps", help="full steps for the settings that do not run --parts (default: --steps)")
    p.add_argument("--reps", type=int, default=3, help="timed calls per measurement (at least)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls first (tracing, compilation)")
    p.add_argument("--min-seconds", type=float, default=2.0, help="repeat cheap calls until this much wall time")
    p.add_argument("--timeout", type=float, default=1200, help="seconds per setting (subprocess)")
    p.add_argument("--out", help="also write the Markdown here")
    p.add_argument("--json", help="also write every record here")
    p.add_argument("--mallopt", action="store_true",
                   help="tune glibc malloc in the workers (trim threshold 1 GiB, mmap threshold 32 MiB)")
    p.add_argument("--merge", nargs="*", default=[], metavar="JSON",
                   help="records of earlier runs (--json) to include; settings they cover are not run again")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return None
    if not args.config:
        p.error("--config is required")

    backends, threads = _csv(args.backends), _csv(args.threads, int)
    jits = [{"on": True, "off": False}[v.lower()] for v in _csv(args.jit)]
    steps = [] if args.steps == "none" else _csv(args.steps)
    bad = set(backends) - {"tensorflow", "jax"}
    if bad:
        p.error(f"unknown backend(s) {sorted(bad)}")
    base = dict(config=args.config, set=args.set, reps=args.reps, warmup=args.warmup,
                min_seconds=args.min_seconds, steps=steps, parts=False, data=False, only=args.only,
                mallopt=args.mallopt)
    jobs, parts_threads = [], args.parts_threads or threads[0]
    if args.parts:
        for i, jit in enumerate(jits):
            jobs.append(dict(base, backend="tensorflow", threads=parts_threads, jit=jit, parts=True,
                             data=i == 0 and not args.no_data))
    matrix_steps = steps if args.matrix_steps is None else [] if args.matrix_steps == "none" \
        else _csv(args.matrix_steps)
    for backend in backends:
        for n in threads:
            for jit in (jits if backend == "tensorflow" else [True]):
                done = any(j["backend"] == backend and j["threads"] == n and j["jit"] == jit for j in jobs)
                if matrix_steps and not done:
                    jobs.append(dict(base, backend=backend, threads=n, jit=jit, steps=matrix_steps))
    records = []
    for path in args.merge:
        with open(path) as f:
            records += json.load(f)
    jobs = [j for j in jobs if not _covered(j, records)]
    started = datetime.datetime.now().astimezone()
    load0 = os.getloadavg()
    for job in jobs:
        records += _run_job(job, args.timeout)
    header = (f"Measured {started:%Y-%m-%d %H:%M %Z} on {platform.node()} ({_cpu_model()}, "
              f"{len(os.sched_getaffinity(0))} cores, Python {platform.python_version()}); load average "
              f"{load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end; "
              f"`{' '.join(['train/profile_step.py'] + (argv if argv is not None else sys.argv[1:]))}`\n")
    text = header + "\n" + tables(records)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(records, f, indent=1)
    return records


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    main()
