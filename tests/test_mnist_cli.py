"""`ramble mnist run` and `ramble hessian` on LeNet5, as a user meets them, on the committed MNIST fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from conftest import MNIST_FAST
from ramble.cli import main
from ramble.experiments.mnist_experiment import rebuild
from ramble.models.lenet import LeNet5
from ramble.models.mnist import load_mnist
from ramble.storage.io import load

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")
FAST = ["--train-size", "100", "--test-size", "200", "--data-dir", FIXTURE, "--device", "cpu", "--gamma", "0.1", "--n-epochs", "1", "--points", "30", "--weight-rows", "10", "--linear-points", "5"]


@pytest.fixture(scope="module")
def mnist_file(shared_mnist_file):
    """``mnist run`` with FAST and two solutions (conftest's shared file; read-only)."""
    assert MNIST_FAST == [*FAST, "--solutions", "2"]
    return shared_mnist_file


def test_every_stored_row_rebuilds_a_solution(mnist_file):
    e = load(mnist_file)
    assert e.status == "complete" and e.model == "lenet5" and e.backend == "torch"
    p = e.paths["0-1"]
    assert p.complete, p.reason
    names = json.loads(e.model_info["param_names"])
    shapes = json.loads(e.model_info["param_shapes"])
    data = load_mnist(FIXTURE, 100, 200)
    net = LeNet5()
    assert p.weights.shape[0] >= 3 and p.weights.shape[1] == 61706
    for row in p.weights:
        # only the file's /model attributes: no run code involved
        net.load_state_dict(rebuild(row, names, shapes))
        with torch.no_grad():
            pred = net(data.train_x).argmax(1)
        assert bool((pred == data.train_y).all())
    np.testing.assert_array_equal(p.weights[0], e.solutions[0])
    np.testing.assert_array_equal(p.weights[-1], e.solutions[1])


def test_test_metrics_and_straight_line_stored(mnist_file):
    e = load(mnist_file)
    p = e.paths["0-1"]
    assert len(p.extra["test_error"]) == len(p.distance) >= 20
    assert np.all((p.extra["test_error"] > 0) & (p.extra["test_error"] < 1))
    assert np.all(p.train_error == 0)
    assert p.distance[0] == 0 and p.distance[-1] == pytest.approx(1.0)
    assert set(p.linear.extra) >= {"test_loss", "test_error"} and len(p.linear.alpha) == 5
    # the data are recorded by reference, with checksums
    src = json.loads(e.data["source"])
    assert src["kind"] == "subset" and e.data["train_indices"] == "0:100"
    # test metrics at the endpoints equal an independent evaluation
    data = load_mnist(FIXTURE, 100, 200)
    net = LeNet5()
    net.load_state_dict(rebuild(p.weights[0], json.loads(e.model_info["param_names"]), json.loads(e.model_info["param_shapes"])))
    with torch.no_grad():
        logits = net(data.test_x)
    assert p.extra["test_loss"][0] == pytest.approx(float(F.cross_entropy(logits, data.test_y)), rel=1e-5)


def test_hessian_after_the_fact(mnist_file, tmp_path):
    f = tmp_path / "h.h5"
    f.write_bytes(Path(mnist_file).read_bytes())
    r = CliRunner().invoke(main, ["--quiet", "hessian", str(f), "--points", "3", "--k", "4", "--trace-samples", "10"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    h = load(f).paths["0-1"].hessian
    assert h["eigenvalues"].shape == (3, 4)
    assert np.all(np.diff(h["eigenvalues"], axis=1) <= 0)
    assert h["index"][0] == 0 and h["index"][-1] == len(load(f).paths["0-1"].weights) - 1
    assert h["attrs"]["which"] == "LA" and h["attrs"]["method"].startswith("lanczos")
    assert np.all(h["residuals"] <= 1e-2 * np.abs(h["eigenvalues"]).max())


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--train-size", "60001"], "train_size=60001 is out of range"),
        (["--train-size", "0"], "train_size=0 is out of range"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--data-dir", "/nonexistent/mnist"], "/nonexistent/mnist"),
    ],
)
def test_bad_input(tmp_path, args, needle):
    out = tmp_path / "o.h5"
    base = ["mnist", "run", "--data-dir", FIXTURE, "--out", str(out)]
    r = CliRunner().invoke(main, base + args)
    assert r.exit_code == 1, r.output
    assert r.output.startswith("error: ") and needle in r.output and r.output.count("\n") == 1
    assert not out.exists()


def test_cuda_asked_for_but_absent(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is present here")
    r = CliRunner().invoke(main, ["mnist", "run", "--data-dir", FIXTURE, "--device", "cuda", "--out", str(tmp_path / "o.h5")])
    assert r.exit_code == 1 and "cuda" in r.output.lower()


# A whole LeNet5 run reproduced from its seed in another process, bit for bit: tests/test_resume.py (the kill at the
# first commit, resumed from nothing, must equal the uninterrupted file); the path alone: verify --replay (test_verify).


# ---------------------------------------------------------------- issue 15
def test_weight_rows_keeps_about_as_many_rows_as_asked(tmp_path):
    """Bug 3: the weight stride came from --points, so a short path (gamma 0.1: ~70 points) kept half the rows asked for."""
    out = tmp_path / "w.h5"
    # 50 training images: the path's length (about 70 iterations) is set by gamma, its cost by the training set
    args = [a for a in FAST if a not in ("--points", "30", "--weight-rows", "10", "--train-size", "100")]
    r = CliRunner().invoke(main, ["--quiet", "mnist", "run", *args, "--train-size", "50", "--points", "200", "--weight-rows", "50", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    p = load(out).paths["0-1"]
    n_points, n_rows = len(p.distance), len(p.weights)
    assert n_points > 55  # the path recorded more points than rows asked for
    assert 45 <= n_rows <= 55, (n_points, n_rows)
    index = p.extra["weight_index"]
    assert index[0] == 0 and index[-1] == n_points - 1 and np.all(np.diff(index) > 0)


def test_summary_gives_test_errors_in_percent_length_and_a_readable_data_line(mnist_file):
    r = CliRunner().invoke(main, ["info", str(mnist_file)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    out = r.output
    data = next(line for line in out.splitlines() if line.strip().startswith("data:"))
    assert "{" not in data and "\\" not in data and "MNIST training images 0:100, test images 0:200" in data
    p = load(mnist_file, weights=False).paths["0-1"]
    te = p.test_error
    assert f"test error {100 * te[0]:.2f} % at W_a" in out and f"best {100 * te.min():.2f} %" in out
    assert "x the straight line" in out or "length unknown" in out
    assert "max train error" in out and "%" in out.split("max train error")[1].splitlines()[0]


def test_controls_on_the_fixture(mnist_file, tmp_path):
    from ramble.analysis.controls import read_controls

    f = tmp_path / "c.h5"
    f.write_bytes(Path(mnist_file).read_bytes())
    r = CliRunner().invoke(main, ["--quiet", "controls", str(f), "--max-epochs", "60", "--evaluations", "5", "--data-dir", FIXTURE], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    e = load(f, weights=False)
    p = e.paths["0-1"]
    s = read_controls(p)
    k = int(np.argmin(p.test_error))
    assert s["best_row"] == k and s["best_test_error"] == p.test_error[k]
    assert s["best_epochs"] == (int(p.iteration[k]) + 1) * 1  # N_epochs 1 in FAST
    for end, sol in (("source", 0), ("target", 1)):
        # the continued training starts at the endpoint: its first test error is the solution's
        assert s[f"{end}_start_test_error"] == pytest.approx(e.solution_attrs[sol]["test_error"])
        epochs = p.controls.arrays[f"{end}_epoch"]
        assert epochs[0] == 0 and s[f"{end}_matched_epochs"] in epochs and s[f"{end}_converged_epochs"] in epochs
        assert s[f"{end}_converged_epochs"] <= 60
        loss = p.controls.arrays[f"{end}_train_loss"]
        if s[f"{end}_converged_reached"]:
            assert loss[list(epochs).index(s[f"{end}_converged_epochs"])] <= s["best_train_loss"]
    assert "path best" in r.output and "matched" in r.output
    # the report's C15 row reads them from the file
    from ramble.reporting.report import evaluate_claims

    c15 = next(c for c in evaluate_claims([], e) if c.id == "C15")
    assert "control" in c15.measured and c15.holds == "not established"
