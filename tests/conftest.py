"""Shared fixtures: small TCM problems with solutions, cached per session."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ramble.models.patterns import random_patterns
from ramble.models.tcm import TCMProblem, gaussian_init
from ramble.models.tcm_training import TrainConfig, gd_solve, solve_with_restarts

torch.set_num_threads(1)

SMALL = dict(n_inputs=60, n_hidden=3, n_patterns=100, seed=4)


@pytest.fixture(scope="session")
def small_tcm():
    """(problem, [w_a, w_b]) for N=60, K=3, M=100: two polished solutions, float64 tensors."""
    p = random_patterns(SMALL["n_inputs"], SMALL["n_patterns"], SMALL["seed"])
    prob = TCMProblem(p, SMALL["n_hidden"])
    cfg = TrainConfig()
    scale = cfg.init_scale / np.sqrt(SMALL["n_inputs"] // SMALL["n_hidden"])
    sols = [
        solve_with_restarts(lambda w0: gd_solve(prob, w0, cfg), lambda s: gaussian_init(SMALL["n_inputs"], scale, s), SMALL["seed"], i, cfg)
        for i in range(2)
    ]
    return prob, [torch.from_numpy(s.w) for s in sols]


MNIST_FIXTURE = str(Path(__file__).parent / "fixtures" / "mnist")
MNIST_FAST = ["--train-size", "100", "--test-size", "200", "--data-dir", MNIST_FIXTURE, "--device", "cpu", "--gamma", "0.1", "--n-epochs", "1",
              "--points", "30", "--weight-rows", "10", "--linear-points", "5", "--solutions", "2"]
"""`ramble mnist run` options of the shared LeNet5 file: MNIST-100 from the committed fixture, a short certified path."""


@pytest.fixture(scope="session")
def shared_mnist_file(tmp_path_factory) -> Path:
    """One complete LeNet5 file (``mnist run`` with :data:`MNIST_FAST`), made once for the whole test run.

    Every pytest-xdist worker sees the same file: the first one to ask makes it under a
    lock in the run's shared temporary folder.  Read-only: a test that writes copies it first.
    """
    from click.testing import CliRunner
    from filelock import FileLock

    from ramble.cli import main

    base = tmp_path_factory.getbasetemp()
    # under pytest-xdist each worker's folder is inside the run's; without it, the parent would hold every earlier run
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    out = shared / "shared-mnist.h5"
    with FileLock(str(out) + ".lock"):
        if not out.exists():
            part = shared / "shared-mnist.partial.h5"
            r = CliRunner().invoke(main, ["--quiet", "mnist", "run", *MNIST_FAST, "--out", str(part), "--force"], catch_exceptions=False)
            assert r.exit_code == 0, r.output
            part.rename(out)
    return out


LONGEST_FIRST = ("test_heldout_seeds.py", "test_resume.py", "test_reproduce.py", "test_mnist_cli.py", "test_cli.py", "test_bad_input.py", "test_verify.py", "test_report.py", "test_path.py", "test_hessian.py")
"""Test files that take longest (``--durations`` of a whole run), started first so no worker is left with one at the end."""


def pytest_collection_modifyitems(items: list) -> None:
    """Run :data:`LONGEST_FIRST` first, in that order, then the rest as collected (pytest-xdist hands out files in this order)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
