"""examples/custom_plot.py: the analysis API example runs on a real file and draws a PNG."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ramble.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "custom_plot.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _env():
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MPLBACKEND="Agg")
    return env


@pytest.fixture(scope="module")
def tcm_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("example") / "tcm.h5"
    r = CliRunner().invoke(main, ["--quiet", "tcm", "run", "--backend", "python", "-N", "60", "-K", "3", "-M", "100", "--seed", "4", "--solutions", "2", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_custom_plot_example_draws_a_png(tcm_file, tmp_path):
    out = tmp_path / "custom.png"
    res = subprocess.run([sys.executable, str(EXAMPLE), str(tcm_file), str(out)], capture_output=True, text=True, env=_env(), timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert out.exists() and out.stat().st_size > 1000
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_custom_plot_example_uses_only_the_io_api():
    src = EXAMPLE.read_text()
    imports = [line.strip() for line in src.splitlines() if line.startswith(("import ", "from "))]
    ramble_imports = [line for line in imports if "ramble" in line]
    assert ramble_imports == ["from ramble.storage.io import load  # noqa: E402"]
    assert all(line.split()[1].split(".")[0] in {"__future__", "sys", "matplotlib", "numpy", "ramble"} for line in imports), imports


def test_custom_plot_example_usage_error(tmp_path):
    res = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=_env(), timeout=60)
    assert res.returncode == 2 and "usage" in res.stderr


OWN_MODEL = EXAMPLE.parent / "own_model.py"


def test_own_model_example_connects_two_solutions_and_verifies(tmp_path):
    """examples/own_model.py: two MLP solutions on sklearn's digits, a complete path, its figure, and a file that verifies."""
    res = subprocess.run([sys.executable, str(OWN_MODEL), str(tmp_path), "--train-size", "80"], capture_output=True, text=True, env=_env(), timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    png = tmp_path / "own_model.png"
    assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 10_000
    from ramble.storage.io import load

    e = load(tmp_path / "digits.h5")
    assert (e.model, e.status) == ("torch", "complete")
    p = e.paths["0-1"]
    assert p.complete and p.train_error.max() == 0.0 and "test_error" in p.extra
    r = CliRunner().invoke(main, ["--quiet", "verify", str(tmp_path / "digits.h5"), "--model", f"{OWN_MODEL}:build_mlp"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "in S" in r.output
