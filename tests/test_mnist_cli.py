"""`ramble mnist run` and `ramble hessian` on LeNet5, as a user meets them, on the committed MNIST fixture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from ramble.cli import main
from ramble.io import load
from ramble.lenet import LeNet5
from ramble.mnist import load_mnist
from ramble.mnist_experiment import rebuild

FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")
FAST = ["--train-size", "100", "--test-size", "200", "--data-dir", FIXTURE, "--device", "cpu", "--gamma", "0.1", "--n-epochs", "1", "--points", "30", "--weight-rows", "10", "--linear-points", "5"]


@pytest.fixture(scope="module")
def mnist_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "m.h5"
    r = CliRunner().invoke(main, ["--quiet", "mnist", "run", *FAST, "--solutions", "2", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


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


def test_cpu_run_is_reproducible_from_the_seed(mnist_file, tmp_path):
    out = tmp_path / "again.h5"
    r = CliRunner().invoke(main, ["--quiet", "mnist", "run", *FAST, "--solutions", "2", "--out", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    a, b = load(mnist_file), load(out)
    for i in (0, 1):
        np.testing.assert_array_equal(a.solutions[i], b.solutions[i])
    np.testing.assert_array_equal(a.paths["0-1"].weights, b.paths["0-1"].weights)
    np.testing.assert_array_equal(a.paths["0-1"].extra["test_error"], b.paths["0-1"].extra["test_error"])
