"""The habits of a kept codebase: `ruff check` (lint + import order) and `lint-imports` (the import layers, no
cycles, nothing imports the CLI, the runtime never imports training) pass. Both are configured in pyproject.toml
and come with the dev extra; the tests skip where they are not installed."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name):
    path = shutil.which(name) or os.path.join(os.path.dirname(sys.executable), name)
    if not os.path.exists(path):
        pytest.skip(f"{name} is not installed (pip install -e '.[dev]')")
    return path


def _run(*cmd):
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_check():
    out = _run(_tool("ruff"), "check", "--output-format", "concise", ".")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_import_contracts():
    out = _run(_tool("lint-imports"), "--no-cache")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "broken" not in out.stdout.split("Contracts:")[-1].split("\n")[0].replace("0 broken", "")


def test_no_module_over_500_lines():
    long = []
    for folder, _, files in os.walk(os.path.join(ROOT, "ml_audio_encoder")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                with open(path, encoding="utf-8") as f:
                    n = sum(1 for _ in f)
                if n > 500:
                    long.append(f"{os.path.relpath(path, ROOT)}: {n} lines")
    assert not long, long
