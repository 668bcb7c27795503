"""The README's examples run, so the documentation cannot drift from the code.

Every ```python and ```bash block of README.md runs in README order in one temporary folder holding the audio files
the examples name (generated here), with the shipped ``small_24khz`` weights or, where a command would take minutes,
the tiny model. What cannot run in a test is checked as far as it can be:

* ``pip install ...`` lines: the extras they name exist in setup.cfg;
* the test command itself (``python -m pytest``): it is the line ``.ci/run`` runs;
* training scripts (``python train/*.py``; they download data or train for hours): every path they name exists;
* ``mlae export``: runs on ``--model random:tiny_test`` (converting the shipped model takes minutes);
* ``mlae bench``: runs on one generated clip, one level, one Opus rate, no ViSQOL or memory probe.
"""

import configparser
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
BENCH_OVERRIDES = ["--limit", "1", "--seconds", "1", "--levels", "1", "--opus-kbps", "6", "--no-visqol", "--no-memory",
                   "--no-figures", "--quiet"]


def blocks():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    return re.findall(r"^```(python|bash)\n(.*?)^```$", text, re.S | re.M)


def commands(block):
    """The shell commands of a bash block: one per line (``\\`` continues a line), ``&&`` chains split, comments
    dropped."""
    out = []
    for line in re.sub(r"\\\n", " ", block).splitlines():
        for part in line.split("&&"):
            words = shlex.split(part, comments=True)
            if words:
                out.append(words)
    return out


def _tone(seconds, sr, channels=1, f0=220.0):
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * f0 * t * (1 + 0.3 * t)) + 0.02 * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([x, np.roll(x, 100)], axis=1)[:, :channels].astype(np.float32)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("readme")
    sf.write(d / "song.wav", _tone(2.0, 44100, 2), 44100)
    sf.write(d / "talk.flac", _tone(1.0, 16000), 16000)
    sf.write(d / "a.wav", _tone(1.0, 22050, 2), 22050)
    sf.write(d / "b.ogg", _tone(1.0, 48000), 48000, format="OGG", subtype="VORBIS")
    (d / "clips").mkdir()
    sf.write(d / "clips" / "clip.wav", _tone(1.2, 24000), 24000)
    return d


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
                KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")


def _check(out, what):
    assert out.returncode == 0, f"README example failed: {what}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"


def _mlae(args, workdir):
    if args[0] == "export":
        args = [*args, "--model", "random:tiny_test"]
    elif args[0] == "bench":
        args = [*args, "--data", str(workdir / "clips"), *BENCH_OVERRIDES]
    out = subprocess.run([sys.executable, "-m", "ml_audio_encoder.cli", *args], cwd=workdir, env=_env(),
                         capture_output=True, text=True, timeout=600)
    _check(out, "mlae " + shlex.join(args))


def _not_run(words):
    """Check what a command that does not run here can be checked for; True if it was such a command."""
    while words and re.match(r"^[A-Z_]+=", words[0]):  # KERAS_BACKEND=jax python ...
        words = words[1:]
    if words[:2] == ["pip", "install"]:
        extras = configparser.ConfigParser()
        extras.read(os.path.join(ROOT, "setup.cfg"))
        known = set(extras["options.extras_require"])
        for spec in words[2:]:
            for extra in re.findall(r"\[([^\]]*)\]", spec):
                assert set(extra.split(",")) <= known, f"README installs unknown extras {extra!r}"
        return True
    if words[:3] == ["python", "-m", "pytest"]:
        return True
    if words[0] == "python" and len(words) > 1 and words[1].startswith("train/"):
        for word in words[1:]:
            if re.match(r"^(train|ml_audio_encoder|tests|docs)/[\w./-]+$", word):
                assert os.path.exists(os.path.join(ROOT, word)), f"README names a missing file: {word}"
        return True
    return False


def test_readme_has_examples_of_both_kinds():
    kinds = [kind for kind, _ in blocks()]
    assert kinds.count("python") >= 1 and kinds.count("bash") >= 5


def test_ci_runs_the_readme_test_command():
    extract = subprocess.run(["bash", "-c", r"""sed -n '/^<!-- test command -->$/,/^```$/p' README.md | """
                              r"""grep -v -e '^<!--' -e '^```'"""], cwd=ROOT, capture_output=True, text=True)
    line = extract.stdout.strip()
    assert line.startswith("pip install -e ") and line.endswith("python -m pytest -q"), line
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        ci = f.read()
    assert "<!-- test command -->" in ci and 'eval "$TEST_COMMAND"' in ci


def test_readme_examples_run(workdir):
    for kind, code in blocks():
        if kind == "python":
            out = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=_env(), capture_output=True,
                                 text=True, timeout=600)
            _check(out, code)
            continue
        for words in commands(code):
            if words[0] == "mlae":
                _mlae(words[1:], workdir)
            else:
                assert _not_run(words), f"README command neither run nor checked by this test: {shlex.join(words)}"
    # what the examples say they write
    for name in ("song.mlae", "song_decoded.wav", "talk.mlae", "out/a.mlae", "out/b.mlae", "song.flac",
                 "exported/saved_model.pb", "codec.json", "decoder.tflite", "bench_out/speech/summary.md"):
        assert (workdir / name).exists(), name
    assert sf.info(str(workdir / "song.flac")).samplerate == 44100
