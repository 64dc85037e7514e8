"""The CLI as a user meets it: runs, summaries, one-line errors with non-zero exits."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ramble.cli import main
from ramble.models.patterns import Patterns
from ramble.models.tcm import TCMProblem
from ramble.storage.io import load

SMALL = ["-N", "60", "-K", "3", "-M", "100", "--seed", "4"]


def run(*args):
    return CliRunner().invoke(main, ["--quiet", *args], catch_exceptions=False)


def recheck_file(path):
    """Recompute from the stored data alone that every point of every complete path is in S."""
    e = load(path)
    x, y = e.data["train_inputs"], e.data["train_labels"]
    prob = TCMProblem(Patterns(x, y, 0), int(e.model_info["K"]))
    for p in e.iter_paths():
        assert p.complete, p.reason
        np.testing.assert_array_equal(p.weights[0], e.solutions[p.source])
        np.testing.assert_array_equal(p.weights[-1], e.solutions[p.target])
        for w in p.weights:
            assert prob.contains(torch.from_numpy(w))
    return e


def test_tcm_run_python_small(tmp_path):
    out = tmp_path / "x.h5"
    r = run("tcm", "run", "--backend", "python", *SMALL, "--solutions", "3", "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "status complete" in r.output
    e = recheck_file(out)
    assert len(e.paths) == 3 and e.status == "complete"
    assert all(len(p.linear.alpha) == 101 for p in e.iter_paths())
    info = run("info", str(out))
    assert info.exit_code == 0 and "path 0-1: complete" in info.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["tcm", "run", "-N", "100", "-K", "3"], "K=3 must divide N=100 (each hidden unit sees N/K inputs)"),
        (["tcm", "run", "--gamma", "-0.1"], "gamma must be in (0, 1], got -0.1"),
        (["tcm", "run", "--gamma", "2"], "gamma must be in (0, 1], got 2.0"),
        (["tcm", "run", "--path-lr", "-1"], "path learning rate must be a finite number >= 0, got -1.0"),
        (["tcm", "run", "--train-lr", "-1"], "training learning rate must be a finite number > 0, got -1.0"),
        (["tcm", "run", "--solutions", "0"], "--solutions must be >= 1, got 0"),
        (["tcm", "run", "-M", "0"], "M must be a positive integer, got 0"),
    ],
)
def test_bad_arguments_give_one_line_errors(tmp_path, args, needle):
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "o.h5")])
    assert r.exit_code == 1
    assert r.output.strip() == f"error: {needle}"
    assert not (tmp_path / "o.h5").exists()


def test_unknown_backend_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(main, ["tcm", "run", "--backend", "fortran", "--out", str(tmp_path / "o.h5")])
    assert r.exit_code == 2 and "fortran" in r.output


def test_info_on_bad_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("hello")
    r = CliRunner().invoke(main, ["info", str(junk)])
    assert r.exit_code == 1 and r.output.startswith("error: ") and r.output.count("\n") == 1
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    r = CliRunner().invoke(main, ["info", str(other)])
    assert r.exit_code == 1 and "not a ramble file" in r.output
    r = CliRunner().invoke(main, ["info", str(tmp_path / "missing.h5")])
    assert r.exit_code == 1 and "no such file" in r.output


def test_existing_output_refused(tmp_path):
    out = tmp_path / "o.h5"
    out.write_text("")
    r = CliRunner().invoke(main, ["tcm", "run", "--backend", "python", *SMALL, "--out", str(out)])
    assert r.exit_code == 1 and "exists; pass --force" in r.output


def test_console_script_entry_point(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ramble.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "tcm" in r.stdout


def test_debug_shows_traceback(tmp_path):
    r = CliRunner().invoke(main, ["--debug", "tcm", "run", "-N", "100", "--out", str(tmp_path / "o.h5")])
    assert r.exit_code != 0 and r.exception is not None


def test_tcm_julia_run_with_hessian_points_is_reproducible(tmp_path):
    out = tmp_path / "h.h5"
    r = run("tcm", "run", "--backend", "julia", *SMALL, "--solutions", "2", "--hessian-points", "6", "--out", str(out))
    assert r.exit_code == 0, r.output
    e = recheck_file(out)
    p = e.paths["0-1"]
    h = p.hessian
    assert h["attrs"]["backend"] == "julia" and h["attrs"]["method"] == "exact"
    assert len(h["index"]) == 6 and h["index"][0] == 0 and h["index"][-1] == len(p.weights) - 1
    # independent recomputation: PyTorch autograd on the stored data and weights
    prob = TCMProblem(Patterns(e.data["train_inputs"], e.data["train_labels"], 0), int(e.model_info["K"]))
    for row, ev, tr in zip(h["index"], h["eigenvalues"], h["trace"]):
        hp = prob.hessian(torch.from_numpy(p.weights[row])).numpy()
        ref = np.linalg.eigvalsh(hp)[::-1]
        np.testing.assert_allclose(ev, ref, rtol=0, atol=1e-10 * np.abs(ref).max())
        assert tr == pytest.approx(np.trace(hp), rel=1e-10)
    assert np.all(h["n_nonzero"] >= 1)
