"""train/profile_step.py: a worker times compiled parts of the tiny_test step, the parent prints the tables.

Kept fast (one subprocess, a few cheap parts, no full step: tracing a whole train step alone costs ~30 CPU-s);
the tables are checked on synthetic records. No wall-clock assertions.
"""

import json
import os
import subprocess
import sys

from train import profile_step

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_parts_of_the_tiny_step_are_timed(tmp_path):
    out, records = tmp_path / "profile.md", tmp_path / "records.json"
    cmd = [sys.executable, os.path.join(ROOT, "train", "profile_step.py"), "--config",
           os.path.join(ROOT, "train", "conf", "smoke.yml"), "--parts", "--no-data", "--steps", "none",
           "--only", "^(encoder forward$|loss: waveform|AdamW apply, gen)", "--threads", "1", "--reps", "2",
           "--min-seconds", "0", "--out", str(out), "--json", str(records)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, KERAS_BACKEND="tensorflow"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    parts = [r for r in json.loads(records.read_text()) if r["kind"] == "part"]
    assert [r["name"].split(" (")[0] for r in parts] == ["encoder forward", "loss: waveform L1 forward+backward",
                                                        "AdamW apply, generator"]
    for r in parts:
        assert "error" not in r, r
        assert r["n"] == 2 and r["cpu"] > 0 and r["wall"] > 0 and r["sys"] >= 0 and r["faults"] >= 0
    text = out.read_text()
    assert "smoke** (preset `tiny_test`)" in text
    assert "| encoder forward |" in text and "XLA off: CPU s" in text


def test_tables_from_records():
    setup = {"kind": "setup", "name": "x", "preset": "p", "batch": 8, "excerpt": 9600, "sample_rate": 24000,
             "g_params": 1e6, "d_params": 2e6, "versions": {"keras": "3"}}
    common = {"backend": "tensorflow", "threads": 1}
    records = [
        dict(setup, jit=False, **common),
        {"kind": "part", "name": "encoder forward", "cpu": 0.5, "wall": 1.0, "n": 3, "jit": False, **common},
        {"kind": "part", "name": "encoder forward", "error": "boom", "jit": True, **common},
        {"kind": "step", "name": "recon", "cpu": 2.0, "wall": 4.0, "n": 3, "warmup_cpu": 30.0, "warmup_wall": 40.0,
         "sys": 0.25, "faults": 1234.0, "peak_rss_mb": 900, "jit": False, **common},
        {"kind": "step", "name": "recon", "cpu": 4.0, "wall": 4.0, "n": 3, "warmup_cpu": 30.0, "warmup_wall": 40.0,
         "jit": True, "backend": "jax", "threads": 2},
        {"kind": "failure", "error": "killed", "jit": True, **common},
    ]
    text = profile_step.tables(records, ("recon",))
    assert "batch 8 × 0.400 s = 3.20 s of audio per step" in text
    assert "| encoder forward | 0.500 | – | 1.000 | 3 | failed: boom" in text
    assert "| **full step: recon** | 2.000 | 0.250 | 4.000 | 3 | – | – | – | – |" in text
    row = "| tensorflow | 1 | off | recon | 2.000 | 0.250 | 1234 | 4.000 | 3 | 30.0 | 40.0 | 1.60 | 0.80 | 900 |"
    assert row in text
    assert "| jax | 2 | always | recon | 4.000 | – | – | 4.000 |" in text
    assert "process failed: killed" in text
