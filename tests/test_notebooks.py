"""The notebooks in notebooks/ run top to bottom (QUICK=1: the shipped clips in tests/data, no data/, no network),
and the committed .ipynb files are exactly what notebooks/build_notebooks.py writes (no outputs)."""

import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = ["compression_vs_opus.ipynb", "codebook_statistics.ipynb", "voice_classifier_on_codes.ipynb"]

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat (pip install -e '.[dev]')")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient (pip install -e '.[dev]')")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (pip install -e '.[dev]')")
pytest.importorskip("matplotlib", reason="the notebooks plot with matplotlib")


@pytest.fixture(scope="module")
def python3_kernel():
    """The `python3` kernelspec (jupyter_client offers this interpreter's ipykernel as `python3` when no spec is
    installed; install one for the user if even that fails)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        proc = subprocess.run([sys.executable, "-m", "ipykernel", "install", "--user", "--name", "python3"],
                              check=False, capture_output=True, text=True)  # fmt: skip
        try:
            KernelSpecManager().get_kernel_spec("python3")
        except NoSuchKernel:
            pytest.skip(f"no 'python3' Jupyter kernel and `ipykernel install --user` failed: {proc.stderr[-500:]}")
    return "python3"


def test_notebooks_match_their_source():
    sys.path.insert(0, NOTEBOOK_DIR)
    try:
        import build_notebooks
    finally:
        sys.path.remove(NOTEBOOK_DIR)
    assert sorted(build_notebooks.NOTEBOOKS) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        with open(os.path.join(NOTEBOOK_DIR, name)) as f:
            committed = f.read()
        assert committed == nbformat.writes(build_notebooks.build(name)) + "\n", (
            f"notebooks/{name} differs from notebooks/build_notebooks.py: edit the cells there and run "
            "`python notebooks/build_notebooks.py`"
        )
        nb = nbformat.reads(committed, as_version=4)
        assert all(not cell.get("outputs") for cell in nb.cells), f"{name} has outputs: strip them"
        first = next(cell for cell in nb.cells if cell.cell_type == "code")
        assert 'QUICK = os.environ.get("QUICK") == "1"' in first.source


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs(name, python3_kernel, monkeypatch):
    from nbclient import NotebookClient

    # the kernel is a child process: it inherits these
    monkeypatch.setenv("QUICK", "1")
    monkeypatch.setenv("KERAS_BACKEND", os.environ.get("KERAS_BACKEND", "tensorflow"))
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    nb = nbformat.read(os.path.join(NOTEBOOK_DIR, name), as_version=4)
    client = NotebookClient(nb, timeout=600, kernel_name=python3_kernel,
                            resources={"metadata": {"path": NOTEBOOK_DIR}})  # fmt: skip
    start = time.perf_counter()
    client.execute()  # raises CellExecutionError (with the traceback) on the first failing cell
    print(f"{name}: {time.perf_counter() - start:.0f} s")
    errors = [
        f"cell {i}: {out.get('ename')}: {out.get('evalue')}"
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors, errors
    assert all(cell.get("execution_count") for cell in nb.cells if cell.cell_type == "code"), "a cell did not run"
